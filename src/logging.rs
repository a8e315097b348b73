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

use std::io::IsTerminal;

use tracing::Level;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::filter::{filter_fn, Targets};
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

/// The subscriber every layer sits on: the registry behind the global filter.
type Filtered = tracing_subscriber::layer::Layered<EnvFilter, tracing_subscriber::Registry>;

/// Installs the process's log subscriber for `config`.
///
/// The level filter is global (a callsite it disables costs nothing, not even an event):
/// with per-layer filters, the `debug!` and `trace!` callsites of the raftstore's hot
/// paths (raft-rs's logger among them) reach the subscriber to be refused there, which
/// cost about a tenth of the read throughput in a side-by-side run. Only
/// with the access log on does the main layer get a filter of its own (to leave the
/// access lines to the access layer).
pub fn init(config: &LogConfig) -> Result<LogGuard, String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(&spec)
            .map_err(|e| format!("RUST_LOG {spec:?} is not a valid filter: {e}"))?,
        _ => EnvFilter::try_new(&config.level)
            .map_err(|e| format!("log.level {:?} is not a valid filter: {e}", config.level))?,
    };
    let access = if config.access_log { "info" } else { "off" };
    let filter = filter.add_directive(
        format!("{ACCESS_LOG_TARGET}={access}")
            .parse()
            .map_err(|e| format!("cannot set the access log's level: {e}"))?,
    );
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
