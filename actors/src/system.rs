//! Starting and stopping a store's actors, and the handle callers use to reach them.
//!
//! [`start_store`] builds the actor graph of one store over an opened, bootstrapped engine:
//!
//! ```text
//!                  ┌─────────── Router ───────────┐
//!  commands ──────▶│ region id / key → PeerFsm    │◀── raft messages (transport)
//!                  └──────┬───────────────┬───────┘
//!                         ▼               ▼ (unknown region)
//!        PeerFsm (× regions, peer arbiters)   Store
//!          │  WriteTask ▲ Persisted
//!          ▼            │
//!        RaftLogWriter (one fsync per batch, all regions)   RaftLogGcWriter (compacted log)
//!          │ Apply
//!          ▼
//!        ApplyFsm (× regions, apply arbiters) ──ApplyTask──▶ ApplyWriter ──▶ callbacks
//! ```
//!
//! The actors run on two groups of arbiters (threads). The raft side, `peer_threads` of
//! them, holds the PeerFsms; its first arbiter also runs the Router, the Store and the
//! raft-log writers. The apply side, `apply_threads` of them, holds the ApplyFsms; its
//! first arbiter also runs the apply writer. [`StoreThreads`] makes them before the store
//! starts, so that the node can run its raft transport on the raft side's first arbiter
//! too. A message between actors (or tasks) of one arbiter costs no thread wake-up, and
//! on a small machine those wake-ups were most of the CPU a write took (see
//! `docs/performance.md`); the two sides still overlap, one applying while the other runs
//! raft. Disk writes and scans run on blocking threads, so no arbiter waits on the disk.
//!
//! [`StoreHandle::shutdown`] stops everything and returns only once every actor has
//! dropped its engine handle, so the same directory can be opened again at once.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tinykv_proto::raft_cmdpb::RaftCmdRequest;
use tinykv_proto::raft_serverpb::RaftMessage;
use tokio::sync::oneshot;

use crate::alive::{alive_pair, AliveWatch};
use crate::batch_writer::{ApplyWriter, RaftLogGcWriter, RaftLogWriter};
use crate::bootstrap::load_store_ident;
use crate::config::RaftStoreConfig;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::id_alloc::IdAllocator;
use crate::msg::*;
use crate::peer::{PeerContext, PeerEnv};
use crate::router::{Router, SetStore};
use crate::store::{LoadPeers, Store};
use crate::transport::Transport;

/// A clonable way to send commands and raft messages to a running store.
#[derive(Clone)]
pub struct StoreRouter {
    store_id: u64,
    router: Addr<Router>,
    ids: Arc<dyn IdAllocator>,
}

impl StoreRouter {
    /// The store's id.
    pub fn store_id(&self) -> u64 {
        self.store_id
    }

    /// Sends a command to the region named in its header and waits up to `timeout`.
    pub async fn command(&self, request: RaftCmdRequest, timeout: Duration) -> Result<CmdResponse> {
        let (callback, rx) = oneshot::channel();
        self.hand_over(RaftCommand { request, callback })?;
        wait(rx, timeout).await
    }

    /// Sends a command to the region named in its header and hands back the channel its
    /// answer will come on, however long that takes. A proposal's answer always comes
    /// once its entry applies or is overwritten, or the peer stops (the channel closes);
    /// the transaction layer waits for it before it lets another command at the keys.
    pub fn send_command(&self, request: RaftCmdRequest) -> Result<oneshot::Receiver<CmdResponse>> {
        let (callback, rx) = oneshot::channel();
        self.hand_over(RaftCommand { request, callback })?;
        Ok(rx)
    }

    /// Sends a command to the local region holding `key` and waits up to `timeout`.
    pub async fn key_command(
        &self,
        key: Vec<u8>,
        request: RaftCmdRequest,
        timeout: Duration,
    ) -> Result<CmdResponse> {
        let (callback, rx) = oneshot::channel();
        let command = KeyCommand {
            key,
            request,
            callback,
        };
        self.hand_over(command)?;
        wait(rx, timeout).await
    }

    /// Gives `msg` to the Router. A full mailbox (the Router has
    /// [`crate::MAILBOX_CAPACITY`] messages queued) refuses it with `ServerIsBusy`: it was
    /// not queued, so nothing will be done, and the caller backs off and retries instead
    /// of queueing without bound.
    fn hand_over<M>(&self, msg: M) -> Result<()>
    where
        M: Message<Result = ()> + Send + 'static,
        Router: Handler<M>,
    {
        match self.router.try_send(msg) {
            Ok(()) => Ok(()),
            Err(actix::dev::SendError::Full(_)) => Err(Error::ServerIsBusy(
                "the store's router has a full queue".into(),
            )),
            Err(actix::dev::SendError::Closed(_)) => Err(Error::Stopped),
        }
    }

    /// Tests: the Router actor itself.
    #[cfg(test)]
    pub(crate) fn router_addr(&self) -> Addr<Router> {
        self.router.clone()
    }

    /// The allocator of new region and peer ids.
    pub fn id_allocator(&self) -> Arc<dyn IdAllocator> {
        self.ids.clone()
    }

    /// Delivers a raft message received from another store.
    pub fn deliver(&self, msg: RaftMessage) {
        // Counted before it is queued, so that the Router never counts down first.
        crate::metrics::router_inbound_queued();
        if self.router.try_send(InboundRaftMessage(msg)).is_err() {
            crate::metrics::ROUTER_INBOUND_QUEUED.dec();
        }
    }

    /// The local region holding `key`, if any.
    pub async fn find_region(&self, key: &[u8]) -> Result<Option<RegionRoute>> {
        self.router
            .send(FindRegion { key: key.to_vec() })
            .await
            .map_err(|_| Error::Stopped)
    }

    /// Every local region, ordered by start key.
    pub async fn regions(&self) -> Result<Vec<RegionRoute>> {
        self.router
            .send(ListRegions)
            .await
            .map_err(|_| Error::Stopped)
    }

    /// The placement driver's reports of the regions this store leads: those changed
    /// since the last call, or all of them (`all`).
    pub async fn leader_reports(&self, all: bool) -> Result<LeaderReports> {
        self.router
            .send(TakeLeaderReports { all })
            .await
            .map_err(|_| Error::Stopped)
    }

    /// Wakes every local peer whose region's leader is on one of `stores` (see
    /// [`WakeRegionsLedBy`]); returns how many were asked.
    pub async fn wake_regions_led_by(&self, stores: Vec<u64>) -> Result<usize> {
        self.router
            .send(WakeRegionsLedBy(stores))
            .await
            .map_err(|_| Error::Stopped)
    }

    /// The status of the local peer of `region_id`.
    pub async fn region_status(&self, region_id: u64) -> Result<Option<PeerStatus>> {
        self.router
            .send(QueryRegionStatus(region_id))
            .await
            .map_err(|_| Error::Stopped)
    }
}

async fn wait(rx: oneshot::Receiver<CmdResponse>, timeout: Duration) -> Result<CmdResponse> {
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(_)) => Err(Error::Stopped),
        Err(_) => Err(Error::Timeout),
    }
}

/// A running store; see the module documentation.
pub struct StoreHandle {
    router: StoreRouter,
    store: Addr<Store>,
    engine: Engine,
    arbiters: Vec<Arbiter>,
    watch: AliveWatch,
}

/// The threads (arbiters) a store's actors run on: the raft side and the apply side (see
/// the module documentation). Made before the store starts, so that tasks which trade
/// messages with the PeerFsms, such as the raft transport, can run on the raft side's
/// first thread too, where handing a message over wakes no other thread.
pub struct StoreThreads {
    raft: Vec<Arbiter>,
    apply: Vec<Arbiter>,
}

impl StoreThreads {
    /// `cfg.peer_threads` raft-side and `cfg.apply_threads` apply-side arbiters (at
    /// least one of each).
    pub fn new(cfg: &RaftStoreConfig) -> StoreThreads {
        let arbiters = |count: usize| (0..count.max(1)).map(|_| Arbiter::new()).collect();
        StoreThreads {
            raft: arbiters(cfg.peer_threads),
            apply: arbiters(cfg.apply_threads),
        }
    }

    /// The tokio runtime of the raft side's first thread, the one running the Router.
    pub async fn raft_runtime(&self) -> Result<tokio::runtime::Handle> {
        let (tx, rx) = oneshot::channel();
        self.raft[0].spawn_fn(move || {
            let _ = tx.send(tokio::runtime::Handle::current());
        });
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Stops the threads (of a store that did not start).
    pub fn stop(self) {
        for arbiter in self.raft.iter().chain(&self.apply) {
            arbiter.stop();
        }
    }
}

/// Starts the actors of the store whose identity is in `engine` (see
/// [`crate::bootstrap::ensure_bootstrapped`]) on threads of their own, taking new region
/// and peer ids from `ids`. Must run inside an actix system.
pub async fn start_store(
    cfg: RaftStoreConfig,
    engine: Engine,
    transport: Arc<dyn Transport>,
    ids: Arc<dyn IdAllocator>,
) -> Result<StoreHandle> {
    let threads = StoreThreads::new(&cfg);
    start_store_on(threads, cfg, engine, transport, ids).await
}

/// Starts the actors of the store whose identity is in `engine` on `threads`, which the
/// store owns from now on and stops at shutdown. Must run inside an actix system.
pub async fn start_store_on(
    threads: StoreThreads,
    cfg: RaftStoreConfig,
    engine: Engine,
    transport: Arc<dyn Transport>,
    ids: Arc<dyn IdAllocator>,
) -> Result<StoreHandle> {
    let identity = cfg.validate().and_then(|()| {
        let ident = load_store_ident(&engine)?
            .ok_or_else(|| Error::Corruption("store is not bootstrapped".into()))?;
        Ok(ident.store_id)
    });
    let store_id = match identity {
        Ok(store_id) => store_id,
        Err(e) => {
            threads.stop();
            return Err(e);
        }
    };
    let StoreThreads { raft, apply } = threads;
    let peer_arbiters: Vec<ArbiterHandle> = raft.iter().map(Arbiter::handle).collect();
    let apply_arbiters: Vec<ArbiterHandle> = apply.iter().map(Arbiter::handle).collect();
    let arbiters: Vec<Arbiter> = raft.into_iter().chain(apply).collect();
    let cfg = Arc::new(cfg);
    let (token, watch) = alive_pair();
    let (raft_home, apply_home) = (&peer_arbiters[0], &apply_arbiters[0]);

    let (e, t) = (engine.clone(), token.clone());
    let raft_batch = cfg.raft_write_batch_bytes;
    let log_writer =
        RaftLogWriter::start_in_arbiter(raft_home, move |_| RaftLogWriter::new(e, raft_batch, t));
    let (e, t) = (engine.clone(), token.clone());
    let apply_batch = cfg.apply_write_batch_bytes;
    let apply_writer =
        ApplyWriter::start_in_arbiter(apply_home, move |_| ApplyWriter::new(e, apply_batch, t));
    let (e, t) = (engine.clone(), token.clone());
    let log_gc = RaftLogGcWriter::start_in_arbiter(raft_home, move |_| {
        RaftLogGcWriter::new(e, raft_batch, t)
    });
    let t = token.clone();
    let router = Router::start_in_arbiter(raft_home, move |_| Router::new(store_id, t));

    let peer_ctx = PeerContext {
        env: PeerEnv {
            store_id,
            cfg: cfg.clone(),
            engine: engine.clone(),
            transport,
            ids: ids.clone(),
            token,
        },
        router: router.clone(),
        log_writer,
        log_gc,
    };
    let raft_home = raft_home.clone();
    let store = Store::start_in_arbiter(&raft_home, move |_| {
        Store::new(peer_ctx, apply_writer, peer_arbiters, apply_arbiters)
    });
    router
        .send(SetStore(store.clone()))
        .await
        .map_err(|_| Error::Stopped)?;
    let handle = StoreHandle {
        router: StoreRouter {
            store_id,
            router,
            ids,
        },
        store: store.clone(),
        engine,
        arbiters,
        watch,
    };
    match store.send(LoadPeers).await {
        Ok(Ok(peers)) => {
            // A peer registers with the Router in `started`, which runs before it handles
            // any message: once each has answered, every registration is queued at the
            // Router ahead of the final round trip, and the store is fully routable.
            for peer in peers {
                let _ = peer.send(QueryPeerStatus).await;
            }
            let _ = handle.router.router.send(ListRegions).await;
            Ok(handle)
        }
        Ok(Err(e)) => {
            handle.shutdown().await;
            Err(e)
        }
        Err(_) => {
            handle.shutdown().await;
            Err(Error::Stopped)
        }
    }
}

impl StoreHandle {
    /// The store's id.
    pub fn store_id(&self) -> u64 {
        self.router.store_id
    }

    /// A clonable sender of commands and raft messages.
    pub fn router(&self) -> StoreRouter {
        self.router.clone()
    }

    /// The store's engine, for direct reads (tests, admin). Drop clones before
    /// [`StoreHandle::shutdown`] completes, or reopening the directory will fail.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Stops every actor of the store and waits until all of them, and every write in
    /// flight, have released the engine.
    pub async fn shutdown(self) {
        let StoreHandle {
            router,
            store,
            engine,
            arbiters,
            watch,
        } = self;
        let _ = store.send(Stop).await;
        drop((router, store, engine));
        watch.all_stopped().await;
        for arbiter in &arbiters {
            arbiter.stop();
        }
        let _ = tokio::task::spawn_blocking(move || {
            for arbiter in arbiters {
                let _ = arbiter.join();
            }
        })
        .await;
    }
}
