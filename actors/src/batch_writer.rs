//! Group commit: the batched write actors.
//!
//! Every PeerFsm hands its raft log appends to one [`RaftLogWriter`], and every ApplyFsm
//! hands its applied mutations to one [`ApplyWriter`]; compacted log entries are deleted in
//! the background by a [`RaftLogGcWriter`]. Each writer is the same actor, a
//! [`BatchWriter`], specialised by a [`WriteKind`]:
//!
//! 1. a task arrives; if no write is in progress, a write of everything pending starts on
//!    a blocking thread (so the actor's arbiter never waits on the disk);
//! 2. while that write runs, new tasks from any region pile up in `pending`;
//! 3. when it completes, every task in it is acknowledged ([`WriteKind::on_durable`]) and,
//!    if tasks piled up, the next write starts with all of them at once.
//!
//! The busier the store, the bigger each batch: one fsync covers the appends of many
//! regions (raft log), and one engine batch covers the applies of many regions (apply).
//! Tasks are written and acknowledged in arrival order, which keeps each region's writes
//! in order. A failed write is fatal: the writer panics rather than acknowledge data that
//! may not be on disk, and the node restarts from what is.

use std::marker::PhantomData;
use std::time::Instant;

use actix::prelude::*;

use crate::alive::AliveToken;
use crate::engine::{Engine, Mutation};
use crate::msg::{ApplyTask, LogGcTask, Persisted, WriteTask};

/// What a writer writes and how it acknowledges it.
pub trait WriteKind: Unpin + 'static {
    /// The task message.
    type Task: Message<Result = ()> + Send + Unpin + 'static;
    /// Name used in logs.
    const NAME: &'static str;
    /// The `writer` label of the writer's metrics.
    const METRIC_LABEL: &'static str;
    /// The task's mutations.
    fn mutations(task: &Self::Task) -> &[Mutation];
    /// Whether the task must be fsynced before acknowledgement.
    fn must_sync(task: &Self::Task) -> bool;
    /// Acknowledges a task whose mutations are written (and synced if it asked).
    fn on_durable(task: Self::Task);
}

/// The group-commit actor; see the module documentation.
pub struct BatchWriter<K: WriteKind> {
    engine: Engine,
    pending: Vec<K::Task>,
    flushing: bool,
    max_batch_bytes: usize,
    token: AliveToken,
    _kind: PhantomData<K>,
}

impl<K: WriteKind> BatchWriter<K> {
    /// A writer over `engine` whose batches hold at most about `max_batch_bytes` (a single
    /// larger task still goes in one batch).
    pub fn new(engine: Engine, max_batch_bytes: usize, token: AliveToken) -> Self {
        BatchWriter {
            engine,
            pending: Vec::new(),
            flushing: false,
            max_batch_bytes,
            token,
            _kind: PhantomData,
        }
    }

    fn take_batch(&mut self) -> Vec<K::Task> {
        let mut bytes = 0;
        let mut count = 0;
        for task in &self.pending {
            let size: usize = K::mutations(task).iter().map(Mutation::size).sum();
            if count > 0 && bytes + size > self.max_batch_bytes {
                break;
            }
            bytes += size;
            count += 1;
        }
        self.pending.drain(..count).collect()
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || self.pending.is_empty() {
            return;
        }
        self.flushing = true;
        let tasks = self.take_batch();
        let engine = self.engine.clone();
        let token = self.token.clone();
        let write = tokio::task::spawn_blocking(move || {
            let _token = token;
            let sync = tasks.iter().any(K::must_sync);
            let started = Instant::now();
            let mutations = tasks.iter().flat_map(|t| K::mutations(t).iter());
            let result = engine.write_all(mutations, sync);
            let bytes = tasks
                .iter()
                .flat_map(|t| K::mutations(t))
                .map(Mutation::size);
            let (count, elapsed) = (tasks.len(), started.elapsed());
            crate::metrics::batch_written(K::METRIC_LABEL, count, bytes.sum(), elapsed);
            tracing::trace!(
                writer = K::NAME,
                tasks = tasks.len(),
                sync,
                micros = started.elapsed().as_micros() as u64,
                "batch written"
            );
            (tasks, result)
        });
        ctx.spawn(write.into_actor(self).map(|joined, writer, ctx| {
            let (tasks, result) = joined.expect("write thread panicked");
            if let Err(e) = result {
                tracing::error!(writer = K::NAME, "write failed, stopping: {e}");
                panic!(
                    "{} write failed: {e}; refusing to acknowledge writes",
                    K::NAME
                );
            }
            for task in tasks {
                K::on_durable(task);
            }
            writer.flushing = false;
            writer.flush(ctx);
        }));
    }
}

impl<K: WriteKind> Actor for BatchWriter<K> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::MAILBOX_CAPACITY);
    }
}

impl<K: WriteKind> Handler<K::Task> for BatchWriter<K> {
    type Result = ();

    fn handle(&mut self, task: K::Task, ctx: &mut Self::Context) {
        self.pending.push(task);
        self.flush(ctx);
    }
}

/// Raft log appends: fsynced when the `Ready` demands it, acknowledged with [`Persisted`].
pub struct RaftLog;

impl WriteKind for RaftLog {
    type Task = WriteTask;
    const NAME: &'static str = "raft-log-writer";
    const METRIC_LABEL: &'static str = "raft_log";

    fn mutations(task: &WriteTask) -> &[Mutation] {
        &task.mutations
    }

    fn must_sync(task: &WriteTask) -> bool {
        task.must_sync
    }

    fn on_durable(task: WriteTask) {
        if let Some(notify) = task.notify {
            notify.do_send(Persisted {
                ready_number: task.ready_number,
                last_index: task.last_index,
            });
        }
    }
}

/// Applied data plus apply state: buffered (replayable from the raft log), acknowledged by
/// answering the commands' callbacks and reporting progress to the PeerFsm.
pub struct ApplyLog;

impl WriteKind for ApplyLog {
    type Task = ApplyTask;
    const NAME: &'static str = "apply-writer";
    const METRIC_LABEL: &'static str = "apply";

    fn mutations(task: &ApplyTask) -> &[Mutation] {
        &task.mutations
    }

    fn must_sync(_: &ApplyTask) -> bool {
        false
    }

    fn on_durable(task: ApplyTask) {
        for (callback, response) in task.responses {
            let _ = callback.send(response);
        }
        task.notify.do_send(task.applied);
    }
}

/// Deletion of compacted raft log entries: unsynced (a crash only leaves garbage below the
/// truncated index, which the next compaction deletes) and acknowledged to nobody.
pub struct LogGc;

impl WriteKind for LogGc {
    type Task = LogGcTask;
    const NAME: &'static str = "raft-log-gc";
    const METRIC_LABEL: &'static str = "log_gc";

    fn mutations(task: &LogGcTask) -> &[Mutation] {
        &task.mutations
    }

    fn must_sync(_: &LogGcTask) -> bool {
        false
    }

    fn on_durable(task: LogGcTask) {
        tracing::trace!(region = task.region_id, "compacted raft log deleted");
    }
}

/// The store's raft-log writer.
pub type RaftLogWriter = BatchWriter<RaftLog>;
/// The store's background deleter of compacted raft log entries.
pub type RaftLogGcWriter = BatchWriter<LogGc>;
/// The store's apply writer.
pub type ApplyWriter = BatchWriter<ApplyLog>;
