//! Key layout of the `raft` and `meta` keyspaces.
//!
//! Client data lives in the `default`, `lock` and `write` keyspaces under the user's own
//! keys. Per-region state is keyed by the region id, big-endian so that a region's keys are
//! contiguous and sorted:
//!
//! | keyspace | key | value |
//! |---|---|---|
//! | raft | `0x01` region_id `0x01` log_index | raft-rs `Entry` |
//! | raft | `0x01` region_id `0x02` | `RaftLocalState` |
//! | meta | `0x02` region_id `0x03` | `RaftApplyState` |
//! | meta | `0x03` region_id `0x01` | `RegionLocalState` |
//! | meta | `0x04` `ident` | `StoreIdent` |
//! | meta | `0x04` `next_id` | the id allocator's high-water mark |
//! | meta | `0x05` region_id `0x01` apply_index | a session journal entry ([`crate::session`]) |
//!
//! In the client column families, the keys from byte `0xFF` on are reserved for the
//! cluster's own metadata (the placement driver's records, see [`RESERVED_KEYS_START`]).
//!
//! A region's session records (the outcomes of recent client writes, see
//! [`crate::session`]) are keyed by [`session_key`]: the written key in an
//! order-preserving, self-delimiting encoding ([`encode_ordered`]), then the request id.
//! Because the encoding keeps order and no encoded key is a prefix of another, every
//! record of a key in `[start, end)` lies in `[encode(start), encode(end))`
//! ([`session_range`]): the records of a key range are one range of record keys.

/// Where the reserved keys begin: every key of a client column family from here on
/// belongs to the cluster's metadata, which the placement driver keeps in the region
/// starting here (the *meta region*). Clients may not read or write them, and only a
/// command marked `metadata` may write them (see [`crate::validation`]).
pub const RESERVED_KEYS_START: &[u8] = b"\xff";

/// Whether `key` is one of the reserved keys.
pub fn is_reserved_key(key: &[u8]) -> bool {
    key.starts_with(RESERVED_KEYS_START)
}

/// Prefix of raft log entries and raft state.
const RAFT_PREFIX: u8 = 0x01;
const APPLY_STATE_PREFIX: u8 = 0x02;
const REGION_STATE_PREFIX: u8 = 0x03;
const STORE_PREFIX: u8 = 0x04;
const SESSION_JOURNAL_PREFIX: u8 = 0x05;
const MERGED_SOURCE_PREFIX: u8 = 0x06;

const RAFT_LOG_SUFFIX: u8 = 0x01;
const RAFT_STATE_SUFFIX: u8 = 0x02;
const APPLY_STATE_SUFFIX: u8 = 0x03;
const REGION_STATE_SUFFIX: u8 = 0x01;
const SESSION_JOURNAL_SUFFIX: u8 = 0x01;
const MERGED_SOURCE_SUFFIX: u8 = 0x01;

/// Key of the store's identity in the meta keyspace.
pub const STORE_IDENT_KEY: &[u8] = &[STORE_PREFIX, b'i', b'd', b'e', b'n', b't'];

/// Key under which stores of earlier versions kept their own id allocator's high-water
/// mark (ids now come from the placement driver). Nothing reads or writes it any more;
/// it is named so that no new record takes the key.
pub const LEGACY_ID_ALLOC_KEY: &[u8] = &[STORE_PREFIX, b'n', b'e', b'x', b't', b'_', b'i', b'd'];

fn region_key(prefix: u8, region_id: u64, suffix: u8) -> Vec<u8> {
    let mut key = Vec::with_capacity(18);
    key.push(prefix);
    key.extend_from_slice(&region_id.to_be_bytes());
    key.push(suffix);
    key
}

/// Key of the raft log entry `index` of `region_id`.
pub fn raft_log_key(region_id: u64, index: u64) -> Vec<u8> {
    let mut key = region_key(RAFT_PREFIX, region_id, RAFT_LOG_SUFFIX);
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// Prefix shared by every raft log entry of `region_id`.
pub fn raft_log_prefix(region_id: u64) -> Vec<u8> {
    region_key(RAFT_PREFIX, region_id, RAFT_LOG_SUFFIX)
}

/// Extracts the log index from a key made by [`raft_log_key`].
pub fn raft_log_index(key: &[u8]) -> u64 {
    let tail: [u8; 8] = key[key.len() - 8..]
        .try_into()
        .expect("8-byte index suffix");
    u64::from_be_bytes(tail)
}

/// Key of the `RaftLocalState` of `region_id`.
pub fn raft_state_key(region_id: u64) -> Vec<u8> {
    region_key(RAFT_PREFIX, region_id, RAFT_STATE_SUFFIX)
}

/// Key of the `RaftApplyState` of `region_id`.
pub fn apply_state_key(region_id: u64) -> Vec<u8> {
    region_key(APPLY_STATE_PREFIX, region_id, APPLY_STATE_SUFFIX)
}

/// Key of the `RegionLocalState` of `region_id`.
pub fn region_state_key(region_id: u64) -> Vec<u8> {
    region_key(REGION_STATE_PREFIX, region_id, REGION_STATE_SUFFIX)
}

/// Key of the session journal entry of `region_id` written at apply index `index`.
pub fn session_journal_key(region_id: u64, index: u64) -> Vec<u8> {
    let mut key = region_key(SESSION_JOURNAL_PREFIX, region_id, SESSION_JOURNAL_SUFFIX);
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// The apply index of a key made by [`session_journal_key`] (0 for a key too short to be
/// one).
pub fn session_journal_index(key: &[u8]) -> u64 {
    key.len()
        .checked_sub(8)
        .and_then(|at| key[at..].try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

/// The range holding every session journal entry of `region_id`.
pub fn session_journal_range(region_id: u64) -> (Vec<u8>, Vec<u8>) {
    (
        session_journal_key(region_id, 0),
        region_key(
            SESSION_JOURNAL_PREFIX,
            region_id,
            SESSION_JOURNAL_SUFFIX + 1,
        ),
    )
}

/// Key of the record that region `source` was merged into region `target` (the source
/// as its PrepareMerge left it).
pub fn merged_source_key(target: u64, source: u64) -> Vec<u8> {
    let mut key = region_key(MERGED_SOURCE_PREFIX, target, MERGED_SOURCE_SUFFIX);
    key.extend_from_slice(&source.to_be_bytes());
    key
}

/// The range holding every record of a region merged into `target`.
pub fn merged_source_range(target: u64) -> (Vec<u8>, Vec<u8>) {
    (
        region_key(MERGED_SOURCE_PREFIX, target, MERGED_SOURCE_SUFFIX),
        region_key(MERGED_SOURCE_PREFIX, target, MERGED_SOURCE_SUFFIX + 1),
    )
}

/// Prefix shared by every `RegionLocalState` key; scanning it lists the store's regions.
pub const REGION_STATE_PREFIX_KEY: &[u8] = &[REGION_STATE_PREFIX];

/// Whether `key` is within `[start, end)`, an empty `end` meaning unbounded.
pub fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    key >= start && (end.is_empty() || key < end)
}

/// Bytes per group of [`encode_ordered`].
const ORDERED_GROUP: usize = 8;
/// Marker of a full group that more groups follow.
const ORDERED_FULL: u8 = 0xFF;

/// Appends `key` to `out` in the memcomparable encoding: groups of 8 bytes, the last padded
/// with zeros, each followed by a marker, `0xFF` for a full group that more follow and
/// `0xFF - padding` for the last one (a key whose length is a multiple of 8 ends with a
/// group of padding alone). Encoded keys sort as the keys do, and none is a prefix of
/// another.
pub fn encode_ordered(key: &[u8], out: &mut Vec<u8>) {
    out.reserve((key.len() / ORDERED_GROUP + 1) * (ORDERED_GROUP + 1));
    let mut chunks = key.chunks_exact(ORDERED_GROUP);
    for chunk in chunks.by_ref() {
        out.extend_from_slice(chunk);
        out.push(ORDERED_FULL);
    }
    let rest = chunks.remainder();
    let padding = ORDERED_GROUP - rest.len();
    out.extend_from_slice(rest);
    out.extend(std::iter::repeat_n(0u8, padding));
    out.push(ORDERED_FULL - padding as u8);
}

/// Reads a key written by [`encode_ordered`] at the start of `encoded`: the key, and the
/// bytes after its encoding; `None` if `encoded` does not start with a well-formed one.
pub fn decode_ordered(encoded: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut key = Vec::new();
    let mut rest = encoded;
    loop {
        if rest.len() < ORDERED_GROUP + 1 {
            return None;
        }
        let (group, tail) = rest.split_at(ORDERED_GROUP + 1);
        let marker = group[ORDERED_GROUP];
        if marker == ORDERED_FULL {
            key.extend_from_slice(&group[..ORDERED_GROUP]);
            rest = tail;
            continue;
        }
        let padding = (ORDERED_FULL - marker) as usize;
        if padding > ORDERED_GROUP
            || group[ORDERED_GROUP - padding..ORDERED_GROUP] != [0; 8][..padding]
        {
            return None;
        }
        key.extend_from_slice(&group[..ORDERED_GROUP - padding]);
        return Some((key, tail));
    }
}

/// Key of the session record of request `request_id` writing `key`.
pub fn session_key(key: &[u8], request_id: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + key.len() / 8 + 9 + request_id.len());
    encode_ordered(key, &mut out);
    out.extend_from_slice(request_id);
    out
}

/// The written key and request id of a session record's key; `None` if malformed.
pub fn parse_session_key(session_key: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    decode_ordered(session_key).filter(|(_, id)| !id.is_empty())
}

/// Where the session records of the keys in `[start, end)` lie (empty `end`: unbounded,
/// and so is the range returned).
pub fn session_range(start: &[u8], end: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut encoded_start = Vec::new();
    encode_ordered(start, &mut encoded_start);
    let mut encoded_end = Vec::new();
    if !end.is_empty() {
        encode_ordered(end, &mut encoded_end);
    }
    (encoded_start, encoded_end)
}

/// Where a region holding `key` may split instead: a key of the transactional range
/// (from byte `0xFE`, see the server's `txn::keys`) that carries a version after its
/// encoded client key is cut back to that client key, so that no key's lock and versions
/// ever lie in two regions (a read at a timestamp must find them all in one snapshot).
/// Other keys are split points as they are.
pub fn split_point(key: &[u8]) -> &[u8] {
    match key.strip_prefix(TXN_KEYS_PREFIX) {
        Some(encoded) => match decode_ordered(encoded) {
            Some((_, rest)) => &key[..key.len() - rest.len()],
            None => key,
        },
        None => key,
    }
}

/// The first byte of the transactional key range.
pub const TXN_KEYS_PREFIX: &[u8] = b"\xfe";

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(key: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_ordered(key, &mut out);
        out
    }

    #[test]
    fn ordered_encoding_keeps_order_and_round_trips() {
        let keys: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0],
            b"a".to_vec(),
            b"a\x00".to_vec(),
            b"a\x00\x00\x00\x00\x00\x00\x00".to_vec(),
            b"a\x00\x00\x00\x00\x00\x00\x00\x00".to_vec(),
            b"abcdefgh".to_vec(),
            b"abcdefgh\x00".to_vec(),
            b"abcdefghi".to_vec(),
            b"b".to_vec(),
            vec![0xff; 9],
        ];
        for pair in keys.windows(2) {
            assert!(pair[0] < pair[1], "test keys are sorted");
            assert!(encoded(&pair[0]) < encoded(&pair[1]), "{pair:?}");
        }
        for key in &keys {
            let mut bytes = encoded(key);
            assert_eq!(bytes.len() % 9, 0);
            bytes.extend_from_slice(b"id");
            let (decoded, rest) = decode_ordered(&bytes).unwrap();
            assert_eq!((&decoded, rest), (key, &b"id"[..]));
            for other in &keys {
                if other != key {
                    assert!(!bytes.starts_with(&encoded(other)), "{key:?} {other:?}");
                }
            }
        }
        for bad in [
            &b""[..],
            b"abc",
            b"\0\0\0\0\0\0\0\0\xf6",
            b"a\0\0\0\0\0\0\x01\xf9",
        ] {
            assert!(decode_ordered(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn session_records_lie_in_their_keys_range() {
        // A range ending right after the key: raw concatenation would fall outside it.
        let (start, end) = session_range(b"a", b"a\x00\x01");
        for (key, inside) in [
            (&b"a"[..], true),
            (b"a\x00", true),
            (b"a\x00\x01", false),
            (b"", false),
            (b"b", false),
        ] {
            let record = session_key(key, b"\xff\xff request");
            assert_eq!(in_range(&record, &start, &end), inside, "{key:?}");
            assert_eq!(parse_session_key(&record).unwrap().0, key);
        }
        let (start, end) = session_range(b"", b"");
        assert!(end.is_empty());
        assert!(in_range(&session_key(b"", b"x"), &start, &end));
        assert!(parse_session_key(&encoded(b"k")).is_none(), "no request id");
    }

    #[test]
    fn raft_log_keys_sort_by_region_then_index() {
        let a = raft_log_key(1, 255);
        let b = raft_log_key(1, 256);
        let c = raft_log_key(2, 1);
        assert!(a < b && b < c);
        assert_eq!(raft_log_index(&b), 256);
        assert!(b.starts_with(&raft_log_prefix(1)));
        assert!(!c.starts_with(&raft_log_prefix(1)));
        // The raft state of a region sorts after all of its log entries.
        assert!(raft_state_key(1) > raft_log_key(1, u64::MAX));
        assert!(raft_state_key(1) < raft_log_key(2, 0));
    }

    #[test]
    fn range_membership_treats_empty_end_as_infinity() {
        assert!(in_range(b"m", b"", b""));
        assert!(in_range(b"m", b"a", b""));
        assert!(in_range(b"a", b"a", b"b"));
        assert!(!in_range(b"b", b"a", b"b"));
        assert!(!in_range(b"", b"a", b""));
    }

    #[test]
    fn a_versioned_transactional_key_splits_before_its_versions() {
        let mut lock_key = TXN_KEYS_PREFIX.to_vec();
        encode_ordered(b"account", &mut lock_key);
        let mut versioned = lock_key.clone();
        versioned.extend_from_slice(&[0x80; 8]);
        assert_eq!(split_point(&versioned), lock_key.as_slice());
        assert_eq!(split_point(&lock_key), lock_key.as_slice());
        // Raw keys, and damaged transactional ones, are split points as they are.
        assert_eq!(split_point(b"raw"), b"raw");
        assert_eq!(split_point(b"\xfe\x01"), b"\xfe\x01");
    }
}
