//! The transactional REST API on one node: conditional writes and their versions, reads
//! and scans at a timestamp, one-shot and interactive transactions, and what bad input
//! gets.

use actix_web::http::StatusCode;
use actix_web::{test, App};
use serde_json::json;

use super::{error_code, json, SingleStore};
use crate::api::configure;

/// The version an answer's `ETag` names.
fn etag(response: &actix_web::dev::ServiceResponse) -> u64 {
    let tag = response
        .headers()
        .get("etag")
        .expect("an ETag")
        .to_str()
        .unwrap();
    tag.trim_matches('"').parse().unwrap()
}

macro_rules! send {
    ($app:expr, $request:expr) => {{
        test::call_service($app, $request.to_request()).await
    }};
}

#[actix_rt::test]
async fn conditional_writes_follow_versions_and_reads_at_a_timestamp_see_the_past() {
    let node = SingleStore::start().await;
    let app = test::init_service(App::new().configure(configure(node.state.clone()))).await;

    // Create only.
    let created = send!(
        &app,
        test::TestRequest::put()
            .uri("/v1/kv/config")
            .insert_header(("If-None-Match", "*"))
            .set_payload("one")
    );
    assert_eq!(created.status(), StatusCode::OK);
    let v1 = etag(&created);
    let again = send!(
        &app,
        test::TestRequest::put()
            .uri("/v1/kv/config")
            .insert_header(("If-None-Match", "*"))
            .set_payload("other")
    );
    assert_eq!(again.status(), StatusCode::PRECONDITION_FAILED);
    let body = test::read_body(again).await;
    assert_eq!(error_code(&body), "precondition_failed");
    assert!(String::from_utf8_lossy(&body).contains(&v1.to_string()));

    // The latest read answers the value and its version.
    let read = send!(
        &app,
        test::TestRequest::get().uri("/v1/kv/config?ts=latest")
    );
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(etag(&read), v1);
    assert_eq!(&test::read_body(read).await[..], b"one");

    // Compare-and-set against that version; a stale version fails and changes nothing.
    let swapped = send!(
        &app,
        test::TestRequest::put()
            .uri("/v1/kv/config")
            .insert_header(("If-Match", format!("\"{v1}\"")))
            .set_payload("two")
    );
    assert_eq!(swapped.status(), StatusCode::OK);
    let v2 = etag(&swapped);
    assert!(v2 > v1);
    let stale = send!(
        &app,
        test::TestRequest::put()
            .uri("/v1/kv/config")
            .insert_header(("If-Match", format!("\"{v1}\"")))
            .set_payload("three")
    );
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);

    // A read at a timestamp between the two versions sees the first.
    let past = send!(
        &app,
        test::TestRequest::get().uri(&format!("/v1/kv/config?ts={}", v2 - 1))
    );
    assert_eq!(etag(&past), v1);
    assert_eq!(&test::read_body(past).await[..], b"one");

    // A conditional delete; then the key is gone at the latest timestamp, but not before.
    let deleted = send!(
        &app,
        test::TestRequest::delete()
            .uri("/v1/kv/config")
            .insert_header(("If-Match", v2.to_string()))
    );
    assert_eq!(deleted.status(), StatusCode::OK);
    let gone = send!(
        &app,
        test::TestRequest::get().uri("/v1/kv/config?ts=latest")
    );
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let before = send!(
        &app,
        test::TestRequest::get().uri(&format!("/v1/kv/config?ts={v2}"))
    );
    assert_eq!(&test::read_body(before).await[..], b"two");
    let exists = send!(
        &app,
        test::TestRequest::put()
            .uri("/v1/kv/config")
            .insert_header(("If-Match", "*"))
            .set_payload("x")
    );
    assert_eq!(exists.status(), StatusCode::PRECONDITION_FAILED);

    // The raw key of the same name is another key.
    let raw = send!(&app, test::TestRequest::get().uri("/v1/kv/config"));
    assert_eq!(raw.status(), StatusCode::NOT_FOUND);
    node.stop().await;
}

#[actix_rt::test]
async fn a_one_shot_transaction_runs_the_branch_its_comparisons_choose() {
    let node = SingleStore::start().await;
    let app = test::init_service(App::new().configure(configure(node.state.clone()))).await;
    let acquire = |owner: &str| {
        json!({
            "compare": [{"key": "lock", "version": 0}],
            "success": [{"op": "put", "key": "lock", "value": owner}, {"op": "put", "key": "owner-log", "value": owner}],
            "failure": [{"op": "get", "key": "lock"}],
        })
    };
    let first = send!(
        &app,
        test::TestRequest::post()
            .uri("/v1/txn")
            .set_json(acquire("alice"))
    );
    assert_eq!(first.status(), StatusCode::OK);
    let first = json(&test::read_body(first).await);
    assert_eq!(first["succeeded"], true);
    let commit_ts = first["commit_ts"].as_u64().unwrap();
    assert!(commit_ts > first["read_ts"].as_u64().unwrap());

    let second = send!(
        &app,
        test::TestRequest::post()
            .uri("/v1/txn")
            .set_json(acquire("bob"))
    );
    let second = json(&test::read_body(second).await);
    assert_eq!(second["succeeded"], false);
    assert_eq!(second["commit_ts"], serde_json::Value::Null, "read-only");
    assert_eq!(second["responses"][0]["value"], "alice");
    assert_eq!(second["responses"][0]["version"], commit_ts);

    // Values, existence and base64.
    let compare = json!({
        "compare": [
            {"key": "bG9jaw==", "value": "YWxpY2U="},
            {"key": "bm9uZQ==", "exists": false},
            {"key": "bG9jaw==", "op": ">=", "version": commit_ts},
        ],
        "success": [{"op": "delete", "key": "bG9jaw=="}],
        "encoding": "base64",
    });
    let third = send!(
        &app,
        test::TestRequest::post().uri("/v1/txn").set_json(compare)
    );
    let third = json(&test::read_body(third).await);
    assert_eq!(third["succeeded"], true, "{third}");
    let gone = send!(&app, test::TestRequest::get().uri("/v1/kv/lock?ts=latest"));
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);

    // A scan at a timestamp names each key's version.
    let scan = send!(&app, test::TestRequest::get().uri("/v1/kv?ts=latest"));
    let scan = json(&test::read_body(scan).await);
    assert_eq!(
        scan["kvs"],
        json!([{"key": "owner-log", "value": "alice", "version": commit_ts}])
    );
    node.stop().await;
}

#[actix_rt::test]
async fn an_interactive_transaction_commits_or_names_the_key_it_conflicts_on() {
    let node = SingleStore::start().await;
    let app = test::init_service(App::new().configure(configure(node.state.clone()))).await;
    let begin = || async {
        let response = send!(&app, test::TestRequest::post().uri("/v1/txn/begin"));
        json(&test::read_body(response).await)["start_ts"]
            .as_u64()
            .unwrap()
    };
    let commit = |start_ts: u64, writes: serde_json::Value, lock: serde_json::Value| {
        test::TestRequest::post()
            .uri("/v1/txn/commit")
            .set_json(json!({"start_ts": start_ts, "writes": writes, "lock": lock}))
    };
    let (t1, t2) = (begin().await, begin().await);
    let won = send!(
        &app,
        commit(
            t2,
            json!([{"op": "put", "key": "a", "value": "2"}]),
            json!([])
        )
    );
    assert_eq!(won.status(), StatusCode::OK);
    // t1 writes b but relied on a, which t2 wrote after t1 began.
    let lost = send!(
        &app,
        commit(
            t1,
            json!([{"op": "put", "key": "b", "value": "1"}]),
            json!(["a"])
        )
    );
    assert_eq!(lost.status(), StatusCode::CONFLICT);
    let body = json(&test::read_body(lost).await);
    assert_eq!(body["error"]["code"], "write_conflict");
    assert_eq!(body["error"]["key"], "a");
    let b = send!(&app, test::TestRequest::get().uri("/v1/kv/b?ts=latest"));
    assert_eq!(
        b.status(),
        StatusCode::NOT_FOUND,
        "nothing of t1 was committed"
    );
    // Without relying on a, a transaction that began before t2 writes b fine.
    let t3 = begin().await;
    let ok = send!(
        &app,
        commit(
            t3,
            json!([{"op": "delete", "key": "b"}, {"op": "put", "key": "c", "value": "3"}]),
            json!([])
        )
    );
    assert_eq!(ok.status(), StatusCode::OK);
    node.stop().await;
}

#[actix_rt::test]
async fn bad_transactional_requests_are_refused_and_change_nothing() {
    let node = SingleStore::start().await;
    let app = test::init_service(App::new().configure(configure(node.state.clone()))).await;
    let bad_bodies = [
        (
            json!({"success": [{"op": "put", "key": "k"}]}),
            "invalid_txn",
        ),
        (
            json!({"success": [{"op": "get", "key": "k", "value": "v"}]}),
            "invalid_txn",
        ),
        (
            json!({"success": [{"op": "swap", "key": "k"}]}),
            "invalid_txn",
        ),
        (
            json!({"success": [{"op": "put", "key": "k", "value": "1"}, {"op": "delete", "key": "k"}]}),
            "invalid_txn",
        ),
        (
            json!({"compare": [{"key": "k", "version": 1, "exists": true}]}),
            "invalid_txn",
        ),
        (
            json!({"compare": [{"key": "k", "exists": true, "op": "<"}]}),
            "invalid_txn",
        ),
        (
            json!({"compare": [{"key": "k", "op": "~", "version": 1}]}),
            "invalid_txn",
        ),
        (json!({"compare": [{"key": "", "version": 1}]}), "empty_key"),
        (
            json!({"success": [{"op": "put", "key": "/ng=", "value": "MQ=="}], "encoding": "base64"}),
            "reserved_key",
        ),
        (
            json!({"success": [{"op": "put", "key": "!!", "value": "1"}], "encoding": "base64"}),
            "invalid_txn",
        ),
        (
            json!({"success": [], "encoding": "rot13"}),
            "invalid_encoding",
        ),
        (json!({"sucess": []}), "bad_json"),
    ];
    for (body, code) in bad_bodies {
        let response = send!(
            &app,
            test::TestRequest::post().uri("/v1/txn").set_json(&body)
        );
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_code(&test::read_body(response).await), code, "{body}");
    }
    let commits = [
        json!({"start_ts": 0, "writes": [{"op": "put", "key": "k", "value": "1"}]}),
        json!({"start_ts": 5, "writes": []}),
        json!({"start_ts": 5, "writes": [{"op": "get", "key": "k"}]}),
        json!({"start_ts": u64::MAX, "writes": [{"op": "put", "key": "k", "value": "1"}]}),
    ];
    for body in commits {
        let response = send!(
            &app,
            test::TestRequest::post()
                .uri("/v1/txn/commit")
                .set_json(&body)
        );
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    let headers: [(&str, &str, &str); 5] = [
        ("/v1/kv/k", "If-Match", "\"x\""),
        ("/v1/kv/k", "If-Match", "\"0\""),
        ("/v1/kv/k", "If-None-Match", "\"3\""),
        ("/v1/kv/k?cf=lock", "If-None-Match", "*"),
        ("/v1/kv/k?ts=5", "If-None-Match", "*"),
    ];
    for (uri, name, value) in headers {
        let response = send!(
            &app,
            test::TestRequest::put()
                .uri(uri)
                .insert_header((name, value))
                .set_payload("v")
        );
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{uri} {name}: {value}"
        );
    }
    let both = send!(
        &app,
        test::TestRequest::put()
            .uri("/v1/kv/k")
            .insert_header(("If-None-Match", "*"))
            .insert_header(("Idempotency-Key", "x"))
            .set_payload("v")
    );
    assert_eq!(both.status(), StatusCode::BAD_REQUEST);
    for uri in [
        "/v1/kv/k?ts=0",
        "/v1/kv/k?ts=-1",
        "/v1/kv/k?ts=soon",
        "/v1/kv/k?ts=1&cf=write",
    ] {
        let response = send!(&app, test::TestRequest::get().uri(uri));
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{uri}");
    }
    // Nothing was written by any of them.
    let scan = send!(&app, test::TestRequest::get().uri("/v1/kv?ts=latest"));
    assert_eq!(json(&test::read_body(scan).await)["kvs"], json!([]));
    node.stop().await;
}

#[actix_rt::test]
async fn the_safe_point_and_the_locks_of_a_range_are_shown() {
    use tinykv_proto::kvrpcpb::{txn_request::Command, Mutation, Op, PrewriteRequest, TxnRequest};

    let node = SingleStore::start().await;
    let app = test::init_service(App::new().configure(configure(node.state.clone()))).await;
    let safe_point = send!(&app, test::TestRequest::get().uri("/v1/txn/safe-point"));
    assert_eq!(safe_point.status(), StatusCode::OK);
    assert_eq!(
        json(&test::read_body(safe_point).await),
        json!({"safe_point": 0})
    );

    // A coordinator that prewrote and went away.
    let start_ts = node.state.txn.timestamp().await.unwrap();
    let prewrite = TxnRequest {
        command: Some(Command::Prewrite(PrewriteRequest {
            mutations: vec![Mutation {
                op: Op::Put as i32,
                key: b"held".to_vec(),
                value: b"v".to_vec(),
            }],
            primary_lock: b"held".to_vec(),
            start_version: start_ts,
            lock_ttl: 60_000,
            ..Default::default()
        })),
    };
    node.state
        .service
        .execute(crate::kv_service::KvOp::Txn(prewrite))
        .await
        .unwrap();
    let locks = send!(&app, test::TestRequest::get().uri("/v1/txn/locks"));
    assert_eq!(locks.status(), StatusCode::OK);
    let locks = json(&test::read_body(locks).await);
    assert_eq!(
        locks["locks"],
        json!([{"key": "held", "primary": "held", "start_ts": start_ts, "ttl_ms": 60000}])
    );
    let older = send!(
        &app,
        test::TestRequest::get().uri(&format!("/v1/txn/locks?max_ts={}", start_ts - 1))
    );
    assert_eq!(json(&test::read_body(older).await)["locks"], json!([]));
    for bad in [
        "limit=0",
        "limit=x",
        "max_ts=0",
        "encoding=hex",
        "colour=red",
    ] {
        let response = send!(
            &app,
            test::TestRequest::get().uri(&format!("/v1/txn/locks?{bad}"))
        );
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    node.stop().await;
}
