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
//! A [`Target`] holds one shared `reqwest::Client` (HTTP/1.1 keep-alive, a connection pool
//! per endpoint sized for every client, Nagle off), plain or, with `--cacert`, TLS that
//! checks each server's certificate against that CA and presents `--cert` if given. With
//! `--token`, every TinyKV-rs request carries `Authorization: Bearer <token>` (a 401 or
//! 403 then counts as an error like any other status). Responses are always read to the
//! end so that their connection goes back to the pool. A missing key is a normal outcome
//! ([`ReadOutcome::Missing`]); any other non-2xx status or transport failure is an error
//! whose message leaves out the URL, so that equal failures on different keys read alike.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use clap::ValueEnum;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderValue, AUTHORIZATION};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tinykv::error::error_chain;
use tinykv::security::ClientTlsFiles;

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
#[derive(Debug, Clone)]
pub struct Target {
    kind: TargetKind,
    http: reqwest::Client,
    /// `Bearer <token>` for TinyKV-rs requests, if a token was given.
    authorization: Option<HeaderValue>,
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
    /// A client whose pool keeps up to `connections` idle connections per endpoint and
    /// fails requests that take longer than `timeout`; with `tls`, it speaks TLS with
    /// those files (which must load); with `authorization` (`Bearer <token>`), its
    /// TinyKV-rs requests carry it.
    pub fn new(
        kind: TargetKind,
        connections: usize,
        timeout: Duration,
        tls: Option<&ClientTlsFiles>,
        authorization: Option<HeaderValue>,
    ) -> Result<Target, String> {
        let builder = match tls {
            Some(files) => files
                .http_client_builder()
                .map_err(|e| format!("cannot set up TLS: {e}"))?,
            None => tinykv::security::http_client_builder(),
        };
        let http = builder
            .pool_max_idle_per_host(connections)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(&e)))?;
        Ok(Target {
            kind,
            http,
            authorization,
        })
    }

    /// A TinyKV-rs request with the token, if any.
    fn tinykv(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.authorization {
            Some(authorization) => request.header(AUTHORIZATION, authorization.clone()),
            None => request,
        }
    }

    /// Writes `value` under `key` through `endpoint`; a TinyKV-rs write names
    /// `idempotency_key`, if given, so that its copies apply once.
    pub async fn put(
        &self,
        endpoint: &str,
        key: &str,
        value: Bytes,
        idempotency_key: Option<&str>,
    ) -> Result<(), String> {
        let request = match self.kind {
            TargetKind::Tinykv => {
                let mut request = self.http.put(tinykv_url(endpoint, key)).body(value);
                if let Some(idempotency_key) = idempotency_key {
                    request = request.header("Idempotency-Key", idempotency_key);
                }
                self.tinykv(request)
            }
            TargetKind::Etcd => self
                .http
                .post(format!("{endpoint}/v3/kv/put"))
                .header("content-type", "application/json")
                .body(etcd_put_body(key.as_bytes(), &value)),
        };
        send(request).await.map(|_| ())
    }

    /// Reads `key` through `endpoint`.
    pub async fn get(&self, endpoint: &str, key: &str) -> Result<ReadOutcome, String> {
        match self.kind {
            TargetKind::Tinykv => {
                let request = self.tinykv(self.http.get(tinykv_url(endpoint, key)));
                let (status, body) = exchange(request).await?;
                match status.as_u16() {
                    200 => Ok(ReadOutcome::Found),
                    404 => Ok(ReadOutcome::Missing),
                    _ => Err(status_error(status, &body)),
                }
            }
            TargetKind::Etcd => {
                let request = self
                    .http
                    .post(format!("{endpoint}/v3/kv/range"))
                    .header("content-type", "application/json")
                    .body(etcd_range_body(key.as_bytes()));
                let body = send(request).await?;
                if etcd_range_found(&body)? {
                    Ok(ReadOutcome::Found)
                } else {
                    Ok(ReadOutcome::Missing)
                }
            }
        }
    }
}

impl Target {
    /// Moves one unit from `from` to `to` in a transaction through `endpoint`: reads
    /// both (with their versions) in one transaction, then writes both in one that
    /// compares the versions, again until one commits; answers how many lost a race.
    /// A key never written counts as 0 at version 0, on both systems.
    pub async fn transfer(&self, endpoint: &str, from: &str, to: &str) -> Result<u64, String> {
        let mut lost = 0;
        loop {
            let (balances, versions) = match self.kind {
                TargetKind::Tinykv => {
                    let read = tinykv_read_two(from, to);
                    let answer = self.tinykv_txn(endpoint, &read).await?;
                    tinykv_balances(&answer)?
                }
                TargetKind::Etcd => {
                    let answer = self.etcd_txn(endpoint, &etcd_read_two(from, to)).await?;
                    etcd_balances(&answer)?
                }
            };
            let committed = match self.kind {
                TargetKind::Tinykv => {
                    let body = tinykv_transfer(from, to, balances, versions);
                    self.tinykv_txn(endpoint, &body).await?["succeeded"] == true
                }
                TargetKind::Etcd => {
                    let body = etcd_transfer(from, to, balances, versions);
                    // The gateway leaves out a false `succeeded`.
                    self.etcd_txn(endpoint, &body).await?["succeeded"] == true
                }
            };
            if committed {
                return Ok(lost);
            }
            lost += 1;
        }
    }

    async fn tinykv_txn(&self, endpoint: &str, body: &Value) -> Result<Value, String> {
        let request = self
            .http
            .post(format!("{endpoint}/v1/txn"))
            .header("content-type", "application/json")
            .body(body.to_string());
        json_answer(&send(self.tinykv(request)).await?)
    }

    async fn etcd_txn(&self, endpoint: &str, body: &Value) -> Result<Value, String> {
        let request = self
            .http
            .post(format!("{endpoint}/v3/kv/txn"))
            .header("content-type", "application/json")
            .body(body.to_string());
        json_answer(&send(request).await?)
    }
}

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

/// Sends a request and returns the body of a 2xx answer.
async fn send(request: reqwest::RequestBuilder) -> Result<Bytes, String> {
    let (status, body) = exchange(request).await?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(status_error(status, &body))
    }
}

/// Sends a request and returns the answer's status and body, whatever the status.
async fn exchange(
    request: reqwest::RequestBuilder,
) -> Result<(reqwest::StatusCode, Bytes), String> {
    let response = request
        .send()
        .await
        .map_err(|e| format!("{NO_ANSWER}{}", error_chain(&e.without_url())))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| error_chain(&e.without_url()))?;
    Ok((status, body))
}

fn status_error(status: reqwest::StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let cut = text
        .char_indices()
        .nth(MAX_ERROR_BODY)
        .map_or(text.len(), |(i, _)| i);
    format!("HTTP {}: {}", status.as_u16(), &text[..cut])
}

/// The URL of `key` on a TinyKV-rs node: the key percent-encoded as one path segment.
pub fn tinykv_url(endpoint: &str, key: &str) -> String {
    format!("{endpoint}/v1/kv/{}", utf8_percent_encode(key, KEY_SET))
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
    fn tinykv_urls_encode_the_key() {
        assert_eq!(
            tinykv_url("http://127.0.0.1:8081", "bench-0001"),
            "http://127.0.0.1:8081/v1/kv/bench-0001"
        );
        assert_eq!(
            tinykv_url("http://h:1", "a/b c"),
            "http://h:1/v1/kv/a%2Fb%20c"
        );
    }

    #[test]
    fn status_errors_quote_a_bounded_body() {
        let long = "x".repeat(1000);
        let message = status_error(reqwest::StatusCode::SERVICE_UNAVAILABLE, long.as_bytes());
        assert!(message.starts_with("HTTP 503: xxx"));
        assert_eq!(message.len(), "HTTP 503: ".len() + MAX_ERROR_BODY);
    }
}
