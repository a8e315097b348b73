//! The whole handler stack against a real one-store raftstore: a client's view of the
//! API, the internal endpoints other nodes use, and the admin views and operations. A
//! second, empty store (bootstrapped without any region) shows how a node that lacks a
//! region reaches the one that holds it, for client requests and admin operations alike.
//!
//! This file holds the shared fixtures (`SingleStore`, `Served`, the `call!` and
//! `guarded_app!` macros, JSON helpers); the tests live in one file per concern: [`kv`],
//! [`peer_api`], [`admin`], [`placement`], [`surfaces`] (metrics, OpenAPI, dashboard, HTTP
//! conventions), [`request_log`] and [`txn`].

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{test, App, HttpServer};
use prost::Message;
use serde_json::Value;
use tinykv_actors::ensure_bootstrapped;
use tinykv_actors::{
    start_store, Cf, Engine, RaftStoreConfig, SequentialIds, StoreHandle, Transport,
};
use tinykv_proto::kvrpcpb::{RawGetRequest, RawGetResponse, RawPutRequest, RawPutResponse};
use tinykv_proto::raft_cmdpb::{
    CmdType, RaftCmdRequest, RaftCmdResponse, RaftRequestHeader, Request, SnapRequest,
};
use tinykv_proto::raft_serverpb::RaftMessage;

use super::*;
use crate::api::admission;
use crate::config::StoreAddress;
use crate::kv_service::{write_session, Forwarder, KvOp, KvOutcome, ServiceTimeouts};
use crate::server::forward::HttpForwarder;
use crate::Error;

/// A network that loses everything: a one-store cluster never needs it.
struct NoNetwork;

impl Transport for NoNetwork {
    fn send(&self, _: RaftMessage) {}
}

/// A bootstrapped one-store raftstore in a temporary directory.
struct SingleStore {
    store: StoreHandle,
    state: web::Data<ApiState>,
    _dir: tempfile::TempDir,
}

/// Where a [`SingleStore`]'s new region and peer ids come from.
enum Ids {
    /// A counter, as in the in-process cluster.
    Sequential,
    /// A pool refilled from the store's own placement driver, as a node's is.
    FromPd(Arc<crate::pd::PdIds>),
    /// A pool that nobody refills: the PD is out of reach.
    PdUnreachable(Arc<crate::pd::PdIds>),
}

impl SingleStore {
    /// Store 1, holding region 1 (the whole key space) and alone in its address book.
    async fn start() -> SingleStore {
        let addresses = AddressBook::new([unreachable_address(1)]);
        SingleStore::start_as(1, &[1], addresses).await
    }

    /// Store `store_id` of a cluster whose region 1 lives on `initial_stores`, reaching
    /// other stores at `addresses`.
    async fn start_as(
        store_id: u64,
        initial_stores: &[u64],
        addresses: AddressBook,
    ) -> SingleStore {
        SingleStore::start_with_ids(store_id, initial_stores, addresses, Ids::Sequential).await
    }

    /// [`SingleStore::start_as`], taking new region and peer ids from `ids`.
    async fn start_with_ids(
        store_id: u64,
        initial_stores: &[u64],
        addresses: AddressBook,
        ids: Ids,
    ) -> SingleStore {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path().join("db")).unwrap();
        ensure_bootstrapped(&engine, 1, store_id, initial_stores).unwrap();
        let store = start_store(
            RaftStoreConfig::for_tests(),
            engine,
            Arc::new(NoNetwork),
            match &ids {
                Ids::Sequential => Arc::new(SequentialIds::starting_at(1000)),
                Ids::FromPd(pool) | Ids::PdUnreachable(pool) => pool.clone(),
            },
        )
        .await
        .unwrap();
        let timeouts = ServiceTimeouts {
            request: Duration::from_secs(10),
            attempt: Duration::from_secs(3),
            write_ttl: Duration::from_secs(60),
            txn_max_age: Duration::from_secs(540),
        };
        let forwarder: Arc<dyn Forwarder> =
            Arc::new(HttpForwarder::new(addresses.clone(), timeouts.attempt, None).unwrap());
        let limits = ApiConfig {
            max_key_bytes: 32,
            max_value_bytes: 1024,
            max_scan_bytes: 1000,
            ..Default::default()
        };
        let admin = AdminService::new(
            store.router(),
            forwarder.clone(),
            addresses.clone(),
            timeouts,
        );
        let pd_config = crate::config::PdConfig {
            max_peer_count: 1,
            // No heartbeat loop runs here; tests send heartbeats themselves.
            heartbeat_interval_ms: 100,
            ..Default::default()
        };
        let pd_server = crate::pd::PdServer::new(
            store.router(),
            admin.clone(),
            addresses.clone(),
            crate::pd::PdSetup {
                config: pd_config,
                cluster_id: 1,
                initial_stores: addresses.all(),
                timeout: timeouts.attempt,
                root_token_sha256: None,
            },
            None,
        )
        .unwrap();
        let pd = crate::pd::PdClient::new(
            Some(pd_server),
            store_id,
            addresses.clone(),
            vec![],
            timeouts.attempt,
            None,
        )
        .unwrap();
        let pd = Arc::new(pd);
        if let Ids::FromPd(pool) = &ids {
            // Runs until the runtime stops, with the test.
            drop(pool.spawn_refill(pd.clone()));
        }
        let (service, txn) = crate::txn::client::TxnClient::over_pd_oracle(
            KvService::new(store.router(), forwarder, timeouts)
                .with_address_book(addresses.clone()),
            pd.clone(),
        );
        let leader_drain =
            crate::server::leader_drain::LeaderDrain::new(store_id, store.router(), admin.clone());
        let state = web::Data::new(ApiState {
            leader_drain,
            txn,
            service,
            admin,
            pd,
            limits,
            addresses,
            health_probe: crate::api::admin::health_probe_client(None).unwrap(),
            auth: Arc::new(crate::auth::AuthCache::in_memory(Default::default())),
        });
        SingleStore {
            store,
            state,
            _dir: dir,
        }
    }

    /// Serves the node's client API and its node-to-node API (a peer listener, without
    /// raft streams) on free local ports.
    async fn serve(&self) -> Served {
        let state = self.state.clone();
        let server = HttpServer::new(move || App::new().configure(configure(state.clone())))
            .workers(1)
            .disable_signals()
            .bind("127.0.0.1:0")
            .unwrap();
        let http = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = listener.local_addr().unwrap();
        let store_id = self.state.service.store_id();
        let peers = crate::server::peer_listener::PeerListener::new(
            crate::server::peer_api::Identity::new(1, store_id),
            tokio::runtime::Handle::current(),
            None,
        );
        peers.serve_api(Arc::new(crate::server::peer_api::PeerApi {
            service: self.state.service.clone(),
            txn: self.state.txn.clone(),
            pd: self.state.pd.clone(),
            limits: self.state.limits.clone(),
        }));
        let peer_task = actix_rt::spawn(peers.run(listener));
        Served {
            http,
            peer,
            handle,
            peer_task,
        }
    }

    async fn stop(self) {
        drop(self.state);
        self.store.shutdown().await;
    }
}

/// A node's two listeners, served by [`SingleStore::serve`].
struct Served {
    http: std::net::SocketAddr,
    peer: std::net::SocketAddr,
    handle: actix_web::dev::ServerHandle,
    peer_task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// A forwarder that reaches this node as store 1.
    fn forwarder(&self) -> HttpForwarder {
        let book = AddressBook::new([self.address(1)]);
        HttpForwarder::new(book, Duration::from_secs(3), None).unwrap()
    }

    /// The address-book entry of store `id` served here.
    fn address(&self, id: u64) -> StoreAddress {
        StoreAddress {
            id,
            raft_addr: self.peer.to_string(),
            http_addr: self.http.to_string(),
        }
    }

    async fn stop(self) {
        self.peer_task.abort();
        self.handle.stop(true).await;
    }
}

/// An address-book entry for store `id` where nothing listens.
fn unreachable_address(id: u64) -> StoreAddress {
    StoreAddress {
        id,
        raft_addr: "127.0.0.1:1".into(),
        http_addr: "127.0.0.1:2".into(),
    }
}

/// Sends a `TestRequest` to an app; evaluates to the status and the body.
macro_rules! call {
    ($app:expr, $request:expr) => {{
        let response = test::call_service($app, $request.to_request()).await;
        let status: StatusCode = response.status();
        (status, test::read_body(response).await)
    }};
}

/// A raw put of `key` (value `v`) with a fresh session.
fn put_op(key: &[u8]) -> KvOp {
    KvOp::Put {
        cf: Cf::Default,
        key: key.to_vec(),
        value: b"v".to_vec(),
        session: write_session(0, None, Duration::from_secs(60)),
    }
}

/// Runs `attempt` until it gives something else than a retryable error (up to 5 s): the
/// store may still be electing itself. KvService retries the same way.
async fn until_elected<F, Fut, T>(mut attempt: F) -> crate::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::Result<T>>,
{
    let mut outcome = attempt().await;
    for _ in 0..100 {
        match &outcome {
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                outcome = attempt().await;
            }
            _ => break,
        }
    }
    outcome
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

fn error_code(body: &[u8]) -> String {
    json(body)["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// POSTs `body` with `content_type` to `path` of the peer listener at `peer`; returns the
/// status and the body.
async fn post_peer(
    peer: std::net::SocketAddr,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, bytes::Bytes) {
    let response = crate::security::http_client_builder()
        .build()
        .unwrap()
        .post(format!("http://{peer}{path}"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.bytes().await.unwrap())
}

/// The app as the node builds it: the API behind the admission middleware.
macro_rules! guarded_app {
    ($node:expr) => {
        test::init_service(
            App::new()
                .app_data(admission::Admission::new(&$node.state.limits))
                .wrap(actix_web::middleware::from_fn(admission::admit))
                .configure(configure($node.state.clone())),
        )
        .await
    };
}

mod admin;
mod kv;
mod pd;
mod peer_api;
mod request_log;
mod surfaces;
mod txn;
