//! The client key-value endpoints.
//!
//! - `PUT /v1/kv/{key}` stores the request body, byte for byte, as the key's value;
//! - `GET /v1/kv/{key}` answers the value as `application/octet-stream` (404 if absent);
//! - `DELETE /v1/kv/{key}` removes the key (deleting an absent key succeeds);
//! - `GET /v1/kv?start=&end=&limit=&encoding=` answers the pairs of `[start, end)` in
//!   key order as JSON, keys and values as UTF-8 strings or, with `encoding=base64`, in
//!   base64. A page holds at most `limit` pairs and about `api.max_scan_bytes` of keys and
//!   values (always at least one pair); one cut short names in `next` the key, percent-
//!   encoded, to pass as `start` for the rest (`null` once the range is done).
//!
//! All of them take `?cf=default|lock|write`. The request is decoded by
//! [`super::request`] and executed by the node's [`KvService`](crate::service::KvService),
//! which finds the region's leader wherever it is; a write is acknowledged only once it is
//! committed and applied.
//!
//! **Exactly-once writes.** A `PUT` or `DELETE` may carry an `Idempotency-Key` header (1 to
//! 128 visible ASCII characters); without one the node makes a key. Either way the answer
//! names it in its own `Idempotency-Key` header. The region applies a key at most once per
//! written key (for `api.idempotency_ttl_ms`): the node retries a write under it across
//! leader changes until the request deadline, and a client may retry with it too. A
//! request whose key was applied before answers `200` with `"replayed": true` (and the
//! header `Idempotent-Replayed: true`) and changes nothing; one whose key was used for a
//! different write to the same key is refused with 422 `idempotency_key_reused`. A write's
//! error body says what became of it in `error.outcome`: `not_applied` or `unknown`.

use actix_web::body::BoxBody;
use actix_web::http::header::HeaderValue;
use actix_web::http::header::ETAG;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use base64::Engine as _;
use serde::Serialize;
use serde_json::{json, Value};

use super::admin::display_key;
use super::body::ReadBody;
use super::error::error_body;
use super::request::{parse_key_request, parse_scan_request, Encoding, KeyRequest, ReadTs};
use super::ApiState;
use crate::error::{Error, Result};
use crate::service::ScanPage;
use crate::txn::commands::TxnWrite;
use crate::txn::mvcc::Version;

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
    fn holds(self, read: Option<&Version>) -> bool {
        match self {
            Precondition::Exists => read.is_some(),
            Precondition::Version(wanted) => read.is_some_and(|v| v.commit_ts == wanted),
            Precondition::Absent => read.is_none(),
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
async fn conditional_write(
    state: &ApiState,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    condition: Precondition,
) -> Result<HttpResponse> {
    let deadline = std::time::Instant::now() + state.service.timeouts().request;
    loop {
        let start_ts = state.txn.timestamp().await?;
        let read = state.txn.get(&key, start_ts).await?;
        if !condition.holds(read.as_ref()) {
            let current = read.as_ref().map(|v| v.commit_ts);
            let what = match current {
                Some(version) => format!("its version is {version}"),
                None => "it does not exist".to_string(),
            };
            return Err(Error::PreconditionFailed(format!(
                "the condition does not hold for key {:?}: {what}; nothing was changed",
                String::from_utf8_lossy(&key)
            )));
        }
        let write = match &value {
            Some(value) => TxnWrite::Put {
                key: key.clone(),
                value: value.clone(),
            },
            None => TxnWrite::Delete { key: key.clone() },
        };
        match state.txn.commit(start_ts, vec![write]).await {
            Ok(commit_ts) => {
                return Ok(HttpResponse::Ok()
                    .insert_header((ETAG, etag(commit_ts)))
                    .json(json!({ "ok": true, "version": commit_ts })))
            }
            Err(Error::TxnConflict { .. }) if std::time::Instant::now() < deadline => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The request header naming a write's request id, and the answer's header naming it back.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// The answer's header saying a write had been applied before.
pub const IDEMPOTENT_REPLAYED: &str = "Idempotent-Replayed";

/// `PUT /v1/kv/{key}`.
pub async fn put(
    req: HttpRequest,
    state: web::Data<ApiState>,
    body: ReadBody,
) -> Result<HttpResponse> {
    let request = parse_key_request(req.uri().path(), req.query_string(), &state.limits)?;
    if let Some(condition) = precondition(&req, &request)? {
        return conditional_write(&state, request.key, Some(body.0.into()), condition).await;
    }
    let session = state.service.new_session(idempotency_key(&req)?);
    let id = session.request_id.clone();
    let result = state
        .service
        .put(request.cf, request.key, body.0.into(), session)
        .await;
    write_response(result, &id)
}

/// `GET /v1/kv/{key}`.
pub async fn get(req: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse> {
    let request = parse_key_request(req.uri().path(), req.query_string(), &state.limits)?;
    if let Some(ts) = request.ts {
        let ts = read_ts(&state, ts).await?;
        return match state.txn.get(&request.key, ts).await? {
            Some(version) => Ok(HttpResponse::Ok()
                .content_type("application/octet-stream")
                .insert_header((ETAG, etag(version.commit_ts)))
                .insert_header((READ_TS, ts.to_string()))
                .body(version.value)),
            None => Err(Error::NotFound),
        };
    }
    match state.service.get(request.cf, request.key).await? {
        Some(value) => Ok(HttpResponse::Ok()
            .content_type("application/octet-stream")
            .body(value)),
        None => Err(Error::NotFound),
    }
}

/// `DELETE /v1/kv/{key}`.
pub async fn delete(req: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse> {
    let request = parse_key_request(req.uri().path(), req.query_string(), &state.limits)?;
    if let Some(condition) = precondition(&req, &request)? {
        return conditional_write(&state, request.key, None, condition).await;
    }
    let session = state.service.new_session(idempotency_key(&req)?);
    let id = session.request_id.clone();
    let result = state.service.delete(request.cf, request.key, session).await;
    write_response(result, &id)
}

/// The request's `Idempotency-Key`, if it has one: 1 to 128 visible ASCII characters,
/// given once; anything else is a 400 `invalid_idempotency_key`.
pub fn idempotency_key(req: &HttpRequest) -> Result<Option<Vec<u8>>> {
    let mut values = req.headers().get_all(IDEMPOTENCY_KEY);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let invalid = |why: &str| {
        Error::bad_request(
            "invalid_idempotency_key",
            format!("the Idempotency-Key header {why}"),
        )
    };
    if values.next().is_some() {
        return Err(invalid("is given more than once"));
    }
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(invalid(&format!(
            "must have 1 to {MAX_IDEMPOTENCY_KEY_BYTES} characters"
        )));
    }
    if !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(invalid(
            "may hold only visible ASCII characters (no spaces)",
        ));
    }
    Ok(Some(bytes.to_vec()))
}

/// Longest `Idempotency-Key` a client may send.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = tinykv_actors::session::MAX_REQUEST_ID_BYTES;

/// The answer to a write under request id `id`: `200 {"ok":true,"replayed":...}`, or
/// the error with what became of the write (`error.outcome`) and the id to retry with
/// (`error.idempotency_key`); both name the id in the `Idempotency-Key` header.
fn write_response(result: Result<bool>, id: &[u8]) -> Result<HttpResponse> {
    let id = String::from_utf8_lossy(id).into_owned();
    match result {
        Ok(replayed) => {
            let mut response = HttpResponse::Ok();
            response.insert_header((IDEMPOTENCY_KEY, id.as_str()));
            if replayed {
                response.insert_header((IDEMPOTENT_REPLAYED, "true"));
            }
            Ok(response.json(json!({ "ok": true, "replayed": replayed })))
        }
        Err(err) => {
            let mut body = error_body(&err);
            body["error"]["outcome"] = json!(err.write_outcome());
            body["error"]["idempotency_key"] = json!(id);
            let mut response = err.error_response();
            if let Ok(value) = HeaderValue::from_str(&id) {
                response.headers_mut().insert(
                    actix_web::http::header::HeaderName::from_static("idempotency-key"),
                    value,
                );
            }
            Ok(response.set_body(BoxBody::new(body.to_string())))
        }
    }
}

/// One pair of a scan response.
#[derive(Debug, Serialize, PartialEq)]
pub struct EncodedPair {
    /// The key, encoded.
    pub key: String,
    /// The value, encoded.
    pub value: String,
}

/// `GET /v1/kv?start=&end=&limit=&encoding=`.
pub async fn scan(req: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse> {
    let request = parse_scan_request(req.query_string(), &state.limits)?;
    if let Some(ts) = request.ts {
        let ts = read_ts(&state, ts).await?;
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
            .map(
                |(pair, version)| json!({"key": pair.key, "value": pair.value, "version": version}),
            )
            .collect();
        return Ok(HttpResponse::Ok().json(json!({
            "kvs": kvs,
            "encoding": request.encoding.name(),
            "next": page.next.as_deref().map(display_key),
            "read_ts": ts,
        })));
    }
    let page = if !request.end.is_empty() && request.end == request.start {
        ScanPage {
            pairs: Vec::new(),
            next: None,
        }
    } else {
        let max_bytes = state.limits.max_scan_bytes;
        state
            .service
            .scan(
                request.cf,
                request.start,
                request.end,
                request.limit,
                max_bytes,
            )
            .await?
    };
    let kvs = encode_pairs(page.pairs, request.encoding)?;
    let next = page.next.as_deref().map(display_key);
    Ok(HttpResponse::Ok().json(json!({
        "kvs": kvs,
        "encoding": request.encoding.name(),
        "next": next,
    })))
}

/// Writes scanned pairs as JSON strings; under UTF-8 encoding, a key or value that is not
/// UTF-8 fails the request with a hint to ask for base64.
pub fn encode_pairs(
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
    encoding: Encoding,
) -> Result<Vec<EncodedPair>> {
    let encode = |bytes: Vec<u8>| -> Result<String> {
        match encoding {
            Encoding::Base64 => Ok(base64::engine::general_purpose::STANDARD.encode(bytes)),
            Encoding::Utf8 => String::from_utf8(bytes).map_err(|_| {
                Error::bad_request(
                    "not_utf8",
                    "a key or value in the result is not valid UTF-8; ask for encoding=base64",
                )
            }),
        }
    };
    pairs
        .into_iter()
        .map(|(key, value)| {
            Ok(EncodedPair {
                key: encode(key)?,
                value: encode(value)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_encoded_or_refused() {
        let pairs = vec![(b"a".to_vec(), vec![0xff, 0])];
        let encoded = encode_pairs(pairs.clone(), Encoding::Base64).unwrap();
        assert_eq!(
            encoded,
            vec![EncodedPair {
                key: "YQ==".into(),
                value: "/wA=".into()
            }]
        );
        let err = encode_pairs(pairs, Encoding::Utf8).unwrap_err();
        assert_eq!(err.code(), "not_utf8");
        let utf8 = encode_pairs(
            vec![(b"k".to_vec(), "é".as_bytes().to_vec())],
            Encoding::Utf8,
        );
        assert_eq!(utf8.unwrap()[0].value, "é");
    }
}
