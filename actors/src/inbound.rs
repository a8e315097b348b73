//! What a PeerFsm checks in a raft message from another store before raft-rs sees it.
//!
//! raft-rs trusts its peers. It asserts, rather than checks, that a leader never commits
//! past the end of a follower's log, that appended entries follow each other, that a
//! ReadIndex message carries its context, that a snapshot's configuration includes its
//! receiver: a message that breaks such a promise panics the node. Real peers keep those
//! promises, but a message arriving from the network may come from a bug, a damaged frame
//! or a forger. So every message is checked here first, against what this peer knows of
//! its own log, and one that raft could not take safely is dropped (the caller logs it,
//! naming the sender). A real peer's message always passes: dropping costs nothing but a
//! retransmission that will never be needed.
//!
//! The checks, by message type:
//!
//! - every message: `from` and `to` name the peers of the envelope (`from_peer`,
//!   `to_peer`); it has a term (all but `MsgPropose` and `MsgReadIndex`, which raft
//!   sends without one), and no term or index beyond [`MAX_TERM_OR_INDEX`] (raft adds to
//!   them and would overflow); the types raft only makes for itself (`MsgHup`, `MsgBeat`,
//!   `MsgUnreachable`, `MsgSnapStatus`, `MsgCheckQuorum`) and `MsgTransferLeader` (this
//!   raftstore starts transfers on the leader itself, never by message) are refused;
//! - `MsgAppend`: the previous entry has a term (raft-rs answers term 0 for any index
//!   outside its log, so an append "after index 10, term 0" would match a log that ends
//!   at 8 and commit past its end); the entries follow `index` one by one, with terms that
//!   never decrease, from `log_term` up to the message's term;
//! - `MsgHeartbeat`: the commit index lies within this peer's log;
//! - `MsgAppendResponse`: the acknowledged or rejected index, and a rejection's hint,
//!   lie within this peer's log;
//! - `MsgSnapshot`: a snapshot with an index and a term, whose configuration is a plain
//!   list of distinct voters that includes the receiver (its data is verified separately,
//!   see [`crate::snapshot::verify`]);
//! - `MsgReadIndex`, `MsgReadIndexResp`: exactly one entry, the request's context;
//! - `MsgTimeoutNow`: only from the leader this peer follows, if it knows one;
//! - `MsgPropose` (a follower forwarding client writes): every entry is a client write
//!   that carries the uuid the follower waits on, and neither names a term nor writes the
//!   cluster's metadata, which only the leader's own store may propose
//!   ([`check_forwarded_proposal`]).

use std::collections::HashSet;

use prost::Message as _;
use raft::eraftpb::{EntryType, Message, MessageType};
use tinykv_proto::metapb;
use tinykv_proto::raft_cmdpb::{AdminCmdType, AdminRequest, RaftRequestHeader};

/// What the receiving peer knows of its own raft state, for [`check_message`].
#[derive(Debug, Clone, Copy)]
pub struct LocalLog {
    /// Index of the last entry of the peer's log.
    pub last_index: u64,
    /// The leader the peer follows (0: none known).
    pub leader_id: u64,
}

/// Checks `msg`, which arrived in an envelope from `from` to `to`, against `log`; the
/// error says what is wrong with it.
pub fn check_message(
    msg: &Message,
    from: &metapb::Peer,
    to: &metapb::Peer,
    log: &LocalLog,
) -> Result<(), String> {
    if msg.from != from.id || msg.to != to.id {
        return Err(format!(
            "the message is from {} to {}, its envelope from peer {} to peer {}",
            msg.from, msg.to, from.id, to.id
        ));
    }
    let kind = msg.get_msg_type();
    check_magnitudes(msg)?;
    let unterm = matches!(kind, MessageType::MsgPropose | MessageType::MsgReadIndex);
    if msg.term == 0 && !unterm {
        // raft sets the term of every message but these; a zero term makes it take a
        // message's index for a committed entry of "term 0" it does not have.
        return Err(format!("{kind:?} without a term"));
    }
    match kind {
        MessageType::MsgHup
        | MessageType::MsgBeat
        | MessageType::MsgUnreachable
        | MessageType::MsgSnapStatus
        | MessageType::MsgCheckQuorum
        | MessageType::MsgTransferLeader => Err(format!("{kind:?} is never sent between stores")),
        MessageType::MsgAppend => check_append(msg),
        MessageType::MsgHeartbeat if msg.commit > log.last_index => Err(format!(
            "a heartbeat commits {} beyond the last index {}",
            msg.commit, log.last_index
        )),
        MessageType::MsgAppendResponse
            if msg.index > log.last_index || (msg.reject && msg.reject_hint > log.last_index) =>
        {
            Err(format!(
                "an append response names index {} (hint {}) beyond the last index {}",
                msg.index, msg.reject_hint, log.last_index
            ))
        }
        MessageType::MsgSnapshot => check_snapshot(msg, to.id),
        MessageType::MsgReadIndex | MessageType::MsgReadIndexResp
            if msg.get_entries().len() != 1 =>
        {
            Err(format!(
                "{kind:?} carries {} entries instead of its context",
                msg.get_entries().len()
            ))
        }
        MessageType::MsgTimeoutNow if log.leader_id != 0 && msg.from != log.leader_id => {
            Err(format!(
                "MsgTimeoutNow from {}, but the leader is {}",
                msg.from, log.leader_id
            ))
        }
        MessageType::MsgPropose => check_forwarded_proposal(msg).map(|_| ()),
        _ => Ok(()),
    }
}

/// Largest term or log index a message may name: raft adds to them (a campaign takes
/// the next term), and nothing real comes near it (a new term every millisecond would take
/// thousands of years).
pub const MAX_TERM_OR_INDEX: u64 = 1 << 48;

/// Refuses terms and indexes raft would overflow on.
fn check_magnitudes(msg: &Message) -> Result<(), String> {
    let snapshot = msg.get_snapshot().get_metadata();
    let fields = [
        ("term", msg.term),
        ("log_term", msg.log_term),
        ("index", msg.index),
        ("commit", msg.commit),
        ("reject_hint", msg.reject_hint),
        ("request_snapshot", msg.request_snapshot),
        ("snapshot index", snapshot.index),
        ("snapshot term", snapshot.term),
    ];
    let entries = msg
        .get_entries()
        .iter()
        .flat_map(|e| [("entry index", e.index), ("entry term", e.term)]);
    match fields
        .into_iter()
        .chain(entries)
        .find(|(_, value)| *value > MAX_TERM_OR_INDEX)
    {
        Some((name, value)) => Err(format!("{name} {value} is beyond any real one")),
        None => Ok(()),
    }
}

/// Appended entries must follow `index` one by one, with terms from `log_term` up to the
/// message's term that never decrease: raft-rs slices its log by these indexes and
/// truncates by these terms without checking them.
fn check_append(msg: &Message) -> Result<(), String> {
    if msg.log_term == 0 && msg.index > 0 {
        return Err(format!(
            "an append after index {} names no term for that entry",
            msg.index
        ));
    }
    if msg.log_term > msg.term {
        return Err(format!(
            "an append's previous entry has term {} above the message's term {}",
            msg.log_term, msg.term
        ));
    }
    let mut previous_term = msg.log_term;
    for (offset, entry) in msg.get_entries().iter().enumerate() {
        let expected = msg.index.checked_add(1 + offset as u64);
        if Some(entry.index) != expected {
            return Err(format!(
                "an append after index {} holds entry {} at position {offset}",
                msg.index, entry.index
            ));
        }
        if entry.term < previous_term || entry.term > msg.term {
            return Err(format!(
                "an append holds entry {} of term {} (after term {previous_term}, in term {})",
                entry.index, entry.term, msg.term
            ));
        }
        previous_term = entry.term;
    }
    Ok(())
}

/// A snapshot must have an index and a term, and a configuration of distinct voters,
/// without learners or a joint state, that includes its receiver `to` (raft-rs restores
/// the configuration without checking it).
fn check_snapshot(msg: &Message, to: u64) -> Result<(), String> {
    if !msg.has_snapshot() {
        return Err("MsgSnapshot without a snapshot".into());
    }
    let metadata = msg.get_snapshot().get_metadata();
    if metadata.index == 0 || metadata.term == 0 || metadata.term > msg.term {
        return Err(format!(
            "a snapshot at index {} of term {} in a message of term {}",
            metadata.index, metadata.term, msg.term
        ));
    }
    let conf = metadata.get_conf_state();
    let voters = conf.get_voters();
    let distinct: HashSet<&u64> = voters.iter().collect();
    let plain = conf.get_learners().is_empty()
        && conf.get_voters_outgoing().is_empty()
        && conf.get_learners_next().is_empty()
        && !conf.get_auto_leave();
    if !plain || distinct.len() != voters.len() || !voters.contains(&to) || voters.contains(&0) {
        return Err(format!(
            "a snapshot whose configuration {conf:?} is not a plain list of distinct voters including peer {to}"
        ));
    }
    Ok(())
}

/// The parts of a forwarded command the leader looks at: its header, and whether it
/// carries an admin request. Decoding only these skips the writes' keys and values
/// (prost passes over fields a message does not declare without copying them), so the
/// check costs little on the hot path; the writes themselves are validated where the
/// follower proposed them and again where they apply.
#[derive(Clone, PartialEq, prost::Message)]
struct ForwardedCommand {
    #[prost(message, optional, tag = "1")]
    header: Option<RaftRequestHeader>,
    #[prost(bytes = "vec", optional, tag = "3")]
    admin_request: Option<Vec<u8>>,
}

/// Checks the entries of a `MsgPropose` a follower forwarded: client writes (or a
/// merge's CommitMerge) only, each
/// with the uuid the follower waits on, none naming a term, an admin command or the
/// cluster's metadata (only the leader's own store proposes those). Returns the uuids,
/// for the follower to be told if they are not taken.
pub fn check_forwarded_proposal(msg: &Message) -> Result<Vec<Vec<u8>>, String> {
    let entries = msg.get_entries();
    if entries.is_empty() {
        return Err("a forwarded proposal without entries".into());
    }
    let mut uuids = Vec::with_capacity(entries.len());
    for entry in entries {
        if entry.get_entry_type() != EntryType::EntryNormal {
            return Err(format!(
                "a forwarded proposal holds a {:?} entry",
                entry.get_entry_type()
            ));
        }
        let cmd = ForwardedCommand::decode(entry.get_data())
            .map_err(|e| format!("a forwarded proposal does not decode: {e}"))?;
        let header = cmd.header.unwrap_or_default();
        let admin_allowed = match &cmd.admin_request {
            None => true,
            // A merge source's leader asks the target's peer on its store, which forwards.
            Some(bytes) => {
                <AdminRequest as prost::Message>::decode(bytes.as_slice()).is_ok_and(|admin| {
                    admin.cmd_type() == AdminCmdType::CommitMerge
                        && crate::validation::check_admin(&admin).is_ok()
                })
            }
        };
        if !admin_allowed || header.metadata || header.term != 0 {
            return Err(
                "a forwarded proposal may only hold client writes or a CommitMerge (no other admin command, term or metadata)"
                    .into(),
            );
        }
        if header.uuid.is_empty() {
            return Err("a forwarded proposal without its uuid".into());
        }
        uuids.push(header.uuid);
    }
    Ok(uuids)
}

#[cfg(test)]
mod tests {
    use raft::eraftpb::{ConfState, Entry, Snapshot};
    use tinykv_proto::raft_cmdpb::{PutRequest, RaftCmdRequest, Request};

    use super::*;

    const FROM: metapb::Peer = metapb::Peer { id: 1, store_id: 1 };
    const TO: metapb::Peer = metapb::Peer { id: 2, store_id: 2 };
    const LOG: LocalLog = LocalLog {
        last_index: 10,
        leader_id: 1,
    };

    fn message(kind: MessageType) -> Message {
        let mut m = Message::default();
        m.set_msg_type(kind);
        m.from = FROM.id;
        m.to = TO.id;
        m.term = 5;
        m
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    fn check(m: &Message) -> Result<(), String> {
        check_message(m, &FROM, &TO, &LOG)
    }

    #[test]
    fn appends_must_be_contiguous_and_ordered_by_term() {
        let mut m = message(MessageType::MsgAppend);
        m.index = 7;
        m.log_term = 4;
        m.set_entries(vec![entry(8, 4), entry(9, 5)].into());
        assert!(check(&m).is_ok());
        for bad in [
            vec![entry(1, 4)],
            vec![entry(8, 4), entry(10, 5)],
            vec![entry(8, 6)],
            vec![entry(8, 3)],
            vec![entry(8, 5), entry(9, 4)],
        ] {
            m.set_entries(bad.clone().into());
            assert!(check(&m).is_err(), "{bad:?}");
        }
        m.index = u64::MAX;
        m.set_entries(vec![entry(0, 4)].into());
        assert!(check(&m).is_err(), "no overflow");
    }

    #[test]
    fn an_append_after_an_entry_of_no_term_is_refused() {
        // raft-rs reads term 0 for an index past its log, so this would "match" a log
        // ending at 10 and commit 12 past its end (found by the peer-listener fuzzer,
        // TINYKV_FUZZ_SEED=6735373351942972124).
        let mut m = message(MessageType::MsgAppend);
        m.index = 12;
        m.log_term = 0;
        m.commit = 12;
        assert!(check(&m).is_err());
        m.log_term = m.term;
        assert!(check(&m).is_ok());
    }

    #[test]
    fn commits_and_acknowledgements_stay_within_the_log() {
        let mut m = message(MessageType::MsgHeartbeat);
        m.commit = 10;
        assert!(check(&m).is_ok());
        m.commit = 11;
        assert!(check(&m).is_err());
        let mut m = message(MessageType::MsgAppendResponse);
        m.index = 11;
        assert!(check(&m).is_err());
    }

    #[test]
    fn envelopes_local_types_and_contexts_are_checked() {
        let mut m = message(MessageType::MsgRequestVote);
        assert!(check(&m).is_ok());
        m.from = 9;
        assert!(check(&m).is_err(), "from must match the envelope");
        for kind in [
            MessageType::MsgHup,
            MessageType::MsgBeat,
            MessageType::MsgTransferLeader,
            MessageType::MsgCheckQuorum,
        ] {
            assert!(check(&message(kind)).is_err(), "{kind:?}");
        }
        let mut read = message(MessageType::MsgReadIndex);
        assert!(check(&read).is_err(), "a read index without its context");
        read.set_entries(vec![Entry::default()].into());
        assert!(check(&read).is_ok());
        let mut timeout = message(MessageType::MsgTimeoutNow);
        assert!(check(&timeout).is_ok());
        timeout.from = 3;
        let stranger = metapb::Peer { id: 3, store_id: 3 };
        assert!(check_message(&timeout, &stranger, &TO, &LOG).is_err());
    }

    #[test]
    fn terms_are_required_and_bounded() {
        let mut m = message(MessageType::MsgReadIndexResp);
        m.set_entries(vec![Entry::default()].into());
        assert!(check(&m).is_ok());
        m.term = 0;
        assert!(check(&m).is_err(), "a read index answer of term 0");
        m.term = MAX_TERM_OR_INDEX + 1;
        assert!(check(&m).is_err(), "a term raft would overflow on");
        let mut vote = message(MessageType::MsgRequestVote);
        vote.index = u64::MAX;
        assert!(check(&vote).is_err());
        let mut read = message(MessageType::MsgReadIndex);
        read.term = 0;
        read.set_entries(vec![Entry::default()].into());
        assert!(check(&read).is_ok(), "a ReadIndex request has no term");
    }

    #[test]
    fn snapshots_must_include_their_receiver() {
        let mut m = message(MessageType::MsgSnapshot);
        assert!(check(&m).is_err(), "no snapshot");
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = 20;
        snapshot.mut_metadata().term = 5;
        let conf = ConfState {
            voters: vec![1, 2, 3],
            ..Default::default()
        };
        snapshot.mut_metadata().set_conf_state(conf.clone());
        m.set_snapshot(snapshot.clone());
        assert!(check(&m).is_ok());
        for voters in [vec![1, 3], vec![1, 2, 2], vec![0, 2]] {
            let mut bad = snapshot.clone();
            bad.mut_metadata().mut_conf_state().voters = voters.clone();
            m.set_snapshot(bad);
            assert!(check(&m).is_err(), "{voters:?}");
        }
        let mut learners = snapshot.clone();
        learners.mut_metadata().mut_conf_state().learners = vec![4];
        m.set_snapshot(learners);
        assert!(check(&m).is_err());
    }

    fn proposal(header: RaftRequestHeader, key: &[u8]) -> Message {
        let cmd = RaftCmdRequest {
            header: Some(header),
            requests: vec![Request {
                cmd_type: tinykv_proto::raft_cmdpb::CmdType::Put as i32,
                put: Some(PutRequest {
                    cf: "default".into(),
                    key: key.to_vec(),
                    value: b"v".to_vec(),
                }),
                ..Default::default()
            }],
            admin_request: None,
        };
        let e = Entry {
            data: cmd.encode_to_vec().into(),
            ..Default::default()
        };
        let mut m = message(MessageType::MsgPropose);
        m.set_entries(vec![e].into());
        m
    }

    #[test]
    fn forwarded_proposals_hold_only_client_writes() {
        let good = RaftRequestHeader {
            uuid: b"id".to_vec(),
            ..Default::default()
        };
        let m = proposal(good.clone(), b"k");
        assert_eq!(check_forwarded_proposal(&m).unwrap(), vec![b"id".to_vec()]);
        assert!(check(&m).is_ok());
        // A bad key is the apply path's to refuse: the leader only reads the header.
        assert!(check(&proposal(good.clone(), b"")).is_ok());
        for (header, key) in [
            (
                RaftRequestHeader {
                    metadata: true,
                    ..good.clone()
                },
                &b"\xffpd/cluster"[..],
            ),
            (
                RaftRequestHeader {
                    term: 3,
                    ..good.clone()
                },
                &b"k"[..],
            ),
            (RaftRequestHeader::default(), &b"k"[..]),
        ] {
            let m = proposal(header.clone(), key);
            assert!(check(&m).is_err(), "{header:?} {key:?}");
        }
    }
}
