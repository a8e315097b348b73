//! TinyKV-rs node: everything around the raftstore that makes it a server.
//!
//! - [`config`]: layered TOML configuration (files, `TINYKV__…` env vars, CLI flags);
//! - [`server`]: the node process: start and shutdown, the listeners, the TCP transport,
//!   the address book, forwarding to other nodes, leader drains, fault injection;
//! - [`kv_service`]: executes client requests, forwarding to the leader's node;
//! - [`admin_service`]: splits regions, changes their peers and moves their leaders;
//! - [`api`]: the client REST API (actix-web) and dashboard: routes only;
//! - [`pd`]: the placement driver: its pure core (cluster model, operators, schedulers)
//!   and its wiring in the nodes (records in the meta region, the leader's server, the
//!   client, heartbeats, joining, the timestamp oracle);
//! - [`txn`]: transactions (Percolator): their key range, locks and commit records, MVCC;
//! - [`auth`]: API tokens, certificate users and roles, enforced on the client API;
//! - [`security`]: TLS for clients and peers, and which store a certificate names;
//! - [`metrics`]: HTTP metrics (a middleware), and `GET /metrics`;
//! - [`request_context`]: a client request's id and timeline, as it crosses the node;
//! - [`logging`]: the log subscriber, and the access log's non-blocking writer;
//! - [`trace_export`]: request traces exported to OpenTelemetry (OTLP), when configured;
//! - [`human_duration`]: durations such as `30s` or `1m30s`, for the tools' flags;
//! - [`error`]: the node's error type and how it reaches HTTP clients.

// The peer listener's connection future is deep enough for rustc's default limit of
// 128 when it proves the future `Send`.
#![recursion_limit = "256"]
#![warn(missing_docs)]

pub mod admin_service;
pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod human_duration;
pub mod kv_service;
pub mod logging;
pub mod metrics;
pub mod pd;
pub mod request_context;
pub mod security;
pub mod server;
pub mod trace_export;
pub mod txn;

pub use error::{Error, Result};
