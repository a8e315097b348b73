//! Fault-injection endpoints, for chaos tests of real processes.
//!
//! Present only when the node runs with `[debug] fault_injection = true`; otherwise each
//! answers 404 `fault_injection_disabled`, and nothing about the node changes. See
//! [`crate::server::network_faults`] for what a partition does.
//!
//! - `GET /v1/admin/faults/partition`: `{"blocked_stores": [...]}`, the stores this node
//!   is cut off from now;
//! - `POST /v1/admin/faults/partition` with `{"blocked_stores": [2, 3]}`: cuts this node
//!   off from those stores (raft messages to and from them are dropped, requests
//!   forwarded to them fail at once), replacing any earlier partition; answers the new
//!   list. Every id must be another store of the address book (400 `unknown_store`
//!   otherwise); a body that is not that JSON object is a 400 `bad_json`;
//! - `DELETE /v1/admin/faults/partition`: heals; answers `{"blocked_stores": []}`.
//!
//! The switch is found in the app data as a `web::Data<Faults>`, which the node registers
//! next to the API; an app without it behaves as if fault injection were disabled.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::admin::parse_body;
use super::ApiState;
use crate::error::{Error, Result};
use crate::server::network_faults::Faults;

/// The request body type of the fault endpoints.
type Body = super::body::ReadBody;

/// The body of `POST /v1/admin/faults/partition`.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PartitionBody {
    /// The stores to cut this node off from.
    pub blocked_stores: Vec<u64>,
}

/// The switch, if fault injection is enabled; a 404 otherwise.
fn enabled(faults: Option<web::Data<Faults>>) -> Result<web::Data<Faults>> {
    match faults {
        Some(faults) if faults.is_enabled() => Ok(faults),
        _ => Err(Error::NoSuchResource {
            code: "fault_injection_disabled",
            message: "fault injection is disabled on this node (set debug.fault_injection = true)"
                .into(),
        }),
    }
}

fn blocked_json(faults: &Faults) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "blocked_stores": faults.blocked() }))
}

/// `GET /v1/admin/faults/partition`.
pub async fn get_partition(faults: Option<web::Data<Faults>>) -> Result<HttpResponse> {
    let faults = enabled(faults)?;
    Ok(blocked_json(&faults))
}

/// `POST /v1/admin/faults/partition`.
pub async fn partition(
    state: web::Data<ApiState>,
    faults: Option<web::Data<Faults>>,
    body: Body,
) -> Result<HttpResponse> {
    let faults = enabled(faults)?;
    let body: PartitionBody = parse_body(body)?;
    let own = state.service.store_id();
    for &id in &body.blocked_stores {
        if id == own || state.addresses.get(id).is_none() {
            return Err(Error::bad_request(
                "unknown_store",
                format!("store {id} is not another store of the address book"),
            ));
        }
    }
    faults
        .partition(body.blocked_stores)
        .map_err(|e| Error::Io(e.to_string()))?;
    Ok(blocked_json(&faults))
}

/// `DELETE /v1/admin/faults/partition`.
pub async fn heal(faults: Option<web::Data<Faults>>) -> Result<HttpResponse> {
    let faults = enabled(faults)?;
    faults.heal().map_err(|e| Error::Io(e.to_string()))?;
    Ok(blocked_json(&faults))
}
