//! TinyKV's project 3B scenarios: membership changes and splits (leader transfer is in
//! transfer_leader.rs). Where TinyKV re-adds a removed peer under its old id, these use a
//! fresh id: a peer id is never reused, so a re-added replica can never inherit a vote it
//! cast in an earlier life.

use std::time::Duration;

use tinykv_actors::{Cf, RaftStoreConfig};
use tinykv_integration::cluster::{change_peer, Cluster};
use tinykv_integration::generic::GenericTest;
use tinykv_integration::network::PartitionFilter;
use tinykv_proto::metapb::Peer;

fn peer(id: u64, store_id: u64) -> Peer {
    Peer { id, store_id }
}

/// TinyKV's TestBasicConfChange3B.
#[actix_rt::test]
async fn basic_conf_change() {
    tinykv_integration::init_test_logging();
    let cluster = Cluster::start(5, RaftStoreConfig::for_tests()).await;
    let client = cluster.client();
    cluster.must_transfer_leader(1, peer(1, 1)).await;
    for id in 2..=5 {
        cluster.must_remove_peer(1, peer(id, id)).await;
    }
    client.must_put(b"k1", b"v1").await;
    cluster
        .wait_engine_value(1, Cf::Default, b"k1", Some(b"v1"))
        .await;
    assert_eq!(cluster.engine_get(2, Cf::Default, b"k1"), None);

    let p2 = peer(cluster.alloc_id(), 2);
    cluster.must_add_peer(1, p2).await;
    client.must_put(b"k2", b"v2").await;
    cluster
        .wait_engine_value(2, Cf::Default, b"k1", Some(b"v1"))
        .await;
    cluster
        .wait_engine_value(2, Cf::Default, b"k2", Some(b"v2"))
        .await;
    let (_, region) = cluster.leader_region(1).await.unwrap();
    assert!(region.region_epoch.unwrap().conf_ver > 1);
    assert_eq!(
        cluster.engine_get(5, Cf::Default, b"k1"),
        None,
        "store 5 holds nothing"
    );

    let p3 = peer(cluster.alloc_id(), 3);
    cluster.must_add_peer(1, p3).await;
    cluster.must_remove_peer(1, p2).await;
    client.must_put(b"k3", b"v3").await;
    for key in [&b"k1"[..], b"k2", b"k3"] {
        cluster
            .wait_engine_value(3, Cf::Default, key, Some(key_value(key).as_slice()))
            .await;
    }
    // A removed peer deletes its data.
    cluster.wait_engine_value(2, Cf::Default, b"k1", None).await;
    cluster.wait_engine_value(2, Cf::Default, b"k2", None).await;

    let p2 = peer(cluster.alloc_id(), 2);
    cluster.must_add_peer(1, p2).await;
    for key in [&b"k1"[..], b"k2", b"k3"] {
        cluster
            .wait_engine_value(2, Cf::Default, key, Some(key_value(key).as_slice()))
            .await;
    }
    cluster.must_remove_peer(1, p2).await;
    let p2 = peer(cluster.alloc_id(), 2);
    cluster.must_add_peer(1, p2).await;
    cluster.must_remove_peer(1, p3).await;
    client.must_put(b"k4", b"v4").await;
    cluster
        .wait_engine_value(2, Cf::Default, b"k1", Some(b"v1"))
        .await;
    cluster
        .wait_engine_value(2, Cf::Default, b"k4", Some(b"v4"))
        .await;
    cluster.wait_engine_value(3, Cf::Default, b"k1", None).await;
    cluster.wait_engine_value(3, Cf::Default, b"k4", None).await;
    cluster.shutdown().await;
}

fn key_value(key: &[u8]) -> Vec<u8> {
    let mut v = key.to_vec();
    v[0] = b'v';
    v
}

/// TinyKV's TestConfChangeRemoveLeader3B: removing the current leader works.
#[actix_rt::test]
async fn conf_change_remove_leader() {
    tinykv_integration::init_test_logging();
    let cluster = Cluster::start(5, RaftStoreConfig::for_tests()).await;
    let client = cluster.client();
    cluster.must_transfer_leader(1, peer(1, 1)).await;
    cluster.must_remove_peer(1, peer(1, 1)).await;
    client.must_put(b"k0", b"v0").await;
    cluster
        .wait_engine_value(2, Cf::Default, b"k0", Some(b"v0"))
        .await;
    assert_eq!(cluster.engine_get(1, Cf::Default, b"k0"), None);

    let p1 = peer(cluster.alloc_id(), 1);
    cluster.must_add_peer(1, p1).await;
    cluster.must_transfer_leader(1, p1).await;
    client.must_put(b"k1", b"v1").await;
    cluster
        .wait_engine_value(1, Cf::Default, b"k0", Some(b"v0"))
        .await;
    cluster
        .wait_engine_value(1, Cf::Default, b"k1", Some(b"v1"))
        .await;

    for id in 2..=4 {
        cluster.must_remove_peer(1, peer(id, id)).await;
    }
    // p1 leads; removing it leaves only (5, 5).
    cluster.must_remove_peer(1, p1).await;
    client.must_put(b"k2", b"v2").await;
    cluster
        .wait_engine_value(5, Cf::Default, b"k2", Some(b"v2"))
        .await;
    cluster.wait_engine_value(1, Cf::Default, b"k2", None).await;

    let p1 = peer(cluster.alloc_id(), 1);
    cluster.must_add_peer(1, p1).await;
    client.must_put(b"k3", b"v3").await;
    cluster
        .wait_engine_value(1, Cf::Default, b"k3", Some(b"v3"))
        .await;
    assert_eq!(cluster.engine_get(3, Cf::Default, b"k3"), None);
    cluster.shutdown().await;
}

/// The last peer of a region cannot be removed: a region without peers would be lost.
/// The leader refuses the proposal and the region keeps serving.
#[actix_rt::test]
async fn the_last_peer_cannot_be_removed() {
    use tinykv_proto::eraftpb::ConfChangeType;
    use tinykv_proto::raft_cmdpb::{RaftCmdRequest, RaftRequestHeader};
    tinykv_integration::init_test_logging();
    let cluster = Cluster::start(1, RaftStoreConfig::for_tests()).await;
    let client = cluster.client();
    client.must_put(b"k1", b"v1").await;
    let (leader, region) = cluster.leader_region(1).await.expect("a leader");
    let request = RaftCmdRequest {
        header: Some(RaftRequestHeader {
            region_id: 1,
            region_epoch: region.region_epoch,
            ..Default::default()
        }),
        admin_request: Some(change_peer(ConfChangeType::RemoveNode, leader)),
        ..Default::default()
    };
    let refused = cluster.command_on(1, request).await;
    assert!(
        matches!(refused, Some(tinykv_actors::Error::InvalidRequest(_))),
        "{refused:?}"
    );
    client.must_put(b"k2", b"v2").await;
    let (_, region) = cluster.leader_region(1).await.expect("a leader");
    assert_eq!(region.peers, vec![leader]);
    cluster.shutdown().await;
}

/// A store whose peer was removed while the store was down comes back with that peer on
/// disk, alive and asleep; it must still learn that it was removed and destroy itself, and
/// must do so again if it crashed before its destruction reached the disk. Here store 3
/// learns, destroys its peer, and then has its disk put back as it was before (the crash
/// lost both writes of the destruction): after a restart it destroys the peer again.
#[actix_rt::test]
async fn a_removed_peer_whose_destruction_was_lost_in_a_crash_is_destroyed_again() {
    use tinykv_actors::engine::Mutation;
    use tinykv_actors::keys;
    use tinykv_proto::raft_serverpb::{PeerState, RegionLocalState};

    tinykv_integration::init_test_logging();
    let mut cluster = Cluster::start(3, RaftStoreConfig::for_tests()).await;
    let client = cluster.client();
    cluster.must_transfer_leader(1, peer(1, 1)).await;
    client.must_put(b"k1", b"v1").await;
    cluster
        .wait_engine_value(3, Cf::Default, b"k1", Some(b"v1"))
        .await;

    // Store 3's peer as its disk holds it while it is still a member.
    cluster.stop_store(3).await;
    let member = cluster.with_stopped_engine(3, |engine| {
        let mut saved = Vec::new();
        for (cf, key) in [
            (Cf::Meta, keys::region_state_key(1)),
            (Cf::Meta, keys::apply_state_key(1)),
            (Cf::Raft, keys::raft_state_key(1)),
            (Cf::Default, b"k1".to_vec()),
        ] {
            let value = engine.get(cf, &key).expect("read").expect("present");
            saved.push(Mutation::Put { cf, key, value });
        }
        let (start, end) = (keys::raft_log_key(1, 0), keys::raft_log_key(1, u64::MAX));
        engine
            .scan(Cf::Raft, &start, &end, |key, value| {
                saved.push(Mutation::Put {
                    cf: Cf::Raft,
                    key: key.to_vec(),
                    value: value.to_vec(),
                });
                true
            })
            .expect("scan");
        saved
    });
    cluster.must_remove_peer(1, peer(3, 3)).await;
    client.must_put(b"k2", b"v2").await;

    let tombstoned = |cluster: &Cluster| {
        let state: Option<RegionLocalState> = cluster
            .engine(3)
            .and_then(|e| e.get_msg(Cf::Meta, &keys::region_state_key(1)).ok())
            .flatten();
        state.is_some_and(|s| s.state() == PeerState::Tombstone)
    };
    for (round, then_crash) in [
        ("after the removal", true),
        ("after the lost destruction", false),
    ] {
        cluster.start_store(3).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !(tombstoned(&cluster) && cluster.engine_get(3, Cf::Default, b"k1").is_none()) {
            assert!(
                std::time::Instant::now() < deadline,
                "store 3 kept its removed peer {round}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let running = cluster.region_statuses(1).await;
        assert!(
            running.iter().all(|s| s.peer.store_id != 3),
            "store 3 still runs a peer of region 1 {round}"
        );
        if then_crash {
            // The crash: neither write of the destruction reached the disk.
            cluster.stop_store(3).await;
            cluster.with_stopped_engine(3, |engine| engine.write(&member, true).expect("restore"));
        }
    }

    // The region went on without store 3 throughout.
    client.must_put(b"k3", b"v3").await;
    assert_eq!(client.must_get(b"k2").await.as_deref(), Some(&b"v2"[..]));
    let (_, region) = cluster.leader_region(1).await.expect("a leader");
    assert!(region.peers.iter().all(|p| p.store_id != 3));
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn conf_change_recover() {
    GenericTest::new(1).crash().conf_change().run().await;
}

#[actix_rt::test]
async fn conf_change_snapshot_unreliable_recover_concurrent_partition() {
    GenericTest::new(5)
        .unreliable()
        .crash()
        .partitions()
        .max_raft_log(100)
        .conf_change()
        .run()
        .await;
}

/// TinyKV's TestOneSplit3B: a region splits while a store is cut off; the halves cover
/// the original range, a request with the old range is refused, and the cut-off store
/// catches up.
#[actix_rt::test]
async fn one_split() {
    tinykv_integration::init_test_logging();
    let cfg = RaftStoreConfig {
        region_max_size: 800,
        region_split_size: 500,
        ..RaftStoreConfig::for_tests()
    };
    let cluster = Cluster::start(5, cfg).await;
    let client = cluster.client();
    client.must_put(b"k1", b"v1").await;
    client.must_put(b"k2", b"v2").await;
    let original = cluster.region_for_key(b"k1").await;
    assert_eq!(original.id, cluster.region_for_key(b"k2").await.id);

    cluster
        .network()
        .add_filter(PartitionFilter::isolate(5, cluster.store_ids()));
    // 8 bytes a key and value: 110 of them take the region to 888 bytes. The leader
    // measures it once it grew by an eighth of the split size (62 bytes) since the last
    // measurement, so the data must end that far past region_max_size (800): with 100
    // keys (808 bytes) a measurement at, say, 760 bytes could be the last, and no split
    // came (about 2 runs in 70).
    for i in 100..210 {
        let (k, v) = (format!("k{i}"), format!("v{i}"));
        client.must_put(k.as_bytes(), v.as_bytes()).await;
    }
    // The size check runs on a tick: wait for the split it triggers.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (left, right) = loop {
        let left = cluster.region_for_key(b"k1").await;
        let right = cluster.region_for_key(b"k2").await;
        if left.id != right.id {
            break (left, right);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the region did not split"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    cluster.network().clear_filters();
    assert_eq!(left.start_key, original.start_key);
    assert!(left.end_key.as_slice() <= right.start_key.as_slice());
    assert!(
        right.end_key.is_empty()
            || right.end_key <= original.end_key
            || original.end_key.is_empty()
    );
    // A get of k2 addressed to the left region with its epoch is refused.
    let (leader, region) = cluster.leader_region(left.id).await.unwrap();
    let refused = cluster
        .command_on(
            leader.store_id,
            get_with_epoch(left.id, region.region_epoch, b"k2"),
        )
        .await;
    assert!(
        matches!(refused, Some(tinykv_actors::Error::KeyNotInRegion { .. })),
        "{refused:?}"
    );
    cluster
        .wait_engine_value(5, Cf::Default, b"k100", Some(b"v100"))
        .await;
    cluster.shutdown().await;
}

fn get_with_epoch(
    region_id: u64,
    epoch: Option<tinykv_proto::metapb::RegionEpoch>,
    key: &[u8],
) -> tinykv_proto::raft_cmdpb::RaftCmdRequest {
    use tinykv_proto::raft_cmdpb::*;
    RaftCmdRequest {
        header: Some(RaftRequestHeader {
            region_id,
            region_epoch: epoch,
            ..Default::default()
        }),
        requests: vec![Request {
            cmd_type: CmdType::Get as i32,
            get: Some(GetRequest {
                cf: "default".into(),
                key: key.to_vec(),
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[actix_rt::test]
async fn split_recover() {
    GenericTest::new(1).crash().split().run().await;
}

#[actix_rt::test]
async fn split_unreliable_recover() {
    GenericTest::new(5).unreliable().crash().split().run().await;
}

/// Everything at once: splits, membership changes, log compaction and snapshots, message
/// loss, partitions and full-cluster crashes.
#[actix_rt::test]
async fn split_conf_change_snapshot_unreliable_recover_concurrent_partition() {
    GenericTest::new(5)
        .unreliable()
        .crash()
        .partitions()
        .max_raft_log(100)
        .conf_change()
        .split()
        .run()
        .await;
}
