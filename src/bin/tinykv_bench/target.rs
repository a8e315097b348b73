//! The systems under test and how one read or write is sent to each.
//!
//! - **tinykv**: `PUT {endpoint}/v1/kv/{key}` with the raw value as the body (200 once a
//!   majority has it on disk) and `GET {endpoint}/v1/kv/{key}` (200 with the value, 404
//!   when absent). Any node forwards to the region's leader.
//! - **etcd**: the v3 JSON gateway that etcd 3.4+ serves on its client port:
//!   `POST {endpoint}/v3/kv/put` with `{"key": base64, "value": base64}` and
//!   `POST {endpoint}/v3/kv/range` with `{"key": base64}`. Range requests are linearizable
//!   by default (no `serializable` flag), so both systems give the same guarantee:
//!   every read sees every write acknowledged before it started.
//!
//! A [`Target`] knows the endpoints, the TLS files and the token; each benchmark client
//! holds a [`Session`] of its own: one keep-alive connection per endpoint it has used
//! (see [`crate::http1`], a lean HTTP/1.1 client, so that the load generator costs the
//! machine little), opened on first use and again after a failure. With `--cacert` the
//! connections are TLS, checking each server's certificate against that CA and
//! presenting `--cert` if given. With `--token`, every TinyKV-rs request carries
//! `Authorization: Bearer <token>` (a 401 or 403 then counts as an error like any other
//! status). A missing key is a normal outcome ([`ReadOutcome::Missing`]); any other
//! non-2xx status or transport failure is an error whose message leaves out the URL, so
//! that equal failures on different keys read alike. A request that finds its kept
//! connection closed by the server before any answer is sent once more on a fresh one
//! (a TinyKV-rs write carries an idempotency key, so it applies once).

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use clap::ValueEnum;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::HeaderValue;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tinykv::security::ClientTlsFiles;

use crate::http1::{write_request, Connection, Connector, Endpoint, ExchangeError};

/// Which system a run talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// TinyKV-rs's REST API.
    Tinykv,
    /// etcd's v3 JSON gateway.
    Etcd,
}

impl TargetKind {
    /// The system's name in reports.
    pub fn display_name(self) -> &'static str {
        match self {
            TargetKind::Tinykv => "TinyKV-rs",
            TargetKind::Etcd => "etcd",
        }
    }

    /// Endpoints used when none are given, without a scheme (`http://`, or `https://`
    /// with TLS): the `make run` (or `make run-tls`) cluster, or a local etcd.
    pub fn default_endpoints(self) -> &'static [&'static str] {
        match self {
            TargetKind::Tinykv => &["127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"],
            TargetKind::Etcd => &["127.0.0.1:2379"],
        }
    }
}

/// What a successful read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// The key has a value.
    Found,
    /// The key is absent.
    Missing,
}

/// A client for one system, shared by every benchmark client.
#[derive(Debug)]
pub struct Target {
    kind: TargetKind,
    endpoints: Vec<Endpoint>,
    connector: Connector,
    /// How long one request may take, connecting included.
    timeout: Duration,
    /// `Bearer <token>` for TinyKV-rs requests, if a token was given.
    authorization: Option<String>,
}

/// One benchmark client's connections (one per endpoint, by index) and request buffer.
pub struct Session {
    connections: Vec<Option<Connection>>,
    request: Vec<u8>,
}

/// Characters left as they are in a key's URL path segment.
const KEY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// How the message of a request that got no answer at all begins (connection refused,
/// reset, timed out): the client may try another endpoint.
pub const NO_ANSWER: &str = "no answer: ";

/// Longest part of an error body quoted in an error message.
const MAX_ERROR_BODY: usize = 200;

impl Target {
    /// A client of `endpoints` that fails requests taking longer than `timeout`; with
    /// `tls`, it speaks TLS with those files (which must load); with `authorization`
    /// (`Bearer <token>`), its TinyKV-rs requests carry it.
    pub fn new(
        kind: TargetKind,
        endpoints: &[String],
        timeout: Duration,
        tls: Option<&ClientTlsFiles>,
        authorization: Option<HeaderValue>,
    ) -> Result<Target, String> {
        let tls = tls
            .map(|files| files.client_config())
            .transpose()
            .map_err(|e| format!("cannot set up TLS: {e}"))?;
        let authorization = authorization
            .map(|value| {
                value
                    .to_str()
                    .map(str::to_string)
                    .map_err(|_| "the token is not printable ASCII".to_string())
            })
            .transpose()?;
        Ok(Target {
            kind,
            endpoints: endpoints
                .iter()
                .map(|url| Endpoint::parse(url))
                .collect::<Result<_, _>>()?,
            connector: Connector::new(tls, timeout.min(Duration::from_secs(5))),
            timeout,
            authorization,
        })
    }

    /// A client's session: no connection yet.
    pub fn session(&self) -> Session {
        Session {
            connections: (0..self.endpoints.len()).map(|_| None).collect(),
            request: Vec::with_capacity(1024),
        }
    }

    /// Sends one request to endpoint `endpoint` (an index, modulo the endpoints) and
    /// returns the answer's status and body, whatever the status.
    async fn exchange(
        &self,
        session: &mut Session,
        endpoint: usize,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, Bytes), String> {
        let index = endpoint % self.endpoints.len();
        let target = &self.endpoints[index];
        let authorization = match self.kind {
            TargetKind::Tinykv => self.authorization.as_deref().map(|a| ("Authorization", a)),
            TargetKind::Etcd => None,
        };
        let Session {
            connections,
            request,
        } = session;
        write_request(
            request,
            method,
            &target.authority,
            path,
            headers.iter().copied().chain(authorization),
            body,
        );
        let attempt = async {
            // A kept connection may have been closed by the server meanwhile (an idle
            // timeout, a restart): that shows as no answer, and earns one fresh try.
            let mut fresh_tries = 1;
            loop {
                let (mut connection, reused) = match connections[index].take() {
                    Some(connection) => (connection, true),
                    None => {
                        let connection = self
                            .connector
                            .connect(target)
                            .await
                            .map_err(|e| format!("{NO_ANSWER}{e}"))?;
                        (connection, false)
                    }
                };
                match connection.exchange(request).await {
                    Ok(response) => {
                        if response.keep_alive {
                            connections[index] = Some(connection);
                        }
                        return Ok((response.status, response.body));
                    }
                    Err(ExchangeError::NoAnswer(_)) if reused && fresh_tries > 0 => {
                        fresh_tries -= 1;
                    }
                    Err(ExchangeError::NoAnswer(e)) => return Err(format!("{NO_ANSWER}{e}")),
                    Err(e @ ExchangeError::Broken(_)) => return Err(e.to_string()),
                }
            }
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or_else(|_| Err(format!("{NO_ANSWER}timed out after {:?}", self.timeout)))
    }

    /// Like [`Target::exchange`], but only a 2xx answer is a success, with its body.
    async fn send(
        &self,
        session: &mut Session,
        endpoint: usize,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Bytes, String> {
        let (status, body) = self
            .exchange(session, endpoint, method, path, headers, body)
            .await?;
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(status_error(status, &body))
        }
    }

    /// Writes `value` under `key` through endpoint `endpoint`; a TinyKV-rs write names
    /// `idempotency_key`, if given, so that its copies apply once.
    pub async fn put(
        &self,
        session: &mut Session,
        endpoint: usize,
        key: &str,
        value: &[u8],
        idempotency_key: Option<&str>,
    ) -> Result<(), String> {
        match self.kind {
            TargetKind::Tinykv => {
                let path = tinykv_path(key);
                let headers: &[(&str, &str)] = match idempotency_key {
                    Some(id) => &[("Idempotency-Key", id)],
                    None => &[],
                };
                self.send(session, endpoint, "PUT", &path, headers, value)
                    .await
            }
            TargetKind::Etcd => {
                let body = etcd_put_body(key.as_bytes(), value);
                self.send(session, endpoint, "POST", "/v3/kv/put", JSON, &body)
                    .await
            }
        }
        .map(|_| ())
    }

    /// Reads `key` through endpoint `endpoint`.
    pub async fn get(
        &self,
        session: &mut Session,
        endpoint: usize,
        key: &str,
    ) -> Result<ReadOutcome, String> {
        match self.kind {
            TargetKind::Tinykv => {
                let path = tinykv_path(key);
                let (status, body) = self
                    .exchange(session, endpoint, "GET", &path, &[], b"")
                    .await?;
                match status {
                    200 => Ok(ReadOutcome::Found),
                    404 => Ok(ReadOutcome::Missing),
                    _ => Err(status_error(status, &body)),
                }
            }
            TargetKind::Etcd => {
                let body = etcd_range_body(key.as_bytes());
                let answer = self
                    .send(session, endpoint, "POST", "/v3/kv/range", JSON, &body)
                    .await?;
                if etcd_range_found(&answer)? {
                    Ok(ReadOutcome::Found)
                } else {
                    Ok(ReadOutcome::Missing)
                }
            }
        }
    }

    /// Moves one unit from `from` to `to` in a transaction through endpoint `endpoint`:
    /// reads both (with their versions) in one transaction, then writes both in one that
    /// compares the versions, again until one commits; answers how many lost a race.
    /// A key never written counts as 0 at version 0, on both systems.
    pub async fn transfer(
        &self,
        session: &mut Session,
        endpoint: usize,
        from: &str,
        to: &str,
    ) -> Result<u64, String> {
        let path = match self.kind {
            TargetKind::Tinykv => "/v1/txn",
            TargetKind::Etcd => "/v3/kv/txn",
        };
        let mut lost = 0;
        loop {
            let read = match self.kind {
                TargetKind::Tinykv => tinykv_read_two(from, to),
                TargetKind::Etcd => etcd_read_two(from, to),
            };
            let answer = self.txn(session, endpoint, path, &read).await?;
            let (balances, versions) = match self.kind {
                TargetKind::Tinykv => tinykv_balances(&answer)?,
                TargetKind::Etcd => etcd_balances(&answer)?,
            };
            let write = match self.kind {
                TargetKind::Tinykv => tinykv_transfer(from, to, balances, versions),
                TargetKind::Etcd => etcd_transfer(from, to, balances, versions),
            };
            // etcd's gateway leaves out a false `succeeded`.
            if self.txn(session, endpoint, path, &write).await?["succeeded"] == true {
                return Ok(lost);
            }
            lost += 1;
        }
    }

    async fn txn(
        &self,
        session: &mut Session,
        endpoint: usize,
        path: &str,
        body: &Value,
    ) -> Result<Value, String> {
        let body = body.to_string();
        let answer = self
            .send(session, endpoint, "POST", path, JSON, body.as_bytes())
            .await?;
        json_answer(&answer)
    }
}

/// The header of a JSON request body.
const JSON: &[(&str, &str)] = &[("Content-Type", "application/json")];

fn json_answer(body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(body).map_err(|e| format!("unexpected transaction answer: {e}"))
}

/// A balance as stored (its decimal text); anything else, or nothing, is 0.
fn balance_of(text: &[u8]) -> i64 {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0)
}

/// TinyKV-rs: both keys read in one transaction.
fn tinykv_read_two(a: &str, b: &str) -> Value {
    json!({ "success": [{"op": "get", "key": a}, {"op": "get", "key": b}] })
}

/// TinyKV-rs: the balances and versions a read of two keys answered.
fn tinykv_balances(answer: &Value) -> Result<([i64; 2], [u64; 2]), String> {
    let mut balances = [0; 2];
    let mut versions = [0; 2];
    for i in 0..2 {
        let read = &answer["responses"][i];
        if read.is_null() {
            return Err(format!("unexpected transaction answer: {answer}"));
        }
        balances[i] = read["value"]
            .as_str()
            .map_or(0, |v| balance_of(v.as_bytes()));
        versions[i] = read["version"].as_u64().unwrap_or(0);
    }
    Ok((balances, versions))
}

/// TinyKV-rs: the transfer, if neither key changed since it was read.
fn tinykv_transfer(a: &str, b: &str, balances: [i64; 2], versions: [u64; 2]) -> Value {
    json!({
        "compare": [{"key": a, "version": versions[0]}, {"key": b, "version": versions[1]}],
        "success": [
            {"op": "put", "key": a, "value": (balances[0] - 1).to_string()},
            {"op": "put", "key": b, "value": (balances[1] + 1).to_string()},
        ],
    })
}

/// etcd: both keys read in one transaction.
fn etcd_read_two(a: &str, b: &str) -> Value {
    json!({ "success": [
        {"request_range": {"key": STANDARD.encode(a)}},
        {"request_range": {"key": STANDARD.encode(b)}},
    ]})
}

/// etcd: the balances and `mod_revision`s a read of two keys answered (the gateway
/// writes 64-bit numbers as strings, and leaves out what is empty or zero).
fn etcd_balances(answer: &Value) -> Result<([i64; 2], [u64; 2]), String> {
    let mut balances = [0; 2];
    let mut versions = [0; 2];
    let responses = answer["responses"]
        .as_array()
        .filter(|r| r.len() == 2)
        .ok_or_else(|| format!("unexpected etcd transaction answer: {answer}"))?;
    for (i, response) in responses.iter().enumerate() {
        let Some(kv) = response["response_range"]["kvs"].get(0) else {
            continue;
        };
        let value = kv["value"].as_str().unwrap_or_default();
        balances[i] = balance_of(&STANDARD.decode(value).unwrap_or_default());
        versions[i] = match &kv["mod_revision"] {
            Value::String(text) => text.parse().unwrap_or(0),
            other => other.as_u64().unwrap_or(0),
        };
    }
    Ok((balances, versions))
}

/// etcd: the transfer, if neither key's `mod_revision` changed since it was read.
fn etcd_transfer(a: &str, b: &str, balances: [i64; 2], versions: [u64; 2]) -> Value {
    let compare = |key: &str, revision: u64| {
        json!({"key": STANDARD.encode(key), "target": "MOD", "result": "EQUAL",
               "mod_revision": revision.to_string()})
    };
    let put = |key: &str, balance: i64| {
        json!({"request_put": {"key": STANDARD.encode(key),
               "value": STANDARD.encode(balance.to_string())}})
    };
    json!({
        "compare": [compare(a, versions[0]), compare(b, versions[1])],
        "success": [put(a, balances[0] - 1), put(b, balances[1] + 1)],
    })
}

fn status_error(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let cut = text
        .char_indices()
        .nth(MAX_ERROR_BODY)
        .map_or(text.len(), |(i, _)| i);
    format!("HTTP {status}: {}", &text[..cut])
}

/// The path of `key` on a TinyKV-rs node: the key percent-encoded as one path segment.
pub fn tinykv_path(key: &str) -> String {
    format!("/v1/kv/{}", utf8_percent_encode(key, KEY_SET))
}

#[derive(Serialize)]
struct EtcdPut {
    key: String,
    value: String,
}

#[derive(Serialize)]
struct EtcdRange {
    key: String,
}

/// Body of an etcd `/v3/kv/put`: key and value base64-encoded, as the gateway's JSON
/// mapping of protobuf `bytes` fields requires.
pub fn etcd_put_body(key: &[u8], value: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&EtcdPut {
        key: STANDARD.encode(key),
        value: STANDARD.encode(value),
    })
    .expect("two strings serialize")
}

/// Body of an etcd `/v3/kv/range` for a single key (linearizable: no `serializable`).
pub fn etcd_range_body(key: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&EtcdRange {
        key: STANDARD.encode(key),
    })
    .expect("a string serializes")
}

#[derive(Deserialize)]
struct EtcdRangeResponse {
    // The gateway omits empty repeated fields: no `kvs` when the key is absent.
    #[serde(default)]
    kvs: Vec<serde::de::IgnoredAny>,
}

/// Whether an etcd range response holds a key-value pair.
pub fn etcd_range_found(body: &[u8]) -> Result<bool, String> {
    let response: EtcdRangeResponse =
        serde_json::from_slice(body).map_err(|e| format!("unexpected etcd range response: {e}"))?;
    Ok(!response.kvs.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_put_body_is_base64_json() {
        let body = etcd_put_body(b"bench-0042", b"hello");
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"key": "YmVuY2gtMDA0Mg==", "value": "aGVsbG8="})
        );
        let empty: serde_json::Value = serde_json::from_slice(&etcd_put_body(b"k", b"")).unwrap();
        assert_eq!(empty["value"], "");
    }

    #[test]
    fn transfers_read_and_compare_both_keys_on_each_system() {
        let read = tinykv_read_two("a", "b");
        assert_eq!(read["success"][1], json!({"op": "get", "key": "b"}));
        let answer = json!({"succeeded": true, "responses": [
            {"op": "get", "key": "a", "value": "7", "version": 42},
            {"op": "get", "key": "b", "value": null, "version": null}]});
        let (balances, versions) = tinykv_balances(&answer).unwrap();
        assert_eq!((balances, versions), ([7, 0], [42, 0]));
        let transfer = tinykv_transfer("a", "b", balances, versions);
        assert_eq!(transfer["compare"][0], json!({"key": "a", "version": 42}));
        assert_eq!(transfer["success"][1]["value"], "1");

        let etcd = json!({"header": {}, "succeeded": true, "responses": [
            {"response_range": {"header": {}, "kvs": [{"key": "YQ==", "value": "Nw==",
                "mod_revision": "42"}], "count": "1"}},
            {"response_range": {"header": {}}}]});
        let (balances, versions) = etcd_balances(&etcd).unwrap();
        assert_eq!((balances, versions), ([7, 0], [42, 0]));
        let transfer = etcd_transfer("a", "b", balances, versions);
        assert_eq!(transfer["compare"][0]["mod_revision"], "42");
        assert_eq!(transfer["compare"][1]["target"], "MOD");
        assert_eq!(transfer["success"][0]["request_put"]["value"], "Ng==");
        assert!(etcd_balances(&json!({"responses": []})).is_err());
    }

    #[test]
    fn etcd_range_body_is_a_linearizable_single_key_read() {
        let body = etcd_range_body(b"foo");
        assert_eq!(body, br#"{"key":"Zm9v"}"#);
    }

    #[test]
    fn etcd_range_responses() {
        let found = br#"{"header":{"cluster_id":"1","member_id":"2","revision":"5","raft_term":"2"},
            "kvs":[{"key":"Zm9v","create_revision":"5","mod_revision":"5","version":"1","value":"YmFy"}],
            "count":"1"}"#;
        let missing =
            br#"{"header":{"cluster_id":"1","member_id":"2","revision":"5","raft_term":"2"}}"#;
        assert_eq!(etcd_range_found(found), Ok(true));
        assert_eq!(etcd_range_found(missing), Ok(false));
        assert!(etcd_range_found(b"<html>").is_err());
    }

    #[test]
    fn tinykv_paths_encode_the_key() {
        assert_eq!(tinykv_path("bench-0001"), "/v1/kv/bench-0001");
        assert_eq!(tinykv_path("a/b c"), "/v1/kv/a%2Fb%20c");
    }

    /// A server that answers each connection's first request with 200 (keep-alive
    /// announced) and then closes it, as a server with a short idle timeout does.
    async fn one_answer_per_connection() -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
            }
        });
        format!("http://{address}")
    }

    #[tokio::test]
    async fn a_kept_connection_the_server_closed_is_replaced_once() {
        let endpoint = one_answer_per_connection().await;
        let target = Target::new(
            TargetKind::Tinykv,
            &[endpoint],
            Duration::from_secs(5),
            None,
            None,
        )
        .unwrap();
        let mut session = target.session();
        for _ in 0..3 {
            assert_eq!(
                target.get(&mut session, 0, "k").await,
                Ok(ReadOutcome::Found)
            );
        }
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out_as_no_answer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let target = Target::new(
            TargetKind::Etcd,
            &[endpoint],
            Duration::from_millis(200),
            None,
            None,
        )
        .unwrap();
        let error = target
            .put(&mut target.session(), 0, "k", b"v", None)
            .await
            .unwrap_err();
        assert!(error.starts_with(NO_ANSWER), "{error}");
        drop(listener);
    }

    #[test]
    fn status_errors_quote_a_bounded_body() {
        let long = "x".repeat(1000);
        let message = status_error(503, long.as_bytes());
        assert!(message.starts_with("HTTP 503: xxx"));
        assert_eq!(message.len(), "HTTP 503: ".len() + MAX_ERROR_BODY);
    }
}
