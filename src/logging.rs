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
use tracing_subscriber::filter::Targets;
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

/// Installs the process's log subscriber for `config`.
pub fn init(config: &LogConfig) -> Result<LogGuard, String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(&spec)
            .map_err(|e| format!("RUST_LOG {spec:?} is not a valid filter: {e}"))?,
        _ => EnvFilter::try_new(&config.level)
            .map_err(|e| format!("log.level {:?} is not a valid filter: {e}", config.level))?,
    };
    let access_off = format!("{ACCESS_LOG_TARGET}=off")
        .parse()
        .map_err(|e| format!("cannot exclude the access log: {e}"))?;
    let ansi = std::io::stderr().is_terminal();
    let main = tracing_subscriber::fmt::layer()
        .with_target(true)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_filter(filter.add_directive(access_off));
    let (access, guard) = if config.access_log {
        let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(true)
            .thread_name("access-log")
            .finish(std::io::stderr());
        let layer = tracing_subscriber::fmt::layer()
            .with_target(true)
            .with_ansi(ansi)
            .with_writer(writer)
            .with_filter(Targets::new().with_target(ACCESS_LOG_TARGET, Level::INFO));
        (Some(layer), Some(guard))
    } else {
        (None, None)
    };
    let subscriber = tracing_subscriber::registry().with(main).with(access);
    let (traces, export) = match crate::trace_export::init(config)? {
        Some((layer, export)) => (Some(layer), Some(export)),
        None => (None, None),
    };
    subscriber
        .with(traces)
        .try_init()
        .map_err(|e| format!("cannot install the log subscriber: {e}"))?;
    Ok(LogGuard {
        _access: guard,
        _traces: export,
    })
}
