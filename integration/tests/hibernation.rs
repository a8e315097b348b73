//! Hibernation: an idle region sleeps (no ticks, no messages), wakes on a request within a
//! round trip, and a sleeping region whose leader died or was cut off elects another
//! leader once someone needs it, losing nothing. A restarted store's peers start asleep:
//! a follower's restart costs no message and no election, and a restarted leader's
//! regions elect a leader without waiting for a request. A region sleeps only with its
//! log compacted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tinykv_actors::msg::PeerStatus;
use tinykv_actors::{Cf, RaftStoreConfig};
use tinykv_integration::cluster::{Cluster, ClusterClient};
use tinykv_integration::network::{Filter, PartitionFilter, Verdict};
use tinykv_proto::raft_serverpb::{ExtraMessageType, RaftMessage};

/// Counts the messages sent on the simulated network, delivering all of them.
#[derive(Clone, Default)]
struct Counter(Arc<AtomicU64>);

impl Filter for Counter {
    fn check(&self, _: u64, _: u64, _: &RaftMessage) -> Verdict {
        self.0.fetch_add(1, Ordering::Relaxed);
        Verdict::Deliver
    }
}

/// Like [`Counter`], leaving out membership checks (a restarted store's sleeping peers
/// ask the other stores once whether they are still members: two questions and two
/// answers each, which wake nobody) and counting those apart.
#[derive(Clone, Default)]
struct CounterBesidesChecks {
    others: Counter,
    checks: Counter,
}

impl Filter for CounterBesidesChecks {
    fn check(&self, from: u64, to: u64, msg: &RaftMessage) -> Verdict {
        let kind = msg.extra_msg.as_ref().map(|e| e.r#type());
        let is_check = matches!(
            kind,
            Some(ExtraMessageType::MsgCheckStalePeer | ExtraMessageType::MsgCheckStalePeerResponse)
        );
        if is_check {
            self.checks.check(from, to, msg)
        } else {
            self.others.check(from, to, msg)
        }
    }
}

impl Counter {
    fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A 3-store cluster whose region 1 took `k` = `v1` and fell asleep on every store.
async fn asleep_cluster() -> (Cluster, ClusterClient) {
    tinykv_integration::init_test_logging();
    let cluster = Cluster::start(3, RaftStoreConfig::for_tests()).await;
    let client = cluster.client();
    client.must_put(b"k", b"v1").await;
    wait_asleep(&cluster, 3).await;
    (cluster, client)
}

/// Waits (up to 20 s) until every running store's peer of region 1 sleeps.
async fn wait_asleep(cluster: &Cluster, stores: usize) {
    wait_statuses(
        cluster,
        stores,
        Duration::from_secs(20),
        "region 1 did not fall asleep",
        |all| all.iter().all(|s| s.hibernating),
    )
    .await;
}

/// Polls region 1's statuses on `stores` running stores until `done` holds for them,
/// failing after `within` with `what`.
async fn wait_statuses(
    cluster: &Cluster,
    stores: usize,
    within: Duration,
    what: &str,
    done: impl Fn(&[PeerStatus]) -> bool,
) -> Vec<PeerStatus> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let statuses = cluster.region_statuses(1).await;
        if statuses.len() == stores && done(&statuses) {
            return statuses;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {:?}",
            statuses
                .iter()
                .map(|s| (s.peer.store_id, s.term, s.leader_id, s.hibernating))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn an_idle_region_sleeps_silently_and_a_request_wakes_it() {
    let (cluster, client) = asleep_cluster().await;
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
    let (mut cluster, client) = asleep_cluster().await;
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
    let (cluster, _client) = asleep_cluster().await;
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

#[actix_rt::test]
async fn a_restarted_follower_starts_asleep_and_a_read_through_it_costs_no_election() {
    tinykv_integration::init_test_logging();
    let mut cluster = Cluster::start(3, RaftStoreConfig::for_tests()).await;
    let client = cluster.client();
    client.must_put(b"k", b"v1").await;
    // Hand leadership to another peer: every follower's last vote is then for the leader
    // (a peer that voted for itself may have led, and its store wakes it on restart).
    let first = cluster.leader_of(1).await;
    let statuses = cluster.region_statuses(1).await;
    let target = statuses
        .iter()
        .map(|s| s.peer)
        .find(|p| *p != first)
        .expect("a follower");
    cluster.must_transfer_leader(1, target).await;
    wait_asleep(&cluster, 3).await;
    let leader = cluster.leader_of(1).await;
    let terms = wait_statuses(&cluster, 3, Duration::from_secs(10), "terms", |_| true)
        .await
        .iter()
        .map(|s| (s.peer.store_id, s.term))
        .collect::<Vec<_>>();
    let follower = cluster
        .store_ids()
        .into_iter()
        .find(|s| *s != leader.store_id)
        .unwrap();

    // The follower's store restarts: its peer starts asleep and stays silent but for one
    // membership check.
    cluster.stop_store(follower).await;
    let counter = CounterBesidesChecks::default();
    cluster.network().add_filter(counter.clone());
    cluster.start_store(follower).await;
    let election = RaftStoreConfig::for_tests().election_timeout();
    tokio::time::sleep(election * 3).await;
    assert_eq!(
        counter.others.count(),
        0,
        "a restarted sleeping follower sent messages besides its membership check"
    );
    assert_eq!(
        counter.checks.count(),
        4,
        "one membership check: a question to each other store and its answer"
    );
    let statuses = wait_statuses(&cluster, 3, Duration::from_secs(10), "statuses", |_| true).await;
    assert!(
        statuses.iter().all(|s| s.hibernating),
        "a peer woke without a request"
    );
    let mut now: Vec<(u64, u64)> = statuses.iter().map(|s| (s.peer.store_id, s.term)).collect();
    let mut before = terms.clone();
    now.sort_unstable();
    before.sort_unstable();
    assert_eq!(now, before, "a term changed while the region slept");

    // A read through the restarted follower wakes it. Knowing no leader yet, it refuses
    // the first (NotLeader, no hint) and wakes the other peers; the leader's heartbeat
    // reaches it within a round trip, so a client's retry is served, with no election.
    let started = tokio::time::Instant::now();
    let value = loop {
        match cluster.read_on(follower, b"k").await {
            Ok(value) => break value,
            Err(tinykv_actors::Error::NotLeader { leader: None, .. })
                if started.elapsed() < election =>
            {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            Err(e) => panic!("a read through the restarted follower: {e:?}"),
        }
    };
    assert_eq!(value.as_deref(), Some(&b"v1"[..]));
    assert!(
        started.elapsed() < election,
        "waking took {:?}",
        started.elapsed()
    );
    assert_eq!(cluster.leader_of(1).await, leader);
    let statuses = cluster.region_statuses(1).await;
    let term = terms.iter().map(|(_, t)| *t).max().unwrap();
    assert!(
        statuses.iter().all(|s| s.term == term),
        "the read cost an election: {:?}",
        statuses.iter().map(|s| s.term).collect::<Vec<_>>()
    );
    wait_asleep(&cluster, 3).await;
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn a_restarted_leader_store_has_its_sleeping_regions_elect_a_leader_without_a_request() {
    let (mut cluster, client) = asleep_cluster().await;
    let old = cluster.leader_of(1).await;
    let old_term = cluster
        .region_statuses(1)
        .await
        .iter()
        .map(|s| s.term)
        .max()
        .unwrap();

    // The leader's store goes down and comes back. Nobody asks for the region, yet the
    // restarted peer, which voted for itself, is woken by its store and the region
    // elects a leader of a newer term that all three peers follow.
    cluster.stop_store(old.store_id).await;
    cluster.start_store(old.store_id).await;
    let statuses = wait_statuses(
        &cluster,
        3,
        Duration::from_secs(10),
        "no leader after the restart",
        |all| {
            let leader = all[0].leader_id;
            leader != 0
                && all
                    .iter()
                    .all(|s| s.term > old_term && s.leader_id == leader)
                && all.iter().any(|s| s.peer.id == leader)
        },
    )
    .await;
    assert!(statuses.iter().all(|s| s.term > old_term));
    assert_eq!(client.must_get(b"k").await.as_deref(), Some(&b"v1"[..]));
    client.must_put(b"k", b"v2").await;
    for store in cluster.store_ids() {
        cluster
            .wait_engine_value(store, Cf::Default, b"k", Some(b"v2"))
            .await;
    }
    // And, idle again, the region falls back asleep.
    wait_asleep(&cluster, 3).await;
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn a_region_falls_asleep_only_with_its_log_compacted() {
    tinykv_integration::init_test_logging();
    // The periodic log GC never comes round during the test: only the leader's check
    // before it sleeps can compact the log.
    let cfg = RaftStoreConfig {
        raft_log_gc_count_limit: 5,
        raft_log_gc_tick_ms: 600_000,
        ..RaftStoreConfig::for_tests()
    };
    let cluster = Cluster::start(3, cfg).await;
    let client = cluster.client();
    for i in 0..30 {
        client.must_put(format!("k{i:02}").as_bytes(), b"v").await;
    }
    wait_asleep(&cluster, 3).await;
    for s in cluster.region_statuses(1).await {
        assert!(
            s.applied_index - s.truncated_index <= 5,
            "store {} sleeps with {} applied entries in its log",
            s.peer.store_id,
            s.applied_index - s.truncated_index
        );
    }
    cluster.shutdown().await;
}

/// A peer removed from its region while it slept cut off hears of it from nobody: the
/// region's leader no longer sends it anything. When the range it still holds is in the
/// way of another region's new replica on its store (the Router will not create a peer
/// over a local region's range, nor accept a snapshot overlapping one), it is asked to
/// check its membership, finds it was removed, goes, and the new replica arrives.
#[actix_rt::test]
async fn a_removed_peer_asleep_in_the_way_of_a_new_replica_goes() {
    tinykv_integration::init_test_logging();
    let cluster = Cluster::start(3, RaftStoreConfig::for_tests()).await;
    let client = cluster.client();
    let p1 = tinykv_proto::metapb::Peer { id: 1, store_id: 1 };
    cluster.must_transfer_leader(1, p1).await;
    client.must_put(b"k", b"v1").await;
    wait_asleep(&cluster, 3).await;
    cluster
        .network()
        .add_filter(PartitionFilter::isolate(3, [1, 2, 3]));
    let p3 = tinykv_proto::metapb::Peer { id: 3, store_id: 3 };
    cluster.must_remove_peer(1, p3).await;
    client.must_put(b"z", b"vz").await;
    cluster.must_split(1, &[b"m"]).await;
    let right = cluster.region_for_key(b"z").await;
    assert_ne!(right.id, 1);
    cluster
        .must_add_peer(
            right.id,
            tinykv_proto::metapb::Peer {
                id: cluster.alloc_id(),
                store_id: 3,
            },
        )
        .await;
    cluster.network().clear_filters();

    // Store 3 still holds region 1 at its old, whole range, asleep: the right half's
    // snapshot is refused until that peer is gone.
    cluster
        .wait_engine_value(3, Cf::Default, b"z", Some(b"vz"))
        .await;
    let stale = cluster.region_statuses(1).await;
    assert!(
        stale.iter().all(|s| s.peer.store_id != 3),
        "store 3 still runs its removed peer of region 1"
    );
    cluster.shutdown().await;
}

/// A sleeping region's ApplyFsm parks (stops, its state kept by the PeerFsm), and a new
/// one takes over from that state when the region is used again: writes and reads go on
/// as before, round after round, and after a restart, whose peers start parked.
#[actix_rt::test]
async fn a_sleeping_regions_apply_actor_parks_and_a_new_one_takes_over_when_needed() {
    let (mut cluster, client) = asleep_cluster().await;
    let parked = |all: &[PeerStatus]| all.iter().all(|s| s.hibernating && s.apply_parked);
    let within = Duration::from_secs(20);
    wait_statuses(&cluster, 3, within, "the ApplyFsms did not park", parked).await;
    for round in 0..3 {
        let value = format!("v{round}");
        client.must_put(b"k", value.as_bytes()).await;
        assert_eq!(
            client.must_get(b"k").await.as_deref(),
            Some(value.as_bytes())
        );
        for id in 1..=3 {
            cluster
                .wait_engine_value(id, Cf::Default, b"k", Some(value.as_bytes()))
                .await;
        }
        wait_statuses(&cluster, 3, within, "parked again", parked).await;
    }
    cluster.stop_store(2).await;
    cluster.start_store(2).await;
    wait_statuses(&cluster, 3, within, "parked after the restart", parked).await;
    client.must_put(b"k", b"after").await;
    for id in 1..=3 {
        cluster
            .wait_engine_value(id, Cf::Default, b"k", Some(b"after"))
            .await;
    }
    cluster.shutdown().await;
}
