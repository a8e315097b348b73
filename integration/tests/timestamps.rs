//! The timestamp oracle against real processes: `GET /v1/txn/ts` on any node answers
//! timestamps greater than every one answered before the request was sent, also when the
//! node running the placement driver is killed and another takes over, and no two
//! requests, however concurrent, share a timestamp.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

use tinykv_integration::process::ProcessCluster;
use tinykv_integration::rest::get_json;

/// Asks node `id` for `count` timestamps until it answers (a PD leader change makes the
/// first requests fail); returns the first and the last.
async fn timestamps(
    http: &reqwest::Client,
    cluster: &ProcessCluster,
    id: u64,
    count: u64,
) -> (u64, u64) {
    let url = format!("{}/v1/txn/ts?count={count}", cluster.url(id));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = http.get(&url).send().await {
            let status = response.status().as_u16();
            let bytes = response.bytes().await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if status == 200 {
                assert_eq!(body["count"].as_u64(), Some(count), "{body}");
                let ts = body["ts"].as_u64().expect("a timestamp");
                assert_eq!(ts >> 18, body["physical_ms"].as_u64().unwrap(), "{body}");
                assert_eq!(ts & ((1 << 18) - 1), body["logical"].as_u64().unwrap());
                return (ts, ts + count - 1);
            }
            assert!(
                matches!(status, 503 | 504),
                "node {id} answered {status}: {body}"
            );
        }
        assert!(Instant::now() < deadline, "node {id} gave no timestamps");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn timestamps_only_increase_across_nodes_and_a_pd_leader_kill() {
    let mut cluster = ProcessCluster::start(3);
    let http = tinykv::security::http_client_builder().build().unwrap();
    for id in 1..=3 {
        cluster.wait_healthy(id, &http).await;
    }
    // Each request is sent after the one before was answered, to any node: each answer
    // must be above the last.
    let mut last = 0;
    let next = |(first, end): (u64, u64), last: &mut u64| {
        assert!(first > *last, "{first} answered after {}", *last);
        *last = end;
    };
    for i in 0..30u64 {
        next(
            timestamps(&http, &cluster, 1 + i % 3, 1 + i % 5).await,
            &mut last,
        );
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let physical = last >> 18;
    assert!(
        physical.abs_diff(now_ms) < 10_000,
        "a timestamp carries the time: {physical} against {now_ms}"
    );

    let view = get_json(&http, &format!("{}/v1/admin/cluster", cluster.url(1))).await;
    let pd = view["pd_leader_store"]
        .as_u64()
        .expect("the PD leader's store");
    cluster.kill_node(pd);
    let survivors: Vec<u64> = (1..=3).filter(|id| *id != pd).collect();
    for i in 0..10 {
        next(
            timestamps(&http, &cluster, survivors[i % 2], 3).await,
            &mut last,
        );
    }
    let view = get_json(
        &http,
        &format!("{}/v1/admin/cluster", cluster.url(survivors[0])),
    )
    .await;
    let successor = view["pd_leader_store"].as_u64();
    assert!(
        successor.is_some_and(|s| s != pd),
        "another node runs the PD: {view}"
    );
    cluster.start_node(pd);
    cluster.wait_healthy(pd, &http).await;
    for id in [pd, survivors[0], survivors[1], pd] {
        next(timestamps(&http, &cluster, id, 2).await, &mut last);
    }
}

#[tokio::test]
async fn concurrent_requests_never_share_a_timestamp_and_bad_counts_are_refused() {
    let cluster = ProcessCluster::start(3);
    let http = tinykv::security::http_client_builder().build().unwrap();
    for id in 1..=3 {
        cluster.wait_healthy(id, &http).await;
    }
    let batches: Vec<(u64, u64)> = futures::stream::iter(0..300u64)
        .map(|i| {
            let (http, cluster) = (&http, &cluster);
            async move { timestamps(http, cluster, 1 + i % 3, 1 + i % 7).await }
        })
        .buffer_unordered(24)
        .collect()
        .await;
    let mut seen = BTreeSet::new();
    for &(first, end) in &batches {
        for ts in first..=end {
            assert!(seen.insert(ts), "timestamp {ts} answered twice");
        }
    }
    let total: u64 = (0..300u64).map(|i| 1 + i % 7).sum();
    assert_eq!(seen.len() as u64, total);

    for bad in ["0", "65537", "-1", "ten", ""] {
        let url = format!("{}/v1/txn/ts?count={bad}", cluster.url(2));
        let response = http.get(&url).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 400, "count={bad}");
        let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(
            body["error"]["code"], "invalid_count",
            "count={bad}: {body}"
        );
    }
    let url = format!("{}/v1/txn/ts?n=3", cluster.url(2));
    let body = get_json(&http, &url).await;
    assert_eq!(body["error"]["code"], "unknown_parameter", "{body}");
}
