//! Exactly-once writes: a write's request id applies at most once, through retries,
//! restarts, splits, snapshots and leader failovers, and a node retries a write across a
//! failover until it succeeds.

use std::time::{Duration, Instant};

use tinykv::kv_service::{KvOp, KvOutcome};
use tinykv_actors::{Cf, RaftStoreConfig};
use tinykv_integration::cluster::Cluster;
use tinykv_integration::network::PartitionFilter;
use tinykv_proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, RaftCmdRequest, RaftRequestHeader, SplitRequest, WriteSession,
};

fn put(key: &[u8], value: &[u8], session: &WriteSession) -> KvOp {
    KvOp::Put {
        cf: Cf::Default,
        key: key.to_vec(),
        value: value.to_vec(),
        session: session.clone(),
    }
}

/// Executes `op` on store `store_id`'s service (with its own retries).
async fn execute_on(cluster: &Cluster, store_id: u64, op: KvOp) -> tinykv::Result<KvOutcome> {
    cluster.service(store_id).execute(op).await
}

const APPLIED: KvOutcome = KvOutcome::Written { replayed: false };
const REPLAYED: KvOutcome = KvOutcome::Written { replayed: true };

/// The property sessions exist for: a retry that arrives after someone else's later write
/// must not undo it.
#[actix_rt::test]
async fn a_retried_write_changes_nothing_after_a_later_write() {
    tinykv_integration::init_test_logging();
    let cluster = Cluster::start(3, RaftStoreConfig::for_tests()).await;
    let client = cluster.client();
    client.must_put(b"k", b"v0").await;
    let first = client.new_session();
    assert_eq!(
        client.execute(put(b"k", b"v1", &first)).await.unwrap(),
        APPLIED
    );
    let later = client.new_session();
    assert_eq!(
        client.execute(put(b"k", b"v2", &later)).await.unwrap(),
        APPLIED
    );

    // Through every store: the first write is recognised, not applied again.
    for store in cluster.store_ids() {
        let outcome = execute_on(&cluster, store, put(b"k", b"v1", &first)).await;
        assert_eq!(outcome.unwrap(), REPLAYED, "store {store}");
    }
    assert_eq!(client.must_get(b"k").await, Some(b"v2".to_vec()));

    // The same id for a different write to the key is refused and changes nothing.
    let err = client.execute(put(b"k", b"v3", &first)).await.unwrap_err();
    assert_eq!(
        (err.code(), err.status().as_u16()),
        ("idempotency_key_reused", 422)
    );
    let delete = KvOp::Delete {
        cf: Cf::Default,
        key: b"k".to_vec(),
        session: first.clone(),
    };
    assert_eq!(
        client.execute(delete).await.unwrap_err().code(),
        "idempotency_key_reused"
    );
    // Another column family is a different write too.
    let lock = KvOp::Put {
        cf: Cf::Lock,
        key: b"k".to_vec(),
        value: b"v1".to_vec(),
        session: first.clone(),
    };
    assert_eq!(
        client.execute(lock).await.unwrap_err().code(),
        "idempotency_key_reused"
    );
    assert_eq!(client.must_get(b"k").await, Some(b"v2".to_vec()));
    assert_eq!(client.must_get_cf(Cf::Lock, b"k").await, None);

    // An id is scoped to the key it wrote: on another key it is a new write.
    assert_eq!(
        client.execute(put(b"j", b"v1", &first)).await.unwrap(),
        APPLIED
    );
    cluster.shutdown().await;
}

/// A request id is remembered for its TTL only: a copy issued after the record expired
/// applies again.
#[actix_rt::test]
async fn a_record_expires_with_its_ttl() {
    let cluster = Cluster::start(1, RaftStoreConfig::for_tests()).await;
    let client = cluster.client();
    let mut short = client.new_session();
    short.ttl_ms = 1;
    assert_eq!(
        client.execute(put(b"k", b"v", &short)).await.unwrap(),
        APPLIED
    );
    assert_eq!(
        client.execute(put(b"k", b"v", &short)).await.unwrap(),
        REPLAYED
    );
    // Any write issued later than the expiry drops the record, and the copy after it
    // is a new write.
    let mut expired = short.clone();
    expired.issued_ms += 10;
    assert_eq!(
        client.execute(put(b"k", b"v", &expired)).await.unwrap(),
        APPLIED
    );
    cluster.shutdown().await;
}

/// Records are state-machine state: they survive restarts, follow their keys into the
/// region split off, and reach a replica that caught up by snapshot.
#[actix_rt::test]
async fn records_survive_restart_split_and_snapshot() {
    tinykv_integration::init_test_logging();
    let cfg = RaftStoreConfig {
        raft_log_gc_count_limit: 10,
        ..RaftStoreConfig::for_tests()
    };
    let mut cluster = Cluster::start(3, cfg).await;
    let client = cluster.client();
    let left = client.new_session();
    let right = client.new_session();
    assert_eq!(
        client.execute(put(b"a1", b"x", &left)).await.unwrap(),
        APPLIED
    );
    assert_eq!(
        client.execute(put(b"z1", b"y", &right)).await.unwrap(),
        APPLIED
    );

    cluster.restart_all().await;
    assert_eq!(
        client.execute(put(b"a1", b"x", &left)).await.unwrap(),
        REPLAYED
    );

    // Split at "m": z1's record now belongs to the new region.
    split(&cluster, b"m").await;
    let (a_region, z_region) = (
        cluster.region_for_key(b"a1").await,
        cluster.region_for_key(b"z1").await,
    );
    assert_ne!(a_region.id, z_region.id);
    assert_eq!(
        client.execute(put(b"z1", b"y", &right)).await.unwrap(),
        REPLAYED
    );
    assert_eq!(
        client.execute(put(b"a1", b"x", &left)).await.unwrap(),
        REPLAYED
    );

    // Store 3 misses a write and a log compaction: it catches up by snapshot.
    cluster
        .network()
        .add_filter(PartitionFilter::isolate(3, cluster.store_ids()));
    let missed = client.new_session();
    assert_eq!(
        client.execute(put(b"z2", b"w", &missed)).await.unwrap(),
        APPLIED
    );
    for i in 0..15 {
        client
            .must_put(format!("z{i:03}").as_bytes(), b"filler")
            .await;
    }
    cluster.wait_log_bounded(z_region.id, 10).await;
    cluster.network().clear_filters();
    cluster
        .wait_engine_value(3, Cf::Default, b"z2", Some(b"w"))
        .await;
    // With store 3 leading, the write it only knows from the snapshot is recognised.
    let peer3 = z_region
        .peers
        .iter()
        .find(|p| p.store_id == 3)
        .copied()
        .unwrap();
    cluster.must_transfer_leader(z_region.id, peer3).await;
    assert_eq!(
        execute_on(&cluster, 3, put(b"z2", b"w", &missed))
            .await
            .unwrap(),
        REPLAYED
    );
    assert_eq!(
        execute_on(&cluster, 3, put(b"z1", b"y", &right))
            .await
            .unwrap(),
        REPLAYED
    );
    cluster.shutdown().await;
}

/// With the leader cut off, writes sent to any node (the old leader's included) succeed
/// within the request deadline, each exactly once.
#[actix_rt::test]
async fn writes_succeed_across_a_leader_failover() {
    tinykv_integration::init_test_logging();
    let cluster = Cluster::start(3, RaftStoreConfig::for_tests()).await;
    let client = cluster.client();
    client.must_put(b"k", b"before").await;
    let leader = cluster.leader_of(1).await;
    cluster.network().add_filter(PartitionFilter::isolate(
        leader.store_id,
        cluster.store_ids(),
    ));
    let started = Instant::now();
    let mut sessions = Vec::new();
    for store in cluster.store_ids() {
        let key = format!("during-{store}");
        let session = client.new_session();
        let outcome = execute_on(&cluster, store, put(key.as_bytes(), b"v", &session)).await;
        assert!(
            matches!(outcome, Ok(KvOutcome::Written { .. })),
            "a write through store {store} failed: {outcome:?}"
        );
        sessions.push((key, session));
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    cluster.network().clear_filters();
    for (key, session) in &sessions {
        // Whichever attempt applied it, a retry now is recognised.
        let again = client.execute(put(key.as_bytes(), b"v", session)).await;
        assert_eq!(again.unwrap(), REPLAYED, "{key}");
        assert_eq!(client.must_get(key.as_bytes()).await, Some(b"v".to_vec()));
    }
    cluster.shutdown().await;
}

/// Splits the region holding `key` at `key` through its leader.
async fn split(cluster: &Cluster, key: &[u8]) {
    let region = cluster.region_for_key(key).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Done once any store shows a region starting at the key (the split's answer
        // may come before the routes change, and a second split at the key is refused).
        if cluster.region_for_key(key).await.start_key.as_slice() == key {
            return;
        }
        let (leader, region) = cluster.leader_region(region.id).await.unwrap();
        let request = RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: region.id,
                peer: Some(leader),
                region_epoch: region.region_epoch,
                ..Default::default()
            }),
            admin_request: Some(AdminRequest {
                cmd_type: AdminCmdType::Split as i32,
                split: Some(SplitRequest {
                    split_key: key.to_vec(),
                    new_region_id: cluster.alloc_id(),
                    new_peer_ids: region.peers.iter().map(|_| cluster.alloc_id()).collect(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let _ = cluster.command_on(leader.store_id, request).await;
        assert!(Instant::now() < deadline, "the split did not happen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
