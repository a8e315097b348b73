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
use tinykv_proto::raft_serverpb::{PeerState, RaftMessage, RegionLocalState};
use tracing::{debug, info, warn};

use crate::apply::ApplyFsm;
use crate::batch_writer::ApplyWriter;
use crate::bootstrap::load_regions;
use crate::engine::Cf;
use crate::error::{Error, Result};
use crate::keys;
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

    /// This store's peer of an initialized `region`.
    fn own_peer(&self, region: &metapb::Region) -> Result<metapb::Peer> {
        let store_id = self.store_id();
        region
            .peers
            .iter()
            .find(|p| p.store_id == store_id)
            .copied()
            .ok_or_else(|| {
                Error::Corruption(format!(
                    "region {} has no peer on store {store_id}",
                    region.id
                ))
            })
    }

    /// Tells the sender of `msg` it was removed from `region`, whose peer on this store
    /// was destroyed: a sender outside the region that knows an older epoch than the
    /// tombstone's is a peer removed while it was cut off, which would otherwise campaign
    /// forever (its own region still counts the destroyed peers as voters).
    fn tombstone_stale_sender(&self, msg: &RaftMessage, region: &metapb::Region) {
        let Some(from) = msg.from_peer else { return };
        let their_conf_ver = msg.region_epoch.map_or(0, |e| e.conf_ver);
        let dead_conf_ver = region.region_epoch.map_or(0, |e| e.conf_ver);
        if msg.is_tombstone
            || their_conf_ver == 0
            || their_conf_ver >= dead_conf_ver
            || region.peers.iter().any(|p| p.id == from.id)
        {
            return;
        }
        debug!(region = msg.region_id, to = ?from, "telling a removed peer it is gone");
        self.peer_ctx.transport.send(RaftMessage {
            region_id: msg.region_id,
            from_peer: msg.to_peer,
            to_peer: Some(from),
            region_epoch: region.region_epoch,
            is_tombstone: true,
            ..Default::default()
        });
    }

    /// Creates a peer for a raft message of a region this store has no peer of: from the
    /// region state on disk if a split already wrote it, otherwise as an uninitialized
    /// peer that the leader will fill with a snapshot. A message older than a tombstone of
    /// the region is stale and creates nothing.
    fn create_peer_for(&mut self, msg: &RaftMessage) -> Result<Option<Addr<PeerFsm>>> {
        let Some(to) = msg.to_peer else {
            return Ok(None);
        };
        let state: Option<RegionLocalState> = self
            .peer_ctx
            .engine
            .get_msg(Cf::Meta, &keys::region_state_key(msg.region_id))?;
        let their_conf_ver = msg.region_epoch.map_or(0, |e| e.conf_ver);
        match state {
            Some(s) if s.state() == PeerState::Tombstone => {
                let dead_conf_ver = s
                    .region
                    .as_ref()
                    .and_then(|r| r.region_epoch)
                    .map_or(0, |e| e.conf_ver);
                if their_conf_ver <= dead_conf_ver {
                    debug!(region = msg.region_id, "message for a destroyed peer");
                    let region = s.region.unwrap_or_default();
                    self.tombstone_stale_sender(msg, &region);
                    return Ok(None);
                }
            }
            Some(s) => {
                let region = s.region.unwrap_or_default();
                if region.peers.contains(&to) {
                    return self.spawn_peer(region, to, false).map(Some);
                }
                return Ok(None);
            }
            None => {}
        }
        let placeholder = metapb::Region {
            id: msg.region_id,
            ..Default::default()
        };
        info!(
            region = msg.region_id,
            peer = to.id,
            "creating peer from a raft message"
        );
        self.spawn_peer(placeholder, to, false).map(Some)
    }

    /// Starts the PeerFsm and ApplyFsm of this store's `peer` of `region`.
    fn spawn_peer(
        &mut self,
        region: metapb::Region,
        peer: metapb::Peer,
        campaign: bool,
    ) -> Result<Addr<PeerFsm>> {
        let store_id = self.store_id();
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
        let mut fsm = PeerFsm::new(self.peer_ctx.clone(), peer, storage, apply)?;
        fsm.campaign_on_start = campaign;
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
            let peer = self.own_peer(&region)?;
            peers.push(self.spawn_peer(region, peer, false)?);
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
        match self.create_peer_for(&msg.0) {
            Ok(Some(peer)) => peer.do_send(msg),
            Ok(None) => {}
            Err(e) => warn!(region = msg.0.region_id, "cannot create peer: {e}"),
        }
    }
}

impl Handler<CreateSplitPeer> for Store {
    type Result = ();

    fn handle(&mut self, msg: CreateSplitPeer, _: &mut Self::Context) {
        if self.peers.contains_key(&msg.region.id) {
            // Already created from its region state by a message of a faster store.
            return;
        }
        let created = self
            .own_peer(&msg.region)
            .and_then(|peer| self.spawn_peer(msg.region.clone(), peer, msg.campaign));
        if let Err(e) = created {
            warn!(
                region = msg.region.id,
                "cannot create the peer of a split region: {e}"
            );
        }
    }
}

impl Handler<PeerDestroyed> for Store {
    type Result = ();

    fn handle(&mut self, msg: PeerDestroyed, _: &mut Self::Context) {
        if self.peers.get(&msg.region_id) == Some(&msg.peer) {
            self.peers.remove(&msg.region_id);
        }
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
