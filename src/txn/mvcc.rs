//! MVCC reads and writes of one transaction over one snapshot (TinyKV's `MvccTxn`).
//!
//! A [`MvccTxn`] reads the three column families as of a consistent snapshot and
//! gathers the writes a command decides on as engine [`Mutation`]s, which the caller
//! proposes through raft as one batch. It reads what the snapshot holds, not its own
//! gathered writes: a command reads first, then decides.
//!
//! The reads Percolator needs:
//! - [`MvccTxn::get_value`]: the value visible at the transaction's start timestamp:
//!   that of the newest `Put` committed at or before it; nothing if the newest such
//!   commit is a `Delete`. Rollback and lock-only records are not versions and are passed
//!   over;
//! - [`MvccTxn::current_write`]: this transaction's own commit or rollback record of a
//!   key, if any (its commit timestamp is never below its start timestamp);
//! - [`MvccTxn::most_recent_write`]: the newest record of a key, whoever wrote it.

use tinykv_actors::engine::{EngineSnapshot, Mutation};
use tinykv_actors::msg::RegionSnapshot;
use tinykv_actors::Cf;

use super::keys::{decode_versioned, encode_key, encode_versioned, versions_range};
use super::records::{Lock, Write, WriteKind};
use crate::error::{Error, Result};

/// What MVCC reads from: a consistent snapshot of the column families.
pub trait SnapshotRead {
    /// The value of `key` in `cf`, if any.
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Visits the pairs of `cf` in `[start, end)` in key order until `f` returns false.
    fn scan(
        &self,
        cf: Cf,
        start: &[u8],
        end: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()>;
}

impl SnapshotRead for EngineSnapshot {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(EngineSnapshot::get(self, cf, key)?)
    }

    fn scan(
        &self,
        cf: Cf,
        start: &[u8],
        end: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        Ok(EngineSnapshot::scan(self, cf, start, end, f)?)
    }
}

/// A region's snapshot reads only the region's keys: a key, or a scan's start, outside
/// it is an error (the command was routed by a region that has split or merged since),
/// and a scan stops at the region's end.
impl SnapshotRead for RegionSnapshot {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(RegionSnapshot::get(self, cf, key)?)
    }

    fn scan(
        &self,
        cf: Cf,
        start: &[u8],
        end: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        self.check_key(start)?;
        Ok(self.visit(cf, start, end, f)?)
    }
}

/// One committed version of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The value.
    pub value: Vec<u8>,
    /// When it was committed: the key's version as clients see it.
    pub commit_ts: u64,
}

/// One transaction's view of a snapshot, and the writes it decided on.
pub struct MvccTxn<'a> {
    snapshot: &'a dyn SnapshotRead,
    start_ts: u64,
    mutations: Vec<Mutation>,
}

impl<'a> MvccTxn<'a> {
    /// The transaction started at `start_ts`, reading `snapshot`.
    pub fn new(snapshot: &'a dyn SnapshotRead, start_ts: u64) -> MvccTxn<'a> {
        MvccTxn {
            snapshot,
            start_ts,
            mutations: Vec::new(),
        }
    }

    /// The transaction's start timestamp.
    pub fn start_ts(&self) -> u64 {
        self.start_ts
    }

    /// The snapshot the transaction reads.
    pub fn snapshot(&self) -> &'a dyn SnapshotRead {
        self.snapshot
    }

    /// The writes gathered so far.
    pub fn mutations(&self) -> &[Mutation] {
        &self.mutations
    }

    /// The writes gathered, to be proposed as one batch.
    pub fn into_mutations(self) -> Vec<Mutation> {
        self.mutations
    }

    /// Records `write` for `key` at `commit_ts`.
    pub fn put_write(&mut self, key: &[u8], commit_ts: u64, write: &Write) {
        self.mutations.push(Mutation::Put {
            cf: Cf::Write,
            key: encode_versioned(key, commit_ts),
            value: write.encode(),
        });
    }

    /// The lock on `key`, if any.
    pub fn get_lock(&self, key: &[u8]) -> Result<Option<Lock>> {
        let Some(bytes) = self.snapshot.get(Cf::Lock, &encode_key(key))? else {
            return Ok(None);
        };
        Lock::decode(&bytes)
            .map(Some)
            .ok_or_else(|| corrupt("lock", key))
    }

    /// Locks `key` with `lock`.
    pub fn put_lock(&mut self, key: &[u8], lock: &Lock) {
        self.mutations.push(Mutation::Put {
            cf: Cf::Lock,
            key: encode_key(key),
            value: lock.encode(),
        });
    }

    /// Removes the lock on `key`.
    pub fn delete_lock(&mut self, key: &[u8]) {
        self.mutations.push(Mutation::Delete {
            cf: Cf::Lock,
            key: encode_key(key),
        });
    }

    /// Writes `value` as this transaction's version of `key`.
    pub fn put_value(&mut self, key: &[u8], value: Vec<u8>) {
        self.mutations.push(Mutation::Put {
            cf: Cf::Default,
            key: encode_versioned(key, self.start_ts),
            value,
        });
    }

    /// Removes this transaction's version of `key`.
    pub fn delete_value(&mut self, key: &[u8]) {
        self.mutations.push(Mutation::Delete {
            cf: Cf::Default,
            key: encode_versioned(key, self.start_ts),
        });
    }

    /// The value of `key` visible at the start timestamp (see the module documentation).
    pub fn get_value(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.get_version(key)?.map(|version| version.value))
    }

    /// The version of `key` visible at the start timestamp: its value and when it was
    /// committed.
    pub fn get_version(&self, key: &[u8]) -> Result<Option<Version>> {
        let (_, end) = versions_range(key);
        let newest =
            self.find_write(key, &encode_versioned(key, self.start_ts), &end, &mut |w| {
                matches!(w.kind, WriteKind::Put | WriteKind::Delete)
            })?;
        match newest {
            Some((
                Write {
                    kind: WriteKind::Put,
                    start_ts,
                },
                commit_ts,
            )) => {
                let value = self
                    .snapshot
                    .get(Cf::Default, &encode_versioned(key, start_ts))?
                    .ok_or_else(|| {
                        corrupt(&format!("value committed from {start_ts} (missing)"), key)
                    })?;
                Ok(Some(Version { value, commit_ts }))
            }
            _ => Ok(None),
        }
    }

    /// This transaction's commit or rollback record of `key` and its commit timestamp.
    pub fn current_write(&self, key: &[u8]) -> Result<Option<(Write, u64)>> {
        let mut end = encode_versioned(key, self.start_ts);
        end.push(0);
        let start_ts = self.start_ts;
        self.find_write(key, &encode_versioned(key, u64::MAX), &end, &mut |w| {
            w.start_ts == start_ts
        })
    }

    /// The newest record of `key` and its commit timestamp, whoever wrote it.
    pub fn most_recent_write(&self, key: &[u8]) -> Result<Option<(Write, u64)>> {
        let (start, end) = versions_range(key);
        self.find_write(key, &start, &end, &mut |_| true)
    }

    /// The first write record of `key` in `[start, end)` that `wanted` picks.
    fn find_write(
        &self,
        key: &[u8],
        start: &[u8],
        end: &[u8],
        wanted: &mut dyn FnMut(&Write) -> bool,
    ) -> Result<Option<(Write, u64)>> {
        let mut found = None;
        let mut damaged = false;
        self.snapshot
            .scan(Cf::Write, start, end, &mut |stored, value| match (
                decode_versioned(stored),
                Write::decode(value),
            ) {
                (Some((_, commit_ts)), Some(write)) => {
                    if wanted(&write) {
                        found = Some((write, commit_ts));
                        return false;
                    }
                    true
                }
                _ => {
                    damaged = true;
                    false
                }
            })?;
        if damaged {
            return Err(corrupt("write record", key));
        }
        Ok(found)
    }
}

/// A record of `key` that does not decode: the data cannot be trusted.
pub(super) fn corrupt(what: &str, key: &[u8]) -> Error {
    Error::Store(tinykv_actors::Error::Corruption(format!(
        "the {what} of transactional key {:?} is damaged",
        String::from_utf8_lossy(key)
    )))
}

#[cfg(test)]
#[path = "mvcc_tests.rs"]
mod tests;
