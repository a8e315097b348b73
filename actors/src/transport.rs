//! How raft messages leave a store.
//!
//! The raftstore only needs to hand a message to "the network"; whether it travels over
//! TCP (the node binary) or through an in-process switchboard with fault filters (the test
//! harness) is the implementation's business. Sending never blocks and never fails loudly:
//! raft tolerates lost messages, so an unreachable store just means dropped messages.

use tinykv_proto::raft_serverpb::RaftMessage;

/// Delivers raft messages to other stores.
pub trait Transport: Send + Sync + 'static {
    /// Queues `msg` for delivery to `msg.to_peer.store_id`.
    fn send(&self, msg: RaftMessage);
}
