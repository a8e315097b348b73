//! Driving the load: preload, warm-up, then the measured run, closed loop or fixed rate.
//!
//! Client `i` of `N` always talks to endpoint `i mod len(endpoints)`, has its own RNG
//! ([`client_rng`]) and its own [`Recorder`]; the recorders are merged at the end.
//!
//! - **Closed loop** (no `--rate`): each client sends its next request as soon as the
//!   previous one is answered. Latency is the request's own time. The warm-up is a time
//!   window at the start whose operations are not recorded; measuring then stops after
//!   `--duration` (no operation starts after it) or after `--ops` operations (claimed from
//!   a shared counter before they start).
//! - **Fixed rate** (`--rate R`): operation `k` is scheduled at `start + k/R`, and client
//!   `i` runs operations `i, i+N, i+2N, …`. A client waits for its operation's scheduled
//!   time if it is early and starts at once if it is late; latency is measured from the
//!   *scheduled* time, so when the system falls behind, the time operations spent waiting
//!   for a free client counts too (no coordinated omission). The first `warmup·R`
//!   operations are not recorded; then `duration·R` (or `--ops`) are.
//!
//! A request that got no answer at all (connection refused or reset: a node killed, say)
//! is sent again to the next endpoint, and the client stays there, as a client of a
//! replicated store does, until it succeeds, fails with an answer, or `--timeout` passes;
//! its latency includes that. A TinyKV-rs write carries an `Idempotency-Key`, so its copies
//! apply once; an etcd put has none and may apply twice, which changes nothing here (the
//! same value to the same key).
//!
//! Throughput is successful measured operations divided by the measured time, from the
//! start of measuring to the last measured completion. A progress bar on stderr (hidden
//! when stderr is not a terminal, or with `--quiet`) shows the phase, the operations and
//! errors so far, and the recent rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::{Plan, Stop};
use crate::report::Recorder;
use crate::target::{ReadOutcome, Session, Target, NO_ANSWER};
use crate::workload::{client_rng, KeySpace, OpKind, OpMix, ValuePool};

/// Pause before a request is sent again to the next endpoint.
const FAILOVER_PAUSE: Duration = Duration::from_millis(10);

/// Attempts per key during the preload.
const PRELOAD_ATTEMPTS: usize = 3;

/// What every client shares.
#[derive(Debug)]
pub struct Shared {
    /// The system's client.
    pub target: Target,
    /// Base URLs.
    pub endpoints: Vec<String>,
    /// Read/write mix.
    pub mix: OpMix,
    /// Keys.
    pub keys: KeySpace,
    /// Values.
    pub values: ValuePool,
    /// Random seed of the run.
    pub seed: u64,
    /// How long one operation may keep failing over to other endpoints.
    pub failover_budget: Duration,
    counters: Counters,
    /// Numbers the writes' idempotency keys.
    writes: AtomicU64,
    /// Drawn afresh for every run and part of every idempotency key: a run repeats the
    /// keys and ids of an earlier run with the same seed, and must not find its
    /// idempotency keys used (422) for different values by that run.
    run_nonce: u32,
}

/// Live counts for the progress bar.
#[derive(Debug, Default)]
struct Counters {
    /// Every completed operation, warm-up included.
    done: AtomicU64,
    /// Measured completed operations.
    measured: AtomicU64,
    /// Failed operations, warm-up included.
    errors: AtomicU64,
    /// Operations claimed by closed-loop clients in `--ops` mode.
    claimed: AtomicU64,
}

impl Shared {
    /// Shared state for a run of `plan` against `target`.
    pub fn new(target: Target, plan: &Plan) -> Shared {
        Shared {
            target,
            endpoints: plan.endpoints.clone(),
            mix: if plan.transfers {
                OpMix::transfers()
            } else {
                OpMix::new(plan.read_ratio)
            },
            keys: KeySpace::new(&plan.key_prefix, plan.keys),
            values: ValuePool::new(plan.value_size, plan.seed),
            seed: plan.seed,
            failover_budget: plan.timeout,
            counters: Counters::default(),
            writes: AtomicU64::new(0),
            run_nonce: rand::random(),
        }
    }

    /// Runs one random operation through endpoint `*endpoint` (an index, modulo the
    /// endpoints), moving it on to the next endpoint while requests get no answer; returns
    /// the operation's kind and outcome (`Ok(true)` for a read of an absent key).
    async fn random_op(
        &self,
        session: &mut Session,
        endpoint: &mut usize,
        rng: &mut rand::rngs::StdRng,
    ) -> (OpKind, Result<bool, String>) {
        let op = self.mix.next(rng);
        let key = self.keys.random_key(rng);
        let other = (op == OpKind::Transfer).then(|| loop {
            let other = self.keys.random_key(rng);
            if other != key || self.keys.len() == 1 {
                break other;
            }
        });
        let write = (op == OpKind::Write).then(|| {
            let id = self.writes.fetch_add(1, Ordering::Relaxed);
            (
                self.values.value(rng),
                format!("bench-{}-{:08x}-{id}", self.seed, self.run_nonce),
            )
        });
        let started = Instant::now();
        let result = loop {
            let at = *endpoint;
            let result = match (&write, &other) {
                // A transfer that lost a race to another counts as a miss.
                (_, Some(other)) => self
                    .target
                    .transfer(session, at, &key, other)
                    .await
                    .map(|lost_races| lost_races > 0),
                (None, None) => self
                    .target
                    .get(session, at, &key)
                    .await
                    .map(|found| found == ReadOutcome::Missing),
                (Some((value, idempotency_key)), None) => self
                    .target
                    .put(session, at, &key, value, Some(idempotency_key))
                    .await
                    .map(|_| false),
            };
            match &result {
                Err(message)
                    if message.starts_with(NO_ANSWER)
                        && self.endpoints.len() > 1
                        && started.elapsed() < self.failover_budget =>
                {
                    *endpoint += 1;
                    tokio::time::sleep(FAILOVER_PAUSE).await;
                }
                _ => break result,
            }
        };
        self.counters.done.fetch_add(1, Ordering::Relaxed);
        if result.is_err() {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        (op, result)
    }
}

/// The merged measurements of a run.
#[derive(Debug)]
pub struct Outcome {
    /// Everything recorded.
    pub recorder: Recorder,
    /// Measured time.
    pub elapsed: Duration,
    /// The longest time in the measured window in which no operation succeeded.
    pub longest_gap: Duration,
}

/// How the preload went.
#[derive(Debug)]
pub struct PreloadStats {
    /// Keys written.
    pub written: u64,
    /// Keys that failed every attempt.
    pub failed: u64,
    /// Time taken.
    pub elapsed: Duration,
    /// The last error of the first key that failed, if any did.
    pub first_error: Option<String>,
}

/// Writes every key once with `clients` concurrent clients (retrying a failed key up to
/// [`PRELOAD_ATTEMPTS`] times), so that reads find their key.
pub async fn preload(shared: &Arc<Shared>, clients: usize, progress: bool) -> PreloadStats {
    let started = Instant::now();
    let total = shared.keys.len();
    let bar = progress_bar(progress, total, "preload {bar:30} {pos}/{len} keys {msg}");
    let tasks: Vec<_> = (0..clients.min(total as usize))
        .map(|client| {
            let shared = Arc::clone(shared);
            let bar = bar.clone();
            tokio::spawn(async move {
                let mut session = shared.target.session();
                let mut rng = client_rng(shared.seed ^ 0x9e10ad, client as u64);
                let (mut written, mut failed, mut first_error) = (0u64, 0u64, None);
                let mut index = client as u64;
                while index < total {
                    let key = shared.keys.key(index);
                    let mut last = Err(String::new());
                    for _ in 0..PRELOAD_ATTEMPTS {
                        let value = shared.values.value(&mut rng);
                        last = shared
                            .target
                            .put(&mut session, client, &key, &value, None)
                            .await;
                        if last.is_ok() {
                            break;
                        }
                    }
                    match last {
                        Ok(()) => written += 1,
                        Err(e) => {
                            failed += 1;
                            first_error.get_or_insert(e);
                        }
                    }
                    bar.inc(1);
                    index += clients as u64;
                }
                (written, failed, first_error)
            })
        })
        .collect();
    let mut stats = PreloadStats {
        written: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        first_error: None,
    };
    for task in tasks {
        let (written, failed, first_error) = task.await.expect("preload client panicked");
        stats.written += written;
        stats.failed += failed;
        if stats.first_error.is_none() {
            stats.first_error = first_error;
        }
    }
    bar.finish_and_clear();
    stats.elapsed = started.elapsed();
    stats
}

/// Runs the warm-up and the measured phase of `plan`.
pub async fn run(shared: Arc<Shared>, plan: &Plan) -> Outcome {
    let start = Instant::now();
    let (ticker, bar) = spawn_progress(&shared, plan, start);
    let (recorder, measure_start, last_done) = match plan.rate {
        None => closed_loop(&shared, plan, start).await,
        Some(rate) => fixed_rate(&shared, plan, start, rate).await,
    };
    ticker.abort();
    let _ = ticker.await;
    bar.finish_and_clear();
    let end = last_done.unwrap_or_else(Instant::now);
    let elapsed = end.saturating_duration_since(measure_start);
    let longest_gap = recorder.longest_gap(measure_start, end);
    Outcome {
        recorder,
        elapsed,
        longest_gap,
    }
}

type Phase = (Recorder, Instant, Option<Instant>);

async fn join_clients(
    tasks: Vec<tokio::task::JoinHandle<(Recorder, Option<Instant>)>>,
    measure_start: Instant,
) -> Phase {
    let mut recorder = Recorder::new();
    let mut last_done: Option<Instant> = None;
    for task in tasks {
        let (client_recorder, client_last) = task.await.expect("benchmark client panicked");
        recorder.merge(&client_recorder);
        last_done = last_done.max(client_last);
    }
    (recorder, measure_start, last_done)
}

async fn closed_loop(shared: &Arc<Shared>, plan: &Plan, start: Instant) -> Phase {
    let measure_start = start + plan.warmup;
    let stop = plan.stop;
    let tasks = (0..plan.clients)
        .map(|client| {
            let shared = Arc::clone(shared);
            tokio::spawn(async move {
                let mut endpoint = client;
                let mut session = shared.target.session();
                let mut rng = client_rng(shared.seed, client as u64);
                let mut recorder = Recorder::new();
                let mut last_done = None;
                loop {
                    let began = Instant::now();
                    let measured = began >= measure_start;
                    if measured {
                        let done = match stop {
                            Stop::Duration(d) => began >= measure_start + d,
                            Stop::Ops(n) => {
                                shared.counters.claimed.fetch_add(1, Ordering::Relaxed) >= n
                            }
                        };
                        if done {
                            break;
                        }
                    }
                    let (op, result) = shared
                        .random_op(&mut session, &mut endpoint, &mut rng)
                        .await;
                    if measured {
                        let finished = Instant::now();
                        record(&mut recorder, op, result, finished - began);
                        shared.counters.measured.fetch_add(1, Ordering::Relaxed);
                        last_done = Some(finished);
                    }
                }
                (recorder, last_done)
            })
        })
        .collect();
    join_clients(tasks, measure_start).await
}

/// Operations of a fixed-rate run: the first one measured and the end (exclusive).
fn fixed_rate_schedule(plan: &Plan, rate: f64) -> (u64, u64) {
    let first = (plan.warmup.as_secs_f64() * rate).ceil() as u64;
    let measured = match plan.stop {
        Stop::Ops(n) => n,
        Stop::Duration(d) => ((d.as_secs_f64() * rate).ceil() as u64).max(1),
    };
    (first, first + measured)
}

async fn fixed_rate(shared: &Arc<Shared>, plan: &Plan, start: Instant, rate: f64) -> Phase {
    let (first, end) = fixed_rate_schedule(plan, rate);
    let scheduled = move |k: u64| start + Duration::from_secs_f64(k as f64 / rate);
    let clients = plan.clients as u64;
    let tasks = (0..plan.clients)
        .map(|client| {
            let shared = Arc::clone(shared);
            tokio::spawn(async move {
                let mut endpoint = client;
                let mut session = shared.target.session();
                let mut rng = client_rng(shared.seed, client as u64);
                let mut recorder = Recorder::new();
                let mut last_done = None;
                let mut k = client as u64;
                while k < end {
                    let at = scheduled(k);
                    tokio::time::sleep_until(at.into()).await;
                    let (op, result) = shared
                        .random_op(&mut session, &mut endpoint, &mut rng)
                        .await;
                    if k >= first {
                        let finished = Instant::now();
                        record(
                            &mut recorder,
                            op,
                            result,
                            finished.saturating_duration_since(at),
                        );
                        shared.counters.measured.fetch_add(1, Ordering::Relaxed);
                        last_done = Some(finished);
                    }
                    k += clients;
                }
                (recorder, last_done)
            })
        })
        .collect();
    join_clients(tasks, scheduled(first)).await
}

fn record(recorder: &mut Recorder, op: OpKind, result: Result<bool, String>, latency: Duration) {
    match result {
        Ok(missing) => recorder.success(op, latency, missing),
        Err(message) => recorder.failure(op, &message),
    }
}

fn progress_bar(enabled: bool, len: u64, template: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(5));
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("valid progress template")
            .progress_chars("=> "),
    );
    bar
}

fn spawn_progress(
    shared: &Arc<Shared>,
    plan: &Plan,
    start: Instant,
) -> (tokio::task::JoinHandle<()>, ProgressBar) {
    let shared = Arc::clone(shared);
    let warmup = plan.warmup;
    let (len, by_time) = match plan.stop {
        Stop::Duration(d) => (((warmup + d).as_millis() as u64).max(1), true),
        Stop::Ops(n) => (n, false),
    };
    let template = if by_time {
        "{elapsed_precise} [{bar:30}] {percent:>3}% {msg}"
    } else {
        "{elapsed_precise} [{bar:30}] {pos}/{len} ops {msg}"
    };
    let bar = progress_bar(plan.progress, len, template);
    let ticker_bar = bar.clone();
    let ticker = tokio::spawn(async move {
        let bar = ticker_bar;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let (mut last_done, mut last_at) = (0u64, Instant::now());
        loop {
            tick.tick().await;
            let now = Instant::now();
            let done = shared.counters.done.load(Ordering::Relaxed);
            let errors = shared.counters.errors.load(Ordering::Relaxed);
            let measured = shared.counters.measured.load(Ordering::Relaxed);
            let rate = (done - last_done) as f64 / (now - last_at).as_secs_f64().max(1e-3);
            (last_done, last_at) = (done, now);
            let phase = if now < start + warmup {
                "warm-up"
            } else {
                "measuring"
            };
            bar.set_position(if by_time {
                (now - start).as_millis() as u64
            } else {
                measured
            });
            bar.set_message(format!(
                "{phase}: {measured} ops, {errors} errors, {rate:.0} ops/s"
            ));
        }
    });
    (ticker, bar)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::RunOptions;
    use clap::Parser;

    fn plan(args: &[&str]) -> Plan {
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            run: RunOptions,
        }
        Wrap::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap()
            .run
            .validate()
            .unwrap()
    }

    #[test]
    fn fixed_rate_schedule_counts_warmup_and_measured_ops() {
        let p = plan(&["--rate", "1000", "--warmup", "2s", "--duration", "10s"]);
        assert_eq!(fixed_rate_schedule(&p, 1000.0), (2000, 12_000));
        let p = plan(&["--rate", "300", "--warmup", "0s", "--ops", "50"]);
        assert_eq!(fixed_rate_schedule(&p, 300.0), (0, 50));
        let p = plan(&["--rate", "0.5", "--warmup", "1s", "--duration", "1s"]);
        assert_eq!(fixed_rate_schedule(&p, 0.5), (1, 2));
    }
}
