//! A short seeded chaos run against three real processes: concurrent REST clients on
//! rotating keys while a nemesis kills, pauses and partitions nodes, moves leaders and
//! splits regions; the recorded history, final reads of every key on every node included,
//! must be linearizable. `CHAOS_SEED` picks another seed, `CHAOS_OUT` keeps the artifacts
//! (history.jsonl, faults.log, diagrams) in a directory of your choice. A second, shorter
//! run does the same over TLS (HTTPS clients, mutual TLS between the nodes) with
//! authentication on (clients with a readwrite token), where every kill, pause and
//! partition also breaks TLS sessions that must be opened again, and a restarted node
//! must enforce the tokens from its first request.

use std::path::PathBuf;
use std::time::Duration;

use tinykv_integration::chaos::{self, ChaosConfig, FaultKind, Verdict};
use tinykv_integration::linearizability::{self, CheckConfig, Command, History, Outcome};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_seeded_chaos_run_is_linearizable() {
    seeded_run(false, Duration::from_secs(25)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_seeded_chaos_run_over_tls_with_tokens_is_linearizable() {
    seeded_run(true, Duration::from_secs(15)).await;
}

/// The run's seed (`CHAOS_SEED`, default 7) and artifact directory (`CHAOS_OUT`, else
/// a temp dir named after `run`).
fn seed_and_out(run: &str) -> (u64, PathBuf) {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let out = std::env::var("CHAOS_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            std::env::temp_dir().join(format!(
                "tinykv-chaos-{run}-seed{seed}-{}",
                std::process::id()
            ))
        });
    (seed, out)
}

/// Runs chaos for `duration` (over TLS with authentication on if `secure`) and checks
/// the outcome.
async fn seeded_run(secure: bool, duration: Duration) {
    let tls = secure;
    let (seed, out) = seed_and_out(if tls { "tls" } else { "kv" });
    let config = ChaosConfig {
        nodes: 3,
        duration,
        clients: 8,
        keys: 4,
        key_rotation: Duration::from_secs(2),
        seed,
        faults: FaultKind::ALL.to_vec(),
        out: Some(out.clone()),
        max_states: 2_000_000,
        tls,
        auth: secure,
        workload: chaos::Workload::Kv,
        netns: false,
    };
    let outcome = chaos::run(config).await;
    println!("artifacts in {}", out.display());
    assert_passed(&outcome, &out);
    assert!(
        outcome.history.count(Outcome::Ok) > 100,
        "too few operations succeeded: {}",
        outcome.line
    );
    // Writes carry an Idempotency-Key and are retried while their outcome is unknown, on
    // the node and by the client: with a majority up at all times, almost none stays
    // unknown (0 in the runs so far).
    let writes = outcome
        .history
        .ops
        .iter()
        .filter(|op| op.command.is_write())
        .count();
    let unknown = outcome.history.count(Outcome::Info);
    assert!(
        unknown * 100 <= writes,
        "{unknown} of {writes} writes ended unknown: {}",
        outcome.line
    );
    the_checker_would_catch_a_stale_final_read(&outcome.history);
    if std::env::var("CHAOS_OUT").is_err() {
        let _ = std::fs::remove_dir_all(&out);
    }
}

/// The run passed: every key checked (keep per-key histories small if the checker gave
/// up), nothing wrong, and the nemesis did something.
fn assert_passed(outcome: &chaos::ChaosOutcome, out: &std::path::Path) {
    assert!(
        outcome.report.unknown.is_empty(),
        "the checker gave up on {:?}: keep per-key histories smaller",
        outcome.report.unknown
    );
    assert_eq!(
        outcome.verdict,
        Verdict::Pass,
        "{}\nproblems: {:?}\nartifacts in {}",
        outcome.line,
        outcome.problems,
        out.display()
    );
    assert!(outcome.faults > 0, "the nemesis injected nothing");
}

/// A chaos run of a transactional workload, seeded by `CHAOS_SEED` (default 7), for
/// `duration`; artifacts under `CHAOS_OUT` if set.
async fn transactional_run(workload: chaos::Workload, duration: Duration) -> chaos::ChaosOutcome {
    let (seed, out) = seed_and_out(workload.name());
    let config = ChaosConfig {
        duration,
        seed,
        out: Some(out.clone()),
        max_states: 2_000_000,
        workload,
        ..ChaosConfig::default()
    };
    let outcome = chaos::run(config).await;
    assert_passed(&outcome, &out);
    if std::env::var("CHAOS_OUT").is_err() {
        let _ = std::fs::remove_dir_all(&out);
    }
    outcome
}

/// Compare-and-sets and reads at the latest timestamp of transactional keys, under
/// kills, pauses, partitions, leader moves, splits and merges: linearizable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_chaos_run_of_compare_and_sets_is_linearizable() {
    let outcome = transactional_run(chaos::Workload::Register, Duration::from_secs(20)).await;
    let count = |pick: fn(&Command) -> bool| {
        outcome
            .history
            .ops
            .iter()
            .filter(|op| op.outcome == Outcome::Ok && pick(&op.command))
            .count()
    };
    let won = count(|c| matches!(c, Command::Cas { .. }));
    let lost = count(|c| matches!(c, Command::CasFailed { .. }));
    assert!(
        won > 50 && lost > 0,
        "{won} compare-and-sets won, {lost} lost: {}",
        outcome.line
    );
}

/// Transfers in transactions under the same faults: every snapshot of the balances, and
/// the last one on every node, holds the opening total.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_chaos_run_of_bank_transfers_keeps_the_total() {
    let outcome = transactional_run(chaos::Workload::Bank, Duration::from_secs(20)).await;
    let tally = |name: &str| {
        outcome
            .line
            .split(' ')
            .find_map(|field| field.strip_prefix(&format!("{name}=")))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(tally("bank_transfers") > 20, "{}", outcome.line);
    assert!(tally("bank_snapshots") > 20, "{}", outcome.line);
}

/// The same history with one final read turned stale (it returns a value that an
/// acknowledged write had already overwritten when it was issued) is not linearizable:
/// the final reads are really checked.
fn the_checker_would_catch_a_stale_final_read(history: &History) {
    let put_of = |value: &str| {
        history
            .ops
            .iter()
            .find(|op| op.outcome == Outcome::Ok && op.command == Command::Put(value.to_string()))
    };
    let stale = history.ops.iter().rev().find_map(|read| {
        let Command::Get(Some(value)) = &read.command else {
            return None;
        };
        if read.client != 0 || read.outcome != Outcome::Ok {
            return None;
        }
        let latest = put_of(value)?;
        let overwritten = history.ops.iter().find(|op| {
            op.key == read.key
                && op.outcome == Outcome::Ok
                && matches!(op.command, Command::Put(_))
                && op.complete.is_some_and(|t| t < latest.invoke)
        })?;
        Some((read.id, overwritten.command.clone()))
    });
    let Some((id, Command::Put(old))) = stale else {
        println!("no final read to make stale in this history");
        return;
    };
    let mut corrupted = history.clone();
    let read = corrupted.ops.iter_mut().find(|op| op.id == id).unwrap();
    read.command = Command::Get(Some(old));
    let report = linearizability::check(&corrupted, CheckConfig::default());
    assert_eq!(report.verdict(), Verdict::Fail, "a stale final read passed");
    println!(
        "as expected, a stale final read is caught:\n{}",
        report.failures[0].diagram
    );
}
