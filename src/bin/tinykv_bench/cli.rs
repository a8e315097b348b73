//! Command-line options of `tinykv-bench`.
//!
//! Without a subcommand (or with `run`) the tool benchmarks one system; `compare` turns two
//! `--json` results into a markdown table. Options are checked here, once, and turned into
//! the plain values the runner needs ([`RunOptions::validate`]): endpoints with their
//! scheme and without a trailing slash, a read ratio in `[0, 1]`, exactly one way to stop
//! (a duration or a number of operations), and the TLS files.
//!
//! TLS is named as curl names it: `--cacert FILE` (the CA that signed the servers'
//! certificates) makes every endpoint `https://` (a bare `HOST:PORT` gets that scheme,
//! and the server's certificate must name that host); `--cert FILE` and `--key FILE` add
//! a client certificate, for a cluster with `security.client_cert_auth`, and need
//! `--cacert`. An `https://` endpoint without `--cacert`, or an `http://` one with it, is
//! refused ([`resolve_tls`], [`normalize_endpoints`]).
//!
//! `--token TOKEN` is an API token for a TinyKV-rs cluster with authentication on (a
//! `readwrite` one, whose prefix, if any, covers `--key-prefix`): every request carries
//! it as `Authorization: Bearer TOKEN` ([`bearer_header`]). It is not read from the
//! environment, and it is refused with `--target etcd`, whose gateway has its own
//! authentication.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use reqwest::header::HeaderValue;
use tinykv::human_duration::parse_duration;
use tinykv::security::ClientTlsFiles;

use crate::target::TargetKind;

/// The whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "tinykv-bench",
    version,
    about = "Load generator for TinyKV-rs and etcd: closed-loop or fixed-rate, YCSB-style mixes",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do; benchmarking (`run`) when absent.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of the default `run` command.
    #[command(flatten)]
    pub run: RunOptions,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Benchmark one system (the default).
    Run(Box<RunOptions>),
    /// Print a markdown table comparing two results written with --json.
    Compare(CompareOptions),
}

/// YCSB-style operation mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// YCSB A: 50% reads, 50% updates.
    A,
    /// YCSB B: 95% reads, 5% updates.
    B,
    /// YCSB C: 100% reads.
    C,
    /// 100% writes.
    Write,
    /// Transfers between two random keys in transactions (TinyKV-rs `POST /v1/txn`,
    /// etcd `/v3/kv/txn` comparing both keys' `mod_revision`), each retried until it
    /// commits; no preload.
    Transfer,
}

impl Workload {
    /// Fraction of operations that are reads.
    pub fn read_ratio(self) -> f64 {
        match self {
            Workload::A => 0.5,
            Workload::B => 0.95,
            Workload::C => 1.0,
            Workload::Write | Workload::Transfer => 0.0,
        }
    }

    /// The name used on the command line and in results.
    pub fn name(self) -> &'static str {
        match self {
            Workload::A => "a",
            Workload::B => "b",
            Workload::C => "c",
            Workload::Write => "write",
            Workload::Transfer => "transfer",
        }
    }
}

/// Options of one benchmark run.
#[derive(Debug, Clone, Args)]
pub struct RunOptions {
    /// The system under test.
    #[arg(long, value_enum, default_value_t = TargetKind::Tinykv)]
    pub target: TargetKind,
    /// Comma-separated base URLs (http://host:port, https://host:port with --cacert, or
    /// host:port); clients are spread over them round-robin. Default: the `make run`
    /// cluster for tinykv, 127.0.0.1:2379 for etcd.
    #[arg(long, value_delimiter = ',', value_name = "URLS")]
    pub endpoints: Vec<String>,
    /// CA certificate (PEM) that signed the servers' certificates: talk HTTPS
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM), for a cluster that requires one; needs --key and --cacert
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of --cert
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// API token of a TinyKV-rs cluster with authentication on (a readwrite one), sent as
    /// `Authorization: Bearer TOKEN`
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Concurrent clients (closed loop), or the cap on requests in flight (--rate).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub clients: usize,
    /// How long to measure, e.g. 30s, 500ms, 2m (default 30s unless --ops is given).
    #[arg(long, value_parser = parse_duration, conflicts_with = "ops", value_name = "DURATION")]
    pub duration: Option<Duration>,
    /// Measure this many operations instead of a duration.
    #[arg(long, value_name = "N")]
    pub ops: Option<u64>,
    /// Fixed-rate mode: this many operations per second in total, on a fixed timetable;
    /// latency counts from each operation's scheduled start. Closed loop when absent.
    #[arg(long, value_name = "OPS_PER_SEC")]
    pub rate: Option<f64>,
    /// Size of the key space: keys are `<prefix><index>`, index uniform in [0, keys).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub keys: u64,
    /// Prefix of every key.
    #[arg(long, default_value = "bench-", value_name = "PREFIX")]
    pub key_prefix: String,
    /// Value size in bytes.
    #[arg(long, default_value_t = 128, value_name = "BYTES")]
    pub value_size: usize,
    /// Operation mix: a (50% read), b (95% read), c (100% read), write (100% write).
    #[arg(long, value_enum, default_value_t = Workload::A)]
    pub workload: Workload,
    /// Fraction of reads in [0, 1]; overrides --workload.
    #[arg(long, value_name = "RATIO")]
    pub read_ratio: Option<f64>,
    /// Write every key once before measuring, so that reads find their key.
    #[arg(long)]
    pub preload: bool,
    /// Run the workload this long before measuring (connections, caches, leaders settle).
    #[arg(long, value_parser = parse_duration, default_value = "2s", value_name = "DURATION")]
    pub warmup: Duration,
    /// Per-request timeout; a request that takes longer counts as an error.
    #[arg(long, value_parser = parse_duration, default_value = "10s", value_name = "DURATION")]
    pub timeout: Duration,
    /// Write the results as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Seed of the key, value and operation choices (each client derives its own).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Name of the system in reports (default: TinyKV-rs or etcd).
    #[arg(long)]
    pub label: Option<String>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Threads that send the requests (as wrk's -t; each costs about the same per request,
    /// and two keep up with the servers on a small machine where one may lag).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64), value_name = "N")]
    pub threads: u16,
}

/// Options of `compare`.
#[derive(Debug, Clone, Args)]
pub struct CompareOptions {
    /// Our result (--json of a tinykv run).
    #[arg(value_name = "OURS")]
    pub ours: PathBuf,
    /// The other system's result (--json of an etcd run); only our rows without it.
    #[arg(value_name = "THEIRS")]
    pub theirs: Option<PathBuf>,
    /// A markdown heading printed above the table.
    #[arg(long)]
    pub title: Option<String>,
}

/// When a run stops measuring.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// After this long.
    Duration(Duration),
    /// After this many operations.
    Ops(u64),
}

/// Validated run options, as the runner uses them.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The system under test.
    pub target: TargetKind,
    /// Its name in reports.
    pub label: String,
    /// Base URLs without a trailing slash.
    pub endpoints: Vec<String>,
    /// The TLS files; `None` for plain HTTP.
    pub tls: Option<ClientTlsFiles>,
    /// `Bearer <token>` for every request, marked sensitive (no debug output shows it).
    pub authorization: Option<HeaderValue>,
    /// Concurrent clients.
    pub clients: usize,
    /// When to stop.
    pub stop: Stop,
    /// Fixed-rate mode's total rate, closed loop when `None`.
    pub rate: Option<f64>,
    /// Key space size.
    pub keys: u64,
    /// Key prefix.
    pub key_prefix: String,
    /// Value size in bytes.
    pub value_size: usize,
    /// Workload name (`a`, `b`, `c`, `write`, or `custom` for --read-ratio).
    pub workload: String,
    /// Fraction of reads.
    pub read_ratio: f64,
    /// Whether every operation is a transfer (the `transfer` workload).
    pub transfers: bool,
    /// Whether to write every key before measuring.
    pub preload: bool,
    /// Unmeasured time before measuring.
    pub warmup: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Where to write the JSON results.
    pub json: Option<PathBuf>,
    /// Random seed.
    pub seed: u64,
    /// Whether to draw a progress bar.
    pub progress: bool,
}

impl RunOptions {
    /// Checks the options and fills in the defaults that depend on others.
    pub fn validate(&self) -> Result<Plan, String> {
        if self.clients == 0 {
            return Err("--clients must be at least 1".into());
        }
        if self.keys == 0 {
            return Err("--keys must be at least 1".into());
        }
        let transfers = self.workload == Workload::Transfer;
        if transfers && self.read_ratio.is_some() {
            return Err("--read-ratio does not apply to the transfer workload".into());
        }
        let read_ratio = self.read_ratio.unwrap_or(self.workload.read_ratio());
        if !(0.0..=1.0).contains(&read_ratio) {
            return Err(format!("--read-ratio must be in [0, 1], got {read_ratio}"));
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(format!("--rate must be a positive number, got {rate}"));
            }
        }
        let stop = match (self.ops, self.duration) {
            (Some(0), _) => return Err("--ops must be at least 1".into()),
            (Some(ops), _) => Stop::Ops(ops),
            (None, Some(d)) if d.is_zero() => return Err("--duration must be positive".into()),
            (None, Some(d)) => Stop::Duration(d),
            (None, None) => Stop::Duration(Duration::from_secs(30)),
        };
        let tls = resolve_tls(&self.cacert, &self.cert, &self.key)?;
        let authorization = match (&self.token, self.target) {
            (None, _) => None,
            (Some(token), TargetKind::Tinykv) => Some(bearer_header(token)?),
            (Some(_), TargetKind::Etcd) => return Err("--token is for --target tinykv".into()),
        };
        let endpoints = if self.endpoints.is_empty() {
            let defaults: Vec<String> = self
                .target
                .default_endpoints()
                .iter()
                .map(|s| s.to_string())
                .collect();
            normalize_endpoints(&defaults, tls.is_some())?
        } else {
            normalize_endpoints(&self.endpoints, tls.is_some())?
        };
        Ok(Plan {
            target: self.target,
            label: self
                .label
                .clone()
                .unwrap_or_else(|| self.target.display_name().to_string()),
            endpoints,
            tls,
            authorization,
            clients: self.clients,
            stop,
            rate: self.rate,
            keys: self.keys,
            key_prefix: self.key_prefix.clone(),
            value_size: self.value_size,
            workload: match self.read_ratio {
                Some(_) => "custom".to_string(),
                None => self.workload.name().to_string(),
            },
            read_ratio,
            transfers,
            preload: self.preload,
            warmup: self.warmup,
            timeout: self.timeout,
            json: self.json.clone(),
            seed: self.seed,
            progress: !self.quiet,
        })
    }
}

/// The `Authorization` header of `--token`: `Bearer <token>` (trimmed), marked sensitive.
/// An empty token, or one an HTTP header cannot carry (control or non-ASCII characters),
/// is refused.
pub fn bearer_header(token: &str) -> Result<HeaderValue, String> {
    let token = token.trim();
    if token.is_empty() {
        return Err("--token is empty".into());
    }
    let unfit = "--token has a character an HTTP header cannot carry (control or non-ASCII)";
    if !token.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return Err(unfit.into());
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| unfit)?;
    value.set_sensitive(true);
    Ok(value)
}

/// The TLS files of `--cacert`, `--cert` and `--key`: `None` without a CA; `--cert` and
/// `--key` go together and need `--cacert`.
pub fn resolve_tls(
    cacert: &Option<PathBuf>,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
) -> Result<Option<ClientTlsFiles>, String> {
    let cert_and_key = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        (None, None) => None,
        _ => return Err("--cert and --key go together: give both, or neither".into()),
    };
    match (cacert, cert_and_key) {
        (Some(ca), cert_and_key) => Ok(Some(ClientTlsFiles {
            ca: ca.clone(),
            cert_and_key,
        })),
        (None, None) => Ok(None),
        (None, Some(_)) => Err(
            "--cert and --key need --cacert FILE, the CA that signed the servers' certificates"
                .into(),
        ),
    }
}

/// Trims the endpoints, drops empty ones and trailing slashes, and gives each the scheme
/// `tls` asks for: a bare `host:port` gets `https://` with TLS, `http://` without; an
/// `https://` endpoint without TLS, an `http://` one with it, or another scheme is
/// refused.
pub fn normalize_endpoints(raw: &[String], tls: bool) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for e in raw {
        let e = e.trim().trim_end_matches('/');
        if e.is_empty() {
            continue;
        }
        let endpoint = match e.split_once("://") {
            Some(("https", _)) if !tls => {
                return Err(format!(
                    "endpoint {e:?} is https://: give --cacert FILE, the CA that signed its \
                     certificate"
                ))
            }
            Some(("http", _)) if tls => {
                return Err(format!(
                    "endpoint {e:?} is plain http://, but --cacert asks for TLS: give \
                     https:// or host:port"
                ))
            }
            Some(("http" | "https", _)) => e.to_string(),
            Some((scheme, _)) => {
                return Err(format!(
                    "endpoint {e:?}: unknown scheme {scheme:?} (give http://, https:// or \
                     host:port)"
                ))
            }
            None if tls => format!("https://{e}"),
            None => format!("http://{e}"),
        };
        out.push(endpoint);
    }
    if out.is_empty() {
        return Err("--endpoints names no endpoint".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("tinykv-bench").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults() {
        let plan = parse(&[]).run.validate().unwrap();
        assert_eq!(plan.target, TargetKind::Tinykv);
        assert_eq!(plan.clients, 64);
        assert_eq!(plan.value_size, 128);
        assert_eq!(plan.read_ratio, 0.5);
        assert_eq!(plan.stop, Stop::Duration(Duration::from_secs(30)));
        assert_eq!(plan.endpoints[0], "http://127.0.0.1:8081");
        assert_eq!(plan.endpoints.len(), 3);
        assert_eq!(plan.tls, None);
        assert_eq!(plan.label, "TinyKV-rs");
    }

    #[test]
    fn workload_and_read_ratio() {
        let plan = parse(&["--workload", "b"]).run.validate().unwrap();
        assert_eq!((plan.workload.as_str(), plan.read_ratio), ("b", 0.95));
        let plan = parse(&["--workload", "write"]).run.validate().unwrap();
        assert_eq!(plan.read_ratio, 0.0);
        let plan = parse(&["--read-ratio", "0.25"]).run.validate().unwrap();
        assert_eq!((plan.workload.as_str(), plan.read_ratio), ("custom", 0.25));
        assert!(parse(&["--read-ratio", "1.5"]).run.validate().is_err());
    }

    #[test]
    fn endpoints_and_stop() {
        let cli = parse(&[
            "run",
            "--target",
            "etcd",
            "--endpoints",
            "http://127.0.0.1:12379/, http://127.0.0.1:22379",
            "--ops",
            "1000",
        ]);
        let Some(Command::Run(run)) = cli.command else {
            panic!("expected run")
        };
        let plan = run.validate().unwrap();
        assert_eq!(
            plan.endpoints,
            ["http://127.0.0.1:12379", "http://127.0.0.1:22379"]
        );
        assert_eq!(plan.stop, Stop::Ops(1000));
        assert_eq!(plan.label, "etcd");
        assert!(normalize_endpoints(&["https://x".into()], false).is_err());
        assert!(normalize_endpoints(&[" ".into()], false).is_err());
        assert!(normalize_endpoints(&["ftp://x".into()], false).is_err());
        assert_eq!(
            normalize_endpoints(&["h:1".into()], false).unwrap(),
            ["http://h:1"]
        );
        let no_duration = Cli::try_parse_from(["tinykv-bench", "--ops", "5", "--duration", "1s"]);
        assert!(no_duration.is_err(), "--ops and --duration conflict");
    }

    #[test]
    fn tls_options_make_endpoints_https() {
        let plan = parse(&["--cacert", "certs/ca.pem"]).run.validate().unwrap();
        assert_eq!(
            plan.endpoints,
            [
                "https://127.0.0.1:8081",
                "https://127.0.0.1:8082",
                "https://127.0.0.1:8083"
            ]
        );
        let tls = plan.tls.unwrap();
        assert_eq!(tls.ca, PathBuf::from("certs/ca.pem"));
        assert_eq!(tls.cert_and_key, None);
        let plan = parse(&[
            "--cacert",
            "ca.pem",
            "--cert",
            "u.pem",
            "--key",
            "u.key",
            "--endpoints",
            "node1:8080,https://node2:8080/",
        ])
        .run
        .validate()
        .unwrap();
        assert_eq!(plan.endpoints, ["https://node1:8080", "https://node2:8080"]);
        assert_eq!(
            plan.tls.unwrap().cert_and_key,
            Some((PathBuf::from("u.pem"), PathBuf::from("u.key")))
        );
        let err = parse(&["--cacert", "ca.pem", "--endpoints", "http://h:1"])
            .run
            .validate()
            .unwrap_err();
        assert!(err.contains("https://"), "{err}");
        let err = parse(&["--endpoints", "https://h:1"])
            .run
            .validate()
            .unwrap_err();
        assert!(err.contains("--cacert"), "{err}");
        let err = parse(&["--cacert", "ca", "--cert", "u.pem"])
            .run
            .validate()
            .unwrap_err();
        assert!(err.contains("go together"), "{err}");
        let err = parse(&["--cert", "u.pem", "--key", "u.key"])
            .run
            .validate()
            .unwrap_err();
        assert!(err.contains("need --cacert"), "{err}");
    }

    #[test]
    fn a_token_becomes_a_sensitive_bearer_header_for_tinykv_only() {
        let plan = parse(&[]).run.validate().unwrap();
        assert_eq!(plan.authorization, None);
        let plan = parse(&["--token", " tkv_abc "]).run.validate().unwrap();
        let header = plan.authorization.unwrap();
        assert_eq!(header, "Bearer tkv_abc");
        assert!(header.is_sensitive());
        assert!(!format!("{header:?}").contains("tkv_abc"));
        let plan = parse(&["--token", "correct horse battery staple"])
            .run
            .validate();
        assert_eq!(
            plan.unwrap().authorization.unwrap(),
            "Bearer correct horse battery staple"
        );
        for bad in [" ", "a\nb", "pässwort"] {
            let err = parse(&["--token", bad]).run.validate().unwrap_err();
            assert!(err.starts_with("--token"), "{bad:?}: {err}");
        }
        let err = parse(&["--target", "etcd", "--token", "t"])
            .run
            .validate()
            .unwrap_err();
        assert!(err.contains("--target tinykv"), "{err}");
    }

    #[test]
    fn compare_subcommand() {
        let cli = parse(&["compare", "a.json", "b.json", "--title", "YCSB-A"]);
        let Some(Command::Compare(c)) = cli.command else {
            panic!("expected compare")
        };
        assert_eq!(c.ours, PathBuf::from("a.json"));
        assert_eq!(c.title.as_deref(), Some("YCSB-A"));
    }
}
