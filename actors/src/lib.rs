//! The raftstore of TinyKV-rs: a multi-Raft replicated state machine built from actix
//! actors over a fjall engine.
//!
//! A store holds one peer of each of many regions (key ranges). Each peer is a PeerFsm
//! actor driving a raft-rs `RawNode`, paired with an ApplyFsm actor that applies committed
//! commands. The Router actor maps region ids and keys to PeerFsms; the Store actor creates
//! and stops peers. Two batched writer actors do all the disk writes: the raft-log writer
//! fsyncs the log appends of all regions together, and the apply writer commits the applied
//! data of all regions together. [`start_store`] wires them up; see
//! `docs/architecture.md` for the whole data flow.
//!
//! Modules, in the order data flows through them: `router`, `peer` (with
//! `peer_storage`), `batch_writer`, `apply`, over [`engine`] and [`keys`]; plus `store`,
//! `bootstrap`, `system`, [`msg`], `transport`, `config`, `error`, [`validation`] (the
//! rules every command obeys, checked when proposed and when applied), `session` (the
//! table that makes every client write apply at most once), `inbound` (what a PeerFsm
//! checks in a raft message before raft-rs sees it), `stale_peer` (how a peer told it
//! was removed makes sure before destroying itself) and [`metrics`] (what the raftstore
//! exposes to Prometheus).
//!
//! **What other crates see.** Modules are private unless they are an interface: the
//! engine (other crates read and write through it), the key layout, the messages and
//! their replies, the validation rules and the metrics. Everything else a node needs
//! is re-exported here by name: starting a store ([`start_store`], [`StoreRouter`]),
//! bootstrapping it, the `Transport` it sends through, the id allocator it takes ids
//! from, the builders of admin commands, the session table's limits, and the exit code of
//! a failed write.

#![warn(missing_docs)]
// The docs are written for the crate's developers too (`cargo doc
// --document-private-items`): public items may point at the private modules behind them.
#![allow(rustdoc::private_intra_doc_links)]

mod alive;
mod apply;
mod batch_writer;
mod bootstrap;
mod config;
mod containment;
pub mod engine;
mod error;
mod hibernate;
mod id_alloc;
mod inbound;
pub mod keys;
pub mod metrics;
pub mod msg;
mod peer;
mod peer_storage;
mod proposal_batch;
mod router;
mod session;
mod slog_bridge;
mod snapshot;
mod span_entry;
mod split_check;
mod stale_peer;
mod store;
mod system;
mod transport;
mod util;
pub mod validation;

pub use alive::{alive_pair, AliveToken, AliveWatch};
pub use batch_writer::{RaftLogWriter, WRITE_FAILURE_EXIT_CODE};
pub use bootstrap::{ensure_bootstrapped, load_store_ident};
pub use config::RaftStoreConfig;
pub use containment::is_contained;
pub use engine::{Cf, Engine, EngineSnapshot, Mutation};
pub use error::{Error, Result};
pub use id_alloc::{IdAllocator, SequentialIds};
pub use session::{MAX_REQUEST_ID_BYTES, MAX_TTL_MS, MAX_WRITTEN_KEY_BYTES};
pub use system::{start_store, start_store_on, StoreHandle, StoreRouter, StoreThreads};
pub use transport::Transport;
pub use util::{check_merge_pair, covers, is_read_only, prepare_merge_request, split_request};

/// Mailbox capacity of every raftstore actor. Actors are fed with `do_send`, which ignores
/// the capacity; `try_send` from outside (clients, the transport) fails beyond it instead
/// of queueing without bound.
pub const MAILBOX_CAPACITY: usize = 1 << 16;
