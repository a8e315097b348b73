//! Authentication and authorisation of client requests: API tokens and certificate
//! users, with roles, kept by the placement driver and enforced by every node.
//!
//! - [`token`]: what a token looks like, how one is made and checked (only digests of
//!   secrets are kept anywhere);
//! - [`policy`]: roles, grants and the check of one request ([`AuthSet::authorize`]);
//! - [`cache`]: a node's copy of the state, refreshed by heartbeats and kept on disk.
//!
//! Authentication starts off, so the first five minutes need no credentials. An
//! operator sets `security.root_token` (or `TINYKV__SECURITY__ROOT_TOKEN`) on the nodes;
//! the placement driver records it as the `root` admin token the first time it leads
//! with one configured. With an admin credential in place, `tinykv-ctl auth enable`
//! switches authentication on for the whole cluster, and from then on every request but
//! the open ones (see [`policy`]) needs a token (`Authorization: Bearer ...`) or a client
//! certificate of a user with a grant. The REST side is `crate::api::auth`; the placement
//! driver's side is `crate::pd::auth_records`.

pub mod cache;
pub mod policy;
pub mod token;

pub use cache::AuthCache;
pub use policy::{Access, AuthSet, Credential, Grant, Refusal, Role, TokenRecord, UserRecord};
pub use token::{NewToken, PresentedToken};
