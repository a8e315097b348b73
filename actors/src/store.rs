//! Store: the actor that owns a store's peers.
//!
//! At start it reads every region state on disk and starts a PeerFsm/ApplyFsm pair for each
//! live one, spreading PeerFsms over the peer arbiters and ApplyFsms over the apply
//! arbiters by region id; each PeerFsm registers itself with the Router when it starts. Raft messages for regions
//! that have no peer here arrive at the Store (through the Router). On [`Stop`] it stops
//! every peer, the Router, and itself; the writers stop once nobody can reach them.
//!
//! Loading refuses, with [`Error::Corruption`] naming the region, a live region state that
//! cannot be decoded, holds no region or another region's id, and (through
//! [`PeerStorage::new`]) raft and apply state that contradict each other or the log. A
//! live region state that no longer lists this store is the one crash window of a peer's
//! removal: the removal was applied (the new region state written) but the store stopped
//! before the peer destroyed itself. Loading finishes that destruction instead of refusing.
//! A merge source whose target, on this store, already absorbed it (the target's newer
//! epoch covers its range: a snapshot of the merged target landed) is the same window of a
//! merged-away source; loading tombstones it and keeps its data, which is the target's.
//!
//! Loaded peers start asleep (see [`crate::hibernate`], "Restarting"). Those that voted for
//! themselves in their last term may have led their region when the store went down, and
//! if so their region has no leader now; those that voted for nobody may belong to a
//! region that never elected one (a freshly bootstrapped cluster). The Store wakes them,
//! [`RESTART_WAKES_PER_TICK`] per raft tick, so that such regions elect a leader within
//! seconds of the restart without all campaigning at once. The others stay asleep, and so
//! would a peer removed from its region while the store was down: nobody sends a removed
//! peer anything. The Store asks each of them, at the same pace and starting an election
//! timeout after the load (once the node listens for the answers), to check with the
//! other stores that it is still a member ([`CheckMembership`]); one that is not destroys
//! itself. The check wakes nobody.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;
use tinykv_proto::metapb;
use tinykv_proto::raft_serverpb::{PeerState, RaftMessage, RegionLocalState};
use tracing::{debug, error, info, warn};

use crate::apply::{ApplyContext, ApplyFsm};
use crate::batch_writer::ApplyWriter;
use crate::engine::{Cf, Engine};
use crate::error::{Error, Result};
use crate::keys;
use crate::msg::*;
use crate::peer::{ApplyHome, PeerContext, PeerFsm, PeerStart};
use crate::peer_storage::{self, PeerStorage};
use crate::session::SessionTable;
use crate::util;

/// How many restarted peers whose region may have no leader the Store wakes per raft tick
/// (see the module documentation): a thousand elections a second at the default tick,
/// which two cores serve without their heartbeats falling behind.
pub const RESTART_WAKES_PER_TICK: usize = 100;

/// How often the Store samples the engine's memory for the metrics.
const ENGINE_MEMORY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts a peer for every live region on disk; answers their addresses.
#[derive(Message)]
#[rtype(result = "Result<Vec<Addr<PeerFsm>>>")]
pub struct LoadPeers;

/// The actor; see the module documentation.
pub struct Store {
    peer_ctx: PeerContext,
    peer_arbiters: Vec<ArbiterHandle>,
    /// One per apply arbiter: where a region's ApplyFsm runs, and with what.
    apply_homes: Vec<Arc<ApplyHome>>,
    peers: HashMap<u64, Addr<PeerFsm>>,
    /// Regions whose peer stopped to restart from disk, waiting for its writes to land;
    /// messages for them are dropped meanwhile.
    restarting: HashSet<u64>,
    /// Restarted peers whose region may have no leader, still to wake.
    to_wake: Vec<Addr<PeerFsm>>,
    /// Restarted peers left asleep, still to ask whether they are members
    /// ([`CheckMembership`]).
    to_check: Vec<Addr<PeerFsm>>,
}

impl Store {
    /// A store with no peers yet.
    pub fn new(
        peer_ctx: PeerContext,
        apply_writer: Addr<ApplyWriter>,
        peer_arbiters: Vec<ArbiterHandle>,
        apply_arbiters: Vec<ArbiterHandle>,
    ) -> Store {
        let context = ApplyContext {
            writer: apply_writer,
            engine: peer_ctx.env.engine.clone(),
            router: peer_ctx.router.clone(),
            token: peer_ctx.env.token.clone(),
        };
        let apply_homes = apply_arbiters
            .into_iter()
            .map(|arbiter| {
                Arc::new(ApplyHome {
                    arbiter,
                    context: context.clone(),
                })
            })
            .collect();
        Store {
            peer_ctx,
            peer_arbiters,
            apply_homes,
            peers: HashMap::new(),
            restarting: HashSet::new(),
            to_wake: Vec::new(),
            to_check: Vec::new(),
        }
    }

    fn store_id(&self) -> u64 {
        self.peer_ctx.env.store_id
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
            .env
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
                    // The tombstone remembers the region: answer a removed peer that
                    // still campaigns (see `util::tombstone_for_stale_sender`).
                    if let Some(tombstone) = util::tombstone_for_stale_sender(msg, &region) {
                        debug!(region = msg.region_id, to = ?tombstone.to_peer, "telling a removed peer it is gone");
                        self.peer_ctx.env.transport.send(tombstone);
                    }
                    return Ok(None);
                }
            }
            Some(s) => {
                let region = s.region.unwrap_or_default();
                if region.peers.contains(&to) {
                    return self.spawn_peer(region, to, PeerStart::Follow).map(Some);
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
        self.spawn_peer(placeholder, to, PeerStart::Follow)
            .map(Some)
    }

    /// Starts the PeerFsm and ApplyFsm of this store's `peer` of `region`. A peer loaded
    /// at start ([`PeerStart::Restart`]) whose region may have no leader (its last vote, on
    /// disk, was for itself or for nobody) is queued to be woken.
    fn spawn_peer(
        &mut self,
        region: metapb::Region,
        peer: metapb::Peer,
        start: PeerStart,
    ) -> Result<Addr<PeerFsm>> {
        let store_id = self.store_id();
        let storage = PeerStorage::new(self.peer_ctx.env.engine.clone(), region.clone())?;
        // A peer that voted for itself in its last term may have led; one that voted for
        // nobody may belong to a region that never elected a leader (a fresh bootstrap).
        let to_wake = start == PeerStart::Restart
            && storage
                .raft_state()
                .hard_state
                .as_ref()
                .is_none_or(|hs| hs.vote == peer.id || hs.vote == 0);
        let apply_state = *storage.apply_state();
        let sessions = SessionTable::load(&self.peer_ctx.env.engine, &region)?;
        let merge_state = peer_storage::load_merge_state(&self.peer_ctx.env.engine, region.id)?;
        let slot = region.id as usize;
        let peer_arbiter = &self.peer_arbiters[slot % self.peer_arbiters.len()];
        let apply_home = self.apply_homes[slot % self.apply_homes.len()].clone();
        let context = apply_home.context.clone();
        let span = crate::peer::peer_span(store_id, region.id, peer.id);
        let (apply_span, apply_region) = (span.clone(), region.clone());
        let apply_merge_state = merge_state.clone();
        let apply = ApplyFsm::start_in_arbiter(&apply_home.arbiter, move |_| {
            ApplyFsm::new(
                apply_span,
                apply_region,
                (apply_state, sessions, apply_merge_state),
                context,
            )
        });
        let mut fsm = PeerFsm::new(
            self.peer_ctx.clone(),
            (peer, span),
            storage,
            (apply, apply_home),
            merge_state,
        )?;
        fsm.set_start(start);
        let addr = PeerFsm::start_in_arbiter(peer_arbiter, move |_| fsm);
        self.peers.insert(region.id, addr.clone());
        if to_wake {
            self.to_wake.push(addr.clone());
        } else if start == PeerStart::Restart {
            self.to_check.push(addr.clone());
        }
        Ok(addr)
    }

    /// Sets the engine memory gauges ([`crate::metrics::ENGINE_MEMORY`]).
    fn sample_engine_memory(&self) {
        let engine = &self.peer_ctx.env.engine;
        crate::metrics::set_engine_memory(
            self.store_id(),
            engine.write_buffer_bytes(),
            engine.block_cache_bytes(),
        );
        crate::metrics::set_engine_housekeeping(self.store_id(), &engine.housekeeping());
    }

    /// Sends `msg` to the next [`RESTART_WAKES_PER_TICK`] restarted peers of the queue
    /// `queue` picks (those to wake, or those to ask whether they are members), and to the
    /// rest on later ticks.
    fn pace_restarted_peers<M>(
        &mut self,
        ctx: &mut Context<Self>,
        queue: fn(&mut Store) -> &mut Vec<Addr<PeerFsm>>,
        msg: M,
    ) where
        M: Message + Copy + Send + 'static,
        M::Result: Send,
        PeerFsm: Handler<M>,
    {
        let peers = queue(self);
        let now = peers.len().min(RESTART_WAKES_PER_TICK);
        for peer in peers.drain(..now) {
            peer.do_send(msg);
        }
        if !queue(self).is_empty() {
            ctx.run_later(self.peer_ctx.env.cfg.base_tick(), move |store, ctx| {
                store.pace_restarted_peers(ctx, queue, msg)
            });
        }
    }
}

impl Actor for Store {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::MAILBOX_CAPACITY);
        self.sample_engine_memory();
        ctx.run_interval(ENGINE_MEMORY_INTERVAL, |store, _| {
            store.sample_engine_memory()
        });
    }
}

impl Handler<LoadPeers> for Store {
    type Result = Result<Vec<Addr<PeerFsm>>>;

    fn handle(&mut self, _: LoadPeers, ctx: &mut Self::Context) -> Self::Result {
        let mut peers = Vec::new();
        for (region, peer) in regions_to_load(&self.peer_ctx.env.engine, self.store_id())? {
            peers.push(self.spawn_peer(region, peer, PeerStart::Restart)?);
        }
        self.pace_restarted_peers(ctx, |store| &mut store.to_wake, WakeUp);
        // Once the node listens: the answers come back over the network.
        ctx.run_later(self.peer_ctx.env.cfg.election_timeout(), |store, ctx| {
            store.pace_restarted_peers(ctx, |store| &mut store.to_check, CheckMembership)
        });
        info!(
            store = self.store_id(),
            peers = peers.len(),
            "store started"
        );
        Ok(peers)
    }
}

/// The live regions on disk that this store holds a peer of, with that peer; see the module
/// documentation for what is refused and what is repaired.
pub(crate) fn regions_to_load(
    engine: &Engine,
    store_id: u64,
) -> Result<Vec<(metapb::Region, metapb::Peer)>> {
    let mut states = Vec::new();
    let mut failure = None;
    let end = [keys::REGION_STATE_PREFIX_KEY[0] + 1];
    engine.scan(
        Cf::Meta,
        keys::REGION_STATE_PREFIX_KEY,
        &end,
        |key, value| {
            let region_id = key
                .get(1..9)
                .and_then(|id| id.try_into().ok())
                .map(u64::from_be_bytes)
                .filter(|_| key.len() == 10);
            let Some(region_id) = region_id else {
                failure = Some(Error::Corruption(format!(
                    "a region state under a malformed key {key:?}"
                )));
                return false;
            };
            match <RegionLocalState as prost::Message>::decode(value) {
                Ok(state) => {
                    states.push((region_id, state));
                    true
                }
                Err(e) => {
                    failure = Some(Error::Corruption(format!(
                        "region {region_id}: undecodable region state: {e}"
                    )));
                    false
                }
            }
        },
    )?;
    if let Some(e) = failure {
        return Err(e);
    }
    let live: HashMap<u64, metapb::Region> = states
        .iter()
        .filter(|(_, s)| s.state() != PeerState::Tombstone)
        .filter_map(|(id, s)| Some((*id, s.region.clone()?)))
        .collect();
    let mut regions = Vec::new();
    for (region_id, state) in states {
        if let Some(source) = absorbed_source(&state, &live) {
            finish_merged_away(engine, store_id, source)?;
            continue;
        }
        if state.state() == PeerState::Tombstone {
            // A peer destroyed by another region's write (a merge's target tombstones its
            // source) may have stopped before its own raft state was removed.
            if engine
                .get(Cf::Raft, &keys::raft_state_key(region_id))?
                .is_some()
            {
                engine.write(&peer_storage::raft_state_removal(region_id), true)?;
            }
            continue;
        }
        let Some(region) = state.region.clone() else {
            return Err(Error::Corruption(format!(
                "region {region_id}: its {:?} region state holds no region",
                state.state()
            )));
        };
        if region.id != region_id {
            return Err(Error::Corruption(format!(
                "region {region_id}: its region state describes region {}",
                region.id
            )));
        }
        match region.peers.iter().find(|p| p.store_id == store_id) {
            Some(peer) => {
                let peer = *peer;
                regions.push((region, peer));
            }
            None => finish_removal(engine, store_id, region)?,
        }
    }
    Ok(regions)
}

/// The region of a merge source (`state` frozen by its PrepareMerge) whose target, live
/// on this store among `live`, has absorbed it: the target's epoch is newer than the one
/// the merge was prepared against and its range covers the source's. That is the crash
/// window of a source merged away through a snapshot of its target: the target's
/// snapshot landed, the source's peer stopped, but its tombstone had not reached the disk.
fn absorbed_source(
    state: &RegionLocalState,
    live: &HashMap<u64, metapb::Region>,
) -> Option<metapb::Region> {
    if state.state() != PeerState::Merging {
        return None;
    }
    let source = state.region.as_ref()?;
    let prepared = state.merge_state.as_ref()?.target.as_ref()?;
    let target = live.get(&prepared.id)?;
    let version = |r: &metapb::Region| r.region_epoch.map_or(0, |e| e.version);
    (version(target) > version(prepared) && util::covers(target, source)).then(|| source.clone())
}

/// Completes the destruction of this store's peer of merge source `source`, which its
/// target absorbed before the store stopped (see [`absorbed_source`]): its raft log and
/// state go and a tombstone is written, in one synced batch; its data stays, being the
/// target's now.
fn finish_merged_away(engine: &Engine, store_id: u64, source: metapb::Region) -> Result<()> {
    warn!(
        store = store_id,
        region = source.id,
        "the merge source was absorbed by its target before the node stopped: destroying the stale peer"
    );
    let mut mutations = peer_storage::raft_state_removal(source.id);
    mutations.extend(peer_storage::tombstone(&source));
    engine.write(&mutations, true)
}

/// Completes the destruction of this store's peer of `region`, whose removal was applied
/// (the region no longer lists this store) before the store stopped: the same deletions as
/// the PeerFsm's own destruction (raft log and state, apply state, the region's data) and a
/// tombstone, in one synced batch.
fn finish_removal(engine: &Engine, store_id: u64, region: metapb::Region) -> Result<()> {
    let id = region.id;
    warn!(
        store = store_id,
        region = id,
        "the region no longer includes this store (its removal was applied before the node stopped): destroying the stale peer"
    );
    let mut mutations = peer_storage::raft_state_removal(id);
    mutations.extend(peer_storage::data_removal(&region));
    mutations.extend(peer_storage::tombstone(&region));
    engine.write(&mutations, true)
}

impl Handler<InboundRaftMessage> for Store {
    type Result = ();

    fn handle(&mut self, msg: InboundRaftMessage, _: &mut Self::Context) {
        if self.restarting.contains(&msg.0.region_id) {
            return;
        }
        // A peer that just started may not have registered with the Router yet.
        if let Some(peer) = self.peers.get(&msg.0.region_id) {
            peer.do_send(msg);
            return;
        }
        if crate::stale_peer::is_check(&msg.0) {
            self.answer_stale_check(&msg.0);
            return;
        }
        match self.create_peer_for(&msg.0) {
            Ok(Some(peer)) => peer.do_send(msg),
            Ok(None) => {}
            Err(e) => warn!(region = msg.0.region_id, "cannot create peer: {e}"),
        }
    }
}

impl Store {
    /// Answers another store's peer asking how this store sees a region it holds no peer
    /// of: with the region its tombstone records, or with nothing.
    fn answer_stale_check(&self, question: &RaftMessage) {
        let state: Option<RegionLocalState> = match self
            .peer_ctx
            .env
            .engine
            .get_msg(Cf::Meta, &keys::region_state_key(question.region_id))
        {
            Ok(state) => state,
            Err(e) => {
                warn!(
                    region = question.region_id,
                    "cannot read a region state: {e}"
                );
                return;
            }
        };
        let tombstone = state
            .filter(|s| s.state() == PeerState::Tombstone)
            .and_then(|s| s.region);
        let answer = crate::stale_peer::answer(question, tombstone.as_ref(), tombstone.is_some());
        if let Some(answer) = answer {
            self.peer_ctx.env.transport.send(answer);
        }
    }
}

impl Handler<RestartPeer> for Store {
    type Result = ();

    fn handle(&mut self, msg: RestartPeer, ctx: &mut Self::Context) {
        if self.peers.get(&msg.region_id) == Some(&msg.peer) {
            self.peers.remove(&msg.region_id);
        }
        let region_id = msg.region_id;
        self.restarting.insert(region_id);
        ctx.spawn(msg.flushed.into_actor(self).map(move |(), store, _| {
            store.restarting.remove(&region_id);
            if let Err(e) = store.start_from_disk(region_id) {
                error!(region = region_id, "cannot restart the peer from disk: {e}");
            }
        }));
    }
}

impl Store {
    /// Starts this store's peer of `region_id` from its region state on disk, if it is
    /// live and lists this store.
    fn start_from_disk(&mut self, region_id: u64) -> Result<()> {
        let state: Option<RegionLocalState> = self
            .peer_ctx
            .env
            .engine
            .get_msg(Cf::Meta, &keys::region_state_key(region_id))?;
        let Some(region) = state
            .filter(|s| s.state() != PeerState::Tombstone)
            .and_then(|s| s.region)
        else {
            return Ok(());
        };
        let Some(peer) = region
            .peers
            .iter()
            .find(|p| p.store_id == self.store_id())
            .copied()
        else {
            return Ok(());
        };
        info!(region = region_id, "peer restarted from its state on disk");
        self.spawn_peer(region, peer, PeerStart::Follow).map(|_| ())
    }
}

impl Handler<CreateSplitPeer> for Store {
    type Result = ();

    fn handle(&mut self, msg: CreateSplitPeer, _: &mut Self::Context) {
        if self.peers.contains_key(&msg.region.id) {
            // Already created from its region state by a message of a faster store.
            return;
        }
        let created = self.own_peer(&msg.region).and_then(|peer| {
            let start = if msg.campaign {
                PeerStart::Campaign
            } else {
                PeerStart::Follow
            };
            self.spawn_peer(msg.region.clone(), peer, start)
        });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::{first_region, initial_region_mutations};
    use crate::engine::Mutation;

    fn region(id: u64, start: &[u8], end: &[u8], stores: &[u64]) -> metapb::Region {
        metapb::Region {
            id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 2,
                version: 2,
            }),
            peers: stores
                .iter()
                .map(|&s| metapb::Peer {
                    id: id * 10 + s,
                    store_id: s,
                })
                .collect(),
        }
    }

    fn put(cf: Cf, key: &[u8], value: &[u8]) -> Mutation {
        Mutation::Put {
            cf,
            key: key.to_vec(),
            value: value.to_vec(),
        }
    }

    #[test]
    fn live_regions_of_this_store_are_loaded_and_tombstones_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let mut muts = initial_region_mutations(&first_region(&[1, 2, 3]));
        muts.push(Mutation::put_msg(
            Cf::Meta,
            keys::region_state_key(9),
            &RegionLocalState {
                state: PeerState::Tombstone as i32,
                region: Some(region(9, b"", b"", &[2, 3])),
                merge_state: None,
            },
        ));
        engine.write(&muts, true).unwrap();
        let loaded = regions_to_load(&engine, 2).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!((loaded[0].0.id, loaded[0].1.store_id), (1, 2));
    }

    #[test]
    fn malformed_region_states_are_refused_naming_the_region() {
        let no_region = RegionLocalState {
            state: PeerState::Normal as i32,
            region: None,
            merge_state: None,
        };
        let other_id = RegionLocalState {
            state: PeerState::Normal as i32,
            region: Some(region(8, b"", b"", &[1])),
            merge_state: None,
        };
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Mutation::put_msg(Cf::Meta, keys::region_state_key(4), &no_region),
                "region 4: its Normal region state holds no region",
            ),
            (
                Mutation::put_msg(Cf::Meta, keys::region_state_key(4), &other_id),
                "region 4: its region state describes region 8",
            ),
            (
                put(Cf::Meta, &keys::region_state_key(4), b"\xff\xff\xff"),
                "region 4: undecodable region state",
            ),
        ];
        for (mutation, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            let engine = Engine::open(dir.path()).unwrap();
            engine.write(&[mutation], true).unwrap();
            let err = regions_to_load(&engine, 1).unwrap_err();
            assert!(matches!(err, Error::Corruption(_)), "{err:?}");
            assert!(err.to_string().contains(expected), "{err}");
        }
    }

    /// A crash between applying this store's removal and destroying the peer leaves a live
    /// region state without this store; loading finishes the destruction.
    #[test]
    fn an_interrupted_removal_is_finished_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let removed = region(3, b"b", b"d", &[2, 3]);
        let mut muts = initial_region_mutations(&removed);
        muts.push(put(Cf::Raft, &keys::raft_log_key(3, 6), b"entry"));
        muts.extend([
            put(Cf::Default, b"a", b"outside"),
            put(Cf::Default, b"b", b"inside"),
            put(Cf::Write, b"c", b"inside"),
            put(Cf::Default, b"d", b"outside"),
        ]);
        engine.write(&muts, true).unwrap();

        assert!(regions_to_load(&engine, 1).unwrap().is_empty());
        let state: RegionLocalState = engine
            .get_msg(Cf::Meta, &keys::region_state_key(3))
            .unwrap()
            .unwrap();
        assert_eq!(state.state(), PeerState::Tombstone);
        assert_eq!(state.region.unwrap(), removed);
        for (cf, key) in [
            (Cf::Raft, keys::raft_state_key(3)),
            (Cf::Raft, keys::raft_log_key(3, 6)),
            (Cf::Meta, keys::apply_state_key(3)),
            (Cf::Default, b"b".to_vec()),
            (Cf::Write, b"c".to_vec()),
        ] {
            assert_eq!(engine.get(cf, &key).unwrap(), None, "{cf:?} {key:?}");
        }
        assert!(engine.get(Cf::Default, b"a").unwrap().is_some());
        assert!(engine.get(Cf::Default, b"d").unwrap().is_some());
        // The next start finds only the tombstone.
        assert!(regions_to_load(&engine, 1).unwrap().is_empty());
    }
}
