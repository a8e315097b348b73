//! The one error type of `tinykv-ctl`: every way a command can fail.
//!
//! Each message of a request names the node asked and the request
//! (`GET /v1/admin/cluster`), so that a script's log says where to look. A refusal by the
//! server carries its HTTP status and the stable error code and message of its JSON error
//! body, and for a refusal by authentication (401, 403 `permission_denied`) what to do
//! about it; an answer that is not what this tool expects says what is wrong with it. The
//! `certs` commands fail naming the file they could not read or would not overwrite.
//! Options that do not go together ([`CtlError::Usage`]) make `main` exit with status 2,
//! like the wrong arguments clap refuses; every other error with status 1, its message
//! printed after `error: `.

use std::path::PathBuf;

use thiserror::Error;

/// A failed `tinykv-ctl` command.
#[derive(Debug, Error)]
pub enum CtlError {
    /// Options that do not go together (e.g. `--cert` without `--key`, or an `https://`
    /// address without `--cacert`).
    #[error("{0}")]
    Usage(String),
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
    #[error("node {addr} refused {request}: HTTP {status}, {code}: {message}{hint}")]
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
        /// What to do about it, for a refusal by authentication (` (give --token ...)`);
        /// empty otherwise.
        hint: &'static str,
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
    /// `store drain-leaders` waited in vain: the store still leads regions.
    #[error(
        "store {store_id} still leads {leader_count} region(s) after {seconds}s (it keeps \
         draining); regions no follower can take yet: {stuck_regions:?}"
    )]
    DrainIncomplete {
        /// The store.
        store_id: u64,
        /// How long the command waited.
        seconds: u64,
        /// Regions it still leads.
        leader_count: usize,
        /// Those with no follower able to lead.
        stuck_regions: Vec<u64>,
    },
    /// A file `certs` would write exists already.
    #[error("{} exists already: pass --force to overwrite it", .0.display())]
    FileExists(PathBuf),
    /// Half of a certificate and key pair exists, so it can neither be kept nor made
    /// without losing the other half.
    #[error(
        "{} exists but {} does not: remove it, or pass --force to make both anew",
        .present.display(),
        .missing.display()
    )]
    HalfPair {
        /// The file that exists.
        present: PathBuf,
        /// The file that does not.
        missing: PathBuf,
    },
    /// A file could not be read or written.
    #[error("cannot {action} {}: {cause}", .path.display())]
    File {
        /// What was being done: `read`, `write`, `create the directory`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        cause: String,
    },
    /// A certificate could not be made, or the CA's files do not load.
    #[error("{0}")]
    Certificate(String),
}

impl CtlError {
    /// The process exit status this error ends `tinykv-ctl` with: 2 for options that do
    /// not go together (as for any usage error), 1 otherwise.
    pub fn exit_status(&self) -> u8 {
        match self {
            CtlError::Usage(_) => 2,
            _ => 1,
        }
    }
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
            hint: "",
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
        assert_eq!(timed_out.exit_status(), 1);
        let usage = CtlError::Usage("--cert and --key go together".into());
        assert_eq!(usage.to_string(), "--cert and --key go together");
        assert_eq!(usage.exit_status(), 2);
        let exists = CtlError::FileExists("certs/ca.key".into());
        assert_eq!(
            exists.to_string(),
            "certs/ca.key exists already: pass --force to overwrite it"
        );
    }
}
