//! Fuzzing what arrives from a socket, bounded in cases (`TINYKV_FUZZ_CASES`) and seeded
//! (`TINYKV_FUZZ_SEED`, printed by each test; see `tinykv_integration::fuzz`):
//!
//! - arbitrary raft commands, proposed on a store and forwarded through raft to the
//!   leader, where the ones that break the rules reach the apply path;
//! - arbitrary bytes and arbitrary raft messages on a real node's peer listener, after
//!   valid and invalid prefaces;
//! - arbitrary JSON to the placement driver's endpoint.
//!
//! Each must find no panic anywhere in the process, and refused input must leave the
//! engine (and the placement driver's records) unchanged; the node must still serve.

use std::sync::atomic::Ordering;
use std::time::Duration;

use prost::Message as _;
use tinykv::config::{ApiConfig, ClusterConfig, Config, NodeConfig, StoreAddress};
use tinykv::server::node::Node;
use tinykv_actors::validation;
use tinykv_actors::{Cf, Engine, RaftStoreConfig};
use tinykv_integration::cluster::Cluster;
use tinykv_integration::count_panics;
use tinykv_integration::fuzz::{cases, Fuzzer};
use tinykv_proto::eraftpb::{self, MessageType};
use tinykv_proto::metapb::Peer;
use tinykv_proto::raft_cmdpb::RaftCmdRequest;
use tinykv_proto::raft_serverpb::{BatchRaftMessage, RaftMessage};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Every pair of the client column families of `engine`, by column family name.
fn data(engine: &Engine) -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let mut pairs = Vec::new();
    for (cf, name) in Cf::DATA.into_iter().zip(["default", "lock", "write"]) {
        engine
            .scan(cf, b"", b"", |k, v| {
                pairs.push((name, k.to_vec(), v.to_vec()));
                true
            })
            .unwrap();
    }
    pairs
}

/// `command` as a follower forwards it to its leader: one entry of a `MsgPropose`.
fn forwarded(command: &RaftCmdRequest, from: Peer, to: Peer) -> RaftMessage {
    let message = eraftpb::Message {
        msg_type: MessageType::MsgPropose as i32,
        from: from.id,
        to: to.id,
        entries: vec![eraftpb::Entry {
            data: command.encode_to_vec(),
            ..Default::default()
        }],
        ..Default::default()
    };
    RaftMessage {
        region_id: 1,
        from_peer: Some(from),
        to_peer: Some(to),
        message: Some(message),
        ..Default::default()
    }
}

#[actix_rt::test]
async fn arbitrary_commands_change_nothing_when_they_break_the_rules() {
    tinykv_integration::init_test_logging();
    let panics = count_panics();
    let mut fuzzer = Fuzzer::from_env("arbitrary_commands");
    let mut cluster = Cluster::start(3, RaftStoreConfig::for_tests()).await;
    let client = cluster.client();
    for i in 0..5 {
        client
            .must_put(format!("seed{i}").as_bytes(), b"value")
            .await;
    }
    let leader = cluster.leader_of(1).await;
    let follower = Peer {
        id: leader.id % 3 + 1,
        store_id: leader.store_id % 3 + 1,
    };
    for store in 1..=3 {
        cluster
            .wait_engine_value(store, Cf::Default, b"seed4", Some(b"value"))
            .await;
    }
    let before: Vec<_> = (1..=3).map(|s| data(&cluster.engine(s).unwrap())).collect();

    let (mut tried, mut skipped) = (0, 0);
    while tried < cases(300) {
        let mut command = fuzzer.command(1);
        if validation::check_command(&command).is_ok() {
            // A valid command may well change the data: not this test's business.
            skipped += 1;
            if skipped > 100_000 {
                break;
            }
            continue;
        }
        tried += 1;
        // Proposed on a store directly (the PeerFsm's checks) ...
        let refused = cluster.command_on(leader.store_id, command.clone()).await;
        assert!(
            refused.is_some(),
            "an invalid command was answered: {command:?}"
        );
        // ... and forwarded through raft, where the leader reads only the header: give
        // most of them the uuid and plain header a follower's write has, so that they
        // reach the log and the apply path refuses them.
        if fuzzer.chance(0.8) {
            let header = command.header.get_or_insert_with(Default::default);
            header.uuid = b"fuzz".to_vec();
            header.term = 0;
            header.metadata = false;
            command.admin_request = None;
            if validation::check_command(&command).is_ok() {
                continue;
            }
        }
        cluster
            .network()
            .inject(forwarded(&command, follower, leader));
    }
    assert!(tried > 0, "the fuzzer drew no invalid command");

    // A valid write after them all: once it is applied everywhere, so is every one before.
    let sentinel = RaftCmdRequest {
        header: Some(tinykv_proto::raft_cmdpb::RaftRequestHeader {
            region_id: 1,
            uuid: b"sentinel".to_vec(),
            region_epoch: cluster.leader_region(1).await.unwrap().1.region_epoch,
            ..Default::default()
        }),
        requests: vec![tinykv_proto::raft_cmdpb::Request {
            cmd_type: tinykv_proto::raft_cmdpb::CmdType::Put as i32,
            put: Some(tinykv_proto::raft_cmdpb::PutRequest {
                cf: "default".into(),
                key: b"sentinel".to_vec(),
                value: b"last".to_vec(),
            }),
            ..Default::default()
        }],
        admin_request: None,
    };
    cluster
        .network()
        .inject(forwarded(&sentinel, follower, leader));
    for store in 1..=3u64 {
        cluster
            .wait_engine_value(store, Cf::Default, b"sentinel", Some(b"last"))
            .await;
        let mut expected = before[store as usize - 1].clone();
        expected.push(("default", b"sentinel".to_vec(), b"last".to_vec()));
        expected.sort();
        let mut after = data(&cluster.engine(store).unwrap());
        after.sort();
        assert!(
            after == expected,
            "store {store}'s data changed (seed {})",
            fuzzer.seed()
        );
    }
    assert_eq!(panics.load(Ordering::SeqCst), 0, "seed {}", fuzzer.seed());

    cluster.restart_all().await;
    assert_eq!(
        client.must_get(b"seed0").await.as_deref(),
        Some(&b"value"[..])
    );
    client.must_put(b"after-restart", b"ok").await;
    assert_eq!(panics.load(Ordering::SeqCst), 0, "seed {}", fuzzer.seed());
    cluster.shutdown().await;
}

/// Store 1, alone in region 1, with store 2 in its address book (so that a stream may
/// introduce itself as store 2) but nowhere to be reached.
fn lone_node_config(data_dir: std::path::PathBuf) -> Config {
    let mut config = Config {
        node: NodeConfig {
            store_id: 1,
            cluster_id: 1,
            data_dir,
            raft_addr: None,
            http_addr: None,
            listen_raft_addr: None,
            listen_http_addr: None,
        },
        cluster: ClusterConfig {
            join: vec![],
            initial_stores: vec![1],
            stores: vec![
                StoreAddress {
                    id: 1,
                    raft_addr: "127.0.0.1:0".into(),
                    http_addr: "127.0.0.1:0".into(),
                },
                StoreAddress {
                    id: 2,
                    raft_addr: "127.0.0.1:1".into(),
                    http_addr: "127.0.0.1:2".into(),
                },
            ],
        },
        api: ApiConfig {
            http_workers: 1,
            ..Default::default()
        },
        raftstore: RaftStoreConfig::for_tests(),
        log: Default::default(),
        pd: tinykv::config::PdConfig {
            max_peer_count: 1,
            ..Default::default()
        },
        security: Default::default(),
        gc: Default::default(),
        debug: Default::default(),
    };
    config.pd.heartbeat_interval_ms = 200;
    config.pd.max_store_disconnect_time_ms = 1_000;
    config
}

/// Writes `key` = `value` through the node's client API, retrying while it elects itself.
async fn must_put(http: &reqwest::Client, node: &Node, key: &str, value: &str) {
    let url = format!("http://{}/v1/kv/{key}", node.http_addr());
    for _ in 0..200 {
        if let Ok(response) = http.put(&url).body(value.to_string()).send().await {
            if response.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the node does not take writes");
}

#[actix_rt::test]
async fn arbitrary_bytes_and_messages_on_the_peer_listener_change_nothing() {
    tinykv_integration::init_test_logging();
    let panics = count_panics();
    let mut fuzzer = Fuzzer::from_env("peer_listener_bytes");
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(lone_node_config(dir.path().join("node")))
        .await
        .unwrap();
    let http = tinykv::security::http_client_builder().build().unwrap();
    must_put(&http, &node, "precious", "data").await;

    let hello = |store: u64| {
        let mut bytes = 1u64.to_be_bytes().to_vec();
        bytes.extend_from_slice(&store.to_be_bytes());
        bytes
    };
    for case in 0..cases(60) {
        let Ok(mut stream) = TcpStream::connect(node.raft_addr()).await else {
            continue;
        };
        let mut opening = match case % 5 {
            0 => b"TKVR".to_vec(),
            1 => b"TKVS".to_vec(),
            2 => b"POST".to_vec(),
            _ => fuzzer.raw(4),
        };
        if case % 5 < 2 {
            opening.extend(hello(if fuzzer.chance(0.8) {
                2
            } else {
                fuzzer.number()
            }));
        }
        let _ = stream.write_all(&opening).await;
        for _ in 0..8 {
            let frame = if fuzzer.chance(0.6) {
                let store2 = Peer {
                    id: fuzzer.number() % 5,
                    store_id: 2,
                };
                let me = Peer { id: 1, store_id: 1 };
                let msgs = (0..3).map(|_| fuzzer.raft_message(1, store2, me)).collect();
                BatchRaftMessage { msgs }.encode_to_vec()
            } else {
                let len = fuzzer.number() as usize % 4096;
                fuzzer.raw(len)
            };
            let mut bytes = (frame.len() as u32).to_be_bytes().to_vec();
            if fuzzer.chance(0.1) {
                bytes = fuzzer.raw(4);
            }
            bytes.extend(frame);
            if stream.write_all(&bytes).await.is_err() {
                break;
            }
        }
    }
    // The node still serves, its data intact, and nothing panicked.
    must_put(&http, &node, "after", "fuzz").await;
    let got = http
        .get(format!("http://{}/v1/kv/precious", node.http_addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(got.text().await.unwrap(), "data", "seed {}", fuzzer.seed());
    let regions = http
        .get(format!("http://{}/v1/admin/regions", node.http_addr()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        regions.contains("\"id\":1"),
        "region 1 is still here: {regions}"
    );
    assert_eq!(panics.load(Ordering::SeqCst), 0, "seed {}", fuzzer.seed());
    node.shutdown().await;
}

#[actix_rt::test]
async fn arbitrary_json_to_the_placement_driver_changes_nothing() {
    tinykv_integration::init_test_logging();
    let panics = count_panics();
    let mut fuzzer = Fuzzer::from_env("pd_json");
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(lone_node_config(dir.path().join("node")))
        .await
        .unwrap();
    let http = tinykv::security::http_client_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    must_put(&http, &node, "k", "v").await;
    let cluster_url = format!("http://{}/v1/admin/cluster", node.http_addr());
    let view = |body: String| serde_json::from_str::<serde_json::Value>(&body).unwrap();
    let mut before = serde_json::Value::Null;
    for _ in 0..100 {
        let response = http.get(&cluster_url).send().await.unwrap();
        if response.status() == 200 {
            before = view(response.text().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(before.is_object(), "the PD answers");

    let pd_url = format!("http://{}/internal/v1/pd", node.raft_addr());
    for _ in 0..cases(150) {
        let body = if fuzzer.chance(0.9) {
            fuzzer.pd_json().to_string()
        } else {
            String::from_utf8_lossy(&fuzzer.raw(64)).into_owned()
        };
        let response = http
            .post(&pd_url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let answer = response.text().await.unwrap();
        if status != 200 {
            let json = view(answer.clone());
            assert!(
                json["error"]["code"].is_string(),
                "{status} {answer} for {body}"
            );
        }
    }
    let after = view(
        http.get(&cluster_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let stores = |v: &serde_json::Value| {
        v["stores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["id"].clone(), s["raft_addr"].clone(), s["state"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(stores(&after), stores(&before), "seed {}", fuzzer.seed());
    assert_eq!(after["cluster_id"], 1);
    must_put(&http, &node, "k2", "v2").await;
    assert_eq!(panics.load(Ordering::SeqCst), 0, "seed {}", fuzzer.seed());
    node.shutdown().await;
}

/// Arbitrary raft messages between the region's real members: raft-rs asserts on what
/// its peers promise, so every message that could make it panic must be refused before
/// it steps. (What such forgeries can do to the log is the limit of unauthenticated
/// traffic; peer authentication is TLS's.) Afterwards the region still has its three
/// peers and takes writes.
#[actix_rt::test]
async fn arbitrary_raft_messages_between_members_panic_nothing() {
    tinykv_integration::init_test_logging();
    let panics = count_panics();
    let mut fuzzer = Fuzzer::from_env("member_messages");
    let cluster = Cluster::start(3, RaftStoreConfig::for_tests()).await;
    let client = cluster.client();
    client.must_put(b"k", b"v").await;
    let peer = |id: u64| Peer { id, store_id: id };
    for case in 0..cases(400) {
        let (from, to) = (peer(case as u64 % 3 + 1), peer((case as u64 + 1) % 3 + 1));
        let message = fuzzer.raft_message(1, from, to);
        cluster.network().inject(message);
        if case % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    client.must_put(b"after", b"fuzz").await;
    assert_eq!(
        client.must_get(b"after").await.as_deref(),
        Some(&b"fuzz"[..])
    );
    assert_eq!(
        cluster.region_statuses(1).await.len(),
        3,
        "seed {}",
        fuzzer.seed()
    );
    assert_eq!(panics.load(Ordering::SeqCst), 0, "seed {}", fuzzer.seed());
    cluster.shutdown().await;
}
