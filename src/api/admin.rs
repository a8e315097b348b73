//! Read-only admin endpoints: what this store holds and who leads it.
//!
//! - `GET /v1/admin/regions`: every local region with its range, epoch, peers, leader and
//!   the local peer's raft progress (term, commit, applied, last and truncated index);
//! - `GET /v1/admin/regions/{id}`: one of them (404 `region_not_found` if not local);
//! - `GET /v1/admin/stores/{id}`: this store's addresses and region/leader counts, or
//!   another store's address-book entry with `"local": false` (404 if unknown).
//!
//! Region boundaries are keys, i.e. bytes: they are shown percent-encoded (every byte but
//! ASCII letters, digits and `-._~`), the same form the KV endpoints take keys in.

use actix_web::{web, HttpRequest, HttpResponse};
use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;
use serde_json::json;
use tinykv_actors::msg::{PeerStatus, RegionRoute};
use tinykv_proto::metapb;

use super::ApiState;
use crate::error::{Error, Result};

/// Bytes left as they are when a key is shown: RFC 3986's unreserved characters.
const KEY_DISPLAY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A region as the admin API shows it.
#[derive(Debug, Serialize)]
pub struct RegionInfo {
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
    /// The leader as the local peer knows it, if any.
    pub leader: Option<PeerInfo>,
    /// The local peer's raft term (absent if the peer did not answer).
    pub term: Option<u64>,
    /// The local peer's applied index.
    pub applied_index: Option<u64>,
    /// The local peer's commit index.
    pub commit_index: Option<u64>,
    /// The local peer's last log index.
    pub last_index: Option<u64>,
    /// The local peer's last compacted log index.
    pub truncated_index: Option<u64>,
}

/// A region epoch.
#[derive(Debug, Serialize)]
pub struct EpochInfo {
    /// Bumped by each membership change.
    pub conf_ver: u64,
    /// Bumped by each split.
    pub version: u64,
}

/// A peer of a region.
#[derive(Debug, Serialize)]
pub struct PeerInfo {
    /// Peer id.
    pub id: u64,
    /// The store it lives on.
    pub store_id: u64,
}

impl From<&metapb::Peer> for PeerInfo {
    fn from(peer: &metapb::Peer) -> Self {
        PeerInfo {
            id: peer.id,
            store_id: peer.store_id,
        }
    }
}

/// Describes a region from the router's route and, if it answered, the local peer's
/// status (which is fresher).
pub fn region_info(route: &RegionRoute, status: Option<&PeerStatus>) -> RegionInfo {
    let region = status.map_or(&route.region, |s| &s.region);
    let leader = match status {
        Some(status) => region
            .peers
            .iter()
            .find(|p| p.id == status.leader_id && status.leader_id != 0)
            .map(PeerInfo::from),
        None => route.leader.as_ref().map(PeerInfo::from),
    };
    let epoch = region.region_epoch.unwrap_or_default();
    RegionInfo {
        id: region.id,
        start_key: display_key(&region.start_key),
        end_key: display_key(&region.end_key),
        epoch: EpochInfo {
            conf_ver: epoch.conf_ver,
            version: epoch.version,
        },
        peers: region.peers.iter().map(PeerInfo::from).collect(),
        leader,
        term: status.map(|s| s.term),
        applied_index: status.map(|s| s.applied_index),
        commit_index: status.map(|s| s.commit_index),
        last_index: status.map(|s| s.last_index),
        truncated_index: status.map(|s| s.truncated_index),
    }
}

/// A key, percent-encoded for display.
pub fn display_key(key: &[u8]) -> String {
    percent_encode(key, KEY_DISPLAY_SET).to_string()
}

/// `GET /v1/admin/regions`.
pub async fn list_regions(state: web::Data<ApiState>) -> Result<HttpResponse> {
    let store = state.service.store();
    let mut regions = Vec::new();
    for route in store.regions().await? {
        let status = store.region_status(route.region.id).await?;
        regions.push(region_info(&route, status.as_ref()));
    }
    Ok(HttpResponse::Ok().json(json!({ "regions": regions })))
}

/// `GET /v1/admin/regions/{id}`.
pub async fn get_region(req: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse> {
    let id = path_id(&req)?;
    let store = state.service.store();
    let route = store
        .regions()
        .await?
        .into_iter()
        .find(|r| r.region.id == id);
    let Some(route) = route else {
        return Err(Error::NoSuchResource {
            code: "region_not_found",
            message: format!("region {id} has no peer on this store"),
        });
    };
    let status = store.region_status(id).await?;
    Ok(HttpResponse::Ok().json(region_info(&route, status.as_ref())))
}

/// `GET /v1/admin/stores/{id}`.
pub async fn get_store(req: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse> {
    let id = path_id(&req)?;
    let Some(address) = state.addresses.get(id) else {
        return Err(Error::NoSuchResource {
            code: "store_not_found",
            message: format!("store {id} is not in the address book"),
        });
    };
    if id != state.service.store_id() {
        return Ok(HttpResponse::Ok().json(json!({
            "id": id,
            "raft_addr": address.raft_addr,
            "http_addr": address.http_addr,
            "local": false,
        })));
    }
    let routes = state.service.store().regions().await?;
    let leader_count = routes
        .iter()
        .filter(|r| r.leader.as_ref().is_some_and(|l| l.store_id == id))
        .count();
    Ok(HttpResponse::Ok().json(json!({
        "id": id,
        "raft_addr": address.raft_addr,
        "http_addr": address.http_addr,
        "local": true,
        "region_count": routes.len(),
        "leader_count": leader_count,
    })))
}

fn path_id(req: &HttpRequest) -> Result<u64> {
    let raw = req.match_info().get("id").unwrap_or_default();
    raw.parse()
        .map_err(|_| Error::bad_request("invalid_id", format!("{raw:?} is not a numeric id")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_shown_percent_encoded() {
        assert_eq!(display_key(b"user/42 x"), "user%2F42%20x");
        assert_eq!(display_key(&[0xff, b'a', b'~']), "%FFa~");
        assert_eq!(display_key(b""), "");
    }

    #[test]
    fn the_leader_comes_from_the_peer_status() {
        let peers = vec![
            metapb::Peer { id: 1, store_id: 1 },
            metapb::Peer { id: 2, store_id: 2 },
        ];
        let region = metapb::Region {
            id: 1,
            end_key: b"m".to_vec(),
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 2,
            }),
            peers: peers.clone(),
            ..Default::default()
        };
        let route = RegionRoute {
            region: region.clone(),
            leader: None,
        };
        let status = PeerStatus {
            region,
            peer: peers[0],
            leader_id: 2,
            term: 6,
            commit_index: 9,
            applied_index: 8,
            last_index: 9,
            truncated_index: 5,
        };
        let info = region_info(&route, Some(&status));
        assert_eq!(info.leader.as_ref().map(|l| l.store_id), Some(2));
        assert_eq!((info.term, info.applied_index), (Some(6), Some(8)));
        assert_eq!((info.end_key.as_str(), info.epoch.version), ("m", 2));
        assert!(region_info(&route, None).leader.is_none());
    }
}
