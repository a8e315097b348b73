//! Admin endpoints: what this store holds, and the operator's levers on regions.
//!
//! Views of this store:
//!
//! - `GET /v1/admin/regions`: every local region with its range, epoch, peers, leader and
//!   the local peer's raft progress (term, commit, applied, last and truncated index) and
//!   the region's approximate size in bytes (`null` until the peer's first size check);
//! - `GET /v1/admin/regions/{id}`: one of them (404 `region_not_found` if not local);
//! - `GET /v1/admin/stores/{id}`: this store's addresses and region/leader counts, or
//!   another store's address-book entry with `"local": false` (404 if unknown).
//! - `GET /v1/admin/stores`: every store of the address book as this node sees it: its
//!   addresses, whether it answers a health probe (this node asks each other store's
//!   `GET /health?live`, [`STORE_PROBE_TIMEOUT`] at most, all at once), and how many of the
//!   regions this node holds a peer of have a peer, or their leader, on it, and the
//!   store's `state` and `is_down` as the placement driver sees them (`null` if it did
//!   not answer within the probe timeout).
//!
//! Operations on a region, executed by the node's [`AdminService`](crate::admin_service::AdminService)
//! wherever the region's leader is (any node accepts them):
//!
//! - `POST /v1/admin/regions/{id}/split` with `{"key": "..."}`: splits the region at the
//!   key; answers `{"regions": [left, right]}`. With `{"keys": ["...", ...]}` (strictly
//!   ascending, at most 1,000) it splits at every key in one raft command and answers the
//!   region and the new ones in key order;
//! - `POST /v1/admin/regions/{id}/merge` with `{"target": N}`: merges the region into its
//!   neighbour N (both with peers on the same stores); answers the merged region once the
//!   target covers both. 400 `invalid_merge` if they are not neighbours on the same
//!   stores, 409 `merge_target_changed` if the target changed first (the merge was rolled
//!   back), 504 if it is still under way at the deadline;
//! - `POST /v1/admin/regions/{id}/peers` with `{"store_id": N}`: adds a peer on that
//!   store; answers the region;
//! - `DELETE /v1/admin/regions/{id}/peers/{peer_id}`: removes that peer; answers the
//!   region;
//! - `POST /v1/admin/regions/{id}/transfer-leader` with `{"peer_id": N}`: answers
//!   `{"ok": true}` once that peer leads.
//!
//! A region an operation returns is shown like the views show one, as the leader answered
//! it: range, epoch and peers, with the leader and raft progress `null` (they are not part
//! of the answer). A body that is not the expected JSON object (malformed, a field missing,
//! of the wrong type, or unknown) is a 400 `bad_json` that changes nothing.
//!
//! Region boundaries and split keys are keys, i.e. bytes: they are shown percent-encoded
//! (every byte but ASCII letters, digits and `-._~`), the same form the KV endpoints take
//! keys in, and a split key is read back from that form.
//!
//! The answers are typed ([`RegionInfo`], [`RegionsView`], [`StoresView`], [`OkView`]) and
//! deserialize as well as serialize: `tinykv-ctl` reads them into these same types.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tinykv_actors::msg::{PeerStatus, RegionRoute};
use tinykv_proto::metapb;

use super::ApiState;
use crate::error::{error_chain, Error, Result};
use crate::pd::PdRequest;
use crate::security::NodeHttp;

/// Largest body the admin endpoints accept.
pub const ADMIN_BODY_LIMIT: usize = 64 * 1024;

/// The request body of the admin operations, read within the scope's limits.
pub type Body = super::body::ReadBody;

/// Bytes left as they are when a key is shown: RFC 3986's unreserved characters.
const KEY_DISPLAY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A region as the admin API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Bytes of keys and values in the region as of the local peer's last size check
    /// (absent until one ran).
    pub approximate_size: Option<u64>,
    /// Whether the local peer sleeps (hibernates: no ticks, no heartbeats until a message
    /// or request wakes it).
    pub hibernating: Option<bool>,
}

/// A region epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochInfo {
    /// Bumped by each membership change.
    pub conf_ver: u64,
    /// Bumped by each split.
    pub version: u64,
}

/// A peer of a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Peer id.
    pub id: u64,
    /// The store it lives on.
    pub store_id: u64,
}

/// The answer of `GET /v1/admin/regions` and of a split: a list of regions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegionsView {
    /// The regions.
    pub regions: Vec<RegionInfo>,
}

/// The answer of an operation that only reports success
/// (`POST /v1/admin/regions/{id}/transfer-leader`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OkView {
    /// `true` once done.
    pub ok: bool,
}

impl From<&metapb::Peer> for PeerInfo {
    fn from(peer: &metapb::Peer) -> Self {
        PeerInfo {
            id: peer.id,
            store_id: peer.store_id,
        }
    }
}

impl RegionInfo {
    /// Describes `region` alone: range, epoch and peers; no leader, no raft progress.
    pub fn from_region(region: &metapb::Region) -> RegionInfo {
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
            leader: None,
            term: None,
            applied_index: None,
            commit_index: None,
            last_index: None,
            truncated_index: None,
            approximate_size: None,
            hibernating: None,
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
    RegionInfo {
        leader,
        term: status.map(|s| s.term),
        applied_index: status.map(|s| s.applied_index),
        commit_index: status.map(|s| s.commit_index),
        last_index: status.map(|s| s.last_index),
        truncated_index: status.map(|s| s.truncated_index),
        approximate_size: status.and_then(|s| s.approximate_size),
        hibernating: status.map(|s| s.hibernating),
        ..RegionInfo::from_region(region)
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
    Ok(HttpResponse::Ok().json(RegionsView { regions }))
}

/// `GET /v1/admin/regions/{id}`.
pub async fn get_region(req: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse> {
    let id = path_number(&req, "id")?;
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
    let id = path_number(&req, "id")?;
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

/// How long `GET /v1/admin/stores` waits for another store's health probe.
pub const STORE_PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// The HTTP client of the health probes of `GET /v1/admin/stores` (short timeouts;
/// with TLS, the node's certificate), for [`ApiState::health_probe`].
pub fn health_probe_client(tls: Option<&crate::security::Tls>) -> Result<NodeHttp> {
    NodeHttp::build(tls, STORE_PROBE_TIMEOUT, "health probe's", |builder| {
        builder.timeout(STORE_PROBE_TIMEOUT)
    })
}

/// The answer of `GET /v1/admin/stores`: the address book as one node sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoresView {
    /// The store that answered.
    pub store_id: u64,
    /// Every store of its address book.
    pub stores: Vec<StoreView>,
}

/// A store of the address book as `GET /v1/admin/stores` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreView {
    /// Store id.
    pub id: u64,
    /// `host:port` of its raft transport.
    pub raft_addr: String,
    /// `host:port` of its HTTP API.
    pub http_addr: String,
    /// Whether it is the store answering.
    pub local: bool,
    /// Whether it answered its health probe (the answering store is up by definition).
    pub up: bool,
    /// Why the probe failed, if it did.
    pub probe_error: Option<String>,
    /// Regions held by the answering store with a peer on this store.
    pub region_count: usize,
    /// Regions held by the answering store whose leader, as the answering store knows it,
    /// is on this store.
    pub leader_count: usize,
    /// The store's state as the placement driver records it (`Up`, `Offline`,
    /// `Tombstone`); `null` if the PD did not answer in time.
    pub state: Option<String>,
    /// Whether the placement driver considers the store down; `null` if it did not
    /// answer in time.
    pub is_down: Option<bool>,
}

/// `GET /v1/admin/stores`.
pub async fn list_stores(state: web::Data<ApiState>) -> Result<HttpResponse> {
    let local_id = state.service.store_id();
    let routes = state.service.store().regions().await?;
    let health_probe = &state.health_probe;
    let probes = state.addresses.all().into_iter().map(|address| async move {
        let probe = if address.id == local_id {
            Ok(())
        } else {
            probe_health(health_probe, address.id, &address.http_addr).await
        };
        (address, probe)
    });
    let pd_view = state.pd.call(&PdRequest::Cluster, STORE_PROBE_TIMEOUT);
    let (probed, pd_view) = futures::future::join(futures::future::join_all(probes), pd_view).await;
    let pd_stores = pd_view
        .ok()
        .and_then(|view| view["stores"].as_array().cloned())
        .unwrap_or_default();
    let stores: Vec<StoreView> = probed
        .into_iter()
        .map(|(address, probe)| {
            let id = address.id;
            let pd = pd_stores.iter().find(|s| s["id"].as_u64() == Some(id));
            StoreView {
                region_count: routes
                    .iter()
                    .filter(|r| r.region.peers.iter().any(|p| p.store_id == id))
                    .count(),
                leader_count: routes
                    .iter()
                    .filter(|r| r.leader.as_ref().is_some_and(|l| l.store_id == id))
                    .count(),
                id,
                raft_addr: address.raft_addr,
                http_addr: address.http_addr,
                local: id == local_id,
                up: probe.is_ok(),
                probe_error: probe.err(),
                state: pd.and_then(|s| s["state"].as_str().map(String::from)),
                is_down: pd.and_then(|s| s["is_down"].as_bool()),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(StoresView {
        store_id: local_id,
        stores,
    }))
}

/// Asks store `id` at `http_addr` for `GET /health?live`: `Ok` if it answers 200 as that
/// store.
async fn probe_health(
    http: &NodeHttp,
    id: u64,
    http_addr: &str,
) -> std::result::Result<(), String> {
    let response = http
        .client()
        .get(http.url(http_addr, "/health?live"))
        .send()
        .await
        .map_err(|e| error_chain(&e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("GET /health?live answered {status}"));
    }
    let body = response.bytes().await.map_err(|e| error_chain(&e))?;
    let answered: Option<u64> = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|health| health["store_id"].as_u64());
    match answered {
        Some(answered) if answered == id => Ok(()),
        Some(answered) => Err(format!("{http_addr} answers as store {answered}")),
        None => Err(format!("{http_addr} did not answer like a TinyKV-rs node")),
    }
}

/// The body of `POST /v1/admin/regions/{id}/split`: one key or a list of them.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SplitBody {
    /// The split key, percent-encoded.
    pub key: Option<String>,
    /// Split keys, percent-encoded and strictly ascending.
    pub keys: Option<Vec<String>>,
}

/// The body of `POST /v1/admin/regions/{id}/merge`.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MergeBody {
    /// The neighbour to merge into.
    pub target: u64,
}

/// The body of `POST /v1/admin/regions/{id}/peers`.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AddPeerBody {
    /// The store to place the new peer on.
    pub store_id: u64,
}

/// The body of `POST /v1/admin/regions/{id}/transfer-leader`.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TransferLeaderBody {
    /// The peer to make leader.
    pub peer_id: u64,
}

/// The split keys a split body names, decoded: exactly one of `key` and `keys`, none of
/// them reserved (their order and count are the admin service's to check).
fn split_keys(body: SplitBody) -> Result<Vec<Vec<u8>>> {
    let encoded = match (body.key, body.keys) {
        (Some(key), None) => vec![key],
        (None, Some(keys)) => keys,
        _ => {
            return Err(Error::bad_request(
                "bad_json",
                "the body names either \"key\" or \"keys\"",
            ))
        }
    };
    encoded
        .iter()
        .map(|key| {
            let key = super::request::percent_decode(key, "the split key")?;
            if crate::pd::is_reserved_key(&key) {
                return Err(Error::bad_request(
                    "reserved_key",
                    "the split key starts with byte 0xFF: the reserved keys are the cluster's own",
                ));
            }
            Ok(key)
        })
        .collect()
}

/// `POST /v1/admin/regions/{id}/split`.
pub async fn split_region(
    req: HttpRequest,
    state: web::Data<ApiState>,
    body: Body,
) -> Result<HttpResponse> {
    let id = path_number(&req, "id")?;
    let body: SplitBody = parse_body(body)?;
    let keys = split_keys(body)?;
    let regions = state.admin.split(id, keys).await?;
    let regions = regions.iter().map(RegionInfo::from_region).collect();
    Ok(HttpResponse::Ok().json(RegionsView { regions }))
}

/// `POST /v1/admin/regions/{id}/merge`.
pub async fn merge_region(
    req: HttpRequest,
    state: web::Data<ApiState>,
    body: Body,
) -> Result<HttpResponse> {
    let id = path_number(&req, "id")?;
    let body: MergeBody = parse_body(body)?;
    let region = state.admin.merge(id, body.target).await?;
    Ok(HttpResponse::Ok().json(RegionInfo::from_region(&region)))
}

/// `POST /v1/admin/regions/{id}/peers`.
pub async fn add_peer(
    req: HttpRequest,
    state: web::Data<ApiState>,
    body: Body,
) -> Result<HttpResponse> {
    let id = path_number(&req, "id")?;
    let body: AddPeerBody = parse_body(body)?;
    let region = state.admin.add_peer(id, body.store_id).await?;
    Ok(HttpResponse::Ok().json(RegionInfo::from_region(&region)))
}

/// `DELETE /v1/admin/regions/{id}/peers/{peer_id}`.
pub async fn remove_peer(req: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse> {
    let id = path_number(&req, "id")?;
    let peer_id = path_number(&req, "peer_id")?;
    let region = state.admin.remove_peer(id, peer_id).await?;
    Ok(HttpResponse::Ok().json(RegionInfo::from_region(&region)))
}

/// `POST /v1/admin/regions/{id}/transfer-leader`.
pub async fn transfer_leader(
    req: HttpRequest,
    state: web::Data<ApiState>,
    body: Body,
) -> Result<HttpResponse> {
    let id = path_number(&req, "id")?;
    let body: TransferLeaderBody = parse_body(body)?;
    state.admin.transfer_leader(id, body.peer_id).await?;
    Ok(HttpResponse::Ok().json(OkView { ok: true }))
}

/// `GET /v1/admin/drain-leaders`: whether this node hands its leaderships away, how many
/// regions it still leads, and which of those cannot move yet (see
/// [`crate::server::leader_drain`]).
pub async fn drain_status(state: web::Data<ApiState>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.leader_drain.status().await?))
}

/// `POST /v1/admin/drain-leaders`: starts handing this node's leaderships away (before a
/// planned stop); answers as `GET` does. Repeating it changes nothing.
pub async fn start_drain(state: web::Data<ApiState>) -> Result<HttpResponse> {
    state.leader_drain.start();
    drain_status(state).await
}

/// `DELETE /v1/admin/drain-leaders`: stops draining; answers as `GET` does.
pub async fn stop_drain(state: web::Data<ApiState>) -> Result<HttpResponse> {
    state.leader_drain.stop();
    drain_status(state).await
}

/// Reads a request body holding a JSON object into a `T`; anything else is a 400
/// `bad_json` saying what is wrong.
pub fn parse_body<T: DeserializeOwned>(body: Body) -> Result<T> {
    parse_json(&body.0)
}

/// Reads a JSON object of type `T` from `body`; anything else is a 400 `bad_json`.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    let bad_json = |problem: String| {
        Error::bad_request(
            "bad_json",
            format!("the body must be a JSON object with the documented fields: {problem}"),
        )
    };
    if body.is_empty() {
        return Err(bad_json("the body is empty".into()));
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad_json(e.to_string()))?;
    if !value.is_object() {
        return Err(bad_json(format!("got {value}")));
    }
    serde_json::from_value(value).map_err(|e| bad_json(e.to_string()))
}

/// The numeric path parameter `name`, or a 400 `invalid_id`.
pub fn path_number(req: &HttpRequest, name: &str) -> Result<u64> {
    let raw = req.match_info().get(name).unwrap_or_default();
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

    fn parse<T: DeserializeOwned>(body: &str) -> Result<T> {
        parse_body(super::super::body::ReadBody(web::Bytes::from(
            body.to_string(),
        )))
    }

    #[test]
    fn operation_bodies_are_strict_json_objects() {
        assert_eq!(
            parse::<SplitBody>(r#"{"key": "user%2F42"}"#).unwrap(),
            SplitBody {
                key: Some("user%2F42".into()),
                keys: None,
            }
        );
        let keys = |body: &str| split_keys(parse::<SplitBody>(body).unwrap());
        assert_eq!(
            keys(r#"{"keys": ["a", "b%20c"]}"#).unwrap(),
            [&b"a"[..], b"b c"]
        );
        for (body, code) in [
            ("{}", "bad_json"),
            (r#"{"key": "a", "keys": ["b"]}"#, "bad_json"),
            (r#"{"keys": ["a", "%FFx"]}"#, "reserved_key"),
        ] {
            assert_eq!(keys(body).unwrap_err().code(), code, "{body}");
        }
        assert_eq!(
            parse::<AddPeerBody>(r#"{"store_id": 3}"#).unwrap(),
            AddPeerBody { store_id: 3 }
        );
        assert_eq!(
            parse::<TransferLeaderBody>(r#"{"peer_id": 9}"#).unwrap(),
            TransferLeaderBody { peer_id: 9 }
        );
        for (body, problem) in [
            ("", "empty"),
            ("{", "EOF"),
            (r#"["a"]"#, "got [\"a\"]"),
            (r#"{"key": 5}"#, "invalid type"),
            (r#"{"key": "a", "at": "b"}"#, "unknown field `at`"),
        ] {
            let err = parse::<SplitBody>(body).unwrap_err();
            assert_eq!(
                (err.code(), err.status().as_u16()),
                ("bad_json", 400),
                "{body}"
            );
            assert!(err.to_string().contains(problem), "{body}: {err}");
        }
        for body in [
            r#"{"store_id": -1}"#,
            r#"{"store_id": "2"}"#,
            r#"{"peer_id": 1}"#,
        ] {
            assert_eq!(parse::<AddPeerBody>(body).unwrap_err().code(), "bad_json");
        }
    }

    #[test]
    fn a_returned_region_has_no_leader_or_progress() {
        let region = metapb::Region {
            id: 4,
            start_key: b"a b".to_vec(),
            peers: vec![metapb::Peer { id: 5, store_id: 2 }],
            ..Default::default()
        };
        let info = serde_json::to_value(RegionInfo::from_region(&region)).unwrap();
        assert_eq!(info["start_key"], "a%20b");
        assert_eq!(info["peers"], json!([{ "id": 5, "store_id": 2 }]));
        assert!(info["leader"].is_null() && info["applied_index"].is_null());
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
            merge_target: None,
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
            approximate_size: Some(4096),
            pending_peers: vec![],
            hibernating: true,
            apply_parked: true,
        };
        let info = region_info(&route, Some(&status));
        assert_eq!(info.leader.as_ref().map(|l| l.store_id), Some(2));
        assert_eq!((info.term, info.applied_index), (Some(6), Some(8)));
        assert_eq!((info.end_key.as_str(), info.epoch.version), ("m", 2));
        assert_eq!(info.approximate_size, Some(4096));
        assert_eq!(info.hibernating, Some(true));
        assert!(region_info(&route, None).leader.is_none());
    }
}
