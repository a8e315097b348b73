//! A running node: engine, raftstore, raft transport and HTTP API, started and stopped in
//! the right order.
//!
//! [`Node::start`] binds both listening addresses first, so that a port in use fails the
//! start before anything is written. It then opens the engine in `<data_dir>/db`, gives an
//! empty one its identity (and, on an initial store, the first region), and refuses a
//! directory that belongs to another store or cluster.
//!
//! The identity is also kept outside the database, in `<data_dir>/STORE` (written and
//! fsynced once the database holds it, on the first start): a data directory whose `STORE`
//! names a store but whose database is missing or empty (deleted, or a journal so damaged
//! that fjall recovered nothing) is refused instead of bootstrapped afresh, because a store
//! that rejoins with empty state under its old identity breaks raft's promises (it forgets
//! votes and acknowledged log entries). Every refusal names the data directory; the binary
//! prints it and exits with status 1 without serving. The raftstore starts with a
//! [`TcpTransport`] over the static address book; the raft listener feeds incoming
//! messages to it; the HTTP server serves the API with a [`KvService`] and an
//! [`AdminService`] that reach other nodes (the leaders, or the stores holding a region this
//! one lacks) through an [`HttpForwarder`]. With `debug.fault_injection` on, the transport,
//! the raft listener and the forwarder share one [`Faults`] switch that the API can flip.
//!
//! [`Node::shutdown`] stops in the reverse order of dependence: the HTTP server first,
//! letting requests in flight finish while the raftstore can still answer them, then the
//! raft listener, then the raftstore, which returns once every actor has released the
//! engine. [`run_node`] is what the binary runs: start, wait for SIGINT or SIGTERM, shut
//! down. A second signal during shutdown exits at once; the raft log makes that safe.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_http::HttpService;
use actix_service::{fn_service, map_config, ServiceFactoryExt as _};
use actix_web::{web, App};
use std::io::Write as _;
use std::path::Path;

use tinykv_actors::{ensure_bootstrapped, load_store_ident};
use tinykv_actors::{
    start_store_on, Engine, Error as StoreError, StoreHandle, StoreRouter, StoreThreads,
};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::task::JoinHandle;

use crate::admin_service::AdminService;
use crate::api::admission::{admit, Admission};
use crate::api::head_guard::HeadGuard;
use crate::api::{self, ApiState};
use crate::auth::AuthCache;
use crate::config::Config;
use crate::config::StoreAddress;
use crate::error::{Error, Result};
use crate::kv_service::{Forwarder, KvService};
use crate::pd::client::PdDirectory;
use crate::pd::{spawn_heartbeats, JoinReply, LocalStore, PdClient, PdIds, PdServer, PdSetup};
use crate::security::{Conn, Tls};
use crate::server::address_book::AddressBook;
use crate::server::forward::HttpForwarder;
use crate::server::leader_drain::LeaderDrain;
use crate::server::network_faults::Faults;
use crate::server::peer_api::{Identity, PeerApi};
use crate::server::peer_listener::{PeerListener, RaftInbound};
use crate::server::raft_transport::{Hello, TcpTransport};

/// How long an idle HTTP connection is kept open.
const HTTP_KEEP_ALIVE: Duration = Duration::from_secs(75);

/// A started node; see the module documentation.
pub struct Node {
    store_id: u64,
    raft_addr: SocketAddr,
    http_addr: SocketAddr,
    store: StoreHandle,
    http: actix_web::dev::ServerHandle,
    http_task: JoinHandle<std::io::Result<()>>,
    raft_task: JoinHandle<()>,
    heartbeat_task: Option<JoinHandle<()>>,
    gc_task: JoinHandle<()>,
    /// Keeps the pool of PD-allocated region and peer ids filled.
    ids_task: JoinHandle<()>,
    tls_reload_task: Option<JoinHandle<()>>,
}

impl Node {
    /// Starts every part of the node described by `config`. Must run inside an actix
    /// system.
    pub async fn start(config: Config) -> Result<Node> {
        let mut own = config.own_address()?;
        let tls = Tls::from_config(&config.security)?;
        let certified = certified_store(tls.as_ref(), own.id)?;
        let auth = Arc::new(AuthCache::open(&config.node.data_dir)?);
        let who = match own.id {
            0 => "the joining node".to_string(),
            id => format!("store {id}"),
        };
        let listen = config.listen_address()?;
        let raft_listener = TcpListener::bind(&listen.raft_addr).await.map_err(|e| {
            Error::Io(format!(
                "cannot listen on raft_addr {} of {who}: {e}",
                listen.raft_addr
            ))
        })?;
        let http_listener = std::net::TcpListener::bind(&listen.http_addr).map_err(|e| {
            Error::Io(format!(
                "cannot listen on http_addr {} of {who}: {e}",
                listen.http_addr
            ))
        })?;
        let raft_addr = local_addr(raft_listener.local_addr())?;
        let http_addr = local_addr(http_listener.local_addr())?;
        // Port 0 (tests) advertises the port the system chose, on the advertised host.
        // Only for raft: the in-process tests that bind HTTP port 0 reach the node through
        // `Node::http_addr`, and a real HTTP address would have the PD probe the node
        // itself on its first heartbeat (a store "moving" off port 0).
        own.raft_addr = with_bound_port(&own.raft_addr, raft_addr);
        if listen.raft_addr != own.raft_addr || listen.http_addr != own.http_addr {
            tracing::info!(
                listen_raft = %raft_addr,
                listen_http = %http_addr,
                advertise_raft = %own.raft_addr,
                advertise_http = %own.http_addr,
                "listening on one address, advertising another"
            );
        }

        // The peer listener serves from now on: a joining node must show the placement
        // driver its identity while it waits for a store id. Raft traffic and the rest of
        // the node-to-node API are served once the store runs. The transport and the
        // listener run on the raft side's first thread, next to the Router, so that a raft
        // message passes between socket and PeerFsm without waking another thread.
        let identity = Identity::new(config.node.cluster_id, own.id);
        let peers = PeerListener::new(identity, tokio::runtime::Handle::current(), tls.clone());
        let threads = StoreThreads::new(&config.raftstore);
        let raft_runtime = match threads.raft_runtime().await {
            Ok(runtime) => runtime,
            Err(e) => {
                threads.stop();
                return Err(Error::Store(e));
            }
        };
        let raft_task = raft_runtime.spawn(peers.clone().run(raft_listener));

        let token = peers.identity().join_token();
        let opened = open_store(&config, &mut own, token, tls.as_ref(), certified).await;
        let (engine, joined) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                raft_task.abort();
                threads.stop();
                return Err(e);
            }
        };
        let store_id = own.id;
        peers.identity().set_store_id(store_id);
        if let Some(reply) = &joined {
            auth.update(reply.auth.clone());
        }
        let data_dir = &config.node.data_dir;

        let addresses = AddressBook::new(config.cluster.stores.iter().cloned());
        for record in joined.iter().flat_map(|reply| &reply.stores) {
            addresses.insert(record.address());
        }
        addresses.insert(own.clone());
        let timeouts = crate::kv_service::ServiceTimeouts {
            txn_max_age: config.gc.max_txn_age(),
            ..config.api.service_timeouts()
        };
        let faults = Faults::new(config.debug.fault_injection);
        let forwarder = HttpForwarder::new(addresses.clone(), timeouts.attempt, tls.as_ref())?
            .with_request_timeout(timeouts.request)
            .with_faults(faults.clone());
        let hello = Hello {
            cluster_id: config.node.cluster_id,
            store_id,
        };
        let transport = Arc::new(
            TcpTransport::new(addresses.clone(), hello, raft_runtime.clone())
                .with_tls(tls.clone())
                .with_faults(faults.clone()),
        );
        // The placement driver's meta region never sleeps: its leadership must fail over
        // without anyone waking it.
        let raftstore = tinykv_actors::RaftStoreConfig {
            awake_from_key: Some(crate::pd::META_REGION_START.to_vec()),
            ..config.raftstore.clone()
        };
        // New regions' and peers' ids come from the PD, through a pool the raftstore
        // takes from without waiting (refilled once the PD client exists, below).
        let ids = PdIds::new();
        let started = start_store_on(threads, raftstore, engine, transport, ids.clone()).await;
        let store = match started {
            Ok(store) => store,
            Err(e) => {
                raft_task.abort();
                return Err(match e {
                    StoreError::Corruption(_) | StoreError::Engine(_) | StoreError::Codec(_) => {
                        Error::Io(format!(
                            "cannot load the regions of data directory {}: {e}; refusing to start",
                            data_dir.display()
                        ))
                    }
                    e => Error::Store(e),
                });
            }
        };
        let router = store.router();
        let inbound_faults = faults.clone();
        peers.serve_raft(RaftInbound {
            own: hello,
            addresses: addresses.clone(),
            deliver: Arc::new(move |msg| {
                let from = msg.from_peer.as_ref().map_or(0, |p| p.store_id);
                if !inbound_faults.is_blocked(from) {
                    router.deliver(msg);
                }
            }),
        });
        let faults = web::Data::new(faults);

        let forwarder: Arc<dyn Forwarder> = Arc::new(forwarder);
        let admin = AdminService::new(
            store.router(),
            forwarder.clone(),
            addresses.clone(),
            timeouts,
        );
        let initial_stores = config
            .cluster
            .stores
            .iter()
            .filter(|s| config.cluster.initial_stores.contains(&s.id))
            .cloned()
            .collect();
        let setup = PdSetup {
            config: config.pd.resolved(config.raftstore.region_split_size),
            cluster_id: config.node.cluster_id,
            initial_stores,
            timeout: timeouts.attempt,
            root_token_sha256: config.security.root_token_sha256(),
        };
        let pd = PdServer::new(
            store.router(),
            admin.clone(),
            addresses.clone(),
            setup,
            tls.as_ref(),
        )
        .and_then(|pd_server| {
            PdClient::new(
                Some(pd_server),
                store_id,
                addresses.clone(),
                config.cluster.join.clone(),
                timeouts.attempt,
                tls.as_ref(),
            )
        })
        .and_then(|pd| Ok((pd, api::admin::health_probe_client(tls.as_ref())?)));
        let (pd, health_probe) = match pd {
            Ok((pd, health_probe)) => {
                let pd = Arc::new(pd);
                admin.set_region_directory(Box::new(PdDirectory(Arc::downgrade(&pd))));
                (pd, health_probe)
            }
            Err(e) => {
                raft_task.abort();
                store.shutdown().await;
                return Err(e);
            }
        };
        let ids_task = ids.spawn_refill(pd.clone());
        let leader_drain = LeaderDrain::new(store_id, store.router(), admin.clone());
        let heartbeat_task = config.pd.enabled.then(|| {
            let local = LocalStore {
                own: own.clone(),
                configured: config.cluster.stores.clone(),
                drain: leader_drain.clone(),
            };
            spawn_heartbeats(
                store.router(),
                pd.clone(),
                addresses.clone(),
                local,
                auth.clone(),
                config.pd.heartbeat_interval(),
            )
        });
        let (service, txn) = crate::txn::client::TxnClient::over_pd_oracle(
            KvService::new(store.router(), forwarder, timeouts)
                .with_address_book(addresses.clone()),
            pd.clone(),
        );
        peers.serve_api(Arc::new(PeerApi {
            service: service.clone(),
            txn: txn.clone(),
            pd: pd.clone(),
            limits: config.api.clone(),
        }));
        let gc_task = tokio::spawn(
            crate::txn::gc_worker::GcWorker::new(
                service.clone(),
                txn.clone(),
                pd.clone(),
                config.gc.clone(),
            )
            .run(),
        );
        let state = web::Data::new(ApiState {
            txn,
            service,
            admin,
            pd,
            limits: config.api.clone(),
            addresses,
            health_probe,
            auth: auth.clone(),
            leader_drain,
        });
        let auth_data = web::Data::from(auth.clone());
        let http_metrics = crate::metrics::HttpMetrics::new(config.api.slow_request());
        let admission = Admission::new(&config.api);
        let request_log = api::request_log::RequestLog {
            access_log: config.log.access_log,
            slow_request: config.api.slow_request(),
        };
        let head_timeout = config.api.header_read_timeout();
        let app_factory = move || {
            App::new()
                .app_data(faults.clone())
                .app_data(admission.clone())
                .app_data(auth_data.clone())
                .app_data(request_log)
                .wrap(actix_web::middleware::from_fn(admit))
                .wrap(actix_web::middleware::from_fn(api::auth::authenticate))
                .wrap(http_metrics)
                .wrap(actix_web::middleware::from_fn(
                    api::request_log::request_log,
                ))
                .configure(api::configure(state.clone()))
        };
        // actix-web's HttpServer, but with every connection's heads watched by a
        // HeadGuard, which answers a head too long or too slow with the API's JSON error
        // (actix's own would be bare); the guard times heads, so actix does not.
        // With TLS, the handshake comes first (a failed one ends the connection).
        let client_tls = tls.clone();
        let connection_factory = move || {
            let tls = client_tls.clone();
            let guard = fn_service(move |io: tokio::net::TcpStream| {
                let tls = tls.clone();
                async move {
                    let peer = io.peer_addr().ok();
                    let conn = match &tls {
                        None => Conn::Plain(io),
                        Some(tls) => tls.accept_client(io).await.map_err(|e| {
                            tracing::debug!(?peer, error = %e, "TLS handshake on the client listener failed");
                            crate::metrics::connection_refused("client", "tls_handshake");
                            actix_http::error::DispatchError::Io(e)
                        })?,
                    };
                    Ok::<_, actix_http::error::DispatchError>((
                        HeadGuard::new(conn, head_timeout),
                        peer,
                    ))
                }
            });
            let http = HttpService::<HeadGuard, _, _>::build()
                .on_connect_ext(|io: &HeadGuard, data: &mut actix_http::Extensions| {
                    if let Some(user) = io.certificate_user() {
                        data.insert(api::auth::CertificateUser(user));
                    }
                })
                .keep_alive(HTTP_KEEP_ALIVE)
                .client_request_timeout(Duration::ZERO)
                .h1(map_config(app_factory(), |_| {
                    actix_web::dev::AppConfig::default()
                }));
            guard.and_then(http)
        };
        let server = actix_server::Server::build()
            .workers(config.api.http_workers)
            .shutdown_timeout(timeouts.request.as_secs() + 1)
            .disable_signals()
            .listen("tinykv-client-api", http_listener, connection_factory);
        let server = match server {
            Ok(server) => server.run(),
            Err(e) => {
                raft_task.abort();
                gc_task.abort();
                ids_task.abort();
                if let Some(task) = heartbeat_task {
                    task.abort();
                }
                store.shutdown().await;
                return Err(Error::Io(format!("cannot serve HTTP on {http_addr}: {e}")));
            }
        };
        let http = server.handle();
        let http_task = tokio::spawn(server);
        let tls_reload_task = tls
            .as_ref()
            .map(|tls| tls.reload_every(config.security.reload_interval()));
        tracing::info!(store = store_id, %raft_addr, %http_addr, "TinyKV node serving");
        Ok(Node {
            store_id,
            raft_addr,
            http_addr,
            store,
            http,
            http_task,
            raft_task,
            heartbeat_task,
            gc_task,
            ids_task,
            tls_reload_task,
        })
    }

    /// This node's store id.
    pub fn store_id(&self) -> u64 {
        self.store_id
    }

    /// The address the raft transport listens on.
    pub fn raft_addr(&self) -> SocketAddr {
        self.raft_addr
    }

    /// The address the HTTP API listens on.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// A handle to send commands to the node's raftstore.
    pub fn router(&self) -> StoreRouter {
        self.store.router()
    }

    /// Stops the HTTP server (finishing requests in flight), the raft listener and the
    /// raftstore, in that order; returns once the engine is closed.
    pub async fn shutdown(self) {
        tracing::info!(store = self.store_id, "stopping the HTTP server");
        self.http.stop(true).await;
        let _ = self.http_task.await;
        if let Some(task) = self.tls_reload_task {
            task.abort();
        }
        if let Some(task) = self.heartbeat_task {
            task.abort();
            let _ = task.await;
        }
        self.gc_task.abort();
        let _ = self.gc_task.await;
        // It holds the PD client, and through it the store: awaited so nothing keeps the
        // engine open.
        self.ids_task.abort();
        let _ = self.ids_task.await;
        self.raft_task.abort();
        let _ = self.raft_task.await;
        tracing::info!(store = self.store_id, "stopping the raftstore");
        self.store.shutdown().await;
        tracing::info!(store = self.store_id, "node stopped");
    }
}

/// The store `tls`'s certificate names (`None` without TLS); refused if it names none, or
/// another store than `configured` (0: the node joins and becomes the certificate's).
fn certified_store(tls: Option<&Tls>, configured: u64) -> Result<Option<u64>> {
    let Some(tls) = tls else {
        return Ok(None);
    };
    let identity = tls.identity();
    match identity.store_id() {
        None => Err(Error::Config(format!(
            "security.cert_path names {identity}, not a store: a node's certificate names \
             tinykv://store/<id> (tinykv-ctl certs node makes one)"
        ))),
        Some(id) if configured != 0 && configured != id => Err(Error::Config(format!(
            "node.store_id is {configured} but security.cert_path names store {id}: a node \
             can only be the store its certificate names"
        ))),
        Some(id) => Ok(Some(id)),
    }
}

/// Opens the engine in `<data_dir>/db`, refusing a directory that belongs to another
/// store or cluster or whose database is lost, and gives an empty one its identity. A
/// node configured without a store id takes the one its data directory records, or, on
/// its first start, joins the cluster to get one (returning the PD's answer; with `tls`,
/// as the store its certificate names); `own.id` is set to the store id either way. With
/// TLS, the store must be the one `certified` by the node's certificate.
async fn open_store(
    config: &Config,
    own: &mut StoreAddress,
    join_token: &str,
    tls: Option<&Tls>,
    certified: Option<u64>,
) -> Result<(Engine, Option<JoinReply>)> {
    let data_dir = &config.node.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|e| {
        Error::Io(format!(
            "cannot create node.data_dir {}: {e}",
            data_dir.display()
        ))
    })?;
    let engine_dir = data_dir.join("db");
    let cluster_id = config.node.cluster_id;
    let identity = read_identity_file(data_dir)?;
    if let Some(identity) = identity {
        if own.id == 0 {
            own.id = identity.store_id;
        }
        identity.check(data_dir, own.id, cluster_id)?;
        if !engine_dir.is_dir() {
            return Err(identity.database_lost(data_dir));
        }
    }
    let engine = Engine::open(&engine_dir).map_err(|e| {
        Error::Io(format!(
            "cannot open the database of data directory {}: {e}; refusing to start",
            data_dir.display()
        ))
    })?;
    if let Some(identity) = identity {
        // A database holding data but no identity is refused by `ensure_bootstrapped`.
        if load_store_ident(&engine)?.is_none() && engine.is_empty()? {
            return Err(identity.database_lost(data_dir));
        }
    }
    let mut joined = None;
    if own.id == 0 {
        own.id = match load_store_ident(&engine)? {
            // Joined, but stopped before the identity file was written.
            Some(ident) => ident.store_id,
            None => {
                let reply = crate::pd::join(config, own, join_token, tls).await?;
                tracing::info!(store = reply.store_id, "joined the cluster");
                let store_id = reply.store_id;
                joined = Some(reply);
                store_id
            }
        };
    }
    if let Some(id) = certified.filter(|&id| id != own.id) {
        return Err(Error::Config(format!(
            "data directory {} belongs to store {}, but security.cert_path names store {id}",
            data_dir.display(),
            own.id
        )));
    }
    let outcome = ensure_bootstrapped(&engine, cluster_id, own.id, &config.cluster.initial_stores)?;
    if identity.is_none() {
        write_identity_file(
            data_dir,
            StoreIdentity {
                store_id: own.id,
                cluster_id,
            },
        )?;
    }
    tracing::info!(store = own.id, ?outcome, dir = %engine_dir.display(), "engine opened");
    Ok((engine, joined))
}

/// Name of the identity file in a data directory.
const IDENTITY_FILE: &str = "STORE";

/// The identity recorded in `<data_dir>/STORE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StoreIdentity {
    store_id: u64,
    cluster_id: u64,
}

impl StoreIdentity {
    /// Refuses a data directory that belongs to another store or cluster.
    fn check(self, data_dir: &Path, store_id: u64, cluster_id: u64) -> Result<()> {
        if self.store_id == store_id && self.cluster_id == cluster_id {
            return Ok(());
        }
        Err(Error::Store(StoreError::Corruption(format!(
            "data directory {} belongs to store {} of cluster {}, but this node is configured as store {store_id} of cluster {cluster_id}: refusing to start",
            data_dir.display(),
            self.store_id,
            self.cluster_id
        ))))
    }

    /// The refusal to start over a database that is gone.
    fn database_lost(self, data_dir: &Path) -> Error {
        Error::Store(StoreError::Corruption(format!(
            "data directory {} belongs to store {} of cluster {} but its database ({}) is missing or empty: refusing to start, a store must not rejoin with empty state under its old identity (to replace the store, give the node a new store id and an empty data directory)",
            data_dir.display(),
            self.store_id,
            self.cluster_id,
            data_dir.join("db").display()
        )))
    }
}

/// Reads `<data_dir>/STORE`, if it exists.
fn read_identity_file(data_dir: &Path) -> Result<Option<StoreIdentity>> {
    let path = data_dir.join(IDENTITY_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Io(format!(
                "cannot read {}: {e}; refusing to start",
                path.display()
            )))
        }
    };
    let field = |name: &str| {
        text.lines()
            .filter_map(|line| line.split_once('='))
            .find(|(key, _)| key.trim() == name)
            .and_then(|(_, value)| value.trim().parse::<u64>().ok())
    };
    match (field("store_id"), field("cluster_id")) {
        (Some(store_id), Some(cluster_id)) => Ok(Some(StoreIdentity {
            store_id,
            cluster_id,
        })),
        _ => Err(Error::Io(format!(
            "{} is damaged (expected `store_id = N` and `cluster_id = N` lines): refusing to start",
            path.display()
        ))),
    }
}

/// Writes `<data_dir>/STORE` durably: a temporary file, fsynced, renamed into place, and
/// the directory fsynced.
fn write_identity_file(data_dir: &Path, identity: StoreIdentity) -> Result<()> {
    let path = data_dir.join(IDENTITY_FILE);
    let temporary = data_dir.join(format!("{IDENTITY_FILE}.tmp"));
    let StoreIdentity {
        store_id,
        cluster_id,
    } = identity;
    let text = format!(
        "# TinyKV-rs: this data directory belongs to store {store_id} of cluster {cluster_id}.\n\
         # The node refuses to start if its database is missing. Do not edit, copy or delete.\n\
         store_id = {store_id}\ncluster_id = {cluster_id}\n"
    );
    let io = |e: std::io::Error| {
        Error::Io(format!(
            "cannot write the identity file {}: {e}",
            path.display()
        ))
    };
    let mut file = std::fs::File::create(&temporary).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&temporary, &path).map_err(io)?;
    std::fs::File::open(data_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io)?;
    Ok(())
}

/// `advertised` with the port of `bound` if it names port 0 (the system picks one, as
/// tests do), else `advertised` unchanged.
fn with_bound_port(advertised: &str, bound: SocketAddr) -> String {
    match advertised.rsplit_once(':') {
        Some((host, "0")) => format!("{host}:{}", bound.port()),
        _ => advertised.to_string(),
    }
}

fn local_addr(addr: std::io::Result<SocketAddr>) -> Result<SocketAddr> {
    addr.map_err(|e| Error::Io(format!("cannot read a listener's address: {e}")))
}

/// Runs a node until SIGINT or SIGTERM, then shuts it down cleanly.
pub async fn run_node(config: Config) -> Result<()> {
    let mut signals = ShutdownSignals::install()?;
    let node = Node::start(config).await?;
    let received = signals.next().await;
    tracing::info!(
        signal = received,
        "shutting down; send it again to exit at once"
    );
    tokio::spawn(async move {
        let again = signals.next().await;
        tracing::warn!(signal = again, "exiting without a clean shutdown");
        std::process::exit(1);
    });
    node.shutdown().await;
    Ok(())
}

/// SIGINT and SIGTERM, handled by the node instead of killing it.
struct ShutdownSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl ShutdownSignals {
    fn install() -> Result<ShutdownSignals> {
        let install = |kind| {
            signal(kind).map_err(|e| Error::Io(format!("cannot install a signal handler: {e}")))
        };
        Ok(ShutdownSignals {
            interrupt: install(SignalKind::interrupt())?,
            terminate: install(SignalKind::terminate())?,
        })
    }

    /// Waits for the next signal; returns its name.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn a_node_starts_serves_and_restarts_on_the_same_directory() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = single_node_config(dir.path().join("node"));

        let node = Node::start(config.clone()).await.unwrap();
        let url = format!("http://{}/v1/kv/greeting", node.http_addr());
        let client = crate::security::http_client_builder().build().unwrap();
        let put = client.put(&url).body("hello").send().await.unwrap();
        assert_eq!(put.status(), 200);
        node.shutdown().await;

        let node = Node::start(config.clone()).await.unwrap();
        let url = format!("http://{}/v1/kv/greeting", node.http_addr());
        let got = client.get(&url).send().await.unwrap();
        assert_eq!(got.status(), 200);
        assert_eq!(got.bytes().await.unwrap(), "hello");
        node.shutdown().await;

        config.node.store_id = 2;
        config.cluster.stores[0].id = 2;
        config.cluster.initial_stores = vec![2];
        let err = Node::start(config)
            .await
            .err()
            .expect("a foreign data directory is refused");
        assert!(err.to_string().contains("belongs to store 1"), "{err}");
    }

    fn single_node_config(data_dir: std::path::PathBuf) -> Config {
        let mut config = Config {
            node: crate::config::NodeConfig {
                store_id: 1,
                cluster_id: 1,
                data_dir,
                raft_addr: None,
                http_addr: None,
                listen_raft_addr: None,
                listen_http_addr: None,
            },
            cluster: crate::config::ClusterConfig {
                join: vec![],
                initial_stores: vec![1],
                stores: vec![StoreAddress {
                    id: 1,
                    raft_addr: "127.0.0.1:0".into(),
                    http_addr: "127.0.0.1:0".into(),
                }],
            },
            api: Default::default(),
            raftstore: tinykv_actors::RaftStoreConfig::for_tests(),
            log: Default::default(),
            pd: Default::default(),
            security: Default::default(),
            gc: Default::default(),
            debug: Default::default(),
        };
        config.api.http_workers = 1;
        config
    }

    #[actix_rt::test]
    async fn a_store_whose_database_is_lost_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("node");
        let config = single_node_config(data_dir.clone());
        Node::start(config.clone()).await.unwrap().shutdown().await;
        assert_eq!(
            read_identity_file(&data_dir).unwrap(),
            Some(StoreIdentity {
                store_id: 1,
                cluster_id: 1
            })
        );

        // A directory from before the identity file gets one on its next start.
        std::fs::remove_file(data_dir.join(IDENTITY_FILE)).unwrap();
        Node::start(config.clone()).await.unwrap().shutdown().await;
        assert!(data_dir.join(IDENTITY_FILE).exists());

        // The database deleted, then replaced by an empty one: both refused.
        std::fs::remove_dir_all(data_dir.join("db")).unwrap();
        for attempt in ["missing", "empty"] {
            let err = Node::start(config.clone())
                .await
                .err()
                .unwrap_or_else(|| panic!("a {attempt} database is refused"))
                .to_string();
            assert!(
                err.contains(&format!(
                    "data directory {} belongs to store 1 of cluster 1 but its database",
                    data_dir.display()
                )) && err.contains("must not rejoin with empty state"),
                "{err}"
            );
            if attempt == "missing" {
                assert!(!data_dir.join("db").exists(), "nothing was created");
                Engine::open(data_dir.join("db")).unwrap();
            }
        }
    }

    #[test]
    fn a_damaged_identity_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(IDENTITY_FILE), "store_id = x\n").unwrap();
        let err = read_identity_file(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is damaged"), "{err}");
    }
}
