//! The admin API: views of regions and stores, splits, new peers, input refused against the
//! leader's view, the stores view's probes, and the fault endpoints.

use super::*;

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
            .app_data(web::Data::new(
                crate::server::network_faults::Faults::disabled(),
            ))
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

    let faults = crate::server::network_faults::Faults::enabled();
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

/// Region and peer ids come from the placement driver: the split that makes the meta
/// region (region 2) uses ids computed from region 1's, before any PD exists, and every
/// later split takes ids the PD handed out, from 1000 on.
#[actix_rt::test]
async fn splits_take_their_ids_from_the_placement_driver() {
    let pool = crate::pd::PdIds::new();
    let addresses = AddressBook::new([unreachable_address(1)]);
    let node = SingleStore::start_with_ids(1, &[1], addresses, Ids::FromPd(pool.clone())).await;
    // The refill's first request starts the PD, which splits the meta region off first.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while pool.available() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the PD never handed out ids"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let router = node.store.router();
    let meta = router
        .find_region(crate::pd::META_REGION_START)
        .await
        .unwrap()
        .expect("the meta region")
        .region;
    assert_eq!(meta.id, 2);
    assert_eq!(
        meta.peers,
        vec![tinykv_proto::metapb::Peer { id: 3, store_id: 1 }]
    );

    let regions = node
        .state
        .admin
        .split(1, vec![b"m".to_vec()])
        .await
        .unwrap();
    let new = regions.iter().find(|r| r.id != 1).expect("a new region");
    assert_eq!(new.start_key, b"m");
    for id in std::iter::once(new.id).chain(new.peers.iter().map(|p| p.id)) {
        assert!((1000..1 << 40).contains(&id), "id {id} was not the PD's");
    }
    // Another split takes other ids: none is ever handed out twice.
    let more = node
        .state
        .admin
        .split(1, vec![b"c".to_vec()])
        .await
        .unwrap();
    let newer = more.iter().find(|r| r.start_key == b"c").unwrap();
    let mut seen = vec![new.id, new.peers[0].id, newer.id, newer.peers[0].id];
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 4, "{seen:?}");
}

/// A node that cannot reach the placement driver has no ids to give new regions: an
/// admin split is answered 503 `ids_unavailable` at its deadline and changes nothing.
#[actix_rt::test]
async fn a_node_without_the_placement_driver_cannot_split() {
    let addresses = AddressBook::new([unreachable_address(1)]);
    let unreachable = Ids::PdUnreachable(crate::pd::PdIds::new());
    let node = SingleStore::start_with_ids(1, &[1], addresses, unreachable).await;
    let err = node
        .state
        .admin
        .split(1, vec![b"m".to_vec()])
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.status()),
        ("ids_unavailable", StatusCode::SERVICE_UNAVAILABLE),
        "{err}"
    );
    let region = node
        .store
        .router()
        .find_region(b"z")
        .await
        .unwrap()
        .expect("region 1")
        .region;
    assert_eq!((region.id, region.start_key.as_slice()), (1, &b""[..]));
    assert!(region.end_key.is_empty());
    // Reads and writes do not need the PD.
    let service = &node.state.service;
    let session = service.new_session(None);
    service
        .put(Cf::Default, b"k".to_vec(), b"v".to_vec(), session)
        .await
        .unwrap();
}
