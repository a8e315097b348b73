//! Transactions on the in-process cluster: Percolator's two phases across regions, locks
//! left by a coordinator that vanished, conflicts, and a bank workload whose total must
//! never change while stores are cut off, leaders move and regions split under it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tinykv::kv_service::{KvOp, KvOutcome};
use tinykv::pd::tso;
use tinykv::txn::client::TxnClient;
use tinykv::txn::commands::TxnWrite;
use tinykv::txn::keys::encode_key;
use tinykv::Error;
use tinykv_actors::RaftStoreConfig;
use tinykv_integration::cluster::Cluster;
use tinykv_integration::network::PartitionFilter;
use tinykv_integration::txn::coordinator;
use tinykv_proto::kvrpcpb::{
    txn_request::Command, txn_response::Answer, CommitRequest, GcRequest, Mutation, Op,
    PrewriteRequest, TxnRequest,
};

fn put(key: &[u8], value: &[u8]) -> TxnWrite {
    TxnWrite::Put {
        key: key.to_vec(),
        value: value.to_vec(),
    }
}

/// Prewrites `keys` = `value` with `keys[0]` as primary, as a coordinator that then
/// vanishes would have: one command per key, since a command covers one region.
async fn prewrite_only(cluster: &Cluster, keys: &[&[u8]], value: &[u8], start_ts: u64, ttl: u64) {
    for key in keys {
        let request = TxnRequest {
            command: Some(Command::Prewrite(PrewriteRequest {
                mutations: vec![Mutation {
                    op: Op::Put as i32,
                    key: key.to_vec(),
                    value: value.to_vec(),
                }],
                primary_lock: keys[0].to_vec(),
                start_version: start_ts,
                lock_ttl: ttl,
                ..Default::default()
            })),
        };
        let outcome = cluster
            .service(1)
            .execute(KvOp::Txn(request))
            .await
            .unwrap();
        let KvOutcome::Txn(response) = outcome else {
            panic!("{outcome:?}")
        };
        let Some(Answer::Prewrite(prewrite)) = response.answer else {
            panic!("{response:?}")
        };
        assert!(prewrite.errors.is_empty(), "{prewrite:?}");
    }
}

/// Commits `key` of the transaction started at `start_ts` at `commit_ts`; answers the
/// key error, if any.
async fn commit_key(
    cluster: &Cluster,
    key: &[u8],
    start_ts: u64,
    commit_ts: u64,
) -> Option<String> {
    let request = TxnRequest {
        command: Some(Command::Commit(CommitRequest {
            start_version: start_ts,
            keys: vec![key.to_vec()],
            commit_version: commit_ts,
            ..Default::default()
        })),
    };
    let outcome = cluster
        .service(2)
        .execute(KvOp::Txn(request))
        .await
        .unwrap();
    let KvOutcome::Txn(response) = outcome else {
        panic!("{outcome:?}")
    };
    let Some(Answer::Commit(commit)) = response.answer else {
        panic!("{response:?}")
    };
    commit.error.map(|e| format!("{e:?}"))
}

/// A cluster of three stores whose transactional range is split at `a2` and `m`, so
/// transactions span regions.
async fn split_cluster() -> Cluster {
    let cluster = Cluster::start(3, RaftStoreConfig::for_tests()).await;
    let first = cluster.region_for_key(&encode_key(b"a")).await;
    cluster.must_split(first.id, &[&encode_key(b"m")]).await;
    let first = cluster.region_for_key(&encode_key(b"a")).await;
    cluster.must_split(first.id, &[&encode_key(b"a2")]).await;
    cluster
}

#[actix_rt::test]
async fn a_transaction_commits_atomically_across_regions_and_reads_see_versions() {
    tinykv_integration::init_test_logging();
    let cluster = split_cluster().await;
    let client = coordinator(&cluster, 1);
    assert_ne!(
        cluster.region_for_key(&encode_key(b"a1")).await.id,
        cluster.region_for_key(&encode_key(b"z")).await.id
    );
    let before = client.timestamp().await.unwrap();
    let start = client.timestamp().await.unwrap();
    let writes = vec![put(b"a1", b"1"), put(b"b", b"2"), put(b"z", b"3")];
    let commit_ts = client.commit(start, writes).await.unwrap();
    assert!(commit_ts > start);
    // A read at the latest timestamp sees all three, each at the commit's version; one at
    // a timestamp before the commit sees none.
    let now = client.timestamp().await.unwrap();
    for (key, value) in [(&b"a1"[..], &b"1"[..]), (b"b", b"2"), (b"z", b"3")] {
        let read = client.get(key, now).await.unwrap().expect("committed");
        assert_eq!((read.value.as_slice(), read.commit_ts), (value, commit_ts));
        assert_eq!(client.get(key, before).await.unwrap(), None);
    }
    // A scan crosses the regions, in key order.
    let page = client.scan(b"", b"", now, 10).await.unwrap();
    let keys: Vec<&[u8]> = page.pairs.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(keys, vec![&b"a1"[..], b"b", b"z"]);
    assert_eq!(page.next, None);
    let bounded = client.scan(b"a2", b"y", now, 10).await.unwrap();
    assert_eq!(bounded.pairs.len(), 1);
    let limited = client.scan(b"", b"", now, 2).await.unwrap();
    assert_eq!(limited.pairs.len(), 2);
    assert_eq!(limited.next.as_deref(), Some(&b"b\0"[..]));
    // Another store's coordinator sees the same.
    let other = coordinator(&cluster, 3);
    let read = other
        .get(b"z", other.timestamp().await.unwrap())
        .await
        .unwrap();
    assert_eq!(read.unwrap().value, b"3");
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn the_second_of_two_overlapping_writers_gets_a_conflict_naming_the_key() {
    tinykv_integration::init_test_logging();
    let cluster = split_cluster().await;
    let client = coordinator(&cluster, 2);
    let first = client.timestamp().await.unwrap();
    let second = client.timestamp().await.unwrap();
    client
        .commit(second, vec![put(b"k", b"second")])
        .await
        .unwrap();
    let err = client
        .commit(first, vec![put(b"b", b"first"), put(b"k", b"first")])
        .await
        .unwrap_err();
    match &err {
        Error::TxnConflict { code, key, .. } => {
            assert_eq!((*code, key.as_slice()), ("write_conflict", &b"k"[..]))
        }
        other => panic!("expected a write conflict, got {other:?}"),
    }
    assert_eq!(err.write_outcome(), "not_applied");
    // Nothing of the loser is visible, nor left locked: b reads as absent at once.
    let now = client.timestamp().await.unwrap();
    assert_eq!(client.get(b"b", now).await.unwrap(), None);
    assert_eq!(
        client.get(b"k", now).await.unwrap().unwrap().value,
        b"second"
    );
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn locks_of_a_vanished_coordinator_are_rolled_back_once_they_expire() {
    tinykv_integration::init_test_logging();
    let cluster = split_cluster().await;
    let client = coordinator(&cluster, 3);
    let start = client.timestamp().await.unwrap();
    prewrite_only(&cluster, &[b"p", b"b"], b"lost", start, 300).await;
    // A reader at a later timestamp waits for the lock's TTL, then rolls it back.
    let read = client
        .get(b"b", client.timestamp().await.unwrap())
        .await
        .unwrap();
    assert_eq!(read, None);
    let expired_ms = tso::split(start).0 + 300;
    let now_ms = tso::split(client.timestamp().await.unwrap()).0;
    assert!(
        now_ms >= expired_ms,
        "read {} ms before the lock expired",
        expired_ms - now_ms
    );
    // The coordinator coming back cannot commit any more.
    let late = client.timestamp().await.unwrap();
    let refused = commit_key(&cluster, b"p", start, late).await;
    assert!(
        refused.is_some_and(|e| e.contains("abort")),
        "committed after a rollback"
    );
    assert_eq!(
        client
            .get(b"p", client.timestamp().await.unwrap())
            .await
            .unwrap(),
        None
    );
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn a_reader_commits_the_secondary_of_a_transaction_whose_primary_committed() {
    tinykv_integration::init_test_logging();
    let cluster = split_cluster().await;
    let client = coordinator(&cluster, 1);
    let start = client.timestamp().await.unwrap();
    prewrite_only(&cluster, &[b"p", b"b"], b"kept", start, 60_000).await;
    let commit_ts = client.timestamp().await.unwrap();
    assert_eq!(commit_key(&cluster, b"p", start, commit_ts).await, None);
    // The secondary's lock has a minute to live, but its transaction has committed: the
    // reader commits it from the primary's record at once.
    let began = Instant::now();
    let read = client
        .get(b"b", client.timestamp().await.unwrap())
        .await
        .unwrap();
    assert!(began.elapsed() < Duration::from_secs(5));
    let read = read.expect("committed");
    assert_eq!(
        (read.value.as_slice(), read.commit_ts),
        (&b"kept"[..], commit_ts)
    );
    // It survives a restart of every store.
    drop(client);
    let mut cluster = cluster;
    cluster.restart_all().await;
    let client = coordinator(&cluster, 2);
    let read = client
        .get(b"b", client.timestamp().await.unwrap())
        .await
        .unwrap();
    assert_eq!(read.unwrap().value, b"kept");
    cluster.shutdown().await;
}

const ACCOUNTS: usize = 8;
const INITIAL: i64 = 100;

fn account(i: usize) -> Vec<u8> {
    format!("acct{i:02}").into_bytes()
}

fn balance(read: Option<tinykv::txn::mvcc::Version>) -> i64 {
    let version = read.expect("every account exists");
    String::from_utf8(version.value).unwrap().parse().unwrap()
}

/// Moves a random amount between two random accounts; answers whether it committed.
async fn transfer(client: &TxnClient, rng: &mut rand::rngs::StdRng) -> tinykv::Result<bool> {
    let from = rng.gen_range(0..ACCOUNTS);
    let to = (from + rng.gen_range(1..ACCOUNTS)) % ACCOUNTS;
    let amount = rng.gen_range(1..=20);
    let start = client.timestamp().await?;
    let a = balance(client.get(&account(from), start).await?);
    let b = balance(client.get(&account(to), start).await?);
    if a < amount {
        return Ok(false);
    }
    let writes = vec![
        put(&account(from), (a - amount).to_string().as_bytes()),
        put(&account(to), (b + amount).to_string().as_bytes()),
    ];
    client.commit(start, writes).await.map(|_| true)
}

/// The bank: transfers in transactions from every store, snapshot reads of every balance,
/// while a nemesis cuts stores off, moves leaders and splits regions. Every snapshot and
/// the end state must hold the initial total.
#[actix_rt::test]
async fn bank_transfers_keep_the_total_under_partitions_leader_moves_and_splits() {
    tinykv_integration::init_test_logging();
    let cluster = Cluster::start(3, RaftStoreConfig::for_tests()).await;
    let setup = coordinator(&cluster, 1);
    let start = setup.timestamp().await.unwrap();
    let opening = (0..ACCOUNTS)
        .map(|i| put(&account(i), INITIAL.to_string().as_bytes()))
        .collect();
    setup.commit(start, opening).await.unwrap();
    let total = INITIAL * ACCOUNTS as i64;

    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for worker in 0..4u64 {
        let client = coordinator(&cluster, 1 + worker % 3);
        let (stop, committed, failed) = (stop.clone(), committed.clone(), failed.clone());
        workers.push(actix_rt::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(worker);
            while !stop.load(Ordering::Relaxed) {
                match transfer(&client, &mut rng).await {
                    Ok(true) => {
                        committed.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(false) => {}
                    // A conflict, or a store cut off: the total holds either way.
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let reader = {
        let client = coordinator(&cluster, 2);
        let stop = stop.clone();
        actix_rt::spawn(async move {
            let mut snapshots = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let Ok(ts) = client.timestamp().await else {
                    continue;
                };
                let Ok(page) = client.scan(b"acct", b"acct~", ts, 100).await else {
                    continue;
                };
                assert_eq!(page.pairs.len(), ACCOUNTS, "a snapshot lost an account");
                let sum: i64 = page
                    .pairs
                    .iter()
                    .map(|(_, v)| String::from_utf8_lossy(&v.value).parse::<i64>().unwrap())
                    .sum();
                assert_eq!(sum, total, "a snapshot at {ts} saw a partial transfer");
                snapshots += 1;
            }
            snapshots
        })
    };

    // The nemesis, for a bounded time.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let stores = cluster.store_ids();
    let until = Instant::now() + Duration::from_secs(8);
    let mut splits = 0;
    while Instant::now() < until {
        match rng.gen_range(0..3) {
            0 => {
                let victim = stores[rng.gen_range(0..stores.len())];
                cluster
                    .network()
                    .add_filter(PartitionFilter::isolate(victim, stores.clone()));
                tokio::time::sleep(Duration::from_millis(rng.gen_range(200..800))).await;
                cluster.network().clear_filters();
            }
            1 => {
                let key = encode_key(&account(rng.gen_range(0..ACCOUNTS)));
                let region = cluster.region_for_key(&key).await;
                let target = region.peers[rng.gen_range(0..region.peers.len())];
                cluster.must_transfer_leader(region.id, target).await;
            }
            _ if splits < 4 => {
                let key = encode_key(&account(rng.gen_range(1..ACCOUNTS)));
                let region = cluster.region_for_key(&key).await;
                if region.start_key != key {
                    cluster.must_split(region.id, &[&key]).await;
                    splits += 1;
                }
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let snapshots = reader.await.unwrap();
    let final_read = setup
        .scan(b"acct", b"acct~", setup.timestamp().await.unwrap(), 100)
        .await
        .unwrap();
    let balances: HashMap<Vec<u8>, i64> = final_read
        .pairs
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.value).unwrap().parse().unwrap()))
        .collect();
    assert_eq!(balances.len(), ACCOUNTS);
    assert_eq!(balances.values().sum::<i64>(), total);
    let committed = committed.load(Ordering::Relaxed);
    tracing::info!(
        committed,
        failed = failed.load(Ordering::Relaxed),
        snapshots,
        splits,
        "bank done"
    );
    assert!(committed > 20, "only {committed} transfers committed");
    assert!(snapshots > 5, "only {snapshots} snapshots were read");
    cluster.shutdown().await;
}

/// Runs garbage-collection passes below `safe_point` over every region of the
/// transactional range, through store 1's service; answers the deletions.
async fn collect_everything(cluster: &Cluster, safe_point: u64) -> tinykv::Result<u64> {
    let mut deleted = 0;
    let mut start = Vec::new();
    loop {
        let request = TxnRequest {
            command: Some(Command::Gc(GcRequest {
                safe_point,
                start_key: start.clone(),
                limit: 1,
                ..Default::default()
            })),
        };
        let KvOutcome::Txn(response) = cluster.service(1).execute(KvOp::Txn(request)).await? else {
            panic!("not a transactional answer")
        };
        let Some(Answer::Gc(pass)) = response.answer else {
            panic!("{response:?}")
        };
        deleted += pass.deleted;
        if pass.more {
            start = pass.next_key;
        } else if response.region_end.is_empty()
            || response.region_end.as_slice() >= tinykv::txn::keys::TXN_KEYS_END
        {
            return Ok(deleted);
        } else {
            start = tinykv::txn::keys::decode_key(&response.region_end).unwrap_or_default();
        }
    }
}

/// Garbage collection across regions: abandoned locks below the safe point are resolved
/// first, old versions go from every replica, the newest stay readable, and what could
/// reach behind the window (an old read, an old transaction, a safe point too recent) is
/// refused.
#[actix_rt::test]
async fn garbage_collection_keeps_what_reads_can_see_and_refuses_what_reaches_behind_it() {
    tinykv_integration::init_test_logging();
    // Long enough that a two-region commit on a busy CI machine stays inside it.
    let window = Duration::from_secs(3);
    let cluster = Cluster::start_with_txn_max_age(3, RaftStoreConfig::for_tests(), window).await;
    let first = cluster.region_for_key(&encode_key(b"a")).await;
    cluster.must_split(first.id, &[&encode_key(b"m")]).await;
    let client = coordinator(&cluster, 1);
    let mut commits = Vec::new();
    for round in 0..3 {
        let start = client.timestamp().await.unwrap();
        let value = format!("v{round}");
        let writes = vec![put(b"b", value.as_bytes()), put(b"x", value.as_bytes())];
        commits.push((start, client.commit(start, writes).await.unwrap()));
    }
    // An abandoned transaction's lock, long expired by the time the safe point passes it.
    let abandoned = client.timestamp().await.unwrap();
    prewrite_only(&cluster, &[b"y"], b"never", abandoned, 100).await;

    // The window passes (the point of this test is the clock): everything above is now
    // older than a safe point may be.
    let safe_point = client.timestamp().await.unwrap();
    tokio::time::sleep(window + Duration::from_millis(200)).await;
    let resolved = client.resolve_locks_below(safe_point).await.unwrap();
    assert_eq!(resolved, 1, "the abandoned lock is resolved first");
    let deleted = collect_everything(&cluster, safe_point).await.unwrap();
    // Two keys, two old versions each (record and value), and the rollback of y.
    assert_eq!(deleted, 2 * 2 * 2 + 1);
    assert_eq!(collect_everything(&cluster, safe_point).await.unwrap(), 0);
    let now = client.timestamp().await.unwrap();
    for key in [&b"b"[..], b"x"] {
        let read = client.get(key, now).await.unwrap().unwrap();
        assert_eq!(
            (read.value.as_slice(), read.commit_ts),
            (&b"v2"[..], commits[2].1)
        );
        // Every replica dropped the old versions, and kept the newest.
        for store in cluster.store_ids() {
            for (start, commit) in &commits[..2] {
                let old = tinykv::txn::keys::encode_versioned(key, *commit);
                cluster
                    .wait_engine_value(store, tinykv_actors::Cf::Write, &old, None)
                    .await;
                let value = tinykv::txn::keys::encode_versioned(key, *start);
                cluster
                    .wait_engine_value(store, tinykv_actors::Cf::Default, &value, None)
                    .await;
            }
            let newest = tinykv::txn::keys::encode_versioned(key, commits[2].1);
            assert!(cluster
                .engine_get(store, tinykv_actors::Cf::Write, &newest)
                .is_some());
        }
    }
    assert_eq!(client.get(b"y", now).await.unwrap(), None);

    // Reads and transactions behind the window are refused; so is a safe point inside it.
    let err = client.get(b"b", commits[1].1).await.unwrap_err();
    assert_eq!(err.code(), "ts_too_old");
    let err = client
        .commit(commits[1].0, vec![put(b"b", b"late")])
        .await
        .unwrap_err();
    assert_eq!(err.code(), "txn_aborted", "{err}");
    let err = collect_everything(&cluster, now).await.unwrap_err();
    assert_eq!(err.code(), "invalid_safe_point");
    assert_eq!(
        client
            .get(b"b", client.timestamp().await.unwrap())
            .await
            .unwrap()
            .unwrap()
            .value,
        b"v2"
    );
    cluster.shutdown().await;
}

/// Conditions checked by the prewrites themselves, in every region they touch: a
/// condition that fails in the second region leaves nothing behind in the first.
#[actix_rt::test]
async fn prewrites_check_conditions_in_every_region_and_read_at_the_start() {
    use tinykv::txn::client::Checked;
    use tinykv::txn::conditions::{CompareOp, Condition, Target};

    tinykv_integration::init_test_logging();
    let cluster = split_cluster().await;
    let client = coordinator(&cluster, 2);
    let start = client.timestamp().await.unwrap();
    let v1 = client
        .commit(start, vec![put(b"b", b"1"), put(b"x", b"1")])
        .await
        .unwrap();
    let cond = |key: &[u8], version| Condition {
        key: key.to_vec(),
        op: CompareOp::Eq,
        target: Target::Version(version),
    };
    let lock = |key: &[u8]| TxnWrite::Lock { key: key.to_vec() };
    // b holds (version v1), x does not (it is at v1, not 0): nothing is written.
    let start = client.timestamp().await.unwrap();
    let checked = client
        .commit_if(
            start,
            vec![put(b"b", b"2"), lock(b"x")],
            &[cond(b"b", v1), cond(b"x", 0)],
            &[b"x".to_vec()],
        )
        .await
        .unwrap();
    assert_eq!(checked, Checked::ConditionFailed);
    let now = client.timestamp().await.unwrap();
    assert_eq!(client.get(b"b", now).await.unwrap().unwrap().value, b"1");
    assert!(client
        .scan_locks(b"", b"", u64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
    // Both hold: committed, with x's version read at the start.
    let start = client.timestamp().await.unwrap();
    let checked = client
        .commit_if(
            start,
            vec![put(b"b", b"2"), lock(b"x")],
            &[cond(b"b", v1), cond(b"x", v1)],
            &[b"x".to_vec()],
        )
        .await
        .unwrap();
    let Checked::Committed { commit_ts, reads } = checked else {
        panic!("{checked:?}")
    };
    let x = reads[&b"x".to_vec()].as_ref().unwrap();
    assert_eq!((x.value.as_slice(), x.commit_ts), (&b"1"[..], v1));
    let now = client.timestamp().await.unwrap();
    let b = client.get(b"b", now).await.unwrap().unwrap();
    assert_eq!((b.value.as_slice(), b.commit_ts), (&b"2"[..], commit_ts));
    cluster.shutdown().await;
}
