//! The node's configuration, and where each setting comes from.
//!
//! A node reads one or more TOML files (`--config` may be given several times, and a
//! later file overrides an earlier one key by key), then environment variables named
//! `TINYKV__SECTION__KEY` (for example `TINYKV__API__MAX_KEY_BYTES=1024`, or
//! `TINYKV__CLUSTER__INITIAL_STORES=1,2,3` for a list), then the few settings the command
//! line can give (`--store-id`, `--data-dir`, `--log-level`). The layers are merged by the
//! `config` crate and deserialized into [`Config`].
//!
//! Every section rejects keys it does not know, so a typo fails the start naming the key
//! instead of silently leaving a default in force. [`Config::validate`] then checks what
//! types cannot: that this store is in the address book, that ids and addresses are
//! unique, that limits are positive. Its messages name the offending key too.
//!
//! `[[cluster.stores]]` is the address book the cluster starts with: the initial stores
//! and their addresses. A node listens on the addresses of its own entry. A node that
//! joins a running cluster instead has no `node.store_id`: it names its own addresses in
//! `node.raft_addr` and `node.http_addr` and the peer addresses (`raft_addr`) of any
//! existing nodes in `cluster.join`, and
//! gets its store id from the placement driver (see [`crate::pd`]); from then on
//! the placement driver's heartbeat answers keep every node's address book current.
//! These are *advertised* addresses, what others dial (never `0.0.0.0`); a node binds
//! them too unless `node.listen_raft_addr` / `node.listen_http_addr` say where to listen
//! instead (see [`Config::listen_address`] and `crate::server::address_book` for which address
//! wins when the config and the placement driver disagree).

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use config::{Environment, File, FileFormat};
use serde::{Deserialize, Deserializer, Serialize};
use tinykv_actors::RaftStoreConfig;

use crate::error::{Error, Result};
use crate::kv_service::ServiceTimeouts;

/// Largest value a client may configure for `api.max_value_bytes`: the raftstore's own
/// bound on a written value (a value travels in a raft message, which must fit one
/// transport frame with room to spare).
pub const MAX_VALUE_BYTES_CEILING: usize = tinykv_actors::validation::MAX_VALUE_BYTES;

/// Largest value a client may configure for `api.max_key_bytes`: the longest key whose
/// write's session record the engine stores.
pub const MAX_KEY_BYTES_CEILING: usize = tinykv_actors::MAX_WRITTEN_KEY_BYTES;

/// The whole configuration of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Who this node is and where it keeps its data.
    pub node: NodeConfig,
    /// The stores of the cluster.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// Limits and timeouts of the client API.
    #[serde(default)]
    pub api: ApiConfig,
    /// Settings of the raftstore.
    #[serde(default)]
    pub raftstore: RaftStoreConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// The embedded placement driver: heartbeats and scheduling.
    #[serde(default)]
    pub pd: PdConfig,
    /// TLS for clients and peers; see [`crate::security`].
    #[serde(default)]
    pub security: SecurityConfig,
    /// Garbage collection of transactions' old versions.
    #[serde(default)]
    pub gc: GcConfig,
    /// Switches for tests; all off by default.
    #[serde(default)]
    pub debug: DebugConfig,
}

/// The `[node]` section: this node's identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's store id; it must appear in `cluster.stores`. 0 (the default) means
    /// the node joins a running cluster through `cluster.join` and gets its id from the
    /// placement driver (kept in the data directory's `STORE` file across restarts).
    #[serde(default)]
    pub store_id: u64,
    /// The cluster this store belongs to; a data directory never changes clusters.
    #[serde(default = "default_cluster_id")]
    pub cluster_id: u64,
    /// Directory of the store's data (the engine lives in `<data_dir>/db`).
    pub data_dir: PathBuf,
    /// `host:port` other nodes dial for this node's raft transport (its *advertised*
    /// peer address), for a node that is not in `cluster.stores` (a joining node) or
    /// whose entry there is out of date; otherwise taken from its entry there. The host
    /// may be a name, resolved again on every reconnect; it may not be `0.0.0.0` or `::`.
    #[serde(default)]
    pub raft_addr: Option<String>,
    /// `host:port` clients and other nodes dial for this node's HTTP API (advertised);
    /// see `raft_addr`.
    #[serde(default)]
    pub http_addr: Option<String>,
    /// Where the raft listener binds, when that is not the advertised address: for
    /// example `0.0.0.0:20160` in a container or behind a port mapping. Defaults to the
    /// advertised peer address.
    #[serde(default)]
    pub listen_raft_addr: Option<String>,
    /// Where the HTTP listener binds; defaults to the advertised HTTP address.
    #[serde(default)]
    pub listen_http_addr: Option<String>,
}

fn default_cluster_id() -> u64 {
    1
}

/// The `[cluster]` section: the static address book.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Stores that hold a peer of the first region when the cluster is created. Empty
    /// (the default) means every store in `stores`.
    #[serde(default, deserialize_with = "one_or_many")]
    pub initial_stores: Vec<u64>,
    /// The stores the cluster starts with, and their addresses.
    #[serde(default)]
    pub stores: Vec<StoreAddress>,
    /// Peer addresses (`host:port`, their `raft_addr`) of existing nodes a joining node
    /// asks to join through; any one that answers is enough.
    #[serde(default, deserialize_with = "strings_one_or_many")]
    pub join: Vec<String>,
}

/// Where one store listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreAddress {
    /// The store's id.
    pub id: u64,
    /// `host:port` of the store's raft transport.
    pub raft_addr: String,
    /// `host:port` of the store's HTTP API.
    pub http_addr: String,
}

/// The `[api]` section: client request limits and timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Longest key, in bytes.
    pub max_key_bytes: usize,
    /// Longest value, in bytes.
    pub max_value_bytes: usize,
    /// Largest `limit` a scan may ask for.
    pub max_scan_limit: usize,
    /// The `limit` of a scan that names none.
    pub default_scan_limit: usize,
    /// Total time one client request may take, retries included.
    pub request_timeout_ms: u64,
    /// Time one attempt (on the local store, or forwarded to another node) may take.
    pub attempt_timeout_ms: u64,
    /// How long a region remembers a write's request id (its `Idempotency-Key`, or the
    /// one the node made): a retry within it applies at most once. At least
    /// `request_timeout_ms`, since the node retries a write until then.
    pub idempotency_ttl_ms: u64,
    /// Threads serving HTTP.
    pub http_workers: usize,
    /// Requests taking at least this long are logged at `warn` (method, path, status,
    /// duration) and counted in `tinykv_http_slow_requests_total`.
    pub slow_request_ms: u64,
    /// Most bytes of keys and values one scan answers with (at least one pair, whatever
    /// its size); a scan cut short names the key to continue from in `next`.
    pub max_scan_bytes: usize,
    /// Longest time a request head may take to arrive (408 `header_timeout` after).
    pub header_read_timeout_ms: u64,
    /// Longest time a request body may take to arrive (408 `body_timeout` after).
    pub body_read_timeout_ms: u64,
    /// Most client requests in flight at once; more are refused with 503 `overloaded`.
    pub max_in_flight_requests: usize,
    /// Most request-body bytes in flight at once (a request reserves its
    /// `Content-Length`); more are refused with 503 `overloaded`.
    pub max_in_flight_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_key_bytes: 4096,
            max_value_bytes: 8 * 1024 * 1024,
            max_scan_limit: 10_000,
            default_scan_limit: 1_000,
            request_timeout_ms: 10_000,
            attempt_timeout_ms: 3_000,
            idempotency_ttl_ms: 300_000,
            http_workers: 2,
            slow_request_ms: 1_000,
            max_scan_bytes: 4 * 1024 * 1024,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            max_in_flight_requests: 4096,
            max_in_flight_bytes: 32 * 1024 * 1024,
        }
    }
}

impl ApiConfig {
    /// The request and attempt timeouts, as the [`crate::kv_service::KvService`] takes them.
    pub fn service_timeouts(&self) -> ServiceTimeouts {
        ServiceTimeouts {
            request: Duration::from_millis(self.request_timeout_ms),
            attempt: Duration::from_millis(self.attempt_timeout_ms),
            write_ttl: Duration::from_millis(self.idempotency_ttl_ms),
            txn_max_age: GcConfig::default().max_txn_age(),
        }
    }

    /// The threshold of the slow-request log.
    pub fn slow_request(&self) -> Duration {
        Duration::from_millis(self.slow_request_ms)
    }

    /// How long a request head may take to arrive.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// How long a request body may take to arrive.
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }
}

/// The `[log]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter, e.g. `info` or `info,tinykv_actors=debug`. `RUST_LOG`, if set,
    /// wins.
    pub level: String,
    /// Whether to write one line per client request (target `tinykv::access`, to
    /// stderr, through a non-blocking writer): its id, method, path, route, status,
    /// bytes, duration, the store that served it and the attempts it took.
    pub access_log: bool,
    /// Where to export traces with OpenTelemetry's OTLP over HTTP (protobuf), e.g.
    /// `http://127.0.0.1:4318/v1/traces` (a collector, Jaeger or Grafana Tempo); empty:
    /// no export.
    pub otlp_endpoint: String,
    /// Share of requests whose traces are exported, from 0 to 1; a request whose
    /// `traceparent` says whether it is sampled follows that instead.
    pub otlp_sample_ratio: f64,
    /// The `service.name` the exported traces carry.
    pub otlp_service_name: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            access_log: false,
            otlp_endpoint: String::new(),
            otlp_sample_ratio: 1.0,
            otlp_service_name: "tinykv".into(),
        }
    }
}

impl LogConfig {
    fn validate(&self) -> Result<()> {
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.level) {
            return Err(Error::Config(format!(
                "log.level {:?} is not a valid filter: {e}",
                self.level
            )));
        }
        if !(0.0..=1.0).contains(&self.otlp_sample_ratio) {
            return Err(Error::Config(format!(
                "log.otlp_sample_ratio must be between 0 and 1, not {}",
                self.otlp_sample_ratio
            )));
        }
        if !self.otlp_endpoint.is_empty() {
            let url = reqwest::Url::parse(&self.otlp_endpoint).map_err(|e| {
                Error::Config(format!(
                    "log.otlp_endpoint {:?} is not a URL: {e}",
                    self.otlp_endpoint
                ))
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(Error::Config(format!(
                    "log.otlp_endpoint {:?} must be an http or https URL",
                    self.otlp_endpoint
                )));
            }
        }
        if self.otlp_service_name.is_empty() {
            return Err(Error::Config(
                "log.otlp_service_name must not be empty".into(),
            ));
        }
        Ok(())
    }
}

/// The `[pd]` section: the embedded placement driver.
///
/// Every node heartbeats to the placement driver (its store, and the regions it leads);
/// the node leading the meta region runs the scheduler with these settings. Only the
/// leader's settings matter for scheduling, so nodes should agree on them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PdConfig {
    /// Whether this node heartbeats and acts on the answers. Off, the node still serves
    /// the placement driver if it leads the meta region, but never reports or moves its
    /// own regions (for tests that place replicas by hand).
    pub enabled: bool,
    /// How often the node reports its store and the regions it leads.
    pub heartbeat_interval_ms: u64,
    /// Replicas per region, recorded when the cluster's metadata is first written.
    pub max_peer_count: usize,
    /// A store silent for longer than this is down and its replicas are rebuilt
    /// elsewhere.
    pub max_store_down_time_ms: u64,
    /// A store silent for longer than this is disconnected: it receives no replicas or
    /// leaderships until it heartbeats again. Several heartbeat intervals.
    pub max_store_disconnect_time_ms: u64,
    /// An operator not finished within this time is abandoned.
    pub operator_timeout_ms: u64,
    /// At most this many balance operators (regions and leaders) at a time.
    pub max_balance_operators: usize,
    /// At most this many replica-repair and drain operators at a time.
    pub max_replica_operators: usize,
    /// Leaderships move only between stores whose leader counts differ by more than this.
    pub leader_balance_tolerance: u64,
    /// The balancers run at most once per this interval.
    pub balance_interval_ms: u64,
    /// Neighbouring regions merge when together they hold at most this many bytes (their
    /// sizes as last measured); 0 turns merging off. Must be below
    /// `raftstore.region_split_size`, or merged regions would split again; unset, it is
    /// a fifth of it (TiKV's 20 MiB for 96 MiB).
    pub max_merge_region_size: Option<u64>,
    /// Regions merge only once the PD has known both for this long (a region just split
    /// is small by nature).
    pub split_merge_interval_ms: u64,
    /// At most this many merges at a time.
    pub max_merge_operators: usize,
}

/// The `[gc]` section: garbage collection of old MVCC versions (see `crate::txn::gc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcConfig {
    /// How long old versions stay readable: the safe point trails the clock by this much
    /// (TiKV's `gc.life_time`, 10 minutes). Reads at a timestamp, and transactions, may
    /// reach back nine tenths of it (the rest is margin for skewed clocks). At least 20 s.
    pub life_time_ms: u64,
    /// How often the safe point advances, and each node collects what is below it in the
    /// regions it leads.
    pub run_interval_ms: u64,
    /// Keys one garbage-collection pass visits (one raft command each, with a pause
    /// between passes, so collection never crowds out foreground writes).
    pub batch_keys: u32,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            life_time_ms: 10 * 60 * 1000,
            run_interval_ms: 60 * 1000,
            batch_keys: 256,
        }
    }
}

impl GcConfig {
    /// The safe point's distance behind the clock.
    pub fn life_time(&self) -> Duration {
        Duration::from_millis(self.life_time_ms)
    }

    /// How far back a read or transaction may reach: nine tenths of the life time.
    pub fn max_txn_age(&self) -> Duration {
        Duration::from_millis(self.life_time_ms - self.life_time_ms / 10)
    }

    /// The interval between rounds.
    pub fn run_interval(&self) -> Duration {
        Duration::from_millis(self.run_interval_ms)
    }

    fn validate(&self) -> Result<()> {
        let shortest = crate::pd::server::MIN_GC_LIFE_TIME_MS;
        if self.life_time_ms < shortest {
            return Err(Error::Config(format!(
                "gc.life_time_ms must be at least {shortest}"
            )));
        }
        if self.run_interval_ms == 0 || self.batch_keys == 0 {
            return Err(Error::Config(
                "gc.run_interval_ms and gc.batch_keys must be greater than 0".into(),
            ));
        }
        Ok(())
    }
}

impl Default for PdConfig {
    fn default() -> Self {
        let scheduler = crate::pd::SchedulerConfig::default();
        PdConfig {
            enabled: true,
            heartbeat_interval_ms: 1_000,
            max_peer_count: 3,
            max_store_down_time_ms: scheduler.max_store_down_time_ms,
            max_store_disconnect_time_ms: scheduler.max_store_disconnect_time_ms,
            operator_timeout_ms: scheduler.operator_timeout_ms,
            max_balance_operators: scheduler.max_balance_operators,
            max_replica_operators: scheduler.max_replica_operators,
            leader_balance_tolerance: scheduler.leader_balance_tolerance,
            balance_interval_ms: scheduler.balance_interval_ms,
            max_merge_region_size: None,
            split_merge_interval_ms: scheduler.split_merge_interval_ms,
            max_merge_operators: scheduler.max_merge_operators,
        }
    }
}

impl PdConfig {
    /// These settings with the merge size limit resolved against the raftstore's split
    /// size (a fifth of it when unset).
    pub fn resolved(&self, region_split_size: u64) -> PdConfig {
        PdConfig {
            max_merge_region_size: Some(
                self.max_merge_region_size.unwrap_or(region_split_size / 5),
            ),
            ..self.clone()
        }
    }

    /// The scheduler settings among these.
    pub fn scheduler(&self) -> crate::pd::SchedulerConfig {
        crate::pd::SchedulerConfig {
            max_store_down_time_ms: self.max_store_down_time_ms,
            max_store_disconnect_time_ms: self.max_store_disconnect_time_ms,
            operator_timeout_ms: self.operator_timeout_ms,
            max_balance_operators: self.max_balance_operators,
            max_replica_operators: self.max_replica_operators,
            leader_balance_tolerance: self.leader_balance_tolerance,
            balance_interval_ms: self.balance_interval_ms,
            max_merge_region_size: self
                .max_merge_region_size
                .unwrap_or(crate::pd::SchedulerConfig::default().max_merge_region_size),
            split_merge_interval_ms: self.split_merge_interval_ms,
            max_merge_operators: self.max_merge_operators,
        }
    }

    /// The heartbeat interval.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }
}

/// The `[debug]` section: switches for tests, never to be turned on in production.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DebugConfig {
    /// Enables the fault-injection endpoints (`/v1/admin/faults/...`), through which a
    /// test can partition this node from other stores; see [`crate::server::network_faults`]. Off, they
    /// answer 404.
    pub fault_injection: bool,
}

/// The `[security]` section: TLS (see [`crate::security`]).
///
/// Name all three files for TLS on every listener and connection, or none for
/// plaintext, which a node allows only on loopback addresses unless `insecure` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// The CA certificate(s) this node trusts, PEM: it must have signed every other
    /// node's certificate (and, with `client_cert_auth`, every client's).
    pub ca_path: Option<PathBuf>,
    /// This node's certificate chain, PEM. It names the node's store
    /// (`tinykv://store/<id>` in its subject alternative names) and the host names and
    /// addresses clients dial.
    pub cert_path: Option<PathBuf>,
    /// This node's private key, PEM.
    pub key_path: Option<PathBuf>,
    /// Requires clients of the REST API to present a certificate the CA signed.
    pub client_cert_auth: bool,
    /// Allows plaintext on non-loopback addresses. Only for networks where something
    /// else (a VPN, a service mesh) authenticates and encrypts.
    pub insecure: bool,
    /// How often the certificate files are checked for changes, in milliseconds.
    pub reload_interval_ms: u64,
    /// The root token: an admin credential the placement driver records the first time
    /// it leads with one configured (see [`crate::auth`]); at least 16 characters. Best
    /// given as `TINYKV__SECURITY__ROOT_TOKEN` rather than written in a file.
    pub root_token: Option<String>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            ca_path: None,
            cert_path: None,
            key_path: None,
            client_cert_auth: false,
            insecure: false,
            reload_interval_ms: 5_000,
            root_token: None,
        }
    }
}

impl SecurityConfig {
    /// The TLS files, or `None` for plaintext.
    pub fn tls_files(&self) -> Option<crate::security::TlsFiles> {
        Some(crate::security::TlsFiles {
            ca: self.ca_path.clone()?,
            cert: self.cert_path.clone()?,
            key: self.key_path.clone()?,
        })
    }

    /// How often the certificate files are checked for changes.
    pub fn reload_interval(&self) -> Duration {
        Duration::from_millis(self.reload_interval_ms)
    }

    /// SHA-256 of the root token, hex, if one is configured.
    pub fn root_token_sha256(&self) -> Option<String> {
        self.root_token
            .as_deref()
            .map(crate::auth::token::root_token_sha256)
    }

    fn validate(&self) -> Result<()> {
        let named = [&self.ca_path, &self.cert_path, &self.key_path]
            .iter()
            .filter(|p| p.is_some())
            .count();
        if named != 0 && named != 3 {
            return Err(Error::Config(
                "security.ca_path, cert_path and key_path go together: name all three for TLS, \
                 or none"
                    .into(),
            ));
        }
        if named == 0 && self.client_cert_auth {
            return Err(Error::Config(
                "security.client_cert_auth needs TLS: name ca_path, cert_path and key_path".into(),
            ));
        }
        if let Some(token) = &self.root_token {
            let min = crate::auth::token::MIN_ROOT_TOKEN_LEN;
            if token.trim().chars().count() < min {
                return Err(Error::Config(format!(
                    "security.root_token must have at least {min} characters"
                )));
            }
            if token.trim().starts_with("tkv_") {
                return Err(Error::Config(
                    "security.root_token must not start with tkv_ (the form of generated \
                     tokens)"
                        .into(),
                ));
            }
        }
        if self.reload_interval_ms == 0 {
            return Err(Error::Config(
                "security.reload_interval_ms must be greater than 0".into(),
            ));
        }
        Ok(())
    }
}

/// Settings given on the command line; they override files and environment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CliOverrides {
    /// `--store-id`.
    pub store_id: Option<u64>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--log-level`.
    pub log_level: Option<String>,
}

impl Config {
    /// Loads the files in `paths` (later ones win), then `TINYKV__…` environment
    /// variables, then `overrides`; fills derived defaults and validates the result.
    pub fn load(paths: &[PathBuf], overrides: &CliOverrides) -> Result<Config> {
        let mut builder = config::Config::builder();
        for path in paths {
            builder = builder.add_source(File::from(path.as_path()).format(FileFormat::Toml));
        }
        builder = builder.add_source(
            Environment::with_prefix("TINYKV")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("cluster.initial_stores"),
        );
        let data_dir = overrides
            .data_dir
            .as_ref()
            .map(|dir| dir.to_string_lossy().into_owned());
        builder = builder
            .set_override_option("node.store_id", overrides.store_id)
            .and_then(|b| b.set_override_option("node.data_dir", data_dir))
            .and_then(|b| b.set_override_option("log.level", overrides.log_level.clone()))
            .map_err(config_error)?;
        let mut config: Config = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(config_error)?;
        if config.cluster.initial_stores.is_empty() {
            config.cluster.initial_stores = config.cluster.stores.iter().map(|s| s.id).collect();
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks what deserialization cannot, naming the offending key.
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(Error::Config(msg));
        if self.node.store_id == 0 && self.cluster.join.is_empty() {
            return fail(
                "node.store_id must be greater than 0, or cluster.join must name nodes to join through"
                    .into(),
            );
        }
        if self.node.cluster_id == 0 {
            return fail("node.cluster_id must be greater than 0".into());
        }
        if self.node.data_dir.as_os_str().is_empty() {
            return fail("node.data_dir must not be empty".into());
        }
        let mut ids = HashSet::new();
        let mut addresses = HashSet::new();
        for store in &self.cluster.stores {
            if store.id == 0 {
                return fail("cluster.stores: a store id must be greater than 0".into());
            }
            if !ids.insert(store.id) {
                return fail(format!(
                    "cluster.stores: store id {} appears twice",
                    store.id
                ));
            }
            for (key, addr) in [
                ("raft_addr", &store.raft_addr),
                ("http_addr", &store.http_addr),
            ] {
                check_advertised(addr).map_err(|why| {
                    Error::Config(format!(
                        "cluster.stores: {key} {addr:?} of store {}: {why}",
                        store.id
                    ))
                })?;
                if !addresses.insert(addr.as_str()) {
                    return fail(format!(
                        "cluster.stores: address {addr:?} (store {} {key}) is used twice",
                        store.id
                    ));
                }
            }
        }
        let own_addresses = (&self.node.raft_addr, &self.node.http_addr);
        match own_addresses {
            (Some(raft_addr), Some(http_addr)) => {
                for (key, addr) in [("raft_addr", raft_addr), ("http_addr", http_addr)] {
                    check_advertised(addr)
                        .map_err(|why| Error::Config(format!("node.{key} {addr:?}: {why}")))?;
                }
            }
            (None, None) if ids.contains(&self.node.store_id) => {}
            (None, None) if self.node.store_id == 0 => {
                return fail(
                    "a joining node (no node.store_id) needs node.raft_addr and node.http_addr"
                        .into(),
                );
            }
            (None, None) => {
                return fail(format!(
                    "node.store_id {} is not in cluster.stores (or give node.raft_addr and node.http_addr)",
                    self.node.store_id
                ));
            }
            _ => return fail("node.raft_addr and node.http_addr go together".into()),
        }
        for (key, addr) in [
            ("listen_raft_addr", &self.node.listen_raft_addr),
            ("listen_http_addr", &self.node.listen_http_addr),
        ] {
            if let Some(addr) = addr {
                check_address(addr)
                    .map_err(|why| Error::Config(format!("node.{key} {addr:?}: {why}")))?;
            }
        }
        for addr in &self.cluster.join {
            check_advertised(addr)
                .map_err(|why| Error::Config(format!("cluster.join: {addr:?}: {why}")))?;
        }
        self.validate_pd()?;
        self.gc.validate()?;
        let mut initial = HashSet::new();
        for id in &self.cluster.initial_stores {
            if !ids.contains(id) {
                return fail(format!(
                    "cluster.initial_stores: store {id} is not in cluster.stores"
                ));
            }
            if !initial.insert(id) {
                return fail(format!("cluster.initial_stores: store {id} appears twice"));
            }
        }
        self.validate_api()?;
        self.security.validate()?;
        if self.security.tls_files().is_none() {
            let own = self.own_address()?;
            let listen = self.listen_address()?;
            crate::security::check_plaintext_allowed(
                &[
                    ("raft_addr", own.raft_addr.as_str()),
                    ("http_addr", own.http_addr.as_str()),
                    ("listen_raft_addr", listen.raft_addr.as_str()),
                    ("listen_http_addr", listen.http_addr.as_str()),
                ],
                self.security.insecure,
            )?;
        }
        self.raftstore
            .validate()
            .map_err(|e| Error::Config(e.to_string().replace("invalid request: ", "")))?;
        self.log.validate()
    }

    fn validate_api(&self) -> Result<()> {
        let api = &self.api;
        let positive = [
            ("max_key_bytes", api.max_key_bytes as u64),
            ("max_value_bytes", api.max_value_bytes as u64),
            ("max_scan_limit", api.max_scan_limit as u64),
            ("default_scan_limit", api.default_scan_limit as u64),
            ("request_timeout_ms", api.request_timeout_ms),
            ("attempt_timeout_ms", api.attempt_timeout_ms),
            ("http_workers", api.http_workers as u64),
            ("slow_request_ms", api.slow_request_ms),
            ("max_scan_bytes", api.max_scan_bytes as u64),
            ("header_read_timeout_ms", api.header_read_timeout_ms),
            ("body_read_timeout_ms", api.body_read_timeout_ms),
            ("max_in_flight_requests", api.max_in_flight_requests as u64),
            ("max_in_flight_bytes", api.max_in_flight_bytes as u64),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(Error::Config(format!("api.{key} must be greater than 0")));
            }
        }
        if api.max_value_bytes > MAX_VALUE_BYTES_CEILING {
            return Err(Error::Config(format!(
                "api.max_value_bytes must be at most {MAX_VALUE_BYTES_CEILING}"
            )));
        }
        if api.max_key_bytes > MAX_KEY_BYTES_CEILING {
            return Err(Error::Config(format!(
                "api.max_key_bytes must be at most {MAX_KEY_BYTES_CEILING}"
            )));
        }
        if api.max_in_flight_bytes < api.max_value_bytes {
            return Err(Error::Config(
                "api.max_in_flight_bytes must be at least api.max_value_bytes".into(),
            ));
        }
        if api.max_in_flight_bytes > u32::MAX as usize {
            return Err(Error::Config(format!(
                "api.max_in_flight_bytes must be at most {}",
                u32::MAX
            )));
        }
        if api.default_scan_limit > api.max_scan_limit {
            return Err(Error::Config(
                "api.default_scan_limit must not exceed api.max_scan_limit".into(),
            ));
        }
        if api.attempt_timeout_ms > api.request_timeout_ms {
            return Err(Error::Config(
                "api.attempt_timeout_ms must not exceed api.request_timeout_ms".into(),
            ));
        }
        if api.idempotency_ttl_ms < api.request_timeout_ms
            || api.idempotency_ttl_ms > tinykv_actors::MAX_TTL_MS
        {
            return Err(Error::Config(format!(
                "api.idempotency_ttl_ms must be at least api.request_timeout_ms and at most {} (a week)",
                tinykv_actors::MAX_TTL_MS
            )));
        }
        Ok(())
    }

    fn validate_pd(&self) -> Result<()> {
        let pd = &self.pd;
        let positive = [
            ("heartbeat_interval_ms", pd.heartbeat_interval_ms),
            ("max_peer_count", pd.max_peer_count as u64),
            ("max_store_down_time_ms", pd.max_store_down_time_ms),
            (
                "max_store_disconnect_time_ms",
                pd.max_store_disconnect_time_ms,
            ),
            ("operator_timeout_ms", pd.operator_timeout_ms),
            ("max_balance_operators", pd.max_balance_operators as u64),
            ("max_replica_operators", pd.max_replica_operators as u64),
            ("max_merge_operators", pd.max_merge_operators as u64),
            ("balance_interval_ms", pd.balance_interval_ms),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(Error::Config(format!("pd.{key} must be greater than 0")));
            }
        }
        if let Some(size) = pd
            .max_merge_region_size
            .filter(|&size| size > 0 && size >= self.raftstore.region_split_size)
        {
            return Err(Error::Config(format!(
                "pd.max_merge_region_size ({size}) must be below raftstore.region_split_size ({}): merged regions would split again",
                self.raftstore.region_split_size
            )));
        }
        if pd.max_store_disconnect_time_ms < 2 * pd.heartbeat_interval_ms {
            return Err(Error::Config(
                "pd.max_store_disconnect_time_ms must be at least two heartbeat intervals".into(),
            ));
        }
        Ok(())
    }

    /// The address-book entry of store `id`.
    pub fn store_address(&self, id: u64) -> Option<&StoreAddress> {
        self.cluster.stores.iter().find(|s| s.id == id)
    }

    /// This node's own addresses, under its configured store id (0 for a node that has
    /// yet to join): `node.raft_addr` and `node.http_addr` if given, else its entry in
    /// `cluster.stores`.
    pub fn own_address(&self) -> Result<StoreAddress> {
        if let (Some(raft_addr), Some(http_addr)) = (&self.node.raft_addr, &self.node.http_addr) {
            return Ok(StoreAddress {
                id: self.node.store_id,
                raft_addr: raft_addr.clone(),
                http_addr: http_addr.clone(),
            });
        }
        self.store_address(self.node.store_id)
            .cloned()
            .ok_or_else(|| {
                Error::Config(format!(
                    "node.store_id {} is not in cluster.stores",
                    self.node.store_id
                ))
            })
    }

    /// Where this node's listeners bind: `node.listen_raft_addr` and
    /// `node.listen_http_addr` where given, else the advertised addresses of
    /// [`Config::own_address`].
    pub fn listen_address(&self) -> Result<StoreAddress> {
        let own = self.own_address()?;
        Ok(StoreAddress {
            id: own.id,
            raft_addr: self.node.listen_raft_addr.clone().unwrap_or(own.raft_addr),
            http_addr: self.node.listen_http_addr.clone().unwrap_or(own.http_addr),
        })
    }
}

fn config_error(e: config::ConfigError) -> Error {
    Error::Config(e.to_string())
}

/// Checks that `addr` looks like `host:port`.
fn check_address(addr: &str) -> std::result::Result<(), &'static str> {
    let (host, port) = addr.rsplit_once(':').ok_or("expected host:port")?;
    if host.is_empty() {
        return Err("the host is empty");
    }
    port.parse::<u16>()
        .map_err(|_| "the port is not a number from 0 to 65535")?;
    Ok(())
}

/// Checks that `addr` is a `host:port` others can dial: not the unspecified address
/// (`0.0.0.0`, `::`), which means "every interface" to a listener and nothing to a
/// dialer.
fn check_advertised(addr: &str) -> std::result::Result<(), &'static str> {
    check_address(addr)?;
    let unspecified = addr
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_unspecified());
    if unspecified {
        return Err(
            "an unspecified address (every interface) cannot be dialed: advertise \
             an address or host name the other nodes reach, and bind the unspecified one \
             with node.listen_raft_addr or node.listen_http_addr",
        );
    }
    Ok(())
}

/// Accepts a list of store ids, or a single id; from the environment, where
/// `TINYKV__CLUSTER__INITIAL_STORES=1,2,3` arrives as strings, ids may also be text.
/// A list of strings, also accepted as one comma-separated string (as an environment
/// variable gives it).
fn strings_one_or_many<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        OneOrMany::Many(list) => list,
    })
}

fn one_or_many<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Vec<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Number(u64),
        Text(String),
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(Id),
        Many(Vec<Id>),
    }
    let ids = match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(id) => vec![id],
        OneOrMany::Many(ids) => ids,
    };
    ids.into_iter()
        .map(|id| match id {
            Id::Number(n) => Ok(n),
            Id::Text(text) => text
                .trim()
                .parse()
                .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a store id"))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn write_config(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    const MINIMAL: &str = r#"
        [node]
        store_id = 1
        data_dir = "data/test"

        [[cluster.stores]]
        id = 1
        raft_addr = "127.0.0.1:20160"
        http_addr = "127.0.0.1:8080"
    "#;

    #[test]
    fn a_minimal_file_gets_every_default() {
        let file = write_config(MINIMAL);
        let config = Config::load(&[file.path().into()], &CliOverrides::default()).unwrap();
        assert_eq!(config.node.cluster_id, 1);
        assert_eq!(config.cluster.initial_stores, vec![1]);
        assert_eq!(config.api.max_key_bytes, 4096);
        assert_eq!(config.api.max_value_bytes, 8 * 1024 * 1024);
        assert_eq!(config.api.default_scan_limit, 1000);
        assert_eq!(config.api.slow_request(), Duration::from_secs(1));
        assert_eq!(config.raftstore, RaftStoreConfig::default());
        assert_eq!(config.log.level, "info");
        assert!(
            !config.debug.fault_injection,
            "fault injection is off by default"
        );
        assert_eq!(config.own_address().unwrap().http_addr, "127.0.0.1:8080");
    }

    #[test]
    fn later_files_environment_and_cli_override_in_that_order() {
        let base = write_config(MINIMAL);
        let overlay =
            write_config("[api]\nhttp_workers = 5\nmax_scan_limit = 50\ndefault_scan_limit = 5\n");
        // The only test that touches the process environment, on a key no other test reads.
        std::env::set_var("TINYKV__API__HTTP_WORKERS", "7");
        let overrides = CliOverrides {
            data_dir: Some("elsewhere".into()),
            log_level: Some("debug".into()),
            ..Default::default()
        };
        let loaded = Config::load(&[base.path().into(), overlay.path().into()], &overrides);
        std::env::remove_var("TINYKV__API__HTTP_WORKERS");
        let config = loaded.unwrap();
        assert_eq!(config.api.http_workers, 7);
        assert_eq!(config.api.max_scan_limit, 50);
        assert_eq!(config.node.data_dir, PathBuf::from("elsewhere"));
        assert_eq!(config.log.level, "debug");
    }

    #[test]
    fn an_unknown_key_is_rejected_by_name() {
        let file = write_config(&format!("{MINIMAL}\n[api]\nmax_key_byte = 10\n"));
        let err = Config::load(&[file.path().into()], &CliOverrides::default()).unwrap_err();
        assert!(err.to_string().contains("max_key_byte"), "{err}");
        let file = write_config(&format!("{MINIMAL}\n[raftstore]\nraft_tick_ms = 10\n"));
        let err = Config::load(&[file.path().into()], &CliOverrides::default()).unwrap_err();
        assert!(err.to_string().contains("raft_tick_ms"), "{err}");
        let file = write_config(&format!("{MINIMAL}\n[debug]\nfault_injections = true\n"));
        let err = Config::load(&[file.path().into()], &CliOverrides::default()).unwrap_err();
        assert!(err.to_string().contains("fault_injections"), "{err}");
    }

    #[test]
    fn fault_injection_is_switched_on_in_the_debug_section() {
        let file = write_config(&format!("{MINIMAL}\n[debug]\nfault_injection = true\n"));
        let config = Config::load(&[file.path().into()], &CliOverrides::default()).unwrap();
        assert!(config.debug.fault_injection);
        let file = write_config(&format!(
            "{MINIMAL}\n[debug]\nfault_injection = \"maybe\"\n"
        ));
        let err = Config::load(&[file.path().into()], &CliOverrides::default()).unwrap_err();
        assert!(err.to_string().contains("fault_injection"), "{err}");
    }

    #[test]
    fn a_store_missing_from_the_address_book_is_rejected() {
        let file = write_config(MINIMAL);
        let overrides = CliOverrides {
            store_id: Some(4),
            ..Default::default()
        };
        let err = Config::load(&[file.path().into()], &overrides).unwrap_err();
        assert!(
            err.to_string()
                .contains("node.store_id 4 is not in cluster.stores"),
            "{err}"
        );
        let file = write_config(&MINIMAL.replace(
            "[[cluster.stores]]",
            "[cluster]\ninitial_stores = [1, 2]\n[[cluster.stores]]",
        ));
        let err = Config::load(&[file.path().into()], &CliOverrides::default()).unwrap_err();
        assert!(
            err.to_string().contains("cluster.initial_stores: store 2"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            ("[api]\nmax_scan_limit = 0\n", "api.max_scan_limit"),
            ("[api]\ndefault_scan_limit = 20000\n", "api.default_scan_limit"),
            ("[api]\nslow_request_ms = 0\n", "api.slow_request_ms"),
            ("[api]\nmax_key_bytes = 58136\n", "api.max_key_bytes must be at most 58135"),
            (
                "[api]\nidempotency_ttl_ms = 9999\n",
                "api.idempotency_ttl_ms must be at least api.request_timeout_ms",
            ),
            ("[raftstore]\nraft_election_timeout_ticks = 1\n", "raftstore.raft_election_timeout_ticks"),
            ("[log]\nlevel = \"=nonsense=\"\n", "log.level"),
            ("[log]\notlp_sample_ratio = 1.5\n", "log.otlp_sample_ratio"),
            ("[log]\notlp_endpoint = \"not a url\"\n", "log.otlp_endpoint"),
            ("[log]\notlp_endpoint = \"ftp://x/v1/traces\"\n", "http or https"),
            (
                "[[cluster.stores]]\nid = 2\nraft_addr = \"127.0.0.1:20160\"\nhttp_addr = \"127.0.0.1:9000\"\n",
                "127.0.0.1:20160",
            ),
            (
                "[[cluster.stores]]\nid = 1\nraft_addr = \"127.0.0.1:1\"\nhttp_addr = \"127.0.0.1:2\"\n",
                "store id 1 appears twice",
            ),
        ];
        for (extra, named) in cases {
            let file = write_config(&format!("{MINIMAL}\n{extra}"));
            let err = Config::load(&[file.path().into()], &CliOverrides::default()).unwrap_err();
            assert!(err.to_string().contains(named), "{extra}: {err}");
        }
        let file = write_config("[node]\ndata_dir = \"x\"\n");
        let err = Config::load(&[file.path().into()], &CliOverrides::default()).unwrap_err();
        assert!(err.to_string().contains("store_id"), "{err}");
        let joining = [
            ("[cluster]\njoin = [\"127.0.0.1:8081\"]\n", "needs node.raft_addr"),
            (
                "raft_addr = \"127.0.0.1:1\"\n[cluster]\njoin = [\"127.0.0.1:8081\"]\n",
                "go together",
            ),
            (
                "raft_addr = \"127.0.0.1:1\"\nhttp_addr = \"127.0.0.1:2\"\n[cluster]\njoin = [\"nowhere\"]\n",
                "cluster.join",
            ),
            (
                "raft_addr = \"127.0.0.1:1\"\nhttp_addr = \"127.0.0.1:2\"\n[cluster]\njoin = [\"127.0.0.1:8081\"]\n[pd]\nmax_store_disconnect_time_ms = 100\n",
                "pd.max_store_disconnect_time_ms",
            ),
        ];
        for (extra, named) in joining {
            let file = write_config(&format!("[node]\ndata_dir = \"x\"\n{extra}"));
            let err = Config::load(&[file.path().into()], &CliOverrides::default()).unwrap_err();
            assert!(err.to_string().contains(named), "{extra}: {err}");
        }
    }

    #[test]
    fn listen_and_advertised_addresses_are_separate() {
        // Listening on every interface, advertising a host name others resolve.
        let file = write_config(
            r#"
            [node]
            store_id = 1
            data_dir = "x"
            listen_raft_addr = "0.0.0.0:20160"
            listen_http_addr = "[::]:8080"
            [[cluster.stores]]
            id = 1
            raft_addr = "tkv1.example:20160"
            http_addr = "tkv1.example:8080"
            [security]
            insecure = true
            "#,
        );
        let config = Config::load(&[file.path().into()], &CliOverrides::default()).unwrap();
        let own = config.own_address().unwrap();
        assert_eq!(own.raft_addr, "tkv1.example:20160");
        let listen = config.listen_address().unwrap();
        assert_eq!(listen.raft_addr, "0.0.0.0:20160");
        assert_eq!(listen.http_addr, "[::]:8080");
        // Without listen addresses a node binds what it advertises.
        let file = write_config(MINIMAL);
        let config = Config::load(&[file.path().into()], &CliOverrides::default()).unwrap();
        assert_eq!(
            config.listen_address().unwrap(),
            config.own_address().unwrap()
        );

        let refused = [
            // Every interface is where to listen, never what to advertise.
            (
                MINIMAL.replace("127.0.0.1:20160", "0.0.0.0:20160"),
                "cluster.stores: raft_addr \"0.0.0.0:20160\" of store 1: an unspecified address",
            ),
            (
                MINIMAL.replace("127.0.0.1:8080", "[::]:8080"),
                "http_addr \"[::]:8080\" of store 1: an unspecified address",
            ),
            (
                format!("{MINIMAL}\n[cluster]\njoin = [\"0.0.0.0:20161\"]\n"),
                "cluster.join: \"0.0.0.0:20161\": an unspecified address",
            ),
            (
                MINIMAL.replace(
                    "store_id = 1",
                    "store_id = 1\nlisten_raft_addr = \"nonsense\"",
                ),
                "node.listen_raft_addr \"nonsense\": expected host:port",
            ),
            // Plaintext on every interface needs security.insecure (or TLS).
            (
                MINIMAL.replace(
                    "store_id = 1",
                    "store_id = 1\nlisten_raft_addr = \"0.0.0.0:20160\"",
                ),
                "listen_raft_addr \"0.0.0.0:20160\" is not a loopback address",
            ),
        ];
        for (text, named) in refused {
            let file = write_config(&text);
            let err = Config::load(&[file.path().into()], &CliOverrides::default()).unwrap_err();
            assert!(err.to_string().contains(named), "{text}: {err}");
        }
    }

    #[test]
    fn every_shipped_config_loads_and_validates() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
            .collect();
        files.sort();
        assert!(
            files.len() >= 4,
            "expected the shipped configs in {}",
            dir.display()
        );
        for file in files {
            let config = Config::load(std::slice::from_ref(&file), &CliOverrides::default())
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert!(config.own_address().is_ok(), "{}", file.display());
        }
    }

    #[test]
    fn the_tls_overlays_and_the_secure_deployment_load_and_validate() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs");
        // make run-tls: each plaintext config with its overlay; only [security] changes.
        for n in 1..=3u64 {
            let base = dir.join(format!("node{n}.toml"));
            let overlay = dir.join(format!("tls/node{n}.toml"));
            let plain = Config::load(std::slice::from_ref(&base), &CliOverrides::default())
                .unwrap_or_else(|e| panic!("{}: {e}", base.display()));
            let tls = Config::load(&[base.clone(), overlay.clone()], &CliOverrides::default())
                .unwrap_or_else(|e| panic!("{} + {}: {e}", base.display(), overlay.display()));
            let files = tls
                .security
                .tls_files()
                .expect("the overlay names the TLS files");
            assert_eq!(files.ca, PathBuf::from("certs/ca.pem"));
            assert_eq!(files.cert, PathBuf::from(format!("certs/store-{n}.pem")));
            assert_eq!(files.key, PathBuf::from(format!("certs/store-{n}.key")));
            assert!(!tls.security.client_cert_auth);
            assert_eq!(
                Config {
                    security: plain.security.clone(),
                    gc: plain.gc.clone(),
                    ..tls
                },
                plain
            );
        }
        // configs/secure: three machines, by host name, with client certificates. The
        // files are read when the node starts, not when the config loads.
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("secure"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
            .collect();
        files.sort();
        assert_eq!(files.len(), 3, "{files:?}");
        for (file, n) in files.iter().zip(1u64..) {
            let config = Config::load(std::slice::from_ref(file), &CliOverrides::default())
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert_eq!(config.node.store_id, n, "{}", file.display());
            let own = config.own_address().unwrap();
            assert_eq!(own.http_addr, format!("node{n}.tinykv.internal:8080"));
            assert_eq!(own.raft_addr, format!("node{n}.tinykv.internal:20160"));
            assert_eq!(config.cluster.initial_stores, vec![1, 2, 3]);
            let tls = config.security.tls_files().expect("TLS files named");
            assert_eq!(
                tls.cert,
                PathBuf::from(format!("/etc/tinykv/certs/store-{n}.pem"))
            );
            assert!(config.security.client_cert_auth && !config.security.insecure);
        }
    }
}
