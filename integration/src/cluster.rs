//! An in-process cluster: N stores in one process, each over its own directory.
//!
//! Each store runs the real raftstore actors ([`tinykv_actors::start_store`]) and the real
//! request path ([`tinykv::kv_service::KvService`]); only the network is simulated
//! ([`SimNetwork`]) and forwarding between nodes is a direct call instead of HTTP. Stores
//! are bootstrapped as a real cluster would be: region 1 over all of them.
//!
//! [`Cluster::stop_store`] stops a store's actors and releases its engine, as a crash
//! would lose its memory (acknowledged data is on disk); [`Cluster::start_store`] opens the
//! same directory again. [`ClusterClient`] sends each request to a random running store and
//! retries until it succeeds or a deadline passes, like TinyKV's test client.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rand::seq::SliceRandom;
use tempfile::TempDir;
use tinykv::kv_service::{write_session, Forwarder, KvOp, KvOutcome, KvService, ServiceTimeouts};
use tinykv::Error;
use tinykv_actors::ensure_bootstrapped;
use tinykv_actors::msg::PeerStatus;
use tinykv_actors::{
    start_store, Cf, Engine, IdAllocator, RaftStoreConfig, SequentialIds, StoreHandle,
};
use tinykv_proto::eraftpb::ConfChangeType;
use tinykv_proto::metapb;
use tinykv_proto::raft_cmdpb::{
    AdminRequest, RaftCmdRequest, RaftCmdResponse, RaftRequestHeader, WriteSession,
};

pub use tinykv::admin_service::change_peer;
use tinykv::admin_service::transfer_leader_request;

use crate::network::{SimNetwork, SimTransport};
use crate::txn::LocalOracle;

type Services = Arc<RwLock<HashMap<u64, KvService>>>;

/// Forwards by calling the target store's service directly.
struct InProcessForwarder {
    services: Services,
}

impl InProcessForwarder {
    /// The service of running store `store_id`, or the error a stopped node answers with.
    fn service(&self, store_id: u64) -> tinykv::Result<KvService> {
        self.services
            .read()
            .unwrap()
            .get(&store_id)
            .cloned()
            .ok_or_else(|| Error::Forward {
                store_id,
                message: "store is stopped".into(),
                maybe_delivered: false,
            })
    }
}

impl Forwarder for InProcessForwarder {
    fn forward(&self, store_id: u64, op: KvOp) -> BoxFuture<'static, tinykv::Result<KvOutcome>> {
        let service = self.service(store_id);
        Box::pin(async move { service?.execute_local(op).await })
    }

    fn forward_command(
        &self,
        store_id: u64,
        request: RaftCmdRequest,
    ) -> BoxFuture<'static, tinykv::Result<RaftCmdResponse>> {
        let service = self.service(store_id);
        Box::pin(async move { service?.command_local(request).await })
    }
}

/// The cluster; see the module documentation.
pub struct Cluster {
    cfg: RaftStoreConfig,
    dirs: HashMap<u64, TempDir>,
    stores: HashMap<u64, StoreHandle>,
    network: Arc<SimNetwork>,
    services: Services,
    timeouts: ServiceTimeouts,
    oracle: Arc<LocalOracle>,
    /// Region and peer ids for every store, as the placement driver hands them out in a
    /// real cluster (TinyKV's tests share a mock scheduler the same way).
    ids: Arc<SequentialIds>,
}

impl Cluster {
    /// Bootstraps and starts `count` stores (ids 1..=count) sharing region 1.
    pub async fn start(count: u64, cfg: RaftStoreConfig) -> Cluster {
        Cluster::start_with_txn_max_age(count, cfg, Duration::from_secs(540)).await
    }

    /// [`Cluster::start`], the stores refusing transactional reads and writes whose
    /// timestamps are older than `txn_max_age` (garbage collection's window).
    pub async fn start_with_txn_max_age(
        count: u64,
        cfg: RaftStoreConfig,
        txn_max_age: Duration,
    ) -> Cluster {
        let ids: Vec<u64> = (1..=count).collect();
        let mut cluster = Cluster {
            cfg,
            dirs: HashMap::new(),
            stores: HashMap::new(),
            network: SimNetwork::new(),
            services: Arc::new(RwLock::new(HashMap::new())),
            oracle: LocalOracle::new(),
            ids: Arc::new(SequentialIds::starting_at(1000)),
            timeouts: ServiceTimeouts {
                request: Duration::from_secs(5),
                attempt: Duration::from_secs(2),
                write_ttl: Duration::from_secs(300),
                txn_max_age,
            },
        };
        for &id in &ids {
            let dir = tempfile::Builder::new()
                .prefix(&format!("tinykv-store{id}-"))
                .tempdir()
                .expect("temp dir");
            let engine = Engine::open(dir.path().join("db")).expect("open engine");
            ensure_bootstrapped(&engine, 1, id, &ids).expect("bootstrap");
            drop(engine);
            cluster.dirs.insert(id, dir);
        }
        for &id in &ids {
            cluster.start_store(id).await;
        }
        cluster
    }

    /// Ids of every store, running or not.
    pub fn store_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.dirs.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The timestamp oracle the stores and coordinators share (the cluster has no
    /// placement driver).
    pub fn oracle(&self) -> Arc<LocalOracle> {
        self.oracle.clone()
    }

    /// The simulated network, to install faults.
    pub fn network(&self) -> &Arc<SimNetwork> {
        &self.network
    }

    /// Starts store `id` over its directory (after [`Cluster::stop_store`]).
    pub async fn start_store(&mut self, id: u64) {
        assert!(!self.stores.contains_key(&id), "store {id} is running");
        let engine = Engine::open(self.dirs[&id].path().join("db")).expect("reopen engine");
        let transport = Arc::new(SimTransport::new(id, self.network.clone()));
        let handle = start_store(self.cfg.clone(), engine, transport, self.ids.clone())
            .await
            .expect("start store");
        let forwarder = Arc::new(InProcessForwarder {
            services: self.services.clone(),
        });
        let others = self.store_ids().into_iter().filter(|s| *s != id).collect();
        let service = KvService::new(handle.router(), forwarder, self.timeouts)
            .with_other_stores(others)
            .with_timestamps(self.oracle.clone());
        self.services.write().unwrap().insert(id, service);
        self.network.connect(handle.router());
        self.stores.insert(id, handle);
    }

    /// Stops store `id`, losing its memory but not its disk.
    pub async fn stop_store(&mut self, id: u64) {
        self.network.disconnect(id);
        self.services.write().unwrap().remove(&id);
        if let Some(handle) = self.stores.remove(&id) {
            handle.shutdown().await;
        }
    }

    /// Opens stopped store `id`'s engine for `f`, closing it again before returning: to
    /// put its disk in a state a crash could have left.
    pub fn with_stopped_engine<T>(&self, id: u64, f: impl FnOnce(&Engine) -> T) -> T {
        assert!(!self.stores.contains_key(&id), "store {id} is running");
        let engine = Engine::open(self.dirs[&id].path().join("db")).expect("open engine");
        f(&engine)
    }

    /// Stops and restarts every store.
    pub async fn restart_all(&mut self) {
        for id in self.store_ids() {
            self.stop_store(id).await;
        }
        for id in self.store_ids() {
            self.start_store(id).await;
        }
    }

    /// Stops every store and deletes their directories.
    pub async fn shutdown(mut self) {
        for id in self.store_ids() {
            self.stop_store(id).await;
        }
    }

    /// A client that talks to random running stores.
    pub fn client(&self) -> ClusterClient {
        ClusterClient {
            services: self.services.clone(),
        }
    }

    /// The KvService of running store `id`, as a node's API uses it.
    pub fn service(&self, id: u64) -> KvService {
        self.services
            .read()
            .unwrap()
            .get(&id)
            .cloned()
            .unwrap_or_else(|| panic!("store {id} is not running"))
    }

    /// The engine of a running store, for direct inspection.
    pub fn engine(&self, id: u64) -> Option<Engine> {
        self.stores.get(&id).map(|h| h.engine().clone())
    }

    /// Reads a key straight from a running store's engine (not through raft).
    pub fn engine_get(&self, id: u64, cf: Cf, key: &[u8]) -> Option<Vec<u8>> {
        self.engine(id)
            .and_then(|e| e.get(cf, key).expect("engine read"))
    }

    /// Waits until store `id`'s engine holds `value` (or nothing, for `None`) at `key`.
    pub async fn wait_engine_value(&self, id: u64, cf: Cf, key: &[u8], value: Option<&[u8]>) {
        wait_until(Duration::from_secs(10), || {
            self.engine_get(id, cf, key).as_deref() == value
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "store {id}: {cf:?} {:?} is {:?}, expected {:?}",
                String::from_utf8_lossy(key),
                self.engine_get(id, cf, key)
                    .map(|v| String::from_utf8_lossy(&v).into_owned()),
                value.map(String::from_utf8_lossy)
            )
        });
    }

    /// The status of every running store's peer of `region_id`.
    pub async fn region_statuses(&self, region_id: u64) -> Vec<PeerStatus> {
        let mut statuses = Vec::new();
        for handle in self.stores.values() {
            if let Ok(Some(status)) = handle.router().region_status(region_id).await {
                statuses.push(status);
            }
        }
        statuses
    }

    /// The peer that currently leads `region_id` (the leader of the highest term), waiting
    /// up to 10 s for one to emerge.
    pub async fn leader_of(&self, region_id: u64) -> metapb::Peer {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let statuses = self.region_statuses(region_id).await;
            let leader = statuses
                .iter()
                .filter(|s| s.leader_id == s.peer.id)
                .max_by_key(|s| s.term);
            if let Some(s) = leader {
                return s.peer;
            }
            assert!(
                Instant::now() < deadline,
                "region {region_id} has no leader"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Cluster {
    /// Every region some running store holds a peer of, in its newest known shape.
    pub async fn regions(&self) -> Vec<metapb::Region> {
        let mut newest: HashMap<u64, metapb::Region> = HashMap::new();
        for handle in self.stores.values() {
            for route in handle.router().regions().await.unwrap_or_default() {
                if route.region.peers.is_empty() {
                    continue;
                }
                let version =
                    |r: &metapb::Region| r.region_epoch.map_or((0, 0), |e| (e.version, e.conf_ver));
                let entry = newest
                    .entry(route.region.id)
                    .or_insert(route.region.clone());
                if version(&route.region) > version(entry) {
                    *entry = route.region;
                }
            }
        }
        let mut regions: Vec<_> = newest.into_values().collect();
        regions.sort_by(|a, b| a.start_key.cmp(&b.start_key));
        regions
    }

    /// The region the current leader of `region_id` reports.
    pub async fn leader_region(&self, region_id: u64) -> Option<(metapb::Peer, metapb::Region)> {
        self.region_statuses(region_id)
            .await
            .into_iter()
            .filter(|s| s.leader_id == s.peer.id)
            .max_by_key(|s| s.term)
            .map(|s| (s.peer, s.region))
    }

    /// Proposes an admin command built from the leader's current region until `done`
    /// holds for the leader and its region, or `timeout` passes (then returns false).
    async fn admin_until(
        &self,
        region_id: u64,
        timeout: Duration,
        build: impl Fn(&metapb::Region) -> AdminRequest,
        done: impl Fn(&metapb::Peer, &metapb::Region) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((leader, region)) = self.leader_region(region_id).await {
                if done(&leader, &region) {
                    return true;
                }
                let request = RaftCmdRequest {
                    header: Some(RaftRequestHeader {
                        region_id,
                        region_epoch: region.region_epoch,
                        ..Default::default()
                    }),
                    admin_request: Some(build(&region)),
                    ..Default::default()
                };
                if let Some(handle) = self.stores.get(&leader.store_id) {
                    let _ = handle
                        .router()
                        .command(request, Duration::from_secs(2))
                        .await;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Reads `key` (default cf) once on store `store_id`'s own peer of the region holding
    /// it, whether that peer leads or not: `Err` with the region error if it refuses (the
    /// store not running or the read timing out count as `Timeout`).
    pub async fn read_on(
        &self,
        store_id: u64,
        key: &[u8],
    ) -> std::result::Result<Option<Vec<u8>>, tinykv_actors::Error> {
        use tinykv_proto::raft_cmdpb::{CmdType, GetRequest, Request};
        let request = Request {
            cmd_type: CmdType::Get as i32,
            get: Some(GetRequest {
                cf: "default".into(),
                key: key.to_vec(),
            }),
            ..Default::default()
        };
        let response = self.key_command_on(store_id, key, request).await?;
        let value = response
            .responses
            .first()
            .and_then(|r| r.get.as_ref())
            .map(|g| g.value.clone())
            .unwrap_or_default();
        Ok((!value.is_empty()).then_some(value))
    }

    /// Writes `key` = `value` (default cf) once through store `store_id`'s own peer of the
    /// region holding it, whether that peer leads or not (a follower forwards the write
    /// to its leader through raft): `Err` with the region error if it refuses, `Timeout`
    /// if no answer came (the outcome is then unknown).
    pub async fn put_on(
        &self,
        store_id: u64,
        key: &[u8],
        value: &[u8],
    ) -> std::result::Result<(), tinykv_actors::Error> {
        use tinykv_proto::raft_cmdpb::{CmdType, PutRequest, Request};
        let request = Request {
            cmd_type: CmdType::Put as i32,
            put: Some(PutRequest {
                cf: "default".into(),
                key: key.to_vec(),
                value: value.to_vec(),
            }),
            ..Default::default()
        };
        self.key_command_on(store_id, key, request)
            .await
            .map(|_| ())
    }

    /// Sends one request, routed by `key`, to store `store_id`'s own peer.
    async fn key_command_on(
        &self,
        store_id: u64,
        key: &[u8],
        request: tinykv_proto::raft_cmdpb::Request,
    ) -> std::result::Result<tinykv_proto::raft_cmdpb::RaftCmdResponse, tinykv_actors::Error> {
        let handle = self
            .stores
            .get(&store_id)
            .ok_or(tinykv_actors::Error::Timeout)?;
        let request = RaftCmdRequest {
            requests: vec![request],
            ..Default::default()
        };
        let response = handle
            .router()
            .key_command(key.to_vec(), request, Duration::from_secs(5))
            .await?;
        match response.err() {
            Some(err) => Err(err),
            None => Ok(response.response),
        }
    }

    /// Sends `request` to store `store_id` once and returns the region error it answers,
    /// if any (`None` also when the store is not running or the command timed out).
    pub async fn command_on(
        &self,
        store_id: u64,
        request: RaftCmdRequest,
    ) -> Option<tinykv_actors::Error> {
        let handle = self.stores.get(&store_id)?;
        match handle
            .router()
            .command(request, Duration::from_secs(2))
            .await
        {
            Ok(response) => response.err(),
            Err(e) => Some(e),
        }
    }

    /// Adds `peer` to `region_id`, within `timeout`; false if it did not happen.
    pub async fn try_add_peer(
        &self,
        region_id: u64,
        peer: metapb::Peer,
        timeout: Duration,
    ) -> bool {
        self.admin_until(
            region_id,
            timeout,
            |_| change_peer(ConfChangeType::AddNode, peer),
            |_, r| r.peers.contains(&peer),
        )
        .await
    }

    /// Removes `peer` from `region_id`, within `timeout`; false if it did not happen.
    pub async fn try_remove_peer(
        &self,
        region_id: u64,
        peer: metapb::Peer,
        timeout: Duration,
    ) -> bool {
        self.admin_until(
            region_id,
            timeout,
            |_| change_peer(ConfChangeType::RemoveNode, peer),
            |_, r| !r.peers.contains(&peer),
        )
        .await
    }

    /// Adds `peer` to `region_id`, panicking after 10 s.
    pub async fn must_add_peer(&self, region_id: u64, peer: metapb::Peer) {
        let added = self
            .try_add_peer(region_id, peer, Duration::from_secs(10))
            .await;
        assert!(added, "could not add {peer:?} to region {region_id}");
    }

    /// Removes `peer` from `region_id`, panicking after 10 s.
    pub async fn must_remove_peer(&self, region_id: u64, peer: metapb::Peer) {
        let removed = self
            .try_remove_peer(region_id, peer, Duration::from_secs(10))
            .await;
        assert!(removed, "could not remove {peer:?} from region {region_id}");
    }

    /// Splits region `region_id` at `keys` (ascending) in one command, with fresh ids,
    /// retrying with the leader's current epoch until the region ends at the first key;
    /// panics after 10 s.
    pub async fn must_split(&self, region_id: u64, keys: &[&[u8]]) {
        let owned: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
        let split = self
            .admin_until(
                region_id,
                Duration::from_secs(10),
                |region| {
                    let ids: Vec<u64> = (0..owned.len() * (1 + region.peers.len()))
                        .map(|_| self.alloc_id())
                        .collect();
                    tinykv_actors::split_request(owned.clone(), &ids)
                },
                |_, region| region.end_key == owned[0],
            )
            .await;
        assert!(split, "could not split region {region_id} at {keys:?}");
    }

    /// Merges region `source` into its neighbour `target`: proposes PrepareMerge at the
    /// source's leader (naming the target as its leader sees it now) until the target's
    /// leader covers both ranges, failing after 20 s.
    pub async fn must_merge(&self, source: u64, target: u64) {
        self.leader_of(source).await;
        let before = self
            .leader_region(source)
            .await
            .map(|(_, region)| region)
            .expect("the source has a leader");
        assert!(
            self.try_merge_until(source, target, Duration::from_secs(20), |region| {
                covers(region, &before)
            })
            .await,
            "could not merge region {source} into {target}"
        );
    }

    /// Proposes PrepareMerge of `source` into `target` (with the target's current epoch)
    /// once; the source's leader answers whether it took it.
    pub async fn try_prepare_merge(
        &self,
        source: u64,
        target: &metapb::Region,
    ) -> std::result::Result<(), tinykv_actors::Error> {
        let Some((leader, region)) = self.leader_region(source).await else {
            return Err(tinykv_actors::Error::RegionNotFound(source));
        };
        let request = RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: source,
                region_epoch: region.region_epoch,
                ..Default::default()
            }),
            admin_request: Some(tinykv_actors::prepare_merge_request(target.clone())),
            ..Default::default()
        };
        let Some(handle) = self.stores.get(&leader.store_id) else {
            return Err(tinykv_actors::Error::Stopped);
        };
        match handle
            .router()
            .command(request, Duration::from_secs(5))
            .await
        {
            Ok(response) => response.err().map_or(Ok(()), Err),
            Err(e) => Err(e),
        }
    }

    /// Proposes the merge of `source` into `target` every 200 ms until the target's
    /// leader reports a region for which `done` holds, or `timeout` passes.
    pub async fn try_merge_until(
        &self,
        source: u64,
        target: u64,
        timeout: Duration,
        done: impl Fn(&metapb::Region) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((_, region)) = self.leader_region(target).await {
                if done(&region) {
                    return true;
                }
                let _ = self.try_prepare_merge(source, &region).await;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A fresh region or peer id, from the allocator the stores share.
    pub fn alloc_id(&self) -> u64 {
        self.ids.alloc(1).expect("sequential ids never run out")[0]
    }

    /// The region holding `key`, in its newest known shape.
    pub async fn region_for_key(&self, key: &[u8]) -> metapb::Region {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self.regions().await.into_iter().find(|r| {
                key >= r.start_key.as_slice()
                    && (r.end_key.is_empty() || key < r.end_key.as_slice())
            });
            if let Some(region) = found {
                return region;
            }
            assert!(Instant::now() < deadline, "no region holds {key:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asks region `region_id`'s leader to hand leadership to `target` until `target`
    /// leads, failing after 5 s.
    pub async fn must_transfer_leader(&self, region_id: u64, target: metapb::Peer) {
        let moved = self
            .admin_until(
                region_id,
                Duration::from_secs(5),
                |_| transfer_leader_request(target),
                |leader, _| *leader == target,
            )
            .await;
        assert!(
            moved,
            "leadership of region {region_id} did not move to {target:?}"
        );
    }

    /// Waits until every running store's peer of every region keeps at most `limit`
    /// applied entries in its log (applied − truncated), failing after 10 s.
    pub async fn wait_all_logs_bounded(&self, limit: u64) {
        for region in self.regions().await {
            self.wait_log_bounded(region.id, limit).await;
        }
    }

    /// Waits until every running store's peer of `region_id` keeps at most `limit` applied
    /// entries in its log (applied − truncated), failing after 10 s.
    pub async fn wait_log_bounded(&self, region_id: u64, limit: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let statuses = self.region_statuses(region_id).await;
            let over: Vec<_> = statuses
                .iter()
                .filter(|s| s.applied_index - s.truncated_index > limit)
                .map(|s| (s.peer.store_id, s.applied_index, s.truncated_index))
                .collect();
            if over.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "raft logs exceed {limit} applied entries (store, applied, truncated): {over:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Polls `condition` every 20 ms until it holds (returns `Some`) or `timeout` passes.
pub async fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> Option<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return Some(());
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client of the in-process cluster; see the module documentation.
#[derive(Clone)]
pub struct ClusterClient {
    services: Services,
}

/// How long the `must_*` helpers keep retrying.
const MUST_TIMEOUT: Duration = Duration::from_secs(60);

impl ClusterClient {
    fn pick(&self) -> Option<KvService> {
        let services = self.services.read().unwrap();
        let all: Vec<&KvService> = services.values().collect();
        all.choose(&mut rand::thread_rng()).map(|s| (*s).clone())
    }

    /// Executes `op` on a random running store (one attempt, with the service's own
    /// retries).
    pub async fn execute(&self, op: KvOp) -> tinykv::Result<KvOutcome> {
        match self.pick() {
            Some(service) => service.execute(op).await,
            None => Err(Error::Forward {
                store_id: 0,
                message: "no store is running".into(),
                maybe_delivered: false,
            }),
        }
    }

    async fn must(&self, op: KvOp) -> KvOutcome {
        let deadline = Instant::now() + MUST_TIMEOUT;
        loop {
            match self.execute(op.clone()).await {
                Ok(outcome) => return outcome,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!("retrying {op:?}: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{op:?} failed for {MUST_TIMEOUT:?}: {e}"),
            }
        }
    }

    /// A session for a new client write (the same on each of its retries).
    pub fn new_session(&self) -> WriteSession {
        write_session(0, None, Duration::from_secs(300))
    }

    /// Writes `key` = `value` in `cf`, retrying until it is acknowledged.
    pub async fn must_put_cf(&self, cf: Cf, key: &[u8], value: &[u8]) {
        self.must(KvOp::Put {
            cf,
            key: key.to_vec(),
            value: value.to_vec(),
            session: self.new_session(),
        })
        .await;
    }

    /// Writes `key` = `value` in the default cf, retrying until it is acknowledged.
    pub async fn must_put(&self, key: &[u8], value: &[u8]) {
        self.must_put_cf(Cf::Default, key, value).await
    }

    /// Deletes `key` from `cf`, retrying until it is acknowledged.
    pub async fn must_delete_cf(&self, cf: Cf, key: &[u8]) {
        self.must(KvOp::Delete {
            cf,
            key: key.to_vec(),
            session: self.new_session(),
        })
        .await;
    }

    /// Reads `key` from `cf` (linearizably), retrying until a read succeeds.
    pub async fn must_get_cf(&self, cf: Cf, key: &[u8]) -> Option<Vec<u8>> {
        match self
            .must(KvOp::Get {
                cf,
                key: key.to_vec(),
            })
            .await
        {
            KvOutcome::Value(v) => v,
            other => panic!("get answered {other:?}"),
        }
    }

    /// Reads `key` from the default cf.
    pub async fn must_get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.must_get_cf(Cf::Default, key).await
    }

    /// Scans `[start, end)` of the default cf across regions, retrying until a scan
    /// succeeds.
    pub async fn must_scan(&self, start: &[u8], end: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let deadline = Instant::now() + MUST_TIMEOUT;
        loop {
            let result = match self.pick() {
                Some(s) => s
                    .scan(
                        Cf::Default,
                        start.to_vec(),
                        end.to_vec(),
                        usize::MAX,
                        usize::MAX,
                    )
                    .await
                    .map(|page| page.pairs),
                None => Err(Error::Io("no store is running".into())),
            };
            match result {
                Ok(pairs) => return pairs,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!("retrying scan: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("scan failed for {MUST_TIMEOUT:?}: {e}"),
            }
        }
    }
}

pub use tinykv_actors::covers;
