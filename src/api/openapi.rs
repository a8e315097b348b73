//! The OpenAPI 3.0 description of the REST API, served at `GET /v1/openapi.json`.
//!
//! The document is written by hand in `openapi.json` next to this file and compiled into
//! the binary. It covers every route of [`super::configure`] except the node-to-node
//! endpoints under `/internal`: paths, methods, parameters, request bodies, response
//! schemas, and the JSON error body (`{"error":{"code","message"}}`, see [`super::error`])
//! of every 4xx and 5xx answer. The tests check that it parses, that it is OpenAPI 3.0,
//! and that the router answers every path and method it lists, and only those; CI fuzzes
//! the running server against it with schemathesis (`.ci/fuzz.sh`).

use actix_web::HttpResponse;

/// The OpenAPI document, as JSON text.
pub const SPEC: &str = include_str!("openapi.json");

/// `GET /v1/openapi.json`.
pub async fn spec() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(SPEC)
}
