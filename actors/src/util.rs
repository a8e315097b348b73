//! Checks shared by the propose path (PeerFsm) and the apply path (ApplyFsm).
//!
//! A command is checked twice: when proposed, against the leader's current region, and
//! again when applied, against the region as of that log position, because a split or
//! membership change may have been applied in between.

use raft::eraftpb::{self, MessageType};
use tinykv_proto::metapb;
use tinykv_proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, BatchSplitRequest, CmdType, RaftCmdRequest, Request, SplitRequest,
};
use tinykv_proto::raft_serverpb::RaftMessage;

use crate::error::{Error, Result};
use crate::keys;

/// The key a request touches, if it touches one.
pub fn request_key(req: &Request) -> Option<&[u8]> {
    match req.cmd_type() {
        CmdType::Get => req.get.as_ref().map(|r| r.key.as_slice()),
        CmdType::Put => req.put.as_ref().map(|r| r.key.as_slice()),
        CmdType::Delete => req.delete.as_ref().map(|r| r.key.as_slice()),
        CmdType::Snap | CmdType::Invalid => None,
    }
}

/// Whether a command only reads (every request is a Get or a Snap).
pub fn is_read_only(cmd: &RaftCmdRequest) -> bool {
    cmd.admin_request.is_none()
        && !cmd.requests.is_empty()
        && cmd
            .requests
            .iter()
            .all(|r| matches!(r.cmd_type(), CmdType::Get | CmdType::Snap))
}

/// Fails with `KeyNotInRegion` unless `key` lies in `region`.
pub fn check_key_in_region(key: &[u8], region: &metapb::Region) -> Result<()> {
    if keys::in_range(key, &region.start_key, &region.end_key) {
        Ok(())
    } else {
        Err(Error::KeyNotInRegion {
            key: key.to_vec(),
            region_id: region.id,
            start_key: region.start_key.clone(),
            end_key: region.end_key.clone(),
        })
    }
}

/// Checks that a split at `key` leaves both parts of `region` non-empty: the key lies
/// inside the region and is not its start key (so not empty either).
pub fn check_split_key_in_region(key: &[u8], region: &metapb::Region) -> Result<()> {
    check_key_in_region(key, region)?;
    if key == region.start_key.as_slice() {
        return Err(Error::InvalidRequest(
            "split key must lie strictly inside the region".into(),
        ));
    }
    Ok(())
}

/// The admin request that splits a region at `keys` (ascending, at least one), with
/// fresh `ids`: `keys.len()` runs of one new region id and then one new peer id per peer
/// of the region. One key makes TinyKV's `Split`, more a `BatchSplit`.
pub fn split_request(keys: Vec<Vec<u8>>, ids: &[u64]) -> AdminRequest {
    let per_split = ids.len() / keys.len().max(1);
    let mut splits: Vec<SplitRequest> = keys
        .into_iter()
        .zip(ids.chunks(per_split.max(1)))
        .map(|(split_key, fresh)| SplitRequest {
            split_key,
            new_region_id: fresh[0],
            new_peer_ids: fresh[1..].to_vec(),
        })
        .collect();
    if splits.len() == 1 {
        return AdminRequest {
            cmd_type: AdminCmdType::Split as i32,
            split: splits.pop(),
            ..Default::default()
        };
    }
    AdminRequest {
        cmd_type: AdminCmdType::BatchSplit as i32,
        batch_split: Some(BatchSplitRequest { requests: splits }),
        ..Default::default()
    }
}

/// Checks the command's epoch against `region`: normal requests compare the version (the
/// range may have changed), ChangePeer compares conf_ver, Split and TransferLeader compare
/// both, CompactLog neither.
pub fn check_region_epoch(cmd: &RaftCmdRequest, region: &metapb::Region) -> Result<()> {
    let (check_ver, check_conf_ver) = match &cmd.admin_request {
        None => (true, false),
        Some(admin) => match admin.cmd_type() {
            // A CommitMerge names the target's epoch of its PrepareMerge; it is compared
            // by `check_merge_target_epoch`. A RollbackMerge names its PrepareMerge.
            AdminCmdType::CompactLog
            | AdminCmdType::InvalidAdmin
            | AdminCmdType::CommitMerge
            | AdminCmdType::RollbackMerge => (false, false),
            AdminCmdType::ChangePeer => (false, true),
            AdminCmdType::Split
            | AdminCmdType::BatchSplit
            | AdminCmdType::TransferLeader
            | AdminCmdType::PrepareMerge => (true, true),
        },
    };
    if !check_ver && !check_conf_ver {
        return Ok(());
    }
    let Some(from) = cmd.header.as_ref().and_then(|h| h.region_epoch.as_ref()) else {
        return Err(Error::InvalidRequest("missing region epoch".into()));
    };
    let current = region.region_epoch.unwrap_or_default();
    if (check_ver && from.version != current.version)
        || (check_conf_ver && from.conf_ver != current.conf_ver)
    {
        return Err(Error::EpochNotMatch {
            message: format!(
                "region {} epoch (conf_ver {}, version {}) but request has (conf_ver {}, version {})",
                region.id, current.conf_ver, current.version, from.conf_ver, from.version
            ),
            current_regions: vec![region.clone()],
        });
    }
    Ok(())
}

/// Whether `outer`'s range holds all of `inner`'s (a merge target that absorbed the
/// source covers it).
pub fn covers(outer: &metapb::Region, inner: &metapb::Region) -> bool {
    outer.start_key <= inner.start_key
        && (outer.end_key.is_empty()
            || (!inner.end_key.is_empty() && inner.end_key <= outer.end_key))
}

/// The admin request that freezes a region to merge it into `target` (as the proposer
/// sees it now: its epoch must still hold when the merge commits).
pub fn prepare_merge_request(target: metapb::Region) -> AdminRequest {
    AdminRequest {
        cmd_type: AdminCmdType::PrepareMerge as i32,
        prepare_merge: Some(tinykv_proto::raft_cmdpb::PrepareMergeRequest {
            target: Some(target),
        }),
        ..Default::default()
    }
}

/// Checks that `source` may merge into `target`: distinct regions, adjacent (one ends
/// where the other starts), neither the region of the reserved keys, with peers on the
/// same stores.
pub fn check_merge_pair(source: &metapb::Region, target: &metapb::Region) -> Result<()> {
    if source.id == target.id {
        return Err(Error::InvalidRequest(
            "a region cannot merge into itself".into(),
        ));
    }
    let adjacent = (!source.end_key.is_empty() && source.end_key == target.start_key)
        || (!target.end_key.is_empty() && target.end_key == source.start_key);
    if !adjacent {
        return Err(Error::InvalidRequest(format!(
            "regions {} and {} are not neighbours",
            source.id, target.id
        )));
    }
    let stores = |r: &metapb::Region| {
        let mut ids: Vec<u64> = r.peers.iter().map(|p| p.store_id).collect();
        ids.sort_unstable();
        ids
    };
    // The placement driver's meta region starts at the reserved keys; it must keep its
    // range and id.
    if keys::is_reserved_key(&source.start_key) || keys::is_reserved_key(&target.start_key) {
        return Err(Error::InvalidRequest(format!(
            "regions {} and {}: the region of the reserved keys (the cluster's metadata, from byte 0xFF on) never merges",
            source.id, target.id
        )));
    }
    if stores(source) != stores(target) {
        return Err(Error::InvalidRequest(format!(
            "regions {} and {} do not have their peers on the same stores",
            source.id, target.id
        )));
    }
    Ok(())
}

/// The target region once it absorbed `source` (a neighbour, see [`check_merge_pair`]):
/// its range covers both, its version is past both regions' versions, its membership is
/// the target's.
pub fn merged_region(source: &metapb::Region, target: &metapb::Region) -> metapb::Region {
    let mut merged = target.clone();
    if !source.end_key.is_empty() && source.end_key == target.start_key {
        merged.start_key = source.start_key.clone();
    } else {
        merged.end_key = source.end_key.clone();
    }
    let source_version = source.region_epoch.map_or(0, |e| e.version);
    let epoch = merged.region_epoch.get_or_insert_with(Default::default);
    epoch.version = epoch.version.max(source_version) + 1;
    merged
}

/// Compares a merge target's `current` epoch with the `expected` one its PrepareMerge
/// named. `Ok` if equal. [`Error::MergeTargetChanged`] if the target moved past it
/// (either part newer, neither older): epochs only grow, so no CommitMerge at or after
/// this point of the target's log can ever apply, and the source may roll back.
/// `EpochNotMatch` otherwise (this peer of the target has not caught up yet).
pub fn check_merge_target_epoch(
    target: &metapb::Region,
    expected: Option<metapb::RegionEpoch>,
) -> Result<()> {
    let current = target.region_epoch.unwrap_or_default();
    let expected = expected.unwrap_or_default();
    if current == expected {
        return Ok(());
    }
    let message = format!(
        "merge target {} is at (conf_ver {}, version {}), the merge was prepared against (conf_ver {}, version {})",
        target.id, current.conf_ver, current.version, expected.conf_ver, expected.version
    );
    if current.conf_ver >= expected.conf_ver && current.version >= expected.version {
        Err(Error::MergeTargetChanged(message))
    } else {
        Err(Error::EpochNotMatch {
            message,
            current_regions: vec![target.clone()],
        })
    }
}

/// Whether a raft message may create a peer on a store that does not know the region: a
/// vote (or pre-vote), or a heartbeat from a leader that does not know this peer's log.
pub fn is_initial_msg(msg: &eraftpb::Message) -> bool {
    let t = msg.get_msg_type();
    t == MessageType::MsgRequestVote
        || t == MessageType::MsgRequestPreVote
        || (t == MessageType::MsgHeartbeat && msg.commit == raft::INVALID_INDEX)
}

/// The tombstone to answer `msg` with, if its sender is a peer removed from `region`
/// while it was cut off: outside the region, with an older epoch. Such a peer would
/// otherwise campaign forever, its own region still counting long-gone peers as voters.
/// Only a sender that knows its region (an epoch) can be stale: a new peer still waiting
/// for its snapshot has none, and the receiver may just not have applied the change that
/// added it yet.
pub fn tombstone_for_stale_sender(
    msg: &RaftMessage,
    region: &metapb::Region,
) -> Option<RaftMessage> {
    let from = msg.from_peer?;
    let their_conf_ver = msg.region_epoch.map_or(0, |e| e.conf_ver);
    let our_conf_ver = region.region_epoch.map_or(0, |e| e.conf_ver);
    let stale = !msg.is_tombstone
        && their_conf_ver > 0
        && their_conf_ver < our_conf_ver
        && !region.peers.iter().any(|p| p.id == from.id);
    stale.then(|| RaftMessage {
        region_id: msg.region_id,
        from_peer: msg.to_peer,
        to_peer: Some(from),
        region_epoch: region.region_epoch,
        is_tombstone: true,
        ..Default::default()
    })
}

/// Longest part of a request's `trace_id` a log line shows: the client API takes ids of
/// at most 128 bytes, and a command from the log may come from anywhere.
const MAX_TRACE_ID_SHOWN: usize = 128;

/// A request's `trace_id` (the client request's id) as text for a log line: at most
/// [`MAX_TRACE_ID_SHOWN`] bytes, anything not UTF-8 replaced.
pub fn trace_id_text(trace_id: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(&trace_id[..trace_id.len().min(MAX_TRACE_ID_SHOWN)])
}

/// A proposal id no other proposal of the cluster carries: the proposing store, a random
/// number drawn once per process, and a per-process counter (24 bytes).
pub fn unique_proposal_id(store_id: u64) -> Vec<u8> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::LazyLock;
    static PROCESS_NONCE: LazyLock<u64> = LazyLock::new(rand::random);
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut id = Vec::with_capacity(24);
    id.extend_from_slice(&store_id.to_be_bytes());
    id.extend_from_slice(&PROCESS_NONCE.to_be_bytes());
    id.extend_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinykv_proto::raft_cmdpb::{AdminRequest, PutRequest, RaftRequestHeader};

    #[test]
    fn a_trace_id_from_the_log_is_shown_bounded_and_as_text() {
        assert_eq!(trace_id_text(b"order-17"), "order-17");
        assert_eq!(trace_id_text(&[b'a'; 300]).len(), MAX_TRACE_ID_SHOWN);
        assert_eq!(trace_id_text(&[0xff, b'x']), "\u{fffd}x");
        // A cut inside a multi-byte character is replaced, not a panic.
        let mut long = vec![b'a'; MAX_TRACE_ID_SHOWN - 1];
        long.extend_from_slice("é".as_bytes());
        assert!(trace_id_text(&long).ends_with('\u{fffd}'));
    }

    fn region(conf_ver: u64, version: u64) -> metapb::Region {
        metapb::Region {
            id: 1,
            start_key: b"b".to_vec(),
            end_key: b"m".to_vec(),
            region_epoch: Some(metapb::RegionEpoch { conf_ver, version }),
            ..Default::default()
        }
    }

    fn cmd(conf_ver: u64, version: u64, admin: Option<AdminCmdType>) -> RaftCmdRequest {
        RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_epoch: Some(metapb::RegionEpoch { conf_ver, version }),
                ..Default::default()
            }),
            admin_request: admin.map(|t| AdminRequest {
                cmd_type: t as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn epoch_checks_depend_on_the_command() {
        let r = region(2, 3);
        assert!(check_region_epoch(&cmd(2, 3, None), &r).is_ok());
        // A normal command ignores conf_ver but not version.
        assert!(check_region_epoch(&cmd(1, 3, None), &r).is_ok());
        let err = check_region_epoch(&cmd(2, 2, None), &r).unwrap_err();
        assert!(
            matches!(err, Error::EpochNotMatch { ref current_regions, .. } if current_regions[0] == r)
        );
        // ChangePeer checks conf_ver only; Split both; CompactLog neither.
        assert!(check_region_epoch(&cmd(2, 1, Some(AdminCmdType::ChangePeer)), &r).is_ok());
        assert!(check_region_epoch(&cmd(1, 3, Some(AdminCmdType::ChangePeer)), &r).is_err());
        assert!(check_region_epoch(&cmd(1, 3, Some(AdminCmdType::Split)), &r).is_err());
        assert!(check_region_epoch(&cmd(2, 2, Some(AdminCmdType::TransferLeader)), &r).is_err());
        assert!(check_region_epoch(&cmd(0, 0, Some(AdminCmdType::CompactLog)), &r).is_ok());
    }

    #[test]
    fn keys_are_checked_against_the_range() {
        let r = region(1, 1);
        assert!(check_key_in_region(b"b", &r).is_ok());
        assert!(check_key_in_region(b"lz", &r).is_ok());
        assert!(matches!(
            check_key_in_region(b"m", &r),
            Err(Error::KeyNotInRegion { .. })
        ));
        assert!(check_key_in_region(b"a", &r).is_err());
        // A split key must leave both parts non-empty, also in a region from the start.
        assert!(check_split_key_in_region(b"c", &r).is_ok());
        for key in [&b"b"[..], b"a", b"m"] {
            assert!(check_split_key_in_region(key, &r).is_err(), "{key:?}");
        }
        let first = metapb::Region {
            start_key: vec![],
            ..r
        };
        assert!(check_split_key_in_region(b"", &first).is_err());
        assert!(check_split_key_in_region(b"a", &first).is_ok());
    }

    #[test]
    fn read_only_and_initial_messages() {
        let put = Request {
            cmd_type: CmdType::Put as i32,
            put: Some(PutRequest {
                key: b"k".to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let snap = Request {
            cmd_type: CmdType::Snap as i32,
            ..Default::default()
        };
        let mut c = RaftCmdRequest {
            requests: vec![snap.clone()],
            ..Default::default()
        };
        assert!(is_read_only(&c));
        c.requests.push(put.clone());
        assert!(!is_read_only(&c));
        assert_eq!(request_key(&put), Some(&b"k"[..]));

        let mut m = eraftpb::Message::default();
        m.set_msg_type(MessageType::MsgRequestVote);
        assert!(is_initial_msg(&m));
        m.set_msg_type(MessageType::MsgHeartbeat);
        assert!(is_initial_msg(&m));
        m.commit = 7;
        assert!(!is_initial_msg(&m));
        m.set_msg_type(MessageType::MsgAppend);
        assert!(!is_initial_msg(&m));
    }
}
