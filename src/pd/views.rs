//! What the admin API shows of the placement driver: the cluster, its stores, its
//! regions, operators.
//!
//! The views are built by the PD leader from its coordinator and records, as JSON, and
//! relayed unchanged by whichever node the client asked. Times are milliseconds since
//! the Unix epoch on the leader's clock; `now_ms` is included so that a client can show
//! ages without trusting its own clock.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::meta::StoreRecord;
use crate::api::admin::display_key;
use crate::pd::Coordinator;

/// `GET /v1/admin/cluster`: settings, the PD leader, counts and every store.
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
    let stores: Vec<Value> = records
        .keys()
        .filter_map(|&id| store_summary(coordinator, records, id, now_ms, max_down_ms))
        .collect();
    json!({
        "cluster_id": config.cluster_id,
        "max_peer_count": config.max_peer_count,
        "pd_leader_store": leader_store,
        "meta_region_id": meta_region_id,
        "now_ms": now_ms,
        "region_count": info.region_count(),
        "operators_in_flight": coordinator.operators().len(),
        "operator_counts": coordinator.operator_counts(),
        "stores": stores,
    })
}

/// One store: the PD core's summary, plus its HTTP address.
pub fn store_summary(
    coordinator: &Coordinator,
    records: &BTreeMap<u64, StoreRecord>,
    store_id: u64,
    now_ms: u64,
    max_down_ms: u64,
) -> Option<Value> {
    let summary = coordinator
        .cluster()
        .store_summary(store_id, now_ms, max_down_ms)?;
    let mut view = serde_json::to_value(summary).expect("summaries serialize");
    if let Some(record) = records.get(&store_id) {
        view["http_addr"] = json!(record.http_addr);
    }
    Some(view)
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

/// `GET /v1/admin/cluster/regions`: every region the PD knows from its leaders'
/// heartbeats, in key order, with its epoch, peers, leader, lagging peers and size. Keys
/// are percent-encoded like everywhere in the admin API.
pub fn regions(coordinator: &Coordinator, now_ms: u64) -> Value {
    let peer = |p: &tinykv_proto::metapb::Peer| json!({ "id": p.id, "store_id": p.store_id });
    let regions: Vec<Value> = coordinator
        .cluster()
        .regions_in_key_order()
        .map(|info| {
            let epoch = info.epoch();
            json!({
                "id": info.id(),
                "start_key": display_key(&info.region.start_key),
                "end_key": display_key(&info.region.end_key),
                "epoch": { "conf_ver": epoch.conf_ver, "version": epoch.version },
                "peers": info.peers().iter().map(peer).collect::<Vec<_>>(),
                "leader": info.leader.as_ref().map(peer),
                "pending_peers": info.pending_peers.iter().map(peer).collect::<Vec<_>>(),
                "approximate_size": info.approximate_size,
            })
        })
        .collect();
    json!({ "now_ms": now_ms, "regions": regions })
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
