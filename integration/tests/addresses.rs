//! Listen and advertised addresses, against real processes.
//!
//! A node in a container listens on `0.0.0.0` and is reached by a name; what it tells the
//! placement driver, and through it every other node, must be the name. And when a node's
//! config still names an old address for another store, the placement driver's record
//! (which that store reported itself and proved by answering there) wins, and the node
//! says so in its log.

use std::time::Duration;

use serde_json::Value;

use tinykv_integration::process::ProcessCluster;
use tinykv_integration::rest::{eventually, get_json, must_get, must_put};

const FAST_PD: &str = "[pd]\nheartbeat_interval_ms = 200\n";

/// The placement driver's stores (`GET /v1/admin/cluster` through node `via`), once it
/// knows `count` of them.
async fn pd_stores(
    http: &reqwest::Client,
    cluster: &ProcessCluster,
    via: u64,
    count: usize,
) -> Vec<Value> {
    let url = format!("{}/v1/admin/cluster", cluster.url(via));
    eventually(
        "the placement driver to know every store",
        Duration::from_secs(30),
        || async {
            let body = http.get(&url).send().await.ok()?.bytes().await.ok()?;
            let view: Value = serde_json::from_slice(&body).ok()?;
            let stores = view["stores"].as_array()?.clone();
            (stores.len() == count).then_some(stores)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_listening_everywhere_advertise_their_names() {
    let cluster = ProcessCluster::start_listening_everywhere(3, "localhost", FAST_PD);
    let http = tinykv::security::http_client_builder().build().unwrap();
    for id in 1..=3 {
        cluster.wait_healthy(id, &http).await;
    }
    // Writes through every node reach the leader (forwarded by name) and replicate.
    for id in 1..=3 {
        must_put(&http, &cluster, id, &format!("k{id}"), "v").await;
    }
    for id in 1..=3 {
        assert_eq!(
            must_get(&http, &cluster, 4 - id, &format!("k{id}")).await,
            Some("v".into())
        );
    }

    for store in pd_stores(&http, &cluster, 1, 3).await {
        let id = store["id"].as_u64().expect("a store id");
        let ports = cluster.nodes()[(id - 1) as usize];
        assert_eq!(
            store["address"],
            format!("localhost:{}", ports.raft),
            "{store}"
        );
        assert_eq!(
            store["http_addr"],
            format!("localhost:{}", ports.http),
            "{store}"
        );
    }
    // Every node's address book holds the names, and reaches every store through them.
    for via in 1..=3 {
        let book = get_json(&http, &format!("{}/v1/admin/stores", cluster.url(via))).await;
        let stores = book["stores"].as_array().expect("stores");
        assert_eq!(stores.len(), 3, "{book}");
        for store in stores {
            assert!(
                store["raft_addr"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("localhost:")),
                "{store}"
            );
            assert_eq!(store["up"], true, "node {via}: {store}");
        }
    }
    let log = cluster.log(1);
    assert!(
        log.contains("listening on one address, advertising another") && log.contains("0.0.0.0:"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_config_entry_yields_to_the_placement_driver_and_is_reported() {
    let mut cluster = ProcessCluster::start_with_config(3, FAST_PD);
    let http = tinykv::security::http_client_builder().build().unwrap();
    for id in 1..=3 {
        cluster.wait_healthy(id, &http).await;
    }
    pd_stores(&http, &cluster, 1, 3).await;

    // Node 3 restarts with a config that still names an old address for store 2.
    cluster.kill_node(3);
    let real = cluster.peer_addr(2);
    let stale = "127.0.0.1:9";
    let path = cluster.config_path(3);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(&real), "{text}");
    std::fs::write(&path, text.replace(&real, stale)).unwrap();
    cluster.start_node(3);
    cluster.wait_healthy(3, &http).await;

    // Its first heartbeat answer replaces the entry, and the log names both.
    let url = format!("{}/v1/admin/stores", cluster.url(3));
    eventually(
        "node 3 to learn store 2's address",
        Duration::from_secs(30),
        || async {
            let body = http.get(&url).send().await.ok()?.bytes().await.ok()?;
            let book: Value = serde_json::from_slice(&body).ok()?;
            let store2 = book["stores"].as_array()?.iter().find(|s| s["id"] == 2)?;
            (store2["raft_addr"] == real.as_str() && store2["up"] == true).then_some(())
        },
    )
    .await;
    let log = cluster.log(3);
    let line = log
        .lines()
        .find(|l| l.contains("other addresses than cluster.stores gives"))
        .unwrap_or_else(|| panic!("no conflict reported in:\n{log}"));
    assert!(
        line.contains(&real) && line.contains(stale) && line.contains("store=2"),
        "{line}"
    );
    // And the cluster keeps its data through node 3.
    must_put(&http, &cluster, 3, "after", "restart").await;
    assert_eq!(
        must_get(&http, &cluster, 2, "after").await,
        Some("restart".into())
    );
}
