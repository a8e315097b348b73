//! The built-in web dashboard, served under `/ui`.
//!
//! One static page with a plain script and a style sheet, written by hand next to this
//! file (`ui/index.html`, `ui/app.js`, `ui/style.css`) and compiled into the binary with
//! `include_str!`: there is no build step and nothing is loaded from anywhere but the node
//! serving the page. The script reads the node's own JSON and Prometheus endpoints:
//!
//! - every 2 s, `GET /v1/admin/stores` (the address book, whether each store answers this
//!   node's health probe, and region and leader counts per store) and
//!   `GET /v1/admin/regions`, drawn as a table of stores, a bar of the key space split into
//!   regions in key order (each segment labelled with its region id, its leader's store
//!   and its replicas' stores, coloured by the leader's store) and a table of regions;
//! - every second, `GET /metrics`, whose `tinykv_http_requests_total` counters give the
//!   requests per second of each route group, drawn as numbers and SVG sparklines.
//!
//! What the page shows is this node's view: the regions it holds a peer of, and the other
//! stores as it reaches them. Rendered elements carry `data-store-id`, `data-region-id`
//! and `data-route` attributes, which the headless-browser check of CI (`.ci/ui.sh`)
//! looks for.
//!
//! Every file is answered with its content type, `Cache-Control: no-cache` (a browser
//! revalidates, so a new binary's page is never mixed with an old script), and
//! `X-Content-Type-Options: nosniff`; the page also with a Content-Security-Policy that
//! allows only this origin's script, style sheet and endpoints.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use super::error;

/// The page, `GET /ui` and `GET /ui/`.
pub const INDEX_HTML: &str = include_str!("ui/index.html");

/// The script, `GET /ui/app.js`.
pub const APP_JS: &str = include_str!("ui/app.js");

/// The style sheet, `GET /ui/style.css`.
pub const STYLE_CSS: &str = include_str!("ui/style.css");

/// The `Cache-Control` header of every dashboard file.
pub const CACHE_CONTROL: &str = "no-cache";

/// The `Content-Security-Policy` of the page: its own script, style sheet and endpoints
/// only (the `data:` image is the empty favicon).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Registers the dashboard's routes, for `ServiceConfig::configure`: `GET` only, any other
/// method is a 405 like everywhere in the API.
pub fn routes(cfg: &mut web::ServiceConfig) {
    let not_allowed = || error::method_not_allowed("GET");
    cfg.service(
        web::resource(["/ui", "/ui/"])
            .get(index)
            .default_service(not_allowed()),
    )
    .service(
        web::resource("/ui/app.js")
            .get(app_js)
            .default_service(not_allowed()),
    )
    .service(
        web::resource("/ui/style.css")
            .get(style_css)
            .default_service(not_allowed()),
    );
}

/// The start of a 200 answer with one of the dashboard's files, of `content_type`.
fn file(content_type: &'static str) -> actix_web::HttpResponseBuilder {
    let mut response = HttpResponse::Ok();
    response
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, CACHE_CONTROL))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    response
}

/// `GET /ui`, `GET /ui/`: the page.
pub async fn index() -> HttpResponse {
    file("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(INDEX_HTML)
}

/// `GET /ui/app.js`: the script.
pub async fn app_js() -> HttpResponse {
    file("application/javascript; charset=utf-8").body(APP_JS)
}

/// `GET /ui/style.css`: the style sheet.
pub async fn style_css() -> HttpResponse {
    file("text/css; charset=utf-8").body(STYLE_CSS)
}
