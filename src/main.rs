//! `tinykv-server`: runs one TinyKV-rs node.
//!
//! ```text
//! tinykv-server --config configs/node1.toml [--config more.toml] [--store-id N]
//!               [--data-dir DIR] [--log-level FILTER]
//! ```
//!
//! The configuration is layered as described in [`tinykv::config`]: the files in order,
//! then `TINYKV__SECTION__KEY` environment variables, then these flags. Logs go to stderr
//! through `tracing`, filtered by `RUST_LOG` if it is set and by `log.level` otherwise.
//!
//! A panic anywhere aborts the whole process after logging it: a storage node with a dead
//! actor would keep answering while part of it no longer works, whereas a restart replays
//! the raft log and comes back whole. The one exception is raft-rs asserting on a message
//! from the network, which costs that one peer a restart from disk
//! (`tinykv_actors::containment`). Large buffers are returned to the system as soon as
//! they are freed (see `return_large_buffers_to_the_system`). Startup failures (a bad configuration names the
//! offending key; a damaged or foreign data directory names the directory) are printed as
//! `error: ...` with exit status 1. A write that fails once the node runs (disk full, an
//! fsync error) stops the process with exit status 74 before anything from that write is
//! acknowledged (see the batch writers in `tinykv-actors`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tinykv::config::{CliOverrides, Config};
use tinykv::node::run_node;
use tracing_subscriber::EnvFilter;

/// Command-line flags of `tinykv-server`.
#[derive(Debug, Parser)]
#[command(name = "tinykv-server", version, about = "Runs one TinyKV-rs node")]
struct Cli {
    /// A TOML configuration file; repeat to layer several (later files win).
    #[arg(long = "config", value_name = "PATH", required = true)]
    configs: Vec<PathBuf>,
    /// Overrides node.store_id.
    #[arg(long, value_name = "ID")]
    store_id: Option<u64>,
    /// Overrides node.data_dir.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Overrides log.level (a tracing filter such as `info` or `info,tinykv_actors=debug`).
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
}

fn main() -> ExitCode {
    return_large_buffers_to_the_system();
    let cli = Cli::parse();
    let overrides = CliOverrides {
        store_id: cli.store_id,
        data_dir: cli.data_dir,
        log_level: cli.log_level,
    };
    let config = match Config::load(&cli.configs, &overrides) {
        Ok(config) => config,
        Err(e) => return fail(e),
    };
    if let Err(e) = init_tracing(&config.log.level) {
        return fail(e);
    }
    install_panic_hook();
    match actix_rt::System::new().block_on(run_node(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

/// Logs to stderr, filtered by `RUST_LOG` if set, else by `level`.
fn init_tracing(level: &str) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(&spec)
            .map_err(|e| format!("RUST_LOG {spec:?} is not a valid filter: {e}"))?,
        _ => EnvFilter::try_new(level)
            .map_err(|e| format!("log.level {level:?} is not a valid filter: {e}"))?,
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}

/// Makes any panic log itself and abort the process, but for the one kind the raftstore
/// contains (raft-rs asserting on a message from the network: that peer restarts from
/// disk; see `tinykv_actors::containment`).
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let backtrace = std::backtrace::Backtrace::force_capture();
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        if tinykv_actors::containment::is_contained() {
            tracing::error!(thread, panic = %info, %backtrace, "contained panic; the peer restarts from disk");
            return;
        }
        tracing::error!(thread, panic = %info, %backtrace, "panic; aborting the node");
        std::process::abort();
    }));
}

/// Makes the allocator give large buffers back to the system when they are freed.
///
/// glibc serves allocations above a threshold with their own mappings, but raises the
/// threshold to the size of each such block freed, up to 32 MiB: after a few large
/// values, every later one comes from the heap, and freed heap memory mostly stays with
/// the process (sixteen concurrent 8 MiB writes left a node at 900 MB instead of its usual
/// 150 MB). A fixed threshold keeps buffers of 1 MiB and more mapped and unmapped, which
/// costs a system call per large value and nothing for the small ones.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_large_buffers_to_the_system() {
    const M_MMAP_THRESHOLD: i32 = -3;
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    // SAFETY: mallopt only sets an allocator parameter; it is called before any thread
    // starts, as glibc asks.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_buffers_to_the_system() {}
