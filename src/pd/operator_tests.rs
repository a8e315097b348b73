//! Tests of operators: step builders, progression through a region's heartbeats,
//! staleness and timeouts.

use tinykv_proto::eraftpb::ConfChangeType;

use super::*;
use crate::pd::test_util::{inc_version, peer, region, IdCounter};

/// Region 1 on stores 1, 2, 3 (peers 11, 12, 13), led by store 1, epoch (3, 1).
fn region_123() -> RegionInfo {
    region(1, b"", b"", &[(11, 1), (12, 2), (13, 3)], Some(1), (3, 1))
}

/// `info` with a peer added (conf_ver + 1), pending or not.
fn with_added(info: &RegionInfo, id: u64, store_id: u64, pending: bool) -> RegionInfo {
    let mut next = info.clone();
    next.region.peers.push(peer(id, store_id));
    next.region.region_epoch.as_mut().expect("epoch").conf_ver += 1;
    if pending {
        next.pending_peers.push(peer(id, store_id));
    }
    next
}

/// `info` with the peer on `store_id` removed (conf_ver + 1).
fn with_removed(info: &RegionInfo, store_id: u64) -> RegionInfo {
    let mut next = info.clone();
    next.region.peers.retain(|p| p.store_id != store_id);
    next.pending_peers.retain(|p| p.store_id != store_id);
    next.region.region_epoch.as_mut().expect("epoch").conf_ver += 1;
    next
}

fn with_leader(info: &RegionInfo, store_id: u64) -> RegionInfo {
    let mut next = info.clone();
    next.leader = next.peer_on_store(store_id).copied();
    next
}

fn op(region: &RegionInfo, steps: Vec<Step>) -> Operator {
    Operator::new(region, OperatorKind::Balance, "test", steps, 1_000, 60_000)
}

#[test]
fn move_peer_adds_before_removing_and_moves_the_leader_first() {
    let r = region_123();
    let mut ids = IdCounter::default();
    let follower = move_peer_steps(&r, 3, 4, &mut ids).expect("move follower");
    assert_eq!(
        follower,
        vec![
            Step::AddPeer {
                store_id: 4,
                peer_id: 1001
            },
            Step::RemovePeer { store_id: 3 }
        ]
    );
    let leader = move_peer_steps(&r, 1, 4, &mut ids).expect("move leader");
    assert_eq!(
        leader,
        vec![
            Step::AddPeer {
                store_id: 4,
                peer_id: 1002
            },
            Step::TransferLeader {
                from_store: 1,
                to_store: 4
            },
            Step::RemovePeer { store_id: 1 },
        ]
    );
}

#[test]
fn step_builders_refuse_what_does_not_fit() {
    let r = region_123();
    let mut ids = IdCounter::default();
    for result in [
        move_peer_steps(&r, 3, 2, &mut ids),
        move_peer_steps(&r, 4, 5, &mut ids),
        add_peer_steps(&r, 1, &mut ids),
        remove_peer_steps(&r, 4),
        remove_peer_steps(&r, 1),
        transfer_leader_steps(&r, 1),
        transfer_leader_steps(&r, 4),
    ] {
        assert!(
            matches!(result, Err(PdError::InvalidOperator { region_id: 1, .. })),
            "{result:?}"
        );
    }
    let mut leaderless = r.clone();
    leaderless.leader = None;
    assert!(transfer_leader_steps(&leaderless, 2).is_err());
    assert_eq!(
        transfer_leader_steps(&r, 2),
        Ok(vec![Step::TransferLeader {
            from_store: 1,
            to_store: 2
        }])
    );
    assert_eq!(
        remove_peer_steps(&r, 3),
        Ok(vec![Step::RemovePeer { store_id: 3 }])
    );
}

#[test]
fn add_then_remove_progresses_with_the_region() {
    let r0 = region_123();
    let mut ids = IdCounter::default();
    let mut op = op(&r0, move_peer_steps(&r0, 3, 4, &mut ids).expect("steps"));
    let add = Step::AddPeer {
        store_id: 4,
        peer_id: 1001,
    };

    // First the leader is told to add the peer.
    assert_eq!(op.check(&r0), OperatorProgress::Step(add));
    assert_eq!(
        add.to_answer(&r0),
        Some(HeartbeatAnswer::ChangePeer {
            change_type: ConfChangeType::AddNode,
            peer: peer(1001, 4)
        })
    );
    // The peer is in but catching up: still the add step, nothing to send.
    let r1 = with_added(&r0, 1001, 4, true);
    assert_eq!(op.check(&r1), OperatorProgress::Step(add));
    assert_eq!(add.to_answer(&r1), None);
    // Caught up: now remove the old peer.
    let r2 = with_added(&r0, 1001, 4, false);
    let remove = Step::RemovePeer { store_id: 3 };
    assert_eq!(op.check(&r2), OperatorProgress::Step(remove));
    assert_eq!(op.current_step(), 1);
    assert_eq!(
        remove.to_answer(&r2),
        Some(HeartbeatAnswer::ChangePeer {
            change_type: ConfChangeType::RemoveNode,
            peer: peer(13, 3)
        })
    );
    let r3 = with_removed(&r2, 3);
    assert_eq!(op.check(&r3), OperatorProgress::Finished);
    assert_eq!(op.current_step(), 2);
}

#[test]
fn moving_the_leader_transfers_leadership_before_removing() {
    let r0 = region_123();
    let mut ids = IdCounter::default();
    let mut op = op(&r0, move_peer_steps(&r0, 1, 4, &mut ids).expect("steps"));
    let r1 = with_added(&r0, 1001, 4, false);
    let transfer = Step::TransferLeader {
        from_store: 1,
        to_store: 4,
    };
    assert_eq!(op.check(&r1), OperatorProgress::Step(transfer));
    assert_eq!(
        transfer.to_answer(&r1),
        Some(HeartbeatAnswer::TransferLeader {
            peer: peer(1001, 4)
        })
    );
    let r2 = with_leader(&r1, 4);
    assert_eq!(
        op.check(&r2),
        OperatorProgress::Step(Step::RemovePeer { store_id: 1 })
    );
    assert_eq!(op.check(&with_removed(&r2, 1)), OperatorProgress::Finished);
}

#[test]
fn a_heartbeat_showing_several_steps_done_skips_them() {
    let r0 = region_123();
    let mut ids = IdCounter::default();
    let mut op = op(&r0, move_peer_steps(&r0, 1, 4, &mut ids).expect("steps"));
    let done = with_removed(&with_leader(&with_added(&r0, 1001, 4, false), 4), 1);
    assert_eq!(op.check(&done), OperatorProgress::Finished);
}

#[test]
fn membership_changed_by_someone_else_makes_it_stale() {
    let r0 = region_123();
    let mut ids = IdCounter::default();
    let mut op = op(&r0, move_peer_steps(&r0, 3, 4, &mut ids).expect("steps"));
    // Someone added a peer on store 5 (conf_ver + 1) that the operator did not plan.
    let r1 = with_added(&r0, 55, 5, false);
    assert!(matches!(op.check(&r1), OperatorProgress::Stale { .. }));

    // Its own add (conf_ver + 1) is fine; a further change by someone else is not.
    let mut op = self::op(&r0, move_peer_steps(&r0, 3, 4, &mut ids).expect("steps"));
    let r2 = with_added(&r0, 1002, 4, true);
    assert_eq!(
        op.check(&r2),
        OperatorProgress::Step(Step::AddPeer {
            store_id: 4,
            peer_id: 1002
        })
    );
    let r3 = with_removed(&r2, 2);
    assert!(matches!(op.check(&r3), OperatorProgress::Stale { .. }));
}

#[test]
fn a_split_does_not_make_it_stale() {
    let r0 = region_123();
    let mut ids = IdCounter::default();
    let mut op = op(&r0, move_peer_steps(&r0, 3, 4, &mut ids).expect("steps"));
    let mut split = inc_version(&r0);
    split.region.end_key = b"m".to_vec();
    assert_eq!(
        op.check(&split),
        OperatorProgress::Step(Step::AddPeer {
            store_id: 4,
            peer_id: 1001
        })
    );
}

#[test]
fn steps_that_no_longer_fit_make_it_stale() {
    let r0 = region_123();
    // The target store got another peer of the region meanwhile (the conf_ver bump is
    // covered by the add, so only the peer id tells).
    let mut op1 = op(
        &r0,
        vec![Step::AddPeer {
            store_id: 4,
            peer_id: 1001,
        }],
    );
    let other = with_added(&r0, 77, 4, false);
    let progress = op1.check(&other);
    assert!(
        matches!(&progress, OperatorProgress::Stale { reason } if reason.contains("another peer")),
        "{progress:?}"
    );

    // The peer to remove became the leader.
    let mut op2 = op(&r0, vec![Step::RemovePeer { store_id: 3 }]);
    assert!(matches!(
        op2.check(&with_leader(&r0, 3)),
        OperatorProgress::Stale { .. }
    ));

    // The leadership target disappeared (conf change by someone else, stale either way).
    let mut op3 = op(
        &r0,
        vec![Step::TransferLeader {
            from_store: 1,
            to_store: 3,
        }],
    );
    assert!(matches!(
        op3.check(&with_removed(&r0, 3)),
        OperatorProgress::Stale { .. }
    ));

    // Another region's heartbeat never advances it.
    let mut other_region = r0.clone();
    other_region.region.id = 2;
    assert!(matches!(
        op3.check(&other_region),
        OperatorProgress::Stale { .. }
    ));
}

#[test]
fn a_pending_transfer_target_waits() {
    let mut r = region_123();
    r.pending_peers = vec![peer(12, 2)];
    let step = Step::TransferLeader {
        from_store: 1,
        to_store: 2,
    };
    let mut op = op(&r, vec![step]);
    assert_eq!(op.check(&r), OperatorProgress::Step(step));
    assert_eq!(step.to_answer(&r), None);
}

#[test]
fn times_out_after_its_timeout() {
    let r = region_123();
    let op = op(&r, vec![Step::RemovePeer { store_id: 3 }]);
    assert!(!op.is_timed_out(1_000));
    assert!(!op.is_timed_out(61_000));
    assert!(op.is_timed_out(61_001));
}

#[test]
fn steps_to_come_skip_what_already_took_effect() {
    let r0 = region_123();
    let mut ids = IdCounter::default();
    let op = op(&r0, move_peer_steps(&r0, 1, 4, &mut ids).expect("steps"));
    assert_eq!(op.steps_to_come(&r0).count(), 3);
    let r1 = with_added(&r0, 1001, 4, true);
    let to_come: Vec<&Step> = op.steps_to_come(&r1).collect();
    assert_eq!(
        to_come,
        vec![
            &Step::TransferLeader {
                from_store: 1,
                to_store: 4
            },
            &Step::RemovePeer { store_id: 1 }
        ]
    );
}

#[test]
fn view_serializes_for_the_admin_api() {
    let r0 = region_123();
    let op = op(
        &r0,
        vec![
            Step::AddPeer {
                store_id: 4,
                peer_id: 9,
            },
            Step::RemovePeer { store_id: 3 },
        ],
    );
    let json = serde_json::to_value(op.view()).expect("serialize");
    assert_eq!(json["region_id"], 1);
    assert_eq!(json["kind"], "balance");
    assert_eq!(json["epoch_conf_ver"], 3);
    assert_eq!(json["steps"][0]["type"], "add_peer");
    assert_eq!(json["steps"][0]["peer_id"], 9);
    assert_eq!(json["steps"][1]["type"], "remove_peer");
    assert_eq!(json["current_step"], 0);
}

#[test]
fn closures_allocate_ids() {
    let mut next = 40;
    let mut alloc = || {
        next += 1;
        next
    };
    let r = region_123();
    assert_eq!(
        add_peer_steps(&r, 4, &mut alloc),
        Ok(vec![Step::AddPeer {
            store_id: 4,
            peer_id: 41
        }])
    );
}
