//! The transactional workloads of a chaos run, beside the raw key-value one.
//!
//! - **register** ([`register_loop`]): each client reads a key at the latest timestamp
//!   (`GET /v1/kv/{key}?ts=latest`, the value and its version in `ETag`) and
//!   compare-and-sets it from what it read (`PUT` with `If-Match: "version"`, or
//!   `If-None-Match: *` if it read nothing) to a value of its own. Every operation joins
//!   the history: a 200 is a successful `cas(expected→new)`, a 412 a failed one (a read
//!   that found the register holding something else), so the checker proves that
//!   conditional writes and snapshot reads are linearizable. A conditional write is never
//!   sent twice: a second attempt after an unknown outcome could fail on the first's own
//!   success.
//! - **bank** ([`bank_loop`], [`bank_reader`]): [`ACCOUNTS`] accounts of [`INITIAL`]
//!   each. Clients read two accounts and move a random amount between them with a
//!   one-shot transaction (`POST /v1/txn`) that compares both versions to those read;
//!   a reader takes snapshots of every balance (`GET /v1/kv?ts=latest`). Every snapshot,
//!   and the final one on every node, must hold every account and the initial total.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tinykv::error::error_chain;

use super::{Ctx, CLIENT_TIMEOUT};
use crate::linearizability::Command;

/// Accounts of the bank.
pub const ACCOUNTS: usize = 8;

/// Each account's opening balance.
pub const INITIAL: i64 = 100;

/// The key of account `i`.
pub fn account(i: usize) -> String {
    format!("bank-a{i:02}")
}

/// A request with the clients' token, if authentication is on.
fn authorized(ctx: &Ctx, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    let request = request.timeout(CLIENT_TIMEOUT);
    match ctx.client_token.get() {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

/// The version an answer's `ETag` names.
fn etag(response: &reqwest::Response) -> Option<u64> {
    response
        .headers()
        .get("etag")?
        .to_str()
        .ok()?
        .trim_matches('"')
        .parse()
        .ok()
}

/// A read of the transactional `key` at the latest timestamp through `node`, recorded
/// in the history: the value and version read, or `None` if it failed.
pub(super) async fn register_read(
    ctx: &Ctx,
    client: u64,
    node: u64,
    key: &str,
) -> Option<(Option<String>, Option<u64>)> {
    let id = ctx.recorder.invoke(client, node, key, Command::Get(None));
    let url = format!("{}/v1/kv/{key}?ts=latest", ctx.url(node));
    match authorized(ctx, ctx.http.get(url)).send().await {
        Ok(response) if response.status().as_u16() == 200 => {
            let version = etag(&response);
            match response.bytes().await {
                Ok(body) => {
                    let value = String::from_utf8_lossy(&body).into_owned();
                    ctx.recorder.ok_read(id, Some(value.clone()));
                    Some((Some(value), version))
                }
                Err(e) => {
                    ctx.recorder.fail(id, error_chain(&e));
                    None
                }
            }
        }
        Ok(response) if response.status().as_u16() == 404 => {
            ctx.recorder.ok_read(id, None);
            Some((None, None))
        }
        Ok(response) => {
            ctx.recorder
                .fail(id, format!("HTTP {}", response.status().as_u16()));
            None
        }
        Err(e) => {
            ctx.recorder.fail(id, error_chain(&e));
            None
        }
    }
}

/// A compare-and-set of `key` from `expected` (at `version`; `None`: absent) to `new`
/// through `node`, recorded in the history; answers the new version if it applied.
async fn register_cas(
    ctx: &Ctx,
    client: u64,
    node: u64,
    key: &str,
    expected: Option<String>,
    version: Option<u64>,
    new: String,
) -> Option<u64> {
    let command = Command::Cas {
        expected: expected.clone(),
        new: new.clone(),
    };
    let id = ctx.recorder.invoke(client, node, key, command);
    let url = format!("{}/v1/kv/{key}", ctx.url(node));
    let request = match version {
        Some(version) => ctx
            .http
            .put(url)
            .header("If-Match", format!("\"{version}\"")),
        None => ctx.http.put(url).header("If-None-Match", "*"),
    };
    match authorized(ctx, request.body(new)).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let version = etag(&response);
            match status {
                200 => {
                    ctx.recorder.ok(id);
                    version
                }
                // The condition did not hold: a read that found something else.
                412 => {
                    ctx.recorder.ok_as(id, Command::CasFailed { expected });
                    None
                }
                // Refused, or no leader in time: nothing was written.
                400..=499 | 503 => {
                    ctx.recorder.fail(id, format!("HTTP {status}"));
                    None
                }
                _ => {
                    ctx.recorder.info(id, format!("HTTP {status}"));
                    None
                }
            }
        }
        Err(e) if e.is_connect() => {
            ctx.recorder.fail(id, error_chain(&e));
            None
        }
        Err(e) => {
            ctx.recorder.info(id, error_chain(&e));
            None
        }
    }
}

/// One register client until `deadline`; see the module documentation.
pub(super) async fn register_loop(ctx: Arc<Ctx>, client: u64, deadline: Instant) {
    let mut rng = StdRng::seed_from_u64(ctx.config.seed.wrapping_mul(1_000_003) + client);
    let mut counter = 0u64;
    // What this client last read of each key: the value and its version.
    let mut known: HashMap<String, (Option<String>, Option<u64>)> = HashMap::new();
    while Instant::now() < deadline {
        let key = Ctx::key(ctx.epoch(), rng.gen_range(0..ctx.config.keys.max(1)));
        let node = rng.gen_range(1..=ctx.config.nodes);
        let read = match known.get(&key) {
            Some(read) if rng.gen_bool(0.6) => Some(read.clone()),
            _ => register_read(&ctx, client, node, &key).await,
        };
        let Some((expected, version)) = read else {
            known.remove(&key);
            tokio::time::sleep(Duration::from_millis(rng.gen_range(5..50))).await;
            continue;
        };
        counter += 1;
        let new = format!("c{client}-{counter}");
        let node = rng.gen_range(1..=ctx.config.nodes);
        match register_cas(&ctx, client, node, &key, expected, version, new.clone()).await {
            Some(version) => {
                known.insert(key, (Some(new), Some(version)));
            }
            None => {
                known.remove(&key);
            }
        }
    }
}

/// Counts one event of the bank in the run's tallies.
fn tally(ctx: &Ctx, what: &'static str) {
    *ctx.tallies
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(what)
        .or_default() += 1;
}

/// Opens the accounts; retried until it succeeds or `deadline`.
pub(super) async fn open_accounts(ctx: &Ctx, deadline: Instant) -> Result<(), String> {
    let puts: Vec<Value> = (0..ACCOUNTS)
        .map(|i| json!({"op": "put", "key": account(i), "value": INITIAL.to_string()}))
        .collect();
    let body = json!({ "success": puts });
    loop {
        let request = ctx
            .http
            .post(format!("{}/v1/txn", ctx.url(1)))
            .header("content-type", "application/json")
            .body(body.to_string());
        match authorized(ctx, request).send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            other if Instant::now() >= deadline => return Err(format!("{other:?}")),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Reads one account at the latest timestamp: its balance and version.
async fn read_account(ctx: &Ctx, node: u64, key: &str) -> Option<(i64, u64)> {
    let url = format!("{}/v1/kv/{key}?ts=latest", ctx.url(node));
    let response = authorized(ctx, ctx.http.get(url)).send().await.ok()?;
    if response.status().as_u16() != 200 {
        return None;
    }
    let version = etag(&response)?;
    let body = response.bytes().await.ok()?;
    Some((String::from_utf8_lossy(&body).parse().ok()?, version))
}

/// One bank client until `deadline`: transfers between random accounts.
pub(super) async fn bank_loop(ctx: Arc<Ctx>, client: u64, deadline: Instant) {
    let mut rng = StdRng::seed_from_u64(ctx.config.seed.wrapping_mul(1_000_003) + client);
    while Instant::now() < deadline {
        let node = rng.gen_range(1..=ctx.config.nodes);
        let from = rng.gen_range(0..ACCOUNTS);
        let to = (from + rng.gen_range(1..ACCOUNTS)) % ACCOUNTS;
        let (a, b) = (account(from), account(to));
        let (Some((balance_a, version_a)), Some((balance_b, version_b))) = (
            read_account(&ctx, node, &a).await,
            read_account(&ctx, node, &b).await,
        ) else {
            tally(&ctx, "bank_read_failed");
            tokio::time::sleep(Duration::from_millis(rng.gen_range(5..50))).await;
            continue;
        };
        let amount = rng.gen_range(1..=20).min(balance_a);
        let body = json!({
            "compare": [{"key": a, "version": version_a}, {"key": b, "version": version_b}],
            "success": [
                {"op": "put", "key": a, "value": (balance_a - amount).to_string()},
                {"op": "put", "key": b, "value": (balance_b + amount).to_string()},
            ],
        });
        let request = ctx
            .http
            .post(format!("{}/v1/txn", ctx.url(node)))
            .header("content-type", "application/json")
            .body(body.to_string());
        let outcome = match authorized(&ctx, request).send().await {
            Ok(response) if response.status().is_success() => {
                let body = response.bytes().await.unwrap_or_default();
                let answer: Value = serde_json::from_slice(&body).unwrap_or_default();
                if answer["succeeded"] == true {
                    "bank_transfers"
                } else {
                    "bank_lost_races"
                }
            }
            Ok(_) | Err(_) => "bank_transfers_failed",
        };
        tally(&ctx, outcome);
    }
}

/// One snapshot of every balance through `node`: `Ok(None)` if the node could not
/// answer, `Err` if the snapshot breaks the bank's invariant.
pub(super) async fn bank_snapshot(ctx: &Ctx, node: u64) -> Result<Option<u64>, String> {
    let url = format!(
        "{}/v1/kv?start=bank-&end=bank.&ts=latest&limit=100",
        ctx.url(node)
    );
    let Ok(response) = authorized(ctx, ctx.http.get(url)).send().await else {
        return Ok(None);
    };
    if !response.status().is_success() {
        return Ok(None);
    }
    let Ok(body) = response.bytes().await else {
        return Ok(None);
    };
    let Ok(answer) = serde_json::from_slice::<Value>(&body) else {
        return Ok(None);
    };
    let kvs = answer["kvs"].as_array().cloned().unwrap_or_default();
    let balances: Vec<i64> = kvs
        .iter()
        .filter_map(|kv| kv["value"].as_str()?.parse().ok())
        .collect();
    let total: i64 = balances.iter().sum();
    let read_ts = answer["read_ts"].as_u64().unwrap_or(0);
    if kvs.len() != ACCOUNTS || balances.len() != ACCOUNTS || total != INITIAL * ACCOUNTS as i64 {
        return Err(format!(
            "the snapshot at {read_ts} on node {node} holds {} accounts totalling {total}: {}",
            kvs.len(),
            Value::Array(kvs)
        ));
    }
    Ok(Some(read_ts))
}

/// Takes snapshots of every balance through random nodes until `deadline`, recording
/// any that breaks the invariant as a problem of the run.
pub(super) async fn bank_reader(ctx: Arc<Ctx>, deadline: Instant) {
    let mut rng = StdRng::seed_from_u64(ctx.config.seed.wrapping_mul(31));
    while Instant::now() < deadline {
        let node = rng.gen_range(1..=ctx.config.nodes);
        match bank_snapshot(&ctx, node).await {
            Ok(Some(_)) => tally(&ctx, "bank_snapshots"),
            Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(problem) => {
                ctx.log(format!("BANK INVARIANT BROKEN: {problem}"));
                ctx.workload_problems
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(problem);
            }
        }
    }
}
