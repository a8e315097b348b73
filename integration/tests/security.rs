//! TLS against real `tinykv-server` processes: a secure cluster serves only clients that
//! complete a TLS handshake (with a certificate, when it asks for one), a node holding a
//! valid certificate can speak only for the store it names, a node is the store its
//! certificate names (also when it joins), certificates rotate without a restart,
//! plaintext on a non-loopback address needs `security.insecure`, and `tinykv-ctl auth`
//! manages tokens over HTTPS (`--token` / `TINYKV_TOKEN`, hints on 401 and 403).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use serde_json::json;
use tinykv::security::certs::CertAuthority;
use tinykv::security::{
    crypto_provider, CertIdentity, ClientTlsFiles, Conn, Credentials, NodeHttp, Tls, TlsFiles,
};
use tinykv_integration::process::{server_binary, ProcessCluster};
use tinykv_integration::rest::{error_code, get_json, metric, must_get, must_put};
use tinykv_proto::metapb::{Peer, RegionEpoch};
use tinykv_proto::raft_serverpb::{BatchRaftMessage, RaftMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(20);

/// The TLS setup of whoever holds `files`.
fn tls_of(files: TlsFiles) -> Tls {
    let credentials = Credentials::load(files, crypto_provider()).expect("credentials");
    Tls::new(Arc::new(credentials), false).expect("TLS setup")
}

async fn wait_all_healthy(cluster: &ProcessCluster, http: &reqwest::Client) {
    for id in 1..=cluster.nodes().len() as u64 {
        cluster.wait_healthy(id, http).await;
    }
}

/// A REST client that trusts `ca` and presents `cert_and_key`, if any.
fn rest_client(ca: std::path::PathBuf, cert_and_key: Option<&TlsFiles>) -> reqwest::Client {
    ClientTlsFiles {
        ca,
        cert_and_key: cert_and_key.map(|files| (files.cert.clone(), files.key.clone())),
    }
    .http_client_builder()
    .unwrap()
    .timeout(Duration::from_secs(5))
    .build()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secure_cluster_serves_only_clients_that_complete_a_tls_handshake() {
    let cluster = ProcessCluster::start_secure(3, true, "");
    let http = cluster.client();
    wait_all_healthy(&cluster, &http).await;
    must_put(&http, &cluster, 1, "secret", "over tls").await;
    assert_eq!(
        must_get(&http, &cluster, 3, "secret").await.as_deref(),
        Some("over tls")
    );
    let url = format!("{}/v1/kv/secret", cluster.url(2));
    let refused_before = metric(
        &http,
        &cluster.url(2),
        "tinykv_connections_refused_total",
        &["listener=\"client\"", "reason=\"tls_handshake\""],
    )
    .await;

    // Plaintext on the client port.
    let plain = tinykv::security::http_client_builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let plain_url = format!("http://{}/v1/kv/secret", cluster.http_addr(2));
    assert!(plain.get(&plain_url).send().await.is_err());

    // TLS, but no client certificate: the cluster requires one.
    let anonymous = rest_client(cluster.ca_path(), None);
    assert!(anonymous.get(&url).send().await.is_err());

    // A client certificate from another CA.
    let stranger_ca = CertAuthority::generate("stranger").unwrap();
    let stranger = stranger_ca
        .issue(&CertIdentity::User("admin".into()), &[], 1)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stranger_files = TlsFiles {
        ca: cluster.ca_path(),
        cert: dir.path().join("stranger.pem"),
        key: dir.path().join("stranger.key"),
    };
    std::fs::write(&stranger_files.cert, stranger.cert_pem).unwrap();
    std::fs::write(&stranger_files.key, stranger.key_pem).unwrap();
    let impostor = rest_client(cluster.ca_path(), Some(&stranger_files));
    assert!(impostor.get(&url).send().await.is_err());

    // A client that trusts another CA does not take the node's certificate.
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, &stranger_ca.issued.cert_pem).unwrap();
    let admin_files = TlsFiles {
        ca: cluster.ca_path(),
        cert: cluster.certs_dir().join("user-admin.pem"),
        key: cluster.certs_dir().join("user-admin.key"),
    };
    let misled = rest_client(other_ca, Some(&admin_files));
    assert!(misled.get(&url).send().await.is_err());

    // Every refusal was counted; the authenticated client still reads.
    let refused_after = metric(
        &http,
        &cluster.url(2),
        "tinykv_connections_refused_total",
        &["listener=\"client\"", "reason=\"tls_handshake\""],
    )
    .await;
    assert!(
        refused_after >= refused_before + 3.0,
        "{refused_before} → {refused_after}"
    );
    assert_eq!(
        must_get(&http, &cluster, 2, "secret").await.as_deref(),
        Some("over tls")
    );

    // tinykv-ctl speaks TLS with the same files.
    let ctl = tinykv_integration::process::ctl_binary();
    let output = Command::new(ctl)
        .arg("--addr")
        .arg(cluster.http_addr(1))
        .arg("--cacert")
        .arg(cluster.ca_path())
        .arg("--cert")
        .arg(&admin_files.cert)
        .arg("--key")
        .arg(&admin_files.key)
        .arg("stores")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "tinykv-ctl over TLS: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A raft stream to `addr` over TLS as `tls`, whose hello claims store `claimed`, carrying
/// one forged tombstone of region 1 for store `to`; waits for the other side to close.
async fn forge_tombstone(tls: &Tls, addr: &str, claimed: u64, to: u64) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let Ok(mut conn) = tls.connect(tcp, addr).await else {
        return;
    };
    let tombstone = RaftMessage {
        region_id: 1,
        from_peer: Some(Peer {
            id: 999,
            store_id: claimed,
        }),
        to_peer: Some(Peer {
            id: to,
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
    let mut bytes = b"TKVR".to_vec();
    bytes.extend_from_slice(&1u64.to_be_bytes());
    bytes.extend_from_slice(&claimed.to_be_bytes());
    bytes.extend_from_slice(&(frame.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&frame);
    let _ = conn.write_all(&bytes).await;
    let _ = conn.flush().await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.read_to_end(&mut rest)).await;
}

/// Region 1's peers' stores, as node `id` shows them.
async fn region1_stores(http: &reqwest::Client, cluster: &ProcessCluster, id: u64) -> Vec<u64> {
    let view = get_json(http, &format!("{}/v1/admin/regions/1", cluster.url(id))).await;
    let mut stores: Vec<u64> = view["peers"]
        .as_array()
        .map(|peers| {
            peers
                .iter()
                .filter_map(|p| p["store_id"].as_u64())
                .collect()
        })
        .unwrap_or_default();
    stores.sort();
    stores
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_valid_certificate_speaks_only_for_its_own_store() {
    let mut cluster = ProcessCluster::start_secure(3, false, "");
    let http = cluster.client();
    wait_all_healthy(&cluster, &http).await;
    let mut acked = BTreeMap::new();
    for i in 0..20 {
        let (key, value) = (format!("k{i:02}"), format!("v{i}"));
        must_put(&http, &cluster, 1 + i % 3, &key, &value).await;
        acked.insert(key, value);
    }
    // Node 3's own certificate, in the hands of whoever took over its machine.
    let node3 = tls_of(cluster.issue("store-3-copy", &CertIdentity::Store(3)));

    // Forged tombstones claiming stores 1 and 2: refused at the hello.
    forge_tombstone(&node3, &cluster.peer_addr(1), 2, 1).await;
    forge_tombstone(&node3, &cluster.peer_addr(2), 1, 2).await;

    // A heartbeat moving store 2's address, and a join as store 2: 403 on every node.
    let pd = NodeHttp::build(Some(&node3), WAIT, "test", |b| b.timeout(WAIT)).unwrap();
    let heartbeat = json!({
        "type": "heartbeat",
        "store": {"store_id": 2, "raft_addr": "127.0.0.1:9", "http_addr": "127.0.0.1:9",
                  "region_count": 0, "used_size": 0},
        "regions": []
    });
    let join = json!({
        "type": "join", "cluster_id": 1, "raft_addr": "127.0.0.1:19",
        "http_addr": "127.0.0.1:18", "join_token": "guessed", "store_id": 2
    });
    for request in [&heartbeat, &join] {
        for id in 1..=3 {
            let response = pd
                .client()
                .post(pd.url(&cluster.peer_addr(id), "/internal/v1/pd"))
                .header("content-type", "application/json")
                .body(request.to_string())
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body = response.bytes().await.unwrap();
            assert_eq!(
                (status, error_code(&body).as_str()),
                (403, "identity_mismatch"),
                "{request} on node {id}"
            );
        }
    }
    let refused = metric(
        &http,
        &cluster.url(1),
        "tinykv_connections_refused_total",
        &["listener=\"peer\"", "reason=\"identity_mismatch\""],
    )
    .await;
    assert!(refused >= 1.0, "node 1 counted the forged stream");

    // A user's certificate, signed by the cluster's CA, does not open the peer port.
    let user = tls_of(cluster.issue("user-ops", &CertIdentity::User("ops".into())));
    let as_user = NodeHttp::build(Some(&user), WAIT, "test", |b| b.timeout(WAIT)).unwrap();
    let identity = as_user
        .client()
        .get(as_user.url(&cluster.peer_addr(1), "/internal/v1/identity"))
        .send()
        .await;
    assert!(identity.is_err(), "a user certificate reached the peer API");

    // Nothing changed: every node runs, region 1 keeps its three peers, store 2 keeps its
    // address, every key is there, writes succeed.
    for id in 1..=3 {
        assert!(
            cluster.wait_exit(id, Duration::ZERO).is_none(),
            "node {id} exited:\n{}",
            cluster.log(id)
        );
        assert_eq!(region1_stores(&http, &cluster, id).await, vec![1, 2, 3]);
    }
    let stores = get_json(&http, &format!("{}/v1/admin/stores", cluster.url(1))).await;
    let store2 = stores["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == 2)
        .cloned()
        .unwrap();
    assert_eq!(store2["raft_addr"], cluster.peer_addr(2));
    for id in 1..=3 {
        for (key, value) in &acked {
            assert_eq!(
                must_get(&http, &cluster, id, key).await.as_deref(),
                Some(value.as_str())
            );
        }
        must_put(&http, &cluster, id, &format!("after-{id}"), "ok").await;
    }
}

/// The store id node `id` answers `/health?live` with.
async fn health_store_id(http: &reqwest::Client, cluster: &ProcessCluster, id: u64) -> u64 {
    get_json(http, &format!("{}/health?live", cluster.url(id))).await["store_id"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_the_store_its_certificate_names() {
    let mut cluster = ProcessCluster::start_secure(3, false, "");
    let http = cluster.client();
    wait_all_healthy(&cluster, &http).await;
    must_put(&http, &cluster, 1, "before-join", "x").await;

    // A joining node asks for the store its certificate names, and gets it.
    let joined = cluster.add_joining_node();
    cluster.wait_healthy(joined, &http).await;
    assert_eq!(health_store_id(&http, &cluster, joined).await, joined);
    let cluster_view = get_json(&http, &format!("{}/v1/admin/cluster", cluster.url(1))).await;
    assert!(
        cluster_view
            .to_string()
            .contains(&format!("\"id\":{joined}")),
        "the PD records store {joined}: {cluster_view}"
    );
    assert_eq!(
        must_get(&http, &cluster, joined, "before-join")
            .await
            .as_deref(),
        Some("x")
    );

    // Node 2 restarted with store 3's certificate refuses to start, naming both.
    cluster.kill_node(2);
    cluster.issue("store-2", &CertIdentity::Store(3));
    cluster.start_node(2);
    let status = cluster.wait_exit(2, WAIT).expect("node 2 exits");
    assert!(!status.success());
    let log = cluster.log(2);
    assert!(
        log.contains("node.store_id is 2 but security.cert_path names store 3"),
        "{log}"
    );

    // With its own certificate back, it serves again and has every write.
    cluster.issue("store-2", &CertIdentity::Store(2));
    cluster.start_node(2);
    cluster.wait_healthy(2, &http).await;
    assert_eq!(
        must_get(&http, &cluster, 2, "before-join").await.as_deref(),
        Some("x")
    );
}

/// The certificate node `id`'s client listener presents now.
async fn presented_certificate(cluster: &ProcessCluster, viewer: &Tls, id: u64) -> Vec<u8> {
    let addr = cluster.http_addr(id);
    let tcp = TcpStream::connect(&addr).await.unwrap();
    let conn = viewer.connect(tcp, &addr).await.unwrap();
    let Conn::Tls(stream) = &conn else {
        panic!("a TLS connection")
    };
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_without_a_restart() {
    let cluster = ProcessCluster::start_secure(3, false, "");
    let http = cluster.client();
    wait_all_healthy(&cluster, &http).await;
    let viewer = tls_of(cluster.issue("viewer", &CertIdentity::Store(9)));
    let old = presented_certificate(&cluster, &viewer, 1).await;
    let pid = cluster.pid(1);

    cluster.issue("store-1", &CertIdentity::Store(1));
    let deadline = Instant::now() + WAIT;
    loop {
        if presented_certificate(&cluster, &viewer, 1).await != old {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 1 still presents its old certificate:\n{}",
            cluster.log(1)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cluster.pid(1), pid, "the same process");
    assert!(cluster.log(1).contains("TLS certificate and key reloaded"));
    // New connections between nodes use the new certificate: writes through node 2 reach
    // node 1, and node 1 forwards to the leader.
    must_put(&http, &cluster, 2, "rotated", "yes").await;
    assert_eq!(
        must_get(&http, &cluster, 1, "rotated").await.as_deref(),
        Some("yes")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_on_a_public_address_needs_insecure_in_so_many_words() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let second = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let (raft, http_port) = (
        listener.local_addr().unwrap().port(),
        second.local_addr().unwrap().port(),
    );
    drop((listener, second));
    let config = |security: &str| {
        format!(
            "[node]\nstore_id = 1\ndata_dir = {:?}\n\
             listen_raft_addr = \"0.0.0.0:{raft}\"\nlisten_http_addr = \"0.0.0.0:{http_port}\"\n\n\
             [[cluster.stores]]\nid = 1\n\
             raft_addr = \"127.0.0.1:{raft}\"\nhttp_addr = \"127.0.0.1:{http_port}\"\n\n{security}",
            dir.path().join("data")
        )
    };
    let path = dir.path().join("node.toml");
    std::fs::write(&path, config("")).unwrap();
    let refused = Command::new(server_binary())
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("not a loopback address") && stderr.contains("security.insecure = true"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "a refused start writes nothing"
    );

    std::fs::write(&path, config("[security]\ninsecure = true\n")).unwrap();
    let mut child = Command::new(server_binary())
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = tinykv::security::http_client_builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let url = format!("http://127.0.0.1:{http_port}/health?live");
    let served = loop {
        if let Ok(response) = http.get(&url).send().await {
            break response.status().is_success();
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        served,
        "with security.insecure = true the node serves plaintext"
    );
}

/// Runs `tinykv-ctl` against node `id` of `cluster` over HTTPS with `args`, `TINYKV_TOKEN`
/// set to `token_env` (unset with `None`); returns the exit code, stdout and stderr.
fn run_ctl(
    cluster: &ProcessCluster,
    id: u64,
    token_env: Option<&str>,
    args: &[&str],
) -> (Option<i32>, String, String) {
    let mut command = Command::new(tinykv_integration::process::ctl_binary());
    command
        .arg("--addr")
        .arg(cluster.http_addr(id))
        .arg("--cacert")
        .arg(cluster.ca_path())
        .args(args)
        .env_remove("TINYKV_TOKEN")
        .env_remove("TINYKV_CERT")
        .env_remove("TINYKV_KEY");
    if let Some(token) = token_env {
        command.env("TINYKV_TOKEN", token);
    }
    let output = command.output().expect("run tinykv-ctl");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr),
    )
}

/// Runs [`run_ctl`] until `done` accepts its answer, for at most [`WAIT`]; returns it.
async fn ctl_until(
    cluster: &ProcessCluster,
    id: u64,
    token_env: Option<&str>,
    args: &[&str],
    what: &str,
    done: impl Fn(&(Option<i32>, String, String)) -> bool,
) -> (Option<i32>, String, String) {
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = run_ctl(cluster, id, token_env, args);
        if done(&answer) {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {WAIT:?}; last answer {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tinykv_ctl_manages_tokens_over_tls() {
    const ROOT: &str = "the ctl test's root token";
    let cluster = ProcessCluster::start_secure_with(
        3,
        false,
        &format!("root_token = \"{ROOT}\"\n"),
        "[pd]\nheartbeat_interval_ms = 500\n",
    );
    wait_all_healthy(&cluster, &cluster.client()).await;
    let ok = |answer: &(Option<i32>, String, String)| answer.0 == Some(0);

    // Off: no token needed; the placement driver records the root token.
    ctl_until(
        &cluster,
        1,
        None,
        &["auth", "token", "list"],
        "root recorded",
        |a| ok(a) && a.1.lines().any(|line| line.starts_with("root ")),
    )
    .await;
    let (code, stdout, stderr) = run_ctl(&cluster, 2, Some(ROOT), &["auth", "enable"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("authentication is on"), "{stdout}");

    // Every node soon refuses a command without a token, and says how to give one.
    let (_, _, stderr) = ctl_until(&cluster, 3, None, &["cluster"], "node 3 enforces", |a| {
        a.0 == Some(1)
    })
    .await;
    assert!(
        stderr.contains("HTTP 401, unauthenticated")
            && stderr
                .trim_end()
                .ends_with("(give --token or set TINYKV_TOKEN)"),
        "{stderr}"
    );
    // A blank variable is no token (on node 1 too, once its heartbeat brought the change:
    // node 3 enforcing first says nothing about node 1).
    let (_, _, stderr) = ctl_until(
        &cluster,
        1,
        Some("  "),
        &["auth", "status"],
        "node 1 enforces",
        |a| a.0 == Some(1) && a.2.contains("HTTP 401"),
    )
    .await;
    assert!(
        stderr.contains("(give --token or set TINYKV_TOKEN)"),
        "{stderr}"
    );

    // An admin token, shown once on its own line; a read token, as JSON.
    let create = [
        "auth", "token", "create", "--name", "ops", "--role", "admin",
    ];
    let (code, stdout, stderr) = run_ctl(&cluster, 1, Some(ROOT), &create);
    assert_eq!(code, Some(0), "{stderr}");
    let admin = stdout
        .lines()
        .find_map(|line| line.strip_prefix("    tkv_"))
        .map(|rest| format!("tkv_{rest}"))
        .unwrap_or_else(|| panic!("no token line:\n{stdout}"));
    assert!(stdout.contains("This is the only time the token is shown"));
    let create = [
        "auth", "token", "create", "--name", "ro", "--role", "read", "--json",
    ];
    let (code, stdout, stderr) = run_ctl(&cluster, 2, Some(ROOT), &create);
    assert_eq!(code, Some(0), "{stderr}");
    let created: serde_json::Value = serde_json::from_str(&stdout).expect("--json is JSON");
    let reader = created["token"].as_str().unwrap().to_string();
    let reader_id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["role"], "read");

    // The flag wins over the variable; node 3 learns the new tokens from a heartbeat.
    let with_admin = ["--token", admin.as_str(), "auth", "token", "list"];
    let (_, stdout, _) =
        ctl_until(&cluster, 3, Some("wrong"), &with_admin, "admin token", ok).await;
    for name in ["ops", "ro", "root (security.root_token)"] {
        assert!(stdout.contains(name), "{name}: {stdout}");
    }
    assert!(
        !stdout.contains(&reader) && !stdout.contains(&admin),
        "no secret is listed"
    );
    let (_, _, stderr) = ctl_until(&cluster, 3, Some(&reader), &["regions"], "403", |a| {
        a.2.contains("HTTP 403")
    })
    .await;
    assert!(
        stderr.contains("permission_denied")
            && stderr
                .trim_end()
                .ends_with("need a token with the admin role)"),
        "{stderr}"
    );

    // Certificate users.
    let set = [
        "auth", "user", "set", "auditor", "--role", "read", "--prefix", "logs/",
    ];
    let (code, stdout, stderr) = run_ctl(&cluster, 1, Some(&admin), &set);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("certificate user auditor: role read, prefix logs/"));
    let (code, stdout, _) = run_ctl(&cluster, 1, Some(&admin), &["auth", "status", "--json"]);
    assert_eq!(code, Some(0));
    let state: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(state["enabled"], true);
    assert_eq!(state["users"][0]["name"], "auditor");
    let delete = ["auth", "user", "delete", "auditor"];
    assert_eq!(run_ctl(&cluster, 1, Some(&admin), &delete).0, Some(0));
    let (code, _, stderr) = run_ctl(&cluster, 1, Some(&admin), &delete);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("HTTP 404, user_not_found"), "{stderr}");

    // Revoked on node 1, refused by node 2 within a heartbeat, with the hint for a token.
    let revoke = ["auth", "token", "revoke", reader_id.as_str()];
    let (code, stdout, stderr) = run_ctl(&cluster, 1, Some(&admin), &revoke);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with(&format!("revoked token {reader_id}")));
    let (_, _, stderr) = ctl_until(&cluster, 2, Some(&reader), &["cluster"], "revoked", |a| {
        a.2.contains("HTTP 401")
    })
    .await;
    assert!(
        stderr
            .trim_end()
            .ends_with("(check --token or TINYKV_TOKEN)"),
        "{stderr}"
    );

    // Off again: no token needed anywhere.
    let (code, stdout, _) = run_ctl(&cluster, 3, Some(&admin), &["auth", "disable"]);
    assert_eq!(code, Some(0));
    assert!(stdout.starts_with("authentication is off"), "{stdout}");
    ctl_until(&cluster, 2, None, &["cluster"], "node 2 open again", ok).await;
}
