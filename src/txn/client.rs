//! The transaction coordinator: Percolator's client side, run by the node a client asks.
//!
//! A [`TxnClient`] turns a client's reads and write sets into commands on regions and
//! drives them to an end:
//!
//! - **Reads at a timestamp** ([`TxnClient::get`], [`TxnClient::scan`]) ask each region
//!   for the versions at the timestamp. A lock in the way belongs to a transaction that
//!   may commit at or before it, so the reader resolves it: it checks the transaction's
//!   fate at its primary key (which rolls back a transaction whose lock outlived its
//!   TTL), commits or rolls back the lock accordingly, and reads again. A lock still
//!   alive is waited for, with backoff, until the request's deadline.
//! - **Commit** ([`TxnClient::commit`]) is two-phase. The first key written is the
//!   primary. (If every key lies in the primary's region, that region commits the
//!   transaction in one phase, in the raft command that would have locked the keys.)
//!   Prewrite locks every key, region by region; a conflict (a write committed since
//!   the start timestamp) aborts the transaction and rolls back what it had locked.
//!   Then a commit timestamp is taken and the primary is committed, with the other keys
//!   of its region in the same raft command: that write is the moment the whole
//!   transaction commits. The keys of other regions are committed afterwards, in
//!   the background, region by region; a failure there changes nothing for the
//!   transaction, since a reader finding such a lock commits it from the primary's
//!   record.
//!
//! Region errors (not leader, a region split or moved) are retried by the
//! [`KvService`] underneath, which follows leaders across nodes. What the client is
//! told is always true: before the primary's commit nothing is visible and the error
//! says "not applied"; if the primary's commit itself could not be confirmed, it says
//! the outcome is unknown.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tinykv_proto::kvrpcpb::{
    txn_request::Command, txn_response::Answer, BatchRollbackRequest, CheckTxnStatusRequest,
    CommitRequest, GetRequest, LockInfo, PrewriteRequest, ResolveLockRequest, ScanLockRequest,
    ScanRequest, TxnRequest, TxnResponse,
};

use super::commands::{KeyError, TxnWrite};
use super::conditions::Condition;
use super::keys::{decode_key, encode_key, TXN_KEYS_END, TXN_KEYS_START};
use super::mvcc::Version;
use super::wire::{key_error_from_pb, mutation_of};
use crate::error::{Error, Result};
use crate::kv_service::{KvOp, KvOutcome, KvService};

/// How long a transaction's locks live unless its coordinator commits or rolls back
/// first: a reader finding an older lock rolls the transaction back.
pub const LOCK_TTL_MS: u64 = 3_000;

/// Where timestamps come from: the placement driver's oracle on a node.
pub trait TimestampSource: Send + Sync + 'static {
    /// The first of `count` consecutive fresh timestamps, each greater than every
    /// timestamp given out before the call.
    fn timestamps(&self, count: u64) -> BoxFuture<'static, Result<u64>>;
}

/// The coordinator; see the module documentation.
#[derive(Clone)]
pub struct TxnClient {
    service: KvService,
    clock: Arc<dyn TimestampSource>,
}

/// A version read, or nothing.
pub type Read = Option<Version>;

/// One page of a scan at a timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnScanPage {
    /// The keys and their versions, in key order.
    pub pairs: Vec<(Vec<u8>, Version)>,
    /// The key to continue from if the page was cut short by its limit; `None` if the
    /// range is done.
    pub next: Option<Vec<u8>>,
}

impl TxnClient {
    /// A coordinator running commands through `service` and taking timestamps from
    /// `clock`.
    pub fn new(service: KvService, clock: Arc<dyn TimestampSource>) -> TxnClient {
        TxnClient { service, clock }
    }

    /// A node's service and its coordinator, both taking timestamps from the placement
    /// driver's oracle through one batching client: the service commits transactions
    /// whose keys lie in one region in one phase, the coordinator runs through it.
    pub fn over_pd_oracle(
        service: KvService,
        pd: Arc<crate::pd::PdClient>,
    ) -> (KvService, TxnClient) {
        let clock: Arc<dyn TimestampSource> = Arc::new(crate::pd::client::PdTimestamps::new(pd));
        let service = service.with_timestamps(clock.clone());
        (service.clone(), TxnClient::new(service, clock))
    }

    /// A fresh timestamp.
    pub async fn timestamp(&self) -> Result<u64> {
        self.clock.timestamps(1).await
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.service.timeouts().request
    }

    /// The version of `key` at `ts`, resolving locks in the way.
    pub async fn get(&self, key: &[u8], ts: u64) -> Result<Read> {
        let deadline = self.deadline();
        let mut backoff = Backoff::new(deadline);
        loop {
            let request = txn_request(Command::Get(GetRequest {
                key: key.to_vec(),
                version: ts,
                ..Default::default()
            }));
            let response = self.run(request).await?;
            let Some(Answer::Get(get)) = response.answer else {
                return Err(unexpected("get"));
            };
            match get.error {
                None if get.not_found => return Ok(None),
                None => {
                    return Ok(Some(Version {
                        value: get.value,
                        commit_ts: get.commit_version,
                    }))
                }
                Some(error) => {
                    let error = key_error_from_pb(&error);
                    if !self.resolve(&error).await? {
                        backoff.wait(&error).await?;
                    }
                }
            }
        }
    }

    /// Up to `limit` keys of `[start, end)` (empty `end`: to the end) and their versions
    /// at `ts`, resolving locks in the way.
    pub async fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        ts: u64,
        limit: usize,
    ) -> Result<TxnScanPage> {
        let deadline = self.deadline();
        let mut backoff = Backoff::new(deadline);
        let mut pairs = Vec::new();
        let mut cursor = start.to_vec();
        while pairs.len() < limit {
            let request = txn_request(Command::Scan(ScanRequest {
                start_key: cursor.clone(),
                end_key: end.to_vec(),
                limit: u32::try_from(limit - pairs.len()).unwrap_or(u32::MAX),
                version: ts,
                ..Default::default()
            }));
            let response = self.run(request).await?;
            let region_end = response.region_end.clone();
            let Some(Answer::Scan(scan)) = response.answer else {
                return Err(unexpected("scan"));
            };
            let mut blocked = None;
            for pair in scan.pairs {
                if let Some(error) = pair.error {
                    blocked = Some((pair.key, key_error_from_pb(&error)));
                    break;
                }
                pairs.push((
                    pair.key,
                    Version {
                        value: pair.value,
                        commit_ts: pair.commit_version,
                    },
                ));
            }
            if let Some((key, error)) = blocked {
                // Read on from the locked key once its lock is resolved.
                cursor = key;
                if !self.resolve(&error).await? {
                    backoff.wait(&error).await?;
                }
                continue;
            }
            if pairs.len() >= limit {
                break;
            }
            match next_region_start(&region_end)? {
                Some(next) if end.is_empty() || next.as_slice() < end => cursor = next,
                _ => return Ok(TxnScanPage { pairs, next: None }),
            }
        }
        let next = pairs.last().map(|(key, _)| successor(key));
        Ok(TxnScanPage { pairs, next })
    }

    /// Commits `writes` (at least one, each key once) as the transaction started at
    /// `start_ts`; answers the commit timestamp. A write conflict or a lock that stays
    /// alive is an error with nothing applied; see the module documentation.
    pub async fn commit(&self, start_ts: u64, writes: Vec<TxnWrite>) -> Result<u64> {
        match self.commit_if(start_ts, writes, &[], &[]).await? {
            Checked::Committed { commit_ts, .. } => Ok(commit_ts),
            Checked::ConditionFailed => {
                Err(Error::Io("a commit without conditions failed one".into()))
            }
        }
    }

    /// [`TxnClient::commit`] if every one of `conditions` holds on the versions at
    /// `start_ts`, checked by the prewrites under the keys' latches; answers also the
    /// versions of `read_keys` at `start_ts`. The keys of both must be among those of
    /// `writes` (a key only read is locked with a [`TxnWrite::Lock`]). If a condition
    /// does not hold, nothing is committed.
    pub async fn commit_if(
        &self,
        start_ts: u64,
        writes: Vec<TxnWrite>,
        conditions: &[Condition],
        read_keys: &[Vec<u8>],
    ) -> Result<Checked> {
        let Some(primary) = writes.first().map(|w| w.key().to_vec()) else {
            return Err(Error::bad_request(
                "invalid_txn",
                "a transaction to commit writes no key",
            ));
        };
        let deadline = self.deadline();
        let checks = Checks {
            conditions: conditions.iter().map(Condition::to_pb).collect(),
            read_keys: read_keys.to_vec(),
        };
        let prewritten = self
            .prewrite(start_ts, &primary, &writes, &checks, deadline)
            .await;
        let reads = match prewritten {
            Ok(Prewritten::Locked(reads)) => reads,
            // All keys in one region: the prewrite was the commit.
            Ok(Prewritten::Committed { commit_ts, reads }) => {
                return Ok(Checked::Committed { commit_ts, reads })
            }
            failed => {
                // Not committed (or, after a one-phase attempt whose answer was lost,
                // perhaps committed: then the rollback finds the commit and changes
                // nothing). Take back whatever was locked. Should this fail, the locks
                // expire and readers roll them back.
                let keys: Vec<Vec<u8>> = writes.iter().map(|w| w.key().to_vec()).collect();
                if let Err(e) = self.rollback(start_ts, keys).await {
                    tracing::debug!(start_ts, error = %e, "rolling back an aborted transaction failed");
                }
                return match failed {
                    Ok(_) => Ok(Checked::ConditionFailed),
                    Err(e) => Err(e),
                };
            }
        };
        let commit_ts = self.timestamp().await?;
        // The primary's commit is the transaction's: it must be known to have happened.
        // The keys of the primary's region commit with it, in the same raft command.
        let keys: Vec<Vec<u8>> = writes.iter().map(|w| w.key().to_vec()).collect();
        let primary_commit = txn_request(Command::Commit(CommitRequest {
            start_version: start_ts,
            keys: keys.clone(),
            commit_version: commit_ts,
            ..Default::default()
        }));
        let response = self.run(primary_commit).await?;
        if let Some(Answer::Commit(commit)) = &response.answer {
            if let Some(error) = &commit.error {
                return Err(txn_aborted(&key_error_from_pb(error)));
            }
        }
        // The others in the background: the transaction has committed, and a reader that
        // meets one of their locks first commits it from the primary's record.
        let secondaries: Vec<Vec<u8>> = keys
            .into_iter()
            .filter(|key| {
                !in_range(
                    &encode_key(key),
                    &response.region_start,
                    &response.region_end,
                )
            })
            .collect();
        if !secondaries.is_empty() {
            let client = self.clone();
            tokio::spawn(async move {
                if let Err(e) = client
                    .commit_secondaries(start_ts, commit_ts, secondaries)
                    .await
                {
                    tracing::debug!(start_ts, commit_ts, error = %e, "committing secondaries failed; readers will");
                }
            });
        }
        Ok(Checked::Committed { commit_ts, reads })
    }

    /// Locks every key of `writes`, region by region, checking `checks` on the way. The
    /// primary's region is asked to commit in one phase if it holds every key. An error
    /// says "outcome unknown" only if that one-phase commit's may have applied.
    async fn prewrite(
        &self,
        start_ts: u64,
        primary: &[u8],
        writes: &[TxnWrite],
        checks: &Checks,
        deadline: Instant,
    ) -> Result<Prewritten> {
        let mut backoff = Backoff::new(deadline);
        let mut reads = BTreeMap::new();
        let mut pending: BTreeMap<Vec<u8>, &TxnWrite> =
            writes.iter().map(|w| (encode_key(w.key()), w)).collect();
        // The primary's region first: its lock is what others check.
        let mut first = Some(encode_key(primary));
        let mut locked_any = false;
        while let Some(routing) = first.take().or_else(|| pending.keys().next().cloned()) {
            let try_one_pc = !locked_any;
            let mut batch: Vec<&TxnWrite> = vec![pending[&routing]];
            batch.extend(
                pending
                    .iter()
                    .filter(|(k, _)| **k != routing)
                    .map(|(_, w)| *w),
            );
            let request = txn_request(Command::Prewrite(PrewriteRequest {
                mutations: batch.iter().map(|w| mutation_of(w)).collect(),
                primary_lock: primary.to_vec(),
                start_version: start_ts,
                lock_ttl: LOCK_TTL_MS,
                conditions: checks.conditions.clone(),
                read_keys: checks.read_keys.clone(),
                try_one_pc,
                ..Default::default()
            }));
            let response = match self.run(request).await {
                Ok(response) => response,
                // A one-phase commit may have applied: its outcome stays unknown.
                Err(e) if try_one_pc => return Err(e),
                // Locks change nothing anyone sees: the outcome is known.
                Err(Error::OutcomeUnknown(inner)) => return Err(*inner),
                Err(e) => return Err(e),
            };
            let (region_start, region_end) =
                (response.region_start.clone(), response.region_end.clone());
            let Some(Answer::Prewrite(prewrite)) = response.answer else {
                return Err(unexpected("prewrite"));
            };
            if let Some(error) = prewrite.errors.first() {
                let error = key_error_from_pb(error);
                match &error {
                    KeyError::Locked { .. } | KeyError::Retryable(_) => {
                        if !self.resolve(&error).await? {
                            backoff.wait(&error).await?;
                        }
                        first = Some(routing);
                        continue;
                    }
                    KeyError::Conflict { .. } | KeyError::Abort(_) => {
                        return Err(txn_aborted(&error))
                    }
                }
            }
            if prewrite.condition_failed {
                return Ok(Prewritten::ConditionFailed);
            }
            for pair in prewrite.reads {
                let read = (pair.commit_version > 0).then_some(Version {
                    value: pair.value,
                    commit_ts: pair.commit_version,
                });
                reads.insert(pair.key, read);
            }
            if prewrite.one_pc_commit_version > 0 {
                return Ok(Prewritten::Committed {
                    commit_ts: prewrite.one_pc_commit_version,
                    reads,
                });
            }
            locked_any = true;
            pending.retain(|key, _| !in_range(key, &region_start, &region_end));
        }
        Ok(Prewritten::Locked(reads))
    }

    /// Commits the transaction's `keys` other than its primary, region by region.
    async fn commit_secondaries(
        &self,
        start_ts: u64,
        commit_ts: u64,
        keys: Vec<Vec<u8>>,
    ) -> Result<()> {
        self.for_each_region(keys, |keys| {
            txn_request(Command::Commit(CommitRequest {
                start_version: start_ts,
                keys,
                commit_version: commit_ts,
                ..Default::default()
            }))
        })
        .await
    }

    /// Rolls the transaction back on `keys`, region by region.
    pub async fn rollback(&self, start_ts: u64, keys: Vec<Vec<u8>>) -> Result<()> {
        self.for_each_region(keys, |keys| {
            txn_request(Command::Rollback(BatchRollbackRequest {
                start_version: start_ts,
                keys,
                ..Default::default()
            }))
        })
        .await
    }

    /// Sends `command(keys)` to the region of the first pending key, drops the keys that
    /// region held, and so on until none is left; a key error fails it.
    async fn for_each_region(
        &self,
        keys: Vec<Vec<u8>>,
        command: impl Fn(Vec<Vec<u8>>) -> TxnRequest,
    ) -> Result<()> {
        let mut pending: BTreeMap<Vec<u8>, Vec<u8>> =
            keys.into_iter().map(|k| (encode_key(&k), k)).collect();
        while !pending.is_empty() {
            let response = self
                .run(command(pending.values().cloned().collect()))
                .await?;
            let error = match &response.answer {
                Some(Answer::Commit(c)) => c.error.clone(),
                Some(Answer::Rollback(r)) => r.error.clone(),
                Some(Answer::ResolveLock(r)) => r.error.clone(),
                _ => return Err(unexpected("commit or rollback")),
            };
            if let Some(error) = error {
                return Err(txn_aborted(&key_error_from_pb(&error)));
            }
            pending.retain(|key, _| !in_range(key, &response.region_start, &response.region_end));
        }
        Ok(())
    }

    /// Up to `limit` locks of `[start, end)` (empty `end`: to the end) of transactions
    /// started at or before `max_ts`, region by region, as of the moment each region is
    /// read.
    pub async fn scan_locks(
        &self,
        start: &[u8],
        end: &[u8],
        max_ts: u64,
        limit: usize,
    ) -> Result<Vec<LockInfo>> {
        let mut locks: Vec<LockInfo> = Vec::new();
        let mut cursor = start.to_vec();
        while locks.len() < limit {
            let request = txn_request(Command::ScanLock(ScanLockRequest {
                max_version: max_ts,
                start_key: cursor.clone(),
                end_key: end.to_vec(),
                limit: u32::try_from(limit - locks.len()).unwrap_or(u32::MAX),
                ..Default::default()
            }));
            let response = self.run(request).await?;
            let Some(Answer::ScanLock(scan)) = response.answer else {
                return Err(unexpected("scan_lock"));
            };
            let full = scan.locks.len() >= limit - locks.len();
            locks.extend(scan.locks);
            if full {
                break;
            }
            match next_region_start(&response.region_end)? {
                Some(next) if end.is_empty() || next.as_slice() < end => cursor = next,
                _ => break,
            }
        }
        Ok(locks)
    }

    /// Resolves every lock of a transaction started before `max_ts`, in every region:
    /// what garbage collection must do before its safe point passes them. Answers how
    /// many it resolved. A lock whose transaction still lives (it would have to have run
    /// for longer than garbage collection's life time) fails it.
    pub async fn resolve_locks_below(&self, max_ts: u64) -> Result<usize> {
        let mut resolved = 0;
        loop {
            let locks = self
                .scan_locks(b"", b"", max_ts.saturating_sub(1), 256)
                .await?;
            if locks.is_empty() {
                return Ok(resolved);
            }
            for lock in locks {
                let error = KeyError::Locked {
                    key: lock.key,
                    primary: lock.primary_lock,
                    lock_ts: lock.lock_version,
                    ttl: lock.lock_ttl,
                };
                if !self.resolve(&error).await? {
                    return Err(txn_aborted(&error));
                }
                resolved += 1;
            }
        }
    }

    /// Tries to clear the lock `error` names: commits or rolls back its key if the
    /// lock's transaction is decided (or rolls it back if its TTL has run out). Answers
    /// whether the lock is gone; `false` for a lock still alive and for errors other than
    /// a lock.
    async fn resolve(&self, error: &KeyError) -> Result<bool> {
        let KeyError::Locked {
            key,
            primary,
            lock_ts,
            ..
        } = error
        else {
            return Ok(false);
        };
        let current_ts = self.timestamp().await?;
        let check = txn_request(Command::CheckTxnStatus(CheckTxnStatusRequest {
            primary_key: primary.clone(),
            lock_ts: *lock_ts,
            current_ts,
            ..Default::default()
        }));
        let response = self.run(check).await?;
        let Some(Answer::CheckTxnStatus(status)) = response.answer else {
            return Err(unexpected("check_txn_status"));
        };
        if status.lock_ttl > 0 {
            return Ok(false);
        }
        crate::metrics::txn_lock_resolved(if status.commit_version > 0 {
            "committed"
        } else {
            "rolled_back"
        });
        let resolve = |keys| {
            txn_request(Command::ResolveLock(ResolveLockRequest {
                start_version: *lock_ts,
                commit_version: status.commit_version,
                keys,
                ..Default::default()
            }))
        };
        self.for_each_region(vec![key.clone()], resolve).await?;
        Ok(true)
    }

    /// Runs one command through the service (which retries region errors).
    async fn run(&self, request: TxnRequest) -> Result<TxnResponse> {
        match self.service.execute(KvOp::Txn(request)).await? {
            KvOutcome::Txn(response) => Ok(*response),
            _ => Err(unexpected("a transactional command")),
        }
    }
}

/// What a [`TxnClient::commit_if`] came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// Every condition held and the transaction committed.
    Committed {
        /// Its commit timestamp.
        commit_ts: u64,
        /// The versions of the keys asked for, at the start timestamp.
        reads: BTreeMap<Vec<u8>, Read>,
    },
    /// A condition did not hold; nothing was committed.
    ConditionFailed,
}

/// How the prewrites of a transaction ended.
enum Prewritten {
    /// Every key is locked; these are the versions read.
    Locked(BTreeMap<Vec<u8>, Read>),
    /// Every key was in one region, which committed the transaction in one phase.
    Committed {
        /// Its commit timestamp.
        commit_ts: u64,
        /// The versions read.
        reads: BTreeMap<Vec<u8>, Read>,
    },
    /// A condition did not hold; nothing was written.
    ConditionFailed,
}

/// The conditions and reads every prewrite of a transaction carries (each region
/// checks those of its own keys).
struct Checks {
    conditions: Vec<tinykv_proto::kvrpcpb::Condition>,
    read_keys: Vec<Vec<u8>>,
}

/// Waiting out a lock that is still alive, until the request's deadline.
struct Backoff {
    deadline: Instant,
    pause: Duration,
}

impl Backoff {
    fn new(deadline: Instant) -> Backoff {
        Backoff {
            deadline,
            pause: Duration::from_millis(5),
        }
    }

    /// Waits a little longer each time; once the deadline has passed, fails with the
    /// lock (or other key error) that kept the request waiting.
    async fn wait(&mut self, error: &KeyError) -> Result<()> {
        let now = Instant::now();
        if now >= self.deadline {
            return Err(match error {
                KeyError::Locked { key, lock_ts, .. } => Error::TxnConflict {
                    code: "key_locked",
                    key: key.clone(),
                    message: format!(
                        "key {:?} stayed locked by transaction {lock_ts}; nothing was changed",
                        String::from_utf8_lossy(key)
                    ),
                },
                other => txn_aborted(other),
            });
        }
        tokio::time::sleep(self.pause.min(self.deadline - now)).await;
        self.pause = (self.pause * 2).min(Duration::from_millis(200));
        Ok(())
    }
}

/// A key error that ends a transaction, as a 409: nothing was committed.
pub fn txn_aborted(error: &KeyError) -> Error {
    crate::metrics::txn_conflict(match error {
        KeyError::Conflict { .. } => "write_conflict",
        KeyError::Locked { .. } => "locked",
        KeyError::Retryable(_) => "retryable",
        KeyError::Abort(_) => "aborted",
    });
    match error {
        KeyError::Conflict {
            key, conflict_ts, ..
        } => Error::TxnConflict {
            code: "write_conflict",
            key: key.clone(),
            message: format!(
                "key {:?} was written by a transaction committed at {conflict_ts}, after this \
                 one started; nothing was committed",
                String::from_utf8_lossy(key)
            ),
        },
        KeyError::Locked { key, lock_ts, .. } => Error::TxnConflict {
            code: "key_locked",
            key: key.clone(),
            message: format!(
                "key {:?} is locked by transaction {lock_ts}; nothing was committed",
                String::from_utf8_lossy(key)
            ),
        },
        KeyError::Retryable(why) | KeyError::Abort(why) => Error::TxnConflict {
            code: "txn_aborted",
            key: Vec::new(),
            message: format!("{why}; nothing was committed"),
        },
    }
}

fn txn_request(command: Command) -> TxnRequest {
    TxnRequest {
        command: Some(command),
    }
}

fn unexpected(what: &str) -> Error {
    Error::Io(format!("{what} was answered with something else"))
}

/// Whether the stored key `key` lies in `[start, end)` (empty `end`: unbounded).
fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    key >= start && (end.is_empty() || key < end)
}

/// The smallest client key after `key`.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = key.to_vec();
    next.push(0);
    next
}

/// The client key a scan goes on from after a region ending at the stored key
/// `region_end`; `None` if no transactional key lies beyond it. A region of the
/// transactional range ends at a key's encoding ([`tinykv_actors::keys::split_point`]),
/// one below it goes on from the first key. Any other end is a damaged region boundary,
/// and an error rather than a scan silently cut short.
fn next_region_start(region_end: &[u8]) -> Result<Option<Vec<u8>>> {
    if region_end.is_empty() || region_end >= TXN_KEYS_END {
        Ok(None)
    } else if region_end <= TXN_KEYS_START {
        Ok(Some(Vec::new()))
    } else {
        decode_key(region_end).map(Some).ok_or_else(|| {
            Error::Io(format!(
                "a region of the transactional keys ends inside a key's versions, at {:?}",
                region_end.escape_ascii().to_string()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_goes_on_after_each_kind_of_region_end() {
        let next = |end: &[u8]| next_region_start(end).unwrap();
        assert_eq!(next(b""), None);
        assert_eq!(next(b"\xff"), None);
        assert_eq!(next(b"raw"), Some(Vec::new()));
        assert_eq!(next(TXN_KEYS_START), Some(Vec::new()));
        assert_eq!(next(&encode_key(b"k")), Some(b"k".to_vec()));
        let mut inside = encode_key(b"k");
        inside.push(7);
        assert!(next_region_start(&inside).is_err());
    }
}
