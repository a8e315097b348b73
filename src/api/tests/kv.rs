//! Keys and values through the client API: puts, gets, scans and deletes of byte keys,
//! idempotency keys, bad requests refused without effect, and scans paged by bytes.

use super::*;

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
