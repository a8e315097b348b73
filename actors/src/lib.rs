//! The raftstore of TinyKV-rs (work in progress).
pub mod engine;
pub mod error;
pub mod keys;
pub mod peer_storage;
