//! Running one transactional command on the local store's region.
//!
//! A [`TxnExecutor`] takes a `kvrpcpb` command, finds the local region holding its first
//! key and handles the command's keys that lie in that region; its answer names the
//! region's range, so the caller sends the other keys on to the next region.
//!
//! - **Reads** (get, scan) wait until no one-phase commit in flight on the node holds
//!   their keys ([`super::pending`]), take a linearizable snapshot at the leader, and read
//!   the versions at the command's timestamp from it.
//! - **Writes** (prewrite, commit, rollback, check-txn-status, resolve-lock) run at the
//!   leader. The executor first holds the [latches](super::latches) of the command's keys
//!   (in the region the Router routes them to), then takes a leader-only snapshot, which
//!   must be of that region unchanged and tells the leader's term; it runs the command on the snapshot and proposes the
//!   writes it gathered as one raft command bound to that term and that epoch. If the
//!   peer lost its leadership in between, even if it won it back, the raftstore refuses
//!   the command (`stale_command`, not applied); a split or merge in between fails it
//!   with `epoch_not_match`, at proposal or at apply. Either way nothing was written and
//!   the command is tried again on a new snapshot.
//!
//! A prewrite asked to commit in one phase (`try_one_pc`) whose keys all lie in the
//! region does so: once its checks pass, the keys are listed as pending, a commit
//! timestamp is taken from the oracle, and the values and commit records are proposed
//! instead of locks ([`commands::commit_one_pc`]). Asked again after a lost answer, it
//! finds its own commit record and answers its timestamp.
//!
//! The latches are released only once the proposal's fate is known: applied, refused,
//! or overwritten by a new leader. A caller whose wait times out is told the outcome is
//! unknown, but the next command on those keys still waits for the entry, so it can
//! never decide on a snapshot that misses a write of the same term still in the log.
//! (Entries of earlier terms are covered by the read: a leader serves reads only once an
//! entry of its own term has committed, and with it every entry before.)

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tinykv_actors::engine::Mutation as EngineMutation;
use tinykv_actors::msg::{CmdResponse, RegionSnapshot};
use tinykv_actors::{Error as StoreError, StoreRouter};
use tinykv_proto::kvrpcpb::{
    txn_request::Command, txn_response::Answer, Action, BatchRollbackResponse,
    CheckTxnStatusResponse, CommitResponse, GcRequest, GcResponse, GetResponse, LockInfo,
    PrewriteRequest, PrewriteResponse, ResolveLockResponse, ScanLockResponse, ScanResponse,
    TxnRequest, TxnResponse, VersionedPair,
};
use tinykv_proto::metapb;
use tinykv_proto::raft_cmdpb::{
    CmdType, DeleteRequest, PutRequest, RaftCmdRequest, RaftRequestHeader, Request,
};

use super::client::TimestampSource;
use super::commands::TxnWrite;
use super::commands::{self, KeyError, StatusAction};
use super::conditions::Condition;
use super::keys::encode_key;
use super::latches::Latches;
use super::mvcc::MvccTxn;
use super::pending::{PendingCommits, PendingGuard};
use super::wire::{is_write, key_error_to_pb, request_keys, writes_of};
use crate::error::{Error, Result};
use crate::kv_service::{cf_name, snap_command};
use crate::pd::tso;

/// Runs transactional commands on one store; see the module documentation. Clones share
/// the latches.
#[derive(Clone)]
pub struct TxnExecutor {
    store: StoreRouter,
    latches: Arc<Latches>,
    pending: PendingCommits,
    max_age: Duration,
    /// Where one-phase commits take their commit timestamps; without one, prewrites
    /// always lock.
    clock: Option<Arc<dyn TimestampSource>>,
}

impl TxnExecutor {
    /// An executor over the store `store`, with latches of its own, that refuses reads
    /// and transactions whose timestamp is older than `max_age` (see `check_age`).
    pub fn new(store: StoreRouter, max_age: Duration) -> TxnExecutor {
        TxnExecutor {
            store,
            latches: Arc::new(Latches::default()),
            pending: PendingCommits::default(),
            max_age,
            clock: None,
        }
    }

    /// The same executor, committing transactions whose keys lie in one region in one
    /// phase with commit timestamps from `clock` (the oracle every coordinator uses).
    pub fn with_clock(mut self, clock: Arc<dyn TimestampSource>) -> TxnExecutor {
        self.clock = Some(clock);
        self
    }

    /// Executes `request` on the local region holding its first key, taking at most
    /// `timeout`. Region errors (not leader, epoch not match, stale command, no such
    /// region) come back as errors for the caller to retry elsewhere or later; a timeout
    /// after a proposal is [`StoreError::Timeout`] (the outcome is unknown).
    pub async fn execute(&self, request: TxnRequest, timeout: Duration) -> Result<TxnResponse> {
        let deadline = Instant::now() + timeout;
        let keys = request_keys(&request)?;
        let routing = encode_key(&keys[0]);
        if let Some(refusal) = check_age(&request, self.max_age)? {
            return Ok(refusal);
        }
        if !is_write(&request) {
            if let Some((start, end)) = read_range(&request) {
                if !self
                    .pending
                    .wait_clear(&start, end.as_deref(), deadline)
                    .await
                {
                    return Err(Error::Store(StoreError::ServerIsBusy(
                        "a commit of the keys read is still in flight".into(),
                    )));
                }
            }
            let snapshot = self.read_snapshot(&routing, true, deadline).await?.0;
            return Ok(answer(&snapshot, read(&snapshot, request)?));
        }
        if let Some(Command::Gc(gc)) = &request.command {
            return self.collect_garbage(&routing, gc, deadline).await;
        }
        let route = self
            .store
            .find_region(&routing)
            .await?
            .ok_or(Error::Store(StoreError::RegionNotFound(0)))?;
        // A follower that knows the leader sends the caller there at once, without taking
        // latches or asking its peer.
        if let Some(leader) = route
            .leader
            .filter(|leader| leader.store_id != self.store.store_id())
        {
            return Err(Error::Store(StoreError::NotLeader {
                region_id: route.region.id,
                leader: Some(leader),
            }));
        }
        let region = route.region;
        let latched: Vec<Vec<u8>> = keys
            .iter()
            .map(|key| encode_key(key))
            .filter(|key| in_region(key, &region))
            .collect();
        let guard = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            self.latches.acquire(&latched),
        )
        .await
        .map_err(|_| {
            Error::Store(StoreError::ServerIsBusy(
                "another command holds the keys' latches".into(),
            ))
        })?;
        let (snapshot, term) = self
            .read_snapshot(&routing, true, deadline)
            .await
            .and_then(|(snapshot, term)| {
                // The region the latches were taken for, unchanged.
                if snapshot.region.id != region.id
                    || snapshot.region.region_epoch != region.region_epoch
                {
                    return Err(Error::Store(StoreError::StaleCommand));
                }
                Ok((snapshot, term))
            })?;
        let (response, mutations, pending) = match write(&snapshot, request, self.clock.is_some())?
        {
            Decision::Propose(response, mutations) => (response, mutations, None),
            Decision::OnePhase {
                response,
                start_ts,
                writes,
            } => {
                let (response, mutations, pending) = self
                    .one_phase(&snapshot, response, start_ts, &writes, deadline)
                    .await?;
                (response, mutations, Some(pending))
            }
        };
        if mutations.is_empty() {
            return Ok(answer(&snapshot, response));
        }
        let answered = self.propose(&snapshot, term, mutations)?;
        // The latches (and a one-phase commit's pending keys) go with the proposal's
        // fate, however long the caller waits.
        let fate = tokio::spawn(async move {
            let result = answered.await.ok();
            drop(pending);
            drop(guard);
            result
        });
        applied(async { fate.await.ok().flatten() }, deadline).await?;
        Ok(answer(&snapshot, response))
    }

    /// Turns a prewrite that passed its checks into a one-phase commit: lists its keys as
    /// pending, takes a commit timestamp and gathers the values and commit records.
    async fn one_phase(
        &self,
        snapshot: &RegionSnapshot,
        mut response: PrewriteResponse,
        start_ts: u64,
        writes: &[TxnWrite],
        deadline: Instant,
    ) -> Result<(Answer, Vec<EngineMutation>, PendingGuard)> {
        let clock = self
            .clock
            .as_ref()
            .ok_or_else(|| Error::Io("a one-phase commit without an oracle".into()))?;
        // Listed before the timestamp is asked for: a reader with a newer one waits.
        let pending = self
            .pending
            .hold(writes.iter().map(|w| encode_key(w.key())).collect());
        let remaining = deadline.saturating_duration_since(Instant::now());
        let commit_ts = tokio::time::timeout(remaining, clock.timestamps(1))
            .await
            .map_err(|_| {
                // Nothing was proposed: not applied.
                Error::Store(StoreError::ServerIsBusy(
                    "the timestamp oracle did not answer in time".into(),
                ))
            })??;
        if commit_ts <= start_ts {
            return Err(Error::Io(format!(
                "the oracle answered {commit_ts}, not after the start timestamp {start_ts}"
            )));
        }
        let mut txn = MvccTxn::new(snapshot, start_ts);
        commands::commit_one_pc(&mut txn, writes, commit_ts)?;
        response.one_pc_commit_version = commit_ts;
        Ok((Answer::Prewrite(response), txn.into_mutations(), pending))
    }

    /// Proposes `mutations` to the region `snapshot` was read from, in `term` and the
    /// snapshot's epoch; hands back the channel the proposal's fate will come on.
    fn propose(
        &self,
        snapshot: &RegionSnapshot,
        term: u64,
        mutations: Vec<EngineMutation>,
    ) -> Result<tokio::sync::oneshot::Receiver<CmdResponse>> {
        let proposal = RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: snapshot.region.id,
                region_epoch: snapshot.region.region_epoch,
                term,
                leader_only: true,
                ..Default::default()
            }),
            requests: mutations
                .into_iter()
                .map(request_of)
                .collect::<Result<_>>()?,
            ..Default::default()
        };
        Ok(self.store.send_command(proposal)?)
    }

    /// One pass of garbage collection in the region holding `routing`, at its leader.
    /// Its deletions need no latches: nothing writes below the safe point any more
    /// (see [`super::gc`]).
    async fn collect_garbage(
        &self,
        routing: &[u8],
        gc: &GcRequest,
        deadline: Instant,
    ) -> Result<TxnResponse> {
        let (snapshot, term) = self.read_snapshot(routing, true, deadline).await?;
        let limit = (gc.limit as usize).clamp(1, MAX_GC_KEYS);
        let pass = super::gc::collect(&snapshot, &gc.start_key, gc.safe_point, limit)?;
        let deleted = pass.mutations.len() as u64;
        if !pass.mutations.is_empty() {
            let answered = self.propose(&snapshot, term, pass.mutations)?;
            applied(async { answered.await.ok() }, deadline).await?;
            crate::metrics::txn_gc_deleted(deleted);
        }
        let response = GcResponse {
            more: pass.next.is_some(),
            next_key: pass.next.unwrap_or_default(),
            deleted,
            ..Default::default()
        };
        Ok(answer(&snapshot, Answer::Gc(response)))
    }

    /// A linearizable snapshot of the region holding `key` (at its leader if
    /// `leader_only`), and the term of the peer that served it.
    async fn read_snapshot(
        &self,
        key: &[u8],
        leader_only: bool,
        deadline: Instant,
    ) -> Result<(RegionSnapshot, u64)> {
        let request = snap_command(RaftRequestHeader {
            leader_only,
            ..Default::default()
        });
        let timeout = deadline.saturating_duration_since(Instant::now());
        let response = self
            .store
            .key_command(key.to_vec(), request, timeout)
            .await?;
        if let Some(err) = response.err() {
            return Err(Error::Store(err));
        }
        let term = response
            .response
            .header
            .as_ref()
            .map_or(0, |h| h.current_term);
        let snapshot = response
            .snapshot
            .ok_or_else(|| Error::Io("a read answered without a snapshot".into()))?;
        Ok((snapshot, term))
    }
}

/// How far ahead of a node's clock a timestamp may be (the oracle's clock may run ahead).
pub const MAX_CLOCK_AHEAD_MS: u64 = 60_000;

/// Most keys one garbage-collection pass visits: a pass is one raft command.
pub const MAX_GC_KEYS: usize = 1024;

/// Refuses what would read or write further back than `max_age`: the safe point of
/// garbage collection trails the clock by `gc.life_time`, and `max_age` is shorter by a
/// margin for the clocks' skew, so versions such a command needs may be gone. A read at
/// such a timestamp, or a garbage collection up to one that recent, is a 400 error; a
/// prewrite or commit of such a transaction answers an abort. Resolving locks and
/// rollbacks have no age: they finish what was started.
fn check_age(request: &TxnRequest, max_age: Duration) -> Result<Option<TxnResponse>> {
    let now_ms = crate::pd::server::now_ms();
    let oldest = tso::compose(now_ms.saturating_sub(max_age.as_millis() as u64), 0);
    let too_old = |ts: u64| ts < oldest;
    // A timestamp the oracle cannot have handed out yet (allowing for skewed clocks):
    // a lock that far ahead would never expire, a read that far ahead would not repeat.
    let newest = tso::compose(now_ms.saturating_add(MAX_CLOCK_AHEAD_MS), 0);
    let ahead = match &request.command {
        Some(Command::Get(get)) => Some(get.version),
        Some(Command::Scan(scan)) => Some(scan.version),
        Some(Command::Prewrite(prewrite)) => Some(prewrite.start_version),
        Some(Command::Commit(commit)) => Some(commit.commit_version),
        Some(Command::CheckTxnStatus(check)) => Some(check.current_ts.max(check.lock_ts)),
        Some(Command::ResolveLock(resolve)) => Some(resolve.commit_version),
        _ => None,
    };
    if let Some(ts) = ahead.filter(|&ts| ts > newest) {
        return Err(Error::bad_request(
            "ts_in_future",
            format!("timestamp {ts} is ahead of every timestamp the oracle hands out"),
        ));
    }
    let aborted = |start_ts: u64| {
        KeyError::Abort(format!(
            "transaction {start_ts} started more than {} s ago, beyond the garbage collector's \
         window",
            max_age.as_secs()
        ))
    };
    match &request.command {
        Some(Command::Get(get)) if too_old(get.version) => Err(ts_too_old(get.version, max_age)),
        Some(Command::Scan(scan)) if too_old(scan.version) => {
            Err(ts_too_old(scan.version, max_age))
        }
        Some(Command::Gc(gc)) if !too_old(gc.safe_point) => Err(Error::bad_request(
            "invalid_safe_point",
            "a safe point must trail the clock by the garbage collector's life time",
        )),
        Some(Command::Prewrite(prewrite)) if too_old(prewrite.start_version) => {
            Ok(Some(TxnResponse {
                answer: Some(Answer::Prewrite(PrewriteResponse {
                    errors: vec![key_error_to_pb(&aborted(prewrite.start_version))],
                    ..Default::default()
                })),
                ..Default::default()
            }))
        }
        Some(Command::Commit(commit)) if too_old(commit.start_version) => Ok(Some(TxnResponse {
            answer: Some(Answer::Commit(CommitResponse {
                region_error: None,
                error: Some(key_error_to_pb(&aborted(commit.start_version))),
            })),
            ..Default::default()
        })),
        _ => Ok(None),
    }
}

fn ts_too_old(ts: u64, max_age: Duration) -> Error {
    Error::bad_request(
        "ts_too_old",
        format!(
            "timestamp {ts} is more than {} s old: versions that old may have been \
             garbage-collected",
            max_age.as_secs()
        ),
    )
}

/// The stored keys a read covers, `[start, end)` (`None`: no end), for it to wait for
/// one-phase commits of; `None` for reads of locks, which such commits never leave.
fn read_range(request: &TxnRequest) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    match &request.command {
        Some(Command::Get(get)) => {
            let key = encode_key(&get.key);
            let mut end = key.clone();
            end.push(0);
            Some((key, Some(end)))
        }
        Some(Command::Scan(scan)) => Some((
            encode_key(&scan.start_key),
            (!scan.end_key.is_empty()).then(|| encode_key(&scan.end_key)),
        )),
        _ => None,
    }
}

/// Whether the stored key `key` lies in `region`.
fn in_region(key: &[u8], region: &metapb::Region) -> bool {
    key >= region.start_key.as_slice()
        && (region.end_key.is_empty() || key < region.end_key.as_slice())
}

/// The answer, naming the range of the region that executed it.
fn answer(snapshot: &RegionSnapshot, answer: Answer) -> TxnResponse {
    TxnResponse {
        answer: Some(answer),
        region_start: snapshot.region.start_key.clone(),
        region_end: snapshot.region.end_key.clone(),
        ..Default::default()
    }
}

/// Waits until `deadline` for a proposal's answer (`None`: the peer stopped without
/// giving one): `Ok` once it applied, the raftstore's refusal (not applied) as an error,
/// and [`StoreError::Timeout`] (outcome unknown) if the deadline passes first.
async fn applied(
    answer: impl std::future::Future<Output = Option<CmdResponse>>,
    deadline: Instant,
) -> Result<()> {
    match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), answer).await {
        Ok(Some(response)) => match response.err() {
            Some(err) => Err(Error::Store(err)),
            None => Ok(()),
        },
        Ok(None) => Err(Error::Store(StoreError::Stopped)),
        Err(_) => Err(Error::Store(StoreError::Timeout)),
    }
}

/// Runs a read on `snapshot`.
fn read(snapshot: &RegionSnapshot, request: TxnRequest) -> Result<Answer> {
    match request.command {
        Some(Command::Get(get)) => {
            let txn = MvccTxn::new(snapshot, get.version);
            let mut response = GetResponse::default();
            match commands::read(&txn, &get.key)? {
                Ok(Some(version)) => {
                    response.value = version.value;
                    response.commit_version = version.commit_ts;
                }
                Ok(None) => response.not_found = true,
                Err(error) => response.error = Some(key_error_to_pb(&error)),
            }
            Ok(Answer::Get(response))
        }
        Some(Command::Scan(scan)) => {
            let txn = MvccTxn::new(snapshot, scan.version);
            // The region's snapshot stops the scan at the region's end.
            let pairs = commands::scan(&txn, &scan.start_key, &scan.end_key, scan.limit as usize)?;
            let pairs = pairs
                .into_iter()
                .map(|(key, version)| match version {
                    Ok(version) => VersionedPair {
                        key,
                        value: version.value,
                        commit_version: version.commit_ts,
                        error: None,
                    },
                    Err(error) => VersionedPair {
                        key,
                        error: Some(key_error_to_pb(&error)),
                        ..Default::default()
                    },
                })
                .collect();
            Ok(Answer::Scan(ScanResponse {
                region_error: None,
                pairs,
            }))
        }
        Some(Command::ScanLock(scan)) => {
            let limit = (scan.limit as usize).min(MAX_GC_KEYS);
            let locks = super::gc::scan_locks(
                snapshot,
                &scan.start_key,
                &scan.end_key,
                scan.max_version,
                limit,
            )?;
            let locks = locks
                .into_iter()
                .map(|(key, lock)| LockInfo {
                    primary_lock: lock.primary,
                    lock_version: lock.ts,
                    key,
                    lock_ttl: lock.ttl,
                })
                .collect();
            Ok(Answer::ScanLock(ScanLockResponse {
                locks,
                ..Default::default()
            }))
        }
        _ => Err(Error::Io("a write was run as a read".into())),
    }
}

/// What a writing command decided on its snapshot.
enum Decision {
    /// Answer this, once the writes (if any; none if the command failed on a key) have
    /// applied.
    Propose(Answer, Vec<EngineMutation>),
    /// A prewrite whose checks passed, to commit in one phase ([`TxnExecutor::one_phase`]).
    OnePhase {
        /// The answer so far (the reads).
        response: PrewriteResponse,
        /// The transaction's start timestamp.
        start_ts: u64,
        /// Its writes, all in this region.
        writes: Vec<TxnWrite>,
    },
}

/// Runs a writing command on `snapshot`, for the keys of its region only. A prewrite
/// asking for it may be committed in one phase if `one_pc` (an oracle is at hand).
fn write(snapshot: &RegionSnapshot, request: TxnRequest, one_pc: bool) -> Result<Decision> {
    let here = |keys: Vec<Vec<u8>>| -> Vec<Vec<u8>> {
        keys.into_iter()
            .filter(|key| in_region(&encode_key(key), &snapshot.region))
            .collect()
    };
    let outcome = match request.command {
        Some(Command::Prewrite(prewrite)) => return prewrite_here(snapshot, prewrite, one_pc),
        Some(Command::Commit(commit)) => {
            if commit.commit_version < commit.start_version {
                return Err(Error::bad_request(
                    "invalid_txn_command",
                    "a commit timestamp is below the start timestamp",
                ));
            }
            let mut txn = MvccTxn::new(snapshot, commit.start_version);
            let error = commands::commit(&mut txn, &here(commit.keys), commit.commit_version)?;
            keep_if_ok(
                Answer::Commit(CommitResponse {
                    region_error: None,
                    error: error.as_ref().map(key_error_to_pb),
                }),
                error.is_none(),
                txn,
            )
        }
        Some(Command::Rollback(rollback)) => {
            let mut txn = MvccTxn::new(snapshot, rollback.start_version);
            let error = commands::rollback(&mut txn, &here(rollback.keys))?;
            keep_if_ok(
                Answer::Rollback(BatchRollbackResponse {
                    region_error: None,
                    error: error.as_ref().map(key_error_to_pb),
                }),
                error.is_none(),
                txn,
            )
        }
        Some(Command::CheckTxnStatus(check)) => {
            let mut txn = MvccTxn::new(snapshot, check.lock_ts);
            let status =
                commands::check_txn_status(&mut txn, &check.primary_key, check.current_ts)?;
            let action = match status.action {
                StatusAction::NoAction => Action::NoAction,
                StatusAction::TtlExpireRollback => Action::TtlExpireRollback,
                StatusAction::LockNotExistRollback => Action::LockNotExistRollback,
            };
            let response = CheckTxnStatusResponse {
                region_error: None,
                lock_ttl: status.lock_ttl,
                commit_version: status.commit_ts,
                action: action as i32,
            };
            (Answer::CheckTxnStatus(response), txn.into_mutations())
        }
        Some(Command::ResolveLock(resolve)) => {
            let mut txn = MvccTxn::new(snapshot, resolve.start_version);
            let keys = here(resolve.keys);
            // Only keys the transaction still has locked here: the rest are resolved.
            let mut locked = Vec::new();
            for key in keys {
                if txn
                    .get_lock(&key)?
                    .is_some_and(|lock| lock.ts == resolve.start_version)
                {
                    locked.push(key);
                }
            }
            let error = if resolve.commit_version == 0 {
                commands::rollback(&mut txn, &locked)?
            } else {
                commands::commit(&mut txn, &locked, resolve.commit_version)?
            };
            keep_if_ok(
                Answer::ResolveLock(ResolveLockResponse {
                    region_error: None,
                    error: error.as_ref().map(key_error_to_pb),
                }),
                error.is_none(),
                txn,
            )
        }
        _ => return Err(Error::Io("a read was run as a write".into())),
    };
    Ok(Decision::Propose(outcome.0, outcome.1))
}

/// Prewrites the keys of `prewrite` that lie in the snapshot's region, checking its
/// conditions and reading its read keys there; see [`write`].
fn prewrite_here(
    snapshot: &RegionSnapshot,
    prewrite: PrewriteRequest,
    one_pc: bool,
) -> Result<Decision> {
    let all = writes_of(&prewrite.mutations)?;
    let locked: HashSet<&[u8]> = all.iter().map(|w| w.key()).collect();
    // A key of another region is that region's prewrite's to check.
    let here_too = |key: &[u8]| -> Result<bool> {
        if !in_region(&encode_key(key), &snapshot.region) {
            return Ok(false);
        }
        if !locked.contains(key) {
            return Err(Error::bad_request(
                "invalid_txn_command",
                "a prewrite checks and reads only keys it locks",
            ));
        }
        Ok(true)
    };
    let writes: Vec<TxnWrite> = all
        .iter()
        .filter(|w| in_region(&encode_key(w.key()), &snapshot.region))
        .cloned()
        .collect();
    let one_pc = one_pc && prewrite.try_one_pc && writes.len() == all.len();
    let mut txn = MvccTxn::new(snapshot, prewrite.start_version);
    let errors = commands::prewrite(&mut txn, &writes, &prewrite.primary_lock, prewrite.lock_ttl)?;
    let mut response = PrewriteResponse::default();
    // A one-phase commit asked again after its answer was lost finds itself committed.
    let committed = match (errors.first(), writes.first()) {
        (Some(KeyError::Conflict { .. }), Some(first)) if one_pc => {
            commands::committed_at(&txn, first.key())?
        }
        _ => None,
    };
    if committed.is_none() && !errors.is_empty() {
        response.errors = errors.iter().map(key_error_to_pb).collect();
        return Ok(Decision::Propose(Answer::Prewrite(response), Vec::new()));
    }
    // No write committed since the start timestamp (prewrite checked): the versions at
    // it are the keys' newest, and the latches keep them so. (A transaction committed
    // already passed these checks then, on the same versions.)
    for pb in &prewrite.conditions {
        let condition = Condition::from_pb(pb)?;
        if here_too(&condition.key)? && !condition.holds(txn.get_version(&condition.key)?.as_ref())
        {
            response.condition_failed = true;
            return Ok(Decision::Propose(Answer::Prewrite(response), Vec::new()));
        }
    }
    for key in &prewrite.read_keys {
        if !here_too(key)? {
            continue;
        }
        let read = txn.get_version(key)?;
        response.reads.push(VersionedPair {
            key: key.clone(),
            commit_version: read.as_ref().map_or(0, |v| v.commit_ts),
            value: read.map(|v| v.value).unwrap_or_default(),
            error: None,
        });
    }
    if let Some(commit_ts) = committed {
        response.one_pc_commit_version = commit_ts;
        return Ok(Decision::Propose(Answer::Prewrite(response), Vec::new()));
    }
    if one_pc {
        return Ok(Decision::OnePhase {
            response,
            start_ts: prewrite.start_version,
            writes,
        });
    }
    Ok(Decision::Propose(
        Answer::Prewrite(response),
        txn.into_mutations(),
    ))
}

/// The answer, and the transaction's writes if the command succeeded (none otherwise).
fn keep_if_ok(answer: Answer, ok: bool, txn: MvccTxn) -> (Answer, Vec<EngineMutation>) {
    let mutations = if ok { txn.into_mutations() } else { Vec::new() };
    (answer, mutations)
}

/// An engine mutation as a raft write request.
fn request_of(mutation: EngineMutation) -> Result<Request> {
    Ok(match mutation {
        EngineMutation::Put { cf, key, value } => Request {
            cmd_type: CmdType::Put as i32,
            put: Some(PutRequest {
                cf: cf_name(cf).into(),
                key,
                value,
            }),
            ..Default::default()
        },
        EngineMutation::Delete { cf, key } => Request {
            cmd_type: CmdType::Delete as i32,
            delete: Some(DeleteRequest {
                cf: cf_name(cf).into(),
                key,
            }),
            ..Default::default()
        },
        EngineMutation::DeleteRange { .. } => {
            return Err(Error::Io("a transaction deletes no ranges".into()))
        }
    })
}
