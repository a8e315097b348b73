//! The real binary, three processes on loopback: write, kill -9 the leader, keep writing,
//! restart it, and every acknowledged write is readable from every node.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tinykv_integration::process::ProcessCluster;

/// Puts `key` = `value` through node `id`, retrying until it is acknowledged. A request
/// whose outcome is unknown (timeout) is retried with the same value, which is idempotent.
async fn must_put(
    http: &reqwest::Client,
    cluster: &ProcessCluster,
    id: u64,
    key: &str,
    value: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = http
            .put(format!("{}/v1/kv/{key}", cluster.url(id)))
            .body(value.to_string())
            .send()
            .await;
        match resp {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => assert!(
                r.status().is_server_error() && Instant::now() < deadline,
                "put {key} on node {id}: {} {:?}",
                r.status(),
                r.text().await
            ),
            Err(e) => assert!(Instant::now() < deadline, "put {key} on node {id}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn must_get(
    http: &reqwest::Client,
    cluster: &ProcessCluster,
    id: u64,
    key: &str,
) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match http
            .get(format!("{}/v1/kv/{key}", cluster.url(id)))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => return Some(r.text().await.unwrap()),
            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => return None,
            Ok(r) => assert!(
                Instant::now() < deadline,
                "get {key} on node {id}: {}",
                r.status()
            ),
            Err(e) => assert!(Instant::now() < deadline, "get {key} on node {id}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

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
    let http = reqwest::Client::new();
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
