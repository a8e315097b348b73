//! The one error type of `tinykv-ctl`: every way a request to a node can fail.
//!
//! Each message names the node asked and the request (`GET /v1/admin/cluster`), so that
//! a script's log says where to look. A refusal by the server carries its HTTP status and
//! the stable error code and message of its JSON error body; an answer that is not what
//! this tool expects says what is wrong with it. `main` prints the message after
//! `error: ` and exits with status 1.

use thiserror::Error;

/// A failed `tinykv-ctl` request.
#[derive(Debug, Error)]
pub enum CtlError {
    /// The HTTP client could not be set up.
    #[error("cannot set up the HTTP client: {0}")]
    ClientSetup(String),
    /// The node could not be reached, or the connection broke.
    #[error("cannot reach node {addr} ({request}): {cause}")]
    Unreachable {
        /// The node's HTTP address.
        addr: String,
        /// Method and path, e.g. `GET /v1/admin/cluster`.
        request: String,
        /// What went wrong, with its causes.
        cause: String,
    },
    /// The node did not answer in time.
    #[error("node {addr} did not answer {request} within {seconds}s")]
    TimedOut {
        /// The node's HTTP address.
        addr: String,
        /// Method and path.
        request: String,
        /// The request timeout.
        seconds: u64,
    },
    /// The node answered with an error status and a JSON error body.
    #[error("node {addr} refused {request}: HTTP {status}, {code}: {message}")]
    Refused {
        /// The node's HTTP address.
        addr: String,
        /// Method and path.
        request: String,
        /// The HTTP status code.
        status: u16,
        /// The server's stable error code, e.g. `region_not_found`.
        code: String,
        /// The server's explanation.
        message: String,
    },
    /// The node answered with an error status but no JSON error body (e.g. a node that
    /// does not serve this endpoint).
    #[error("node {addr} answered {request} with HTTP {status}: {body}")]
    BadStatus {
        /// The node's HTTP address.
        addr: String,
        /// Method and path.
        request: String,
        /// The HTTP status, code and reason, e.g. `404 Not Found`.
        status: String,
        /// The start of the body, or `(empty body)`.
        body: String,
    },
    /// The node answered 2xx with something this tool cannot read.
    #[error("node {addr} answered {request} with an unexpected body: {problem}")]
    UnexpectedAnswer {
        /// The node's HTTP address.
        addr: String,
        /// Method and path.
        request: String,
        /// What is wrong with it.
        problem: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_node_request_status_and_server_code() {
        let refused = CtlError::Refused {
            addr: "127.0.0.1:8081".into(),
            request: "POST /v1/admin/regions/9/split".into(),
            status: 404,
            code: "region_not_found".into(),
            message: "region 9 has no peer on this store".into(),
        };
        assert_eq!(
            refused.to_string(),
            "node 127.0.0.1:8081 refused POST /v1/admin/regions/9/split: HTTP 404, \
             region_not_found: region 9 has no peer on this store"
        );
        let timed_out = CtlError::TimedOut {
            addr: "h:1".into(),
            request: "GET /v1/admin/cluster".into(),
            seconds: 30,
        };
        assert_eq!(
            timed_out.to_string(),
            "node h:1 did not answer GET /v1/admin/cluster within 30s"
        );
    }
}
