//! What the node shows about itself: metrics, the OpenAPI document (checked against the
//! router), the dashboard, and the HTTP conventions every route keeps.

use super::*;

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
