//! The hardening issue's findings, replayed against three real `tinykv-server` processes
//! as a careless or hostile client on the same network would send them: a poison pill
//! through the node-to-node API, an overwrite of the placement driver's records, forged
//! tombstones on the raft ports, forged PD heartbeats and joins, cross-site requests, a
//! snapshot that fails verification, memory exhaustion, and bad input the API used to
//! answer wrongly. Each must be refused with a clear error (or its connection closed);
//! afterwards no node has exited, every acknowledged key is still there, writes still
//! succeed, and all of that still holds after every node restarts.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use prost::Message as _;
use serde_json::{json, Value};
use tinykv_integration::process::ProcessCluster;
use tinykv_integration::rest::{get_json, must_get, must_put};
use tinykv_proto::eraftpb::{self, MessageType};
use tinykv_proto::kvrpcpb::{RawPutRequest, RawPutResponse};
use tinykv_proto::metapb::{Peer, RegionEpoch};
use tinykv_proto::raft_serverpb::{BatchRaftMessage, RaftMessage, SnapshotChunk};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raft or snapshot stream's opening: preface, cluster 1, the claimed store.
fn opening(preface: &[u8; 4], store: u64) -> Vec<u8> {
    let mut bytes = preface.to_vec();
    bytes.extend_from_slice(&1u64.to_be_bytes());
    bytes.extend_from_slice(&store.to_be_bytes());
    bytes
}

/// Sends `frames` (length-delimited) on a new connection to `addr` after `opening`, and
/// waits up to `linger` for the other side to close.
async fn send_frames(addr: &str, opening: &[u8], frames: &[Vec<u8>], linger: Duration) {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        panic!("the raft port {addr} is closed");
    };
    let _ = stream.write_all(opening).await;
    for frame in frames {
        let _ = stream.write_all(&(frame.len() as u32).to_be_bytes()).await;
        let _ = stream.write_all(frame).await;
    }
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(linger, stream.read_to_end(&mut rest)).await;
}

/// The peer (raft) address of node `id`.
fn peer_addr(cluster: &ProcessCluster, id: u64) -> String {
    format!("127.0.0.1:{}", cluster.nodes()[(id - 1) as usize].raft)
}

/// POSTs a protobuf body to node `id`'s peer listener.
async fn post_peer(
    http: &reqwest::Client,
    cluster: &ProcessCluster,
    id: u64,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, bytes::Bytes) {
    let response = http
        .post(format!("http://{}{path}", peer_addr(cluster, id)))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("the peer listener answers");
    (
        response.status().as_u16(),
        response.bytes().await.unwrap_or_default(),
    )
}

fn code(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body).unwrap_or(Value::Null)["error"]["code"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Every node is still running (none exited).
fn all_alive(cluster: &mut ProcessCluster) {
    for id in 1..=3 {
        assert!(
            cluster.wait_exit(id, Duration::ZERO).is_none(),
            "node {id} exited; log:\n{}",
            cluster.log(id)
        );
    }
}

/// Each acknowledged key reads back on every node, and a new write succeeds.
async fn all_served(
    http: &reqwest::Client,
    cluster: &ProcessCluster,
    acked: &BTreeMap<String, String>,
    tag: &str,
) {
    for id in 1..=3 {
        for (key, value) in acked {
            assert_eq!(
                must_get(http, cluster, id, key).await.as_deref(),
                Some(value.as_str()),
                "node {id} lost {key} ({tag})"
            );
        }
        must_put(http, cluster, id, &format!("{tag}-{id}"), "still writable").await;
    }
}

/// Region 1's peers, as node `id` shows them.
async fn region1_peers(
    http: &reqwest::Client,
    cluster: &ProcessCluster,
    id: u64,
) -> Vec<(u64, u64)> {
    let view = get_json(http, &format!("{}/v1/admin/regions/1", cluster.url(id))).await;
    view["peers"]
        .as_array()
        .map(|peers| {
            peers
                .iter()
                .map(|p| (p["id"].as_u64().unwrap(), p["store_id"].as_u64().unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_finding_is_refused_and_nothing_is_lost() {
    let mut cluster = ProcessCluster::start_with_config(3, "[api]\nbody_read_timeout_ms = 1500\n");
    let http = tinykv::security::http_client_builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    for id in 1..=3 {
        cluster.wait_healthy(id, &http).await;
    }
    let mut acked = BTreeMap::new();
    for i in 0..20 {
        let (key, value) = (format!("acked{i:02}"), format!("value-{i}"));
        must_put(&http, &cluster, 1 + i % 3, &key, &value).await;
        acked.insert(key, value);
    }
    let cluster_view = |id: u64| format!("{}/v1/admin/cluster", cluster.url(id));
    let pd_before = get_json(&http, &cluster_view(1)).await;
    let stores_before = pd_before["stores"].clone();
    let peers_before = region1_peers(&http, &cluster, 1).await;
    assert_eq!(peers_before.len(), 3);

    // 1. The poison pill: an empty key, a 100,000-byte key. The node-to-node API is not
    //    on the client listener at all, and on the peer listener the keys are refused.
    let protobuf = "application/x-protobuf";
    for key in [Vec::new(), vec![b'k'; 100_000]] {
        let put = RawPutRequest {
            key,
            value: b"poison".to_vec(),
            ..Default::default()
        };
        let on_client = http
            .post(format!("{}/internal/v1/raw/put", cluster.url(1)))
            .header("content-type", "application/json")
            .body(put.encode_to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(on_client.status(), 404);
        let (status, body) = post_peer(
            &http,
            &cluster,
            1,
            "/internal/v1/raw/put",
            protobuf,
            put.encode_to_vec(),
        )
        .await;
        if status == 200 {
            let error = RawPutResponse::decode(body).unwrap().error;
            assert!(
                error.starts_with("empty_key") || error.starts_with("key_too_large"),
                "{error}"
            );
        } else {
            assert_eq!(
                status, 413,
                "a body over the limit is refused before it is read"
            );
        }
    }

    // 2. The PD's records are reserved keys: not writable through any API.
    let overwrite = RawPutRequest {
        key: b"\xffpd/cluster".to_vec(),
        value: b"not json".to_vec(),
        ..Default::default()
    };
    let (_, body) = post_peer(
        &http,
        &cluster,
        2,
        "/internal/v1/raw/put",
        protobuf,
        overwrite.encode_to_vec(),
    )
    .await;
    assert!(RawPutResponse::decode(body)
        .unwrap()
        .error
        .starts_with("reserved_key"));
    let reserved = http
        .put(format!("{}/v1/kv/%FFpd%2Fcluster", cluster.url(3)))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(reserved.status(), 400);

    // 3. Forged tombstones: one frame per raft port, from a made-up peer of a real store,
    //    claiming a far newer membership. Each peer asks the others, and none confirms.
    for id in 1..=3u64 {
        let other = id % 3 + 1;
        let tombstone = RaftMessage {
            region_id: 1,
            from_peer: Some(Peer {
                id: 999,
                store_id: other,
            }),
            to_peer: Some(Peer { id, store_id: id }),
            region_epoch: Some(RegionEpoch {
                conf_ver: 1000,
                version: 1,
            }),
            is_tombstone: true,
            ..Default::default()
        };
        let frame = BatchRaftMessage {
            msgs: vec![tombstone],
        }
        .encode_to_vec();
        send_frames(
            &peer_addr(&cluster, id),
            &opening(b"TKVR", other),
            &[frame],
            Duration::from_millis(100),
        )
        .await;
    }

    // 4. Forged PD traffic: a heartbeat moving store 2, a join for addresses where no
    //    joining node listens.
    let heartbeat = json!({
        "type": "heartbeat",
        "store": {"store_id": 2, "raft_addr": "127.0.0.1:9", "http_addr": "127.0.0.1:9",
                  "region_count": 0, "used_size": 0},
        "regions": []
    });
    let join = json!({
        "type": "join", "cluster_id": 1, "raft_addr": "127.0.0.1:19", "http_addr": "127.0.0.1:18",
        "join_token": "guessed"
    });
    for (request, expected) in [(heartbeat, "address_conflict"), (join, "join_unverified")] {
        let mut answered = None;
        for id in 1..=3 {
            let (status, body) = post_peer(
                &http,
                &cluster,
                id,
                "/internal/v1/pd",
                "application/json",
                request.to_string().into_bytes(),
            )
            .await;
            if code(&body) != "not_pd_leader" {
                answered = Some((status, code(&body)));
                break;
            }
        }
        assert_eq!(answered, Some((409, expected.to_string())), "{request}");
    }

    // 5. Cross-site requests: a page's text/plain POST, and a JSON one from another origin.
    let split = format!("{}/v1/admin/regions/1/split", cluster.url(1));
    let plain = http
        .post(&split)
        .header("content-type", "text/plain")
        .body(r#"{"key":"m"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 415);
    let foreign = http
        .post(&split)
        .header("content-type", "application/json")
        .header("origin", "http://attacker.example")
        .body(r#"{"key":"m"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    assert_eq!(code(&foreign.bytes().await.unwrap()), "cross_origin");

    // 6. A snapshot that fails verification, streamed to a follower.
    let leader = get_json(&http, &format!("{}/v1/admin/regions/1", cluster.url(1))).await["leader"]
        ["store_id"]
        .as_u64()
        .unwrap_or(1);
    let follower = leader % 3 + 1;
    let bad_snapshot = RaftMessage {
        region_id: 1,
        from_peer: Some(Peer {
            id: leader,
            store_id: leader,
        }),
        to_peer: Some(Peer {
            id: follower,
            store_id: follower,
        }),
        message: Some(eraftpb::Message {
            msg_type: MessageType::MsgSnapshot as i32,
            from: leader,
            to: follower,
            term: 1_000,
            snapshot: Some(eraftpb::Snapshot {
                data: b"not a snapshot".to_vec(),
                metadata: Some(eraftpb::SnapshotMetadata {
                    conf_state: Some(eraftpb::ConfState {
                        voters: vec![1, 2, 3],
                        ..Default::default()
                    }),
                    index: 100_000,
                    term: 1_000,
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let chunk = SnapshotChunk {
        message: Some(bad_snapshot),
        data: Vec::new(),
    };
    send_frames(
        &peer_addr(&cluster, follower),
        &opening(b"TKVS", leader),
        &[
            chunk.encode_to_vec(),
            SnapshotChunk::default().encode_to_vec(),
        ],
        Duration::from_secs(2),
    )
    .await;

    // 7. Memory: a scan is paged by bytes; a body that trickles is cut off; large
    //    concurrent values are admitted only as far as the in-flight budget goes.
    let big = "x".repeat(3 * 1024 * 1024);
    for i in 0..3 {
        must_put(&http, &cluster, 1, &format!("big{i}"), &big).await;
    }
    let page = get_json(
        &http,
        &format!("{}/v1/kv?start=big&end=bih", cluster.url(2)),
    )
    .await;
    assert_eq!(page["kvs"].as_array().unwrap().len(), 2, "4 MiB a page");
    assert_eq!(page["next"], "big1%00");
    let mut trickle = TcpStream::connect(format!("127.0.0.1:{}", cluster.nodes()[0].http))
        .await
        .unwrap();
    trickle
        .write_all(b"PUT /v1/kv/trickle HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let started = Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(10), trickle.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408") && answer.contains("body_timeout"),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let value = "v".repeat(8 * 1024 * 1024);
    let puts = (0..16).map(|i| {
        let (http, url, value) = (
            http.clone(),
            format!("{}/v1/kv/huge{i}", cluster.url(1 + i % 3)),
            value.clone(),
        );
        tokio::spawn(async move {
            http.put(url)
                .body(value)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    });
    let statuses: Vec<u16> = futures::future::join_all(puts)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap_or(0))
        .collect();
    assert!(
        statuses.iter().all(|s| [200, 503, 504].contains(s)),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&503),
        "the budget refuses some at once: {statuses:?}"
    );
    for (i, status) in statuses.iter().enumerate() {
        if *status == 200 {
            acked.insert(format!("huge{i}"), value.clone());
        }
    }

    // 8. Bad input answered rightly.
    for uri in ["/v1/kv/%zz", "/v1/kv/a%", "/v1/kv/a%4"] {
        let response = http
            .get(format!("{}{uri}", cluster.url(1)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{uri}");
        assert_eq!(code(&response.bytes().await.unwrap()), "bad_escape");
    }
    let started = Instant::now();
    let unknown = http
        .post(format!("{}/v1/admin/regions/999/split", cluster.url(2)))
        .header("content-type", "application/json")
        .body(r#"{"key":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert!(started.elapsed() < Duration::from_secs(3), "at once");
    let mut huge_key = TcpStream::connect(format!("127.0.0.1:{}", cluster.nodes()[1].http))
        .await
        .unwrap();
    let mut request = b"GET /v1/kv/".to_vec();
    request.extend(vec![b'k'; 1024 * 1024]);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
    let _ = huge_key.write_all(&request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), huge_key.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 431") && answer.contains("header_too_large"),
        "{answer}"
    );
    let not_allowed = http
        .post(format!("{}/v1/kv/k", cluster.url(1)))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(not_allowed.status(), 405);
    assert_eq!(not_allowed.headers()["allow"], "GET, HEAD, PUT, DELETE");

    // Nothing above destroyed a peer, moved a store, or stopped a node.
    for id in 1..=3 {
        assert_eq!(
            region1_peers(&http, &cluster, id).await,
            peers_before,
            "node {id}"
        );
    }
    let pd_after = get_json(&http, &cluster_view(3)).await;
    let addresses = |stores: &Value| {
        stores
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["id"].clone(),
                    s["raft_addr"].clone(),
                    s["http_addr"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        addresses(&pd_after["stores"]),
        addresses(&stores_before),
        "no store moved or joined"
    );
    all_alive(&mut cluster);
    all_served(&http, &cluster, &acked, "after").await;

    // And it all holds after every node restarts.
    for id in 1..=3 {
        cluster.kill_node(id);
        cluster.start_node(id);
    }
    for id in 1..=3 {
        cluster.wait_healthy(id, &http).await;
    }
    all_served(&http, &cluster, &acked, "restarted").await;
    all_alive(&mut cluster);
}
