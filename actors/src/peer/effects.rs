//! What the [`Peer`](super::Peer) core asks the world to do.
//!
//! The core never sends to an actor, starts a timer or spawns a task itself: it pushes an
//! [`Effect`] onto its outbox, and whoever drives it carries the effects out in order.
//! In the node that is the [`PeerFsm`](super::PeerFsm) shell, which turns them into
//! actor messages, timers and blocking tasks; in the core's unit tests it is a test
//! harness that delivers messages, persists and applies by hand, step by step, so a
//! scenario runs the same way every time.
//!
//! Two things stay direct calls because they are already abstract and synchronous: raft
//! messages to other stores go to the [`Transport`](crate::transport::Transport) trait,
//! and callbacks are answered on their oneshot channels.

use tinykv_proto::metapb;

use crate::msg::{
    Apply, CreateSplitPeer, DestroyApply, DropForwarded, LeaderReport, LogGcTask, MergedAway,
    RegionRoute, ResetApply, StopApply, WriteTask,
};

/// One thing the core wants done, in the order it wants them.
pub enum Effect {
    /// Persist a `Ready` through the raft-log writer and report [`crate::msg::Persisted`]
    /// back to this peer (the task's `notify` is the driver's to fill in).
    PersistReady(WriteTask),
    /// A raft-log write that reports nothing back (a destroyed peer's tombstone, or the
    /// flush marker of a restart).
    WriteLog(WriteTask),
    /// Delete compacted log entries in the background.
    DeleteLog(LogGcTask),
    /// A message for this peer's ApplyFsm.
    Apply(ToApply),
    /// A message for the store's Router.
    Route(ToRouter),
    /// Start the tick timer: [`super::Peer::on_tick`] every base tick.
    StartTicking,
    /// The peer fell asleep (or starts asleep): stop the tick timer, if it runs; the
    /// ApplyFsm may park until it is needed.
    Asleep,
    /// Take raft's `Ready` soon: [`super::Peer::on_ready_due`], once, after the inputs
    /// that are already queued.
    ScheduleReady,
    /// Generate a snapshot of the region off-thread and hand it to
    /// [`super::Peer::on_snapshot_generated`].
    GenerateSnapshot,
    /// Verify a snapshot message off-thread, check its epoch
    /// ([`super::Peer::check_snapshot_epoch`]) and range (with the Router), and hand the
    /// outcome to [`super::Peer::on_snapshot_verified`].
    VerifySnapshot(Box<raft::eraftpb::Message>),
    /// Measure the region off-thread and hand the outcome to
    /// [`super::Peer::on_split_check_done`].
    CheckSize {
        /// The region as it is now.
        region: metapb::Region,
        /// Split once the region is larger than this.
        max_size: u64,
        /// The size of each part a split makes.
        split_size: u64,
    },
    /// Send a CommitMerge request to the merge target through the Router and hand its
    /// answer to `Peer::on_commit_merge_answer`.
    AskCommitMerge {
        /// The CommitMerge command for the target region.
        request: Box<tinykv_proto::raft_cmdpb::RaftCmdRequest>,
        /// The source's commit index the request carries.
        commit: u64,
    },
    /// The peer is finished (destroyed, or stopped to restart): stop the actor.
    Stop,
}

/// A message for the peer's ApplyFsm.
pub enum ToApply {
    /// Committed entries and the proposals they answer.
    Apply(Apply),
    /// A snapshot replaced the state machine.
    Reset(ResetApply),
    /// Forwarded writes that will never be applied here.
    DropForwarded(DropForwarded),
    /// The peer was destroyed: write its tombstone (and remove its data).
    Destroy(DestroyApply),
    /// The peer restarts: flush and stop.
    Stop(StopApply),
}

/// A message for the store's Router. Those that name the peer get its address from the
/// driver.
pub enum ToRouter {
    /// The region's shape or leader changed.
    RegionChanged(RegionRoute),
    /// This leader's report for the placement driver changed.
    LeaderReport(LeaderReport),
    /// A split made a new region: create its peer on this store.
    CreateSplitPeer(CreateSplitPeer),
    /// A merge source absorbed by this target is gone.
    MergedAway(MergedAway),
    /// The peer destroyed itself.
    Destroyed,
    /// The peer stopped to restart from disk once `flushed` completes.
    Restart(futures::future::BoxFuture<'static, ()>),
}
