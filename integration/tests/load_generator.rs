//! `tinykv-bench` against real `tinykv-server` processes: the load generator's own HTTP/1.1
//! client must get every request of a mixed workload answered, over plain HTTP and TLS,
//! and move a client whose node is down on to another node without counting an error.
//! Benchmarks trust its numbers, so a run that quietly lost requests or misread answers
//! would make every ratio in `docs/benchmarks.md` wrong.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tinykv_integration::process::{bench_binary, ProcessCluster};

const READY: Duration = Duration::from_secs(30);

/// Runs tinykv-bench with `args` plus `--json`, asserts it succeeded, and returns the
/// report.
fn bench(dir: &Path, args: &[String]) -> Value {
    let json = dir.join(format!("bench-{}.json", rand_suffix()));
    let output = Command::new(bench_binary())
        .args(args)
        .args(["--quiet", "--warmup", "0s", "--json"])
        .arg(&json)
        .output()
        .expect("run tinykv-bench");
    assert!(
        output.status.success(),
        "tinykv-bench failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&std::fs::read(&json).expect("the report")).expect("report JSON")
}

fn rand_suffix() -> u64 {
    rand::random()
}

/// The summary of operation kind `op` ("all", "read", "write") in a report.
fn summary<'a>(report: &'a Value, op: &str) -> &'a Value {
    report["results"]
        .as_array()
        .and_then(|results| results.iter().find(|r| r["op"] == op))
        .unwrap_or_else(|| panic!("no {op} results in {report}"))
}

fn endpoints(cluster: &ProcessCluster, ids: &[u64]) -> String {
    ids.iter()
        .map(|id| cluster.url(*id))
        .collect::<Vec<_>>()
        .join(",")
}

async fn wait_ready(cluster: &ProcessCluster, ids: &[u64]) {
    let http = cluster.client();
    for id in ids {
        cluster.wait_ready(*id, &http, READY).await.unwrap();
    }
}

#[tokio::test]
async fn every_request_of_a_mixed_run_is_answered_and_a_dead_node_is_skipped() {
    let mut cluster = ProcessCluster::start(3);
    wait_ready(&cluster, &[1, 2, 3]).await;
    let dir = cluster.dir().to_path_buf();

    let ops = 1500;
    let report = bench(
        &dir,
        &[
            "--endpoints".into(),
            endpoints(&cluster, &[1, 2, 3]),
            "--workload".into(),
            "a".into(),
            "--keys".into(),
            "100".into(),
            "--preload".into(),
            "--clients".into(),
            "12".into(),
            "--ops".into(),
            ops.to_string(),
        ],
    );
    let all = summary(&report, "all");
    assert_eq!(all["count"], ops, "{report}");
    assert_eq!(all["errors"], 0, "{report}");
    assert!(summary(&report, "read")["count"].as_u64() > Some(0));
    assert!(summary(&report, "write")["count"].as_u64() > Some(0));
    // Every key was preloaded, so no read found its key missing.
    assert_eq!(summary(&report, "read")["misses"], 0, "{report}");

    // The values it wrote are there, whole.
    let http = cluster.client();
    let value = http
        .get(format!("{}/v1/kv/bench-42", cluster.url(2)))
        .send()
        .await
        .unwrap();
    assert_eq!(value.status(), 200);
    assert_eq!(value.bytes().await.unwrap().len(), 128);

    // With node 3 down, the clients that start there get no answer and move on.
    cluster.stop_node(3);
    let report = bench(
        &dir,
        &[
            "--endpoints".into(),
            endpoints(&cluster, &[3, 1, 2]),
            "--workload".into(),
            "write".into(),
            "--keys".into(),
            "100".into(),
            "--clients".into(),
            "6".into(),
            "--ops".into(),
            "300".into(),
        ],
    );
    let all = summary(&report, "all");
    assert_eq!(
        (all["count"].as_u64(), all["errors"].as_u64()),
        (Some(300), Some(0)),
        "{report}"
    );
}

#[tokio::test]
async fn a_run_over_tls_checks_the_servers_certificates() {
    let cluster = ProcessCluster::start_secure(3, false, "");
    wait_ready(&cluster, &[1, 2, 3]).await;
    let dir = cluster.dir().to_path_buf();
    let mut args: Vec<String> = vec![
        "--endpoints".into(),
        endpoints(&cluster, &[1, 2, 3]),
        "--workload".into(),
        "b".into(),
        "--keys".into(),
        "50".into(),
        "--preload".into(),
        "--clients".into(),
        "6".into(),
        "--ops".into(),
        "400".into(),
        "--threads".into(),
        "2".into(),
        "--cacert".into(),
    ];
    args.push(cluster.ca_path().display().to_string());
    let report = bench(&dir, &args);
    let all = summary(&report, "all");
    assert_eq!(
        (all["count"].as_u64(), all["errors"].as_u64()),
        (Some(400), Some(0)),
        "{report}"
    );

    // A CA that did not sign the servers' certificates: every request fails, and the run
    // says so with its exit status.
    let stranger = tinykv::security::certs::CertAuthority::generate("stranger").expect("a CA");
    let stranger_ca = dir.join("stranger-ca.pem");
    std::fs::write(&stranger_ca, &stranger.issued.cert_pem).unwrap();
    let output = Command::new(bench_binary())
        .args(["--quiet", "--warmup", "0s", "--ops", "5", "--workload", "c"])
        .args(["--endpoints", &endpoints(&cluster, &[1])])
        .arg("--cacert")
        .arg(&stranger_ca)
        .output()
        .expect("run tinykv-bench");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no operation succeeded"), "{stderr}");
}
