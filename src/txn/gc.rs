//! MVCC garbage collection: which versions no read can see any more, and which locks
//! stand in the way of deleting them.
//!
//! Every committed write leaves a version behind, so a key written a million times holds
//! a million versions. The placement driver keeps a *safe point*: a timestamp at or
//! after which every read and every transaction that can still happen starts (see
//! `docs/architecture.md`, Transactions). A read at a timestamp at or after the safe
//! point sees, for each key, the newest `Put` or `Delete` committed at or before it; so
//! of the records committed at or before the safe point only the newest `Put` (and its
//! value) can still be seen. [`collect`] deletes everything else below it: older
//! versions and their values, a newest `Delete` (the key reads as absent without it),
//! and rollback and lock-only records, which are not versions.
//!
//! Deleting the primary's commit record of a transaction whose secondary is still locked
//! would let a reader roll the secondary back although the transaction committed, so the
//! driver resolves every lock older than a safe point ([`scan_locks`]) before it
//! publishes it. No lock older than the safe point can appear afterwards: the raftstore
//! refuses a prewrite that started that long ago.

use tinykv_actors::engine::Mutation;
use tinykv_actors::Cf;

use super::keys::{decode_key, decode_versioned, encode_key, encode_versioned, TXN_KEYS_END};
use super::mvcc::{corrupt, SnapshotRead};
use super::records::{Lock, Write, WriteKind};
use crate::error::Result;

/// What one pass of [`collect`] decided.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcPass {
    /// The deletions to propose.
    pub mutations: Vec<Mutation>,
    /// The client key to go on from, if the pass stopped at its key limit.
    pub next: Option<Vec<u8>>,
}

/// One key's write records, newest first, with their commit timestamps.
type KeyRecords = Vec<(u64, Write)>;

/// The deletions that garbage-collect up to `limit` keys from client key `start` (to the
/// snapshot's end) below `safe_point`.
pub fn collect(
    snapshot: &dyn SnapshotRead,
    start: &[u8],
    safe_point: u64,
    limit: usize,
) -> Result<GcPass> {
    let mut pass = GcPass::default();
    // The key being visited: its records, newest first.
    let mut current: Option<(Vec<u8>, KeyRecords)> = None;
    let mut keys = 0usize;
    let mut damaged = None;
    let finish = |key: Vec<u8>, records: KeyRecords, pass: &mut GcPass| {
        collect_key(&key, &records, safe_point, &mut pass.mutations)
    };
    snapshot.scan(
        Cf::Write,
        &encode_key(start),
        TXN_KEYS_END,
        &mut |stored, value| {
            let (Some((key, commit_ts)), Some(write)) =
                (decode_versioned(stored), Write::decode(value))
            else {
                damaged = Some(stored.to_vec());
                return false;
            };
            match &mut current {
                Some((at, records)) if *at == key => {
                    records.push((commit_ts, write));
                    return true;
                }
                _ => {}
            }
            if let Some((done, records)) = current.take() {
                finish(done, records, &mut pass);
                keys += 1;
                if keys >= limit {
                    pass.next = Some(key);
                    return false;
                }
            }
            current = Some((key, vec![(commit_ts, write)]));
            true
        },
    )?;
    if let Some(stored) = damaged {
        return Err(corrupt("write record", &stored));
    }
    if pass.next.is_none() {
        if let Some((done, records)) = current.take() {
            finish(done, records, &mut pass);
        }
    }
    Ok(pass)
}

/// The deletions for one key whose records (newest first) are `records`.
fn collect_key(key: &[u8], records: &[(u64, Write)], safe_point: u64, out: &mut Vec<Mutation>) {
    let mut seen_version = false;
    for (commit_ts, write) in records {
        if *commit_ts > safe_point {
            continue;
        }
        let newest_version =
            !seen_version && matches!(write.kind, WriteKind::Put | WriteKind::Delete);
        if newest_version {
            seen_version = true;
            if write.kind == WriteKind::Put {
                // What a read at the safe point sees: kept.
                continue;
            }
        }
        out.push(Mutation::Delete {
            cf: Cf::Write,
            key: encode_versioned(key, *commit_ts),
        });
        if write.kind == WriteKind::Put {
            out.push(Mutation::Delete {
                cf: Cf::Default,
                key: encode_versioned(key, write.start_ts),
            });
        }
    }
}

/// Up to `limit` locks, from client key `start` to the snapshot's end (or client key
/// `end`, if not empty), of transactions started at or before `max_ts`.
pub fn scan_locks(
    snapshot: &dyn SnapshotRead,
    start: &[u8],
    end: &[u8],
    max_ts: u64,
    limit: usize,
) -> Result<Vec<(Vec<u8>, Lock)>> {
    let mut locks = Vec::new();
    let mut damaged = None;
    let end = if end.is_empty() {
        TXN_KEYS_END.to_vec()
    } else {
        encode_key(end)
    };
    if limit == 0 {
        return Ok(locks);
    }
    snapshot.scan(
        Cf::Lock,
        &encode_key(start),
        &end,
        &mut |stored, value| match (decode_key(stored), Lock::decode(value)) {
            (Some(key), Some(lock)) => {
                if lock.ts <= max_ts {
                    locks.push((key, lock));
                }
                locks.len() < limit
            }
            _ => {
                damaged = Some(stored.to_vec());
                false
            }
        },
    )?;
    if let Some(stored) = damaged {
        return Err(corrupt("lock", &stored));
    }
    Ok(locks)
}

#[cfg(test)]
#[path = "gc_tests.rs"]
mod tests;
