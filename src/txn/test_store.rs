//! Tests' store: a real engine to write versions into and read them back from.

use tinykv_actors::engine::EngineSnapshot;
use tinykv_actors::Engine;

use super::mvcc::MvccTxn;
use super::records::{Lock, Write, WriteKind};

/// An engine in a temporary directory.
pub struct Store {
    _dir: tempfile::TempDir,
    /// The engine.
    pub engine: Engine,
}

impl Store {
    /// An empty store.
    pub fn new() -> Store {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path().join("db")).unwrap();
        Store { _dir: dir, engine }
    }

    /// A snapshot of what is written so far.
    pub fn snapshot(&self) -> EngineSnapshot {
        self.engine.snapshot()
    }

    /// Writes what `build` gathers in a transaction started at `start_ts`, and returns
    /// what `build` returned.
    pub fn write<T>(&self, start_ts: u64, build: impl FnOnce(&mut MvccTxn) -> T) -> T {
        let snapshot = self.snapshot();
        let mut txn = MvccTxn::new(&snapshot, start_ts);
        let answer = build(&mut txn);
        self.engine.write(&txn.into_mutations(), false).unwrap();
        answer
    }

    /// Runs `read` on a transaction started at `ts` over the current snapshot.
    pub fn read<T>(&self, ts: u64, read: impl FnOnce(&MvccTxn) -> T) -> T {
        let snapshot = self.snapshot();
        read(&MvccTxn::new(&snapshot, ts))
    }

    /// A committed put of `value` at `key`, started at `start_ts`, committed at
    /// `commit_ts`.
    pub fn committed_put(&self, key: &[u8], value: &[u8], start_ts: u64, commit_ts: u64) {
        self.write(start_ts, |txn| {
            txn.put_value(key, value.to_vec());
            txn.put_write(
                key,
                commit_ts,
                &Write {
                    start_ts,
                    kind: WriteKind::Put,
                },
            );
        });
    }

    /// A commit record of `kind` for `key`.
    pub fn committed(&self, key: &[u8], kind: WriteKind, start_ts: u64, commit_ts: u64) {
        self.write(start_ts, |txn| {
            txn.put_write(key, commit_ts, &Write { start_ts, kind })
        });
    }

    /// A lock on `key` by the transaction started at `ts`, with its value if a put.
    pub fn locked(&self, key: &[u8], primary: &[u8], ts: u64, kind: WriteKind) {
        self.write(ts, |txn| {
            txn.put_lock(
                key,
                &Lock {
                    primary: primary.to_vec(),
                    ts,
                    ttl: 1000,
                    kind,
                },
            );
            if kind == WriteKind::Put {
                txn.put_value(key, format!("value of {ts}").into_bytes());
            }
        });
    }

    /// The value of `key` visible at `ts`.
    pub fn value_at(&self, key: &[u8], ts: u64) -> Option<Vec<u8>> {
        self.read(ts, |txn| txn.get_value(key).unwrap())
    }

    /// Every pair of `cf`, stored keys and all.
    pub fn pairs(&self, cf: tinykv_actors::Cf) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut pairs = Vec::new();
        self.snapshot()
            .scan(cf, b"", b"", |k, v| {
                pairs.push((k.to_vec(), v.to_vec()));
                true
            })
            .unwrap();
        pairs
    }
}
