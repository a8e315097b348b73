//! `tinykv-server`: runs one TinyKV-rs node.
//!
//! ```text
//! tinykv-server --config configs/node1.toml [--config more.toml] [--store-id N]
//!               [--data-dir DIR] [--log-level FILTER]
//! ```
//!
//! The configuration is layered as described in [`tinykv::config`]: the files in order,
//! then `TINYKV__SECTION__KEY` environment variables, then these flags. Logs go to stderr
//! through `tracing`, filtered by `RUST_LOG` if it is set and by `log.level` otherwise
//! (see [`tinykv::logging`]).
//!
//! A panic anywhere aborts the whole process after logging it: a storage node with a dead
//! actor would keep answering while part of it no longer works, whereas a restart replays
//! the raft log and comes back whole. The one exception is raft-rs asserting on a message
//! from the network, which costs that one peer a restart from disk
//! (`tinykv_actors::containment`). Memory comes from jemalloc (see `ALLOCATOR`). Startup
//! failures (a bad configuration names the offending key; a damaged or foreign data
//! directory names the directory) are printed as `error: ...` with exit status 1. A write
//! that fails once the node runs (disk full, an fsync error) stops the process with exit
//! status 74 before anything from that write is acknowledged (see the batch writers in
//! `tinykv-actors`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tinykv::config::{CliOverrides, Config};
use tinykv::server::node::run_node;

/// The node's allocator: jemalloc, as TiKV uses. A node allocates and frees small
/// objects on many threads (messages cross from the transport to the PeerFsms, to the
/// writers and back), where glibc's malloc spent about a seventh of the servers' CPU under
/// load and kept freed memory in per-thread arenas; side by side, jemalloc took 18% less
/// CPU per write with one region and 22 MiB less RSS on the PD's node at 10,000 regions
/// (docs/performance.md). Its background thread returns memory left unused for a few
/// seconds to the system, large buffers included: sixteen concurrent 8 MiB writes leave a
/// node at about 100 MB, as glibc did only with its mmap threshold pinned (without, 900).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    let _log = match tinykv::logging::init(&config.log) {
        Ok(guard) => guard,
        Err(e) => return fail(e),
    };
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

/// Makes any panic log itself and abort the process, but for the one kind the raftstore
/// contains (raft-rs asserting on a message from the network: that peer restarts from
/// disk; see `tinykv_actors::containment`).
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let backtrace = std::backtrace::Backtrace::force_capture();
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        if tinykv_actors::is_contained() {
            tracing::error!(thread, panic = %info, %backtrace, "contained panic; the peer restarts from disk");
            return;
        }
        tracing::error!(thread, panic = %info, %backtrace, "panic; aborting the node");
        std::process::abort();
    }));
}
