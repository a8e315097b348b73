//! The checkers and schedulers: what should change, as operators.
//!
//! Each is a pure function of a [`ScheduleContext`] (the cluster, the scheduling settings,
//! the time, and the operators already in flight) returning at most one [`Operator`]:
//!
//! - [`check_replicas`] looks at one region: too few peers → add one on the best store;
//!   too many → remove the worst non-leader peer; a peer on a down, offline or tombstone
//!   store → move it to a good store (add first, then remove);
//! - [`balance_region`] moves a peer from the store with the largest region size to the
//!   one with the smallest, TinyKV's balance-region rules;
//! - [`balance_leader`] transfers a leadership from the store leading the most regions to
//!   a follower on a store leading fewer.
//!
//! Store loads (region and leader counts, region sizes) are the cluster's figures plus
//! the effect of the steps still to come of the operators in flight, so two schedulers
//! (or two rounds of one) do not pile onto the same target. Every choice is
//! deterministic: ties are broken by store id, then region id.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use tinykv_proto::metapb::StoreState;

use super::cluster::ClusterInfo;
use super::operator::{add_peer_steps, Operator, OperatorKind, Step};
use super::operator::{move_peer_steps, remove_peer_steps, transfer_leader_steps, AllocId};
use super::region::RegionInfo;

/// The scheduling settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SchedulerConfig {
    /// A store silent for longer than this is down: its peers are replaced.
    pub max_store_down_time_ms: u64,
    /// A store silent for longer than this (but not yet down) is disconnected: it gets
    /// no new peers or leaderships (a leader transfer to it would stall the region's
    /// writes until it fails).
    pub max_store_disconnect_time_ms: u64,
    /// An operator not finished within this time is dropped.
    pub operator_timeout_ms: u64,
    /// At most this many balance operators (region and leader) in flight.
    pub max_balance_operators: usize,
    /// At most this many replica and offline operators in flight.
    pub max_replica_operators: usize,
    /// Leaderships are balanced only between stores whose leader counts differ by more
    /// than this.
    pub leader_balance_tolerance: u64,
    /// The balancers run at most once per this interval when driven by heartbeats.
    pub balance_interval_ms: u64,
    /// A region whose size is at most this (and known) merges into a neighbour as small;
    /// 0 turns merging off.
    pub max_merge_region_size: u64,
    /// Regions merge only once the PD has known both for this long, so that a region
    /// just split (small by nature) is not merged straight back.
    pub split_merge_interval_ms: u64,
    /// At most this many merges in flight (of disjoint pairs).
    pub max_merge_operators: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_store_down_time_ms: 30 * 60 * 1000,
            max_store_disconnect_time_ms: 5 * 1000,
            operator_timeout_ms: 60 * 1000,
            max_balance_operators: 4,
            max_replica_operators: 64,
            leader_balance_tolerance: 1,
            balance_interval_ms: 1000,
            max_merge_region_size: 20 * 1024 * 1024,
            split_merge_interval_ms: 60 * 60 * 1000,
            max_merge_operators: 8,
        }
    }
}

/// The merge to make for `region`, if it is small and so is a neighbour (TiKV PD's merge
/// checker): both sizes known and at most `max_merge_region_size` together, both known to
/// the PD for `split_merge_interval_ms` (`known_since` gives when each was first seen),
/// both led, with no peer pending, no operator in flight, and peers on the same stores;
/// neither may hold the reserved keys (the PD's own records live there). The region
/// merges into its right neighbour if that one qualifies, else into its left one.
pub fn check_merge(
    ctx: &ScheduleContext<'_>,
    region: &RegionInfo,
    known_since: &dyn Fn(u64) -> Option<u64>,
) -> Option<Operator> {
    let limit = ctx.config.max_merge_region_size;
    if limit == 0 {
        return None;
    }
    let fit = |r: &RegionInfo| {
        r.approximate_size.is_some_and(|size| size <= limit)
            && r.leader.is_some()
            && r.pending_peers.is_empty()
            && !ctx.is_busy(r.id())
            && !holds_reserved_keys(r)
            && known_since(r.id()).is_some_and(|since| {
                ctx.now_ms.saturating_sub(since) >= ctx.config.split_merge_interval_ms
            })
    };
    if !fit(region) {
        return None;
    }
    let stores = |r: &RegionInfo| {
        let mut ids: Vec<u64> = r.peers().iter().map(|p| p.store_id).collect();
        ids.sort_unstable();
        ids
    };
    let right = (!region.region.end_key.is_empty())
        .then(|| ctx.cluster.region_by_key(&region.region.end_key))
        .flatten();
    let left = (!region.region.start_key.is_empty())
        .then(|| ctx.cluster.region_ending_at(&region.region.start_key))
        .flatten();
    let target = [right, left].into_iter().flatten().find(|t| {
        fit(t)
            && stores(t) == stores(region)
            && region.approximate_size.unwrap_or(0) + t.approximate_size.unwrap_or(0) <= limit
    })?;
    let steps = vec![Step::Merge {
        target: target.id(),
        version: region.epoch().version,
    }];
    Some(ctx.operator(region, OperatorKind::Merge, "merge-region", steps))
}

/// Whether a region's range reaches the reserved keys (from byte 0xFF on).
fn holds_reserved_keys(region: &RegionInfo) -> bool {
    let end = &region.region.end_key;
    end.is_empty()
        || end.as_slice() > tinykv_actors::keys::RESERVED_KEYS_START
        || tinykv_actors::keys::is_reserved_key(&region.region.start_key)
}

/// How fit a store is to hold peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreHealth {
    /// Up and heartbeating: may receive peers.
    Healthy,
    /// Up, but silent for longer than the disconnect time (not yet down), or not heard
    /// from at all yet (a store that joined but never sent a heartbeat may not even
    /// exist): it receives neither peers nor leaderships, and keeps the peers it has.
    Disconnected,
    /// Not known to the PD: its peers are left alone.
    Unknown,
    /// Being drained: its peers move elsewhere, it receives none.
    Offline,
    /// Silent for longer than the down time: its peers are replaced.
    Down,
    /// Removed for good: its peers are replaced.
    Tombstone,
}

impl StoreHealth {
    /// How urgently a peer on such a store should go (0 = not at all).
    fn badness(self) -> u8 {
        match self {
            StoreHealth::Healthy => 0,
            StoreHealth::Disconnected | StoreHealth::Unknown => 1,
            StoreHealth::Offline => 2,
            StoreHealth::Down | StoreHealth::Tombstone => 3,
        }
    }
}

/// How fit store `store_id` is to hold peers at `now_ms`, under `config`'s down and
/// disconnect times.
pub fn store_health(
    cluster: &ClusterInfo,
    config: &SchedulerConfig,
    store_id: u64,
    now_ms: u64,
) -> StoreHealth {
    let Some(store) = cluster.store(store_id) else {
        return StoreHealth::Unknown;
    };
    match store.state() {
        StoreState::Tombstone => StoreHealth::Tombstone,
        _ if store.is_down(now_ms, config.max_store_down_time_ms) => StoreHealth::Down,
        StoreState::Offline => StoreHealth::Offline,
        StoreState::Up
            if store.last_heartbeat_ms.is_none()
                || store.silent_for_ms(now_ms) > config.max_store_disconnect_time_ms =>
        {
            StoreHealth::Disconnected
        }
        StoreState::Up => StoreHealth::Healthy,
    }
}

/// A store's load as the schedulers weigh it: the cluster's figures plus the operators'
/// steps still to come. Signed, since a removal may be counted before the heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoreLoad {
    /// Regions with a peer on the store.
    pub region_count: i64,
    /// Regions led from the store.
    pub leader_count: i64,
    /// Sum of the sizes (MiB) of the regions with a peer on the store.
    pub region_size_mib: i64,
}

/// Everything a checker or scheduler looks at.
#[derive(Debug)]
pub struct ScheduleContext<'a> {
    /// The cluster as last reported.
    pub cluster: &'a ClusterInfo,
    /// The scheduling settings.
    pub config: &'a SchedulerConfig,
    /// The current time.
    pub now_ms: u64,
    loads: BTreeMap<u64, StoreLoad>,
    busy_regions: BTreeSet<u64>,
}

impl<'a> ScheduleContext<'a> {
    /// A context with no operator in flight.
    pub fn new(cluster: &'a ClusterInfo, config: &'a SchedulerConfig, now_ms: u64) -> Self {
        let loads = cluster
            .stores()
            .map(|s| {
                let stats = cluster.store_region_stats(s.id());
                let load = StoreLoad {
                    region_count: stats.region_count as i64,
                    leader_count: stats.leader_count as i64,
                    region_size_mib: stats.region_size_mib as i64,
                };
                (s.id(), load)
            })
            .collect();
        ScheduleContext {
            cluster,
            config,
            now_ms,
            loads,
            busy_regions: BTreeSet::new(),
        }
    }

    /// Accounts for operators in flight: their regions are busy (no second operator), and
    /// their steps to come count in the stores' loads.
    pub fn with_operators<'o>(mut self, operators: impl IntoIterator<Item = &'o Operator>) -> Self {
        for op in operators {
            self.busy_regions.insert(op.region_id());
            let Some(region) = self.cluster.region(op.region_id()) else {
                continue;
            };
            let size = region.size_mib() as i64;
            for step in op.steps_to_come(region) {
                match *step {
                    Step::AddPeer { store_id, .. } => {
                        let load = self.loads.entry(store_id).or_default();
                        load.region_count += 1;
                        load.region_size_mib += size;
                    }
                    Step::RemovePeer { store_id } => {
                        let load = self.loads.entry(store_id).or_default();
                        load.region_count -= 1;
                        load.region_size_mib -= size;
                    }
                    Step::TransferLeader {
                        from_store,
                        to_store,
                    } => {
                        self.loads.entry(from_store).or_default().leader_count -= 1;
                        self.loads.entry(to_store).or_default().leader_count += 1;
                    }
                    Step::Merge { target, .. } => {
                        // The target absorbs the region: it is busy too.
                        self.busy_regions.insert(target);
                        for peer in region.peers() {
                            self.loads.entry(peer.store_id).or_default().region_count -= 1;
                        }
                    }
                }
            }
        }
        self
    }

    /// How fit the store is to hold peers now.
    pub fn store_health(&self, store_id: u64) -> StoreHealth {
        store_health(self.cluster, self.config, store_id, self.now_ms)
    }

    /// The store's load (zeros for a store the PD does not know).
    pub fn load(&self, store_id: u64) -> StoreLoad {
        self.loads.get(&store_id).copied().unwrap_or_default()
    }

    /// Whether the region already has an operator in flight.
    pub fn is_busy(&self, region_id: u64) -> bool {
        self.busy_regions.contains(&region_id)
    }

    /// The healthy stores, by id.
    fn healthy_stores(&self) -> Vec<u64> {
        self.cluster
            .stores()
            .map(|s| s.id())
            .filter(|id| self.store_health(*id) == StoreHealth::Healthy)
            .collect()
    }

    /// The healthy store not holding a peer of the region with the fewest regions, then
    /// the smallest region size, then the smallest id.
    fn best_store_for_new_peer(&self, region: &RegionInfo) -> Option<u64> {
        self.healthy_stores()
            .into_iter()
            .filter(|id| region.peer_on_store(*id).is_none())
            .min_by_key(|id| {
                let load = self.load(*id);
                (load.region_count, load.region_size_mib, *id)
            })
    }

    fn operator(
        &self,
        region: &RegionInfo,
        kind: OperatorKind,
        desc: &'static str,
        steps: Vec<Step>,
    ) -> Operator {
        Operator::new(
            region,
            kind,
            desc,
            steps,
            self.now_ms,
            self.config.operator_timeout_ms,
        )
    }
}

/// The replica checker: the operator that brings `region` to the configured number of
/// peers, all on healthy stores, if one is needed and possible.
///
/// In order: with too many peers, remove the non-leader peer on the worst store (down or
/// tombstone, then offline, then unknown, then the most regions); with too few, add one
/// on the healthy store with the fewest regions; otherwise move the peer on the worst bad
/// store (down or tombstone, then offline) to that store. Peers on stores the PD does not
/// know are never replaced (the store may simply not have joined yet).
pub fn check_replicas(
    ctx: &ScheduleContext<'_>,
    region: &RegionInfo,
    alloc: &mut dyn AllocId,
) -> Option<Operator> {
    let max = ctx.cluster.config().max_peer_count.max(1);
    let peer_count = region.peers().len();
    if peer_count == 0 {
        return None;
    }
    if peer_count > max {
        let worst = region.followers().map(|p| p.store_id).max_by_key(|id| {
            let load = ctx.load(*id);
            (
                ctx.store_health(*id).badness(),
                load.region_count,
                load.region_size_mib,
                std::cmp::Reverse(*id),
            )
        })?;
        let steps = remove_peer_steps(region, worst).ok()?;
        return Some(ctx.operator(region, OperatorKind::Replica, "remove-extra-replica", steps));
    }
    let target = ctx.best_store_for_new_peer(region)?;
    if peer_count < max {
        let steps = add_peer_steps(region, target, alloc).ok()?;
        return Some(ctx.operator(region, OperatorKind::Replica, "make-up-replica", steps));
    }
    let (bad_store, health) = region
        .store_ids()
        .map(|id| (id, ctx.store_health(id)))
        .filter(|(_, health)| {
            matches!(
                health,
                StoreHealth::Down | StoreHealth::Tombstone | StoreHealth::Offline
            )
        })
        .max_by_key(|(id, health)| (health.badness(), std::cmp::Reverse(*id)))?;
    let (kind, desc) = match health {
        StoreHealth::Offline => (OperatorKind::Offline, "replace-offline-replica"),
        StoreHealth::Tombstone => (OperatorKind::Replica, "replace-tombstone-replica"),
        _ => (OperatorKind::Replica, "replace-down-replica"),
    };
    let steps = move_peer_steps(region, bad_store, target, alloc).ok()?;
    Some(ctx.operator(region, kind, desc, steps))
}

/// Whether balance-region may move this region off `source`: no operator in flight, the
/// configured number of peers, all on healthy stores, a known leader, and no peer
/// catching up except possibly the one being moved away.
fn movable(ctx: &ScheduleContext<'_>, region: &RegionInfo, source: u64) -> bool {
    !ctx.is_busy(region.id())
        && region.peers().len() == ctx.cluster.config().max_peer_count
        && region.leader.is_some()
        && region
            .store_ids()
            .all(|id| ctx.store_health(id) == StoreHealth::Healthy)
        && region.pending_peers.iter().all(|p| p.store_id == source)
}

/// The balance-region scheduler (TinyKV's rules): take the healthy store with the largest
/// region size as the source; pick one of its regions, preferring one whose peer there
/// is pending, then one it follows, then one it leads; move that peer to the healthy
/// store with the smallest region size not holding the region, if the two sizes differ
/// by more than twice the region's size. Sources and regions are tried in order until a
/// move qualifies.
pub fn balance_region(ctx: &ScheduleContext<'_>, alloc: &mut dyn AllocId) -> Option<Operator> {
    let mut sources = ctx.healthy_stores();
    sources.sort_by_key(|id| (std::cmp::Reverse(ctx.load(*id).region_size_mib), *id));
    for &source in &sources {
        let pending: Vec<&RegionInfo> = ctx.cluster.pending_regions_on_store(source).collect();
        let not_pending = |r: &&RegionInfo| !pending.iter().any(|p| p.id() == r.id());
        let followers = ctx
            .cluster
            .follower_regions_on_store(source)
            .filter(not_pending);
        let leaders = ctx
            .cluster
            .leader_regions_on_store(source)
            .filter(not_pending);
        let candidates = pending.iter().copied().chain(followers).chain(leaders);
        for region in candidates.filter(|r| movable(ctx, r, source)) {
            let target = sources
                .iter()
                .copied()
                .filter(|id| region.peer_on_store(*id).is_none())
                .min_by_key(|id| {
                    (
                        ctx.load(*id).region_size_mib,
                        ctx.load(*id).region_count,
                        *id,
                    )
                });
            let Some(target) = target else { continue };
            let gap = ctx.load(source).region_size_mib - ctx.load(target).region_size_mib;
            if gap > 2 * region.size_mib() as i64 {
                let steps = move_peer_steps(region, source, target, alloc).ok()?;
                return Some(ctx.operator(region, OperatorKind::Balance, "balance-region", steps));
            }
        }
    }
    None
}

/// The balance-leader scheduler: take the store leading the most regions (healthy or
/// offline: an offline store still serves, and should shed its leaderships); transfer one
/// of its leaderships to the follower, on a healthy store and not pending, whose store
/// leads the fewest regions, if the two leader counts differ by more than the tolerance.
/// A store draining its leaderships (before a restart) is never a target, nor counted
/// among the fewest: it sheds its leaderships itself.
pub fn balance_leader(ctx: &ScheduleContext<'_>) -> Option<Operator> {
    let may_lead = |id: u64| {
        ctx.store_health(id) == StoreHealth::Healthy
            && !ctx.cluster.store(id).is_some_and(|s| s.drains_leaders())
    };
    let fewest = ctx
        .healthy_stores()
        .into_iter()
        .filter(|id| may_lead(*id))
        .map(|id| ctx.load(id).leader_count)
        .min()?;
    let tolerance = ctx.config.leader_balance_tolerance as i64;
    let mut sources: Vec<u64> = ctx
        .cluster
        .stores()
        .map(|s| s.id())
        .filter(|id| {
            matches!(
                ctx.store_health(*id),
                StoreHealth::Healthy | StoreHealth::Offline
            )
        })
        .collect();
    sources.sort_by_key(|id| (std::cmp::Reverse(ctx.load(*id).leader_count), *id));
    for source in sources {
        let source_leaders = ctx.load(source).leader_count;
        if source_leaders - fewest <= tolerance {
            break;
        }
        for region in ctx
            .cluster
            .leader_regions_on_store(source)
            .filter(|r| !ctx.is_busy(r.id()))
        {
            let target = region
                .followers()
                .filter(|p| !region.is_pending(p.id) && may_lead(p.store_id))
                .map(|p| p.store_id)
                .min_by_key(|id| (ctx.load(*id).leader_count, *id));
            let Some(target) = target else { continue };
            if source_leaders - ctx.load(target).leader_count > tolerance {
                let steps = transfer_leader_steps(region, target).ok()?;
                return Some(ctx.operator(region, OperatorKind::Balance, "balance-leader", steps));
            }
        }
    }
    None
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
