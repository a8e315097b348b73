//! The transactional side of `/v1/kv`: reads and scans at a timestamp, and conditional
//! writes.
//!
//! - `GET /v1/kv/{key}?ts=N|latest` reads the transactional key at timestamp `N`
//!   (`latest`: a fresh timestamp, so the read sees every transaction committed before
//!   it was sent), answering the value with its version (commit timestamp) in `ETag`;
//! - `GET /v1/kv?start=&end=&ts=` scans the transactional keys at `N`, each pair with
//!   its `version`;
//! - `PUT` and `DELETE /v1/kv/{key}` with `If-Match: "V"` (the key's version is `V`),
//!   `If-Match: *` (it exists) or `If-None-Match: *` (it does not) are a one-key
//!   transaction whose prewrite checks the condition on the key's version at its start
//!   timestamp, under the key's latch and once it found no write committed since: the
//!   write commits at a commit timestamp, its new version, in `ETag`; 412 if the
//!   condition does not hold. A write that loses a race to another transaction runs
//!   again at a newer timestamp, so a condition is only ever checked against the
//!   version that the write replaces.
//!
//! The transactional keys are apart from the raw ones (see [`crate::txn::keys`]): a
//! plain `PUT /v1/kv/k` writes a raw key that no transaction sees.

use actix_web::http::header::ETAG;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::admin::display_key;
use super::kv::{encode_pairs, IDEMPOTENCY_KEY};
use super::request::{KeyRequest, ReadTs, ScanRequest};
use super::ApiState;
use crate::error::{Error, Result};
use crate::txn::client::Checked;
use crate::txn::commands::TxnWrite;
use crate::txn::conditions::{CompareOp, Condition, Target};

/// The answer's header naming the timestamp a transactional read was served at.
pub const READ_TS: &str = "Tinykv-Read-Ts";

/// A transactional key's version as an entity tag: its commit timestamp, quoted.
fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// The timestamp a transactional read is served at.
async fn read_ts(state: &ApiState, ts: ReadTs) -> Result<u64> {
    match ts {
        ReadTs::At(ts) => Ok(ts),
        ReadTs::Latest => state.txn.timestamp().await,
    }
}

/// A conditional write's condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// `If-Match: *`: the key exists.
    Exists,
    /// `If-Match: "N"`: the key's version is `N`.
    Version(u64),
    /// `If-None-Match: *`: the key does not exist (create only).
    Absent,
}

impl Precondition {
    /// The condition on `key` a prewrite checks.
    fn as_condition(self, key: &[u8]) -> Condition {
        let target = match self {
            Precondition::Exists => Target::Exists(true),
            Precondition::Version(version) => Target::Version(version),
            Precondition::Absent => Target::Exists(false),
        };
        Condition {
            key: key.to_vec(),
            op: CompareOp::Eq,
            target,
        }
    }
}

/// The request's `If-Match` or `If-None-Match` condition, if it has one. A conditional
/// write is a transaction on the transactional keys, so `cf` and `Idempotency-Key` do not
/// apply to it.
pub fn precondition(req: &HttpRequest, request: &KeyRequest) -> Result<Option<Precondition>> {
    let header = |name: &str| -> Result<Option<String>> {
        let mut values = req.headers().get_all(name);
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(invalid_precondition(&format!(
                "{name} is given more than once"
            )));
        }
        let text = value
            .to_str()
            .map_err(|_| invalid_precondition(&format!("{name} is not visible ASCII")))?;
        Ok(Some(text.trim().to_string()))
    };
    let condition = match (header("If-Match")?, header("If-None-Match")?) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(invalid_precondition(
                "give either If-Match or If-None-Match, not both",
            ))
        }
        (None, Some(tag)) if tag == "*" => Precondition::Absent,
        (None, Some(_)) => return Err(invalid_precondition("If-None-Match takes only *")),
        (Some(tag), None) if tag == "*" => Precondition::Exists,
        (Some(tag), None) => {
            let version = tag
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .unwrap_or(&tag)
                .parse::<u64>()
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| {
                    invalid_precondition("If-Match takes * or one version (\"N\") a read returned")
                })?;
            Precondition::Version(version)
        }
    };
    if request.ts.is_some() || req.query_string().contains("cf=") {
        return Err(invalid_precondition(
            "a conditional write takes neither cf nor ts",
        ));
    }
    if req.headers().contains_key(IDEMPOTENCY_KEY) {
        return Err(invalid_precondition(
            "a conditional write is already safe to retry; it takes no Idempotency-Key",
        ));
    }
    Ok(Some(condition))
}

fn invalid_precondition(message: &str) -> Error {
    Error::bad_request("invalid_precondition", message.to_string())
}

/// Writes (`Some(value)`) or deletes the transactional key `key` if `condition` holds,
/// as one transaction; answers its new version (`ETag`), or 412 with the key's current
/// one. A write that lost a race to another is decided again on a newer read.
pub async fn conditional_write(
    state: &ApiState,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    condition: Precondition,
) -> Result<HttpResponse> {
    let deadline = std::time::Instant::now() + state.service.timeouts().request;
    let write = match value {
        Some(value) => TxnWrite::Put {
            key: key.clone(),
            value,
        },
        None => TxnWrite::Delete { key: key.clone() },
    };
    let check = condition.as_condition(&key);
    loop {
        // The prewrite checks the condition on the key's version at start_ts, under the
        // key's latch and having found no write committed since: one prewrite and one
        // commit, no read before.
        let start_ts = state.txn.timestamp().await?;
        let checked = state
            .txn
            .commit_if(
                start_ts,
                vec![write.clone()],
                std::slice::from_ref(&check),
                &[],
            )
            .await;
        match checked {
            Ok(Checked::Committed { commit_ts, .. }) => {
                return Ok(HttpResponse::Ok()
                    .insert_header((ETAG, etag(commit_ts)))
                    .json(json!({ "ok": true, "version": commit_ts })))
            }
            Ok(Checked::ConditionFailed) => {
                // Nothing was written; say what the key holds instead.
                let what = match state.txn.get(&key, start_ts).await? {
                    Some(version) => format!("its version is {}", version.commit_ts),
                    None => "it does not exist".to_string(),
                };
                return Err(Error::PreconditionFailed(format!(
                    "the condition does not hold for key {:?}: {what}; nothing was changed",
                    String::from_utf8_lossy(&key)
                )));
            }
            Err(Error::TxnConflict { .. }) if std::time::Instant::now() < deadline => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `GET /v1/kv/{key}?ts=`.
pub async fn get_at(state: &ApiState, key: &[u8], ts: ReadTs) -> Result<HttpResponse> {
    let ts = read_ts(state, ts).await?;
    match state.txn.get(key, ts).await? {
        Some(version) => Ok(HttpResponse::Ok()
            .content_type("application/octet-stream")
            .insert_header((ETAG, etag(version.commit_ts)))
            .insert_header((READ_TS, ts.to_string()))
            .body(version.value)),
        None => Err(Error::NotFound),
    }
}

/// `GET /v1/kv?ts=`.
pub async fn scan_at(state: &ApiState, request: &ScanRequest, ts: ReadTs) -> Result<HttpResponse> {
    let ts = read_ts(state, ts).await?;
    let page = state
        .txn
        .scan(&request.start, &request.end, ts, request.limit)
        .await?;
    let mut kvs = Vec::with_capacity(page.pairs.len());
    let mut versions = Vec::with_capacity(page.pairs.len());
    for (key, version) in page.pairs {
        versions.push(version.commit_ts);
        kvs.push((key, version.value));
    }
    let kvs: Vec<Value> = encode_pairs(kvs, request.encoding)?
        .into_iter()
        .zip(versions)
        .map(|(pair, version)| json!({"key": pair.key, "value": pair.value, "version": version}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
            "kvs": kvs,
            "encoding": request.encoding.name(),
            "next": page.next.as_deref().map(display_key),
            "read_ts": ts,
    })))
}
