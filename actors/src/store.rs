//! Store: the actor that owns a store's peers.
//!
//! At start it reads every region state on disk and starts a PeerFsm/ApplyFsm pair for each
//! live one, spreading PeerFsms over the peer arbiters and ApplyFsms over the apply
//! arbiters by region id; each PeerFsm registers itself with the Router when it starts. Raft messages for regions
//! that have no peer here arrive at the Store (through the Router). On [`Stop`] it stops
//! every peer, the Router, and itself; the writers stop once nobody can reach them.

use std::collections::HashMap;

use actix::prelude::*;
use tinykv_proto::metapb;
use tinykv_proto::raft_serverpb::PeerState;
use tracing::{debug, info};

use crate::apply::ApplyFsm;
use crate::batch_writer::ApplyWriter;
use crate::bootstrap::load_regions;
use crate::error::{Error, Result};
use crate::msg::*;
use crate::peer::{PeerContext, PeerFsm};
use crate::peer_storage::PeerStorage;

/// Starts a peer for every live region on disk; answers their addresses.
#[derive(Message)]
#[rtype(result = "Result<Vec<Addr<PeerFsm>>>")]
pub struct LoadPeers;

/// The actor; see the module documentation.
pub struct Store {
    peer_ctx: PeerContext,
    apply_writer: Addr<ApplyWriter>,
    peer_arbiters: Vec<ArbiterHandle>,
    apply_arbiters: Vec<ArbiterHandle>,
    peers: HashMap<u64, Addr<PeerFsm>>,
}

impl Store {
    /// A store with no peers yet.
    pub fn new(
        peer_ctx: PeerContext,
        apply_writer: Addr<ApplyWriter>,
        peer_arbiters: Vec<ArbiterHandle>,
        apply_arbiters: Vec<ArbiterHandle>,
    ) -> Store {
        Store {
            peer_ctx,
            apply_writer,
            peer_arbiters,
            apply_arbiters,
            peers: HashMap::new(),
        }
    }

    fn store_id(&self) -> u64 {
        self.peer_ctx.store_id
    }

    /// Starts the PeerFsm and ApplyFsm of this store's peer of `region`.
    fn spawn_peer(&mut self, region: metapb::Region) -> Result<Addr<PeerFsm>> {
        let store_id = self.store_id();
        let peer = region
            .peers
            .iter()
            .find(|p| p.store_id == store_id)
            .cloned()
            .ok_or_else(|| {
                Error::Corruption(format!(
                    "region {} has no peer on store {store_id}",
                    region.id
                ))
            })?;
        let storage = PeerStorage::new(self.peer_ctx.engine.clone(), region.clone())?;
        let apply_state = *storage.apply_state();
        let slot = region.id as usize;
        let peer_arbiter = &self.peer_arbiters[slot % self.peer_arbiters.len()];
        let apply_arbiter = &self.apply_arbiters[slot % self.apply_arbiters.len()];

        let writer = self.apply_writer.clone();
        let token = self.peer_ctx.token.clone();
        let (peer_id, apply_region) = (peer.id, region.clone());
        let apply = ApplyFsm::start_in_arbiter(apply_arbiter, move |_| {
            ApplyFsm::new(store_id, peer_id, apply_region, apply_state, writer, token)
        });
        let fsm = PeerFsm::new(self.peer_ctx.clone(), peer, storage, apply)?;
        let addr = PeerFsm::start_in_arbiter(peer_arbiter, move |_| fsm);
        self.peers.insert(region.id, addr.clone());
        Ok(addr)
    }
}

impl Actor for Store {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::MAILBOX_CAPACITY);
    }
}

impl Handler<LoadPeers> for Store {
    type Result = Result<Vec<Addr<PeerFsm>>>;

    fn handle(&mut self, _: LoadPeers, _: &mut Self::Context) -> Self::Result {
        let mut peers = Vec::new();
        for state in load_regions(&self.peer_ctx.engine)? {
            if state.state() == PeerState::Tombstone {
                continue;
            }
            let Some(region) = state.region else { continue };
            peers.push(self.spawn_peer(region)?);
        }
        info!(
            store = self.store_id(),
            peers = peers.len(),
            "store started"
        );
        Ok(peers)
    }
}

impl Handler<InboundRaftMessage> for Store {
    type Result = ();

    fn handle(&mut self, msg: InboundRaftMessage, _: &mut Self::Context) {
        // A peer that just started may not have registered with the Router yet.
        if let Some(peer) = self.peers.get(&msg.0.region_id) {
            peer.do_send(msg);
            return;
        }
        debug!(
            store = self.store_id(),
            region = msg.0.region_id,
            "dropping raft message for a region without a peer here"
        );
    }
}

impl Handler<Stop> for Store {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        for (_, peer) in self.peers.drain() {
            peer.do_send(Stop);
        }
        self.peer_ctx.router.do_send(Stop);
        ctx.stop();
    }
}
