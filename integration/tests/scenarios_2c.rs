//! TinyKV's project 2C scenarios: log compaction and snapshots.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tinykv_actors::{Cf, RaftStoreConfig};
use tinykv_integration::cluster::Cluster;
use tinykv_integration::generic::GenericTest;
use tinykv_integration::network::{Filter, PartitionFilter, Verdict};
use tinykv_proto::eraftpb::MessageType;
use tinykv_proto::raft_serverpb::RaftMessage;

/// TinyKV's TestOneSnapshot2C: a store cut off while the log is compacted past it catches
/// up by snapshot, which carries every column family and removes deleted keys.
#[actix_rt::test]
async fn one_snapshot() {
    tinykv_integration::init_test_logging();
    let cfg = RaftStoreConfig {
        raft_log_gc_count_limit: 10,
        ..RaftStoreConfig::for_tests()
    };
    let mut cluster = Cluster::start(3, cfg).await;
    let client = cluster.client();
    let cf = Cf::Lock;
    client.must_put_cf(cf, b"k1", b"v1").await;
    client.must_put_cf(cf, b"k2", b"v2").await;
    cluster.wait_engine_value(1, cf, b"k1", Some(b"v1")).await;
    cluster.wait_engine_value(1, cf, b"k2", Some(b"v2")).await;
    for status in cluster.region_statuses(1).await {
        assert_eq!(
            status.truncated_index, 5,
            "nothing compacted yet: {status:?}"
        );
    }

    cluster
        .network()
        .add_filter(PartitionFilter::isolate(1, cluster.store_ids()));
    for i in 100..115 {
        let (k, v) = (format!("k{i}"), format!("v{i}"));
        client.must_put_cf(cf, k.as_bytes(), v.as_bytes()).await;
    }
    client.must_delete_cf(cf, b"k2").await;
    // The majority compacts its log past everything store 1 has.
    cluster.wait_log_bounded(1, 10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        cluster.engine_get(1, cf, b"k100"),
        None,
        "store 1 is cut off"
    );

    cluster.network().clear_filters();
    cluster.wait_engine_value(1, cf, b"k1", Some(b"v1")).await;
    cluster
        .wait_engine_value(1, cf, b"k100", Some(b"v100"))
        .await;
    cluster.wait_engine_value(1, cf, b"k2", None).await;
    let status = cluster
        .region_statuses(1)
        .await
        .into_iter()
        .find(|s| s.peer.store_id == 1)
        .unwrap();
    assert!(
        status.truncated_index > 5,
        "store 1 caught up by snapshot: {status:?}"
    );

    cluster.stop_store(1).await;
    cluster.start_store(1).await;
    cluster.wait_engine_value(1, cf, b"k1", Some(b"v1")).await;
    cluster.wait_log_bounded(1, 20).await;
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn snapshot_recover() {
    GenericTest::new(1).crash().max_raft_log(100).run().await;
}

#[actix_rt::test]
async fn snapshot_recover_many_clients() {
    GenericTest::new(20).crash().max_raft_log(100).run().await;
}

#[actix_rt::test]
async fn snapshot_unreliable_recover_concurrent_partition() {
    GenericTest::new(5)
        .unreliable()
        .crash()
        .partitions()
        .max_raft_log(100)
        .run()
        .await;
}

/// The log is also compacted by size: with a count limit that is never reached, a few
/// hundred kilobytes of writes keep the log near `raft_log_gc_size_limit` on every peer.
#[actix_rt::test]
async fn log_compacted_by_size() {
    tinykv_integration::init_test_logging();
    let cfg = RaftStoreConfig {
        raft_log_gc_count_limit: 1_000_000,
        raft_log_gc_size_limit: 16 * 1024,
        ..RaftStoreConfig::for_tests()
    };
    // 16 KiB is about 15 entries; the bound leaves room for the writes that land between
    // two GC ticks.
    writes_of_a_kib_keep_the_log_within(cfg, 100).await;
}

/// Starts a cluster with `cfg`, writes 300 values of 1 KiB one after another, and waits
/// until every peer's log holds at most `bound` applied entries.
async fn writes_of_a_kib_keep_the_log_within(cfg: RaftStoreConfig, bound: u64) {
    let cluster = Cluster::start(3, cfg).await;
    let client = cluster.client();
    let value = vec![b'v'; 1024];
    for i in 0..300 {
        client.must_put(format!("k{i:04}").as_bytes(), &value).await;
    }
    cluster.wait_log_bounded(1, bound).await;
    cluster.shutdown().await;
}

/// Counts the snapshots sent (dropping nothing).
struct SnapshotCounter(Arc<AtomicUsize>);

impl Filter for SnapshotCounter {
    fn check(&self, _: u64, _: u64, msg: &RaftMessage) -> Verdict {
        if msg
            .message
            .as_ref()
            .is_some_and(|m| m.msg_type == MessageType::MsgSnapshot as i32)
        {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        Verdict::Deliver
    }
}

/// The log sheds large entries as soon as it holds `raft_log_gc_size_threshold` bytes,
/// right after they apply, not at the next GC tick: here the tick never comes within the
/// test, the count and size limits are never reached, and the region never sleeps (a
/// leader going to sleep compacts its log too).
#[actix_rt::test]
async fn a_log_of_large_entries_is_compacted_without_waiting_for_the_tick() {
    tinykv_integration::init_test_logging();
    let cfg = RaftStoreConfig {
        hibernate_regions: false,
        raft_log_gc_tick_ms: 3_600_000,
        raft_log_gc_count_limit: 1_000_000,
        raft_log_gc_size_limit: 64 * 1024 * 1024,
        raft_log_gc_size_threshold: 16 * 1024,
        ..RaftStoreConfig::for_tests()
    };
    // 16 KiB is about 15 entries; the bound leaves room for the writes that land while a
    // compaction is applied.
    writes_of_a_kib_keep_the_log_within(cfg, 60).await;
}

/// Compacting at the size threshold never cuts a lagging follower off: it compacts only
/// what every follower holds (a follower holding exactly what was compacted before is
/// not taken for one that needs a snapshot), so a follower cut off for a while catches up
/// from the log, with no snapshot, once it is back.
#[actix_rt::test]
async fn size_threshold_compaction_keeps_what_a_lagging_follower_needs() {
    tinykv_integration::init_test_logging();
    let cfg = RaftStoreConfig {
        raft_log_gc_count_limit: 1_000_000,
        raft_log_gc_size_limit: 64 * 1024 * 1024,
        raft_log_gc_size_threshold: 8 * 1024,
        ..RaftStoreConfig::for_tests()
    };
    let cluster = Cluster::start(3, cfg).await;
    let client = cluster.client();
    let snapshots = Arc::new(AtomicUsize::new(0));
    cluster
        .network()
        .add_filter(SnapshotCounter(Arc::clone(&snapshots)));
    let value = vec![b'v'; 1024];
    for i in 0..40 {
        client.must_put(format!("a{i:04}").as_bytes(), &value).await;
    }
    // Everyone holds these: the log is compacted on every store.
    cluster.wait_log_bounded(1, 20).await;
    let leader = cluster.leader_of(1).await.store_id;
    let lagging = *cluster
        .store_ids()
        .iter()
        .find(|id| **id != leader)
        .expect("a follower");

    cluster
        .network()
        .add_filter(PartitionFilter::isolate(lagging, cluster.store_ids()));
    let cut_off_at = cluster
        .region_statuses(1)
        .await
        .into_iter()
        .find(|s| s.peer.store_id == lagging)
        .expect("the follower's peer")
        .applied_index;
    for i in 0..60 {
        client.must_put(format!("b{i:04}").as_bytes(), &value).await;
    }
    // Several thresholds' worth of entries later, and a few GC ticks, the others have
    // compacted nothing the follower lacks.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for status in cluster.region_statuses(1).await {
        assert!(
            status.truncated_index <= cut_off_at,
            "the log was compacted past what the follower holds ({cut_off_at}): {status:?}"
        );
    }

    cluster.network().clear_filters();
    cluster
        .network()
        .add_filter(SnapshotCounter(Arc::clone(&snapshots)));
    cluster
        .wait_engine_value(lagging, Cf::Default, b"b0059", Some(&value))
        .await;
    // Caught up, and compacted again, without a snapshot.
    cluster.wait_log_bounded(1, 20).await;
    assert_eq!(
        snapshots.load(Ordering::SeqCst),
        0,
        "no snapshot was needed"
    );
    cluster.shutdown().await;
}
