//! The cluster and its stores: the answers of `GET /v1/admin/cluster`,
//! `GET /v1/admin/stores` and `POST /v1/admin/stores/{id}/offline`, and how they are shown.
//!
//! Two views of the stores exist and they answer different questions. The cluster view
//! is the PD's: each store's state (Up, Offline, Tombstone), whether it missed its
//! heartbeats for too long (down), and the region and leader counts the PD derives from
//! every region's heartbeat. The stores view is the answering node's: the stores of its
//! address book, whether each answers a health probe from that node right now, and how
//! many of the regions that node holds have a peer or leader there.
//!
//! The answers are read into the server's own view types: [`ClusterView`],
//! [`StoreSummaryView`] and [`OfflineView`](tinykv::pd::views::OfflineView) of the
//! placement driver's views
//! ([`tinykv::pd::views`]), [`StoresView`] of the node's admin API
//! ([`tinykv::api::admin`]). Unknown fields are ignored, so a newer server that adds
//! some still works; a change to the views is a compile error here rather than a
//! silent mismatch.

use std::collections::BTreeMap;

use tinykv::api::admin::StoresView;
use tinykv::pd::views::{ClusterView, StoreSummaryView};

use crate::format::{age, counts_list, json_name, optional_bytes};
use crate::table::{render_fields, Column, Table};

/// `cluster`: the settings and counters as `key: value` lines, then the stores table.
pub fn render_cluster(cluster: &ClusterView) -> String {
    // By the outcome's name, as the server spells it.
    let ended: BTreeMap<String, u64> = cluster
        .operator_counts
        .ended
        .iter()
        .map(|(outcome, count)| (json_name(outcome), *count))
        .collect();
    let fields = [
        ("cluster id", cluster.cluster_id.to_string()),
        ("max replicas", cluster.max_peer_count.to_string()),
        ("PD leader store", cluster.pd_leader_store.to_string()),
        ("meta region", cluster.meta_region_id.to_string()),
        ("regions", cluster.region_count.to_string()),
        (
            "operators in flight",
            cluster.operators_in_flight.to_string(),
        ),
        (
            "operators created",
            counts_list(&cluster.operator_counts.created),
        ),
        ("operators ended", counts_list(&ended)),
    ];
    format!(
        "{}\n{}",
        render_fields(&fields),
        render_store_summaries(&cluster.stores, cluster.now_ms)
    )
}

/// The PD's stores as a table; heartbeat ages are taken at `now_ms`.
pub fn render_store_summaries(stores: &[StoreSummaryView], now_ms: u64) -> String {
    let mut table = Table::new(vec![
        Column::right("ID"),
        Column::left("ADDRESS"),
        Column::left("HTTP"),
        Column::left("STATE"),
        Column::left("DOWN"),
        Column::right("REGIONS"),
        Column::right("LEADERS"),
        Column::right("SIZE(MiB)"),
        Column::right("PENDING"),
        Column::right("LAST HEARTBEAT"),
        Column::right("AVAILABLE"),
    ]);
    for view in stores {
        let store = &view.summary;
        let available = store.report.as_ref().and_then(|r| r.available);
        table.push_row(vec![
            store.id.to_string(),
            store.address.clone(),
            view.http_addr.clone().unwrap_or_else(|| "-".to_string()),
            store.state.clone(),
            if store.is_down { "down" } else { "" }.to_string(),
            store.regions.region_count.to_string(),
            store.regions.leader_count.to_string(),
            store.regions.region_size_mib.to_string(),
            store.regions.pending_peer_count.to_string(),
            store
                .last_heartbeat_ms
                .map_or_else(|| "never".to_string(), |then| age(now_ms, then)),
            optional_bytes(available),
        ]);
    }
    table.render()
}

/// `stores`: the answering node's address book, its own row marked with `*`.
pub fn render_stores(answer: &StoresView) -> String {
    let mut table = Table::new(vec![
        Column::left("ID"),
        Column::left("RAFT"),
        Column::left("HTTP"),
        Column::left("STATE"),
        Column::left("REACHABLE"),
        Column::right("REGIONS"),
        Column::right("LEADERS"),
    ]);
    for store in &answer.stores {
        let id = if store.local {
            format!("{}*", store.id)
        } else {
            store.id.to_string()
        };
        let state = match (&store.state, store.is_down) {
            (Some(state), Some(true)) => format!("{state} (down)"),
            (Some(state), _) => state.clone(),
            (None, _) => "?".to_string(),
        };
        let reachable = match (store.up, &store.probe_error) {
            (true, _) => "yes".to_string(),
            (false, Some(error)) => format!("no: {error}"),
            (false, None) => "no".to_string(),
        };
        table.push_row(vec![
            id,
            store.raft_addr.clone(),
            store.http_addr.clone(),
            state,
            reachable,
            store.region_count.to_string(),
            store.leader_count.to_string(),
        ]);
    }
    format!(
        "{}* answered by store {}\n",
        table.render(),
        answer.store_id
    )
}

/// `store offline`: what happens to the store now (the store of an
/// [`OfflineView`](tinykv::pd::views::OfflineView)).
pub fn render_offline(store: &StoreSummaryView) -> String {
    let store = &store.summary;
    if store.state == "Offline" {
        format!(
            "store {} is now Offline; its regions are being moved away \
             (it becomes Tombstone once empty)\n",
            store.id
        )
    } else {
        format!("store {} is {}\n", store.id, store.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tinykv::pd::views::OfflineView;

    /// The sample answer of `GET /v1/admin/cluster`.
    fn cluster_sample() -> serde_json::Value {
        json!({"cluster_id":1,"max_peer_count":3,"pd_leader_store":2,"meta_region_id":7,
            "now_ms":1764000000000u64,"region_count":12,"operators_in_flight":1,
            "operator_counts":{"created":{"replica-checker":3,"balance-region":5},
                               "ended":{"finished":7,"timed_out":1}},
            "stores":[
                {"id":1,"address":"127.0.0.1:20161","http_addr":"127.0.0.1:8081","state":"Up",
                 "is_down":false,"last_heartbeat_ms":1763999999600u64,"region_count":5,
                 "leader_count":2,"pending_peer_count":0,"region_size_mib":5,"leader_size_mib":2,
                 "report":{"store_id":1,"capacity":107374182400u64,"available":13207024435u64,
                           "used_size":67,"region_count":5,"draining_leaders":false}},
                {"id":2,"address":"127.0.0.1:20162","http_addr":"127.0.0.1:8082","state":"Offline",
                 "is_down":true,"last_heartbeat_ms":null,"region_count":0,"leader_count":0,
                 "pending_peer_count":1,"region_size_mib":0,"leader_size_mib":0,"report":null,
                 "some_future_field":"ignored"}]})
    }

    #[test]
    fn cluster_shows_settings_then_stores() {
        let cluster: ClusterView = serde_json::from_value(cluster_sample()).unwrap();
        let text = render_cluster(&cluster);
        let lines: Vec<&str> = text.lines().collect();
        // 8 fields, a blank line, headers, dashes and 2 stores.
        assert_eq!(lines.len(), 13, "{text}");
        assert_eq!(lines[0], "cluster id:          1");
        assert!(lines[2].starts_with("PD leader store:") && lines[2].ends_with(" 2"));
        assert!(
            lines[6].ends_with("balance-region=5 replica-checker=3"),
            "{text}"
        );
        assert!(lines[7].ends_with("finished=7 timed_out=1"), "{text}");
        assert!(lines[9].starts_with("ID  ADDRESS") && lines[9].ends_with("AVAILABLE"));
        assert!(lines[11].contains("127.0.0.1:8081  Up"), "{text}");
        assert!(lines[11].ends_with("0.4s ago   12.3 GiB"), "{text}");
        assert!(lines[12].contains("Offline  down"), "{text}");
        assert!(lines[12].ends_with("never          -"), "{text}");
    }

    #[test]
    fn stores_mark_the_answering_store_and_unreachable_ones() {
        let answer: StoresView = serde_json::from_value(json!({"store_id":1,"stores":[
            {"id":1,"raft_addr":"127.0.0.1:20161","http_addr":"127.0.0.1:8081","local":true,
             "up":true,"probe_error":null,"region_count":3,"leader_count":1,"state":"Up",
             "is_down":false},
            {"id":2,"raft_addr":"127.0.0.1:20162","http_addr":"127.0.0.1:8082","local":false,
             "up":false,"probe_error":"connection refused","region_count":3,"leader_count":0},
            {"id":3,"raft_addr":"127.0.0.1:20163","http_addr":"127.0.0.1:8083","local":false,
             "up":true,"probe_error":null,"region_count":12,"leader_count":2,"state":"Up",
             "is_down":true}]}))
        .unwrap();
        let text = render_stores(&answer);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        assert!(lines[2].starts_with("1*  127.0.0.1:20161"), "{text}");
        assert!(lines[2].contains("Up         yes"), "{text}");
        assert!(lines[3].starts_with("2   "), "{text}");
        assert!(
            lines[3].contains("?          no: connection refused"),
            "{text}"
        );
        assert!(lines[4].contains("Up (down)") && lines[4].ends_with("12        2"));
        assert_eq!(lines[5], "* answered by store 1");
    }

    #[test]
    fn offline_says_what_happens_next() {
        let mut sample = cluster_sample();
        let store = sample["stores"][1].take();
        let answer: OfflineView = serde_json::from_value(json!({ "store": store })).unwrap();
        let store = answer.store.unwrap();
        assert_eq!(
            render_offline(&store),
            "store 2 is now Offline; its regions are being moved away \
             (it becomes Tombstone once empty)\n"
        );
        let tombstone = json!({"store": {"id":4,"address":"a","state":"Tombstone","is_down":false,
            "last_heartbeat_ms":null,"region_count":0,"leader_count":0,"pending_peer_count":0,
            "region_size_mib":0,"leader_size_mib":0,"report":null}});
        let answer: OfflineView = serde_json::from_value(tombstone).unwrap();
        let store = answer.store.unwrap();
        assert_eq!(render_offline(&store), "store 4 is Tombstone\n");
    }
}
