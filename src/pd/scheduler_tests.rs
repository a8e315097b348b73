//! Tests of the checkers and schedulers: TinyKV's graded balance-region tests
//! (`TestReplicas13C`, `TestReplicas33C`, `TestReplicas53C`, `TestReplacePendingRegion3C`)
//! ported, the replica checker and balance-leader.
//!
//! TinyKV's mock cluster sets store sizes directly; here they are derived from regions, so
//! a store's extra size comes from one single-peer "filler" region of that size. With
//! more than one replica configured, fillers never qualify for balancing.

use std::collections::{BTreeMap, BTreeSet};

use tinykv_proto::metapb::StoreState;

use super::*;
use crate::pd::cluster::{ClusterConfig, StoreHeartbeat};
use crate::pd::region::MIB;
use crate::pd::test_util::{
    cluster_with_stores, peer, put_region, simple_region, store, IdCounter,
};

const DOWN_MS: u64 = 1_000;

/// A cluster the tests shape store by store, TinyKV mock-cluster style.
struct Fixture {
    cluster: ClusterInfo,
    config: SchedulerConfig,
    now: u64,
    down: BTreeSet<u64>,
    fillers: BTreeMap<u64, RegionInfo>,
    regions: BTreeMap<u64, RegionInfo>,
}

impl Fixture {
    fn new(max_peer_count: usize) -> Self {
        Fixture {
            cluster: ClusterInfo::new(ClusterConfig {
                cluster_id: 1,
                max_peer_count,
            }),
            config: SchedulerConfig {
                max_store_down_time_ms: DOWN_MS,
                ..SchedulerConfig::default()
            },
            now: 10_000,
            down: BTreeSet::new(),
            fillers: BTreeMap::new(),
            regions: BTreeMap::new(),
        }
    }

    /// TinyKV's `AddRegionStore(id, count)`: the store, heartbeating now, with a region
    /// size of `count * 10` MiB on top of the test's regions.
    fn add_region_store(&mut self, store_id: u64, count: u64) {
        if self.cluster.store(store_id).is_none() {
            self.cluster
                .put_store(store(store_id), self.now)
                .expect("put store");
        }
        self.heartbeat_store(store_id);
        if count > 0 {
            let mut filler = simple_region(10_000 + store_id, &[store_id], count * 10);
            if let Some(old) = self.fillers.get(&store_id) {
                filler.region.region_epoch = old.region.region_epoch;
            }
            put_region(&mut self.cluster, &filler);
            self.fillers.insert(store_id, filler);
        }
    }

    /// TinyKV's `AddLeaderRegion(id, leader, followers...)`: a 10 MiB region on `stores`
    /// led by the first one (a newer membership if it exists already).
    fn add_leader_region(&mut self, region_id: u64, stores: &[u64]) {
        let mut region = simple_region(region_id, stores, 10);
        if let Some(old) = self.regions.get(&region_id) {
            let mut epoch = old.epoch();
            epoch.conf_ver += 1;
            region.region.region_epoch = Some(epoch);
        }
        put_region(&mut self.cluster, &region);
        self.regions.insert(region_id, region);
    }

    fn region(&self, region_id: u64) -> RegionInfo {
        self.cluster.region(region_id).cloned().expect("region")
    }

    fn heartbeat_store(&mut self, store_id: u64) {
        let heartbeat = StoreHeartbeat {
            store_id,
            ..Default::default()
        };
        self.cluster
            .handle_store_heartbeat(heartbeat, self.now)
            .expect("store heartbeat");
    }

    /// Lets `store_id` fall silent past the down time while the others keep heartbeating.
    fn set_store_down(&mut self, store_id: u64) {
        self.down.insert(store_id);
        self.now += DOWN_MS + 1;
        let alive: Vec<u64> = self
            .cluster
            .stores()
            .map(|s| s.id())
            .filter(|id| !self.down.contains(id))
            .collect();
        for id in alive {
            self.heartbeat_store(id);
        }
    }

    fn ctx(&self) -> ScheduleContext<'_> {
        ScheduleContext::new(&self.cluster, &self.config, self.now)
    }

    fn balance_region(&self) -> Option<Operator> {
        balance_region(&self.ctx(), &mut IdCounter::default())
    }

    fn check_replicas(&self, region_id: u64) -> Option<Operator> {
        check_replicas(
            &self.ctx(),
            &self.region(region_id),
            &mut IdCounter::default(),
        )
    }
}

/// TinyKV's `CheckTransferPeer`: add on `to` first, remove from `from` last.
fn assert_move(op: Option<Operator>, kind: OperatorKind, from: u64, to: u64) -> Operator {
    let op = op.expect("an operator");
    assert_eq!(op.kind(), kind, "{op:?}");
    assert!(
        matches!(op.steps().first(), Some(Step::AddPeer { store_id, .. }) if *store_id == to),
        "{op:?}"
    );
    assert_eq!(
        op.steps().last(),
        Some(&Step::RemovePeer { store_id: from }),
        "{op:?}"
    );
    op
}

/// TinyKV's `CheckTransferPeerWithLeaderTransfer`: the move hands the leadership over.
fn assert_move_with_leader_transfer(op: Option<Operator>, kind: OperatorKind, from: u64, to: u64) {
    let op = assert_move(op, kind, from, to);
    assert_eq!(op.steps().len(), 3);
    assert_eq!(
        op.steps()[1],
        Step::TransferLeader {
            from_store: from,
            to_store: to
        }
    );
}

// ---- balance-region (TinyKV 3C) ----

#[test]
fn replicas_1() {
    let mut f = Fixture::new(1);
    f.add_region_store(1, 6);
    f.add_region_store(2, 8);
    f.add_region_store(3, 8);
    f.add_region_store(4, 16);
    f.add_leader_region(1, &[4]);
    assert_move_with_leader_transfer(f.balance_region(), OperatorKind::Balance, 4, 1);

    // An offline store is no target: store 2 becomes the one with the least data.
    f.cluster
        .set_store_state(1, StoreState::Offline)
        .expect("offline");
    f.add_region_store(2, 6);
    assert_move_with_leader_transfer(f.balance_region(), OperatorKind::Balance, 4, 2);

    // With three replicas wanted, single-peer regions are the replica checker's business.
    f.cluster.set_max_peer_count(3);
    assert!(f.balance_region().is_none());
    f.cluster.set_max_peer_count(1);
    assert!(f.balance_region().is_some());
}

#[test]
fn replicas_3() {
    let mut f = Fixture::new(3);
    // Store 1 has the most data, but every other store already holds the region.
    f.add_region_store(1, 16);
    f.add_region_store(2, 15);
    f.add_region_store(3, 14);
    f.add_leader_region(1, &[1, 2, 3]);
    assert!(f.balance_region().is_none());

    // Ever emptier stores attract the peer from store 1.
    f.add_region_store(4, 2);
    assert_move(f.balance_region(), OperatorKind::Balance, 1, 4);
    f.add_region_store(5, 1);
    assert_move(f.balance_region(), OperatorKind::Balance, 1, 5);
    f.add_region_store(6, 0);
    assert_move(f.balance_region(), OperatorKind::Balance, 1, 6);

    // A down store is no target.
    f.set_store_down(6);
    assert_move(f.balance_region(), OperatorKind::Balance, 1, 5);

    // With 4, 5 and 6 down, only store 7 is left, and it holds more than store 1.
    f.set_store_down(4);
    f.set_store_down(5);
    f.set_store_down(6);
    f.add_region_store(7, 20);
    assert!(f.balance_region().is_none());
}

#[test]
fn replicas_5() {
    let mut f = Fixture::new(5);
    f.add_region_store(1, 4);
    f.add_region_store(2, 5);
    f.add_region_store(3, 6);
    f.add_region_store(4, 7);
    f.add_region_store(5, 28);
    f.add_leader_region(1, &[1, 2, 3, 4, 5]);

    // Store 6 is the emptiest.
    f.add_region_store(6, 1);
    assert_move(f.balance_region(), OperatorKind::Balance, 5, 6);
    // Store 7 holds more than store 6.
    f.add_region_store(7, 5);
    assert_move(f.balance_region(), OperatorKind::Balance, 5, 6);

    // The region moved off store 1 (onto 6): store 1 is now the emptiest outside it.
    f.add_leader_region(1, &[2, 3, 4, 5, 6]);
    assert_move(f.balance_region(), OperatorKind::Balance, 5, 1);

    // Store 11 holds the most now; store 6 is the emptiest not holding the region.
    f.add_region_store(11, 29);
    f.add_region_store(12, 8);
    f.add_region_store(13, 7);
    f.add_leader_region(1, &[2, 3, 11, 12, 13]);
    assert_move(f.balance_region(), OperatorKind::Balance, 11, 6);
}

#[test]
fn replace_pending_region() {
    let mut f = Fixture::new(3);
    f.add_region_store(1, 16);
    f.add_region_store(2, 7);
    f.add_region_store(3, 15);
    f.add_region_store(4, 10);
    f.add_leader_region(1, &[1, 2, 3]);
    f.add_leader_region(2, &[1, 2, 3]);
    f.add_leader_region(3, &[2, 1, 3]);
    let mut region3 = f.region(3);
    region3.pending_peers = vec![*region3.peer_on_store(1).expect("peer on store 1")];
    put_region(&mut f.cluster, &region3);

    // Store 1 has the most data; its pending peer (region 3) is moved first, to store 4.
    let op = assert_move(f.balance_region(), OperatorKind::Balance, 1, 4);
    assert_eq!(op.region_id(), 3);
    assert_eq!(op.desc(), "balance-region");
}

#[test]
fn balance_region_prefers_followers_and_counts_operators_in_flight() {
    let mut f = Fixture::new(3);
    for id in 1..=3 {
        f.add_region_store(id, 10);
    }
    f.add_region_store(4, 0);
    f.add_leader_region(1, &[1, 2, 3]);
    f.add_leader_region(2, &[2, 1, 3]);
    // Store 1 leads region 1 and follows region 2: region 2 goes first.
    let op = assert_move(f.balance_region(), OperatorKind::Balance, 1, 4);
    assert_eq!(op.region_id(), 2);
    // With that move counted, store 2 holds the most data and region 2 is busy: store 2's
    // peer of region 1 moves next.
    let ctx = f.ctx().with_operators([&op]);
    let second = assert_move(
        balance_region(&ctx, &mut IdCounter::default()),
        OperatorKind::Balance,
        2,
        4,
    );
    assert_eq!(second.region_id(), 1);
}

#[test]
fn balance_region_leaves_regions_with_unhealthy_peers_alone() {
    let mut f = Fixture::new(3);
    for id in 1..=3 {
        f.add_region_store(id, 10);
    }
    f.add_region_store(4, 0);
    f.add_region_store(5, 0);
    f.add_leader_region(1, &[1, 2, 5]);
    f.set_store_down(5);
    assert!(
        f.balance_region().is_none(),
        "the replica checker replaces store 5's peer first"
    );
}

#[test]
fn in_flight_operators_count_in_the_loads() {
    let mut f = Fixture::new(3);
    for id in 1..=4 {
        f.add_region_store(id, 1);
    }
    f.add_leader_region(1, &[1, 2, 3]);
    let region = f.region(1);
    let steps = move_peer_steps(&region, 3, 4, &mut IdCounter::default()).expect("steps");
    let op = Operator::new(&region, OperatorKind::Balance, "test", steps, f.now, 60_000);
    let ctx = f.ctx().with_operators([&op]);
    assert!(ctx.is_busy(1));
    assert_eq!(
        ctx.load(4),
        StoreLoad {
            region_count: 2,
            leader_count: 1,
            region_size_mib: 20
        }
    );
    assert_eq!(
        ctx.load(3),
        StoreLoad {
            region_count: 1,
            leader_count: 1,
            region_size_mib: 10
        }
    );
}

// ---- replica checker ----

#[test]
fn replica_checker_adds_a_missing_peer_on_the_least_loaded_store() {
    let mut f = Fixture::new(3);
    for id in 1..=4 {
        f.add_region_store(id, 0);
    }
    f.add_leader_region(1, &[1, 2]);
    f.add_leader_region(2, &[3]);
    f.add_leader_region(3, &[3, 4]);
    let op = f.check_replicas(1).expect("make up a replica");
    assert_eq!(
        (op.kind(), op.desc()),
        (OperatorKind::Replica, "make-up-replica")
    );
    assert!(
        matches!(op.steps(), [Step::AddPeer { store_id: 4, .. }]),
        "{op:?}"
    );

    // Not on a down store.
    f.set_store_down(4);
    let op = f.check_replicas(1).expect("make up a replica");
    assert!(
        matches!(op.steps(), [Step::AddPeer { store_id: 3, .. }]),
        "{op:?}"
    );
}

#[test]
fn replica_checker_removes_an_extra_peer_but_never_the_leader() {
    let mut f = Fixture::new(3);
    for id in 1..=4 {
        f.add_region_store(id, 0);
    }
    f.add_leader_region(1, &[1, 2, 3, 4]);
    f.add_leader_region(2, &[1]);
    f.add_leader_region(3, &[1]);
    f.add_leader_region(4, &[2]);
    // Store 1 holds the most regions but leads region 1; store 2 is next.
    let op = f.check_replicas(1).expect("remove a replica");
    assert_eq!(
        (op.kind(), op.desc()),
        (OperatorKind::Replica, "remove-extra-replica")
    );
    assert_eq!(op.steps(), &[Step::RemovePeer { store_id: 2 }]);

    // A peer on an offline store goes first.
    f.cluster
        .set_store_state(4, StoreState::Offline)
        .expect("offline");
    assert_eq!(
        f.check_replicas(1).expect("remove").steps(),
        &[Step::RemovePeer { store_id: 4 }]
    );
    // A peer on a down store before that.
    f.set_store_down(3);
    assert_eq!(
        f.check_replicas(1).expect("remove").steps(),
        &[Step::RemovePeer { store_id: 3 }]
    );
}

#[test]
fn replica_checker_replaces_a_peer_on_a_down_store() {
    let mut f = Fixture::new(3);
    for id in 1..=4 {
        f.add_region_store(id, 0);
    }
    f.add_leader_region(1, &[1, 2, 3]);
    assert!(f.check_replicas(1).is_none(), "healthy region");
    f.set_store_down(3);
    let op = assert_move(f.check_replicas(1), OperatorKind::Replica, 3, 4);
    assert_eq!(op.desc(), "replace-down-replica");
    assert_eq!(op.steps().len(), 2);
}

#[test]
fn replica_checker_drains_an_offline_store() {
    let mut f = Fixture::new(3);
    for id in 1..=4 {
        f.add_region_store(id, 0);
    }
    f.add_leader_region(1, &[1, 2, 3]);
    f.add_leader_region(2, &[2, 1, 3]);
    f.cluster
        .set_store_state(2, StoreState::Offline)
        .expect("offline");
    let op = assert_move(f.check_replicas(1), OperatorKind::Offline, 2, 4);
    assert_eq!(op.desc(), "replace-offline-replica");
    // Where the offline store leads, the leadership goes to the new peer first.
    assert_move_with_leader_transfer(f.check_replicas(2), OperatorKind::Offline, 2, 4);
}

#[test]
fn replica_checker_prefers_down_over_offline_and_replaces_tombstones() {
    let mut f = Fixture::new(3);
    for id in 1..=6 {
        f.add_region_store(id, 0);
    }
    f.add_leader_region(1, &[1, 2, 3]);
    f.cluster
        .set_store_state(3, StoreState::Offline)
        .expect("offline");
    f.set_store_down(2);
    assert_move(f.check_replicas(1), OperatorKind::Replica, 2, 4);

    // A region reporting a peer on a tombstone store gets it replaced.
    f.cluster
        .set_store_state(5, StoreState::Tombstone)
        .expect("tombstone");
    f.add_leader_region(2, &[1, 4, 5]);
    let op = assert_move(f.check_replicas(2), OperatorKind::Replica, 5, 6);
    assert_eq!(op.desc(), "replace-tombstone-replica");
}

#[test]
fn replica_checker_needs_a_target_and_leaves_unknown_stores_alone() {
    // TinyKV's TestLostStore: a peer on store 3, which the PD does not know.
    let mut cluster = cluster_with_stores(3, &[1, 2]);
    put_region(&mut cluster, &simple_region(1, &[1, 2, 3], 1));
    let config = SchedulerConfig::default();
    let ctx = ScheduleContext::new(&cluster, &config, 0);
    let region = cluster.region(1).cloned().expect("region");
    assert!(check_replicas(&ctx, &region, &mut IdCounter::default()).is_none());

    // Three stores, one down: nowhere to put a replacement.
    let mut f = Fixture::new(3);
    for id in 1..=3 {
        f.add_region_store(id, 0);
    }
    f.add_leader_region(1, &[1, 2, 3]);
    f.set_store_down(3);
    assert!(f.check_replicas(1).is_none());
}

// ---- balance-leader ----

#[test]
fn balance_leader_moves_from_the_most_to_the_fewest_leaders() {
    let mut f = Fixture::new(3);
    for id in 1..=3 {
        f.add_region_store(id, 0);
    }
    for region_id in 1..=4 {
        f.add_leader_region(region_id, &[1, 2, 3]);
    }
    let op = balance_leader(&f.ctx()).expect("transfer");
    assert_eq!(
        (op.kind(), op.desc(), op.region_id()),
        (OperatorKind::Balance, "balance-leader", 1)
    );
    assert_eq!(
        op.steps(),
        &[Step::TransferLeader {
            from_store: 1,
            to_store: 2
        }]
    );

    // Leaders 2, 1, 1: within the tolerance.
    f.add_leader_region(3, &[2, 1, 3]);
    f.add_leader_region(4, &[3, 1, 2]);
    assert!(balance_leader(&f.ctx()).is_none());
    // A wider tolerance stops a transfer at 4, 0, 0 too.
    f.add_leader_region(3, &[1, 2, 3]);
    f.add_leader_region(4, &[1, 2, 3]);
    f.config.leader_balance_tolerance = 4;
    assert!(balance_leader(&f.ctx()).is_none());
}

#[test]
fn balance_leader_never_gives_a_leadership_to_a_draining_store() {
    let mut f = Fixture::new(3);
    for id in 1..=3 {
        f.add_region_store(id, 0);
    }
    for region_id in 1..=4 {
        f.add_leader_region(region_id, &[1, 2, 3]);
    }
    // Store 2 drains its leaderships: store 3 gets the transfer instead.
    let draining = StoreHeartbeat {
        store_id: 2,
        draining_leaders: true,
        ..Default::default()
    };
    f.cluster
        .handle_store_heartbeat(draining, f.now)
        .expect("store heartbeat");
    let op = balance_leader(&f.ctx()).expect("transfer");
    assert_eq!(
        op.steps(),
        &[Step::TransferLeader {
            from_store: 1,
            to_store: 3
        }]
    );
    // Leaders 1, 0, 3 with store 1 draining too: nothing to 1 or 2, and 3 is the only
    // store left that may lead, so it is not out of balance with anyone.
    for region_id in 1..=3 {
        f.add_leader_region(region_id, &[3, 1, 2]);
    }
    f.add_leader_region(4, &[1, 2, 3]);
    let draining = StoreHeartbeat {
        store_id: 1,
        draining_leaders: true,
        ..Default::default()
    };
    f.cluster
        .handle_store_heartbeat(draining, f.now)
        .expect("store heartbeat");
    assert!(balance_leader(&f.ctx()).is_none());
    // A heartbeat without the flag (the store restarted) makes it a target again.
    f.heartbeat_store(2);
    let op = balance_leader(&f.ctx()).expect("transfer");
    assert_eq!(
        op.steps(),
        &[Step::TransferLeader {
            from_store: 3,
            to_store: 2
        }]
    );
}

#[test]
fn balance_leader_skips_pending_and_down_followers() {
    let mut f = Fixture::new(3);
    for id in 1..=3 {
        f.add_region_store(id, 0);
    }
    for region_id in 1..=3 {
        f.add_leader_region(region_id, &[1, 2, 3]);
        let mut region = f.region(region_id);
        region.pending_peers = vec![peer(region_id * 100 + 2, 2)];
        put_region(&mut f.cluster, &region);
    }
    let op = balance_leader(&f.ctx()).expect("transfer");
    assert_eq!(
        op.steps(),
        &[Step::TransferLeader {
            from_store: 1,
            to_store: 3
        }]
    );
    f.set_store_down(3);
    assert!(balance_leader(&f.ctx()).is_none());
}

#[test]
fn balance_leader_sheds_leaderships_of_offline_stores() {
    let mut f = Fixture::new(3);
    for id in 1..=3 {
        f.add_region_store(id, 0);
    }
    for region_id in 1..=3 {
        f.add_leader_region(region_id, &[1, 2, 3]);
    }
    f.cluster
        .set_store_state(1, StoreState::Offline)
        .expect("offline");
    let op = balance_leader(&f.ctx()).expect("transfer");
    assert_eq!(
        op.steps(),
        &[Step::TransferLeader {
            from_store: 1,
            to_store: 2
        }]
    );
}

#[test]
fn empty_regions_weigh_one_mib() {
    let mut cluster = cluster_with_stores(3, &[1]);
    let mut region = simple_region(1, &[1], 0);
    region.approximate_size = Some(MIB / 2);
    put_region(&mut cluster, &region);
    assert_eq!(cluster.store_region_stats(1).region_size_mib, 1);
}

#[test]
fn a_disconnected_store_gets_no_new_peer_and_no_leadership() {
    let config = SchedulerConfig {
        max_store_disconnect_time_ms: 2_000,
        ..SchedulerConfig::default()
    };
    let mut cluster = cluster_with_stores(3, &[1, 2, 3, 4]);
    // Every store but 3 keeps heartbeating.
    for store_id in [1, 2, 4] {
        cluster
            .handle_store_heartbeat(
                StoreHeartbeat {
                    store_id,
                    ..Default::default()
                },
                2_500,
            )
            .unwrap();
    }
    put_region(&mut cluster, &simple_region(1, &[1, 2], 1));
    let ctx = ScheduleContext::new(&cluster, &config, 2_600);
    assert_eq!(ctx.store_health(3), StoreHealth::Disconnected);
    assert_eq!(ctx.store_health(4), StoreHealth::Healthy);
    let op = check_replicas(&ctx, cluster.region(1).unwrap(), &mut IdCounter::default())
        .expect("a missing replica to add");
    assert!(
        matches!(op.steps()[0], Step::AddPeer { store_id: 4, .. }),
        "{op:?}"
    );

    // Store 1 leads three regions whose other peers are on 2 and 3: the leaderships go
    // to 2 only, never to the silent store 3.
    for id in 2..=4 {
        put_region(&mut cluster, &simple_region(id, &[1, 2, 3], 1));
    }
    let ctx = ScheduleContext::new(&cluster, &config, 2_600);
    let op = balance_leader(&ctx).expect("leaders to move off store 1");
    assert_eq!(
        op.steps(),
        &[Step::TransferLeader {
            from_store: 1,
            to_store: 2
        }]
    );
    // A store that falls silent is not a disconnected one for the repairs: its peers
    // stay until it is down.
    let region = cluster.region(2).unwrap();
    assert!(check_replicas(&ctx, region, &mut IdCounter::default()).is_none());
}

/// A store that joined but never sent a heartbeat (a forged join, or a node that died
/// right after joining) receives no replica: it may not even exist.
#[test]
fn a_store_never_heard_from_gets_no_new_peer() {
    let config = SchedulerConfig::default();
    let mut cluster = cluster_with_stores(3, &[1, 2, 3]);
    cluster
        .put_store(crate::pd::test_util::store(4), 0)
        .unwrap();
    put_region(&mut cluster, &simple_region(1, &[1, 2], 1));
    let ctx = ScheduleContext::new(&cluster, &config, 200);
    assert_eq!(ctx.store_health(4), StoreHealth::Disconnected);
    let op = check_replicas(&ctx, cluster.region(1).unwrap(), &mut IdCounter::default())
        .expect("a missing replica to add");
    assert!(
        matches!(op.steps()[0], Step::AddPeer { store_id: 3, .. }),
        "{op:?}"
    );
}
