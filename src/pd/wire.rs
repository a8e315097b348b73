//! What nodes and the placement driver say to each other.
//!
//! Every exchange with the PD is one [`PdRequest`], sent as JSON to
//! `POST /internal/v1/pd` of the node the sender believes leads the meta region (or
//! handed to the local [`PdServer`](super::PdServer) directly when that is this node).
//! A node that does not lead answers 503 `not_pd_leader`, naming the leader it knows
//! (`leader_store_id`, `leader_http_addr`), and the [`PdClient`](super::PdClient)
//! follows. The answers are JSON too: [`HeartbeatReply`] and [`JoinReply`] for the
//! requests nodes make, and the admin views ([`super::views`]) for the others.
//!
//! Regions travel as [`RegionReport`]s: the same facts as `metapb::Region`, in a form
//! that serializes (keys as byte arrays).

use serde::{Deserialize, Serialize};
use tinykv_proto::metapb;

use super::meta::StoreRecord;
use crate::pd::{HeartbeatAnswer, RegionHeartbeat, StoreHeartbeat};

/// A request to the placement driver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PdRequest {
    /// A node's periodic report: its store, and the regions it leads.
    Heartbeat(HeartbeatBatch),
    /// A new node asks for a store id.
    Join {
        /// The cluster the node expects to join.
        cluster_id: u64,
        /// Its raft transport address.
        raft_addr: String,
        /// Its HTTP address.
        http_addr: String,
        /// A random token the node also shows at `GET /internal/v1/identity` on its
        /// `raft_addr` while it joins: the PD checks it there before recording the store,
        /// so a join naming addresses where no joining node listens is refused.
        #[serde(default)]
        join_token: String,
        /// The store id the node asks for: with TLS, the one its certificate names (the
        /// peer listener sets it to that); 0 lets the PD choose.
        #[serde(default)]
        store_id: u64,
    },
    /// The cluster summary (`GET /v1/admin/cluster`).
    Cluster,
    /// Every region the PD knows, with leader and size (`GET /v1/admin/cluster/regions`).
    Regions,
    /// Whether the PD knows region `region_id` (from its leader's heartbeats): answered
    /// `{"known": bool}`. An admin operation asks when no store it can reach holds the
    /// region, to tell a region that does not exist (404) from one out of reach.
    Region {
        /// The region.
        region_id: u64,
    },
    /// What keeps the key space from being served (`GET /health`): answered
    /// `{"problems": [...]}`.
    Health,
    /// Operators in flight and recently ended (`GET /v1/admin/operators`).
    Operators,
    /// Start draining a store (`POST /v1/admin/stores/{id}/offline`).
    SetStoreOffline {
        /// The store to drain.
        store_id: u64,
    },
    /// Read or change authentication's state (`/v1/auth`): answered with the whole
    /// [`AuthSet`](crate::auth::AuthSet) as it is afterwards.
    Auth(AuthChange),
    /// `count` consecutive timestamps from the timestamp oracle (`GET /v1/txn/ts`):
    /// answered with a [`TimestampsReply`].
    Timestamps {
        /// How many (1 to [`MAX_BATCH`](crate::pd::tso::MAX_BATCH)).
        count: u64,
    },
    /// `count` fresh region and peer ids, for a node's splits and membership changes:
    /// answered with an [`IdsReply`]. The PD records the new high-water mark through raft
    /// before answering, so the ids are never handed out again.
    AllocIds {
        /// How many (1 to [`MAX_ID_BATCH`](crate::pd::ids::MAX_ID_BATCH)).
        count: u64,
    },
    /// Garbage collection's safe point: `{"safe_point": ts}`.
    SafePoint,
    /// Records `safe_point` as garbage collection's safe point if it is later than the
    /// recorded one (never backwards); answered like [`PdRequest::SafePoint`]. The caller
    /// has resolved every lock older than it first (see `crate::txn::gc_worker`).
    AdvanceSafePoint {
        /// The new safe point.
        safe_point: u64,
    },
}

/// The answer to [`PdRequest::AllocIds`]: the ids `first` to `first + count - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdsReply {
    /// The first id.
    pub first: u64,
    /// How many.
    pub count: u64,
}

/// The timestamp oracle's answer: `count` consecutive timestamps from `ts` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimestampsReply {
    /// The first timestamp.
    pub ts: u64,
    /// How many: `ts` to `ts + count - 1` are this caller's.
    pub count: u64,
    /// The first timestamp's physical part: milliseconds since the Unix epoch.
    pub physical_ms: u64,
    /// The first timestamp's logical part.
    pub logical: u64,
}

impl From<crate::pd::tso::Timestamps> for TimestampsReply {
    fn from(batch: crate::pd::tso::Timestamps) -> TimestampsReply {
        let (physical_ms, logical) = crate::pd::tso::split(batch.first);
        TimestampsReply {
            ts: batch.first,
            count: batch.count,
            physical_ms,
            logical,
        }
    }
}

/// A change to authentication's state, or none ([`AuthChange::Show`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum AuthChange {
    /// No change: the state as it is.
    Show,
    /// Require credentials on every node (refused while no admin credential exists).
    Enable,
    /// Stop requiring credentials.
    Disable,
    /// Add a token (its secret's digest only; the node that made it shows the client the
    /// secret once).
    CreateToken {
        /// The token.
        record: crate::auth::TokenRecord,
    },
    /// Remove a token: it is refused on every node from the next heartbeat on.
    RevokeToken {
        /// Its id.
        id: String,
    },
    /// Give a certificate user a grant (replacing any).
    SetUser {
        /// The user and grant.
        record: crate::auth::UserRecord,
    },
    /// Remove a certificate user's grant.
    DeleteUser {
        /// The user's name.
        name: String,
    },
}

/// One node's heartbeat: its store and the regions it leads whose report changed since
/// the last heartbeat the PD answered (every region it leads when `full`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatBatch {
    /// The store's report.
    pub store: StoreReport,
    /// One report per region the store leads (or per changed one).
    pub regions: Vec<RegionReport>,
    /// `regions` holds every region the store leads, not only the changed ones.
    #[serde(default)]
    pub full: bool,
    /// The version of the authentication state the node enforces.
    #[serde(default)]
    pub auth_version: u64,
}

/// A store's report about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreReport {
    /// The store's id.
    pub store_id: u64,
    /// Its raft transport address (a store that moved reports its new one).
    pub raft_addr: String,
    /// Its HTTP address.
    pub http_addr: String,
    /// How many region peers it holds.
    pub region_count: u64,
    /// Bytes used by its regions' data, as last measured by their leaders.
    pub used_size: Option<u64>,
    /// Whether it is handing its leaderships away (see `crate::server::leader_drain`). Absent in
    /// reports from older nodes.
    #[serde(default)]
    pub draining_leaders: bool,
}

impl StoreReport {
    /// The PD core's form of the report.
    pub fn heartbeat(&self) -> StoreHeartbeat {
        StoreHeartbeat {
            store_id: self.store_id,
            capacity: None,
            available: None,
            used_size: self.used_size,
            region_count: self.region_count,
            draining_leaders: self.draining_leaders,
        }
    }
}

/// A peer of a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerReport {
    /// The peer's id.
    pub id: u64,
    /// The store it lives on.
    pub store_id: u64,
}

impl From<&metapb::Peer> for PeerReport {
    fn from(peer: &metapb::Peer) -> Self {
        PeerReport {
            id: peer.id,
            store_id: peer.store_id,
        }
    }
}

impl From<PeerReport> for metapb::Peer {
    fn from(peer: PeerReport) -> Self {
        metapb::Peer {
            id: peer.id,
            store_id: peer.store_id,
        }
    }
}

/// A region leader's report about its region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionReport {
    /// The region's id.
    pub id: u64,
    /// First key.
    pub start_key: Vec<u8>,
    /// End key (exclusive; empty: unbounded).
    pub end_key: Vec<u8>,
    /// Epoch: membership version.
    pub conf_ver: u64,
    /// Epoch: range version.
    pub version: u64,
    /// Every peer.
    pub peers: Vec<PeerReport>,
    /// The reporting leader.
    pub leader: PeerReport,
    /// Peers lagging behind the leader's log.
    pub pending_peers: Vec<PeerReport>,
    /// The region's size in bytes, as last measured.
    pub approximate_size: Option<u64>,
}

impl RegionReport {
    /// The report of `leader`, leading `region`.
    pub fn new(
        region: &metapb::Region,
        leader: &metapb::Peer,
        pending_peers: &[metapb::Peer],
        approximate_size: Option<u64>,
    ) -> RegionReport {
        let epoch = region.region_epoch.unwrap_or_default();
        RegionReport {
            id: region.id,
            start_key: region.start_key.clone(),
            end_key: region.end_key.clone(),
            conf_ver: epoch.conf_ver,
            version: epoch.version,
            peers: region.peers.iter().map(PeerReport::from).collect(),
            leader: leader.into(),
            pending_peers: pending_peers.iter().map(PeerReport::from).collect(),
            approximate_size,
        }
    }

    /// The region as `metapb` describes it.
    pub fn region(&self) -> metapb::Region {
        metapb::Region {
            id: self.id,
            start_key: self.start_key.clone(),
            end_key: self.end_key.clone(),
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: self.conf_ver,
                version: self.version,
            }),
            peers: self.peers.iter().map(|&p| p.into()).collect(),
        }
    }

    /// The PD core's form of the report.
    pub fn heartbeat(&self) -> RegionHeartbeat {
        RegionHeartbeat {
            region: self.region(),
            leader: Some(self.leader.into()),
            pending_peers: self.pending_peers.iter().map(|&p| p.into()).collect(),
            approximate_size: self.approximate_size,
        }
    }
}

/// What the PD tells a region's leader to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RegionAction {
    /// Add this peer as a voter.
    AddPeer {
        /// The new peer.
        peer: PeerReport,
    },
    /// Remove this peer.
    RemovePeer {
        /// The peer to remove.
        peer: PeerReport,
    },
    /// Hand the leadership to this peer.
    TransferLeader {
        /// The peer that should lead.
        peer: PeerReport,
    },
    /// Merge the region into its neighbour (as the node's own peer of it knows it).
    Merge {
        /// The neighbouring region's id.
        target: u64,
    },
}

/// One order for one region, valid for the epoch it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionCommand {
    /// The region.
    pub region_id: u64,
    /// The epoch the order was made for: membership version.
    pub conf_ver: u64,
    /// The epoch the order was made for: range version.
    pub version: u64,
    /// What to do.
    pub action: RegionAction,
}

impl RegionCommand {
    /// The command carrying out `answer` for the region of `report`.
    pub fn new(report: &RegionReport, answer: HeartbeatAnswer) -> RegionCommand {
        RegionCommand::for_epoch(report.id, report.conf_ver, report.version, answer)
    }

    /// The command carrying out `answer` for region `region_id` at epoch (`conf_ver`,
    /// `version`).
    pub fn for_epoch(
        region_id: u64,
        conf_ver: u64,
        version: u64,
        answer: HeartbeatAnswer,
    ) -> RegionCommand {
        use tinykv_proto::eraftpb::ConfChangeType;
        let action = match answer {
            HeartbeatAnswer::ChangePeer { change_type, peer } => match change_type {
                ConfChangeType::RemoveNode => RegionAction::RemovePeer {
                    peer: (&peer).into(),
                },
                _ => RegionAction::AddPeer {
                    peer: (&peer).into(),
                },
            },
            HeartbeatAnswer::TransferLeader { peer } => RegionAction::TransferLeader {
                peer: (&peer).into(),
            },
            HeartbeatAnswer::Merge { target } => RegionAction::Merge { target },
        };
        RegionCommand {
            region_id,
            conf_ver,
            version,
            action,
        }
    }
}

/// The PD's answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// Orders for regions the node leads.
    pub commands: Vec<RegionCommand>,
    /// Every store the PD knows, for the node's address book.
    pub stores: Vec<StoreRecord>,
    /// The reporting store's own state (`Up`, `Offline`, `Tombstone`).
    pub store_state: String,
    /// Authentication's state, when it is newer than the node's `auth_version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<crate::auth::AuthSet>,
    /// The PD has no full report from this node in its current leadership: the next
    /// heartbeat should carry every region the node leads.
    #[serde(default)]
    pub full_report_wanted: bool,
    /// Stores the PD has not heard from for longer than `max_store_disconnect_time_ms`
    /// (or counts down or removed): the node wakes its sleeping peers of regions led from
    /// them, so that they elect another leader.
    #[serde(default)]
    pub unreachable_stores: Vec<u64>,
}

/// The PD's answer to a join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinReply {
    /// The new store's id.
    pub store_id: u64,
    /// Every store the PD knows, for the node's address book.
    pub stores: Vec<StoreRecord>,
    /// Authentication's state, which the new node enforces from its first request.
    #[serde(default)]
    pub auth: crate::auth::AuthSet,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_through_json() {
        let region = metapb::Region {
            id: 4,
            start_key: b"a".to_vec(),
            end_key: vec![0xff],
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 2,
                version: 3,
            }),
            peers: vec![metapb::Peer { id: 5, store_id: 1 }],
        };
        let report = RegionReport::new(&region, &region.peers[0], &[], Some(10));
        assert_eq!(report.region(), region);
        let request = PdRequest::Heartbeat(HeartbeatBatch {
            store: StoreReport {
                store_id: 1,
                raft_addr: "127.0.0.1:1".into(),
                http_addr: "127.0.0.1:2".into(),
                region_count: 1,
                used_size: None,
                draining_leaders: false,
            },
            regions: vec![report.clone()],
            full: true,
            auth_version: 0,
        });
        let json = serde_json::to_string(&request).unwrap();
        assert!(json.starts_with(r#"{"type":"heartbeat""#), "{json}");
        assert_eq!(serde_json::from_str::<PdRequest>(&json).unwrap(), request);

        let command = RegionCommand::new(
            &report,
            HeartbeatAnswer::TransferLeader {
                peer: metapb::Peer { id: 9, store_id: 2 },
            },
        );
        assert_eq!((command.conf_ver, command.version), (2, 3));
        assert_eq!(
            command.action,
            RegionAction::TransferLeader {
                peer: PeerReport { id: 9, store_id: 2 }
            }
        );
    }
}
