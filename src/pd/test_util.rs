//! Builders shared by the PD's unit tests: stores, peers, regions and heartbeats, and a
//! counting id allocator.

use tinykv_proto::metapb::{Peer, Region, RegionEpoch, Store};

use super::cluster::{ClusterConfig, ClusterInfo, StoreHeartbeat};
use super::operator::AllocId;
use super::region::{RegionHeartbeat, RegionInfo, MIB};

/// Hands out 1000, 1001, ... so allocated peer ids never collide with hand-made ones.
#[derive(Debug)]
pub struct IdCounter(pub u64);

impl Default for IdCounter {
    fn default() -> Self {
        IdCounter(1000)
    }
}

impl AllocId for IdCounter {
    fn alloc_id(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

/// A peer.
pub fn peer(id: u64, store_id: u64) -> Peer {
    Peer { id, store_id }
}

/// A store with a distinct address.
pub fn store(id: u64) -> Store {
    Store {
        id,
        address: format!("127.0.0.1:{}", 20000 + id),
        state: 0,
    }
}

/// A region `[start, end)` with `peers` given as (peer id, store id), led by the peer on
/// `leader_store` (if any), with epoch (conf_ver, version).
pub fn region(
    id: u64,
    start: &[u8],
    end: &[u8],
    peers: &[(u64, u64)],
    leader_store: Option<u64>,
    (conf_ver, version): (u64, u64),
) -> RegionInfo {
    let peers: Vec<Peer> = peers
        .iter()
        .map(|&(id, store_id)| peer(id, store_id))
        .collect();
    let leader = leader_store.and_then(|s| peers.iter().find(|p| p.store_id == s).copied());
    RegionInfo {
        region: Region {
            id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            region_epoch: Some(RegionEpoch { conf_ver, version }),
            peers,
        },
        leader,
        pending_peers: Vec::new(),
        approximate_size: None,
    }
}

/// A region on `stores` (peer ids `id * 100 + store`), led by the first store, with key
/// range `[id, id + 1)` as big-endian u64s, epoch (1, 1) and a size of `size_mib` MiB.
pub fn simple_region(id: u64, stores: &[u64], size_mib: u64) -> RegionInfo {
    let peers: Vec<(u64, u64)> = stores.iter().map(|&s| (id * 100 + s, s)).collect();
    let mut info = region(
        id,
        &id.to_be_bytes(),
        &(id + 1).to_be_bytes(),
        &peers,
        stores.first().copied(),
        (1, 1),
    );
    info.approximate_size = Some(size_mib * MIB);
    info
}

/// The heartbeat that reports `info` as it is.
pub fn heartbeat(info: &RegionInfo) -> RegionHeartbeat {
    RegionHeartbeat {
        region: info.region.clone(),
        leader: info.leader,
        pending_peers: info.pending_peers.clone(),
        approximate_size: info.approximate_size,
    }
}

/// `info` with its epoch version bumped.
pub fn inc_version(info: &RegionInfo) -> RegionInfo {
    let mut next = info.clone();
    if let Some(epoch) = next.region.region_epoch.as_mut() {
        epoch.version += 1;
    }
    next
}

/// `info` with its epoch conf_ver bumped.
pub fn inc_conf_ver(info: &RegionInfo) -> RegionInfo {
    let mut next = info.clone();
    if let Some(epoch) = next.region.region_epoch.as_mut() {
        epoch.conf_ver += 1;
    }
    next
}

/// A cluster with stores `ids`, all Up and heartbeating at time 0.
pub fn cluster_with_stores(max_peer_count: usize, ids: &[u64]) -> ClusterInfo {
    let mut cluster = ClusterInfo::new(ClusterConfig {
        cluster_id: 1,
        max_peer_count,
    });
    for &id in ids {
        cluster.put_store(store(id), 0).expect("put store");
        cluster
            .handle_store_heartbeat(
                StoreHeartbeat {
                    store_id: id,
                    ..Default::default()
                },
                0,
            )
            .expect("heartbeat");
    }
    cluster
}

/// Applies a heartbeat reporting `info`, which must be accepted.
pub fn put_region(cluster: &mut ClusterInfo, info: &RegionInfo) {
    cluster
        .handle_region_heartbeat(heartbeat(info))
        .expect("heartbeat accepted");
}
