//! The node's HTTP API (actix-web).
//!
//! Three groups of routes share one [`ApiState`]:
//!
//! - [`kv`]: the client key-value API under `/v1/kv`, with its input rules in
//!   [`request`];
//! - [`internal`]: `/internal/v1/raw/*` and `/internal/v1/raft-cmd`, where other nodes
//!   forward requests and admin commands, and `/internal/v1/pd` ([`placement`]), where
//!   they reach the placement driver;
//! - [`admin`]: views of regions and stores, and operations on regions (split, add or
//!   remove a peer, transfer leadership) under `/v1/admin`, the placement driver's
//!   views and store draining ([`placement`]), with [`faults`], fault
//!   injection for tests, under `/v1/admin/faults` (404 unless `debug.fault_injection`
//!   is on);
//!
//! plus `GET /health`, `GET /metrics` (Prometheus, see [`crate::metrics`]),
//! `GET /v1/openapi.json` ([`openapi`]: the OpenAPI 3.0 description of all but
//! `/internal`) and the web dashboard under `/ui` ([`ui`]). Every error, including an
//! unknown route (404), a wrong method (405) and an oversized body (413), is answered as
//! JSON by [`error`]. Request bodies are limited per scope with actix's `PayloadConfig`:
//! `api.max_value_bytes` for client values, a little more for forwarded requests that
//! carry a key and a value, and [`admin::ADMIN_BODY_LIMIT`] for the small JSON bodies of
//! admin operations.

pub mod admin;
pub mod error;
pub mod faults;
pub mod internal;
pub mod kv;
pub mod openapi;
pub mod placement;
pub mod request;
pub mod ui;

use actix_web::web::{self, PayloadConfig};
use actix_web::HttpResponse;
use serde_json::json;

use crate::address_book::AddressBook;
use crate::admin::AdminService;
use crate::config::ApiConfig;
use crate::forward::RAFT_CMD_PATH;
use crate::placement::{PdClient, PD_PATH};
use crate::service::KvService;

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
}

/// Largest body `POST /internal/v1/pd` accepts (a heartbeat lists every region a node
/// leads).
pub const PD_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Registers every route of the API, for `App::configure`.
pub fn configure(state: web::Data<ApiState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        let value_limit = state.limits.max_value_bytes;
        let internal_limit = internal::body_limit(&state.limits);
        let not_allowed = || web::to(error::method_not_allowed);
        cfg.app_data(state)
            .service(
                web::resource("/health")
                    .get(health)
                    .default_service(not_allowed()),
            )
            .service(
                web::resource("/metrics")
                    .get(crate::metrics::expose)
                    .default_service(not_allowed()),
            )
            .service(
                web::resource("/v1/openapi.json")
                    .get(openapi::spec)
                    .default_service(not_allowed()),
            )
            .service(
                web::scope("/v1/kv")
                    .app_data(PayloadConfig::new(value_limit))
                    .service(
                        web::resource("")
                            .get(kv::scan)
                            .default_service(not_allowed()),
                    )
                    .service(
                        web::resource("/{key:.*}")
                            .get(kv::get)
                            .put(kv::put)
                            .delete(kv::delete)
                            .default_service(not_allowed()),
                    ),
            )
            .service(
                web::scope("/internal/v1/raw")
                    .app_data(PayloadConfig::new(internal_limit))
                    .service(
                        web::resource("/get")
                            .post(internal::raw_get)
                            .default_service(not_allowed()),
                    )
                    .service(
                        web::resource("/put")
                            .post(internal::raw_put)
                            .default_service(not_allowed()),
                    )
                    .service(
                        web::resource("/delete")
                            .post(internal::raw_delete)
                            .default_service(not_allowed()),
                    )
                    .service(
                        web::resource("/scan")
                            .post(internal::raw_scan)
                            .default_service(not_allowed()),
                    ),
            )
            .service(
                web::resource(RAFT_CMD_PATH)
                    .app_data(PayloadConfig::new(internal_limit))
                    .post(internal::raft_cmd)
                    .default_service(not_allowed()),
            )
            .service(
                web::resource(PD_PATH)
                    .app_data(PayloadConfig::new(PD_BODY_LIMIT))
                    .post(placement::internal)
                    .default_service(not_allowed()),
            )
            .service(
                web::scope("/v1/admin")
                    .app_data(PayloadConfig::new(admin::ADMIN_BODY_LIMIT))
                    .service(
                        web::resource("/cluster")
                            .get(placement::cluster)
                            .default_service(not_allowed()),
                    )
                    .service(
                        web::resource("/cluster/regions")
                            .get(placement::cluster_regions)
                            .default_service(not_allowed()),
                    )
                    .service(
                        web::resource("/operators")
                            .get(placement::operators)
                            .default_service(not_allowed()),
                    )
                    .service(
                        web::resource("/stores/{id}/offline")
                            .post(placement::set_store_offline)
                            .default_service(not_allowed()),
                    )
                    .service(
                        web::resource("/regions")
                            .get(admin::list_regions)
                            .default_service(not_allowed()),
                    )
                    .service(
                        web::resource("/regions/{id}")
                            .get(admin::get_region)
                            .default_service(not_allowed()),
                    )
                    .service(
                        web::resource("/regions/{id}/split")
                            .post(admin::split_region)
                            .default_service(not_allowed()),
                    )
                    .service(
                        web::resource("/regions/{id}/peers")
                            .post(admin::add_peer)
                            .default_service(not_allowed()),
                    )
                    .service(
                        web::resource("/regions/{id}/peers/{peer_id}")
                            .delete(admin::remove_peer)
                            .default_service(not_allowed()),
                    )
                    .service(
                        web::resource("/regions/{id}/transfer-leader")
                            .post(admin::transfer_leader)
                            .default_service(not_allowed()),
                    )
                    .service(
                        web::resource("/stores")
                            .get(admin::list_stores)
                            .default_service(not_allowed()),
                    )
                    .service(
                        web::resource("/stores/{id}")
                            .get(admin::get_store)
                            .default_service(not_allowed()),
                    )
                    .service(
                        web::resource("/faults/partition")
                            .get(faults::get_partition)
                            .post(faults::partition)
                            .delete(faults::heal)
                            .default_service(not_allowed()),
                    ),
            )
            .configure(ui::routes)
            .default_service(web::to(error::route_not_found));
    }
}

/// `GET /health`: the node is up and serving.
async fn health(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok", "store_id": state.service.store_id() }))
}

#[cfg(test)]
mod tests;
