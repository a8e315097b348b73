//! Hibernation: an idle region sleeps (no ticks, no messages), wakes on a request within a
//! round trip, and a sleeping region whose leader died or was cut off elects another
//! leader once someone needs it, losing nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tinykv_actors::{Cf, RaftStoreConfig};
use tinykv_integration::cluster::Cluster;
use tinykv_integration::network::{Filter, PartitionFilter, Verdict};
use tinykv_proto::raft_serverpb::RaftMessage;

/// Counts every message sent on the simulated network, delivering all of them.
#[derive(Clone, Default)]
struct Counter(Arc<AtomicU64>);

impl Filter for Counter {
    fn check(&self, _: u64, _: u64, _: &RaftMessage) -> Verdict {
        self.0.fetch_add(1, Ordering::Relaxed);
        Verdict::Deliver
    }
}

impl Counter {
    fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Waits until every running store's peer of region 1 sleeps.
async fn wait_asleep(cluster: &Cluster, stores: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let statuses = cluster.region_statuses(1).await;
        if statuses.len() == stores && statuses.iter().all(|s| s.hibernating) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "region 1 did not fall asleep: {:?}",
            statuses
                .iter()
                .map(|s| (s.peer.store_id, s.hibernating))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn an_idle_region_sleeps_silently_and_a_request_wakes_it() {
    tinykv_integration::init_test_logging();
    let cluster = Cluster::start(3, RaftStoreConfig::for_tests()).await;
    let client = cluster.client();
    client.must_put(b"k", b"v1").await;
    wait_asleep(&cluster, 3).await;
    let terms: Vec<u64> = cluster
        .region_statuses(1)
        .await
        .iter()
        .map(|s| s.term)
        .collect();

    // Asleep for three election timeouts: no message at all, nobody campaigns.
    let counter = Counter::default();
    cluster.network().add_filter(counter.clone());
    let election = RaftStoreConfig::for_tests().election_timeout();
    tokio::time::sleep(election * 3).await;
    assert_eq!(counter.count(), 0, "a sleeping region sent messages");
    let statuses = cluster.region_statuses(1).await;
    assert!(statuses.iter().all(|s| s.hibernating));
    assert_eq!(
        statuses.iter().map(|s| s.term).collect::<Vec<_>>(),
        terms,
        "a term changed while the region slept"
    );

    // A read on every store wakes the region and is answered at once, by the same leader.
    for store in cluster.store_ids() {
        let started = tokio::time::Instant::now();
        let value = cluster
            .read_on(store, b"k")
            .await
            .expect("a read of a sleeping region");
        assert_eq!(value.as_deref(), Some(&b"v1"[..]));
        assert!(
            started.elapsed() < election,
            "waking took {:?}",
            started.elapsed()
        );
    }
    client.must_put(b"k", b"v2").await;
    assert_eq!(
        cluster
            .region_statuses(1)
            .await
            .iter()
            .map(|s| s.term)
            .collect::<Vec<_>>(),
        terms,
        "waking the region cost an election"
    );
    // And it falls asleep again.
    wait_asleep(&cluster, 3).await;
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn a_sleeping_regions_dead_leader_is_replaced_when_a_request_comes() {
    tinykv_integration::init_test_logging();
    let mut cluster = Cluster::start(3, RaftStoreConfig::for_tests()).await;
    let client = cluster.client();
    client.must_put(b"k", b"v1").await;
    wait_asleep(&cluster, 3).await;
    let old = cluster.leader_of(1).await;
    cluster.stop_store(old.store_id).await;

    // The survivors sleep on; a write through one of them wakes it, it campaigns after an
    // election timeout and wakes the other with its vote request.
    client.must_put(b"k", b"v2").await;
    let new = cluster.leader_of(1).await;
    assert_ne!(new.store_id, old.store_id);
    assert_eq!(client.must_get(b"k").await.as_deref(), Some(&b"v2"[..]));

    // The old leader comes back as a follower and catches up.
    cluster.start_store(old.store_id).await;
    cluster
        .wait_engine_value(old.store_id, Cf::Default, b"k", Some(b"v2"))
        .await;
    wait_asleep(&cluster, 3).await;
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn a_sleeping_leader_cut_off_is_replaced_and_serves_nothing_stale() {
    tinykv_integration::init_test_logging();
    let cluster = Cluster::start(3, RaftStoreConfig::for_tests()).await;
    let client = cluster.client();
    client.must_put(b"k", b"v1").await;
    wait_asleep(&cluster, 3).await;
    let old = cluster.leader_of(1).await;
    let all = cluster.store_ids();
    cluster
        .network()
        .add_filter(PartitionFilter::isolate(old.store_id, all.clone()));

    // The majority elects a leader and takes a write.
    let majority = *all.iter().find(|&&s| s != old.store_id).unwrap();
    let mut written = Err(tinykv_actors::Error::Timeout);
    for _ in 0..50 {
        written = cluster.put_on(majority, b"k", b"v2").await;
        if written.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    written.expect("a write on the majority side");
    // The cut-off old leader, woken by a read, must not answer it from its stale state.
    let stale = cluster.read_on(old.store_id, b"k").await;
    assert!(
        stale
            .as_ref()
            .map_or(true, |v| v.as_deref() == Some(&b"v2"[..])),
        "the cut-off leader served a stale read: {stale:?}"
    );
    cluster.network().clear_filters();
    cluster
        .wait_engine_value(old.store_id, Cf::Default, b"k", Some(b"v2"))
        .await;
    wait_asleep(&cluster, 3).await;
    cluster.shutdown().await;
}
