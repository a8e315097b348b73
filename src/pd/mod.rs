//! The placement driver (PD): decides where regions' replicas and leaders should live.
//!
//! TinyKV's scheduler (a trimmed TiKV PD) is a separate service; here the PD is embedded
//! in the nodes: its state is replicated by Raft and the leader of a meta region runs the
//! scheduling. This module is the PD's pure, synchronous core — no networking, no actors,
//! no persistence, no clock — which that wiring drives.
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

pub mod cluster;
pub mod coordinator;
pub mod error;
pub mod operator;
pub mod region;
pub mod scheduler;

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
