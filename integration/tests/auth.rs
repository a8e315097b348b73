//! Authentication against real `tinykv-server` processes: the root token of the config
//! is recorded by the placement driver, authentication is switched on for the whole
//! cluster, tokens with roles and key prefixes are enforced on every node, a revoked
//! token is refused everywhere within a heartbeat or two, a restarted node enforces the
//! state from its first request, the last admin credential cannot be removed, and client
//! certificates stand for users.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tinykv::security::{CertIdentity, ClientTlsFiles};
use tinykv_integration::process::ProcessCluster;
use tinykv_integration::rest::eventually;

const ROOT: &str = "correct horse battery staple";
const WAIT: Duration = Duration::from_secs(20);

/// Sends `method` to `url` with `token` (if any) and `body` (JSON if it is an object);
/// returns the status and the body as JSON (`Null` if it is not).
async fn call(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = http.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    match body {
        Some(Value::String(raw)) => request = request.body(raw),
        Some(json) => {
            request = request
                .header("content-type", "application/json")
                .body(json.to_string())
        }
        None => {}
    }
    let response = request.send().await.expect("the node answers");
    let status = response.status();
    let bytes = response.bytes().await.unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Creates a token with `role` (and `prefix`) through node `id`; returns its string and id.
async fn create_token(
    http: &reqwest::Client,
    cluster: &ProcessCluster,
    id: u64,
    role: &str,
    prefix: Option<&str>,
) -> (String, String) {
    let mut body = json!({"name": format!("{role} token"), "role": role});
    if let Some(prefix) = prefix {
        body["prefix"] = json!(prefix);
    }
    let url = format!("{}/v1/auth/tokens", cluster.url(id));
    let (status, answer) = call(http, Method::POST, &url, Some(ROOT), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    (
        answer["token"].as_str().unwrap().to_string(),
        answer["id"].as_str().unwrap().to_string(),
    )
}

/// Writes `key` through node `id` with `token` until the cluster answers something other
/// than 5xx (an election); returns that status.
async fn put(
    http: &reqwest::Client,
    cluster: &ProcessCluster,
    id: u64,
    key: &str,
    token: Option<&str>,
) -> StatusCode {
    let url = format!("{}/v1/kv/{key}", cluster.url(id));
    eventually(&format!("PUT {key} on node {id}"), WAIT, || async {
        let (status, _) = call(http, Method::PUT, &url, token, Some(json!("v"))).await;
        (!status.is_server_error()).then_some(status)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_with_roles_are_enforced_on_every_node() {
    let mut cluster = ProcessCluster::start_with_config(
        3,
        &format!("[security]\nroot_token = \"{ROOT}\"\n\n[pd]\nheartbeat_interval_ms = 500\n"),
    );
    let http = cluster.client();
    for id in 1..=3 {
        cluster.wait_healthy(id, &http).await;
    }
    let auth_urls: Vec<String> = (1..=3)
        .map(|id| format!("{}/v1/auth", cluster.url(id)))
        .collect();
    let auth_url = |id: u64| auth_urls[(id - 1) as usize].clone();

    // Off: anyone may look, and the PD has recorded the root token (no secret shown).
    let state = eventually("the root token is recorded", WAIT, || async {
        let (status, state) = call(&http, Method::GET, &auth_url(2), None, None).await;
        (status == StatusCode::OK && state["tokens"].to_string().contains("\"root\""))
            .then_some(state)
    })
    .await;
    assert_eq!(state["enabled"], false);
    assert!(!state.to_string().contains("sha256"), "{state}");
    assert_eq!(put(&http, &cluster, 1, "open", None).await, StatusCode::OK);

    // On, for the whole cluster.
    let (status, state) = call(
        &http,
        Method::POST,
        &format!("{}/enable", auth_url(1)),
        None,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{state}");
    assert_eq!(state["enabled"], true);
    for id in 1..=3 {
        let url = format!("{}/v1/kv/open", cluster.url(id));
        eventually(
            &format!("node {id} requires a credential"),
            WAIT,
            || async {
                let response = http.get(&url).send().await.ok()?;
                (response.status() == StatusCode::UNAUTHORIZED).then(|| {
                    assert!(response.headers().contains_key("www-authenticate"));
                })
            },
        )
        .await;
        let (status, _) = call(
            &http,
            Method::GET,
            &format!("{}/health?live", cluster.url(id)),
            None,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "health stays open");
    }
    let (status, body) = call(
        &http,
        Method::GET,
        &format!("{}/v1/kv/open", cluster.url(3)),
        Some(
            "tkv_0123456789abcdef_0000000000000000000000000000000000000000000000000000000000000000",
        ),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthenticated"))
    );

    let (reader, _) = create_token(&http, &cluster, 1, "read", None).await;
    let (writer, writer_id) = create_token(&http, &cluster, 2, "readwrite", None).await;
    let (app, _) = create_token(&http, &cluster, 3, "readwrite", Some("app/")).await;
    for id in 1..=3 {
        // Each node learns the new tokens from its heartbeat.
        let url = format!("{}/v1/kv/open", cluster.url(id));
        eventually(&format!("node {id} knows the new tokens"), WAIT, || async {
            let (status, _) = call(&http, Method::GET, &url, Some(&app), None).await;
            (status != StatusCode::UNAUTHORIZED).then_some(())
        })
        .await;
    }
    for id in 1..=3 {
        let node = cluster.url(id);
        assert_eq!(
            put(&http, &cluster, id, &format!("w{id}"), Some(&writer)).await,
            StatusCode::OK
        );
        let (status, body) = call(
            &http,
            Method::PUT,
            &format!("{node}/v1/kv/r{id}"),
            Some(&reader),
            Some(json!("v")),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"]["code"], "permission_denied");
        let (status, _) = call(
            &http,
            Method::GET,
            &format!("{node}/v1/kv/w{id}"),
            Some(&reader),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        // The prefix token: its keys, its ranges, nothing else.
        assert_eq!(
            put(&http, &cluster, id, &format!("app%2F{id}"), Some(&app)).await,
            StatusCode::OK
        );
        assert_eq!(
            put(&http, &cluster, id, "apq", Some(&app)).await,
            StatusCode::FORBIDDEN
        );
        let (status, page) = call(
            &http,
            Method::GET,
            &format!("{node}/v1/kv?start=app%2F&end=app0"),
            Some(&app),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let (status, _) = call(
            &http,
            Method::GET,
            &format!("{node}/v1/kv?start=app%2F"),
            Some(&app),
            None,
        )
        .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "an unbounded scan leaves the prefix"
        );
        // Admin needs admin, however the path is spelt.
        for path in ["/v1/admin/regions/1/split", "/v1/%61dmin/regions/1/split"] {
            let (status, body) = call(
                &http,
                Method::POST,
                &format!("{node}{path}"),
                Some(&writer),
                Some(json!({"key": "m"})),
            )
            .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        }
        let (status, _) = call(
            &http,
            Method::GET,
            &format!("{node}/v1/auth"),
            Some(&reader),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    // Revoked through node 1: refused on every node within a heartbeat or two.
    let revoked_at = Instant::now();
    let (status, _) = call(
        &http,
        Method::DELETE,
        &format!("{}/tokens/{writer_id}", auth_url(1)),
        Some(ROOT),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for id in 1..=3 {
        let url = format!("{}/v1/kv/after-revoke", cluster.url(id));
        eventually(
            &format!("node {id} refuses the revoked token"),
            WAIT,
            || async {
                let (status, _) =
                    call(&http, Method::PUT, &url, Some(&writer), Some(json!("v"))).await;
                (status == StatusCode::UNAUTHORIZED).then_some(())
            },
        )
        .await;
    }
    let everywhere = revoked_at.elapsed();
    println!("revoked token refused on every node after {everywhere:?}");
    assert!(everywhere < Duration::from_secs(5), "{everywhere:?}");

    // The last admin credential stays while authentication is on.
    let (status, body) = call(
        &http,
        Method::DELETE,
        &format!("{}/tokens/root", auth_url(2)),
        Some(ROOT),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("last_admin_credential"))
    );

    // A restarted node enforces the state from its first request.
    cluster.kill_node(3);
    cluster.start_node(3);
    cluster.wait_healthy(3, &http).await;
    let (status, _) = call(
        &http,
        Method::GET,
        &format!("{}/v1/kv/w1", cluster.url(3)),
        Some(&writer),
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the revoked token, right after restart"
    );
    let (status, _) = call(
        &http,
        Method::GET,
        &format!("{}/v1/kv/w1", cluster.url(3)),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Off again: open to all.
    let (status, _) = call(
        &http,
        Method::POST,
        &format!("{}/disable", auth_url(3)),
        Some(ROOT),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for id in 1..=3 {
        let url = format!("{}/v1/kv/w1", cluster.url(id));
        eventually(&format!("node {id} is open again"), WAIT, || async {
            let (status, _) = call(&http, Method::GET, &url, None, None).await;
            (status == StatusCode::OK).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_stand_for_users() {
    let cluster =
        ProcessCluster::start_secure_with(3, true, &format!("root_token = \"{ROOT}\""), "");
    let admin = cluster.client(); // presents the `admin` user certificate
    for id in 1..=3 {
        cluster.wait_healthy(id, &admin).await;
    }
    let url = |id: u64, path: &str| format!("{}{path}", cluster.url(id));
    eventually("the root token is recorded", WAIT, || async {
        let (_, state) = call(&admin, Method::GET, &url(1, "/v1/auth"), None, None).await;
        state["tokens"]
            .to_string()
            .contains("\"root\"")
            .then_some(())
    })
    .await;
    for (user, role) in [("admin", "admin"), ("ops", "read")] {
        let (status, body) = call(
            &admin,
            Method::PUT,
            &url(1, &format!("/v1/auth/users/{user}")),
            None,
            Some(json!({ "role": role })),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, _) = call(
        &admin,
        Method::POST,
        &url(1, "/v1/auth/enable"),
        None,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let client_of = |name: &str| {
        let files = cluster.issue(&format!("user-{name}"), &CertIdentity::User(name.into()));
        ClientTlsFiles {
            ca: cluster.ca_path(),
            cert_and_key: Some((files.cert, files.key)),
        }
        .http_client_builder()
        .unwrap()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
    };
    let ops = client_of("ops");
    let stranger = client_of("eve");
    for id in 1..=3 {
        // Every node enforces it once its heartbeat brought the new state.
        let probe = url(id, "/v1/kv/cert1");
        eventually(
            &format!("node {id} enforces authentication"),
            WAIT,
            || async {
                let (status, _) = call(&stranger, Method::GET, &probe, None, None).await;
                (status == StatusCode::UNAUTHORIZED).then_some(())
            },
        )
        .await;
        // The admin certificate is a credential on its own: no token needed.
        assert_eq!(
            put(&admin, &cluster, id, &format!("cert{id}"), None).await,
            StatusCode::OK
        );
    }
    let (status, _) = call(&ops, Method::GET, &url(2, "/v1/kv/cert1"), None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(
        &ops,
        Method::PUT,
        &url(2, "/v1/kv/cert1"),
        None,
        Some(json!("x")),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A user the CA signed but the cluster gave no grant.
    let (status, _) = call(&stranger, Method::GET, &url(3, "/v1/kv/cert1"), None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // ...unless it brings a token.
    let (status, _) = call(
        &stranger,
        Method::GET,
        &url(3, "/v1/kv/cert1"),
        Some(ROOT),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}
