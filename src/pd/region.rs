//! What the PD knows about one region, and the range index over all of them.
//!
//! A [`RegionHeartbeat`] is what a region's leader reports: the region (range, epoch,
//! peers), itself as leader, the peers still catching up (pending), and the region's
//! approximate size. The PD keeps the latest accepted heartbeat of each region as a
//! [`RegionInfo`].
//!
//! [`RegionTree`] maps each region's start key to the region, so the PD can find the
//! region holding a key and the regions a new range overlaps. Regions in the tree never
//! overlap; the tree may have holes (after a split, until both halves have reported).

use std::collections::BTreeMap;
use std::ops::Bound;

use tinykv_proto::metapb::{Peer, Region, RegionEpoch};

use super::PdError;

/// One mebibyte: region sizes are scheduled in MiB, like TinyKV's scheduler.
pub const MIB: u64 = 1 << 20;

/// The size, in MiB, a region counts for when scheduling if it is smaller than 1 MiB or
/// has not been measured yet: every region weighs at least this much, so a cluster of
/// small regions is balanced by region count.
pub const MIN_REGION_SIZE_MIB: u64 = 1;

/// A region leader's report about its region.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionHeartbeat {
    /// The region as the leader has applied it: range, epoch and peers.
    pub region: Region,
    /// The reporting leader; `None` only for a region whose leader is unknown.
    pub leader: Option<Peer>,
    /// Peers that lag behind the leader's log (being filled by a snapshot, or far behind).
    pub pending_peers: Vec<Peer>,
    /// The region's approximate size in bytes; `None` if not measured yet, which keeps the
    /// last size the PD knew.
    pub approximate_size: Option<u64>,
}

/// The PD's view of one region: its latest accepted heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionInfo {
    /// Range, epoch and peers.
    pub region: Region,
    /// The leader peer, if known.
    pub leader: Option<Peer>,
    /// Peers that lag behind the leader (a subset of the region's peers).
    pub pending_peers: Vec<Peer>,
    /// The approximate size in bytes, if ever measured.
    pub approximate_size: Option<u64>,
}

impl RegionInfo {
    /// The region's id.
    pub fn id(&self) -> u64 {
        self.region.id
    }

    /// The region's epoch (all zeros if absent, which heartbeat validation prevents).
    pub fn epoch(&self) -> RegionEpoch {
        self.region.region_epoch.unwrap_or_default()
    }

    /// The region's peers.
    pub fn peers(&self) -> &[Peer] {
        &self.region.peers
    }

    /// The region's peer on `store_id`, if any.
    pub fn peer_on_store(&self, store_id: u64) -> Option<&Peer> {
        self.region.peers.iter().find(|p| p.store_id == store_id)
    }

    /// The stores holding a peer of the region, in peer order.
    pub fn store_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.region.peers.iter().map(|p| p.store_id)
    }

    /// The store of the leader, if the leader is known.
    pub fn leader_store_id(&self) -> Option<u64> {
        self.leader.map(|p| p.store_id)
    }

    /// The peers other than the leader.
    pub fn followers(&self) -> impl Iterator<Item = &Peer> + '_ {
        let leader_id = self.leader.map(|p| p.id);
        self.region
            .peers
            .iter()
            .filter(move |p| Some(p.id) != leader_id)
    }

    /// Whether the peer with this id is pending (lagging behind the leader).
    pub fn is_pending(&self, peer_id: u64) -> bool {
        self.pending_peers.iter().any(|p| p.id == peer_id)
    }

    /// The size the region counts for when scheduling: its approximate size in MiB, at
    /// least [`MIN_REGION_SIZE_MIB`].
    pub fn size_mib(&self) -> u64 {
        let size = self.approximate_size.unwrap_or(0) / MIB;
        size.max(MIN_REGION_SIZE_MIB)
    }

    /// Whether `key` lies inside the region's range.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        key >= self.region.start_key.as_slice()
            && (self.region.end_key.is_empty() || key < self.region.end_key.as_slice())
    }

    /// Builds the region info from a heartbeat, checking that it is well formed.
    ///
    /// `previous_size` is the size the PD knew, kept if the heartbeat reports none.
    pub(crate) fn from_heartbeat(
        heartbeat: RegionHeartbeat,
        previous_size: Option<u64>,
    ) -> Result<RegionInfo, PdError> {
        let RegionHeartbeat {
            region,
            leader,
            pending_peers,
            approximate_size,
        } = heartbeat;
        let invalid = |reason: String| PdError::InvalidHeartbeat {
            region_id: region.id,
            reason,
        };
        if region.id == 0 {
            return Err(invalid("region id 0".to_string()));
        }
        if region.region_epoch.is_none() {
            return Err(invalid("no region epoch".to_string()));
        }
        if !region.end_key.is_empty() && region.end_key <= region.start_key {
            return Err(invalid("end key is not after start key".to_string()));
        }
        for (i, peer) in region.peers.iter().enumerate() {
            if region.peers[..i]
                .iter()
                .any(|p| p.store_id == peer.store_id || p.id == peer.id)
            {
                return Err(invalid(format!(
                    "peer {} on store {} duplicates another peer's id or store",
                    peer.id, peer.store_id
                )));
            }
        }
        if let Some(leader) = leader {
            if !region.peers.contains(&leader) {
                return Err(invalid(format!(
                    "leader peer {} on store {} is not a peer of the region",
                    leader.id, leader.store_id
                )));
            }
        }
        let pending_peers = pending_peers
            .into_iter()
            .filter(|p| region.peers.contains(p))
            .collect();
        Ok(RegionInfo {
            region,
            leader,
            pending_peers,
            approximate_size: approximate_size.or(previous_size),
        })
    }
}

/// The range index: start key → (end key, region id), for regions that never overlap.
#[derive(Debug, Clone, Default)]
pub struct RegionTree {
    by_start: BTreeMap<Vec<u8>, (Vec<u8>, u64)>,
}

impl RegionTree {
    /// Indexes the range `[start, end)` (`end` empty = to the end of the key space) as
    /// region `region_id`. The caller guarantees nothing indexed overlaps it.
    pub fn insert(&mut self, start: &[u8], end: &[u8], region_id: u64) {
        self.by_start
            .insert(start.to_vec(), (end.to_vec(), region_id));
    }

    /// Removes the range starting at `start` if it belongs to `region_id`.
    pub fn remove(&mut self, start: &[u8], region_id: u64) {
        if self
            .by_start
            .get(start)
            .is_some_and(|(_, id)| *id == region_id)
        {
            self.by_start.remove(start);
        }
    }

    /// The id of the region whose range holds `key`, if any.
    pub fn search(&self, key: &[u8]) -> Option<u64> {
        let (_, (end, id)) = self
            .by_start
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()?;
        (end.is_empty() || key < end.as_slice()).then_some(*id)
    }

    /// The region whose range ends exactly at `key` (the left neighbour of the region
    /// starting there), if one is indexed.
    pub fn ending_at(&self, key: &[u8]) -> Option<u64> {
        let (_, (end, id)) = self
            .by_start
            .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(key)))
            .next_back()?;
        (end.as_slice() == key).then_some(*id)
    }

    /// The ids of the indexed regions overlapping `[start, end)`, in key order.
    pub fn overlapping(&self, start: &[u8], end: &[u8]) -> Vec<u64> {
        let mut ids = Vec::new();
        if let Some((_, (prev_end, id))) = self
            .by_start
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(start)))
            .next_back()
        {
            if prev_end.is_empty() || prev_end.as_slice() > start {
                ids.push(*id);
            }
        }
        let after_start = (Bound::Excluded(start), Bound::Unbounded);
        for (key, (_, id)) in self.by_start.range::<[u8], _>(after_start) {
            if !end.is_empty() && key.as_slice() >= end {
                break;
            }
            ids.push(*id);
        }
        ids
    }

    /// How many ranges are indexed.
    pub fn len(&self) -> usize {
        self.by_start.len()
    }

    /// Whether no range is indexed.
    pub fn is_empty(&self) -> bool {
        self.by_start.is_empty()
    }

    /// The region ids in key order.
    pub fn ids_in_key_order(&self) -> impl Iterator<Item = u64> + '_ {
        self.by_start.values().map(|(_, id)| *id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(ranges: &[(&[u8], &[u8], u64)]) -> RegionTree {
        let mut tree = RegionTree::default();
        for (start, end, id) in ranges {
            tree.insert(start, end, *id);
        }
        tree
    }

    #[test]
    fn search_finds_the_holding_range_and_respects_holes() {
        let tree = tree(&[(b"", b"c", 1), (b"e", b"g", 2), (b"g", b"", 3)]);
        assert_eq!(tree.search(b""), Some(1));
        assert_eq!(tree.search(b"b"), Some(1));
        assert_eq!(tree.search(b"c"), None);
        assert_eq!(tree.search(b"d"), None);
        assert_eq!(tree.search(b"e"), Some(2));
        assert_eq!(tree.search(b"g"), Some(3));
        assert_eq!(tree.search(b"zzz"), Some(3));
    }

    #[test]
    fn overlapping_lists_every_intersecting_range() {
        let tree = tree(&[(b"", b"c", 1), (b"e", b"g", 2), (b"g", b"", 3)]);
        assert_eq!(tree.overlapping(b"", b""), vec![1, 2, 3]);
        assert_eq!(tree.overlapping(b"c", b"e"), Vec::<u64>::new());
        assert_eq!(tree.overlapping(b"b", b"f"), vec![1, 2]);
        assert_eq!(tree.overlapping(b"f", b"h"), vec![2, 3]);
        assert_eq!(tree.overlapping(b"x", b""), vec![3]);
        assert_eq!(tree.overlapping(b"", b"a"), vec![1]);
    }

    #[test]
    fn heartbeat_validation_rejects_malformed_regions() {
        let peer = Peer {
            id: 11,
            store_id: 1,
        };
        let region = Region {
            id: 1,
            start_key: b"a".to_vec(),
            end_key: b"b".to_vec(),
            region_epoch: Some(RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            peers: vec![peer],
        };
        let good = RegionHeartbeat {
            region: region.clone(),
            leader: Some(peer),
            pending_peers: vec![Peer {
                id: 99,
                store_id: 9,
            }],
            approximate_size: None,
        };
        let info = RegionInfo::from_heartbeat(good.clone(), Some(7 * MIB)).expect("valid");
        assert!(
            info.pending_peers.is_empty(),
            "pending peers outside the region are dropped"
        );
        assert_eq!(
            info.approximate_size,
            Some(7 * MIB),
            "an unmeasured size keeps the old one"
        );
        assert_eq!(info.size_mib(), 7);

        let mut no_epoch = good.clone();
        no_epoch.region.region_epoch = None;
        let mut backwards = good.clone();
        backwards.region.end_key = b"a".to_vec();
        let mut stranger_leader = good.clone();
        stranger_leader.leader = Some(Peer {
            id: 12,
            store_id: 2,
        });
        let mut same_store = good;
        same_store.region.peers.push(Peer {
            id: 13,
            store_id: 1,
        });
        for bad in [no_epoch, backwards, stranger_leader, same_store] {
            let err = RegionInfo::from_heartbeat(bad, None).expect_err("invalid");
            assert!(
                matches!(err, PdError::InvalidHeartbeat { region_id: 1, .. }),
                "{err}"
            );
        }
    }
}
