//! The embedded placement driver behind the API: its meta region, records repaired when a
//! leadership begins, and `/health` (with the leader drain).

use super::*;

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
            crate::pd::PD_PATH,
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
    let pd_server = crate::pd::PdServer::new(
        node.store.router(),
        node.state.admin.clone(),
        node.state.addresses.clone(),
        crate::pd::PdSetup {
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
        .handle(crate::pd::PdRequest::Cluster)
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
        .handle(crate::pd::PdRequest::Timestamps { count: 1 })
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

/// A store's heartbeat leading regions `[start, end)` for each pair of `ranges`.
fn heartbeat_leading(ranges: &[(&[u8], &[u8])]) -> crate::pd::PdRequest {
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
