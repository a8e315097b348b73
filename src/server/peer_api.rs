//! The node-to-node API: what other nodes ask of this one, over HTTP/1.1 on the peer
//! listener (`raft_addr`, see `peer_listener`), never on the client listener.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `GET /internal/v1/identity` | none | JSON [`IdentityView`]: cluster, store (0 while joining), join token |
//! | `POST /internal/v1/raw/{get,put,delete,scan}` | protobuf `kvrpcpb` raw request | the raw response |
//! | `POST /internal/v1/txn` | protobuf `kvrpcpb::TxnRequest` | the `TxnResponse` |
//! | `POST /internal/v1/txn/one-shot` | JSON of `POST /v1/txn` | its answer, or its error with the API's status |
//! | `POST /internal/v1/raft-cmd` | protobuf `RaftCmdRequest` | the `RaftCmdResponse` |
//! | `POST /internal/v1/pd` | JSON [`PdRequest`] | the placement driver's JSON answer |
//!
//! The raw operations execute on this node's store only, with
//! [`KvService::execute_local`](crate::kv_service::KvService::execute_local): a forwarded
//! request is never forwarded again, so a stale leader hint cannot bounce it between
//! nodes; the caller follows hints and retries. Their answer is HTTP 200 with the outcome
//! in the body, errors included (`region_error` or `error`, see
//! [`crate::server::forward::error_to_wire`]). Keys are checked as the client API checks them
//! (empty, too long, reserved), and a scan stops where the reserved keys begin.
//!
//! `raft-cmd` takes the admin operations of the admin API (split and batch split,
//! membership change, leader transfer) and read probes, nothing else
//! ([`check_forwarded_command`]): writes travel as raw operations, log compaction is the
//! leader's own business, and the placement driver's writes are proposed on its own store
//! only. If the local store gives no answer at all, the reply is an error: 504 when the
//! attempt timed out (the command may still apply), 503 when the store is stopping.
//!
//! With TLS, the peer listener passes on the store the caller's certificate names, and
//! the placement driver's requests are held to it ([`authorize_pd_request`]): a
//! heartbeat must be the caller's own (so no one reports another store's address or
//! regions), and a join asks for the caller's store id (so a node becomes the store its
//! certificate names, and no other). Forwarded operations and commands need no more than
//! a store certificate: any store of the cluster may forward a client's request.
//!
//! Every error is the API's JSON error body with its status. A body must have its
//! content type (`application/x-protobuf`, or `application/json` for `/pd`), stay within
//! its limit (413) and arrive within [`BODY_READ_TIMEOUT`] (408); anything else is refused
//! before it is decoded. Until the store runs, only the identity answers (503
//! `unavailable` elsewhere).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use prost::Message;
use serde::{Deserialize, Serialize};
use tinykv_actors::Cf;
use tinykv_proto::kvrpcpb::{
    KvPair, RawDeleteRequest, RawDeleteResponse, RawGetRequest, RawGetResponse, RawPutRequest,
    RawPutResponse, RawScanRequest, RawScanResponse, TxnRequest, TxnResponse,
};
use tinykv_proto::raft_cmdpb::{AdminCmdType, RaftCmdRequest, WriteOutcome, WriteSession};
use tracing::Instrument;

use crate::api::error::error_body;
use crate::api::request::{check_key, is_reserved_key, raw_scan_end};
use crate::config::ApiConfig;
use crate::error::{Error, Result};
use crate::kv_service::{KvOp, KvOutcome, KvService};
use crate::pd::{PdClient, PdRequest, PD_PATH};
use crate::request_context::{
    RequestContext, RequestId, REQUEST_ID_HEADER, REQUEST_ID_SOURCE_HEADER,
};
use crate::server::forward::{
    error_to_wire, ONE_SHOT_PATH, PROTOBUF_CONTENT_TYPE, RAFT_CMD_PATH, TXN_PATH,
};

/// Path of the identity endpoint.
pub const IDENTITY_PATH: &str = "/internal/v1/identity";

/// Longest time a request body may take to arrive.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest body `POST /internal/v1/pd` accepts (a heartbeat lists every region a node
/// leads).
pub const PD_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Who this node is, as other nodes ask it: its cluster, its store (0 until a joining
/// node has one) and the token a joining node sent the placement driver, which the driver
/// checks here before it records the new store.
pub struct Identity {
    cluster_id: u64,
    store_id: AtomicU64,
    join_token: String,
}

/// The JSON answer of `GET /internal/v1/identity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityView {
    /// The node's cluster.
    pub cluster_id: u64,
    /// The node's store id (0: it has not joined yet).
    pub store_id: u64,
    /// The token of its join request, while it joins (empty once it has a store id).
    #[serde(default)]
    pub join_token: String,
}

impl Identity {
    /// A node of cluster `cluster_id` with store id `store_id` (0: joining) and a fresh
    /// random join token.
    pub fn new(cluster_id: u64, store_id: u64) -> Identity {
        Identity {
            cluster_id,
            store_id: AtomicU64::new(store_id),
            join_token: format!("{:032x}", rand::random::<u128>()),
        }
    }

    /// The token a joining node sends with its join request.
    pub fn join_token(&self) -> &str {
        &self.join_token
    }

    /// Records the store id the node got.
    pub fn set_store_id(&self, store_id: u64) {
        self.store_id.store(store_id, Ordering::Relaxed);
    }

    /// The identity as the endpoint shows it.
    pub fn view(&self) -> IdentityView {
        let store_id = self.store_id.load(Ordering::Relaxed);
        IdentityView {
            cluster_id: self.cluster_id,
            store_id,
            join_token: if store_id == 0 {
                self.join_token.clone()
            } else {
                String::new()
            },
        }
    }
}

/// What the node-to-node API serves once the store runs.
pub struct PeerApi {
    /// Executes forwarded operations and commands on the local store.
    pub service: KvService,
    /// Runs forwarded one-shot transactions.
    pub txn: crate::txn::client::TxnClient,
    /// Reaches the placement driver (its server, if this node leads the meta region).
    pub pd: Arc<PdClient>,
    /// The node's key and value limits.
    pub limits: ApiConfig,
}

/// Answers one request; `api` is `None` while the store is not running yet. `caller` is
/// the store the connection's certificate names (`None` without TLS).
pub async fn respond(
    api: Option<&PeerApi>,
    identity: &Identity,
    caller: Option<u64>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    // A request made on behalf of a client's names the client request's id: its log lines
    // here carry it, as do its raft commands.
    let headers = request.headers();
    let context = RequestId::forwarded(
        headers.get(REQUEST_ID_HEADER).map(|v| v.as_bytes()),
        headers.get(REQUEST_ID_SOURCE_HEADER).map(|v| v.as_bytes()),
    )
    .map(RequestContext::new);
    let answer = async move {
        match route(api, identity, caller, request).await {
            Ok(response) => response,
            Err(e) => {
                if e.status().is_server_error() && !matches!(e, Error::NotPdLeader { .. }) {
                    tracing::debug!(%method, path, code = e.code(), error = %e, "peer request failed");
                }
                error_response(&e)
            }
        }
    };
    match context {
        None => answer.await,
        Some(context) => {
            let span = tracing::info_span!("forwarded", request_id = %context.id());
            RequestContext::scope(context, answer.instrument(span)).await
        }
    }
}

async fn route(
    api: Option<&PeerApi>,
    identity: &Identity,
    caller: Option<u64>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>> {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    let allowed: &[Method] = match path.as_str() {
        IDENTITY_PATH => &[Method::GET],
        RAFT_CMD_PATH | PD_PATH | TXN_PATH | ONE_SHOT_PATH => &[Method::POST],
        p if p.starts_with(RAW_PREFIX) && RAW_OPS.contains(&&p[RAW_PREFIX.len()..]) => {
            &[Method::POST]
        }
        _ => {
            return Err(Error::NoSuchResource {
                code: "route_not_found",
                message: format!("no route for {method} {path}"),
            })
        }
    };
    if !allowed.contains(&method) {
        let allow = if path == IDENTITY_PATH { "GET" } else { "POST" };
        return Err(Error::MethodNotAllowed {
            method: method.to_string(),
            path,
            allow: allow.to_string(),
        });
    }
    if path == IDENTITY_PATH {
        return Ok(json(&identity.view()));
    }
    let Some(api) = api else {
        return Err(Error::Store(tinykv_actors::Error::Stopped));
    };
    let (wanted, limit) = match path.as_str() {
        PD_PATH => ("application/json", PD_BODY_LIMIT),
        TXN_PATH => (PROTOBUF_CONTENT_TYPE, txn_body_limit(&api.limits)),
        ONE_SHOT_PATH => (
            "application/json",
            crate::api::txn::txn_body_bytes(&api.limits),
        ),
        _ => (PROTOBUF_CONTENT_TYPE, body_limit(&api.limits)),
    };
    check_content_type(&request, wanted)?;
    let body = read_body(request.into_body(), limit).await?;
    match path.as_str() {
        PD_PATH => api.pd_request(body, caller).await,
        RAFT_CMD_PATH => api.raft_cmd(body).await,
        TXN_PATH => Ok(protobuf(&api.txn(decode(body)?).await)),
        ONE_SHOT_PATH => api.one_shot(body).await,
        _ => api.raw(&path[RAW_PREFIX.len()..], body).await,
    }
}

const RAW_PREFIX: &str = "/internal/v1/raw/";
const RAW_OPS: [&str; 4] = ["get", "put", "delete", "scan"];

/// Largest body the raw and raft-command endpoints accept: a largest key and value plus
/// the message's own fields.
pub fn body_limit(limits: &ApiConfig) -> usize {
    limits.max_value_bytes + limits.max_key_bytes + 64 * 1024
}

/// Largest body the transaction endpoint accepts: a transaction's writes (see
/// [`crate::api::txn::max_txn_bytes`]) plus the message's own fields.
pub fn txn_body_limit(limits: &ApiConfig) -> usize {
    crate::api::txn::max_txn_bytes(limits) + 64 * 1024
}

impl PeerApi {
    /// Runs a forwarded one-shot transaction here, without forwarding it again; the
    /// forwarding node checked the request (as this one does again) and its credential.
    async fn one_shot(&self, body: Bytes) -> Result<Response<Full<Bytes>>> {
        let plan = crate::api::one_shot::OneShotPlan::parse(&body, &self.limits)?;
        let timeout = self.service.timeouts().request;
        Ok(json(&plan.run(&self.txn, timeout).await?))
    }

    /// Executes a forwarded transactional command on the local store. Its keys are the
    /// client's keys of the transactional range (stored from byte `0xFE`), so no raw key
    /// check applies; the command checks its own request ([`crate::txn::wire`]).
    async fn txn(&self, request: TxnRequest) -> TxnResponse {
        match self.service.execute_local(KvOp::Txn(request)).await {
            Ok(KvOutcome::Txn(response)) => *response,
            Ok(other) => txn_error(&unexpected(other)),
            Err(e) => txn_error(&e),
        }
    }

    async fn raw(&self, op: &str, body: Bytes) -> Result<Response<Full<Bytes>>> {
        Ok(match op {
            "get" => protobuf(&self.raw_get(decode(body)?).await),
            "put" => protobuf(&self.raw_put(decode(body)?).await),
            "delete" => protobuf(&self.raw_delete(decode(body)?).await),
            _ => protobuf(&self.raw_scan(decode(body)?).await),
        })
    }

    async fn raw_get(&self, request: RawGetRequest) -> RawGetResponse {
        let outcome = match self.checked(&request.cf, &request.key) {
            Ok(cf) => {
                let op = KvOp::Get {
                    cf,
                    key: request.key,
                };
                self.service.execute_local(op).await
            }
            Err(e) => Err(e),
        };
        let mut response = RawGetResponse::default();
        match outcome {
            Ok(KvOutcome::Value(Some(value))) => response.value = value,
            Ok(KvOutcome::Value(None)) => response.not_found = true,
            Ok(other) => {
                (response.region_error, response.error) = error_to_wire(&unexpected(other))
            }
            Err(e) => (response.region_error, response.error) = error_to_wire(&e),
        }
        response
    }

    async fn raw_put(&self, request: RawPutRequest) -> RawPutResponse {
        let outcome = match self.checked(&request.cf, &request.key) {
            Ok(cf) => {
                let op = KvOp::Put {
                    cf,
                    key: request.key,
                    value: request.value,
                    session: self.session_of(request.session),
                };
                self.service.execute_local(op).await
            }
            Err(e) => Err(e),
        };
        let mut response = RawPutResponse::default();
        match written(outcome) {
            Ok(outcome) => response.set_outcome(outcome),
            Err(e) => (response.region_error, response.error) = error_to_wire(&e),
        }
        response
    }

    async fn raw_delete(&self, request: RawDeleteRequest) -> RawDeleteResponse {
        let outcome = match self.checked(&request.cf, &request.key) {
            Ok(cf) => {
                let op = KvOp::Delete {
                    cf,
                    key: request.key,
                    session: self.session_of(request.session),
                };
                self.service.execute_local(op).await
            }
            Err(e) => Err(e),
        };
        let mut response = RawDeleteResponse::default();
        match written(outcome) {
            Ok(outcome) => response.set_outcome(outcome),
            Err(e) => (response.region_error, response.error) = error_to_wire(&e),
        }
        response
    }

    async fn raw_scan(&self, request: RawScanRequest) -> RawScanResponse {
        let limit = (request.limit as usize).min(self.limits.max_scan_limit);
        let outcome = match parse_cf(&request.cf) {
            Ok(_) if limit == 0 => Err(Error::bad_request("invalid_request", "scan limit is 0")),
            Ok(_) if is_reserved_key(&request.start_key) => Err(Error::bad_request(
                "reserved_key",
                "the scan starts among the reserved keys (from byte 0xFE on)",
            )),
            Ok(cf) => {
                let end = raw_scan_end(request.end_key);
                let ceiling = self.limits.max_scan_bytes;
                let max_bytes = match request.max_bytes {
                    0 => ceiling,
                    asked => (asked.min(ceiling as u64)) as usize,
                };
                let op = KvOp::ScanRegion {
                    cf,
                    start: request.start_key,
                    end,
                    limit,
                    max_bytes,
                };
                self.service.execute_local(op).await
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
            Ok(other) => {
                (response.region_error, response.error) = error_to_wire(&unexpected(other))
            }
            Err(e) => (response.region_error, response.error) = error_to_wire(&e),
        }
        response
    }

    async fn raft_cmd(&self, body: Bytes) -> Result<Response<Full<Bytes>>> {
        let request: RaftCmdRequest = decode(body)?;
        check_forwarded_command(&request)?;
        let response = self.service.command_local(request).await?;
        Ok(protobuf(&response))
    }

    async fn pd_request(&self, body: Bytes, caller: Option<u64>) -> Result<Response<Full<Bytes>>> {
        let request: PdRequest = crate::api::admin::parse_json(&body)?;
        let request = authorize_pd_request(request, caller)?;
        let Some(server) = self.pd.local() else {
            return Err(Error::NotPdLeader { leader: None });
        };
        Ok(json(&server.handle(request).await?))
    }

    /// A forwarded write's session: the one the forwarding node made, which is the same
    /// on each of its attempts; a fresh one if it sent none.
    fn session_of(&self, session: Option<WriteSession>) -> WriteSession {
        session.unwrap_or_else(|| self.service.new_session(None))
    }

    /// A forwarded request's column family and key, checked as the client API checks them.
    fn checked(&self, cf: &str, key: &[u8]) -> Result<Cf> {
        let cf = parse_cf(cf)?;
        check_key(key, &self.limits)?;
        Ok(cf)
    }
}

/// Holds a placement-driver request to the store `caller`'s certificate names (`None`:
/// no TLS, nothing to hold it to): a heartbeat must report that store, and a join asks
/// for that store's id. Refused requests are 403 `identity_mismatch` and change nothing.
pub fn authorize_pd_request(mut request: PdRequest, caller: Option<u64>) -> Result<PdRequest> {
    let Some(caller) = caller else {
        return Ok(request);
    };
    let refuse = |message: String| {
        tracing::warn!(
            caller_store = caller,
            "refusing a placement driver request: {message}"
        );
        crate::metrics::connection_refused("peer", "identity_mismatch");
        Err(Error::Forbidden {
            code: "identity_mismatch",
            message,
        })
    };
    match &mut request {
        PdRequest::Heartbeat(batch) if batch.store.store_id != caller => {
            return refuse(format!(
                "a heartbeat of store {} from a node whose certificate names store {caller}",
                batch.store.store_id
            ))
        }
        PdRequest::Join { store_id, .. } if *store_id != 0 && *store_id != caller => {
            return refuse(format!(
                "a join as store {store_id} from a node whose certificate names store {caller}"
            ))
        }
        PdRequest::Join { store_id, .. } => *store_id = caller,
        _ => {}
    }
    Ok(request)
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
            AdminCmdType::Split
            | AdminCmdType::BatchSplit
            | AdminCmdType::ChangePeer
            | AdminCmdType::TransferLeader
            | AdminCmdType::PrepareMerge => Ok(()),
            // A CommitMerge or RollbackMerge is only ever made by a merge source's own
            // leader, on its store.
            AdminCmdType::CommitMerge | AdminCmdType::RollbackMerge => {
                refuse("a merge's commit or rollback")
            }
            _ => refuse("a log compaction"),
        },
        None if tinykv_actors::is_read_only(request) => Ok(()),
        None => refuse("a write"),
    }
}

/// Refuses a body whose content type is not `wanted` (415).
fn check_content_type(request: &Request<Incoming>, wanted: &str) -> Result<()> {
    let given = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = given.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case(wanted) {
        Ok(())
    } else {
        Err(Error::UnsupportedMediaType(format!(
            "this endpoint takes {wanted}, not {given:?}"
        )))
    }
}

/// Reads a whole body of at most `limit` bytes within [`BODY_READ_TIMEOUT`].
async fn read_body(body: Incoming, limit: usize) -> Result<Bytes> {
    let collected = tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, limit).collect());
    match collected.await {
        Err(_) => Err(Error::BodyTimeout(format!(
            "the request body did not arrive within {} s",
            BODY_READ_TIMEOUT.as_secs()
        ))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(Error::TooLarge(format!(
            "request body is larger than {limit} bytes"
        ))),
        Ok(Err(e)) => Err(Error::bad_request(
            "bad_body",
            format!("cannot read the request body: {e}"),
        )),
    }
}

/// Decodes a protobuf body; a body that is not an `M` is a 400.
fn decode<M: Message + Default>(body: Bytes) -> Result<M> {
    M::decode(body).map_err(|e| {
        Error::bad_request(
            "bad_protobuf",
            format!("the body is not a valid request: {e}"),
        )
    })
}

fn parse_cf(name: &str) -> Result<Cf> {
    Cf::from_name(name).map_err(Error::Store)
}

fn written(outcome: Result<KvOutcome>) -> Result<WriteOutcome> {
    Ok(match crate::kv_service::written(outcome?)? {
        false => WriteOutcome::Applied,
        true => WriteOutcome::Replayed,
    })
}

fn unexpected(outcome: KvOutcome) -> Error {
    Error::Io(format!("unexpected outcome {outcome:?}"))
}

fn protobuf(msg: &impl Message) -> Response<Full<Bytes>> {
    respond_with(
        StatusCode::OK,
        PROTOBUF_CONTENT_TYPE,
        Bytes::from(msg.encode_to_vec()),
    )
}

fn json(value: &impl Serialize) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    respond_with(StatusCode::OK, "application/json", Bytes::from(body))
}

fn error_response(error: &Error) -> Response<Full<Bytes>> {
    let status =
        StatusCode::from_u16(error.status().as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&error_body(error)).unwrap_or_default();
    let mut response = respond_with(status, "application/json", Bytes::from(body));
    if let Error::MethodNotAllowed { allow, .. } = error {
        if let Ok(value) = hyper::header::HeaderValue::from_str(allow) {
            response.headers_mut().insert(hyper::header::ALLOW, value);
        }
    }
    response
}

fn respond_with(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

/// A transactional command's failure as its wire answer.
fn txn_error(error: &Error) -> TxnResponse {
    let (region_error, error) = error_to_wire(error);
    TxnResponse {
        region_error,
        error,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use tinykv_proto::raft_cmdpb::{
        AdminRequest, CmdType, CompactLogRequest, PutRequest, RaftRequestHeader, Request,
        SnapRequest,
    };

    use super::*;

    #[test]
    fn only_admin_operations_and_reads_may_be_forwarded_as_commands() {
        let snap = RaftCmdRequest {
            requests: vec![Request {
                cmd_type: CmdType::Snap as i32,
                snap: Some(SnapRequest {}),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(check_forwarded_command(&snap).is_ok());
        let put = RaftCmdRequest {
            requests: vec![Request {
                cmd_type: CmdType::Put as i32,
                put: Some(PutRequest {
                    cf: "default".into(),
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            check_forwarded_command(&put).unwrap_err().code(),
            "command_not_allowed"
        );
        let compact = RaftCmdRequest {
            admin_request: Some(AdminRequest {
                cmd_type: AdminCmdType::CompactLog as i32,
                compact_log: Some(CompactLogRequest {
                    compact_index: 5,
                    compact_term: 1,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(check_forwarded_command(&compact).is_err());
        // Splits, one key or many, are the admin API's and travel to the leader's node.
        let batch_split = RaftCmdRequest {
            admin_request: Some(tinykv_actors::split_request(
                vec![b"a".to_vec(), b"b".to_vec()],
                &[10, 11, 12, 20, 21, 22],
            )),
            ..Default::default()
        };
        assert!(check_forwarded_command(&batch_split).is_ok());
        let pinned = RaftCmdRequest {
            header: Some(RaftRequestHeader {
                term: 4,
                ..Default::default()
            }),
            ..snap.clone()
        };
        assert!(check_forwarded_command(&pinned).is_err());
    }

    #[test]
    fn with_tls_the_pd_hears_each_store_only_about_itself() {
        let heartbeat = |store_id| {
            PdRequest::Heartbeat(crate::pd::wire::HeartbeatBatch {
                store: crate::pd::wire::StoreReport {
                    store_id,
                    raft_addr: "10.0.0.9:20160".into(),
                    http_addr: "10.0.0.9:8080".into(),
                    region_count: 0,
                    used_size: None,
                    draining_leaders: false,
                },
                regions: vec![],
                full: true,
                auth_version: 0,
            })
        };
        let join = |store_id| PdRequest::Join {
            cluster_id: 1,
            raft_addr: "10.0.0.9:20160".into(),
            http_addr: "10.0.0.9:8080".into(),
            join_token: "t".into(),
            store_id,
        };
        // Store 2's certificate: its own heartbeat passes, another store's is refused.
        assert!(authorize_pd_request(heartbeat(2), Some(2)).is_ok());
        let forged = authorize_pd_request(heartbeat(3), Some(2)).unwrap_err();
        assert_eq!(forged.code(), "identity_mismatch");
        assert_eq!(forged.status().as_u16(), 403);
        // A join becomes a join as the certificate's store, and only that one.
        match authorize_pd_request(join(0), Some(5)).unwrap() {
            PdRequest::Join { store_id, .. } => assert_eq!(store_id, 5),
            other => panic!("{other:?}"),
        }
        assert!(authorize_pd_request(join(6), Some(5)).is_err());
        // Without TLS there is no identity to hold a request to.
        assert!(authorize_pd_request(heartbeat(3), None).is_ok());
        assert!(authorize_pd_request(PdRequest::Cluster, Some(2)).is_ok());
    }

    #[test]
    fn the_join_token_is_shown_only_while_joining() {
        let identity = Identity::new(7, 0);
        assert_eq!(identity.view().join_token, identity.join_token());
        assert_eq!(identity.join_token().len(), 32);
        identity.set_store_id(4);
        assert_eq!(
            identity.view(),
            IdentityView {
                cluster_id: 7,
                store_id: 4,
                join_token: String::new()
            }
        );
    }
}
