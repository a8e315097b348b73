//! KvService: what a node does with a client's get, put, delete or scan.
//!
//! Any node accepts any request. The service first tries its own store: the Router finds
//! the local region holding the key and the region's PeerFsm serves it if it leads. If the
//! peer is not the leader but knows who is, the service forwards the request to the
//! leader's node (through a [`Forwarder`]: HTTP between real nodes, a direct call in the
//! in-process test cluster), which executes it locally. Retryable errors (no leader yet,
//! stale epoch, a command overwritten by a new leader) are retried with backoff until the
//! request's deadline.
//!
//! A write is never retried once its outcome is unknown: if the command timed out, or a
//! forwarded request may have reached the other node, the client gets a "timeout" error
//! and must assume the write may have happened.
//!
//! Reads are linearizable: each goes through the leader's ReadIndex (see the PeerFsm) and
//! is served from an engine snapshot taken once the read index is applied. A scan walks
//! region by region from its start key, each region read at its own linearizable point.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tinykv_actors::msg::CmdResponse;
use tinykv_actors::{Cf, Error as StoreError, StoreRouter};
use tinykv_proto::raft_cmdpb::{
    CmdType, DeleteRequest, PutRequest, RaftCmdRequest, Request, SnapRequest,
};

use crate::error::{Error, Result};

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
    },
    /// Delete one key.
    Delete {
        /// Column family.
        cf: Cf,
        /// The key.
        key: Vec<u8>,
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
    },
}

impl KvOp {
    fn is_write(&self) -> bool {
        matches!(self, KvOp::Put { .. } | KvOp::Delete { .. })
    }

    fn routing_key(&self) -> &[u8] {
        match self {
            KvOp::Get { key, .. } | KvOp::Put { key, .. } | KvOp::Delete { key, .. } => key,
            KvOp::ScanRegion { start, .. } => start,
        }
    }
}

/// What a [`KvOp`] produced.
#[derive(Debug, Clone, PartialEq)]
pub enum KvOutcome {
    /// A get's value (`None`: absent).
    Value(Option<Vec<u8>>),
    /// A write was applied.
    Written,
    /// A region scan's pairs, and the end key of the region scanned (empty: last region).
    Pairs {
        /// The pairs, in key order.
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
        /// Where the next region starts.
        region_end: Vec<u8>,
    },
}

/// Sends an operation to another node, which executes it on its own store without
/// forwarding it further.
pub trait Forwarder: Send + Sync + 'static {
    /// Executes `op` on store `store_id`.
    fn forward(&self, store_id: u64, op: KvOp) -> BoxFuture<'static, Result<KvOutcome>>;
}

/// Timing of a [`KvService`].
#[derive(Debug, Clone, Copy)]
pub struct ServiceTimeouts {
    /// Total time a client request may take, retries included.
    pub request: Duration,
    /// Time one attempt on the local store may take.
    pub attempt: Duration,
}

/// The node's request executor; see the module documentation.
#[derive(Clone)]
pub struct KvService {
    store: StoreRouter,
    forwarder: Arc<dyn Forwarder>,
    timeouts: ServiceTimeouts,
}

impl KvService {
    /// A service over the local store `store`, forwarding through `forwarder`.
    pub fn new(
        store: StoreRouter,
        forwarder: Arc<dyn Forwarder>,
        timeouts: ServiceTimeouts,
    ) -> Self {
        KvService {
            store,
            forwarder,
            timeouts,
        }
    }

    /// The local store's id.
    pub fn store_id(&self) -> u64 {
        self.store.store_id()
    }

    /// The local store's router.
    pub fn store(&self) -> &StoreRouter {
        &self.store
    }

    /// Reads `key`.
    pub async fn get(&self, cf: Cf, key: Vec<u8>) -> Result<Option<Vec<u8>>> {
        match self.execute(KvOp::Get { cf, key }).await? {
            KvOutcome::Value(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }

    /// Writes `key` = `value`.
    pub async fn put(&self, cf: Cf, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.execute(KvOp::Put { cf, key, value }).await.map(|_| ())
    }

    /// Deletes `key`.
    pub async fn delete(&self, cf: Cf, key: Vec<u8>) -> Result<()> {
        self.execute(KvOp::Delete { cf, key }).await.map(|_| ())
    }

    /// Reads up to `limit` pairs of `[start, end)` (empty `end`: unbounded), in key order,
    /// across as many regions as it takes.
    pub async fn scan(
        &self,
        cf: Cf,
        start: Vec<u8>,
        end: Vec<u8>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut result = Vec::new();
        let mut cursor = start;
        while result.len() < limit {
            let op = KvOp::ScanRegion {
                cf,
                start: cursor.clone(),
                end: end.clone(),
                limit: limit - result.len(),
            };
            let KvOutcome::Pairs { pairs, region_end } = self.execute(op).await? else {
                return Err(Error::Io("scan answered with something else".into()));
            };
            result.extend(pairs);
            let finished = region_end.is_empty()
                || (!end.is_empty() && region_end.as_slice() >= end.as_slice());
            if finished {
                break;
            }
            cursor = region_end;
        }
        Ok(result)
    }

    /// Executes `op`, forwarding to the leader's node when needed and retrying retryable
    /// failures until the request deadline.
    pub async fn execute(&self, op: KvOp) -> Result<KvOutcome> {
        let deadline = Instant::now() + self.timeouts.request;
        let mut target = self.store_id();
        let mut backoff = Duration::from_millis(5);
        loop {
            let attempt = if target == self.store_id() {
                self.execute_local(op.clone()).await
            } else {
                self.forwarder.forward(target, op.clone()).await
            };
            let err = match attempt {
                Ok(outcome) => return Ok(outcome),
                Err(e) => e,
            };
            let retryable = err.is_retryable() || (!op.is_write() && is_timeout(&err));
            if !retryable || Instant::now() >= deadline {
                return Err(err);
            }
            let next = match &err {
                Error::Store(StoreError::NotLeader {
                    leader: Some(leader),
                    ..
                }) => leader.store_id,
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

    /// Executes `op` on the local store only.
    pub async fn execute_local(&self, op: KvOp) -> Result<KvOutcome> {
        let key = op.routing_key().to_vec();
        let (request, wants_snapshot) = match &op {
            KvOp::Put { cf, key, value } => (
                command(Request {
                    cmd_type: CmdType::Put as i32,
                    put: Some(PutRequest {
                        cf: cf_name(*cf).into(),
                        key: key.clone(),
                        value: value.clone(),
                    }),
                    ..Default::default()
                }),
                false,
            ),
            KvOp::Delete { cf, key } => (
                command(Request {
                    cmd_type: CmdType::Delete as i32,
                    delete: Some(DeleteRequest {
                        cf: cf_name(*cf).into(),
                        key: key.clone(),
                    }),
                    ..Default::default()
                }),
                false,
            ),
            KvOp::Get { .. } | KvOp::ScanRegion { .. } => (
                command(Request {
                    cmd_type: CmdType::Snap as i32,
                    snap: Some(SnapRequest {}),
                    ..Default::default()
                }),
                true,
            ),
        };
        let response = self
            .store
            .key_command(key, request, self.timeouts.attempt)
            .await?;
        if let Some(err) = response.err() {
            return Err(Error::Store(err));
        }
        if !wants_snapshot {
            return Ok(KvOutcome::Written);
        }
        read_snapshot(response, op)
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
        } => Ok(KvOutcome::Pairs {
            pairs: snapshot.scan(cf, &start, &end, limit)?,
            region_end: snapshot.region.end_key.clone(),
        }),
        _ => unreachable!("only reads take snapshots"),
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

fn is_timeout(err: &Error) -> bool {
    matches!(
        err,
        Error::Store(StoreError::Timeout)
            | Error::Forward {
                maybe_delivered: true,
                ..
            }
    )
}

fn unexpected(outcome: KvOutcome) -> Error {
    Error::Io(format!("unexpected outcome {outcome:?}"))
}
