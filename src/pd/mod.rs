//! The placement driver (PD): decides where regions' replicas and leaders should live.
//!
//! TinyKV's scheduler (a trimmed TiKV PD) is a separate service; here the PD is embedded
//! in the nodes: its state is replicated by Raft and the leader of a meta region runs the
//! scheduling. This folder holds both halves: a pure, synchronous core (no networking, no
//! actors, no persistence, no clock) and the wiring that runs it inside the nodes.
//!
//! # The core
//!
//! **Inputs.** Store heartbeats (a store is alive, its disk usage) and region heartbeats
//! (a region leader reports the region's range, epoch and peers, itself as leader, the
//! peers still catching up, and the region's approximate size). Stores join with
//! [`ClusterInfo::put_store`] and are drained with [`ClusterInfo::set_store_state`].
//! Time is passed in as milliseconds (`now_ms`).
//!
//! **What it decides.** Every region should have `max_peer_count` replicas on distinct
//! healthy stores: the replica checker adds missing peers, removes extra ones and moves
//! peers off down, offline or tombstone stores. Stores should carry similar amounts of
//! data and leaderships: balance-region moves peers from the fullest store to the
//! emptiest, balance-leader moves leaderships from the store leading the most regions.
//!
//! **Outputs.** Decisions are [`Operator`]s: short plans of [`Step`]s (add a peer,
//! transfer the leadership, remove a peer) on one region. The [`Coordinator`] keeps at
//! most one per region and, on each heartbeat of that region, answers its leader with the
//! step to carry out now ([`HeartbeatAnswer`]); the next heartbeats show the step done
//! and the operator moves on, until it is finished, goes stale (the region changed under
//! it) or times out.
//!
//! Because every function here is a deterministic function of its inputs (sorted maps,
//! ties broken by id, injected time and id allocation), the PD's behaviour can be
//! replayed from a log of heartbeats and unit tested without a cluster.
//!
//! - [`cluster`]: stores, regions, the range index and per-store figures;
//! - [`region`]: one region's heartbeat and the PD's view of it;
//! - [`operator`]: operators, steps, and the answers to region leaders;
//! - [`scheduler`]: the replica checker and the balance schedulers;
//! - [`coordinator`]: operators in flight, heartbeat handling, rate limits;
//! - [`error`]: the one error type, [`PdError`].
//!
//! # The wiring: where it runs, what it stores, how nodes talk to it
//!
//! - [`meta`]: the PD's durable records live in the replicated keyspace, in a *meta
//!   region* covering the reserved keys from `0xFF` on; its leader is the PD leader;
//! - [`server`]: each node's [`PdServer`], active while the node leads the meta region:
//!   takes over (reads or first writes the records), handles heartbeats, joins and
//!   drains, and writes every change through raft before acting on it;
//! - [`client`]: [`PdClient`] finds the leader (following `not_pd_leader` hints) and
//!   sends it a request; the admin API and the heartbeat loop use it;
//! - [`heartbeat`]: each node reports its store and the regions it leads, and carries
//!   out the PD's answers (add or remove a peer, transfer a leadership);
//! - [`probe`]: asks the node at an address who it is, before a join or a store's move
//!   is believed;
//! - [`tso`]: the timestamp oracle, strictly increasing timestamps for transactions;
//! - [`wire`]: the requests and answers; [`views`]: the admin API's JSON views;
//! - [`join`](mod@join): a new node asks any node named in `cluster.join` for a store id, which
//!   the PD allocates and records before answering.

pub mod cluster;
pub mod coordinator;
pub mod error;
pub mod operator;
pub mod region;
pub mod scheduler;

mod auth_records;
pub mod client;
pub mod heartbeat;
pub mod ids;
pub mod join;
pub mod meta;
pub mod probe;
pub mod server;
pub mod tso;
pub mod views;
pub mod wire;

#[cfg(test)]
mod merge_tests;
#[cfg(test)]
mod test_util;

pub use cluster::{
    ClusterConfig, ClusterInfo, ClusterSummary, StoreHeartbeat, StoreInfo, StoreRegionStats,
    StoreSummary,
};
pub use coordinator::{Coordinator, EndedOperatorView, OperatorCounts, OperatorOutcome};
pub use error::PdError;
pub use operator::{
    add_peer_steps, move_peer_steps, remove_peer_steps, transfer_leader_steps, AllocId,
    HeartbeatAnswer, Operator, OperatorKind, OperatorProgress, OperatorView, Step,
};
pub use region::{RegionHeartbeat, RegionInfo, RegionTree};
pub use scheduler::{
    balance_leader, balance_region, check_merge, check_replicas, store_health, ScheduleContext,
    SchedulerConfig, StoreHealth, StoreLoad,
};

pub use client::{PdClient, PD_PATH};
pub use heartbeat::{spawn_heartbeats, LocalStore};
pub use ids::PdIds;
pub use join::{join, JOIN_TIMEOUT};
pub use meta::{is_reserved_key, META_REGION_START};
pub use server::{PdServer, PdSetup};
pub use wire::{AuthChange, JoinReply, PdRequest};
