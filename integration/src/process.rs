//! Real `tinykv-server` processes on loopback, for multi-process tests.
//!
//! [`ProcessCluster`] writes one TOML config per node into a temporary directory (free
//! ports picked by the OS, data directories inside the temporary directory), starts the
//! binary for each, and can kill a node with SIGKILL and start it again over the same data,
//! or pause it with SIGSTOP and resume it with SIGCONT; durability tests also kill every
//! node at once, reach a stopped node's data directory, and wait for a node that refuses
//! to start to exit. A node can also join the running cluster
//! ([`ProcessCluster::add_joining_node`]). The binary is found at `$TINYKV_SERVER_BIN`
//! (`tinykv-ctl`, for tests of the CLI, at `$TINYKV_CTL_BIN`), or next to the running
//! executable, or in the target directory of the test executable (built first if it is
//! missing).
//!
//! A secure cluster ([`ProcessCluster::start_secure`]) runs with TLS everywhere: the
//! cluster makes a CA in its directory, a certificate for each store (and for each node
//! that joins), and an `admin` user certificate its [`ProcessCluster::client`] presents;
//! tests issue more ([`ProcessCluster::issue`]) to play a compromised node or a stranger.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::netns::{Hosts, Link};
use tinykv::security::certs::CertAuthority;
use tinykv::security::{CertIdentity, ClientTlsFiles, TlsFiles};

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
    /// The `[raftstore]` lines and extra sections every node's config gets.
    shared_toml: String,
    /// How many nodes the cluster started with (the others joined).
    initial_count: usize,
    /// The CA of a secure cluster, and whether clients need certificates.
    secure: Option<Secure>,
    /// Set by [`ProcessCluster::start_listening_everywhere`]: the host name the nodes
    /// advertise, while they listen on `0.0.0.0`.
    advertised_host: Option<String>,
    /// Set by [`ProcessCluster::start_in_namespaces`]: a simulated host per node.
    /// Declared last: dropped after the nodes are killed.
    hosts: Option<Hosts>,
}

/// What a secure cluster keeps: its CA, whether clients must present a certificate, and
/// more `[security]` lines for every node.
struct Secure {
    ca: CertAuthority,
    client_cert_auth: bool,
    more_security: String,
}

/// `count` distinct loopback ports that were free a moment ago, none of them in `taken`.
/// The listeners are all held until every port is chosen, so the kernel cannot hand
/// the same port out twice (it may, once one is closed, which made two nodes of one
/// cluster share an address).
fn free_ports(count: usize, taken: &[u16]) -> Vec<u16> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < count {
        let listener = TcpListener::bind("127.0.0.1:0").expect("free port");
        let port = listener.local_addr().expect("local address").port();
        if !taken.contains(&port) && !ports.contains(&port) {
            ports.push(port);
        }
        held.push(listener);
    }
    ports
}

/// Path of the `tinykv-server` binary, building it if needed.
pub fn server_binary() -> PathBuf {
    workspace_binary("tinykv-server", "TINYKV_SERVER_BIN")
}

/// Path of the `tinykv-ctl` binary, building it if needed.
pub fn ctl_binary() -> PathBuf {
    workspace_binary("tinykv-ctl", "TINYKV_CTL_BIN")
}

/// Path of the `tinykv-bench` binary, building it if needed.
pub fn bench_binary() -> PathBuf {
    workspace_binary("tinykv-bench", "TINYKV_BENCH_BIN")
}

/// Path of binary `name` of the `tinykv` package: `$<env_var>`, or next to the running
/// executable, or in the target directory of the test executable (built first if it is
/// missing).
fn workspace_binary(name: &str, env_var: &str) -> PathBuf {
    if let Ok(path) = std::env::var(env_var) {
        return PathBuf::from(path);
    }
    // A binary such as target/<profile>/tinykv-chaos has the others beside it.
    let exe = std::env::current_exe().expect("current exe");
    if let Some(beside) = exe.parent().map(|dir| dir.join(name)) {
        if beside.exists() {
            return beside;
        }
    }
    // target/<profile>/deps/<test exe> → target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory");
    let binary = profile_dir.join(name);
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "tinykv", "--bin", name])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building {name} failed");
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
        ProcessCluster::start_with_raftstore_and_config(count, raftstore, "")
    }

    /// [`ProcessCluster::start`] with more configuration sections in every node's file,
    /// given as TOML (for example `"[debug]\nfault_injection = true\n"`). They must not
    /// repeat `[node]` or `[raftstore]`, which the cluster writes itself.
    pub fn start_with_config(count: u64, extra_toml: &str) -> ProcessCluster {
        ProcessCluster::start_with_raftstore_and_config(count, "", extra_toml)
    }

    /// Both [`ProcessCluster::start_with_raftstore`] and
    /// [`ProcessCluster::start_with_config`].
    pub fn start_with_raftstore_and_config(
        count: u64,
        raftstore: &str,
        extra_toml: &str,
    ) -> ProcessCluster {
        ProcessCluster::launch(count, raftstore, extra_toml, None)
    }

    /// Writes configs for `count` nodes with TLS everywhere (see the module
    /// documentation) and starts them all; with `client_cert_auth`, clients of the REST
    /// API must present a certificate too. `extra_toml` as for
    /// [`ProcessCluster::start_with_config`] (without `[security]`).
    pub fn start_secure(count: u64, client_cert_auth: bool, extra_toml: &str) -> ProcessCluster {
        ProcessCluster::start_secure_with(count, client_cert_auth, "", extra_toml)
    }

    /// [`ProcessCluster::start_secure`] with more lines for the `[security]` section
    /// (for example `root_token = "..."`).
    pub fn start_secure_with(
        count: u64,
        client_cert_auth: bool,
        more_security: &str,
        extra_toml: &str,
    ) -> ProcessCluster {
        let ca = CertAuthority::generate("process cluster CA").expect("a CA");
        let secure = Secure {
            ca,
            client_cert_auth,
            more_security: more_security.to_string(),
        };
        ProcessCluster::launch(count, "", extra_toml, Some(secure))
    }

    /// Starts `count` nodes that listen on every interface (`0.0.0.0`, so plaintext
    /// needs `security.insecure`) and advertise `host` (a name, such as `localhost`) in
    /// the address book, as nodes in containers do. `extra_toml` as for
    /// [`ProcessCluster::start_with_config`] (without `[security]`).
    pub fn start_listening_everywhere(count: u64, host: &str, extra_toml: &str) -> ProcessCluster {
        ProcessCluster::launch_with(
            count,
            "",
            &format!("[security]\ninsecure = true\n{extra_toml}"),
            None,
            Some(host.to_string()),
        )
    }

    /// Starts `count` nodes, each in a network namespace of its own (see
    /// [`crate::netns`]): node N listens on `0.0.0.0` at ports 20160 and 8080 of host
    /// `tkvN` and advertises that name; the test reaches it at its address on the bridge.
    /// `Err` says why namespaces cannot be made here (not root, no `ip`), for the caller to
    /// skip with. `extra_toml` as for [`ProcessCluster::start_with_config`]; it follows
    /// a `[security]` section, so it may begin with more lines of that section.
    pub fn start_in_namespaces(count: u64, extra_toml: &str) -> Result<ProcessCluster, String> {
        ProcessCluster::start_in_namespaces_linked(count, extra_toml, Link::Bridge)
    }

    /// [`ProcessCluster::start_in_namespaces`], the hosts joined by `link`.
    pub fn start_in_namespaces_linked(
        count: u64,
        extra_toml: &str,
        link: Link,
    ) -> Result<ProcessCluster, String> {
        let hosts = Hosts::create_linked(count, link)?;
        let mut cluster = ProcessCluster::assemble(
            count,
            "",
            &format!("[security]\ninsecure = true\n{extra_toml}"),
            None,
            None,
            Some(hosts),
        );
        for id in 1..=count {
            cluster.start_node(id);
        }
        Ok(cluster)
    }

    /// The simulated hosts of a cluster started in namespaces.
    pub fn hosts(&self) -> Option<&Hosts> {
        self.hosts.as_ref()
    }

    fn launch(
        count: u64,
        raftstore: &str,
        extra_toml: &str,
        secure: Option<Secure>,
    ) -> ProcessCluster {
        ProcessCluster::launch_with(count, raftstore, extra_toml, secure, None)
    }

    fn launch_with(
        count: u64,
        raftstore: &str,
        extra_toml: &str,
        secure: Option<Secure>,
        advertised_host: Option<String>,
    ) -> ProcessCluster {
        let mut cluster =
            ProcessCluster::assemble(count, raftstore, extra_toml, secure, advertised_host, None);
        for id in 1..=count {
            cluster.start_node(id);
        }
        cluster
    }

    /// Writes the configs of a new cluster, without starting it.
    fn assemble(
        count: u64,
        raftstore: &str,
        extra_toml: &str,
        secure: Option<Secure>,
        advertised_host: Option<String>,
        hosts: Option<Hosts>,
    ) -> ProcessCluster {
        let dir = tempfile::Builder::new()
            .prefix("tinykv-procs-")
            .tempdir()
            .expect("temp dir");
        let ports = match hosts {
            // Every simulated host has its own ports.
            Some(_) => [20160, 8080].repeat(count as usize),
            None => free_ports(2 * count as usize, &[]),
        };
        let nodes: Vec<NodePorts> = (1..=count)
            .zip(ports.chunks(2))
            .map(|(id, pair)| NodePorts {
                id,
                raft: pair[0],
                http: pair[1],
            })
            .collect();
        let shared_toml =
            format!("[raftstore]\nraft_base_tick_ms = 50\n{raftstore}\n{extra_toml}\n");
        let cluster = ProcessCluster {
            dir,
            binary: server_binary(),
            children: nodes.iter().map(|_| None).collect(),
            nodes,
            shared_toml,
            initial_count: count as usize,
            secure,
            advertised_host,
            hosts,
        };
        if let Some(secure) = &cluster.secure {
            std::fs::create_dir_all(cluster.certs_dir()).expect("certs dir");
            std::fs::write(cluster.ca_path(), &secure.ca.issued.cert_pem).expect("write CA");
            cluster.issue("user-admin", &CertIdentity::User("admin".into()));
        }
        for n in cluster.nodes.clone() {
            let mut node = format!(
                "[node]\nstore_id = {}\ndata_dir = \"{}\"\n",
                n.id,
                cluster.data_dir(n.id).display()
            );
            if cluster.advertised_host.is_some() || cluster.hosts.is_some() {
                node.push_str(&format!(
                    "listen_raft_addr = \"0.0.0.0:{}\"\nlisten_http_addr = \"0.0.0.0:{}\"\n",
                    n.raft, n.http
                ));
            }
            cluster.write_config(n.id, &node, "");
        }
        cluster
    }

    /// Starts a new node that joins the running cluster (through every node's peer
    /// address); returns its slot, the id [`ProcessCluster::url`] and the other methods
    /// take. The placement driver gives the first joiner the next free store id, which
    /// is this slot; a test can check that through `/health`.
    pub fn add_joining_node(&mut self) -> u64 {
        let id = self.nodes.len() as u64 + 1;
        let taken: Vec<u16> = self.nodes.iter().flat_map(|n| [n.raft, n.http]).collect();
        let pair = free_ports(2, &taken);
        let ports = NodePorts {
            id,
            raft: pair[0],
            http: pair[1],
        };
        let join: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("\"127.0.0.1:{}\"", n.raft))
            .collect();
        self.nodes.push(ports);
        self.children.push(None);
        let node = format!(
            "[node]\ndata_dir = \"{}\"\nraft_addr = \"127.0.0.1:{}\"\nhttp_addr = \"127.0.0.1:{}\"\n",
            self.data_dir(id).display(),
            ports.raft,
            ports.http
        );
        self.write_config(
            id,
            &node,
            &format!("[cluster]\njoin = [{}]\n", join.join(", ")),
        );
        self.start_node(id);
        id
    }

    /// Writes `node<id>.toml`: `node_section`, the shared sections, `cluster_section`, and
    /// the address book of the initial stores; in a secure cluster, a `[security]`
    /// section with a certificate for store `id`, issued now.
    fn write_config(&self, id: u64, node_section: &str, cluster_section: &str) {
        let mut config = format!("{node_section}\n{}\n{cluster_section}\n", self.shared_toml);
        if let Some(secure) = &self.secure {
            let files = self.issue(&format!("store-{id}"), &CertIdentity::Store(id));
            config.push_str(&format!(
                "[security]\nca_path = {:?}\ncert_path = {:?}\nkey_path = {:?}\n\
                 client_cert_auth = {}\nreload_interval_ms = 200\n{}\n\n",
                files.ca, files.cert, files.key, secure.client_cert_auth, secure.more_security
            ));
        }
        for n in &self.nodes[..self.initial_count] {
            let host = match (&self.hosts, &self.advertised_host) {
                (Some(hosts), _) => hosts.name(n.id),
                (None, Some(host)) => host.clone(),
                (None, None) => "127.0.0.1".into(),
            };
            config.push_str(&format!(
                "[[cluster.stores]]\nid = {}\nraft_addr = \"{host}:{}\"\nhttp_addr = \"{host}:{}\"\n\n",
                n.id, n.raft, n.http
            ));
        }
        std::fs::write(self.config_path(id), config).expect("write config");
    }

    /// The config file of node `id`; a test may edit it before restarting the node.
    pub fn config_path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}.toml"))
    }

    /// The nodes' ports.
    pub fn nodes(&self) -> &[NodePorts] {
        &self.nodes
    }

    /// Base URL of node `id`'s HTTP API (`https` in a secure cluster).
    pub fn url(&self, id: u64) -> String {
        let scheme = if self.secure.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.http_addr(id))
    }

    /// The address the test reaches node `id`'s host at.
    fn reach(&self, id: u64) -> String {
        match &self.hosts {
            Some(hosts) => hosts.ip(id),
            None => "127.0.0.1".into(),
        }
    }

    /// The peer (raft) address of node `id`.
    pub fn peer_addr(&self, id: u64) -> String {
        format!("{}:{}", self.reach(id), self.nodes[(id - 1) as usize].raft)
    }

    /// The client (HTTP) address of node `id`, without a scheme.
    pub fn http_addr(&self, id: u64) -> String {
        format!("{}:{}", self.reach(id), self.nodes[(id - 1) as usize].http)
    }

    /// Where a secure cluster keeps its certificates.
    pub fn certs_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// The CA certificate of a secure cluster.
    pub fn ca_path(&self) -> PathBuf {
        self.certs_dir().join("ca.pem")
    }

    /// Issues a certificate for `identity` with the secure cluster's CA into
    /// `certs/<name>.pem` and `.key` (replacing any), valid for 127.0.0.1 and localhost;
    /// returns the files of whoever uses it. Panics on a plaintext cluster.
    pub fn issue(&self, name: &str, identity: &CertIdentity) -> TlsFiles {
        let secure = self.secure.as_ref().expect("a secure cluster");
        let issued = secure
            .ca
            .issue(identity, &["127.0.0.1".into(), "localhost".into()], 2)
            .expect("a certificate");
        let files = TlsFiles {
            ca: self.ca_path(),
            cert: self.certs_dir().join(format!("{name}.pem")),
            key: self.certs_dir().join(format!("{name}.key")),
        };
        // The key first: a node reloading between the two writes sees a certificate
        // without its key and keeps the old pair.
        std::fs::write(&files.key, issued.key_pem).expect("write key");
        std::fs::write(&files.cert, issued.cert_pem).expect("write certificate");
        files
    }

    /// An HTTP client of the REST API (15 s per request): plain, or in a secure cluster
    /// one that trusts the CA and presents the `admin` user certificate.
    pub fn client(&self) -> reqwest::Client {
        self.client_builder()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("an HTTP client")
    }

    /// A builder of [`ProcessCluster::client`]'s kind of client, to set more on.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        match &self.secure {
            None => tinykv::security::http_client_builder(),
            Some(_) => ClientTlsFiles {
                ca: self.ca_path(),
                cert_and_key: Some((
                    self.certs_dir().join("user-admin.pem"),
                    self.certs_dir().join("user-admin.key"),
                )),
            }
            .http_client_builder()
            .expect("the admin client's TLS files"),
        }
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
        let mut command = match &self.hosts {
            Some(hosts) => hosts.command(id, &self.binary),
            None => Command::new(&self.binary),
        };
        let child = command
            .arg("--config")
            .arg(self.config_path(id))
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

    /// The process id of node `id`, if it runs (or is paused).
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.children[(id - 1) as usize].as_ref().map(Child::id)
    }

    /// Whether node `id` has a process (running or paused).
    pub fn is_running(&self, id: u64) -> bool {
        self.children[(id - 1) as usize].is_some()
    }

    /// Pauses node `id` with SIGSTOP: it keeps its sockets but answers nothing, like a
    /// machine stalled by the hypervisor or a long GC pause. No-op if it does not run.
    pub fn pause_node(&self, id: u64) {
        self.signal(id, "-STOP");
    }

    /// Resumes node `id` after [`ProcessCluster::pause_node`] with SIGCONT.
    pub fn resume_node(&self, id: u64) {
        self.signal(id, "-CONT");
    }

    fn signal(&self, id: u64, signal: &str) {
        if let Some(pid) = self.pid(id) {
            let status = Command::new("kill")
                .arg(signal)
                .arg(pid.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if !matches!(status, Ok(s) if s.success()) {
                eprintln!("kill {signal} {pid} (node {id}) failed: {status:?}");
            }
        }
    }

    /// The directory holding the nodes' configs, logs and data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops node `id` as an operator would, with SIGTERM, and waits for it to exit
    /// (SIGKILL after 15 s); returns whether it exited by itself.
    pub fn stop_node(&mut self, id: u64) -> bool {
        self.signal(id, "-TERM");
        let exited = self.wait_exit(id, Duration::from_secs(15)).is_some();
        if !exited {
            self.kill_node(id);
        }
        exited
    }

    /// Kills node `id` with SIGKILL: no shutdown, no flush.
    pub fn kill_node(&mut self, id: u64) {
        if let Some(mut child) = self.children[(id - 1) as usize].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills every running node with SIGKILL at once (all signals sent before waiting for
    /// any), like a power cut of the whole cluster.
    pub fn kill_all(&mut self) {
        let mut killed = Vec::new();
        for child in self.children.iter_mut() {
            if let Some(mut child) = child.take() {
                let _ = child.kill();
                killed.push(child);
            }
        }
        for mut child in killed {
            let _ = child.wait();
        }
    }

    /// The data directory of node `id` (its `node.data_dir`).
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}"))
    }

    /// Waits up to `timeout` for node `id`'s process to exit by itself; returns its exit
    /// status (and forgets the process), or `None` if it still runs (or never ran).
    pub fn wait_exit(&mut self, id: u64, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let slot = &mut self.children[(id - 1) as usize];
        loop {
            let status = slot.as_mut()?.try_wait().expect("wait for a node");
            if let Some(status) = status {
                *slot = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log of node `id` so far.
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node{id}.log"))).unwrap_or_default()
    }

    /// Waits up to `within` until node `id` answers the readiness probe `/health` with
    /// 200 (the placement driver sees every key served, and the node is not draining);
    /// says why not, with the node's log, if it does not.
    pub async fn wait_ready(
        &self,
        id: u64,
        http: &reqwest::Client,
        within: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + within;
        let url = format!("{}/health", self.url(id));
        loop {
            if matches!(http.get(&url).send().await, Ok(r) if r.status() == 200) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "node {id} was not ready within {within:?}; log:\n{}",
                    self.log(id)
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until node `id` answers `/health?live` (it is up, whatever the cluster).
    pub async fn wait_healthy(&self, id: u64, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("{}/health?live", self.url(id));
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
