//! TinyKV's project 2C scenarios: log compaction and snapshots.

use std::time::Duration;

use tinykv_actors::{Cf, RaftStoreConfig};
use tinykv_integration::cluster::Cluster;
use tinykv_integration::generic::GenericTest;
use tinykv_integration::network::PartitionFilter;

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
    let cluster = Cluster::start(3, cfg).await;
    let client = cluster.client();
    let value = vec![b'v'; 1024];
    for i in 0..300 {
        client.must_put(format!("k{i:04}").as_bytes(), &value).await;
    }
    // 300 entries of over 1 KiB each; 16 KiB is about 15 of them. The bound leaves room
    // for the writes that land between two GC ticks.
    cluster.wait_log_bounded(1, 100).await;
    cluster.shutdown().await;
}
