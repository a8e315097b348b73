//! The internal endpoints other nodes forward requests to.
//!
//! `POST /internal/v1/raw/{get,put,delete,scan}` take a protobuf `kvrpcpb` raw request
//! and answer the matching raw response (see [`crate::forward`] for the calling side).
//! They execute on this node's store only, with
//! [`KvService::execute_local`](crate::service::KvService::execute_local): a forwarded
//! request is never forwarded again, so a stale leader hint cannot bounce a request
//! between nodes; the caller follows hints and retries instead.
//!
//! The answer is always HTTP 200 with the outcome in the body, errors included (in
//! `region_error` or `error`, encoded by [`error_to_wire`]), except for a body that is not
//! the expected message, which is a 400 and executes nothing.
//!
//! `POST /internal/v1/raft-cmd` takes a whole protobuf `RaftCmdRequest` (an admin command,
//! or a probe read) and hands it to the local peer of the region its header names, with
//! [`KvService::command_local`](crate::service::KvService::command_local). The answer is
//! the `RaftCmdResponse`, HTTP 200, with the command's own failures in its header. If the
//! local store gives no answer at all, the reply is the JSON error of the API instead: 504
//! when the attempt timed out (the command may still apply) and 503 when the store is
//! stopping; a body that is not a `RaftCmdRequest` is a 400.

use actix_web::{web, HttpResponse};
use prost::Message;
use tinykv_actors::Cf;
use tinykv_proto::kvrpcpb::{
    KvPair, RawDeleteRequest, RawDeleteResponse, RawGetRequest, RawGetResponse, RawPutRequest,
    RawPutResponse, RawScanRequest, RawScanResponse,
};
use tinykv_proto::raft_cmdpb::{AdminCmdType, RaftCmdRequest};

use super::error::body_error;
use super::request::check_key;
use super::ApiState;
use crate::config::ApiConfig;
use crate::error::{Error, Result};
use crate::forward::{error_to_wire, PROTOBUF_CONTENT_TYPE};
use crate::placement::{is_reserved_key, META_REGION_START};
use crate::service::{KvOp, KvOutcome};

/// The request body type of the internal endpoints.
type Body = std::result::Result<web::Bytes, actix_web::Error>;

/// Largest body the internal endpoints accept: a largest key and value plus the message's
/// own fields.
pub fn body_limit(limits: &ApiConfig) -> usize {
    limits.max_value_bytes + limits.max_key_bytes + 64 * 1024
}

/// `POST /internal/v1/raw/get`.
pub async fn raw_get(state: web::Data<ApiState>, body: Body) -> Result<HttpResponse> {
    let request: RawGetRequest = decode(&state, body)?;
    let outcome = match parse_cf(&request.cf).and_then(|cf| checked_key(&state, &request.key, cf)) {
        Ok(cf) => {
            execute(
                &state,
                KvOp::Get {
                    cf,
                    key: request.key,
                },
            )
            .await
        }
        Err(e) => Err(e),
    };
    let mut response = RawGetResponse::default();
    match outcome {
        Ok(KvOutcome::Value(Some(value))) => response.value = value,
        Ok(KvOutcome::Value(None)) => response.not_found = true,
        Ok(other) => (response.region_error, response.error) = error_to_wire(&unexpected(other)),
        Err(e) => (response.region_error, response.error) = error_to_wire(&e),
    }
    Ok(protobuf(&response))
}

/// `POST /internal/v1/raw/put`.
pub async fn raw_put(state: web::Data<ApiState>, body: Body) -> Result<HttpResponse> {
    let request: RawPutRequest = decode(&state, body)?;
    let outcome = match parse_cf(&request.cf).and_then(|cf| checked_key(&state, &request.key, cf)) {
        Ok(cf) => {
            let op = KvOp::Put {
                cf,
                key: request.key,
                value: request.value,
            };
            execute(&state, op).await
        }
        Err(e) => Err(e),
    };
    let mut response = RawPutResponse::default();
    if let Err(e) = written(outcome) {
        (response.region_error, response.error) = error_to_wire(&e);
    }
    Ok(protobuf(&response))
}

/// `POST /internal/v1/raw/delete`.
pub async fn raw_delete(state: web::Data<ApiState>, body: Body) -> Result<HttpResponse> {
    let request: RawDeleteRequest = decode(&state, body)?;
    let outcome = match parse_cf(&request.cf).and_then(|cf| checked_key(&state, &request.key, cf)) {
        Ok(cf) => {
            execute(
                &state,
                KvOp::Delete {
                    cf,
                    key: request.key,
                },
            )
            .await
        }
        Err(e) => Err(e),
    };
    let mut response = RawDeleteResponse::default();
    if let Err(e) = written(outcome) {
        (response.region_error, response.error) = error_to_wire(&e);
    }
    Ok(protobuf(&response))
}

/// `POST /internal/v1/raw/scan`.
pub async fn raw_scan(state: web::Data<ApiState>, body: Body) -> Result<HttpResponse> {
    let request: RawScanRequest = decode(&state, body)?;
    let limit = (request.limit as usize).min(state.limits.max_scan_limit);
    let outcome = match parse_cf(&request.cf) {
        Ok(_) if limit == 0 => Err(Error::bad_request("invalid_request", "scan limit is 0")),
        Ok(_) if is_reserved_key(&request.start_key) => Err(Error::bad_request(
            "reserved_key",
            "the scan starts among the reserved keys (from byte 0xFF on)",
        )),
        Ok(cf) => {
            // The reserved keys are never shown: a scan ends where they begin.
            let end = if request.end_key.is_empty() || is_reserved_key(&request.end_key) {
                META_REGION_START.to_vec()
            } else {
                request.end_key
            };
            let op = KvOp::ScanRegion {
                cf,
                start: request.start_key,
                end,
                limit,
            };
            execute(&state, op).await
        }
        Err(e) => Err(e),
    };
    let mut response = RawScanResponse::default();
    match outcome {
        Ok(KvOutcome::Pairs { pairs, region_end }) => {
            response.kvs = pairs
                .into_iter()
                .map(|(key, value)| KvPair { key, value })
                .collect();
            response.region_end_key = region_end;
        }
        Ok(other) => (response.region_error, response.error) = error_to_wire(&unexpected(other)),
        Err(e) => (response.region_error, response.error) = error_to_wire(&e),
    }
    Ok(protobuf(&response))
}

/// `POST /internal/v1/raft-cmd`.
pub async fn raft_cmd(state: web::Data<ApiState>, body: Body) -> Result<HttpResponse> {
    let request: RaftCmdRequest = decode(&state, body)?;
    check_forwarded_command(&request)?;
    let response = state.service.command_local(request).await?;
    Ok(protobuf(&response))
}

/// What another node may ask this one to propose: the admin operations of the admin API
/// (split, membership change, leader transfer) and read probes, never a write of data or
/// of the cluster's metadata, a log compaction (the leader's own business) or a command
/// pinned to a term (the placement driver's, on its own store).
pub fn check_forwarded_command(request: &RaftCmdRequest) -> Result<()> {
    let refuse = |why: &str| {
        Err(Error::bad_request(
            "command_not_allowed",
            format!("{why} cannot be forwarded to another node"),
        ))
    };
    let header = request.header.clone().unwrap_or_default();
    if header.metadata || header.term != 0 {
        return refuse("a command pinned to a term or writing the cluster's metadata");
    }
    tinykv_actors::validation::check_command(request)
        .map_err(|e| Error::bad_request("invalid_request", e.to_string()))?;
    match &request.admin_request {
        Some(admin) => match admin.cmd_type() {
            AdminCmdType::Split | AdminCmdType::ChangePeer | AdminCmdType::TransferLeader => Ok(()),
            _ => refuse("a log compaction"),
        },
        None if tinykv_actors::util::is_read_only(request) => Ok(()),
        None => refuse("a write"),
    }
}

/// Checks a forwarded request's key as the public API would (empty, too long, reserved).
fn checked_key(state: &ApiState, key: &[u8], cf: Cf) -> Result<Cf> {
    check_key(key, &state.limits).map(|()| cf)
}

/// Reads and decodes a request body; a body that is not an `M` is a 400.
fn decode<M: Message + Default>(state: &ApiState, body: Body) -> Result<M> {
    let body = body.map_err(|e| body_error(&e, body_limit(&state.limits)))?;
    M::decode(body).map_err(|e| {
        Error::bad_request(
            "bad_protobuf",
            format!("the body is not a valid request: {e}"),
        )
    })
}

async fn execute(state: &ApiState, op: KvOp) -> Result<KvOutcome> {
    state.service.execute_local(op).await
}

fn parse_cf(name: &str) -> Result<Cf> {
    Cf::from_name(name).map_err(Error::Store)
}

fn written(outcome: Result<KvOutcome>) -> Result<()> {
    match outcome? {
        KvOutcome::Written => Ok(()),
        other => Err(unexpected(other)),
    }
}

fn unexpected(outcome: KvOutcome) -> Error {
    Error::Io(format!("unexpected outcome {outcome:?}"))
}

fn protobuf(msg: &impl Message) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(PROTOBUF_CONTENT_TYPE)
        .body(msg.encode_to_vec())
}
