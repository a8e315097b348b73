//! TinyKV-rs node: everything around the raftstore that makes it a server.
//!
//! - [`config`]: layered TOML configuration (files, `TINYKV__…` env vars, CLI flags);
//! - [`address_book`]: where every store listens, shared by transport and forwarder;
//! - [`service`]: executes client requests, forwarding to the leader's node;
//! - [`admin`]: splits regions, changes their peers and moves their leaders;
//! - [`forward`]: the HTTP forwarder between nodes;
//! - [`faults`]: fault injection for tests (network partitions between nodes);
//! - [`transport`]: store-to-store raft messages over TCP, snapshots streamed in chunks on
//!   connections of their own (`snapshot_stream`);
//! - [`auth`]: API tokens, certificate users and roles, enforced on the client API;
//! - [`api`]: the client REST API (actix-web), on the client listener;
//! - [`peer_api`]: the node-to-node API (forwarded requests, raft commands, the placement
//!   driver, identity), served with raft traffic on the peer listener (`peer_listener`);
//! - [`metrics`]: HTTP metrics (a middleware), and `GET /metrics`;
//! - [`request_context`]: a client request's id and timeline, as it crosses the node;
//! - [`logging`]: the log subscriber, and the access log's non-blocking writer;
//! - [`trace_export`]: request traces exported to OpenTelemetry (OTLP), when configured;
//! - [`pd`]: the placement driver's pure core: cluster model, operators, schedulers;
//! - [`placement`]: the placement driver embedded in the nodes: its records in the meta
//!   region, the leader's server, the client, heartbeats and joining;
//! - [`security`]: TLS for clients and peers, and which store a certificate names;
//! - [`txn`]: transactions (Percolator): their key range, locks and commit records, MVCC;
//! - [`node`]: opens the engine, bootstraps, starts everything, shuts down cleanly;
//! - [`error`]: the node's error type and how it reaches HTTP clients.

// The peer listener's connection future is deep enough for rustc's default limit of
// 128 when it proves the future `Send`.
#![recursion_limit = "256"]
#![warn(missing_docs)]

pub mod address_book;
pub mod admin;
pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod faults;
pub mod forward;
pub mod human_duration;
pub mod leader_drain;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod pd;
pub mod peer_api;
mod peer_listener;
pub mod placement;
pub mod request_context;
pub mod security;
pub mod service;
mod snapshot_stream;
pub mod trace_export;
pub mod transport;
pub mod txn;

pub use error::{Error, Result};
