//! TinyKV's project 4B and 4C cases for the commands, over a real engine.

use super::*;
use crate::pd::tso::compose;
use crate::txn::keys::{encode_key, encode_versioned};
use crate::txn::test_store::Store;

fn put(key: &[u8], value: &[u8]) -> TxnWrite {
    TxnWrite::Put {
        key: key.to_vec(),
        value: value.to_vec(),
    }
}

fn keys(keys: &[&[u8]]) -> Vec<Vec<u8>> {
    keys.iter().map(|k| k.to_vec()).collect()
}

fn write_at(store: &Store, key: &[u8], commit_ts: u64) -> Option<Write> {
    store.read(u64::MAX, |txn| {
        txn.most_recent_write(key)
            .unwrap()
            .filter(|(_, ts)| *ts == commit_ts)
            .map(|(w, _)| w)
    })
}

fn lock_of(store: &Store, key: &[u8]) -> Option<Lock> {
    store.read(0, |txn| txn.get_lock(key).unwrap())
}

// ---- get (4B)

#[test]
fn get_reads_the_version_at_its_timestamp() {
    let store = Store::new();
    store.committed_put(b"k", b"v1", 10, 20);
    store.committed_put(b"k", b"v2", 30, 40);
    store.committed(b"k", WriteKind::Delete, 50, 60);
    let at = |ts| store.read(ts, |txn| get(txn, b"k").unwrap().unwrap());
    assert_eq!(at(5), None, "nothing yet");
    assert_eq!(at(25).as_deref(), Some(&b"v1"[..]));
    assert_eq!(at(45).as_deref(), Some(&b"v2"[..]));
    assert_eq!(at(65), None, "deleted");
    assert_eq!(store.read(100, |txn| get(txn, b"none").unwrap()), Ok(None));
}

#[test]
fn get_is_stopped_by_an_older_lock_only() {
    let store = Store::new();
    store.committed_put(b"k", b"v", 10, 20);
    store.locked(b"k", b"pk", 200, WriteKind::Put);
    let before = store.read(55, |txn| get(txn, b"k").unwrap());
    assert_eq!(before.unwrap().as_deref(), Some(&b"v"[..]));
    let after = store.read(300, |txn| get(txn, b"k").unwrap());
    assert_eq!(
        after,
        Err(KeyError::Locked {
            key: b"k".to_vec(),
            primary: b"pk".to_vec(),
            lock_ts: 200,
            ttl: 1000,
        })
    );
}

// ---- prewrite (4B)

#[test]
fn an_empty_prewrite_writes_nothing() {
    let store = Store::new();
    let errors = store.write(100, |txn| prewrite(txn, &[], b"pk", 1000).unwrap());
    assert!(errors.is_empty());
    assert!(store.pairs(Cf::Lock).is_empty() && store.pairs(Cf::Default).is_empty());
}

#[test]
fn a_prewrite_stores_the_value_and_a_lock_naming_the_primary() {
    let store = Store::new();
    let errors = store.write(100, |txn| {
        prewrite(txn, &[put(b"k", b"v")], b"k", 1000).unwrap()
    });
    assert!(errors.is_empty());
    assert_eq!(
        store.pairs(Cf::Default),
        vec![(encode_versioned(b"k", 100), b"v".to_vec())]
    );
    assert_eq!(
        lock_of(&store, b"k"),
        Some(Lock {
            primary: b"k".to_vec(),
            ts: 100,
            ttl: 1000,
            kind: WriteKind::Put,
        })
    );
    assert!(store.pairs(Cf::Write).is_empty());
}

#[test]
fn a_prewrite_meets_another_transactions_lock() {
    let store = Store::new();
    store.write(100, |txn| {
        prewrite(txn, &[put(b"k", b"a")], b"k", 1000).unwrap()
    });
    let snapshot = store.snapshot();
    let mut txn = MvccTxn::new(&snapshot, 101);
    let errors = prewrite(&mut txn, &[put(b"k", b"b")], b"k", 1000).unwrap();
    assert_eq!(errors.len(), 1);
    assert!(matches!(&errors[0], KeyError::Locked { lock_ts: 100, .. }));
    // The caller drops the transaction's writes; the first lock stands.
    assert_eq!(lock_of(&store, b"k").unwrap().ts, 100);
}

#[test]
fn a_prewrite_conflicts_with_a_write_committed_since_it_started() {
    let store = Store::new();
    store.committed_put(b"k", b"old", 90, 101);
    let errors = store.read(100, |txn| {
        let snapshot = txn.snapshot();
        prewrite(
            &mut MvccTxn::new(snapshot, 100),
            &[put(b"k", b"v")],
            b"k",
            10,
        )
        .unwrap()
    });
    assert_eq!(
        errors,
        vec![KeyError::Conflict {
            key: b"k".to_vec(),
            start_ts: 100,
            conflict_ts: 101,
        }]
    );
    // A write committed before the start is no conflict.
    let errors = store.write(102, |txn| {
        prewrite(txn, &[put(b"k", b"v")], b"k", 10).unwrap()
    });
    assert!(errors.is_empty());
}

#[test]
fn a_prewrite_repeated_or_of_several_keys_locks_each_once() {
    let store = Store::new();
    for _ in 0..2 {
        let errors = store.write(100, |txn| {
            let writes = [
                put(b"a", b"1"),
                TxnWrite::Delete { key: b"b".to_vec() },
                TxnWrite::Lock { key: b"c".to_vec() },
            ];
            prewrite(txn, &writes, b"a", 1000).unwrap()
        });
        assert!(errors.is_empty(), "{errors:?}");
    }
    let kinds: Vec<WriteKind> = [b"a", b"b", b"c"]
        .iter()
        .map(|k| lock_of(&store, *k).unwrap().kind)
        .collect();
    assert_eq!(kinds, [WriteKind::Put, WriteKind::Delete, WriteKind::Lock]);
    assert_eq!(
        store.pairs(Cf::Default).len(),
        1,
        "only the put has a value"
    );
}

// ---- one-phase commit

#[test]
fn a_one_phase_commit_writes_values_and_records_and_no_lock() {
    let store = Store::new();
    let writes = [
        put(b"a", b"1"),
        TxnWrite::Delete { key: b"b".to_vec() },
        TxnWrite::Lock { key: b"c".to_vec() },
    ];
    store.committed_put(b"b", b"old", 10, 20);
    // A prewrite of `a` whose answer was lost left its lock: the commit removes it.
    store.locked(b"a", b"a", 100, WriteKind::Put);
    store.write(100, |txn| commit_one_pc(txn, &writes, 110).unwrap());
    assert!(store.pairs(Cf::Lock).is_empty(), "no lock is left");
    assert_eq!(store.value_at(b"a", 110).as_deref(), Some(&b"1"[..]));
    assert_eq!(
        store.value_at(b"a", 109),
        None,
        "invisible before its commit"
    );
    assert_eq!(store.value_at(b"b", 110), None, "deleted at 110");
    assert_eq!(store.value_at(b"b", 109).as_deref(), Some(&b"old"[..]));
    let lock_record = write_at(&store, b"c", 110).expect("a lock-only record");
    assert_eq!(
        (lock_record.kind, lock_record.start_ts),
        (WriteKind::Lock, 100)
    );
    // A later transaction that started before 110 conflicts on each key.
    let errors = store.write(105, |txn| prewrite(txn, &writes, b"a", 1000).unwrap());
    assert_eq!(errors.len(), 3, "{errors:?}");
}

#[test]
fn a_transaction_finds_its_own_commit_but_not_a_rollback_or_anothers() {
    let store = Store::new();
    store.committed_put(b"k", b"v", 100, 110);
    store.committed_put(b"o", b"v", 90, 120);
    store.committed(b"r", WriteKind::Rollback, 100, 100);
    let found = |key: &[u8]| store.read(100, |txn| committed_at(txn, key).unwrap());
    assert_eq!(found(b"k"), Some(110));
    assert_eq!(found(b"o"), None, "another transaction's commit");
    assert_eq!(found(b"r"), None, "a rollback is no commit");
    assert_eq!(found(b"none"), None);
}

// ---- commit (4B)

#[test]
fn a_commit_replaces_the_lock_with_a_record_and_keeps_the_value() {
    let store = Store::new();
    store.write(100, |txn| {
        prewrite(txn, &[put(b"k", b"v")], b"k", 1000).unwrap()
    });
    let error = store.write(100, |txn| commit(txn, &keys(&[b"k"]), 110).unwrap());
    assert_eq!(error, None);
    assert_eq!(lock_of(&store, b"k"), None);
    assert_eq!(
        write_at(&store, b"k", 110),
        Some(Write {
            start_ts: 100,
            kind: WriteKind::Put,
        })
    );
    assert_eq!(store.value_at(b"k", 110).as_deref(), Some(&b"v"[..]));
    assert_eq!(store.value_at(b"k", 109), None);
}

#[test]
fn committing_again_or_without_a_prewrite_changes_nothing() {
    let store = Store::new();
    store.write(100, |txn| {
        prewrite(txn, &[put(b"k", b"v")], b"k", 1000).unwrap()
    });
    store.write(100, |txn| commit(txn, &keys(&[b"k"]), 110).unwrap());
    let before = store.pairs(Cf::Write);
    let again = store.write(100, |txn| commit(txn, &keys(&[b"k", b"k"]), 110).unwrap());
    assert_eq!(again, None);
    assert_eq!(store.pairs(Cf::Write), before);
    let missing = store.write(200, |txn| commit(txn, &keys(&[b"never"]), 210).unwrap());
    assert_eq!(missing, None);
    assert_eq!(store.pairs(Cf::Write), before);
}

#[test]
fn a_commit_fails_after_a_rollback_or_under_another_lock() {
    let store = Store::new();
    store.write(100, |txn| {
        prewrite(txn, &[put(b"k", b"v")], b"k", 1000).unwrap()
    });
    store.write(100, |txn| rollback(txn, &keys(&[b"k"])).unwrap());
    let error = store.write(100, |txn| commit(txn, &keys(&[b"k"]), 110).unwrap());
    assert!(matches!(error, Some(KeyError::Abort(_))), "{error:?}");

    store.write(200, |txn| {
        prewrite(txn, &[put(b"j", b"v")], b"j", 1000).unwrap()
    });
    let error = store.write(150, |txn| commit(txn, &keys(&[b"j"]), 160).unwrap());
    assert!(matches!(error, Some(KeyError::Retryable(_))), "{error:?}");
    assert_eq!(
        lock_of(&store, b"j").unwrap().ts,
        200,
        "the other lock stays"
    );
}

// ---- rollback (4C)

#[test]
fn a_rollback_removes_lock_and_value_and_leaves_a_record() {
    let store = Store::new();
    store.write(100, |txn| {
        prewrite(txn, &[put(b"k", b"v")], b"k", 1000).unwrap()
    });
    let error = store.write(100, |txn| rollback(txn, &keys(&[b"k", b"k"])).unwrap());
    assert_eq!(error, None);
    assert_eq!(lock_of(&store, b"k"), None);
    assert!(store.pairs(Cf::Default).is_empty());
    assert_eq!(
        write_at(&store, b"k", 100),
        Some(Write {
            start_ts: 100,
            kind: WriteKind::Rollback,
        })
    );
    // Rolling back again is a no-op; a late prewrite of the transaction now conflicts.
    let before = store.pairs(Cf::Write);
    store.write(100, |txn| rollback(txn, &keys(&[b"k"])).unwrap());
    assert_eq!(store.pairs(Cf::Write), before);
    let late = store.write(100, |txn| {
        prewrite(txn, &[put(b"k", b"v")], b"k", 10).unwrap()
    });
    assert!(matches!(late[..], [KeyError::Conflict { .. }]), "{late:?}");
}

#[test]
fn a_rollback_without_a_prewrite_still_leaves_a_record_and_spares_other_locks() {
    let store = Store::new();
    store.write(100, |txn| rollback(txn, &keys(&[b"k"])).unwrap());
    assert_eq!(
        write_at(&store, b"k", 100).unwrap().kind,
        WriteKind::Rollback
    );
    store.locked(b"j", b"j", 200, WriteKind::Put);
    store.write(150, |txn| rollback(txn, &keys(&[b"j"])).unwrap());
    assert_eq!(lock_of(&store, b"j").unwrap().ts, 200);
    assert_eq!(
        write_at(&store, b"j", 150).unwrap().kind,
        WriteKind::Rollback
    );
}

#[test]
fn a_committed_transaction_cannot_roll_back() {
    let store = Store::new();
    store.committed_put(b"k", b"v", 100, 110);
    let error = store.write(100, |txn| rollback(txn, &keys(&[b"k"])).unwrap());
    assert!(matches!(error, Some(KeyError::Abort(_))), "{error:?}");
}

// ---- check_txn_status (4C)

#[test]
fn an_expired_primary_lock_is_rolled_back_and_a_live_one_kept() {
    let store = Store::new();
    let start = compose(1_000_000, 5);
    store.write(start, |txn| {
        prewrite(txn, &[put(b"pk", b"v")], b"pk", 100).unwrap()
    });
    let live = store.write(start, |txn| {
        check_txn_status(txn, b"pk", compose(1_000_050, 0)).unwrap()
    });
    assert_eq!(
        live,
        TxnStatus {
            lock_ttl: 100,
            commit_ts: 0,
            action: StatusAction::NoAction,
        }
    );
    assert!(lock_of(&store, b"pk").is_some());
    let expired = store.write(start, |txn| {
        check_txn_status(txn, b"pk", compose(1_000_100, 0)).unwrap()
    });
    assert_eq!(expired.action, StatusAction::TtlExpireRollback);
    assert_eq!(lock_of(&store, b"pk"), None);
    assert!(store.pairs(Cf::Default).is_empty());
    assert_eq!(
        write_at(&store, b"pk", start).unwrap().kind,
        WriteKind::Rollback
    );
}

#[test]
fn a_finished_transactions_status_is_read_from_its_record() {
    let store = Store::new();
    store.committed_put(b"pk", b"v", 100, 120);
    let committed = store.write(100, |txn| check_txn_status(txn, b"pk", 500).unwrap());
    assert_eq!(
        (committed.commit_ts, committed.action),
        (120, StatusAction::NoAction)
    );
    store.committed(b"rb", WriteKind::Rollback, 100, 100);
    let rolled_back = store.write(100, |txn| check_txn_status(txn, b"rb", 500).unwrap());
    assert_eq!(
        (rolled_back.commit_ts, rolled_back.action),
        (0, StatusAction::NoAction)
    );
    // Neither lock nor record: rolled back now, so that a late prewrite fails.
    let missing = store.write(100, |txn| check_txn_status(txn, b"none", 500).unwrap());
    assert_eq!(missing.action, StatusAction::LockNotExistRollback);
    assert_eq!(
        write_at(&store, b"none", 100).unwrap().kind,
        WriteKind::Rollback
    );
}

// ---- resolve_lock (4C)

#[test]
fn resolving_commits_or_rolls_back_every_lock_of_one_transaction() {
    let store = Store::new();
    store.write(100, |txn| {
        prewrite(txn, &[put(b"a", b"1"), put(b"b", b"2")], b"a", 1000).unwrap()
    });
    store.locked(b"c", b"c", 200, WriteKind::Put);
    assert_eq!(
        store.write(100, |txn| resolve_lock(txn, b"", b"", 0).unwrap()),
        None
    );
    assert_eq!(lock_of(&store, b"a"), None);
    assert_eq!(lock_of(&store, b"b"), None);
    assert_eq!(
        lock_of(&store, b"c").unwrap().ts,
        200,
        "another transaction's"
    );
    assert_eq!(
        write_at(&store, b"b", 100).unwrap().kind,
        WriteKind::Rollback
    );

    assert_eq!(
        store.write(200, |txn| resolve_lock(txn, b"", b"", 210).unwrap()),
        None
    );
    assert_eq!(
        store.value_at(b"c", 210).as_deref(),
        Some(&b"value of 200"[..])
    );
    // Nothing left to resolve: nothing happens.
    let before = store.pairs(Cf::Write);
    assert_eq!(
        store.write(300, |txn| resolve_lock(txn, b"", b"", 310).unwrap()),
        None
    );
    assert_eq!(store.pairs(Cf::Write), before);
}

// ---- scan (4C)

#[test]
fn a_scan_answers_the_visible_keys_in_order_up_to_its_limit() {
    let store = Store::new();
    for (i, key) in [b"a", b"b", b"c", b"d", b"e"].iter().enumerate() {
        store.committed_put(*key, format!("v{i}").as_bytes(), 10, 20);
    }
    store.committed(b"c", WriteKind::Delete, 30, 40);
    store.committed_put(b"b", b"new", 30, 40);
    store.committed_put(b"f", b"later", 50, 200);
    let scan_at = |ts, start: &[u8], limit| {
        store.read(ts, |txn| {
            scan(txn, start, b"", limit)
                .unwrap()
                .into_iter()
                .map(|(k, v)| {
                    (
                        String::from_utf8(k).unwrap(),
                        String::from_utf8(v.unwrap().value).unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        })
    };
    let pairs = |list: &[(&str, &str)]| {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        scan_at(100, b"", 10),
        pairs(&[("a", "v0"), ("b", "new"), ("d", "v3"), ("e", "v4")])
    );
    assert_eq!(
        scan_at(25, b"", 10),
        pairs(&[
            ("a", "v0"),
            ("b", "v1"),
            ("c", "v2"),
            ("d", "v3"),
            ("e", "v4")
        ])
    );
    assert_eq!(scan_at(100, b"b", 2), pairs(&[("b", "new"), ("d", "v3")]));
    assert!(scan_at(100, b"", 0).is_empty());
    assert!(scan_at(5, b"", 10).is_empty());
    assert_eq!(
        scan_at(300, b"e", 10),
        pairs(&[("e", "v4"), ("f", "later")])
    );
    // The end bound is exclusive.
    let bounded = store.read(100, |txn| scan(txn, b"a", b"d", 10).unwrap().len());
    assert_eq!(bounded, 2);
}

#[test]
fn a_scan_answers_a_lock_in_its_way_for_that_key() {
    let store = Store::new();
    store.committed_put(b"a", b"1", 10, 20);
    store.locked(b"b", b"b", 50, WriteKind::Put);
    let scanned = store.read(100, |txn| scan(txn, b"", b"", 10).unwrap());
    assert_eq!(scanned.len(), 2);
    let a = Version {
        value: b"1".to_vec(),
        commit_ts: 20,
    };
    assert_eq!(scanned[0], (b"a".to_vec(), Ok(a.clone())));
    assert!(matches!(&scanned[1], (key, Err(KeyError::Locked { lock_ts: 50, .. })) if key == b"b"));
    // A lock of a transaction started after the scan's timestamp is not in its way.
    let before = store.read(40, |txn| scan(txn, b"", b"", 10).unwrap());
    assert_eq!(before, vec![(b"a".to_vec(), Ok(a))]);
    // Lock keys are found from their own column family too.
    assert!(store
        .pairs(Cf::Lock)
        .iter()
        .any(|(k, _)| *k == encode_key(b"b")));
}
