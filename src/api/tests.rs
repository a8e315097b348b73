//! The whole handler stack against a real one-store raftstore: a client's view of the
//! API, the internal endpoints other nodes use, and the admin views and operations. A
//! second, empty store (bootstrapped without any region) shows how a node that lacks a
//! region reaches the one that holds it, for client requests and admin operations alike.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{test, App, HttpServer};
use prost::Message;
use serde_json::Value;
use tinykv_actors::bootstrap::ensure_bootstrapped;
use tinykv_actors::{start_store, Cf, Engine, RaftStoreConfig, StoreHandle, Transport};
use tinykv_proto::kvrpcpb::{RawGetRequest, RawGetResponse, RawPutRequest, RawPutResponse};
use tinykv_proto::raft_cmdpb::{
    CmdType, RaftCmdRequest, RaftCmdResponse, RaftRequestHeader, Request, SnapRequest,
};
use tinykv_proto::raft_serverpb::RaftMessage;

use super::*;
use crate::api::admission;
use crate::config::StoreAddress;
use crate::forward::HttpForwarder;
use crate::service::{write_session, Forwarder, KvOp, KvOutcome, ServiceTimeouts};
use crate::Error;

/// A network that loses everything: a one-store cluster never needs it.
struct NoNetwork;

impl Transport for NoNetwork {
    fn send(&self, _: RaftMessage) {}
}

/// A bootstrapped one-store raftstore in a temporary directory.
struct SingleStore {
    store: StoreHandle,
    state: web::Data<ApiState>,
    _dir: tempfile::TempDir,
}

impl SingleStore {
    /// Store 1, holding region 1 (the whole key space) and alone in its address book.
    async fn start() -> SingleStore {
        let addresses = AddressBook::new([unreachable_address(1)]);
        SingleStore::start_as(1, &[1], addresses).await
    }

    /// Store `store_id` of a cluster whose region 1 lives on `initial_stores`, reaching
    /// other stores at `addresses`.
    async fn start_as(
        store_id: u64,
        initial_stores: &[u64],
        addresses: AddressBook,
    ) -> SingleStore {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path().join("db")).unwrap();
        ensure_bootstrapped(&engine, 1, store_id, initial_stores).unwrap();
        let store = start_store(RaftStoreConfig::for_tests(), engine, Arc::new(NoNetwork))
            .await
            .unwrap();
        let timeouts = ServiceTimeouts {
            request: Duration::from_secs(10),
            attempt: Duration::from_secs(3),
            write_ttl: Duration::from_secs(60),
            txn_max_age: Duration::from_secs(540),
        };
        let forwarder: Arc<dyn Forwarder> =
            Arc::new(HttpForwarder::new(addresses.clone(), timeouts.attempt, None).unwrap());
        let limits = ApiConfig {
            max_key_bytes: 32,
            max_value_bytes: 1024,
            max_scan_bytes: 1000,
            ..Default::default()
        };
        let admin = AdminService::new(
            store.router(),
            forwarder.clone(),
            addresses.clone(),
            timeouts,
        );
        let pd_config = crate::config::PdConfig {
            max_peer_count: 1,
            // No heartbeat loop runs here; tests send heartbeats themselves.
            heartbeat_interval_ms: 100,
            ..Default::default()
        };
        let pd_server = crate::placement::PdServer::new(
            store.router(),
            admin.clone(),
            addresses.clone(),
            crate::placement::PdSetup {
                config: pd_config,
                cluster_id: 1,
                initial_stores: addresses.all(),
                timeout: timeouts.attempt,
                root_token_sha256: None,
            },
            None,
        )
        .unwrap();
        let pd = crate::placement::PdClient::new(
            Some(pd_server),
            store_id,
            addresses.clone(),
            vec![],
            timeouts.attempt,
            None,
        )
        .unwrap();
        let pd = Arc::new(pd);
        let (service, txn) = crate::txn::client::TxnClient::over_pd_oracle(
            KvService::new(store.router(), forwarder, timeouts)
                .with_address_book(addresses.clone()),
            pd.clone(),
        );
        let leader_drain =
            crate::leader_drain::LeaderDrain::new(store_id, store.router(), admin.clone());
        let state = web::Data::new(ApiState {
            leader_drain,
            txn,
            service,
            admin,
            pd,
            limits,
            addresses,
            health_probe: crate::api::admin::health_probe_client(None).unwrap(),
            auth: Arc::new(crate::auth::AuthCache::in_memory(Default::default())),
        });
        SingleStore {
            store,
            state,
            _dir: dir,
        }
    }

    /// Serves the node's client API and its node-to-node API (a peer listener, without
    /// raft streams) on free local ports.
    async fn serve(&self) -> Served {
        let state = self.state.clone();
        let server = HttpServer::new(move || App::new().configure(configure(state.clone())))
            .workers(1)
            .disable_signals()
            .bind("127.0.0.1:0")
            .unwrap();
        let http = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = listener.local_addr().unwrap();
        let store_id = self.state.service.store_id();
        let peers = crate::peer_listener::PeerListener::new(
            crate::peer_api::Identity::new(1, store_id),
            tokio::runtime::Handle::current(),
            None,
        );
        peers.serve_api(Arc::new(crate::peer_api::PeerApi {
            service: self.state.service.clone(),
            txn: self.state.txn.clone(),
            pd: self.state.pd.clone(),
            limits: self.state.limits.clone(),
        }));
        let peer_task = actix_rt::spawn(peers.run(listener));
        Served {
            http,
            peer,
            handle,
            peer_task,
        }
    }

    async fn stop(self) {
        drop(self.state);
        self.store.shutdown().await;
    }
}

/// A node's two listeners, served by [`SingleStore::serve`].
struct Served {
    http: std::net::SocketAddr,
    peer: std::net::SocketAddr,
    handle: actix_web::dev::ServerHandle,
    peer_task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// A forwarder that reaches this node as store 1.
    fn forwarder(&self) -> HttpForwarder {
        let book = AddressBook::new([self.address(1)]);
        HttpForwarder::new(book, Duration::from_secs(3), None).unwrap()
    }

    /// The address-book entry of store `id` served here.
    fn address(&self, id: u64) -> StoreAddress {
        StoreAddress {
            id,
            raft_addr: self.peer.to_string(),
            http_addr: self.http.to_string(),
        }
    }

    async fn stop(self) {
        self.peer_task.abort();
        self.handle.stop(true).await;
    }
}

/// An address-book entry for store `id` where nothing listens.
fn unreachable_address(id: u64) -> StoreAddress {
    StoreAddress {
        id,
        raft_addr: "127.0.0.1:1".into(),
        http_addr: "127.0.0.1:2".into(),
    }
}

/// Sends a `TestRequest` to an app; evaluates to the status and the body.
macro_rules! call {
    ($app:expr, $request:expr) => {{
        let response = test::call_service($app, $request.to_request()).await;
        let status: StatusCode = response.status();
        (status, test::read_body(response).await)
    }};
}

/// A raw put of `key` (value `v`) with a fresh session.
fn put_op(key: &[u8]) -> KvOp {
    KvOp::Put {
        cf: Cf::Default,
        key: key.to_vec(),
        value: b"v".to_vec(),
        session: write_session(0, None, Duration::from_secs(60)),
    }
}

/// Runs `attempt` until it gives something else than a retryable error (up to 5 s): the
/// store may still be electing itself. KvService retries the same way.
async fn until_elected<F, Fut, T>(mut attempt: F) -> crate::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::Result<T>>,
{
    let mut outcome = attempt().await;
    for _ in 0..100 {
        match &outcome {
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                outcome = attempt().await;
            }
            _ => break,
        }
    }
    outcome
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

fn error_code(body: &[u8]) -> String {
    json(body)["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[actix_rt::test]
async fn a_client_puts_gets_scans_and_deletes_byte_keys() {
    let node = SingleStore::start().await;
    let app = test::init_service(App::new().configure(configure(node.state.clone()))).await;

    let (status, body) = call!(
        &app,
        test::TestRequest::put()
            .uri("/v1/kv/a%2Fb")
            .set_payload("hello")
    );
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(
        json(&body),
        serde_json::json!({ "ok": true, "replayed": false })
    );
    let (status, body) = call!(&app, test::TestRequest::get().uri("/v1/kv/a%2Fb"));
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello"[..]));
    // An unescaped slash is the same key.
    let (_, body) = call!(&app, test::TestRequest::get().uri("/v1/kv/a/b"));
    assert_eq!(&body[..], b"hello");

    call!(
        &app,
        test::TestRequest::put()
            .uri("/v1/kv/%FD")
            .set_payload(vec![0u8, 1])
    );
    call!(
        &app,
        test::TestRequest::put()
            .uri("/v1/kv/c?cf=lock")
            .set_payload("locked")
    );
    let (status, body) = call!(&app, test::TestRequest::get().uri("/v1/kv/%FD"));
    assert_eq!((status, &body[..]), (StatusCode::OK, &[0u8, 1][..]));

    let (status, body) = call!(&app, test::TestRequest::get().uri("/v1/kv"));
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::BAD_REQUEST, "not_utf8")
    );
    let (status, body) = call!(&app, test::TestRequest::get().uri("/v1/kv?encoding=base64"));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json(&body),
        serde_json::json!({
            "kvs": [{ "key": "YS9i", "value": "aGVsbG8=" }, { "key": "/Q==", "value": "AAE=" }],
            "encoding": "base64",
            "next": null
        })
    );
    let (_, body) = call!(
        &app,
        test::TestRequest::get().uri("/v1/kv?start=a&end=%FD&limit=5")
    );
    assert_eq!(
        json(&body)["kvs"],
        serde_json::json!([{ "key": "a/b", "value": "hello" }])
    );
    let (_, body) = call!(&app, test::TestRequest::get().uri("/v1/kv?cf=lock"));
    assert_eq!(
        json(&body)["kvs"],
        serde_json::json!([{ "key": "c", "value": "locked" }])
    );

    let (status, _) = call!(&app, test::TestRequest::delete().uri("/v1/kv/a%2Fb"));
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call!(&app, test::TestRequest::get().uri("/v1/kv/a%2Fb"));
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, _) = call!(&app, test::TestRequest::get().uri("/v1/kv/c"));
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "column families are separate"
    );

    let (status, body) = call!(&app, test::TestRequest::get().uri("/health?live"));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json(&body),
        serde_json::json!({ "status": "ok", "store_id": 1 })
    );

    drop(app);
    node.stop().await;
}

#[actix_rt::test]
async fn a_write_is_named_by_its_idempotency_key_and_applies_once() {
    let node = SingleStore::start().await;
    let app = test::init_service(App::new().configure(configure(node.state.clone()))).await;
    let put = |key: &'static str, value: &'static str| {
        test::TestRequest::put()
            .uri("/v1/kv/k")
            .insert_header(("Idempotency-Key", key))
            .set_payload(value)
    };
    // Without a key the node makes one and names it.
    let response = test::call_service(
        &app,
        test::TestRequest::put()
            .uri("/v1/kv/k")
            .set_payload("v0")
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let made = response
        .headers()
        .get("idempotency-key")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(made.starts_with("1.") && made.len() == 18, "{made}");

    let response = test::call_service(&app, put("order-1", "v1").to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers().get("idempotency-key").unwrap(),
        "order-1"
    );
    assert!(response.headers().get("idempotent-replayed").is_none());
    let (_, body) = call!(&app, put("order-2", "v2"));
    assert_eq!(json(&body)["replayed"], false);

    // The first write again: recognised, nothing changes.
    let response = test::call_service(&app, put("order-1", "v1").to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers().get("idempotent-replayed").unwrap(),
        "true"
    );
    let body = test::read_body(response).await;
    assert_eq!(
        json(&body),
        serde_json::json!({ "ok": true, "replayed": true })
    );
    let (_, body) = call!(&app, test::TestRequest::get().uri("/v1/kv/k"));
    assert_eq!(&body[..], b"v2");

    // The key for another write to the same key: 422, nothing changes.
    let (status, body) = call!(&app, put("order-1", "v3"));
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let error = &json(&body)["error"];
    assert_eq!(error["code"], "idempotency_key_reused");
    assert_eq!(error["outcome"], "not_applied");
    assert_eq!(error["idempotency_key"], "order-1");
    let (status, _) = call!(
        &app,
        test::TestRequest::delete()
            .uri("/v1/kv/k")
            .insert_header(("Idempotency-Key", "order-1"))
    );
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, body) = call!(&app, test::TestRequest::get().uri("/v1/kv/k"));
    assert_eq!(&body[..], b"v2");

    // Malformed keys are refused before anything happens.
    let long = "x".repeat(129);
    for bad in [long.as_str(), "has space", "tab\there", "é"] {
        let request = test::TestRequest::put()
            .uri("/v1/kv/k")
            .insert_header((
                "Idempotency-Key",
                actix_web::http::header::HeaderValue::from_bytes(bad.as_bytes()).unwrap(),
            ))
            .set_payload("bad");
        let (status, body) = call!(&app, request);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert_eq!(error_code(&body), "invalid_idempotency_key", "{bad:?}");
    }
    let twice = test::TestRequest::put()
        .uri("/v1/kv/k")
        .append_header(("Idempotency-Key", "a"))
        .append_header(("Idempotency-Key", "b"))
        .set_payload("bad");
    let (status, body) = call!(&app, twice);
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::BAD_REQUEST, "invalid_idempotency_key")
    );
    let (_, body) = call!(&app, test::TestRequest::get().uri("/v1/kv/k"));
    assert_eq!(&body[..], b"v2");
    drop(app);
    node.stop().await;
}

#[actix_rt::test]
async fn bad_requests_are_refused_as_json_and_change_nothing() {
    let node = SingleStore::start().await;
    let app = test::init_service(App::new().configure(configure(node.state.clone()))).await;

    let cases = [
        (
            test::TestRequest::put()
                .uri("/v1/kv/k")
                .set_payload(vec![b'x'; 1025]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        (
            test::TestRequest::put()
                .uri(&format!("/v1/kv/{}", "k".repeat(33)))
                .set_payload("v"),
            StatusCode::BAD_REQUEST,
            "key_too_large",
        ),
        (
            test::TestRequest::put()
                .uri("/v1/kv/k?cf=raft")
                .set_payload("v"),
            StatusCode::BAD_REQUEST,
            "invalid_cf",
        ),
        (
            test::TestRequest::put().uri("/v1/kv/").set_payload("v"),
            StatusCode::BAD_REQUEST,
            "empty_key",
        ),
        (
            test::TestRequest::get().uri("/v1/kv/k?ttl=3"),
            StatusCode::BAD_REQUEST,
            "unknown_parameter",
        ),
        (
            test::TestRequest::get().uri("/v1/kv?limit=10001"),
            StatusCode::BAD_REQUEST,
            "invalid_limit",
        ),
        (
            test::TestRequest::post().uri("/v1/kv/k"),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            test::TestRequest::get().uri("/v2/anything"),
            StatusCode::NOT_FOUND,
            "route_not_found",
        ),
        (
            test::TestRequest::get().uri("/v1/admin/regions/x"),
            StatusCode::BAD_REQUEST,
            "invalid_id",
        ),
    ];
    for (request, status, code) in cases {
        let (got_status, body) = call!(&app, request);
        assert_eq!(
            (got_status, error_code(&body).as_str()),
            (status, code),
            "{body:?}"
        );
    }
    let (status, _) = call!(&app, test::TestRequest::get().uri("/v1/kv?encoding=base64"));
    assert_eq!(status, StatusCode::OK);
    let (_, body) = call!(&app, test::TestRequest::get().uri("/v1/kv"));
    assert_eq!(
        json(&body)["kvs"],
        serde_json::json!([]),
        "nothing was written"
    );

    drop(app);
    node.stop().await;
}

/// POSTs `body` with `content_type` to `path` of the peer listener at `peer`; returns the
/// status and the body.
async fn post_peer(
    peer: std::net::SocketAddr,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, bytes::Bytes) {
    let response = crate::security::http_client_builder()
        .build()
        .unwrap()
        .post(format!("http://{peer}{path}"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.bytes().await.unwrap())
}

#[actix_rt::test]
async fn the_node_to_node_api_speaks_protobuf_on_the_peer_listener_only() {
    let node = SingleStore::start().await;
    let served = node.serve().await;
    let protobuf = crate::forward::PROTOBUF_CONTENT_TYPE;
    let post = |path: &'static str, body: Vec<u8>| post_peer(served.peer, path, protobuf, body);

    let put = RawPutRequest {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    // The store may still be electing itself.
    let mut answer = RawPutResponse::default();
    for _ in 0..100 {
        let (status, body) = post("/internal/v1/raw/put", put.encode_to_vec()).await;
        assert_eq!(status, 200);
        answer = RawPutResponse::decode(body).unwrap();
        if answer == RawPutResponse::default() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answer, RawPutResponse::default());

    let get = |key: &[u8], cf: &str| RawGetRequest {
        key: key.to_vec(),
        cf: cf.into(),
        ..Default::default()
    };
    let (_, body) = post("/internal/v1/raw/get", get(b"k", "default").encode_to_vec()).await;
    let response = RawGetResponse::decode(body).unwrap();
    assert_eq!(
        (response.value.as_slice(), response.not_found),
        (&b"v"[..], false)
    );
    let (_, body) = post("/internal/v1/raw/get", get(b"nope", "").encode_to_vec()).await;
    assert!(RawGetResponse::decode(body).unwrap().not_found);
    let (_, body) = post("/internal/v1/raw/get", get(b"k", "raft").encode_to_vec()).await;
    assert!(RawGetResponse::decode(body)
        .unwrap()
        .error
        .starts_with("invalid_request: "));

    // The client API's key rules hold here too: no empty, oversized or reserved keys.
    for key in [&b""[..], &[b'x'; 33][..], b"\xffpd/cluster"] {
        let put = RawPutRequest {
            key: key.to_vec(),
            value: b"not json".to_vec(),
            ..Default::default()
        };
        let (_, body) = post("/internal/v1/raw/put", put.encode_to_vec()).await;
        let error = RawPutResponse::decode(body).unwrap().error;
        assert!(
            ["empty_key", "key_too_large", "reserved_key"]
                .iter()
                .any(|code| error.starts_with(code)),
            "{key:?}: {error}"
        );
    }
    assert_eq!(
        node.store
            .engine()
            .get(Cf::Default, b"\xffpd/cluster")
            .unwrap(),
        None
    );

    let (status, body) = post("/internal/v1/raw/get", vec![0xff, 0xff]).await;
    assert_eq!((status, error_code(&body).as_str()), (400, "bad_protobuf"));
    let (status, body) = post_peer(served.peer, "/internal/v1/raw/get", "text/plain", vec![]).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (415, "unsupported_media_type")
    );
    let (status, body) = post("/internal/v1/nothing", vec![]).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (404, "route_not_found")
    );

    // None of it is on the client listener.
    let app = test::init_service(App::new().configure(configure(node.state.clone()))).await;
    let (status, body) = call!(
        &app,
        test::TestRequest::post()
            .uri("/internal/v1/raw/put")
            .insert_header(("content-type", protobuf))
            .set_payload(put.encode_to_vec())
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::NOT_FOUND, "route_not_found")
    );

    drop(app);
    served.stop().await;
    node.stop().await;
}

#[actix_rt::test]
async fn admin_views_show_the_region_and_the_store() {
    let node = SingleStore::start().await;
    let app = test::init_service(App::new().configure(configure(node.state.clone()))).await;
    // A write proves the store has elected itself.
    call!(
        &app,
        test::TestRequest::put().uri("/v1/kv/x").set_payload("1")
    );

    let (status, body) = call!(&app, test::TestRequest::get().uri("/v1/admin/regions"));
    assert_eq!(status, StatusCode::OK);
    let region = &json(&body)["regions"][0];
    assert_eq!(region["id"], 1);
    assert_eq!(region["start_key"], "");
    assert_eq!(
        region["peers"],
        serde_json::json!([{ "id": 1, "store_id": 1 }])
    );
    assert_eq!(
        region["leader"],
        serde_json::json!({ "id": 1, "store_id": 1 })
    );
    assert!(region["applied_index"].as_u64().unwrap() >= 6);

    let (status, _) = call!(&app, test::TestRequest::get().uri("/v1/admin/regions/1"));
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call!(&app, test::TestRequest::get().uri("/v1/admin/regions/9"));
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::NOT_FOUND, "region_not_found")
    );

    let (_, body) = call!(&app, test::TestRequest::get().uri("/v1/admin/stores/1"));
    let store = json(&body);
    assert_eq!(
        (store["local"].clone(), store["region_count"].clone()),
        (Value::Bool(true), 1.into())
    );
    assert_eq!(store["leader_count"], 1);
    let (status, _) = call!(&app, test::TestRequest::get().uri("/v1/admin/stores/2"));
    assert_eq!(status, StatusCode::NOT_FOUND);
    node.state.addresses.insert(StoreAddress {
        id: 2,
        raft_addr: "10.0.0.2:20160".into(),
        http_addr: "10.0.0.2:8080".into(),
    });
    let (_, body) = call!(&app, test::TestRequest::get().uri("/v1/admin/stores/2"));
    assert_eq!(json(&body)["local"], false);

    drop(app);
    node.stop().await;
}

#[actix_rt::test]
async fn a_forwarded_request_executes_on_the_target_node() {
    let node = SingleStore::start().await;
    let served = node.serve().await;

    let forwarder = served.forwarder();
    let put = put_op(b"k");
    let outcome = until_elected(|| forwarder.forward(1, put.clone())).await;
    assert_eq!(outcome.unwrap(), KvOutcome::Written { replayed: false });
    assert_eq!(
        forwarder.forward(1, put.clone()).await.unwrap(),
        KvOutcome::Written { replayed: true },
        "the same request again is a replay"
    );
    let get = |key: &[u8]| KvOp::Get {
        cf: Cf::Default,
        key: key.to_vec(),
    };
    assert_eq!(
        forwarder.forward(1, get(b"k")).await.unwrap(),
        KvOutcome::Value(Some(b"v".to_vec()))
    );
    assert_eq!(
        forwarder.forward(1, get(b"absent")).await.unwrap(),
        KvOutcome::Value(None)
    );
    let scan = KvOp::ScanRegion {
        cf: Cf::Default,
        start: vec![],
        end: vec![],
        limit: 10,
        max_bytes: 1024,
    };
    assert_eq!(
        forwarder.forward(1, scan).await.unwrap(),
        KvOutcome::Pairs {
            pairs: vec![(b"k".to_vec(), b"v".to_vec())],
            region_end: vec![],
        }
    );

    served.stop().await;
    node.stop().await;
}

/// A read of region `region_id`, as a raw command: answered by its leader with the region.
fn region_read(region_id: u64) -> RaftCmdRequest {
    RaftCmdRequest {
        header: Some(RaftRequestHeader {
            region_id,
            ..Default::default()
        }),
        requests: vec![Request {
            cmd_type: CmdType::Snap as i32,
            snap: Some(SnapRequest {}),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn header_error(response: &RaftCmdResponse) -> Option<tinykv_actors::Error> {
    response
        .header
        .as_ref()
        .and_then(|h| h.error.as_ref())
        .map(tinykv_actors::Error::from_pb)
}

#[actix_rt::test]
async fn admin_operations_refuse_bad_input_and_change_nothing() {
    let node = SingleStore::start().await;
    let app = test::init_service(App::new().configure(configure(node.state.clone()))).await;
    let post = |path: &str, body: &str| {
        test::TestRequest::post()
            .uri(path)
            .insert_header(("content-type", "application/json"))
            .set_payload(body.to_string())
    };

    let cases = [
        (
            post("/v1/admin/regions/1/split", r#"{"key": ""}"#),
            StatusCode::BAD_REQUEST,
            "invalid_split_key",
        ),
        (
            post("/v1/admin/regions/1/split", "{}"),
            StatusCode::BAD_REQUEST,
            "bad_json",
        ),
        (
            post("/v1/admin/regions/1/split", "key=a"),
            StatusCode::BAD_REQUEST,
            "bad_json",
        ),
        (
            post("/v1/admin/regions/one/split", r#"{"key": "a"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_id",
        ),
        (
            post(
                "/v1/admin/regions/1/split",
                &format!(r#"{{"key": "{}"}}"#, "k".repeat(70_000)),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        (
            post("/v1/admin/regions/1/peers", r#"{"store_id": 9}"#),
            StatusCode::BAD_REQUEST,
            "unknown_store",
        ),
        (
            post("/v1/admin/regions/1/peers", r#"{"store_id": 1}"#),
            StatusCode::BAD_REQUEST,
            "peer_exists",
        ),
        (
            post("/v1/admin/regions/1/peers", r#"{"store": 2}"#),
            StatusCode::BAD_REQUEST,
            "bad_json",
        ),
        (
            test::TestRequest::delete().uri("/v1/admin/regions/1/peers/7"),
            StatusCode::NOT_FOUND,
            "peer_not_found",
        ),
        (
            test::TestRequest::delete().uri("/v1/admin/regions/1/peers/1"),
            StatusCode::BAD_REQUEST,
            "last_peer",
        ),
        (
            test::TestRequest::delete().uri("/v1/admin/regions/1/peers/x"),
            StatusCode::BAD_REQUEST,
            "invalid_id",
        ),
        (
            post("/v1/admin/regions/1/transfer-leader", r#"{"peer_id": 7}"#),
            StatusCode::NOT_FOUND,
            "peer_not_found",
        ),
        (
            post("/v1/admin/regions/1/transfer-leader", r#"{"peer_id": "1"}"#),
            StatusCode::BAD_REQUEST,
            "bad_json",
        ),
        (
            post("/v1/admin/regions/9/transfer-leader", r#"{"peer_id": 1}"#),
            StatusCode::NOT_FOUND,
            "region_not_found",
        ),
        (
            test::TestRequest::get().uri("/v1/admin/regions/1/split"),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            test::TestRequest::get().uri("/v1/admin/regions/1/peers/1"),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (request, status, code) in cases {
        let (got_status, body) = call!(&app, request);
        assert_eq!(
            (got_status, error_code(&body).as_str()),
            (status, code),
            "{}",
            String::from_utf8_lossy(&body)
        );
    }

    let (status, body) = call!(
        &app,
        post("/v1/admin/regions/1/transfer-leader", r#"{"peer_id": 1}"#)
    );
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(json(&body), serde_json::json!({ "ok": true }));

    let (_, body) = call!(&app, test::TestRequest::get().uri("/v1/admin/regions/1"));
    let region = json(&body);
    assert_eq!(
        region["epoch"],
        serde_json::json!({ "conf_ver": 1, "version": 1 }),
        "nothing changed"
    );
    assert_eq!(
        region["peers"],
        serde_json::json!([{ "id": 1, "store_id": 1 }])
    );
    assert!(region.get("approximate_size").is_some());

    drop(app);
    node.stop().await;
}

#[actix_rt::test]
async fn the_admin_service_checks_its_input_against_the_leader() {
    let node = SingleStore::start().await;
    let admin = node.state.admin.clone();

    admin.transfer_leader(1, 1).await.unwrap();
    let err = admin.add_peer(1, 5).await.unwrap_err();
    assert_eq!(
        (err.code(), err.status()),
        ("unknown_store", StatusCode::BAD_REQUEST)
    );
    for keys in [vec![], vec![vec![]], vec![b"b".to_vec(), b"a".to_vec()]] {
        let err = admin.split(1, keys.clone()).await.unwrap_err();
        assert_eq!(
            (err.code(), err.status()),
            ("invalid_split_key", StatusCode::BAD_REQUEST),
            "{keys:?}"
        );
    }
    let err = admin.remove_peer(1, 2).await.unwrap_err();
    assert_eq!(
        (err.code(), err.status()),
        ("peer_not_found", StatusCode::NOT_FOUND)
    );
    let err = admin.transfer_leader(4, 1).await.unwrap_err();
    assert_eq!(
        (err.code(), err.status()),
        ("region_not_found", StatusCode::NOT_FOUND)
    );

    drop(admin);
    node.stop().await;
}

#[actix_rt::test]
async fn a_raw_command_round_trips_through_the_internal_endpoint() {
    let node = SingleStore::start().await;
    let served = node.serve().await;
    let book = AddressBook::new([served.address(1)]);
    let forwarder = HttpForwarder::new(book, Duration::from_secs(3), None).unwrap();

    // The store may still be electing itself: a read succeeds once it leads.
    let mut response = forwarder.forward_command(1, region_read(1)).await.unwrap();
    for _ in 0..100 {
        match header_error(&response) {
            Some(e) if e.is_retryable() => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                response = forwarder.forward_command(1, region_read(1)).await.unwrap();
            }
            _ => break,
        }
    }
    assert_eq!(header_error(&response).map(|e| e.to_string()), None);
    let region = response.responses[0]
        .snap
        .as_ref()
        .unwrap()
        .region
        .as_ref()
        .unwrap();
    assert_eq!((region.id, region.peers.len()), (1, 1));

    let response = forwarder.forward_command(1, region_read(9)).await.unwrap();
    assert!(
        matches!(
            header_error(&response),
            Some(tinykv_actors::Error::RegionNotFound(9))
        ),
        "{response:?}"
    );

    let (status, body) = post_peer(
        served.peer,
        crate::forward::RAFT_CMD_PATH,
        crate::forward::PROTOBUF_CONTENT_TYPE,
        vec![0xff, 0xff],
    )
    .await;
    assert_eq!((status, error_code(&body).as_str()), (400, "bad_protobuf"));

    served.stop().await;
    node.stop().await;
}

#[actix_rt::test]
async fn a_store_without_the_region_reaches_the_store_that_has_it() {
    let holder = SingleStore::start().await;
    let served = holder.serve().await;
    let book = AddressBook::new([served.address(1), unreachable_address(2)]);
    let empty = SingleStore::start_as(2, &[1], book).await;
    assert!(empty
        .state
        .service
        .store()
        .regions()
        .await
        .unwrap()
        .is_empty());

    let service = &empty.state.service;
    service
        .put(
            Cf::Default,
            b"k".to_vec(),
            b"v".to_vec(),
            service.new_session(None),
        )
        .await
        .unwrap();
    assert_eq!(
        service.get(Cf::Default, b"k".to_vec()).await.unwrap(),
        Some(b"v".to_vec())
    );
    assert_eq!(
        holder
            .state
            .service
            .execute_local(KvOp::Get {
                cf: Cf::Default,
                key: b"k".to_vec(),
            })
            .await
            .unwrap(),
        KvOutcome::Value(Some(b"v".to_vec())),
        "the write landed on the store holding the region"
    );
    assert_eq!(
        service
            .scan(Cf::Default, vec![], vec![], 10, 1024)
            .await
            .unwrap()
            .pairs,
        vec![(b"k".to_vec(), b"v".to_vec())]
    );

    let admin = &empty.state.admin;
    admin.transfer_leader(1, 1).await.unwrap();
    let err = admin.add_peer(1, 1).await.unwrap_err();
    assert_eq!(err.code(), "peer_exists", "{err}");
    let err = admin.remove_peer(1, 3).await.unwrap_err();
    assert_eq!(err.code(), "peer_not_found", "{err}");
    let err = admin.transfer_leader(5, 1).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::NoSuchResource {
                code: "region_not_found",
                ..
            }
        ),
        "{err:?}"
    );

    empty.stop().await;
    served.stop().await;
    holder.stop().await;
}

#[actix_rt::test]
async fn a_region_splits_at_a_key_and_both_halves_serve() {
    let node = SingleStore::start().await;
    let app = test::init_service(App::new().configure(configure(node.state.clone()))).await;
    call!(
        &app,
        test::TestRequest::put().uri("/v1/kv/a").set_payload("1")
    );

    let (status, body) = call!(
        &app,
        test::TestRequest::post()
            .uri("/v1/admin/regions/1/split")
            .set_payload(r#"{"key": "m%2F"}"#)
    );
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let regions = json(&body)["regions"].clone();
    assert_eq!(
        (regions[0]["id"].clone(), regions[0]["end_key"].clone()),
        (1.into(), "m%2F".into())
    );
    assert_eq!(regions[1]["start_key"], "m%2F");
    assert_eq!(regions[0]["epoch"]["version"], 2);

    for key in ["b", "z"] {
        let (status, body) = call!(
            &app,
            test::TestRequest::put()
                .uri(&format!("/v1/kv/{key}"))
                .set_payload(key)
        );
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    }
    let (_, body) = call!(&app, test::TestRequest::get().uri("/v1/kv"));
    assert_eq!(
        json(&body)["kvs"],
        serde_json::json!([
            { "key": "a", "value": "1" },
            { "key": "b", "value": "b" },
            { "key": "z", "value": "z" }
        ])
    );
    let (status, body) = call!(
        &app,
        test::TestRequest::post()
            .uri("/v1/admin/regions/1/split")
            .set_payload(r#"{"key": "n"}"#)
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::BAD_REQUEST, "invalid_split_key"),
        "the left half ends before n"
    );
    let (_, body) = call!(&app, test::TestRequest::get().uri("/v1/admin/regions"));
    assert_eq!(json(&body)["regions"].as_array().unwrap().len(), 2);

    drop(app);
    node.stop().await;
}

#[actix_rt::test]
async fn a_peer_is_added_with_a_fresh_id_on_a_known_store() {
    let addresses = AddressBook::new([unreachable_address(1), unreachable_address(2)]);
    let node = SingleStore::start_as(1, &[1], addresses).await;
    let app = test::init_service(App::new().configure(configure(node.state.clone()))).await;

    let (status, body) = call!(
        &app,
        test::TestRequest::post()
            .uri("/v1/admin/regions/1/peers")
            .set_payload(r#"{"store_id": 2}"#)
    );
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let region = json(&body);
    assert_eq!(region["epoch"]["conf_ver"], 2);
    let peers = region["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 2);
    assert_eq!(peers[1]["store_id"], 2);
    assert!(peers[1]["id"].as_u64().unwrap() > 1, "a fresh peer id");

    // With store 2 unreachable the region has lost its quorum and may stop leading; the
    // local view shows the new membership (once the peer has taken in what its apply
    // path answered the client with).
    let mut peers = 0;
    for _ in 0..100 {
        let (_, body) = call!(&app, test::TestRequest::get().uri("/v1/admin/regions/1"));
        peers = json(&body)["peers"].as_array().unwrap().len();
        if peers == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(peers, 2);

    drop(app);
    node.stop().await;
}

#[actix_rt::test]
async fn fault_injection_endpoints_are_404_unless_enabled() {
    let addresses = AddressBook::new([unreachable_address(1), unreachable_address(2)]);
    let node = SingleStore::start_as(1, &[1], addresses).await;
    let path = "/v1/admin/faults/partition";
    let post = |body: &str| {
        test::TestRequest::post()
            .uri(path)
            .insert_header(("content-type", "application/json"))
            .set_payload(body.to_string())
    };

    let without = test::init_service(App::new().configure(configure(node.state.clone()))).await;
    let disabled = test::init_service(
        App::new()
            .app_data(web::Data::new(crate::faults::Faults::disabled()))
            .configure(configure(node.state.clone())),
    )
    .await;
    for app in [&without, &disabled] {
        for request in [
            post(r#"{"blocked_stores": [2]}"#),
            test::TestRequest::get().uri(path),
            test::TestRequest::delete().uri(path),
        ] {
            let (status, body) = call!(app, request);
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert_eq!(error_code(&body), "fault_injection_disabled");
        }
    }

    let faults = crate::faults::Faults::enabled();
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(faults.clone()))
            .configure(configure(node.state.clone())),
    )
    .await;
    let (status, body) = call!(&app, post(r#"{"blocked_stores": [2]}"#));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["blocked_stores"], serde_json::json!([2]));
    assert!(faults.is_blocked(2));
    for (body, code) in [
        (r#"{"blocked_stores": [1]}"#, "unknown_store"),
        (r#"{"blocked_stores": [7]}"#, "unknown_store"),
        (r#"{"stores": [2]}"#, "bad_json"),
        ("", "bad_json"),
    ] {
        let (status, answer) = call!(&app, post(body));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_code(&answer), code, "{body}");
    }
    let (status, body) = call!(&app, test::TestRequest::get().uri(path));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json(&body)["blocked_stores"],
        serde_json::json!([2]),
        "refused requests changed nothing"
    );
    let (status, _) = call!(&app, test::TestRequest::put().uri(path));
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, body) = call!(&app, test::TestRequest::delete().uri(path));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["blocked_stores"], serde_json::json!([]));
    assert!(!faults.is_blocked(2));

    drop((without, disabled, app));
    node.stop().await;
}

/// The value of `series` (a metric name and its labels, exactly as exposed) in the text
/// exposition `text`.
fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[actix_rt::test]
async fn metrics_count_requests_and_raftstore_work() {
    let node = SingleStore::start().await;
    let app = test::init_service(
        App::new()
            .wrap(crate::metrics::HttpMetrics::new(Duration::from_secs(1)))
            .configure(configure(node.state.clone())),
    )
    .await;
    let (status, _) = call!(
        &app,
        test::TestRequest::put()
            .uri("/v1/kv/metrics-key")
            .set_payload("v")
    );
    assert_eq!(status, StatusCode::OK);
    for request in [
        test::TestRequest::get().uri("/v1/kv/metrics-key"),
        test::TestRequest::get().uri("/v1/kv?start=metrics"),
        test::TestRequest::delete().uri("/v1/kv/metrics-key"),
        test::TestRequest::get().uri("/v1/admin/regions"),
        test::TestRequest::get().uri("/no/such/route"),
    ] {
        call!(&app, request);
    }

    let response =
        test::call_service(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers().get("content-type").unwrap();
    assert!(content_type.to_str().unwrap().starts_with("text/plain"));
    let text = String::from_utf8(test::read_body(response).await.to_vec()).unwrap();
    for series in [
        r#"tinykv_http_requests_total{route="kv_put",status="2xx"}"#,
        r#"tinykv_http_requests_total{route="kv_get",status="2xx"}"#,
        r#"tinykv_http_requests_total{route="kv_scan",status="2xx"}"#,
        r#"tinykv_http_requests_total{route="kv_delete",status="2xx"}"#,
        r#"tinykv_http_requests_total{route="admin",status="2xx"}"#,
        r#"tinykv_http_requests_total{route="other",status="4xx"}"#,
        r#"tinykv_http_request_duration_seconds_count{route="kv_put"}"#,
        r#"tinykv_raft_proposals_total{kind="write"}"#,
        r#"tinykv_raft_proposals_total{kind="read_index"}"#,
        "tinykv_raft_ready_handled_total",
        "tinykv_raft_propose_apply_duration_seconds_count",
        r#"tinykv_batch_write_size_tasks_count{writer="raft_log"}"#,
        r#"tinykv_batch_write_size_bytes_count{writer="apply"}"#,
        r#"tinykv_batch_write_duration_seconds_count{writer="raft_log"}"#,
    ] {
        let value = metric_value(&text, series)
            .unwrap_or_else(|| panic!("{series} is missing from /metrics:\n{text}"));
        assert!(value > 0.0, "{series} is {value}");
    }
    // Gauges and metrics that need a cluster or a slow request exist from the start.
    for name in [
        r#"tinykv_store_regions{store="1"}"#,
        r#"tinykv_store_leaders{store="1"}"#,
        "# TYPE tinykv_http_slow_requests_total counter",
        "# TYPE tinykv_raft_messages_sent_total counter",
        "# TYPE tinykv_snapshots_total counter",
        "# TYPE tinykv_raft_proposals_dropped_total counter",
        "# TYPE tinykv_raft_commit_apply_lag_entries histogram",
    ] {
        assert!(
            text.contains(name),
            "{name} is missing from /metrics:\n{text}"
        );
    }

    drop(app);
    node.stop().await;
}

/// The error code of an answer, if it is a JSON error.
fn maybe_error_code(body: &[u8]) -> Option<String> {
    let body: Value = serde_json::from_slice(body).ok()?;
    body["error"]["code"].as_str().map(str::to_string)
}

#[actix_rt::test]
async fn the_openapi_document_and_the_router_agree() {
    let spec: Value = serde_json::from_str(openapi::SPEC).expect("the spec is JSON");
    assert!(
        spec["openapi"].as_str().unwrap().starts_with("3.0."),
        "an OpenAPI 3.0.x document"
    );
    let node = SingleStore::start().await;
    let app = test::init_service(App::new().configure(configure(node.state.clone()))).await;
    let (status, body) = call!(&app, test::TestRequest::get().uri("/v1/openapi.json"));
    assert_eq!((status, json(&body)), (StatusCode::OK, spec.clone()));

    let methods = ["get", "put", "post", "delete", "patch"];
    let paths = spec["paths"].as_object().unwrap();
    assert!(paths.len() >= 12, "every route is described");
    for (path, item) in paths {
        assert!(!path.starts_with("/internal"), "{path} is not public");
        let uri = path
            .replace("{key}", "openapi-key")
            .replace("{peer_id}", "7")
            .replace("{id}", "1");
        for method in methods {
            let request = test::TestRequest::default()
                .method(method.to_uppercase().parse().unwrap())
                .uri(&uri);
            let (status, body) = call!(&app, request);
            let code = maybe_error_code(&body).unwrap_or_default();
            let Some(operation) = item.get(method) else {
                assert_eq!(
                    (status, code.as_str()),
                    (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
                    "{method} {path} is served but not in the spec"
                );
                continue;
            };
            assert!(
                status != StatusCode::METHOD_NOT_ALLOWED
                    && code != "route_not_found"
                    && code != "method_not_allowed",
                "{method} {path} is in the spec but not served: {status} {code}"
            );
            check_operation(&spec, path, item, operation);
        }
    }

    drop(app);
    node.stop().await;
}

/// Checks that an operation of the spec declares its path's parameters and answers every
/// error with the JSON error body.
fn check_operation(spec: &Value, path: &str, item: &Value, operation: &Value) {
    let declared: Vec<&str> = [&item["parameters"], &operation["parameters"]]
        .into_iter()
        .filter_map(Value::as_array)
        .flatten()
        .filter(|p| p["in"] == "path")
        .filter_map(|p| p["name"].as_str())
        .collect();
    for segment in path.split('/') {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            assert!(declared.contains(&name), "{path}: {name} is not declared");
        }
    }
    let responses = operation["responses"].as_object().unwrap();
    assert!(
        responses.keys().any(|status| status.starts_with('2')),
        "{path}: no 2xx answer"
    );
    for (status, response) in responses {
        if !(status.starts_with('4') || status.starts_with('5')) {
            continue;
        }
        let response = match response["$ref"].as_str() {
            Some(reference) => {
                let name = reference.trim_start_matches("#/components/responses/");
                &spec["components"]["responses"][name]
            }
            None => response,
        };
        let schema = &response["content"]["application/json"]["schema"];
        // A HEAD answer has no body; /health's 503 is its error body plus the reasons.
        let expected = match (path, status.as_str()) {
            (_, _) if response.get("content").is_none() => continue,
            ("/health", "503") => "#/components/schemas/HealthDegraded",
            _ => "#/components/schemas/Error",
        };
        assert_eq!(schema["$ref"], expected, "{path} {status}");
    }
}

#[actix_rt::test]
async fn the_stores_view_probes_every_store_of_the_address_book() {
    let holder = SingleStore::start().await;
    let app = test::init_service(App::new().configure(configure(holder.state.clone()))).await;
    // A write proves the store has elected itself.
    call!(
        &app,
        test::TestRequest::put().uri("/v1/kv/x").set_payload("1")
    );
    let served = holder.serve().await;
    // Store 2's address is store 1's API: it answers, but as the wrong store.
    holder.state.addresses.insert(served.address(2));
    holder.state.addresses.insert(unreachable_address(3));

    let (status, body) = call!(&app, test::TestRequest::get().uri("/v1/admin/stores"));
    assert_eq!(status, StatusCode::OK);
    let view = json(&body);
    assert_eq!(view["store_id"], 1);
    let stores = view["stores"].as_array().unwrap();
    let ids: Vec<u64> = stores.iter().map(|s| s["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(
        (
            &stores[0]["local"],
            &stores[0]["up"],
            &stores[0]["probe_error"]
        ),
        (&Value::Bool(true), &Value::Bool(true), &Value::Null)
    );
    assert_eq!(
        (&stores[0]["region_count"], &stores[0]["leader_count"]),
        (&1.into(), &1.into())
    );
    let wrong = stores[1]["probe_error"].as_str().unwrap();
    assert!(wrong.contains("answers as store 1"), "{wrong}");
    assert_eq!(
        (&stores[1]["up"], &stores[1]["local"]),
        (&false.into(), &false.into())
    );
    assert_eq!(stores[2]["up"], false);
    assert!(!stores[2]["probe_error"].as_str().unwrap().is_empty());
    assert_eq!(
        (&stores[2]["region_count"], &stores[2]["leader_count"]),
        (&0.into(), &0.into())
    );
    let (status, _) = call!(&app, test::TestRequest::post().uri("/v1/admin/stores"));
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

    // A store without the region sees store 1 up, and no region anywhere.
    let book = AddressBook::new([served.address(1), unreachable_address(4)]);
    let viewer = SingleStore::start_as(4, &[1], book).await;
    let viewer_app =
        test::init_service(App::new().configure(configure(viewer.state.clone()))).await;
    let (_, body) = call!(
        &viewer_app,
        test::TestRequest::get().uri("/v1/admin/stores")
    );
    let view = json(&body);
    assert_eq!(view["store_id"], 4);
    let store1 = &view["stores"][0];
    assert_eq!(
        (
            &store1["id"],
            &store1["up"],
            &store1["local"],
            &store1["region_count"]
        ),
        (&1.into(), &true.into(), &false.into(), &0.into())
    );

    drop((app, viewer_app));
    viewer.stop().await;
    served.stop().await;
    holder.stop().await;
}

#[actix_rt::test]
async fn the_dashboard_page_and_its_assets_are_served() {
    let node = SingleStore::start().await;
    let app = test::init_service(App::new().configure(configure(node.state.clone()))).await;
    for (path, content_type, marker) in [
        (
            "/ui",
            "text/html",
            r#"<script src="/ui/app.js" defer></script>"#,
        ),
        (
            "/ui/",
            "text/html",
            r#"<link rel="stylesheet" href="/ui/style.css">"#,
        ),
        ("/ui/app.js", "application/javascript", "data-region-id"),
        ("/ui/style.css", "text/css", ".keymap"),
    ] {
        let response =
            test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers().clone();
        let header = |name: &str| {
            headers
                .get(name)
                .unwrap_or_else(|| panic!("{path}: no {name}"))
                .to_str()
                .unwrap()
                .to_string()
        };
        assert!(
            header("content-type").starts_with(content_type),
            "{path}: {}",
            header("content-type")
        );
        assert_eq!(header("cache-control"), ui::CACHE_CONTROL, "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        if content_type == "text/html" {
            assert_eq!(
                header("content-security-policy"),
                ui::CONTENT_SECURITY_POLICY
            );
        }
        let body = String::from_utf8(test::read_body(response).await.to_vec()).unwrap();
        assert!(body.contains(marker), "{path} lacks {marker}");
    }
    // Every asset the page names is served, and nothing outside this origin is named.
    for asset in ["/ui/app.js", "/ui/style.css"] {
        assert!(ui::INDEX_HTML.contains(asset), "{asset}");
    }
    for file in [ui::INDEX_HTML, ui::APP_JS, ui::STYLE_CSS] {
        assert!(!file.contains("https://"), "no external resources");
    }
    let (status, body) = call!(&app, test::TestRequest::post().uri("/ui"));
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    let (status, body) = call!(&app, test::TestRequest::get().uri("/ui/missing.js"));
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::NOT_FOUND, "route_not_found")
    );

    drop(app);
    node.stop().await;
}

#[actix_rt::test]
async fn the_placement_driver_splits_off_its_meta_region_and_answers_for_the_cluster() {
    let node = SingleStore::start().await;
    let app = test::init_service(App::new().configure(configure(node.state.clone()))).await;
    let (status, body) = call!(
        &app,
        test::TestRequest::put().uri("/v1/kv/user").set_payload("v")
    );
    assert_eq!(status, StatusCode::OK, "{body:?}");

    // The first request makes this node the PD: it splits the meta region off and
    // writes the cluster's records there.
    let (status, body) = call!(&app, test::TestRequest::get().uri("/v1/admin/cluster"));
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let cluster = json(&body);
    assert_eq!(cluster["cluster_id"], 1);
    assert_eq!(cluster["max_peer_count"], 1);
    assert_eq!(cluster["pd_leader_store"], 1);
    assert_eq!(cluster["stores"][0]["id"], 1);
    assert_eq!(cluster["stores"][0]["state"], "Up");
    let (_, body) = call!(&app, test::TestRequest::get().uri("/v1/admin/regions"));
    let regions = json(&body)["regions"].as_array().unwrap().clone();
    let starts: Vec<&str> = regions
        .iter()
        .map(|r| r["start_key"].as_str().unwrap())
        .collect();
    assert_eq!(starts, vec!["", "%FF"], "{regions:?}");
    assert_eq!(
        regions[1]["id"], cluster["meta_region_id"],
        "the meta region holds the PD's records"
    );

    // Clients neither see nor touch the reserved keys.
    let (status, body) = call!(&app, test::TestRequest::get().uri("/v1/kv"));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json(&body)["kvs"],
        serde_json::json!([{ "key": "user", "value": "v" }])
    );
    let (status, body) = call!(
        &app,
        test::TestRequest::put()
            .uri("/v1/kv/%FFpd%2Fcluster")
            .set_payload("x")
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::BAD_REQUEST, "reserved_key")
    );

    // Draining: an unknown store, and the only store of a one-replica cluster.
    let (status, body) = call!(
        &app,
        test::TestRequest::post().uri("/v1/admin/stores/9/offline")
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::NOT_FOUND, "store_not_found")
    );
    let (status, body) = call!(
        &app,
        test::TestRequest::post().uri("/v1/admin/stores/1/offline")
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::CONFLICT, "not_enough_stores")
    );
    let (_, body) = call!(&app, test::TestRequest::get().uri("/v1/admin/cluster"));
    assert_eq!(json(&body)["stores"][0]["state"], "Up", "nothing changed");

    let (status, body) = call!(&app, test::TestRequest::get().uri("/v1/admin/operators"));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["in_flight"], serde_json::json!([]));

    // The PD's endpoint on the peer listener: a malformed request, then a heartbeat from
    // an unknown store.
    let served = node.serve().await;
    let pd = |body: String| {
        post_peer(
            served.peer,
            crate::placement::PD_PATH,
            "application/json",
            body.into_bytes(),
        )
    };
    let (status, body) = pd("{\"type\":\"nonsense\"}".into()).await;
    assert_eq!((status, error_code(&body).as_str()), (400, "bad_json"));
    let heartbeat = serde_json::json!({
        "type": "heartbeat",
        "store": {"store_id": 5, "raft_addr": "127.0.0.1:1", "http_addr": "127.0.0.1:2",
                  "region_count": 0, "used_size": null},
        "regions": []
    });
    let (status, body) = pd(heartbeat.to_string()).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (404, "store_not_found")
    );

    // A heartbeat of store 1 leading a region: the PD records it and answers with the
    // stores (one replica wanted, one present: nothing to do).
    let heartbeat = serde_json::json!({
        "type": "heartbeat",
        "store": {"store_id": 1, "raft_addr": "127.0.0.1:1", "http_addr": "127.0.0.1:2",
                  "region_count": 1, "used_size": 300},
        "regions": [{"id": 77, "start_key": [97], "end_key": [98], "conf_ver": 1, "version": 1,
                     "peers": [{"id": 5, "store_id": 1}], "leader": {"id": 5, "store_id": 1},
                     "pending_peers": [], "approximate_size": 300}]
    });
    let (status, body) = pd(heartbeat.to_string()).await;
    assert_eq!(status, 200, "{body:?}");
    let reply = json(&body);
    assert_eq!(reply["commands"], serde_json::json!([]));
    assert_eq!(reply["store_state"], "Up");
    assert_eq!(reply["stores"][0]["id"], 1);
    let (status, body) = call!(
        &app,
        test::TestRequest::get().uri("/v1/admin/cluster/regions")
    );
    assert_eq!(status, StatusCode::OK);
    let regions = json(&body)["regions"].clone();
    assert_eq!(
        regions,
        serde_json::json!([{
            "id": 77, "start_key": "a", "end_key": "b",
            "epoch": {"conf_ver": 1, "version": 1},
            "peers": [{"id": 5, "store_id": 1}], "leader": {"id": 5, "store_id": 1},
            "pending_peers": [], "approximate_size": 300
        }])
    );
    served.stop().await;
    node.store.shutdown().await;
}

/// A damaged record (disk damage, a bug: clients can no longer write the reserved keys)
/// used to stop the placement driver for good. The next leadership now repairs it: the
/// cluster record from the configuration, a store's record from the address book.
#[actix_rt::test]
async fn a_damaged_pd_record_is_repaired_when_a_leadership_begins() {
    let node = SingleStore::start().await;
    let app = test::init_service(App::new().configure(configure(node.state.clone()))).await;
    call!(
        &app,
        test::TestRequest::put().uri("/v1/kv/user").set_payload("v")
    );
    let (status, _) = call!(&app, test::TestRequest::get().uri("/v1/admin/cluster"));
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call!(&app, test::TestRequest::get().uri("/v1/txn/ts"));
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let first_ts = json(&body)["ts"].as_u64().unwrap();

    let store_key = [&b"\xffpd/store/"[..], &1u64.to_be_bytes()].concat();
    let damage = [
        (b"\xffpd/cluster".to_vec(), b"not json".to_vec()),
        (store_key.clone(), b"{".to_vec()),
        (b"\xffpd/store-id-limit".to_vec(), b"short".to_vec()),
        (b"\xffpd/tso-limit".to_vec(), b"short".to_vec()),
    ];
    let engine = node.store.engine().clone();
    let mutations: Vec<tinykv_actors::engine::Mutation> = damage
        .iter()
        .map(|(key, value)| tinykv_actors::engine::Mutation::Put {
            cf: Cf::Default,
            key: key.clone(),
            value: value.clone(),
        })
        .collect();
    engine.write(&mutations, true).unwrap();

    // A new PD server on the same node: a new leadership, which reads the records again.
    let pd_server = crate::placement::PdServer::new(
        node.store.router(),
        node.state.admin.clone(),
        node.state.addresses.clone(),
        crate::placement::PdSetup {
            config: crate::config::PdConfig {
                max_peer_count: 1,
                ..Default::default()
            },
            cluster_id: 1,
            initial_stores: node.state.addresses.all(),
            timeout: Duration::from_secs(3),
            root_token_sha256: None,
        },
        None,
    )
    .unwrap();
    let view = pd_server
        .handle(crate::placement::PdRequest::Cluster)
        .await
        .expect("the PD answers despite the damage");
    assert_eq!(view["cluster_id"], 1);
    assert_eq!(view["stores"][0]["id"], 1);
    let cluster = engine.get(Cf::Default, b"\xffpd/cluster").unwrap().unwrap();
    assert!(
        serde_json::from_slice::<Value>(&cluster).is_ok(),
        "rewritten"
    );
    let store = engine.get(Cf::Default, &store_key).unwrap().unwrap();
    assert_eq!(json(&store)["id"], 1);
    let limit = engine
        .get(Cf::Default, b"\xffpd/store-id-limit")
        .unwrap()
        .unwrap();
    assert!(u64::from_be_bytes(limit.try_into().unwrap()) >= 1);

    // The oracle's limit is unknown: timestamps resume a minute past the clock, above
    // anything given before.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let answer = pd_server
        .handle(crate::placement::PdRequest::Timestamps { count: 1 })
        .await
        .expect("timestamps despite the damage");
    let ts = answer["ts"].as_u64().unwrap();
    assert!(ts > first_ts);
    assert!(
        answer["physical_ms"].as_u64().unwrap() >= now_ms + 59_000,
        "{answer}"
    );
    let tso_limit = engine
        .get(Cf::Default, b"\xffpd/tso-limit")
        .unwrap()
        .unwrap();
    assert!(u64::from_be_bytes(tso_limit.try_into().unwrap()) > ts >> 18);

    drop(app);
    node.stop().await;
}

/// The app as the node builds it: the API behind the admission middleware.
macro_rules! guarded_app {
    ($node:expr) => {
        test::init_service(
            App::new()
                .app_data(admission::Admission::new(&$node.state.limits))
                .wrap(actix_web::middleware::from_fn(admission::admit))
                .configure(configure($node.state.clone())),
        )
        .await
    };
}

/// A store's heartbeat leading regions `[start, end)` for each pair of `ranges`.
fn heartbeat_leading(ranges: &[(&[u8], &[u8])]) -> crate::placement::PdRequest {
    let regions: Vec<serde_json::Value> = ranges
        .iter()
        .enumerate()
        .map(|(i, (start, end))| {
            serde_json::json!({
                "id": 100 + i, "start_key": start, "end_key": end, "conf_ver": 1, "version": 1,
                "peers": [{"id": 200 + i, "store_id": 1}], "leader": {"id": 200 + i, "store_id": 1},
                "pending_peers": [], "approximate_size": 0
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "type": "heartbeat",
        "store": {"store_id": 1, "raft_addr": "127.0.0.1:1", "http_addr": "127.0.0.1:2",
                  "region_count": ranges.len(), "used_size": 0},
        "regions": regions
    }))
    .unwrap()
}

#[actix_rt::test]
async fn health_tells_a_live_node_from_a_cluster_that_serves_every_key() {
    let node = SingleStore::start().await;
    let app = test::init_service(App::new().configure(configure(node.state.clone()))).await;
    call!(
        &app,
        test::TestRequest::put().uri("/v1/kv/k").set_payload("v")
    );
    let (status, body) = call!(&app, test::TestRequest::get().uri("/health?live"));
    assert_eq!(
        (status, json(&body)["status"].clone()),
        (StatusCode::OK, "ok".into())
    );

    // A fresh PD leadership has heard from no region leader yet: not a verdict.
    let (status, body) = call!(&app, test::TestRequest::get().uri("/health"));
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(&body)["status"], "degraded");
    assert_eq!(error_code(&body), "degraded");

    let pd = node.state.pd.local().unwrap().clone();
    tokio::time::sleep(Duration::from_millis(250)).await;
    pd.handle(heartbeat_leading(&[(b"", b"m")])).await.unwrap();
    let (status, body) = call!(&app, test::TestRequest::get().uri("/health"));
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let reasons = json(&body)["reasons"].to_string();
    assert!(reasons.contains("from \\\"m\\\" on"), "{reasons}");

    pd.handle(heartbeat_leading(&[(b"", b"m"), (b"m", b"")]))
        .await
        .unwrap();
    let (status, body) = call!(&app, test::TestRequest::get().uri("/health"));
    assert_eq!(status, StatusCode::OK, "{:?}", json(&body));
    assert_eq!(json(&body)["status"], "ok");

    // A node draining its leaderships is live but not ready: balancers send elsewhere.
    // Alone, it cannot hand its regions to anyone: they are stuck, and say so.
    let drain = || {
        test::TestRequest::post()
            .uri("/v1/admin/drain-leaders")
            .insert_header(("content-type", "application/json"))
    };
    let (status, body) = call!(&app, drain());
    assert_eq!(status, StatusCode::OK, "{:?}", json(&body));
    let drained = json(&body);
    assert_eq!(drained["draining"], true);
    let leader_count = drained["leader_count"].as_u64().unwrap();
    assert!(leader_count >= 1, "{drained}");
    assert_eq!(
        drained["stuck_regions"].as_array().unwrap().len() as u64,
        leader_count,
        "{drained}"
    );
    let (status, body) = call!(&app, test::TestRequest::get().uri("/health"));
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(json(&body)["reasons"]
        .to_string()
        .contains("draining its leaderships"));
    let (status, _) = call!(&app, test::TestRequest::get().uri("/health?live"));
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call!(
        &app,
        test::TestRequest::delete().uri("/v1/admin/drain-leaders")
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["draining"], false);
    let (status, _) = call!(&app, test::TestRequest::get().uri("/health"));
    assert_eq!(status, StatusCode::OK);

    drop(app);
    node.stop().await;
}

#[actix_rt::test]
async fn http_conventions_hold_on_every_route() {
    let node = SingleStore::start().await;
    let app = guarded_app!(node);
    call!(
        &app,
        test::TestRequest::put()
            .uri("/v1/kv/k")
            .set_payload("value")
    );

    // Malformed escapes are refused, not taken literally.
    for uri in ["/v1/kv/a%", "/v1/kv/a%4", "/v1/kv/%zz", "/v1/kv?start=%g0"] {
        let (status, body) = call!(&app, test::TestRequest::get().uri(uri));
        assert_eq!(
            (status, error_code(&body).as_str()),
            (StatusCode::BAD_REQUEST, "bad_escape"),
            "{uri}"
        );
    }
    // HEAD answers like GET, without the body.
    let response = test::call_service(
        &app,
        test::TestRequest::default()
            .method(actix_web::http::Method::HEAD)
            .uri("/v1/kv/k")
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = test::call_service(
        &app,
        test::TestRequest::default()
            .method(actix_web::http::Method::HEAD)
            .uri("/v1/kv/absent")
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // A 405 says what is allowed.
    for (method, uri, allow) in [
        (
            actix_web::http::Method::POST,
            "/v1/kv/k",
            "GET, HEAD, PUT, DELETE",
        ),
        (
            actix_web::http::Method::PUT,
            "/v1/admin/regions/1/split",
            "POST",
        ),
        (actix_web::http::Method::DELETE, "/health", "GET"),
    ] {
        let response = test::call_service(
            &app,
            test::TestRequest::default()
                .method(method.clone())
                .uri(uri)
                .insert_header(("content-type", "application/json"))
                .to_request(),
        )
        .await;
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri}"
        );
        assert_eq!(
            response.headers().get("allow").unwrap(),
            allow,
            "{method} {uri}"
        );
    }
    // A state-changing POST must be JSON, and from this origin.
    let (status, body) = call!(
        &app,
        test::TestRequest::post()
            .uri("/v1/admin/regions/1/split")
            .insert_header(("content-type", "text/plain"))
            .set_payload(r#"{"key":"m"}"#)
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );
    let (status, body) = call!(
        &app,
        test::TestRequest::post()
            .uri("/v1/admin/regions/1/split")
            .insert_header(("content-type", "application/json"))
            .insert_header(("host", "127.0.0.1:8081"))
            .insert_header(("origin", "http://evil.example"))
            .set_payload(r#"{"key":"m"}"#)
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::FORBIDDEN, "cross_origin")
    );
    let (status, _) = call!(
        &app,
        test::TestRequest::delete()
            .uri("/v1/kv/k")
            .insert_header(("sec-fetch-site", "cross-site"))
    );
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, body) = call!(&app, test::TestRequest::get().uri("/v1/admin/regions"));
    assert_eq!(
        json(&body)["regions"].as_array().unwrap().len(),
        1,
        "no split"
    );
    let (status, body) = call!(&app, test::TestRequest::get().uri("/v1/kv/k"));
    assert_eq!(
        (status, &body[..]),
        (StatusCode::OK, &b"value"[..]),
        "not deleted"
    );
    // The same origin is welcome.
    let (status, _) = call!(
        &app,
        test::TestRequest::post()
            .uri("/v1/admin/regions/1/split")
            .insert_header(("content-type", "application/json"))
            .insert_header(("host", "127.0.0.1:8081"))
            .insert_header(("origin", "http://127.0.0.1:8081"))
            .set_payload(r#"{"key":"m"}"#)
    );
    assert_eq!(status, StatusCode::OK);
    // An unknown region is a 404 at once.
    let (status, body) = call!(
        &app,
        test::TestRequest::post()
            .uri("/v1/admin/regions/999/split")
            .insert_header(("content-type", "application/json"))
            .set_payload(r#"{"key":"x"}"#)
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::NOT_FOUND, "region_not_found")
    );

    drop(app);
    node.stop().await;
}

#[actix_rt::test]
async fn scans_are_paged_by_bytes_and_continue_from_next() {
    let node = SingleStore::start().await;
    let app = test::init_service(App::new().configure(configure(node.state.clone()))).await;
    for key in ["a", "b", "c", "d"] {
        let (status, _) = call!(
            &app,
            test::TestRequest::put()
                .uri(&format!("/v1/kv/{key}"))
                .set_payload(vec![b'x'; 600])
        );
        assert_eq!(status, StatusCode::OK);
    }
    // The node under test answers at most 1,000 bytes a page (and at least one pair).
    let mut start = String::new();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let (status, body) = call!(
            &app,
            test::TestRequest::get().uri(&format!("/v1/kv?start={start}"))
        );
        assert_eq!(status, StatusCode::OK);
        let page = json(&body);
        pages += 1;
        for kv in page["kvs"].as_array().unwrap() {
            seen.push(kv["key"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(next) => start = next.to_string(),
            None => break,
        }
        assert!(pages < 10, "the scan ends");
    }
    assert_eq!(seen, ["a", "b", "c", "d"]);
    assert!(pages >= 3, "pages of at most two 600-byte values: {pages}");

    drop(app);
    node.stop().await;
}

mod request_log;
mod txn;
