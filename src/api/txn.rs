//! The transaction endpoints.
//!
//! - `GET /v1/txn/ts?count=N`: `N` consecutive timestamps (1 by default, at most
//!   [`MAX_BATCH`]) from the placement driver's timestamp oracle, answered as
//!   `{"ts": first, "count": N, "physical_ms": .., "logical": ..}`: `ts` to
//!   `ts + N - 1` are the caller's. Every timestamp is greater than every timestamp
//!   answered before this request was sent, by any node, across PD leader changes (see
//!   [`crate::pd::tso`]). Any node answers: it relays to the PD leader.
//! - `POST /v1/txn`: a one-shot transaction, etcd's `txn`: `compare` conditions on keys,
//!   then the `success` operations if all hold, else the `failure` ones, atomically
//!   across regions (see [`OneShot`]). It never fails for a conflict: the node runs it
//!   again at a new timestamp until its deadline.
//! - `POST /v1/txn/begin`: a start timestamp for an interactive transaction, which reads
//!   with `GET /v1/kv/{key}?ts=` and `GET /v1/kv?ts=`, then
//! - `POST /v1/txn/commit`: commits its write set at that start timestamp; a key written
//!   by another transaction since (or named in `lock` and written since) is a 409
//!   `write_conflict` naming the key, and nothing is committed.
//!
//! - `GET /v1/txn/safe-point`: garbage collection's safe point (see
//!   [`crate::txn::gc_worker`]): reads and transactions may not reach back past it.
//! - `GET /v1/txn/locks?start=&end=&limit=&max_ts=`: the transactions' locks in a key
//!   range (at most `limit`, 100 by default), optionally only those of transactions
//!   started at or before `max_ts`; admin only, as locks name any key.
//!
//! Keys and values in these bodies are UTF-8 strings, or base64 with `"encoding":
//! "base64"`. Transactional keys live apart from the raw API's (see [`crate::txn::keys`]):
//! `PUT /v1/kv/{key}` without a condition writes a raw key, which no transaction sees.
//!
//! Taking timestamps reads and changes no key, so any valid credential may (see
//! [`crate::auth::policy`]); a transaction's keys are in its body, so it needs a
//! `readwrite` grant without a key prefix.

use std::collections::HashSet;

use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::admin::parse_json;
use super::body::ReadBody;
use super::one_shot::OneShotPlan;
use super::request::{check_key, parse_query, Encoding};
use super::ApiState;
use crate::config::ApiConfig;
use crate::error::{Error, Result};
use crate::pd::tso::MAX_BATCH;
use crate::pd::PdRequest;
use crate::txn::commands::TxnWrite;
use crate::txn::conditions::{CompareOp, Condition, Target};

/// Most operations and compare conditions one transaction may hold.
pub const MAX_TXN_OPS: usize = 1024;

/// Most bytes of keys and values one transaction may write: what one raft command may
/// carry, as for one value.
pub fn max_txn_bytes(limits: &ApiConfig) -> usize {
    limits.max_value_bytes
}

/// Largest body of the transaction endpoints: the writes, base64-encoded, and JSON.
pub fn txn_body_bytes(limits: &ApiConfig) -> usize {
    max_txn_bytes(limits) / 3 * 4 + 1024 * 1024
}

/// `GET /v1/txn/ts`.
pub async fn timestamps(req: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse> {
    let count = parse_count(req.query_string())?;
    let reply = state
        .pd
        .call(
            &PdRequest::Timestamps { count },
            super::pd::PD_REQUEST_TIMEOUT,
        )
        .await?;
    Ok(HttpResponse::Ok().json(reply))
}

/// The `count` parameter of a timestamp request: 1 if absent.
fn parse_count(query: &str) -> Result<u64> {
    let params = parse_query(query, &["count"])?;
    let Some(raw) = params.get("count") else {
        return Ok(1);
    };
    std::str::from_utf8(raw)
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .filter(|count| (1..=MAX_BATCH).contains(count))
        .ok_or_else(|| {
            Error::bad_request(
                "invalid_count",
                format!("count must be an integer from 1 to {MAX_BATCH}"),
            )
        })
}

/// A one-shot transaction's body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneShot {
    /// Conditions that must all hold for `success` to run.
    #[serde(default)]
    pub compare: Vec<Compare>,
    /// Operations run if every condition holds.
    #[serde(default)]
    pub success: Vec<Operation>,
    /// Operations run otherwise.
    #[serde(default)]
    pub failure: Vec<Operation>,
    /// `utf8` (the default) or `base64`, for every key and value of the body and answer.
    #[serde(default)]
    pub encoding: Option<String>,
}

/// One condition on a key: exactly one of `version`, `value` and `exists`, compared
/// with `op` (`==` by default; `!=`, `<`, `<=`, `>`, `>=`; `exists` takes `==`/`!=`).
/// A key's version is the commit timestamp of its value; an absent key has version 0.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compare {
    /// The key.
    pub key: String,
    /// The comparison.
    #[serde(default)]
    pub op: Option<String>,
    /// Compare the key's version.
    #[serde(default)]
    pub version: Option<u64>,
    /// Compare the key's value (bytewise; an absent key fails every value condition).
    #[serde(default)]
    pub value: Option<String>,
    /// Compare whether the key exists.
    #[serde(default)]
    pub exists: Option<bool>,
}

/// One operation of a transaction: `{"op": "get"|"put"|"delete", "key": .., "value": ..}`
/// (`value` for `put` only).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    /// `get`, `put` or `delete`.
    pub op: String,
    /// The key.
    pub key: String,
    /// A put's value.
    #[serde(default)]
    pub value: Option<String>,
}

/// An interactive transaction's commit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitBody {
    /// The start timestamp `POST /v1/txn/begin` gave.
    pub start_ts: u64,
    /// The writes: `put` and `delete` operations.
    pub writes: Vec<Operation>,
    /// Keys the transaction read and relies on: a write to one of them committed since
    /// the start timestamp is a conflict too.
    #[serde(default)]
    pub lock: Vec<String>,
    /// `utf8` (the default) or `base64`.
    #[serde(default)]
    pub encoding: Option<String>,
}

/// A checked operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Op {
    Get(Vec<u8>),
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

pub(super) fn invalid_txn(message: impl Into<String>) -> Error {
    Error::bad_request("invalid_txn", message)
}

/// The body's encoding.
pub(super) fn encoding_of(name: Option<&str>) -> Result<Encoding> {
    match name {
        None | Some("utf8") => Ok(Encoding::Utf8),
        Some("base64") => Ok(Encoding::Base64),
        Some(other) => Err(Error::bad_request(
            "invalid_encoding",
            format!("unknown encoding {other:?}: expected utf8 or base64"),
        )),
    }
}

pub(super) fn decode(text: &str, encoding: Encoding, what: &str) -> Result<Vec<u8>> {
    match encoding {
        Encoding::Utf8 => Ok(text.as_bytes().to_vec()),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| invalid_txn(format!("{what} is not valid base64: {e}"))),
    }
}

pub(super) fn encode(bytes: &[u8], encoding: Encoding) -> Value {
    match encoding {
        Encoding::Base64 => json!(base64::engine::general_purpose::STANDARD.encode(bytes)),
        Encoding::Utf8 => match std::str::from_utf8(bytes) {
            Ok(text) => json!(text),
            // Answered in base64 rather than failing a transaction that has committed.
            Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(bytes) }),
        },
    }
}

pub(super) fn checked_key(text: &str, encoding: Encoding, limits: &ApiConfig) -> Result<Vec<u8>> {
    let key = decode(text, encoding, "a key")?;
    check_key(&key, limits)?;
    Ok(key)
}

pub(super) fn checked_op(op: &Operation, encoding: Encoding, limits: &ApiConfig) -> Result<Op> {
    let key = checked_key(&op.key, encoding, limits)?;
    match (op.op.as_str(), &op.value) {
        ("get", None) => Ok(Op::Get(key)),
        ("delete", None) => Ok(Op::Delete(key)),
        ("put", Some(value)) => Ok(Op::Put(key, decode(value, encoding, "a value")?)),
        ("put", None) => Err(invalid_txn("a put needs a value")),
        ("get" | "delete", Some(_)) => Err(invalid_txn(format!("a {} takes no value", op.op))),
        (other, _) => Err(invalid_txn(format!(
            "unknown operation {other:?}: expected get, put or delete"
        ))),
    }
}

pub(super) fn checked_condition(
    compare: &Compare,
    encoding: Encoding,
    limits: &ApiConfig,
) -> Result<Condition> {
    let key = checked_key(&compare.key, encoding, limits)?;
    let op = match compare.op.as_deref().unwrap_or("==") {
        "==" | "=" => CompareOp::Eq,
        "!=" => CompareOp::Ne,
        "<" => CompareOp::Lt,
        "<=" => CompareOp::Le,
        ">" => CompareOp::Gt,
        ">=" => CompareOp::Ge,
        other => return Err(invalid_txn(format!("unknown comparison {other:?}"))),
    };
    let target = match (&compare.version, &compare.value, &compare.exists) {
        (Some(version), None, None) => Target::Version(*version),
        (None, Some(value), None) => Target::Value(decode(value, encoding, "a value")?),
        (None, None, Some(exists)) => {
            if !matches!(op, CompareOp::Eq | CompareOp::Ne) {
                return Err(invalid_txn("exists compares only with == or !="));
            }
            Target::Exists(*exists)
        }
        _ => {
            return Err(invalid_txn(
                "a condition names exactly one of version, value and exists",
            ))
        }
    };
    Ok(Condition { key, op, target })
}

/// The writes of `ops`, checked: each key written once, within the size limit.
pub(super) fn writes_of(ops: &[Op], limits: &ApiConfig) -> Result<Vec<TxnWrite>> {
    let mut seen = HashSet::new();
    let mut bytes = 0usize;
    let mut writes = Vec::new();
    for op in ops {
        let write = match op {
            Op::Get(_) => continue,
            Op::Put(key, value) => TxnWrite::Put {
                key: key.clone(),
                value: value.clone(),
            },
            Op::Delete(key) => TxnWrite::Delete { key: key.clone() },
        };
        if !seen.insert(write.key().to_vec()) {
            return Err(invalid_txn(format!(
                "key {:?} is written twice",
                String::from_utf8_lossy(write.key())
            )));
        }
        bytes += write.key().len() + op_value_len(op);
        writes.push(write);
    }
    if bytes > max_txn_bytes(limits) {
        return Err(Error::TooLarge(format!(
            "the transaction writes {bytes} bytes, more than the limit of {}",
            max_txn_bytes(limits)
        )));
    }
    Ok(writes)
}

fn op_value_len(op: &Op) -> usize {
    match op {
        Op::Put(_, value) => value.len(),
        _ => 0,
    }
}

/// `writes`, then a lock-only write of each key of `relied` not written (once each):
/// a transaction that relies on a key without writing it conflicts with a write to it.
pub(super) fn with_locks<'a>(
    writes: &[TxnWrite],
    relied: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<TxnWrite> {
    let mut locked: HashSet<&[u8]> = writes.iter().map(|w| w.key()).collect();
    let mut all = writes.to_vec();
    for key in relied {
        if locked.insert(key) {
            all.push(TxnWrite::Lock { key: key.to_vec() });
        }
    }
    all
}

pub(super) fn check_count(count: usize) -> Result<()> {
    if count > MAX_TXN_OPS {
        return Err(invalid_txn(format!(
            "a transaction holds at most {MAX_TXN_OPS} operations and conditions"
        )));
    }
    Ok(())
}

/// `POST /v1/txn`: checked here, then run where the first key's region is led, so that
/// every command of it is local there (see [`super::one_shot`]).
pub async fn one_shot(state: web::Data<ApiState>, body: ReadBody) -> Result<HttpResponse> {
    let plan = OneShotPlan::parse(&body.0, &state.limits)?;
    if let Some(store_id) = plan.remote_leader(&state.service).await {
        match state
            .service
            .forward_one_shot(store_id, body.0.to_vec())
            .await
        {
            Ok(answer) => return Ok(HttpResponse::Ok().json(answer)),
            // Never sent: run it here.
            Err(Error::Forward {
                maybe_delivered: false,
                ..
            }) => {}
            Err(e) => return Err(e),
        }
    }
    let answer = plan
        .run(&state.txn, state.service.timeouts().request)
        .await?;
    Ok(HttpResponse::Ok().json(answer))
}

/// `GET /v1/txn/safe-point`.
pub async fn safe_point(state: web::Data<ApiState>) -> Result<HttpResponse> {
    let answer = state
        .pd
        .call(&PdRequest::SafePoint, super::pd::PD_REQUEST_TIMEOUT)
        .await?;
    Ok(HttpResponse::Ok().json(answer))
}

/// `GET /v1/txn/locks?start=&end=&limit=&max_ts=&encoding=`.
pub async fn locks(req: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse> {
    let params = parse_query(
        req.query_string(),
        &["start", "end", "limit", "max_ts", "encoding"],
    )?;
    let number = |name: &str, default: u64, max: u64| -> Result<u64> {
        match params.get(name) {
            None => Ok(default),
            Some(raw) => std::str::from_utf8(raw)
                .ok()
                .and_then(|text| text.parse::<u64>().ok())
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    Error::bad_request(
                        "invalid_parameter",
                        format!("{name} must be an integer from 1 to {max}"),
                    )
                }),
        }
    };
    let limit = number("limit", 100, crate::txn::region::MAX_GC_KEYS as u64)? as usize;
    let max_ts = number("max_ts", u64::MAX, u64::MAX)?;
    let encoding_name = params
        .get("encoding")
        .map(|raw| String::from_utf8_lossy(raw).into_owned());
    let encoding = encoding_of(encoding_name.as_deref())?;
    let start = params.get("start").cloned().unwrap_or_default();
    let end = params.get("end").cloned().unwrap_or_default();
    let locks = state.txn.scan_locks(&start, &end, max_ts, limit).await?;
    let locks = locks
        .into_iter()
        .map(|lock| LockView {
            key: encode(&lock.key, encoding),
            primary: encode(&lock.primary_lock, encoding),
            start_ts: lock.lock_version,
            ttl_ms: lock.lock_ttl,
        })
        .collect();
    Ok(HttpResponse::Ok().json(LocksView {
        locks,
        encoding: encoding.name().to_string(),
    }))
}

/// The answer of `GET /v1/txn/locks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocksView {
    /// The locks, in key order.
    pub locks: Vec<LockView>,
    /// How keys are written: `utf8` or `base64`.
    pub encoding: String,
}

/// One lock of `GET /v1/txn/locks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockView {
    /// The locked key: a string in the answer's encoding, or `{"base64": ..}` in `utf8`
    /// when it is not UTF-8.
    pub key: Value,
    /// Its transaction's primary key, written like `key`.
    pub primary: Value,
    /// Its transaction's start timestamp.
    pub start_ts: u64,
    /// Its time to live, in milliseconds from the start timestamp's physical time.
    pub ttl_ms: u64,
}

/// `POST /v1/txn/begin`.
pub async fn begin(state: web::Data<ApiState>) -> Result<HttpResponse> {
    let start_ts = state.txn.timestamp().await?;
    Ok(HttpResponse::Ok().json(json!({ "start_ts": start_ts })))
}

/// `POST /v1/txn/commit`.
pub async fn commit(state: web::Data<ApiState>, body: ReadBody) -> Result<HttpResponse> {
    let request: CommitBody = parse_json(&body.0)?;
    let limits = &state.limits;
    let encoding = encoding_of(request.encoding.as_deref())?;
    check_count(request.writes.len() + request.lock.len())?;
    if request.start_ts == 0 {
        return Err(invalid_txn(
            "start_ts must be a timestamp from POST /v1/txn/begin",
        ));
    }
    let ops = request
        .writes
        .iter()
        .map(|op| checked_op(op, encoding, limits))
        .collect::<Result<Vec<_>>>()?;
    if ops.iter().any(|op| matches!(op, Op::Get(_))) {
        return Err(invalid_txn(
            "a commit's writes are put and delete operations",
        ));
    }
    let writes = writes_of(&ops, limits)?;
    if writes.is_empty() {
        return Err(invalid_txn("a commit writes at least one key"));
    }
    let relied = request
        .lock
        .iter()
        .map(|text| checked_key(text, encoding, limits))
        .collect::<Result<Vec<_>>>()?;
    let writes = with_locks(&writes, relied.iter().map(Vec::as_slice));
    // Only a start timestamp the oracle handed out: a later one would lock keys for
    // longer than any TTL.
    if request.start_ts >= state.txn.timestamp().await? {
        return Err(invalid_txn(
            "start_ts must be a timestamp from POST /v1/txn/begin",
        ));
    }
    let commit_ts = state.txn.commit(request.start_ts, writes).await?;
    Ok(HttpResponse::Ok().json(json!({ "start_ts": request.start_ts, "commit_ts": commit_ts })))
}

#[cfg(test)]
mod tests {
    use super::parse_count;

    #[test]
    fn count_is_one_by_default_and_bounded() {
        assert_eq!(parse_count("").unwrap(), 1);
        assert_eq!(parse_count("count=100").unwrap(), 100);
        assert_eq!(parse_count("count=65536").unwrap(), 65536);
        for bad in [
            "count=0",
            "count=65537",
            "count=-1",
            "count=x",
            "count=",
            "n=3",
        ] {
            let err = parse_count(bad).unwrap_err();
            assert_eq!(err.status().as_u16(), 400, "{bad}");
        }
        assert_eq!(
            parse_count("count=7&count=8").unwrap_err().code(),
            "duplicate_parameter"
        );
    }
}
