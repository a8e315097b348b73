//! What the client listener lets in, before any handler runs.
//!
//! Three rules, applied by [`admit`], a middleware the node wraps around the whole API:
//!
//! - **No cross-site writes.** A web page open in an operator's browser may send requests
//!   to any address, and a "simple" request (a `POST` with `text/plain`, or a form) needs
//!   no permission from the server. So a request that is not a `GET`, `HEAD` or `OPTIONS`
//!   is refused (403 `cross_origin`) if it says it comes from another origin (an `Origin`
//!   header naming another host than the request's `Host`, or `Sec-Fetch-Site:
//!   cross-site`), and every `POST` must carry `Content-Type: application/json` (415),
//!   which a browser cannot send cross-site without asking first. `PUT` and `DELETE` are
//!   never simple requests, so values keep whatever type a client gives them.
//! - **A bound on requests in flight** (`api.max_in_flight_requests`): one more is
//!   refused with 503 `overloaded` and `Retry-After: 1`, without being read. Nothing was
//!   executed, so it is safe to retry.
//! - **A bound on request bytes in flight** (`api.max_in_flight_bytes`): a `PUT` or `POST`
//!   reserves its announced `Content-Length` (or, without one, the largest body its route
//!   takes) until it is answered; past the bound it is refused the same way. Large values
//!   are copied several times on their way through raft, so this is what keeps sixteen
//!   concurrent 8 MiB writes from taking gigabytes.
//!
//! Health, metrics and the API document are exempt from the bounds, so that a node under
//! load can still be watched.

use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::ApiConfig;
use crate::error::Error;

/// The node's admission state: shared by every HTTP worker (as app data).
#[derive(Clone)]
pub struct Admission {
    requests: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    max_bytes: usize,
    /// What a body without a `Content-Length` reserves.
    unannounced_body: usize,
}

impl Admission {
    /// The bounds of `limits`.
    pub fn new(limits: &ApiConfig) -> Admission {
        Admission {
            requests: Arc::new(Semaphore::new(limits.max_in_flight_requests)),
            bytes: Arc::new(Semaphore::new(limits.max_in_flight_bytes)),
            max_bytes: limits.max_in_flight_bytes,
            unannounced_body: limits.max_value_bytes.min(limits.max_in_flight_bytes),
        }
    }
}

/// The middleware; see the module documentation. A refusal is answered here, as the
/// API's JSON error, without running the handler.
pub async fn admit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    match check(&req) {
        Ok(permits) => {
            let response = next.call(req).await?;
            drop(permits);
            Ok(response.map_into_boxed_body())
        }
        Err(refusal) => Ok(req.error_response(refusal)),
    }
}

/// What a request holds while it is served.
type Permits = (Option<OwnedSemaphorePermit>, Option<OwnedSemaphorePermit>);

/// Checks a request against the rules; returns what it holds while it is served.
fn check(req: &ServiceRequest) -> Result<Permits, Error> {
    let method = req.method().clone();
    let changes_state = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    if changes_state {
        check_same_origin(req)?;
    }
    if method == Method::POST {
        check_json(req)?;
    }
    let Some(admission) = req.app_data::<Admission>() else {
        return Ok((None, None));
    };
    let path = req.path();
    if path == "/health" || path == "/metrics" || path == "/v1/openapi.json" {
        return Ok((None, None));
    }
    let request = admission
        .requests
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            Error::Overloaded("the node has as many requests in flight as it takes; retry".into())
        })?;
    let body_bytes = match method {
        Method::PUT | Method::POST => req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(admission.unannounced_body),
        _ => 0,
    };
    // A body larger than the whole budget is the body limit's to refuse (413).
    let reserved = body_bytes.min(admission.max_bytes);
    let bytes = match u32::try_from(reserved) {
        Ok(0) => None,
        Ok(permits) => Some(
            admission
                .bytes
                .clone()
                .try_acquire_many_owned(permits)
                .map_err(|_| {
                    Error::Overloaded(
                        "the node holds as many request bytes as it takes; retry".into(),
                    )
                })?,
        ),
        Err(_) => return Err(Error::TooLarge("the request body is too large".into())),
    };
    Ok((Some(request), bytes))
}

/// Refuses a request from a page of another origin.
fn check_same_origin(req: &ServiceRequest) -> Result<(), Error> {
    let headers = req.headers();
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| site.eq_ignore_ascii_case("cross-site"));
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let foreign_origin = origin.is_some_and(|origin| {
        let authority = origin
            .split_once("://")
            .map_or(origin, |(_, rest)| rest)
            .trim_end_matches('/');
        host.is_none_or(|host| !authority.eq_ignore_ascii_case(host))
    });
    if cross_site || foreign_origin {
        return Err(Error::Forbidden {
            code: "cross_origin",
            message: format!(
                "a {} from another origin ({}) is refused: the API takes no cross-site requests",
                req.method(),
                origin.unwrap_or("a cross-site page")
            ),
        });
    }
    Ok(())
}

/// Refuses a `POST` whose body is not declared as JSON.
fn check_json(req: &ServiceRequest) -> Result<(), Error> {
    let given = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = given.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    Err(Error::UnsupportedMediaType(format!(
        "a POST must carry Content-Type: application/json (got {given:?})"
    )))
}

#[cfg(test)]
mod tests {
    use actix_web::{test, web, App, HttpResponse};

    use super::*;

    fn limits(requests: usize, bytes: usize) -> ApiConfig {
        ApiConfig {
            max_in_flight_requests: requests,
            max_in_flight_bytes: bytes,
            max_value_bytes: bytes,
            ..Default::default()
        }
    }

    #[actix_rt::test]
    async fn requests_beyond_the_bounds_are_refused_as_overloaded_and_not_run() {
        let admission = Admission::new(&limits(2, 1000));
        let ran = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = ran.clone();
        let app = test::init_service(
            App::new()
                .app_data(admission.clone())
                .wrap(actix_web::middleware::from_fn(admit))
                .route(
                    "/x",
                    web::put().to(move || {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        async { HttpResponse::Ok().finish() }
                    }),
                )
                .route(
                    "/health",
                    web::get().to(|| async { HttpResponse::Ok().finish() }),
                ),
        )
        .await;
        let put = |len: usize| {
            test::TestRequest::put()
                .uri("/x")
                .insert_header(("content-length", len.to_string()))
                .set_payload(vec![b'x'; len])
                .to_request()
        };
        assert_eq!(test::call_service(&app, put(10)).await.status(), 200);

        // 900 of the 1,000 bytes are held by requests still in flight: 200 more do not fit.
        let held = admission.bytes.clone().try_acquire_many_owned(900).unwrap();
        let refused = test::call_service(&app, put(200)).await;
        assert_eq!(refused.status(), 503);
        assert_eq!(refused.headers().get("retry-after").unwrap(), "1");
        let body = test::read_body(refused).await;
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["code"], "overloaded");
        assert_eq!(
            test::call_service(&app, put(100)).await.status(),
            200,
            "fits"
        );
        drop(held);

        // Both request slots taken: a third request is refused, health still answers.
        let slots = admission
            .requests
            .clone()
            .try_acquire_many_owned(2)
            .unwrap();
        assert_eq!(test::call_service(&app, put(1)).await.status(), 503);
        let health = test::TestRequest::get().uri("/health").to_request();
        assert_eq!(test::call_service(&app, health).await.status(), 200);
        drop(slots);
        assert_eq!(test::call_service(&app, put(1)).await.status(), 200);
        assert_eq!(
            ran.load(std::sync::atomic::Ordering::SeqCst),
            3,
            "refused ones never ran"
        );
    }
}
