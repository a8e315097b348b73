//! KvService: what a node does with a client's get, put, delete or scan.
//!
//! Any node accepts any request. The service first tries its own store: the Router finds
//! the local region holding the key and the region's PeerFsm serves it if it leads (or,
//! for a read, if it is a follower that knows the leader: see the PeerFsm's follower
//! reads). If the peer is not the leader but knows who is, the service forwards the request to the
//! leader's node (through a [`Forwarder`]: HTTP between real nodes, a direct call in the
//! in-process test cluster), which executes it locally. If the local store holds no region
//! for the key at all (a region split off onto other stores, or a node that holds no peer
//! of it), the service asks the other stores it knows of in turn (see
//! [`KvService::with_other_stores`] and [`KvService::with_address_book`]): whichever holds
//! the region serves the request or names its leader. The same happens when the local
//! peer knows no leader: it may be cut off, or removed without having learnt it, while
//! the region lives on elsewhere. Retryable errors (no leader yet,
//! stale epoch, a command overwritten by a new leader) are retried with backoff until the
//! request's deadline.
//!
//! Writes are retried too, even when an attempt's outcome is unknown (the command timed
//! out, the leader changed under it, a forwarded request may have reached the other node):
//! every write names a [`WriteSession`] whose request id is the same on every attempt,
//! and the region applies a request id at most once (see `tinykv_actors::session`), so a
//! retry either applies the write or finds it applied. A leader failover within the
//! deadline is a slower success. When the deadline passes, the error says what is known:
//! if no attempt can have applied the write it is the last attempt's error (such as 503
//! `not_leader`: not applied); if one may have, it is 504 `timeout` (outcome unknown), and
//! the client can find out by retrying with the same request id.
//!
//! Reads are linearizable: each goes through the leader's ReadIndex (see the PeerFsm) and
//! is served from an engine snapshot taken once the read index is applied. A scan walks
//! region by region from its start key, each region read at its own linearizable point.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tinykv_actors::msg::CmdResponse;
use tinykv_actors::{Cf, Error as StoreError, StoreRouter};
use tinykv_proto::kvrpcpb::{TxnRequest, TxnResponse};
use tinykv_proto::raft_cmdpb::{
    CmdType, DeleteRequest, PutRequest, RaftCmdRequest, RaftCmdResponse, RaftRequestHeader,
    Request, SnapRequest, WriteOutcome, WriteSession,
};
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::request_context::RequestContext;
use crate::server::address_book::AddressBook;
use crate::txn::region::TxnExecutor;

/// One key-value operation, as executed on one node.
#[derive(Debug, Clone, PartialEq)]
pub enum KvOp {
    /// Read one key.
    Get {
        /// Column family.
        cf: Cf,
        /// The key.
        key: Vec<u8>,
    },
    /// Write one key.
    Put {
        /// Column family.
        cf: Cf,
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
        /// The write's session, the same on every attempt.
        session: WriteSession,
    },
    /// Delete one key.
    Delete {
        /// Column family.
        cf: Cf,
        /// The key.
        key: Vec<u8>,
        /// The write's session, the same on every attempt.
        session: WriteSession,
    },
    /// Read up to `limit` pairs from `[start, end)` within the region holding `start`.
    ScanRegion {
        /// Column family.
        cf: Cf,
        /// First key.
        start: Vec<u8>,
        /// Exclusive end; empty means unbounded.
        end: Vec<u8>,
        /// Most pairs to return.
        limit: usize,
        /// Most bytes of keys and values to return (at least one pair, whatever its size).
        max_bytes: usize,
    },
    /// A transactional command, on the region holding its first key (see
    /// [`crate::txn::region`]).
    Txn(TxnRequest),
}

impl KvOp {
    fn is_write(&self) -> bool {
        match self {
            KvOp::Put { .. } | KvOp::Delete { .. } => true,
            KvOp::Txn(request) => crate::txn::wire::is_write(request),
            KvOp::Get { .. } | KvOp::ScanRegion { .. } => false,
        }
    }

    /// The operation's name in metrics.
    fn kind(&self) -> &'static str {
        match self {
            KvOp::Get { .. } => "get",
            KvOp::Put { .. } => "put",
            KvOp::Delete { .. } => "delete",
            KvOp::ScanRegion { .. } => "scan",
            KvOp::Txn(_) => "txn",
        }
    }

    fn routing_key(&self) -> &[u8] {
        match self {
            KvOp::Get { key, .. } | KvOp::Put { key, .. } | KvOp::Delete { key, .. } => key,
            KvOp::ScanRegion { start, .. } => start,
            // Routed by the executor itself.
            KvOp::Txn(_) => &[],
        }
    }
}

/// What a [`KvOp`] produced.
#[derive(Debug, Clone, PartialEq)]
pub enum KvOutcome {
    /// A get's value (`None`: absent).
    Value(Option<Vec<u8>>),
    /// A write was applied: now, or (`replayed`) by an earlier attempt or an earlier
    /// request with the same request id.
    Written {
        /// Whether it had been applied before; nothing changed now.
        replayed: bool,
    },
    /// A region scan's pairs, and the end key of the region scanned (empty: last region).
    Pairs {
        /// The pairs, in key order.
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
        /// Where the next region starts.
        region_end: Vec<u8>,
    },
    /// A transactional command's response.
    Txn(Box<TxnResponse>),
}

/// One page of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPage {
    /// The pairs, in key order.
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Where the next page starts, if this one was cut short by its pair or byte bound
    /// (it may turn out empty); `None` if the range is done.
    pub next: Option<Vec<u8>>,
}

/// Sends an operation to another node, which executes it on its own store without
/// forwarding it further.
pub trait Forwarder: Send + Sync + 'static {
    /// Executes `op` on store `store_id`.
    fn forward(&self, store_id: u64, op: KvOp) -> BoxFuture<'static, Result<KvOutcome>>;

    /// Executes a raw raft command on store `store_id`'s peer of the region named in
    /// `request.header.region_id` (see [`KvService::command_local`]), without forwarding
    /// it further. The command's own failures (not leader, epoch not match, ...) are in
    /// the response header; `Err` means no answer came back from that store, and
    /// [`Error::is_outcome_unknown`] tells whether the command may have been executed.
    ///
    /// The default refuses every command without sending anything, for forwarders that
    /// only carry key-value operations.
    fn forward_command(
        &self,
        store_id: u64,
        request: RaftCmdRequest,
    ) -> BoxFuture<'static, Result<RaftCmdResponse>> {
        let _ = request;
        Box::pin(async move {
            Err(Error::Forward {
                store_id,
                message: "command forwarding is not supported by this forwarder".into(),
                maybe_delivered: false,
            })
        })
    }

    /// Runs the one-shot transaction `body` (the JSON of `POST /v1/txn`, checked) on
    /// store `store_id`, without forwarding it further; answers its JSON result. An
    /// error the other node answered comes back with its status and code
    /// ([`Error::Relayed`]); [`Error::Forward`] with `maybe_delivered: false` means it
    /// was never sent. The default sends nothing.
    fn forward_one_shot(
        &self,
        store_id: u64,
        body: OneShotBody,
    ) -> BoxFuture<'static, Result<serde_json::Value>> {
        let _ = body;
        Box::pin(async move {
            Err(Error::Forward {
                store_id,
                message: "one-shot transactions are not forwarded by this forwarder".into(),
                maybe_delivered: false,
            })
        })
    }
}

/// A one-shot transaction's body, as a node sends it to another to run there (see
/// [`crate::api::one_shot`]).
pub type OneShotBody = Vec<u8>;

/// Timing of a [`KvService`].
#[derive(Debug, Clone, Copy)]
pub struct ServiceTimeouts {
    /// Total time a client request may take, retries included.
    pub request: Duration,
    /// Time one attempt on the local store may take.
    pub attempt: Duration,
    /// How long a region remembers a write's request id (the `ttl_ms` of its
    /// [`WriteSession`]).
    pub write_ttl: Duration,
    /// How far back a transactional read or transaction may reach (see
    /// [`crate::config::GcConfig::max_txn_age`]).
    pub txn_max_age: Duration,
}

/// The stores a [`KvService`] asks when its own store holds no region for a key.
#[derive(Clone)]
enum OtherStores {
    /// A fixed list of store ids.
    Fixed(Vec<u64>),
    /// Every store of an address book, as it is at the moment of asking.
    Book(AddressBook),
}

impl OtherStores {
    /// The store ids to ask, in order, without `local`.
    fn ids(&self, local: u64) -> Vec<u64> {
        let mut ids = match self {
            OtherStores::Fixed(ids) => ids.clone(),
            OtherStores::Book(book) => book.all().into_iter().map(|s| s.id).collect(),
        };
        let mut seen = HashSet::new();
        ids.retain(|&id| id != local && seen.insert(id));
        ids
    }
}

/// The node's request executor; see the module documentation.
#[derive(Clone)]
pub struct KvService {
    store: StoreRouter,
    txn: TxnExecutor,
    forwarder: Arc<dyn Forwarder>,
    timeouts: ServiceTimeouts,
    others: OtherStores,
}

impl KvService {
    /// A service over the local store `store`, forwarding through `forwarder`. It asks no
    /// other store about keys its own store holds no region for until given some with
    /// [`KvService::with_other_stores`] or [`KvService::with_address_book`].
    pub fn new(
        store: StoreRouter,
        forwarder: Arc<dyn Forwarder>,
        timeouts: ServiceTimeouts,
    ) -> Self {
        KvService {
            txn: TxnExecutor::new(store.clone(), timeouts.txn_max_age),
            store,
            forwarder,
            timeouts,
            others: OtherStores::Fixed(Vec::new()),
        }
    }

    /// The same service, asking the stores `store_ids` (in that order; the local store is
    /// skipped) when its own store holds no region for a key.
    pub fn with_other_stores(mut self, store_ids: Vec<u64>) -> Self {
        self.others = OtherStores::Fixed(store_ids);
        self
    }

    /// The same service, committing transactions whose keys lie in one region in one
    /// phase, with commit timestamps from `clock`: the oracle the node's coordinator
    /// takes its start timestamps from.
    pub fn with_timestamps(mut self, clock: Arc<dyn crate::txn::client::TimestampSource>) -> Self {
        self.txn = self.txn.with_clock(clock);
        self
    }

    /// The same service, asking every store of `addresses` (by id; the local store is
    /// skipped) when its own store holds no region for a key. Stores added to the book
    /// later are asked too.
    pub fn with_address_book(mut self, addresses: AddressBook) -> Self {
        self.others = OtherStores::Book(addresses);
        self
    }

    /// The local store's id.
    pub fn store_id(&self) -> u64 {
        self.store.store_id()
    }

    /// The local store's router.
    pub fn store(&self) -> &StoreRouter {
        &self.store
    }

    /// The service's timing.
    pub fn timeouts(&self) -> ServiceTimeouts {
        self.timeouts
    }

    /// Reads `key`.
    pub async fn get(&self, cf: Cf, key: Vec<u8>) -> Result<Option<Vec<u8>>> {
        match self.execute(KvOp::Get { cf, key }).await? {
            KvOutcome::Value(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }

    /// A session for a new write: `request_id` if the client chose one, else a fresh id
    /// made of this store's id and 64 random bits; issued now, remembered for the
    /// service's `write_ttl`.
    pub fn new_session(&self, request_id: Option<Vec<u8>>) -> WriteSession {
        write_session(self.store_id(), request_id, self.timeouts.write_ttl)
    }

    /// Writes `key` = `value` under `session`; answers whether the request id had already
    /// been applied (then nothing changed now).
    pub async fn put(
        &self,
        cf: Cf,
        key: Vec<u8>,
        value: Vec<u8>,
        session: WriteSession,
    ) -> Result<bool> {
        let op = KvOp::Put {
            cf,
            key,
            value,
            session,
        };
        written(self.execute(op).await?)
    }

    /// Deletes `key` under `session`; answers whether the request id had already been
    /// applied (then nothing changed now).
    pub async fn delete(&self, cf: Cf, key: Vec<u8>, session: WriteSession) -> Result<bool> {
        written(self.execute(KvOp::Delete { cf, key, session }).await?)
    }

    /// Reads up to `limit` pairs, and about `max_bytes` of keys and values, of `[start,
    /// end)` (empty `end`: unbounded), in key order, across as many regions as it takes.
    /// A page cut short by either bound names the key to continue from.
    pub async fn scan(
        &self,
        cf: Cf,
        start: Vec<u8>,
        end: Vec<u8>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<ScanPage> {
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut bytes = 0usize;
        let mut cursor = start;
        loop {
            let op = KvOp::ScanRegion {
                cf,
                start: cursor.clone(),
                end: end.clone(),
                limit: limit - pairs.len(),
                max_bytes: max_bytes.saturating_sub(bytes).max(1),
            };
            let KvOutcome::Pairs {
                pairs: found,
                region_end,
            } = self.execute(op).await?
            else {
                return Err(Error::Io("scan answered with something else".into()));
            };
            bytes += found.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
            pairs.extend(found);
            if pairs.len() >= limit || bytes >= max_bytes {
                // Cut short: the page continues right after its last key.
                let next = pairs.last().map(|(key, _)| {
                    let mut after = key.clone();
                    after.push(0);
                    after
                });
                return Ok(ScanPage { pairs, next });
            }
            let finished = region_end.is_empty()
                || (!end.is_empty() && region_end.as_slice() >= end.as_slice());
            if finished {
                return Ok(ScanPage { pairs, next: None });
            }
            cursor = region_end;
        }
    }

    /// Executes `op`, forwarding to the leader's node when needed and retrying retryable
    /// failures until the request deadline; see the module documentation for what a
    /// write's error says once the deadline has passed.
    pub async fn execute(&self, op: KvOp) -> Result<KvOutcome> {
        let started = Instant::now();
        let deadline = started + self.timeouts.request;
        let mut target = self.store_id();
        let mut backoff = Duration::from_millis(5);
        // The other stores still to ask about a region the local store does not hold.
        let mut unasked: Vec<u64> = Vec::new();
        // Whether an earlier attempt may have applied the write.
        let mut maybe_applied = false;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            RequestContext::record_attempt(target);
            let attempt = async {
                if target == self.store_id() {
                    self.execute_local(op.clone()).await
                } else {
                    let span = tracing::info_span!("forward", to_store = target);
                    self.forwarder
                        .forward(target, op.clone())
                        .instrument(span)
                        .await
                }
            };
            // An attempt times out on its own after `timeouts.attempt`; one started closer
            // to the deadline than that is cut short at the deadline.
            let remaining = deadline.saturating_duration_since(Instant::now());
            let result = if remaining >= self.timeouts.attempt {
                attempt.await
            } else {
                tokio::time::timeout(remaining.max(MIN_ATTEMPT), attempt)
                    .await
                    .unwrap_or(Err(Error::Store(StoreError::Timeout)))
            };
            let err = match result {
                Ok(outcome) => {
                    if attempts > 1 {
                        crate::metrics::request_retried(op.kind(), "succeeded");
                    }
                    log_if_slow(&op, started, attempts, target, self.store_id());
                    return Ok(outcome);
                }
                Err(e) => e,
            };
            maybe_applied |= op.is_write() && err.is_outcome_unknown();
            let retryable = err.is_retryable() || err.is_outcome_unknown();
            if !retryable || Instant::now() >= deadline {
                if attempts > 1 {
                    crate::metrics::request_retried(op.kind(), "failed");
                }
                return Err(if maybe_applied && !err.is_outcome_unknown() && retryable {
                    // This attempt changed nothing, but an earlier one may have.
                    Error::OutcomeUnknown(Box::new(err))
                } else {
                    err
                });
            }
            let next = match &err {
                Error::Store(StoreError::NotLeader {
                    leader: Some(leader),
                    ..
                }) => leader.store_id,
                // A store without the region, or whose peer knows no leader (an election,
                // or a peer cut off or removed without knowing it): ask the others in
                // turn, then this store again.
                e if is_region_missing(e) || is_leaderless(e) => {
                    if target == self.store_id() && unasked.is_empty() {
                        unasked = self.others.ids(self.store_id());
                        unasked.reverse();
                    }
                    unasked.pop().unwrap_or(self.store_id())
                }
                _ => self.store_id(),
            };
            if next == target || next == self.store_id() {
                tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now())))
                    .await;
                backoff = (backoff * 2).min(Duration::from_millis(200));
            }
            tracing::debug!(?err, from = target, to = next, "retrying request");
            target = next;
        }
    }

    /// Runs a one-shot transaction on store `store_id` (see [`Forwarder::forward_one_shot`]).
    pub async fn forward_one_shot(
        &self,
        store_id: u64,
        body: OneShotBody,
    ) -> Result<serde_json::Value> {
        self.forwarder.forward_one_shot(store_id, body).await
    }

    /// Executes a raw raft command on the local store's peer of the region named in
    /// `request.header.region_id`, waiting up to the attempt timeout. The command's own
    /// failures (not leader, epoch not match, ...) are in the response header; `Err` means
    /// the store gave no answer (timed out: the outcome is unknown; or stopping).
    pub async fn command_local(&self, request: RaftCmdRequest) -> Result<RaftCmdResponse> {
        let response = self.store.command(request, self.timeouts.attempt).await?;
        Ok(response.response)
    }

    /// Executes `op` on the local store only.
    pub async fn execute_local(&self, op: KvOp) -> Result<KvOutcome> {
        if let KvOp::Txn(request) = op {
            let response = self.txn.execute(request, self.timeouts.attempt).await?;
            return Ok(KvOutcome::Txn(Box::new(response)));
        }
        let key = op.routing_key().to_vec();
        let trace_id = RequestContext::raft_trace_id();
        let (request, wants_snapshot) = match &op {
            KvOp::Put {
                cf,
                key,
                value,
                session,
            } => (
                command(Request {
                    cmd_type: CmdType::Put as i32,
                    put: Some(PutRequest {
                        cf: cf_name(*cf).into(),
                        key: key.clone(),
                        value: value.clone(),
                    }),
                    session: Some(session.clone()),
                    trace_id,
                    ..Default::default()
                }),
                false,
            ),
            KvOp::Delete { cf, key, session } => (
                command(Request {
                    cmd_type: CmdType::Delete as i32,
                    delete: Some(DeleteRequest {
                        cf: cf_name(*cf).into(),
                        key: key.clone(),
                    }),
                    session: Some(session.clone()),
                    trace_id,
                    ..Default::default()
                }),
                false,
            ),
            KvOp::Get { .. } | KvOp::ScanRegion { .. } | KvOp::Txn(_) => (
                command(Request {
                    cmd_type: CmdType::Snap as i32,
                    snap: Some(SnapRequest {}),
                    ..Default::default()
                }),
                true,
            ),
        };
        let sent_at = Instant::now();
        let response = self
            .store
            .key_command(key, request, self.timeouts.attempt)
            .await?;
        if let Some(stages) = &response.stages {
            let (stages, persist) = crate::metrics::write_stages(sent_at, stages);
            RequestContext::record_stages(stages, persist);
            if sent_at.elapsed() > SLOW_REQUEST {
                let [queue, raft, apply, write] = stages.map(|d| d.as_millis() as u64);
                tracing::info!(
                    kind = op.kind(),
                    queue_ms = queue,
                    raft_ms = raft,
                    persist_ms = persist.map(|d| d.as_millis() as u64),
                    apply_ms = apply,
                    write_ms = write,
                    "slow write in the raftstore"
                );
            }
        }
        if let Some(err) = response.err() {
            return Err(Error::Store(err));
        }
        if !wants_snapshot {
            return write_outcome(&response);
        }
        read_snapshot(response, op)
    }
}

/// A request that took longer than this is logged (at info level; see `log_if_slow`).
pub const SLOW_REQUEST: Duration = Duration::from_millis(50);

/// Logs a request that succeeded after more than [`SLOW_REQUEST`]: its kind, how many
/// attempts it took, where the last one ran (this store, or the store it was forwarded
/// to) and, for a write proposed here, its raftstore stages, so a latency spike can be
/// traced to a node, a retry or a stage.
fn log_if_slow(op: &KvOp, started: Instant, attempts: u32, target: u64, local: u64) {
    let took = started.elapsed();
    if took > SLOW_REQUEST {
        let stages = RequestContext::current()
            .map(|c| c.timeline().stages_text())
            .unwrap_or_default();
        tracing::info!(
            kind = op.kind(),
            attempts,
            served_by = target,
            forwarded = target != local,
            millis = took.as_millis() as u64,
            stages,
            "slow request"
        );
    }
}

/// Shortest time an attempt is given, even past the deadline: the first attempt of a
/// request always runs.
const MIN_ATTEMPT: Duration = Duration::from_millis(50);

/// A session for a new write made on store `store_id`: `request_id` if the client chose
/// one, else a fresh id of the store's id and 64 random bits (ids are scoped to the key
/// they write, so two writes of one key within the TTL collide with odds of 2^-64);
/// issued now, remembered for `ttl`.
pub fn write_session(store_id: u64, request_id: Option<Vec<u8>>, ttl: Duration) -> WriteSession {
    let request_id = request_id
        .unwrap_or_else(|| format!("{store_id}.{:016x}", rand::random::<u64>()).into_bytes());
    WriteSession {
        request_id,
        issued_ms: unix_ms(),
        ttl_ms: ttl.as_millis() as u64,
    }
}

/// The current time in unix milliseconds.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What a successful write command's response says of the (single) write in it.
fn write_outcome(response: &CmdResponse) -> Result<KvOutcome> {
    let outcome = response
        .response
        .responses
        .first()
        .map_or(WriteOutcome::Applied, |r| r.outcome());
    match outcome {
        WriteOutcome::Applied => Ok(KvOutcome::Written { replayed: false }),
        WriteOutcome::Replayed => Ok(KvOutcome::Written { replayed: true }),
        WriteOutcome::RequestIdReused => Err(Error::RequestIdReused),
    }
}

/// Whether a write's outcome says it had been applied before.
pub(crate) fn written(outcome: KvOutcome) -> Result<bool> {
    match outcome {
        KvOutcome::Written { replayed } => Ok(replayed),
        other => Err(unexpected(other)),
    }
}

fn read_snapshot(response: CmdResponse, op: KvOp) -> Result<KvOutcome> {
    let snapshot = response
        .snapshot
        .ok_or_else(|| Error::Io("read answered without a snapshot".into()))?;
    match op {
        KvOp::Get { cf, key } => Ok(KvOutcome::Value(snapshot.get(cf, &key)?)),
        KvOp::ScanRegion {
            cf,
            start,
            end,
            limit,
            max_bytes,
        } => Ok(KvOutcome::Pairs {
            pairs: snapshot.scan(cf, &start, &end, limit, max_bytes)?,
            region_end: snapshot.region.end_key.clone(),
        }),
        write => Err(Error::Io(format!("{write:?} is not a read"))),
    }
}

/// A command that takes a linearizable snapshot of a region (a read with no key), under
/// `header`.
pub fn snap_command(header: RaftRequestHeader) -> RaftCmdRequest {
    RaftCmdRequest {
        header: Some(header),
        requests: vec![Request {
            cmd_type: CmdType::Snap as i32,
            snap: Some(SnapRequest {}),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn command(request: Request) -> RaftCmdRequest {
    RaftCmdRequest {
        requests: vec![request],
        ..Default::default()
    }
}

/// The wire name of a client column family.
pub fn cf_name(cf: Cf) -> &'static str {
    match cf {
        Cf::Default => tinykv_actors::engine::CF_DEFAULT,
        Cf::Lock => tinykv_actors::engine::CF_LOCK,
        Cf::Write => tinykv_actors::engine::CF_WRITE,
        Cf::Raft | Cf::Meta => unreachable!("internal keyspaces are not client column families"),
    }
}

/// Whether `err` says that the store asked holds no region for the key at all (rather than
/// a stale view of one it holds), so another store may.
fn is_region_missing(err: &Error) -> bool {
    matches!(
        err,
        Error::Store(StoreError::RegionNotFound(_))
            | Error::Store(StoreError::KeyNotInRegion { region_id: 0, .. })
    )
}

/// Whether `err` says the peer asked is not the leader and knows of none.
fn is_leaderless(err: &Error) -> bool {
    matches!(
        err,
        Error::Store(StoreError::NotLeader { leader: None, .. })
    )
}

fn unexpected(outcome: KvOutcome) -> Error {
    Error::Io(format!("unexpected outcome {outcome:?}"))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tinykv_actors::ensure_bootstrapped;
    use tinykv_actors::{start_store, Engine, RaftStoreConfig, SequentialIds, Transport};
    use tinykv_proto::raft_serverpb::RaftMessage;

    use super::*;

    struct NoNetwork;

    impl Transport for NoNetwork {
        fn send(&self, _: RaftMessage) {}
    }

    /// Answers as scripted per store, and remembers which stores were asked.
    struct ScriptedForwarder {
        asked: Mutex<Vec<u64>>,
    }

    impl Forwarder for ScriptedForwarder {
        fn forward(&self, store_id: u64, op: KvOp) -> BoxFuture<'static, Result<KvOutcome>> {
            self.asked.lock().unwrap().push(store_id);
            Box::pin(async move {
                match (store_id, op) {
                    (3, _) => Err(Error::Store(StoreError::RegionNotFound(1))),
                    (5, KvOp::Put { .. }) => Err(Error::Forward {
                        store_id,
                        message: "lost".into(),
                        maybe_delivered: true,
                    }),
                    (5, _) => Ok(KvOutcome::Value(Some(b"v".to_vec()))),
                    _ => Err(Error::Store(StoreError::KeyNotInRegion {
                        key: b"k".to_vec(),
                        region_id: 0,
                        start_key: vec![],
                        end_key: vec![],
                    })),
                }
            })
        }
    }

    /// Starts the store in `engine` with no network to reach others.
    async fn start_alone(engine: Engine) -> tinykv_actors::StoreHandle {
        let ids = Arc::new(SequentialIds::starting_at(1000));
        start_store(
            RaftStoreConfig::for_tests(),
            engine,
            Arc::new(NoNetwork),
            ids,
        )
        .await
        .unwrap()
    }

    #[actix_rt::test]
    async fn a_key_no_local_region_holds_is_asked_of_the_other_stores_in_turn() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path().join("db")).unwrap();
        // Store 2 of a cluster whose only region lives on store 1: it holds nothing.
        ensure_bootstrapped(&engine, 1, 2, &[1]).unwrap();
        let store = start_alone(engine).await;
        let forwarder = Arc::new(ScriptedForwarder {
            asked: Mutex::new(Vec::new()),
        });
        let timeouts = ServiceTimeouts {
            request: Duration::from_secs(5),
            attempt: Duration::from_secs(1),
            write_ttl: Duration::from_secs(60),
            txn_max_age: crate::config::GcConfig::default().max_txn_age(),
        };
        let alone = KvService::new(store.router(), forwarder.clone(), timeouts);
        let fast = ServiceTimeouts {
            request: Duration::from_millis(100),
            ..timeouts
        };
        let err = KvService::new(store.router(), forwarder.clone(), fast)
            .get(Cf::Default, b"k".to_vec())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "key_not_in_region");
        assert!(
            forwarder.asked.lock().unwrap().is_empty(),
            "no other store is known"
        );

        let service = alone.with_other_stores(vec![3, 2, 4, 3, 5]);
        let value = service.get(Cf::Default, b"k".to_vec()).await.unwrap();
        assert_eq!(value, Some(b"v".to_vec()));
        assert_eq!(*forwarder.asked.lock().unwrap(), vec![3, 4, 5]);

        forwarder.asked.lock().unwrap().clear();
        let short = ServiceTimeouts {
            request: Duration::from_millis(300),
            ..timeouts
        };
        let service = KvService::new(store.router(), forwarder.clone(), short)
            .with_other_stores(vec![3, 2, 4, 3, 5]);
        let session = service.new_session(None);
        let err = service
            .put(Cf::Default, b"k".to_vec(), b"v".to_vec(), session)
            .await
            .unwrap_err();
        // Store 5 may have applied it: retried (under the same request id) until the
        // deadline, then "outcome unknown", even though the last attempt was refused.
        assert_eq!((err.code(), err.write_outcome()), ("timeout", "unknown"));
        let asked = forwarder.asked.lock().unwrap().clone();
        assert!(
            asked.iter().filter(|&&s| s == 5).count() >= 2,
            "the write is retried: {asked:?}"
        );

        drop((service, err));
        store.shutdown().await;
    }

    #[actix_rt::test]
    async fn a_write_reports_its_time_in_each_raftstore_stage() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path().join("db")).unwrap();
        ensure_bootstrapped(&engine, 1, 1, &[1]).unwrap();
        let store = start_alone(engine).await;
        let timeouts = ServiceTimeouts {
            request: Duration::from_secs(10),
            attempt: Duration::from_secs(1),
            write_ttl: Duration::from_secs(60),
            txn_max_age: crate::config::GcConfig::default().max_txn_age(),
        };
        let forwarder = Arc::new(ScriptedForwarder {
            asked: Mutex::new(Vec::new()),
        });
        let service = KvService::new(store.router(), forwarder, timeouts);
        let counts = || {
            crate::request_context::STAGES.map(|stage| {
                crate::metrics::WRITE_STAGE_DURATION
                    .with_label_values(&[stage])
                    .get_sample_count()
            })
        };
        let before = counts();
        for key in ["a", "b"] {
            let session = service.new_session(None);
            service
                .put(Cf::Default, key.into(), b"v".to_vec(), session)
                .await
                .unwrap();
        }
        let after = counts();
        // Each write is counted in every stage.
        for (stage, (b, a)) in crate::request_context::STAGES
            .iter()
            .zip(before.iter().zip(after))
        {
            assert!(a >= b + 2, "stage {stage}: {b} -> {a}");
        }
        store.shutdown().await;
    }
}
