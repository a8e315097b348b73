//! A rolling restart with leader drains, against real processes: every node in turn has
//! its leaderships moved away (`tinykv-ctl store drain-leaders`, asked through another
//! node), is stopped with SIGTERM and started again, while writers keep writing through
//! the other nodes. No write may fail, and every acknowledged write must read back.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tinykv_integration::process::{ctl_binary, ProcessCluster};
use tinykv_integration::rest::{must_get, post_json};

const FAST_PD: &str = "[pd]\nheartbeat_interval_ms = 200\nbalance_interval_ms = 200\n";
const WRITERS: u64 = 8;

/// What the writers saw.
#[derive(Default)]
struct Tally {
    /// Acknowledged writes: key → last acknowledged value.
    acked: Mutex<std::collections::BTreeMap<String, u64>>,
    /// Failed writes, with the reason.
    errors: Mutex<Vec<String>>,
    /// Slowest acknowledged write, in microseconds.
    max_micros: AtomicU64,
}

/// Waits until every node answers the readiness probe `/health` with 200: the PD sees a
/// leader for every key, and no node is draining.
async fn wait_ready(cluster: &ProcessCluster, http: &reqwest::Client) {
    for id in 1..=3 {
        let ready = cluster.wait_ready(id, http, Duration::from_secs(30)).await;
        ready.unwrap_or_else(|why| panic!("{why}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_with_leader_drains_fails_no_write() {
    let mut cluster = ProcessCluster::start_with_config(3, FAST_PD);
    let http = tinykv::security::http_client_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for id in 1..=3 {
        cluster.wait_healthy(id, &http).await;
    }
    // Eight regions, so that every store leads some once the PD has balanced them.
    let keys: Vec<String> = ["b", "d", "f", "h", "j", "l", "n"]
        .iter()
        .map(|k| k.to_string())
        .collect();
    let url = format!("{}/v1/admin/regions/1/split", cluster.url(1));
    let (status, body) = post_json(&http, &url, &serde_json::json!({ "keys": keys })).await;
    assert_eq!(status, 200, "{body}");
    wait_ready(&cluster, &http).await;

    let down = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let urls: Vec<String> = (1..=3).map(|id| cluster.url(id)).collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (http, down, stop, tally, urls) = (
                http.clone(),
                down.clone(),
                stop.clone(),
                tally.clone(),
                urls.clone(),
            );
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    // Through a node that is not being restarted, as a load balancer
                    // that follows /health would send it.
                    let down = down.load(Ordering::Relaxed);
                    let via = (0..3u64)
                        .map(|i| (w + n + i) % 3 + 1)
                        .find(|id| *id != down)
                        .unwrap();
                    let key = format!("{}{w}-{}", (b'a' + (n % 16) as u8) as char, n % 50);
                    let started = Instant::now();
                    let sent = http
                        .put(format!("{}/v1/kv/{key}", urls[(via - 1) as usize]))
                        .body(n.to_string())
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => {
                            let micros = started.elapsed().as_micros() as u64;
                            tally.max_micros.fetch_max(micros, Ordering::Relaxed);
                            tally.acked.lock().unwrap().insert(key, n);
                        }
                        Ok(r) => {
                            let status = r.status();
                            let body = r.text().await.unwrap_or_default();
                            let error = format!("{key} via node {via}: {status} {body}");
                            tally.errors.lock().unwrap().push(error);
                        }
                        Err(e) => tally
                            .errors
                            .lock()
                            .unwrap()
                            .push(format!("{key} via node {via}: {e}")),
                    }
                }
            })
        })
        .collect();

    for id in 1..=3u64 {
        let through = id % 3 + 1;
        down.store(id, Ordering::Relaxed);
        let drained = Command::new(ctl_binary())
            .args(["--addr", &cluster.http_addr(through)])
            .args(["store", "drain-leaders", &id.to_string(), "--timeout", "30"])
            .output()
            .expect("run tinykv-ctl");
        let said = String::from_utf8_lossy(&drained.stdout).to_string()
            + &String::from_utf8_lossy(&drained.stderr);
        assert!(drained.status.success(), "drain of store {id}: {said}");
        assert!(said.contains("leads no region"), "{said}");
        // Draining takes the node out of the readiness rotation.
        let health = http
            .get(format!("{}/health", cluster.url(id)))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 503);
        assert!(cluster.stop_node(id), "node {id} did not stop on SIGTERM");
        cluster.start_node(id);
        cluster.wait_healthy(id, &http).await;
        wait_ready(&cluster, &http).await;
        down.store(0, Ordering::Relaxed);
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }

    let errors = tally.errors.lock().unwrap().clone();
    let acked = tally.acked.lock().unwrap().clone();
    let max_ms = tally.max_micros.load(Ordering::Relaxed) as f64 / 1000.0;
    eprintln!(
        "rolling restart: {} keys written, {} errors, slowest acknowledged write {max_ms:.1} ms",
        acked.len(),
        errors.len()
    );
    assert!(
        errors.is_empty(),
        "{} failed writes: {errors:#?}",
        errors.len()
    );
    assert!(acked.len() > 100, "only {} keys written", acked.len());
    for (key, value) in acked.iter().step_by(7) {
        assert_eq!(
            must_get(&http, &cluster, 1, key).await,
            Some(value.to_string()),
            "{key}"
        );
    }
}
