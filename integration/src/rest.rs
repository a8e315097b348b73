//! REST helpers for tests of real processes: writes and reads that retry until the
//! cluster answers, and the region views of the admin API.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::process::ProcessCluster;

/// Retries `attempt` every 50 ms until it returns `Some`, and returns that; panics naming
/// `what` if it has not within `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(done) = attempt().await {
            return done;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Puts `key` = `value` through node `id`, retrying until it is acknowledged. A request
/// whose outcome is unknown (timeout) is retried with the same value, which is idempotent.
pub async fn must_put(
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

/// Gets `key` through node `id`, retrying server errors until the cluster answers; `None`
/// if the key is absent.
pub async fn must_get(
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

/// POSTs `body` as JSON to `url`; returns the status and the answer parsed as JSON
/// (panics, showing the body, if it is not).
pub async fn post_json(
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let parsed = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "POST {url}: {status} with a body that is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, parsed)
}

/// GETs `url` and parses the answer as JSON.
/// GETs `url` and parses the body as JSON (panics, showing the body, if it is not).
pub async fn get_json(http: &reqwest::Client, url: &str) -> serde_json::Value {
    let body = http.get(url).send().await.unwrap().bytes().await.unwrap();
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body:?}"))
}

/// Node `id`'s regions: start key → (end key, stores of the peers, sorted).
/// The regions node `id` holds: start key → (end key, sorted store ids of the peers).
pub async fn region_map(
    http: &reqwest::Client,
    cluster: &ProcessCluster,
    id: u64,
) -> BTreeMap<String, (String, Vec<u64>)> {
    let body = get_json(http, &format!("{}/v1/admin/regions", cluster.url(id))).await;
    let mut regions = BTreeMap::new();
    for region in body["regions"].as_array().expect("a list of regions") {
        let mut stores: Vec<u64> = region["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["store_id"].as_u64().unwrap())
            .collect();
        stores.sort();
        let key = |field: &str| region[field].as_str().unwrap().to_string();
        regions.insert(key("start_key"), (key("end_key"), stores));
    }
    regions
}

/// The error code of a JSON error body (empty if it is none).
pub fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body).unwrap_or_default()["error"]["code"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// The sum of the samples of `metric` whose labels include every one of `labels`, as
/// the node at `url` shows them at `/metrics`.
pub async fn metric(http: &reqwest::Client, url: &str, metric: &str, labels: &[&str]) -> f64 {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    sum_samples(&text, metric, labels)
}

/// The sum of the samples of `metric` in the Prometheus text `text` whose labels include
/// every one of `labels` (such as `op="put"`).
pub fn sum_samples(text: &str, metric: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(metric))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
