//! `GET /health`: whether this node, and the cluster as it sees it, can serve.
//!
//! Two questions, two answers:
//!
//! - `GET /health?live` is a liveness probe: 200 `{"status":"ok","store_id":N}` whenever
//!   the process answers HTTP at all. Orchestrators restart a node that fails it.
//! - `GET /health` is a readiness probe: 200 with status `ok` only if the placement driver
//!   answers and reports that regions led from live stores tile the whole key space; else
//!   503 with status `degraded`, the reasons, and the usual JSON error (code `degraded`).
//!   A node answering `ok` to the first and `degraded` to the second is up but cannot
//!   vouch that every key is served (no leader for some range, the PD unreachable), or
//!   is draining its leaderships before a planned stop (`crate::server::leader_drain`), which
//!   takes it out of a load balancer's rotation.
//!
//! The placement driver learns regions from their leaders' heartbeats, so for about one
//! heartbeat interval after a cluster starts (or after the PD's leadership moves) the
//! answer may be `degraded` while the picture fills in.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::ApiState;
use crate::pd::PdRequest;

/// How long the readiness check waits for the placement driver.
const PD_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /health[?live]`.
pub async fn health(req: HttpRequest, state: web::Data<ApiState>) -> HttpResponse {
    let store_id = state.service.store_id();
    let live_only = req
        .query_string()
        .split('&')
        .any(|param| param == "live" || param.starts_with("live="));
    if live_only {
        return HttpResponse::Ok().json(json!({ "status": "ok", "store_id": store_id }));
    }
    let mut reasons: Vec<String> = match state.pd.call(&PdRequest::Health, PD_HEALTH_TIMEOUT).await
    {
        Ok(answer) => answer["problems"]
            .as_array()
            .map(|problems| {
                problems
                    .iter()
                    .filter_map(|p| p.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_else(|| vec!["the placement driver answered garbage".into()]),
        Err(e) => vec![format!("the placement driver cannot be read: {e}")],
    };
    if state.leader_drain.is_draining() {
        reasons.push(
            "this node is draining its leaderships before a stop (tinykv-ctl store drain-leaders): send requests elsewhere"
                .into(),
        );
    }
    if reasons.is_empty() {
        return HttpResponse::Ok().json(json!({ "status": "ok", "store_id": store_id }));
    }
    HttpResponse::ServiceUnavailable().json(json!({
        "status": "degraded",
        "store_id": store_id,
        "reasons": reasons,
        "error": { "code": "degraded", "message": reasons.join("; ") },
    }))
}
