//! Forwards raft-rs's slog records into `tracing`.
//!
//! raft-rs 0.7 logs through slog and wants a `slog::Logger` for each RawNode. This drain
//! turns each record into a tracing event at the matching level, so RUST_LOG controls raft's
//! verbosity like everything else and raft's lines carry the caller's span (store, region,
//! peer).

use std::fmt::Write as _;

/// A slog drain that emits tracing events.
pub struct TracingDrain;

struct KvCollector<'a>(&'a mut String);

impl slog::Serializer for KvCollector<'_> {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments<'_>) -> slog::Result {
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(
        &self,
        record: &slog::Record<'_>,
        values: &slog::OwnedKVList,
    ) -> Result<(), slog::Never> {
        let mut fields = String::new();
        let _ = slog::KV::serialize(&record.kv(), record, &mut KvCollector(&mut fields));
        let _ = slog::KV::serialize(values, record, &mut KvCollector(&mut fields));
        let msg = record.msg();
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft", "{msg}{fields}")
            }
            slog::Level::Warning => tracing::warn!(target: "raft", "{msg}{fields}"),
            slog::Level::Info => tracing::info!(target: "raft", "{msg}{fields}"),
            slog::Level::Debug => tracing::debug!(target: "raft", "{msg}{fields}"),
            slog::Level::Trace => tracing::trace!(target: "raft", "{msg}{fields}"),
        }
        Ok(())
    }
}

/// A logger for raft-rs that writes through tracing.
pub fn raft_logger() -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!())
}
