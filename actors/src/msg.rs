//! The typed messages the raftstore actors exchange, and the callback a command answers.
//!
//! Who sends what:
//!
//! | message | from → to |
//! |---|---|
//! | [`RaftCommand`], [`KeyCommand`] | client → Router → PeerFsm |
//! | [`InboundRaftMessage`] | transport → Router → PeerFsm (or Store for unknown regions) |
//! | [`WriteTask`] / [`Persisted`] | PeerFsm → RaftLogWriter → PeerFsm |
//! | [`LogGcTask`] | PeerFsm → the log GC actor (compacted entries deleted) |
//! | [`Apply`] | PeerFsm → ApplyFsm |
//! | [`ApplyTask`] / [`Applied`] | ApplyFsm → ApplyWriter → PeerFsm (callbacks answered) |
//! | [`DropForwarded`] | PeerFsm → ApplyFsm (forwarded writes answered with an error) |
//! | [`ResetApply`], [`StopApply`], [`DestroyApply`] | PeerFsm → ApplyFsm (after a snapshot, on a restart, on destruction) |
//! | [`CatchUpLogs`] | ApplyFsm → Router → PeerFsm (a merge's source catches up) |
//! | [`MergedAway`] | PeerFsm → Router → PeerFsm (a merge's source is absorbed) |
//! | [`CheckSnapshotRange`] | PeerFsm → Router (may a snapshot's range be applied?) |
//! | [`RegionChanged`] | PeerFsm → Router (range index and leader hints) |
//! | [`LeaderReportChanged`] | PeerFsm → Router (what the placement driver is told) |
//! | [`TakeLeaderReports`], [`FindRegion`], [`ListRegions`], [`QueryRegionStatus`], [`WakeRegionsLedBy`] | node → Router |
//! | [`QueryPeerStatus`], [`WakeUp`] | Router → PeerFsm |
//! | [`CreateSplitPeer`], [`PeerDestroyed`] | PeerFsm → Router → Store |
//! | [`RestartPeer`] | PeerFsm → Router → Store (a peer restarts from disk) |
//! | [`CheckMembership`] | Store (restart), Router (snapshot overlap) → PeerFsm |
//! | [`Stop`] | node → Store (and every actor of the store) |
//!
//! A command is answered exactly once through its [`Callback`]: with a response, or with a
//! region error in the response header. A caller that gives up (times out) just drops the
//! receiving end.

use actix::prelude::*;
use raft::eraftpb::Entry;
use tinykv_proto::metapb;
use tinykv_proto::raft_cmdpb::{RaftCmdRequest, RaftCmdResponse, RaftResponseHeader};
use tinykv_proto::raft_serverpb::{MergeState, RaftApplyState, RaftMessage};
use tokio::sync::oneshot;

use crate::engine::{Cf, EngineSnapshot, Mutation};
use crate::error::{Error, Result};
use crate::keys;

/// A region's data as of one instant, bounded to the region's range: what a `Snap`
/// request returns once the read is known to be linearizable.
pub struct RegionSnapshot {
    /// The region as of the read.
    pub region: metapb::Region,
    /// The engine snapshot the data is read from.
    pub snapshot: EngineSnapshot,
}

impl RegionSnapshot {
    /// Reads one key, which must lie in the region.
    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_key(key)?;
        self.snapshot.get(cf, key)
    }

    /// Scans `[start, end)` intersected with the region's range (empty `end`: up to the
    /// region's end), returning at most `limit` pairs, and stopping once their keys and
    /// values reach `max_bytes` (the pair that reaches it included). `start` must lie in
    /// the region.
    pub fn scan(
        &self,
        cf: Cf,
        start: &[u8],
        end: &[u8],
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        // The read was routed by `start`; if the region split before the read was served,
        // `start` may now belong to another region and the caller must retry there.
        self.check_key(start)?;
        let mut pairs = Vec::new();
        if limit == 0 {
            return Ok(pairs);
        }
        let mut bytes = 0usize;
        self.visit(cf, start, end, |k, v| {
            bytes += k.len() + v.len();
            pairs.push((k.to_vec(), v.to_vec()));
            pairs.len() < limit && bytes < max_bytes
        })?;
        Ok(pairs)
    }

    /// Visits the pairs of `cf` in `[start, end)` intersected with the region's range
    /// (empty `end`: up to the region's end), in key order, until `f` returns false.
    pub fn visit(
        &self,
        cf: Cf,
        start: &[u8],
        end: &[u8],
        f: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let lower = start.max(self.region.start_key.as_slice());
        let upper = match (end.is_empty(), self.region.end_key.is_empty()) {
            (true, _) => self.region.end_key.as_slice(),
            (false, true) => end,
            (false, false) => end.min(self.region.end_key.as_slice()),
        };
        if !upper.is_empty() && lower >= upper {
            return Ok(());
        }
        self.snapshot.scan(cf, lower, upper, f)
    }

    /// Whether `key` lies in the region: an error naming the region's range if not (the
    /// request was routed by a region that has split or merged since).
    pub fn check_key(&self, key: &[u8]) -> Result<()> {
        if keys::in_range(key, &self.region.start_key, &self.region.end_key) {
            Ok(())
        } else {
            Err(Error::KeyNotInRegion {
                key: key.to_vec(),
                region_id: self.region.id,
                start_key: self.region.start_key.clone(),
                end_key: self.region.end_key.clone(),
            })
        }
    }
}

/// The answer to a command: the protobuf response, plus the region snapshot of a `Snap`.
pub struct CmdResponse {
    /// The response; `header.error` is set if the command failed.
    pub response: RaftCmdResponse,
    /// For a command holding a `Snap` request: the data to read.
    pub snapshot: Option<RegionSnapshot>,
    /// For a write answered by its ApplyFsm: when it passed each raftstore stage.
    pub stages: Option<WriteStages>,
}

/// When a write passed the raftstore's stages, for the per-stage latency metrics: the
/// time from sending the command to `proposed_at` is its wait in the Router's and the
/// PeerFsm's mailboxes; from there to `committed_at`, raft (the log's write and fsync,
/// replication to a majority, commit); from there to `applied_at`, the wait in the
/// ApplyFsm's mailbox and the apply itself; from there to its answer, the apply writer's
/// batch.
#[derive(Debug, Clone, Copy)]
pub struct WriteStages {
    /// When the PeerFsm proposed it.
    pub proposed_at: std::time::Instant,
    /// When the PeerFsm sent its committed entry to the ApplyFsm.
    pub committed_at: std::time::Instant,
    /// When the leader's own raft log held the entry durably (its raft-log writer's
    /// batch and fsync), if the write was proposed at the leader and that was known by
    /// the time it committed. It may come after `committed_at`: two followers' fsyncs
    /// make a quorum of three without the leader's.
    pub persisted_at: Option<std::time::Instant>,
    /// When the ApplyFsm applied its entry (before the apply writer wrote it).
    pub applied_at: std::time::Instant,
}

impl CmdResponse {
    /// A response carrying only an error.
    pub fn error(err: &Error, term: u64) -> CmdResponse {
        CmdResponse {
            response: RaftCmdResponse {
                header: Some(RaftResponseHeader {
                    error: Some(err.to_pb()),
                    current_term: term,
                    ..Default::default()
                }),
                ..Default::default()
            },
            snapshot: None,
            stages: None,
        }
    }

    /// The error in the header, if any.
    pub fn err(&self) -> Option<Error> {
        self.response
            .header
            .as_ref()
            .and_then(|h| h.error.as_ref())
            .map(Error::from_pb)
    }
}

/// The one-shot channel a command is answered on.
pub type Callback = oneshot::Sender<CmdResponse>;

/// Answers `callback` with `err`; a caller that went away is not an error.
pub fn respond_error(callback: Callback, err: &Error, term: u64) {
    let _ = callback.send(CmdResponse::error(err, term));
}

/// A command for one region, addressed by `request.header.region_id`.
///
/// If the header carries no region epoch, the sender routed the command by key and the
/// PeerFsm stamps its own current epoch on it after checking the keys are in the region.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RaftCommand {
    /// The command.
    pub request: RaftCmdRequest,
    /// Where the answer goes.
    pub callback: Callback,
}

/// A command routed by the Router to whichever local region holds `key`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct KeyCommand {
    /// The key that picks the region.
    pub key: Vec<u8>,
    /// The command; its header is filled in by the Router and the PeerFsm.
    pub request: RaftCmdRequest,
    /// Where the answer goes.
    pub callback: Callback,
}

/// A raft message from another store.
#[derive(Message)]
#[rtype(result = "()")]
pub struct InboundRaftMessage(pub RaftMessage);

/// Log entries and hard state a PeerFsm wants on disk (one raft-rs `Ready`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct WriteTask {
    /// The region, for logs.
    pub region_id: u64,
    /// The `Ready` number to acknowledge with [`Persisted`].
    pub ready_number: u64,
    /// What to write.
    pub mutations: Vec<Mutation>,
    /// Whether the write must be fsynced before it is acknowledged.
    pub must_sync: bool,
    /// Last log index the write leaves on disk, if it appends entries.
    pub last_index: Option<u64>,
    /// Who to tell once the write is durable (nobody, for a destroyed peer's cleanup).
    pub notify: Option<Recipient<Persisted>>,
    /// Completed once the write is done, and with it every task queued before it: the
    /// barrier a restarting peer waits behind (see [`RestartPeer`]).
    pub flushed: Option<oneshot::Sender<()>>,
}

/// A [`WriteTask`] is durable.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Persisted {
    /// The acknowledged `Ready` number (and implicitly every earlier one).
    pub ready_number: u64,
    /// Last log index now on disk, if the task appended entries.
    pub last_index: Option<u64>,
}

/// A command waiting for its log entry, identified by (index, term).
pub struct Proposal {
    /// Log index the command was proposed at.
    pub index: u64,
    /// Term the command was proposed in.
    pub term: u64,
    /// Where the answer goes.
    pub callback: Callback,
    /// When the command was proposed, for the propose-to-apply latency metric.
    pub proposed_at: std::time::Instant,
    /// When the leader's own raft log held the entry durably, once it did.
    pub persisted_at: Option<std::time::Instant>,
}

/// A write a follower forwarded to its leader through raft: it is answered when the
/// follower applies the entry carrying its `uuid`.
pub struct ForwardedProposal {
    /// The `uuid` in the command's header.
    pub uuid: Vec<u8>,
    /// Where the answer goes.
    pub callback: Callback,
    /// When the command was proposed, for the propose-to-apply latency metric.
    pub proposed_at: std::time::Instant,
}

/// Forwarded writes to stop waiting for: the ApplyFsm answers those it holds with
/// `error`. Either the leader did not take them (they were never appended: "not leader"),
/// or the leader they went to is gone (they may yet commit: "timeout", outcome unknown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct DropForwarded {
    /// The writes' uuids; `None`: all of them.
    pub uuids: Option<Vec<Vec<u8>>>,
    /// The answer.
    pub error: Error,
}

/// Committed entries for the ApplyFsm, with the proposals they may answer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Apply {
    /// Committed entries, in index order.
    pub entries: Vec<Entry>,
    /// Proposals whose index is at most the last entry's index.
    pub proposals: Vec<Proposal>,
    /// Writes forwarded to the leader since the last `Apply`; their entries may be among
    /// these or come later.
    pub forwarded: Vec<ForwardedProposal>,
    /// When the PeerFsm learnt the entries were committed and sent them.
    pub committed_at: std::time::Instant,
}

/// Applied mutations of one or more entries, for the ApplyWriter.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ApplyTask {
    /// The region, for logs.
    pub region_id: u64,
    /// Data changes plus the new apply state, written atomically.
    pub mutations: Vec<Mutation>,
    /// Responses to deliver once the write is done.
    pub responses: Vec<(Callback, CmdResponse)>,
    /// Progress to report to the PeerFsm once the write is done.
    pub applied: Applied,
    /// The PeerFsm to report to.
    pub notify: Recipient<Applied>,
}

/// Apply progress of a region, reported to its PeerFsm.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Applied {
    /// The apply state now visible in the engine.
    pub apply_state: RaftApplyState,
    /// Term of the last applied entry.
    pub applied_term: u64,
    /// Effects of applied admin commands the PeerFsm must act on, in log order.
    pub results: Vec<ExecResult>,
    /// Bytes of keys and values written, a hint of how much the region grew.
    pub written_bytes: u64,
}

/// The effect of an applied admin command on the peer.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecResult {
    /// The log was truncated up to `index`: entries below can be deleted.
    CompactLog {
        /// The new truncated index.
        index: u64,
    },
    /// A membership change was applied (`change` is `None` if it changed nothing, e.g. a
    /// duplicate AddNode): raft must apply `change`, the peer adopts `region`.
    ChangePeer {
        /// The raft conf change to apply, if the membership changed.
        change: Option<raft::eraftpb::ConfChange>,
        /// The region after the change.
        region: metapb::Region,
    },
    /// The region split: this peer keeps `left`; a new peer of `right` must be created.
    Split {
        /// The parent region, now ending at the split key.
        left: metapb::Region,
        /// The new region, starting at the split key.
        right: metapb::Region,
    },
    /// This region (a merge's source) applied PrepareMerge: it is frozen as `region`.
    PrepareMerge {
        /// The region after PrepareMerge (epoch bumped).
        region: metapb::Region,
        /// What the PrepareMerge recorded.
        state: MergeState,
    },
    /// This region (a merge's target) absorbed `source`: its peer here must go, its
    /// data staying where it is, now this region's.
    CommitMerge {
        /// The region after the merge.
        region: metapb::Region,
        /// The source, as its PrepareMerge left it.
        source: metapb::Region,
    },
    /// This region's merge was rolled back: it takes commands again.
    RollbackMerge {
        /// The region after the rollback (version bumped).
        region: metapb::Region,
    },
}

/// A merge target's ApplyFsm waits for this store's peer of the source to apply up to
/// its PrepareMerge: the source peer commits up to that entry, which it holds (the
/// source's leader proposed the CommitMerge only once every peer had it), even if no
/// leader is left to tell it (ApplyFsm → Router → PeerFsm).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct CatchUpLogs {
    /// The source region.
    pub region_id: u64,
    /// Index of the source's PrepareMerge entry.
    pub commit: u64,
    /// Its term.
    pub commit_term: u64,
}

/// The source of a merge was absorbed by `target` on this store (its CommitMerge
/// applied, or a snapshot of the target covers it): its peer destroys itself, keeping
/// the data, which is the target's now (PeerFsm → Router → PeerFsm).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct MergedAway {
    /// The source region.
    pub region_id: u64,
    /// The region that absorbed it.
    pub target: u64,
    /// The source's version when it was merged: a peer of the region at a newer one is
    /// not what was merged.
    pub version: u64,
}

/// Deletion of compacted raft log entries, for the log GC actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LogGcTask {
    /// The region, for logs.
    pub region_id: u64,
    /// The range deletion.
    pub mutations: Vec<Mutation>,
}

/// Tells an ApplyFsm its peer is destroyed: write `mutations` (tombstone, data removal)
/// after everything already queued, then stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DestroyApply {
    /// The destruction's data and state changes.
    pub mutations: Vec<Mutation>,
}

/// Stops an ApplyFsm whose peer restarts: `flushed` completes once everything it queued
/// at the apply writer is written.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopApply {
    /// The barrier behind the ApplyFsm's writes.
    pub flushed: oneshot::Sender<()>,
}

/// A PeerFsm whose in-memory raft state can no longer be trusted (raft-rs panicked on a
/// message) stopped itself without touching its data; the Store starts the peer again
/// from what is on disk once `flushed` completes, that is once every write the stopped
/// peer and its ApplyFsm queued has landed (PeerFsm → Router → Store). Like a crash of
/// that one peer: raft's durable state is always one it may restart from.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RestartPeer {
    /// The region.
    pub region_id: u64,
    /// The stopped PeerFsm, so that a newer peer of the region is not forgotten.
    pub peer: actix::Addr<crate::peer::PeerFsm>,
    /// Completes once the stopped peer's writes are on disk.
    pub flushed: futures::future::BoxFuture<'static, ()>,
}

/// Asks the Router whether a snapshot of region `region_id` covering `[start_key,
/// end_key)` may be applied: no other local region may overlap that range, or applying
/// it would overwrite that region's data, except the sources of merges into this region
/// (the snapshot holds what they had, and more). Answers `true` if it may; the sources
/// it overlaps are then told they were merged away.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct CheckSnapshotRange {
    /// The snapshot's region.
    pub region_id: u64,
    /// The snapshot's first key.
    pub start_key: Vec<u8>,
    /// The snapshot's end key (empty: unbounded).
    pub end_key: Vec<u8>,
    /// The regions the snapshot's region absorbed, by id, with their version then.
    pub merged_sources: Vec<(u64, u64)>,
}

/// Resets an ApplyFsm after its peer applied a snapshot.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ResetApply {
    /// The region as of the snapshot.
    pub region: metapb::Region,
    /// The apply state as of the snapshot.
    pub apply_state: RaftApplyState,
    /// The region's session table as of the snapshot.
    pub sessions: crate::session::SessionTable,
}

/// Where a region is and who leads it, as the Router knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionRoute {
    /// The region (range, epoch, peers).
    pub region: metapb::Region,
    /// The leader as last reported by the local peer.
    pub leader: Option<metapb::Peer>,
    /// While the region is a merge's source: the target's id.
    pub merge_target: Option<u64>,
}

/// What a region's leader tells the placement driver about the region: the PeerFsm hands
/// it to the Router whenever it changes, and the node's heartbeat sends the changed ones.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaderReport {
    /// The region (range, epoch, peers).
    pub region: metapb::Region,
    /// The leader: this store's peer.
    pub leader: metapb::Peer,
    /// Peers lagging behind the log the leader keeps.
    pub pending_peers: Vec<metapb::Peer>,
    /// The region's size as last measured.
    pub approximate_size: Option<u64>,
}

/// A leader's report changed (PeerFsm → Router).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct LeaderReportChanged(pub LeaderReport);

/// Asks the Router for the leader reports of the regions this store leads: those changed
/// since the last call, or all of them (`all`).
#[derive(Message, Debug)]
#[rtype(result = "LeaderReports")]
pub struct TakeLeaderReports {
    /// Every report, not only the changed ones.
    pub all: bool,
}

/// The Router's answer to [`TakeLeaderReports`].
#[derive(Debug, Clone, Default)]
pub struct LeaderReports {
    /// The reports.
    pub reports: Vec<LeaderReport>,
    /// How many region peers the store holds.
    pub region_count: usize,
    /// The sizes of all the regions led here, summed (those never measured count 0).
    pub used_size: u64,
}

/// A PeerFsm registers with the Router, or reports a new region shape or leader. The
/// PeerFsm sends it when it starts and whenever its region or leader changes, so the
/// Router never learns of a peer from anyone else and cannot see its reports out of order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RegionChanged {
    /// The region and leader as the peer now knows them.
    pub route: RegionRoute,
    /// The reporting PeerFsm.
    pub peer: actix::Addr<crate::peer::PeerFsm>,
}

/// Asks the Router which local region holds `key`.
#[derive(Message)]
#[rtype(result = "Option<RegionRoute>")]
pub struct FindRegion {
    /// The key.
    pub key: Vec<u8>,
}

/// Asks the Router for every local region, ordered by start key.
#[derive(Message)]
#[rtype(result = "Vec<RegionRoute>")]
pub struct ListRegions;

/// A peer's view of its raft group, for the admin API and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerStatus {
    /// The region.
    pub region: metapb::Region,
    /// This peer.
    pub peer: metapb::Peer,
    /// The leader's peer id (0: unknown).
    pub leader_id: u64,
    /// Current raft term.
    pub term: u64,
    /// Commit index.
    pub commit_index: u64,
    /// Applied index.
    pub applied_index: u64,
    /// Last log index.
    pub last_index: u64,
    /// Index of the last compacted log entry.
    pub truncated_index: u64,
    /// Bytes of data in the region as of the last size check, if one ran.
    pub approximate_size: Option<u64>,
    /// On the leader: peers that lag behind the log it keeps (need or receive a
    /// snapshot). Empty on a follower.
    pub pending_peers: Vec<metapb::Peer>,
    /// The peer sleeps (hibernates): no ticks, no heartbeats.
    pub hibernating: bool,
    /// Its ApplyFsm is parked (stopped, its state kept by the PeerFsm) while it sleeps.
    pub apply_parked: bool,
}

/// Wakes a sleeping peer (see `hibernate.rs`); nothing if it is awake.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct WakeUp;

/// Asks a sleeping follower to make sure, with the other stores, that it is still a
/// member of its region (see `stale_peer.rs`), without waking it: a peer asleep since its
/// store restarted, or whose range is in the way of another region's new replica, may
/// have been removed while nobody could tell it. An awake peer ignores it.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct CheckMembership;

/// Asks the Router to wake the local peers whose region's leader, as last reported, is on
/// one of these stores (at most [`crate::router::WAKES_PER_REQUEST`] of them per request,
/// the next ones on the next request): the placement driver reports the stores down, and
/// a sleeping follower would not notice its leader is gone until someone needed the
/// region. Answers how many were woken.
#[derive(Message, Debug, Clone)]
#[rtype(result = "usize")]
pub struct WakeRegionsLedBy(pub Vec<u64>);

/// Asks a PeerFsm for its [`PeerStatus`].
#[derive(Message)]
#[rtype(result = "PeerStatus")]
pub struct QueryPeerStatus;

/// Asks the Router for the status of a local region's peer.
#[derive(Message)]
#[rtype(result = "Option<PeerStatus>")]
pub struct QueryRegionStatus(pub u64);

/// A PeerFsm of a split's new region must be created (PeerFsm → Router → Store).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CreateSplitPeer {
    /// The new region, as the split wrote it.
    pub region: metapb::Region,
    /// Whether the new peer should campaign at once (its parent led).
    pub campaign: bool,
}

/// A PeerFsm destroyed itself (PeerFsm → Router → Store).
#[derive(Message)]
#[rtype(result = "()")]
pub struct PeerDestroyed {
    /// The region.
    pub region_id: u64,
    /// The destroyed PeerFsm, so a newer peer of the same region is not forgotten.
    pub peer: actix::Addr<crate::peer::PeerFsm>,
}

/// Stops an actor (and, for the Store, every actor of the store).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

/// Tests: asks the Router for the PeerFsm of a region.
#[cfg(test)]
#[derive(Message)]
#[rtype(result = "Option<actix::Addr<crate::peer::PeerFsm>>")]
pub(crate) struct PeerOf(pub u64);
