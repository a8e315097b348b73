//! A running node: engine, raftstore, raft transport and HTTP API, started and stopped in
//! the right order.
//!
//! [`Node::start`] binds both listening addresses first, so that a port in use fails the
//! start before anything is written. It then opens the engine in `<data_dir>/db`, gives an
//! empty one its identity (and, on an initial store, the first region), and refuses a
//! directory that belongs to another store or cluster. The raftstore starts with a
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

use actix_web::{web, App, HttpServer};
use tinykv_actors::bootstrap::ensure_bootstrapped;
use tinykv_actors::{start_store, Engine, StoreHandle, StoreRouter};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::task::JoinHandle;

use crate::address_book::AddressBook;
use crate::admin::AdminService;
use crate::api::{self, ApiState};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::faults::Faults;
use crate::forward::HttpForwarder;
use crate::service::{Forwarder, KvService};
use crate::transport::{serve_raft_with_faults, TcpTransport};

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
}

impl Node {
    /// Starts every part of the node described by `config`. Must run inside an actix
    /// system.
    pub async fn start(config: Config) -> Result<Node> {
        let store_id = config.node.store_id;
        let own = config.own_address()?.clone();
        let raft_listener = TcpListener::bind(&own.raft_addr).await.map_err(|e| {
            Error::Io(format!(
                "cannot listen on raft_addr {} of store {store_id}: {e}",
                own.raft_addr
            ))
        })?;
        let http_listener = std::net::TcpListener::bind(&own.http_addr).map_err(|e| {
            Error::Io(format!(
                "cannot listen on http_addr {} of store {store_id}: {e}",
                own.http_addr
            ))
        })?;
        let raft_addr = local_addr(raft_listener.local_addr())?;
        let http_addr = local_addr(http_listener.local_addr())?;

        let data_dir = &config.node.data_dir;
        std::fs::create_dir_all(data_dir).map_err(|e| {
            Error::Io(format!(
                "cannot create node.data_dir {}: {e}",
                data_dir.display()
            ))
        })?;
        let engine_dir = data_dir.join("db");
        let engine = Engine::open(&engine_dir).map_err(|e| {
            Error::Io(format!(
                "cannot open the engine in {}: {e}",
                engine_dir.display()
            ))
        })?;
        let outcome = ensure_bootstrapped(
            &engine,
            config.node.cluster_id,
            store_id,
            &config.cluster.initial_stores,
        )?;
        tracing::info!(store = store_id, ?outcome, dir = %engine_dir.display(), "engine opened");

        let addresses = AddressBook::new(config.cluster.stores.iter().cloned());
        let timeouts = config.api.service_timeouts();
        let faults = Faults::new(config.debug.fault_injection);
        let forwarder =
            HttpForwarder::new(addresses.clone(), timeouts.attempt)?.with_faults(faults.clone());
        let transport = Arc::new(
            TcpTransport::new(addresses.clone(), tokio::runtime::Handle::current())
                .with_faults(faults.clone()),
        );
        let store = start_store(config.raftstore.clone(), engine, transport).await?;
        let raft_task = tokio::spawn(serve_raft_with_faults(
            raft_listener,
            store.router(),
            faults.clone(),
        ));
        let faults = web::Data::new(faults);

        let forwarder: Arc<dyn Forwarder> = Arc::new(forwarder);
        let state = web::Data::new(ApiState {
            service: KvService::new(store.router(), forwarder.clone(), timeouts)
                .with_address_book(addresses.clone()),
            admin: AdminService::new(store.router(), forwarder, addresses.clone(), timeouts),
            limits: config.api.clone(),
            addresses,
        });
        let http_metrics = crate::metrics::HttpMetrics::new(config.api.slow_request());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(faults.clone())
                .wrap(http_metrics)
                .configure(api::configure(state.clone()))
        })
        .workers(config.api.http_workers)
        .keep_alive(HTTP_KEEP_ALIVE)
        .shutdown_timeout(timeouts.request.as_secs() + 1)
        .disable_signals()
        .listen(http_listener);
        let server = match server {
            Ok(server) => server.run(),
            Err(e) => {
                raft_task.abort();
                store.shutdown().await;
                return Err(Error::Io(format!("cannot serve HTTP on {http_addr}: {e}")));
            }
        };
        let http = server.handle();
        let http_task = tokio::spawn(server);
        tracing::info!(store = store_id, %raft_addr, %http_addr, "TinyKV node serving");
        Ok(Node {
            store_id,
            raft_addr,
            http_addr,
            store,
            http,
            http_task,
            raft_task,
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
        self.raft_task.abort();
        let _ = self.raft_task.await;
        tracing::info!(store = self.store_id, "stopping the raftstore");
        self.store.shutdown().await;
        tracing::info!(store = self.store_id, "node stopped");
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
    use crate::config::StoreAddress;

    #[actix_rt::test]
    async fn a_node_starts_serves_and_restarts_on_the_same_directory() {
        let dir = tempfile::tempdir().unwrap();
        let mut config: Config = Config {
            node: crate::config::NodeConfig {
                store_id: 1,
                cluster_id: 1,
                data_dir: dir.path().join("node"),
            },
            cluster: crate::config::ClusterConfig {
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
            debug: Default::default(),
        };
        config.api.http_workers = 1;

        let node = Node::start(config.clone()).await.unwrap();
        let url = format!("http://{}/v1/kv/greeting", node.http_addr());
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
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
}
