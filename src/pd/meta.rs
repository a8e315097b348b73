//! The placement driver's durable state: where it lives in the keyspace and how it reads.
//!
//! The PD keeps its metadata in the replicated keyspace itself, under keys that begin with
//! the byte `0xFF`, which client keys may not (the REST API refuses them). The first
//! time a placement driver starts, it splits the key space at [`META_REGION_START`]; the
//! region from there to the end, the *meta region*, holds only the PD's few keys, so it
//! never grows enough to split again and the leader of that one region is the PD leader.
//! Because the records are ordinary raft writes, they survive whatever a raft group
//! survives: the loss of a minority of the meta region's replicas.
//!
//! The records, as JSON values:
//!
//! - `\xFFpd/cluster`: [`ClusterRecord`], the cluster's id and replica count; its
//!   absence means the metadata has not been written yet;
//! - `\xFFpd/store/<id, 8 bytes big-endian>`: a [`StoreRecord`] per store that ever
//!   belonged to the cluster, with its addresses and state (Up, Offline, Tombstone);
//! - `\xFFpd/store-id-limit`: the store-id allocator's high-water mark. Store ids are
//!   handed out in batches: the limit is raised (durably, by raft) before any id below it
//!   is given away, and a new PD leader continues above the limit, so no id is ever
//!   given twice, even across leader changes and restarts;
//! - `\xFFpd/id-limit`: the same for region and peer ids, which the PD hands to the nodes
//!   in batches for their splits and membership changes (see [`crate::pd::ids`]); ids stay
//!   below `1 << 40`, clear of the 13-digit ids stores of earlier versions made up;
//! - `\xFFpd/tso-limit`: the timestamp oracle's limit, milliseconds since the Unix
//!   epoch: every timestamp handed out has a physical part below it, and a new PD leader
//!   starts at it (see [`crate::pd::tso`]);
//! - `\xFFpd/auth`: the [`AuthSet`], authentication's whole state (on or off, every token
//!   digest and certificate user, a version), in one record so that every change is one
//!   atomic write (see [`crate::auth`]).
//!
//! Regions, leaders and sizes are not stored: the region leaders report them in every
//! heartbeat, and a new PD leader relearns them within one heartbeat interval.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tinykv_proto::metapb::StoreState;

use crate::auth::AuthSet;
use crate::config::StoreAddress;

/// Where the meta region starts. Every key from here on is reserved for the PD.
pub const META_REGION_START: &[u8] = tinykv_actors::keys::RESERVED_KEYS_START;

/// First key of the PD's records.
pub const RECORDS_START: &[u8] = b"\xffpd/";

/// End (exclusive) of the PD's records.
pub const RECORDS_END: &[u8] = b"\xffpd0";

const CLUSTER_KEY: &[u8] = b"\xffpd/cluster";
const STORE_PREFIX: &[u8] = b"\xffpd/store/";
const STORE_ID_LIMIT_KEY: &[u8] = b"\xffpd/store-id-limit";
const AUTH_KEY: &[u8] = b"\xffpd/auth";
const ID_LIMIT_KEY: &[u8] = b"\xffpd/id-limit";
const TSO_LIMIT_KEY: &[u8] = b"\xffpd/tso-limit";
const GC_SAFE_POINT_KEY: &[u8] = b"\xffpd/gc-safe-point";

/// How many store ids the allocator reserves per durable write.
pub const STORE_ID_BATCH: u64 = 16;

pub use tinykv_actors::keys::is_reserved_key;

/// The cluster-wide settings, written once when the PD first starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// The cluster's id.
    pub cluster_id: u64,
    /// Replicas per region.
    pub max_peer_count: usize,
}

/// A store as the PD records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreRecord {
    /// The store's id.
    pub id: u64,
    /// `host:port` of its raft transport.
    pub raft_addr: String,
    /// `host:port` of its HTTP API.
    pub http_addr: String,
    /// `Up`, `Offline` or `Tombstone`.
    pub state: String,
}

impl StoreRecord {
    /// A new `Up` store at `address`.
    pub fn up(address: &StoreAddress) -> StoreRecord {
        StoreRecord {
            id: address.id,
            raft_addr: address.raft_addr.clone(),
            http_addr: address.http_addr.clone(),
            state: StoreState::Up.as_str_name().to_string(),
        }
    }

    /// The record's state (an unknown name reads as `Up`, which the PD then corrects).
    pub fn state(&self) -> StoreState {
        StoreState::from_str_name(&self.state).unwrap_or(StoreState::Up)
    }

    /// The record with its state set to `state`.
    pub fn with_state(mut self, state: StoreState) -> StoreRecord {
        self.state = state.as_str_name().to_string();
        self
    }

    /// The addresses, as the address book keeps them.
    pub fn address(&self) -> StoreAddress {
        StoreAddress {
            id: self.id,
            raft_addr: self.raft_addr.clone(),
            http_addr: self.http_addr.clone(),
        }
    }
}

/// Everything the PD keeps durably, as read back from the meta region.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PdRecords {
    /// The cluster record; `None` until the metadata is first written.
    pub cluster: Option<ClusterRecord>,
    /// Every store ever registered, by id.
    pub stores: BTreeMap<u64, StoreRecord>,
    /// The store-id allocator's high-water mark: ids up to it may have been handed out.
    pub store_id_limit: u64,
    /// The region- and peer-id allocator's high-water mark: ids up to it may have been
    /// handed out (0: none ever was, or the record predates PD-allocated ids).
    pub id_limit: u64,
    /// Authentication's state (off, version 0, until first changed).
    pub auth: AuthSet,
    /// The timestamp oracle's limit (0: no timestamp was ever handed out).
    pub tso_limit: u64,
    /// Garbage collection's safe point (0: nothing was ever collected).
    pub gc_safe_point: u64,
}

/// A record that could not be read back: which one, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedRecord {
    /// What the record is.
    pub record: RecordKind,
    /// What is wrong with it.
    pub problem: String,
}

/// Which of the PD's records a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// The cluster record.
    Cluster,
    /// The record of the store with this id.
    Store(u64),
    /// The store-id allocator's high-water mark.
    StoreIdLimit,
    /// The region- and peer-id allocator's high-water mark.
    IdLimit,
    /// Authentication's state.
    Auth,
    /// The timestamp oracle's limit.
    TsoLimit,
    /// Garbage collection's safe point.
    GcSafePoint,
    /// A key among the records that names none of them.
    Unknown,
}

impl PdRecords {
    /// Reads the records from the key-value pairs of `[RECORDS_START, RECORDS_END)`. A
    /// record that cannot be read is left out and listed among the damaged ones, for the
    /// PD to repair: one bad value must not stop the placement driver for good.
    pub fn decode(pairs: &[(Vec<u8>, Vec<u8>)]) -> (PdRecords, Vec<DamagedRecord>) {
        let mut records = PdRecords::default();
        let mut damaged = Vec::new();
        for (key, value) in pairs {
            let kind = record_kind(key);
            let problem = match kind {
                RecordKind::Cluster => serde_json::from_slice::<ClusterRecord>(value)
                    .map(|cluster| records.cluster = Some(cluster))
                    .map_err(|e| e.to_string()),
                RecordKind::StoreIdLimit => <[u8; 8]>::try_from(value.as_slice())
                    .map(|bytes| records.store_id_limit = u64::from_be_bytes(bytes))
                    .map_err(|_| "expected 8 bytes".to_string()),
                RecordKind::IdLimit => <[u8; 8]>::try_from(value.as_slice())
                    .map(|bytes| records.id_limit = u64::from_be_bytes(bytes))
                    .map_err(|_| "expected 8 bytes".to_string()),
                RecordKind::TsoLimit => <[u8; 8]>::try_from(value.as_slice())
                    .map(|bytes| records.tso_limit = u64::from_be_bytes(bytes))
                    .map_err(|_| "expected 8 bytes".to_string()),
                RecordKind::GcSafePoint => <[u8; 8]>::try_from(value.as_slice())
                    .map(|bytes| records.gc_safe_point = u64::from_be_bytes(bytes))
                    .map_err(|_| "expected 8 bytes".to_string()),
                RecordKind::Store(id) => match serde_json::from_slice::<StoreRecord>(value) {
                    Ok(store) if store.id == id => {
                        records.stores.insert(id, store);
                        Ok(())
                    }
                    Ok(store) => Err(format!("it describes store {}", store.id)),
                    Err(e) => Err(e.to_string()),
                },
                RecordKind::Auth => serde_json::from_slice::<AuthSet>(value)
                    .map(|auth| records.auth = auth)
                    .map_err(|e| e.to_string()),
                RecordKind::Unknown => Err("no record is kept under this key".to_string()),
            };
            if let Err(problem) = problem {
                damaged.push(DamagedRecord {
                    record: kind,
                    problem: format!(
                        "the placement driver's record {} is damaged: {problem}",
                        String::from_utf8_lossy(key)
                    ),
                });
            }
        }
        (records, damaged)
    }
}

/// Which record `key` holds.
fn record_kind(key: &[u8]) -> RecordKind {
    if key == CLUSTER_KEY {
        RecordKind::Cluster
    } else if key == STORE_ID_LIMIT_KEY {
        RecordKind::StoreIdLimit
    } else if key == ID_LIMIT_KEY {
        RecordKind::IdLimit
    } else if key == AUTH_KEY {
        RecordKind::Auth
    } else if key == TSO_LIMIT_KEY {
        RecordKind::TsoLimit
    } else if key == GC_SAFE_POINT_KEY {
        RecordKind::GcSafePoint
    } else if let Some(id) = key.strip_prefix(STORE_PREFIX) {
        <[u8; 8]>::try_from(id)
            .map(|id| RecordKind::Store(u64::from_be_bytes(id)))
            .unwrap_or(RecordKind::Unknown)
    } else {
        RecordKind::Unknown
    }
}

/// The key of a record of `kind` ([`RecordKind::Unknown`] has none).
pub fn record_key(kind: RecordKind) -> Option<Vec<u8>> {
    match kind {
        RecordKind::Cluster => Some(CLUSTER_KEY.to_vec()),
        RecordKind::StoreIdLimit => Some(STORE_ID_LIMIT_KEY.to_vec()),
        RecordKind::IdLimit => Some(ID_LIMIT_KEY.to_vec()),
        RecordKind::Auth => Some(AUTH_KEY.to_vec()),
        RecordKind::TsoLimit => Some(TSO_LIMIT_KEY.to_vec()),
        RecordKind::GcSafePoint => Some(GC_SAFE_POINT_KEY.to_vec()),
        RecordKind::Store(id) => {
            let mut key = STORE_PREFIX.to_vec();
            key.extend_from_slice(&id.to_be_bytes());
            Some(key)
        }
        RecordKind::Unknown => None,
    }
}

/// The key and value that record the cluster's settings.
pub fn cluster_entry(record: &ClusterRecord) -> (Vec<u8>, Vec<u8>) {
    (CLUSTER_KEY.to_vec(), to_json(record))
}

/// The key and value that record a store.
pub fn store_entry(record: &StoreRecord) -> (Vec<u8>, Vec<u8>) {
    let mut key = STORE_PREFIX.to_vec();
    key.extend_from_slice(&record.id.to_be_bytes());
    (key, to_json(record))
}

/// The key and value that record the region- and peer-id allocator's high-water mark.
pub fn id_limit_entry(limit: u64) -> (Vec<u8>, Vec<u8>) {
    (ID_LIMIT_KEY.to_vec(), limit.to_be_bytes().to_vec())
}

/// The key and value that record the store-id allocator's high-water mark.
pub fn store_id_limit_entry(limit: u64) -> (Vec<u8>, Vec<u8>) {
    (STORE_ID_LIMIT_KEY.to_vec(), limit.to_be_bytes().to_vec())
}

/// The key and value that record the timestamp oracle's limit.
pub fn tso_limit_entry(limit_ms: u64) -> (Vec<u8>, Vec<u8>) {
    (TSO_LIMIT_KEY.to_vec(), limit_ms.to_be_bytes().to_vec())
}

/// The key and value that record garbage collection's safe point.
pub fn gc_safe_point_entry(safe_point: u64) -> (Vec<u8>, Vec<u8>) {
    (
        GC_SAFE_POINT_KEY.to_vec(),
        safe_point.to_be_bytes().to_vec(),
    )
}

/// The key and value that record authentication's state.
pub fn auth_entry(auth: &AuthSet) -> (Vec<u8>, Vec<u8>) {
    (AUTH_KEY.to_vec(), to_json(auth))
}

fn to_json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize to JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_what_was_written() {
        let store = StoreRecord {
            id: 7,
            raft_addr: "127.0.0.1:1".into(),
            http_addr: "127.0.0.1:2".into(),
            state: "Offline".into(),
        };
        let cluster = ClusterRecord {
            cluster_id: 3,
            max_peer_count: 5,
        };
        let mut pairs = vec![
            cluster_entry(&cluster),
            store_entry(&store),
            store_id_limit_entry(32),
            id_limit_entry(20_000),
            tso_limit_entry(1_700_000_000_000),
        ];
        pairs.sort();
        for (key, _) in &pairs {
            assert!(key.as_slice() >= RECORDS_START && key.as_slice() < RECORDS_END);
            assert!(is_reserved_key(key));
        }
        let (records, damaged) = PdRecords::decode(&pairs);
        assert!(damaged.is_empty(), "{damaged:?}");
        assert_eq!(records.cluster, Some(cluster));
        assert_eq!(records.stores[&7].state(), StoreState::Offline);
        assert_eq!(records.store_id_limit, 32);
        assert_eq!(records.id_limit, 20_000);
        assert_eq!(records.tso_limit, 1_700_000_000_000);
        assert!(!is_reserved_key(b"user-key"));

        // A damaged record is left out and named; the others are still read.
        let (cluster_key, _) = cluster_entry(&cluster);
        let at = pairs.iter().position(|(k, _)| *k == cluster_key).unwrap();
        pairs[at].1 = b"not json".to_vec();
        let (store_key, _) = store_entry(&store);
        let at = pairs.iter().position(|(k, _)| *k == store_key).unwrap();
        pairs[at].1 = br#"{"id":8,"raft_addr":"a","http_addr":"b","state":"Up"}"#.to_vec();
        let (records, damaged) = PdRecords::decode(&pairs);
        assert_eq!(records.cluster, None);
        assert!(
            records.stores.is_empty(),
            "store 7's record describes store 8"
        );
        assert_eq!(records.store_id_limit, 32);
        assert_eq!(records.id_limit, 20_000);
        let kinds: Vec<RecordKind> = damaged.iter().map(|d| d.record).collect();
        assert!(kinds.contains(&RecordKind::Cluster) && kinds.contains(&RecordKind::Store(7)));
        assert!(damaged[0].problem.contains("is damaged"), "{damaged:?}");
        assert_eq!(record_key(RecordKind::Store(7)), Some(store_key));

        // A limit that is not 8 bytes is damaged, and reads as none.
        let (tso_key, _) = tso_limit_entry(5);
        let (records, damaged) = PdRecords::decode(&[(tso_key.clone(), vec![1, 2, 3])]);
        assert_eq!(records.tso_limit, 0);
        assert_eq!(damaged[0].record, RecordKind::TsoLimit);
        assert_eq!(record_key(RecordKind::TsoLimit), Some(tso_key));
    }
}
