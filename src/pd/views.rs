//! What the admin API shows of the placement driver: the cluster, its stores, its
//! regions, operators.
//!
//! The views are built by the PD leader from its coordinator and records, as JSON, and
//! relayed unchanged by whichever node the client asked. Times are milliseconds since
//! the Unix epoch on the leader's clock; `now_ms` is included so that a client can show
//! ages without trusting its own clock.
//!
//! The answers are typed ([`ClusterView`], [`StoreSummaryView`], [`OfflineView`],
//! [`RegionsView`], [`SafePointView`]): the PD serializes them, and `tinykv-ctl` reads the
//! relayed JSON back into the same types, so a change here is a change to the tool too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::cluster::StoreSummary;
use super::meta::StoreRecord;
use crate::api::admin::{display_key, EpochInfo, PeerInfo};
use crate::pd::{Coordinator, OperatorCounts};

/// The answer of `GET /v1/admin/cluster`: settings, the PD leader, counts and every store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// The cluster's id.
    pub cluster_id: u64,
    /// How many replicas each region should have.
    pub max_peer_count: usize,
    /// The store whose PD leads (the one that answered).
    pub pd_leader_store: u64,
    /// The region holding the cluster's metadata.
    pub meta_region_id: u64,
    /// The PD's clock when it answered, in Unix milliseconds.
    pub now_ms: u64,
    /// How many regions the PD knows.
    pub region_count: usize,
    /// How many operators are being carried out.
    pub operators_in_flight: usize,
    /// How many operators were created and how they ended.
    pub operator_counts: OperatorCounts,
    /// Every store the PD knows, by id.
    pub stores: Vec<StoreSummaryView>,
}

/// One store as the PD shows it: the PD core's summary, plus its HTTP address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreSummaryView {
    /// The PD core's summary (its fields appear at the top level).
    #[serde(flatten)]
    pub summary: StoreSummary,
    /// Its HTTP address, absent if the PD has no record of the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<String>,
}

/// The answer of `POST /v1/admin/stores/{id}/offline`: the store after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfflineView {
    /// The store, `null` if the PD no longer knows it.
    pub store: Option<StoreSummaryView>,
}

/// The answer of `GET /v1/admin/cluster/regions`: every region the PD knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionsView {
    /// The PD's clock when it answered, in Unix milliseconds.
    pub now_ms: u64,
    /// The regions, in key order.
    pub regions: Vec<RegionView>,
}

/// A region as the PD knows it from its leader's heartbeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionView {
    /// Region id.
    pub id: u64,
    /// First key, percent-encoded.
    pub start_key: String,
    /// Exclusive end key, percent-encoded (empty: unbounded).
    pub end_key: String,
    /// The region's epoch.
    pub epoch: EpochInfo,
    /// The region's peers.
    pub peers: Vec<PeerInfo>,
    /// The leader that last reported the region, if any.
    pub leader: Option<PeerInfo>,
    /// Peers the leader reported as lagging.
    pub pending_peers: Vec<PeerInfo>,
    /// Bytes of keys and values, as the leader last measured them.
    pub approximate_size: Option<u64>,
}

/// The answer of `GET /v1/txn/safe-point` (and of advancing it): garbage collection's
/// safe point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafePointView {
    /// The safe point (0: nothing collected yet).
    pub safe_point: u64,
}

/// A view as the JSON the PD answers with.
fn to_json(view: &impl Serialize) -> Value {
    serde_json::to_value(view).expect("views serialize")
}

/// `GET /v1/admin/cluster`: a [`ClusterView`].
pub fn cluster(
    coordinator: &Coordinator,
    records: &BTreeMap<u64, StoreRecord>,
    leader_store: u64,
    meta_region_id: u64,
    now_ms: u64,
    max_down_ms: u64,
) -> Value {
    let info = coordinator.cluster();
    let config = info.config();
    let stores = records
        .keys()
        .filter_map(|&id| store_summary(coordinator, records, id, now_ms, max_down_ms))
        .collect();
    to_json(&ClusterView {
        cluster_id: config.cluster_id,
        max_peer_count: config.max_peer_count,
        pd_leader_store: leader_store,
        meta_region_id,
        now_ms,
        region_count: info.region_count(),
        operators_in_flight: coordinator.operators().len(),
        operator_counts: coordinator.operator_counts().clone(),
        stores,
    })
}

/// One store: the PD core's summary, plus its HTTP address.
pub fn store_summary(
    coordinator: &Coordinator,
    records: &BTreeMap<u64, StoreRecord>,
    store_id: u64,
    now_ms: u64,
    max_down_ms: u64,
) -> Option<StoreSummaryView> {
    let summary = coordinator
        .cluster()
        .store_summary(store_id, now_ms, max_down_ms)?;
    Some(StoreSummaryView {
        summary,
        http_addr: records
            .get(&store_id)
            .map(|record| record.http_addr.clone()),
    })
}

/// `POST /v1/admin/stores/{id}/offline`: an [`OfflineView`] of `store`.
pub fn offline(store: Option<StoreSummaryView>) -> Value {
    to_json(&OfflineView { store })
}

/// `GET /v1/admin/operators`: in flight, and the recently ended ones, newest first.
pub fn operators(coordinator: &Coordinator, now_ms: u64) -> Value {
    let mut ended = coordinator.ended_operators();
    ended.reverse();
    json!({
        "now_ms": now_ms,
        "in_flight": coordinator.operators(),
        "ended": ended,
    })
}

/// `GET /v1/admin/cluster/regions`: a [`RegionsView`] of every region the PD knows from
/// its leaders' heartbeats, in key order, with its epoch, peers, leader, lagging peers
/// and size. Keys are percent-encoded like everywhere in the admin API.
pub fn regions(coordinator: &Coordinator, now_ms: u64) -> Value {
    let regions = coordinator
        .cluster()
        .regions_in_key_order()
        .map(|info| {
            let epoch = info.epoch();
            RegionView {
                id: info.id(),
                start_key: display_key(&info.region.start_key),
                end_key: display_key(&info.region.end_key),
                epoch: EpochInfo {
                    conf_ver: epoch.conf_ver,
                    version: epoch.version,
                },
                peers: info.peers().iter().map(PeerInfo::from).collect(),
                leader: info.leader.as_ref().map(PeerInfo::from),
                pending_peers: info.pending_peers.iter().map(PeerInfo::from).collect(),
                approximate_size: info.approximate_size,
            }
        })
        .collect();
    to_json(&RegionsView { now_ms, regions })
}

/// `GET /v1/txn/safe-point`: a [`SafePointView`].
pub fn safe_point(safe_point: u64) -> Value {
    to_json(&SafePointView { safe_point })
}

/// `GET /health`'s view of the key space: what keeps it from being served, as sentences
/// (`{"problems": [...]}`, empty when every key lies in a region whose leader's store was
/// heard from within `max_silence_ms`).
pub fn health(coordinator: &Coordinator, now_ms: u64, max_silence_ms: u64) -> Value {
    let info = coordinator.cluster();
    let mut problems = Vec::new();
    let mut covered_to: Vec<u8> = Vec::new();
    let mut reached_end = false;
    for region in info.regions_in_key_order() {
        let (start, end) = (&region.region.start_key, &region.region.end_key);
        if reached_end {
            break;
        }
        if start.as_slice() > covered_to.as_slice() {
            problems.push(format!(
                "no region is known to serve the keys from \"{}\" to \"{}\"",
                display_key(&covered_to),
                display_key(start)
            ));
        }
        match &region.leader {
            None => problems.push(format!("region {} has no leader", region.id())),
            Some(leader) => {
                let silent = info
                    .store(leader.store_id)
                    .map_or(u64::MAX, |s| s.silent_for_ms(now_ms));
                if silent > max_silence_ms {
                    problems.push(format!(
                        "region {}'s leader is on store {}, which has not been heard from for {} ms",
                        region.id(),
                        leader.store_id,
                        silent.min(now_ms)
                    ));
                }
            }
        }
        if end.is_empty() {
            reached_end = true;
        } else if end.as_slice() > covered_to.as_slice() {
            covered_to = end.clone();
        }
    }
    if !reached_end {
        problems.push(format!(
            "no region is known to serve the keys from \"{}\" on",
            display_key(&covered_to)
        ));
    }
    json!({ "problems": problems })
}
