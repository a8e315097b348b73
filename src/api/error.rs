//! How errors become HTTP responses.
//!
//! Every failure the API reports, from a malformed key to a raftstore without a leader,
//! is answered the same way: the status of [`Error::status`] and a JSON body
//! `{"error":{"code":"...","message":"..."}}` whose `code` is stable for clients to match
//! on (a `not_pd_leader` error also names the leader it knows, `leader_store_id` and
//! `leader_http_addr`). That includes what actix itself would otherwise answer in plain text: an unknown
//! route, a wrong method, and a body that is too large or cannot be read.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde_json::json;

use crate::error::Error;

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status();
        if matches!(self, Error::NotPdLeader { .. }) {
            // A redirect the PD client follows, expected whenever the PD's leader moves.
            tracing::debug!(code = self.code(), error = %self, "request failed");
        } else if status.is_server_error() {
            tracing::warn!(code = self.code(), error = %self, "request failed");
        }
        let mut response = HttpResponse::build(status);
        match self {
            Error::MethodNotAllowed { allow, .. } => {
                response.insert_header((actix_web::http::header::ALLOW, allow.as_str()));
            }
            Error::Overloaded(_) | Error::Store(tinykv_actors::Error::ServerIsBusy(_)) => {
                response.insert_header((actix_web::http::header::RETRY_AFTER, "1"));
            }
            _ => {}
        }
        response.json(error_body(self))
    }
}

/// The JSON body of an error, on either listener:
/// `{"error":{"code":"...","message":"..."}}`, plus the leader a `not_pd_leader` error
/// names (`leader_store_id`, `leader_http_addr`, `leader_raft_addr`) and, when it answers
/// a request with an id (see [`crate::request_context`]), `request_id`.
pub fn error_body(err: &Error) -> serde_json::Value {
    let mut error = json!({ "code": err.code(), "message": err.to_string() });
    if let Error::NotPdLeader {
        leader: Some(leader),
    } = err
    {
        error["leader_store_id"] = json!(leader.id);
        error["leader_http_addr"] = json!(leader.http_addr);
        error["leader_raft_addr"] = json!(leader.raft_addr);
    }
    if let Error::TxnConflict { key, .. } = err {
        if !key.is_empty() {
            error["key"] = json!(super::admin::display_key(key));
        }
    }
    if let Some(id) = crate::request_context::RequestContext::current_id() {
        error["request_id"] = json!(id.as_str());
    }
    json!({ "error": error })
}

/// Answers requests for paths the API does not have.
pub async fn route_not_found(req: HttpRequest) -> Result<HttpResponse, Error> {
    Err(Error::NoSuchResource {
        code: "route_not_found",
        message: format!("no route for {} {}", req.method(), req.path()),
    })
}

/// A route answering requests whose path exists but not for their method: 405, with
/// `allow` (such as `"GET, HEAD"`) in the `Allow` header.
pub fn method_not_allowed(allow: &'static str) -> actix_web::Route {
    actix_web::web::to(move |req: HttpRequest| async move {
        Err::<HttpResponse, Error>(Error::MethodNotAllowed {
            method: req.method().to_string(),
            path: req.path().to_string(),
            allow: allow.to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use actix_web::body::to_bytes;

    use super::*;

    #[actix_rt::test]
    async fn errors_are_json_with_a_stable_code() {
        let response = Error::bad_request("invalid_cf", "bad cf").error_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = to_bytes(response.into_body()).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["code"], "invalid_cf");
        assert_eq!(json["error"]["message"], "bad cf");
    }
}
