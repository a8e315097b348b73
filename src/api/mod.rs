//! The node's HTTP API (actix-web).
//!
//! This is the client listener's API (`http_addr`): what a client may call. What nodes
//! ask of each other is served on the peer listener instead (see [`crate::server::peer_api`]), so
//! that the two can be exposed separately. Two groups of routes share one [`ApiState`]:
//!
//! - [`kv`]: the client key-value API under `/v1/kv`, with its input rules in
//!   [`request`];
//! - [`txn`]: the timestamp oracle, `GET /v1/txn/ts`;
//! - [`admin`]: views of regions and stores, operations on regions (split, add or
//!   remove a peer, transfer leadership) and the node's leader drain under `/v1/admin`,
//!   the placement driver's
//!   views and store draining ([`pd`]), with [`faults`], fault
//!   injection for tests, under `/v1/admin/faults` (404 unless `debug.fault_injection`
//!   is on);
//!
//! plus `GET /health` ([`health`]), `GET /metrics` (Prometheus, see [`crate::metrics`]),
//! `GET /v1/openapi.json` ([`openapi`]: the OpenAPI 3.0 description of the API) and the
//! web dashboard under `/ui` ([`ui`]). Every error, including an unknown route (404), a
//! wrong method (405) and an oversized body (413), is answered as JSON by [`error`].
//! Request bodies are read by [`body::ReadBody`] within their scope's [`BodyLimit`]:
//! `api.max_value_bytes` for client values and [`admin::ADMIN_BODY_LIMIT`] for the small
//! JSON bodies of admin operations, each within `api.body_read_timeout_ms`. Every answer
//! of 405 names the allowed methods in `Allow`; `HEAD` on a key answers like `GET`,
//! without the body. The [`admission`] middleware, which the node wraps around the whole
//! API, refuses cross-site requests and bounds the requests and bytes in flight.
//! The [`auth`] middleware checks credentials once authentication is on, and `/v1/auth`
//! manages tokens and certificate users. Outermost, [`request_log`] gives every request
//! its id and span, answers the id in `X-Request-Id`, writes the access log and explains
//! slow requests.

pub mod admin;
pub mod admission;
pub mod auth;
pub mod body;
pub mod error;
pub mod faults;
pub mod head_guard;
pub mod health;
pub mod kv;
pub mod one_shot;
pub mod openapi;
pub mod pd;
pub mod request;
pub mod request_log;
pub mod txn;
pub mod txn_kv;
pub mod ui;

use actix_web::web;

use body::BodyLimit;

use crate::admin_service::AdminService;
use crate::config::ApiConfig;
use crate::kv_service::KvService;
use crate::pd::PdClient;
use crate::server::address_book::AddressBook;

/// What every handler needs: shared by all HTTP workers.
pub struct ApiState {
    /// Executes key-value operations.
    pub service: KvService,
    /// Executes admin operations on regions.
    pub admin: AdminService,
    /// Reaches the placement driver, wherever it runs.
    pub pd: std::sync::Arc<PdClient>,
    /// Request limits.
    pub limits: ApiConfig,
    /// Where the cluster's stores listen.
    pub addresses: AddressBook,
    /// Asks other nodes' client listeners whether they are alive.
    pub health_probe: crate::security::NodeHttp,
    /// The node's copy of the authentication state.
    pub auth: std::sync::Arc<crate::auth::AuthCache>,
    /// Coordinates transactions.
    pub txn: crate::txn::client::TxnClient,
    /// Hands this node's leaderships away before a planned stop.
    pub leader_drain: crate::server::leader_drain::LeaderDrain,
}

/// Registers every route of the API, for `App::configure`.
pub fn configure(state: web::Data<ApiState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        let body_timeout = state.limits.body_read_timeout();
        let value_limit = BodyLimit {
            bytes: state.limits.max_value_bytes,
            timeout: body_timeout,
        };
        let admin_limit = BodyLimit {
            bytes: admin::ADMIN_BODY_LIMIT,
            timeout: body_timeout,
        };
        let txn_limit = BodyLimit {
            bytes: txn::txn_body_bytes(&state.limits),
            timeout: body_timeout,
        };
        let get = || error::method_not_allowed("GET");
        let post = || error::method_not_allowed("POST");
        cfg.app_data(state)
            .service(
                web::resource("/health")
                    .get(health::health)
                    .default_service(get()),
            )
            .service(
                web::resource("/metrics")
                    .get(crate::metrics::expose)
                    .default_service(get()),
            )
            .service(
                web::resource("/v1/openapi.json")
                    .get(openapi::spec)
                    .default_service(get()),
            )
            .service(
                web::scope("/v1/kv")
                    .app_data(value_limit)
                    .service(web::resource("").get(kv::scan).default_service(get()))
                    .service(
                        web::resource("/{key:.*}")
                            .get(kv::get)
                            .route(web::head().to(kv::get))
                            .put(kv::put)
                            .delete(kv::delete)
                            .default_service(error::method_not_allowed("GET, HEAD, PUT, DELETE")),
                    ),
            )
            .service(
                web::resource("/v1/txn/ts")
                    .get(txn::timestamps)
                    .default_service(get()),
            )
            .service(
                web::resource("/v1/txn/safe-point")
                    .get(txn::safe_point)
                    .default_service(get()),
            )
            .service(
                web::resource("/v1/txn/locks")
                    .get(txn::locks)
                    .default_service(get()),
            )
            .service(
                web::scope("/v1/txn")
                    .app_data(txn_limit)
                    .service(
                        web::resource("")
                            .post(txn::one_shot)
                            .default_service(post()),
                    )
                    .service(
                        web::resource("/begin")
                            .post(txn::begin)
                            .default_service(post()),
                    )
                    .service(
                        web::resource("/commit")
                            .post(txn::commit)
                            .default_service(post()),
                    ),
            )
            .service(
                web::scope("/v1/admin")
                    .app_data(admin_limit)
                    .service(
                        web::resource("/cluster")
                            .get(pd::cluster)
                            .default_service(get()),
                    )
                    .service(
                        web::resource("/cluster/regions")
                            .get(pd::cluster_regions)
                            .default_service(get()),
                    )
                    .service(
                        web::resource("/operators")
                            .get(pd::operators)
                            .default_service(get()),
                    )
                    .service(
                        web::resource("/stores/{id}/offline")
                            .post(pd::set_store_offline)
                            .default_service(post()),
                    )
                    .service(
                        web::resource("/regions")
                            .get(admin::list_regions)
                            .default_service(get()),
                    )
                    .service(
                        web::resource("/regions/{id}")
                            .get(admin::get_region)
                            .default_service(get()),
                    )
                    .service(
                        web::resource("/regions/{id}/split")
                            .post(admin::split_region)
                            .default_service(post()),
                    )
                    .service(
                        web::resource("/regions/{id}/merge")
                            .post(admin::merge_region)
                            .default_service(post()),
                    )
                    .service(
                        web::resource("/regions/{id}/peers")
                            .post(admin::add_peer)
                            .default_service(post()),
                    )
                    .service(
                        web::resource("/regions/{id}/peers/{peer_id}")
                            .delete(admin::remove_peer)
                            .default_service(error::method_not_allowed("DELETE")),
                    )
                    .service(
                        web::resource("/regions/{id}/transfer-leader")
                            .post(admin::transfer_leader)
                            .default_service(post()),
                    )
                    .service(
                        web::resource("/stores")
                            .get(admin::list_stores)
                            .default_service(get()),
                    )
                    .service(
                        web::resource("/stores/{id}")
                            .get(admin::get_store)
                            .default_service(get()),
                    )
                    .service(
                        web::resource("/drain-leaders")
                            .get(admin::drain_status)
                            .post(admin::start_drain)
                            .delete(admin::stop_drain)
                            .default_service(error::method_not_allowed("GET, POST, DELETE")),
                    )
                    .service(
                        web::resource("/faults/partition")
                            .get(faults::get_partition)
                            .post(faults::partition)
                            .delete(faults::heal)
                            .default_service(error::method_not_allowed("GET, POST, DELETE")),
                    ),
            )
            .configure(auth::routes)
            .configure(ui::routes)
            .default_service(web::to(error::route_not_found));
    }
}

#[cfg(test)]
mod tests;
