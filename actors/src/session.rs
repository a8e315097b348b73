//! Write sessions: every client write applies at most once, however often it is proposed.
//!
//! A write whose answer is lost (a leader that crashed after proposing it, a connection
//! cut after sending it) may or may not have been applied. Retrying it blindly is wrong:
//! a put retried after someone else's later put would undo that put. So each client write
//! carries a [`WriteSession`]: a request id, the same on every attempt, and how long the
//! region must remember it. When the write applies, the ApplyFsm records its outcome under
//! the written key and the request id; a later copy of the same request (a retry, or a
//! duplicate proposal that commits after the first) finds the record and changes nothing,
//! answering [`WriteOutcome::Replayed`]. This is the client-session table of the Raft
//! dissertation (§6.3), keyed by request rather than by client.
//!
//! The table is part of the replicated state machine, so every decision it makes depends
//! only on the log:
//!
//! - **Records** live in the engine's `session` keyspace under
//!   [`keys::session_key`]`(key, request_id)`, so a region's records lie in its own range
//!   and travel with it: a split leaves each half the records of its keys, a snapshot
//!   carries them (see [`crate::snapshot`]), destroying a peer removes them. A record
//!   holds when it expires and a fingerprint of the write (operation, column family,
//!   value): the same id reused for a different write to the same key is refused
//!   ([`WriteOutcome::RequestIdReused`]) instead of being mistaken for a retry.
//! - **Expiry** is by age and by count. Before a command's writes are decided, records
//!   that expired before the command's newest `issued_ms` are dropped; after, while the
//!   region holds more than [`MAX_RECORDS`] records or [`MAX_RECORD_BYTES`] bytes of keys,
//!   the ones that expire first go. Both use only values from the log and the table, so
//!   every replica drops the same records at the same entry.
//! - **Memory.** The ApplyFsm keeps its region's table in memory, loaded from the engine
//!   when the peer starts ([`SessionTable::load`]) and from the snapshot's records when
//!   one is applied ([`SessionTable::from_pairs`]). Changes reach the engine as mutations
//!   in the same batch as the data and the apply state, so a restart finds exactly the
//!   table of the last applied entry.
//!
//! A request id is remembered for its `ttl_ms` (and while the region's bounds allow): a
//! copy arriving later than that applies again. The node gives every write the same TTL,
//! `api.idempotency_ttl_ms`, far longer than any retry the node itself makes.

use std::collections::{BTreeMap, BTreeSet};

use tinykv_proto::metapb;
use tinykv_proto::raft_cmdpb::{CmdType, Request, WriteOutcome, WriteSession};
use tinykv_proto::raft_serverpb::KeyValue;
use tracing::warn;

use crate::engine::{Cf, Engine, Mutation};
use crate::error::Result;
use crate::keys;

/// Most session records a region keeps; beyond, those expiring first are dropped.
pub const MAX_RECORDS: usize = 100_000;

/// Most bytes of record keys a region keeps; beyond, those expiring first are dropped.
pub const MAX_RECORD_BYTES: usize = 16 << 20;

/// Longest request id a write may carry.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// Longest key a write naming a session may have: its record's key (the key encoded, plus
/// the longest request id) must fit the engine's key limit.
pub const MAX_WRITTEN_KEY_BYTES: usize =
    ((crate::validation::MAX_KEY_BYTES - MAX_REQUEST_ID_BYTES) / 9 - 1) * 8 + 7;

/// Longest a write's outcome may be asked to be remembered: one week.
pub const MAX_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

/// Version byte of the encoded record value.
const RECORD_FORMAT: u8 = 1;

/// Bytes of an encoded record value: format, expiry, fingerprint.
const RECORD_BYTES: usize = 1 + 8 + 8;

/// What the table remembers of one applied write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    /// Unix milliseconds after which it may be dropped.
    expires_ms: u64,
    /// [`fingerprint`] of the write.
    fingerprint: u64,
}

impl Record {
    fn encode(self) -> Vec<u8> {
        let mut value = Vec::with_capacity(RECORD_BYTES);
        value.push(RECORD_FORMAT);
        value.extend_from_slice(&self.expires_ms.to_be_bytes());
        value.extend_from_slice(&self.fingerprint.to_be_bytes());
        value
    }

    fn decode(value: &[u8]) -> Option<Record> {
        if value.len() != RECORD_BYTES || value[0] != RECORD_FORMAT {
            return None;
        }
        Some(Record {
            expires_ms: u64::from_be_bytes(value[1..9].try_into().ok()?),
            fingerprint: u64::from_be_bytes(value[9..17].try_into().ok()?),
        })
    }
}

/// Whether `pair` is a well-formed session record (a parsable key and value); snapshots
/// are checked with it before they are written.
pub fn is_record(key: &[u8], value: &[u8]) -> bool {
    keys::parse_session_key(key).is_some() && Record::decode(value).is_some()
}

/// A fingerprint of what a write does, apart from its key (which is part of the record's
/// key): the operation, the column family and the value.
pub fn fingerprint(request: &Request) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&request.cmd_type.to_be_bytes());
    let (cf, value): (&str, &[u8]) = match request.cmd_type() {
        CmdType::Put => request
            .put
            .as_ref()
            .map_or(("", &[]), |p| (p.cf.as_str(), p.value.as_slice())),
        CmdType::Delete => request
            .delete
            .as_ref()
            .map_or(("", &[]), |d| (d.cf.as_str(), &[])),
        _ => ("", &[]),
    };
    hasher.update(&(cf.len() as u64).to_be_bytes());
    hasher.update(cf.as_bytes());
    hasher.update(value);
    hasher.digest()
}

/// One region's table of recent write outcomes; see the module documentation.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SessionTable {
    records: BTreeMap<Vec<u8>, Record>,
    /// The same records ordered by expiry (ties by key), to drop the oldest first.
    by_expiry: BTreeSet<(u64, Vec<u8>)>,
    /// Bytes of the records' keys.
    key_bytes: usize,
}

impl SessionTable {
    /// The records of `region` in the engine; empty for a region without a range yet.
    pub fn load(engine: &Engine, region: &metapb::Region) -> Result<SessionTable> {
        let mut table = SessionTable::default();
        if region.peers.is_empty() {
            return Ok(table);
        }
        let (start, end) = keys::session_range(&region.start_key, &region.end_key);
        engine.scan(Cf::Session, &start, &end, |key, value| {
            table.insert_stored(key, value);
            true
        })?;
        Ok(table)
    }

    /// The table of a snapshot's session records.
    pub fn from_pairs(pairs: &[KeyValue]) -> SessionTable {
        let mut table = SessionTable::default();
        for kv in pairs {
            table.insert_stored(&kv.key, &kv.value);
        }
        table
    }

    fn insert_stored(&mut self, key: &[u8], value: &[u8]) {
        match Record::decode(value) {
            Some(record) if keys::parse_session_key(key).is_some() => {
                self.insert(key.to_vec(), record)
            }
            _ => warn!(?key, "ignoring a malformed session record"),
        }
    }

    /// How many records the table holds.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the table holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Forgets the records of keys from `split_key` on, which now belong to the region
    /// split off at it (their engine records stay: they are that region's).
    pub fn split_off(&mut self, split_key: &[u8]) {
        let (from, _) = keys::session_range(split_key, b"");
        for (key, record) in self.records.split_off(&from) {
            self.key_bytes -= key.len();
            self.by_expiry.remove(&(record.expires_ms, key));
        }
    }

    /// Drops the records that expired before `now_ms`, adding their deletions to
    /// `mutations`. Called before a command's writes are decided, with the newest
    /// `issued_ms` among them.
    pub fn expire(&mut self, now_ms: u64, mutations: &mut Vec<Mutation>) {
        while let Some((expires_ms, _)) = self.by_expiry.first() {
            if *expires_ms >= now_ms {
                break;
            }
            self.drop_first(mutations);
        }
    }

    /// What became of an earlier write under `session` to `key`, if the table remembers
    /// one: `Replayed` for the same write, `RequestIdReused` for a different one.
    pub fn outcome_of(
        &self,
        key: &[u8],
        session: &WriteSession,
        request: &Request,
    ) -> Option<WriteOutcome> {
        let record = self
            .records
            .get(&keys::session_key(key, &session.request_id))?;
        Some(if record.fingerprint == fingerprint(request) {
            WriteOutcome::Replayed
        } else {
            WriteOutcome::RequestIdReused
        })
    }

    /// Records that `request` under `session` to `key` applied, adding the record and the
    /// deletions of any records it pushes out to `mutations`.
    pub fn record(
        &mut self,
        key: &[u8],
        session: &WriteSession,
        request: &Request,
        mutations: &mut Vec<Mutation>,
    ) {
        let record = Record {
            expires_ms: session.issued_ms.saturating_add(session.ttl_ms),
            fingerprint: fingerprint(request),
        };
        let session_key = keys::session_key(key, &session.request_id);
        mutations.push(Mutation::Put {
            cf: Cf::Session,
            key: session_key.clone(),
            value: record.encode(),
        });
        self.insert(session_key, record);
        while self.records.len() > MAX_RECORDS || self.key_bytes > MAX_RECORD_BYTES {
            self.drop_first(mutations);
        }
    }

    fn insert(&mut self, key: Vec<u8>, record: Record) {
        if let Some(old) = self.records.insert(key.clone(), record) {
            self.by_expiry.remove(&(old.expires_ms, key.clone()));
        } else {
            self.key_bytes += key.len();
        }
        self.by_expiry.insert((record.expires_ms, key));
    }

    /// Drops the record expiring first.
    fn drop_first(&mut self, mutations: &mut Vec<Mutation>) {
        if let Some((_, key)) = self.by_expiry.pop_first() {
            self.records.remove(&key);
            self.key_bytes -= key.len();
            mutations.push(Mutation::Delete {
                cf: Cf::Session,
                key,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use tinykv_proto::raft_cmdpb::{DeleteRequest, PutRequest};

    use super::*;

    fn put(key: &[u8], value: &[u8]) -> Request {
        Request {
            cmd_type: CmdType::Put as i32,
            put: Some(PutRequest {
                cf: "default".into(),
                key: key.to_vec(),
                value: value.to_vec(),
            }),
            ..Default::default()
        }
    }

    fn session(id: &[u8], issued_ms: u64, ttl_ms: u64) -> WriteSession {
        WriteSession {
            request_id: id.to_vec(),
            issued_ms,
            ttl_ms,
        }
    }

    #[test]
    fn a_recorded_write_is_replayed_and_a_different_one_refused() {
        let mut table = SessionTable::default();
        let mut mutations = Vec::new();
        let s = session(b"r1", 1_000, 60_000);
        assert_eq!(table.outcome_of(b"k", &s, &put(b"k", b"v")), None);
        table.record(b"k", &s, &put(b"k", b"v"), &mut mutations);
        assert_eq!(
            table.outcome_of(b"k", &s, &put(b"k", b"v")),
            Some(WriteOutcome::Replayed)
        );
        assert_eq!(
            table.outcome_of(b"k", &s, &put(b"k", b"other")),
            Some(WriteOutcome::RequestIdReused)
        );
        let delete = Request {
            cmd_type: CmdType::Delete as i32,
            delete: Some(DeleteRequest {
                cf: "default".into(),
                key: b"k".to_vec(),
            }),
            ..Default::default()
        };
        assert_eq!(
            table.outcome_of(b"k", &s, &delete),
            Some(WriteOutcome::RequestIdReused)
        );
        // The id is scoped to the key it wrote.
        assert_eq!(table.outcome_of(b"j", &s, &put(b"j", b"v")), None);
        assert_eq!(mutations.len(), 1);
        let Mutation::Put { cf, key, value } = &mutations[0] else {
            panic!("{mutations:?}")
        };
        assert_eq!(*cf, Cf::Session);
        assert!(is_record(key, value));
        assert_eq!(
            SessionTable::from_pairs(&[KeyValue {
                key: key.clone(),
                value: value.clone()
            }]),
            table
        );
    }

    #[test]
    fn records_expire_by_age_and_by_count() {
        let mut table = SessionTable::default();
        let mut mutations = Vec::new();
        table.record(
            b"a",
            &session(b"1", 0, 100),
            &put(b"a", b""),
            &mut mutations,
        );
        table.record(
            b"b",
            &session(b"2", 50, 100),
            &put(b"b", b""),
            &mut mutations,
        );
        mutations.clear();
        table.expire(100, &mut mutations);
        assert_eq!(table.len(), 2, "a record lives until its expiry");
        table.expire(101, &mut mutations);
        assert_eq!(table.len(), 1);
        assert_eq!(
            mutations,
            vec![Mutation::Delete {
                cf: Cf::Session,
                key: keys::session_key(b"a", b"1")
            }]
        );

        let mut table = SessionTable::default();
        for i in 0..MAX_RECORDS as u64 + 3 {
            let id = i.to_be_bytes();
            // Issued out of order: the ones expiring first go, whatever their order.
            let issued = (i * 7919) % (MAX_RECORDS as u64 + 3);
            table.record(
                b"k",
                &session(&id, issued, 10),
                &put(b"k", b""),
                &mut mutations,
            );
        }
        assert_eq!(table.len(), MAX_RECORDS);
        let oldest = table.by_expiry.first().unwrap().0;
        assert_eq!(oldest, 3 + 10, "the three expiring first were dropped");
        assert_eq!(table.records.len(), table.by_expiry.len());
    }

    #[test]
    fn a_split_keeps_the_records_of_the_left_keys() {
        let mut table = SessionTable::default();
        let mut mutations = Vec::new();
        for key in [&b"a"[..], b"m", b"m\x00", b"z"] {
            table.record(key, &session(b"id", 0, 10), &put(key, b""), &mut mutations);
        }
        table.split_off(b"m\x00");
        let kept: Vec<Vec<u8>> = table
            .records
            .keys()
            .map(|k| keys::parse_session_key(k).unwrap().0)
            .collect();
        assert_eq!(kept, vec![b"a".to_vec(), b"m".to_vec()]);
        assert_eq!(table.by_expiry.len(), 2);
        assert_eq!(
            table.key_bytes,
            table.records.keys().map(Vec::len).sum::<usize>()
        );
    }

    #[test]
    fn the_longest_written_key_has_room_for_the_longest_request_id() {
        let id = vec![b'x'; MAX_REQUEST_ID_BYTES];
        let longest = keys::session_key(&vec![0; MAX_WRITTEN_KEY_BYTES], &id);
        assert!(longest.len() <= crate::validation::MAX_KEY_BYTES);
        let too_long = keys::session_key(&vec![0; MAX_WRITTEN_KEY_BYTES + 1], &id);
        assert!(too_long.len() > crate::validation::MAX_KEY_BYTES);
    }

    #[test]
    fn malformed_stored_records_are_skipped() {
        let good = KeyValue {
            key: keys::session_key(b"k", b"id"),
            value: Record {
                expires_ms: 5,
                fingerprint: 1,
            }
            .encode(),
        };
        let bad_value = KeyValue {
            key: keys::session_key(b"j", b"id"),
            value: vec![9; 3],
        };
        let bad_key = KeyValue {
            key: b"not encoded".to_vec(),
            value: good.value.clone(),
        };
        let table = SessionTable::from_pairs(&[good, bad_value, bad_key]);
        assert_eq!(table.len(), 1);
    }
}
