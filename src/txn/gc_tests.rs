use super::*;
use crate::txn::keys::encode_versioned;
use crate::txn::test_store::Store;

/// Runs garbage collection below `safe_point` over the whole store, `limit` keys a pass.
fn gc_all(store: &Store, safe_point: u64, limit: usize) -> usize {
    let mut start = Vec::new();
    let mut passes = 0;
    loop {
        let pass = collect(&store.snapshot(), &start, safe_point, limit).unwrap();
        store.engine.write(&pass.mutations, false).unwrap();
        passes += 1;
        match pass.next {
            Some(next) => start = next,
            None => return passes,
        }
    }
}

#[test]
fn reads_at_or_after_the_safe_point_see_the_same_after_collection() {
    let store = Store::new();
    // k: three puts, the last after the safe point.
    store.committed_put(b"k", b"v1", 10, 11);
    store.committed_put(b"k", b"v2", 20, 21);
    store.committed_put(b"k", b"v3", 60, 61);
    // d: put, then deleted before the safe point.
    store.committed_put(b"d", b"gone", 10, 11);
    store.committed(b"d", WriteKind::Delete, 30, 31);
    // r: a put, then a rollback and a lock-only record above it.
    store.committed_put(b"r", b"kept", 10, 11);
    store.committed(b"r", WriteKind::Rollback, 35, 35);
    store.committed(b"r", WriteKind::Lock, 36, 37);
    let reads = |store: &Store| -> Vec<Option<Vec<u8>>> {
        [40, 50, 61, 100]
            .iter()
            .flat_map(|&ts| [b"k", b"d", b"r"].map(|key| store.value_at(key, ts)))
            .collect()
    };
    let before = reads(&store);
    let passes = gc_all(&store, 50, 1);
    assert_eq!(passes, 3, "one key a pass");
    assert_eq!(reads(&store), before);
    // What is left: k's version at 21 (what the safe point sees) and at 61; r's put.
    let writes: Vec<Vec<u8>> = store.pairs(Cf::Write).into_iter().map(|(k, _)| k).collect();
    let expected = vec![
        encode_versioned(b"k", 61),
        encode_versioned(b"k", 21),
        encode_versioned(b"r", 11),
    ];
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(writes, expected_sorted);
    let values: Vec<Vec<u8>> = store
        .pairs(Cf::Default)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let mut expected_values = vec![
        encode_versioned(b"k", 60),
        encode_versioned(b"k", 20),
        encode_versioned(b"r", 10),
    ];
    expected_values.sort();
    assert_eq!(values, expected_values);
    // A second collection has nothing left to do.
    assert!(collect(&store.snapshot(), b"", 50, 100)
        .unwrap()
        .mutations
        .is_empty());
}

#[test]
fn locks_are_found_by_age_within_bounds() {
    let store = Store::new();
    store.locked(b"a", b"a", 10, WriteKind::Put);
    store.locked(b"b", b"a", 90, WriteKind::Put);
    store.locked(b"c", b"c", 20, WriteKind::Delete);
    let old = scan_locks(&store.snapshot(), b"", b"", 50, 10).unwrap();
    let keys: Vec<&[u8]> = old.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(keys, vec![&b"a"[..], b"c"]);
    assert_eq!(
        scan_locks(&store.snapshot(), b"", b"", 100, 1)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        scan_locks(&store.snapshot(), b"b", b"c", 100, 10)
            .unwrap()
            .len(),
        1
    );
}
