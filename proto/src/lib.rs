//! TinyKV-rs's wire and state types.
//!
//! The messages are TinyKV's `metapb`, `raft_serverpb`, `raft_cmdpb`, `errorpb` and the raw
//! part of `kvrpcpb`, generated with prost from the `.proto` files in `proto/`. Raft's own
//! messages (`eraftpb`) are declared with raft-rs 0.7's field numbers so the two encodings
//! are identical: [`convert`] is the single boundary where a raft-rs value (rust-protobuf)
//! becomes a prost value and back, by going through the bytes both agree on.

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

/// Raft's wire types, field-compatible with raft-rs 0.7's `eraftpb`.
pub mod eraftpb {
    include!(concat!(env!("OUT_DIR"), "/eraftpb.rs"));
}

/// Cluster metadata: stores, regions, peers and epochs.
pub mod metapb {
    include!(concat!(env!("OUT_DIR"), "/metapb.rs"));
}

/// Typed region errors carried in response headers.
pub mod errorpb {
    include!(concat!(env!("OUT_DIR"), "/errorpb.rs"));
}

/// Store-to-store raft messages and the raft/apply/region state kept on disk.
pub mod raft_serverpb {
    include!(concat!(env!("OUT_DIR"), "/raft_serverpb.rs"));
}

/// Commands proposed to a region and their responses.
pub mod raft_cmdpb {
    include!(concat!(env!("OUT_DIR"), "/raft_cmdpb.rs"));
}

/// Raw key-value requests, used when one node forwards a client request to another.
pub mod kvrpcpb {
    include!(concat!(env!("OUT_DIR"), "/kvrpcpb.rs"));
}

pub mod convert;
