//! How a peer told it was removed makes sure before it destroys itself.
//!
//! A peer removed from its region while it was cut off never applies its own removal: it
//! learns of it later, from a tombstone message that another peer (or a store holding the
//! region's tombstone) sends when it hears from it, or from a message addressed to a newer
//! peer of the region on its own store. Destroying itself on such a message alone would
//! let anyone who can send one packet wipe a replica, and three packets wipe a region:
//! nothing in a raft message proves who sent it. So the peer asks first.
//!
//! It sends a [`MsgCheckStalePeer`](ExtraMessageType::MsgCheckStalePeer) carrying a random
//! nonce to every other peer of its region as it knows it, and to the store the message
//! claimed to come from, over its own connections to the addresses its store knows.
//! Each store answers with the region as it holds it (its live peer's view, or the region
//! recorded in its tombstone, or nothing), repeating the nonce. The peer destroys itself
//! only on an answer from a store it asked, with the right nonce, showing the region at a
//! newer membership (`conf_ver`) that does not include this peer; peer ids are never
//! reused, so such a membership proves the removal. A forger would have to answer for a
//! real store on a connection it did not open, guessing a 64-bit nonce.
//!
//! An uninitialized peer (created by a message, still waiting for its first snapshot)
//! knows no membership to compare with, and its removal is never announced by a
//! tombstone; it is replaced only when a newer peer of the region on its store is
//! confirmed, by an answer whose membership holds that other peer.
//!
//! One check runs at a time; it expires after [`CHECK_PATIENCE_TICKS`] base ticks, and the
//! next tombstone or message starts another.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tinykv_proto::metapb;
use tinykv_proto::raft_serverpb::{ExtraMessage, ExtraMessageType, RaftMessage};

/// How long a check waits for its answers, in raft base ticks.
pub const CHECK_PATIENCE_TICKS: u32 = 20;

/// A check in flight.
#[derive(Debug, Clone)]
pub struct StaleCheck {
    nonce: u64,
    asked: HashSet<u64>,
    started: Instant,
}

impl StaleCheck {
    /// Starts a check of `peer` of `region` (as the peer knows it), also asking the store
    /// of `claimed_sender`, the peer the triggering message named as its sender. Returns
    /// the check and the messages to send.
    pub fn start(
        region: &metapb::Region,
        peer: &metapb::Peer,
        claimed_sender: Option<metapb::Peer>,
    ) -> (StaleCheck, Vec<RaftMessage>) {
        let nonce = rand::random::<u64>() | 1;
        let mut targets: Vec<metapb::Peer> = region
            .peers
            .iter()
            .copied()
            .filter(|p| p.store_id != peer.store_id)
            .collect();
        if let Some(sender) = claimed_sender.filter(|s| s.store_id != peer.store_id) {
            if !targets.iter().any(|p| p.store_id == sender.store_id) {
                targets.push(sender);
            }
        }
        let messages = targets
            .iter()
            .map(|target| RaftMessage {
                region_id: region.id,
                from_peer: Some(*peer),
                to_peer: Some(*target),
                region_epoch: region.region_epoch,
                extra_msg: Some(ExtraMessage {
                    r#type: ExtraMessageType::MsgCheckStalePeer as i32,
                    nonce,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        let check = StaleCheck {
            nonce,
            asked: targets.iter().map(|p| p.store_id).collect(),
            started: Instant::now(),
        };
        (check, messages)
    }

    /// Whether the check is still waiting for answers, given the raft base tick.
    pub fn is_running(&self, base_tick: Duration) -> bool {
        self.started.elapsed() < base_tick * CHECK_PATIENCE_TICKS
    }

    /// Whether `answer` proves that `peer` was removed from `region` (its current view):
    /// it answers this check, from a store that was asked, with the region at a newer
    /// membership that leaves `peer` out (and, for an uninitialized peer, holds another
    /// peer on its store).
    pub fn confirms(
        &self,
        answer: &RaftMessage,
        region: &metapb::Region,
        peer: &metapb::Peer,
    ) -> bool {
        let Some(extra) = &answer.extra_msg else {
            return false;
        };
        let from_asked = answer
            .from_peer
            .is_some_and(|p| self.asked.contains(&p.store_id));
        if extra.r#type() != ExtraMessageType::MsgCheckStalePeerResponse
            || extra.nonce != self.nonce
            || !from_asked
        {
            return false;
        }
        let Some(theirs) = &extra.region else {
            return false;
        };
        let conf_ver = |r: &metapb::Region| r.region_epoch.map_or(0, |e| e.conf_ver);
        let initialized = !region.peers.is_empty();
        theirs.id == region.id
            && conf_ver(theirs) > conf_ver(region)
            && !theirs.peers.iter().any(|p| p.id == peer.id)
            && (initialized || theirs.peers.iter().any(|p| p.store_id == peer.store_id))
    }
}

/// Whether `msg` asks this store about a region (a [`StaleCheck`] of another store).
pub fn is_check(msg: &RaftMessage) -> bool {
    msg.extra_msg
        .as_ref()
        .is_some_and(|e| e.r#type() == ExtraMessageType::MsgCheckStalePeer)
}

/// Whether `msg` answers a [`StaleCheck`].
pub fn is_answer(msg: &RaftMessage) -> bool {
    msg.extra_msg
        .as_ref()
        .is_some_and(|e| e.r#type() == ExtraMessageType::MsgCheckStalePeerResponse)
}

/// The answer to the check `question`, from this store's `own_peer` (the peer the
/// question was addressed to), holding `region` (`None`: no view of it) as a live peer or
/// (`tombstone`) as the record of a destroyed one.
pub fn answer(
    question: &RaftMessage,
    region: Option<&metapb::Region>,
    tombstone: bool,
) -> Option<RaftMessage> {
    let nonce = question.extra_msg.as_ref()?.nonce;
    Some(RaftMessage {
        region_id: question.region_id,
        from_peer: question.to_peer,
        to_peer: question.from_peer,
        region_epoch: region.and_then(|r| r.region_epoch),
        extra_msg: Some(ExtraMessage {
            r#type: ExtraMessageType::MsgCheckStalePeerResponse as i32,
            nonce,
            region: region.cloned(),
            is_tombstone: tombstone,
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: u64, store_id: u64) -> metapb::Peer {
        metapb::Peer { id, store_id }
    }

    fn region(conf_ver: u64, peers: Vec<metapb::Peer>) -> metapb::Region {
        metapb::Region {
            id: 1,
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver,
                version: 1,
            }),
            peers,
            ..Default::default()
        }
    }

    #[test]
    fn a_check_asks_the_other_stores_and_the_claimed_sender() {
        let mine = region(3, vec![peer(1, 1), peer(2, 2), peer(3, 3)]);
        let (check, messages) = StaleCheck::start(&mine, &peer(1, 1), Some(peer(9, 4)));
        let asked: Vec<u64> = messages
            .iter()
            .map(|m| m.to_peer.unwrap().store_id)
            .collect();
        assert_eq!(asked, vec![2, 3, 4]);
        assert!(messages.iter().all(is_check));
        assert!(check.is_running(Duration::from_millis(100)));
    }

    #[test]
    fn only_an_answer_from_an_asked_store_with_the_nonce_and_a_newer_membership_confirms() {
        let me = peer(1, 1);
        let mine = region(3, vec![me, peer(2, 2), peer(3, 3)]);
        let (check, messages) = StaleCheck::start(&mine, &me, None);
        let to_store2 = &messages[0];
        let newer = region(4, vec![peer(2, 2), peer(3, 3)]);
        let good = answer(to_store2, Some(&newer), false).unwrap();
        assert!(check.confirms(&good, &mine, &me));

        let same = answer(to_store2, Some(&mine), false).unwrap();
        assert!(!check.confirms(&same, &mine, &me), "the same membership");
        let still_in = region(5, vec![me, peer(2, 2)]);
        let kept = answer(to_store2, Some(&still_in), false).unwrap();
        assert!(
            !check.confirms(&kept, &mine, &me),
            "a newer one that keeps this peer"
        );
        let none = answer(to_store2, None, false).unwrap();
        assert!(!check.confirms(&none, &mine, &me));

        let mut wrong_nonce = good.clone();
        wrong_nonce.extra_msg.as_mut().unwrap().nonce ^= 2;
        assert!(!check.confirms(&wrong_nonce, &mine, &me));
        let mut stranger = good.clone();
        stranger.from_peer = Some(peer(7, 7));
        assert!(!check.confirms(&stranger, &mine, &me), "a store not asked");
        let tombstone = answer(to_store2, Some(&newer), true).unwrap();
        assert!(
            check.confirms(&tombstone, &mine, &me),
            "a tombstone records a membership"
        );
    }

    #[test]
    fn an_uninitialized_peer_needs_a_newer_peer_on_its_store() {
        let me = peer(8, 1);
        let unknown = metapb::Region {
            id: 1,
            ..Default::default()
        };
        let (check, messages) = StaleCheck::start(&unknown, &me, Some(peer(2, 2)));
        assert_eq!(messages.len(), 1, "only the claimed sender is known");
        let without_store1 = region(4, vec![peer(2, 2), peer(3, 3)]);
        let answer1 = answer(&messages[0], Some(&without_store1), false).unwrap();
        assert!(!check.confirms(&answer1, &unknown, &me));
        let replaced = region(5, vec![peer(2, 2), peer(3, 3), peer(11, 1)]);
        let answer2 = answer(&messages[0], Some(&replaced), false).unwrap();
        assert!(check.confirms(&answer2, &unknown, &me));
    }
}
