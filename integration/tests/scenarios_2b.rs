//! TinyKV's project 2B scenarios against the in-process cluster (5 stores, region 1).

use std::time::Duration;

use tinykv_actors::{Cf, RaftStoreConfig};
use tinykv_integration::cluster::Cluster;
use tinykv_integration::generic::GenericTest;
use tinykv_integration::network::PartitionFilter;

#[actix_rt::test]
async fn basic() {
    GenericTest::new(1).run().await;
}

#[actix_rt::test]
async fn concurrent() {
    GenericTest::new(5).run().await;
}

#[actix_rt::test]
async fn unreliable() {
    GenericTest::new(5).unreliable().run().await;
}

#[actix_rt::test]
async fn many_partitions_one_client() {
    GenericTest::new(1).partitions().run().await;
}

#[actix_rt::test]
async fn many_partitions_many_clients_with_lease_reads() {
    let mut test = GenericTest::new(5).partitions();
    test.config.lease_reads = true;
    test.run().await;
}

/// With lease reads, a leader cut off from the others stops serving reads before the
/// others can elect a new leader and write: its lease is shorter than their wait.
#[actix_rt::test]
async fn a_lease_never_outlives_the_leadership() {
    tinykv_integration::init_test_logging();
    let mut config = RaftStoreConfig::for_tests();
    config.lease_reads = true;
    let cluster = Cluster::start(3, config).await;
    let client = cluster.client();
    client.must_put(b"k", b"v1").await;
    let leader = cluster.leader_of(1).await.store_id;
    let lease_reads = || {
        tinykv_actors::metrics::PROPOSALS
            .with_label_values(&["lease_read"])
            .get()
    };
    let before = lease_reads();
    for _ in 0..20 {
        let read = cluster.read_on(leader, b"k").await;
        assert_eq!(read.ok().flatten().as_deref(), Some(&b"v1"[..]));
    }
    assert!(
        lease_reads() > before,
        "reads after the first round are served from the lease"
    );
    cluster
        .network()
        .add_filter(PartitionFilter::isolate(leader, cluster.store_ids()));
    // Acknowledged only once the majority elected a new leader.
    client.must_put(b"k", b"v2").await;
    let stale = cluster.read_on(leader, b"k").await;
    assert!(
        !matches!(&stale, Ok(Some(v)) if v.as_slice() == b"v1"),
        "the old leader served a stale read from an expired lease"
    );
    cluster.network().clear_filters();
    assert_eq!(client.must_get(b"k").await.as_deref(), Some(&b"v2"[..]));
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn many_partitions_many_clients() {
    GenericTest::new(5).partitions().run().await;
}

#[actix_rt::test]
async fn persist_one_client() {
    GenericTest::new(1).crash().run().await;
}

#[actix_rt::test]
async fn persist_concurrent() {
    GenericTest::new(5).crash().run().await;
}

#[actix_rt::test]
async fn persist_partition_unreliable() {
    GenericTest::new(5)
        .crash()
        .partitions()
        .unreliable()
        .run()
        .await;
}

/// TinyKV's TestOnePartition2B: a majority keeps serving while a minority (first without,
/// then with the old leader) is cut off, and the minority catches up once healed.
#[actix_rt::test]
async fn one_partition() {
    tinykv_integration::init_test_logging();
    let cluster = Cluster::start(5, RaftStoreConfig::for_tests()).await;
    let client = cluster.client();
    let all: Vec<u64> = cluster.store_ids();
    let leader = cluster.leader_of(1).await.store_id;
    let others: Vec<u64> = all.iter().copied().filter(|s| *s != leader).collect();
    // s1 = leader + 2 followers, s2 = the other 2.
    let s1 = vec![leader, others[0], others[1]];
    let s2 = vec![others[2], others[3]];
    cluster
        .network()
        .add_filter(PartitionFilter::new(s1.clone(), s2.clone()));
    client.must_put(b"k1", b"v1").await;
    assert_eq!(client.must_get(b"k1").await.as_deref(), Some(&b"v1"[..]));
    // Give the minority a chance to (wrongly) receive it before checking it did not.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for s in &s2 {
        assert_eq!(
            cluster.engine_get(*s, Cf::Default, b"k1"),
            None,
            "store {s} is cut off"
        );
    }

    // Now the old leader sits in a 2-store minority: the 3-store side elects a new leader
    // and serves reads and writes.
    cluster.network().clear_filters();
    let minority = vec![leader, others[0]];
    let majority = vec![others[1], others[2], others[3]];
    cluster
        .network()
        .add_filter(PartitionFilter::new(minority.clone(), majority.clone()));
    assert_eq!(client.must_get(b"k1").await.as_deref(), Some(&b"v1"[..]));
    client.must_put(b"k1", b"changed").await;
    cluster
        .wait_engine_value(majority[0], Cf::Default, b"k1", Some(b"changed"))
        .await;
    for s in &minority {
        assert_eq!(
            cluster.engine_get(*s, Cf::Default, b"k1").as_deref(),
            Some(&b"v1"[..]),
            "store {s} is in the minority"
        );
    }

    // Healed: everyone converges, the old leader included.
    cluster.network().clear_filters();
    client.must_put(b"k2", b"v2").await;
    cluster
        .wait_engine_value(leader, Cf::Default, b"k2", Some(b"v2"))
        .await;
    cluster
        .wait_engine_value(leader, Cf::Default, b"k1", Some(b"changed"))
        .await;
    cluster.shutdown().await;
}

/// A follower serves reads itself, linearizably: it asks the leader for a read index
/// through raft and reads once it has applied that far. Cut off from the leader, it
/// refuses instead of answering from its stale state.
#[actix_rt::test]
async fn followers_serve_linearizable_reads() {
    let (cluster, follower) = three_stores_with_k_v1().await;
    let client = cluster.client();
    // The follower may not know the leader yet right after the election.
    must_read_on(&cluster, follower, b"k", b"v1").await;

    cluster
        .network()
        .add_filter(PartitionFilter::isolate(follower, cluster.store_ids()));
    client.must_put(b"k", b"v2").await;
    let stale = cluster.read_on(follower, b"k").await;
    assert!(stale.is_err(), "a cut-off follower answered {stale:?}");

    cluster.network().clear_filters();
    must_read_on(&cluster, follower, b"k", b"v2").await;
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn followers_forward_writes_to_the_leader_through_raft() {
    let (cluster, follower) = three_stores_with_k_v1().await;
    let client = cluster.client();
    // The follower may not know the leader yet right after the election.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while let Err(e) = cluster.put_on(follower, b"k", b"v2").await {
        assert!(
            std::time::Instant::now() < deadline,
            "store {follower} never took the write: {e}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Acknowledged by the follower once applied there; the leader has it too.
    assert_eq!(
        cluster
            .read_on(follower, b"k")
            .await
            .ok()
            .flatten()
            .as_deref(),
        Some(&b"v2"[..])
    );
    assert_eq!(client.must_get(b"k").await.as_deref(), Some(&b"v2"[..]));

    // A follower cut off from its leader stops forwarding once an election timeout
    // passes without a word from it, and refuses instead of writing.
    cluster
        .network()
        .add_filter(PartitionFilter::isolate(follower, cluster.store_ids()));
    let refused = async {
        loop {
            match cluster.put_on(follower, b"k", b"v3").await {
                Err(tinykv_actors::Error::NotLeader { .. }) => return,
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), refused)
        .await
        .expect("the cut-off follower refuses writes");
    cluster.network().clear_filters();
    assert_eq!(client.must_get(b"k").await.as_deref(), Some(&b"v2"[..]));
    cluster.shutdown().await;
}

/// A three-store cluster holding `k` = `v1`, and a store whose peer follows.
async fn three_stores_with_k_v1() -> (Cluster, u64) {
    tinykv_integration::init_test_logging();
    let cluster = Cluster::start(3, RaftStoreConfig::for_tests()).await;
    cluster.client().must_put(b"k", b"v1").await;
    let (leader, region) = cluster.leader_region(1).await.expect("a leader");
    let follower = region
        .peers
        .iter()
        .find(|p| p.store_id != leader.store_id)
        .expect("a follower")
        .store_id;
    (cluster, follower)
}

/// Reads `key` on `store`'s own peer until it serves the read, then checks the value;
/// fails after 10 s of refusals.
async fn must_read_on(cluster: &Cluster, store: u64, key: &[u8], expected: &[u8]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match cluster.read_on(store, key).await {
            Ok(value) => {
                assert_eq!(value.as_deref(), Some(expected), "read on store {store}");
                return;
            }
            Err(e) => assert!(
                std::time::Instant::now() < deadline,
                "store {store} never served the read: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
