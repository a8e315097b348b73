//! Region merge: a region hands its range, data and sessions to its neighbour, under the
//! same faults as splits. The source is frozen by PrepareMerge, the target absorbs it
//! with CommitMerge once every source peer holds the PrepareMerge, and a target whose
//! epoch moved on makes the source roll back. Every test checks the data on every store,
//! not only what the leader answers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tinykv::kv_service::{KvOp, KvOutcome};
use tinykv_actors::engine::Mutation;
use tinykv_actors::{Cf, Error, RaftStoreConfig};
use tinykv_integration::cluster::{covers, Cluster};
use tinykv_integration::network::{Filter, PartitionFilter, Verdict};
use tinykv_proto::metapb;
use tinykv_proto::raft_serverpb::{PeerState, RaftMessage, RegionLocalState};

fn key(i: usize) -> Vec<u8> {
    format!("k{i:03}").into_bytes()
}

/// A cluster of three stores holding k000..k039 ("v"), split at k020: the left region
/// and the right one.
async fn two_regions() -> (Cluster, metapb::Region, metapb::Region) {
    let cluster = Cluster::start(3, RaftStoreConfig::for_tests()).await;
    let client = cluster.client();
    for i in 0..40 {
        client.must_put(&key(i), b"v").await;
    }
    let whole = cluster.region_for_key(&key(0)).await;
    cluster.must_split(whole.id, &[&key(20)]).await;
    let left = cluster.region_for_key(&key(0)).await;
    let right = cluster.region_for_key(&key(20)).await;
    assert_ne!(left.id, right.id);
    cluster.leader_of(left.id).await;
    cluster.leader_of(right.id).await;
    (cluster, left, right)
}

/// Moves the leadership of `region_id` to its peer on store 1.
async fn lead_from_store_1(cluster: &Cluster, region_id: u64) {
    let peer = cluster
        .leader_region(region_id)
        .await
        .and_then(|(_, r)| r.peers.into_iter().find(|p| p.store_id == 1))
        .expect("a peer on store 1");
    cluster.must_transfer_leader(region_id, peer).await;
}

/// Waits until store `store` holds a peer of `region_id` covering `range` and no peer of
/// `gone`, with the source's state on disk a tombstone (a destroyed peer's tombstone
/// reaches the disk through the writers a moment after the peer stopped).
async fn wait_merged_on(
    cluster: &Cluster,
    store: u64,
    region_id: u64,
    range: &metapb::Region,
    gone: u64,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let statuses = cluster.region_statuses(region_id).await;
        let merged = statuses
            .iter()
            .any(|s| s.peer.store_id == store && covers(&s.region, range));
        let source_left = cluster
            .region_statuses(gone)
            .await
            .iter()
            .any(|s| s.peer.store_id == store);
        let state: Option<RegionLocalState> = cluster
            .engine(store)
            .and_then(|e| {
                e.get_msg(Cf::Meta, &tinykv_actors::keys::region_state_key(gone))
                    .ok()
            })
            .flatten();
        let state = state.map(|s| s.state());
        if merged && !source_left && state == Some(PeerState::Tombstone) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "store {store} did not finish merging {gone} into {region_id} \
             (target covers the range: {merged}, source peer running: {source_left}, \
             source state on disk: {state:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the merge source `before` takes a write again (`key` = "thawed"), failing
/// after 30 s, and checks that it was rolled back: same range, version grown twice
/// (PrepareMerge, RollbackMerge).
async fn wait_rolled_back(cluster: &Cluster, before: &metapb::Region, key: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leader = cluster.leader_of(before.id).await;
        if cluster
            .put_on(leader.store_id, key, b"thawed")
            .await
            .is_ok()
        {
            break;
        }
        assert!(Instant::now() < deadline, "the source did not roll back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let source = cluster.leader_region(before.id).await.unwrap().1;
    assert_eq!(
        source.region_epoch.unwrap().version,
        before.region_epoch.unwrap().version + 2
    );
    assert_eq!(
        (&source.start_key, &source.end_key),
        (&before.start_key, &before.end_key)
    );
}

/// Every store holds `value` for every key of k000..k039.
async fn assert_every_store_holds(cluster: &Cluster, value: &[u8]) {
    for store in cluster.store_ids() {
        for i in (0..40).step_by(3) {
            cluster
                .wait_engine_value(store, Cf::Default, &key(i), Some(value))
                .await;
        }
    }
}

#[actix_rt::test]
async fn a_merge_hands_the_right_region_to_the_left_with_its_data_and_sessions() {
    tinykv_integration::init_test_logging();
    let (cluster, left, right) = two_regions().await;
    let client = cluster.client();
    // A write with a session in the source: retried after the merge, it applies once.
    let session = client.new_session();
    let once = || KvOp::Put {
        cf: Cf::Default,
        key: key(30),
        value: b"once".to_vec(),
        session: session.clone(),
    };
    assert_eq!(
        client.execute(once()).await.expect("first write"),
        KvOutcome::Written { replayed: false }
    );

    cluster.must_merge(right.id, left.id).await;
    let merged = cluster.region_for_key(&key(30)).await;
    assert_eq!(merged.id, left.id);
    assert!(
        merged.start_key.is_empty() && merged.end_key.is_empty(),
        "{merged:?}"
    );
    let (before, after) = (
        left.region_epoch.unwrap().version,
        merged.region_epoch.unwrap().version,
    );
    assert!(
        after > before.max(right.region_epoch.unwrap().version),
        "{merged:?}"
    );
    for store in cluster.store_ids() {
        wait_merged_on(&cluster, store, left.id, &merged, right.id).await;
    }

    // The session record moved with the data: the retry is recognised.
    assert_eq!(
        client.execute(once()).await.expect("retried write"),
        KvOutcome::Written { replayed: true }
    );
    client.must_put(&key(31), b"after").await;
    client.must_put(&key(1), b"after").await;
    assert_eq!(
        client.must_get(&key(30)).await.as_deref(),
        Some(&b"once"[..])
    );
    assert_eq!(client.must_get(&key(2)).await.as_deref(), Some(&b"v"[..]));
    assert_eq!(client.must_scan(&key(0), &key(40)).await.len(), 40);
    for store in cluster.store_ids() {
        cluster
            .wait_engine_value(store, Cf::Default, &key(31), Some(b"after"))
            .await;
    }
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn a_merge_hands_the_left_region_to_the_right_and_survives_a_restart() {
    tinykv_integration::init_test_logging();
    let (mut cluster, left, right) = two_regions().await;
    cluster.must_merge(left.id, right.id).await;
    let merged = cluster.region_for_key(&key(0)).await;
    assert_eq!(merged.id, right.id);
    for store in cluster.store_ids() {
        wait_merged_on(&cluster, store, right.id, &merged, left.id).await;
    }
    cluster.restart_all().await;
    let client = cluster.client();
    assert_eq!(client.must_get(&key(3)).await.as_deref(), Some(&b"v"[..]));
    client.must_put(&key(4), b"after").await;
    assert_eq!(cluster.regions().await.len(), 1);
    assert!(cluster.region_statuses(left.id).await.is_empty());
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn a_store_cut_off_holds_the_merge_until_it_returns_and_then_catches_up() {
    tinykv_integration::init_test_logging();
    let (cluster, left, right) = two_regions().await;
    let client = cluster.client();
    lead_from_store_1(&cluster, left.id).await;
    lead_from_store_1(&cluster, right.id).await;
    cluster
        .network()
        .add_filter(PartitionFilter::isolate(3, cluster.store_ids()));
    let target = cluster.leader_region(left.id).await.unwrap().1;
    cluster
        .try_prepare_merge(right.id, &target)
        .await
        .expect("PrepareMerge applies on the two connected stores");
    // Store 3 does not hold the PrepareMerge: the source stays frozen, the target
    // unmerged, and writes to the source are refused as busy (not applied).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let frozen = cluster.put_on(1, &key(25), b"frozen").await.unwrap_err();
    assert!(
        matches!(frozen, Error::ServerIsBusy(_) | Error::NotLeader { .. }),
        "{frozen:?}"
    );
    let still = cluster.leader_region(left.id).await.unwrap().1;
    assert_eq!(still.region_epoch, target.region_epoch);
    // The other region takes writes all along.
    client.must_put(&key(5), b"w").await;

    cluster.network().clear_filters();
    let merged = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let region = cluster.leader_region(left.id).await.map(|(_, r)| r);
            if let Some(region) = region.filter(|r| covers(r, &right)) {
                break region;
            }
            assert!(Instant::now() < deadline, "the merge did not complete");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    for store in cluster.store_ids() {
        wait_merged_on(&cluster, store, left.id, &merged, right.id).await;
    }
    client.must_put(&key(25), b"after").await;
    cluster
        .wait_engine_value(3, Cf::Default, &key(25), Some(b"after"))
        .await;
    cluster
        .wait_engine_value(3, Cf::Default, &key(5), Some(b"w"))
        .await;
    cluster.shutdown().await;
}

/// Drops the messages of one region to one store that would tell it an index at or past
/// `commit` is committed: the store holds the entry but never learns it committed.
struct HideCommit {
    region_id: u64,
    store: u64,
    commit: u64,
    hidden: Arc<AtomicUsize>,
}

impl Filter for HideCommit {
    fn check(&self, _: u64, to: u64, msg: &RaftMessage) -> Verdict {
        let hides = msg.region_id == self.region_id
            && to == self.store
            && msg
                .message
                .as_ref()
                .is_some_and(|m| m.commit >= self.commit);
        if hides {
            self.hidden.fetch_add(1, Ordering::Relaxed);
            Verdict::Drop
        } else {
            Verdict::Deliver
        }
    }
}

#[actix_rt::test]
async fn a_source_peer_that_never_learnt_the_prepare_committed_catches_up_for_the_target() {
    tinykv_integration::init_test_logging();
    let (cluster, left, right) = two_regions().await;
    // The source's leader is elsewhere, so store 3 learns of commits only by message.
    lead_from_store_1(&cluster, right.id).await;
    let last = cluster
        .region_statuses(right.id)
        .await
        .iter()
        .map(|s| s.last_index)
        .max()
        .unwrap();
    // The PrepareMerge will be the source's next entry: store 3 receives it but never
    // hears that it committed, and the source's other peers are gone once the merge
    // applies on stores 1 and 2. Store 3's target must make its source peer commit and
    // apply it before absorbing it.
    let hidden = Arc::new(AtomicUsize::new(0));
    cluster.network().add_filter(HideCommit {
        region_id: right.id,
        store: 3,
        commit: last + 1,
        hidden: hidden.clone(),
    });
    cluster.must_merge(right.id, left.id).await;
    let merged = cluster.region_for_key(&key(0)).await;
    for store in cluster.store_ids() {
        wait_merged_on(&cluster, store, left.id, &merged, right.id).await;
    }
    cluster.client().must_put(&key(33), b"after").await;
    cluster
        .wait_engine_value(3, Cf::Default, &key(33), Some(b"after"))
        .await;
    cluster
        .wait_engine_value(3, Cf::Default, &key(39), Some(b"v"))
        .await;
    assert!(
        hidden.load(Ordering::Relaxed) > 0,
        "no commit was hidden from store 3"
    );
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn a_target_that_split_first_refuses_the_merge_and_the_source_rolls_back() {
    tinykv_integration::init_test_logging();
    let (cluster, left, right) = two_regions().await;
    // The merge of the left region into the right one is prepared against the target
    // as it was before it split at k030: the target keeps its id and its boundary with
    // the source, but not its epoch.
    cluster.leader_of(right.id).await;
    let stale_target = cluster.leader_region(right.id).await.unwrap().1;
    cluster.must_split(right.id, &[&key(30)]).await;
    cluster.leader_of(left.id).await;
    let source_before = cluster.leader_region(left.id).await.unwrap().1;
    cluster
        .try_prepare_merge(left.id, &stale_target)
        .await
        .expect("PrepareMerge applies");
    // The target refuses, the source thaws: its version grew twice (prepare, rollback),
    // and it takes writes again.
    wait_rolled_back(&cluster, &source_before, &key(5)).await;
    let target = cluster.leader_region(right.id).await.unwrap().1;
    assert_eq!(
        target.start_key,
        key(20),
        "the target did not absorb the source"
    );
    assert_eq!(cluster.regions().await.len(), 3);
    for store in cluster.store_ids() {
        cluster
            .wait_engine_value(store, Cf::Default, &key(5), Some(b"thawed"))
            .await;
    }
    // Merged for real this time.
    cluster.must_merge(left.id, right.id).await;
    assert_eq!(
        cluster.client().must_get(&key(5)).await.as_deref(),
        Some(&b"thawed"[..])
    );
    assert_eq!(cluster.regions().await.len(), 2);
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn a_merge_prepared_before_every_store_crashed_completes_after_the_restart() {
    tinykv_integration::init_test_logging();
    let (mut cluster, left, right) = two_regions().await;
    lead_from_store_1(&cluster, left.id).await;
    lead_from_store_1(&cluster, right.id).await;
    cluster
        .network()
        .add_filter(PartitionFilter::isolate(3, cluster.store_ids()));
    let target = cluster.leader_region(left.id).await.unwrap().1;
    cluster
        .try_prepare_merge(right.id, &target)
        .await
        .expect("PrepareMerge applies");
    cluster.restart_all().await;
    cluster.network().clear_filters();
    // Nobody proposes anything: the frozen source's leader resumes the merge.
    let deadline = Instant::now() + Duration::from_secs(20);
    let merged = loop {
        if let Some((_, region)) = cluster.leader_region(left.id).await {
            if covers(&region, &right) {
                break region;
            }
        }
        assert!(Instant::now() < deadline, "the merge did not resume");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for store in cluster.store_ids() {
        wait_merged_on(&cluster, store, left.id, &merged, right.id).await;
    }
    assert_every_store_holds(&cluster, b"v").await;
    cluster.shutdown().await;
}

/// Drops every message of one region to one store.
struct DropRegion {
    region_id: u64,
    store: u64,
}

impl Filter for DropRegion {
    fn check(&self, _: u64, to: u64, msg: &RaftMessage) -> Verdict {
        if msg.region_id == self.region_id && to == self.store {
            Verdict::Drop
        } else {
            Verdict::Deliver
        }
    }
}

/// Two regions led from store 1, left (k000..k020) and right (k020..), merged right into
/// left while store 3's peer of the target hears nothing: store 3's source is frozen, and
/// the CommitMerge reaches store 3 only later, as a snapshot (see
/// [`write_until_store_3_needs_a_snapshot`]). Answers the cluster, left and right.
async fn merge_with_store_3_cut_off_from_the_target() -> (Cluster, metapb::Region, metapb::Region) {
    tinykv_integration::init_test_logging();
    let cfg = RaftStoreConfig {
        raft_log_gc_count_limit: 10,
        ..RaftStoreConfig::for_tests()
    };
    let cluster = Cluster::start(3, cfg).await;
    let client = cluster.client();
    for i in 0..40 {
        client.must_put(&key(i), b"v").await;
    }
    let whole = cluster.region_for_key(&key(0)).await;
    cluster.must_split(whole.id, &[&key(20)]).await;
    let left = cluster.region_for_key(&key(0)).await;
    let right = cluster.region_for_key(&key(20)).await;
    cluster.leader_of(right.id).await;
    // The source's leader asks the target's peer on its own store, which must reach the
    // target's leader: both lead from store 1.
    lead_from_store_1(&cluster, left.id).await;
    lead_from_store_1(&cluster, right.id).await;
    // Store 3's target peer hears nothing: the source freezes there too, but the
    // CommitMerge and what follows reach store 3 only as a snapshot.
    cluster.network().add_filter(DropRegion {
        region_id: left.id,
        store: 3,
    });
    cluster.must_merge(right.id, left.id).await;
    (cluster, left, right)
}

/// Writes through the target's leader until it compacted its log past what store 3 holds.
async fn write_until_store_3_needs_a_snapshot(cluster: &Cluster, left: &metapb::Region) {
    // Written through the leader: store 3's target peer, cut off, would hold writes
    // sent to it until they time out.
    for i in 0..40 {
        let leader = cluster.leader_of(left.id).await;
        cluster
            .put_on(leader.store_id, &key(i), b"merged")
            .await
            .expect("write through the leader");
    }
    // The leader compacts its log past what store 3 holds: store 3 needs a snapshot.
    let behind = cluster
        .region_statuses(left.id)
        .await
        .into_iter()
        .find(|s| s.peer.store_id == 3)
        .map(|s| s.last_index)
        .expect("store 3's peer of the target");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let leader = cluster.leader_of(left.id).await;
        let compacted = cluster
            .region_statuses(left.id)
            .await
            .into_iter()
            .find(|s| s.peer == leader)
            .is_some_and(|s| s.truncated_index > behind);
        if compacted {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the leader never compacted past store 3"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn a_target_replica_that_gets_a_snapshot_instead_of_the_commit_drops_the_source() {
    let (cluster, left, right) = merge_with_store_3_cut_off_from_the_target().await;
    write_until_store_3_needs_a_snapshot(&cluster, &left).await;
    cluster.network().clear_filters();
    let merged = cluster.region_for_key(&key(0)).await;
    wait_merged_on(&cluster, 3, left.id, &merged, right.id).await;
    assert_every_store_holds(&cluster, b"merged").await;
    cluster.shutdown().await;
}

/// What store `store` keeps on disk of region `region_id`'s peer: its region, raft and
/// apply states and its raft log, as (keyspace, key, value).
fn peer_keys(cluster: &Cluster, store: u64, region_id: u64) -> Vec<(Cf, Vec<u8>, Vec<u8>)> {
    use tinykv_actors::keys;
    let engine = cluster.engine(store).expect("a running store");
    let mut saved = Vec::new();
    for (cf, key) in [
        (Cf::Meta, keys::region_state_key(region_id)),
        (Cf::Meta, keys::apply_state_key(region_id)),
        (Cf::Raft, keys::raft_state_key(region_id)),
    ] {
        if let Some(value) = engine.get(cf, &key).expect("engine read") {
            saved.push((cf, key, value));
        }
    }
    let (start, end) = (
        keys::raft_log_key(region_id, 0),
        keys::raft_log_key(region_id, u64::MAX),
    );
    engine
        .scan(Cf::Raft, &start, &end, |key, value| {
            saved.push((Cf::Raft, key.to_vec(), value.to_vec()));
            true
        })
        .expect("engine scan");
    saved
}

#[actix_rt::test]
async fn a_store_that_crashed_before_its_merged_away_source_was_tombstoned_restarts_whole() {
    let (mut cluster, left, right) = merge_with_store_3_cut_off_from_the_target().await;
    // Store 3's source, frozen by its PrepareMerge, as its disk holds it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let frozen = loop {
        let saved = peer_keys(&cluster, 3, right.id);
        let state = saved
            .first()
            .and_then(|(_, _, v)| <RegionLocalState as prost::Message>::decode(&v[..]).ok());
        if state.is_some_and(|s| s.state() == PeerState::Merging) {
            break saved;
        }
        assert!(Instant::now() < deadline, "store 3's source never froze");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    write_until_store_3_needs_a_snapshot(&cluster, &left).await;
    cluster.network().clear_filters();
    let merged = cluster.region_for_key(&key(0)).await;
    wait_merged_on(&cluster, 3, left.id, &merged, right.id).await;

    // The crash: store 3 stopped after the target's snapshot landed but before the
    // source's destruction did. Its disk holds the target, covering the source's range,
    // and the source, frozen, with its raft state and log.
    cluster.stop_store(3).await;
    cluster.with_stopped_engine(3, |engine| {
        let restore: Vec<Mutation> = frozen
            .iter()
            .map(|(cf, key, value)| Mutation::Put {
                cf: *cf,
                key: key.clone(),
                value: value.clone(),
            })
            .collect();
        engine
            .write(&restore, true)
            .expect("restore the frozen source");
    });
    cluster.start_store(3).await;

    // Store 3 comes back whole: it finishes the source's destruction without touching
    // the data, which is the target's, and serves the merged values.
    wait_merged_on(&cluster, 3, left.id, &merged, right.id).await;
    assert_every_store_holds(&cluster, b"merged").await;
    for i in [0, 20, 39] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match cluster.read_on(3, &key(i)).await {
                Ok(value) => {
                    assert_eq!(value.as_deref(), Some(&b"merged"[..]), "key {i} on store 3");
                    break;
                }
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "store 3 does not serve key {i}: {e:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn merges_that_break_the_rules_are_refused_and_change_nothing() {
    tinykv_integration::init_test_logging();
    let (cluster, left, right) = two_regions().await;
    let mut far = cluster.leader_region(left.id).await.unwrap().1;
    cluster.must_split(right.id, &[&key(30)]).await;
    let third = cluster.region_for_key(&key(30)).await;
    // Not neighbours: the left region and the one from k030.
    let err = cluster
        .try_prepare_merge(left.id, &third)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}");
    // Into itself.
    let err = cluster.try_prepare_merge(left.id, &far).await.unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}");
    // A target whose peers live on other stores.
    far.id = right.id;
    far.start_key = key(20);
    far.end_key = key(30);
    far.peers.truncate(2);
    let err = cluster.try_prepare_merge(left.id, &far).await.unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}");
    // Nothing froze: every region takes writes, with its epoch unchanged.
    assert_eq!(cluster.regions().await.len(), 3);
    let now = cluster.leader_region(left.id).await.unwrap().1;
    assert_eq!(
        now.region_epoch,
        cluster.region_for_key(&key(0)).await.region_epoch
    );
    for i in [0, 20, 35] {
        cluster.client().must_put(&key(i), b"w").await;
    }
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn a_source_whose_target_merged_away_first_rolls_back() {
    tinykv_integration::init_test_logging();
    let (cluster, left, right) = two_regions().await;
    cluster.must_split(right.id, &[&key(30)]).await;
    let last = cluster.region_for_key(&key(30)).await;
    cluster.leader_of(last.id).await;
    for region in [left.id, right.id, last.id] {
        lead_from_store_1(&cluster, region).await;
    }
    // The left region prepares to merge into the middle one but cannot go on: store 3
    // does not get its PrepareMerge.
    cluster.network().add_filter(DropRegion {
        region_id: left.id,
        store: 3,
    });
    let middle = cluster.leader_region(right.id).await.unwrap().1;
    let source_before = cluster.leader_region(left.id).await.unwrap().1;
    cluster
        .try_prepare_merge(left.id, &middle)
        .await
        .expect("PrepareMerge applies on stores 1 and 2");
    // Meanwhile the middle region merges into the last one and is gone.
    cluster.must_merge(right.id, last.id).await;
    cluster.network().clear_filters();
    // The left region's leader finds its target gone past the epoch it prepared against
    // and thaws it.
    wait_rolled_back(&cluster, &source_before, &key(5)).await;
    let absorbed = cluster.leader_region(last.id).await.unwrap().1;
    assert_eq!(absorbed.start_key, key(20));
    for store in cluster.store_ids() {
        cluster
            .wait_engine_value(store, Cf::Default, &key(5), Some(b"thawed"))
            .await;
        cluster
            .wait_engine_value(store, Cf::Default, &key(25), Some(b"v"))
            .await;
    }
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn a_source_that_cannot_reach_a_follower_gives_the_merge_up() {
    tinykv_integration::init_test_logging();
    let (cluster, left, right) = two_regions().await;
    lead_from_store_1(&cluster, left.id).await;
    lead_from_store_1(&cluster, right.id).await;
    cluster
        .network()
        .add_filter(PartitionFilter::isolate(3, cluster.store_ids()));
    let target = cluster.leader_region(left.id).await.unwrap().1;
    let source_before = cluster.leader_region(right.id).await.unwrap().1;
    cluster
        .try_prepare_merge(right.id, &target)
        .await
        .expect("PrepareMerge applies on stores 1 and 2");
    // Store 3 stays cut off: after ten election timeouts the leader that appended the
    // PrepareMerge, never having asked for the CommitMerge, rolls it back.
    wait_rolled_back(&cluster, &source_before, &key(25)).await;
    let unmerged = cluster.leader_region(left.id).await.unwrap().1;
    assert_eq!(unmerged.region_epoch, target.region_epoch);
    // Store 3 comes back and catches up with both the PrepareMerge and its rollback.
    cluster.network().clear_filters();
    cluster
        .wait_engine_value(3, Cf::Default, &key(25), Some(b"thawed"))
        .await;
    cluster.must_merge(right.id, left.id).await;
    let merged = cluster.region_for_key(&key(25)).await;
    for store in cluster.store_ids() {
        wait_merged_on(&cluster, store, left.id, &merged, right.id).await;
    }
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn a_commit_merge_for_a_source_that_cannot_be_ready_is_refused_and_the_target_goes_on() {
    use tinykv_proto::raft_cmdpb::{
        AdminCmdType, AdminRequest, CommitMergeRequest, RaftCmdRequest, RaftRequestHeader,
    };
    tinykv_integration::init_test_logging();
    let (cluster, left, right) = two_regions().await;
    let (leader, target) = cluster.leader_region(left.id).await.unwrap();
    let applied = cluster
        .region_statuses(right.id)
        .await
        .iter()
        .map(|s| s.applied_index)
        .min()
        .unwrap();
    // A CommitMerge no source leader asked for: one naming a region no store holds, and
    // one naming the real neighbour, which is not frozen and applied past the index.
    let ghost = metapb::Region {
        id: 999_999,
        ..right.clone()
    };
    for (source, commit) in [(ghost, 7), (right.clone(), applied)] {
        let request = RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: target.id,
                region_epoch: target.region_epoch,
                ..Default::default()
            }),
            admin_request: Some(AdminRequest {
                cmd_type: AdminCmdType::CommitMerge as i32,
                commit_merge: Some(CommitMergeRequest {
                    source: Some(source),
                    commit,
                    commit_term: 5,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = cluster.command_on(leader.store_id, request).await;
        assert!(matches!(err, Some(Error::InvalidRequest(_))), "{err:?}");
    }
    // Nothing changed, and both regions take writes (the target holds nothing back).
    let now = cluster.leader_region(left.id).await.unwrap().1;
    assert_eq!(now, target);
    cluster.client().must_put(&key(3), b"w").await;
    cluster.client().must_put(&key(23), b"w").await;
    for store in cluster.store_ids() {
        cluster
            .wait_engine_value(store, Cf::Default, &key(3), Some(b"w"))
            .await;
    }
    cluster.shutdown().await;
}
