//! `tinykv-hosts`: runs a command against a TinyKV-rs cluster on simulated hosts.
//!
//! ```text
//! tinykv-hosts [--nodes 3] [--delay-ms MS] [--delay-node N] [--loss PCT] [--loopback]
//!              [--link auto|bridge|userspace] [--server-bin PATH] -- COMMAND [ARGS...]
//! ```
//!
//! Starts `--nodes` real `tinykv-server` processes, each in a network namespace of its
//! own on a bridge (see `tinykv_integration::netns`; needs root), reached by host name.
//! With `--delay-ms` it adds that much latency (and `--loss` percent loss) to everything
//! node `--delay-node` sends (every node without it), so a round trip through it grows by
//! the delay. The hosts hang off a kernel bridge with `tc netem` for the delay, or, with
//! `--link userspace`, off a userspace switch that delays frames itself
//! (`tinykv_integration::delay_switch`); `--link auto` (the default) takes the bridge
//! unless a delay is asked for on a kernel without netem. `--link bridge` with a delay on
//! such a kernel exits with status 3 and a `SKIPPED:` line, never a silent run without the
//! delay. The first line of output names the link used. Once every node is
//! ready it runs `COMMAND`, with every `{endpoints}` in its arguments replaced by the
//! nodes' comma-separated HTTP URLs, and exits with the command's status. `--loopback`
//! runs the same cluster on loopback instead, for side-by-side baselines.
//!
//! `.ci/hosts-bench.sh` uses it to measure throughput and latency at several RTTs.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use clap::Parser;
use tinykv_integration::netns::{Hosts, Link};
use tinykv_integration::process::ProcessCluster;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "tinykv-hosts",
    about = "Runs a command against a TinyKV-rs cluster on simulated hosts (network namespaces)"
)]
struct Args {
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Latency to add to what a node sends, in milliseconds (tc netem).
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// The node whose traffic is delayed (default: every node).
    #[arg(long)]
    delay_node: Option<u64>,
    /// Packet loss to add with the delay, in percent.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Run on loopback instead of namespaces (a baseline).
    #[arg(long, conflicts_with_all = ["delay_ms", "delay_node"])]
    loopback: bool,
    /// What joins the hosts: auto, bridge (kernel bridge, tc netem) or userspace (a delay
    /// switch in this process).
    #[arg(long, default_value = "auto", value_parser = ["auto", "bridge", "userspace"])]
    link: String,
    /// The tinykv-server binary to run.
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// The command to run, and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(binary) = &args.server_bin {
        // Before any thread exists: ProcessCluster reads it.
        std::env::set_var("TINYKV_SERVER_BIN", binary);
    }
    let delayed = args.delay_ms > 0 || args.loss > 0.0;
    let link = match args.link.as_str() {
        "bridge" => Link::Bridge,
        "userspace" => Link::UserspaceSwitch,
        _ if !delayed || args.loopback => Link::Bridge,
        // A throwaway host tells whether this kernel has netem.
        _ => match Hosts::create(1) {
            Ok(probe) if probe.netem_available() => Link::Bridge,
            _ => Link::UserspaceSwitch,
        },
    };
    let cluster = if args.loopback {
        eprintln!("link: loopback");
        ProcessCluster::start(args.nodes)
    } else {
        eprintln!("link: {link:?}");
        match ProcessCluster::start_in_namespaces_linked(args.nodes, "", link) {
            Ok(cluster) => cluster,
            Err(why) => {
                eprintln!("SKIPPED: cannot make network namespaces here ({why})");
                return ExitCode::from(3);
            }
        }
    };
    if let (Some(hosts), true) = (cluster.hosts(), delayed) {
        let delayed: Vec<u64> = match args.delay_node {
            Some(node) => vec![node],
            None => (1..=args.nodes).collect(),
        };
        for node in delayed {
            if let Err(why) = hosts.set_delay(node, args.delay_ms, args.loss) {
                eprintln!("SKIPPED: tc netem is not available in this kernel ({why})");
                return ExitCode::from(3);
            }
        }
    }
    // Building a current-thread runtime fails only without the OS resources for its
    // driver (an epoll instance, a timer): nothing this tool could go on without.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(why) = runtime.block_on(wait_ready(&cluster, args.nodes)) {
        eprintln!("error: {why}");
        return ExitCode::FAILURE;
    }
    let endpoints: Vec<String> = (1..=args.nodes).map(|id| cluster.url(id)).collect();
    let endpoints = endpoints.join(",");
    let status = Command::new(&args.command[0])
        .args(
            args.command[1..]
                .iter()
                .map(|a| a.replace("{endpoints}", &endpoints)),
        )
        .status();
    match status {
        Ok(status) => ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("error: cannot run {}: {e}", args.command[0]);
            ExitCode::FAILURE
        }
    }
}

/// Waits until every node answers its readiness probe (the cluster serves every key).
async fn wait_ready(cluster: &ProcessCluster, nodes: u64) -> Result<(), String> {
    let http = tinykv::security::http_client_builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| e.to_string())?;
    for id in 1..=nodes {
        cluster
            .wait_ready(id, &http, Duration::from_secs(60))
            .await?;
    }
    Ok(())
}
