//! Where the node's logs go.
//!
//! Everything is logged through `tracing` to stderr, filtered by `RUST_LOG` if it is set
//! and by `log.level` otherwise. The access log ([`crate::api::request_log`], target
//! `tinykv::access`) is a layer of its own: written only when `log.access_log` is on,
//! whatever the filter says, and through a non-blocking writer (a thread of its own with
//! a bounded queue; lines beyond it are dropped, never waited for), so that a request
//! never waits for a terminal or a pipe. Every other line is written as it happens, so
//! that the last words of a crashing node are not lost in a queue. With
//! `log.otlp_endpoint` set, spans are also exported to OpenTelemetry
//! ([`crate::trace_export`]).
//!
//! The filter is `tracing_subscriber`'s `Targets` (target prefixes and levels: `info`,
//! `warn,tinykv_actors::peer=debug`), unless the spec names spans or fields
//! (`[peer{region=5}]=debug`), which only an `EnvFilter` understands. The two agree on
//! everything `Targets` parses, but an `EnvFilter` takes a lock and looks up a table on
//! every span entered and exited, to know whether a span directive applies; the
//! raftstore's actors enter their peer's span for every message they handle, and that
//! alone was about 1% of a loaded node's CPU.

use std::io::IsTerminal;

use tracing::Level;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::filter::{filter_fn, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::api::request_log::ACCESS_LOG_TARGET;
use crate::config::LogConfig;

/// Keeps the access log's writer thread and the trace export; dropping it flushes what
/// is queued.
pub struct LogGuard {
    _access: Option<WorkerGuard>,
    _traces: Option<crate::trace_export::TraceExport>,
}

/// The global filter: a `Targets` or an `EnvFilter` (see the module documentation).
type GlobalFilter = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

/// The subscriber every layer sits on: the registry behind the global filter.
type Filtered = tracing_subscriber::layer::Layered<GlobalFilter, tracing_subscriber::Registry>;

/// The global filter for `spec` (what `RUST_LOG` or `log.level` says, `what` naming
/// which), with the access log's target at `access`.
fn global_filter(spec: &str, what: &str, access: LevelFilter) -> Result<GlobalFilter, String> {
    let invalid = |e: &dyn std::fmt::Display| format!("{what} {spec:?} is not a valid filter: {e}");
    if spec.contains('[') || spec.contains('{') {
        let filter = EnvFilter::try_new(spec).map_err(|e| invalid(&e))?;
        let directive = format!("{ACCESS_LOG_TARGET}={access}")
            .parse()
            .map_err(|e| format!("cannot set the access log's level: {e}"))?;
        return Ok(filter.add_directive(directive).boxed());
    }
    let targets: Targets = spec.parse().map_err(|e| invalid(&e))?;
    Ok(targets.with_target(ACCESS_LOG_TARGET, access).boxed())
}

/// Installs the process's log subscriber for `config`.
///
/// The level filter is global (a callsite it disables costs nothing, not even an event):
/// with per-layer filters, the `debug!` and `trace!` callsites of the raftstore's hot
/// paths (raft-rs's logger among them) reach the subscriber to be refused there, which
/// cost about a tenth of the read throughput in a side-by-side run. Only
/// with the access log on does the main layer get a filter of its own (to leave the
/// access lines to the access layer).
pub fn init(config: &LogConfig) -> Result<LogGuard, String> {
    let access = if config.access_log {
        LevelFilter::INFO
    } else {
        LevelFilter::OFF
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => global_filter(&spec, "RUST_LOG", access)?,
        _ => global_filter(&config.level, "log.level", access)?,
    };
    let ansi = std::io::stderr().is_terminal();
    let main = tracing_subscriber::fmt::layer()
        .with_target(true)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let mut layers: Vec<Box<dyn Layer<Filtered> + Send + Sync>> = Vec::new();
    let mut guard = None;
    if config.access_log {
        let (writer, worker) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(true)
            .thread_name("access-log")
            .finish(std::io::stderr());
        guard = Some(worker);
        layers.push(
            main.with_filter(filter_fn(|meta| meta.target() != ACCESS_LOG_TARGET))
                .boxed(),
        );
        layers.push(
            tracing_subscriber::fmt::layer()
                .with_target(true)
                .with_ansi(ansi)
                .with_writer(writer)
                .with_filter(Targets::new().with_target(ACCESS_LOG_TARGET, Level::INFO))
                .boxed(),
        );
    } else {
        layers.push(main.boxed());
    }
    let mut export = None;
    if let Some((layer, traces)) = crate::trace_export::init::<Filtered>(config)? {
        layers.push(layer.boxed());
        export = Some(traces);
    }
    tracing_subscriber::registry()
        .with(filter)
        .with(layers)
        .try_init()
        .map_err(|e| format!("cannot install the log subscriber: {e}"))?;
    Ok(LogGuard {
        _access: guard,
        _traces: export,
    })
}

#[cfg(test)]
mod tests {
    use tracing::Level;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Whether an event of `level` at `target` passes `filter`.
    fn passes(filter: GlobalFilter, target: &'static str, level: Level) -> bool {
        let subscriber = tracing_subscriber::registry().with(filter);
        tracing::subscriber::with_default(subscriber, || match (target, level) {
            ("tinykv_actors::peer::ready", Level::DEBUG) => {
                tracing::enabled!(target: "tinykv_actors::peer::ready", Level::DEBUG)
            }
            ("tinykv_actors::router", Level::DEBUG) => {
                tracing::enabled!(target: "tinykv_actors::router", Level::DEBUG)
            }
            ("tinykv_actors::router", Level::WARN) => {
                tracing::enabled!(target: "tinykv_actors::router", Level::WARN)
            }
            (ACCESS_LOG_TARGET, Level::INFO) => {
                tracing::enabled!(target: ACCESS_LOG_TARGET, Level::INFO)
            }
            _ => unreachable!("a case the test does not use"),
        })
    }

    #[test]
    fn targets_and_span_directives_filter_alike() {
        for spec in [
            "warn,tinykv_actors::peer=debug",
            "warn,[peer]=error,tinykv_actors::peer=debug",
        ] {
            let filter = || global_filter(spec, "RUST_LOG", LevelFilter::OFF).unwrap();
            assert!(
                passes(filter(), "tinykv_actors::peer::ready", Level::DEBUG),
                "{spec}"
            );
            assert!(
                !passes(filter(), "tinykv_actors::router", Level::DEBUG),
                "{spec}"
            );
            assert!(
                passes(filter(), "tinykv_actors::router", Level::WARN),
                "{spec}"
            );
            assert!(!passes(filter(), ACCESS_LOG_TARGET, Level::INFO), "{spec}");
        }
        let with_access = global_filter("warn", "log.level", LevelFilter::INFO).unwrap();
        assert!(passes(with_access, ACCESS_LOG_TARGET, Level::INFO));
    }

    #[test]
    fn an_invalid_spec_names_itself() {
        for spec in ["tinykv=loud", "[peer{region=}]=debug=x"] {
            let err = global_filter(spec, "RUST_LOG", LevelFilter::OFF)
                .err()
                .expect("refused");
            assert!(err.contains("RUST_LOG") && err.contains(spec), "{err}");
        }
    }
}
