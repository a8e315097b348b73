//! Recording latencies and errors, and reporting them.
//!
//! Each client records into its own [`Recorder`] (no locks on the hot path); the runner
//! merges them when the run ends. Latencies go into HDR histograms in microseconds with
//! three significant digits (so a percentile is within 0.1% of the true value), from 1 µs
//! to one minute; longer samples are clamped to the top. Only successful operations have
//! a latency; failed ones are counted, and the first few distinct error messages are kept
//! with how often each occurred.
//!
//! A finished run becomes a [`Report`]: the run's parameters and, per operation kind and
//! overall, count, errors, misses (reads of absent keys), throughput and latency
//! percentiles in milliseconds, and the longest time in which no operation succeeded (a
//! cluster-wide pause, or a failover, shows there; recorders keep each success's
//! completion time for it). It prints as a text table ([`render_table`]), serializes
//! to the `--json` file, and two of them become the markdown comparison of
//! `tinykv-bench compare` ([`compare_markdown`]).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::target::TargetKind;
use crate::workload::OpKind;

/// Largest latency recorded, in microseconds (one minute).
const MAX_LATENCY_US: u64 = 60_000_000;
/// Distinct error messages kept per run.
const MAX_DISTINCT_ERRORS: usize = 8;

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Latencies and outcomes of one operation kind.
#[derive(Debug, Clone)]
pub struct OpRecorder {
    histogram: Histogram<u64>,
    errors: u64,
    misses: u64,
}

impl Default for OpRecorder {
    fn default() -> Self {
        OpRecorder {
            histogram: new_histogram(),
            errors: 0,
            misses: 0,
        }
    }
}

impl OpRecorder {
    /// Records a success that took `latency`.
    pub fn record(&mut self, latency: Duration) {
        let micros = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        self.histogram
            .record(micros)
            .expect("value within the histogram's bounds");
    }

    /// Successful operations.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// Adds `other`'s samples and counts.
    pub fn merge(&mut self, other: &OpRecorder) {
        self.histogram
            .add(&other.histogram)
            .expect("histograms with equal bounds");
        self.errors += other.errors;
        self.misses += other.misses;
    }
}

/// The first distinct error messages of a run, with counts.
#[derive(Debug, Clone, Default)]
pub struct ErrorLog {
    distinct: Vec<(String, u64)>,
    others: u64,
}

impl ErrorLog {
    /// Counts one occurrence of `message`.
    pub fn add(&mut self, message: &str) {
        self.add_n(message, 1);
    }

    fn add_n(&mut self, message: &str, n: u64) {
        if let Some(entry) = self.distinct.iter_mut().find(|(m, _)| m == message) {
            entry.1 += n;
        } else if self.distinct.len() < MAX_DISTINCT_ERRORS {
            self.distinct.push((message.to_string(), n));
        } else {
            self.others += n;
        }
    }

    /// Adds every message of `other`.
    pub fn merge(&mut self, other: &ErrorLog) {
        for (message, n) in &other.distinct {
            self.add_n(message, *n);
        }
        self.others += other.others;
    }

    /// The kept messages with their counts, in first-seen order, then the count of
    /// errors whose message was not kept.
    pub fn samples(&self) -> (Vec<ErrorSample>, u64) {
        let samples = self
            .distinct
            .iter()
            .map(|(message, count)| ErrorSample {
                message: message.clone(),
                count: *count,
            })
            .collect();
        (samples, self.others)
    }
}

/// Everything one client (or, merged, a whole run) measured.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    ops: [OpRecorder; 3],
    errors: ErrorLog,
    /// When each success completed.
    completions: Vec<Instant>,
    /// The [`SLOWEST_KEPT`] slowest successes, slowest first.
    slowest: Vec<SlowOp>,
}

/// How many of the slowest operations a run reports, with when they finished.
pub const SLOWEST_KEPT: usize = 5;

/// One of the slowest operations of a run.
#[derive(Debug, Clone, Copy)]
pub struct SlowOp {
    /// Its kind.
    pub op: OpKind,
    /// How long it took.
    pub latency: Duration,
    /// When it finished (wall clock, to find it in the servers' logs).
    pub finished: std::time::SystemTime,
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Recorder {
        Recorder::default()
    }

    /// Records a success of `op` that took `latency`; `missing` for a read of an absent key.
    pub fn success(&mut self, op: OpKind, latency: Duration, missing: bool) {
        let recorder = &mut self.ops[op.index()];
        recorder.record(latency);
        if missing {
            recorder.misses += 1;
        }
        self.completions.push(Instant::now());
        let slow_enough = self.slowest.len() < SLOWEST_KEPT
            || self.slowest.last().is_some_and(|s| s.latency < latency);
        if slow_enough {
            self.keep_slow(SlowOp {
                op,
                latency,
                finished: std::time::SystemTime::now(),
            });
        }
    }

    fn keep_slow(&mut self, slow: SlowOp) {
        let at = self.slowest.partition_point(|s| s.latency >= slow.latency);
        self.slowest.insert(at, slow);
        self.slowest.truncate(SLOWEST_KEPT);
    }

    /// The slowest successes, slowest first.
    pub fn slowest(&self) -> &[SlowOp] {
        &self.slowest
    }

    /// Records a failure of `op`.
    pub fn failure(&mut self, op: OpKind, message: &str) {
        self.ops[op.index()].errors += 1;
        self.errors.add(message);
    }

    /// The recorder of one operation kind.
    pub fn op(&self, op: OpKind) -> &OpRecorder {
        &self.ops[op.index()]
    }

    /// Adds everything `other` recorded.
    pub fn merge(&mut self, other: &Recorder) {
        for (mine, theirs) in self.ops.iter_mut().zip(&other.ops) {
            mine.merge(theirs);
        }
        self.errors.merge(&other.errors);
        self.completions.extend_from_slice(&other.completions);
        for slow in &other.slowest {
            self.keep_slow(*slow);
        }
    }

    /// The longest time within `[from, to]` in which no operation succeeded.
    pub fn longest_gap(&self, from: Instant, to: Instant) -> Duration {
        let mut times: Vec<Instant> = self
            .completions
            .iter()
            .copied()
            .filter(|t| (from..=to).contains(t))
            .collect();
        times.sort_unstable();
        std::iter::once(from)
            .chain(times)
            .chain(std::iter::once(to))
            .collect::<Vec<_>>()
            .windows(2)
            .map(|w| w[1].saturating_duration_since(w[0]))
            .max()
            .unwrap_or_default()
    }

    /// Every operation kind together.
    pub fn overall(&self) -> OpRecorder {
        let mut all = OpRecorder::default();
        for op in &self.ops {
            all.merge(op);
        }
        all
    }

    /// The error messages kept.
    pub fn errors(&self) -> &ErrorLog {
        &self.errors
    }
}

/// The results of one operation kind (or `all`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpSummary {
    /// `read`, `write` or `all`.
    pub op: String,
    /// Successful operations.
    pub count: u64,
    /// Failed operations.
    pub errors: u64,
    /// Successful reads that found no value.
    pub misses: u64,
    /// Successful operations per second of the measured time.
    pub throughput: f64,
    /// Mean latency, ms.
    pub mean_ms: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Largest latency, ms.
    pub max_ms: f64,
}

/// Summarizes a recorder whose operations ran over `elapsed`. Latencies are whole
/// microseconds (the mean is rounded to one) and throughput is rounded to 0.01 ops/s.
pub fn summarize(op: &str, recorder: &OpRecorder, elapsed: Duration) -> OpSummary {
    let h = &recorder.histogram;
    let ms = |us: u64| us as f64 / 1000.0;
    let empty = h.is_empty();
    let q = |quantile: f64| {
        if empty {
            0.0
        } else {
            ms(h.value_at_quantile(quantile))
        }
    };
    let secs = elapsed.as_secs_f64();
    OpSummary {
        op: op.to_string(),
        count: h.len(),
        errors: recorder.errors,
        misses: recorder.misses,
        throughput: if secs > 0.0 {
            (h.len() as f64 / secs * 100.0).round() / 100.0
        } else {
            0.0
        },
        mean_ms: if empty {
            0.0
        } else {
            (h.mean() / 1000.0 * 1000.0).round() / 1000.0
        },
        p50_ms: q(0.5),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
        p999_ms: q(0.999),
        max_ms: if empty { 0.0 } else { ms(h.max()) },
    }
}

/// An error message and how often it occurred.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorSample {
    /// The message.
    pub message: String,
    /// Occurrences.
    pub count: u64,
}

/// The results of a run, as written by `--json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Version of tinykv-bench.
    pub tool_version: String,
    /// The system under test.
    pub target: TargetKind,
    /// Its name in reports.
    pub label: String,
    /// Base URLs used.
    pub endpoints: Vec<String>,
    /// Workload name.
    pub workload: String,
    /// Fraction of reads.
    pub read_ratio: f64,
    /// Concurrent clients.
    pub clients: usize,
    /// Target rate of a fixed-rate run (ops/s); `null` for closed loop.
    pub rate: Option<f64>,
    /// Key space size.
    pub keys: u64,
    /// Value size, bytes.
    pub value_size: usize,
    /// Whether every key was written before measuring.
    pub preload: bool,
    /// Warm-up, seconds.
    pub warmup_secs: f64,
    /// Requested measuring time, seconds (`null` when stopped by --ops).
    pub duration_secs: Option<f64>,
    /// Requested number of operations (`null` when stopped by --duration).
    pub ops: Option<u64>,
    /// Measured time, seconds: from the start of measuring to the last completion.
    pub elapsed_secs: f64,
    /// Random seed.
    pub seed: u64,
    /// Per operation kind that ran, then `all`.
    pub results: Vec<OpSummary>,
    /// The first distinct error messages.
    pub error_samples: Vec<ErrorSample>,
    /// Errors whose message is not among the samples.
    pub other_errors: u64,
    /// The longest time in the measured window in which no operation succeeded, ms (0 in
    /// results of older versions).
    #[serde(default)]
    pub longest_gap_ms: f64,
    /// The slowest operations, slowest first, with when they finished (empty in results
    /// of older versions).
    #[serde(default)]
    pub slowest: Vec<SlowSample>,
}

/// One of the slowest operations, as reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlowSample {
    /// `read` or `write`.
    pub op: String,
    /// Its latency, ms.
    pub latency_ms: f64,
    /// When it finished, in milliseconds since the Unix epoch.
    pub finished_unix_ms: u64,
}

impl SlowSample {
    /// The sample of `slow`.
    pub fn of(slow: &SlowOp) -> SlowSample {
        SlowSample {
            op: slow.op.name().to_string(),
            latency_ms: slow.latency.as_secs_f64() * 1000.0,
            finished_unix_ms: slow
                .finished
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }
}

/// `ms` since the Unix epoch as a UTC time of day, `HH:MM:SS.mmm` (as the servers' logs
/// show it).
pub fn utc_time_of_day(unix_ms: u64) -> String {
    let ms_of_day = unix_ms % 86_400_000;
    let (h, m, s, ms) = (
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000,
    );
    format!("{h:02}:{m:02}:{s:02}.{ms:03}")
}

impl Report {
    /// The summary of `op` (`read`, `write`, `all`), if that kind ran.
    pub fn result(&self, op: &str) -> Option<&OpSummary> {
        self.results.iter().find(|r| r.op == op)
    }
}

/// Per operation kind that ran (any success or error), then `all`.
pub fn summaries(recorder: &Recorder, elapsed: Duration) -> Vec<OpSummary> {
    let mut out: Vec<OpSummary> = OpKind::ALL
        .iter()
        .map(|&op| (op, recorder.op(op)))
        .filter(|(_, r)| r.count() + r.errors > 0)
        .map(|(op, r)| summarize(op.name(), r, elapsed))
        .collect();
    out.push(summarize("all", &recorder.overall(), elapsed));
    out
}

fn fmt_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.3}")
    } else if ms < 1000.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

/// The summary table printed at the end of a run.
pub fn render_table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<6} {:>10} {:>8} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "op",
        "count",
        "errors",
        "misses",
        "ops/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms"
    );
    for r in &report.results {
        let _ = writeln!(
            out,
            "{:<6} {:>10} {:>8} {:>8} {:>10.0} {:>9} {:>9} {:>9} {:>9} {:>9}",
            r.op,
            r.count,
            r.errors,
            r.misses,
            r.throughput,
            fmt_ms(r.p50_ms),
            fmt_ms(r.p95_ms),
            fmt_ms(r.p99_ms),
            fmt_ms(r.p999_ms),
            fmt_ms(r.max_ms)
        );
    }
    let _ = writeln!(
        out,
        "longest time without a successful operation: {} ms",
        fmt_ms(report.longest_gap_ms)
    );
    if !report.slowest.is_empty() {
        let slowest: Vec<String> = report
            .slowest
            .iter()
            .map(|s| {
                format!(
                    "{} {} ms at {}",
                    s.op,
                    fmt_ms(s.latency_ms),
                    utc_time_of_day(s.finished_unix_ms)
                )
            })
            .collect();
        let _ = writeln!(out, "slowest (UTC): {}", slowest.join(", "));
    }
    out
}

fn ratio(ours: f64, theirs: f64) -> String {
    if theirs > 0.0 && ours.is_finite() {
        format!("{:.2}×", ours / theirs)
    } else {
        "—".to_string()
    }
}

/// A markdown table comparing two runs of the same workload: for each operation kind and
/// overall, a row per system and a row of ratios (ours / theirs: above 1 means more
/// throughput, or more latency, than theirs). Without `theirs`, only our rows. When every
/// operation was of one kind, only that kind's rows are shown (they equal `all`'s).
pub fn compare_markdown(ours: &Report, theirs: Option<&Report>, title: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(title) = title {
        let _ = writeln!(out, "### {title}\n");
    }
    let _ = writeln!(
        out,
        "| op | system | ops/s | p50 ms | p99 ms | p99.9 ms | max ms | errors |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|");
    let reports: Vec<&Report> = std::iter::once(ours).chain(theirs).collect();
    let mut kinds: Vec<&str> = Vec::new();
    for r in reports.iter().flat_map(|r| &r.results) {
        if r.op != "all" && !kinds.contains(&r.op.as_str()) {
            kinds.push(&r.op);
        }
    }
    // A single kind's rows would repeat `all`'s: show only them, under the kind's name.
    let ops: Vec<&str> = match kinds.as_slice() {
        [only] => vec![*only],
        _ => std::iter::once("all").chain(kinds).collect(),
    };
    for op in ops {
        for report in &reports {
            match report.result(op) {
                Some(r) => {
                    let _ = writeln!(
                        out,
                        "| {op} | {} | {:.0} | {} | {} | {} | {} | {} |",
                        report.label,
                        r.throughput,
                        fmt_ms(r.p50_ms),
                        fmt_ms(r.p99_ms),
                        fmt_ms(r.p999_ms),
                        fmt_ms(r.max_ms),
                        r.errors
                    );
                }
                None => {
                    let _ = writeln!(out, "| {op} | {} | — | — | — | — | — | — |", report.label);
                }
            }
        }
        let Some(theirs) = theirs else { continue };
        if let (Some(a), Some(b)) = (ours.result(op), theirs.result(op)) {
            let _ = writeln!(
                out,
                "| {op} | **ours/{}** | **{}** | {} | **{}** | {} | {} | |",
                theirs.label,
                ratio(a.throughput, b.throughput),
                ratio(a.p50_ms, b.p50_ms),
                ratio(a.p99_ms, b.p99_ms),
                ratio(a.p999_ms, b.p999_ms),
                ratio(a.max_ms, b.max_ms)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(label: &str, recorder: &Recorder, secs: u64) -> Report {
        let (error_samples, other_errors) = recorder.errors().samples();
        Report {
            tool_version: "test".into(),
            target: TargetKind::Tinykv,
            label: label.into(),
            endpoints: vec![],
            workload: "a".into(),
            read_ratio: 0.5,
            clients: 1,
            rate: None,
            keys: 10,
            value_size: 1,
            preload: false,
            warmup_secs: 0.0,
            duration_secs: Some(secs as f64),
            ops: None,
            elapsed_secs: secs as f64,
            seed: 1,
            results: summaries(recorder, Duration::from_secs(secs)),
            error_samples,
            other_errors,
            longest_gap_ms: 0.0,
            slowest: Vec::new(),
        }
    }

    #[test]
    fn the_slowest_operations_are_kept_across_clients_slowest_first() {
        let mut a = Recorder::new();
        let mut b = Recorder::new();
        for ms in [5, 50, 7, 9, 60, 1, 2] {
            a.success(OpKind::Write, Duration::from_millis(ms), false);
        }
        for ms in [55, 3, 70] {
            b.success(OpKind::Read, Duration::from_millis(ms), false);
        }
        a.merge(&b);
        let kept: Vec<u64> = a
            .slowest()
            .iter()
            .map(|s| s.latency.as_millis() as u64)
            .collect();
        assert_eq!(kept, vec![70, 60, 55, 50, 9]);
        assert_eq!(a.slowest()[0].op, OpKind::Read);
        assert_eq!(utc_time_of_day(1_796_644_495_664), "11:54:55.664");
    }

    #[test]
    fn the_longest_gap_counts_from_the_window_edges() {
        let mut recorder = Recorder::new();
        let from = Instant::now();
        recorder.success(OpKind::Write, Duration::from_millis(1), false);
        let mut other = Recorder::new();
        std::thread::sleep(Duration::from_millis(30));
        other.success(OpKind::Write, Duration::from_millis(1), false);
        recorder.merge(&other);
        let to = Instant::now() + Duration::from_millis(5);
        let gap = recorder.longest_gap(from, to);
        assert!(gap >= Duration::from_millis(30), "{gap:?}");
        assert!(
            gap < to - from,
            "the two successes split the window: {gap:?}"
        );
        // Nothing succeeded: the whole window is one gap.
        assert_eq!(Recorder::new().longest_gap(from, to), to - from);
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        // 1 ms .. 1000 ms in 1 ms steps: p50 = 500 ms, p99 = 990 ms, max = 1000 ms.
        let mut recorder = OpRecorder::default();
        for ms in 1..=1000 {
            recorder.record(Duration::from_millis(ms));
        }
        let s = summarize("read", &recorder, Duration::from_secs(10));
        assert_eq!(s.count, 1000);
        assert_eq!(s.throughput, 100.0);
        let close = |got: f64, want: f64| (got - want).abs() / want < 0.001;
        assert!(close(s.p50_ms, 500.0), "p50 {}", s.p50_ms);
        assert!(close(s.p95_ms, 950.0), "p95 {}", s.p95_ms);
        assert!(close(s.p99_ms, 990.0), "p99 {}", s.p99_ms);
        assert!(close(s.p999_ms, 999.0), "p99.9 {}", s.p999_ms);
        assert!(close(s.max_ms, 1000.0), "max {}", s.max_ms);
        assert!(close(s.mean_ms, 500.5), "mean {}", s.mean_ms);
    }

    #[test]
    fn sub_millisecond_latencies_keep_microseconds() {
        let mut recorder = OpRecorder::default();
        recorder.record(Duration::from_micros(250));
        recorder.record(Duration::from_nanos(10)); // clamped to 1 µs
        recorder.record(Duration::from_secs(3600)); // clamped to a minute
        let s = summarize("write", &recorder, Duration::from_secs(1));
        assert_eq!(s.p50_ms, 0.25);
        assert!((s.max_ms - 60_000.0).abs() / 60_000.0 < 0.001);
    }

    #[test]
    fn empty_summary_is_zero() {
        let s = summarize("read", &OpRecorder::default(), Duration::ZERO);
        assert_eq!(
            (s.count, s.throughput, s.p99_ms, s.max_ms),
            (0, 0.0, 0.0, 0.0)
        );
    }

    #[test]
    fn recorders_merge_and_keep_distinct_errors() {
        let mut a = Recorder::new();
        let mut b = Recorder::new();
        a.success(OpKind::Read, Duration::from_millis(1), false);
        a.success(OpKind::Read, Duration::from_millis(2), true);
        b.success(OpKind::Write, Duration::from_millis(3), false);
        a.failure(OpKind::Write, "HTTP 503: no leader");
        b.failure(OpKind::Write, "HTTP 503: no leader");
        for i in 0..20 {
            b.failure(OpKind::Read, &format!("error {i}"));
        }
        a.merge(&b);
        assert_eq!(a.op(OpKind::Read).count(), 2);
        assert_eq!(a.op(OpKind::Read).misses, 1);
        assert_eq!(a.op(OpKind::Read).errors, 20);
        assert_eq!(a.op(OpKind::Write).errors, 2);
        assert_eq!(a.overall().count(), 3);
        let (samples, others) = a.errors().samples();
        assert_eq!(samples.len(), MAX_DISTINCT_ERRORS);
        assert_eq!(samples[0].message, "HTTP 503: no leader");
        assert_eq!(samples[0].count, 2);
        assert_eq!(others, 20 - (MAX_DISTINCT_ERRORS as u64 - 1));
    }

    #[test]
    fn summaries_list_the_kinds_that_ran_then_all() {
        let mut recorder = Recorder::new();
        recorder.success(OpKind::Read, Duration::from_millis(1), false);
        let names: Vec<_> = summaries(&recorder, Duration::from_secs(1))
            .into_iter()
            .map(|s| s.op)
            .collect();
        assert_eq!(names, ["read", "all"]);
    }

    #[test]
    fn json_round_trip_and_tables() {
        let mut recorder = Recorder::new();
        for ms in 1..=100 {
            recorder.success(OpKind::Read, Duration::from_millis(ms), false);
            recorder.success(OpKind::Write, Duration::from_millis(2 * ms), false);
        }
        let ours = report("TinyKV-rs", &recorder, 10);
        let json = serde_json::to_string(&ours).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        // Floats are rounded to µs (latencies) and 0.01 ops/s, so they survive the trip.
        assert_eq!(back, ours);
        assert!(json.contains(r#""target":"tinykv""#));

        let table = render_table(&ours);
        assert_eq!(table.lines().count(), 5, "{table}");
        assert!(table.lines().nth(3).unwrap().starts_with("all"));
        assert!(table
            .lines()
            .nth(4)
            .unwrap()
            .starts_with("longest time without a successful operation"));

        let mut slow = Recorder::new();
        for ms in 1..=100 {
            slow.success(OpKind::Read, Duration::from_millis(2 * ms), false);
        }
        let theirs = report("etcd", &slow, 20);
        let md = compare_markdown(&ours, Some(&theirs), Some("YCSB-A"));
        assert!(md.starts_with("### YCSB-A\n\n| op | system |"), "{md}");
        // all: ours 200 ops / 10 s = 20/s vs theirs 100 / 20 s = 5/s.
        assert!(md.contains("| all | **ours/etcd** | **4.00×** |"), "{md}");
        // read p50: 50 ms vs 100 ms.
        assert!(
            md.contains("| read | **ours/etcd** | **2.00×** | 0.50× |"),
            "{md}"
        );
        // write ran only for us: no ratio row, a dash row for them.
        assert!(md.contains("| write | etcd | — |"), "{md}");
        assert!(!md.contains("| write | **ours"), "{md}");

        let mut reads = Recorder::new();
        reads.success(OpKind::Read, Duration::from_millis(1), false);
        let reads_only = report("TinyKV-rs", &reads, 1);
        let md = compare_markdown(&reads_only, Some(&reads_only), None);
        assert_eq!(md.lines().count(), 2 + 3, "{md}");
        assert!(
            md.contains("| read | **ours/TinyKV-rs** | **1.00×** |"),
            "{md}"
        );
        assert!(!md.contains("| all |"), "{md}");

        let alone = compare_markdown(&ours, None, None);
        assert!(alone.starts_with("| op | system |"), "{alone}");
        assert_eq!(alone.lines().count(), 2 + 3, "{alone}");
        assert!(!alone.contains("ours/"), "{alone}");
    }
}
