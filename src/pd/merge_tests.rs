//! Tests of the merge checker: which neighbouring regions the PD merges, and how a merge
//! operator follows its source until the target absorbs it.

use super::*;
use crate::pd::test_util::{cluster_with_stores, heartbeat, region, IdCounter};

const MIB: u64 = 1024 * 1024;

fn config() -> SchedulerConfig {
    SchedulerConfig {
        max_store_down_time_ms: 60_000,
        max_store_disconnect_time_ms: 60_000,
        operator_timeout_ms: 30_000,
        balance_interval_ms: 0,
        max_merge_region_size: 10 * MIB,
        split_merge_interval_ms: 1_000,
        ..SchedulerConfig::default()
    }
}

/// Region `id` over `[start, end)` with a peer on each of `stores`, led from the first,
/// of `size_mib` MiB, at epoch (1, `version`).
fn sized(
    id: u64,
    start: &[u8],
    end: &[u8],
    stores: &[u64],
    size_mib: u64,
    version: u64,
) -> RegionInfo {
    let peers: Vec<(u64, u64)> = stores.iter().map(|&s| (id * 100 + s, s)).collect();
    let mut info = region(
        id,
        start,
        end,
        &peers,
        stores.first().copied(),
        (1, version),
    );
    info.approximate_size = Some(size_mib * MIB);
    info
}

/// A coordinator that heard `regions` at time 0, then schedules at `now`; returns the
/// operators it made.
fn schedule_at(regions: &[RegionInfo], now: u64) -> (Coordinator, Vec<OperatorView>) {
    let mut coord = Coordinator::new(cluster_with_stores(3, &[1, 2, 3]), config());
    let mut ids = IdCounter::default();
    for r in regions {
        coord
            .on_region_heartbeat(heartbeat(r), 0, &mut ids)
            .expect("accepted");
    }
    coord.schedule(now, &mut ids);
    let ops = coord.operators();
    (coord, ops)
}

fn merges(ops: &[OperatorView]) -> Vec<(u64, u64)> {
    ops.iter()
        .filter_map(|op| match op.steps.first() {
            Some(Step::Merge { target, .. }) => Some((op.region_id, *target)),
            _ => None,
        })
        .collect()
}

/// Three regions tiling the data keys, the last ending where the reserved keys begin,
/// and the meta region holding them; leaders spread evenly (no balancing to do).
fn three_small() -> Vec<RegionInfo> {
    vec![
        sized(10, b"", b"g", &[1, 2, 3], 1, 2),
        sized(11, b"g", b"p", &[2, 3, 1], 1, 2),
        sized(12, b"p", b"\xff", &[3, 1, 2], 1, 2),
        sized(13, b"\xff", b"", &[1, 2, 3], 0, 2),
    ]
}

#[test]
fn small_old_neighbours_on_the_same_stores_merge_in_disjoint_pairs() {
    // 10 into 11; 12's neighbours are 11 (busy) and the meta region: not now.
    let (_, ops) = schedule_at(&three_small(), 2_000);
    assert_eq!(merges(&ops), vec![(10, 11)]);
    // Five regions: 10 into 11 and 12 into 14 at once.
    let five = vec![
        sized(10, b"", b"d", &[1, 2, 3], 1, 2),
        sized(11, b"d", b"g", &[2, 3, 1], 1, 2),
        sized(12, b"g", b"m", &[3, 1, 2], 1, 2),
        sized(14, b"m", b"p", &[1, 2, 3], 1, 2),
        sized(15, b"p", b"\xff", &[2, 3, 1], 9, 2),
        sized(13, b"\xff", b"", &[3, 1, 2], 0, 2),
    ];
    let (_, ops) = schedule_at(&five, 2_000);
    assert_eq!(merges(&ops), vec![(10, 11), (12, 14)]);
}

#[test]
fn young_big_misaligned_pending_or_reserved_regions_do_not_merge() {
    // Known for less than the split-merge interval.
    assert!(merges(&schedule_at(&three_small(), 500).1).is_empty());
    // Together over the limit.
    let mut big = three_small();
    big[0].approximate_size = Some(6 * MIB);
    big[1].approximate_size = Some(6 * MIB);
    big[2].approximate_size = Some(6 * MIB);
    assert!(merges(&schedule_at(&big, 2_000).1).is_empty());
    // Size never measured.
    let mut unknown = three_small();
    for r in &mut unknown {
        r.approximate_size = None;
    }
    assert!(merges(&schedule_at(&unknown, 2_000).1).is_empty());
    // Peers on different stores.
    let misaligned = vec![
        sized(10, b"", b"g", &[1, 2, 3], 1, 2),
        sized(11, b"g", b"\xff", &[2, 1, 4], 1, 2),
        sized(13, b"\xff", b"", &[3, 1, 2], 0, 2),
    ];
    assert!(merges(&schedule_at(&misaligned, 2_000).1).is_empty());
    // A peer still catching up.
    let mut pending = three_small();
    for r in &mut pending {
        r.pending_peers = vec![r.region.peers[1]];
    }
    assert!(merges(&schedule_at(&pending, 2_000).1).is_empty());
    // Only the last data region and the meta region: never merged together.
    let edge = vec![
        sized(12, b"", b"\xff", &[1, 2, 3], 1, 2),
        sized(13, b"\xff", b"", &[2, 3, 1], 0, 2),
    ];
    assert!(merges(&schedule_at(&edge, 2_000).1).is_empty());
}

#[test]
fn a_merge_operator_waits_while_the_source_is_frozen_and_ends_when_it_is_absorbed() {
    let regions = three_small();
    let (mut coord, ops) = schedule_at(&regions, 2_000);
    assert_eq!(merges(&ops), vec![(10, 11)]);
    let mut ids = IdCounter::default();
    let answer = coord
        .on_region_heartbeat(heartbeat(&regions[0]), 2_100, &mut ids)
        .expect("accepted");
    assert_eq!(answer, Some(HeartbeatAnswer::Merge { target: 11 }));
    // Frozen by PrepareMerge: both parts of the epoch grew; nothing more to send, and
    // the operator is not stale.
    let frozen = sized(10, b"", b"g", &[1, 2, 3], 1, 3);
    let mut frozen = frozen;
    frozen.region.region_epoch.as_mut().unwrap().conf_ver += 1;
    let answer = coord
        .on_region_heartbeat(heartbeat(&frozen), 2_200, &mut ids)
        .expect("accepted");
    assert_eq!(answer, None);
    assert_eq!(merges(&coord.operators()), vec![(10, 11)]);
    // The target reports the merged range: the source is gone, so is its operator, and
    // no second merge involves a region that is not there.
    let merged = sized(11, b"", b"p", &[2, 3, 1], 2, 4);
    coord
        .on_region_heartbeat(heartbeat(&merged), 2_300, &mut ids)
        .expect("accepted");
    assert!(coord.cluster().region(10).is_none());
    coord.schedule(2_400, &mut ids);
    let after = merges(&coord.operators());
    assert!(after.iter().all(|(s, t)| *s != 10 && *t != 10), "{after:?}");
}
