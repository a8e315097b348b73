//! The whole handler stack against a real one-store raftstore: a client's view of the
//! API, the internal endpoints other nodes use, and the admin views.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{test, App, HttpServer};
use prost::Message;
use serde_json::Value;
use tinykv_actors::bootstrap::ensure_bootstrapped;
use tinykv_actors::{start_store, Cf, Engine, RaftStoreConfig, StoreHandle, Transport};
use tinykv_proto::kvrpcpb::{RawGetRequest, RawGetResponse, RawPutRequest, RawPutResponse};
use tinykv_proto::raft_serverpb::RaftMessage;

use super::*;
use crate::config::StoreAddress;
use crate::forward::HttpForwarder;
use crate::service::{Forwarder, KvOp, KvOutcome, ServiceTimeouts};

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
    async fn start() -> SingleStore {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path().join("db")).unwrap();
        ensure_bootstrapped(&engine, 1, 1, &[1]).unwrap();
        let store = start_store(RaftStoreConfig::for_tests(), engine, Arc::new(NoNetwork))
            .await
            .unwrap();
        let addresses = AddressBook::new([StoreAddress {
            id: 1,
            raft_addr: "127.0.0.1:1".into(),
            http_addr: "127.0.0.1:2".into(),
        }]);
        let timeouts = ServiceTimeouts {
            request: Duration::from_secs(10),
            attempt: Duration::from_secs(3),
        };
        let forwarder = HttpForwarder::new(addresses.clone(), timeouts.attempt).unwrap();
        let limits = ApiConfig {
            max_key_bytes: 32,
            max_value_bytes: 1024,
            ..Default::default()
        };
        let state = web::Data::new(ApiState {
            service: KvService::new(store.router(), Arc::new(forwarder), timeouts),
            limits,
            addresses,
        });
        SingleStore {
            store,
            state,
            _dir: dir,
        }
    }

    async fn stop(self) {
        drop(self.state);
        self.store.shutdown().await;
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
    assert_eq!(json(&body), serde_json::json!({ "ok": true }));
    let (status, body) = call!(&app, test::TestRequest::get().uri("/v1/kv/a%2Fb"));
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello"[..]));
    // An unescaped slash is the same key.
    let (_, body) = call!(&app, test::TestRequest::get().uri("/v1/kv/a/b"));
    assert_eq!(&body[..], b"hello");

    call!(
        &app,
        test::TestRequest::put()
            .uri("/v1/kv/%FF")
            .set_payload(vec![0u8, 1])
    );
    call!(
        &app,
        test::TestRequest::put()
            .uri("/v1/kv/c?cf=lock")
            .set_payload("locked")
    );
    let (status, body) = call!(&app, test::TestRequest::get().uri("/v1/kv/%FF"));
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
            "kvs": [{ "key": "YS9i", "value": "aGVsbG8=" }, { "key": "/w==", "value": "AAE=" }],
            "encoding": "base64"
        })
    );
    let (_, body) = call!(
        &app,
        test::TestRequest::get().uri("/v1/kv?start=a&end=%FF&limit=5")
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

    let (status, body) = call!(&app, test::TestRequest::get().uri("/health"));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json(&body),
        serde_json::json!({ "status": "ok", "store_id": 1 })
    );

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

#[actix_rt::test]
async fn internal_endpoints_speak_protobuf() {
    let node = SingleStore::start().await;
    let app = test::init_service(App::new().configure(configure(node.state.clone()))).await;
    let post = |path: &str, body: Vec<u8>| {
        test::TestRequest::post()
            .uri(path)
            .insert_header(("content-type", crate::forward::PROTOBUF_CONTENT_TYPE))
            .set_payload(body)
    };

    let put = RawPutRequest {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    let (status, body) = call!(&app, post("/internal/v1/raw/put", put.encode_to_vec()));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        RawPutResponse::decode(body).unwrap(),
        RawPutResponse::default()
    );

    let get = |key: &[u8], cf: &str| RawGetRequest {
        key: key.to_vec(),
        cf: cf.into(),
        ..Default::default()
    };
    let (_, body) = call!(
        &app,
        post("/internal/v1/raw/get", get(b"k", "default").encode_to_vec())
    );
    let response = RawGetResponse::decode(body).unwrap();
    assert_eq!(
        (response.value.as_slice(), response.not_found),
        (&b"v"[..], false)
    );
    let (_, body) = call!(
        &app,
        post("/internal/v1/raw/get", get(b"nope", "").encode_to_vec())
    );
    assert!(RawGetResponse::decode(body).unwrap().not_found);
    let (_, body) = call!(
        &app,
        post("/internal/v1/raw/get", get(b"k", "raft").encode_to_vec())
    );
    assert!(RawGetResponse::decode(body)
        .unwrap()
        .error
        .starts_with("invalid_request: "));

    let (status, body) = call!(&app, post("/internal/v1/raw/get", vec![0xff, 0xff]));
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::BAD_REQUEST, "bad_protobuf")
    );

    drop(app);
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
    let state = node.state.clone();
    let server = HttpServer::new(move || App::new().configure(configure(state.clone())))
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    let serving = actix_rt::spawn(server);

    let book = AddressBook::new([StoreAddress {
        id: 1,
        raft_addr: "127.0.0.1:1".into(),
        http_addr: addr.to_string(),
    }]);
    let forwarder = HttpForwarder::new(book, Duration::from_secs(3)).unwrap();
    let put = KvOp::Put {
        cf: Cf::Default,
        key: b"k".to_vec(),
        value: b"v".to_vec(),
    };
    // The store may still be electing itself: retry what is retryable, as KvService does.
    let mut outcome = forwarder.forward(1, put.clone()).await;
    for _ in 0..100 {
        match &outcome {
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                outcome = forwarder.forward(1, put.clone()).await;
            }
            _ => break,
        }
    }
    assert_eq!(outcome.unwrap(), KvOutcome::Written);
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
    };
    assert_eq!(
        forwarder.forward(1, scan).await.unwrap(),
        KvOutcome::Pairs {
            pairs: vec![(b"k".to_vec(), b"v".to_vec())],
            region_end: vec![],
        }
    );

    handle.stop(true).await;
    let _ = serving.await;
    node.stop().await;
}
