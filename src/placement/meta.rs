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
//!   given twice, even across leader changes and restarts.
//!
//! Regions, leaders and sizes are not stored: the region leaders report them in every
//! heartbeat, and a new PD leader relearns them within one heartbeat interval.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tinykv_proto::metapb::StoreState;

use crate::config::StoreAddress;
use crate::error::{Error, Result};

/// Where the meta region starts. Every key from here on is reserved for the PD.
pub const META_REGION_START: &[u8] = tinykv_actors::keys::RESERVED_KEYS_START;

/// First key of the PD's records.
pub const RECORDS_START: &[u8] = b"\xffpd/";

/// End (exclusive) of the PD's records.
pub const RECORDS_END: &[u8] = b"\xffpd0";

const CLUSTER_KEY: &[u8] = b"\xffpd/cluster";
const STORE_PREFIX: &[u8] = b"\xffpd/store/";
const STORE_ID_LIMIT_KEY: &[u8] = b"\xffpd/store-id-limit";

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
}

impl PdRecords {
    /// Reads the records from the key-value pairs of `[RECORDS_START, RECORDS_END)`.
    pub fn decode(pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<PdRecords> {
        let mut records = PdRecords::default();
        for (key, value) in pairs {
            let corrupt = |e: &dyn std::fmt::Display| {
                Error::Io(format!(
                    "the placement driver's record {} is damaged: {e}",
                    String::from_utf8_lossy(key)
                ))
            };
            if key == CLUSTER_KEY {
                records.cluster = Some(serde_json::from_slice(value).map_err(|e| corrupt(&e))?);
            } else if key == STORE_ID_LIMIT_KEY {
                let bytes: [u8; 8] = value
                    .as_slice()
                    .try_into()
                    .map_err(|_| corrupt(&"expected 8 bytes"))?;
                records.store_id_limit = u64::from_be_bytes(bytes);
            } else if key.starts_with(STORE_PREFIX) {
                let store: StoreRecord = serde_json::from_slice(value).map_err(|e| corrupt(&e))?;
                records.stores.insert(store.id, store);
            }
        }
        Ok(records)
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

/// The key and value that record the store-id allocator's high-water mark.
pub fn store_id_limit_entry(limit: u64) -> (Vec<u8>, Vec<u8>) {
    (STORE_ID_LIMIT_KEY.to_vec(), limit.to_be_bytes().to_vec())
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
        ];
        pairs.sort();
        for (key, _) in &pairs {
            assert!(key.as_slice() >= RECORDS_START && key.as_slice() < RECORDS_END);
            assert!(is_reserved_key(key));
        }
        let records = PdRecords::decode(&pairs).unwrap();
        assert_eq!(records.cluster, Some(cluster));
        assert_eq!(records.stores[&7].state(), StoreState::Offline);
        assert_eq!(records.store_id_limit, 32);
        assert!(!is_reserved_key(b"user-key"));

        pairs[0].1 = b"{not json".to_vec();
        let err = PdRecords::decode(&pairs).unwrap_err().to_string();
        assert!(err.contains("is damaged"), "{err}");
    }
}
