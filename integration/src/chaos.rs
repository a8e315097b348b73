//! Chaos against the real binaries, checked for linearizability.
//!
//! [`run`] starts a [`ProcessCluster`] of `tinykv-server` processes on loopback with
//! fault injection on (`[debug] fault_injection = true`), then for [`ChaosConfig::duration`]:
//!
//! - **clients** (concurrent tasks) loop over random gets, puts and deletes through the
//!   REST API of random nodes. Keys come from a small set that rotates every
//!   [`ChaosConfig::key_rotation`] (`chaos-e00007-k2` is key 2 of the eighth period), so
//!   each key's history stays short and cheap to check. Every value written is unique
//!   (`c<client>-<counter>`), so a read says which write it saw. Each operation is
//!   recorded with its invocation and completion times and an outcome (see
//!   [`classify`]): `ok`; `fail` when it certainly did not execute (a 4xx, a 503, or a
//!   connection that could not be made); `info` when a write's fate is unknown (a 504
//!   `timeout`, a 500, a timeout or a connection lost after sending). An operation that
//!   got no answer or a 5xx is sent again to the next node (up to [`ATTEMPTS`] times), as
//!   a careful client would, a write with the same `Idempotency-Key`: the key makes it
//!   one write however many copies arrive, so it stays one operation, `ok` if any
//!   attempt succeeded, `info` if one may have applied it, `fail` only if none could. Since
//!   every value is unique, a `fail`ed write (a 503 among them) whose value a read ever saw
//!   would make the history not linearizable: the check proves 503 means "not applied".
//!
//!   That is the `kv` [`Workload`]; `register` and `bank` exercise transactions instead
//!   (see [`workloads`]): compare-and-sets checked by the same checker, and transfers
//!   whose snapshots must keep the bank's total.
//! - **the nemesis** picks faults at random among [`ChaosConfig::faults`]: kill a node
//!   with SIGKILL and restart it over its data a little later; pause one with SIGSTOP and
//!   resume it with SIGCONT; partition one from all others through the fault endpoint
//!   (`POST /v1/admin/faults/partition` on every node) and heal it; transfer the
//!   leadership of a random region to another of its peers; merge a random region into its
//!   right neighbour; split a region at a random
//!   key. At most a minority of the nodes is down, paused or partitioned at once (one
//!   task per node of that minority injects those, one more moves leaders and splits).
//!
//! Then everything heals: partitions are lifted, paused nodes resumed, killed ones
//! started, and every node must answer `/health`. Every key is read on every node, one
//! node after the other; these final reads join the history as ordinary operations,
//! invoked after everything else completed, so the checker requires them to see the last
//! value (or, if the last writes were indeterminate, one of their values, consistently).
//! [`crate::linearizability::check`] then decides, key by key, and the run ends with one
//! line (also [`ChaosOutcome::line`]):
//!
//! ```text
//! chaos: PASS seed=7 ops=27734 ok=27734 fail=0 unknown=0 node_retried_ok=49 client_retried_ok=3527 faults=18
//! ```
//!
//! `unknown` counts the writes whose outcome stayed unknown; `node_retried_ok` the writes
//! the nodes retried to success themselves (their `tinykv_requests_retried_total`, since
//! each last started), `client_retried_ok` those that succeeded on a client retry.
//!
//! With [`ChaosConfig::out`] set, the directory receives `history.jsonl` (every operation,
//! one JSON object per line), `faults.log` (the nemesis' actions on the history's clock),
//! `verdict.txt`, and on anything but PASS one `fail-<key>.txt` diagram per key that is
//! not linearizable and the nodes' logs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tinykv::error::error_chain;

use crate::linearizability::{self, CheckConfig, Command, History, Outcome, Recorder, Report};
use crate::process::ProcessCluster;

pub use crate::linearizability::Verdict;
pub use tinykv::human_duration::parse_duration;

mod workloads;

pub use workloads::{account, ACCOUNTS, INITIAL};

/// What the clients do; see [`workloads`] for the transactional ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Raw gets, puts and deletes, checked for linearizability.
    Kv,
    /// Reads at the latest timestamp and compare-and-sets of transactional keys, checked
    /// for linearizability.
    Register,
    /// Transfers between accounts in one-shot transactions and snapshots of every
    /// balance, whose total must never change.
    Bank,
}

impl Workload {
    /// Every workload.
    pub const ALL: [Workload; 3] = [Workload::Kv, Workload::Register, Workload::Bank];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Kv => "kv",
            Workload::Register => "register",
            Workload::Bank => "bank",
        }
    }

    /// Whether its keys are transactional (split in the transactional key range).
    fn is_txn(self) -> bool {
        self != Workload::Kv
    }
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(name: &str) -> Result<Workload, String> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name() == name)
            .ok_or_else(|| format!("unknown workload {name:?}; expected kv, register or bank"))
    }
}

/// The configuration sections every chaos node gets: fault injection on, and request
/// timeouts short enough that a stalled leader costs seconds, not tens of seconds.
pub const NODE_CONFIG: &str = "[debug]\nfault_injection = true\n\n[api]\nrequest_timeout_ms = 2000\nattempt_timeout_ms = 1000\n";

/// The root token of a chaos run with authentication.
pub const CHAOS_ROOT_TOKEN: &str = "chaos-root-token-0123456789";

/// Switches authentication on through node 1 with the root token, makes a `readwrite`
/// token for the clients and waits until every node refuses a request without one.
async fn switch_auth_on(ctx: &Ctx) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let post = |path: &str, body: serde_json::Value| {
        ctx.http
            .post(format!("{}{path}", ctx.urls[0]))
            .bearer_auth(CHAOS_ROOT_TOKEN)
            .header("content-type", "application/json")
            .body(body.to_string())
    };
    // The PD records the root token when it first leads: retry until it has.
    loop {
        let answer = post("/v1/auth/enable", serde_json::json!({})).send().await;
        if matches!(&answer, Ok(r) if r.status().is_success()) {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("enable: {answer:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let made = post(
        "/v1/auth/tokens",
        serde_json::json!({"name": "chaos clients", "role": "readwrite"}),
    )
    .send()
    .await
    .map_err(|e| e.to_string())?;
    let bytes = made.bytes().await.map_err(|e| e.to_string())?;
    let body: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let token = body["token"]
        .as_str()
        .ok_or(format!("no token in {body}"))?;
    ctx.client_token
        .set(token.to_string())
        .map_err(|_| "the client token is set twice".to_string())?;
    for url in &ctx.urls {
        loop {
            let probe = ctx.http.get(format!("{url}/v1/kv/probe")).send().await;
            if matches!(&probe, Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED) {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("{url} does not enforce authentication: {probe:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    ctx.log("authentication on: clients use a readwrite token, the nemesis the root token");
    Ok(())
}

/// The client's own limit on one request: above the nodes' request timeout, so that a
/// node that runs answers (504 if it must) before the client gives up, and short enough
/// that clients stuck on a paused node soon move on to others.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);

/// One kind of fault the nemesis injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// SIGKILL a node, restart it over its data after a while.
    Kill,
    /// SIGSTOP a node, SIGCONT it after a while.
    Pause,
    /// Cut a node off from every other node (both ways), heal after a while.
    Partition,
    /// Move a random region's leadership to another of its peers.
    TransferLeader,
    /// Split a region at a random key.
    Split,
    /// Merge a random region into its right neighbour.
    Merge,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 6] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::TransferLeader,
        FaultKind::Split,
        FaultKind::Merge,
    ];

    /// The name used on the command line: `kill`, `pause`, `partition`,
    /// `transfer-leader`, `split`, `merge`.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::TransferLeader => "transfer-leader",
            FaultKind::Split => "split",
            FaultKind::Merge => "merge",
        }
    }

    /// Whether the fault takes a node out for a while (and so counts against the
    /// minority that may be out at once).
    pub fn disables_a_node(self) -> bool {
        matches!(
            self,
            FaultKind::Kill | FaultKind::Pause | FaultKind::Partition
        )
    }

    /// Parses a comma-separated list of names; `all` means every kind, `none` or an empty
    /// string none.
    pub fn parse_list(list: &str) -> Result<Vec<FaultKind>, String> {
        let mut kinds = BTreeSet::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "all" => kinds.extend(FaultKind::ALL),
                "none" => {}
                name => {
                    kinds.insert(name.parse()?);
                }
            }
        }
        Ok(kinds.into_iter().collect())
    }
}

impl FromStr for FaultKind {
    type Err = String;

    fn from_str(name: &str) -> Result<FaultKind, String> {
        FaultKind::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| {
                format!(
                    "unknown fault {name:?}; expected some of kill, pause, partition, transfer-leader, split, merge, all, none"
                )
            })
    }
}

/// What a chaos run does; see the module documentation.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// Nodes in the cluster (3 or 5 make sense).
    pub nodes: u64,
    /// How long clients and the nemesis run.
    pub duration: Duration,
    /// Concurrent clients.
    pub clients: usize,
    /// Keys in use at any time (per rotation period).
    pub keys: usize,
    /// How often the key set is replaced by a fresh one.
    pub key_rotation: Duration,
    /// Seeds every random choice (which operation, key, node, fault and when).
    pub seed: u64,
    /// The faults the nemesis may inject; empty: none.
    pub faults: Vec<FaultKind>,
    /// Where artifacts go, if anywhere.
    pub out: Option<PathBuf>,
    /// Bound of the checker's search per key.
    pub max_states: usize,
    /// Runs the cluster with TLS everywhere ([`ProcessCluster::start_secure`]): clients
    /// over HTTPS, nodes over mutual TLS.
    pub tls: bool,
    /// Switches authentication on before the run: clients write with a `readwrite`
    /// token, the nemesis acts with the root token.
    pub auth: bool,
    /// What the clients do.
    pub workload: Workload,
    /// Runs each node on a simulated host of its own (a network namespace, see
    /// [`crate::netns`]; needs root), and makes partitions in the kernel with blackhole
    /// routes instead of the nodes' fault switch. Not with `tls`.
    pub netns: bool,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        ChaosConfig {
            nodes: 3,
            duration: Duration::from_secs(30),
            clients: 8,
            keys: 4,
            key_rotation: Duration::from_secs(2),
            seed: 1,
            faults: FaultKind::ALL.to_vec(),
            out: None,
            max_states: CheckConfig::default().max_states,
            tls: false,
            auth: false,
            workload: Workload::Kv,
            netns: false,
        }
    }
}

/// The result of [`run`].
#[derive(Debug, Clone)]
pub struct ChaosOutcome {
    /// The verdict: `Fail` if the checker found a key not linearizable or the cluster did
    /// not recover (see `problems`); `Unknown` if the checker gave up on a key.
    pub verdict: Verdict,
    /// The verdict line, `chaos: PASS seed=... ops=... ok=... fail=... info=... faults=...`.
    pub line: String,
    /// The recorded history, final reads included.
    pub history: History,
    /// The checker's report.
    pub report: Report,
    /// Faults injected (nemesis actions of every kind).
    pub faults: usize,
    /// What went wrong besides linearizability: a node that did not come back, a key
    /// that no final read could read.
    pub problems: Vec<String>,
}

/// Shared by clients and nemesis tasks.
struct Ctx {
    config: ChaosConfig,
    http: reqwest::Client,
    urls: Vec<String>,
    recorder: Recorder,
    cluster: Mutex<ProcessCluster>,
    /// Nodes taken out by a fault now (killed, paused or partitioned).
    out_now: Mutex<BTreeSet<u64>>,
    /// Nodes partitioned from all others now.
    partitioned: Mutex<BTreeSet<u64>>,
    /// The nemesis' actions: (time on the recorder's clock, description).
    timeline: Mutex<Vec<(u64, String)>>,
    faults: Mutex<usize>,
    /// The clients' token, once authentication is on.
    client_token: std::sync::OnceLock<String>,
    /// Operations that succeeded on a client retry, on another node.
    client_retried_ok: std::sync::atomic::AtomicU64,
    /// Counts of the transactional workloads' events (transfers, snapshots, ...).
    tallies: Mutex<BTreeMap<&'static str, u64>>,
    /// What the workloads' own checks found wrong (a bank snapshot off its total).
    workload_problems: Mutex<Vec<String>>,
}

impl Ctx {
    fn url(&self, node: u64) -> &str {
        &self.urls[(node - 1) as usize]
    }

    fn log(&self, what: impl Into<String>) {
        let what = what.into();
        let at = self.recorder.now();
        self.timeline
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((at, what));
    }

    fn count_fault(&self) {
        *self.faults.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    }

    fn cluster(&self) -> std::sync::MutexGuard<'_, ProcessCluster> {
        self.cluster.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The key of index `i` in rotation period `epoch`.
    fn key(epoch: u64, i: usize) -> String {
        format!("chaos-e{epoch:05}-k{i}")
    }

    /// The current rotation period.
    fn epoch(&self) -> u64 {
        self.recorder.now() / (self.config.key_rotation.as_nanos().max(1) as u64)
    }

    /// A node that no fault holds now, if any.
    fn healthy_node(&self, rng: &mut StdRng) -> Option<u64> {
        let out = self
            .out_now
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let healthy: Vec<u64> = (1..=self.config.nodes)
            .filter(|n| !out.contains(n))
            .collect();
        healthy.choose(rng).copied()
    }
}

/// How a REST answer (or its absence) counts in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    /// The write took effect.
    Written,
    /// The get read this value (`None`: absent).
    Read(Option<String>),
    /// Certainly not executed, because of the text.
    Fail(String),
    /// A write whose fate is unknown, because of the text.
    Info(String),
}

/// Classifies the answer to one request: `is_write` says whether it was a put or delete,
/// `status` and `body` are the HTTP answer. See the module documentation for the rules.
pub fn classify(is_write: bool, status: u16, body: &[u8]) -> Classified {
    let code = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(String::from))
        .unwrap_or_default();
    let why = || format!("HTTP {status} {code}");
    match status {
        200..=299 if is_write => Classified::Written,
        200..=299 => Classified::Read(Some(String::from_utf8_lossy(body).into_owned())),
        404 if !is_write && code == "not_found" => Classified::Read(None),
        _ if !is_write => Classified::Fail(why()),
        // Refused before executing: bad input, or no leader could be reached in time
        // (503, documented as safe to retry).
        400..=499 | 503 => Classified::Fail(why()),
        // 504 `timeout`, 500 and anything else: the write may have happened.
        _ => Classified::Info(why()),
    }
}

/// Classifies a request that got no HTTP answer: a connection that could not be made
/// sent nothing; anything else (a timeout, a reset) may have delivered a write.
pub fn classify_transport_error(is_write: bool, error: &reqwest::Error) -> Classified {
    let why = error_chain(error);
    if error.is_connect() || !is_write {
        Classified::Fail(why)
    } else {
        Classified::Info(why)
    }
}

/// Most attempts of one operation: the first, and retries on the next nodes.
pub const ATTEMPTS: usize = 3;

/// Executes `command` on `key` through `node`, recording it in the history as one
/// operation; returns how it counted. An attempt that did not succeed for a reason
/// another node may not share (no answer, a 503 or 5xx: that node could not reach the
/// leader, or went away) is sent again to the next node, up to [`ATTEMPTS`] times, a
/// write with the same `Idempotency-Key`: the key makes it one write however many copies
/// arrive, so it stays one operation. A write counts `fail` only if every attempt
/// certainly did nothing, `info` if one may have applied it.
async fn execute(ctx: &Ctx, client: u64, node: u64, key: &str, command: Command) -> Classified {
    let id = ctx.recorder.invoke(client, node, key, command.clone());
    let idempotency_key = format!("chaos-{}-op{id}", ctx.config.seed);
    let mut maybe_applied = None;
    let mut classified = Classified::Fail("no attempt".into());
    for attempt in 0..ATTEMPTS {
        let target = (node - 1 + attempt as u64) % ctx.config.nodes + 1;
        let again;
        (classified, again) = attempt_once(ctx, target, key, &command, &idempotency_key).await;
        match &classified {
            Classified::Info(why) => maybe_applied = Some(why.clone()),
            Classified::Fail(_) if again => {}
            Classified::Fail(_) => break,
            _ => {
                if attempt > 0 {
                    ctx.client_retried_ok
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                break;
            }
        }
    }
    if let (Classified::Fail(why), Some(earlier)) = (&classified, maybe_applied) {
        // This attempt did nothing, but an earlier one may have.
        classified = Classified::Info(format!("{earlier}, then {why}"));
    }
    match &classified {
        Classified::Written => ctx.recorder.ok(id),
        Classified::Read(value) => ctx.recorder.ok_read(id, value.clone()),
        Classified::Fail(why) => ctx.recorder.fail(id, why.clone()),
        Classified::Info(why) => ctx.recorder.info(id, why.clone()),
    }
    classified
}

/// Sends `command` on `key` to `node` once; answers how it counted and whether another
/// node may do better (no answer, or a 5xx).
async fn attempt_once(
    ctx: &Ctx,
    node: u64,
    key: &str,
    command: &Command,
    idempotency_key: &str,
) -> (Classified, bool) {
    let url = format!("{}/v1/kv/{key}", ctx.url(node));
    let is_write = command.is_write();
    let mut request = match command {
        Command::Get(_) => ctx.http.get(url),
        Command::Put(value) => ctx.http.put(url).body(value.clone()),
        Command::Delete => ctx.http.delete(url),
        // Sent once each, by the register workload itself.
        Command::Cas { .. } | Command::CasFailed { .. } => {
            return (Classified::Fail("not a raw operation".into()), false)
        }
    };
    if is_write {
        request = request.header("Idempotency-Key", idempotency_key);
    }
    if let Some(token) = ctx.client_token.get() {
        request = request.bearer_auth(token);
    }
    match request.timeout(CLIENT_TIMEOUT).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.bytes().await {
                Ok(body) => (classify(is_write, status, &body), status >= 500),
                // The status says it happened; only the body was lost.
                Err(_) if is_write && (200..300).contains(&status) => (Classified::Written, false),
                Err(e) => (classify_transport_error(is_write, &e), true),
            }
        }
        Err(e) => (classify_transport_error(is_write, &e), true),
    }
}

/// One client: random operations on the current keys through random nodes until
/// `deadline`.
async fn client_loop(ctx: Arc<Ctx>, client: u64, deadline: Instant) {
    let mut rng = StdRng::seed_from_u64(ctx.config.seed.wrapping_mul(1_000_003) + client);
    let mut counter = 0u64;
    while Instant::now() < deadline {
        let key = Ctx::key(ctx.epoch(), rng.gen_range(0..ctx.config.keys.max(1)));
        let node = rng.gen_range(1..=ctx.config.nodes);
        let command = match rng.gen_range(0..10) {
            0..=4 => Command::Get(None),
            5..=8 => {
                counter += 1;
                Command::Put(format!("c{client}-{counter}"))
            }
            _ => Command::Delete,
        };
        if let Classified::Fail(_) = execute(&ctx, client, node, &key, command).await {
            // A node that refuses (killed, say) would otherwise be hammered in a loop.
            tokio::time::sleep(Duration::from_millis(rng.gen_range(5..50))).await;
        }
    }
}

/// Sends an admin request; returns the status and JSON body, or why there is none.
async fn admin(
    ctx: &Ctx,
    method: reqwest::Method,
    node: u64,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    let mut request = ctx
        .http
        .request(method, format!("{}{path}", ctx.url(node)))
        .timeout(Duration::from_secs(5));
    if ctx.config.auth {
        request = request.bearer_auth(CHAOS_ROOT_TOKEN);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.map_err(|e| error_chain(&e))?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| error_chain(&e))?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// Tells every node which stores to block, from the set of partitioned nodes: a
/// partitioned node blocks every other, the others block the partitioned ones. On
/// simulated hosts, the kernel's routes do it instead.
async fn apply_partitions(ctx: &Ctx) {
    let partitioned = ctx
        .partitioned
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if ctx.config.netns {
        let cluster = ctx.cluster();
        // `run` starts the cluster in namespaces whenever `config.netns` is set.
        let hosts = cluster.hosts().expect("a cluster in namespaces");
        for node in 1..=ctx.config.nodes {
            if let Err(e) = hosts.isolate(node, partitioned.contains(&node)) {
                ctx.log(format!("  node {node}: routes: {e}"));
            }
        }
        // A node healed here may still be cut off by another partitioned one's routes.
        for node in &partitioned {
            let _ = hosts.isolate(*node, true);
        }
        return;
    }
    for node in 1..=ctx.config.nodes {
        let blocked: Vec<u64> = if partitioned.contains(&node) {
            (1..=ctx.config.nodes).filter(|n| *n != node).collect()
        } else {
            partitioned.iter().copied().collect()
        };
        let path = "/v1/admin/faults/partition";
        let result = if blocked.is_empty() {
            admin(ctx, reqwest::Method::DELETE, node, path, None).await
        } else {
            let body = json!({ "blocked_stores": blocked });
            admin(ctx, reqwest::Method::POST, node, path, Some(body)).await
        };
        match result {
            Ok((200, _)) => {}
            other => ctx.log(format!(
                "  node {node}: setting blocked={blocked:?} failed: {other:?}"
            )),
        }
    }
}

/// Waits until `node` answers `/health`, up to `limit`.
async fn wait_healthy(ctx: &Ctx, node: u64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let url = format!("{}/health?live", ctx.url(node));
    while Instant::now() < deadline {
        let answer = ctx
            .http
            .get(&url)
            .timeout(Duration::from_secs(1))
            .send()
            .await;
        if matches!(answer, Ok(ref r) if r.status().is_success()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A random pause of `min..max` milliseconds.
async fn sleep_ms(rng: &mut StdRng, min: u64, max: u64) {
    tokio::time::sleep(Duration::from_millis(rng.gen_range(min..max))).await;
}

/// Takes a node out with `kind` for a while (ending by `deadline` if it can), then brings
/// it back.
async fn disable_node(ctx: &Ctx, rng: &mut StdRng, kind: FaultKind, deadline: Instant) {
    let node = {
        let mut out = ctx.out_now.lock().unwrap_or_else(|p| p.into_inner());
        let minority = ((ctx.config.nodes - 1) / 2) as usize;
        if out.len() >= minority {
            return;
        }
        let candidates: Vec<u64> = (1..=ctx.config.nodes)
            .filter(|n| !out.contains(n))
            .collect();
        let Some(&node) = candidates.choose(rng) else {
            return;
        };
        out.insert(node);
        node
    };
    ctx.count_fault();
    let hold = Duration::from_millis(rng.gen_range(1000..4000)).min(
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(200)),
    );
    match kind {
        FaultKind::Kill => {
            ctx.log(format!("kill -9 node {node}"));
            ctx.cluster().kill_node(node);
            tokio::time::sleep(hold).await;
            ctx.log(format!("restart node {node}"));
            ctx.cluster().start_node(node);
            let healthy = wait_healthy(ctx, node, Duration::from_secs(30)).await;
            ctx.log(format!("node {node} healthy: {healthy}"));
        }
        FaultKind::Pause => {
            ctx.log(format!("SIGSTOP node {node}"));
            ctx.cluster().pause_node(node);
            tokio::time::sleep(hold).await;
            ctx.log(format!("SIGCONT node {node}"));
            ctx.cluster().resume_node(node);
        }
        FaultKind::Partition => {
            ctx.log(format!("partition node {node} from the others"));
            ctx.partitioned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(node);
            apply_partitions(ctx).await;
            tokio::time::sleep(hold).await;
            ctx.log(format!("heal the partition of node {node}"));
            ctx.partitioned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&node);
            apply_partitions(ctx).await;
        }
        FaultKind::TransferLeader | FaultKind::Split | FaultKind::Merge => {
            unreachable!("not a node fault")
        }
    }
    ctx.out_now
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&node);
}

/// The regions as a healthy node sees them.
async fn regions(ctx: &Ctx, node: u64) -> Vec<Value> {
    match admin(ctx, reqwest::Method::GET, node, "/v1/admin/regions", None).await {
        Ok((200, body)) => body["regions"].as_array().cloned().unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Moves a random region's leadership to another of its peers.
async fn transfer_leader(ctx: &Ctx, rng: &mut StdRng) {
    let Some(node) = ctx.healthy_node(rng) else {
        return;
    };
    let regions = regions(ctx, node).await;
    let Some(region) = regions.choose(rng) else {
        return;
    };
    let leader = region["leader"]["id"].as_u64();
    let peers: Vec<u64> = region["peers"]
        .as_array()
        .map(|peers| peers.iter().filter_map(|p| p["id"].as_u64()).collect())
        .unwrap_or_default();
    let candidates: Vec<u64> = peers.into_iter().filter(|p| Some(*p) != leader).collect();
    let (Some(&peer), Some(id)) = (candidates.choose(rng), region["id"].as_u64()) else {
        return;
    };
    ctx.count_fault();
    let target = ctx.healthy_node(rng).unwrap_or(node);
    let path = format!("/v1/admin/regions/{id}/transfer-leader");
    let body = json!({ "peer_id": peer });
    let result = admin(ctx, reqwest::Method::POST, target, &path, Some(body)).await;
    ctx.log(format!(
        "transfer leader of region {id} to peer {peer} (via node {target}): {}",
        brief(&result)
    ));
}

/// Splits the region holding a random key of the current or next few periods at it.
async fn split(ctx: &Ctx, rng: &mut StdRng) {
    let Some(node) = ctx.healthy_node(rng) else {
        return;
    };
    let key = match ctx.config.workload {
        Workload::Bank => account(rng.gen_range(1..ACCOUNTS)),
        _ => Ctx::key(
            ctx.epoch() + rng.gen_range(0..3),
            rng.gen_range(0..ctx.config.keys.max(1)),
        ),
    };
    // A transactional key is stored encoded, in its own range: split there.
    let key: Vec<u8> = if ctx.config.workload.is_txn() {
        tinykv::txn::keys::encode_key(key.as_bytes())
    } else {
        key.into_bytes()
    };
    let regions = regions(ctx, node).await;
    // Region boundaries are shown percent-encoded: compare them as bytes.
    let bound = |r: &Value, field: &str| -> Vec<u8> {
        percent_encoding::percent_decode_str(r[field].as_str().unwrap_or_default()).collect()
    };
    let holding = regions.iter().find(|r| {
        let (start, end) = (bound(r, "start_key"), bound(r, "end_key"));
        start.as_slice() <= key.as_slice() && (end.is_empty() || key.as_slice() < end.as_slice())
    });
    let key =
        percent_encoding::percent_encode(&key, percent_encoding::NON_ALPHANUMERIC).to_string();
    let Some(id) = holding.and_then(|r| r["id"].as_u64()) else {
        return;
    };
    ctx.count_fault();
    let target = ctx.healthy_node(rng).unwrap_or(node);
    let path = format!("/v1/admin/regions/{id}/split");
    let body = json!({ "key": key });
    let result = admin(ctx, reqwest::Method::POST, target, &path, Some(body)).await;
    ctx.log(format!(
        "split region {id} at {key} (via node {target}): {}",
        brief(&result)
    ));
}

/// Merges a random region into the region after it (the data regions only: the last one
/// borders the placement driver's meta region, which never merges).
async fn merge(ctx: &Ctx, rng: &mut StdRng) {
    let Some(node) = ctx.healthy_node(rng) else {
        return;
    };
    let regions = regions(ctx, node).await;
    let bound = |r: &Value, field: &str| r[field].as_str().unwrap_or_default().to_string();
    let pairs: Vec<(u64, u64)> = regions
        .iter()
        .filter_map(|source| {
            let end = bound(source, "end_key");
            let target = regions.iter().find(|t| bound(t, "start_key") == end)?;
            let reserved = end.is_empty() || end.to_ascii_uppercase().starts_with("%FF");
            (!reserved).then_some((source["id"].as_u64()?, target["id"].as_u64()?))
        })
        .collect();
    let Some(&(source, target)) = pairs.choose(rng) else {
        return;
    };
    ctx.count_fault();
    let via = ctx.healthy_node(rng).unwrap_or(node);
    let path = format!("/v1/admin/regions/{source}/merge");
    let body = json!({ "target": target });
    let result = admin(ctx, reqwest::Method::POST, via, &path, Some(body)).await;
    ctx.log(format!(
        "merge region {source} into {target} (via node {via}): {}",
        brief(&result)
    ));
}

/// A short text for an admin answer.
fn brief(result: &Result<(u16, Value), String>) -> String {
    match result {
        Ok((status, _)) if *status < 300 => format!("HTTP {status}"),
        Ok((status, body)) => format!("HTTP {status} {}", body["error"]["code"]),
        Err(e) => e.clone(),
    }
}

/// A nemesis task that takes nodes out, one at a time, until `deadline`.
async fn node_nemesis(ctx: Arc<Ctx>, seed: u64, deadline: Instant) {
    let kinds: Vec<FaultKind> = ctx
        .config
        .faults
        .iter()
        .copied()
        .filter(|k| k.disables_a_node())
        .collect();
    if kinds.is_empty() {
        return;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    loop {
        sleep_ms(&mut rng, 500, 2500).await;
        if Instant::now() >= deadline {
            return;
        }
        let kind = *kinds.choose(&mut rng).expect("not empty");
        disable_node(&ctx, &mut rng, kind, deadline).await;
    }
}

/// A nemesis task that moves leaders, splits and merges regions until `deadline`.
async fn region_nemesis(ctx: Arc<Ctx>, seed: u64, deadline: Instant) {
    let kinds: Vec<FaultKind> = ctx
        .config
        .faults
        .iter()
        .copied()
        .filter(|k| !k.disables_a_node())
        .collect();
    if kinds.is_empty() {
        return;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    loop {
        sleep_ms(&mut rng, 1000, 3000).await;
        if Instant::now() >= deadline {
            return;
        }
        match *kinds.choose(&mut rng).expect("not empty") {
            FaultKind::TransferLeader => transfer_leader(&ctx, &mut rng).await,
            FaultKind::Merge => merge(&ctx, &mut rng).await,
            _ => split(&ctx, &mut rng).await,
        }
    }
}

/// Brings every node back: resumed, started, healed and healthy. Returns the nodes that
/// did not come back.
async fn heal_everything(ctx: &Ctx) -> Vec<u64> {
    for node in 1..=ctx.config.nodes {
        let mut cluster = ctx.cluster();
        cluster.resume_node(node);
        if !cluster.is_running(node) {
            cluster.start_node(node);
        }
    }
    ctx.partitioned
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    let mut unhealthy = Vec::new();
    for node in 1..=ctx.config.nodes {
        if !wait_healthy(ctx, node, Duration::from_secs(30)).await {
            unhealthy.push(node);
        }
    }
    apply_partitions(ctx).await;
    ctx.log("healed everything");
    unhealthy
}

/// Reads `key` on every node, one after the other, each until one attempt succeeds (or
/// `deadline`); returns the nodes where no attempt did.
async fn final_reads(ctx: &Ctx, key: String, deadline: Instant) -> Vec<(String, u64)> {
    let mut unread = Vec::new();
    for node in 1..=ctx.config.nodes {
        loop {
            let read = if ctx.config.workload == Workload::Register {
                match workloads::register_read(ctx, 0, node, &key).await {
                    Some((value, _)) => Classified::Read(value),
                    None => Classified::Fail("no answer".into()),
                }
            } else {
                execute(ctx, 0, node, &key, Command::Get(None)).await
            };
            match read {
                Classified::Read(_) => break,
                _ if Instant::now() >= deadline => {
                    unread.push((key.clone(), node));
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    unread
}

/// The bank's last snapshot on every node, each retried until one is taken (or
/// `deadline`): what they find wrong.
async fn final_bank_snapshots(ctx: &Ctx, deadline: Instant) -> Vec<String> {
    let mut problems = Vec::new();
    for node in 1..=ctx.config.nodes {
        loop {
            match workloads::bank_snapshot(ctx, node).await {
                Ok(Some(_)) => break,
                Err(problem) => {
                    problems.push(format!("final {problem}"));
                    break;
                }
                Ok(None) if Instant::now() >= deadline => {
                    problems.push(format!("no final snapshot of the bank on node {node}"));
                    break;
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    problems
}

/// Runs one chaos test; see the module documentation. Prints the nemesis' actions and the
/// verdict line to stdout.
pub async fn run(config: ChaosConfig) -> ChaosOutcome {
    assert!(config.nodes >= 1, "at least one node");
    let root_line = if config.auth {
        format!("root_token = \"{CHAOS_ROOT_TOKEN}\"\n")
    } else {
        String::new()
    };
    let cluster = if config.netns {
        assert!(!config.tls, "chaos on simulated hosts runs without TLS");
        // The cluster opens `[security]` first: the root token line goes right after it.
        let extra = format!("{root_line}{NODE_CONFIG}");
        ProcessCluster::start_in_namespaces(config.nodes, &extra)
            .unwrap_or_else(|why| panic!("cannot make the simulated hosts: {why}"))
    } else if config.tls {
        ProcessCluster::start_secure_with(config.nodes, false, &root_line, NODE_CONFIG)
    } else if config.auth {
        ProcessCluster::start_with_config(
            config.nodes,
            &format!("{NODE_CONFIG}\n[security]\n{root_line}"),
        )
    } else {
        ProcessCluster::start_with_config(config.nodes, NODE_CONFIG)
    };
    let urls = (1..=config.nodes).map(|id| cluster.url(id)).collect();
    let http = cluster
        .client_builder()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(1))
        .build()
        .expect("HTTP client");
    let ctx = Arc::new(Ctx {
        config: config.clone(),
        http,
        urls,
        recorder: Recorder::new(),
        cluster: Mutex::new(cluster),
        out_now: Mutex::new(BTreeSet::new()),
        partitioned: Mutex::new(BTreeSet::new()),
        timeline: Mutex::new(Vec::new()),
        faults: Mutex::new(0),
        client_token: std::sync::OnceLock::new(),
        client_retried_ok: Default::default(),
        tallies: Mutex::new(BTreeMap::new()),
        workload_problems: Mutex::new(Vec::new()),
    });
    let mut problems = Vec::new();
    for node in 1..=config.nodes {
        if !wait_healthy(&ctx, node, Duration::from_secs(60)).await {
            problems.push(format!("node {node} never became healthy at start"));
        }
    }
    if config.auth {
        if let Err(why) = switch_auth_on(&ctx).await {
            problems.push(format!("cannot switch authentication on: {why}"));
        }
    }
    ctx.log(format!(
        "cluster of {} nodes up; {} clients for {:?}; faults: {}",
        config.nodes,
        config.clients,
        config.duration,
        config
            .faults
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(",")
    ));

    if config.workload == Workload::Bank {
        if let Err(why) =
            workloads::open_accounts(&ctx, Instant::now() + Duration::from_secs(60)).await
        {
            problems.push(format!("cannot open the bank's accounts: {why}"));
        }
    }
    let deadline = Instant::now() + config.duration;
    let mut tasks = Vec::new();
    for client in 1..=config.clients as u64 {
        tasks.push(match config.workload {
            Workload::Kv => tokio::spawn(client_loop(ctx.clone(), client, deadline)),
            Workload::Register => {
                tokio::spawn(workloads::register_loop(ctx.clone(), client, deadline))
            }
            Workload::Bank => tokio::spawn(workloads::bank_loop(ctx.clone(), client, deadline)),
        });
    }
    if config.workload == Workload::Bank {
        tasks.push(tokio::spawn(workloads::bank_reader(ctx.clone(), deadline)));
    }
    let minority = (config.nodes - 1) / 2;
    for i in 0..minority {
        let seed = config.seed.wrapping_mul(7_919).wrapping_add(i);
        tasks.push(tokio::spawn(node_nemesis(ctx.clone(), seed, deadline)));
    }
    let seed = config.seed.wrapping_mul(104_729).wrapping_add(1);
    tasks.push(tokio::spawn(region_nemesis(ctx.clone(), seed, deadline)));
    for task in tasks {
        if let Err(e) = task.await {
            problems.push(format!("a client or nemesis task failed: {e}"));
        }
    }
    ctx.log("clients and nemesis stopped");

    for node in heal_everything(&ctx).await {
        problems.push(format!("node {node} did not become healthy after healing"));
    }
    let keys: BTreeSet<String> = ctx
        .recorder
        .history()
        .ops
        .into_iter()
        .map(|op| op.key)
        .collect();
    ctx.log(format!("final reads of {} keys on every node", keys.len()));
    let reads_deadline = Instant::now() + Duration::from_secs(60);
    let unread: Vec<(String, u64)> = futures::stream::iter(keys)
        .map(|key| final_reads(&ctx, key, reads_deadline))
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .flatten()
        .collect();
    for (key, node) in unread {
        problems.push(format!("no final read of {key} on node {node} succeeded"));
    }
    if config.workload == Workload::Bank {
        problems.extend(final_bank_snapshots(&ctx, reads_deadline).await);
    }
    problems.extend(
        ctx.workload_problems
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..),
    );
    ctx.log("final reads done");

    let history = ctx.recorder.history();
    let started = Instant::now();
    let report = linearizability::check(
        &history,
        CheckConfig {
            max_states: config.max_states,
        },
    );
    ctx.log(format!(
        "checked {} operations on {} keys in {:?}",
        report.checked_ops,
        report.keys,
        started.elapsed()
    ));
    let verdict = match report.verdict() {
        Verdict::Pass if !problems.is_empty() => Verdict::Fail,
        verdict => verdict,
    };
    let faults = *ctx.faults.lock().unwrap_or_else(|p| p.into_inner());
    let mut node_retried_ok = 0;
    for node in 1..=config.nodes {
        node_retried_ok += writes_retried_to_success(&ctx, node).await;
    }
    let client_retried_ok = ctx
        .client_retried_ok
        .load(std::sync::atomic::Ordering::Relaxed);
    let line = format!(
        "chaos: {} seed={} ops={} ok={} fail={} unknown={} node_retried_ok={} client_retried_ok={} faults={}",
        verdict.name(),
        config.seed,
        history.ops.len(),
        history.count(Outcome::Ok),
        history.count(Outcome::Fail),
        history.count(Outcome::Info),
        node_retried_ok,
        client_retried_ok,
        faults
    );
    let mut line = line;
    for (what, count) in ctx.tallies.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let _ = write!(line, " {what}={count}");
    }
    let outcome = ChaosOutcome {
        verdict,
        line,
        history,
        report,
        faults,
        problems,
    };
    let summary = summary(&ctx, &outcome);
    print!("{summary}");
    if let Some(out) = &config.out {
        if let Err(e) = write_artifacts(&ctx, &outcome, &summary, out) {
            eprintln!("writing artifacts to {}: {e}", out.display());
        }
    }
    outcome
}

/// How many writes node `node` retried to success since it last started
/// (`tinykv_requests_retried_total`); 0 if it does not answer.
async fn writes_retried_to_success(ctx: &Ctx, node: u64) -> u64 {
    let Ok(response) = ctx
        .http
        .get(format!("{}/metrics", ctx.url(node)))
        .send()
        .await
    else {
        return 0;
    };
    let text = response.text().await.unwrap_or_default();
    ["op=\"put\"", "op=\"delete\""]
        .into_iter()
        .map(|op| {
            crate::rest::sum_samples(
                &text,
                "tinykv_requests_retried_total",
                &[op, "result=\"succeeded\""],
            )
        })
        .sum::<f64>() as u64
}

/// The timeline, the problems, the failing keys' diagrams and the verdict line.
fn summary(ctx: &Ctx, outcome: &ChaosOutcome) -> String {
    let mut text = timeline(ctx);
    if let Some((key, (ops, info))) = key_sizes(&outcome.history)
        .into_iter()
        .max_by_key(|(_, (ops, _))| *ops)
    {
        let _ = writeln!(
            text,
            "largest key history: {key} with {ops} operations ({info} indeterminate)"
        );
    }
    for problem in &outcome.problems {
        let _ = writeln!(text, "problem: {problem}");
    }
    for (key, states) in &outcome.report.unknown {
        let _ = writeln!(
            text,
            "unknown: the search on {key:?} gave up after {states} states"
        );
    }
    for failure in &outcome.report.failures {
        let _ = writeln!(text, "{}", failure.diagram);
    }
    let _ = writeln!(text, "{}", outcome.line);
    text
}

/// The nemesis' actions, one per line, on the history's clock.
fn timeline(ctx: &Ctx) -> String {
    let mut text = String::new();
    for (at, what) in ctx
        .timeline
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        let _ = writeln!(text, "[{:>9.3}s] {what}", *at as f64 / 1e9);
    }
    text
}

/// Writes the artifacts described in the module documentation into `out`.
fn write_artifacts(
    ctx: &Ctx,
    outcome: &ChaosOutcome,
    summary: &str,
    out: &std::path::Path,
) -> std::io::Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("history.jsonl"), outcome.history.to_jsonl())?;
    std::fs::write(out.join("faults.log"), timeline(ctx))?;
    std::fs::write(out.join("verdict.txt"), summary)?;
    if outcome.verdict != Verdict::Pass {
        for failure in &outcome.report.failures {
            let name: String = failure
                .key
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            std::fs::write(out.join(format!("fail-{name}.txt")), &failure.diagram)?;
        }
        let cluster = ctx.cluster();
        for node in 1..=ctx.config.nodes {
            std::fs::write(out.join(format!("node{node}.log")), cluster.log(node))?;
        }
    }
    Ok(())
}

/// The per-key operation counts of a history, for a quick look at how big each key's
/// search was: key → (operations, indeterminate ones).
pub fn key_sizes(history: &History) -> BTreeMap<String, (usize, usize)> {
    let mut sizes = BTreeMap::new();
    for op in &history.ops {
        let entry: &mut (usize, usize) = sizes.entry(op.key.clone()).or_default();
        entry.0 += 1;
        if op.outcome == Outcome::Info {
            entry.1 += 1;
        }
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_by_whether_the_operation_may_have_run() {
        let error = |code: &str| json!({ "error": { "code": code, "message": "x" } }).to_string();
        assert_eq!(classify(true, 200, b"{\"ok\":true}"), Classified::Written);
        assert_eq!(
            classify(false, 200, b"v1"),
            Classified::Read(Some("v1".into()))
        );
        assert_eq!(
            classify(false, 404, error("not_found").as_bytes()),
            Classified::Read(None)
        );
        assert!(matches!(
            classify(false, 404, error("route_not_found").as_bytes()),
            Classified::Fail(_)
        ));
        assert!(matches!(
            classify(false, 504, error("timeout").as_bytes()),
            Classified::Fail(_)
        ));
        for (status, code) in [(400, "empty_key"), (413, "too_large"), (503, "unavailable")] {
            assert!(
                matches!(
                    classify(true, status, error(code).as_bytes()),
                    Classified::Fail(_)
                ),
                "{status} {code}"
            );
        }
        for (status, code) in [(504, "timeout"), (500, "internal"), (502, "")] {
            assert!(
                matches!(
                    classify(true, status, error(code).as_bytes()),
                    Classified::Info(_)
                ),
                "{status} {code}"
            );
        }
    }

    #[test]
    fn fault_lists_parse() {
        assert_eq!(
            FaultKind::parse_list("all").unwrap(),
            FaultKind::ALL.to_vec()
        );
        assert_eq!(FaultKind::parse_list("none").unwrap(), vec![]);
        assert_eq!(
            FaultKind::parse_list("split, kill,kill").unwrap(),
            vec![FaultKind::Kill, FaultKind::Split]
        );
        assert!(FaultKind::parse_list("kill,flood").is_err());
    }

    #[test]
    fn keys_rotate_by_period() {
        assert_eq!(Ctx::key(7, 2), "chaos-e00007-k2");
        assert!(Ctx::key(9, 0) < Ctx::key(10, 0), "periods sort in order");
    }
}
