//! One-shot transactions (`POST /v1/txn`): etcd's `txn`, compare, then the success or
//! failure operations, atomically across regions.
//!
//! A [`OneShotPlan`] is the request checked (keys, values, conditions, each key written
//! once, the size limit). [`OneShotPlan::run`] first tries the success branch
//! optimistically: its prewrites carry the conditions and the keys to read, and each
//! region's prewrite checks them on the versions at the start timestamp once it holds
//! the keys' latches and found no write committed since, so the transaction is one round
//! of prewrites and one commit. If a condition does not hold, nothing is written, and the
//! transaction decides between its branches on reads at a new start timestamp: every key
//! compared or read is read once, concurrently, the branch chosen, and its writes
//! committed together with lock-only records of the keys the decision rests on, so that a
//! write to one of them since the start timestamp is a conflict (serializable, not only
//! snapshot-isolated). A conflict runs it again at a newer timestamp, until the request's
//! deadline.
//!
//! The node a client asks runs it where the region of its first key is led (see
//! [`OneShotPlan::remote_leader`]): there every command is local, instead of each being
//! forwarded on its own.

use std::time::Duration;

use serde_json::{json, Value};

use super::admin::parse_json;
use super::request::Encoding;
use super::txn::{
    check_count, checked_condition, checked_op, encode, encoding_of, with_locks, writes_of,
    OneShot, Op, Operation,
};
use crate::config::ApiConfig;
use crate::error::{Error, Result};
use crate::kv_service::KvService;
use crate::txn::client::{Checked, TxnClient};
use crate::txn::commands::TxnWrite;
use crate::txn::conditions::Condition;
use crate::txn::keys::encode_key;
use crate::txn::mvcc::Version;

/// A one-shot transaction, checked; see the module documentation.
#[derive(Debug, Clone)]
pub struct OneShotPlan {
    conditions: Vec<Condition>,
    success: Vec<Op>,
    failure: Vec<Op>,
    success_writes: Vec<TxnWrite>,
    failure_writes: Vec<TxnWrite>,
    encoding: Encoding,
}

impl OneShotPlan {
    /// Reads and checks the JSON body of `POST /v1/txn`; anything wrong is a 400 (or
    /// 413 for a transaction too large), and nothing has been done.
    pub fn parse(body: &[u8], limits: &ApiConfig) -> Result<OneShotPlan> {
        let request: OneShot = parse_json(body)?;
        let encoding = encoding_of(request.encoding.as_deref())?;
        check_count(request.compare.len() + request.success.len() + request.failure.len())?;
        let conditions = request
            .compare
            .iter()
            .map(|c| checked_condition(c, encoding, limits))
            .collect::<Result<Vec<_>>>()?;
        let branch = |ops: &[Operation]| -> Result<Vec<Op>> {
            ops.iter()
                .map(|op| checked_op(op, encoding, limits))
                .collect()
        };
        let (success, failure) = (branch(&request.success)?, branch(&request.failure)?);
        Ok(OneShotPlan {
            success_writes: writes_of(&success, limits)?,
            failure_writes: writes_of(&failure, limits)?,
            conditions,
            success,
            failure,
            encoding,
        })
    }

    /// The key whose region's leader should run the transaction: the first the success
    /// branch writes, else the first compared, else the first read.
    fn home_key(&self) -> Option<&[u8]> {
        self.success_writes
            .first()
            .map(|w| w.key())
            .or_else(|| self.conditions.first().map(|c| c.key.as_slice()))
            .or_else(|| {
                self.success
                    .iter()
                    .chain(&self.failure)
                    .next()
                    .map(|op| match op {
                        Op::Get(key) | Op::Put(key, _) | Op::Delete(key) => key.as_slice(),
                    })
            })
    }

    /// The store leading the region of the transaction's first key, if that is another
    /// store than `service`'s own (as the local store last heard).
    pub async fn remote_leader(&self, service: &KvService) -> Option<u64> {
        let key = encode_key(self.home_key()?);
        let route = service.store().find_region(&key).await.ok()??;
        let leader = route.leader?;
        (leader.store_id != service.store_id()).then_some(leader.store_id)
    }

    /// Runs the transaction through `txn` within `request_timeout`; answers
    /// `{"succeeded", "read_ts", "commit_ts", "responses", "encoding"}`.
    pub async fn run(self, txn: &TxnClient, request_timeout: Duration) -> Result<Value> {
        let deadline = std::time::Instant::now() + request_timeout;
        let OneShotPlan {
            conditions,
            success,
            failure,
            success_writes,
            failure_writes,
            encoding,
        } = self;
        // First, optimistically, the success branch with its conditions checked (and its
        // reads made) by the prewrites themselves: one round of prewrites and one commit.
        let mut optimistic = !success_writes.is_empty();
        loop {
            let start_ts = txn.timestamp().await?;
            if optimistic {
                let attempt = commit_success(txn, start_ts, &conditions, &success, &success_writes);
                match attempt.await {
                    Ok(Checked::Committed { commit_ts, reads }) => {
                        let read_of = |key: &[u8]| reads.get(key).and_then(Option::as_ref);
                        return Ok(json!({
                            "succeeded": true,
                            "read_ts": start_ts,
                            "commit_ts": commit_ts,
                            "responses": answers(&success, read_of, encoding),
                            "encoding": encoding.name(),
                        }));
                    }
                    // A condition does not hold: decide between the branches on reads.
                    Ok(Checked::ConditionFailed) => {
                        optimistic = false;
                        continue;
                    }
                    Err(Error::TxnConflict { .. }) if std::time::Instant::now() < deadline => {
                        continue
                    }
                    Err(e) => return Err(e),
                }
            }
            // Every key compared or read, once, all at once.
            let mut wanted: Vec<&[u8]> = conditions
                .iter()
                .map(|c| c.key.as_slice())
                .chain(gets(&success))
                .chain(gets(&failure))
                .collect();
            wanted.sort_unstable();
            wanted.dedup();
            let reads =
                futures::future::try_join_all(wanted.iter().map(|key| txn.get(key, start_ts)))
                    .await?;
            let read_of = |key: &[u8]| -> Option<&Version> {
                let at = wanted.binary_search(&key).ok()?;
                reads[at].as_ref()
            };
            let held = conditions.iter().all(|c| c.holds(read_of(&c.key)));
            let (ops, writes) = if held {
                (&success, &success_writes)
            } else {
                (&failure, &failure_writes)
            };
            let responses = answers(ops, read_of, encoding);
            let answer = |commit_ts: Option<u64>| {
                json!({
                    "succeeded": held,
                    "read_ts": start_ts,
                    "commit_ts": commit_ts,
                    "responses": responses,
                    "encoding": encoding.name(),
                })
            };
            if writes.is_empty() {
                return Ok(answer(None));
            }
            // What the decision rests on is locked too, so a write to it since start_ts is a
            // conflict: the transaction is serializable, not only snapshot-isolated.
            let relied = conditions.iter().map(|c| c.key.as_slice()).chain(gets(ops));
            match txn.commit(start_ts, with_locks(writes, relied)).await {
                Ok(commit_ts) => return Ok(answer(Some(commit_ts))),
                // Nothing was committed: decide again on a newer snapshot.
                Err(Error::TxnConflict { .. }) if std::time::Instant::now() < deadline => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// The answers of `ops`, the gets' from `read_of`.
fn answers<'a>(
    ops: &[Op],
    read_of: impl Fn(&[u8]) -> Option<&'a Version>,
    encoding: Encoding,
) -> Vec<Value> {
    ops.iter()
        .map(|op| match op {
            Op::Get(key) => {
                let read = read_of(key);
                json!({
                    "op": "get",
                    "key": encode(key, encoding),
                    "value": read.map(|v| encode(&v.value, encoding)),
                    "version": read.map(|v| v.commit_ts),
                })
            }
            Op::Put(key, _) => json!({ "op": "put", "key": encode(key, encoding) }),
            Op::Delete(key) => json!({ "op": "delete", "key": encode(key, encoding) }),
        })
        .collect()
}

/// The keys `ops` read.
fn gets(ops: &[Op]) -> impl Iterator<Item = &[u8]> {
    ops.iter().filter_map(|op| match op {
        Op::Get(key) => Some(key.as_slice()),
        _ => None,
    })
}

/// The success branch as one transaction at `start_ts` whose prewrites check
/// `conditions` and read the branch's gets (the keys compared or read are locked as
/// well, as on the other path).
async fn commit_success(
    txn: &TxnClient,
    start_ts: u64,
    conditions: &[Condition],
    ops: &[Op],
    writes: &[TxnWrite],
) -> Result<Checked> {
    let reads: Vec<Vec<u8>> = gets(ops).map(<[u8]>::to_vec).collect();
    let relied = conditions.iter().map(|c| c.key.as_slice()).chain(gets(ops));
    txn.commit_if(start_ts, with_locks(writes, relied), conditions, &reads)
        .await
}
