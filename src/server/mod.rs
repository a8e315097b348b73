//! The node process: starting and stopping it, its listeners, and its traffic with the
//! other nodes.
//!
//! - [`node`]: opens the engine, bootstraps or joins, starts the raftstore, the PD
//!   wiring and both listeners, and shuts everything down cleanly;
//! - [`address_book`]: where every store listens, shared by the transport and the
//!   forwarder, and how addresses learnt from the PD replace configured ones;
//! - [`raft_transport`]: store-to-store raft messages over TCP ([`TcpTransport`], the
//!   raftstore's `Transport`), snapshots streamed in chunks on connections of their own
//!   (`snapshot_stream`);
//! - `peer_listener`: the peer port, which serves raft streams, snapshot streams and the
//!   node-to-node HTTP API ([`peer_api`]) on one socket;
//! - [`forward`]: the HTTP forwarder, which sends a request to the leader's node;
//! - [`leader_drain`]: hands every leadership away before a restart;
//! - [`network_faults`]: the fault-injection switch that cuts this node off from chosen
//!   stores, for chaos tests of real processes.

pub mod address_book;
pub mod forward;
pub mod leader_drain;
pub mod network_faults;
pub mod node;
pub mod peer_api;
pub(crate) mod peer_listener;
pub mod raft_transport;
mod snapshot_stream;

pub use address_book::AddressBook;
pub use node::Node;
pub use raft_transport::TcpTransport;
