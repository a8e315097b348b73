//! Raftstore settings: raft timing, log compaction and batching limits.
//!
//! The node's TOML `[raftstore]` section deserializes into [`RaftStoreConfig`]; every field
//! has a default, so a config file names only what it changes. Times are milliseconds.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Settings of one store's raftstore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftStoreConfig {
    /// Interval of the raft tick that drives elections and heartbeats.
    pub raft_base_tick_ms: u64,
    /// Ticks between leader heartbeats. One heartbeat per tick and ten ticks per election
    /// timeout (etcd's 100 ms / 1 s) give a leader ten chances per election window to hear
    /// from a quorum, so lossy links rarely make it step down (check-quorum).
    pub raft_heartbeat_ticks: usize,
    /// Ticks without a leader before a follower campaigns (randomized up to twice this).
    pub raft_election_timeout_ticks: usize,
    /// Largest append message, in bytes.
    pub raft_max_size_per_msg: u64,
    /// Append messages in flight to one follower.
    pub raft_max_inflight_msgs: usize,
    /// Interval of the leader's log-compaction check.
    pub raft_log_gc_tick_ms: u64,
    /// Compact the log once this many applied entries sit in it.
    pub raft_log_gc_count_limit: u64,
    /// Compact the log once the applied entries in it exceed this many bytes, even past a
    /// lagging follower (which then gets a snapshot).
    pub raft_log_gc_size_limit: u64,
    /// Compact the log up to what every follower holds once its entries exceed this many
    /// bytes, checked after each apply: large values then leave the log before the
    /// engine's memtable is flushed with them, instead of being written to tables and
    /// compacted again (see docs/performance.md). Never forces a follower to a snapshot.
    pub raft_log_gc_size_threshold: u64,
    /// Interval of the leader's region size check.
    pub split_check_tick_ms: u64,
    /// A region whose data exceeds this many bytes is split.
    pub region_max_size: u64,
    /// Where a split cuts: the left part holds about this many bytes.
    pub region_split_size: u64,
    /// Arbiters (threads) of the raft side: the PeerFsms are spread over them, and the
    /// first also runs the Router, the Store and the raft-log writers. One is fastest on
    /// a small machine: messages between actors on one thread wake no other thread.
    pub peer_threads: usize,
    /// Arbiters (threads) of the apply side: the ApplyFsms are spread over them, and the
    /// first also runs the apply writer.
    pub apply_threads: usize,
    /// Most bytes the raft-log writer puts in one fsynced batch.
    pub raft_write_batch_bytes: usize,
    /// Most bytes the apply writer puts in one batch.
    pub apply_write_batch_bytes: usize,
    /// Lets a leader serve reads from a lease instead of confirming its leadership with a
    /// heartbeat round first. Each confirmed round grants a lease of 4/5 of the election
    /// timeout from when it started: check-quorum keeps followers from electing anyone
    /// else for an election timeout after they last heard from the leader. Assumes the
    /// nodes' clocks run at rates within 20% of each other. Off by default.
    pub lease_reads: bool,
    /// Lets a region with nothing to do sleep: no ticks and no heartbeats until a message
    /// or a request wakes it (see `hibernate.rs`). On by default.
    pub hibernate_regions: bool,
    /// How long a region sleeps before its ApplyFsm parks (stops, its state kept by the
    /// PeerFsm; see `peer/apply_side.rs`). A region used every few seconds keeps its
    /// ApplyFsm: parking it and starting it again for every write costs more than the
    /// write's own apply. 10 s by default.
    pub park_apply_after_ms: u64,
    /// Regions holding any key at or after this one never sleep. Not read from the config
    /// file: the node sets it to the start of the placement driver's meta region, whose
    /// leadership must fail over without anyone waking it.
    #[serde(skip)]
    pub awake_from_key: Option<Vec<u8>>,
}

impl Default for RaftStoreConfig {
    fn default() -> Self {
        RaftStoreConfig {
            raft_base_tick_ms: 100,
            raft_heartbeat_ticks: 1,
            raft_election_timeout_ticks: 10,
            raft_max_size_per_msg: 1024 * 1024,
            raft_max_inflight_msgs: 256,
            raft_log_gc_tick_ms: 1_000,
            raft_log_gc_count_limit: 10_000,
            raft_log_gc_size_limit: 64 * 1024 * 1024,
            raft_log_gc_size_threshold: 4 * 1024 * 1024,
            split_check_tick_ms: 10_000,
            region_max_size: 48 * 1024 * 1024,
            region_split_size: 32 * 1024 * 1024,
            peer_threads: 1,
            apply_threads: 1,
            raft_write_batch_bytes: 4 * 1024 * 1024,
            apply_write_batch_bytes: 4 * 1024 * 1024,
            lease_reads: false,
            hibernate_regions: true,
            park_apply_after_ms: 10_000,
            awake_from_key: None,
        }
    }
}

impl RaftStoreConfig {
    /// Settings for in-process tests: 50 ms ticks with heartbeats every tick and the same
    /// wall-clock election timeout as the defaults (1 s), so a cluster of many stores
    /// sharing two cores does not mistake CPU starvation for a dead leader.
    pub fn for_tests() -> Self {
        RaftStoreConfig {
            raft_base_tick_ms: 50,
            raft_election_timeout_ticks: 20,
            raft_log_gc_tick_ms: 100,
            split_check_tick_ms: 100,
            park_apply_after_ms: 200,
            ..Default::default()
        }
    }

    /// The raft tick interval.
    pub fn base_tick(&self) -> Duration {
        Duration::from_millis(self.raft_base_tick_ms)
    }

    /// How long a region sleeps before its ApplyFsm parks.
    pub fn park_apply_after(&self) -> Duration {
        Duration::from_millis(self.park_apply_after_ms)
    }

    /// Whether `region` may sleep (hibernate) when it has nothing to do.
    pub fn may_hibernate(&self, region: &tinykv_proto::metapb::Region) -> bool {
        self.hibernate_regions
            && self
                .awake_from_key
                .as_ref()
                .is_none_or(|key| !region.end_key.is_empty() && region.end_key <= *key)
    }

    /// How long a follower waits for a leader before campaigning (the lower bound).
    pub fn election_timeout(&self) -> Duration {
        self.base_tick() * self.raft_election_timeout_ticks as u32
    }

    /// Checks the settings, naming the first offending key.
    pub fn validate(&self) -> Result<()> {
        let fail =
            |key: &str, why: &str| Err(Error::InvalidRequest(format!("raftstore.{key}: {why}")));
        if self.raft_base_tick_ms == 0 {
            return fail("raft_base_tick_ms", "must be greater than 0");
        }
        if self.raft_heartbeat_ticks == 0 {
            return fail("raft_heartbeat_ticks", "must be greater than 0");
        }
        if self.raft_election_timeout_ticks <= self.raft_heartbeat_ticks {
            return fail(
                "raft_election_timeout_ticks",
                "must be greater than raft_heartbeat_ticks",
            );
        }
        if self.raft_max_inflight_msgs == 0 {
            return fail("raft_max_inflight_msgs", "must be greater than 0");
        }
        if self.raft_log_gc_tick_ms == 0 {
            return fail("raft_log_gc_tick_ms", "must be greater than 0");
        }
        if self.raft_log_gc_count_limit == 0 {
            return fail("raft_log_gc_count_limit", "must be greater than 0");
        }
        if self.raft_log_gc_size_threshold == 0 {
            return fail("raft_log_gc_size_threshold", "must be greater than 0");
        }
        if self.split_check_tick_ms == 0 {
            return fail("split_check_tick_ms", "must be greater than 0");
        }
        if self.region_split_size == 0 || self.region_split_size > self.region_max_size {
            return fail(
                "region_split_size",
                "must be greater than 0 and at most region_max_size",
            );
        }
        if self.peer_threads == 0 || self.peer_threads > 64 {
            return fail("peer_threads", "must be between 1 and 64");
        }
        if self.apply_threads == 0 || self.apply_threads > 64 {
            return fail("apply_threads", "must be between 1 and 64");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        RaftStoreConfig::default().validate().unwrap();
        RaftStoreConfig::for_tests().validate().unwrap();
        let cfg = RaftStoreConfig {
            raft_election_timeout_ticks: 1,
            ..Default::default()
        };
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("raft_election_timeout_ticks"), "{err}");
    }
}
