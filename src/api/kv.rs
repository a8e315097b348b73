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
//! With `?ts=`, `If-Match` or `If-None-Match` they address the transactional keys instead
//! (see [`super::txn_kv`]).
//!
//! The raw calls take `?cf=default|lock|write`. The request is decoded by
//! [`super::request`] and executed by the node's [`KvService`](crate::kv_service::KvService),
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
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use base64::Engine as _;
use serde::Serialize;
use serde_json::json;

use super::admin::display_key;
use super::body::ReadBody;
use super::error::error_body;
use super::request::{parse_key_request, parse_scan_request, Encoding};
use super::txn_kv;
use super::ApiState;
use crate::error::{Error, Result};
use crate::kv_service::ScanPage;

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
    if let Some(condition) = txn_kv::precondition(&req, &request)? {
        let value = Some(body.0.into());
        return txn_kv::conditional_write(&state, request.key, value, condition).await;
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
        return txn_kv::get_at(&state, &request.key, ts).await;
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
    if let Some(condition) = txn_kv::precondition(&req, &request)? {
        return txn_kv::conditional_write(&state, request.key, None, condition).await;
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
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = tinykv_actors::MAX_REQUEST_ID_BYTES;

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
        return txn_kv::scan_at(&state, &request, ts).await;
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
