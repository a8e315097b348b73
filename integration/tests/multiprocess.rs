//! The real binary, three processes on loopback: write, kill -9 the leader, keep writing,
//! restart it, and every acknowledged write is readable from every node.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;

use tinykv_integration::process::ProcessCluster;
use tinykv_integration::rest::{get_json, must_get, must_put, post_json, region_map};

/// The store id of region 1's leader, as the nodes report it.
async fn leader_store(http: &reqwest::Client, cluster: &ProcessCluster) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for node in cluster.nodes() {
            let url = format!("{}/v1/admin/regions/1", cluster.url(node.id));
            if let Ok(r) = http.get(url).send().await {
                let body = r.bytes().await.unwrap_or_default();
                if let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) {
                    if let Some(store) = json["leader"]["store_id"].as_u64() {
                        return store;
                    }
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader reported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn applied_index(http: &reqwest::Client, cluster: &ProcessCluster, id: u64) -> u64 {
    let url = format!("{}/v1/admin/regions/1", cluster.url(id));
    let body = http.get(url).send().await.unwrap().bytes().await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    json["applied_index"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn kill_leader_keep_writing_restart_lose_nothing() {
    let mut cluster = ProcessCluster::start(3);
    let http = tinykv::security::http_client_builder().build().unwrap();
    for node in cluster.nodes().to_vec() {
        cluster.wait_healthy(node.id, &http).await;
    }
    let mut acked = BTreeMap::new();
    for i in 0..50 {
        let (key, value) = (format!("key{i:03}"), format!("value-{i}"));
        must_put(&http, &cluster, 1 + (i % 3), &key, &value).await;
        acked.insert(key, value);
    }

    let leader = leader_store(&http, &cluster).await;
    cluster.kill_node(leader);
    let survivors: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    for i in 50..100 {
        let (key, value) = (format!("key{i:03}"), format!("value-{i}"));
        must_put(&http, &cluster, survivors[i as usize % 2], &key, &value).await;
        acked.insert(key, value);
    }

    cluster.start_node(leader);
    cluster.wait_healthy(leader, &http).await;
    for id in 1..=3 {
        for (key, value) in &acked {
            assert_eq!(
                must_get(&http, &cluster, id, key).await.as_deref(),
                Some(value.as_str()),
                "node {id} lost {key}"
            );
        }
    }
    // The restarted node has caught up on its own disk, not only through forwarding.
    let target = applied_index(&http, &cluster, survivors[0]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while applied_index(&http, &cluster, leader).await < target {
        assert!(Instant::now() < deadline, "restarted node did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Issue 3's load: 100,000 keys written through REST into three nodes whose regions split
/// at 192 KiB end up in many regions, each with a peer on every store, tiling the key
/// space; a paged scan returns every key, in order, with its value.
#[tokio::test]
async fn hundred_thousand_keys_split_into_many_regions() {
    const KEYS: u64 = 100_000;
    let cluster = ProcessCluster::start_with_raftstore(
        3,
        "region_max_size = 262144\nregion_split_size = 196608\nsplit_check_tick_ms = 200\n",
    );
    let http = tinykv::security::http_client_builder().build().unwrap();
    for node in cluster.nodes().to_vec() {
        cluster.wait_healthy(node.id, &http).await;
    }
    let value_of = |i: u64| format!("value-{i:06}-{}", "x".repeat(40));
    futures::stream::iter(0..KEYS)
        .map(|i| {
            let (http, cluster) = (&http, &cluster);
            async move {
                let key = format!("key{i:06}");
                must_put(http, cluster, 1 + i % 3, &key, &value_of(i)).await
            }
        })
        .buffer_unordered(64)
        .collect::<()>()
        .await;

    let mut next = 0u64;
    let mut start = String::new();
    loop {
        let url = format!("{}/v1/kv?start={start}&limit=10000", cluster.url(1));
        let page = get_json(&http, &url).await;
        let kvs = page["kvs"].as_array().expect("a page of pairs");
        if kvs.is_empty() {
            break;
        }
        for kv in kvs {
            assert_eq!(kv["key"], format!("key{next:06}"), "scan order");
            assert_eq!(kv["value"], value_of(next));
            next += 1;
        }
        start = format!("{}%00", kvs.last().unwrap()["key"].as_str().unwrap());
    }
    assert_eq!(next, KEYS, "the scan returned every key");

    // Splits triggered by the last writes may still be applying on some node: wait until
    // every node reports the same regions.
    let deadline = Instant::now() + Duration::from_secs(30);
    let regions = loop {
        let mut maps = Vec::new();
        for node in cluster.nodes() {
            maps.push(region_map(&http, &cluster, node.id).await);
        }
        if maps.windows(2).all(|w| w[0] == w[1]) {
            break maps.pop().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "nodes disagree on the regions: {maps:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        regions.len() >= 20,
        "only {} regions: {regions:?}",
        regions.len()
    );
    println!("{KEYS} keys in {} regions", regions.len());
    // Keys are shown percent-encoded, so the map's order is not the key order: follow
    // the chain of ranges from the first region instead.
    let mut start = String::new();
    for _ in 0..regions.len() {
        let (end, stores) = regions
            .get(&start)
            .unwrap_or_else(|| panic!("no region starts at {start:?}: {regions:?}"));
        assert_eq!(
            stores,
            &vec![1, 2, 3],
            "region [{start}, {end}) has a peer on every store"
        );
        start = end.clone();
        if start.is_empty() {
            break;
        }
    }
    assert_eq!(start, "", "the regions tile the key space: {regions:?}");
}

/// The README's walkthrough as written: kill -9 the node that leads the region, and the
/// very next write, sent once to another node, succeeds (the node retries it on the new
/// leader), and a read shows it. A retry with the answer's `Idempotency-Key` changes
/// nothing.
#[tokio::test]
async fn a_write_right_after_the_leader_is_killed_succeeds_once() {
    let mut cluster = ProcessCluster::start(3);
    let http = tinykv::security::http_client_builder().build().unwrap();
    for node in cluster.nodes().to_vec() {
        cluster.wait_healthy(node.id, &http).await;
    }
    must_put(&http, &cluster, 1, "hello", "world").await;
    let leader = leader_store(&http, &cluster).await;
    cluster.kill_node(leader);
    let other = (1..=3).find(|id| *id != leader).unwrap();

    let started = Instant::now();
    let response = http
        .put(format!("{}/v1/kv/hello", cluster.url(other)))
        .body("still here")
        .send()
        .await
        .unwrap();
    let status = response.status();
    let key = response.headers()["idempotency-key"]
        .to_str()
        .unwrap()
        .to_string();
    let body = response.text().await.unwrap();
    assert_eq!(
        status,
        200,
        "the write failed after {:?}: {body}",
        started.elapsed()
    );
    assert!(body.contains(r#""replayed":false"#), "{body}");

    let third = (1..=3).find(|id| *id != leader && *id != other).unwrap();
    let read = http
        .get(format!("{}/v1/kv/hello", cluster.url(third)))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.text().await.unwrap(), "still here");

    // Someone else writes; the first write, retried with its key, does not undo it.
    must_put(&http, &cluster, third, "hello", "later").await;
    let retry = http
        .put(format!("{}/v1/kv/hello", cluster.url(third)))
        .header("Idempotency-Key", &key)
        .body("still here")
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    cluster.start_node(leader);
    cluster.wait_healthy(leader, &http).await;
    assert_eq!(
        must_get(&http, &cluster, leader, "hello").await.as_deref(),
        Some("later")
    );
}

/// A batch split through the REST API of a node that does not lead the region: the
/// command travels to the leader's node (through the node-to-node API) and the region is
/// cut at every key at once; then a second batch through the node that led it first.
#[tokio::test]
async fn a_batch_split_through_any_node_cuts_the_region_at_every_key() {
    let cluster = ProcessCluster::start(3);
    let http = tinykv::security::http_client_builder().build().unwrap();
    for node in cluster.nodes().to_vec() {
        cluster.wait_healthy(node.id, &http).await;
    }
    let leader = leader_store(&http, &cluster).await;
    let other = (1..=3).find(|id| *id != leader).unwrap();
    let split = |node: u64, keys: Vec<String>| {
        let http = http.clone();
        let url = format!("{}/v1/admin/regions/1/split", cluster.url(node));
        async move {
            let (status, body) = post_json(&http, &url, &serde_json::json!({ "keys": keys })).await;
            assert_eq!(status, 200, "{body}");
            body["regions"].as_array().unwrap().len()
        }
    };
    // Region 1 keeps ["", k050); 50 keys from k050 on start a region each.
    let keys = |from: usize| (from..from + 50).map(|i| format!("k{i:03}")).collect();
    assert_eq!(split(other, keys(50)).await, 51);
    assert_eq!(
        split(leader, keys(0).into_iter().skip(1).collect()).await,
        50
    );
    // The new regions' peers start once the splits applied on each node.
    let deadline = Instant::now() + Duration::from_secs(20);
    for node in 1..=3 {
        loop {
            let regions = region_map(&http, &cluster, node).await;
            if regions.len() >= 101 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {node} holds {} regions",
                regions.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for i in [0, 1, 49, 50, 99, 120] {
        let key = format!("k{i:03}");
        must_put(&http, &cluster, other, &key, "v").await;
        assert_eq!(
            must_get(&http, &cluster, leader, &key).await.as_deref(),
            Some("v")
        );
    }
}

/// The admin API merges two neighbours through a node that leads neither, answering the
/// merged region, and refuses merges that break the rules (400, nothing frozen).
#[tokio::test]
async fn a_merge_through_any_node_absorbs_the_neighbour_and_bad_merges_are_refused() {
    let cluster = ProcessCluster::start(3);
    let http = tinykv::security::http_client_builder().build().unwrap();
    for node in cluster.nodes().to_vec() {
        cluster.wait_healthy(node.id, &http).await;
    }
    let leader = leader_store(&http, &cluster).await;
    let other = (1..=3).find(|id| *id != leader).unwrap();
    let post = |node: u64, path: String, body: serde_json::Value| {
        let http = http.clone();
        let url = format!("{}{path}", cluster.url(node));
        async move { post_json(&http, &url, &body).await }
    };
    for i in 0..30 {
        must_put(&http, &cluster, other, &format!("k{i:03}"), "v").await;
    }
    let (status, body) = post(
        leader,
        "/v1/admin/regions/1/split".into(),
        serde_json::json!({ "keys": ["k010", "k020"] }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<u64> = body["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    let (middle, last) = (ids[1], ids[2]);

    // Not neighbours, into itself, to a region that does not exist: refused.
    let merge = |source: u64, target: u64| {
        post(
            other,
            format!("/v1/admin/regions/{source}/merge"),
            serde_json::json!({ "target": target }),
        )
    };
    let (status, body) = merge(1, last).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_merge")),
        "{body}"
    );
    let (status, body) = merge(1, 1).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_merge")),
        "{body}"
    );
    // The placement driver's meta region (from byte 0xFF on) never merges. The first PD
    // leadership splits it off when it takes over, which may come after the first writes.
    let deadline = Instant::now() + Duration::from_secs(20);
    let meta = loop {
        let listed = get_json(&http, &format!("{}/v1/admin/regions", cluster.url(other))).await;
        let meta = listed["regions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["start_key"].as_str().unwrap().eq_ignore_ascii_case("%FF"))
            .and_then(|r| r["id"].as_u64());
        if let Some(meta) = meta {
            break meta;
        }
        assert!(Instant::now() < deadline, "no meta region in {listed}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for (source, target) in [(last, meta), (meta, last)] {
        let (status, body) = merge(source, target).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_merge")),
            "{body}"
        );
    }
    let (status, body) = post(
        other,
        "/v1/admin/regions/1/merge".into(),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_json")),
        "{body}"
    );
    must_put(&http, &cluster, other, "k015", "still-writable").await;

    // The middle region merges into the first, through a node that may lead neither.
    let (status, body) = merge(middle, 1).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["start_key"].as_str(), body["end_key"].as_str()),
        (Some(""), Some("k020")),
        "{body}"
    );
    for i in [0, 12, 15, 25] {
        let key = format!("k{i:03}");
        let expected = if i == 15 { "still-writable" } else { "v" };
        assert_eq!(
            must_get(&http, &cluster, leader, &key).await.as_deref(),
            Some(expected)
        );
    }
    must_put(&http, &cluster, leader, "k011", "after").await;
    assert_eq!(
        must_get(&http, &cluster, other, "k011").await.as_deref(),
        Some("after")
    );
}
