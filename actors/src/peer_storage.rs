//! PeerStorage: raft-rs's `Storage` over the store's engine, for one peer of one region.
//!
//! raft-rs reads its log through this type, and the PeerFsm writes through it. Writes are
//! asynchronous: when the PeerFsm takes a `Ready`, [`PeerStorage::append`] and
//! [`PeerStorage::set_hard_state`] update the in-memory state at once and return the
//! mutations that make it durable, which the raft-log writer commits later. raft-rs moves
//! the appended entries out of its unstable log as soon as `advance_append_async` runs, so
//! they must be readable before they reach disk: an entry cache holds the tail of the log
//! until the entries are both persisted and applied.
//!
//! State kept here:
//! - `RaftLocalState` (hard state, last index and term) — raft keyspace;
//! - `RaftApplyState` (applied index, truncated index and term) — meta keyspace, written by
//!   the apply path; this copy tells raft where the log starts;
//! - the region, which gives raft its initial `ConfState`.
//!
//! A peer created for a region it knows (bootstrap, split) starts from index/term 5; a peer
//! created from a message of an unknown region starts from zero and catches up by snapshot.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use tinykv_proto::convert::{from_raft, to_raft};
use tinykv_proto::metapb;
use tinykv_proto::raft_serverpb::{
    MergeState, PeerState, RaftApplyState, RaftLocalState, RaftTruncatedState, RegionLocalState,
};

use crate::engine::{Cf, Engine, Mutation};
use crate::error::{Error, Result};
use crate::keys;

/// Index and term every region created with a known range starts from (as in TinyKV).
pub const RAFT_INIT_LOG_INDEX: u64 = 5;
/// See [`RAFT_INIT_LOG_INDEX`].
pub const RAFT_INIT_LOG_TERM: u64 = 5;

/// Raft state of a peer that was created with its region known.
pub fn initial_raft_state() -> RaftLocalState {
    RaftLocalState {
        hard_state: Some(tinykv_proto::eraftpb::HardState {
            term: RAFT_INIT_LOG_TERM,
            vote: 0,
            commit: RAFT_INIT_LOG_INDEX,
        }),
        last_index: RAFT_INIT_LOG_INDEX,
        last_term: RAFT_INIT_LOG_TERM,
    }
}

/// Apply state of a peer that was created with its region known.
pub fn initial_apply_state() -> RaftApplyState {
    RaftApplyState {
        applied_index: RAFT_INIT_LOG_INDEX,
        truncated_state: Some(RaftTruncatedState {
            index: RAFT_INIT_LOG_INDEX,
            term: RAFT_INIT_LOG_TERM,
        }),
    }
}

/// The mutations that forget region `region_id`'s raft log and raft state on this store.
pub fn raft_state_removal(region_id: u64) -> Vec<Mutation> {
    vec![
        Mutation::DeleteRange {
            cf: Cf::Raft,
            start: keys::raft_log_key(region_id, 0),
            end: keys::raft_log_key(region_id, u64::MAX),
        },
        Mutation::Delete {
            cf: Cf::Raft,
            key: keys::raft_state_key(region_id),
        },
    ]
}

/// The mutations that mark this store's peer of `region` destroyed: a tombstone region
/// state (remembering the region, so stale messages create nothing) and no apply state.
pub fn tombstone(region: &metapb::Region) -> Vec<Mutation> {
    vec![
        Mutation::put_msg(
            Cf::Meta,
            keys::region_state_key(region.id),
            &RegionLocalState {
                state: PeerState::Tombstone as i32,
                region: Some(region.clone()),
                merge_state: None,
            },
        ),
        Mutation::Delete {
            cf: Cf::Meta,
            key: keys::apply_state_key(region.id),
        },
    ]
}

/// The mutations that delete `region`'s data, in every column family clients write, and
/// its session journal.
pub fn data_removal(region: &metapb::Region) -> Vec<Mutation> {
    let (start, end) = keys::session_journal_range(region.id);
    Cf::DATA
        .into_iter()
        .map(|cf| Mutation::DeleteRange {
            cf,
            start: region.start_key.clone(),
            end: region.end_key.clone(),
        })
        .chain([Mutation::DeleteRange {
            cf: Cf::Meta,
            start,
            end,
        }])
        .collect()
}

/// The merge `region_id`'s peer on this store prepared as a source, if its region state
/// says it is merging.
pub fn load_merge_state(engine: &Engine, region_id: u64) -> Result<Option<MergeState>> {
    let state: Option<RegionLocalState> =
        engine.get_msg(Cf::Meta, &keys::region_state_key(region_id))?;
    Ok(state
        .filter(|s| s.state() == PeerState::Merging)
        .and_then(|s| s.merge_state))
}

/// Whether a region has been given its range and peers (as opposed to a placeholder for a
/// peer created from a message, which waits for a snapshot).
pub fn is_initialized(region: &metapb::Region) -> bool {
    !region.peers.is_empty()
}

/// Checks that an initialized region's log on disk is where its raft and apply state say:
/// a truncated state at or below the applied index, and, unless the log is empty after
/// it, the first entry after the truncated index and the last entry present, the last with
/// the last term. Entries are written with the raft state in one batch and compacted only
/// below an applied truncated index, so no crash leaves them otherwise.
fn check_log_bounds(
    engine: &Engine,
    region_id: u64,
    raft_state: &RaftLocalState,
    apply_state: &RaftApplyState,
) -> Result<()> {
    let corrupt = |what: String| Err(Error::Corruption(format!("region {region_id}: {what}")));
    let Some(truncated) = apply_state.truncated_state else {
        return corrupt("its apply state has no truncated state".into());
    };
    if truncated.index > apply_state.applied_index {
        return corrupt(format!(
            "raft log truncated at {} but only {} was applied",
            truncated.index, apply_state.applied_index
        ));
    }
    let (last_index, last_term) = (raft_state.last_index, raft_state.last_term);
    if last_index == truncated.index {
        if last_term != truncated.term {
            return corrupt(format!(
                "the raft log is empty after the truncated entry {} of term {}, but its last term is {last_term}",
                truncated.index, truncated.term
            ));
        }
        return Ok(());
    }
    for index in [truncated.index + 1, last_index] {
        let key = keys::raft_log_key(region_id, index);
        let entry = match engine.get(Cf::Raft, &key)? {
            Some(bytes) => Entry::parse_from_bytes(&bytes).map_err(|e| {
                Error::Corruption(format!(
                    "region {region_id}: raft log entry {index} is undecodable: {e}"
                ))
            })?,
            None => {
                return corrupt(format!(
                    "raft log entry {index} is missing (the log should hold {}..={last_index})",
                    truncated.index + 1
                ))
            }
        };
        if entry.index != index {
            return corrupt(format!(
                "raft log entry {index} is stored as entry {}",
                entry.index
            ));
        }
        if index == last_index && entry.term != last_term {
            return corrupt(format!(
                "the last raft log entry {index} has term {} but the raft state says {last_term}",
                entry.term
            ));
        }
    }
    Ok(())
}

/// raft-rs storage for one peer; see the module documentation.
pub struct PeerStorage {
    engine: Engine,
    region: metapb::Region,
    raft_state: RaftLocalState,
    apply_state: RaftApplyState,
    /// Contiguous tail of the log, ending at `raft_state.last_index` when non-empty.
    cache: VecDeque<Entry>,
    /// Last index known to be on disk.
    persisted_index: u64,
    /// Set when raft asked for a snapshot that is not generated yet.
    snapshot_wanted: Cell<bool>,
    /// A generated snapshot waiting for raft to ask again.
    generated: RefCell<Option<Snapshot>>,
}

impl PeerStorage {
    /// Loads the storage of `region`'s peer from the engine. An initialized region must have
    /// its raft and apply state on disk; an uninitialized one starts from zero.
    pub fn new(engine: Engine, region: metapb::Region) -> Result<PeerStorage> {
        let region_id = region.id;
        let raft_state: Option<RaftLocalState> =
            engine.get_msg(Cf::Raft, &keys::raft_state_key(region_id))?;
        let apply_state: Option<RaftApplyState> =
            engine.get_msg(Cf::Meta, &keys::apply_state_key(region_id))?;
        let (mut raft_state, apply_state) = match (raft_state, apply_state) {
            (Some(r), Some(a)) => (r, a),
            (None, None) if !is_initialized(&region) => {
                (RaftLocalState::default(), RaftApplyState::default())
            }
            // A peer waiting for its first snapshot has voted (its hard state is on disk)
            // but has no log and applied nothing; the vote must survive restarts.
            (Some(r), None) if !is_initialized(&region) => (
                RaftLocalState {
                    hard_state: r.hard_state,
                    last_index: 0,
                    last_term: 0,
                },
                RaftApplyState::default(),
            ),
            (r, a) => {
                return Err(Error::Corruption(format!(
                    "region {region_id}: raft state present: {}, apply state present: {}",
                    r.is_some(),
                    a.is_some()
                )))
            }
        };
        let applied = apply_state.applied_index;
        if raft_state.last_index < applied {
            return Err(Error::Corruption(format!(
                "region {region_id}: raft log ends at {} but {applied} was applied",
                raft_state.last_index
            )));
        }
        // The commit index is persisted lazily, applied data is not: what was applied was
        // committed.
        let hs = raft_state.hard_state.get_or_insert_with(Default::default);
        hs.commit = hs.commit.max(applied);
        if hs.commit > raft_state.last_index {
            return Err(Error::Corruption(format!(
                "region {region_id}: commit index {} is past the end of the raft log ({})",
                hs.commit, raft_state.last_index
            )));
        }
        if is_initialized(&region) {
            check_log_bounds(&engine, region_id, &raft_state, &apply_state)?;
        }
        let persisted_index = raft_state.last_index;
        Ok(PeerStorage {
            engine,
            region,
            raft_state,
            apply_state,
            cache: VecDeque::new(),
            persisted_index,
            snapshot_wanted: Cell::new(false),
            generated: RefCell::new(None),
        })
    }

    /// The region as this peer knows it.
    pub fn region(&self) -> &metapb::Region {
        &self.region
    }

    /// Replaces the region (after a conf change, split or snapshot).
    pub fn set_region(&mut self, region: metapb::Region) {
        self.region = region;
    }

    /// Whether the region's range and peers are known.
    pub fn is_initialized(&self) -> bool {
        is_initialized(&self.region)
    }

    /// The applied index as of the last apply state this storage saw.
    pub fn applied_index(&self) -> u64 {
        self.apply_state.applied_index
    }

    /// The current apply state.
    pub fn apply_state(&self) -> &RaftApplyState {
        &self.apply_state
    }

    /// Records apply progress reported by the ApplyFsm and drops cached entries that are
    /// both applied and on disk, but the last of them: the term of the entry a region
    /// applied last is the one asked for most (the previous entry of the next append a
    /// caught-up follower gets, the commit of a leader serving a read), and an engine read
    /// for each would cost more than the entry.
    pub fn set_apply_state(&mut self, state: RaftApplyState) {
        self.apply_state = state;
        let keep_from = self.apply_state.applied_index.min(self.persisted_index);
        while self.cache.front().is_some_and(|e| e.index < keep_from) {
            self.cache.pop_front();
        }
    }

    /// Gives back the memory the entry cache holds beyond its entries (a sleeping region
    /// keeps one, the last applied).
    pub fn shrink_cache(&mut self) {
        self.cache.shrink_to_fit();
    }

    /// The raft state, including appends not yet on disk.
    pub fn raft_state(&self) -> &RaftLocalState {
        &self.raft_state
    }

    fn truncated(&self) -> (u64, u64) {
        self.apply_state
            .truncated_state
            .as_ref()
            .map(|t| (t.index, t.term))
            .unwrap_or((0, 0))
    }

    /// The first log index still in the log (after the truncated index).
    pub fn first_log_index(&self) -> u64 {
        self.truncated().0 + 1
    }

    /// Whether raft asked for a snapshot since the last call; the caller generates one and
    /// hands it over with [`PeerStorage::set_generated_snapshot`].
    pub fn take_snapshot_request(&self) -> bool {
        self.snapshot_wanted.replace(false)
    }

    /// Keeps a generated snapshot until raft asks for it again.
    pub fn set_generated_snapshot(&self, snapshot: Snapshot) {
        *self.generated.borrow_mut() = Some(snapshot);
    }

    /// Replaces the peer's state with a received snapshot; returns the mutations that make
    /// it durable (see [`crate::snapshot`]).
    pub fn apply_snapshot(&mut self, snap: &crate::snapshot::VerifiedSnapshot) -> Vec<Mutation> {
        let hard_state = self.raft_state.hard_state.unwrap_or_default();
        let (mutations, raft_state, apply_state) = snap.apply_mutations(&self.region, hard_state);
        self.raft_state = raft_state;
        self.apply_state = apply_state;
        self.region = snap.region.clone();
        self.cache.clear();
        self.persisted_index = 0;
        mutations
    }

    /// Notes that the log up to `index` is on disk.
    pub fn on_persisted(&mut self, index: u64) {
        self.persisted_index = self.persisted_index.max(index);
    }

    /// Appends entries from a `Ready`, overwriting any conflicting tail; returns the
    /// mutations that make them durable (the raft state is written separately by
    /// [`PeerStorage::raft_state_mutation`]).
    pub fn append(&mut self, entries: Vec<Entry>, mutations: &mut Vec<Mutation>) {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return;
        };
        let (first_index, last_index, last_term) = (first.index, last.index, last.term);
        let region_id = self.region.id;
        for e in &entries {
            mutations.push(Mutation::Put {
                cf: Cf::Raft,
                key: keys::raft_log_key(region_id, e.index),
                value: e.write_to_bytes().expect("entry encodes"),
            });
        }
        // Entries past the new end belong to a log a newer leader overwrote.
        for index in last_index + 1..=self.raft_state.last_index {
            mutations.push(Mutation::Delete {
                cf: Cf::Raft,
                key: keys::raft_log_key(region_id, index),
            });
        }
        if let Some(front) = self.cache.front().map(|e| e.index) {
            if first_index <= front || first_index > self.raft_state.last_index + 1 {
                self.cache.clear();
            } else {
                self.cache.truncate((first_index - front) as usize);
            }
        }
        self.cache.extend(entries);
        self.raft_state.last_index = last_index;
        self.raft_state.last_term = last_term;
        self.persisted_index = self.persisted_index.min(first_index - 1);
    }

    /// Records a new hard state from a `Ready`.
    pub fn set_hard_state(&mut self, hs: &HardState) {
        self.raft_state.hard_state = Some(from_raft(hs));
    }

    /// The mutation that persists the current raft state.
    pub fn raft_state_mutation(&self) -> Mutation {
        Mutation::put_msg(
            Cf::Raft,
            keys::raft_state_key(self.region.id),
            &self.raft_state,
        )
    }

    fn entry_from_engine(&self, index: u64) -> raft::Result<Entry> {
        let key = keys::raft_log_key(self.region.id, index);
        match self.engine.get(Cf::Raft, &key) {
            Ok(Some(bytes)) => Entry::parse_from_bytes(&bytes)
                .map_err(|e| raft::Error::Store(StorageError::Other(Box::new(e)))),
            Ok(None) => Err(raft::Error::Store(StorageError::Unavailable)),
            Err(e) => Err(raft::Error::Store(StorageError::Other(Box::new(e)))),
        }
    }

    fn cache_first(&self) -> u64 {
        self.cache
            .front()
            .map(|e| e.index)
            .unwrap_or(self.raft_state.last_index + 1)
    }

    fn conf_state(&self) -> ConfState {
        ConfState {
            voters: self.region.peers.iter().map(|p| p.id).collect(),
            ..Default::default()
        }
    }
}

impl raft::Storage for PeerStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let hs: HardState = match &self.raft_state.hard_state {
            Some(hs) => {
                to_raft(hs).map_err(|e| raft::Error::Store(StorageError::Other(Box::new(e))))?
            }
            None => HardState::default(),
        };
        if !self.is_initialized() {
            return Ok(RaftState::new(hs, ConfState::default()));
        }
        Ok(RaftState::new(hs, self.conf_state()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let (truncated_index, _) = self.truncated();
        if low <= truncated_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.raft_state.last_index + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max_size = max_size.into();
        let mut entries = Vec::with_capacity((high - low) as usize);
        let cache_first = self.cache_first();
        let mut size = 0u64;
        if low < cache_first {
            let end = high.min(cache_first);
            let start_key = keys::raft_log_key(self.region.id, low);
            let end_key = keys::raft_log_key(self.region.id, end);
            let mut expected = low;
            let mut failure = None;
            let scanned = self.engine.scan(Cf::Raft, &start_key, &end_key, |_, v| {
                match Entry::parse_from_bytes(v) {
                    Ok(e) if e.index == expected => {
                        size += e.compute_size() as u64;
                        entries.push(e);
                        expected += 1;
                        max_size.is_none_or(|m| size <= m)
                    }
                    Ok(_) => {
                        failure = Some(raft::Error::Store(StorageError::Unavailable));
                        false
                    }
                    Err(e) => {
                        failure = Some(raft::Error::Store(StorageError::Other(Box::new(e))));
                        false
                    }
                }
            });
            if let Err(e) = scanned {
                return Err(raft::Error::Store(StorageError::Other(Box::new(e))));
            }
            if let Some(e) = failure {
                return Err(e);
            }
            if expected < end && max_size.is_none_or(|m| size <= m) {
                return Err(raft::Error::Store(StorageError::Unavailable));
            }
        }
        if (entries.is_empty() || entries.last().unwrap().index + 1 == cache_first)
            && high > cache_first
        {
            let from = low.max(cache_first);
            let skip = (from - cache_first) as usize;
            entries.extend(
                self.cache
                    .iter()
                    .skip(skip)
                    .take((high - from) as usize)
                    .cloned(),
            );
        }
        raft::util::limit_size(&mut entries, max_size);
        Ok(entries)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let (truncated_index, truncated_term) = self.truncated();
        if idx == truncated_index {
            return Ok(truncated_term);
        }
        if idx < truncated_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.raft_state.last_index {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        if idx == self.raft_state.last_index {
            return Ok(self.raft_state.last_term);
        }
        let cache_first = self.cache_first();
        if idx >= cache_first {
            return Ok(self.cache[(idx - cache_first) as usize].term);
        }
        Ok(self.entry_from_engine(idx)?.term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.truncated().0 + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.raft_state.last_index)
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if let Some(snapshot) = self.generated.borrow_mut().take() {
            // A snapshot older than what raft needs (or than our log start) is useless.
            let index = snapshot.get_metadata().index;
            if index >= request_index && index >= self.truncated().0 {
                return Ok(snapshot);
            }
        }
        self.snapshot_wanted.set(true);
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: format!("e{index}").into_bytes().into(),
            ..Default::default()
        }
    }

    fn region() -> metapb::Region {
        metapb::Region {
            id: 1,
            peers: vec![metapb::Peer { id: 1, store_id: 1 }],
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            ..Default::default()
        }
    }

    /// A storage truncated at (3, 3) holding entries 4 and 5, the first of them on disk
    /// and the second only in the cache, as in TinyKV's PeerStorage tests.
    fn storage(dir: &std::path::Path) -> PeerStorage {
        let engine = Engine::open(dir).unwrap();
        let apply = RaftApplyState {
            applied_index: 3,
            truncated_state: Some(RaftTruncatedState { index: 3, term: 3 }),
        };
        let raft = RaftLocalState {
            hard_state: Some(Default::default()),
            last_index: 3,
            last_term: 3,
        };
        engine
            .write(
                &[
                    Mutation::put_msg(Cf::Meta, keys::apply_state_key(1), &apply),
                    Mutation::put_msg(Cf::Raft, keys::raft_state_key(1), &raft),
                ],
                true,
            )
            .unwrap();
        let mut s = PeerStorage::new(engine.clone(), region()).unwrap();
        let mut muts = vec![];
        s.append(vec![entry(4, 4), entry(5, 5)], &mut muts);
        muts.push(s.raft_state_mutation());
        engine.write(&muts, true).unwrap();
        s.on_persisted(5);
        // Both entries are applied and persisted: entry 4 leaves the cache and is read
        // from disk, entry 5 (the last applied) stays.
        s.set_apply_state(RaftApplyState {
            applied_index: 5,
            truncated_state: Some(RaftTruncatedState { index: 3, term: 3 }),
        });
        assert_eq!(s.cache.len(), 1);
        s
    }

    #[test]
    fn term_of_truncated_and_live_entries() {
        let dir = tempfile::tempdir().unwrap();
        let s = storage(dir.path());
        assert!(matches!(
            s.term(2),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert_eq!(s.term(3).unwrap(), 3);
        assert_eq!(s.term(4).unwrap(), 4);
        assert_eq!(s.term(5).unwrap(), 5);
        assert!(s.term(6).is_err());
        assert_eq!(s.first_index().unwrap(), 4);
        assert_eq!(s.last_index().unwrap(), 5);
    }

    #[test]
    fn entries_span_disk_and_cache() {
        let dir = tempfile::tempdir().unwrap();
        let s = storage(dir.path());
        let ctx = || GetEntriesContext::empty(false);
        assert!(matches!(
            s.entries(3, 5, None, ctx()),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        let got = s.entries(4, 5, None, ctx()).unwrap();
        assert_eq!(got, vec![entry(4, 4)]);
        let got = s.entries(4, 6, None, ctx()).unwrap();
        assert_eq!(got, vec![entry(4, 4), entry(5, 5)]);
        // A size limit still returns at least one entry.
        let got = s.entries(4, 6, Some(0), ctx()).unwrap();
        assert_eq!(got, vec![entry(4, 4)]);
    }

    #[test]
    fn append_overwrites_conflicting_tail_and_deletes_it_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = storage(dir.path());
        let ctx = || GetEntriesContext::empty(false);
        // Same terms: a plain overwrite.
        let mut muts = vec![];
        s.append(vec![entry(4, 4), entry(5, 5)], &mut muts);
        assert_eq!(s.last_index().unwrap(), 5);
        // A conflicting term at 4 truncates everything after it.
        let mut muts = vec![];
        s.append(vec![entry(4, 6)], &mut muts);
        assert!(muts.contains(&Mutation::Delete {
            cf: Cf::Raft,
            key: keys::raft_log_key(1, 5)
        }));
        muts.push(s.raft_state_mutation());
        s.engine.write(&muts, true).unwrap();
        assert_eq!(s.last_index().unwrap(), 4);
        assert_eq!(s.term(4).unwrap(), 6);
        assert_eq!(s.entries(4, 5, None, ctx()).unwrap(), vec![entry(4, 6)]);
        // A direct append extends the log.
        let mut muts = vec![];
        s.append(vec![entry(5, 6), entry(6, 6)], &mut muts);
        assert_eq!(s.last_index().unwrap(), 6);
        assert_eq!(s.entries(4, 7, None, ctx()).unwrap().len(), 3);
        // After a restart the persisted state is read back.
        s.engine.write(&muts, true).unwrap();
        s.engine.write(&[s.raft_state_mutation()], true).unwrap();
        let reloaded = PeerStorage::new(s.engine.clone(), region()).unwrap();
        assert_eq!(reloaded.last_index().unwrap(), 6);
        assert_eq!(reloaded.term(6).unwrap(), 6);
        assert_eq!(reloaded.entries(4, 7, None, ctx()).unwrap().len(), 3);
    }

    /// Writes region 1's raft state (last index and term, commit), apply state (applied,
    /// truncated) and the given log entries into a fresh engine, and loads its storage.
    fn load(
        raft: Option<(u64, u64, u64)>,
        apply: Option<(u64, Option<(u64, u64)>)>,
        entries: &[(u64, u64)],
    ) -> Result<PeerStorage> {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let mut muts = vec![];
        if let Some((last_index, last_term, commit)) = raft {
            let state = RaftLocalState {
                hard_state: Some(tinykv_proto::eraftpb::HardState {
                    term: 9,
                    vote: 0,
                    commit,
                }),
                last_index,
                last_term,
            };
            muts.push(Mutation::put_msg(Cf::Raft, keys::raft_state_key(1), &state));
        }
        if let Some((applied_index, truncated)) = apply {
            let state = RaftApplyState {
                applied_index,
                truncated_state: truncated.map(|(index, term)| RaftTruncatedState { index, term }),
            };
            muts.push(Mutation::put_msg(
                Cf::Meta,
                keys::apply_state_key(1),
                &state,
            ));
        }
        for &(index, term) in entries {
            muts.push(Mutation::Put {
                cf: Cf::Raft,
                key: keys::raft_log_key(1, index),
                value: entry(index, term).write_to_bytes().unwrap(),
            });
        }
        engine.write(&muts, true).unwrap();
        PeerStorage::new(engine, region())
    }

    #[test]
    fn consistent_state_loads() {
        let s = load(Some((7, 6, 6)), Some((6, Some((5, 5)))), &[(6, 6), (7, 6)]).unwrap();
        assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (6, 7));
        // A log that is empty after its truncated entry (a fresh region, a snapshot).
        let s = load(Some((5, 5, 5)), Some((5, Some((5, 5)))), &[]).unwrap();
        assert_eq!(s.last_index().unwrap(), 5);
        // The lazily persisted commit index is raised to the applied one.
        let s = load(Some((7, 6, 0)), Some((6, Some((5, 5)))), &[(6, 6), (7, 6)]).unwrap();
        assert_eq!(s.raft_state().hard_state.unwrap().commit, 6);
    }

    #[test]
    fn inconsistent_state_is_refused_naming_the_region() {
        let ok_apply = Some((6, Some((5, 5))));
        let ok_log: &[(u64, u64)] = &[(6, 6), (7, 6)];
        let cases: Vec<(&str, Result<PeerStorage>)> = vec![
            (
                "apply state present: false",
                load(Some((7, 6, 6)), None, ok_log),
            ),
            ("raft state present: false", load(None, ok_apply, ok_log)),
            (
                "no truncated state",
                load(Some((7, 6, 6)), Some((6, None)), ok_log),
            ),
            (
                "truncated at 6 but only 5 was applied",
                load(Some((7, 6, 6)), Some((5, Some((6, 6)))), &[(7, 6)]),
            ),
            (
                "raft log ends at 7 but 8 was applied",
                load(Some((7, 6, 6)), Some((8, Some((5, 5)))), ok_log),
            ),
            (
                "commit index 9 is past the end of the raft log (7)",
                load(Some((7, 6, 9)), ok_apply, ok_log),
            ),
            (
                "raft log entry 7 is missing",
                load(Some((7, 6, 6)), ok_apply, &[(6, 6)]),
            ),
            (
                "raft log entry 6 is missing",
                load(Some((7, 6, 6)), ok_apply, &[(7, 6)]),
            ),
            (
                "entry 7 has term 5 but the raft state says 6",
                load(Some((7, 6, 6)), ok_apply, &[(6, 5), (7, 5)]),
            ),
            (
                "empty after the truncated entry 5 of term 5, but its last term is 6",
                load(Some((5, 6, 5)), Some((5, Some((5, 5)))), &[]),
            ),
        ];
        for (expected, loaded) in cases {
            let err = loaded.err().unwrap_or_else(|| panic!("{expected}: loaded"));
            let text = err.to_string();
            assert!(matches!(err, Error::Corruption(_)), "{expected}: {err:?}");
            assert!(text.contains("region 1"), "{expected}: {text}");
            assert!(text.contains(expected), "{expected}: {text}");
        }
    }

    #[test]
    fn uninitialized_peer_starts_empty_and_initialized_needs_state() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let placeholder = metapb::Region {
            id: 7,
            ..Default::default()
        };
        let s = PeerStorage::new(engine.clone(), placeholder).unwrap();
        assert_eq!(s.first_index().unwrap(), 1);
        assert_eq!(s.last_index().unwrap(), 0);
        assert!(s.initial_state().unwrap().conf_state.voters.is_empty());
        let err = PeerStorage::new(engine.clone(), region()).err().unwrap();
        assert!(matches!(err, Error::Corruption(_)), "{err:?}");
        // A peer that voted before its snapshot arrived keeps its vote across restarts.
        let voted = RaftLocalState {
            hard_state: Some(tinykv_proto::eraftpb::HardState {
                term: 9,
                vote: 3,
                commit: 0,
            }),
            ..Default::default()
        };
        engine
            .write(
                &[Mutation::put_msg(Cf::Raft, keys::raft_state_key(7), &voted)],
                true,
            )
            .unwrap();
        let placeholder = metapb::Region {
            id: 7,
            ..Default::default()
        };
        let s = PeerStorage::new(engine, placeholder).unwrap();
        let hs = s.initial_state().unwrap().hard_state;
        assert_eq!((hs.term, hs.vote, s.last_index().unwrap()), (9, 3, 0));
    }
}
