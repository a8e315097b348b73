//! The one boundary between raft-rs's message types and ours.
//!
//! raft-rs 0.7 speaks rust-protobuf 2 types (`raft::eraftpb::*`); everything else in
//! TinyKV-rs speaks prost. Both are generated from protobuf declarations with the same field
//! numbers, so a value crosses over by being encoded on one side and decoded on the other.
//! This costs one copy per message, which is the price of not forking raft-rs's codec.

/// Converts a raft-rs value into the prost type with the same wire format.
///
/// Panics only if the two declarations disagree, which is a bug in `proto/eraftpb.proto`.
pub fn from_raft<R, P>(value: &R) -> P
where
    R: protobuf::Message,
    P: prost::Message + Default,
{
    let bytes = value
        .write_to_bytes()
        .expect("raft-rs message always encodes");
    P::decode(bytes.as_slice()).expect("eraftpb.proto matches raft-rs's wire format")
}

/// Converts a prost value into the raft-rs type with the same wire format.
///
/// Fails if the bytes are not a valid raft-rs message (for example an enum value raft-rs
/// does not know), which can only happen with a corrupted or foreign peer.
pub fn to_raft<P, R>(value: &P) -> Result<R, protobuf::ProtobufError>
where
    P: prost::Message,
    R: protobuf::Message,
{
    R::parse_from_bytes(&value.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eraftpb;
    use raft::eraftpb as rpb;

    #[test]
    fn message_round_trips_through_both_codecs() {
        let mut entry = rpb::Entry::default();
        entry.set_entry_type(rpb::EntryType::EntryConfChange);
        entry.term = 7;
        entry.index = 42;
        entry.data = b"payload".to_vec().into();
        entry.context = b"ctx".to_vec().into();
        let mut msg = rpb::Message::default();
        msg.set_msg_type(rpb::MessageType::MsgTransferLeader);
        msg.to = 3;
        msg.from = 1;
        msg.term = 7;
        msg.commit = 40;
        msg.commit_term = 6;
        msg.reject_hint = 9;
        msg.priority = -2;
        msg.mut_entries().push(entry);
        msg.mut_snapshot().mut_metadata().mut_conf_state().voters = vec![1, 2, 3];

        let ours: eraftpb::Message = from_raft(&msg);
        assert_eq!(ours.msg_type(), eraftpb::MessageType::MsgTransferLeader);
        assert_eq!(
            ours.entries[0].entry_type(),
            eraftpb::EntryType::EntryConfChange
        );
        assert_eq!(ours.entries[0].context, b"ctx");
        assert_eq!(ours.commit_term, 6);
        assert_eq!(ours.priority, -2);
        let back: rpb::Message = to_raft(&ours).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn hard_state_converts() {
        let hs = rpb::HardState {
            term: 5,
            vote: 2,
            commit: 4,
            ..Default::default()
        };
        let ours: eraftpb::HardState = from_raft(&hs);
        assert_eq!((ours.term, ours.vote, ours.commit), (5, 2, 4));
        assert_eq!(to_raft::<_, rpb::HardState>(&ours).unwrap(), hs);
    }
}
