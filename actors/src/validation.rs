//! The rules every command obeys, checked where it is proposed and again where it applies.
//!
//! A command reaches a region's log from a client (through a node's API), from a follower
//! that forwarded a client's write through raft, or from the store itself (admin commands,
//! log compaction, the placement driver's records). Whatever its path, the state machine
//! must never be handed something it cannot apply: the engine refuses an empty key or one
//! longer than [`MAX_KEY_BYTES`] by asserting, and a committed entry that makes every
//! replica fail while applying it would stop its region for good, since every restart
//! replays it. So the same rules run twice:
//!
//! - when the command is proposed (the PeerFsm, and the leader for writes a follower
//!   forwards), so that the client learns at once what is wrong and a bad write never joins
//!   a batch of good ones;
//! - when it applies (the ApplyFsm), so that a command that got past the first check
//!   anyway is answered with an error and changes nothing, on every replica alike.
//!
//! The rules depend only on the command (and, for the checks that need it, on the region
//! as of that log position), never on a node's configuration: every replica must reach
//! the same verdict. A node's API limits (`api.max_key_bytes`, `api.max_value_bytes`) may
//! be tighter; these are the bounds nothing may cross.
//!
//! - A write (`Put`, `Delete`) names a client column family (`default`, `lock` or
//!   `write`), a key of 1 to [`MAX_KEY_BYTES`] bytes and, for a put, a value of at most
//!   [`MAX_VALUE_BYTES`].
//! - The reserved keys (from byte `0xFF` on, see [`keys::RESERVED_KEYS_START`]) hold the
//!   cluster's metadata: only a command whose header is marked `metadata` writes them, and
//!   such a command writes nothing else.
//! - A write may name a session (see [`crate::session`]): a request id of 1 to
//!   [`session::MAX_REQUEST_ID_BYTES`] bytes, a TTL of at most [`session::MAX_TTL_MS`], and
//!   a key short enough that its session record's key fits the engine. A read names none.
//! - A read is a `Get` of a valid key in a client column family, or a `Snap`.
//! - A command holds at least one request, or an admin request, never both.
//! - A split names a split key that is a valid key and, in the reserved range, only the
//!   range's very start (where the meta region begins); a new region id and one new peer
//!   id per peer, all non-zero and distinct. A batch split holds 1 to [`MAX_BATCH_SPLIT`]
//!   such splits, with strictly ascending keys and no id used twice.
//! - A membership change names a peer with a non-zero id and store.
//! - A log compaction names a non-zero index and term; when it applies, the index must lie
//!   below the compaction's own entry (checked by the ApplyFsm).

use std::collections::HashSet;

use tinykv_proto::metapb;
use tinykv_proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, CmdType, RaftCmdRequest, Request, SplitRequest,
};

use crate::engine::Cf;
use crate::error::{Error, Result};
use crate::keys;
use crate::session;
use crate::util;

/// Longest key the engine stores.
pub const MAX_KEY_BYTES: usize = u16::MAX as usize;

/// Largest value a command may write.
pub const MAX_VALUE_BYTES: usize = 32 * 1024 * 1024;

/// Most splits one `BatchSplit` command may hold: each creates a peer on every store of the
/// region when it applies.
pub const MAX_BATCH_SPLIT: usize = 1_000;

/// Whether `cmd` is a write of the cluster's metadata (its header is marked `metadata`).
pub fn is_metadata(cmd: &RaftCmdRequest) -> bool {
    cmd.header.as_ref().is_some_and(|h| h.metadata)
}

/// Checks a command's shape and every request or admin request in it against the rules
/// of the module documentation that need no region.
pub fn check_command(cmd: &RaftCmdRequest) -> Result<()> {
    match &cmd.admin_request {
        Some(_) if !cmd.requests.is_empty() => Err(invalid(
            "a command mixes an admin request with normal requests",
        )),
        Some(admin) => {
            if is_metadata(cmd) {
                return Err(invalid("an admin command cannot be a metadata write"));
            }
            check_admin(admin)
        }
        None if cmd.requests.is_empty() => Err(invalid("the command has no requests")),
        None => {
            let metadata = is_metadata(cmd);
            cmd.requests
                .iter()
                .try_for_each(|req| check_request(req, metadata))
        }
    }
}

/// Checks one request of a command whose header is marked `metadata` or not.
pub fn check_request(req: &Request, metadata: bool) -> Result<()> {
    if let Some(write_session) = &req.session {
        let key = util::request_key(req)
            .filter(|_| matches!(req.cmd_type(), CmdType::Put | CmdType::Delete))
            .ok_or_else(|| invalid("only a Put or a Delete may name a session"))?;
        let id = &write_session.request_id;
        if id.is_empty() || id.len() > session::MAX_REQUEST_ID_BYTES {
            return Err(invalid(format!(
                "a request id of {} bytes: it must have 1 to {}",
                id.len(),
                session::MAX_REQUEST_ID_BYTES
            )));
        }
        if write_session.ttl_ms > session::MAX_TTL_MS {
            return Err(invalid(format!(
                "a session TTL of {} ms, more than the limit of {}",
                write_session.ttl_ms,
                session::MAX_TTL_MS
            )));
        }
        if keys::session_key(key, id).len() > MAX_KEY_BYTES {
            return Err(invalid(format!(
                "a key of {} bytes is too long to name a session",
                key.len()
            )));
        }
    }
    match req.cmd_type() {
        CmdType::Put => {
            let put = req
                .put
                .as_ref()
                .ok_or_else(|| invalid("a Put request without its put"))?;
            check_cf(&put.cf)?;
            check_written_key(&put.key, metadata)?;
            if put.value.len() > MAX_VALUE_BYTES {
                return Err(invalid(format!(
                    "the value is {} bytes, more than the limit of {MAX_VALUE_BYTES}",
                    put.value.len()
                )));
            }
            Ok(())
        }
        CmdType::Delete => {
            let delete = req
                .delete
                .as_ref()
                .ok_or_else(|| invalid("a Delete request without its delete"))?;
            check_cf(&delete.cf)?;
            check_written_key(&delete.key, metadata)
        }
        CmdType::Get => {
            let get = req
                .get
                .as_ref()
                .ok_or_else(|| invalid("a Get request without its get"))?;
            check_cf(&get.cf)?;
            check_key(&get.key)
        }
        CmdType::Snap => Ok(()),
        CmdType::Invalid => Err(invalid("a request of type Invalid")),
    }
}

/// Checks the fields of an admin request that need no region.
pub fn check_admin(admin: &AdminRequest) -> Result<()> {
    match admin.cmd_type() {
        AdminCmdType::Split => {
            let split = admin
                .split
                .as_ref()
                .ok_or_else(|| invalid("a Split without its request"))?;
            check_split(split, &mut HashSet::new())
        }
        AdminCmdType::BatchSplit => {
            let requests = admin
                .batch_split
                .as_ref()
                .map(|b| b.requests.as_slice())
                .unwrap_or_default();
            if requests.is_empty() || requests.len() > MAX_BATCH_SPLIT {
                return Err(invalid(format!(
                    "a BatchSplit holds {} splits, not 1 to {MAX_BATCH_SPLIT}",
                    requests.len()
                )));
            }
            let mut ids = HashSet::new();
            for split in requests {
                check_split(split, &mut ids)?;
            }
            if requests
                .windows(2)
                .any(|w| w[0].split_key >= w[1].split_key)
            {
                return Err(invalid("a BatchSplit's keys are not strictly ascending"));
            }
            Ok(())
        }
        AdminCmdType::ChangePeer => {
            let change = admin
                .change_peer
                .as_ref()
                .ok_or_else(|| invalid("a ChangePeer without its request"))?;
            match change.peer {
                Some(peer) if peer.id != 0 && peer.store_id != 0 => Ok(()),
                _ => Err(invalid(
                    "a ChangePeer needs a peer with a non-zero id and store",
                )),
            }
        }
        AdminCmdType::CompactLog => match &admin.compact_log {
            Some(c) if c.compact_index > 0 && c.compact_term > 0 => Ok(()),
            _ => Err(invalid("a CompactLog needs a non-zero index and term")),
        },
        AdminCmdType::TransferLeader => match admin.transfer_leader.as_ref().and_then(|t| t.peer) {
            Some(peer) if peer.id != 0 => Ok(()),
            _ => Err(invalid("a TransferLeader needs a target peer")),
        },
        AdminCmdType::PrepareMerge => {
            match admin.prepare_merge.as_ref().and_then(|p| p.target.as_ref()) {
                Some(target) => check_merge_region(target, "target"),
                None => Err(invalid("a PrepareMerge needs its target region")),
            }
        }
        AdminCmdType::CommitMerge => {
            let commit = admin
                .commit_merge
                .as_ref()
                .ok_or_else(|| invalid("a CommitMerge without its request"))?;
            if commit.commit == 0 || commit.commit_term == 0 {
                return Err(invalid(
                    "a CommitMerge needs a non-zero commit index and term",
                ));
            }
            match &commit.source {
                Some(source) => check_merge_region(source, "source"),
                None => Err(invalid("a CommitMerge needs its source region")),
            }
        }
        AdminCmdType::RollbackMerge => match &admin.rollback_merge {
            Some(r) if r.commit > 0 => Ok(()),
            _ => Err(invalid(
                "a RollbackMerge needs the index of its PrepareMerge",
            )),
        },
        AdminCmdType::InvalidAdmin => Err(invalid("an admin request of type InvalidAdmin")),
    }
}

/// Checks the region a merge command names: an id, an epoch, and peers with ids on
/// distinct stores.
fn check_merge_region(region: &metapb::Region, what: &str) -> Result<()> {
    let mut stores = HashSet::new();
    let sane = region.id != 0
        && region.region_epoch.is_some()
        && !region.peers.is_empty()
        && region
            .peers
            .iter()
            .all(|p| p.id != 0 && p.store_id != 0 && stores.insert(p.store_id));
    if !sane {
        return Err(invalid(format!(
            "the merge {what} needs an id, an epoch and peers on distinct stores"
        )));
    }
    if !region.end_key.is_empty() && region.start_key >= region.end_key {
        return Err(invalid(format!("the merge {what}'s range is empty")));
    }
    Ok(())
}

/// Checks a key a command reads: 1 to [`MAX_KEY_BYTES`] bytes.
pub fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(invalid("the key is empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(invalid(format!(
            "the key is {} bytes, more than the limit of {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    Ok(())
}

/// Checks a key a command writes: a valid key, reserved if and only if the command is a
/// metadata write.
fn check_written_key(key: &[u8], metadata: bool) -> Result<()> {
    check_key(key)?;
    match (keys::is_reserved_key(key), metadata) {
        (true, false) => Err(invalid(
            "keys from byte 0xFF on are reserved for the cluster's metadata",
        )),
        (false, true) => Err(invalid(
            "a metadata write may only write the reserved keys (from byte 0xFF on)",
        )),
        _ => Ok(()),
    }
}

/// Checks one split: a valid split key, a new region id and new peer ids that are non-zero
/// and not in `ids` (the ids other splits of the same command use), which gains them.
fn check_split(split: &SplitRequest, ids: &mut HashSet<u64>) -> Result<()> {
    check_split_key(&split.split_key)?;
    let fresh = std::iter::once(&split.new_region_id).chain(&split.new_peer_ids);
    for &id in fresh {
        if id == 0 || !ids.insert(id) {
            return Err(invalid(format!(
                "a split's new region id {} and peer ids {:?} hold 0 or a repeated id",
                split.new_region_id, split.new_peer_ids
            )));
        }
    }
    Ok(())
}

/// Checks a split key: a valid key, and in the reserved range only the range's start.
pub fn check_split_key(key: &[u8]) -> Result<()> {
    check_key(key)?;
    if keys::is_reserved_key(key) && key != keys::RESERVED_KEYS_START {
        return Err(invalid(
            "the reserved keys (from byte 0xFF on) may only be split off at their start",
        ));
    }
    Ok(())
}

fn check_cf(name: &str) -> Result<()> {
    Cf::from_name(name).map(|_| ())
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidRequest(message.into())
}

#[cfg(test)]
mod tests {
    use tinykv_proto::raft_cmdpb::{
        BatchSplitRequest, ChangePeerRequest, CompactLogRequest, DeleteRequest, GetRequest,
        PutRequest, RaftRequestHeader,
    };

    use super::*;

    fn put(cf: &str, key: &[u8], value_len: usize) -> Request {
        Request {
            cmd_type: CmdType::Put as i32,
            put: Some(PutRequest {
                cf: cf.into(),
                key: key.to_vec(),
                value: vec![0; value_len],
            }),
            ..Default::default()
        }
    }

    fn command(metadata: bool, requests: Vec<Request>) -> RaftCmdRequest {
        RaftCmdRequest {
            header: Some(RaftRequestHeader {
                metadata,
                ..Default::default()
            }),
            requests,
            admin_request: None,
        }
    }

    #[test]
    fn writes_need_a_client_cf_and_a_key_the_engine_can_store() {
        assert!(check_request(&put("default", b"k", 10), false).is_ok());
        assert!(
            check_request(&put("", b"k", 0), false).is_ok(),
            "empty cf = default"
        );
        assert!(check_request(&put("write", &[b'k'; MAX_KEY_BYTES], 0), false).is_ok());
        let refused = [
            put("default", b"", 1),
            put("default", &[b'k'; MAX_KEY_BYTES + 1], 1),
            put("raft", b"k", 1),
            put("meta", b"k", 1),
            put("default", b"k", MAX_VALUE_BYTES + 1),
            Request {
                cmd_type: CmdType::Put as i32,
                ..Default::default()
            },
            Request {
                cmd_type: CmdType::Delete as i32,
                delete: Some(DeleteRequest {
                    cf: "default".into(),
                    key: vec![],
                }),
                ..Default::default()
            },
            Request {
                cmd_type: CmdType::Get as i32,
                get: Some(GetRequest {
                    cf: "lock".into(),
                    key: vec![],
                }),
                ..Default::default()
            },
            Request::default(),
        ];
        for req in refused {
            let err = check_request(&req, false).unwrap_err();
            assert!(matches!(err, Error::InvalidRequest(_)), "{req:?}: {err:?}");
        }
    }

    #[test]
    fn a_session_names_a_write_with_a_sane_id_ttl_and_key() {
        use tinykv_proto::raft_cmdpb::WriteSession;
        let with = |mut req: Request, id: &[u8], ttl_ms: u64| {
            req.session = Some(WriteSession {
                request_id: id.to_vec(),
                issued_ms: 1,
                ttl_ms,
            });
            req
        };
        assert!(check_request(&with(put("default", b"k", 1), b"id", 60_000), false).is_ok());
        let long_key = [b'k'; session::MAX_WRITTEN_KEY_BYTES];
        assert!(check_request(
            &with(
                put("default", &long_key, 1),
                &[b'i'; session::MAX_REQUEST_ID_BYTES],
                1
            ),
            false
        )
        .is_ok());
        let get = Request {
            cmd_type: CmdType::Get as i32,
            get: Some(GetRequest {
                cf: "default".into(),
                key: b"k".to_vec(),
            }),
            ..Default::default()
        };
        let refused = [
            with(put("default", b"k", 1), b"", 1),
            with(
                put("default", b"k", 1),
                &[b'i'; session::MAX_REQUEST_ID_BYTES + 1],
                1,
            ),
            with(put("default", b"k", 1), b"id", session::MAX_TTL_MS + 1),
            with(put("default", &[b'k'; MAX_KEY_BYTES], 1), b"id", 1),
            with(get, b"id", 1),
        ];
        for req in refused {
            let err = check_request(&req, false).unwrap_err();
            assert!(matches!(err, Error::InvalidRequest(_)), "{req:?}: {err:?}");
        }
    }

    #[test]
    fn only_metadata_writes_touch_the_reserved_keys_and_nothing_else() {
        assert!(check_command(&command(false, vec![put("default", b"\xffpd/x", 1)])).is_err());
        assert!(check_command(&command(true, vec![put("default", b"\xffpd/x", 1)])).is_ok());
        assert!(check_command(&command(true, vec![put("default", b"user", 1)])).is_err());
        assert!(
            check_command(&command(false, vec![])).is_err(),
            "no requests"
        );
        // Reads of reserved keys are the placement driver's; they are not writes.
        let get = Request {
            cmd_type: CmdType::Get as i32,
            get: Some(GetRequest {
                cf: "default".into(),
                key: b"\xffpd/x".to_vec(),
            }),
            ..Default::default()
        };
        assert!(check_request(&get, false).is_ok());
    }

    #[test]
    fn admin_requests_carry_sane_ids_and_keys() {
        let split = |key: &[u8], region: u64, peers: Vec<u64>| AdminRequest {
            cmd_type: AdminCmdType::Split as i32,
            split: Some(SplitRequest {
                split_key: key.to_vec(),
                new_region_id: region,
                new_peer_ids: peers,
            }),
            ..Default::default()
        };
        assert!(check_admin(&split(b"m", 5, vec![6, 7])).is_ok());
        assert!(
            check_admin(&split(b"\xff", 5, vec![6])).is_ok(),
            "the meta region"
        );
        for bad in [
            split(b"", 5, vec![6]),
            split(b"\xffpd/store", 5, vec![6]),
            split(b"m", 0, vec![6]),
            split(b"m", 5, vec![6, 6]),
            split(b"m", 5, vec![0]),
            AdminRequest {
                cmd_type: AdminCmdType::ChangePeer as i32,
                change_peer: Some(ChangePeerRequest {
                    peer: Some(metapb::Peer { id: 0, store_id: 1 }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            AdminRequest {
                cmd_type: AdminCmdType::CompactLog as i32,
                compact_log: Some(CompactLogRequest::default()),
                ..Default::default()
            },
            AdminRequest::default(),
        ] {
            assert!(check_admin(&bad).is_err(), "{bad:?}");
        }
        let mixed = RaftCmdRequest {
            requests: vec![put("default", b"k", 1)],
            admin_request: Some(split(b"m", 5, vec![6])),
            ..Default::default()
        };
        assert!(check_command(&mixed).is_err());
    }

    #[test]
    fn a_batch_split_holds_ascending_keys_and_never_reuses_an_id() {
        let one = |key: &[u8], first_id: u64| SplitRequest {
            split_key: key.to_vec(),
            new_region_id: first_id,
            new_peer_ids: vec![first_id + 1, first_id + 2],
        };
        let batch = |requests: Vec<SplitRequest>| AdminRequest {
            cmd_type: AdminCmdType::BatchSplit as i32,
            batch_split: Some(BatchSplitRequest { requests }),
            ..Default::default()
        };
        assert!(check_admin(&batch(vec![one(b"a", 10), one(b"b", 20)])).is_ok());
        let too_many = (0..=MAX_BATCH_SPLIT as u64)
            .map(|i| one(format!("k{i:05}").as_bytes(), 10 + 3 * i))
            .collect();
        for bad in [
            batch(vec![]),
            batch(too_many),
            batch(vec![one(b"b", 10), one(b"a", 20)]),
            batch(vec![one(b"a", 10), one(b"a", 20)]),
            batch(vec![one(b"a", 10), one(b"b", 12)]),
            batch(vec![one(b"a", 10), one(b"", 20)]),
            AdminRequest {
                cmd_type: AdminCmdType::BatchSplit as i32,
                ..Default::default()
            },
        ] {
            assert!(check_admin(&bad).is_err(), "{bad:?}");
        }
    }
}
