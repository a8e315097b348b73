//! Transactions against real processes: compare-and-set and one-shot transactions over
//! HTTP, then garbage collection with a short life time: the safe point advances, old
//! versions are collected on the leaders' nodes, what a read at the latest timestamp
//! sees is kept, and `tinykv-ctl txn` shows it all.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tinykv_integration::process::{ctl_binary, ProcessCluster};
use tinykv_integration::rest::{get_json, metric, post_json};

/// A PUT of `value` at the transactional `key` under the condition header, retried while
/// the cluster elects; the status and the new version (`ETag`).
async fn conditional_put(
    http: &reqwest::Client,
    url: &str,
    header: (&str, String),
    value: &str,
) -> (u16, Option<u64>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = http
            .put(url)
            .header(header.0, header.1.clone())
            .body(value.to_string())
            .send()
            .await;
        if let Ok(response) = response {
            let status = response.status().as_u16();
            let version = response
                .headers()
                .get("etag")
                .and_then(|tag| tag.to_str().ok())
                .and_then(|tag| tag.trim_matches('"').parse().ok());
            if !matches!(status, 503 | 504) {
                return (status, version);
            }
        }
        assert!(Instant::now() < deadline, "PUT {url} never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `tinykv-ctl --addr <node 1> args...`; answers its stdout.
fn ctl(cluster: &ProcessCluster, args: &[&str]) -> String {
    let output = std::process::Command::new(ctl_binary())
        .arg("--addr")
        .arg(cluster.http_addr(1))
        .args(args)
        .output()
        .expect("tinykv-ctl runs");
    assert!(
        output.status.success(),
        "tinykv-ctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn conditional_writes_then_garbage_collection_on_real_processes() {
    let life_time_ms = 20_000;
    let mut cluster = ProcessCluster::start_with_config(
        3,
        &format!("[gc]\nlife_time_ms = {life_time_ms}\nrun_interval_ms = 500\nbatch_keys = 2\n"),
    );
    let http = tinykv::security::http_client_builder().build().unwrap();
    for id in 1..=3 {
        cluster.wait_healthy(id, &http).await;
    }
    // Five versions of one key through compare-and-set, alternating nodes.
    let mut versions = Vec::new();
    let (status, version) = conditional_put(
        &http,
        &format!("{}/v1/kv/config", cluster.url(1)),
        ("If-None-Match", "*".into()),
        "v0",
    )
    .await;
    assert_eq!(status, 200);
    versions.push(version.unwrap());
    for round in 1..5u64 {
        let node = 1 + round % 3;
        let url = format!("{}/v1/kv/config", cluster.url(node));
        let previous = *versions.last().unwrap();
        let (status, version) = conditional_put(
            &http,
            &url,
            ("If-Match", format!("\"{previous}\"")),
            &format!("v{round}"),
        )
        .await;
        assert_eq!(status, 200, "round {round}");
        // The same condition again fails: the version moved on.
        let (stale, _) = conditional_put(
            &http,
            &url,
            ("If-Match", format!("\"{previous}\"")),
            "stale",
        )
        .await;
        assert_eq!(stale, 412);
        versions.push(version.unwrap());
    }
    // A one-shot transaction reading the key and writing another.
    let (status, answer) = post_json(
        &http,
        &format!("{}/v1/txn", cluster.url(2)),
        &json!({
            "compare": [{"key": "config", "version": versions[4]}],
            "success": [{"op": "put", "key": "copy", "value": "v4"}, {"op": "get", "key": "config"}],
        }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["succeeded"], true);
    assert_eq!(answer["responses"][1]["value"], "v4");

    // The safe point passes every version (life time 20 s, rounds every half second).
    let deadline = Instant::now() + Duration::from_secs(60);
    let newest = *versions.iter().max().unwrap();
    loop {
        let answer = get_json(&http, &format!("{}/v1/txn/safe-point", cluster.url(3))).await;
        if answer["safe_point"].as_u64().is_some_and(|sp| sp > newest) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the safe point stayed at {answer}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Four old versions, each a record and a value, collected by the leader's node.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut deleted = 0.0;
        for id in 1..=3 {
            deleted += metric(&http, &cluster.url(id), "tinykv_txn_gc_deleted_total", &[]).await;
        }
        if deleted >= 8.0 {
            break;
        }
        assert!(Instant::now() < deadline, "only {deleted} deletions");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The newest version is what a read sees; reads behind the window are refused.
    let latest = http
        .get(format!("{}/v1/kv/config?ts=latest", cluster.url(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(latest.status().as_u16(), 200);
    assert_eq!(latest.bytes().await.unwrap(), "v4");
    let old = http
        .get(format!(
            "{}/v1/kv/config?ts={}",
            cluster.url(1),
            versions[0]
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status().as_u16(), 400);
    let body: Value = serde_json::from_slice(&old.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "ts_too_old");

    // tinykv-ctl shows the safe point and (no) locks.
    let safe_point = ctl(&cluster, &["txn", "safe-point"]);
    assert!(safe_point.starts_with("safe point "), "{safe_point}");
    assert_eq!(ctl(&cluster, &["txn", "locks"]), "no locks\n");
    cluster.kill_all();
}
