//! The PD's model of the cluster: its stores and its regions.
//!
//! [`ClusterInfo`] is fed by the two kinds of heartbeat. A store heartbeat refreshes the
//! store's liveness clock and its reported disk usage. A region heartbeat replaces the
//! PD's view of the region if it is not older than what the PD knows, following TinyKV's
//! `processRegionHeartbeat`:
//!
//! - a heartbeat whose epoch has a lower `version` or a lower `conf_ver` than the stored
//!   region of the same id is stale and refused;
//! - a heartbeat whose range overlaps a stored region with a higher `version` is stale
//!   and refused (it predates a split that region has seen);
//! - otherwise the region replaces the stored region of its id and every region it
//!   overlaps (those are older shapes of the same key range).
//!
//! The halves of a split may report in either order; until both have, the range index
//! simply has a hole. Per-store figures (region, leader and pending-peer counts, region
//! and leader sizes) are derived from the regions and kept up to date incrementally on
//! every insertion and removal, so they always match the region tree.
//!
//! Time is an injected clock in milliseconds (`now_ms` arguments): nothing here reads the
//! system clock, so tests control time and the state can be replayed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tinykv_proto::metapb::{Cluster, Store, StoreState};

use super::region::{RegionHeartbeat, RegionInfo, RegionTree};
use super::PdError;

/// The cluster-wide settings the PD schedules by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClusterConfig {
    /// The cluster's id.
    pub cluster_id: u64,
    /// How many replicas each region should have.
    pub max_peer_count: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            cluster_id: 0,
            max_peer_count: 3,
        }
    }
}

impl From<&Cluster> for ClusterConfig {
    fn from(meta: &Cluster) -> Self {
        ClusterConfig {
            cluster_id: meta.id,
            max_peer_count: meta.max_peer_count as usize,
        }
    }
}

/// A store's periodic report about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreHeartbeat {
    /// The reporting store.
    pub store_id: u64,
    /// Total disk capacity in bytes, if known.
    pub capacity: Option<u64>,
    /// Free disk space in bytes, if known.
    pub available: Option<u64>,
    /// Bytes used by the store's data, if known.
    pub used_size: Option<u64>,
    /// How many region peers the store itself counts (informative; the PD derives its own
    /// counts from region heartbeats).
    pub region_count: u64,
    /// The store is handing its leaderships away before a restart (`tinykv-ctl store
    /// drain-leaders`): it must not be given any.
    pub draining_leaders: bool,
}

/// What the PD knows about one store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreInfo {
    /// Id, address and state (Up, Offline, Tombstone).
    pub meta: Store,
    /// When the store last sent a heartbeat, if it has since the PD knew it.
    pub last_heartbeat_ms: Option<u64>,
    /// When the PD started watching the store's liveness (it joined, or the PD took
    /// over): a store that never heartbeats is down once `max_store_down_time` has passed
    /// since then.
    pub watched_since_ms: u64,
    /// The last store heartbeat, if any.
    pub last_report: Option<StoreHeartbeat>,
}

impl StoreInfo {
    /// The store's id.
    pub fn id(&self) -> u64 {
        self.meta.id
    }

    /// The store's state.
    pub fn state(&self) -> StoreState {
        self.meta.state()
    }

    /// How long the store has been silent at `now_ms`: since its last heartbeat, or since
    /// the PD started watching it, whichever is later.
    pub fn silent_for_ms(&self, now_ms: u64) -> u64 {
        let last_sign_of_life = self
            .last_heartbeat_ms
            .unwrap_or(0)
            .max(self.watched_since_ms);
        now_ms.saturating_sub(last_sign_of_life)
    }

    /// Whether the store's last heartbeat said it is draining its leaderships away.
    pub fn drains_leaders(&self) -> bool {
        self.last_report.is_some_and(|r| r.draining_leaders)
    }

    /// Whether the store has been silent for longer than `max_down_ms` at `now_ms`.
    pub fn is_down(&self, now_ms: u64, max_down_ms: u64) -> bool {
        self.silent_for_ms(now_ms) > max_down_ms
    }
}

/// Figures about a store derived from the regions that have a peer on it. Sizes are in
/// MiB, each region counting [`RegionInfo::size_mib`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreRegionStats {
    /// Regions with a peer on the store.
    pub region_count: usize,
    /// Regions whose leader is on the store.
    pub leader_count: usize,
    /// Regions whose peer on the store is pending.
    pub pending_peer_count: usize,
    /// Sum of the sizes of the regions with a peer on the store.
    pub region_size_mib: u64,
    /// Sum of the sizes of the regions led from the store.
    pub leader_size_mib: u64,
}

/// The regions with a peer on one store, by role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct StoreRegions {
    regions: BTreeSet<u64>,
    leaders: BTreeSet<u64>,
    pending: BTreeSet<u64>,
    region_size_mib: u64,
    leader_size_mib: u64,
}

impl StoreRegions {
    fn stats(&self) -> StoreRegionStats {
        StoreRegionStats {
            region_count: self.regions.len(),
            leader_count: self.leaders.len(),
            pending_peer_count: self.pending.len(),
            region_size_mib: self.region_size_mib,
            leader_size_mib: self.leader_size_mib,
        }
    }
}

/// A store as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreSummary {
    /// The store's id.
    pub id: u64,
    /// Where it listens.
    pub address: String,
    /// `Up`, `Offline` or `Tombstone`.
    pub state: String,
    /// Whether it has been silent for longer than the down time.
    pub is_down: bool,
    /// When it last sent a heartbeat.
    pub last_heartbeat_ms: Option<u64>,
    /// Figures derived from its regions.
    #[serde(flatten)]
    pub regions: StoreRegionStats,
    /// Its last reported disk usage.
    pub report: Option<StoreHeartbeat>,
}

/// The whole cluster as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterSummary {
    /// Cluster id and replica count.
    pub config: ClusterConfig,
    /// How many regions the PD knows.
    pub region_count: usize,
    /// Every store, by id.
    pub stores: Vec<StoreSummary>,
}

/// The PD's model of the cluster: stores, regions, the range index and per-store figures.
#[derive(Debug, Clone, Default)]
pub struct ClusterInfo {
    config: ClusterConfig,
    stores: BTreeMap<u64, StoreInfo>,
    regions: BTreeMap<u64, RegionInfo>,
    tree: RegionTree,
    by_store: BTreeMap<u64, StoreRegions>,
}

impl ClusterInfo {
    /// An empty cluster with these settings.
    pub fn new(config: ClusterConfig) -> Self {
        ClusterInfo {
            config,
            ..Default::default()
        }
    }

    /// The cluster's settings.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Changes how many replicas each region should have.
    pub fn set_max_peer_count(&mut self, max_peer_count: usize) {
        self.config.max_peer_count = max_peer_count;
    }

    // ---- stores ----

    /// Registers a store joining the cluster, or updates the address of a known one.
    ///
    /// A new store starts `Up` (the state in `store` is ignored; use
    /// [`set_store_state`](Self::set_store_state)) and its liveness is watched from
    /// `now_ms`. Refused: id 0, an empty address, an address used by another store that
    /// is not a tombstone, and a tombstone store coming back.
    pub fn put_store(&mut self, store: Store, now_ms: u64) -> Result<(), PdError> {
        let invalid = |reason: &str| PdError::InvalidStore {
            store_id: store.id,
            reason: reason.to_string(),
        };
        if store.id == 0 {
            return Err(invalid("store id must not be 0"));
        }
        if store.address.is_empty() {
            return Err(invalid("store address must not be empty"));
        }
        if self
            .stores
            .get(&store.id)
            .is_some_and(|s| s.state() == StoreState::Tombstone)
        {
            return Err(PdError::StoreTombstone(store.id));
        }
        let address_owner = self.stores.values().find(|s| {
            s.id() != store.id
                && s.meta.address == store.address
                && s.state() != StoreState::Tombstone
        });
        if let Some(owner) = address_owner {
            return Err(PdError::DuplicateAddress {
                address: store.address,
                existing_store_id: owner.id(),
            });
        }
        match self.stores.get_mut(&store.id) {
            Some(known) => {
                known.meta.address = store.address;
                Ok(())
            }
            None => {
                let mut meta = store;
                meta.set_state(StoreState::Up);
                let info = StoreInfo {
                    meta,
                    last_heartbeat_ms: None,
                    watched_since_ms: now_ms,
                    last_report: None,
                };
                self.stores.insert(info.id(), info);
                Ok(())
            }
        }
    }

    /// Records a store heartbeat received at `now_ms`.
    pub fn handle_store_heartbeat(
        &mut self,
        heartbeat: StoreHeartbeat,
        now_ms: u64,
    ) -> Result<(), PdError> {
        let store = self
            .stores
            .get_mut(&heartbeat.store_id)
            .ok_or(PdError::StoreNotFound(heartbeat.store_id))?;
        if store.state() == StoreState::Tombstone {
            return Err(PdError::StoreTombstone(heartbeat.store_id));
        }
        store.last_heartbeat_ms = Some(now_ms);
        store.last_report = Some(heartbeat);
        Ok(())
    }

    /// Changes a store's state: `Up` ⇄ `Offline` (start or cancel draining it), and
    /// `Up`/`Offline` → `Tombstone` once it holds no region peer. A tombstone is final.
    pub fn set_store_state(&mut self, store_id: u64, state: StoreState) -> Result<(), PdError> {
        let region_count = self.store_region_stats(store_id).region_count;
        let store = self
            .stores
            .get_mut(&store_id)
            .ok_or(PdError::StoreNotFound(store_id))?;
        let from = store.state();
        if from == state {
            return Ok(());
        }
        if from == StoreState::Tombstone {
            return Err(PdError::InvalidStateTransition {
                store_id,
                from: from.as_str_name(),
                to: state.as_str_name(),
            });
        }
        if state == StoreState::Tombstone && region_count > 0 {
            return Err(PdError::StoreNotEmpty {
                store_id,
                region_count,
            });
        }
        store.meta.set_state(state);
        Ok(())
    }

    /// Restarts every store's liveness clock at `now_ms`, as if each had just been heard
    /// from. A PD that takes over (new leader) calls this so that it does not declare
    /// every store down for lack of heartbeats it was never sent.
    pub fn reset_liveness_clocks(&mut self, now_ms: u64) {
        for store in self.stores.values_mut() {
            store.watched_since_ms = store.watched_since_ms.max(now_ms);
        }
    }

    /// The store with this id.
    pub fn store(&self, store_id: u64) -> Option<&StoreInfo> {
        self.stores.get(&store_id)
    }

    /// Every store, by id.
    pub fn stores(&self) -> impl Iterator<Item = &StoreInfo> + '_ {
        self.stores.values()
    }

    /// The stores in `state`, by id.
    pub fn stores_in_state(&self, state: StoreState) -> impl Iterator<Item = &StoreInfo> + '_ {
        self.stores.values().filter(move |s| s.state() == state)
    }

    /// Whether the store is known and has been silent for longer than `max_down_ms`.
    pub fn is_store_down(&self, store_id: u64, now_ms: u64, max_down_ms: u64) -> bool {
        self.stores
            .get(&store_id)
            .is_some_and(|s| s.is_down(now_ms, max_down_ms))
    }

    /// Figures derived from the regions with a peer on the store (zeros if none).
    pub fn store_region_stats(&self, store_id: u64) -> StoreRegionStats {
        self.by_store
            .get(&store_id)
            .map(StoreRegions::stats)
            .unwrap_or_default()
    }

    /// The offline stores that hold no region peer any more, by id: their draining is
    /// done and they can become tombstones.
    pub fn drained_offline_stores(&self) -> Vec<u64> {
        self.stores_in_state(StoreState::Offline)
            .filter(|s| self.store_region_stats(s.id()).region_count == 0)
            .map(StoreInfo::id)
            .collect()
    }

    /// Turns every drained offline store into a tombstone; returns their ids.
    pub fn finish_offline_stores(&mut self) -> Vec<u64> {
        let drained = self.drained_offline_stores();
        for store_id in &drained {
            if let Some(store) = self.stores.get_mut(store_id) {
                store.meta.set_state(StoreState::Tombstone);
            }
        }
        drained
    }

    // ---- regions ----

    /// Applies a region heartbeat (see the module docs for when it is refused). A refused
    /// heartbeat changes nothing.
    pub fn handle_region_heartbeat(&mut self, heartbeat: RegionHeartbeat) -> Result<(), PdError> {
        let region_id = heartbeat.region.id;
        let previous_size = self
            .regions
            .get(&region_id)
            .and_then(|r| r.approximate_size);
        let info = RegionInfo::from_heartbeat(heartbeat, previous_size)?;
        let epoch = info.epoch();
        let stale = |newer: &RegionInfo| PdError::StaleRegion {
            region_id,
            version: epoch.version,
            conf_ver: epoch.conf_ver,
            newer_region_id: newer.id(),
            newer_version: newer.epoch().version,
            newer_conf_ver: newer.epoch().conf_ver,
        };
        if let Some(origin) = self.regions.get(&region_id) {
            let known = origin.epoch();
            if epoch.version < known.version || epoch.conf_ver < known.conf_ver {
                return Err(stale(origin));
            }
        }
        let overlaps: Vec<u64> = self
            .tree
            .overlapping(&info.region.start_key, &info.region.end_key)
            .into_iter()
            .filter(|id| *id != region_id)
            .collect();
        for other_id in &overlaps {
            if let Some(other) = self.regions.get(other_id) {
                if other.epoch().version > epoch.version {
                    return Err(stale(other));
                }
            }
        }
        self.remove_region(region_id);
        for other_id in overlaps {
            self.remove_region(other_id);
        }
        self.insert_region(info);
        Ok(())
    }

    /// The region with this id.
    pub fn region(&self, region_id: u64) -> Option<&RegionInfo> {
        self.regions.get(&region_id)
    }

    /// The region whose range holds `key`, if any (there may be a hole after a split).
    pub fn region_by_key(&self, key: &[u8]) -> Option<&RegionInfo> {
        self.tree.search(key).and_then(|id| self.regions.get(&id))
    }

    /// The region whose range ends exactly at `key`, if any (its right neighbour starts
    /// there).
    pub fn region_ending_at(&self, key: &[u8]) -> Option<&RegionInfo> {
        self.tree
            .ending_at(key)
            .and_then(|id| self.regions.get(&id))
    }

    /// Every region, by id.
    pub fn regions(&self) -> impl Iterator<Item = &RegionInfo> + '_ {
        self.regions.values()
    }

    /// Every region, in key order.
    pub fn regions_in_key_order(&self) -> impl Iterator<Item = &RegionInfo> + '_ {
        self.tree
            .ids_in_key_order()
            .filter_map(|id| self.regions.get(&id))
    }

    /// How many regions the PD knows.
    pub fn region_count(&self) -> usize {
        self.regions.len()
    }

    /// The regions with a peer on the store, by id.
    pub fn regions_on_store(&self, store_id: u64) -> impl Iterator<Item = &RegionInfo> + '_ {
        self.regions_in(store_id, |s| &s.regions)
    }

    /// The regions whose leader is on the store, by id.
    pub fn leader_regions_on_store(&self, store_id: u64) -> impl Iterator<Item = &RegionInfo> + '_ {
        self.regions_in(store_id, |s| &s.leaders)
    }

    /// The regions with a peer on the store that is not their leader, by id.
    pub fn follower_regions_on_store(
        &self,
        store_id: u64,
    ) -> impl Iterator<Item = &RegionInfo> + '_ {
        self.regions_on_store(store_id)
            .filter(move |r| r.leader_store_id() != Some(store_id))
    }

    /// The regions whose peer on the store is pending, by id.
    pub fn pending_regions_on_store(
        &self,
        store_id: u64,
    ) -> impl Iterator<Item = &RegionInfo> + '_ {
        self.regions_in(store_id, |s| &s.pending)
    }

    /// The stores holding a peer of the region that the PD knows, in peer order.
    pub fn region_stores<'a>(
        &'a self,
        region: &'a RegionInfo,
    ) -> impl Iterator<Item = &'a StoreInfo> + 'a {
        region.store_ids().filter_map(|id| self.stores.get(&id))
    }

    /// The known stores holding a follower (non-leader peer) of the region.
    pub fn follower_stores<'a>(
        &'a self,
        region: &'a RegionInfo,
    ) -> impl Iterator<Item = &'a StoreInfo> + 'a {
        region
            .followers()
            .filter_map(|p| self.stores.get(&p.store_id))
    }

    // ---- views ----

    /// The admin API's view of one store; `max_down_ms` decides whether it is down.
    pub fn store_summary(
        &self,
        store_id: u64,
        now_ms: u64,
        max_down_ms: u64,
    ) -> Option<StoreSummary> {
        let store = self.stores.get(&store_id)?;
        Some(StoreSummary {
            id: store.id(),
            address: store.meta.address.clone(),
            state: store.state().as_str_name().to_string(),
            is_down: store.is_down(now_ms, max_down_ms),
            last_heartbeat_ms: store.last_heartbeat_ms,
            regions: self.store_region_stats(store_id),
            report: store.last_report,
        })
    }

    /// The admin API's view of the whole cluster.
    pub fn summary(&self, now_ms: u64, max_down_ms: u64) -> ClusterSummary {
        ClusterSummary {
            config: self.config,
            region_count: self.regions.len(),
            stores: self
                .stores
                .keys()
                .filter_map(|id| self.store_summary(*id, now_ms, max_down_ms))
                .collect(),
        }
    }

    // ---- internals ----

    fn regions_in<'a>(
        &'a self,
        store_id: u64,
        set: impl Fn(&StoreRegions) -> &BTreeSet<u64>,
    ) -> impl Iterator<Item = &'a RegionInfo> + 'a {
        let ids: Vec<u64> = self
            .by_store
            .get(&store_id)
            .map(|s| set(s).iter().copied().collect())
            .unwrap_or_default();
        ids.into_iter().filter_map(|id| self.regions.get(&id))
    }

    fn insert_region(&mut self, info: RegionInfo) {
        let id = info.id();
        let size = info.size_mib();
        for peer in info.peers() {
            let entry = self.by_store.entry(peer.store_id).or_default();
            entry.regions.insert(id);
            entry.region_size_mib += size;
            if info.leader.map(|l| l.id) == Some(peer.id) {
                entry.leaders.insert(id);
                entry.leader_size_mib += size;
            }
            if info.is_pending(peer.id) {
                entry.pending.insert(id);
            }
        }
        self.tree
            .insert(&info.region.start_key, &info.region.end_key, id);
        self.regions.insert(id, info);
    }

    fn remove_region(&mut self, region_id: u64) -> Option<RegionInfo> {
        let info = self.regions.remove(&region_id)?;
        self.tree.remove(&info.region.start_key, region_id);
        let size = info.size_mib();
        for peer in info.peers() {
            let Some(entry) = self.by_store.get_mut(&peer.store_id) else {
                continue;
            };
            entry.regions.remove(&region_id);
            entry.region_size_mib = entry.region_size_mib.saturating_sub(size);
            if entry.leaders.remove(&region_id) {
                entry.leader_size_mib = entry.leader_size_mib.saturating_sub(size);
            }
            entry.pending.remove(&region_id);
            if entry.regions.is_empty() {
                self.by_store.remove(&peer.store_id);
            }
        }
        Some(info)
    }

    /// The per-store figures recomputed from scratch, to check the incremental ones.
    #[cfg(test)]
    pub(crate) fn recomputed_store_stats(&self) -> BTreeMap<u64, StoreRegionStats> {
        let mut stats: BTreeMap<u64, StoreRegionStats> = BTreeMap::new();
        for region in self.regions.values() {
            for peer in region.peers() {
                let s = stats.entry(peer.store_id).or_default();
                s.region_count += 1;
                s.region_size_mib += region.size_mib();
                if region.leader.map(|l| l.id) == Some(peer.id) {
                    s.leader_count += 1;
                    s.leader_size_mib += region.size_mib();
                }
                if region.is_pending(peer.id) {
                    s.pending_peer_count += 1;
                }
            }
        }
        stats
    }

    /// The incremental per-store figures, for comparison with the recomputed ones.
    #[cfg(test)]
    pub(crate) fn maintained_store_stats(&self) -> BTreeMap<u64, StoreRegionStats> {
        self.by_store
            .iter()
            .map(|(id, s)| (*id, s.stats()))
            .collect()
    }

    /// Checks the internal invariants: tree and regions agree, no overlaps, the figures
    /// match a recomputation.
    #[cfg(test)]
    pub(crate) fn assert_consistent(&self) {
        assert_eq!(
            self.tree.len(),
            self.regions.len(),
            "tree and region map disagree"
        );
        let mut previous_end: Option<Vec<u8>> = None;
        for region in self.regions_in_key_order() {
            if let Some(end) = &previous_end {
                assert!(
                    !end.is_empty() && end.as_slice() <= region.region.start_key.as_slice(),
                    "overlap"
                );
            }
            previous_end = Some(region.region.end_key.clone());
            assert_eq!(
                self.region_by_key(&region.region.start_key)
                    .map(RegionInfo::id),
                Some(region.id())
            );
        }
        assert_eq!(self.maintained_store_stats(), self.recomputed_store_stats());
    }
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
