//! `tinykv-bench`: a load generator for TinyKV-rs and, for comparison, etcd.
//!
//! ```text
//! tinykv-bench [--target tinykv|etcd] [--endpoints URL,URL,...] [--clients 64]
//!              [--duration 30s | --ops N] [--rate OPS_PER_SEC] [--workload a|b|c|write]
//!              [--read-ratio R] [--keys 10000] [--value-size 128] [--preload]
//!              [--warmup 2s] [--json PATH] [--seed 42] [--threads 2]
//!              [--cacert FILE [--cert FILE --key FILE]] [--token TOKEN]
//! tinykv-bench compare OURS.json [THEIRS.json] [--title TEXT]
//! ```
//!
//! A run optionally writes every key once (`--preload`), runs the workload unmeasured for
//! `--warmup`, then measures it, closed loop or at a fixed rate (see [`runner`]). It prints
//! a table per operation kind and overall (count, errors, throughput, latency p50 to max),
//! the first distinct error messages, and with `--json` writes the same as JSON
//! ([`report::Report`]). Errors are counted, not fatal; the exit status is 1 only when no
//! operation at all succeeded (or the options are wrong), so that a script notices a dead
//! cluster. With `--cacert` the endpoints are `https://` and the servers' certificates are
//! checked against that CA (`--cert`/`--key`: a client certificate, for a cluster that
//! requires one; see [`cli`]). `--token` sends a TinyKV-rs API token with every request,
//! for a cluster with authentication on. `compare` turns two such JSON files into the
//! markdown table that `make bench` puts in `docs/benchmarks.md`.
//!
//! Modules: [`cli`] (options), [`workload`] (mix, keys, values), [`target`] (the HTTP
//! requests of each system), [`http1`] (the lean HTTP/1.1 client they go through), [`runner`] (preload, closed loop, fixed rate) and [`report`]
//! (histograms, tables, JSON).

mod cli;
mod http1;
mod report;
mod runner;
mod target;
mod workload;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use crate::cli::{Cli, Command, CompareOptions, Plan, RunOptions, Stop};
use crate::report::{compare_markdown, render_table, summaries, Report, SlowSample};
use crate::runner::Shared;
use crate::target::Target;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Compare(options)) => compare(&options),
        Some(Command::Run(options)) => run_on_runtime(&options),
        None => run_on_runtime(&cli.run),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn describe(plan: &Plan) -> String {
    let mode = match plan.rate {
        Some(rate) => format!(
            "fixed rate {rate} ops/s (at most {} in flight)",
            plan.clients
        ),
        None => format!("closed loop, {} clients", plan.clients),
    };
    let secs = |d: std::time::Duration| format!("{}s", d.as_secs_f64());
    let stop = match plan.stop {
        Stop::Duration(d) => secs(d),
        Stop::Ops(n) => format!("{n} ops"),
    };
    format!(
        "{} at {}: {mode}; workload {} ({:.0}% reads), {} keys, {} B values; warm-up {}, then {stop}",
        plan.label,
        plan.endpoints.join(","),
        plan.workload,
        plan.read_ratio * 100.0,
        plan.keys,
        plan.value_size,
        secs(plan.warmup),
    )
}

/// Runs a benchmark on a runtime of `--threads` threads (one: a single-threaded runtime,
/// with no hand-over between threads at all).
fn run_on_runtime(options: &RunOptions) -> Result<ExitCode, String> {
    let mut builder = if options.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(usize::from(options.threads));
        builder
    };
    let runtime = builder
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(run(options))
}

async fn run(options: &RunOptions) -> Result<ExitCode, String> {
    let plan = options.validate()?;
    eprintln!("tinykv-bench: {}", describe(&plan));
    let target = Target::new(
        plan.target,
        &plan.endpoints,
        plan.timeout,
        plan.tls.as_ref(),
        plan.authorization.clone(),
    )?;
    let shared = Arc::new(Shared::new(target, &plan));

    if plan.preload {
        let stats = runner::preload(&shared, plan.clients, plan.progress).await;
        let secs = stats.elapsed.as_secs_f64();
        eprintln!(
            "preload: {} keys written in {secs:.1}s ({:.0} keys/s), {} failed",
            stats.written,
            stats.written as f64 / secs.max(1e-9),
            stats.failed
        );
        if let Some(e) = stats.first_error {
            eprintln!("preload: first error: {e}");
        }
    }

    let outcome = runner::run(Arc::clone(&shared), &plan).await;
    let (error_samples, other_errors) = outcome.recorder.errors().samples();
    let report = Report {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        target: plan.target,
        label: plan.label.clone(),
        endpoints: plan.endpoints.clone(),
        workload: plan.workload.clone(),
        read_ratio: plan.read_ratio,
        clients: plan.clients,
        rate: plan.rate,
        keys: plan.keys,
        value_size: plan.value_size,
        preload: plan.preload,
        warmup_secs: plan.warmup.as_secs_f64(),
        duration_secs: match plan.stop {
            Stop::Duration(d) => Some(d.as_secs_f64()),
            Stop::Ops(_) => None,
        },
        ops: match plan.stop {
            Stop::Ops(n) => Some(n),
            Stop::Duration(_) => None,
        },
        elapsed_secs: outcome.elapsed.as_secs_f64(),
        seed: plan.seed,
        results: summaries(&outcome.recorder, outcome.elapsed),
        error_samples,
        other_errors,
        longest_gap_ms: outcome.longest_gap.as_secs_f64() * 1000.0,
        slowest: outcome
            .recorder
            .slowest()
            .iter()
            .map(SlowSample::of)
            .collect(),
    };

    print!("{}", render_table(&report));
    for sample in &report.error_samples {
        eprintln!("error ×{}: {}", sample.count, sample.message);
    }
    if report.other_errors > 0 {
        eprintln!("… and {} errors with other messages", report.other_errors);
    }
    let all = report.result("all").expect("summaries end with all");
    if let Some(rate) = plan.rate {
        let achieved = (all.count + all.errors) as f64 / report.elapsed_secs.max(1e-9);
        if achieved < 0.95 * rate {
            eprintln!(
                "warning: achieved {achieved:.0} ops/s of the {rate} asked for: the system (or \
                 --clients {}) cannot keep up, and latencies include the wait",
                plan.clients
            );
        }
    }
    if let Some(path) = &plan.json {
        let json = serde_json::to_vec_pretty(&report).expect("a report serializes");
        std::fs::write(path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("results written to {}", path.display());
    }
    if all.count == 0 {
        eprintln!("error: no operation succeeded");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn compare(options: &CompareOptions) -> Result<ExitCode, String> {
    let read = |path: &std::path::Path| -> Result<Report, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not a tinykv-bench result: {e}", path.display()))
    };
    let ours = read(&options.ours)?;
    let theirs = options.theirs.as_deref().map(read).transpose()?;
    print!(
        "{}",
        compare_markdown(&ours, theirs.as_ref(), options.title.as_deref())
    );
    Ok(ExitCode::SUCCESS)
}
