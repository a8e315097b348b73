//! A cluster across simulated hosts: each node in its own network namespace, reached by
//! host name, with partitions made in the kernel (see `tinykv_integration::netns`).
//!
//! Needs root for the namespaces. Where they cannot be made, each test prints why on
//! stderr and returns without asserting anything: it is skipped, and says so.

use std::time::{Duration, Instant};

use tinykv_integration::chaos::{self, ChaosConfig, FaultKind, Verdict, Workload};
use tinykv_integration::linearizability::Outcome;
use tinykv_integration::netns::Link;
use tinykv_integration::process::ProcessCluster;
use tinykv_integration::rest::{must_get, must_put};

const FAST: &str = "[pd]\nheartbeat_interval_ms = 200\n";

/// Three live nodes in namespaces joined by `link`, and a client; `None` (with the reason
/// printed) where namespaces cannot be made.
async fn three_hosts(link: Link) -> Option<(ProcessCluster, reqwest::Client)> {
    let cluster = match ProcessCluster::start_in_namespaces_linked(3, FAST, link) {
        Ok(cluster) => cluster,
        Err(why) => {
            eprintln!("SKIPPED: cannot make network namespaces here ({why})");
            return None;
        }
    };
    let http = tinykv::security::http_client_builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for id in 1..=3 {
        cluster.wait_healthy(id, &http).await;
    }
    Some((cluster, http))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_separate_hosts_serve_by_name_and_survive_a_kernel_partition() {
    let Some((cluster, http)) = three_hosts(Link::Bridge).await else {
        return;
    };
    let hosts = cluster.hosts().unwrap();
    must_put(&http, &cluster, 1, "k", "before").await;
    assert_eq!(
        must_get(&http, &cluster, 3, "k").await,
        Some("before".into())
    );
    // Every node knows the others by name, on the same ports.
    let book =
        tinykv_integration::rest::get_json(&http, &format!("{}/v1/admin/stores", cluster.url(2)))
            .await;
    let addresses: Vec<&str> = book["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["raft_addr"].as_str().unwrap())
        .collect();
    assert_eq!(
        addresses,
        ["tkv1:20160", "tkv2:20160", "tkv3:20160"],
        "{book}"
    );

    // Node 3 cut off in the kernel: the majority keeps writing through nodes 1 and 2.
    hosts.isolate(3, true).unwrap();
    let cut_at = Instant::now();
    must_put(&http, &cluster, 1, "k", "during").await;
    must_put(&http, &cluster, 2, "k2", "during").await;
    assert_eq!(
        must_get(&http, &cluster, 2, "k").await,
        Some("during".into())
    );
    // Node 3 still answers the test, but cannot serve a write: it is refused or times
    // out, never acknowledged. Refused, it must never apply; timed out (here or at the
    // node), its outcome is unknown: node 3 may have handed it to raft, and a TCP
    // retransmission after the heal can still carry it to the leader.
    let write = http
        .put(format!("{}/v1/kv/k", cluster.url(3)))
        .body("minority")
        .send()
        .await;
    let minority_not_applied = match write {
        Ok(response) => {
            assert!(
                !response.status().is_success(),
                "a write through the cut-off node was acknowledged"
            );
            let body = response.bytes().await.unwrap_or_default();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            body["error"]["outcome"] == "not_applied"
        }
        Err(_) => false,
    };
    eprintln!("majority wrote within {:?} of the cut", cut_at.elapsed());

    // Healed, node 3 catches up and reads what the majority reads: the majority's value,
    // or the minority's if that write's outcome was unknown and it did apply after all.
    hosts.isolate(3, false).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = must_get(&http, &cluster, 3, "k").await;
        if got.as_deref() == Some("during") {
            break;
        }
        if got.as_deref() == Some("minority") && !minority_not_applied {
            assert_eq!(
                must_get(&http, &cluster, 1, "k").await.as_deref(),
                Some("minority"),
                "nodes 1 and 3 disagree"
            );
            break;
        }
        assert_eq!(got.as_deref(), Some("during"), "or still minority: {got:?}");
        assert!(Instant::now() < deadline);
    }
    assert_eq!(
        must_get(&http, &cluster, 3, "k2").await,
        Some("during".into())
    );
}

/// The applied index of the data region (the one starting at the first key; the PD's
/// meta region is last) on node `id`'s peer of it, or why it cannot be read.
async fn applied_index(
    http: &reqwest::Client,
    cluster: &ProcessCluster,
    id: u64,
) -> Result<u64, String> {
    let url = format!("{}/v1/admin/regions", cluster.url(id));
    let response = http
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let body = response.bytes().await.map_err(|e| format!("{url}: {e}"))?;
    let view: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))?;
    view["regions"]
        .as_array()
        .and_then(|regions| regions.iter().find(|r| r["start_key"] == ""))
        .and_then(|region| region["applied_index"].as_u64())
        .ok_or_else(|| format!("{url}: no applied index in {view}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_moves_is_found_again_by_its_name() {
    let Some((cluster, http)) = three_hosts(Link::Bridge).await else {
        return;
    };
    let hosts = cluster.hosts().unwrap();
    must_put(&http, &cluster, 1, "k", "before").await;

    // Node 3's machine comes back at another address under the same name. The others'
    // connections to the old address go silent (no reset): they must notice, reconnect
    // by name, and reach it at the new one.
    let moved_at = Instant::now();
    let new_ip = hosts.move_host(3).unwrap();
    assert_eq!(cluster.http_addr(3), format!("{new_ip}:8080"));
    must_put(&http, &cluster, 1, "k", "after").await;
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let leader = applied_index(&http, &cluster, 1).await;
        let moved = applied_index(&http, &cluster, 3).await;
        if let (Ok(leader), Ok(moved)) = (&leader, &moved) {
            if moved >= leader {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "node 3 did not catch up after its move: applied {moved:?} against {leader:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("node 3 caught up {:?} after its move", moved_at.elapsed());
    // And it serves through its new address.
    must_put(&http, &cluster, 3, "k", "through the moved node").await;
    assert_eq!(
        must_get(&http, &cluster, 1, "k").await.as_deref(),
        Some("through the moved node")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_with_kernel_partitions_stays_linearizable() {
    if let Err(why) = tinykv_integration::netns::Hosts::create(1) {
        eprintln!("SKIPPED: cannot make network namespaces here ({why})");
        return;
    }
    let outcome = chaos::run(ChaosConfig {
        nodes: 3,
        clients: 8,
        duration: Duration::from_secs(15),
        faults: vec![
            FaultKind::Partition,
            FaultKind::Kill,
            FaultKind::TransferLeader,
        ],
        workload: Workload::Kv,
        netns: true,
        ..ChaosConfig::default()
    })
    .await;
    eprintln!("{}", outcome.line);
    assert_eq!(
        outcome.verdict,
        Verdict::Pass,
        "{}\nproblems: {:?}",
        outcome.line,
        outcome.problems
    );
    assert!(outcome.faults > 0, "the nemesis injected nothing");
    assert!(
        outcome.history.count(Outcome::Ok) > 100,
        "too few operations succeeded: {}",
        outcome.line
    );
}

/// The shortest of five TCP connects from the test to `addr`: one round trip.
async fn connect_rtt(addr: &str) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        best = best.min(started.elapsed());
        drop(stream);
    }
    best
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_userspace_switch_carries_a_cluster_and_delays_one_host() {
    let Some((cluster, http)) = three_hosts(Link::UserspaceSwitch).await else {
        return;
    };
    must_put(&http, &cluster, 1, "k", "through the switch").await;
    assert_eq!(
        must_get(&http, &cluster, 3, "k").await.as_deref(),
        Some("through the switch")
    );

    // 40 ms on what node 3 sends: its SYN-ACK comes back that much later.
    let hosts = cluster.hosts().unwrap();
    hosts.set_delay(3, 40, 0.0).unwrap();
    let near = connect_rtt(&cluster.http_addr(1)).await;
    let far = connect_rtt(&cluster.http_addr(3)).await;
    eprintln!("connect round trip: node 1 {near:?}, node 3 {far:?}");
    assert!(far >= Duration::from_millis(40), "{far:?}");
    assert!(near < Duration::from_millis(20), "{near:?}");
    // The cluster still serves through the slow host.
    must_put(&http, &cluster, 3, "k", "slow").await;
    assert_eq!(
        must_get(&http, &cluster, 1, "k").await.as_deref(),
        Some("slow")
    );
}
