//! Region snapshots: how a peer that is far behind (or new) catches up.
//!
//! **Generation.** When raft needs to send a snapshot, the leader reads one consistent
//! engine snapshot and takes from it, at a single instant: the region (`RegionLocalState`),
//! the apply state (the snapshot's index is the applied index, and its term comes from the
//! log or the truncated state), every pair of the region's range in the three client
//! column families, and the region's session records (see [`crate::session`]). Because
//! applied data and the apply state are always written together, the pairs are exactly the
//! state machine at that index.
//!
//! **Format.** `eraftpb::Snapshot.data` holds a `RaftSnapshotData`: the region, the pairs of
//! `default`, then `lock`, then `write`, then `session`, in key order, and in
//! `meta.cf_files` one entry per keyspace with the number of its pairs (`size`) and a CRC32
//! of their keys and values (`checksum`). `file_size` is the total payload in bytes.
//!
//! **Application.** The receiver checks the counts and checksums, then builds one batch:
//! clear the region's old and new ranges in every column family and its whole raft log,
//! write the pairs, and set the raft, apply and region state to the snapshot's index. The
//! raft-log writer commits it with an fsync, atomically: a crash leaves either the old
//! peer or the new one, never a mix.

use protobuf::Message as _;
use raft::eraftpb;
use tinykv_proto::metapb;
use tinykv_proto::raft_serverpb::{
    KeyValue, PeerState, RaftApplyState, RaftLocalState, RaftSnapshotData, RaftTruncatedState,
    RegionLocalState, SnapshotCfFile, SnapshotMeta,
};

use crate::engine::{Cf, Engine, Mutation, CF_DEFAULT, CF_LOCK, CF_WRITE};
use crate::error::{Error, Result};
use crate::keys;
use crate::session::SessionTable;
use crate::validation;

/// The column families a snapshot carries, and their names in it.
const CF_NAMES: [(Cf, &str); 3] = [
    (Cf::Default, CF_DEFAULT),
    (Cf::Lock, CF_LOCK),
    (Cf::Write, CF_WRITE),
];

/// The name of the snapshot's section of session records.
const SESSION_SECTION: &str = "session";

fn checksum(pairs: &[KeyValue]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    for kv in pairs {
        hasher.update(&(kv.key.len() as u64).to_be_bytes());
        hasher.update(&kv.key);
        hasher.update(&kv.value);
    }
    hasher.finalize()
}

/// Builds a snapshot of region `region_id` from the engine's current state.
pub fn generate(engine: &Engine, region_id: u64) -> Result<eraftpb::Snapshot> {
    let snap = engine.snapshot();
    let region = snap
        .get_msg::<RegionLocalState>(Cf::Meta, &keys::region_state_key(region_id))?
        .and_then(|s| s.region)
        .ok_or_else(|| Error::Corruption(format!("region {region_id} has no region state")))?;
    let apply_state: RaftApplyState = snap
        .get_msg(Cf::Meta, &keys::apply_state_key(region_id))?
        .ok_or_else(|| Error::Corruption(format!("region {region_id} has no apply state")))?;
    let index = apply_state.applied_index;
    let truncated = apply_state.truncated_state.unwrap_or_default();
    let term = if index == truncated.index {
        truncated.term
    } else {
        let bytes = snap
            .get(Cf::Raft, &keys::raft_log_key(region_id, index))?
            .ok_or_else(|| {
                Error::Corruption(format!("region {region_id}: applied entry {index} missing"))
            })?;
        eraftpb::Entry::parse_from_bytes(&bytes)?.term
    };

    let mut data = Vec::new();
    let mut cf_files = Vec::new();
    let mut file_size = 0u64;
    let sections = CF_NAMES
        .into_iter()
        .map(|(cf, name)| (Some(cf), name))
        .chain([(None, SESSION_SECTION)]);
    for (cf, name) in sections {
        let mut pairs = Vec::new();
        match cf {
            Some(cf) => snap.scan(cf, &region.start_key, &region.end_key, |k, v| {
                pairs.push(KeyValue {
                    key: k.to_vec(),
                    value: v.to_vec(),
                });
                true
            })?,
            None => pairs = SessionTable::load_at(&snap, &region)?.pairs(),
        }
        file_size += pairs
            .iter()
            .map(|kv| (kv.key.len() + kv.value.len()) as u64)
            .sum::<u64>();
        cf_files.push(SnapshotCfFile {
            cf: name.to_string(),
            size: pairs.len() as u64,
            checksum: checksum(&pairs),
        });
        data.extend(pairs);
    }
    let mut merged_sources = Vec::new();
    let (start, end) = keys::merged_source_range(region_id);
    let mut undecodable = None;
    snap.scan(Cf::Meta, &start, &end, |_, value| {
        match <metapb::Region as prost::Message>::decode(value) {
            Ok(source) => merged_sources.push(source),
            Err(e) => undecodable = Some(e),
        }
        undecodable.is_none()
    })?;
    if let Some(e) = undecodable {
        return Err(Error::Corruption(format!(
            "region {region_id}: an undecodable record of a merged region: {e}"
        )));
    }
    let payload = RaftSnapshotData {
        region: Some(region.clone()),
        file_size,
        data,
        meta: Some(SnapshotMeta { cf_files }),
        merged_sources,
    };
    let mut snapshot = eraftpb::Snapshot {
        data: prost::Message::encode_to_vec(&payload).into(),
        ..Default::default()
    };
    let metadata = snapshot.mut_metadata();
    metadata.index = index;
    metadata.term = term;
    metadata.mut_conf_state().voters = region.peers.iter().map(|p| p.id).collect();
    Ok(snapshot)
}

/// A received snapshot whose payload passed its checks.
pub struct VerifiedSnapshot {
    /// The region as of the snapshot.
    pub region: metapb::Region,
    /// Index of the last entry the snapshot covers.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    /// The pairs of each column family.
    pub pairs: Vec<(Cf, Vec<KeyValue>)>,
    /// The region's session records.
    pub sessions: SessionTable,
    /// The regions merged into this one (as their PrepareMerge left them).
    pub merged_sources: Vec<metapb::Region>,
}

/// Decodes a snapshot's payload and checks its per-column-family counts and checksums.
pub fn verify(snapshot: &eraftpb::Snapshot) -> Result<VerifiedSnapshot> {
    let payload: RaftSnapshotData = prost::Message::decode(snapshot.data.as_ref())?;
    let region = payload
        .region
        .ok_or_else(|| Error::Codec("snapshot without a region".into()))?;
    let files = payload.meta.map(|m| m.cf_files).unwrap_or_default();
    let mut data = payload.data.into_iter();
    let mut pairs = Vec::with_capacity(files.len());
    let mut sessions = None;
    for file in &files {
        let section: Vec<KeyValue> = data.by_ref().take(file.size as usize).collect();
        if section.len() as u64 != file.size || checksum(&section) != file.checksum {
            return Err(Error::Codec(format!(
                "snapshot of region {}: cf {} fails its count or checksum",
                region.id, file.cf
            )));
        }
        if file.cf == SESSION_SECTION {
            if sessions.is_some() {
                return Err(Error::Codec(format!(
                    "snapshot of region {} lists its session records twice",
                    region.id
                )));
            }
            let (start, end) = keys::session_range(&region.start_key, &region.end_key);
            let table = SessionTable::from_pairs(&section, snapshot.get_metadata().index)
                .filter(|_| section.iter().all(|kv| keys::in_range(&kv.key, &start, &end)))
                .ok_or_else(|| {
                    Error::Codec(format!(
                        "snapshot of region {} holds a malformed session record or one outside its range",
                        region.id
                    ))
                })?;
            sessions = Some(table);
            continue;
        }
        let cf = CF_NAMES
            .iter()
            .find(|(_, name)| *name == file.cf)
            .map(|(cf, _)| *cf)
            .ok_or_else(|| Error::Codec(format!("snapshot names unknown cf {:?}", file.cf)))?;
        if pairs.iter().any(|(seen, _)| *seen == cf) {
            return Err(Error::Codec(format!(
                "snapshot of region {} lists cf {} twice",
                region.id, file.cf
            )));
        }
        // Written as they are: every pair must be one the engine can store, inside the
        // region (a pair outside it would overwrite another region's data).
        for kv in &section {
            validation::check_key(&kv.key)
                .map_err(|e| Error::Codec(format!("snapshot of region {}: {e}", region.id)))?;
            if kv.value.len() > validation::MAX_VALUE_BYTES {
                return Err(Error::Codec(format!(
                    "snapshot of region {}: a value of {} bytes",
                    region.id,
                    kv.value.len()
                )));
            }
            if !keys::in_range(&kv.key, &region.start_key, &region.end_key) {
                return Err(Error::Codec(format!(
                    "snapshot of region {} holds key {:?} outside its range",
                    region.id, kv.key
                )));
            }
        }
        pairs.push((cf, section));
    }
    if data.next().is_some() {
        return Err(Error::Codec(
            "snapshot carries pairs beyond its cf files".into(),
        ));
    }
    let merged_sources = payload.merged_sources;
    if merged_sources
        .iter()
        .any(|source| source.id == 0 || source.id == region.id)
    {
        return Err(Error::Codec(format!(
            "snapshot of region {} names a merged region without an id, or itself",
            region.id
        )));
    }
    let metadata = snapshot.get_metadata();
    Ok(VerifiedSnapshot {
        region,
        index: metadata.index,
        term: metadata.term,
        pairs,
        sessions: sessions.unwrap_or_default(),
        merged_sources,
    })
}

/// [`verify`], and checks that the snapshot is one for `peer` of region `region_id`: the
/// region it carries is that region, lists `peer` among distinct peers on distinct
/// stores, and matches the configuration raft will restore from the snapshot's
/// metadata, and its range is a proper one.
pub fn verify_for(
    snapshot: &eraftpb::Snapshot,
    region_id: u64,
    peer: &metapb::Peer,
) -> Result<VerifiedSnapshot> {
    let verified = verify(snapshot)?;
    let region = &verified.region;
    let fail = |why: String| {
        Err(Error::Codec(format!(
            "snapshot of region {region_id}: {why}"
        )))
    };
    if region.id != region_id {
        return fail(format!("it carries region {}", region.id));
    }
    if !region.peers.contains(peer) {
        return fail(format!(
            "its region {region:?} does not include peer {peer:?}"
        ));
    }
    let mut ids: Vec<u64> = region.peers.iter().map(|p| p.id).collect();
    let mut stores: Vec<u64> = region.peers.iter().map(|p| p.store_id).collect();
    ids.sort_unstable();
    stores.sort_unstable();
    let mut voters = snapshot.get_metadata().get_conf_state().voters.clone();
    voters.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) || stores.windows(2).any(|w| w[0] == w[1]) {
        return fail(format!(
            "its region has repeated peers or stores: {region:?}"
        ));
    }
    if voters != ids {
        return fail(format!(
            "its voters {voters:?} are not its region's peers {ids:?}"
        ));
    }
    if !region.end_key.is_empty() && region.end_key <= region.start_key {
        return fail("its range is empty".into());
    }
    Ok(verified)
}

impl VerifiedSnapshot {
    /// The mutations that replace the peer's state with the snapshot: clear `old_region`'s
    /// and the new region's ranges and the whole raft log, write the pairs and the new raft,
    /// apply and region state. `hard_state` is the raft hard state to persist with it.
    pub fn apply_mutations(
        &self,
        old_region: &metapb::Region,
        hard_state: tinykv_proto::eraftpb::HardState,
    ) -> (Vec<Mutation>, RaftLocalState, RaftApplyState) {
        let region_id = self.region.id;
        let mut mutations = Vec::new();
        let mut ranges = vec![(&self.region.start_key, &self.region.end_key)];
        if !old_region.peers.is_empty() {
            ranges.push((&old_region.start_key, &old_region.end_key));
        }
        for (cf, _) in CF_NAMES {
            for (start, end) in &ranges {
                mutations.push(Mutation::DeleteRange {
                    cf,
                    start: start.to_vec(),
                    end: end.to_vec(),
                });
            }
        }
        // The session records, as a checkpoint replacing the region's whole journal.
        mutations.extend(self.sessions.checkpoint_write(region_id, self.index));
        mutations.push(Mutation::DeleteRange {
            cf: Cf::Raft,
            start: keys::raft_log_key(region_id, 0),
            end: keys::raft_log_key(region_id, u64::MAX),
        });
        for (cf, pairs) in &self.pairs {
            for kv in pairs {
                mutations.push(Mutation::Put {
                    cf: *cf,
                    key: kv.key.clone(),
                    value: kv.value.clone(),
                });
            }
        }
        let mut hard_state = hard_state;
        hard_state.commit = hard_state.commit.max(self.index);
        hard_state.term = hard_state.term.max(self.term);
        let raft_state = RaftLocalState {
            hard_state: Some(hard_state),
            last_index: self.index,
            last_term: self.term,
        };
        let apply_state = RaftApplyState {
            applied_index: self.index,
            truncated_state: Some(RaftTruncatedState {
                index: self.index,
                term: self.term,
            }),
        };
        mutations.push(Mutation::put_msg(
            Cf::Raft,
            keys::raft_state_key(region_id),
            &raft_state,
        ));
        mutations.push(Mutation::put_msg(
            Cf::Meta,
            keys::apply_state_key(region_id),
            &apply_state,
        ));
        mutations.push(Mutation::put_msg(
            Cf::Meta,
            keys::region_state_key(region_id),
            &RegionLocalState {
                state: PeerState::Normal as i32,
                region: Some(self.region.clone()),
                merge_state: None,
            },
        ));
        // What the region absorbed: a CommitMerge of one of these, applied after the
        // snapshot, is acknowledged as done, as on the replicas that applied it.
        for source in &self.merged_sources {
            mutations.push(Mutation::put_msg(
                Cf::Meta,
                keys::merged_source_key(region_id, source.id),
                source,
            ));
        }
        (mutations, raft_state, apply_state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::initial_region_mutations;

    fn region(id: u64, start: &[u8], end: &[u8]) -> metapb::Region {
        metapb::Region {
            id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            peers: vec![metapb::Peer { id: 1, store_id: 1 }],
        }
    }

    fn put(cf: Cf, k: &[u8], v: &[u8]) -> Mutation {
        Mutation::Put {
            cf,
            key: k.to_vec(),
            value: v.to_vec(),
        }
    }

    #[test]
    fn snapshot_carries_all_cfs_of_the_range_and_replaces_stale_data() {
        let src_dir = tempfile::tempdir().unwrap();
        let src = Engine::open(src_dir.path()).unwrap();
        let r = region(1, b"b", b"m");
        src.write(&initial_region_mutations(&r), true).unwrap();
        src.write(
            &[
                put(Cf::Default, b"a", b"outside"),
                put(Cf::Default, b"c", b"1"),
                put(Cf::Lock, b"d", b"L"),
                put(Cf::Write, b"e", b"W"),
                put(Cf::Default, b"m", b"outside"),
            ],
            true,
        )
        .unwrap();
        // Session records of keys in the range travel; those of keys outside stay.
        let mut table = SessionTable::default();
        table.begin_batch(5);
        for key in [&b"a"[..], b"c", b"l\xff\xff", b"m"] {
            let session = tinykv_proto::raft_cmdpb::WriteSession {
                request_id: b"id".to_vec(),
                issued_ms: 1,
                ttl_ms: 1_000,
            };
            let request = tinykv_proto::raft_cmdpb::Request::default();
            table.decide(key, &session, &request);
        }
        src.write(&table.journal_mutations(1), true).unwrap();
        let snap = generate(&src, 1).unwrap();
        assert_eq!(snap.get_metadata().index, 5);
        assert_eq!(snap.get_metadata().term, 5);

        let dst_dir = tempfile::tempdir().unwrap();
        let dst = Engine::open(dst_dir.path()).unwrap();
        // Stale data in the range must go, data outside must stay.
        dst.write(
            &[
                put(Cf::Lock, b"k", b"stale"),
                put(Cf::Default, b"z", b"other region"),
            ],
            true,
        )
        .unwrap();
        let verified = verify(&snap).unwrap();
        let (mutations, raft_state, apply_state) = verified.apply_mutations(
            &metapb::Region {
                id: 1,
                ..Default::default()
            },
            Default::default(),
        );
        dst.write(&mutations, true).unwrap();
        assert_eq!(dst.get(Cf::Default, b"c").unwrap(), Some(b"1".to_vec()));
        assert_eq!(dst.get(Cf::Lock, b"d").unwrap(), Some(b"L".to_vec()));
        assert_eq!(dst.get(Cf::Write, b"e").unwrap(), Some(b"W".to_vec()));
        assert_eq!(dst.get(Cf::Lock, b"k").unwrap(), None);
        assert_eq!(dst.get(Cf::Default, b"a").unwrap(), None);
        assert_eq!(
            dst.get(Cf::Default, b"z").unwrap(),
            Some(b"other region".to_vec())
        );
        assert_eq!((raft_state.last_index, apply_state.applied_index), (5, 5));
        let carried = verified.sessions.clone();
        assert_eq!(carried.len(), 2, "the records of c and l\\xff\\xff");
        assert_eq!(
            carried,
            SessionTable::load(&dst, &verified.region).unwrap(),
            "the table the ApplyFsm gets is the one written"
        );
    }

    #[test]
    fn corrupted_snapshot_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let r = region(1, b"", b"");
        engine.write(&initial_region_mutations(&r), true).unwrap();
        engine.write(&[put(Cf::Default, b"k", b"v")], true).unwrap();
        let mut snap = generate(&engine, 1).unwrap();
        let mut payload: RaftSnapshotData = prost::Message::decode(snap.data.as_ref()).unwrap();
        payload.data[0].value = b"tampered".to_vec();
        snap.data = prost::Message::encode_to_vec(&payload).into();
        assert!(matches!(verify(&snap), Err(Error::Codec(_))));
    }

    /// Re-encodes `snap` after `tamper` changed its payload, with matching checksums: a
    /// forger's snapshot, not a damaged one.
    fn forged(
        snap: &eraftpb::Snapshot,
        tamper: impl Fn(&mut RaftSnapshotData),
    ) -> eraftpb::Snapshot {
        let mut payload: RaftSnapshotData = prost::Message::decode(snap.data.as_ref()).unwrap();
        tamper(&mut payload);
        let mut at = 0;
        for file in &mut payload.meta.as_mut().unwrap().cf_files {
            let section = &payload.data[at..at + file.size as usize];
            file.checksum = checksum(section);
            at += file.size as usize;
        }
        let mut forged = snap.clone();
        forged.data = prost::Message::encode_to_vec(&payload).into();
        forged
    }

    #[test]
    fn a_snapshot_must_fit_its_receiver_and_its_range() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let r = region(7, b"b", b"m");
        engine.write(&initial_region_mutations(&r), true).unwrap();
        engine.write(&[put(Cf::Default, b"c", b"v")], true).unwrap();
        let snap = generate(&engine, 7).unwrap();
        let me = metapb::Peer { id: 1, store_id: 1 };
        assert!(verify_for(&snap, 7, &me).is_ok());
        assert!(verify_for(&snap, 8, &me).is_err(), "another region");
        let stranger = metapb::Peer { id: 2, store_id: 2 };
        assert!(verify_for(&snap, 7, &stranger).is_err(), "not a peer");

        let outside = forged(&snap, |p| p.data[0].key = b"z".to_vec());
        assert!(
            verify(&snap).is_ok() && verify(&outside).is_err(),
            "key outside the range"
        );
        let empty_key = forged(&snap, |p| p.data[0].key = Vec::new());
        assert!(verify(&empty_key).is_err());
        let long_key = forged(&snap, |p| p.data[0].key = [b'c'; 70_000].to_vec());
        assert!(verify(&long_key).is_err());
        let other_voters = {
            let mut s = snap.clone();
            s.mut_metadata().mut_conf_state().voters = vec![1, 5];
            s
        };
        assert!(verify_for(&other_voters, 7, &me).is_err());
        let twice = forged(&snap, |p| {
            p.region
                .as_mut()
                .unwrap()
                .peers
                .push(metapb::Peer { id: 1, store_id: 3 })
        });
        assert!(verify_for(&twice, 7, &me).is_err(), "a repeated peer id");
    }
}
