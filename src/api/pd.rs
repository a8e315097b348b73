//! The placement driver's endpoints: the cluster view, operators, draining a store, and
//! the internal endpoint nodes reach the PD through.
//!
//! - `GET /v1/admin/cluster`: the cluster's id and replica count, the PD leader's store
//!   and the meta region, how many regions and operators the PD tracks, and every store
//!   with its state (Up, Offline, Tombstone), whether it is down, when it last sent a
//!   heartbeat, and its region, leader and size figures;
//! - `GET /v1/admin/cluster/regions`: every region as the PD knows it from its leader's
//!   heartbeats, in key order: range, epoch, peers, leader, lagging peers and size;
//! - `GET /v1/admin/operators`: the operators in flight, and the recently ended ones with
//!   how they ended;
//! - `POST /v1/admin/stores/{id}/offline`: starts draining a store: its replicas are
//!   moved to the other stores, and it becomes a Tombstone once it holds none (404
//!   `store_not_found`, 409 `store_tombstone`, 409 `not_enough_stores` if fewer other
//!   stores are up than a region needs replicas; nothing changes then);
//!
//! Any node answers the admin endpoints: its [`PdClient`](crate::pd::PdClient)
//! finds the PD leader and relays the answer, errors included.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};

use super::admin::path_number;
use super::ApiState;
use crate::error::Result;
use crate::pd::PdRequest;

/// How long an admin request waits for the PD (a leader election in the meta region
/// takes about a second).
pub const PD_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /v1/admin/cluster`.
pub async fn cluster(state: web::Data<ApiState>) -> Result<HttpResponse> {
    relay(&state, &PdRequest::Cluster).await
}

/// `GET /v1/admin/cluster/regions`.
pub async fn cluster_regions(state: web::Data<ApiState>) -> Result<HttpResponse> {
    relay(&state, &PdRequest::Regions).await
}

/// `GET /v1/admin/operators`.
pub async fn operators(state: web::Data<ApiState>) -> Result<HttpResponse> {
    relay(&state, &PdRequest::Operators).await
}

/// `POST /v1/admin/stores/{id}/offline`.
pub async fn set_store_offline(
    req: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse> {
    let store_id = path_number(&req, "id")?;
    relay(&state, &PdRequest::SetStoreOffline { store_id }).await
}

/// Asks the PD leader and answers with its JSON view, or its error.
async fn relay(state: &ApiState, request: &PdRequest) -> Result<HttpResponse> {
    let view = state.pd.call(request, PD_REQUEST_TIMEOUT).await?;
    Ok(HttpResponse::Ok().json(view))
}
