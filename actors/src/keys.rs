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
//!
//! In the client column families, the keys from byte `0xFF` on are reserved for the
//! cluster's own metadata (the placement driver's records, see [`RESERVED_KEYS_START`]).

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

const RAFT_LOG_SUFFIX: u8 = 0x01;
const RAFT_STATE_SUFFIX: u8 = 0x02;
const APPLY_STATE_SUFFIX: u8 = 0x03;
const REGION_STATE_SUFFIX: u8 = 0x01;

/// Key of the store's identity in the meta keyspace.
pub const STORE_IDENT_KEY: &[u8] = &[STORE_PREFIX, b'i', b'd', b'e', b'n', b't'];

/// Key of the persisted id-allocator high-water mark in the meta keyspace.
pub const ID_ALLOC_KEY: &[u8] = &[STORE_PREFIX, b'n', b'e', b'x', b't', b'_', b'i', b'd'];

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

/// Prefix shared by every `RegionLocalState` key; scanning it lists the store's regions.
pub const REGION_STATE_PREFIX_KEY: &[u8] = &[REGION_STATE_PREFIX];

/// Whether `key` is within `[start, end)`, an empty `end` meaning unbounded.
pub fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    key >= start && (end.is_empty() || key < end)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
