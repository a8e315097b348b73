//! `tinykv-chaos`: a chaos run against real `tinykv-server` processes, checked for
//! linearizability.
//!
//! Starts a cluster of `--nodes` processes on loopback (fault injection on), runs
//! `--clients` concurrent REST clients of the `--workload` (kv, register or bank; see
//! `tinykv_integration::chaos::Workload`) on a small rotating key set for `--duration` while a
//! nemesis injects the `--faults` (kill -9 and restart, SIGSTOP/SIGCONT, partitions
//! through the fault endpoint, leader transfers, splits), heals everything, reads every key
//! on every node and checks the whole history key by key; see
//! `tinykv_integration::chaos`. Prints the nemesis' timeline and one verdict line,
//!
//! ```text
//! chaos: PASS seed=7 ops=27734 ok=27734 fail=0 unknown=0 node_retried_ok=49 client_retried_ok=3527 faults=18
//! ```
//!
//! writes `history.jsonl`, `faults.log`, `verdict.txt` (and on failure the failing keys'
//! diagrams and the nodes' logs) to `--out`, and exits 0 on PASS, 1 on FAIL, 2 on
//! UNKNOWN. The server binary is taken from `--server-bin`, `$TINYKV_SERVER_BIN`, or next
//! to this executable.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use tinykv_integration::chaos::{self, parse_duration, ChaosConfig, FaultKind, Verdict};

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "tinykv-chaos",
    about = "Chaos against real tinykv-server processes, checked for linearizability"
)]
struct Args {
    /// Nodes in the cluster (3 or 5).
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// How long clients and the nemesis run (e.g. 60s, 5m).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Keys in use at any time; the set rotates every --key-rotation.
    #[arg(long, default_value_t = 4)]
    keys: usize,
    /// How often the key set is replaced by a fresh one.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    key_rotation: Duration,
    /// Seed of every random choice (default: from the clock, printed in the verdict).
    #[arg(long)]
    seed: Option<u64>,
    /// Faults to inject: a comma-separated list of kill, pause, partition,
    /// transfer-leader, split, merge; or all, or none.
    #[arg(long, default_value = "all")]
    faults: String,
    /// Directory for the artifacts (history.jsonl, faults.log, verdict.txt, diagrams).
    #[arg(long, default_value = "chaos-out")]
    out: PathBuf,
    /// The tinykv-server binary to run.
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Bound of the checker's search, in states per key.
    #[arg(long, default_value_t = 1_000_000)]
    max_states: usize,
    /// Run the cluster with TLS everywhere (a CA and certificates made for the run).
    #[arg(long)]
    tls: bool,
    /// Switch authentication on first: clients use a readwrite token, the nemesis the
    /// root token.
    #[arg(long)]
    auth: bool,
    /// What the clients do: kv (raw gets, puts, deletes), register (reads at the latest
    /// timestamp and compare-and-sets of transactional keys), or bank (transfers in
    /// transactions, snapshots of every balance whose total must hold).
    #[arg(long, default_value = "kv")]
    workload: chaos::Workload,
    /// Run each node in a network namespace of its own, reached by host name, and make
    /// partitions with the kernel's routes (needs root; not with --tls).
    #[arg(long, conflicts_with = "tls")]
    netns: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let faults = match FaultKind::parse_list(&args.faults) {
        Ok(faults) => faults,
        Err(e) => {
            eprintln!("--faults: {e}");
            return ExitCode::from(64);
        }
    };
    if args.nodes == 0 || args.clients == 0 || args.keys == 0 {
        eprintln!("--nodes, --clients and --keys must be at least 1");
        return ExitCode::from(64);
    }
    if let Some(binary) = &args.server_bin {
        // Before any thread exists: ProcessCluster reads it.
        std::env::set_var("TINYKV_SERVER_BIN", binary);
    }
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64 % 1_000_000)
    });
    let config = ChaosConfig {
        nodes: args.nodes,
        duration: args.duration,
        clients: args.clients,
        keys: args.keys,
        key_rotation: args.key_rotation,
        seed,
        faults,
        out: Some(args.out.clone()),
        max_states: args.max_states,
        tls: args.tls,
        auth: args.auth,
        workload: args.workload,
        netns: args.netns,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcome = runtime.block_on(chaos::run(config));
    println!("artifacts in {}", args.out.display());
    match outcome.verdict {
        Verdict::Pass => ExitCode::SUCCESS,
        Verdict::Fail => ExitCode::from(1),
        Verdict::Unknown => ExitCode::from(2),
    }
}
