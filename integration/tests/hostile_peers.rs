//! Raft traffic no store sent: forged or broken messages injected into the simulated
//! network, past every filter, as someone who can reach the raft ports could send them.
//! Whatever they claim, the stores must keep every acknowledged write, keep serving, and
//! apply nothing that breaks the state machine's rules; a peer destroys itself only when
//! another store confirms that it was removed.

use std::time::{Duration, Instant};

use prost::Message as _;
use tinykv_actors::{Cf, RaftStoreConfig};
use tinykv_integration::cluster::Cluster;
use tinykv_integration::network::PartitionFilter;
use tinykv_proto::eraftpb::{self, Entry, MessageType};
use tinykv_proto::metapb::{Peer, RegionEpoch};
use tinykv_proto::raft_cmdpb::{CmdType, PutRequest, RaftCmdRequest, RaftRequestHeader, Request};
use tinykv_proto::raft_serverpb::RaftMessage;

/// A raft message of region 1 from `from` to `to`, claiming membership version `conf_ver`.
fn envelope(from: Peer, to: Peer, conf_ver: u64) -> RaftMessage {
    RaftMessage {
        region_id: 1,
        from_peer: Some(from),
        to_peer: Some(to),
        region_epoch: Some(RegionEpoch {
            conf_ver,
            version: 1,
        }),
        ..Default::default()
    }
}

/// A follower's forwarded write, as raft carries it: a `MsgPropose` with one entry.
fn forwarded_put(
    from: Peer,
    to: Peer,
    cf: &str,
    key: &[u8],
    value: &[u8],
    metadata: bool,
) -> RaftMessage {
    let command = RaftCmdRequest {
        header: Some(RaftRequestHeader {
            region_id: 1,
            uuid: rand::random::<[u8; 16]>().to_vec(),
            region_epoch: Some(RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            metadata,
            ..Default::default()
        }),
        requests: vec![Request {
            cmd_type: CmdType::Put as i32,
            put: Some(PutRequest {
                cf: cf.into(),
                key: key.to_vec(),
                value: value.to_vec(),
            }),
            ..Default::default()
        }],
        admin_request: None,
    };
    let message = eraftpb::Message {
        msg_type: MessageType::MsgPropose as i32,
        from: from.id,
        to: to.id,
        entries: vec![Entry {
            data: command.encode_to_vec(),
            ..Default::default()
        }],
        ..Default::default()
    };
    RaftMessage {
        message: Some(message),
        ..envelope(from, to, 1)
    }
}

/// Every running store still holds its peer of region 1, for all of `window`.
async fn every_peer_survives(cluster: &Cluster, stores: usize, window: Duration) {
    let deadline = Instant::now() + window;
    while Instant::now() < deadline {
        let held = cluster.region_statuses(1).await.len();
        assert_eq!(held, stores, "a store lost its peer of region 1");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes a follower forwards through raft are checked by the leader only for what it
/// must not take from another store (a term, an admin command, the metadata mark); the
/// keys are the apply path's to check. Committed writes an engine could not store, or in
/// a column family clients may not name, are refused on every replica while applying,
/// changing nothing: the region goes on applying the entries after them, and a restart,
/// which replays them, changes nothing either.
#[actix_rt::test]
async fn committed_commands_that_break_the_rules_change_nothing() {
    tinykv_integration::init_test_logging();
    let mut cluster = Cluster::start(3, RaftStoreConfig::for_tests()).await;
    let client = cluster.client();
    client.must_put(b"before", b"1").await;
    let leader = cluster.leader_of(1).await;
    let follower = Peer {
        id: if leader.id == 1 { 2 } else { 1 },
        store_id: if leader.store_id == 1 { 2 } else { 1 },
    };
    let long_key = vec![b'k'; 70_000];
    let poison = [
        forwarded_put(follower, leader, "default", b"", b"empty key", false),
        forwarded_put(follower, leader, "default", &long_key, b"long key", false),
        forwarded_put(follower, leader, "raft", b"k", b"not a client cf", false),
        forwarded_put(
            follower,
            leader,
            "default",
            b"\xffpd/cluster",
            b"not json",
            false,
        ),
        // The metadata mark: dropped by the leader before raft sees it.
        forwarded_put(
            follower,
            leader,
            "default",
            b"\xffpd/cluster",
            b"forged",
            true,
        ),
    ];
    for message in poison {
        cluster.network().inject(message);
    }
    cluster.network().inject(forwarded_put(
        follower, leader, "default", b"after", b"2", false,
    ));
    for store in 1..=3 {
        cluster
            .wait_engine_value(store, Cf::Default, b"after", Some(b"2"))
            .await;
        assert_eq!(
            cluster.engine_get(store, Cf::Default, b"\xffpd/cluster"),
            None
        );
        assert_eq!(cluster.engine_get(store, Cf::Default, &long_key), None);
        assert_eq!(cluster.engine_get(store, Cf::Raft, b"k"), None);
    }
    client.must_put(b"still", b"3").await;

    cluster.restart_all().await;
    for (key, value) in [
        (&b"before"[..], &b"1"[..]),
        (b"after", b"2"),
        (b"still", b"3"),
    ] {
        assert_eq!(client.must_get(key).await.as_deref(), Some(value));
    }
    client.must_put(b"restarted", b"4").await;
    cluster.shutdown().await;
}

/// One tombstone message per store, naming an invented sender and a far newer
/// membership, used to make every store destroy its peer (issue: three packets wiped the
/// data). Now each peer asks the other stores, none confirms, and nothing is destroyed.
/// The same for a message addressed to an invented newer peer on the victim's store.
#[actix_rt::test]
async fn forged_tombstones_destroy_nothing() {
    tinykv_integration::init_test_logging();
    let cluster = Cluster::start(3, RaftStoreConfig::for_tests()).await;
    let client = cluster.client();
    client.must_put(b"precious", b"data").await;
    for store in 1..=3u64 {
        let victim = Peer {
            id: store,
            store_id: store,
        };
        let forger = Peer {
            id: 999,
            store_id: store % 3 + 1,
        };
        cluster.network().inject(RaftMessage {
            is_tombstone: true,
            ..envelope(forger, victim, 1000)
        });
        let newer_peer_here = Peer {
            id: 777,
            store_id: store,
        };
        let vote = eraftpb::Message {
            msg_type: MessageType::MsgRequestVote as i32,
            from: forger.id,
            to: newer_peer_here.id,
            term: 100,
            ..Default::default()
        };
        cluster.network().inject(RaftMessage {
            message: Some(vote),
            ..envelope(forger, newer_peer_here, 1000)
        });
    }
    // A check waits 20 base ticks (1 s here) for a confirmation.
    every_peer_survives(&cluster, 3, Duration::from_secs(2)).await;
    for store in 1..=3 {
        assert_eq!(
            cluster
                .engine_get(store, Cf::Default, b"precious")
                .as_deref(),
            Some(&b"data"[..])
        );
    }
    client.must_put(b"more", b"data").await;
    cluster.shutdown().await;
}

/// The real thing still works: a peer removed while it was cut off learns of it from a
/// tombstone once it is back, the others confirm, and it deletes its data.
#[actix_rt::test]
async fn a_peer_removed_while_cut_off_is_destroyed_once_confirmed() {
    tinykv_integration::init_test_logging();
    let cluster = Cluster::start(3, RaftStoreConfig::for_tests()).await;
    let client = cluster.client();
    client.must_put(b"k", b"v").await;
    cluster
        .wait_engine_value(3, Cf::Default, b"k", Some(b"v"))
        .await;
    cluster
        .must_transfer_leader(1, Peer { id: 1, store_id: 1 })
        .await;
    cluster
        .network()
        .add_filter(PartitionFilter::isolate(3, 1..=3));
    cluster
        .must_remove_peer(1, Peer { id: 3, store_id: 3 })
        .await;
    client.must_put(b"k2", b"v2").await;
    cluster.network().clear_filters();
    cluster.wait_engine_value(3, Cf::Default, b"k", None).await;
    assert_eq!(cluster.region_statuses(1).await.len(), 2);
    cluster.shutdown().await;
}

/// Messages that would make raft-rs assert: a heartbeat committing past the follower's
/// log, entries that do not follow each other, a ReadIndex without its context, a
/// transfer request from outside, a snapshot for a configuration without its receiver.
/// Each is dropped before raft sees it; no store stops, and the region keeps working.
#[actix_rt::test]
async fn messages_raft_cannot_take_are_dropped_before_it_sees_them() {
    tinykv_integration::init_test_logging();
    let cluster = Cluster::start(3, RaftStoreConfig::for_tests()).await;
    let client = cluster.client();
    client.must_put(b"k", b"v").await;
    let leader = cluster.leader_of(1).await;
    let term = cluster
        .region_statuses(1)
        .await
        .iter()
        .map(|s| s.term)
        .max()
        .unwrap_or(1);
    for store in 1..=3u64 {
        let to = Peer {
            id: store,
            store_id: store,
        };
        let raft = |msg_type: MessageType| eraftpb::Message {
            msg_type: msg_type as i32,
            from: leader.id,
            to: to.id,
            term,
            ..Default::default()
        };
        let heartbeat = eraftpb::Message {
            commit: 1_000_000,
            ..raft(MessageType::MsgHeartbeat)
        };
        let gap = eraftpb::Message {
            index: 1,
            log_term: 1,
            entries: vec![Entry {
                index: 40,
                term,
                ..Default::default()
            }],
            ..raft(MessageType::MsgAppend)
        };
        let read_index = raft(MessageType::MsgReadIndexResp);
        let transfer = raft(MessageType::MsgTransferLeader);
        let snapshot = eraftpb::Message {
            snapshot: Some(eraftpb::Snapshot {
                data: vec![1, 2, 3],
                metadata: Some(eraftpb::SnapshotMetadata {
                    conf_state: Some(eraftpb::ConfState {
                        voters: vec![leader.id],
                        ..Default::default()
                    }),
                    index: 10_000,
                    term,
                }),
            }),
            ..raft(MessageType::MsgSnapshot)
        };
        for message in [heartbeat, gap, read_index, transfer, snapshot] {
            if leader == to {
                continue;
            }
            cluster.network().inject(RaftMessage {
                message: Some(message),
                ..envelope(leader, to, 1)
            });
        }
    }
    client.must_put(b"k2", b"v2").await;
    for store in 1..=3 {
        cluster
            .wait_engine_value(store, Cf::Default, b"k2", Some(b"v2"))
            .await;
    }
    assert_eq!(cluster.region_statuses(1).await.len(), 3);
    cluster.shutdown().await;
}
