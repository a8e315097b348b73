//! HTTP metrics, the slow-request log, and the `GET /metrics` endpoint.
//!
//! [`HttpMetrics`] is an actix-web middleware wrapped around the whole API. For every
//! request it counts the answer in `tinykv_http_requests_total` (by route group and status
//! class) and observes its latency in `tinykv_http_request_duration_seconds` (by route
//! group). The route group ([`route_group`]) is derived from the resource pattern the
//! request matched and its method, never from the raw path, so keys in paths cannot
//! create new series: `kv_get`, `kv_put`, `kv_delete`, `kv_scan`, `txn`, `admin`, `internal`,
//! and `other` for everything else (health, metrics, the OpenAPI document, unknown
//! routes, a wrong method on a KV route).
//!
//! A request slower than `api.slow_request_ms` is also counted in
//! `tinykv_http_slow_requests_total` (and logged, with its stages, by
//! [`crate::api::request_log`]).
//!
//! [`expose`] answers `GET /metrics` with every metric of the process's default registry
//! in Prometheus's text exposition format: these and the raftstore's
//! ([`tinykv_actors::metrics`]).

use std::future::{ready, Ready};
use std::rc::Rc;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::{Method, StatusCode};
use actix_web::HttpResponse;
use futures::future::LocalBoxFuture;
use prometheus::{
    register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge,
    HistogramVec, IntCounter, IntCounterVec, IntGauge, TextEncoder,
};

use crate::error::Error;

/// HTTP requests answered, by route group and status class (`2xx`, `4xx`, ...).
pub static HTTP_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "tinykv_http_requests_total",
        "HTTP requests answered, by route group and status class.",
        &["route", "status"]
    )
    .expect("metric registers once")
});

/// Seconds from receiving a request to having its response, by route group.
pub static HTTP_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "tinykv_http_request_duration_seconds",
        "Time to answer an HTTP request, by route group.",
        &["route"],
        tinykv_actors::metrics::duration_buckets()
    )
    .expect("metric registers once")
});

/// Requests slower than `api.slow_request_ms`, by route group.
pub static HTTP_SLOW_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "tinykv_http_slow_requests_total",
        "HTTP requests slower than api.slow_request_ms, by route group.",
        &["route"]
    )
    .expect("metric registers once")
});

/// Connections refused by TLS or by what their certificate names, by reason (one of
/// [`CONNECTION_REFUSALS`]) and listener (`peer` or `client`).
pub static CONNECTIONS_REFUSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "tinykv_connections_refused_total",
        "Connections refused: a failed TLS handshake (no certificate, another CA, not TLS), \
         a certificate naming no store on the peer listener, or a stream or request claiming \
         another store than its certificate names.",
        &["listener", "reason"]
    )
    .expect("metric registers once")
});

/// Client requests the node had to try more than once, by operation (`get`, `put`,
/// `delete`, `scan`) and how they ended (`succeeded` or `failed`).
pub static REQUESTS_RETRIED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "tinykv_requests_retried_total",
        "Client requests the node tried more than once (a leader change, a lost connection, \
         a stale epoch), by operation and by how they ended.",
        &["op", "result"]
    )
    .expect("metric registers once")
});

/// Counts one request of `op` that took retries and ended as `result`.
pub fn request_retried(op: &str, result: &str) {
    REQUESTS_RETRIED.with_label_values(&[op, result]).inc();
}

/// Transactions that could not commit, by why (`write_conflict`, `locked`,
/// `retryable`, `aborted`).
pub static TXN_CONFLICTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "tinykv_txn_conflicts_total",
        "Transactions this node coordinated that ended without committing, by reason.",
        &["reason"]
    )
    .expect("metric registers once")
});

/// Counts one transaction that ended without committing, for `reason`.
pub fn txn_conflict(reason: &str) {
    TXN_CONFLICTS.with_label_values(&[reason]).inc();
}

/// Locks of other transactions that readers and writers of this node resolved, by
/// outcome (`committed`, `rolled_back`).
pub static TXN_LOCKS_RESOLVED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "tinykv_txn_locks_resolved_total",
        "Locks in the way of a transactional read or write that this node resolved, by \
         whether their transaction had committed or was rolled back.",
        &["outcome"]
    )
    .expect("metric registers once")
});

/// Counts one lock resolved as `outcome`.
pub fn txn_lock_resolved(outcome: &str) {
    TXN_LOCKS_RESOLVED.with_label_values(&[outcome]).inc();
}

/// Versions, values and records garbage collection deleted.
pub static TXN_GC_DELETED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "tinykv_txn_gc_deleted_total",
        "Old versions, their values, and rollback records deleted by garbage collection in \
         the regions this node leads."
    )
    .expect("metric registers once")
});

/// Counts `count` deletions of garbage collection.
pub fn txn_gc_deleted(count: u64) {
    TXN_GC_DELETED.inc_by(count);
}

/// The safe point of garbage collection this node last learnt.
pub static TXN_GC_SAFE_POINT: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "tinykv_txn_gc_safe_point",
        "The garbage collector's safe point as this node last learnt it (a timestamp)."
    )
    .expect("metric registers once")
});

/// Seconds the writes this node proposed spent in each stage of the raftstore, by stage:
/// `queue` (sent until the PeerFsm proposed it), `raft` (until its entry was committed:
/// the log's fsync, replication, quorum), `apply` (until the ApplyFsm applied it) and
/// `write` (until the apply writer wrote it and it was answered); and `persist`, within
/// `raft`, until the leader's own log write was durable (for writes proposed at the
/// leader). See [`tinykv_actors::msg::WriteStages`].
pub static WRITE_STAGE_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "tinykv_write_stage_duration_seconds",
        "Time a write spent in each raftstore stage (queue, raft, apply, write; persist: the leader's own log write, within raft), at the node that proposed it.",
        &["stage"],
        tinykv_actors::metrics::duration_buckets()
    )
    .expect("metric registers once")
});

/// Records the stages of a write sent to the raftstore at `sent_at` and answered now;
/// answers their durations, in the order of [`crate::request_context::STAGES`], and the
/// leader's own log write (from proposed until durable, within `raft`; observed as stage
/// `persist`) if it is known.
pub fn write_stages(
    sent_at: Instant,
    stages: &tinykv_actors::msg::WriteStages,
) -> ([Duration; 4], Option<Duration>) {
    let now = Instant::now();
    let split = [
        stages.proposed_at.saturating_duration_since(sent_at),
        stages
            .committed_at
            .saturating_duration_since(stages.proposed_at),
        stages
            .applied_at
            .saturating_duration_since(stages.committed_at),
        now.saturating_duration_since(stages.applied_at),
    ];
    for (stage, took) in crate::request_context::STAGES.iter().zip(split) {
        WRITE_STAGE_DURATION
            .with_label_values(&[stage])
            .observe(took.as_secs_f64());
    }
    let persist = stages
        .persisted_at
        .map(|at| at.saturating_duration_since(stages.proposed_at));
    if let Some(persist) = persist {
        WRITE_STAGE_DURATION
            .with_label_values(&["persist"])
            .observe(persist.as_secs_f64());
    }
    (split, persist)
}

/// Why a connection is refused.
pub const CONNECTION_REFUSALS: [&str; 3] = ["tls_handshake", "not_a_store", "identity_mismatch"];

/// Counts one connection (or request) refused on `listener` for `reason`.
pub fn connection_refused(listener: &str, reason: &str) {
    CONNECTIONS_REFUSED
        .with_label_values(&[listener, reason])
        .inc();
}

/// Every route group [`route_group`] answers.
pub const ROUTE_GROUPS: [&str; 8] = [
    "kv_get",
    "kv_put",
    "kv_delete",
    "kv_scan",
    "txn",
    "admin",
    "internal",
    "other",
];

/// Registers every metric of the node (HTTP and raftstore), with a zero series for each
/// route group, so that `/metrics` lists them all from the start.
pub fn register_all() {
    for group in ROUTE_GROUPS {
        for class in ["2xx", "4xx", "5xx"] {
            HTTP_REQUESTS.with_label_values(&[group, class]);
        }
        HTTP_DURATION.with_label_values(&[group]);
        HTTP_SLOW_REQUESTS.with_label_values(&[group]);
    }
    for op in ["get", "put", "delete", "scan"] {
        for result in ["succeeded", "failed"] {
            REQUESTS_RETRIED.with_label_values(&[op, result]);
        }
    }
    for listener in ["peer", "client"] {
        for reason in CONNECTION_REFUSALS {
            CONNECTIONS_REFUSED.with_label_values(&[listener, reason]);
        }
    }
    for stage in crate::request_context::STAGES {
        WRITE_STAGE_DURATION.with_label_values(&[stage]);
    }
    tinykv_actors::metrics::register_all();
}

/// The route group a request is counted under, from the resource pattern it matched
/// (`None` if none) and its method.
pub fn route_group(method: &Method, pattern: Option<&str>) -> &'static str {
    let Some(pattern) = pattern else {
        return "other";
    };
    if pattern == "/v1/kv" {
        return if method == Method::GET {
            "kv_scan"
        } else {
            "other"
        };
    }
    if pattern.starts_with("/v1/kv/") {
        return match *method {
            Method::GET => "kv_get",
            Method::PUT => "kv_put",
            Method::DELETE => "kv_delete",
            _ => "other",
        };
    }
    if pattern.starts_with("/v1/admin") {
        "admin"
    } else if pattern.starts_with("/v1/txn") {
        "txn"
    } else if pattern.starts_with("/internal") {
        "internal"
    } else {
        "other"
    }
}

/// The status class label of `status`: `2xx`, `4xx`, `5xx`, ...
pub fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// Counts and times one answered request, and counts it as slow if it was.
fn record(
    method: &Method,
    pattern: Option<&str>,
    status: StatusCode,
    elapsed: Duration,
    slow: Duration,
) {
    let group = route_group(method, pattern);
    HTTP_REQUESTS
        .with_label_values(&[group, status_class(status)])
        .inc();
    HTTP_DURATION
        .with_label_values(&[group])
        .observe(elapsed.as_secs_f64());
    if elapsed >= slow {
        HTTP_SLOW_REQUESTS.with_label_values(&[group]).inc();
    }
}

/// The middleware; see the module documentation. Wrap it around the whole `App`.
#[derive(Debug, Clone, Copy)]
pub struct HttpMetrics {
    slow_request: Duration,
}

impl HttpMetrics {
    /// Measures every request; logs those that take `slow_request` or longer.
    pub fn new(slow_request: Duration) -> HttpMetrics {
        register_all();
        HttpMetrics { slow_request }
    }
}

impl<S, B> Transform<S, ServiceRequest> for HttpMetrics
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = HttpMetricsService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(HttpMetricsService {
            service: Rc::new(service),
            slow_request: self.slow_request,
        }))
    }
}

/// The service [`HttpMetrics`] wraps around the app.
pub struct HttpMetricsService<S> {
    service: Rc<S>,
    slow_request: Duration,
}

impl<S, B> Service<ServiceRequest> for HttpMetricsService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let slow = self.slow_request;
        let method = req.method().clone();
        let pattern = req.match_pattern();
        let response = self.service.call(req);
        Box::pin(async move {
            let result = response.await;
            let status = match &result {
                Ok(response) => response.status(),
                Err(e) => e.as_response_error().status_code(),
            };
            let elapsed = started.elapsed();
            record(&method, pattern.as_deref(), status, elapsed, slow);
            result
        })
    }
}

/// `GET /metrics`: every metric of the process, in Prometheus's text format.
pub async fn expose() -> crate::error::Result<HttpResponse> {
    let text = TextEncoder::new()
        .encode_to_string(&prometheus::gather())
        .map_err(|e| Error::Io(format!("cannot encode the metrics: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type(prometheus::TEXT_FORMAT)
        .body(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_grouped_by_pattern_and_method() {
        let key = Some("/v1/kv/{key:.*}");
        assert_eq!(route_group(&Method::GET, key), "kv_get");
        assert_eq!(route_group(&Method::PUT, key), "kv_put");
        assert_eq!(route_group(&Method::DELETE, key), "kv_delete");
        assert_eq!(route_group(&Method::POST, key), "other");
        assert_eq!(route_group(&Method::GET, Some("/v1/kv")), "kv_scan");
        assert_eq!(route_group(&Method::POST, Some("/v1/txn")), "txn");
        assert_eq!(route_group(&Method::GET, Some("/v1/txn/locks")), "txn");
        assert_eq!(
            route_group(&Method::POST, Some("/v1/admin/regions/{id}/split")),
            "admin"
        );
        assert_eq!(
            route_group(&Method::POST, Some("/internal/v1/raw/get")),
            "internal"
        );
        assert_eq!(route_group(&Method::GET, Some("/health")), "other");
        assert_eq!(route_group(&Method::GET, None), "other");
        let pattern = Some("/v1/kv/{key:.*}");
        for method in [Method::GET, Method::PUT, Method::DELETE, Method::HEAD] {
            assert!(ROUTE_GROUPS.contains(&route_group(&method, pattern)));
        }
    }

    #[test]
    fn statuses_are_counted_by_class() {
        assert_eq!(status_class(StatusCode::OK), "2xx");
        assert_eq!(status_class(StatusCode::NOT_FOUND), "4xx");
        assert_eq!(status_class(StatusCode::GATEWAY_TIMEOUT), "5xx");
    }

    #[test]
    fn a_slow_request_is_counted_as_slow() {
        let slow = || HTTP_SLOW_REQUESTS.with_label_values(&["admin"]).get();
        let before = slow();
        let pattern = Some("/v1/admin/regions");
        let ms = Duration::from_millis;
        record(&Method::GET, pattern, StatusCode::OK, ms(5), ms(10));
        assert_eq!(slow(), before);
        record(&Method::GET, pattern, StatusCode::OK, ms(20), ms(10));
        assert!(slow() > before);
    }
}
