//! Real `tinykv-server` processes on loopback, for multi-process tests.
//!
//! [`ProcessCluster`] writes one TOML config per node into a temporary directory (free
//! ports picked by the OS, data directories inside the temporary directory), starts the
//! binary for each, and can kill a node with SIGKILL and start it again over the same data.
//! The binary is found next to the test executable's target directory (built first if it
//! is missing), or at `$TINYKV_SERVER_BIN`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Ports of one node.
#[derive(Debug, Clone, Copy)]
pub struct NodePorts {
    /// Store id.
    pub id: u64,
    /// Raft (store-to-store) port.
    pub raft: u16,
    /// HTTP port.
    pub http: u16,
}

/// A cluster of real server processes; see the module documentation.
pub struct ProcessCluster {
    dir: TempDir,
    binary: PathBuf,
    nodes: Vec<NodePorts>,
    children: Vec<Option<Child>>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Path of the `tinykv-server` binary, building it if needed.
pub fn server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("TINYKV_SERVER_BIN") {
        return PathBuf::from(path);
    }
    // target/<profile>/deps/<test exe> → target/<profile>/tinykv-server
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory");
    let binary = profile_dir.join("tinykv-server");
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "tinykv", "--bin", "tinykv-server"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building tinykv-server failed");
    }
    binary
}

impl ProcessCluster {
    /// Writes configs for `count` nodes and starts them all.
    pub fn start(count: u64) -> ProcessCluster {
        ProcessCluster::start_with_raftstore(count, "")
    }

    /// [`ProcessCluster::start`] with more `[raftstore]` settings, given as TOML lines
    /// (for example `"region_max_size = 262144\n"`).
    pub fn start_with_raftstore(count: u64, raftstore: &str) -> ProcessCluster {
        let dir = tempfile::Builder::new()
            .prefix("tinykv-procs-")
            .tempdir()
            .expect("temp dir");
        let nodes: Vec<NodePorts> = (1..=count)
            .map(|id| NodePorts {
                id,
                raft: free_port(),
                http: free_port(),
            })
            .collect();
        let mut stores = String::new();
        for n in &nodes {
            stores.push_str(&format!(
                "[[cluster.stores]]\nid = {}\nraft_addr = \"127.0.0.1:{}\"\nhttp_addr = \"127.0.0.1:{}\"\n\n",
                n.id, n.raft, n.http
            ));
        }
        for n in &nodes {
            let config = format!(
                "[node]\nstore_id = {}\ndata_dir = \"{}\"\n\n[raftstore]\nraft_base_tick_ms = 50\n{}\n{}",
                n.id,
                dir.path().join(format!("node{}", n.id)).display(),
                raftstore,
                stores
            );
            std::fs::write(dir.path().join(format!("node{}.toml", n.id)), config)
                .expect("write config");
        }
        let mut cluster = ProcessCluster {
            dir,
            binary: server_binary(),
            children: nodes.iter().map(|_| None).collect(),
            nodes,
        };
        for id in 1..=count {
            cluster.start_node(id);
        }
        cluster
    }

    /// The nodes' ports.
    pub fn nodes(&self) -> &[NodePorts] {
        &self.nodes
    }

    /// Base URL of node `id`'s HTTP API.
    pub fn url(&self, id: u64) -> String {
        format!("http://127.0.0.1:{}", self.nodes[(id - 1) as usize].http)
    }

    /// Starts node `id` (again) over its data directory.
    pub fn start_node(&mut self, id: u64) {
        let idx = (id - 1) as usize;
        assert!(self.children[idx].is_none(), "node {id} is running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node{id}.log")))
            .expect("log file");
        let child = Command::new(&self.binary)
            .arg("--config")
            .arg(self.dir.path().join(format!("node{id}.toml")))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn tinykv-server");
        self.children[idx] = Some(child);
    }

    /// Kills node `id` with SIGKILL: no shutdown, no flush.
    pub fn kill_node(&mut self, id: u64) {
        if let Some(mut child) = self.children[(id - 1) as usize].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The log of node `id` so far.
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node{id}.log"))).unwrap_or_default()
    }

    /// Waits until node `id` answers `/health`.
    pub async fn wait_healthy(&self, id: u64, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("{}/health", self.url(id));
        loop {
            if let Ok(resp) = http.get(&url).send().await {
                if resp.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node {id} not healthy after 30 s; log:\n{}",
                self.log(id)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for id in 1..=self.nodes.len() as u64 {
            self.kill_node(id);
        }
    }
}
