//! Regions: the shape the admin API shows one in, and how they are shown here.
//!
//! A region is read into the admin API's own [`RegionInfo`] ([`tinykv::api::admin`]):
//! range (percent-encoded keys, empty for unbounded), epoch, peers, the leader as the
//! answering node knows it and that node's raft progress. The views (`regions`,
//! `region <ID>`) fill the leader and progress when the local peer answered; the
//! operations (`split`, `add-peer`, `remove-peer`) return the region as its leader
//! changed it, with those left `null`, shown as `-`. The placement driver's regions
//! (`regions --pd`) come as its own [`PdRegionView`]s, shown the same way through
//! [`from_pd`] (no raft progress, the size the leader reported).
//!
//! Keys are shown as the server gives them, percent-encoded, which is also the form
//! `split` takes its key in, so a boundary can be copied from a table into a command.
//! Tables list regions in key order (by the decoded start key).

use percent_encoding::percent_decode_str;
use tinykv::api::admin::RegionInfo;
use tinykv::pd::views::RegionView as PdRegionView;

use crate::format::{end_bound, optional_bytes, optional_number, start_bound};
use crate::table::{render_fields, Column, Table};

/// A region of the placement driver's view as the admin API shows a region: no raft
/// progress, the leader and size its leader last reported.
pub fn from_pd(region: PdRegionView) -> RegionInfo {
    RegionInfo {
        id: region.id,
        start_key: region.start_key,
        end_key: region.end_key,
        epoch: region.epoch,
        peers: region.peers,
        leader: region.leader,
        term: None,
        applied_index: None,
        commit_index: None,
        last_index: None,
        truncated_index: None,
        approximate_size: region.approximate_size,
        hibernating: None,
    }
}

/// The epoch as `conf_ver/version`.
fn epoch_text(region: &RegionInfo) -> String {
    format!("{}/{}", region.epoch.conf_ver, region.epoch.version)
}

/// The peers as `id@sSTORE`, comma-separated, the leader followed by `*`.
fn peers_text(region: &RegionInfo) -> String {
    let leader_id = region.leader.map(|leader| leader.id);
    let peers: Vec<String> = region
        .peers
        .iter()
        .map(|peer| {
            let mark = if Some(peer.id) == leader_id { "*" } else { "" };
            format!("{}@s{}{mark}", peer.id, peer.store_id)
        })
        .collect();
    peers.join(",")
}

/// The start key's bytes, to order regions by range.
fn start_bytes(region: &RegionInfo) -> Vec<u8> {
    percent_decode_str(&region.start_key).collect()
}

/// Regions as a table, in key order.
pub fn render_regions(regions: &[RegionInfo]) -> String {
    if regions.is_empty() {
        return "no regions\n".to_string();
    }
    let mut sorted: Vec<&RegionInfo> = regions.iter().collect();
    sorted.sort_by_cached_key(|region| (start_bytes(region), region.id));
    let mut table = Table::new(vec![
        Column::right("ID"),
        Column::left("START"),
        Column::left("END"),
        Column::right("EPOCH"),
        Column::left("PEERS"),
        Column::right("LEADER STORE"),
        Column::right("SIZE"),
        Column::right("APPLIED"),
    ]);
    for region in sorted {
        table.push_row(vec![
            region.id.to_string(),
            start_bound(&region.start_key),
            end_bound(&region.end_key),
            epoch_text(region),
            peers_text(region),
            optional_number(region.leader.map(|leader| leader.store_id)),
            optional_bytes(region.approximate_size),
            optional_number(region.applied_index),
        ]);
    }
    table.render()
}

/// One region as `key: value` lines.
pub fn render_region(region: &RegionInfo) -> String {
    let leader = region.leader.map_or_else(
        || "-".to_string(),
        |leader| format!("peer {} on store {}", leader.id, leader.store_id),
    );
    render_fields(&[
        ("region", region.id.to_string()),
        ("start key", start_bound(&region.start_key)),
        ("end key", end_bound(&region.end_key)),
        (
            "epoch",
            format!("{} (conf_ver/version)", epoch_text(region)),
        ),
        ("peers", peers_text(region)),
        ("leader", leader),
        ("term", optional_number(region.term)),
        ("commit index", optional_number(region.commit_index)),
        ("applied index", optional_number(region.applied_index)),
        ("last index", optional_number(region.last_index)),
        ("truncated index", optional_number(region.truncated_index)),
        ("approximate size", optional_bytes(region.approximate_size)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tinykv::api::admin::RegionsView;

    /// A `GET /v1/admin/regions` answer: two regions out of key order, one led here.
    fn regions_sample() -> RegionsView {
        serde_json::from_value(json!({"regions":[
            {"id":9,"start_key":"a%20b","end_key":"","epoch":{"conf_ver":3,"version":2},
             "peers":[{"id":10,"store_id":1},{"id":11,"store_id":2},{"id":12,"store_id":3}],
             "leader":null,"term":null,"commit_index":null,"applied_index":null,
             "last_index":null,"truncated_index":null,"approximate_size":null},
            {"id":1,"start_key":"","end_key":"a%20b","epoch":{"conf_ver":1,"version":2},
             "peers":[{"id":1,"store_id":1},{"id":2,"store_id":2}],
             "leader":{"id":2,"store_id":2},"term":6,"commit_index":9,"applied_index":8,
             "last_index":9,"truncated_index":5,"approximate_size":1536,"extra":true}]}))
        .unwrap()
    }

    #[test]
    fn regions_table_is_in_key_order_with_the_leader_marked() {
        let expected = "\
ID  START  END    EPOCH  PEERS              LEADER STORE     SIZE  APPLIED
--  -----  -----  -----  -----------------  ------------  -------  -------
 1  -inf   a%20b    1/2  1@s1,2@s2*                    2  1.5 KiB        8
 9  a%20b  +inf     3/2  10@s1,11@s2,12@s3             -        -        -
";
        assert_eq!(render_regions(&regions_sample().regions), expected);
        assert_eq!(render_regions(&[]), "no regions\n");
    }

    #[test]
    fn one_region_is_shown_field_by_field() {
        let region = &regions_sample().regions[1];
        let text = render_region(region);
        assert_eq!(text.lines().count(), 12, "{text}");
        assert!(text.starts_with("region:           1\nstart key:        -inf\n"));
        assert!(text.contains("end key:          a%20b\n"));
        assert!(text.contains("epoch:            1/2 (conf_ver/version)\n"));
        assert!(text.contains("leader:           peer 2 on store 2\n"));
        assert!(text.contains("truncated index:  5\n"));
        assert!(text.ends_with("approximate size: 1.5 KiB\n"));
        let unknown = render_region(&regions_sample().regions[0]);
        assert!(
            unknown.contains("leader:           -\n") && unknown.contains("term:             -\n")
        );
    }
}
