//! TinyKV's project 4A cases for the MVCC layer, over a real engine.

use super::*;
use crate::txn::test_store::Store;

fn lock(primary: &[u8], ts: u64) -> Lock {
    Lock {
        primary: primary.to_vec(),
        ts,
        ttl: 1000,
        kind: WriteKind::Put,
    }
}

#[test]
fn locks_are_put_read_and_deleted() {
    let store = Store::new();
    store.write(10, |txn| txn.put_lock(b"k", &lock(b"pk", 10)));
    let snapshot = store.snapshot();
    let txn = MvccTxn::new(&snapshot, 20);
    assert_eq!(txn.get_lock(b"k").unwrap(), Some(lock(b"pk", 10)));
    assert_eq!(txn.get_lock(b"other").unwrap(), None);
    store.write(10, |txn| txn.delete_lock(b"k"));
    let snapshot = store.snapshot();
    assert_eq!(MvccTxn::new(&snapshot, 20).get_lock(b"k").unwrap(), None);
}

#[test]
fn gathered_writes_are_not_read_back_before_they_are_written() {
    let store = Store::new();
    let snapshot = store.snapshot();
    let mut txn = MvccTxn::new(&snapshot, 5);
    txn.put_lock(b"k", &lock(b"k", 5));
    txn.put_value(b"k", b"v".to_vec());
    assert_eq!(txn.mutations().len(), 2);
    assert_eq!(txn.get_lock(b"k").unwrap(), None, "the snapshot's view");
}

#[test]
fn a_value_is_visible_from_its_commit_on() {
    let store = Store::new();
    store.committed_put(b"k", b"v", 10, 20);
    assert_eq!(store.value_at(b"k", 25).as_deref(), Some(&b"v"[..]));
    assert_eq!(store.value_at(b"k", 20).as_deref(), Some(&b"v"[..]));
    assert_eq!(store.value_at(b"k", 19), None, "too early");
    assert_eq!(store.value_at(b"k", 15), None, "between start and commit");
    assert_eq!(store.value_at(b"missing", 25), None);
    // Versions of other keys, before and after it, are not its versions.
    store.committed_put(b"j", b"x", 1, 2);
    store.committed_put(b"kk", b"y", 1, 2);
    assert_eq!(store.value_at(b"k", 19), None);
}

#[test]
fn each_reader_sees_the_newest_version_committed_at_or_before_it() {
    let store = Store::new();
    store.committed_put(b"k", b"old", 10, 20);
    store.committed_put(b"k", b"new", 30, 40);
    assert_eq!(store.value_at(b"k", 35).as_deref(), Some(&b"old"[..]));
    assert_eq!(store.value_at(b"k", 45).as_deref(), Some(&b"new"[..]));
    // A transaction started between the first's start and commit that commits first.
    store.committed_put(b"m", b"late", 10, 50);
    store.committed_put(b"m", b"early", 20, 30);
    assert_eq!(store.value_at(b"m", 40).as_deref(), Some(&b"early"[..]));
    assert_eq!(store.value_at(b"m", 60).as_deref(), Some(&b"late"[..]));
}

#[test]
fn a_delete_hides_older_versions_and_a_later_put_shows_again() {
    let store = Store::new();
    store.committed_put(b"k", b"v", 10, 20);
    store.committed(b"k", WriteKind::Delete, 30, 40);
    assert_eq!(store.value_at(b"k", 45), None);
    assert_eq!(store.value_at(b"k", 35).as_deref(), Some(&b"v"[..]));
    store.committed_put(b"k", b"again", 50, 60);
    assert_eq!(store.value_at(b"k", 65).as_deref(), Some(&b"again"[..]));
}

#[test]
fn rollbacks_and_lock_records_are_passed_over() {
    let store = Store::new();
    store.committed_put(b"k", b"v", 10, 20);
    store.committed(b"k", WriteKind::Rollback, 25, 25);
    store.committed(b"k", WriteKind::Lock, 26, 27);
    assert_eq!(store.value_at(b"k", 30).as_deref(), Some(&b"v"[..]));
}

#[test]
fn current_and_most_recent_writes() {
    let store = Store::new();
    store.committed_put(b"k", b"a", 10, 20);
    store.committed_put(b"k", b"b", 30, 40);
    store.committed(b"k", WriteKind::Rollback, 50, 50);
    let snapshot = store.snapshot();
    let put = |start_ts| Write {
        start_ts,
        kind: WriteKind::Put,
    };
    assert_eq!(
        MvccTxn::new(&snapshot, 10).current_write(b"k").unwrap(),
        Some((put(10), 20))
    );
    assert_eq!(
        MvccTxn::new(&snapshot, 30).current_write(b"k").unwrap(),
        Some((put(30), 40))
    );
    assert_eq!(
        MvccTxn::new(&snapshot, 35).current_write(b"k").unwrap(),
        None
    );
    let rollback = Write {
        start_ts: 50,
        kind: WriteKind::Rollback,
    };
    assert_eq!(
        MvccTxn::new(&snapshot, 50).current_write(b"k").unwrap(),
        Some((rollback, 50))
    );
    for ts in [1, 45, 100] {
        assert_eq!(
            MvccTxn::new(&snapshot, ts).most_recent_write(b"k").unwrap(),
            Some((rollback, 50))
        );
    }
    assert_eq!(
        MvccTxn::new(&snapshot, 1).most_recent_write(b"x").unwrap(),
        None
    );
}

#[test]
fn a_region_snapshot_reads_only_its_region() {
    let store = Store::new();
    for key in [b"a", b"b", b"c"] {
        store.committed_put(key, key, 10, 20);
    }
    let region = tinykv_proto::metapb::Region {
        id: 7,
        start_key: encode_key(b"b"),
        end_key: encode_key(b"c"),
        ..Default::default()
    };
    let snapshot = tinykv_actors::msg::RegionSnapshot {
        region,
        snapshot: store.snapshot(),
    };
    let txn = MvccTxn::new(&snapshot, 30);
    assert_eq!(txn.get_value(b"b").unwrap().as_deref(), Some(&b"b"[..]));
    for outside in [b"a", b"c"] {
        let err = txn.get_value(outside).unwrap_err();
        assert!(err.to_string().contains("not in region"), "{err}");
    }
    // A scan from inside stops at the region's end.
    let mut seen = 0;
    SnapshotRead::scan(&snapshot, Cf::Write, &encode_key(b"b"), b"", &mut |_, _| {
        seen += 1;
        true
    })
    .unwrap();
    assert_eq!(seen, 1);
}

#[test]
fn damaged_records_are_errors_not_answers() {
    let store = Store::new();
    store
        .engine
        .write(
            &[
                Mutation::Put {
                    cf: Cf::Lock,
                    key: encode_key(b"k"),
                    value: b"garbage".to_vec(),
                },
                Mutation::Put {
                    cf: Cf::Write,
                    key: encode_versioned(b"k", 5),
                    value: b"\x09".to_vec(),
                },
            ],
            false,
        )
        .unwrap();
    // A committed put whose value is missing.
    store.committed(b"j", WriteKind::Put, 1, 2);
    let snapshot = store.snapshot();
    let txn = MvccTxn::new(&snapshot, 10);
    assert!(txn.get_lock(b"k").is_err());
    assert!(txn.get_value(b"k").is_err());
    assert!(txn.most_recent_write(b"k").is_err());
    assert!(txn.get_value(b"j").is_err());
}
