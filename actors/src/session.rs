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
//! - **Records** are keyed by [`keys::session_key`]`(key, request_id)`: the written key in
//!   an order-preserving encoding, then the id, so the records of a key range form one
//!   range of the table. A record holds when it expires and a fingerprint of the write
//!   (operation, column family, value): the same id reused for a different write to the
//!   same key is refused ([`WriteOutcome::RequestIdReused`]) instead of being mistaken for
//!   a retry.
//! - **Expiry** is by age and by count. Before a command's writes are decided, records
//!   that expired before the command's newest `issued_ms` are dropped; after, while the
//!   region holds more than [`MAX_RECORDS`] records or [`MAX_RECORD_BYTES`] bytes of keys,
//!   the ones that expire first go. Both use only values from the log and the table, so
//!   every replica drops the same records at the same entry.
//!
//! **Where it lives.** The ApplyFsm keeps its region's table in memory and answers from
//! it. For restarts, the changes are journaled: each apply batch that changed the table
//! writes one journal entry to the `meta` keyspace under
//! [`keys::session_journal_key`]`(region, applied_index)`, in the same atomic batch as the
//! data and the apply state, listing the records added and dropped in order. Once the
//! journal since the last checkpoint holds more operations than twice the table (and at
//! least [`MIN_CHECKPOINT_OPS`]), the batch writes a checkpoint instead (the whole table)
//! and removes the entries before it. Loading ([`SessionTable::load`]) replays the last
//! checkpoint and the entries after it, keeping the records of the region's range. One
//! journal write per batch, however many writes it holds, costs far less than a record
//! and its later deletion per write in an LSM keyspace. A split writes a checkpoint of the
//! records it hands to the new region; a snapshot carries the records as pairs (see
//! [`crate::snapshot`]) and its application writes them as a checkpoint; destroying a
//! peer removes its journal.
//!
//! A request id is remembered for its `ttl_ms` (and while the region's bounds allow): a
//! copy arriving later than that applies again. The node gives every write the same TTL,
//! `api.idempotency_ttl_ms`, far longer than any retry the node itself makes.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use tinykv_proto::metapb;
use tinykv_proto::raft_cmdpb::{CmdType, Request, WriteOutcome, WriteSession};
use tinykv_proto::raft_serverpb::KeyValue;

use crate::engine::{Cf, Engine, EngineSnapshot, Mutation};
use crate::error::{Error, Result};
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

/// Fewest operations in a region's journal that make the next batch write a checkpoint
/// (if they are also more than [`MAX_JOURNAL_FACTOR`] a record).
pub const MIN_CHECKPOINT_OPS: usize = 4096;

/// Most journal operations a region keeps per record before it writes a checkpoint.
pub const MAX_JOURNAL_FACTOR: usize = 8;

/// Version byte of the encoded record value.
const RECORD_FORMAT: u8 = 1;

/// Bytes of an encoded record value: format, expiry, fingerprint.
const RECORD_BYTES: usize = 1 + 8 + 8;

/// Version byte of a journal entry.
const JOURNAL_FORMAT: u8 = 1;
/// Journal entry kinds.
const JOURNAL_DELTA: u8 = 0;
const JOURNAL_CHECKPOINT: u8 = 1;
/// Journal operation tags.
const OP_PUT: u8 = 1;
const OP_DROP: u8 = 2;

/// What the table remembers of one applied write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    /// Unix milliseconds after which it may be dropped.
    expires_ms: u64,
    /// [`fingerprint`] of the write.
    fingerprint: u64,
}

impl Record {
    fn encode_into(self, out: &mut Vec<u8>) {
        out.push(RECORD_FORMAT);
        out.extend_from_slice(&self.expires_ms.to_be_bytes());
        out.extend_from_slice(&self.fingerprint.to_be_bytes());
    }

    fn encode(self) -> Vec<u8> {
        let mut value = Vec::with_capacity(RECORD_BYTES);
        self.encode_into(&mut value);
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

/// A record's key, shared by the table's two indexes and its pending journal.
type RecordKey = Arc<[u8]>;

/// One change of the table, as journaled.
#[derive(Debug, Clone, PartialEq)]
enum JournalOp {
    Put(RecordKey, Record),
    Drop(RecordKey),
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

/// A record as the table holds it: what is journaled, and the journal entry holding its
/// put (its *home*).
#[derive(Debug, Clone, Copy)]
struct Stored {
    record: Record,
    home: u64,
}

/// One entry of the journal as the table tracks it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct EntryStats {
    /// Records whose put it holds that are still in the table.
    live: usize,
    /// Operations it holds.
    ops: usize,
}

/// A table's journal entries in index order. Entries come in index order (a batch's
/// apply index only grows) and leave from the front, so a deque does what an ordered map
/// would, at a fraction of the memory: a sleeping region's table usually tracks one entry,
/// and a map's first node cost every region ~270 bytes.
#[derive(Debug, Default, Clone)]
struct JournalEntries(VecDeque<(u64, EntryStats)>);

impl JournalEntries {
    /// The stats of entry `index`, added (empty) if the table tracks no such entry.
    fn at(&mut self, index: u64) -> &mut EntryStats {
        let position = self.position(index);
        if self.0.get(position).is_none_or(|&(i, _)| i != index) {
            self.0.insert(position, (index, EntryStats::default()));
        }
        &mut self.0[position].1
    }

    /// The stats of entry `index`, if tracked.
    fn get_mut(&mut self, index: u64) -> Option<&mut EntryStats> {
        let position = self.position(index);
        match self.0.get_mut(position) {
            Some((i, stats)) if *i == index => Some(stats),
            _ => None,
        }
    }

    /// Where entry `index` is, or would go.
    fn position(&self, index: u64) -> usize {
        self.0.partition_point(|&(i, _)| i < index)
    }

    /// Removes and returns the first entry, unless `keep` says to keep it.
    fn pop_first_unless(
        &mut self,
        keep: impl FnOnce(u64, &EntryStats) -> bool,
    ) -> Option<(u64, EntryStats)> {
        let &(index, ref stats) = self.0.front()?;
        if keep(index, stats) {
            return None;
        }
        self.0.pop_front()
    }
}

/// One region's table of recent write outcomes; see the module documentation.
#[derive(Debug, Default, Clone)]
pub struct SessionTable {
    /// The records by key (hashed: a lookup per write; range work, splits and snapshots,
    /// is rare).
    records: HashMap<RecordKey, Stored>,
    /// The same records ordered by expiry (ties by key), to drop the oldest first.
    by_expiry: BTreeSet<(u64, RecordKey)>,
    /// Bytes of the records' keys.
    key_bytes: usize,
    /// Changes not journaled yet.
    pending: Vec<JournalOp>,
    /// The journal entry the pending changes will be written as.
    batch_index: u64,
    /// The journal entries in the engine (or pending), by apply index.
    entries: JournalEntries,
    /// Operations in those entries.
    journal_ops: usize,
}

/// Two tables are equal when they hold the same records (whatever their journals).
impl PartialEq for SessionTable {
    fn eq(&self, other: &Self) -> bool {
        self.records.len() == other.records.len()
            && self
                .records
                .iter()
                .all(|(key, x)| other.records.get(key).is_some_and(|y| x.record == y.record))
    }
}

impl SessionTable {
    /// The table of `region` as its journal in the engine has it; empty for a region
    /// without a range yet. A damaged journal is an error: the region's state cannot be
    /// trusted.
    pub fn load(engine: &Engine, region: &metapb::Region) -> Result<SessionTable> {
        SessionTable::load_at(&engine.snapshot(), region)
    }

    /// [`SessionTable::load`], from an engine snapshot.
    pub fn load_at(snapshot: &EngineSnapshot, region: &metapb::Region) -> Result<SessionTable> {
        let mut entries = Vec::new();
        if !region.peers.is_empty() {
            let (start, end) = keys::session_journal_range(region.id);
            snapshot.scan(Cf::Meta, &start, &end, |key, value| {
                entries.push((keys::session_journal_index(key), value.to_vec()));
                true
            })?;
        }
        SessionTable::replay(region, &entries)
    }

    /// The table that journal `entries` (apply index and bytes, in index order) describe,
    /// keeping the records of `region`'s range.
    fn replay(region: &metapb::Region, entries: &[(u64, Vec<u8>)]) -> Result<SessionTable> {
        let mut table = SessionTable::default();
        for (index, entry) in entries {
            let (checkpoint, ops) = decode_journal(entry).ok_or_else(|| {
                Error::Corruption(format!(
                    "region {}: session journal entry {index} does not decode",
                    region.id
                ))
            })?;
            if checkpoint {
                // Entries before a checkpoint are leftovers it made obsolete.
                table = SessionTable::default();
            }
            table.batch_index = *index;
            table.note_entry(*index, ops.len());
            for op in ops {
                match op {
                    JournalOp::Put(key, record) => table.insert(key, record),
                    JournalOp::Drop(key) => table.remove(&key),
                }
            }
        }
        let (start, end) = keys::session_range(&region.start_key, &region.end_key);
        table.retain_range(&start, &end);
        Ok(table)
    }

    /// The table of a snapshot's session records, as of the snapshot's apply `index`
    /// (where its application writes them as a checkpoint); `None` if one is malformed.
    pub fn from_pairs(pairs: &[KeyValue], index: u64) -> Option<SessionTable> {
        let mut table = SessionTable {
            batch_index: index,
            ..Default::default()
        };
        for kv in pairs {
            keys::parse_session_key(&kv.key)?;
            table.insert(kv.key.as_slice().into(), Record::decode(&kv.value)?);
        }
        table.note_entry(index, table.records.len());
        Some(table)
    }

    /// The records as snapshot pairs, in key order.
    pub fn pairs(&self) -> Vec<KeyValue> {
        let mut pairs: Vec<KeyValue> = self
            .records
            .iter()
            .map(|(key, stored)| KeyValue {
                key: key.to_vec(),
                value: stored.record.encode(),
            })
            .collect();
        pairs.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        pairs
    }

    /// How many records the table holds.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the table holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Starts an apply batch that will be journaled at apply index `index` (the batch's
    /// last entry).
    pub fn begin_batch(&mut self, index: u64) {
        self.batch_index = index;
    }

    /// Moves the batch begun with [`SessionTable::begin_batch`] to end at apply index
    /// `index` instead (the apply stopped early, before a merge whose source is not
    /// ready): its records and journal entry are at `index`.
    pub fn move_batch(&mut self, index: u64) {
        let old = std::mem::replace(&mut self.batch_index, index);
        if old != index {
            for stored in self.records.values_mut().filter(|s| s.home == old) {
                stored.home = index;
            }
        }
    }

    /// Hands the records of keys from `split_key` on to the region split off at it: they
    /// leave this table (without a journal operation: loading keeps only a region's own
    /// range) and come back as the new region's table, to be written with
    /// [`SessionTable::checkpoint_mutations`].
    pub fn split_off(&mut self, split_key: &[u8]) -> SessionTable {
        let (from, _) = keys::session_range(split_key, b"");
        let moved: Vec<(RecordKey, Stored)> = self
            .records
            .extract_if(|key, _| key[..] >= from[..])
            .collect();
        let mut right = SessionTable::default();
        for (key, stored) in moved {
            self.key_bytes -= key.len();
            self.by_expiry
                .remove(&(stored.record.expires_ms, key.clone()));
            self.forget_home(stored.home);
            right.insert(key, stored.record);
        }
        right
    }

    /// Takes in the records of a region merged into this one, as puts of the current
    /// batch, so that they are journaled under this region with the batch. A write
    /// applied in the source stays applied at most once in the merged region.
    pub fn absorb(&mut self, source: SessionTable) {
        for (key, stored) in source.records {
            self.insert(key.clone(), stored.record);
            self.pending.push(JournalOp::Put(key, stored.record));
        }
        while self.records.len() > MAX_RECORDS || self.key_bytes > MAX_RECORD_BYTES {
            self.drop_first();
        }
    }

    /// Drops the records that expired before `now_ms`. Called before a command's writes
    /// are decided, with the newest `issued_ms` among them.
    pub fn expire(&mut self, now_ms: u64) {
        while let Some((expires_ms, _)) = self.by_expiry.first() {
            if *expires_ms >= now_ms {
                break;
            }
            self.drop_first();
        }
    }

    /// Decides `request` under `session` to `key`: `Replayed` if the table holds its
    /// request id for the same write, `RequestIdReused` if for a different one; otherwise
    /// records it (dropping the records it pushes out) and answers `Applied`: the caller
    /// applies it.
    pub fn decide(
        &mut self,
        key: &[u8],
        session: &WriteSession,
        request: &Request,
    ) -> WriteOutcome {
        let session_key: RecordKey = keys::session_key(key, &session.request_id).into();
        let fingerprint = fingerprint(request);
        let record = Record {
            expires_ms: session.issued_ms.saturating_add(session.ttl_ms),
            fingerprint,
        };
        if let Some(earlier) = self.records.get(&session_key) {
            return if earlier.record.fingerprint == fingerprint {
                WriteOutcome::Replayed
            } else {
                WriteOutcome::RequestIdReused
            };
        }
        self.insert(session_key.clone(), record);
        self.pending.push(JournalOp::Put(session_key, record));
        while self.records.len() > MAX_RECORDS || self.key_bytes > MAX_RECORD_BYTES {
            self.drop_first();
        }
        WriteOutcome::Applied
    }

    /// The journal mutations of the batch begun with [`SessionTable::begin_batch`], for
    /// region `region_id`: nothing if the table did not change; else the batch's entry,
    /// plus the removal of the oldest entries none of whose puts is live any more (their
    /// operations no longer matter: every record they put has been dropped, by them or by
    /// later entries). If the journal still grows past [`MAX_JOURNAL_FACTOR`] operations a
    /// record (a record that outlives everything after it keeps those entries), a
    /// checkpoint replaces it.
    pub fn journal_mutations(&mut self, region_id: u64) -> Vec<Mutation> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let index = self.batch_index;
        let ops = std::mem::take(&mut self.pending);
        self.note_entry(index, ops.len());
        if self.journal_ops > MIN_CHECKPOINT_OPS.max(MAX_JOURNAL_FACTOR * self.records.len()) {
            return self.checkpoint_mutations(region_id, index);
        }
        let mut mutations = vec![Mutation::Put {
            cf: Cf::Meta,
            key: keys::session_journal_key(region_id, index),
            value: encode_journal(JOURNAL_DELTA, ops.iter()),
        }];
        while let Some((old, stats)) = self
            .entries
            .pop_first_unless(|old, stats| stats.live > 0 || old == index)
        {
            self.journal_ops -= stats.ops;
            mutations.push(Mutation::Delete {
                cf: Cf::Meta,
                key: keys::session_journal_key(region_id, old),
            });
        }
        mutations
    }

    /// Mutations that replace region `region_id`'s journal with a checkpoint of this
    /// table at apply index `index` (a split's new region, a journal grown too long), and
    /// the table's bookkeeping made to match.
    pub fn checkpoint_mutations(&mut self, region_id: u64, index: u64) -> Vec<Mutation> {
        self.pending.clear();
        for stored in self.records.values_mut() {
            stored.home = index;
        }
        let count = self.records.len();
        self.entries = JournalEntries::default();
        *self.entries.at(index) = EntryStats {
            live: count,
            ops: count,
        };
        self.journal_ops = count;
        self.checkpoint_write(region_id, index)
    }

    /// The mutations of [`SessionTable::checkpoint_mutations`] alone, for a table whose
    /// bookkeeping already says it is checkpointed at `index` (a snapshot's, see
    /// [`SessionTable::from_pairs`]).
    pub fn checkpoint_write(&self, region_id: u64, index: u64) -> Vec<Mutation> {
        let ops: Vec<JournalOp> = self
            .records
            .iter()
            .map(|(key, stored)| JournalOp::Put(key.clone(), stored.record))
            .collect();
        // The whole journal goes, except the checkpoint this batch puts (a range delete
        // spares the keys its batch puts). Entries of earlier batches written together
        // with this one may survive it: they sort before the checkpoint, so loading
        // discards them.
        let (start, end) = keys::session_journal_range(region_id);
        vec![
            Mutation::DeleteRange {
                cf: Cf::Meta,
                start,
                end,
            },
            Mutation::Put {
                cf: Cf::Meta,
                key: keys::session_journal_key(region_id, index),
                value: encode_journal(JOURNAL_CHECKPOINT, ops.iter()),
            },
        ]
    }

    /// Counts `ops` more operations in journal entry `index`.
    fn note_entry(&mut self, index: u64, ops: usize) {
        self.entries.at(index).ops += ops;
        self.journal_ops += ops;
    }

    /// A record whose put entry `home` holds left the table.
    fn forget_home(&mut self, home: u64) {
        if let Some(stats) = self.entries.get_mut(home) {
            stats.live = stats.live.saturating_sub(1);
        }
    }

    /// Adds (or replaces) a record put by the current batch.
    fn insert(&mut self, key: RecordKey, record: Record) {
        let home = self.batch_index;
        let stored = Stored { record, home };
        if let Some(old) = self.records.insert(key.clone(), stored) {
            self.by_expiry.remove(&(old.record.expires_ms, key.clone()));
            self.forget_home(old.home);
        } else {
            self.key_bytes += key.len();
        }
        self.by_expiry.insert((record.expires_ms, key));
        self.entries.at(home).live += 1;
    }

    fn remove(&mut self, key: &RecordKey) {
        if let Some(stored) = self.records.remove(key) {
            self.key_bytes -= key.len();
            self.by_expiry
                .remove(&(stored.record.expires_ms, key.clone()));
            self.forget_home(stored.home);
        }
    }

    fn retain_range(&mut self, start: &[u8], end: &[u8]) {
        let outside: Vec<RecordKey> = self
            .records
            .keys()
            .filter(|k| !keys::in_range(k, start, end))
            .cloned()
            .collect();
        for key in outside {
            self.remove(&key);
        }
    }

    /// Drops the record expiring first.
    fn drop_first(&mut self) {
        if let Some((_, key)) = self.by_expiry.pop_first() {
            if let Some(stored) = self.records.remove(&key) {
                self.key_bytes -= key.len();
                self.forget_home(stored.home);
            }
            self.pending.push(JournalOp::Drop(key));
        }
    }
}

/// Encodes a journal entry: format, kind, count, then each operation (tag, key length,
/// key and, for a put, the record).
fn encode_journal<'a>(kind: u8, ops: impl ExactSizeIterator<Item = &'a JournalOp>) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + ops.len() * 64);
    out.push(JOURNAL_FORMAT);
    out.push(kind);
    out.extend_from_slice(&(ops.len() as u32).to_be_bytes());
    for op in ops {
        let (tag, key, record) = match op {
            JournalOp::Put(key, record) => (OP_PUT, key, Some(record)),
            JournalOp::Drop(key) => (OP_DROP, key, None),
        };
        out.push(tag);
        out.extend_from_slice(&(key.len() as u32).to_be_bytes());
        out.extend_from_slice(key);
        if let Some(record) = record {
            record.encode_into(&mut out);
        }
    }
    out
}

/// Decodes a journal entry: whether it is a checkpoint, and its operations.
fn decode_journal(bytes: &[u8]) -> Option<(bool, Vec<JournalOp>)> {
    let mut rest = bytes;
    let mut take = |n: usize| -> Option<&[u8]> {
        if rest.len() < n {
            return None;
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    };
    if take(1)? != [JOURNAL_FORMAT] {
        return None;
    }
    let checkpoint = match take(1)?[0] {
        JOURNAL_DELTA => false,
        JOURNAL_CHECKPOINT => true,
        _ => return None,
    };
    let count = u32::from_be_bytes(take(4)?.try_into().ok()?) as usize;
    let mut ops = Vec::with_capacity(count.min(bytes.len() / 6));
    for _ in 0..count {
        let tag = take(1)?[0];
        let len = u32::from_be_bytes(take(4)?.try_into().ok()?) as usize;
        let key: RecordKey = take(len)?.into();
        ops.push(match tag {
            OP_PUT => JournalOp::Put(key, Record::decode(take(RECORD_BYTES)?)?),
            OP_DROP => JournalOp::Drop(key),
            _ => return None,
        });
    }
    rest.is_empty().then_some((checkpoint, ops))
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

    fn region(id: u64, start: &[u8], end: &[u8]) -> metapb::Region {
        metapb::Region {
            id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            peers: vec![metapb::Peer { id: 1, store_id: 1 }],
            ..Default::default()
        }
    }

    #[test]
    fn a_recorded_write_is_replayed_and_a_different_one_refused() {
        let mut table = SessionTable::default();
        let s = session(b"r1", 1_000, 60_000);
        assert_eq!(
            table.decide(b"k", &s, &put(b"k", b"v")),
            WriteOutcome::Applied
        );
        assert_eq!(
            table.decide(b"k", &s, &put(b"k", b"v")),
            WriteOutcome::Replayed
        );
        // A retry under another client request id (for logs only) is the same write.
        let retried = Request {
            trace_id: b"retry-2".to_vec(),
            ..put(b"k", b"v")
        };
        assert_eq!(table.decide(b"k", &s, &retried), WriteOutcome::Replayed);
        assert_eq!(
            table.decide(b"k", &s, &put(b"k", b"other")),
            WriteOutcome::RequestIdReused
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
            table.decide(b"k", &s, &delete),
            WriteOutcome::RequestIdReused
        );
        assert_eq!(
            table.len(),
            1,
            "a refused or replayed write records nothing"
        );
        let pairs = table.pairs();
        assert!(keys::parse_session_key(&pairs[0].key).is_some());
        assert!(Record::decode(&pairs[0].value).is_some());
        assert_eq!(SessionTable::from_pairs(&pairs, 9), Some(table.clone()));
        // The id is scoped to the key it wrote.
        assert_eq!(
            table.decide(b"j", &s, &put(b"j", b"v")),
            WriteOutcome::Applied
        );
        let bad = KeyValue {
            key: b"not encoded".to_vec(),
            value: pairs[0].value.clone(),
        };
        assert_eq!(SessionTable::from_pairs(&[bad], 9), None);
    }

    #[test]
    fn records_expire_by_age_and_by_count() {
        let mut table = SessionTable::default();
        table.decide(b"a", &session(b"1", 0, 100), &put(b"a", b""));
        table.decide(b"b", &session(b"2", 50, 100), &put(b"b", b""));
        table.expire(100);
        assert_eq!(table.len(), 2, "a record lives until its expiry");
        table.expire(101);
        assert_eq!(table.len(), 1);
        assert_eq!(
            table.pending.last(),
            Some(&JournalOp::Drop(keys::session_key(b"a", b"1").into()))
        );

        let mut table = SessionTable::default();
        for i in 0..MAX_RECORDS as u64 + 3 {
            let id = i.to_be_bytes();
            // Issued out of order: the ones expiring first go, whatever their order.
            let issued = (i * 7919) % (MAX_RECORDS as u64 + 3);
            table.decide(b"k", &session(&id, issued, 10), &put(b"k", b""));
        }
        assert_eq!(table.len(), MAX_RECORDS);
        let oldest = table.by_expiry.first().unwrap().0;
        assert_eq!(oldest, 3 + 10, "the three expiring first were dropped");
        assert_eq!(table.records.len(), table.by_expiry.len());
    }

    #[test]
    fn a_split_hands_the_right_keys_records_to_the_new_region() {
        let mut table = SessionTable::default();
        for key in [&b"a"[..], b"m", b"m\x00", b"z"] {
            table.decide(key, &session(b"id", 0, 10), &put(key, b""));
        }
        let right = table.split_off(b"m\x00");
        let user_keys = |t: &SessionTable| -> Vec<Vec<u8>> {
            let mut keys: Vec<Vec<u8>> = t
                .records
                .keys()
                .map(|k| keys::parse_session_key(k).unwrap().0)
                .collect();
            keys.sort();
            keys
        };
        assert_eq!(user_keys(&table), vec![b"a".to_vec(), b"m".to_vec()]);
        assert_eq!(user_keys(&right), vec![b"m\x00".to_vec(), b"z".to_vec()]);
        assert_eq!(table.by_expiry.len(), 2);
        assert_eq!(
            table.key_bytes,
            table.records.keys().map(|k| k.len()).sum::<usize>()
        );
    }

    /// Runs `writes` writes (the `i`th issued at `i` ms, living `ttl(i)` ms) through a
    /// table journaled into `engine` for region 7, one batch every 7 writes, checking
    /// now and then that loading gives the same table; answers the table and how many
    /// journal entries were deleted one by one and how many checkpoints were written.
    fn run_journal(
        engine: &Engine,
        writes: u64,
        ttl: impl Fn(u64) -> u64,
    ) -> (SessionTable, usize, usize) {
        let whole = region(7, b"", b"");
        let mut table = SessionTable::default();
        let (mut index, mut deleted, mut checkpoints) = (6, 0, 0);
        table.begin_batch(index);
        for i in 0..writes {
            let key = format!("k{}", i % 50);
            table.expire(i);
            let s = session(&i.to_be_bytes(), i, ttl(i));
            table.decide(key.as_bytes(), &s, &put(key.as_bytes(), b"v"));
            if i % 7 == 6 || i + 1 == writes {
                let mutations = table.journal_mutations(7);
                for m in &mutations {
                    match m {
                        Mutation::Delete { .. } => deleted += 1,
                        Mutation::DeleteRange { .. } => checkpoints += 1,
                        _ => {}
                    }
                }
                engine.write(&mutations, false).unwrap();
                if i % 301 == 0 || i + 1 == writes {
                    assert_eq!(SessionTable::load(engine, &whole).unwrap(), table, "at {i}");
                }
                index += 1;
                table.begin_batch(index);
            }
        }
        (table, deleted, checkpoints)
    }

    fn journal_entries(engine: &Engine, region_id: u64) -> usize {
        let (start, end) = keys::session_journal_range(region_id);
        let mut count = 0;
        engine
            .scan(Cf::Meta, &start, &end, |_, _| {
                count += 1;
                true
            })
            .unwrap();
        count
    }

    #[test]
    fn the_journal_replays_to_the_same_table_and_sheds_dead_entries() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        // Every record lives 1,000 ms: the journal keeps about that window of entries.
        let (table, deleted, checkpoints) =
            run_journal(&engine, 3 * MIN_CHECKPOINT_OPS as u64, |_| 1_000);
        assert!(table.len() <= 1_001);
        assert_eq!(checkpoints, 0, "dead entries go one by one");
        assert!(deleted > 1_000, "{deleted} entries deleted");
        let left = journal_entries(&engine, 7);
        assert!(left < 1_000 / 7 + 10, "{left} entries left");
        // Loading keeps the region's own range only.
        let part = SessionTable::load(&engine, &region(7, b"k2", b"k3")).unwrap();
        assert!(!part.is_empty() && part.len() < table.len());
        assert!(part
            .records
            .keys()
            .all(|k| keys::parse_session_key(k).unwrap().0.starts_with(b"k2")));
        // A damaged entry is refused, not skipped.
        engine
            .write(
                &[Mutation::Put {
                    cf: Cf::Meta,
                    key: keys::session_journal_key(7, u64::MAX),
                    value: vec![JOURNAL_FORMAT, JOURNAL_DELTA, 0, 0, 0, 9],
                }],
                false,
            )
            .unwrap();
        assert!(matches!(
            SessionTable::load(&engine, &region(7, b"", b"")),
            Err(Error::Corruption(_))
        ));
        // Another region's journal is its own.
        assert!(SessionTable::load(&engine, &region(8, b"", b""))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_record_that_outlives_the_rest_leads_to_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        // The first write lives on: it keeps every entry after its own, until the
        // journal is long enough to be replaced by a checkpoint.
        let writes = 6 * MIN_CHECKPOINT_OPS as u64;
        let (table, _, checkpoints) =
            run_journal(&engine, writes, |i| if i == 0 { 1 << 40 } else { 100 });
        assert!(checkpoints >= 1, "{checkpoints} checkpoints");
        assert!(table.len() <= 102);
        assert!(journal_entries(&engine, 7) < MIN_CHECKPOINT_OPS);
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
    fn journal_entries_stay_in_index_order_and_leave_from_the_front() {
        let mut entries = JournalEntries::default();
        entries.at(10).ops += 2;
        entries.at(12).live += 1;
        entries.at(10).live += 1;
        // Out of order (never seen in practice) still lands in order.
        entries.at(11).ops += 5;
        let indexes: Vec<u64> = entries.0.iter().map(|&(i, _)| i).collect();
        assert_eq!(indexes, vec![10, 11, 12]);
        assert_eq!(
            entries.get_mut(10).copied(),
            Some(EntryStats { live: 1, ops: 2 })
        );
        assert!(entries.get_mut(13).is_none());
        assert!(entries.pop_first_unless(|_, s| s.live > 0).is_none());
        entries.get_mut(10).unwrap().live = 0;
        assert_eq!(
            entries.pop_first_unless(|_, s| s.live > 0).map(|(i, _)| i),
            Some(10)
        );
        assert_eq!(entries.pop_first_unless(|i, _| i == 11), None);
    }

    #[test]
    fn malformed_journal_entries_do_not_decode() {
        let ops = [
            JournalOp::Put(
                b"key".as_slice().into(),
                Record {
                    expires_ms: 1,
                    fingerprint: 2,
                },
            ),
            JournalOp::Drop(b"other".as_slice().into()),
        ];
        let good = encode_journal(JOURNAL_DELTA, ops.iter());
        assert_eq!(decode_journal(&good), Some((false, ops.to_vec())));
        for cut in 0..good.len() {
            assert_eq!(decode_journal(&good[..cut]), None, "cut at {cut}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(decode_journal(&longer), None);
        let mut huge_count = good.clone();
        huge_count[2..6].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode_journal(&huge_count), None);
    }
}
