//! PeerFsm: one actor per region peer, owning its raft-rs `RawNode`.
//!
//! The PeerFsm turns events into raft progress and raft progress into work for others:
//!
//! - **Inputs**: ticks (one timer every `raft_base_tick_ms`, which also drives log GC and
//!   the size check), raft messages from other stores, client commands, [`Persisted`]
//!   from the raft-log writer and [`Applied`] from the apply path.
//! - **Sleep**: a region with nothing to do hibernates (see [`crate::hibernate`]): its
//!   timer stops until a message or a command wakes it.
//! - **Ready**: after handling inputs, the peer takes raft-rs's `Ready` once (a scheduled
//!   [`Effect::ScheduleReady`] coalesces the inputs that arrived together). Messages a
//!   leader may send before persisting go out at once; new entries and the hard state go to
//!   the raft-log writer as a [`WriteTask`] (raft-rs's async-ready protocol); messages that
//!   must wait for durability (a follower's append responses, votes) are held until the
//!   writer reports [`Persisted`]; committed entries go to the ApplyFsm with the proposals
//!   they answer.
//! - **Writes**: a command is checked (store, leadership, term, epoch, key range),
//!   encoded, and proposed; its callback waits as a [`Proposal`] keyed by (index, term).
//! - **Reads**: read-only commands use raft's ReadIndex: the leader confirms it is still
//!   leader with a heartbeat round, learns the commit index at that moment, and serves the
//!   read from the engine once its state machine has applied that index. Reads never touch
//!   the log.
//!
//! **Core and shell.** All of this is the [`Peer`] core: a plain struct that owns the
//! raft node, the proposals and the reads, and is driven by method calls. It never talks
//! to an actor, a timer or a thread itself; it pushes [`Effect`]s (persist this `Ready`,
//! hand these entries to the ApplyFsm, start ticking, verify this snapshot off-thread...)
//! onto an outbox. The [`PeerFsm`] actor is the thin shell around it: it turns actor
//! messages into core calls and carries the effects out. The core's unit tests (`tests`)
//! drive three cores by hand instead, delivering every message, write and apply
//! themselves, so each scenario is deterministic and needs no actor system.
//!
//! The core is split by concern, each an `impl Peer` block of its own: `proposals`
//! (writes and admin commands), `reads`, `messages` (raft messages in and out,
//! snapshots), `ready` (raft's `Ready`, and what the ApplyFsm reports applied),
//! `ticks` (the timer, log GC, size checks), `sleep` (hibernation) and `merge`. This
//! file holds the core's state and lifecycle: creation, destruction, and the restart from
//! disk after raft panicked on a message; `fsm` holds the shell, `effects` the outbox's
//! vocabulary.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use prost::Message as _;
use raft::eraftpb::{self, ConfChange, ConfChangeType};
use raft::{ProgressState, RawNode, SnapshotStatus, StateRole};
use tinykv_proto::convert::{from_raft, to_raft};
use tinykv_proto::metapb;
use tinykv_proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, AdminResponse, CmdType, CommitMergeRequest, CommitMergeResponse,
    CompactLogRequest, GetResponse, RaftCmdRequest, RaftCmdResponse, RaftRequestHeader,
    RaftResponseHeader, Response, RollbackMergeRequest, SnapResponse, TransferLeaderResponse,
};
use tinykv_proto::raft_serverpb::{
    ExtraMessage, ExtraMessageType, MergeState, PeerState, RaftMessage, RegionLocalState,
};
use tracing::{debug, error, info, warn};

use crate::alive::AliveToken;
use crate::apply::{ApplyFsm, AttachPeer};
use crate::batch_writer::{RaftLogGcWriter, RaftLogWriter};
use crate::config::RaftStoreConfig;
use crate::engine::{Cf, Engine, Mutation};
use crate::error::{Error, Result};
use crate::hibernate::{self, FollowerView, Hibernation};
use crate::id_alloc::IdAllocator;
use crate::inbound;
use crate::keys;
use crate::metrics;
use crate::msg::*;
use crate::peer_storage::{self, PeerStorage};
use crate::proposal_batch::ProposalBatch;
use crate::router::Router;
use crate::slog_bridge::raft_logger;
use crate::snapshot;
use crate::span_entry::SpanEntry;
use crate::split_check;
use crate::stale_peer::{self, StaleCheck};
use crate::transport::Transport;
use crate::util;
use crate::validation;

mod apply_side;
mod effects;
mod fsm;
mod merge;
mod messages;
mod proposals;
mod reads;
mod ready;
mod sleep;
#[cfg(test)]
mod tests;
mod ticks;

pub use apply_side::ApplyHome;
use apply_side::ApplySide;
pub use effects::{Effect, ToApply, ToRouter};
pub use fsm::PeerFsm;
use reads::PendingRead;
use sleep::Wake;

/// Everything a PeerFsm needs from its store: the core's [`PeerEnv`] and the actors its
/// shell sends to.
#[derive(Clone)]
pub struct PeerContext {
    /// What the core uses directly.
    pub env: PeerEnv,
    /// The store's router.
    pub router: Addr<Router>,
    /// The store's raft-log writer.
    pub log_writer: Addr<RaftLogWriter>,
    /// The store's deleter of compacted log entries.
    pub log_gc: Addr<RaftLogGcWriter>,
}

/// What the [`Peer`] core uses directly: nothing in it is an actor.
#[derive(Clone)]
pub struct PeerEnv {
    /// This store's id.
    pub store_id: u64,
    /// Raftstore settings.
    pub cfg: Arc<RaftStoreConfig>,
    /// The store's engine (read by the peer's storage and by reads).
    pub engine: Engine,
    /// Outbound raft messages.
    pub transport: Arc<dyn Transport>,
    /// Ids for the regions and peers splits create.
    pub ids: Arc<dyn IdAllocator>,
    /// Keeps the store from counting as stopped while this peer lives.
    pub token: AliveToken,
}

/// Most compacted log entries deleted one key at a time; a longer run is range-deleted.
pub(super) const MAX_POINT_DELETES: u64 = 100_000;

/// A batch of client writes is proposed at once when its keys and values reach this
/// size, without waiting for the next ready.
pub(super) const MAX_BATCH_BYTES: usize = 256 * 1024;

/// The peers a peer has heard of (its region's, and any that sent it a message), to
/// address its messages by peer id. A region has a handful of peers, so searching a small
/// vector costs no more than hashing, and takes a fraction of a map's memory (a map
/// reserves room on every insert, even of a peer it holds: ten thousand sleeping regions
/// paid ~200 bytes each).
#[derive(Debug, Default)]
struct PeerCache(Vec<metapb::Peer>);

impl PeerCache {
    /// The peer with id `id`, if known.
    fn get(&self, id: u64) -> Option<metapb::Peer> {
        self.0.iter().find(|p| p.id == id).copied()
    }

    /// Learns (or learns again) `peer`'s store.
    fn insert(&mut self, peer: metapb::Peer) {
        match self.0.iter_mut().find(|p| p.id == peer.id) {
            Some(known) => *known = peer,
            None => self.0.push(peer),
        }
    }
}

/// The peer core; see the module documentation.
pub struct Peer {
    env: PeerEnv,
    peer: metapb::Peer,
    region_id: u64,
    raft: RawNode<PeerStorage>,
    /// What this peer wants done, in order, not yet taken by its driver.
    outbox: Vec<Effect>,
    proposals: VecDeque<Proposal>,
    /// Writes forwarded to the leader, not yet handed to the ApplyFsm.
    forwarded: Vec<ForwardedProposal>,
    /// Client writes waiting to be proposed together at the next ready.
    write_batch: ProposalBatch,
    /// With `lease_reads`: until when this leader may serve reads without a heartbeat
    /// round.
    lease_until: Option<Instant>,
    /// When the last leader transfer began; rounds started before do not renew the lease.
    lease_fence: Instant,
    pending_reads: VecDeque<PendingRead>,
    next_read_id: u64,
    /// Messages of `Ready`s that may only be sent once that `Ready` is durable.
    unpersisted_msgs: VecDeque<(u64, Vec<eraftpb::Message>)>,
    peer_cache: PeerCache,
    ready_scheduled: bool,
    reported_leader: Option<u64>,
    /// Highest log index handed to the ApplyFsm.
    sent_to_apply: u64,
    /// The `Ready` number and index of a snapshot being persisted: once it is durable,
    /// raft's applied index jumps to the snapshot's.
    persisting_snapshot: Option<(u64, u64)>,
    /// A snapshot is being generated on a blocking thread.
    generating_snapshot: bool,
    /// The peer destroyed itself, or stopped to restart from disk, and only waits to
    /// stop.
    destroyed: bool,
    /// A snapshot from the leader is being verified before raft sees it.
    verifying_snapshot: bool,
    /// The last snapshot that passed verification, kept for when raft hands it back to
    /// be persisted.
    verified_snapshot: Option<Box<snapshot::VerifiedSnapshot>>,
    /// A check, in flight, of whether this peer was removed from its region.
    stale_check: Option<StaleCheck>,
    /// Tests: the next message stepped makes raft "panic".
    #[cfg(test)]
    panic_on_next_step: bool,
    /// The (term, index) of the last CompactLog this peer proposed as leader; another is
    /// proposed only once it applied or the term changed.
    compact_proposed: Option<(u64, u64)>,
    /// Approximate bytes of the entries in the raft log, for the size limit of log GC:
    /// grows with every appended entry and shrinks in proportion to what a compaction
    /// removes. It starts at zero after a restart, as TiKV's does, so the count limit
    /// bounds a log the hint does not know about.
    log_size_hint: u64,
    /// Every raft log entry below this index has been handed to the RaftLogGcWriter for
    /// deletion (unknown until this peer's first compaction).
    log_deleted_below: Option<u64>,
    /// Bytes written since the last size check.
    size_diff_hint: u64,
    /// Region size found by the last size check.
    approximate_size: Option<u64>,
    /// A size check is running on a blocking thread.
    checking_size: bool,
    /// How the peer begins when its actor starts.
    pub start: PeerStart,
    /// Followers raft is sending a snapshot to, and since when (leader only).
    snapshot_waits: HashMap<u64, Instant>,
    /// Whether the peer sleeps, and the leader's round of asking its followers.
    hibernation: Hibernation,
    /// Woken by a command or a message whose own traffic may tell the other peers: the
    /// next ready checks that it did (see [`sleep::Wake::Deferred`]).
    wake_unannounced: bool,
    /// Set while this region is a frozen merge source (see `merge`).
    merge_state: Option<Box<MergeState>>,
    /// Source leader: the tick its CommitMerge request (or RollbackMerge) went out, while
    /// unanswered.
    commit_merge_asked: Option<u64>,
    /// Source leader: the term in which it asked for the CommitMerge, if it did.
    commit_merge_asked_in: Option<u64>,
    /// Source leader: the tick it first found the PrepareMerge applied.
    merge_frozen_since: Option<u64>,
    /// A digest of the last report handed to the Router for the placement driver (leader
    /// only): the report itself is a few hundred bytes, ten thousand leaders' megabytes.
    last_report: Option<u64>,
    /// Ticks since the peer started, for the log GC and size check intervals.
    ticks: u64,
    /// The number of the last `Ready` handed to the raft-log writer and not yet reported
    /// persisted.
    unpersisted_ready: Option<u64>,
    span: tracing::Span,
}

/// The `tracing` span a peer's PeerFsm and ApplyFsm log under: one per peer, since each
/// costs memory in the subscriber's registry for as long as the peer lives.
pub fn peer_span(store_id: u64, region_id: u64, peer_id: u64) -> tracing::Span {
    tracing::info_span!("peer", store = store_id, region = region_id, peer = peer_id)
}

/// How a new peer begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerStart {
    /// Ticking, as a follower waiting to hear from its leader: a peer created for a raft
    /// message or a membership change, or a split's new region whose parent followed.
    Follow,
    /// Campaigning at once: a split's new region whose parent led.
    Campaign,
    /// Loaded from disk as its store starts: asleep if its region may sleep (see
    /// [`crate::hibernate`], "Restarting"), else as [`PeerStart::Follow`].
    Restart,
}

impl Peer {
    /// Builds the peer of `storage`'s region on this store; `merge_state` is what its
    /// region state records if the region is a frozen merge source. Nothing happens until
    /// [`Peer::on_start`].
    pub fn new(
        env: PeerEnv,
        (peer, span): (metapb::Peer, tracing::Span),
        storage: PeerStorage,
        merge_state: Option<MergeState>,
    ) -> Result<Peer> {
        let region_id = storage.region().id;
        let cfg = &env.cfg;
        let raft_cfg = raft::Config {
            id: peer.id,
            election_tick: cfg.raft_election_timeout_ticks,
            heartbeat_tick: cfg.raft_heartbeat_ticks,
            applied: storage.applied_index(),
            max_size_per_msg: cfg.raft_max_size_per_msg,
            max_inflight_msgs: cfg.raft_max_inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            read_only_option: raft::ReadOnlyOption::Safe,
            ..Default::default()
        };
        raft_cfg
            .validate()
            .map_err(|e| Error::InvalidRequest(format!("raft config: {e}")))?;
        let peer_cache = PeerCache(storage.region().peers.clone());
        let mut raft = RawNode::new(&raft_cfg, storage, &raft_logger())
            .map_err(|e| Error::Corruption(format!("region {region_id}: {e}")))?;
        // raft-rs gives every peer's progress a buffer of `max_inflight_msgs` indexes (2 KiB
        // each, three per region) that only a leader sending appends uses; it is allocated
        // again on first use. At ten thousand regions that is 60 MiB a store.
        raft.raft.maybe_free_inflight_buffers();
        Ok(Peer {
            env,
            peer,
            region_id,
            raft,
            outbox: Vec::new(),
            proposals: VecDeque::new(),
            forwarded: Vec::new(),
            write_batch: ProposalBatch::default(),
            lease_until: None,
            lease_fence: Instant::now(),
            pending_reads: VecDeque::new(),
            // Random, so that the ids of a restarted peer do not meet ones the leader may
            // still hold from before the restart.
            next_read_id: rand::random::<u32>() as u64,
            unpersisted_msgs: VecDeque::new(),
            peer_cache,
            ready_scheduled: false,
            reported_leader: None,
            sent_to_apply: 0,
            persisting_snapshot: None,
            generating_snapshot: false,
            destroyed: false,
            verifying_snapshot: false,
            verified_snapshot: None,
            stale_check: None,
            #[cfg(test)]
            panic_on_next_step: false,
            compact_proposed: None,
            log_size_hint: 0,
            log_deleted_below: None,
            size_diff_hint: 0,
            approximate_size: None,
            checking_size: false,
            start: PeerStart::Follow,
            snapshot_waits: HashMap::new(),
            hibernation: Hibernation::default(),
            wake_unannounced: false,
            merge_state: merge_state.map(Box::new),
            commit_merge_asked: None,
            commit_merge_asked_in: None,
            merge_frozen_since: None,
            last_report: None,
            ticks: 0,
            unpersisted_ready: None,
            span,
        })
    }

    pub(super) fn region(&self) -> &metapb::Region {
        self.raft.store().region()
    }

    pub(super) fn term(&self) -> u64 {
        self.raft.raft.term
    }

    pub(super) fn is_leader(&self) -> bool {
        self.raft.raft.state == StateRole::Leader
    }

    pub(super) fn leader_peer(&self) -> Option<metapb::Peer> {
        let id = self.raft.raft.leader_id;
        (id != raft::INVALID_ID)
            .then(|| self.peer_cache.get(id))
            .flatten()
    }

    pub(super) fn not_leader(&self) -> Error {
        Error::NotLeader {
            region_id: self.region_id,
            leader: self.leader_peer(),
        }
    }

    /// The effects pushed since the last call, in order, for the driver to carry out.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.outbox)
    }

    /// The span this peer's log lines go under.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// The peer destroyed itself or stopped to restart: it takes no more input.
    pub fn is_destroyed(&self) -> bool {
        self.destroyed
    }

    pub(super) fn schedule_ready(&mut self) {
        if !self.ready_scheduled {
            self.ready_scheduled = true;
            self.outbox.push(Effect::ScheduleReady);
        }
    }

    /// Starts the peer: ticking unless it restarts asleep, campaigning if it is alone or
    /// a split's new region whose parent led, and telling the Router its route.
    pub fn on_start(&mut self) {
        if !(self.start == PeerStart::Restart && self.sleep_from_start()) {
            self.start_ticking();
        }
        self.maybe_campaign();
        if self.start == PeerStart::Campaign && !self.is_leader() {
            let _ = self.raft.campaign();
        }
        self.report_route();
        self.schedule_ready();
    }

    /// The peer stopped: answers whatever still waits on it.
    pub fn on_stop(&mut self) {
        if self.hibernation.is_asleep() {
            metrics::HIBERNATING_PEERS.dec();
        }
        self.fail_all(&Error::Stopped);
    }

    /// The scheduled [`Effect::ScheduleReady`] came due: handles raft's `Ready`.
    pub fn on_ready_due(&mut self) {
        self.ready_scheduled = false;
        if !self.destroyed {
            self.handle_ready();
        }
    }

    /// A raft message from another store.
    pub fn on_inbound_message(&mut self, msg: RaftMessage) {
        if self.destroyed {
            return;
        }
        self.on_raft_message(msg);
        if !self.destroyed {
            self.schedule_ready();
        }
    }

    /// Tests: the next message stepped makes raft "panic".
    #[cfg(test)]
    pub(crate) fn panic_on_next_step(&mut self) {
        self.panic_on_next_step = true;
    }

    /// A command this peer proposes itself (a log compaction, a split by size, a merge's
    /// rollback), for its region as it is now.
    pub(super) fn own_admin_command(&self, admin: AdminRequest) -> RaftCmdRequest {
        RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: self.region_id,
                region_epoch: self.region().region_epoch,
                ..Default::default()
            }),
            admin_request: Some(admin),
            ..Default::default()
        }
    }

    /// A single-peer region elects itself at once instead of waiting out a timeout.
    pub(super) fn maybe_campaign(&mut self) {
        let region = self.region();
        if region.peers.len() == 1 && region.peers[0].id == self.peer.id && !self.is_leader() {
            let _ = self.raft.campaign();
        }
    }

    // ---- commands -------------------------------------------------------------------

    /// Removes this peer for good: its raft log and raft state go through the raft-log
    /// writer and its data, apply state and a tombstone region state through the apply
    /// writer, each queued behind this peer's earlier writes so none lands afterwards.
    pub(super) fn destroy(&mut self, reason: &str) {
        self.destroy_peer(reason, true);
    }

    /// Removes this peer of a merge source absorbed by its target here: like
    /// [`Self::destroy`], but the data stays, for it is the target's now.
    pub(super) fn destroy_merged(&mut self) {
        self.destroy_peer("merged into its target", false);
    }

    fn destroy_peer(&mut self, reason: &str, remove_data: bool) {
        if self.destroyed {
            return;
        }
        self.destroyed = true;
        info!(reason, "destroying peer");
        let region = self.region().clone();
        let id = self.region_id;
        // Two writes destroy a peer: its raft log and state through the RaftLogWriter
        // (behind the peer's earlier appends), its data through the ApplyWriter (behind
        // its earlier applies). Each carries the tombstone, so a crash between them never
        // leaves a live region state without its raft state.
        let mut raft_mutations = peer_storage::raft_state_removal(id);
        raft_mutations.extend(peer_storage::tombstone(&region));
        self.outbox.push(Effect::WriteLog(WriteTask {
            region_id: id,
            ready_number: 0,
            mutations: raft_mutations,
            must_sync: true,
            last_index: None,
            notify: None,
            flushed: None,
        }));
        let mut mutations = peer_storage::tombstone(&region);
        if remove_data && (!region.peers.is_empty() || region.region_epoch.is_some()) {
            mutations.extend(peer_storage::data_removal(&region));
        }
        self.outbox
            .push(Effect::Apply(ToApply::Destroy(DestroyApply { mutations })));
        self.outbox.push(Effect::Route(ToRouter::Destroyed));
        self.fail_all(&Error::RegionNotFound(id));
        self.outbox.push(Effect::Stop);
    }

    /// Runs `f` on raft, containing a panic: raft's in-memory state may then be
    /// half-updated, so the peer restarts from its state on disk (see [`Self::restart`]),
    /// like a crash of this one peer, instead of the whole node. `None` after a panic;
    /// `what` names what raft was given, for the log.
    pub(super) fn contain_raft<T>(
        &mut self,
        what: impl FnOnce() -> String,
        f: impl FnOnce(&mut RawNode<PeerStorage>) -> T,
    ) -> Option<T> {
        let raft = &mut self.raft;
        match crate::containment::contain(|| f(raft)) {
            Ok(result) => Some(result),
            Err(panic) => {
                let message = crate::containment::panic_message(panic.as_ref());
                error!("raft panicked on {}: {message}", what());
                self.restart();
                None
            }
        }
    }

    /// Stops this peer without touching its data, to start again from its state on disk,
    /// after raft-rs panicked on a message or a tick: its in-memory state can no longer be
    /// trusted.
    /// No `Ready` of that state is taken, so what is on disk (and what was sent) comes
    /// from sound states only: to raft this is a crash of one peer. The Store starts the
    /// peer again once every write it and its ApplyFsm queued has landed.
    pub(super) fn restart(&mut self) {
        if self.destroyed {
            return;
        }
        self.destroyed = true;
        error!("restarting this peer from its state on disk");
        metrics::peer_restarted();
        self.fail_all(&Error::Stopped);
        let (log_flushed, log_written) = tokio::sync::oneshot::channel();
        self.outbox.push(Effect::WriteLog(WriteTask {
            region_id: self.region_id,
            ready_number: 0,
            mutations: Vec::new(),
            must_sync: false,
            last_index: None,
            notify: None,
            flushed: Some(log_flushed),
        }));
        let (apply_flushed, apply_written) = tokio::sync::oneshot::channel();
        self.outbox.push(Effect::Apply(ToApply::Stop(StopApply {
            flushed: apply_flushed,
        })));
        self.outbox
            .push(Effect::Route(ToRouter::Restart(Box::pin(async move {
                let _ = log_written.await;
                let _ = apply_written.await;
            }))));
        self.outbox.push(Effect::Stop);
    }

    pub(super) fn status(&self) -> PeerStatus {
        let storage = self.raft.store();
        PeerStatus {
            region: storage.region().clone(),
            peer: self.peer,
            leader_id: self.raft.raft.leader_id,
            term: self.term(),
            commit_index: self.raft.raft.raft_log.committed,
            applied_index: storage.applied_index(),
            last_index: self.raft.raft.raft_log.last_index(),
            truncated_index: storage
                .apply_state()
                .truncated_state
                .as_ref()
                .map_or(0, |t| t.index),
            approximate_size: self.approximate_size,
            pending_peers: self.pending_peers(),
            hibernating: self.hibernation.is_asleep(),
            apply_parked: false,
        }
    }

    /// On a leader: the peers that lag behind the log this peer still keeps (they need a
    /// snapshot, or are being sent one). Empty on a follower.
    pub(super) fn pending_peers(&self) -> Vec<metapb::Peer> {
        if !self.is_leader() {
            return Vec::new();
        }
        let truncated = self
            .raft
            .store()
            .apply_state()
            .truncated_state
            .as_ref()
            .map_or(0, |t| t.index);
        let region = self.raft.store().region();
        self.raft
            .raft
            .prs()
            .iter()
            .filter(|(id, progress)| {
                **id != self.peer.id
                    && (progress.matched < truncated || progress.state == ProgressState::Snapshot)
            })
            .filter_map(|(id, _)| region.peers.iter().find(|p| p.id == *id).copied())
            .collect()
    }

    /// Answers everything waiting on this peer, which is stopping or destroyed: reads
    /// with `err` (nothing happened), proposals (its own and those forwarded to the leader
    /// but not yet handed to the ApplyFsm) with [`Error::Timeout`], because a
    /// proposed command may still be committed and applied by the other peers: a client
    /// that retried it could apply it twice.
    pub(super) fn fail_all(&mut self, err: &Error) {
        let term = self.term();
        for p in self.proposals.drain(..) {
            respond_error(p.callback, &Error::Timeout, term);
        }
        for p in self.forwarded.drain(..) {
            respond_error(p.callback, &Error::Timeout, term);
        }
        // Batched writes were never proposed.
        if let Some((_, callback)) = self.write_batch.take() {
            respond_error(callback, err, term);
        }
        for r in self.pending_reads.drain(..) {
            respond_error(r.callback, err, term);
        }
    }
}
