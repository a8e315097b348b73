//! The HTTP side: one request to one node's admin API, and what its answer means.
//!
//! [`AdminClient`] sends a [`Call`] (method, path, optional JSON body) to the node given by
//! `--addr`, over plain HTTP or, with `--cacert`, over HTTPS that checks the node's
//! certificate against that CA and the host dialled (presenting `--cert` when given), without
//! any proxy (like the other TinyKV-rs tools, so that an `http_proxy` variable does not
//! reroute requests to a local cluster), and fails it after
//! [`REQUEST_TIMEOUT`]: an operation such as transfer-leader or store offline answers only
//! once done, which can take seconds. With `--token` (or `$TINYKV_TOKEN`) every request
//! carries `Authorization: Bearer <token>`, marked sensitive so that no debug output
//! shows it. [`read_answer`] turns the status and body into the answer's JSON or a
//! [`CtlError`], with a hint on a 401 or 403 ([`auth_hint`]); it is pure, so it is tested
//! without a network.

use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use tinykv::error::error_chain;

use crate::cli::NodeTarget;
use crate::error::CtlError;

/// How long a request may take, answer included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long connecting may take: a node that is up accepts at once.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest part of a non-JSON error body quoted in an error message, in characters.
const MAX_QUOTED_BODY: usize = 200;

/// One request to the admin API.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The HTTP method.
    pub method: Method,
    /// The path, e.g. `/v1/admin/regions/5/split`.
    pub path: String,
    /// The JSON body, if the request has one.
    pub body: Option<Value>,
}

impl Call {
    /// A request without a body.
    pub fn new(method: Method, path: String) -> Call {
        Call {
            method,
            path,
            body: None,
        }
    }

    /// A request with a JSON body.
    pub fn with_body(method: Method, path: String, body: Value) -> Call {
        Call {
            method,
            path,
            body: Some(body),
        }
    }

    /// `METHOD /path`, as error messages name the request.
    pub fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// A client of one node's admin API.
#[derive(Debug, Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    /// The node's address as given, for messages.
    addr: String,
    /// `http://host:port` or `https://host:port`, without a trailing slash.
    base_url: String,
    /// `Bearer <token>`, marked sensitive, if a token was given.
    authorization: Option<HeaderValue>,
}

impl AdminClient {
    /// A client of the node `target` names, with its TLS files if any (which must load).
    pub fn new(target: &NodeTarget) -> Result<AdminClient, CtlError> {
        let builder = match &target.tls {
            Some(files) => files.http_client_builder().map_err(CtlError::ClientSetup)?,
            None => tinykv::security::http_client_builder(),
        };
        let http = builder
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| CtlError::ClientSetup(error_chain(&e)))?;
        let authorization = target
            .token
            .as_ref()
            .map(|token| {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.secret()))
                    .map_err(|_| {
                        CtlError::Usage("the token cannot be sent in an HTTP header".into())
                    })?;
                value.set_sensitive(true);
                Ok::<_, CtlError>(value)
            })
            .transpose()?;
        Ok(AdminClient {
            http,
            addr: target.addr.clone(),
            base_url: target.base_url.clone(),
            authorization,
        })
    }

    /// Sends `call` and returns the JSON of a 2xx answer.
    pub async fn send(&self, call: &Call) -> Result<Value, CtlError> {
        let url = format!("{}{}", self.base_url, call.path);
        let mut request = self.http.request(call.method.clone(), url);
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        if call.method == reqwest::Method::POST {
            // The API takes only JSON POSTs (so that no web page can send them cross-site),
            // bodies or not.
            request = request.header("content-type", "application/json");
        }
        if let Some(body) = &call.body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let fail = |e: reqwest::Error| self.transport_error(call, e);
        let response = request.send().await.map_err(fail)?;
        let status = response.status();
        let body = response.bytes().await.map_err(fail)?;
        let token_sent = self.authorization.is_some();
        read_answer(&self.addr, &call.label(), status, &body, token_sent)
    }

    /// The error for a request that got no complete answer (the URL is left out of the
    /// cause: the message names the node and path already).
    fn transport_error(&self, call: &Call, error: reqwest::Error) -> CtlError {
        if error.is_timeout() {
            CtlError::TimedOut {
                addr: self.addr.clone(),
                request: call.label(),
                seconds: REQUEST_TIMEOUT.as_secs(),
            }
        } else {
            let cause = error_chain(&error.without_url());
            let hint = scheme_hint(&cause, self.base_url.starts_with("https://"));
            CtlError::Unreachable {
                addr: self.addr.clone(),
                request: call.label(),
                cause: format!("{cause}{hint}"),
            }
        }
    }
}

/// A hint to add to a connection failure `cause` that looks like one side speaking TLS
/// and the other not (`tls`: whether this client spoke TLS); empty otherwise.
pub fn scheme_hint(cause: &str, tls: bool) -> &'static str {
    if !tls && cause.contains("invalid HTTP version") {
        " (does the node serve HTTPS? give --cacert FILE or $TINYKV_CACERT)"
    } else if tls && (cause.contains("InvalidContentType") || cause.contains("corrupt message")) {
        " (does the node serve plain HTTP? leave out --cacert and $TINYKV_CACERT)"
    } else {
        ""
    }
}

/// The error body every TinyKV-rs endpoint answers with on failure.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

/// The inside of an [`ErrorBody`].
#[derive(Debug, Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// What to add to the server's error for a refusal by authentication: how to give a
/// token (401 `unauthenticated`), or that the token lacks the role (403
/// `permission_denied`); empty for any other refusal. `token_sent`: whether the request
/// carried one.
pub fn auth_hint(status: StatusCode, code: &str, token_sent: bool) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED if token_sent => " (check --token or TINYKV_TOKEN)",
        StatusCode::UNAUTHORIZED => " (give --token or set TINYKV_TOKEN)",
        StatusCode::FORBIDDEN if code == "permission_denied" => {
            " (tinykv-ctl's commands need a token with the admin role)"
        }
        _ => "",
    }
}

/// What an answer means: its JSON if 2xx, else the server's error (`addr` and `request`
/// name the node and request in the error; `token_sent`, whether the request carried a
/// token, picks the hint of a 401).
pub fn read_answer(
    addr: &str,
    request: &str,
    status: StatusCode,
    body: &[u8],
    token_sent: bool,
) -> Result<Value, CtlError> {
    if status.is_success() {
        return serde_json::from_slice(body).map_err(|e| CtlError::UnexpectedAnswer {
            addr: addr.to_string(),
            request: request.to_string(),
            problem: format!("not JSON ({e}): {}", quote_body(body)),
        });
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => Err(CtlError::Refused {
            addr: addr.to_string(),
            request: request.to_string(),
            status: status.as_u16(),
            hint: auth_hint(status, &error.code, token_sent),
            code: error.code,
            message: error.message,
        }),
        Err(_) => Err(CtlError::BadStatus {
            addr: addr.to_string(),
            request: request.to_string(),
            status: status.to_string(),
            body: quote_body(body),
        }),
    }
}

/// The start of a body for an error message, or `(empty body)`.
fn quote_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_string();
    }
    match text.char_indices().nth(MAX_QUOTED_BODY) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDR: &str = "127.0.0.1:8081";

    fn read(status: u16, body: &str) -> Result<Value, CtlError> {
        let status = StatusCode::from_u16(status).unwrap();
        read_answer(
            ADDR,
            "GET /v1/admin/regions/9",
            status,
            body.as_bytes(),
            false,
        )
    }

    #[test]
    fn success_answers_are_json() {
        assert_eq!(read(200, r#"{"ok":true}"#).unwrap()["ok"], true);
        let err = read(200, "<html>").unwrap_err().to_string();
        assert!(err.starts_with("node 127.0.0.1:8081 answered GET /v1/admin/regions/9"));
        assert!(
            err.contains("not JSON") && err.ends_with(": <html>"),
            "{err}"
        );
    }

    #[test]
    fn error_answers_carry_the_server_code_and_message() {
        let body = r#"{"error":{"code":"region_not_found","message":"region 9 has no peer"}}"#;
        let err = read(404, body).unwrap_err();
        assert!(matches!(err, CtlError::Refused { status: 404, .. }));
        assert_eq!(
            err.to_string(),
            "node 127.0.0.1:8081 refused GET /v1/admin/regions/9: HTTP 404, \
             region_not_found: region 9 has no peer"
        );
    }

    #[test]
    fn refusals_by_authentication_say_what_to_do() {
        let unauthenticated = r#"{"error":{"code":"unauthenticated","message":"authentication is on: send Authorization: Bearer <token>"}}"#;
        let err = read(401, unauthenticated).unwrap_err();
        assert!(matches!(err, CtlError::Refused { status: 401, .. }));
        assert_eq!(
            err.to_string(),
            "node 127.0.0.1:8081 refused GET /v1/admin/regions/9: HTTP 401, unauthenticated: \
             authentication is on: send Authorization: Bearer <token> (give --token or set \
             TINYKV_TOKEN)"
        );
        let with_token = read_answer(
            ADDR,
            "GET /v1/auth",
            StatusCode::UNAUTHORIZED,
            unauthenticated.as_bytes(),
            true,
        )
        .unwrap_err()
        .to_string();
        assert!(with_token.ends_with("<token> (check --token or TINYKV_TOKEN)"));
        let denied = r#"{"error":{"code":"permission_denied","message":"the role read does not allow this"}}"#;
        let err = read(403, denied).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "HTTP 403, permission_denied: the role read does not allow this \
                 (tinykv-ctl's commands need a token with the admin role)"
            ),
            "{err}"
        );
        let cross = r#"{"error":{"code":"cross_origin","message":"no"}}"#;
        assert!(read(403, cross)
            .unwrap_err()
            .to_string()
            .ends_with("cross_origin: no"));
        assert_eq!(auth_hint(StatusCode::NOT_FOUND, "not_found", true), "");
    }

    #[test]
    fn other_error_answers_quote_a_bounded_body() {
        let err = read(404, "").unwrap_err().to_string();
        assert!(
            err.ends_with("with HTTP 404 Not Found: (empty body)"),
            "{err}"
        );
        let long = "x".repeat(1000);
        let err = read(502, &long).unwrap_err().to_string();
        assert!(err.contains("HTTP 502 Bad Gateway: xxx") && err.ends_with("x..."));
        assert!(err.len() < 300, "{err}");
    }

    #[test]
    fn a_scheme_mismatch_gets_a_hint() {
        let plain_to_tls = "error sending request: client error (SendRequest): invalid HTTP \
                            version parsed";
        assert!(scheme_hint(plain_to_tls, false).contains("--cacert"));
        let tls_to_plain = "client error (Connect): received corrupt message of type \
                            InvalidContentType";
        assert!(scheme_hint(tls_to_plain, true).contains("plain HTTP"));
        assert_eq!(
            scheme_hint("tcp connect error: Connection refused", true),
            ""
        );
        assert_eq!(scheme_hint(tls_to_plain, false), "");
    }

    #[test]
    fn calls_are_labelled_by_method_and_path() {
        let call = Call::new(Method::DELETE, "/v1/admin/regions/5/peers/7".into());
        assert_eq!(call.label(), "DELETE /v1/admin/regions/5/peers/7");
    }
}
