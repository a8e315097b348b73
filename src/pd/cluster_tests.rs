//! Tests of [`ClusterInfo`]: TinyKV's graded `processRegionHeartbeat` tests
//! (`TestRegion*3C`, `TestHeartbeatSplit3C`, `TestRegionSplitAndMerge3C`) ported, plus the
//! store lifecycle.

use std::collections::BTreeMap;

use tinykv_proto::metapb::{Peer, StoreState};

use super::*;
use crate::pd::region::MIB;
use crate::pd::test_util::{heartbeat, inc_conf_ver, inc_version, put_region, region, store};

/// TinyKV's `newTestRegions(3, 3)`: region i+1 covers `[i, i+1)`, has peers on stores
/// (i+j)%3+1 with ids i*3+j+1, leader the first peer, epoch (2, 2).
fn test_regions() -> Vec<RegionInfo> {
    (0..3u64)
        .map(|i| {
            let peers: Vec<(u64, u64)> = (0..3u64)
                .map(|j| (i * 3 + j + 1, (i + j) % 3 + 1))
                .collect();
            let leader = peers[0].1;
            region(
                i + 1,
                &[i as u8],
                &[i as u8 + 1],
                &peers,
                Some(leader),
                (2, 2),
            )
        })
        .collect()
}

/// TinyKV's `setUpTestCluster`: three stores, the three test regions heartbeated one by one.
fn set_up() -> (ClusterInfo, Vec<RegionInfo>) {
    let mut cluster = ClusterInfo::new(ClusterConfig::default());
    for id in 1..=3 {
        cluster.put_store(store(id), 0).expect("put store");
    }
    let regions = test_regions();
    for (i, r) in regions.iter().enumerate() {
        put_region(&mut cluster, r);
        check_regions(&cluster, &regions[..=i]);
    }
    (cluster, regions)
}

/// TinyKV's `checkRegions`: the cluster holds exactly `expected`, and every per-store
/// figure matches them.
fn check_regions(cluster: &ClusterInfo, expected: &[RegionInfo]) {
    assert_eq!(cluster.region_count(), expected.len());
    let mut region_counts: BTreeMap<u64, usize> = BTreeMap::new();
    let mut leader_counts: BTreeMap<u64, usize> = BTreeMap::new();
    let mut pending_counts: BTreeMap<u64, usize> = BTreeMap::new();
    for r in expected {
        assert_eq!(cluster.region(r.id()), Some(r), "region {}", r.id());
        for p in r.peers() {
            *region_counts.entry(p.store_id).or_default() += 1;
            if r.leader == Some(*p) {
                *leader_counts.entry(p.store_id).or_default() += 1;
                assert!(cluster
                    .leader_regions_on_store(p.store_id)
                    .any(|x| x.id() == r.id()));
            } else {
                assert!(cluster
                    .follower_regions_on_store(p.store_id)
                    .any(|x| x.id() == r.id()));
            }
            if r.is_pending(p.id) {
                *pending_counts.entry(p.store_id).or_default() += 1;
            }
        }
    }
    for (store_id, count) in region_counts {
        let stats = cluster.store_region_stats(store_id);
        assert_eq!(stats.region_count, count, "regions on store {store_id}");
        assert_eq!(
            stats.leader_count,
            leader_counts.get(&store_id).copied().unwrap_or(0)
        );
        assert_eq!(
            stats.pending_peer_count,
            pending_counts.get(&store_id).copied().unwrap_or(0)
        );
    }
    cluster.assert_consistent();
}

fn replace(regions: &mut [RegionInfo], i: usize, r: RegionInfo) -> RegionInfo {
    regions[i] = r.clone();
    r
}

#[test]
fn region_not_update() {
    let (mut cluster, regions) = set_up();
    for r in &regions {
        put_region(&mut cluster, r);
        check_regions(&cluster, &regions);
    }
}

#[test]
fn region_update_version() {
    let (mut cluster, mut regions) = set_up();
    for i in 0..regions.len() {
        let next = inc_version(&regions[i]);
        let r = replace(&mut regions, i, next);
        put_region(&mut cluster, &r);
        check_regions(&cluster, &regions);
    }
}

#[test]
fn region_with_stale_version() {
    let (mut cluster, mut regions) = set_up();
    for i in 0..regions.len() {
        let origin = regions[i].clone();
        let r = replace(&mut regions, i, inc_version(&origin));
        put_region(&mut cluster, &r);
        check_regions(&cluster, &regions);

        let stale = inc_conf_ver(&origin);
        let err = cluster
            .handle_region_heartbeat(heartbeat(&stale))
            .expect_err("stale version");
        assert!(matches!(err, PdError::StaleRegion { .. }), "{err}");
        check_regions(&cluster, &regions);
    }
}

#[test]
fn region_update_version_and_conf_ver() {
    let (mut cluster, mut regions) = set_up();
    for i in 0..regions.len() {
        let next = inc_conf_ver(&inc_version(&regions[i]));
        let r = replace(&mut regions, i, next);
        put_region(&mut cluster, &r);
        check_regions(&cluster, &regions);
    }
}

#[test]
fn region_with_stale_conf_ver() {
    let (mut cluster, mut regions) = set_up();
    for i in 0..regions.len() {
        let origin = regions[i].clone();
        let r = replace(&mut regions, i, inc_conf_ver(&origin));
        put_region(&mut cluster, &r);
        check_regions(&cluster, &regions);

        let err = cluster
            .handle_region_heartbeat(heartbeat(&origin))
            .expect_err("stale conf_ver");
        assert!(err.to_string().contains("stale heartbeat"), "{err}");
        check_regions(&cluster, &regions);
    }
}

#[test]
fn region_add_pending_peer() {
    let (mut cluster, mut regions) = set_up();
    let mut pending_per_store: BTreeMap<u64, usize> = BTreeMap::new();
    for i in 0..regions.len() {
        let mut r = regions[i].clone();
        let pending = r.peers()[(i + 1) % r.peers().len()];
        *pending_per_store.entry(pending.store_id).or_default() += 1;
        r.pending_peers = vec![pending];
        let r = replace(&mut regions, i, r);
        put_region(&mut cluster, &r);
        check_regions(&cluster, &regions);
    }
    for (store_id, count) in pending_per_store {
        assert_eq!(
            cluster.store_region_stats(store_id).pending_peer_count,
            count
        );
        assert_eq!(cluster.pending_regions_on_store(store_id).count(), count);
    }
}

#[test]
fn region_remove_pending_peer() {
    let (mut cluster, mut regions) = set_up();
    for i in 0..regions.len() {
        let mut r = regions[i].clone();
        r.pending_peers = vec![r.peers()[i % 3]];
        let r = replace(&mut regions, i, r);
        put_region(&mut cluster, &r);
        check_regions(&cluster, &regions);

        let mut r = r;
        r.pending_peers.clear();
        let r = replace(&mut regions, i, r);
        put_region(&mut cluster, &r);
        check_regions(&cluster, &regions);
    }
    for store_id in 1..=3 {
        assert_eq!(cluster.store_region_stats(store_id).pending_peer_count, 0);
    }
}

#[test]
fn region_remove_peers() {
    let (mut cluster, mut regions) = set_up();
    for i in 0..regions.len() {
        let mut r = regions[i].clone();
        r.region.peers.truncate(1);
        let r = replace(&mut regions, i, r);
        put_region(&mut cluster, &r);
        check_regions(&cluster, &regions);
    }
}

#[test]
fn region_add_back_peers() {
    let (mut cluster, mut regions) = set_up();
    for i in 0..regions.len() {
        let origin = regions[i].clone();
        let mut r = origin.clone();
        r.region.peers.truncate(1);
        let r = replace(&mut regions, i, r);
        put_region(&mut cluster, &r);
        check_regions(&cluster, &regions);

        let r = replace(&mut regions, i, origin);
        put_region(&mut cluster, &r);
        check_regions(&cluster, &regions);
    }
}

#[test]
fn region_change_leader() {
    let (mut cluster, mut regions) = set_up();
    for i in 0..regions.len() {
        let mut r = regions[i].clone();
        r.leader = Some(r.peers()[1]);
        let r = replace(&mut regions, i, r);
        put_region(&mut cluster, &r);
        check_regions(&cluster, &regions);
    }
}

#[test]
fn region_change_approximate_size() {
    let (mut cluster, mut regions) = set_up();
    for i in 0..regions.len() {
        let mut r = regions[i].clone();
        r.approximate_size = Some(144 * MIB);
        let r = replace(&mut regions, i, r);
        put_region(&mut cluster, &r);
        check_regions(&cluster, &regions);
    }
    // Every store holds a peer of each of the three regions, and leads one.
    for store_id in 1..=3 {
        let stats = cluster.store_region_stats(store_id);
        assert_eq!(stats.region_size_mib, 3 * 144);
        assert_eq!(stats.leader_size_mib, 144);
    }
    // A heartbeat without a measured size keeps the last one.
    let mut unmeasured = heartbeat(&regions[0]);
    unmeasured.approximate_size = None;
    cluster
        .handle_region_heartbeat(unmeasured)
        .expect("accepted");
    assert_eq!(
        cluster.region(1).and_then(|r| r.approximate_size),
        Some(144 * MIB)
    );
}

#[test]
fn region_counts() {
    let (cluster, regions) = set_up();
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for r in &regions {
        for p in r.peers() {
            *counts.entry(p.store_id).or_default() += 1;
        }
    }
    for (store_id, count) in counts {
        assert_eq!(cluster.store_region_stats(store_id).region_count, count);
        assert_eq!(cluster.regions_on_store(store_id).count(), count);
    }
}

#[test]
fn region_get_regions() {
    let (cluster, regions) = set_up();
    let got: Vec<&RegionInfo> = cluster.regions().collect();
    assert_eq!(got, regions.iter().collect::<Vec<_>>());
    let in_key_order: Vec<u64> = cluster.regions_in_key_order().map(RegionInfo::id).collect();
    assert_eq!(in_key_order, vec![1, 2, 3]);
}

#[test]
fn region_get_stores() {
    let (cluster, regions) = set_up();
    for r in &regions {
        let stores: Vec<u64> = cluster.region_stores(r).map(StoreInfo::id).collect();
        assert_eq!(stores.len(), 3);
        for store_id in stores {
            assert!(r.peer_on_store(store_id).is_some());
        }
        for s in cluster.follower_stores(r) {
            let p = r.peer_on_store(s.id()).expect("peer on follower store");
            assert_ne!(Some(p.id), r.leader.map(|l| l.id));
        }
        assert_eq!(cluster.follower_stores(r).count(), 2);
    }
}

#[test]
fn region_get_stores_info() {
    let (cluster, _) = set_up();
    let recomputed = cluster.recomputed_store_stats();
    for s in cluster.stores() {
        assert_eq!(
            cluster.store_region_stats(s.id()),
            recomputed.get(&s.id()).copied().unwrap_or_default()
        );
    }
}

/// A region without peers, as TinyKV's split tests use.
fn bare(id: u64, start: &[u8], end: &[u8], version: u64) -> RegionInfo {
    region(id, start, end, &[], None, (1, version))
}

fn region_id_at(cluster: &ClusterInfo, key: &[u8]) -> Option<u64> {
    cluster.region_by_key(key).map(RegionInfo::id)
}

#[test]
fn heartbeat_split() {
    let mut cluster = ClusterInfo::new(ClusterConfig::default());
    // 1: [nil, nil)
    put_region(&mut cluster, &bare(1, b"", b"", 1));
    assert_eq!(region_id_at(&cluster, b"foo"), Some(1));

    // Split 1 into 2: [nil, m) and 1: [m, nil); 2 reports first.
    let region1 = bare(1, b"m", b"", 2);
    put_region(&mut cluster, &bare(2, b"", b"m", 1));
    assert_eq!(region_id_at(&cluster, b"a"), Some(2));
    assert_eq!(
        region_id_at(&cluster, b"z"),
        None,
        "[m, nil) is a hole until region 1 reports"
    );
    put_region(&mut cluster, &region1);
    assert_eq!(region_id_at(&cluster, b"z"), Some(1));
    cluster.assert_consistent();

    // Split 1 into 3: [m, q) and 1: [q, nil); 1 reports first.
    put_region(&mut cluster, &bare(1, b"q", b"", 3));
    assert_eq!(region_id_at(&cluster, b"z"), Some(1));
    assert_eq!(region_id_at(&cluster, b"a"), Some(2));
    assert_eq!(
        region_id_at(&cluster, b"n"),
        None,
        "[m, q) is a hole until region 3 reports"
    );
    put_region(&mut cluster, &bare(3, b"m", b"q", 1));
    assert_eq!(region_id_at(&cluster, b"n"), Some(3));
    cluster.assert_consistent();
}

#[test]
fn heartbeat_of_a_pre_split_region_is_refused() {
    let mut cluster = ClusterInfo::new(ClusterConfig::default());
    let parent = region(1, b"", b"", &[(11, 1)], Some(1), (1, 1));
    put_region(&mut cluster, &parent);
    // The right half reports first; it replaces the parent's stale entry.
    put_region(
        &mut cluster,
        &region(2, b"m", b"", &[(21, 1)], Some(1), (1, 2)),
    );
    assert!(cluster.region(1).is_none());
    // A late heartbeat of the parent's old shape overlaps a newer region: refused.
    let err = cluster
        .handle_region_heartbeat(heartbeat(&parent))
        .expect_err("stale");
    assert!(
        matches!(
            err,
            PdError::StaleRegion {
                region_id: 1,
                newer_region_id: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(cluster.region_count(), 1);
    assert_eq!(cluster.store_region_stats(1).region_count, 1);
    cluster.assert_consistent();
}

/// TinyKV's `core.SplitRegions`: each region splits at the middle of its first key
/// byte; both halves get new ids and a bumped version.
fn split_regions(regions: &[RegionInfo]) -> Vec<RegionInfo> {
    let n = regions.len() as u64;
    let mut out = Vec::with_capacity(regions.len() * 2);
    for r in regions {
        let start = r.region.start_key.first().copied().unwrap_or(0);
        let end = r.region.end_key.first().copied().unwrap_or(u8::MAX);
        let middle = vec![start / 2 + end / 2];
        let mut left = inc_version(r);
        left.region.id = r.id() + n;
        left.region.end_key = middle.clone();
        let mut right = inc_version(r);
        right.region.id = r.id() + 2 * n;
        right.region.start_key = middle;
        out.push(left);
        out.push(right);
    }
    out
}

/// TinyKV's `core.MergeRegions`: neighbours merge pairwise into a region with a new id
/// and the newer epoch, version bumped.
fn merge_regions(regions: &[RegionInfo]) -> Vec<RegionInfo> {
    let n = regions.len() as u64;
    regions
        .chunks(2)
        .map(|pair| {
            let (left, right) = (&pair[0], pair.last().unwrap_or(&pair[0]));
            let newer = if left.epoch().version > right.epoch().version {
                left
            } else {
                right
            };
            let mut merged = inc_version(newer);
            merged.region.id = left.id() + n;
            merged.region.start_key = left.region.start_key.clone();
            merged.region.end_key = right.region.end_key.clone();
            merged
        })
        .collect()
}

/// TinyKV's `heartbeatRegions`: report each region, checking lookups by id and by key
/// after each report and after all of them.
fn heartbeat_regions(cluster: &mut ClusterInfo, regions: &[RegionInfo]) {
    let check = |cluster: &ClusterInfo, r: &RegionInfo| {
        assert_eq!(cluster.region(r.id()), Some(r));
        assert_eq!(cluster.region_by_key(&r.region.start_key), Some(r));
        if let Some(&end) = r.region.end_key.first() {
            assert_eq!(cluster.region_by_key(&[end - 1]), Some(r));
        }
    };
    for r in regions {
        put_region(cluster, r);
        check(cluster, r);
    }
    for r in regions {
        check(cluster, r);
        if let Some(&end) = r.region.end_key.first() {
            assert_ne!(region_id_at(cluster, &[end.wrapping_add(1)]), Some(r.id()));
        }
    }
    assert_eq!(cluster.region_count(), regions.len());
    cluster.assert_consistent();
}

#[test]
fn region_split_and_merge() {
    let mut cluster = ClusterInfo::new(ClusterConfig::default());
    let mut regions = vec![region(1, b"", b"", &[(1, 1)], Some(1), (0, 0))];
    let n = 7;
    for _ in 0..n {
        regions = split_regions(&regions);
        heartbeat_regions(&mut cluster, &regions);
    }
    for _ in 0..n {
        regions = merge_regions(&regions);
        heartbeat_regions(&mut cluster, &regions);
    }
    for i in 0..2 * n {
        regions = if (i + 1) % 3 == 0 {
            merge_regions(&regions)
        } else {
            split_regions(&regions)
        };
        heartbeat_regions(&mut cluster, &regions);
    }
    assert_eq!(cluster.store_region_stats(1).region_count, regions.len());
}

// ---- stores ----

#[test]
fn put_store_registers_updates_and_refuses() {
    let mut cluster = ClusterInfo::new(ClusterConfig::default());
    cluster.put_store(store(1), 5).expect("join");
    let s1 = cluster.store(1).expect("store 1");
    assert_eq!(s1.state(), StoreState::Up);
    assert_eq!(s1.watched_since_ms, 5);
    assert!(s1.last_heartbeat_ms.is_none());

    // Rejoining with a new address updates it.
    let mut moved = store(1);
    moved.address = "10.0.0.1:20160".to_string();
    cluster.put_store(moved, 6).expect("update address");
    assert_eq!(
        cluster.store(1).map(|s| s.meta.address.as_str()),
        Some("10.0.0.1:20160")
    );

    // Another store with the same address is refused while store 1 is alive or offline.
    let mut twin = store(2);
    twin.address = "10.0.0.1:20160".to_string();
    let err = cluster
        .put_store(twin.clone(), 7)
        .expect_err("duplicate address");
    assert_eq!(
        err,
        PdError::DuplicateAddress {
            address: twin.address.clone(),
            existing_store_id: 1
        }
    );
    cluster
        .set_store_state(1, StoreState::Offline)
        .expect("offline");
    assert!(cluster.put_store(twin.clone(), 7).is_err());
    // Once store 1 is a tombstone its address is free, and it cannot come back.
    cluster
        .set_store_state(1, StoreState::Tombstone)
        .expect("tombstone");
    cluster.put_store(twin, 8).expect("address reused");
    assert_eq!(
        cluster.put_store(store(1), 9),
        Err(PdError::StoreTombstone(1))
    );

    let mut nameless = store(3);
    nameless.address.clear();
    assert!(matches!(
        cluster.put_store(nameless, 9),
        Err(PdError::InvalidStore { store_id: 3, .. })
    ));
    assert!(matches!(
        cluster.put_store(store(0), 9),
        Err(PdError::InvalidStore { store_id: 0, .. })
    ));
}

#[test]
fn store_heartbeat_needs_a_live_registered_store() {
    let mut cluster = ClusterInfo::new(ClusterConfig::default());
    let report = StoreHeartbeat {
        store_id: 1,
        capacity: Some(100),
        available: Some(50),
        used_size: None,
        region_count: 1,
        draining_leaders: false,
    };
    assert_eq!(
        cluster.handle_store_heartbeat(report, 10),
        Err(PdError::StoreNotFound(1))
    );
    cluster.put_store(store(1), 0).expect("join");
    cluster
        .handle_store_heartbeat(report, 10)
        .expect("heartbeat");
    let s = cluster.store(1).expect("store");
    assert_eq!(s.last_heartbeat_ms, Some(10));
    assert_eq!(s.last_report, Some(report));
    cluster
        .set_store_state(1, StoreState::Tombstone)
        .expect("tombstone");
    assert_eq!(
        cluster.handle_store_heartbeat(report, 11),
        Err(PdError::StoreTombstone(1))
    );
}

#[test]
fn store_state_transitions() {
    let mut cluster = ClusterInfo::new(ClusterConfig::default());
    for id in 1..=2 {
        cluster.put_store(store(id), 0).expect("join");
    }
    put_region(
        &mut cluster,
        &region(1, b"", b"", &[(11, 1)], Some(1), (1, 1)),
    );

    cluster
        .set_store_state(1, StoreState::Offline)
        .expect("offline");
    cluster.set_store_state(1, StoreState::Up).expect("back up");
    assert_eq!(
        cluster.set_store_state(1, StoreState::Tombstone),
        Err(PdError::StoreNotEmpty {
            store_id: 1,
            region_count: 1
        })
    );
    assert_eq!(
        cluster.set_store_state(9, StoreState::Offline),
        Err(PdError::StoreNotFound(9))
    );

    // Offline stores become tombstones once drained.
    cluster
        .set_store_state(1, StoreState::Offline)
        .expect("offline");
    cluster
        .set_store_state(2, StoreState::Offline)
        .expect("offline");
    assert_eq!(cluster.drained_offline_stores(), vec![2]);
    assert_eq!(cluster.finish_offline_stores(), vec![2]);
    assert_eq!(
        cluster.store(2).map(StoreInfo::state),
        Some(StoreState::Tombstone)
    );
    assert!(matches!(
        cluster.set_store_state(2, StoreState::Up),
        Err(PdError::InvalidStateTransition {
            store_id: 2,
            from: "Tombstone",
            to: "Up"
        })
    ));

    // Region 1 moves to store 2... which is a tombstone now; use a new store 3.
    cluster.put_store(store(3), 0).expect("join");
    let moved = region(1, b"", b"", &[(31, 3)], Some(3), (3, 1));
    put_region(&mut cluster, &moved);
    assert_eq!(cluster.finish_offline_stores(), vec![1]);
    let up: Vec<u64> = cluster
        .stores_in_state(StoreState::Up)
        .map(StoreInfo::id)
        .collect();
    let tombstones: Vec<u64> = cluster
        .stores_in_state(StoreState::Tombstone)
        .map(StoreInfo::id)
        .collect();
    assert_eq!((up, tombstones), (vec![3], vec![1, 2]));
}

#[test]
fn stores_go_down_after_silence_and_clocks_reset_on_takeover() {
    let mut cluster = ClusterInfo::new(ClusterConfig::default());
    cluster.put_store(store(1), 0).expect("join");
    cluster.put_store(store(2), 0).expect("join");
    cluster
        .handle_store_heartbeat(
            StoreHeartbeat {
                store_id: 1,
                ..Default::default()
            },
            100,
        )
        .expect("hb");
    // Store 2 never heartbeats: it is down once the down time has passed since it joined.
    assert!(!cluster.is_store_down(2, 50, 50));
    assert!(cluster.is_store_down(2, 51, 50));
    assert!(!cluster.is_store_down(1, 150, 50));
    assert!(cluster.is_store_down(1, 151, 50));
    assert!(
        !cluster.is_store_down(9, 1000, 50),
        "unknown stores are not down"
    );
    // A PD taking over restarts the clocks.
    cluster.reset_liveness_clocks(1000);
    assert!(!cluster.is_store_down(1, 1050, 50));
    assert!(!cluster.is_store_down(2, 1050, 50));
    assert!(cluster.is_store_down(2, 1051, 50));
}

#[test]
fn summary_shows_stores_with_derived_figures() {
    let mut cluster = ClusterInfo::new(ClusterConfig {
        cluster_id: 7,
        max_peer_count: 3,
    });
    cluster.put_store(store(1), 0).expect("join");
    cluster.put_store(store(2), 0).expect("join");
    let mut r = region(1, b"", b"", &[(11, 1), (12, 2)], Some(1), (1, 1));
    r.pending_peers = vec![Peer {
        id: 12,
        store_id: 2,
    }];
    r.approximate_size = Some(5 * MIB);
    put_region(&mut cluster, &r);

    let summary = cluster.summary(10, 1_000);
    assert_eq!(summary.region_count, 1);
    assert_eq!(summary.stores.len(), 2);
    assert_eq!(
        summary.stores[0].regions,
        StoreRegionStats {
            region_count: 1,
            leader_count: 1,
            pending_peer_count: 0,
            region_size_mib: 5,
            leader_size_mib: 5,
        }
    );
    assert_eq!(summary.stores[1].regions.pending_peer_count, 1);
    let json = serde_json::to_value(&summary).expect("serialize");
    assert_eq!(json["config"]["cluster_id"], 7);
    assert_eq!(json["stores"][0]["state"], "Up");
    assert_eq!(json["stores"][0]["region_count"], 1);
    assert_eq!(json["stores"][1]["is_down"], false);
}
