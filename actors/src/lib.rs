//! The raftstore of TinyKV-rs: a multi-Raft replicated state machine built from actix
//! actors over a fjall engine.
//!
//! A store holds one peer of each of many regions (key ranges). Each peer is a PeerFsm
//! actor driving a raft-rs `RawNode`, paired with an ApplyFsm actor that applies committed
//! commands. The Router actor maps region ids and keys to PeerFsms; the Store actor creates
//! and stops peers. Two batched writer actors do all the disk writes: the raft-log writer
//! fsyncs the log appends of all regions together, and the apply writer commits the applied
//! data of all regions together. [`system::start_store`] wires them up; see
//! `docs/architecture.md` for the whole data flow.
//!
//! Modules, in the order data flows through them: [`router`], [`peer`] (with
//! [`peer_storage`]), [`batch_writer`], [`apply`], over [`engine`] and [`keys`]; plus
//! [`store`], [`bootstrap`], [`system`], [`msg`], [`transport`], [`config`], [`error`],
//! [`validation`] (the rules every command obeys, checked when proposed and when applied),
//! [`session`] (the table that makes every client write apply at most once),
//! `inbound` (what a PeerFsm checks in a raft message before raft-rs sees it),
//! `stale_peer` (how a peer told it was removed makes sure before destroying itself)
//! and [`metrics`] (what the raftstore exposes to Prometheus).

#![warn(missing_docs)]

pub mod alive;
pub mod apply;
pub mod batch_writer;
pub mod bootstrap;
pub mod config;
pub mod containment;
pub mod engine;
pub mod error;
pub mod hibernate;
pub mod id_alloc;
mod inbound;
pub mod keys;
pub mod metrics;
pub mod msg;
pub mod peer;
pub mod peer_storage;
pub mod proposal_batch;
pub mod router;
pub mod session;
pub mod slog_bridge;
pub mod snapshot;
pub mod split_check;
mod stale_peer;
pub mod store;
pub mod system;
pub mod transport;
pub mod util;
pub mod validation;

pub use config::RaftStoreConfig;
pub use engine::{Cf, Engine};
pub use error::{Error, Result};
pub use system::{start_store, start_store_on, StoreHandle, StoreRouter, StoreThreads};
pub use transport::Transport;

/// Mailbox capacity of every raftstore actor. Actors are fed with `do_send`, which ignores
/// the capacity; `try_send` from outside (clients, the transport) fails beyond it instead
/// of queueing without bound.
pub const MAILBOX_CAPACITY: usize = 1 << 16;
