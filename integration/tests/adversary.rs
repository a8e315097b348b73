//! The hardening issue's findings, replayed against three real `tinykv-server` processes:
//! a poison pill through the node-to-node API, an overwrite of the placement driver's
//! records, forged tombstones on the raft ports, forged PD heartbeats and joins,
//! cross-site requests, a snapshot that fails verification, memory exhaustion, and bad
//! input the API used to answer wrongly. Each must be refused with a clear error (or its
//! connection closed); afterwards no node has exited, every acknowledged key is still
//! there, writes still succeed, and all of that still holds after every node restarts.
//!
//! The same scenario ([`replay_the_findings`]) runs twice, once per [`Attacker`]:
//!
//! - against a **plaintext** cluster, by anyone on the same network, who can claim to be
//!   any store on a raft or snapshot stream;
//! - against a **TLS** cluster, by the strongest attacker TLS allows: one holding a valid
//!   certificate of store 3 (a compromised node). Everything it sends is TLS, the raw
//!   HTTP on the client port included. Where TLS changes the outcome the test asserts the
//!   TLS one: a stream claiming another store is refused at its hello, a heartbeat about
//!   another store is 403 `identity_mismatch` on every node, a join becomes a join as
//!   store 3 (409 `store_exists`); what store 3 may legitimately send (tombstones and a
//!   snapshot as itself, raw puts) still meets the same checks as in plaintext.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use serde_json::{json, Value};
use tinykv::security::{crypto_provider, CertIdentity, Conn, Credentials, NodeHttp, Tls};
use tinykv_integration::process::ProcessCluster;
use tinykv_integration::rest::{error_code, get_json, metric, must_get, must_put};
use tinykv_proto::eraftpb::{self, MessageType};
use tinykv_proto::kvrpcpb::{RawPutRequest, RawPutResponse};
use tinykv_proto::metapb::{Peer, RegionEpoch};
use tinykv_proto::raft_serverpb::{BatchRaftMessage, RaftMessage, SnapshotChunk};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every node's extra configuration: a body that trickles is cut off after 1.5 s.
const CONFIG: &str = "[api]\nbody_read_timeout_ms = 1500\n";

/// How long a request of the test, or of the attacker, may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a node has to show it refused, or acted on, what it was sent.
const REACTION_TIMEOUT: Duration = Duration::from_secs(10);

/// The placement driver's view of the cluster (`GET /v1/admin/cluster` at `url`), asked
/// again until it lists the stores: on a busy machine the node's call to the PD leader
/// may time out (a 503), which says nothing about what the test checks.
async fn cluster_stores(http: &reqwest::Client, url: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = get_json(http, url).await;
        if view["stores"].is_array() {
            return view;
        }
        assert!(Instant::now() < deadline, "{url}: {view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_finding_is_refused_and_nothing_is_lost() {
    let cluster = ProcessCluster::start_with_config(3, CONFIG);
    replay_the_findings(cluster, Attacker::anyone_on_the_network()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_finding_is_refused_over_tls_and_nothing_is_lost() {
    let cluster = ProcessCluster::start_secure(3, false, CONFIG);
    let attacker = Attacker::holding_the_certificate_of(&cluster, 3);
    replay_the_findings(cluster, attacker).await;
}

/// Who replays the findings: where it stands, and what it can claim to be.
struct Attacker {
    /// The TLS setup of a stolen store certificate and the store it names; `None` for a
    /// plaintext cluster, where anyone who reaches a port may claim to be any store.
    stolen: Option<(Tls, u64)>,
    /// Its client for the peer listeners: HTTPS presenting the stolen certificate, or
    /// plain HTTP.
    peer_http: NodeHttp,
}

impl Attacker {
    /// Anyone who can reach a plaintext cluster's ports.
    fn anyone_on_the_network() -> Attacker {
        Attacker {
            stolen: None,
            peer_http: peer_http(None),
        }
    }

    /// Whoever took over the machine of `store` in the secure `cluster`: it holds a valid
    /// certificate of that store, issued by the cluster's CA.
    fn holding_the_certificate_of(cluster: &ProcessCluster, store: u64) -> Attacker {
        let files = cluster.issue(
            &format!("store-{store}-stolen"),
            &CertIdentity::Store(store),
        );
        let credentials = Credentials::load(files, crypto_provider()).expect("credentials");
        let tls = Tls::new(Arc::new(credentials), false).expect("a TLS setup");
        Attacker {
            peer_http: peer_http(Some(&tls)),
            stolen: Some((tls, store)),
        }
    }

    /// The store its certificate names (`None`: plaintext, no certificate).
    fn certified(&self) -> Option<u64> {
        self.stolen.as_ref().map(|(_, store)| *store)
    }

    /// A raw connection to `addr` (a client or a peer port): TLS with the stolen
    /// certificate (checking that the server's names a store), or plain TCP.
    async fn connect(&self, addr: &str) -> Conn {
        let tcp = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("the port {addr} is closed: {e}"));
        match &self.stolen {
            None => Conn::Plain(tcp),
            Some((tls, _)) => tls
                .connect(tcp, addr)
                .await
                .unwrap_or_else(|e| panic!("a TLS handshake with {addr} failed: {e}")),
        }
    }

    /// POSTs `body` to `path` on node `id`'s peer listener; its status and body.
    async fn post_peer(
        &self,
        cluster: &ProcessCluster,
        id: u64,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, bytes::Bytes) {
        let response = self
            .peer_http
            .client()
            .post(self.peer_http.url(&cluster.peer_addr(id), path))
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

    /// The PD request `request`, sent to each node's peer listener until one is not
    /// `not_pd_leader`: that one's status and error code.
    async fn ask_pd_leader(
        &self,
        cluster: &ProcessCluster,
        request: &Value,
    ) -> Option<(u16, String)> {
        for id in 1..=3 {
            let (status, body) = self
                .post_peer(
                    cluster,
                    id,
                    "/internal/v1/pd",
                    "application/json",
                    request.to_string().into_bytes(),
                )
                .await;
            if error_code(&body) != "not_pd_leader" {
                return Some((status, error_code(&body)));
            }
        }
        None
    }

    /// The forged tombstone streams to send. In plaintext, one per raft port, claiming
    /// the next store: each is read. With a stolen certificate, one per raft port claiming
    /// a store other than the certificate's (refused at the hello), and one to every other
    /// node claiming the certificate's own store (read, as a compromised node's would be).
    fn tombstone_streams(&self) -> Vec<ForgedStream> {
        match self.certified() {
            None => (1..=3)
                .map(|to| ForgedStream {
                    to,
                    claims: to % 3 + 1,
                    read: true,
                })
                .collect(),
            Some(own) => {
                let impersonating = (1..=3).map(|to| ForgedStream {
                    to,
                    claims: (1..=3).find(|&s| s != own && s != to).unwrap(),
                    read: false,
                });
                let as_itself = (1..=3).filter(|&to| to != own).map(|to| ForgedStream {
                    to,
                    claims: own,
                    read: true,
                });
                impersonating.chain(as_itself).collect()
            }
        }
    }
}

/// An HTTP client for peer listeners with `tls` (plaintext if `None`).
fn peer_http(tls: Option<&Tls>) -> NodeHttp {
    NodeHttp::build(tls, REQUEST_TIMEOUT, "attacker", |b| {
        b.timeout(REQUEST_TIMEOUT)
    })
    .expect("an HTTP client")
}

/// A forged raft stream: the node it goes to, the store its hello claims, and whether
/// the node should read it (else it must refuse the stream at its hello, as claiming
/// another store than the connection's certificate names).
struct ForgedStream {
    to: u64,
    claims: u64,
    read: bool,
}

/// A raft or snapshot stream's opening: preface, cluster 1, the claimed store.
fn opening(preface: &[u8; 4], store: u64) -> Vec<u8> {
    let mut bytes = preface.to_vec();
    bytes.extend_from_slice(&1u64.to_be_bytes());
    bytes.extend_from_slice(&store.to_be_bytes());
    bytes
}

/// Sends `frames` (length-delimited) on `stream` after `opening`, and waits up to
/// `linger` for the other side to close.
async fn send_frames(mut stream: Conn, opening: &[u8], frames: &[Vec<u8>], linger: Duration) {
    let mut bytes = opening.to_vec();
    for frame in frames {
        bytes.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        bytes.extend_from_slice(frame);
    }
    let _ = stream.write_all(&bytes).await;
    let _ = stream.flush().await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(linger, stream.read_to_end(&mut rest)).await;
}

/// Sends `request` on `stream` (raw HTTP), and returns whatever comes back within 10 s.
async fn raw_http(mut stream: Conn, request: &[u8]) -> String {
    let _ = stream.write_all(request).await;
    let _ = stream.flush().await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Raft and snapshot streams node `id` refused for claiming another store than their
/// certificate names (`tinykv_connections_refused_total`), and PD requests it refused for
/// the same reason.
async fn identity_mismatches(http: &reqwest::Client, cluster: &ProcessCluster, id: u64) -> f64 {
    let labels = ["listener=\"peer\"", "reason=\"identity_mismatch\""];
    metric(
        http,
        &cluster.url(id),
        "tinykv_connections_refused_total",
        &labels,
    )
    .await
}

/// Waits until node `id`'s log, past its first `from` bytes, says `needle` (the nodes log
/// at `info` unless `RUST_LOG` says otherwise).
async fn wait_for_log(cluster: &ProcessCluster, id: u64, from: usize, needle: &str) {
    let deadline = Instant::now() + REACTION_TIMEOUT;
    loop {
        let log = cluster.log(id);
        let new = String::from_utf8_lossy(&log.as_bytes()[from.min(log.len())..]).into_owned();
        if new.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {id} did not log {needle:?}; its log since:\n{new}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

/// Region 1's peers (peer id, store id), as node `id` shows them.
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

/// The id of the peer of region 1 on `store`, among `peers`.
fn peer_on(peers: &[(u64, u64)], store: u64) -> u64 {
    peers
        .iter()
        .find(|(_, s)| *s == store)
        .map(|(peer, _)| *peer)
        .unwrap_or_else(|| panic!("region 1 has no peer on store {store}: {peers:?}"))
}

/// The scenario: writes acknowledged keys, lets `attacker` replay every finding against
/// `cluster` (each refused as its kind of attacker must be), then checks that nothing was
/// lost, also after every node restarts.
async fn replay_the_findings(mut cluster: ProcessCluster, attacker: Attacker) {
    let http = cluster
        .client_builder()
        .timeout(REQUEST_TIMEOUT)
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
    let pd_before = cluster_stores(&http, &cluster_view(1)).await;
    let stores_before = pd_before["stores"].clone();
    let peers_before = region1_peers(&http, &cluster, 1).await;
    assert_eq!(peers_before.len(), 3);

    // 1. The poison pill: an empty key, a 100,000-byte key. The node-to-node API is not
    //    on the client listener at all, and on the peer listener the keys are refused
    //    (also for a caller with a store's certificate, which may use the raw API).
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
        let (status, body) = attacker
            .post_peer(
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
    let (_, body) = attacker
        .post_peer(
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

    // 3. Forged tombstones: one frame per stream, from a made-up peer of the claimed
    //    store, claiming a far newer membership. A stream claiming another store than the
    //    attacker's certificate names is refused at its hello; one that is read makes the
    //    peer ask the others, and none confirms (checked with the end state below).
    for stream in attacker.tombstone_streams() {
        let ForgedStream { to, claims, read } = stream;
        let tombstone = RaftMessage {
            region_id: 1,
            from_peer: Some(Peer {
                id: 999,
                store_id: claims,
            }),
            to_peer: Some(Peer {
                id: peer_on(&peers_before, to),
                store_id: to,
            }),
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
        let refused_before = identity_mismatches(&http, &cluster, to).await;
        let log_before = cluster.log(to).len();
        let conn = attacker.connect(&cluster.peer_addr(to)).await;
        send_frames(
            conn,
            &opening(b"TKVR", claims),
            &[frame],
            Duration::from_millis(100),
        )
        .await;
        if read {
            wait_for_log(
                &cluster,
                to,
                log_before,
                "told it was removed from the region",
            )
            .await;
        } else {
            let deadline = Instant::now() + REACTION_TIMEOUT;
            while identity_mismatches(&http, &cluster, to).await < refused_before + 1.0 {
                assert!(
                    Instant::now() < deadline,
                    "node {to} did not refuse a stream claiming store {claims}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(
                identity_mismatches(&http, &cluster, to).await,
                refused_before + 1.0,
                "node {to} refused the stream claiming store {claims} once"
            );
        }
    }

    // 4. Forged PD traffic: a heartbeat moving store 2, a join for addresses where no
    //    joining node listens. With a certificate, a heartbeat about another store is
    //    refused by whichever node reads it, before it asks for the PD leader; a join is
    //    a join as the certificate's store, which is a member already.
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
    let joined_as = match attacker.certified() {
        None => {
            assert_eq!(
                attacker.ask_pd_leader(&cluster, &heartbeat).await,
                Some((409, "address_conflict".to_string())),
                "{heartbeat}"
            );
            "join_unverified"
        }
        Some(_) => {
            for id in 1..=3 {
                let (status, body) = attacker
                    .post_peer(
                        &cluster,
                        id,
                        "/internal/v1/pd",
                        "application/json",
                        heartbeat.to_string().into_bytes(),
                    )
                    .await;
                assert_eq!(
                    (status, error_code(&body).as_str()),
                    (403, "identity_mismatch"),
                    "{heartbeat} on node {id}"
                );
            }
            "store_exists"
        }
    };
    assert_eq!(
        attacker.ask_pd_leader(&cluster, &join).await,
        Some((409, joined_as.to_string())),
        "{join}"
    );

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
    assert_eq!(error_code(&foreign.bytes().await.unwrap()), "cross_origin");

    // 6. A snapshot that fails verification, streamed to a follower: as the leader in
    //    plaintext, as the certificate's store with TLS (to a follower not on that
    //    store). The follower reads it and refuses it when it verifies it.
    let leader = get_json(&http, &format!("{}/v1/admin/regions/1", cluster.url(1))).await["leader"]
        ["store_id"]
        .as_u64()
        .unwrap_or(1);
    let sender = attacker.certified().unwrap_or(leader);
    let follower = [sender % 3 + 1, (sender + 1) % 3 + 1]
        .into_iter()
        .find(|&store| store != leader)
        .unwrap();
    let (from, to) = (
        peer_on(&peers_before, sender),
        peer_on(&peers_before, follower),
    );
    let bad_snapshot = RaftMessage {
        region_id: 1,
        from_peer: Some(Peer {
            id: from,
            store_id: sender,
        }),
        to_peer: Some(Peer {
            id: to,
            store_id: follower,
        }),
        message: Some(eraftpb::Message {
            msg_type: MessageType::MsgSnapshot as i32,
            from,
            to,
            term: 1_000,
            snapshot: Some(eraftpb::Snapshot {
                data: b"not a snapshot".to_vec(),
                metadata: Some(eraftpb::SnapshotMetadata {
                    conf_state: Some(eraftpb::ConfState {
                        voters: peers_before.iter().map(|(peer, _)| *peer).collect(),
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
    let log_before = cluster.log(follower).len();
    send_frames(
        attacker.connect(&cluster.peer_addr(follower)).await,
        &opening(b"TKVS", sender),
        &[
            chunk.encode_to_vec(),
            SnapshotChunk::default().encode_to_vec(),
        ],
        Duration::from_secs(2),
    )
    .await;
    wait_for_log(
        &cluster,
        follower,
        log_before,
        "dropping a snapshot that failed verification",
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
    let trickle = attacker.connect(&cluster.http_addr(1)).await;
    let started = Instant::now();
    let answer = raw_http(
        trickle,
        b"PUT /v1/kv/trickle HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab",
    )
    .await;
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
        assert_eq!(error_code(&response.bytes().await.unwrap()), "bad_escape");
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
    // Not after chasing the region until the 10 s request deadline: every store and the
    // PD answer at once that nobody holds it. (8 s, not less: CI runs many clusters side
    // by side on two cores, and this took over 3 s there once and 5.4 s another time.)
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "at once, not at the deadline: {:?}",
        started.elapsed()
    );
    let mut request = b"GET /v1/kv/".to_vec();
    request.extend(vec![b'k'; 1024 * 1024]);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
    let answer = raw_http(attacker.connect(&cluster.http_addr(2)).await, &request).await;
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
    let pd_after = cluster_stores(&http, &cluster_view(3)).await;
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
