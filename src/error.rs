//! The node's error type, and how each error reaches an HTTP client.
//!
//! Every failure a client can see has a stable machine-readable `code` and an HTTP status:
//! bad input is a 4xx that changed nothing; an unavailable cluster (no leader within the
//! request deadline) is a 503 the client may retry; a timed-out write is a 504 whose
//! outcome is unknown (it may or may not have been applied); an internal failure is a 500.

use actix_web::http::StatusCode;
use tinykv_actors::Error as StoreError;

use crate::config::StoreAddress;
use crate::pd::PdError;

/// Any failure of the node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is malformed; nothing was changed.
    #[error("{message}")]
    BadRequest {
        /// Stable error code, e.g. `invalid_cf`.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The request body or key exceeds a configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// The key does not exist.
    #[error("key not found")]
    NotFound,
    /// Something other than a key that the request names (a route, a region, a store)
    /// does not exist.
    #[error("{message}")]
    NoSuchResource {
        /// Stable error code, e.g. `region_not_found`.
        code: &'static str,
        /// What is missing.
        message: String,
    },
    /// The request is valid but conflicts with the current state; nothing was changed.
    #[error("{message}")]
    Conflict {
        /// Stable error code, e.g. `not_enough_stores`.
        code: &'static str,
        /// What it conflicts with.
        message: String,
    },
    /// A transaction could not commit because of another one's write or lock on `key`;
    /// nothing of it was committed.
    #[error("{message}")]
    TxnConflict {
        /// Stable error code: `write_conflict`, `key_locked` or `txn_aborted`.
        code: &'static str,
        /// The key in question (empty if none is known).
        key: Vec<u8>,
        /// What happened.
        message: String,
    },
    /// A conditional write's condition (`If-Match`, `If-None-Match`) does not hold;
    /// nothing was changed.
    #[error("{0}")]
    PreconditionFailed(String),
    /// The request carries no credential the cluster knows, and needs one; nothing was
    /// changed.
    #[error("{0}")]
    Unauthenticated(String),
    /// The request is refused for where it comes from, or its credential lacks the
    /// permission; nothing was changed.
    #[error("{message}")]
    Forbidden {
        /// Stable error code, e.g. `cross_origin`.
        code: &'static str,
        /// Why.
        message: String,
    },
    /// The request body's content type is not one the route takes; nothing was changed.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The request head is longer than the API takes; nothing was read further.
    #[error("{0}")]
    HeaderTooLarge(String),
    /// The request head did not arrive in time; nothing was changed.
    #[error("{0}")]
    HeaderTimeout(String),
    /// The request body did not arrive in time; nothing was changed.
    #[error("{0}")]
    BodyTimeout(String),
    /// The node has as many requests in flight as it takes; nothing was changed, and the
    /// request may be retried after a moment.
    #[error("{0}")]
    Overloaded(String),
    /// The path exists, but not for this HTTP method.
    #[error("method {method} is not allowed on {path} (allowed: {allow})")]
    MethodNotAllowed {
        /// The method of the request.
        method: String,
        /// The path of the request.
        path: String,
        /// The methods the path takes, as the `Allow` header lists them.
        allow: String,
    },
    /// The raftstore failed or refused the request.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request's deadline passed after an attempt whose outcome is unknown: the write
    /// may or may not have been applied. The error is the last attempt's, which itself
    /// changed nothing.
    #[error("the request's deadline passed and an earlier attempt may have applied the write; retry with the same Idempotency-Key to find out (last attempt: {0})")]
    OutcomeUnknown(Box<Error>),
    /// The write's request id (its `Idempotency-Key`) was used before for a different
    /// write to the same key; nothing was changed.
    #[error("this Idempotency-Key was used before for a different write to this key; nothing was changed")]
    RequestIdReused,
    /// Another node could not be reached, or answered garbage.
    #[error("forwarding to store {store_id} failed: {message}")]
    Forward {
        /// The store that was addressed.
        store_id: u64,
        /// What went wrong.
        message: String,
        /// Whether the request may have reached the other node (then a write's outcome is
        /// unknown).
        maybe_delivered: bool,
    },
    /// This node does not lead the meta region, so it cannot answer for the placement
    /// driver; `leader` is the store it believes does, if it knows one.
    #[error("this node is not the placement driver's leader{}", leader.as_ref().map(|l| format!("; store {} at {} is", l.id, l.http_addr)).unwrap_or_default())]
    NotPdLeader {
        /// The leader this node knows of.
        leader: Option<StoreAddress>,
    },
    /// The placement driver refused the request; nothing changed.
    #[error(transparent)]
    Pd(#[from] PdError),
    /// Another node answered the request with this error, relayed as it was.
    #[error("{message}")]
    Relayed {
        /// The other node's HTTP status.
        status: u16,
        /// Its error code (one this node knows, else `internal`).
        code: &'static str,
        /// Its message.
        message: String,
    },
    /// The configuration is invalid; the message names the offending key.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An I/O failure outside the engine (binding sockets, creating directories).
    #[error("{0}")]
    Io(String),
}

/// The node's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The same error again, for each of several requests that one failure answers: a
    /// `not_pd_leader` keeps its hint (the PD client follows it), anything else is
    /// relayed with its status, code and message.
    pub fn replicate(&self) -> Error {
        match self {
            Error::NotPdLeader { leader } => Error::NotPdLeader {
                leader: leader.clone(),
            },
            other => Error::Relayed {
                status: other.status().as_u16(),
                code: other.code(),
                message: other.to_string(),
            },
        }
    }

    /// A bad-request error with a stable code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Error {
        Error::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// The stable code clients can match on.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest { code, .. } => code,
            Error::TooLarge(_) => "too_large",
            Error::NotFound => "not_found",
            Error::NoSuchResource { code, .. } => code,
            Error::Conflict { code, .. } | Error::TxnConflict { code, .. } => code,
            Error::PreconditionFailed(_) => "precondition_failed",
            Error::MethodNotAllowed { .. } => "method_not_allowed",
            Error::Forbidden { code, .. } => code,
            Error::Unauthenticated(_) => "unauthenticated",
            Error::UnsupportedMediaType(_) => "unsupported_media_type",
            Error::BodyTimeout(_) => "body_timeout",
            Error::HeaderTooLarge(_) => "header_too_large",
            Error::HeaderTimeout(_) => "header_timeout",
            Error::Overloaded(_) => "overloaded",
            Error::Store(e) => match e {
                StoreError::NotLeader { .. } => "not_leader",
                StoreError::RegionNotFound(_) => "region_not_found",
                StoreError::KeyNotInRegion { .. } => "key_not_in_region",
                StoreError::EpochNotMatch { .. } => "epoch_not_match",
                StoreError::StaleCommand => "stale_command",
                StoreError::StoreNotMatch { .. } => "store_not_match",
                StoreError::Timeout => "timeout",
                StoreError::Stopped => "unavailable",
                StoreError::InvalidRequest(_) => "invalid_request",
                StoreError::MergeTargetChanged(_) => "merge_target_changed",
                StoreError::ServerIsBusy(_) => "overloaded",
                StoreError::IdsUnavailable(_) => "ids_unavailable",
                StoreError::Engine(_) | StoreError::Codec(_) | StoreError::Corruption(_) => {
                    "internal"
                }
            },
            Error::Forward {
                maybe_delivered: true,
                ..
            } => "timeout",
            Error::Forward { .. } => "unavailable",
            Error::OutcomeUnknown(_) => "timeout",
            Error::RequestIdReused => "idempotency_key_reused",
            Error::NotPdLeader { .. } => "not_pd_leader",
            Error::Pd(e) => pd_code(e),
            Error::Relayed { code, .. } => code,
            Error::Config(_) => "invalid_config",
            Error::Io(_) => "internal",
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::NotFound | Error::NoSuchResource { .. } => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Error::Forbidden { .. } => StatusCode::FORBIDDEN,
            Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::BodyTimeout(_) | Error::HeaderTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::HeaderTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Error::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Conflict { .. } | Error::TxnConflict { .. } => StatusCode::CONFLICT,
            Error::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Error::Store(e) => match e {
                StoreError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
                StoreError::MergeTargetChanged(_) => StatusCode::CONFLICT,
                StoreError::Timeout => StatusCode::GATEWAY_TIMEOUT,
                e if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Error::Forward {
                maybe_delivered: true,
                ..
            } => StatusCode::GATEWAY_TIMEOUT,
            Error::Forward { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::OutcomeUnknown(_) => StatusCode::GATEWAY_TIMEOUT,
            Error::RequestIdReused => StatusCode::UNPROCESSABLE_ENTITY,
            Error::NotPdLeader { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::Pd(e) => match e {
                PdError::StoreNotFound(_) | PdError::RegionNotFound(_) => StatusCode::NOT_FOUND,
                PdError::InvalidStore { .. } | PdError::InvalidHeartbeat { .. } => {
                    StatusCode::BAD_REQUEST
                }
                _ => StatusCode::CONFLICT,
            },
            Error::Relayed { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Error::Config(_) | Error::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The error another node answered with `status` and a body naming `code` and
    /// `message`.
    pub fn relayed(status: u16, code: &str, message: String) -> Error {
        let code = RELAYED_CODES
            .iter()
            .copied()
            .find(|known| *known == code)
            .unwrap_or("internal");
        Error::Relayed {
            status,
            code,
            message,
        }
    }

    /// Whether the request may or may not have been executed: it timed out, or it was
    /// forwarded and the answer was lost. A read in that state may be tried again, and so
    /// may a write, under the same request id (which applies at most once).
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(
            self,
            Error::Store(StoreError::Timeout)
                | Error::OutcomeUnknown(_)
                | Error::Forward {
                    maybe_delivered: true,
                    ..
                }
        )
    }

    /// What a client that sent a write and got this error knows of it: `"unknown"` if it
    /// may have been applied (a 504, or a 500: something failed on the way),
    /// `"not_applied"` otherwise (every 4xx and 503: it was refused or never reached a
    /// leader).
    pub fn write_outcome(&self) -> &'static str {
        let status = self.status();
        if self.is_outcome_unknown()
            || (status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE)
        {
            "unknown"
        } else {
            "not_applied"
        }
    }

    /// Whether the same request may succeed if tried again (elsewhere or later) without
    /// risking a duplicate effect.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Store(StoreError::Timeout) => false,
            Error::Store(e) => e.is_retryable(),
            Error::Forward {
                maybe_delivered, ..
            } => !maybe_delivered,
            _ => false,
        }
    }
}

/// The code of each placement-driver refusal.
fn pd_code(error: &PdError) -> &'static str {
    match error {
        PdError::StoreNotFound(_) => "store_not_found",
        PdError::StoreTombstone(_) => "store_tombstone",
        PdError::InvalidStore { .. } => "invalid_store",
        PdError::DuplicateAddress { .. } => "duplicate_address",
        PdError::StoreNotEmpty { .. } => "store_not_empty",
        PdError::InvalidStateTransition { .. } => "invalid_state_transition",
        PdError::RegionNotFound(_) => "region_not_found",
        PdError::InvalidHeartbeat { .. } => "invalid_heartbeat",
        PdError::StaleRegion { .. } => "stale_region",
        PdError::OperatorExists(_) => "operator_exists",
        PdError::InvalidOperator { .. } => "invalid_operator",
    }
}

/// Codes an error relayed from another node keeps (others become `internal`).
const RELAYED_CODES: &[&str] = &[
    "store_not_found",
    "store_tombstone",
    "invalid_store",
    "duplicate_address",
    "store_not_empty",
    "invalid_state_transition",
    "region_not_found",
    "invalid_heartbeat",
    "stale_region",
    "operator_exists",
    "invalid_operator",
    "not_enough_stores",
    "cluster_mismatch",
    "not_pd_leader",
    "idempotency_key_reused",
    "bad_json",
    "unavailable",
    "timeout",
    "stale_command",
    "not_leader",
    "overloaded",
    "ids_unavailable",
    "address_conflict",
    "join_unverified",
    "store_exists",
    "identity_mismatch",
    "no_admin_credential",
    "last_admin_credential",
    "token_exists",
    "too_many_tokens",
    "token_not_found",
    "too_many_users",
    "user_not_found",
    "invalid_grant",
];

/// An error and its sources, joined with `: `: the sources often hold the useful part
/// ("connection refused"). A source whose text is already in the message is left out.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = e.source();
    }
    message
}
