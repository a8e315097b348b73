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
//!   [`HandleReady`] notification coalesces the inputs that arrived together). Messages a
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
    AdminCmdType, AdminRequest, AdminResponse, CmdType, CompactLogRequest, GetResponse,
    RaftCmdRequest, RaftCmdResponse, RaftRequestHeader, RaftResponseHeader, Response, SnapResponse,
    TransferLeaderResponse,
};
use tinykv_proto::raft_serverpb::{ExtraMessage, ExtraMessageType, RaftMessage};
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
use crate::split_check;
use crate::stale_peer::{self, StaleCheck};
use crate::transport::Transport;
use crate::util;
use crate::validation;

/// Everything a PeerFsm needs from its store.
#[derive(Clone)]
pub struct PeerContext {
    /// This store's id.
    pub store_id: u64,
    /// Raftstore settings.
    pub cfg: Arc<RaftStoreConfig>,
    /// The store's engine.
    pub engine: Engine,
    /// Outbound raft messages.
    pub transport: Arc<dyn Transport>,
    /// The store's router.
    pub router: Addr<Router>,
    /// The store's raft-log writer.
    pub log_writer: Addr<RaftLogWriter>,
    /// The store's deleter of compacted log entries.
    pub log_gc: Addr<RaftLogGcWriter>,
    /// Ids for the regions and peers splits create.
    pub ids: Arc<dyn IdAllocator>,
    /// Keeps the store from counting as stopped while this peer lives.
    pub token: AliveToken,
}

/// A read waiting for its ReadIndex to be confirmed and applied.
struct PendingRead {
    request: RaftCmdRequest,
    callback: Callback,
    /// The ReadIndex request this read rides on, once raft was asked (it ignores the
    /// request until the leader has committed an entry of its own term, so the ask waits
    /// until then). All reads waiting at that moment share one request. With the moment
    /// it was asked.
    batch: Option<(u64, Instant)>,
    read_index: Option<u64>,
}

/// The context of a ReadIndex request: the asking peer's id and its batch number. The
/// leader keeps its pending requests keyed by context and ignores a request whose context
/// is already pending, so contexts must differ across peers: with bare batch numbers, two
/// followers' batches with the same number met at the leader and the second was dropped,
/// its reads answered only after an election timeout.
fn read_context(peer_id: u64, batch: u64) -> Vec<u8> {
    let mut ctx = Vec::with_capacity(16);
    ctx.extend_from_slice(&peer_id.to_be_bytes());
    ctx.extend_from_slice(&batch.to_be_bytes());
    ctx
}

/// The batch number of a ReadIndex context of `peer_id`'s making.
fn read_batch(peer_id: u64, ctx: &[u8]) -> Option<u64> {
    let (peer, batch) = ctx.split_at_checked(8)?;
    let peer = u64::from_be_bytes(peer.try_into().ok()?);
    let batch = u64::from_be_bytes(batch.try_into().ok()?);
    (peer == peer_id).then_some(batch)
}

/// Most compacted log entries deleted one key at a time; a longer run is range-deleted.
const MAX_POINT_DELETES: u64 = 100_000;

/// A batch of client writes is proposed at once when its keys and values reach this
/// size, without waiting for the next ready.
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Internal notification: take and handle raft's `Ready`.
#[derive(Message)]
#[rtype(result = "()")]
struct HandleReady;

/// The actor; see the module documentation.
pub struct PeerFsm {
    ctx: PeerContext,
    peer: metapb::Peer,
    region_id: u64,
    raft: RawNode<PeerStorage>,
    apply: Addr<ApplyFsm>,
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
    peer_cache: HashMap<u64, metapb::Peer>,
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
    verified_snapshot: Option<snapshot::VerifiedSnapshot>,
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
    /// Campaign as soon as the peer starts (a split's new region whose parent led).
    pub campaign_on_start: bool,
    /// Followers raft is sending a snapshot to, and since when (leader only).
    snapshot_waits: HashMap<u64, Instant>,
    /// Whether the peer sleeps, and the leader's round of asking its followers.
    hibernation: Hibernation,
    /// The last report handed to the Router for the placement driver (leader only).
    last_report: Option<LeaderReport>,
    /// The tick timer, while awake.
    tick_timer: Option<SpawnHandle>,
    /// Ticks since the peer started, for the log GC and size check intervals.
    ticks: u64,
    /// The number of the last `Ready` handed to the raft-log writer and not yet reported
    /// persisted.
    unpersisted_ready: Option<u64>,
    span: tracing::Span,
}

impl PeerFsm {
    /// Builds the peer of `storage`'s region on this store. `apply` is its ApplyFsm.
    pub fn new(
        ctx: PeerContext,
        peer: metapb::Peer,
        storage: PeerStorage,
        apply: Addr<ApplyFsm>,
    ) -> Result<PeerFsm> {
        let region_id = storage.region().id;
        let span = tracing::info_span!(
            "peer",
            store = ctx.store_id,
            region = region_id,
            peer = peer.id
        );
        let cfg = &ctx.cfg;
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
        let peer_cache = storage.region().peers.iter().map(|p| (p.id, *p)).collect();
        let raft = RawNode::new(&raft_cfg, storage, &raft_logger())
            .map_err(|e| Error::Corruption(format!("region {region_id}: {e}")))?;
        Ok(PeerFsm {
            ctx,
            peer,
            region_id,
            raft,
            apply,
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
            campaign_on_start: false,
            snapshot_waits: HashMap::new(),
            hibernation: Hibernation::default(),
            last_report: None,
            tick_timer: None,
            ticks: 0,
            unpersisted_ready: None,
            span,
        })
    }

    fn region(&self) -> &metapb::Region {
        self.raft.store().region()
    }

    fn term(&self) -> u64 {
        self.raft.raft.term
    }

    fn is_leader(&self) -> bool {
        self.raft.raft.state == StateRole::Leader
    }

    fn leader_peer(&self) -> Option<metapb::Peer> {
        let id = self.raft.raft.leader_id;
        (id != raft::INVALID_ID)
            .then(|| self.peer_cache.get(&id).cloned())
            .flatten()
    }

    fn not_leader(&self) -> Error {
        Error::NotLeader {
            region_id: self.region_id,
            leader: self.leader_peer(),
        }
    }

    fn schedule_ready(&mut self, ctx: &mut Context<Self>) {
        if !self.ready_scheduled {
            self.ready_scheduled = true;
            ctx.notify(HandleReady);
        }
    }

    /// A single-peer region elects itself at once instead of waiting out a timeout.
    fn maybe_campaign(&mut self) {
        let region = self.region();
        if region.peers.len() == 1 && region.peers[0].id == self.peer.id && !self.is_leader() {
            let _ = self.raft.campaign();
        }
    }

    // ---- commands -------------------------------------------------------------------

    fn check_command(&self, request: &mut RaftCmdRequest) -> Result<()> {
        validation::check_command(request)?;
        let header = request.header.get_or_insert_with(Default::default).clone();
        if let Some(peer) = &header.peer {
            if peer.store_id != self.ctx.store_id {
                return Err(Error::StoreNotMatch {
                    request_store_id: peer.store_id,
                    actual_store_id: self.ctx.store_id,
                });
            }
        }
        if !self.is_leader()
            && !self.can_read_as_follower(request)
            && !self.can_forward_write(request)
        {
            return Err(self.not_leader());
        }
        if let Some(peer) = &header.peer {
            if peer.id != self.peer.id {
                return Err(Error::InvalidRequest(format!(
                    "request names peer {} but this is peer {}",
                    peer.id, self.peer.id
                )));
            }
        }
        // A command naming a term is proposed only in that term: the placement driver
        // writes its metadata this way, so that a write decided on a view read in an
        // earlier term of leadership can never commit.
        if header.term != 0 && header.term != self.term() {
            return Err(Error::StaleCommand);
        }
        let region = self.region();
        match &header.region_epoch {
            Some(_) => util::check_region_epoch(request, region)?,
            None => {
                // Routed by key: this peer's current view is the reference.
                for req in &request.requests {
                    if let Some(key) = util::request_key(req) {
                        util::check_key_in_region(key, region)?;
                    }
                }
            }
        }
        let header = request.header.get_or_insert_with(Default::default);
        if header.region_epoch.is_none() {
            header.region_epoch = region.region_epoch;
        }
        header.region_id = self.region_id;
        Ok(())
    }

    fn on_command(&mut self, cmd: RaftCommand, ctx: &mut Context<Self>) {
        let RaftCommand {
            mut request,
            callback,
        } = cmd;
        self.wake(false, ctx);
        if let Err(e) = self.check_command(&mut request) {
            metrics::proposal_dropped("refused");
            respond_error(callback, &e, self.term());
            return;
        }
        if let Some(admin) = &request.admin_request {
            match admin.cmd_type() {
                AdminCmdType::TransferLeader => self.transfer_leader(&request, callback),
                AdminCmdType::CompactLog => self.propose_write(request, callback),
                AdminCmdType::ChangePeer => self.propose_conf_change(request, callback),
                AdminCmdType::Split | AdminCmdType::BatchSplit => {
                    self.propose_split(request, callback)
                }
                other => respond_error(
                    callback,
                    &Error::InvalidRequest(format!("admin command {other:?} is not supported")),
                    self.term(),
                ),
            }
            self.schedule_ready(ctx);
            return;
        }
        if request.requests.is_empty() {
            respond_error(
                callback,
                &Error::InvalidRequest("command has no requests".into()),
                self.term(),
            );
            return;
        }
        if util::is_read_only(&request) {
            self.propose_read(request, callback);
        } else if ProposalBatch::accepts(&request) {
            if !self.write_batch.fits(&request) {
                self.flush_writes();
            }
            self.write_batch.push(request, callback);
            if self.write_batch.bytes() >= MAX_BATCH_BYTES {
                self.flush_writes();
            }
        } else if self.is_leader() {
            self.propose_write(request, callback);
        } else {
            self.forward_write(request, callback);
        }
        self.schedule_ready(ctx);
    }

    /// Proposes the writes batched since the last ready as one command: as leader, or
    /// forwarded to the leader; refused if this peer can do neither any more.
    fn flush_writes(&mut self) {
        let Some((request, callback)) = self.write_batch.take() else {
            return;
        };
        if self.is_leader() {
            self.propose_write(request, callback);
        } else if self.can_forward_write(&request) {
            self.forward_write(request, callback);
        } else {
            metrics::proposal_dropped("refused");
            respond_error(callback, &self.not_leader(), self.term());
        }
    }

    /// Leader transfer is not replicated: raft starts it and the command is answered at
    /// once; the client watches the leader change.
    fn transfer_leader(&mut self, request: &RaftCmdRequest, callback: Callback) {
        let target = request
            .admin_request
            .as_ref()
            .and_then(|a| a.transfer_leader.as_ref())
            .and_then(|t| t.peer);
        let Some(target) = target.filter(|t| self.region().peers.contains(t)) else {
            let e = Error::InvalidRequest("transfer target is not a peer of the region".into());
            respond_error(callback, &e, self.term());
            return;
        };
        if target.id != self.peer.id {
            // The target will campaign at once, regardless of the followers' lease.
            self.lease_until = None;
            self.lease_fence = Instant::now();
            self.raft.transfer_leader(target.id);
        }
        let response = RaftCmdResponse {
            header: Some(RaftResponseHeader {
                current_term: self.term(),
                ..Default::default()
            }),
            admin_response: Some(AdminResponse {
                cmd_type: AdminCmdType::TransferLeader as i32,
                transfer_leader: Some(TransferLeaderResponse {}),
                ..Default::default()
            }),
            ..Default::default()
        };
        let _ = callback.send(CmdResponse {
            response,
            snapshot: None,
        });
    }

    /// raft-rs pauses a follower while a snapshot is on its way and only resumes when the
    /// follower answers; a snapshot lost in the network would pause it forever. A snapshot
    /// not acknowledged within a few election timeouts is reported failed, so raft sends a
    /// fresh one.
    fn check_snapshot_progress(&mut self) {
        if !self.is_leader() {
            self.snapshot_waits.clear();
            return;
        }
        let patience = self.ctx.cfg.election_timeout() * 4;
        let now = Instant::now();
        let in_snapshot: Vec<u64> = self
            .raft
            .raft
            .prs()
            .iter()
            .filter(|(_, p)| p.state == ProgressState::Snapshot)
            .map(|(id, _)| *id)
            .collect();
        self.snapshot_waits.retain(|id, _| in_snapshot.contains(id));
        for id in in_snapshot {
            let since = *self.snapshot_waits.entry(id).or_insert(now);
            if now.duration_since(since) > patience {
                debug!(to = id, "snapshot not acknowledged, sending a new one");
                self.raft.report_snapshot(id, SnapshotStatus::Failure);
                self.snapshot_waits.remove(&id);
            }
        }
    }

    /// Leader only: proposes compacting the log once enough applied entries sit in it
    /// (`raft_log_gc_count_limit`) or the log holds too many bytes
    /// (`raft_log_gc_size_limit`). The compaction point is the lowest index every follower
    /// has, unless a follower lags so far that keeping the log for it would exceed a
    /// limit: then it compacts up to the applied index and the follower gets a snapshot.
    fn on_log_gc_tick(&mut self, ctx: &mut Context<Self>) {
        self.check_snapshot_progress();
        let lag = self.raft.raft.raft_log.committed;
        let lag = lag.saturating_sub(self.raft.store().applied_index());
        metrics::COMMIT_APPLY_LAG.observe(lag as f64);
        if !self.is_leader() {
            return;
        }
        let storage = self.raft.store();
        let applied = storage.applied_index();
        let first = storage.first_log_index();
        let limit = self.ctx.cfg.raft_log_gc_count_limit;
        let over_size = self.log_size_hint >= self.ctx.cfg.raft_log_gc_size_limit;
        if applied < first || (applied - first < limit && !over_size) {
            return;
        }
        let min_match = self
            .raft
            .raft
            .prs()
            .iter()
            .map(|(_, p)| p.matched)
            .min()
            .unwrap_or(applied);
        let mut compact = applied.min(min_match);
        if compact < first || applied - compact >= limit || over_size {
            compact = applied;
        }
        let truncated = first - 1;
        if let Some((proposed_term, proposed_index)) = self.compact_proposed {
            if proposed_term == self.term() && proposed_index > truncated {
                // The previous compaction has not applied yet.
                return;
            }
        }
        let Ok(term) = self.raft.raft.raft_log.term(compact) else {
            return;
        };
        let request = RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: self.region_id,
                region_epoch: self.region().region_epoch,
                ..Default::default()
            }),
            admin_request: Some(AdminRequest {
                cmd_type: AdminCmdType::CompactLog as i32,
                compact_log: Some(CompactLogRequest {
                    compact_index: compact,
                    compact_term: term,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (callback, _) = tokio::sync::oneshot::channel();
        debug!(compact, first, applied, "proposing log compaction");
        self.compact_proposed = Some((self.term(), compact));
        self.propose_write(request, callback);
        self.schedule_ready(ctx);
    }

    /// Hands the deletion of the log entries up to `compacted` to the RaftLogGcWriter.
    ///
    /// The first compaction after this peer started deletes everything below the bound:
    /// a crash may have lost an earlier, unsynced deletion, leaving entries below the
    /// truncated index, and a range delete finds them (by scanning). Later ones delete the
    /// entries from the previous bound one key at a time, which costs no scan (unless
    /// there are more than [`MAX_POINT_DELETES`] of them).
    fn delete_compacted_entries(&mut self, compacted: u64) {
        let region_id = self.region_id;
        let mutations = match self.log_deleted_below {
            Some(from) if from > compacted => return,
            Some(from) if compacted - from < MAX_POINT_DELETES => (from..=compacted)
                .map(|index| Mutation::Delete {
                    cf: Cf::Raft,
                    key: keys::raft_log_key(region_id, index),
                })
                .collect(),
            _ => vec![Mutation::DeleteRange {
                cf: Cf::Raft,
                start: keys::raft_log_key(region_id, 0),
                end: keys::raft_log_key(region_id, compacted + 1),
            }],
        };
        self.log_deleted_below = Some(compacted + 1);
        self.ctx.log_gc.do_send(LogGcTask {
            region_id,
            mutations,
        });
    }

    /// Scales the log size hint down by the share of entries a compaction up to `compacted`
    /// removed from the log that started at `first`.
    fn shrink_log_size_hint(&mut self, first: u64, compacted: u64) {
        let last = self.raft.raft.raft_log.last_index();
        if compacted < first || last < first {
            return;
        }
        let total = last - first + 1;
        let remaining = last.saturating_sub(compacted);
        self.log_size_hint =
            (self.log_size_hint as u128 * remaining as u128 / total as u128) as u64;
    }

    /// Leader only: once the region grew by an eighth of the split size since the last
    /// check, measures it off-thread and splits it if it exceeds `region_max_size`.
    fn on_split_check_tick(&mut self, ctx: &mut Context<Self>) {
        let cfg = &self.ctx.cfg;
        if !self.is_leader() || self.checking_size || !self.raft.store().is_initialized() {
            return;
        }
        if self.approximate_size.is_some() && self.size_diff_hint < cfg.region_split_size / 8 {
            return;
        }
        self.checking_size = true;
        self.size_diff_hint = 0;
        let (engine, token) = (self.ctx.engine.clone(), self.ctx.token.clone());
        let region = self.region().clone();
        let (max, split) = (cfg.region_max_size, cfg.region_split_size);
        let task = tokio::task::spawn_blocking(move || {
            let _token = token;
            split_check::check(&engine, &region, max, split)
        });
        ctx.spawn(task.into_actor(self).map(|joined, peer, ctx| {
            let _enter = peer.span.clone().entered();
            peer.checking_size = false;
            match joined.unwrap_or_else(|e| Err(Error::Engine(e.to_string()))) {
                Ok(outcome) => peer.on_split_check(outcome, ctx),
                Err(e) => warn!("size check failed: {e}"),
            }
        }));
    }

    fn on_split_check(&mut self, outcome: split_check::Outcome, ctx: &mut Context<Self>) {
        self.approximate_size = Some(outcome.size);
        self.report_leadership();
        if outcome.split_keys.is_empty()
            || !self.is_leader()
            || outcome.region_version != self.region().region_epoch.map_or(0, |e| e.version)
        {
            return;
        }
        let peers = self.region().peers.len();
        let ids = match self.ctx.ids.alloc(outcome.split_keys.len() * (1 + peers)) {
            Ok(ids) => ids,
            Err(e) => return warn!("cannot allocate ids for a split: {e}"),
        };
        info!(
            size = outcome.size,
            keys = outcome.split_keys.len(),
            first = ?String::from_utf8_lossy(&outcome.split_keys[0]),
            "splitting region by size"
        );
        let request = RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: self.region_id,
                region_epoch: self.region().region_epoch,
                ..Default::default()
            }),
            admin_request: Some(util::split_request(outcome.split_keys, &ids)),
            ..Default::default()
        };
        let (callback, _) = tokio::sync::oneshot::channel();
        self.propose_split(request, callback);
        self.schedule_ready(ctx);
    }

    fn on_snapshot_generated(&mut self, result: Result<eraftpb::Snapshot>) {
        self.generating_snapshot = false;
        match result {
            Ok(snapshot) => {
                metrics::snapshot("generate", true);
                debug!(index = snapshot.get_metadata().index, "snapshot generated");
                self.raft.store().set_generated_snapshot(snapshot);
            }
            Err(e) => {
                metrics::snapshot("generate", false);
                warn!("snapshot generation failed: {e}");
            }
        }
    }

    fn maybe_generate_snapshot(&mut self, ctx: &mut Context<Self>) {
        if !self.raft.store().take_snapshot_request() || self.generating_snapshot {
            return;
        }
        self.generating_snapshot = true;
        let engine = self.ctx.engine.clone();
        let token = self.ctx.token.clone();
        let region_id = self.region_id;
        let task = tokio::task::spawn_blocking(move || {
            let _token = token;
            snapshot::generate(&engine, region_id)
        });
        ctx.spawn(task.into_actor(self).map(|joined, peer, ctx| {
            let _enter = peer.span.clone().entered();
            let result = joined.unwrap_or_else(|e| Err(Error::Engine(e.to_string())));
            peer.on_snapshot_generated(result);
            peer.schedule_ready(ctx);
        }));
    }

    /// Proposes a membership change as a raft conf change whose context is the command.
    /// One change at a time: a change proposed while another is unapplied is refused.
    fn propose_conf_change(&mut self, request: RaftCmdRequest, callback: Callback) {
        let term = self.term();
        let Some(change) = request.admin_request.as_ref().and_then(|a| a.change_peer) else {
            let e = Error::InvalidRequest("ChangePeer without its request".into());
            return respond_error(callback, &e, term);
        };
        let Some(peer) = change.peer else {
            let e = Error::InvalidRequest("ChangePeer without a peer".into());
            return respond_error(callback, &e, term);
        };
        if self.raft.raft.has_pending_conf() {
            let e = Error::InvalidRequest(
                "another membership change of this region is still being applied".into(),
            );
            return respond_error(callback, &e, term);
        }
        let mut cc = ConfChange::default();
        cc.set_change_type(match change.change_type() {
            tinykv_proto::eraftpb::ConfChangeType::AddNode => ConfChangeType::AddNode,
            tinykv_proto::eraftpb::ConfChangeType::RemoveNode => ConfChangeType::RemoveNode,
            tinykv_proto::eraftpb::ConfChangeType::AddLearnerNode => {
                let e = Error::InvalidRequest("learners are not supported".into());
                return respond_error(callback, &e, term);
            }
        });
        if cc.get_change_type() == ConfChangeType::RemoveNode {
            let voters = self.raft.raft.prs().conf().voters().ids();
            if voters.len() == 1 && voters.contains(peer.id) {
                let e = Error::InvalidRequest(format!(
                    "cannot remove peer {} of region {}: it is the last one",
                    peer.id, self.region_id
                ));
                return respond_error(callback, &e, term);
            }
        }
        if let Some(successor) = self.successor_before_removing_self(&cc, &peer) {
            // See `successor_before_removing_self`: hand over first; the client retries
            // the removal at the new leader, where it is a plain follower removal.
            self.raft.transfer_leader(successor.id);
            let e = Error::NotLeader {
                region_id: self.region_id,
                leader: Some(successor),
            };
            return respond_error(callback, &e, term);
        }
        cc.node_id = peer.id;
        cc.context = request.encode_to_vec().into();
        let last_before = self.raft.raft.raft_log.last_index();
        let accepted = self.raft.propose_conf_change(vec![], cc).is_ok();
        self.track_proposal(last_before, accepted, "conf_change", callback);
    }

    /// The peer that must lead before this leader may propose removing itself, if any.
    ///
    /// A leader destroys itself as soon as it applies its own removal, possibly before
    /// telling anyone that the entry committed. With three or more voters that is
    /// harmless: the others still form a majority of the old configuration, elect a
    /// leader and commit the entry themselves. With two voters it is fatal: the survivor
    /// holds the entry but not its commit, still counts the removed leader as a voter, and
    /// can never win an election again. So in a two-voter region the leader transfers
    /// leadership to the other voter instead, and that one removes this peer as a follower.
    fn successor_before_removing_self(
        &self,
        cc: &ConfChange,
        peer: &metapb::Peer,
    ) -> Option<metapb::Peer> {
        if cc.get_change_type() != ConfChangeType::RemoveNode || peer.id != self.peer.id {
            return None;
        }
        let voters = self.raft.raft.prs().conf().voters().ids();
        if voters.len() != 2 {
            return None;
        }
        let other = voters.iter().find(|&id| id != self.peer.id)?;
        self.region().peers.iter().find(|p| p.id == other).cloned()
    }

    /// Proposes a split or a batch split whose keys all lie strictly inside the region
    /// (their order and ids were checked with the command).
    fn propose_split(&mut self, request: RaftCmdRequest, callback: Callback) {
        let admin = request.admin_request.as_ref();
        let keys: Vec<&[u8]> = match admin.and_then(|a| a.batch_split.as_ref()) {
            Some(batch) => batch.requests.iter().map(|s| &s.split_key[..]).collect(),
            None => admin
                .and_then(|a| a.split.as_ref())
                .map(|s| vec![&s.split_key[..]])
                .unwrap_or_default(),
        };
        let region = self.region();
        let checked = keys.iter().try_for_each(|key| {
            util::check_key_in_region(key, region)?;
            if key.is_empty() || *key == region.start_key.as_slice() {
                return Err(Error::InvalidRequest(
                    "split key must lie strictly inside the region".into(),
                ));
            }
            Ok(())
        });
        match checked {
            Ok(()) => self.propose_write(request, callback),
            Err(e) => respond_error(callback, &e, self.term()),
        }
    }

    fn propose_write(&mut self, request: RaftCmdRequest, callback: Callback) {
        let last_before = self.raft.raft.raft_log.last_index();
        let accepted = self.raft.propose(vec![], request.encode_to_vec()).is_ok();
        self.track_proposal(
            last_before,
            accepted,
            metrics::proposal_kind(&request),
            callback,
        );
    }

    /// A follower that heard from its leader within the election timeout proposes a
    /// client write through raft, which forwards it to the leader (instead of the node
    /// forwarding the request over HTTP). The command gets a `uuid`; the ApplyFsm answers
    /// it when this peer applies the entry carrying that uuid. If the leader drops it
    /// (it lost its leadership meanwhile), the client times out: the outcome is unknown,
    /// as for any write whose answer is lost. The epoch was checked against this peer's
    /// view and is checked again when the entry applies.
    fn forward_write(&mut self, mut request: RaftCmdRequest, callback: Callback) {
        let uuid = util::unique_proposal_id(self.ctx.store_id);
        request.header.get_or_insert_with(Default::default).uuid = uuid.clone();
        if self.raft.propose(vec![], request.encode_to_vec()).is_err() {
            metrics::proposal_dropped("dropped");
            respond_error(callback, &self.not_leader(), self.term());
            return;
        }
        metrics::proposed("forwarded");
        self.forwarded.push(ForwardedProposal {
            uuid,
            callback,
            proposed_at: Instant::now(),
        });
    }

    /// Whether this follower may forward `request` to its leader through raft: a client
    /// write (no admin command), with a leader heard from within the election timeout.
    fn can_forward_write(&self, request: &RaftCmdRequest) -> bool {
        let raft = &self.raft.raft;
        request.admin_request.is_none()
            && !request.requests.is_empty()
            && !util::is_read_only(request)
            && raft.leader_id != raft::INVALID_ID
            && raft.state == StateRole::Follower
            && raft.election_elapsed < raft.election_timeout()
    }

    /// Remembers a command raft took as the new last entry of the log, to answer once it
    /// applies; one that raft refused or dropped silently (the log did not grow past
    /// `last_before`, e.g. during a leader transfer) is answered "not leader" now.
    fn track_proposal(
        &mut self,
        last_before: u64,
        accepted: bool,
        kind: &'static str,
        callback: Callback,
    ) {
        let index = self.raft.raft.raft_log.last_index();
        if !accepted || index == last_before {
            metrics::proposal_dropped("dropped");
            respond_error(callback, &self.not_leader(), self.term());
            return;
        }
        metrics::proposed(kind);
        self.proposals.push_back(Proposal {
            index,
            term: self.term(),
            callback,
            proposed_at: Instant::now(),
        });
    }

    fn propose_read(&mut self, request: RaftCmdRequest, callback: Callback) {
        let read_index = self.lease_read_index();
        self.pending_reads.push_back(PendingRead {
            request,
            callback,
            batch: None,
            read_index,
        });
        if read_index.is_some() {
            metrics::proposed("lease_read");
            self.serve_reads();
        } else {
            self.issue_reads();
        }
    }

    /// With `lease_reads`, the index a read may be served at without a heartbeat round:
    /// the commit index, while this leader's lease runs, no leader transfer is under way
    /// (a transfer's target campaigns at once, ignoring the followers' lease) and an entry
    /// of its term has committed.
    fn lease_read_index(&self) -> Option<u64> {
        let valid = self.ctx.cfg.lease_reads
            && self.is_leader()
            && self.raft.raft.lead_transferee.is_none()
            && self.lease_until.is_some_and(|until| Instant::now() < until)
            && self.committed_in_current_term();
        valid.then_some(self.raft.raft.raft_log.committed)
    }

    /// A heartbeat round that started at `asked_at` confirmed this leader: no follower
    /// that answered will vote for anyone else for an election timeout, so the lease runs
    /// 4/5 of that from `asked_at` (the rest is margin for clock drift). Rounds started
    /// before the last leader transfer began do not count.
    fn renew_lease(&mut self, asked_at: Instant) {
        if !self.ctx.cfg.lease_reads
            || !self.is_leader()
            || self.raft.raft.lead_transferee.is_some()
            || asked_at <= self.lease_fence
        {
            return;
        }
        let until = asked_at + self.ctx.cfg.election_timeout() * 4 / 5;
        self.lease_until = Some(self.lease_until.map_or(until, |current| current.max(until)));
    }

    /// Whether the leader has committed an entry of its current term, which raft requires
    /// before it answers a ReadIndex request.
    fn committed_in_current_term(&self) -> bool {
        let log = &self.raft.raft.raft_log;
        log.term(log.committed).unwrap_or(0) == self.term()
    }

    /// Whether this follower may serve `request` itself: a read, while it knows a leader.
    /// It asks the leader for a read index through raft (cheaper than forwarding the
    /// request to the leader's node) and serves the read once it has applied that far,
    /// which is as linearizable as a read on the leader.
    fn can_read_as_follower(&self, request: &RaftCmdRequest) -> bool {
        request.admin_request.is_none()
            && !request.requests.is_empty()
            && util::is_read_only(request)
            && self.raft.raft.leader_id != raft::INVALID_ID
    }

    /// Asks raft for one read index covering every read that has not asked yet, once it
    /// can: one heartbeat round confirms leadership for all of them. A leader asks once it
    /// has committed an entry of its term; a follower asks its leader through raft.
    fn issue_reads(&mut self) {
        let unasked = |r: &PendingRead| r.batch.is_none() && r.read_index.is_none();
        if !self.pending_reads.iter().any(unasked) {
            return;
        }
        if self.is_leader() {
            if !self.committed_in_current_term() {
                return;
            }
        } else if self.raft.raft.leader_id == raft::INVALID_ID {
            return;
        }
        let batch = self.next_read_id;
        let mut any = false;
        let now = Instant::now();
        for read in self.pending_reads.iter_mut().filter(|r| unasked(r)) {
            read.batch = Some((batch, now));
            any = true;
        }
        if any {
            self.next_read_id += 1;
            metrics::proposed("read_index");
            self.raft.read_index(read_context(self.raft.raft.id, batch));
        }
    }

    fn on_read_state(&mut self, state: raft::ReadState) {
        let Some(batch) = read_batch(self.raft.raft.id, &state.request_ctx) else {
            return;
        };
        let mut asked_at = None;
        for read in self
            .pending_reads
            .iter_mut()
            .filter(|r| r.batch.is_some_and(|(b, _)| b == batch))
        {
            read.read_index = Some(state.index);
            asked_at = read.batch.map(|(_, at)| at);
        }
        if let Some(asked_at) = asked_at {
            self.renew_lease(asked_at);
        }
    }

    /// Serves every pending read whose index the state machine has reached. Not while a
    /// snapshot is being persisted: the storage already reports the snapshot's index as
    /// applied, but its data reaches the engine only with that write, and a read served
    /// in between would miss it.
    fn serve_reads(&mut self) {
        if self.persisting_snapshot.is_some() {
            return;
        }
        let applied = self.raft.store().applied_index();
        let mut waiting = VecDeque::with_capacity(self.pending_reads.len());
        for read in std::mem::take(&mut self.pending_reads) {
            match read.read_index {
                Some(index) if index <= applied => {
                    let response = self.execute_read(&read.request);
                    let _ = read.callback.send(response);
                }
                _ => waiting.push_back(read),
            }
        }
        self.pending_reads = waiting;
    }

    fn execute_read(&self, request: &RaftCmdRequest) -> CmdResponse {
        let term = self.term();
        let region = self.region().clone();
        let snapshot = self.ctx.engine.snapshot();
        let region_snapshot = RegionSnapshot { region, snapshot };
        let mut responses = Vec::with_capacity(request.requests.len());
        let mut wants_snapshot = false;
        for req in &request.requests {
            let response = match req.cmd_type() {
                CmdType::Get => {
                    let get = req.get.clone().unwrap_or_default();
                    let value =
                        Cf::from_name(&get.cf).and_then(|cf| region_snapshot.get(cf, &get.key));
                    match value {
                        Ok(value) => Response {
                            cmd_type: CmdType::Get as i32,
                            get: Some(GetResponse {
                                value: value.unwrap_or_default(),
                            }),
                            ..Default::default()
                        },
                        Err(e) => return CmdResponse::error(&e, term),
                    }
                }
                CmdType::Snap => {
                    wants_snapshot = true;
                    Response {
                        cmd_type: CmdType::Snap as i32,
                        snap: Some(SnapResponse {
                            region: Some(region_snapshot.region.clone()),
                        }),
                        ..Default::default()
                    }
                }
                other => {
                    let e = Error::InvalidRequest(format!("{other:?} is not a read"));
                    return CmdResponse::error(&e, term);
                }
            };
            responses.push(response);
        }
        CmdResponse {
            response: RaftCmdResponse {
                header: Some(RaftResponseHeader {
                    current_term: term,
                    ..Default::default()
                }),
                responses,
                admin_response: None,
            },
            snapshot: wants_snapshot.then_some(region_snapshot),
        }
    }

    /// A follower's ReadIndex request can be lost (a leader that has not yet committed an
    /// entry of its term ignores it; messages drop). Reads that waited an election timeout
    /// for their index are answered "not leader", naming the leader, and the client asks
    /// the leader itself.
    fn expire_follower_reads(&mut self) {
        if self.is_leader() {
            return;
        }
        let patience = self.ctx.cfg.election_timeout();
        self.fail_reads_where(|r| {
            r.read_index.is_none() && r.batch.is_some_and(|(_, at)| at.elapsed() > patience)
        });
    }

    fn fail_reads_without_index(&mut self) {
        self.fail_reads_where(|r| r.read_index.is_none());
    }

    /// Answers "not leader" (naming the leader, if known) to every pending read that
    /// `fails` picks; the others keep waiting.
    fn fail_reads_where(&mut self, fails: impl Fn(&PendingRead) -> bool) {
        if !self.pending_reads.iter().any(&fails) {
            return;
        }
        let err = self.not_leader();
        let term = self.term();
        let mut kept = VecDeque::with_capacity(self.pending_reads.len());
        for read in std::mem::take(&mut self.pending_reads) {
            if fails(&read) {
                respond_error(read.callback, &err, term);
            } else {
                kept.push_back(read);
            }
        }
        self.pending_reads = kept;
    }

    // ---- ticks and hibernation -------------------------------------------------------

    /// Starts the tick timer, unless it runs.
    fn start_ticking(&mut self, ctx: &mut Context<Self>) {
        if self.tick_timer.is_none() {
            let handle = ctx.run_interval(self.ctx.cfg.base_tick(), |peer, ctx| {
                let _enter = peer.span.clone().entered();
                peer.on_tick(ctx);
            });
            self.tick_timer = Some(handle);
        }
    }

    /// One base tick: raft's clock, reads waiting too long, and every so many ticks the
    /// leader's log GC and size check; a quiet leader asks its followers to sleep instead.
    fn on_tick(&mut self, ctx: &mut Context<Self>) {
        if self.destroyed {
            return;
        }
        self.expire_follower_reads();
        if self.try_hibernate(ctx) {
            return;
        }
        self.ticks += 1;
        if self.raft.tick() {
            self.schedule_ready(ctx);
        }
        let cfg = &self.ctx.cfg;
        let every = |ms: u64| (ms / cfg.raft_base_tick_ms).max(1);
        let (gc_every, split_every) = (
            every(cfg.raft_log_gc_tick_ms),
            every(cfg.split_check_tick_ms),
        );
        if self.ticks.is_multiple_of(gc_every) {
            self.on_log_gc_tick(ctx);
            self.report_leadership();
        }
        if self.ticks.is_multiple_of(split_every) {
            self.on_split_check_tick(ctx);
        }
    }

    /// Leader, on a tick: if the region is quiet, opens a round asking the followers to
    /// sleep and skips this tick (no heartbeat, which would wake a follower that already
    /// agreed); the next tick closes an unfinished round and ticks as usual, so a round
    /// that keeps failing costs followers every other heartbeat, far within their election
    /// timeout. Returns whether the tick was skipped (or the peer fell asleep).
    fn try_hibernate(&mut self, ctx: &mut Context<Self>) -> bool {
        if !self.is_leader() || !self.ctx.cfg.may_hibernate(self.region()) {
            return false;
        }
        if self.hibernation.round_is_open() {
            self.hibernation.cancel_round();
            return false;
        }
        if !self.is_quiet() || !self.leader_is_quiet(ctx) {
            return false;
        }
        // What the placement driver knows must be current before the region goes quiet:
        // a follower may have caught up since the last report.
        self.report_leadership();
        let followers = self.followers();
        let (term, last_index) = (self.term(), self.raft.raft.raft_log.last_index());
        for id in self
            .hibernation
            .ask(term, last_index, &followers, Instant::now())
        {
            self.send_hibernation_message(id, ExtraMessageType::MsgHibernateRequest);
        }
        self.sleep_if_agreed(ctx);
        true
    }

    /// The voters of the region other than this peer.
    fn followers(&self) -> Vec<u64> {
        let voters = self.raft.raft.prs().conf().voters().ids();
        voters.iter().filter(|&id| id != self.peer.id).collect()
    }

    /// Leader: sleeps if the open round has the agreement it needs.
    fn sleep_if_agreed(&mut self, ctx: &mut Context<Self>) {
        let followers = self.followers();
        let timeout = self.ctx.cfg.election_timeout();
        if self
            .hibernation
            .leader_may_sleep(&followers, Instant::now(), timeout)
        {
            self.sleep(ctx);
        }
    }

    /// Nothing is in flight on this peer, in either role: the whole log is committed and
    /// applied, and no proposal, read, forwarded write, unpersisted `Ready`, snapshot or
    /// removal check waits.
    fn is_quiet(&self) -> bool {
        let log = &self.raft.raft.raft_log;
        let storage = self.raft.store();
        let base_tick = self.ctx.cfg.base_tick();
        storage.is_initialized()
            && !self.destroyed
            && log.committed == log.last_index()
            && storage.applied_index() == log.committed
            && self.unpersisted_ready.is_none()
            && self.proposals.is_empty()
            && self.forwarded.is_empty()
            && self.pending_reads.is_empty()
            && self.write_batch.is_empty()
            && self.persisting_snapshot.is_none()
            && !self.generating_snapshot
            && !self.verifying_snapshot
            && self
                .stale_check
                .as_ref()
                .is_none_or(|c| !c.is_running(base_tick))
            && !self.ready_scheduled
            && !self.raft.has_ready()
    }

    /// The leader's own conditions for sleeping: no leadership transfer, membership
    /// change or snapshot under way, and the region's size known and measured since it
    /// last grew by an eighth of the split size (a size check is started if not, and the
    /// leader sleeps once it is done).
    fn leader_is_quiet(&mut self, ctx: &mut Context<Self>) -> bool {
        let raft = &self.raft.raft;
        if raft.lead_transferee.is_some()
            || raft.has_pending_conf()
            || !self.snapshot_waits.is_empty()
            || self.checking_size
        {
            return false;
        }
        let split_size = self.ctx.cfg.region_split_size;
        if self.approximate_size.is_none() || self.size_diff_hint >= split_size / 8 {
            self.on_split_check_tick(ctx);
            return false;
        }
        true
    }

    /// Stops the tick timer.
    fn sleep(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.tick_timer.take() {
            ctx.cancel_future(timer);
        }
        if !self.hibernation.is_asleep() {
            metrics::HIBERNATING_PEERS.inc();
            debug!(term = self.term(), "hibernating");
        }
        self.hibernation.sleep(Instant::now());
    }

    /// Wakes a sleeping peer: its timer starts again. A leader sends every follower a
    /// heartbeat, which wakes them; a follower moves its election clock on by the ticks it
    /// slept (see [`hibernate::caught_up_election_elapsed`]) and, unless its leader woke
    /// it, wakes the leader.
    fn wake(&mut self, by_leader: bool, ctx: &mut Context<Self>) {
        let Some(slept) = self
            .hibernation
            .wake(Instant::now(), self.ctx.cfg.base_tick())
        else {
            return;
        };
        metrics::HIBERNATING_PEERS.dec();
        debug!(slept_ticks = slept, "waking up");
        self.start_ticking(ctx);
        if self.is_leader() {
            self.raft.ping();
        } else {
            let raft = &mut self.raft.raft;
            let timeout = raft.election_timeout();
            raft.election_elapsed =
                hibernate::caught_up_election_elapsed(raft.election_elapsed, slept, timeout);
            let leader = raft.leader_id;
            if !by_leader && leader != raft::INVALID_ID {
                self.send_hibernation_message(leader, ExtraMessageType::MsgRegionWakeUp);
            }
        }
        self.schedule_ready(ctx);
    }

    /// A hibernation message from member peer `from`: a leader's request to sleep, a
    /// follower's agreement, or a follower's wake-up call. Other extra messages are
    /// ignored. Requests and agreements do not wake a sleeping peer.
    fn on_hibernation_message(
        &mut self,
        from: metapb::Peer,
        extra: &ExtraMessage,
        ctx: &mut Context<Self>,
    ) {
        if !self.region().peers.contains(&from) {
            return;
        }
        match extra.r#type() {
            ExtraMessageType::MsgHibernateRequest => {
                let log = &self.raft.raft.raft_log;
                let view = FollowerView {
                    term: self.term(),
                    leader_id: self.raft.raft.leader_id,
                    last_index: log.last_index(),
                    committed: log.committed,
                    applied: self.raft.store().applied_index(),
                    quiet: !self.is_leader() && self.is_quiet(),
                };
                let agrees = self.ctx.cfg.may_hibernate(self.region())
                    && hibernate::follower_agrees(&view, from.id, extra.term, extra.index);
                if agrees {
                    self.send_hibernation_message(from.id, ExtraMessageType::MsgHibernateResponse);
                    self.sleep(ctx);
                }
            }
            ExtraMessageType::MsgHibernateResponse
                if self.is_leader() && !self.hibernation.is_asleep() =>
            {
                self.hibernation
                    .on_agreement(from.id, extra.term, extra.index);
                self.sleep_if_agreed(ctx);
            }
            ExtraMessageType::MsgRegionWakeUp => self.wake(false, ctx),
            _ => {}
        }
    }

    /// Sends a hibernation message of `kind` to peer `to`, naming this peer's term and
    /// last log index.
    fn send_hibernation_message(&self, to: u64, kind: ExtraMessageType) {
        let Some(to_peer) = self.peer_cache.get(&to).copied() else {
            return;
        };
        self.ctx.transport.send(RaftMessage {
            region_id: self.region_id,
            from_peer: Some(self.peer),
            to_peer: Some(to_peer),
            region_epoch: self.region().region_epoch,
            extra_msg: Some(ExtraMessage {
                r#type: kind as i32,
                term: self.term(),
                index: self.raft.raft.raft_log.last_index(),
                ..Default::default()
            }),
            ..Default::default()
        });
    }

    // ---- raft messages --------------------------------------------------------------

    fn on_raft_message(&mut self, msg: RaftMessage, ctx: &mut Context<Self>) {
        let Some(to) = msg.to_peer else { return };
        if to.store_id != self.ctx.store_id {
            debug!(to = ?to, "dropping raft message for another store");
            return;
        }
        if stale_peer::is_check(&msg) {
            // Another store's peer asks how this store sees the region.
            let region = self.region();
            let view = (!region.peers.is_empty()).then_some(region);
            if let Some(answer) = stale_peer::answer(&msg, view, false) {
                self.ctx.transport.send(answer);
            }
            return;
        }
        if stale_peer::is_answer(&msg) {
            self.on_stale_check_answer(&msg, ctx);
            return;
        }
        let my_conf_ver = self.region().region_epoch.map_or(0, |e| e.conf_ver);
        let their_conf_ver = msg.region_epoch.map_or(0, |e| e.conf_ver);
        if to.id != self.peer.id && !msg.is_tombstone && their_conf_ver > my_conf_ver {
            // A newer membership may have another peer of the region on this store: this
            // one would then have been removed without learning it (a store holds one peer
            // per region). Peer ids say nothing about age: each store allocates from its
            // own id space.
            self.check_stale(
                "a newer peer of the region on this store was addressed",
                &msg,
            );
            return;
        }
        if !msg.dropped_proposals.is_empty() {
            if to.id == self.peer.id {
                self.on_dropped_proposals(msg.dropped_proposals);
            }
            return;
        }
        if msg.is_tombstone {
            let initialized = self.raft.store().is_initialized();
            if to.id == self.peer.id && their_conf_ver > my_conf_ver && initialized {
                self.check_stale("told it was removed from the region", &msg);
            }
            return;
        }
        // A stale sender is answered even when it addresses an earlier peer of this
        // store, long replaced.
        if self.raft.store().is_initialized() {
            if let Some(tombstone) = util::tombstone_for_stale_sender(&msg, self.region()) {
                self.ctx.transport.send(tombstone);
                return;
            }
        }
        let Some(from) = msg.from_peer else { return };
        if to.id != self.peer.id {
            debug!(to = ?to, "dropping raft message for an earlier peer of this store");
            return;
        }
        let known = self.region().peers.iter().find(|p| p.id == from.id);
        if known.is_some_and(|p| p.store_id != from.store_id) {
            warn!(from = ?from, "dropping a raft message from a member peer on the wrong store");
            metrics::message_refused("wrong_store");
            return;
        }
        self.hibernation.heard_from(from.id, Instant::now());
        if let Some(extra) = &msg.extra_msg {
            self.on_hibernation_message(from, extra, ctx);
            return;
        }
        let Some(inner) = &msg.message else { return };
        self.wake(from.id == self.raft.raft.leader_id, ctx);
        let message: eraftpb::Message = match to_raft(inner) {
            Ok(m) => m,
            Err(e) => {
                warn!("dropping undecodable raft message: {e}");
                return;
            }
        };
        let log = inbound::LocalLog {
            last_index: self.raft.raft.raft_log.last_index(),
            leader_id: self.raft.raft.leader_id,
        };
        if let Err(why) = inbound::check_message(&message, &from, &to, &log) {
            warn!(from = ?from, kind = ?message.get_msg_type(), "dropping a raft message raft could not take: {why}");
            metrics::message_refused("malformed");
            return;
        }
        self.peer_cache.insert(from.id, from);
        if message.get_msg_type() == eraftpb::MessageType::MsgSnapshot {
            self.verify_snapshot_then_step(message, ctx);
            return;
        }
        // A leader not handing its leadership over always takes a forwarded write (there
        // is no limit on uncommitted entries); only otherwise may raft drop it, and only
        // then are the writes named, to tell the follower.
        let may_drop = !self.is_leader() || self.raft.raft.lead_transferee.is_some();
        let forwarded = (may_drop
            && message.get_msg_type() == eraftpb::MessageType::MsgPropose
            && message.from != self.peer.id)
            .then(|| inbound::check_forwarded_proposal(&message).unwrap_or_default());
        if let Err(e) = self.step(message, ctx) {
            debug!("raft rejected message: {e}");
            if let Some(uuids) = forwarded {
                self.notify_dropped_proposals(from, uuids);
            }
        }
    }

    /// Steps `message` into raft. raft-rs asserts its peers' promises instead of checking
    /// them; [`inbound::check_message`] refuses every message known to break one, and if
    /// one still makes raft panic, the panic is contained here: raft's in-memory state
    /// may be half-updated, so the peer restarts from its state on disk (see
    /// [`PeerFsm::restart`]), like a crash of this one peer, instead of the whole node.
    fn step(&mut self, message: eraftpb::Message, ctx: &mut Context<Self>) -> raft::Result<()> {
        let (kind, from) = (message.get_msg_type(), message.from);
        let raft = &mut self.raft;
        #[cfg(test)]
        let must_panic = std::mem::take(&mut self.panic_on_next_step);
        #[cfg(not(test))]
        let must_panic = false;
        let stepped = crate::containment::contain(|| {
            if must_panic {
                panic!("raft asserts on a message (injected by a test)");
            }
            raft.step(message)
        });
        match stepped {
            Ok(result) => result,
            Err(panic) => {
                let what = crate::containment::panic_message(panic.as_ref());
                error!(?kind, from, "raft panicked on a message: {what}");
                self.restart(ctx);
                Ok(())
            }
        }
    }

    /// Verifies a snapshot from the leader before raft sees it, off the actor's thread
    /// (it decodes and checksums the whole region): its data (counts, checksums, every
    /// key inside its range), that it is for this peer of this region and not older than
    /// the region this peer holds, and (asking the Router) that no other local region
    /// overlaps its range. Only then is it stepped; otherwise it is dropped, and raft
    /// sends another one if it was real.
    fn verify_snapshot_then_step(&mut self, message: eraftpb::Message, ctx: &mut Context<Self>) {
        if self.verifying_snapshot {
            debug!("a snapshot is being verified already; dropping another");
            return;
        }
        self.verifying_snapshot = true;
        let (region_id, peer, token) = (self.region_id, self.peer, self.ctx.token.clone());
        let task = tokio::task::spawn_blocking(move || {
            let _token = token;
            let verified = snapshot::verify_for(message.get_snapshot(), region_id, &peer);
            (message, verified)
        });
        ctx.spawn(task.into_actor(self).then(|joined, peer, _| {
            let verified = match joined {
                Ok((message, Ok(verified))) => peer.check_snapshot_epoch(message, verified),
                Ok((_, Err(e))) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let router = peer.ctx.router.clone();
            async move {
                let (message, verified) = verified?;
                let range = CheckSnapshotRange {
                    region_id: verified.region.id,
                    start_key: verified.region.start_key.clone(),
                    end_key: verified.region.end_key.clone(),
                };
                match router.send(range).await {
                    Ok(true) => Ok((message, verified)),
                    Ok(false) => Err("its range overlaps another local region".to_string()),
                    Err(_) => Err("the router is gone".to_string()),
                }
            }
            .into_actor(peer)
            .map(|checked, peer, ctx| {
                peer.verifying_snapshot = false;
                if peer.destroyed {
                    return;
                }
                let _enter = peer.span.clone().entered();
                match checked {
                    Ok((message, verified)) => {
                        peer.verified_snapshot = Some(verified);
                        if let Err(e) = peer.step(message, ctx) {
                            debug!("raft rejected a snapshot: {e}");
                        }
                        peer.schedule_ready(ctx);
                    }
                    Err(why) => {
                        metrics::snapshot("receive", false);
                        warn!("dropping a snapshot that failed verification: {why}");
                    }
                }
            })
        }));
    }

    /// Refuses a snapshot of an older region than the one this (initialized) peer holds.
    fn check_snapshot_epoch(
        &self,
        message: eraftpb::Message,
        verified: snapshot::VerifiedSnapshot,
    ) -> std::result::Result<(eraftpb::Message, snapshot::VerifiedSnapshot), String> {
        let (mine, theirs) = (
            self.region().region_epoch.unwrap_or_default(),
            verified.region.region_epoch.unwrap_or_default(),
        );
        if self.raft.store().is_initialized()
            && (theirs.version < mine.version || theirs.conf_ver < mine.conf_ver)
        {
            return Err(format!(
                "its region epoch {theirs:?} is older than this peer's {mine:?}"
            ));
        }
        Ok((message, verified))
    }

    /// Starts making sure that this peer was removed from its region, as `msg` claims
    /// (see [`stale_peer`]); it destroys itself only once another store confirms.
    fn check_stale(&mut self, reason: &str, msg: &RaftMessage) {
        let base_tick = self.ctx.cfg.base_tick();
        if self
            .stale_check
            .as_ref()
            .is_some_and(|c| c.is_running(base_tick))
        {
            return;
        }
        info!(reason, from = ?msg.from_peer, "asking the other stores whether this peer was removed");
        let (check, questions) = StaleCheck::start(self.region(), &self.peer, msg.from_peer);
        self.stale_check = Some(check);
        for question in questions {
            self.ctx.transport.send(question);
        }
    }

    fn on_stale_check_answer(&mut self, answer: &RaftMessage, ctx: &mut Context<Self>) {
        let confirmed = self
            .stale_check
            .as_ref()
            .is_some_and(|check| check.confirms(answer, self.region(), &self.peer));
        if confirmed {
            let by = answer.from_peer.map_or(0, |p| p.store_id);
            info!(
                confirmed_by = by,
                "another store confirms that this peer was removed"
            );
            self.stale_check = None;
            self.destroy("removed from the region (confirmed by another store)", ctx);
        }
    }

    /// Tells a follower that the writes it forwarded were not taken (this peer no longer
    /// leads, or is transferring its leadership), so that it fails them as retryable
    /// instead of letting its clients wait for a timeout.
    fn notify_dropped_proposals(&mut self, to: metapb::Peer, uuids: Vec<Vec<u8>>) {
        if uuids.is_empty() {
            return;
        }
        debug!(
            to = to.id,
            count = uuids.len(),
            "forwarded proposals dropped"
        );
        self.ctx.transport.send(RaftMessage {
            region_id: self.region_id,
            from_peer: Some(self.peer),
            to_peer: Some(to),
            region_epoch: self.region().region_epoch,
            dropped_proposals: uuids,
            ..Default::default()
        });
    }

    /// Fails the forwarded writes the leader reports it did not take: not appended, so
    /// the client may retry them.
    fn on_dropped_proposals(&mut self, uuids: Vec<Vec<u8>>) {
        let err = self.not_leader();
        let term = self.term();
        for p in self.forwarded.extract_if(.., |p| uuids.contains(&p.uuid)) {
            respond_error(p.callback, &err, term);
        }
        self.apply.do_send(DropForwarded {
            uuids: Some(uuids),
            error: err,
        });
    }

    /// The leader changed: writes this peer proposed as leader, or forwarded to the old
    /// leader, may or may not commit. Their clients are answered at once with
    /// [`Error::Timeout`] (outcome unknown) rather than after their whole timeout: a
    /// client write names a session, so the node retries it on the new leader, where it
    /// applies at most once whichever copy commits.
    fn abandon_proposals_of_old_leader(&mut self) {
        let term = self.term();
        let own = if self.is_leader() {
            VecDeque::new()
        } else {
            std::mem::take(&mut self.proposals)
        };
        for p in own {
            respond_error(p.callback, &Error::Timeout, term);
        }
        for p in self.forwarded.drain(..) {
            respond_error(p.callback, &Error::Timeout, term);
        }
        self.apply.do_send(DropForwarded {
            uuids: None,
            error: Error::Timeout,
        });
    }

    fn send_messages(&mut self, messages: Vec<eraftpb::Message>) {
        for m in messages {
            let Some(to_peer) = self.peer_cache.get(&m.to).cloned() else {
                warn!(to = m.to, "no address for peer, dropping message");
                continue;
            };
            let region = self.region();
            let mut out = RaftMessage {
                region_id: self.region_id,
                from_peer: Some(self.peer),
                to_peer: Some(to_peer),
                region_epoch: region.region_epoch,
                ..Default::default()
            };
            if util::is_initial_msg(&m) {
                out.start_key = region.start_key.clone();
                out.end_key = region.end_key.clone();
            }
            out.message = Some(from_raft(&m));
            metrics::message_sent(m.get_msg_type());
            self.ctx.transport.send(out);
        }
    }

    // ---- ready ----------------------------------------------------------------------

    fn handle_ready(&mut self, ctx: &mut Context<Self>) {
        self.flush_writes();
        if !self.raft.has_ready() {
            return;
        }
        // A snapshot replaces the state machine: wait until the ApplyFsm has nothing in
        // flight, or an older apply could land after it.
        let snapshot_pending = self.raft.raft.raft_log.unstable_snapshot().is_some();
        if snapshot_pending && self.sent_to_apply > self.raft.store().applied_index() {
            debug!(
                sent_to_apply = self.sent_to_apply,
                applied = self.raft.store().applied_index(),
                "snapshot waits for in-flight applies"
            );
            return;
        }
        let mut ready = self.raft.ready();
        metrics::READY_HANDLED.inc();
        if ready.ss().is_some() {
            self.on_soft_state_change(ctx);
        }
        self.send_messages(ready.take_messages());
        let committed = ready.take_committed_entries();
        for state in ready.take_read_states() {
            self.on_read_state(state);
        }

        let mut mutations = Vec::new();
        if !ready.snapshot().is_empty() {
            let Some(snapshot_mutations) = self.apply_snapshot(ready.snapshot(), ctx) else {
                // Nothing of this ready is persisted: the peer starts again from disk.
                self.restart(ctx);
                return;
            };
            mutations.extend(snapshot_mutations);
            self.persisting_snapshot =
                Some((ready.number(), ready.snapshot().get_metadata().index));
        }
        let entries = ready.take_entries();
        self.drop_overwritten_proposals(&entries);
        self.log_size_hint += entries
            .iter()
            .map(|e| (e.data.len() + e.context.len()) as u64)
            .sum::<u64>();
        let last_index = entries.last().map(|e| e.index);
        let storage = self.raft.mut_store();
        storage.append(entries, &mut mutations);
        if let Some(hs) = ready.hs() {
            storage.set_hard_state(hs);
        }
        if !mutations.is_empty() || ready.hs().is_some() {
            mutations.push(storage.raft_state_mutation());
        }
        let number = ready.number();
        let must_sync = ready.must_sync();
        let persisted_msgs = ready.take_persisted_messages();
        if mutations.is_empty() && !must_sync && self.unpersisted_ready.is_none() {
            // Nothing to write and nothing written before it still in flight (a heartbeat
            // and its answer): durable already, so its messages go out without a round
            // trip through the raft-log writer.
            self.raft.advance_append_async(ready);
            self.raft.on_persist_ready(number);
            self.send_messages(persisted_msgs);
        } else {
            if !persisted_msgs.is_empty() {
                self.unpersisted_msgs.push_back((number, persisted_msgs));
            }
            self.raft.advance_append_async(ready);
            self.unpersisted_ready = Some(number);
            self.ctx.log_writer.do_send(WriteTask {
                region_id: self.region_id,
                ready_number: number,
                mutations,
                must_sync,
                last_index,
                notify: Some(ctx.address().recipient()),
                flushed: None,
            });
        }
        self.apply_committed(committed);
        self.issue_reads();
        self.serve_reads();
        self.maybe_generate_snapshot(ctx);
        if self.raft.has_ready() {
            self.schedule_ready(ctx);
        }
    }

    /// Replaces this peer's state with a snapshot from the leader; returns the mutations
    /// for the raft-log writer. raft only hands back snapshots this peer verified before
    /// stepping them (see [`PeerFsm::verify_snapshot_then_step`]); one that it cannot find
    /// verified, and that fails verification now, is refused (`None`): accepting part of
    /// it would corrupt the region.
    fn apply_snapshot(
        &mut self,
        snap: &eraftpb::Snapshot,
        ctx: &Context<Self>,
    ) -> Option<Vec<Mutation>> {
        let metadata = snap.get_metadata();
        let verified = match self
            .verified_snapshot
            .take()
            .filter(|v| (v.index, v.term) == (metadata.index, metadata.term))
        {
            Some(verified) => verified,
            None => match snapshot::verify_for(snap, self.region_id, &self.peer) {
                Ok(verified) => verified,
                Err(e) => {
                    error!("raft accepted a snapshot that fails verification: {e}");
                    return None;
                }
            },
        };
        debug!(
            index = verified.index,
            term = verified.term,
            "applying snapshot"
        );
        let mutations = self.raft.mut_store().apply_snapshot(&verified);
        metrics::snapshot("apply", true);
        for p in &verified.region.peers {
            self.peer_cache.insert(p.id, *p);
        }
        self.sent_to_apply = verified.index;
        // The snapshot's write removes the whole log.
        self.log_deleted_below = Some(verified.index + 1);
        self.apply.do_send(ResetApply {
            region: verified.region.clone(),
            apply_state: *self.raft.store().apply_state(),
            sessions: verified.sessions.clone(),
        });
        self.report_route(ctx);
        Some(mutations)
    }

    /// Entries from a new leader replace this peer's log from their first index on: a
    /// proposal this peer made (as an old leader) at one of those indexes, or past the new
    /// end of the log, with another term can never commit, so it is answered now rather
    /// than when the index eventually commits.
    fn drop_overwritten_proposals(&mut self, entries: &[eraftpb::Entry]) {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return;
        };
        let (first_index, last_index) = (first.index, last.index);
        let term_at = |index: u64| entries[(index - first_index) as usize].term;
        let term = self.term();
        let mut kept = VecDeque::with_capacity(self.proposals.len());
        for p in self.proposals.drain(..) {
            let overwritten =
                p.index >= first_index && (p.index > last_index || term_at(p.index) != p.term);
            if overwritten {
                respond_error(p.callback, &Error::StaleCommand, term);
            } else {
                kept.push_back(p);
            }
        }
        self.proposals = kept;
    }

    fn apply_committed(&mut self, entries: Vec<eraftpb::Entry>) {
        let Some(last) = entries.last().map(|e| e.index) else {
            return;
        };
        let mut answered = Vec::new();
        let mut waiting = VecDeque::with_capacity(self.proposals.len());
        for p in self.proposals.drain(..) {
            if p.index <= last {
                answered.push(p);
            } else {
                waiting.push_back(p);
            }
        }
        self.proposals = waiting;
        self.sent_to_apply = self.sent_to_apply.max(last);
        self.apply.do_send(Apply {
            entries,
            proposals: answered,
            forwarded: std::mem::take(&mut self.forwarded),
        });
    }

    fn on_soft_state_change(&mut self, ctx: &Context<Self>) {
        let leader = self.raft.raft.leader_id;
        let leading = self.is_leader();
        if leading != self.hibernation.is_leading() {
            self.hibernation.on_leadership(leading);
        }
        if !self.is_leader() {
            self.lease_until = None;
            self.fail_reads_without_index();
        }
        if self.reported_leader != Some(leader) {
            if self.reported_leader.is_some() {
                self.abandon_proposals_of_old_leader();
            }
            self.reported_leader = Some(leader);
            debug!(leader, term = self.term(), "leader changed");
            self.report_route(ctx);
        }
    }

    /// Tells the Router the region's shape and leader, then (as leader) the report for the
    /// placement driver.
    fn report_route(&mut self, ctx: &Context<Self>) {
        self.ctx.router.do_send(RegionChanged {
            route: RegionRoute {
                region: self.region().clone(),
                leader: self.leader_peer(),
            },
            peer: ctx.address(),
        });
        self.last_report = None;
        self.report_leadership();
    }

    /// Leader: hands the Router this region's report for the placement driver if it
    /// changed since the last one (the node's heartbeat sends only changed reports).
    fn report_leadership(&mut self) {
        if !self.is_leader() {
            self.last_report = None;
            return;
        }
        let report = LeaderReport {
            region: self.region().clone(),
            leader: self.peer,
            pending_peers: self.pending_peers(),
            approximate_size: self.approximate_size,
        };
        if self.last_report.as_ref() != Some(&report) {
            self.last_report = Some(report.clone());
            self.ctx.router.do_send(LeaderReportChanged(report));
        }
    }

    fn on_persisted(&mut self, msg: Persisted, ctx: &mut Context<Self>) {
        if let Some(index) = msg.last_index {
            self.raft.mut_store().on_persisted(index);
        }
        self.raft.on_persist_ready(msg.ready_number);
        if self
            .unpersisted_ready
            .is_some_and(|n| n <= msg.ready_number)
        {
            self.unpersisted_ready = None;
        }
        if let Some((number, index)) = self.persisting_snapshot {
            if number <= msg.ready_number {
                self.persisting_snapshot = None;
                self.raft.advance_apply_to(index);
            }
        }
        while self
            .unpersisted_msgs
            .front()
            .is_some_and(|(n, _)| *n <= msg.ready_number)
        {
            let (_, messages) = self.unpersisted_msgs.pop_front().unwrap();
            self.send_messages(messages);
        }
        self.schedule_ready(ctx);
    }

    fn on_applied(&mut self, msg: Applied, ctx: &mut Context<Self>) {
        let applied = msg.apply_state.applied_index;
        if applied < self.raft.store().applied_index() {
            // Progress from before a snapshot was applied.
            return;
        }
        let first_before = self.raft.store().first_log_index();
        self.raft.mut_store().set_apply_state(msg.apply_state);
        self.size_diff_hint += msg.written_bytes;
        let mut splits = 0usize;
        for result in msg.results {
            match result {
                ExecResult::CompactLog { index } => {
                    self.shrink_log_size_hint(first_before, index);
                    self.delete_compacted_entries(index);
                }
                ExecResult::ChangePeer { change, region } => {
                    self.on_peers_changed(change, region, ctx);
                    if self.destroyed {
                        return;
                    }
                }
                ExecResult::Split { left, right } => {
                    // A batch split yields one result per new region: one line each at
                    // debug, the region's new shape at info once they are all done.
                    debug!(left = ?left, right = ?right, "region split");
                    splits += 1;
                    self.approximate_size = None;
                    self.raft.mut_store().set_region(left);
                    self.report_route(ctx);
                    self.ctx.router.do_send(CreateSplitPeer {
                        region: right,
                        campaign: self.is_leader(),
                    });
                }
            }
        }
        if splits > 0 {
            info!(splits, region = ?self.region(), "region split");
        }
        self.raft.advance_apply_to(applied);
        self.serve_reads();
        self.schedule_ready(ctx);
    }

    fn on_peers_changed(
        &mut self,
        change: Option<ConfChange>,
        region: metapb::Region,
        ctx: &mut Context<Self>,
    ) {
        if let Some(change) = change {
            if let Err(e) = self.raft.apply_conf_change(&change) {
                warn!("raft refused an applied conf change: {e}");
            }
        }
        info!(peers = ?region.peers, epoch = ?region.region_epoch, "membership changed");
        for p in &region.peers {
            self.peer_cache.insert(p.id, *p);
        }
        let removed = !region.peers.iter().any(|p| p.id == self.peer.id);
        self.raft.mut_store().set_region(region);
        self.report_route(ctx);
        if removed {
            self.destroy("removed from the region", ctx);
        }
    }

    /// Removes this peer for good: its raft log and raft state go through the raft-log
    /// writer and its data, apply state and a tombstone region state through the apply
    /// writer, each queued behind this peer's earlier writes so none lands afterwards.
    fn destroy(&mut self, reason: &str, ctx: &mut Context<Self>) {
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
        self.ctx.log_writer.do_send(WriteTask {
            region_id: id,
            ready_number: 0,
            mutations: raft_mutations,
            must_sync: true,
            last_index: None,
            notify: None,
            flushed: None,
        });
        let mut mutations = peer_storage::tombstone(&region);
        if !region.peers.is_empty() || region.region_epoch.is_some() {
            mutations.extend(peer_storage::data_removal(&region));
        }
        self.apply.do_send(DestroyApply { mutations });
        self.ctx.router.do_send(PeerDestroyed {
            region_id: id,
            peer: ctx.address(),
        });
        self.fail_all(&Error::RegionNotFound(id));
        ctx.stop();
    }

    /// Stops this peer without touching its data, to start again from its state on disk,
    /// after raft-rs panicked on a message: its in-memory state can no longer be trusted.
    /// No `Ready` of that state is taken, so what is on disk (and what was sent) comes
    /// from sound states only: to raft this is a crash of one peer. The Store starts the
    /// peer again once every write it and its ApplyFsm queued has landed.
    fn restart(&mut self, ctx: &mut Context<Self>) {
        if self.destroyed {
            return;
        }
        self.destroyed = true;
        error!("restarting this peer from its state on disk");
        metrics::peer_restarted();
        self.fail_all(&Error::Stopped);
        let (log_flushed, log_written) = tokio::sync::oneshot::channel();
        self.ctx.log_writer.do_send(WriteTask {
            region_id: self.region_id,
            ready_number: 0,
            mutations: Vec::new(),
            must_sync: false,
            last_index: None,
            notify: None,
            flushed: Some(log_flushed),
        });
        let (apply_flushed, apply_written) = tokio::sync::oneshot::channel();
        self.apply.do_send(StopApply {
            flushed: apply_flushed,
        });
        self.ctx.router.do_send(RestartPeer {
            region_id: self.region_id,
            peer: ctx.address(),
            flushed: Box::pin(async move {
                let _ = log_written.await;
                let _ = apply_written.await;
            }),
        });
        ctx.stop();
    }

    fn status(&self) -> PeerStatus {
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
        }
    }

    /// On a leader: the peers that lag behind the log this peer still keeps (they need a
    /// snapshot, or are being sent one). Empty on a follower.
    fn pending_peers(&self) -> Vec<metapb::Peer> {
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
    fn fail_all(&mut self, err: &Error) {
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

impl Actor for PeerFsm {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::MAILBOX_CAPACITY);
        self.apply.do_send(AttachPeer(ctx.address().recipient()));
        let _enter = self.span.clone().entered();
        debug!(region = ?self.region(), "peer started");
        self.start_ticking(ctx);
        self.maybe_campaign();
        if self.campaign_on_start && !self.is_leader() {
            let _ = self.raft.campaign();
        }
        self.report_route(ctx);
        self.schedule_ready(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if self.hibernation.is_asleep() {
            metrics::HIBERNATING_PEERS.dec();
        }
        self.fail_all(&Error::Stopped);
    }
}

impl Handler<HandleReady> for PeerFsm {
    type Result = ();

    fn handle(&mut self, _: HandleReady, ctx: &mut Self::Context) {
        let _enter = self.span.clone().entered();
        self.ready_scheduled = false;
        if self.destroyed {
            return;
        }
        self.handle_ready(ctx);
    }
}

impl Handler<RaftCommand> for PeerFsm {
    type Result = ();

    fn handle(&mut self, cmd: RaftCommand, ctx: &mut Self::Context) {
        let _enter = self.span.clone().entered();
        self.on_command(cmd, ctx);
    }
}

impl Handler<InboundRaftMessage> for PeerFsm {
    type Result = ();

    fn handle(&mut self, msg: InboundRaftMessage, ctx: &mut Self::Context) {
        let _enter = self.span.clone().entered();
        if self.destroyed {
            return;
        }
        self.on_raft_message(msg.0, ctx);
        if !self.destroyed {
            self.schedule_ready(ctx);
        }
    }
}

impl Handler<Persisted> for PeerFsm {
    type Result = ();

    fn handle(&mut self, msg: Persisted, ctx: &mut Self::Context) {
        let _enter = self.span.clone().entered();
        self.on_persisted(msg, ctx);
    }
}

impl Handler<Applied> for PeerFsm {
    type Result = ();

    fn handle(&mut self, msg: Applied, ctx: &mut Self::Context) {
        let _enter = self.span.clone().entered();
        self.on_applied(msg, ctx);
    }
}

impl Handler<QueryPeerStatus> for PeerFsm {
    type Result = MessageResult<QueryPeerStatus>;

    fn handle(&mut self, _: QueryPeerStatus, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.status())
    }
}

impl Handler<WakeUp> for PeerFsm {
    type Result = ();

    fn handle(&mut self, _: WakeUp, ctx: &mut Self::Context) {
        let _enter = self.span.clone().entered();
        if !self.destroyed {
            self.wake(false, ctx);
        }
    }
}

impl Handler<Stop> for PeerFsm {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        self.apply.do_send(Stop);
        ctx.stop();
    }
}

/// Tests: makes raft "panic" on the next message this peer steps.
#[cfg(test)]
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct PanicOnNextStep;

#[cfg(test)]
impl Handler<PanicOnNextStep> for PeerFsm {
    type Result = ();

    fn handle(&mut self, _: PanicOnNextStep, _: &mut Self::Context) {
        self.panic_on_next_step = true;
    }
}

#[cfg(test)]
mod tests {
    use super::{read_batch, read_context};

    #[test]
    fn read_contexts_of_different_peers_never_collide() {
        // Two followers' batches with the same number reach the leader at once: raft-rs
        // keeps pending ReadIndex requests by context, so equal contexts lose one.
        assert_ne!(read_context(2, 57), read_context(3, 57));
        assert_eq!(read_batch(2, &read_context(2, 57)), Some(57));
        assert_eq!(read_batch(3, &read_context(2, 57)), None);
        assert_eq!(read_batch(2, &57u64.to_be_bytes()), None);
    }
}

#[cfg(test)]
mod restart_tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tinykv_proto::eraftpb::{Message as RaftMsg, MessageType};
    use tinykv_proto::metapb::Peer;
    use tinykv_proto::raft_cmdpb::{CmdType, GetRequest, PutRequest, RaftCmdRequest, Request};
    use tinykv_proto::raft_serverpb::RaftMessage;

    use super::PanicOnNextStep;
    use crate::bootstrap::ensure_bootstrapped;
    use crate::msg::PeerOf;
    use crate::{start_store, Engine, RaftStoreConfig, Transport};

    struct NoNetwork;

    impl Transport for NoNetwork {
        fn send(&self, _: RaftMessage) {}
    }

    const T: Duration = Duration::from_secs(10);

    fn command(request: Request) -> RaftCmdRequest {
        RaftCmdRequest {
            requests: vec![request],
            ..Default::default()
        }
    }

    /// A panic inside raft-rs while stepping a message costs the peer a restart from its
    /// state on disk, not the node: the region comes back with its data and takes writes.
    #[actix_rt::test]
    async fn a_peer_whose_raft_panics_restarts_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        ensure_bootstrapped(&engine, 1, 1, &[1]).unwrap();
        let store = start_store(RaftStoreConfig::for_tests(), engine, Arc::new(NoNetwork))
            .await
            .unwrap();
        let router = store.router();
        let put = |key: &[u8]| {
            command(Request {
                cmd_type: CmdType::Put as i32,
                put: Some(PutRequest {
                    cf: "default".into(),
                    key: key.to_vec(),
                    value: b"v".to_vec(),
                }),
                ..Default::default()
            })
        };
        let response = router
            .key_command(b"k".to_vec(), put(b"k"), T)
            .await
            .unwrap();
        assert!(response.err().is_none());
        let before = crate::metrics::PEER_RESTARTS.get();

        let peer = router.router_addr().send(PeerOf(1)).await.unwrap().unwrap();
        peer.send(PanicOnNextStep).await.unwrap();
        let vote = RaftMsg {
            msg_type: MessageType::MsgRequestPreVote as i32,
            from: 9,
            to: 1,
            term: 50,
            ..Default::default()
        };
        router.deliver(RaftMessage {
            region_id: 1,
            from_peer: Some(Peer { id: 9, store_id: 2 }),
            to_peer: Some(Peer { id: 1, store_id: 1 }),
            message: Some(vote),
            ..Default::default()
        });

        // The old peer stops, and a new one takes its place once its writes have landed.
        let deadline = std::time::Instant::now() + T;
        loop {
            let restarted = router.router_addr().send(PeerOf(1)).await.unwrap();
            if restarted.is_some_and(|p| p != peer) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the peer did not come back"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(crate::metrics::PEER_RESTARTS.get(), before + 1);
        let get = command(Request {
            cmd_type: CmdType::Get as i32,
            get: Some(GetRequest {
                cf: "default".into(),
                key: b"k".to_vec(),
            }),
            ..Default::default()
        });
        let mut value = None;
        for _ in 0..200 {
            if let Ok(response) = router.key_command(b"k".to_vec(), get.clone(), T).await {
                if response.err().is_none() {
                    value = response.response.responses[0].get.clone().map(|g| g.value);
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(value.as_deref(), Some(&b"v"[..]));
        let response = router
            .key_command(b"k2".to_vec(), put(b"k2"), T)
            .await
            .unwrap();
        assert!(response.err().is_none(), "{:?}", response.err());
        store.shutdown().await;
    }
}
