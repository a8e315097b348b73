//! One-phase commits on the in-process cluster: a transaction whose keys lie in one
//! region commits in its prewrite, leaves no lock, answers the same commit timestamp when
//! asked again, and a reader with a newer timestamp never reads around one in flight.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tinykv::kv_service::{KvOp, KvOutcome};
use tinykv::txn::client::TimestampSource;
use tinykv::txn::commands::TxnWrite;
use tinykv::txn::keys::encode_key;
use tinykv_actors::RaftStoreConfig;
use tinykv_integration::cluster::Cluster;
use tinykv_integration::network::{Filter, Verdict};
use tinykv_integration::txn::coordinator;
use tinykv_proto::eraftpb::MessageType;
use tinykv_proto::kvrpcpb::{
    txn_request::Command, txn_response::Answer, Mutation, Op, PrewriteRequest, PrewriteResponse,
    TxnRequest,
};
use tinykv_proto::raft_serverpb::RaftMessage;

fn put(key: &[u8], value: &[u8]) -> TxnWrite {
    TxnWrite::Put {
        key: key.to_vec(),
        value: value.to_vec(),
    }
}

/// Runs `command` through store `store_id`'s service.
async fn run(cluster: &Cluster, store_id: u64, command: Command) -> Answer {
    let request = TxnRequest {
        command: Some(command),
    };
    let outcome = cluster
        .service(store_id)
        .execute(KvOp::Txn(request))
        .await
        .unwrap();
    let KvOutcome::Txn(response) = outcome else {
        panic!("{outcome:?}")
    };
    response.answer.expect("an answer")
}

/// A prewrite of `keys` = "v" at `start_ts` that asks to commit in one phase.
async fn prewrite_one_pc(cluster: &Cluster, keys: &[&[u8]], start_ts: u64) -> PrewriteResponse {
    let command = Command::Prewrite(PrewriteRequest {
        mutations: keys
            .iter()
            .map(|key| Mutation {
                op: Op::Put as i32,
                key: key.to_vec(),
                value: b"v".to_vec(),
            })
            .collect(),
        primary_lock: keys[0].to_vec(),
        start_version: start_ts,
        lock_ttl: 3_000,
        try_one_pc: true,
        ..Default::default()
    });
    match run(cluster, 1, command).await {
        Answer::Prewrite(prewrite) => prewrite,
        other => panic!("{other:?}"),
    }
}

/// How many locks the cluster holds.
async fn locks(cluster: &Cluster) -> usize {
    let client = coordinator(cluster, 1);
    client
        .scan_locks(b"", b"", u64::MAX, 100)
        .await
        .unwrap()
        .len()
}

#[actix_rt::test]
async fn a_transaction_in_one_region_commits_in_its_prewrite_and_answers_the_same_when_asked_again()
{
    tinykv_integration::init_test_logging();
    let cluster = Cluster::start(3, RaftStoreConfig::for_tests()).await;
    let oracle = cluster.oracle();
    let start_ts = oracle.timestamps(1).await.unwrap();
    let first = prewrite_one_pc(&cluster, &[b"a", b"b"], start_ts).await;
    assert!(first.errors.is_empty(), "{first:?}");
    let commit_ts = first.one_pc_commit_version;
    assert!(commit_ts > start_ts, "committed in one phase: {first:?}");
    assert_eq!(
        locks(&cluster).await,
        0,
        "a one-phase commit leaves no lock"
    );
    // The same prewrite again (its answer lost, say) finds its own commit.
    let again = prewrite_one_pc(&cluster, &[b"a", b"b"], start_ts).await;
    assert_eq!(again.one_pc_commit_version, commit_ts, "{again:?}");
    assert!(again.errors.is_empty());
    // Another transaction that started before the commit conflicts.
    let late = prewrite_one_pc(&cluster, &[b"b"], start_ts + 1).await;
    assert_eq!(late.one_pc_commit_version, 0);
    assert_eq!(late.errors.len(), 1, "{late:?}");
    let client = coordinator(&cluster, 2);
    let read = client.get(b"b", commit_ts).await.unwrap().expect("visible");
    assert_eq!(
        (read.value.as_slice(), read.commit_ts),
        (&b"v"[..], commit_ts)
    );
    assert_eq!(client.get(b"b", commit_ts - 1).await.unwrap(), None);

    // Keys in two regions: the prewrite locks, and the coordinator commits in two phases.
    let region = cluster.region_for_key(&encode_key(b"a")).await;
    cluster.must_split(region.id, &[&encode_key(b"m")]).await;
    let start_ts = oracle.timestamps(1).await.unwrap();
    let split = prewrite_one_pc(&cluster, &[b"c", b"x"], start_ts).await;
    assert_eq!(split.one_pc_commit_version, 0, "{split:?}");
    assert!(split.errors.is_empty());
    assert_eq!(
        locks(&cluster).await,
        1,
        "the primary's region locked its key"
    );
    client
        .rollback(start_ts, vec![b"c".to_vec()])
        .await
        .unwrap();
    let start_ts = oracle.timestamps(1).await.unwrap();
    let commit_ts = client
        .commit(start_ts, vec![put(b"c", b"1"), put(b"x", b"2")])
        .await
        .unwrap();
    let read = client
        .get(b"x", commit_ts)
        .await
        .unwrap()
        .expect("committed");
    assert_eq!(read.value, b"2");
    cluster.shutdown().await;
}

/// Drops the log entries (`MsgAppend`) a store sends, letting heartbeats through: its
/// leader keeps its lease but commits nothing new.
struct NoAppendsFrom(u64);

impl Filter for NoAppendsFrom {
    fn check(&self, from: u64, _: u64, msg: &RaftMessage) -> Verdict {
        let append = msg
            .message
            .as_ref()
            .is_some_and(|m| m.msg_type == MessageType::MsgAppend as i32);
        if from == self.0 && append {
            Verdict::Drop
        } else {
            Verdict::Deliver
        }
    }
}

#[actix_rt::test]
async fn a_reader_newer_than_a_one_phase_commit_in_flight_waits_for_it() {
    tinykv_integration::init_test_logging();
    let cluster = Arc::new(Cluster::start(3, RaftStoreConfig::for_tests()).await);
    let oracle = cluster.oracle();
    let setup = coordinator(&cluster, 1);
    let start_ts = oracle.timestamps(1).await.unwrap();
    setup
        .commit(start_ts, vec![put(b"k", b"old")])
        .await
        .unwrap();
    let region = cluster.region_for_key(&encode_key(b"k")).await;
    let leader = cluster.leader_of(region.id).await;
    let last_index = |statuses: Vec<tinykv_actors::msg::PeerStatus>| {
        statuses
            .iter()
            .find(|s| s.peer.id == leader.id)
            .map_or(0, |s| s.last_index)
    };
    let before = last_index(cluster.region_statuses(region.id).await);

    // The leader can propose but not commit: the commit below takes its timestamp,
    // proposes and waits.
    cluster.network().add_filter(NoAppendsFrom(leader.store_id));
    let writer = coordinator(&cluster, leader.store_id);
    let start_ts = oracle.timestamps(1).await.unwrap();
    let write = tokio::spawn(async move { writer.commit(start_ts, vec![put(b"k", b"new")]).await });
    let deadline = Instant::now() + Duration::from_secs(10);
    while last_index(cluster.region_statuses(region.id).await) <= before {
        assert!(Instant::now() < deadline, "the commit was never proposed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // A timestamp handed out now is newer than the commit's: a read at it must see the
    // commit, so it waits for the entry instead of reading the old value at once.
    let read_ts = oracle.timestamps(1).await.unwrap();
    let follower = cluster
        .store_ids()
        .into_iter()
        .find(|id| *id != leader.store_id)
        .unwrap();
    let reader = coordinator(&cluster, follower);
    let read = tokio::spawn(async move { reader.get(b"k", read_ts).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!read.is_finished(), "the read did not wait for the commit");
    cluster.network().clear_filters();

    let commit_ts = write
        .await
        .unwrap()
        .expect("the commit applies once appends flow");
    let seen = read.await.unwrap().unwrap().expect("a version");
    assert!(commit_ts <= read_ts);
    assert_eq!(seen.value, b"new", "the read saw around the commit");
    assert_eq!(seen.commit_ts, commit_ts);
}
