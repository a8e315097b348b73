//! Percolator's commands, as TinyKV's project 4 and TiKV's `kvrpcpb` define them.
//!
//! Each command reads one snapshot through an [`MvccTxn`] and decides: it answers and
//! leaves its writes in the transaction, for the caller to propose through raft as one
//! batch, or it answers with [`KeyError`]s and the caller writes nothing. Whoever runs a
//! command that writes must keep every other writer of its keys out from its read until
//! its batch is applied (TinyKV's latches), so that two commands on one key never decide
//! on the same snapshot.
//!
//! - [`get`]: the value at a timestamp, unless a lock of a transaction that started at or
//!   before it is in the way (its commit might be at or before the timestamp);
//! - [`prewrite`]: locks each key and stores its value under the start timestamp, unless a
//!   write committed at or after the start timestamp (a write conflict) or another
//!   transaction's lock is there;
//! - [`commit`]: replaces each lock with a commit record; committing again is a no-op,
//!   and a transaction rolled back cannot commit;
//! - [`commit_one_pc`]: a prewrite's values and commit records in one step, for a
//!   transaction whose keys all lie in one region (see [`super::pending`]);
//! - [`rollback`]: removes the transaction's locks and values and leaves rollback
//!   records, so that a late prewrite of it fails; a committed transaction cannot roll
//!   back;
//! - [`check_txn_status`]: the fate of a transaction by its primary key: committed,
//!   rolled back, alive (lock within its TTL), or rolled back now (lock expired, or none);
//! - [`resolve_lock`]: commits or rolls back every lock of one transaction;
//! - [`scan`]: the values of a key range at a timestamp.

use tinykv_actors::Cf;

use super::keys::{decode_key, decode_versioned, encode_key, TXN_KEYS_END};
use super::mvcc::{MvccTxn, Version};
use super::records::{Lock, Write, WriteKind};
use crate::error::Result;
use crate::pd::tso;

/// Why a command could not act on a key; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// Another transaction's lock is in the way: resolve it (check its primary) first.
    Locked {
        /// The locked key.
        key: Vec<u8>,
        /// That transaction's primary key.
        primary: Vec<u8>,
        /// That transaction's start timestamp.
        lock_ts: u64,
        /// Its lock's time to live, in milliseconds.
        ttl: u64,
    },
    /// A write committed at or after this transaction's start: it must start again.
    Conflict {
        /// The key.
        key: Vec<u8>,
        /// This transaction's start timestamp.
        start_ts: u64,
        /// The commit timestamp of the conflicting write.
        conflict_ts: u64,
    },
    /// Another transaction holds the key now; trying again later may succeed.
    Retryable(String),
    /// The transaction cannot go on (it was rolled back, or it committed).
    Abort(String),
}

/// What a transaction writes to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnWrite {
    /// Sets the key.
    Put {
        /// The key.
        key: Vec<u8>,
        /// Its new value.
        value: Vec<u8>,
    },
    /// Deletes the key.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// Locks the key without writing it (to read it consistently).
    Lock {
        /// The key.
        key: Vec<u8>,
    },
}

impl TxnWrite {
    /// The key written.
    pub fn key(&self) -> &[u8] {
        match self {
            TxnWrite::Put { key, .. } | TxnWrite::Delete { key } | TxnWrite::Lock { key } => key,
        }
    }

    fn kind(&self) -> WriteKind {
        match self {
            TxnWrite::Put { .. } => WriteKind::Put,
            TxnWrite::Delete { .. } => WriteKind::Delete,
            TxnWrite::Lock { .. } => WriteKind::Lock,
        }
    }
}

/// A lock as a [`KeyError::Locked`].
fn locked(key: &[u8], lock: &Lock) -> KeyError {
    KeyError::Locked {
        key: key.to_vec(),
        primary: lock.primary.clone(),
        lock_ts: lock.ts,
        ttl: lock.ttl,
    }
}

/// The value of `key` at the transaction's start timestamp, or the lock in the way.
pub fn get(txn: &MvccTxn, key: &[u8]) -> Result<std::result::Result<Option<Vec<u8>>, KeyError>> {
    Ok(read(txn, key)?.map(|version| version.map(|v| v.value)))
}

/// The version of `key` at the transaction's start timestamp, or the lock in the way.
pub fn read(txn: &MvccTxn, key: &[u8]) -> Result<std::result::Result<Option<Version>, KeyError>> {
    if let Some(lock) = txn.get_lock(key)? {
        if lock.ts <= txn.start_ts() {
            return Ok(Err(locked(key, &lock)));
        }
    }
    Ok(Ok(txn.get_version(key)?))
}

/// Prewrites `writes` with `primary` as the primary key and a lock TTL of `ttl`
/// milliseconds; answers the key errors (then the transaction's writes must be dropped).
pub fn prewrite(
    txn: &mut MvccTxn,
    writes: &[TxnWrite],
    primary: &[u8],
    ttl: u64,
) -> Result<Vec<KeyError>> {
    let mut errors = Vec::new();
    for write in writes {
        let key = write.key();
        if let Some((_, commit_ts)) = txn.most_recent_write(key)? {
            if commit_ts >= txn.start_ts() {
                errors.push(KeyError::Conflict {
                    key: key.to_vec(),
                    start_ts: txn.start_ts(),
                    conflict_ts: commit_ts,
                });
                continue;
            }
        }
        if let Some(lock) = txn.get_lock(key)? {
            if lock.ts != txn.start_ts() {
                errors.push(locked(key, &lock));
                continue;
            }
        }
        let lock = Lock {
            primary: primary.to_vec(),
            ts: txn.start_ts(),
            ttl,
            kind: write.kind(),
        };
        txn.put_lock(key, &lock);
        if let TxnWrite::Put { value, .. } = write {
            txn.put_value(key, value.clone());
        }
    }
    Ok(errors)
}

/// Percolator's one-phase commit (TiKV's 1PC) of `writes`, once [`prewrite`] found no
/// conflict for them on this snapshot: each key's value and its commit record at
/// `commit_ts` in one batch, with no lock in between. A lock the transaction left on a
/// key earlier (a prewrite whose answer was lost) is removed.
pub fn commit_one_pc(txn: &mut MvccTxn, writes: &[TxnWrite], commit_ts: u64) -> Result<()> {
    for write in writes {
        let key = write.key();
        if txn
            .get_lock(key)?
            .is_some_and(|lock| lock.ts == txn.start_ts())
        {
            txn.delete_lock(key);
        }
        if let TxnWrite::Put { value, .. } = write {
            txn.put_value(key, value.clone());
        }
        let record = Write {
            start_ts: txn.start_ts(),
            kind: write.kind(),
        };
        txn.put_write(key, commit_ts, &record);
    }
    Ok(())
}

/// When the transaction committed `key`, if it did: a one-phase commit asked again after
/// its first answer was lost finds its own commit record where a conflict would be.
pub fn committed_at(txn: &MvccTxn, key: &[u8]) -> Result<Option<u64>> {
    Ok(match txn.current_write(key)? {
        Some((write, commit_ts)) if write.kind != WriteKind::Rollback => Some(commit_ts),
        _ => None,
    })
}

/// Commits the transaction's `keys` at `commit_ts`.
pub fn commit(txn: &mut MvccTxn, keys: &[Vec<u8>], commit_ts: u64) -> Result<Option<KeyError>> {
    for key in keys {
        match txn.get_lock(key)? {
            Some(lock) if lock.ts == txn.start_ts() => {
                let write = Write {
                    start_ts: txn.start_ts(),
                    kind: lock.kind,
                };
                txn.put_write(key, commit_ts, &write);
                txn.delete_lock(key);
            }
            lock => match txn.current_write(key)? {
                Some((write, _)) if write.kind == WriteKind::Rollback => {
                    return Ok(Some(KeyError::Abort(format!(
                        "transaction {} was rolled back",
                        txn.start_ts()
                    ))))
                }
                // Committed already: committing again changes nothing.
                Some(_) => {}
                None if lock.is_some() => {
                    return Ok(Some(KeyError::Retryable(format!(
                        "key {:?} is locked by another transaction",
                        String::from_utf8_lossy(key)
                    ))))
                }
                // Never prewritten here: nothing to commit.
                None => {}
            },
        }
    }
    Ok(None)
}

/// Rolls the transaction back on `keys`.
pub fn rollback(txn: &mut MvccTxn, keys: &[Vec<u8>]) -> Result<Option<KeyError>> {
    for key in keys {
        if let Some((write, _)) = txn.current_write(key)? {
            if write.kind == WriteKind::Rollback {
                continue;
            }
            return Ok(Some(KeyError::Abort(format!(
                "transaction {} has committed",
                txn.start_ts()
            ))));
        }
        roll_back_key(txn, key)?;
    }
    Ok(None)
}

/// Leaves a rollback record on `key`, removing the transaction's lock and value if there.
fn roll_back_key(txn: &mut MvccTxn, key: &[u8]) -> Result<()> {
    if let Some(lock) = txn.get_lock(key)? {
        if lock.ts == txn.start_ts() {
            txn.delete_lock(key);
            if lock.kind == WriteKind::Put {
                txn.delete_value(key);
            }
        }
    }
    let rollback = Write {
        start_ts: txn.start_ts(),
        kind: WriteKind::Rollback,
    };
    txn.put_write(key, txn.start_ts(), &rollback);
    Ok(())
}

/// What [`check_txn_status`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusAction {
    /// Nothing: the transaction is alive, committed or rolled back already.
    NoAction,
    /// Its primary's lock had expired: rolled back now.
    TtlExpireRollback,
    /// Its primary had neither lock nor record: a rollback record now keeps a late
    /// prewrite out.
    LockNotExistRollback,
}

/// The fate of a transaction, read from its primary key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnStatus {
    /// The primary's lock's TTL while it is alive; 0 otherwise.
    pub lock_ttl: u64,
    /// The commit timestamp if it committed; 0 otherwise.
    pub commit_ts: u64,
    /// What the check did.
    pub action: StatusAction,
}

/// Checks the transaction started at the transaction's start timestamp through its
/// `primary` key at time `current_ts`, rolling it back if its lock expired or is missing.
pub fn check_txn_status(txn: &mut MvccTxn, primary: &[u8], current_ts: u64) -> Result<TxnStatus> {
    let status = |lock_ttl, commit_ts, action| TxnStatus {
        lock_ttl,
        commit_ts,
        action,
    };
    if let Some(lock) = txn.get_lock(primary)? {
        if lock.ts == txn.start_ts() {
            let (lock_ms, _) = tso::split(lock.ts);
            let (now_ms, _) = tso::split(current_ts);
            if lock_ms.saturating_add(lock.ttl) <= now_ms {
                roll_back_key(txn, primary)?;
                return Ok(status(0, 0, StatusAction::TtlExpireRollback));
            }
            return Ok(status(lock.ttl, 0, StatusAction::NoAction));
        }
    }
    match txn.current_write(primary)? {
        Some((write, _)) if write.kind == WriteKind::Rollback => {
            Ok(status(0, 0, StatusAction::NoAction))
        }
        Some((_, commit_ts)) => Ok(status(0, commit_ts, StatusAction::NoAction)),
        None => {
            roll_back_key(txn, primary)?;
            Ok(status(0, 0, StatusAction::LockNotExistRollback))
        }
    }
}

/// Commits (at `commit_ts`) or, with `commit_ts` 0, rolls back every lock of the
/// transaction in `[start, end)` (empty `end`: to the end of the transactional keys).
pub fn resolve_lock(
    txn: &mut MvccTxn,
    start: &[u8],
    end: &[u8],
    commit_ts: u64,
) -> Result<Option<KeyError>> {
    let keys = locked_keys(txn, start, end)?;
    if commit_ts == 0 {
        rollback(txn, &keys)
    } else {
        commit(txn, &keys, commit_ts)
    }
}

/// The keys in `[start, end)` that the transaction has locked.
fn locked_keys(txn: &MvccTxn, start: &[u8], end: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut keys = Vec::new();
    let mut damaged = false;
    let start_ts = txn.start_ts();
    let end = if end.is_empty() {
        TXN_KEYS_END.to_vec()
    } else {
        encode_key(end)
    };
    txn.snapshot().scan(
        Cf::Lock,
        &encode_key(start),
        &end,
        &mut |stored, value| match (decode_key(stored), Lock::decode(value)) {
            (Some(key), Some(lock)) => {
                if lock.ts == start_ts {
                    keys.push(key);
                }
                true
            }
            _ => {
                damaged = true;
                false
            }
        },
    )?;
    if damaged {
        return Err(super::mvcc::corrupt("lock", start));
    }
    Ok(keys)
}

/// One key of a [`scan`]: its version, or the lock in the way.
pub type ScannedPair = (Vec<u8>, std::result::Result<Version, KeyError>);

/// Up to `limit` keys from `start` (to `end`, exclusive; empty: to the end) and their
/// values at the transaction's start timestamp, in key order. Keys deleted or not yet
/// written at that time are left out; a key behind a lock of a transaction started at or
/// before it is answered with the lock.
pub fn scan(txn: &MvccTxn, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<ScannedPair>> {
    let mut pairs = Vec::new();
    if limit == 0 {
        return Ok(pairs);
    }
    let end = if end.is_empty() {
        TXN_KEYS_END.to_vec()
    } else {
        encode_key(end)
    };
    let mut cursor = encode_key(start);
    while pairs.len() < limit {
        // The next key with a record or a lock at or after the cursor.
        let next = [Cf::Write, Cf::Lock]
            .into_iter()
            .map(|cf| first_key(txn, cf, &cursor, &end))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .min();
        let Some(key) = next else { break };
        match read(txn, &key)? {
            Ok(Some(version)) => pairs.push((key.clone(), Ok(version))),
            Ok(None) => {}
            Err(error) => pairs.push((key.clone(), Err(error))),
        }
        // Past every version of the key.
        cursor = super::keys::versions_range(&key).1;
    }
    Ok(pairs)
}

/// The first client key of `cf` stored in `[from, end)`.
fn first_key(txn: &MvccTxn, cf: Cf, from: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut found = None;
    let mut damaged = false;
    txn.snapshot().scan(cf, from, end, &mut |stored, _| {
        let key = match cf {
            Cf::Lock => decode_key(stored),
            _ => decode_versioned(stored).map(|(key, _)| key),
        };
        match key {
            Some(key) => found = Some(key),
            None => damaged = true,
        }
        false
    })?;
    if damaged {
        return Err(super::mvcc::corrupt("stored key", from));
    }
    Ok(found)
}

#[cfg(test)]
#[path = "commands_tests.rs"]
mod tests;
