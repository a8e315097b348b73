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
//! in order.
//!
//! A failed write (a full disk, an I/O error, a failed fsync) is fatal. The writer logs
//! `write failed: <error>; stopping the node so no unwritten data is acknowledged` at error
//! level, naming itself, and ends the process with [`WRITE_FAILURE_EXIT_CODE`] before any
//! task of the failed batch, or any later one, is acknowledged. Retrying is not an option:
//! after a failed fsync the kernel may have dropped the dirty pages while reporting later
//! fsyncs as successful, and fjall refuses further writes once a journal write failed. A
//! restart recovers from what is on disk, which is everything that was acknowledged: the
//! raft log from the synced journal, applied data by replaying it.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::time::Instant;

use actix::prelude::*;

use crate::alive::AliveToken;
use crate::engine::{Engine, Mutation};
use crate::error::Error;
use crate::msg::{ApplyTask, LogGcTask, Persisted, WriteTask};

/// Exit status of a node stopped by a failed write: `EX_IOERR` of `sysexits.h`, distinct
/// from a startup failure (1) and a panic (abort, signal 6).
pub const WRITE_FAILURE_EXIT_CODE: i32 = 74;

/// What a writer does once a write failed and was logged: given the writer's name and the
/// error. It runs before anything of the failed batch is acknowledged; if it returns, the
/// writer stays stopped and drops every task it holds or receives, unacknowledged.
pub type OnWriteFailure = fn(writer: &'static str, error: &Error);

/// The default [`OnWriteFailure`]: ends the process with [`WRITE_FAILURE_EXIT_CODE`]
/// (without unwinding or running destructors, so nothing more is written or answered).
pub fn exit_on_write_failure(_writer: &'static str, _error: &Error) {
    std::process::exit(WRITE_FAILURE_EXIT_CODE);
}

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
    /// Most mutations one engine write of this writer holds, if its batches are written
    /// in pieces ([`write_paced`]); `None`: a batch is one engine write.
    const PACE: Option<usize> = None;
    /// The region and the last raft log index a task appends, if it appends entries: the
    /// batch's `debug` line lists them, so a write's proposal (region and index, logged
    /// with its request ids) can be matched with the fsync that made it durable.
    fn appended(_task: &Self::Task) -> Option<(u64, u64)> {
        None
    }
}

/// The group-commit actor; see the module documentation.
pub struct BatchWriter<K: WriteKind> {
    engine: Engine,
    pending: Vec<K::Task>,
    flushing: bool,
    max_batch_bytes: usize,
    token: AliveToken,
    on_failure: OnWriteFailure,
    /// Set once a write failed: nothing is written or acknowledged any more.
    failed: bool,
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
            on_failure: exit_on_write_failure,
            failed: false,
            _kind: PhantomData,
        }
    }

    /// Replaces what happens after a failed write ([`exit_on_write_failure`] by default);
    /// tests use it to observe the failure without ending the test process.
    pub fn with_failure_handler(mut self, on_failure: OnWriteFailure) -> Self {
        self.on_failure = on_failure;
        self
    }

    /// Stops the writer for good after a failed write; `tasks` (the failed batch) are
    /// dropped unacknowledged, after the failure handler ran.
    fn fail(&mut self, error: &Error, tasks: Vec<K::Task>) {
        tracing::error!(
            writer = K::NAME,
            tasks = tasks.len() + self.pending.len(),
            "write failed: {error}; stopping the node so no unwritten data is acknowledged"
        );
        self.failed = true;
        (self.on_failure)(K::NAME, error);
        drop(tasks);
        self.pending.clear();
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
        if self.failed || self.flushing || self.pending.is_empty() {
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
            let (result, elapsed) = match K::PACE {
                None => (engine.write_all(mutations, sync), started.elapsed()),
                Some(limit) => write_paced(&engine, mutations, limit, sync),
            };
            let bytes = tasks
                .iter()
                .flat_map(|t| K::mutations(t))
                .map(Mutation::size);
            let count = tasks.len();
            let slow = crate::metrics::batch_written(K::METRIC_LABEL, count, bytes.sum(), elapsed);
            if tracing::enabled!(tracing::Level::DEBUG) {
                let appended: Vec<String> = tasks
                    .iter()
                    .filter_map(K::appended)
                    .map(|(region, index)| format!("{region}:{index}"))
                    .collect();
                tracing::debug!(
                    writer = K::NAME,
                    tasks = count,
                    sync,
                    micros = elapsed.as_micros() as u64,
                    ?appended,
                    "batch written"
                );
            }
            if slow {
                // Every write of the batch, and every one queued behind it, waited this
                // long: say what the engine was busy with.
                let housekeeping = engine.housekeeping();
                tracing::warn!(
                    writer = K::NAME,
                    tasks = count,
                    sync,
                    millis = elapsed.as_millis() as u64,
                    ?housekeeping,
                    "slow batch write"
                );
            }
            (tasks, result)
        });
        ctx.spawn(write.into_actor(self).map(|joined, writer, ctx| {
            let (tasks, result) = joined.expect("write thread panicked");
            if let Err(e) = result {
                writer.fail(&e, tasks);
                return;
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
        if self.failed {
            return;
        }
        self.pending.push(task);
        self.flush(ctx);
    }
}

/// A paced batch ([`write_paced`]) pauses after each piece for this many times as long as
/// the piece took to write: it holds the journal lock, and a core, a third of the time.
pub const PACE_RATIO: u32 = 2;

/// The shortest pause between two pieces of a paced batch.
pub const MIN_PACE_PAUSE: std::time::Duration = std::time::Duration::from_micros(500);

/// Writes `mutations` at most `limit` per engine write, pausing between writes
/// ([`PACE_RATIO`], [`MIN_PACE_PAUSE`]); fsyncs the last if `sync`. Answers the outcome
/// and the time spent writing (pauses excluded). The pieces are not atomic together, so
/// only writes that may land partly (deletions of garbage) are paced; a range deletion is
/// first turned into the point deletions of the keys in the range.
///
/// Every engine write holds fjall's journal lock while it inserts its keys into the
/// memtables, and every writer of the store waits for that lock. One write of the ten
/// thousand deletions a raft log compaction brings held it for 40-60 ms on the benchmark
/// machine, and since every replica compacts at the same moment, the raft-log and apply
/// writers of all three nodes stalled together (`docs/performance.md`). In pieces of a
/// hundred keys, with pauses in which the other writers take the lock and the cores,
/// nothing waits for more than one piece, and the deletions' cost is spread out instead
/// of landing on every node in the same 50 ms.
pub fn write_paced<'a>(
    engine: &Engine,
    mutations: impl IntoIterator<Item = &'a Mutation>,
    limit: usize,
    sync: bool,
) -> (Result<(), Error>, std::time::Duration) {
    // Borrowed as given; only a range's point deletions are made here.
    let mut expanded: Vec<Cow<'a, Mutation>> = Vec::new();
    for mutation in mutations {
        let Mutation::DeleteRange { cf, start, end } = mutation else {
            expanded.push(Cow::Borrowed(mutation));
            continue;
        };
        let found = engine.scan(*cf, start, end, |key, _| {
            expanded.push(Cow::Owned(Mutation::Delete {
                cf: *cf,
                key: key.to_vec(),
            }));
            true
        });
        if let Err(e) = found {
            return (Err(e), std::time::Duration::ZERO);
        }
    }
    let mut writing = std::time::Duration::ZERO;
    let mut pieces = expanded.chunks(limit.max(1)).peekable();
    while let Some(piece) = pieces.next() {
        let last = pieces.peek().is_none();
        let started = Instant::now();
        let result = engine.write_all(piece.iter().map(|m| m.as_ref()), sync && last);
        let took = started.elapsed();
        writing += took;
        if result.is_err() || last {
            return (result, writing);
        }
        std::thread::sleep((took * PACE_RATIO).max(MIN_PACE_PAUSE));
    }
    (Ok(()), writing)
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

    fn appended(task: &WriteTask) -> Option<(u64, u64)> {
        task.last_index.map(|index| (task.region_id, index))
    }

    fn on_durable(task: WriteTask) {
        if let Some(notify) = task.notify {
            notify.do_send(Persisted {
                ready_number: task.ready_number,
                last_index: task.last_index,
            });
        }
        if let Some(flushed) = task.flushed {
            let _ = flushed.send(());
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
/// truncated index, which the next compaction deletes), acknowledged to nobody, and paced
/// ([`write_paced`], [`LOG_GC_PIECE`] keys at a time) so that a compaction of thousands
/// of entries never holds the engine's journal lock for long.
pub struct LogGc;

/// Keys per engine write of the raft log's deletions (about half a millisecond of holding
/// the journal lock on the benchmark machine).
pub const LOG_GC_PIECE: usize = 128;

impl WriteKind for LogGc {
    type Task = LogGcTask;
    const NAME: &'static str = "raft-log-gc";
    const METRIC_LABEL: &'static str = "log_gc";
    const PACE: Option<usize> = Some(LOG_GC_PIECE);

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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::sync::oneshot;

    use super::*;
    use crate::alive::alive_pair;
    use crate::engine::Cf;

    /// One put, acknowledged through a channel.
    #[derive(Message)]
    #[rtype(result = "()")]
    struct Put {
        mutations: Vec<Mutation>,
        ack: oneshot::Sender<()>,
    }

    struct TestKind;

    impl WriteKind for TestKind {
        type Task = Put;
        const NAME: &'static str = "test-writer";
        const METRIC_LABEL: &'static str = "test";

        fn mutations(task: &Put) -> &[Mutation] {
            &task.mutations
        }

        fn must_sync(_: &Put) -> bool {
            true
        }

        fn on_durable(task: Put) {
            let _ = task.ack.send(());
        }
    }

    static FAILURES: Mutex<Vec<String>> = Mutex::new(Vec::new());

    fn record_failure(writer: &'static str, error: &Error) {
        FAILURES.lock().unwrap().push(format!("{writer}: {error}"));
    }

    fn put(key: &str) -> (Put, oneshot::Receiver<()>) {
        let (ack, acked) = oneshot::channel();
        let mutations = vec![Mutation::Put {
            cf: Cf::Default,
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
        }];
        (Put { mutations, ack }, acked)
    }

    #[test]
    fn a_paced_write_writes_everything_in_pieces_and_stops_at_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let puts: Vec<Mutation> = (0..1000)
            .map(|i| Mutation::Put {
                cf: Cf::Default,
                key: format!("k{i:04}").into_bytes(),
                value: b"v".to_vec(),
            })
            .collect();
        let (result, writing) = write_paced(&engine, &puts, 300, true);
        result.unwrap();
        assert!(writing > std::time::Duration::ZERO);
        for i in [0, 299, 300, 999] {
            let key = format!("k{i:04}");
            assert_eq!(
                engine.get(Cf::Default, key.as_bytes()).unwrap(),
                Some(b"v".to_vec())
            );
        }
        let deletes: Vec<Mutation> = (0..1000)
            .map(|i| Mutation::Delete {
                cf: Cf::Default,
                key: format!("k{i:04}").into_bytes(),
            })
            .collect();
        let (result, _) = write_paced(&engine, &deletes[..500], 64, false);
        result.unwrap();
        assert_eq!(engine.get(Cf::Default, b"k0499").unwrap(), None);
        // A range deletion deletes what is in the range, in pieces too.
        let range = [Mutation::DeleteRange {
            cf: Cf::Default,
            start: b"k0500".to_vec(),
            end: b"k0900".to_vec(),
        }];
        let (result, _) = write_paced(&engine, &range, 64, false);
        result.unwrap();
        assert_eq!(engine.get(Cf::Default, b"k0899").unwrap(), None);
        assert_eq!(
            engine.get(Cf::Default, b"k0900").unwrap(),
            Some(b"v".to_vec())
        );
        engine.fail_writes();
        let (result, _) = write_paced(&engine, &deletes, 300, false);
        assert!(result.is_err(), "the failure is reported");
    }

    #[actix_rt::test]
    async fn a_failed_write_is_never_acknowledged_and_stops_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let (token, _watch) = alive_pair();
        let writer = BatchWriter::<TestKind>::new(engine.clone(), 1 << 20, token)
            .with_failure_handler(record_failure)
            .start();

        let (task, acked) = put("before");
        writer.send(task).await.unwrap();
        assert!(acked.await.is_ok(), "a successful write is acknowledged");

        engine.fail_writes();
        let (task, acked) = put("during");
        writer.send(task).await.unwrap();
        assert!(acked.await.is_err(), "a failed write is never acknowledged");
        let failures = FAILURES.lock().unwrap().clone();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            failures[0].starts_with("test-writer: ") && failures[0].contains("No space left"),
            "{failures:?}"
        );

        // The writer stays stopped: a later task is neither written nor acknowledged.
        let (task, acked) = put("after");
        writer.send(task).await.unwrap();
        assert!(
            acked.await.is_err(),
            "nothing is acknowledged after a failure"
        );
        assert_eq!(FAILURES.lock().unwrap().len(), 1, "the handler ran once");
        assert_eq!(
            engine.get(Cf::Default, b"before").unwrap(),
            Some(b"v".to_vec())
        );
    }
}
