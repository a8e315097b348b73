//! Regions: the shape the admin API shows one in, and how they are shown here.
//!
//! The shape follows `RegionInfo` in `src/api/admin.rs`: range (percent-encoded keys,
//! empty for unbounded), epoch, peers, the leader as the answering node knows it and that
//! node's raft progress. The views (`regions`, `region <ID>`) fill the leader and progress
//! when the local peer answered; the operations (`split`, `add-peer`, `remove-peer`)
//! return the region as its leader changed it, with those left `null`, shown as `-`.
//!
//! Keys are shown as the server gives them, percent-encoded, which is also the form
//! `split` takes its key in, so a boundary can be copied from a table into a command.
//! Tables list regions in key order (by the decoded start key).

use percent_encoding::percent_decode_str;
use serde::Deserialize;

use crate::format::{end_bound, optional_bytes, optional_number, start_bound};
use crate::table::{render_fields, Column, Table};

/// A region as the admin API shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct Region {
    /// Region id.
    pub id: u64,
    /// First key, percent-encoded (empty: unbounded).
    pub start_key: String,
    /// Exclusive end key, percent-encoded (empty: unbounded).
    pub end_key: String,
    /// The region's epoch.
    pub epoch: Epoch,
    /// The region's peers.
    pub peers: Vec<Peer>,
    /// The leader as the answering node knows it, if any.
    pub leader: Option<Peer>,
    /// The answering node's raft term for the region.
    pub term: Option<u64>,
    /// The answering node's commit index.
    pub commit_index: Option<u64>,
    /// The answering node's applied index.
    pub applied_index: Option<u64>,
    /// The answering node's last log index.
    pub last_index: Option<u64>,
    /// The answering node's last compacted log index.
    pub truncated_index: Option<u64>,
    /// Bytes of keys and values as of the last size check.
    pub approximate_size: Option<u64>,
}

/// A region epoch.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Epoch {
    /// Bumped by each membership change.
    pub conf_ver: u64,
    /// Bumped by each split.
    pub version: u64,
}

/// A peer of a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Peer {
    /// Peer id.
    pub id: u64,
    /// The store it lives on.
    pub store_id: u64,
}

/// The answer of `GET /v1/admin/regions` and of a split: a list of regions.
#[derive(Debug, Clone, Deserialize)]
pub struct RegionsAnswer {
    /// The regions.
    pub regions: Vec<Region>,
}

impl Region {
    /// The epoch as `conf_ver/version`.
    fn epoch_text(&self) -> String {
        format!("{}/{}", self.epoch.conf_ver, self.epoch.version)
    }

    /// The peers as `id@sSTORE`, comma-separated, the leader followed by `*`.
    fn peers_text(&self) -> String {
        let leader_id = self.leader.map(|leader| leader.id);
        let peers: Vec<String> = self
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
    fn start_bytes(&self) -> Vec<u8> {
        percent_decode_str(&self.start_key).collect()
    }
}

/// Regions as a table, in key order.
pub fn render_regions(regions: &[Region]) -> String {
    if regions.is_empty() {
        return "no regions\n".to_string();
    }
    let mut sorted: Vec<&Region> = regions.iter().collect();
    sorted.sort_by_cached_key(|region| (region.start_bytes(), region.id));
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
            region.epoch_text(),
            region.peers_text(),
            optional_number(region.leader.map(|leader| leader.store_id)),
            optional_bytes(region.approximate_size),
            optional_number(region.applied_index),
        ]);
    }
    table.render()
}

/// One region as `key: value` lines.
pub fn render_region(region: &Region) -> String {
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
            format!("{} (conf_ver/version)", region.epoch_text()),
        ),
        ("peers", region.peers_text()),
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

    /// A `GET /v1/admin/regions` answer: two regions out of key order, one led here.
    fn regions_sample() -> RegionsAnswer {
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
