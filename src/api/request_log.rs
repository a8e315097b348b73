//! Every client request's id, span, access-log line and slow-request explanation.
//!
//! [`request_log`] is the outermost middleware of the client API. For each request it
//!
//! - settles the request's id ([`RequestId::from_headers`]: the client's `X-Request-Id`,
//!   else the trace id of its `traceparent`, else a fresh one); an `X-Request-Id` that is
//!   not 1 to 128 visible ASCII characters is refused with 400 `invalid_request_id`
//!   before anything else runs;
//! - runs the request inside a `request` span naming the id (so every log line written
//!   while serving it carries `request_id=…`) and with a [`RequestContext`] the service
//!   records the request's timeline in;
//! - answers the id in the `X-Request-Id` header (error bodies name it too, as
//!   `error.request_id`);
//! - writes one access-log line (target [`ACCESS_LOG_TARGET`], when `log.access_log` is
//!   on): id, method, path, route, status, response bytes, duration, the store that
//!   served the request and the attempts it took;
//! - logs a request slower than `api.slow_request_ms` at `warn`, with the same fields and
//!   the write's raftstore stages (`queue 0.1 ms, raft 180.3 ms, apply 0.2 ms, write
//!   0.9 ms`), so that the line says where the time went.
//!
//! The access log is written by its own non-blocking writer (see [`crate::logging`]), so
//! a slow terminal or pipe never holds up a request; its lines name the request id
//! themselves, since that writer sees no spans.

use std::time::{Duration, Instant};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::HttpResponse;
use tracing::Instrument;

use crate::error::Error;
use crate::request_context::{
    RequestContext, RequestId, RequestTimeline, REQUEST_ID_HEADER, TRACEPARENT_HEADER,
};

/// The `tracing` target of access-log lines.
pub const ACCESS_LOG_TARGET: &str = "tinykv::access";

/// What the middleware does beyond the id and the span (as app data).
#[derive(Debug, Clone, Copy)]
pub struct RequestLog {
    /// Whether to write an access-log line per request.
    pub access_log: bool,
    /// Requests at least this slow are logged at `warn`.
    pub slow_request: Duration,
}

/// The middleware; see the module documentation.
pub async fn request_log(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let settings = req.app_data::<RequestLog>().copied().unwrap_or(RequestLog {
        access_log: false,
        slow_request: Duration::MAX,
    });
    let headers = req.headers();
    let given = headers.get(REQUEST_ID_HEADER).map(|v| v.as_bytes());
    let traceparent = headers.get(TRACEPARENT_HEADER).map(|v| v.as_bytes());
    let (id, refusal) = match RequestId::from_headers(given, traceparent) {
        Ok(id) => (id, None),
        Err(why) => (RequestId::generate(), Some(why)),
    };
    let context = RequestContext::new(id.clone());
    let span = tracing::info_span!("request", request_id = %id);
    crate::trace_export::join_client_trace(&span, traceparent);
    let method = req.method().clone();
    // The path and route are read from the answered request, when a line needs them;
    // an error that escapes the handlers takes the request with it, so they are kept
    // beforehand only if every request is described.
    let describe_all = settings.access_log || crate::trace_export::is_on();
    let early = describe_all.then(|| (req.path().to_string(), req.match_pattern()));
    let served = async move {
        match refusal {
            Some(why) => Ok(req.error_response(Error::bad_request("invalid_request_id", why))),
            None => match next.call(req).await {
                Ok(response) => Ok(response.map_into_boxed_body()),
                // An error that escaped the handlers becomes its response here, inside the
                // scope, so that its body names the request id.
                Err(e) => {
                    let response = e.error_response();
                    Err((e, response))
                }
            },
        }
    };
    let mut served = RequestContext::scope(context.clone(), served.instrument(span.clone())).await;
    let (status, response_headers, body_size) = match &mut served {
        Ok(response) => {
            let size = response.response().body().size();
            (response.status(), response.headers_mut(), size)
        }
        Err((_, response)) => {
            let size = response.body().size();
            (response.status(), response.headers_mut(), size)
        }
    };
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        response_headers.insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    let took = started.elapsed();
    let slow = took >= settings.slow_request;
    if !(describe_all || slow) {
        return unwrap_served(served);
    }
    let (path, route) = match (&served, early) {
        (Ok(response), _) => (
            response.request().path().to_string(),
            response.request().match_pattern(),
        ),
        (Err(_), Some(early)) => early,
        (Err(_), None) => (String::new(), None),
    };
    let timeline = context.timeline();
    crate::trace_export::describe(
        &span,
        method.as_str(),
        route.as_deref(),
        status.as_u16(),
        &timeline,
    );
    if settings.access_log || slow {
        let line = AccessLine {
            id: id.as_str(),
            method: method.as_str(),
            path: &path,
            route: route.as_deref().unwrap_or("unmatched"),
            status: status.as_u16(),
            bytes: match body_size {
                BodySize::Sized(n) => n,
                _ => 0,
            },
            took,
            timeline: &timeline,
        };
        let _entered = span.enter();
        if settings.access_log {
            line.write_access();
        }
        if slow {
            line.write_slow();
        }
    }
    unwrap_served(served)
}

/// The middleware's answer: the response, or the error with the response made for it.
fn unwrap_served(
    served: Result<ServiceResponse<BoxBody>, (actix_web::Error, HttpResponse)>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    served.map_err(|(e, response)| {
        actix_web::error::InternalError::from_response(e.to_string(), response).into()
    })
}

/// One answered request, as the logs describe it.
struct AccessLine<'a> {
    id: &'a str,
    method: &'a str,
    path: &'a str,
    route: &'a str,
    status: u16,
    bytes: u64,
    took: Duration,
    timeline: &'a RequestTimeline,
}

impl AccessLine<'_> {
    fn millis(&self) -> f64 {
        (self.took.as_secs_f64() * 1e6).round() / 1e3
    }

    fn write_access(&self) {
        tracing::info!(
            target: ACCESS_LOG_TARGET,
            request_id = %self.id,
            method = self.method,
            path = self.path,
            route = self.route,
            status = self.status,
            bytes = self.bytes,
            millis = self.millis(),
            served_by = self.timeline.served_by,
            attempts = self.timeline.attempts,
            "access"
        );
    }

    fn write_slow(&self) {
        tracing::warn!(
            method = self.method,
            path = self.path,
            status = self.status,
            millis = self.millis(),
            served_by = self.timeline.served_by,
            attempts = self.timeline.attempts,
            stages = %self.timeline.stages_text(),
            "slow request"
        );
    }
}
