//! Where transactional data lives: its own key range, and a version in every key.
//!
//! Transactions keep several versions of each key, so their keys cannot be the client's
//! keys as they are: the raw API (`/v1/kv`) would show a transaction's encoded versions,
//! locks and commit records as garbage, and a raw write could corrupt them. TiKV's API v2
//! separates the two by a prefix byte; so does TinyKV-rs. Every transactional key is
//! stored from [`TXN_KEYS_START`] (byte `0xFE`) on, a range the raw API refuses, as the
//! reserved range `0xFF` of the placement driver is refused. Regions split and move
//! across this range like any other.
//!
//! Within it, a client key `k` is written in an order-preserving, self-delimiting
//! encoding ([`tinykv_actors::keys::encode_ordered`]), so that the versions of `k` never
//! interleave with those of another key:
//!
//! | column family | key | value |
//! |---|---|---|
//! | `lock` | `0xFE` enc(k) | the [`Lock`](super::records::Lock) of the transaction writing `k` |
//! | `default` | `0xFE` enc(k) `!start_ts` | the value written by the transaction started at `start_ts` |
//! | `write` | `0xFE` enc(k) `!commit_ts` | the [`Write`](super::records::Write) record of a commit (or rollback) at `commit_ts` |
//!
//! Timestamps are stored inverted (`!ts`, big-endian), so a key's newest version sorts
//! first and "the newest version at or before `ts`" is the first key at or after
//! `0xFE` enc(k) `!ts`.

use tinykv_actors::keys::{decode_ordered, encode_ordered};

/// Where transactional keys begin (and raw client keys may not go).
pub const TXN_KEYS_START: &[u8] = tinykv_actors::keys::TXN_KEYS_PREFIX;

/// Where they end: the placement driver's reserved range begins.
pub const TXN_KEYS_END: &[u8] = tinykv_actors::keys::RESERVED_KEYS_START;

/// Whether `key` lies in the transactional range.
pub fn is_txn_key(key: &[u8]) -> bool {
    key.starts_with(TXN_KEYS_START)
}

/// The stored key of client key `key` without a version: its lock's key, and the prefix
/// of all its versions.
pub fn encode_key(key: &[u8]) -> Vec<u8> {
    let mut out = TXN_KEYS_START.to_vec();
    encode_ordered(key, &mut out);
    out
}

/// The stored key of version `ts` of client key `key` (in `default` or `write`).
pub fn encode_versioned(key: &[u8], ts: u64) -> Vec<u8> {
    let mut out = encode_key(key);
    out.extend_from_slice(&(!ts).to_be_bytes());
    out
}

/// The client key of a stored lock key; `None` if `stored` is not one.
pub fn decode_key(stored: &[u8]) -> Option<Vec<u8>> {
    let (key, rest) = decode_ordered(stored.strip_prefix(TXN_KEYS_START)?)?;
    rest.is_empty().then_some(key)
}

/// The client key and version of a stored versioned key; `None` if `stored` is not one.
pub fn decode_versioned(stored: &[u8]) -> Option<(Vec<u8>, u64)> {
    let (key, rest) = decode_ordered(stored.strip_prefix(TXN_KEYS_START)?)?;
    let inverted: [u8; 8] = rest.try_into().ok()?;
    Some((key, !u64::from_be_bytes(inverted)))
}

/// The stored range holding every version of `key` (and its lock): `[encode_key(key),
/// encode_key(key) + 0xFF...)`. As no encoded key is a prefix of another's, nothing else
/// falls in it.
pub fn versions_range(key: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let start = encode_key(key);
    let end = encode_versioned(key, 0);
    let mut end = end;
    // One past the oldest possible version (`!0` is all ones).
    end.push(0);
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_to_what_was_encoded() {
        for key in [&b""[..], b"a", b"12345678", b"123456789", b"\xff\x00\xfe"] {
            assert_eq!(decode_key(&encode_key(key)).as_deref(), Some(key));
            for ts in [0, 1, 42, u64::MAX] {
                let stored = encode_versioned(key, ts);
                assert_eq!(decode_versioned(&stored), Some((key.to_vec(), ts)));
                assert!(is_txn_key(&stored) && stored.as_slice() < TXN_KEYS_END);
                let (start, end) = versions_range(key);
                assert!(start <= stored && stored < end);
            }
        }
        assert_eq!(decode_key(b"raw"), None);
        assert_eq!(decode_versioned(&encode_key(b"k")), None, "no version");
        assert_eq!(decode_key(&encode_versioned(b"k", 1)), None, "a version");
    }

    #[test]
    fn newer_versions_sort_first_and_keys_do_not_interleave() {
        assert!(encode_versioned(b"k", 9) < encode_versioned(b"k", 3));
        assert!(encode_key(b"k") < encode_versioned(b"k", u64::MAX));
        // Every version of "a" sorts before any of "a\0" and of "ab".
        let (_, end_a) = versions_range(b"a");
        assert!(end_a <= encode_key(b"a\0"));
        assert!(end_a <= encode_key(b"ab"));
        assert!(encode_versioned(b"a", 0) < encode_versioned(b"ab", u64::MAX));
    }
}
