//! Forwarding a client request to another node over HTTP.
//!
//! When the local peer of a region is not its leader, the [`KvService`] sends the request
//! to the leader's node through a [`Forwarder`]. Between real nodes that is
//! [`HttpForwarder`]: it POSTs the operation as a protobuf `kvrpcpb` raw request to the
//! other node's `/internal/v1/raw/{get,put,delete,scan}` endpoint on its peer listener
//! (`raft_addr`: node-to-node traffic never uses the client listener), which executes it on
//! that node's store only (see [`crate::server::peer_api`]) and answers with the matching response.
//! Transactional commands travel as `kvrpcpb::TxnRequest`s to `/internal/v1/txn`.
//! Admin commands (splits, membership changes, leader transfers) travel the same way as
//! whole `RaftCmdRequest`s to `/internal/v1/raft-cmd`, answered by the `RaftCmdResponse`
//! with the command's own errors in its header; if that store's raftstore gives no answer
//! at all (the endpoint's 504 or 503), the command may have run, as below.
//!
//! Errors cross the wire in the response, not in the HTTP status: a region error (not
//! leader, epoch not match, ...) travels typed in `region_error`, so the caller can follow
//! the new leader hint; any other error travels in `error` as `"{code}: {message}"`, so it
//! comes back as the same kind of error ([`error_to_wire`] and [`error_from_wire`] are the
//! two halves). What matters most is whether a failed write might have happened: a failure
//! to connect means the request never left ([`Error::Forward`] with `maybe_delivered:
//! false`, safe to retry); a timeout or a connection lost after sending means it may have
//! been executed (`maybe_delivered: true`, the client is told the outcome is unknown).
//! A store that fault injection cuts off (see [`crate::server::network_faults`]) fails the same way as one
//! that cannot be connected to, at once and without sending anything. A request sent on
//! behalf of a client request carries its id in `X-Request-Id` (see
//! [`crate::request_context`]), so the other node's log lines for it carry the same id.
//!
//! [`KvService`]: crate::kv_service::KvService

use std::time::Duration;

use futures::future::BoxFuture;
use prost::Message;
use tinykv_actors::Error as StoreError;
use tinykv_proto::errorpb;
use tinykv_proto::kvrpcpb::{
    RawDeleteRequest, RawDeleteResponse, RawGetRequest, RawGetResponse, RawPutRequest,
    RawPutResponse, RawScanRequest, RawScanResponse, TxnRequest, TxnResponse,
};
use tinykv_proto::raft_cmdpb::{RaftCmdRequest, RaftCmdResponse, WriteOutcome};

use crate::error::{error_chain, Error, Result};
use crate::kv_service::{cf_name, Forwarder, KvOp, KvOutcome};
use crate::security::{NodeHttp, Tls};
use crate::server::address_book::AddressBook;
use crate::server::network_faults::Faults;

/// Content type of the internal endpoints' bodies.
pub const PROTOBUF_CONTENT_TYPE: &str = "application/x-protobuf";

/// Path of the internal endpoint that executes transactional commands.
pub const TXN_PATH: &str = "/internal/v1/txn";

/// Path of the internal endpoint that runs one-shot transactions.
pub const ONE_SHOT_PATH: &str = "/internal/v1/txn/one-shot";

/// Path of the internal endpoint that executes raw raft commands.
pub const RAFT_CMD_PATH: &str = "/internal/v1/raft-cmd";

/// Longest a forwarder waits for a TCP connection to another node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Forwards operations to other nodes' internal HTTP endpoints; see the module
/// documentation. Clones share one connection pool.
#[derive(Clone)]
pub struct HttpForwarder {
    http: NodeHttp,
    addresses: AddressBook,
    attempt_timeout: Duration,
    /// How long a forwarded one-shot transaction may take: the other node's whole request
    /// deadline, and a margin.
    one_shot_timeout: Duration,
    faults: Faults,
}

impl HttpForwarder {
    /// A forwarder that finds nodes in `addresses`, reaches them with `tls` (plaintext if
    /// `None`) and gives each forwarded request `attempt_timeout` to complete.
    pub fn new(
        addresses: AddressBook,
        attempt_timeout: Duration,
        tls: Option<&Tls>,
    ) -> Result<HttpForwarder> {
        let connect_timeout = CONNECT_TIMEOUT.min(attempt_timeout);
        let http = NodeHttp::build(tls, connect_timeout, "forwarder's", |builder| {
            builder
                .tcp_nodelay(true)
                .tcp_keepalive(Duration::from_secs(5))
                .pool_idle_timeout(Duration::from_secs(60))
        })?;
        Ok(HttpForwarder {
            http,
            addresses,
            attempt_timeout,
            one_shot_timeout: attempt_timeout * 4,
            faults: Faults::disabled(),
        })
    }

    /// The same forwarder, giving a forwarded one-shot transaction `request_timeout`
    /// (the nodes' request deadline) and a second more.
    pub fn with_request_timeout(mut self, request_timeout: Duration) -> HttpForwarder {
        self.one_shot_timeout = request_timeout + Duration::from_secs(1);
        self
    }

    /// The same forwarder, failing at once every request to a store `faults` blocks.
    pub fn with_faults(mut self, faults: Faults) -> HttpForwarder {
        self.faults = faults;
        self
    }

    /// POSTs `body` to `path` of store `store_id`; returns the response body.
    async fn call(&self, store_id: u64, path: &str, body: Vec<u8>) -> Result<bytes::Bytes> {
        let request = Post {
            path,
            content_type: PROTOBUF_CONTENT_TYPE,
            timeout: self.attempt_timeout,
            body,
        };
        let (status, body) = self.post(store_id, request).await?;
        if !status.is_success() {
            // Only our handler runs the operation, and it answers 200 whenever the store
            // did; anything else was refused before executing (4xx), or the server or the
            // store failed on the way and the operation may have run (5xx).
            let text = String::from_utf8_lossy(&body);
            return Err(Error::Forward {
                store_id,
                message: format!("HTTP {status}: {text}"),
                maybe_delivered: status.is_server_error(),
            });
        }
        Ok(body)
    }

    /// POSTs a request to store `store_id`'s peer listener; returns the answer's status
    /// and body, whatever the status.
    async fn post(
        &self,
        store_id: u64,
        request: Post<'_>,
    ) -> Result<(reqwest::StatusCode, bytes::Bytes)> {
        let forward_error = |message: String, maybe_delivered: bool| Error::Forward {
            store_id,
            message,
            maybe_delivered,
        };
        if self.faults.is_blocked(store_id) {
            return Err(forward_error(
                "partitioned from the store by fault injection".into(),
                false,
            ));
        }
        let peer_addr = self
            .addresses
            .raft_addr(store_id)
            .ok_or_else(|| forward_error("the store is not in the address book".into(), false))?;
        let mut post = self
            .http
            .client()
            .post(self.http.url(&peer_addr, request.path))
            .header(reqwest::header::CONTENT_TYPE, request.content_type);
        if let Some(id) = crate::request_context::RequestContext::current_id() {
            post = post.header(crate::request_context::REQUEST_ID_HEADER, id.as_str());
            if !id.chosen_by_client() {
                post = post.header(crate::request_context::REQUEST_ID_SOURCE_HEADER, "node");
            }
        }
        let response = post
            .timeout(request.timeout)
            .body(request.body)
            .send()
            .await
            .map_err(|e| forward_error(error_chain(&e), !(e.is_connect() || e.is_builder())))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| forward_error(error_chain(&e), true))?;
        Ok((status, body))
    }

    /// Runs a one-shot transaction on store `store_id`: its answer, or its error with the
    /// status and code the other node gave it.
    async fn forward_one_shot_to(self, store_id: u64, body: Vec<u8>) -> Result<serde_json::Value> {
        let request = Post {
            path: ONE_SHOT_PATH,
            content_type: "application/json",
            timeout: self.one_shot_timeout,
            body,
        };
        let (status, body) = self.post(store_id, request).await?;
        let answer: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| Error::Forward {
                store_id,
                message: format!("HTTP {status} with a body that is not JSON: {e}"),
                maybe_delivered: true,
            })?;
        if status.is_success() {
            return Ok(answer);
        }
        let code = answer["error"]["code"].as_str().unwrap_or("internal");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        Err(Error::relayed(status.as_u16(), code, message.to_string()))
    }

    async fn forward_op(self, store_id: u64, op: KvOp) -> Result<KvOutcome> {
        let undecodable = |e: prost::DecodeError| Error::Forward {
            store_id,
            message: format!("undecodable response: {e}"),
            maybe_delivered: true,
        };
        match op {
            KvOp::Txn(request) => self.forward_txn(store_id, request).await,
            KvOp::Get { cf, key } => {
                let request = RawGetRequest {
                    key,
                    cf: cf_name(cf).into(),
                    ..Default::default()
                };
                let body = self
                    .call(store_id, "/internal/v1/raw/get", request.encode_to_vec())
                    .await?;
                let response = RawGetResponse::decode(body).map_err(undecodable)?;
                error_from_wire(store_id, response.region_error.as_ref(), &response.error)?;
                Ok(KvOutcome::Value(
                    (!response.not_found).then_some(response.value),
                ))
            }
            KvOp::Put {
                cf,
                key,
                value,
                session,
            } => {
                let request = RawPutRequest {
                    key,
                    value,
                    cf: cf_name(cf).into(),
                    session: Some(session),
                    ..Default::default()
                };
                let body = self
                    .call(store_id, "/internal/v1/raw/put", request.encode_to_vec())
                    .await?;
                let response = RawPutResponse::decode(body).map_err(undecodable)?;
                error_from_wire(store_id, response.region_error.as_ref(), &response.error)?;
                Ok(KvOutcome::Written {
                    replayed: response.outcome() == WriteOutcome::Replayed,
                })
            }
            KvOp::Delete { cf, key, session } => {
                let request = RawDeleteRequest {
                    key,
                    cf: cf_name(cf).into(),
                    session: Some(session),
                    ..Default::default()
                };
                let body = self
                    .call(store_id, "/internal/v1/raw/delete", request.encode_to_vec())
                    .await?;
                let response = RawDeleteResponse::decode(body).map_err(undecodable)?;
                error_from_wire(store_id, response.region_error.as_ref(), &response.error)?;
                Ok(KvOutcome::Written {
                    replayed: response.outcome() == WriteOutcome::Replayed,
                })
            }
            KvOp::ScanRegion {
                cf,
                start,
                end,
                limit,
                max_bytes,
            } => {
                let request = RawScanRequest {
                    start_key: start,
                    end_key: end,
                    limit: u32::try_from(limit).unwrap_or(u32::MAX),
                    max_bytes: max_bytes as u64,
                    cf: cf_name(cf).into(),
                    ..Default::default()
                };
                let body = self
                    .call(store_id, "/internal/v1/raw/scan", request.encode_to_vec())
                    .await?;
                let response = RawScanResponse::decode(body).map_err(undecodable)?;
                error_from_wire(store_id, response.region_error.as_ref(), &response.error)?;
                Ok(KvOutcome::Pairs {
                    pairs: response
                        .kvs
                        .into_iter()
                        .map(|kv| (kv.key, kv.value))
                        .collect(),
                    region_end: response.region_end_key,
                })
            }
        }
    }

    async fn forward_txn(self, store_id: u64, request: TxnRequest) -> Result<KvOutcome> {
        let body = self
            .call(store_id, TXN_PATH, request.encode_to_vec())
            .await?;
        let response = TxnResponse::decode(body).map_err(|e| Error::Forward {
            store_id,
            message: format!("undecodable response: {e}"),
            maybe_delivered: true,
        })?;
        error_from_wire(store_id, response.region_error.as_ref(), &response.error)?;
        Ok(KvOutcome::Txn(Box::new(response)))
    }

    async fn forward_raft_command(
        self,
        store_id: u64,
        request: RaftCmdRequest,
    ) -> Result<RaftCmdResponse> {
        let body = self
            .call(store_id, RAFT_CMD_PATH, request.encode_to_vec())
            .await?;
        RaftCmdResponse::decode(body).map_err(|e| Error::Forward {
            store_id,
            message: format!("undecodable response: {e}"),
            maybe_delivered: true,
        })
    }
}

/// One POST to another node's peer listener.
struct Post<'a> {
    path: &'a str,
    content_type: &'static str,
    timeout: Duration,
    body: Vec<u8>,
}

impl Forwarder for HttpForwarder {
    fn forward_one_shot(
        &self,
        store_id: u64,
        body: Vec<u8>,
    ) -> BoxFuture<'static, Result<serde_json::Value>> {
        Box::pin(self.clone().forward_one_shot_to(store_id, body))
    }

    fn forward(&self, store_id: u64, op: KvOp) -> BoxFuture<'static, Result<KvOutcome>> {
        Box::pin(self.clone().forward_op(store_id, op))
    }

    fn forward_command(
        &self,
        store_id: u64,
        request: RaftCmdRequest,
    ) -> BoxFuture<'static, Result<RaftCmdResponse>> {
        Box::pin(self.clone().forward_raft_command(store_id, request))
    }
}

/// Encodes an error for a raw response: `(region_error, error)`.
pub fn error_to_wire(err: &Error) -> (Option<errorpb::Error>, String) {
    match err {
        Error::Store(
            e @ (StoreError::NotLeader { .. }
            | StoreError::RegionNotFound(_)
            | StoreError::KeyNotInRegion { .. }
            | StoreError::EpochNotMatch { .. }
            | StoreError::StaleCommand
            | StoreError::StoreNotMatch { .. }
            | StoreError::ServerIsBusy(_)),
        ) => (Some(e.to_pb()), String::new()),
        other => (None, format!("{}: {other}", other.code())),
    }
}

/// Decodes the error fields of a raw response from store `store_id`; `Ok` if neither is
/// set. The inverse of [`error_to_wire`] for every error a remote execution produces.
pub fn error_from_wire(
    store_id: u64,
    region_error: Option<&errorpb::Error>,
    error: &str,
) -> Result<()> {
    if let Some(region_error) = region_error {
        return Err(Error::Store(StoreError::from_pb(region_error)));
    }
    if error.is_empty() {
        return Ok(());
    }
    let (code, message) = error.split_once(": ").unwrap_or(("internal", error));
    Err(match code {
        "timeout" => Error::Store(StoreError::Timeout),
        "unavailable" => Error::Store(StoreError::Stopped),
        "too_large" => Error::TooLarge(message.to_string()),
        "not_found" => Error::NotFound,
        "idempotency_key_reused" => Error::RequestIdReused,
        "invalid_request"
        | "invalid_cf"
        | "empty_key"
        | "key_too_large"
        | "reserved_key"
        | "command_not_allowed"
        | "bad_escape" => Error::Store(StoreError::InvalidRequest(message.to_string())),
        _ => Error::Io(format!("store {store_id}: {message}")),
    })
}

#[cfg(test)]
mod tests {
    use tinykv_actors::Cf;
    use tinykv_proto::metapb;

    use super::*;

    #[test]
    fn errors_survive_the_wire_with_their_code_and_retry_semantics() {
        let errors = [
            Error::Store(StoreError::NotLeader {
                region_id: 1,
                leader: Some(metapb::Peer { id: 3, store_id: 3 }),
            }),
            Error::Store(StoreError::EpochNotMatch {
                message: "stale".into(),
                current_regions: vec![],
            }),
            Error::Store(StoreError::StaleCommand),
            Error::Store(StoreError::ServerIsBusy("full".into())),
            Error::Store(StoreError::Timeout),
            Error::Store(StoreError::Stopped),
            Error::Store(StoreError::InvalidRequest("bad cf".into())),
            Error::Store(StoreError::Engine("disk on fire".into())),
        ];
        for err in errors {
            let (region_error, error) = error_to_wire(&err);
            let back = error_from_wire(2, region_error.as_ref(), &error).unwrap_err();
            assert_eq!(back.code(), err.code(), "{err:?} came back as {back:?}");
            assert_eq!(back.status(), err.status(), "{err:?}");
            assert_eq!(back.is_retryable(), err.is_retryable(), "{err:?}");
        }
        assert!(error_from_wire(2, None, "").is_ok());
    }

    #[tokio::test]
    async fn an_unreachable_node_was_certainly_not_reached() {
        // Bind and drop a listener to find a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let book = AddressBook::new([crate::config::StoreAddress {
            id: 2,
            raft_addr: format!("127.0.0.1:{port}"),
            http_addr: "127.0.0.1:1".into(),
        }]);
        let forwarder = HttpForwarder::new(book, Duration::from_secs(1), None).unwrap();
        let op = KvOp::Put {
            cf: Cf::Default,
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            session: crate::kv_service::write_session(1, None, Duration::from_secs(60)),
        };
        for store_id in [2, 9] {
            match forwarder.forward(store_id, op.clone()).await {
                Err(Error::Forward {
                    maybe_delivered: false,
                    ..
                }) => {}
                other => panic!("store {store_id}: unexpected {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_partitioned_store_fails_fast_without_sending() {
        // Something listens but never answers: only fault injection makes this fail fast.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let book = AddressBook::new([crate::config::StoreAddress {
            id: 2,
            raft_addr: listener.local_addr().unwrap().to_string(),
            http_addr: "127.0.0.1:1".into(),
        }]);
        let faults = Faults::enabled();
        faults.partition([2]).unwrap();
        let forwarder = HttpForwarder::new(book, Duration::from_secs(30), None)
            .unwrap()
            .with_faults(faults);
        let op = KvOp::Get {
            cf: Cf::Default,
            key: b"k".to_vec(),
        };
        let started = std::time::Instant::now();
        match forwarder.forward(2, op).await {
            Err(
                err @ Error::Forward {
                    maybe_delivered: false,
                    ..
                },
            ) => assert!(err.to_string().contains("fault injection"), "{err}"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        listener.set_nonblocking(true).unwrap();
        assert!(listener.accept().is_err(), "no connection was made");
    }
}
