//! Test harness for TinyKV-rs: an in-process cluster with a simulated network, TinyKV's
//! scenario driver, and helpers for multi-process tests of the real binary.
//!
//! - [`network`]: the simulated transport and its fault filters (drop, delay, partition,
//!   isolate);
//! - [`cluster`]: N stores in one process, each over its own directory, that can be
//!   stopped and restarted over the same data;
//! - [`generic`]: TinyKV's `GenericTest`: clients appending and scanning under chaos,
//!   checking that every acknowledged put is present exactly once and in order.
//! - [`process`]: real `tinykv-server` processes on loopback, killed and restarted;
//!   nodes can also join a running cluster;
//! - [`rest`]: REST calls for those tests that retry until the cluster answers;
//! - [`linearizability`]: a per-key linearizability checker for histories of gets, puts
//!   and deletes (Wing & Gong's search with Lowe's memoization);
//! - [`chaos`]: concurrent REST clients against real processes while a nemesis kills,
//!   pauses and partitions nodes and moves leaders and splits regions, the history
//!   checked for linearizability at the end;
//! - [`fuzz`]: arbitrary commands, raft messages and JSON for the fuzz tests;
//! - [`txn`]: a timestamp oracle and transaction coordinators for the in-process cluster.

#![warn(missing_docs)]

pub mod chaos;
pub mod cluster;
pub mod delay_switch;
pub mod fuzz;
pub mod generic;
pub mod linearizability;
pub mod netns;
pub mod network;
pub mod process;
pub mod rest;
pub mod txn;

pub use cluster::{Cluster, ClusterClient};
pub use network::{Filter, SimNetwork, Verdict};

/// Counts every panic of the process (of any thread), for tests that must see none:
/// raft-rs and the engine assert on input they do not expect, and an actor thread that
/// panics may not fail the test by itself.
pub fn count_panics() -> &'static std::sync::atomic::AtomicUsize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Once;
    static PANICS: AtomicUsize = AtomicUsize::new(0);
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
    &PANICS
}

/// Installs a tracing subscriber for a test (once per process), honouring RUST_LOG.
pub fn init_test_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}
