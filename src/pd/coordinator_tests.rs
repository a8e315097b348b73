//! Tests of the coordinator: operator lifecycle (one per region, timeouts, staleness,
//! admin operators, rate limits) and whole-cluster simulations where every answer is
//! carried out at once and reported back by the next heartbeat.

use std::collections::{BTreeMap, BTreeSet};

use tinykv_proto::eraftpb::ConfChangeType;
use tinykv_proto::metapb::{Peer, Region, StoreState};

use super::*;
use crate::pd::operator::{transfer_leader_steps, Step};
use crate::pd::test_util::{
    cluster_with_stores, heartbeat, inc_conf_ver, peer, simple_region, IdCounter,
};

fn test_config() -> SchedulerConfig {
    SchedulerConfig {
        max_store_down_time_ms: 10_000,
        max_store_disconnect_time_ms: 10_000,
        operator_timeout_ms: 5_000,
        balance_interval_ms: 0,
        ..SchedulerConfig::default()
    }
}

fn coordinator(stores: &[u64]) -> Coordinator {
    Coordinator::new(cluster_with_stores(3, stores), test_config())
}

fn add_node(answer: Option<HeartbeatAnswer>) -> Peer {
    match answer {
        Some(HeartbeatAnswer::ChangePeer {
            change_type: ConfChangeType::AddNode,
            peer,
        }) => peer,
        other => panic!("expected AddNode, got {other:?}"),
    }
}

#[test]
fn answers_the_region_operator_step_and_keeps_one_operator_per_region() {
    let mut coord = coordinator(&[1, 2, 3, 4]);
    let mut ids = IdCounter::default();
    let region = simple_region(1, &[1, 2], 1);
    let added = add_node(
        coord
            .on_region_heartbeat(heartbeat(&region), 0, &mut ids)
            .expect("accepted"),
    );
    assert_eq!(added.store_id, 3);
    assert_eq!(coord.operators().len(), 1);
    // The same heartbeat again: the same step, the same peer id.
    assert_eq!(
        add_node(
            coord
                .on_region_heartbeat(heartbeat(&region), 10, &mut ids)
                .expect("accepted")
        ),
        added
    );
    // No second operator on the region.
    let steps = transfer_leader_steps(&region, 2).expect("steps");
    let admin = Operator::new(&region, OperatorKind::Admin, "admin", steps, 10, 1_000);
    assert_eq!(coord.add_operator(admin), Err(PdError::OperatorExists(1)));

    // The peer joins (pending), then catches up: the operator finishes.
    let mut joined = inc_conf_ver(&region);
    joined.region.peers.push(added);
    joined.pending_peers = vec![added];
    assert_eq!(
        coord
            .on_region_heartbeat(heartbeat(&joined), 20, &mut ids)
            .expect("accepted"),
        None
    );
    assert_eq!(coord.operators().len(), 1);
    joined.pending_peers.clear();
    assert_eq!(
        coord
            .on_region_heartbeat(heartbeat(&joined), 30, &mut ids)
            .expect("accepted"),
        None
    );
    assert!(coord.operators().is_empty());
    let ended = coord.ended_operators();
    assert_eq!(ended.len(), 1);
    assert_eq!(
        (ended[0].outcome, ended[0].ended_at_ms),
        (OperatorOutcome::Finished, 30)
    );
}

#[test]
fn a_timed_out_operator_is_dropped_and_replaced() {
    let mut coord = coordinator(&[1, 2, 3]);
    let mut ids = IdCounter::default();
    let region = simple_region(1, &[1, 2], 1);
    let first = add_node(
        coord
            .on_region_heartbeat(heartbeat(&region), 0, &mut ids)
            .expect("accepted"),
    );
    // Nothing happened for longer than the timeout: a fresh operator, a fresh peer id.
    let second = add_node(
        coord
            .on_region_heartbeat(heartbeat(&region), 5_001, &mut ids)
            .expect("accepted"),
    );
    assert_ne!(first.id, second.id);
    assert_eq!(
        coord.ended_operators()[0].outcome,
        OperatorOutcome::TimedOut
    );
    assert_eq!(coord.operator(1).map(Operator::created_at_ms), Some(5_001));
    // A region that stops heartbeating has its operator swept by the periodic work.
    coord.schedule(20_000, &mut ids);
    assert!(coord.operator(1).is_none());
}

#[test]
fn a_stale_operator_is_dropped() {
    let mut coord = coordinator(&[1, 2, 3, 4]);
    let mut ids = IdCounter::default();
    let region = simple_region(1, &[1, 2], 1);
    let planned = add_node(
        coord
            .on_region_heartbeat(heartbeat(&region), 0, &mut ids)
            .expect("accepted"),
    );
    assert_eq!(planned.store_id, 3);
    // Someone else added a peer on store 4 meanwhile.
    let mut changed = inc_conf_ver(&region);
    changed.region.peers.push(peer(444, 4));
    assert_eq!(
        coord
            .on_region_heartbeat(heartbeat(&changed), 10, &mut ids)
            .expect("accepted"),
        None
    );
    let ended = coord.ended_operators();
    assert_eq!(ended[0].outcome, OperatorOutcome::Stale);
    assert!(
        ended[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("conf_ver")),
        "{:?}",
        ended[0].reason
    );
    assert!(
        coord.operator(1).is_none(),
        "three replicas now: nothing to do"
    );
}

#[test]
fn a_refused_heartbeat_changes_nothing() {
    let mut coord = coordinator(&[1, 2, 3]);
    let mut ids = IdCounter::default();
    let region = simple_region(1, &[1, 2, 3], 1);
    let newer = inc_conf_ver(&region);
    assert_eq!(
        coord.on_region_heartbeat(heartbeat(&newer), 0, &mut ids),
        Ok(None)
    );
    let err = coord
        .on_region_heartbeat(heartbeat(&region), 1, &mut ids)
        .expect_err("stale");
    assert!(
        matches!(err, PdError::StaleRegion { region_id: 1, .. }),
        "{err}"
    );
    assert_eq!(coord.cluster().region(1), Some(&newer));
}

#[test]
fn admin_operators_are_dispatched_and_can_be_cancelled() {
    let mut coord = coordinator(&[1, 2, 3]);
    let mut ids = IdCounter::default();
    let region = simple_region(1, &[1, 2, 3], 1);
    coord
        .on_region_heartbeat(heartbeat(&region), 0, &mut ids)
        .expect("accepted");
    let steps = transfer_leader_steps(&region, 3).expect("steps");
    let unknown = {
        let mut other = region.clone();
        other.region.id = 9;
        Operator::new(
            &other,
            OperatorKind::Admin,
            "admin",
            steps.clone(),
            0,
            1_000,
        )
    };
    assert_eq!(coord.add_operator(unknown), Err(PdError::RegionNotFound(9)));
    coord
        .add_operator(Operator::new(
            &region,
            OperatorKind::Admin,
            "admin",
            steps,
            0,
            1_000,
        ))
        .expect("added");
    let answer = coord
        .on_region_heartbeat(heartbeat(&region), 1, &mut ids)
        .expect("accepted");
    assert_eq!(
        answer,
        Some(HeartbeatAnswer::TransferLeader { peer: peer(103, 3) })
    );
    assert!(coord.cancel_operator(1, 2).is_some());
    assert_eq!(
        coord.ended_operators()[0].outcome,
        OperatorOutcome::Cancelled
    );
    assert_eq!(
        coord
            .on_region_heartbeat(heartbeat(&region), 3, &mut ids)
            .expect("accepted"),
        None
    );
}

#[test]
fn an_operator_whose_region_disappears_is_dropped() {
    let mut coord = coordinator(&[1, 2, 3, 4]);
    let mut ids = IdCounter::default();
    let region = simple_region(1, &[1, 2], 1);
    coord
        .on_region_heartbeat(heartbeat(&region), 0, &mut ids)
        .expect("accepted");
    // A newer region covering region 1's range replaces it.
    let mut wider = simple_region(2, &[1, 2, 3], 1);
    wider.region.start_key = Vec::new();
    wider.region.end_key = Vec::new();
    wider.region.region_epoch = Some(tinykv_proto::metapb::RegionEpoch {
        conf_ver: 1,
        version: 5,
    });
    coord
        .on_region_heartbeat(heartbeat(&wider), 1, &mut ids)
        .expect("accepted");
    assert!(coord.cluster().region(1).is_none());
    coord.schedule(2, &mut ids);
    assert!(coord.operator(1).is_none());
    assert_eq!(
        coord.ended_operators()[0].outcome,
        OperatorOutcome::RegionGone
    );
}

#[test]
fn the_replica_checker_comes_before_the_balancers() {
    let mut coord = coordinator(&[1, 2, 3, 4]);
    let mut ids = IdCounter::default();
    for region_id in 2..=10 {
        coord
            .on_region_heartbeat(
                heartbeat(&simple_region(region_id, &[1, 2, 3], 10)),
                0,
                &mut ids,
            )
            .expect("ok");
    }
    // Balance operators were made meanwhile (store 4 is empty); region 1 lacks a replica.
    assert!(coord
        .operators()
        .iter()
        .any(|op| op.kind == OperatorKind::Balance));
    let answer = coord
        .on_region_heartbeat(heartbeat(&simple_region(1, &[1, 2], 10)), 0, &mut ids)
        .expect("ok");
    assert!(answer.is_some());
    assert_eq!(
        coord.operator(1).map(Operator::kind),
        Some(OperatorKind::Replica)
    );
}

#[test]
fn balance_operators_are_rate_limited() {
    let mut coord = coordinator(&[1, 2, 3, 4]);
    coord.set_config(SchedulerConfig {
        max_balance_operators: 1,
        balance_interval_ms: 1_000,
        ..test_config()
    });
    let mut ids = IdCounter::default();
    for region_id in 1..=10 {
        let region = simple_region(region_id, &[1, 2, 3], 10);
        coord
            .cluster_mut()
            .handle_region_heartbeat(heartbeat(&region))
            .expect("accepted");
    }
    assert_eq!(coord.schedule(0, &mut ids).len(), 1);
    assert!(coord.schedule(1, &mut ids).is_empty());
    let views = coord.operators();
    assert_eq!(views.len(), 1);
    assert_eq!(
        (views[0].kind, views[0].desc),
        (OperatorKind::Balance, "balance-region")
    );
    // Heartbeats run the balancers at most once per interval.
    coord.set_config(SchedulerConfig {
        max_balance_operators: 4,
        balance_interval_ms: 1_000,
        ..test_config()
    });
    let region = coord.cluster().region(10).cloned().expect("region");
    coord
        .on_region_heartbeat(heartbeat(&region), 500, &mut ids)
        .expect("accepted");
    assert_eq!(coord.operators().len(), 1);
    coord
        .on_region_heartbeat(heartbeat(&region), 1_001, &mut ids)
        .expect("accepted");
    assert!(coord.operators().len() > 1);
}

#[test]
fn operator_views_serialize() {
    let mut coord = coordinator(&[1, 2, 3]);
    let mut ids = IdCounter::default();
    coord
        .on_region_heartbeat(heartbeat(&simple_region(1, &[1, 2], 1)), 0, &mut ids)
        .expect("accepted");
    let json = serde_json::to_value(coord.operators()).expect("serialize");
    assert_eq!(json[0]["region_id"], 1);
    assert_eq!(json[0]["kind"], "replica");
    assert_eq!(json[0]["desc"], "make-up-replica");
    assert_eq!(json[0]["steps"][0]["type"], "add_peer");
    coord.cancel_operator(1, 1);
    let json = serde_json::to_value(coord.ended_operators()).expect("serialize");
    assert_eq!(json[0]["outcome"], "cancelled");
}

// ---- simulation ----

/// A cluster whose regions carry out every answer at once.
struct Sim {
    coord: Coordinator,
    regions: BTreeMap<u64, (Region, Peer)>,
    alive: BTreeSet<u64>,
    now: u64,
    ids: IdCounter,
}

impl Sim {
    /// Five stores and 20 regions of 3 peers on stores 1-3, all led from store 1, their
    /// sizes not measured yet.
    fn five_stores_twenty_regions() -> Sim {
        let stores = [1, 2, 3, 4, 5];
        let mut sim = Sim {
            coord: coordinator(&stores),
            regions: BTreeMap::new(),
            alive: stores.into_iter().collect(),
            now: 0,
            ids: IdCounter::default(),
        };
        for id in 1..=20 {
            let mut info = simple_region(id, &[1, 2, 3], 0);
            info.approximate_size = None;
            let leader = info.leader.expect("leader");
            sim.regions.insert(id, (info.region, leader));
        }
        sim
    }

    /// The region's heartbeat, from its leader; a leader on a dead store is replaced by
    /// the first live peer, if a majority lives.
    fn heartbeat(&mut self, region_id: u64) -> Option<RegionHeartbeat> {
        let (region, leader) = self.regions.get_mut(&region_id)?;
        if !self.alive.contains(&leader.store_id) {
            let live: Vec<Peer> = region
                .peers
                .iter()
                .filter(|p| self.alive.contains(&p.store_id))
                .copied()
                .collect();
            if live.len() * 2 <= region.peers.len() {
                return None;
            }
            *leader = live[0];
        }
        Some(RegionHeartbeat {
            region: region.clone(),
            leader: Some(*leader),
            pending_peers: Vec::new(),
            approximate_size: None,
        })
    }

    fn apply(&mut self, region_id: u64, answer: HeartbeatAnswer) {
        let (region, leader) = self.regions.get_mut(&region_id).expect("region");
        let epoch = region.region_epoch.as_mut().expect("epoch");
        match answer {
            HeartbeatAnswer::ChangePeer {
                change_type: ConfChangeType::AddNode,
                peer,
            } => {
                assert!(
                    self.alive.contains(&peer.store_id),
                    "peer added on dead store {}",
                    peer.store_id
                );
                assert!(
                    region.peers.iter().all(|p| p.store_id != peer.store_id),
                    "two peers on a store"
                );
                region.peers.push(peer);
                epoch.conf_ver += 1;
            }
            HeartbeatAnswer::ChangePeer { peer, .. } => {
                assert_ne!(peer, *leader, "the leader is never removed");
                region.peers.retain(|p| *p != peer);
                epoch.conf_ver += 1;
            }
            HeartbeatAnswer::TransferLeader { peer } => {
                assert!(region.peers.contains(&peer) && self.alive.contains(&peer.store_id));
                *leader = peer;
            }
            HeartbeatAnswer::Merge { target } => {
                panic!("region {region_id} told to merge into {target}: the simulation's regions are never small and old enough")
            }
        }
    }

    /// One round: every live store heartbeats, then every region, carrying out answers
    /// until it gets none. Returns whether any answer came.
    fn round(&mut self) -> bool {
        self.now += 1_000;
        for store_id in self.alive.clone() {
            let report = StoreHeartbeat {
                store_id,
                ..Default::default()
            };
            self.coord
                .on_store_heartbeat(report, self.now)
                .expect("store heartbeat");
        }
        let mut answered = false;
        for region_id in self.regions.keys().copied().collect::<Vec<_>>() {
            for _ in 0..8 {
                let Some(heartbeat) = self.heartbeat(region_id) else {
                    break;
                };
                let answer = self
                    .coord
                    .on_region_heartbeat(heartbeat, self.now, &mut self.ids)
                    .expect("accepted");
                let Some(answer) = answer else { break };
                self.apply(region_id, answer);
                answered = true;
            }
        }
        answered
    }

    /// Runs rounds until one brings no answer and no operator is left.
    fn run_until_quiet(&mut self) {
        for _ in 0..500 {
            if !self.round() && self.coord.operators().is_empty() {
                self.assert_pd_agrees();
                return;
            }
        }
        panic!("no quiet after 500 rounds: {:?}", self.coord.operators());
    }

    fn assert_pd_agrees(&self) {
        for (id, (region, leader)) in &self.regions {
            let known = self.coord.cluster().region(*id).expect("known region");
            assert_eq!((&known.region, known.leader), (region, Some(*leader)));
        }
        self.coord.cluster().assert_consistent();
        let ended = &self.coord.operator_counts().ended;
        assert!(
            ended.keys().all(|o| *o == OperatorOutcome::Finished),
            "{ended:?}"
        );
    }

    fn assert_replicated_on(&self, stores: &[u64]) {
        for (id, (region, _)) in &self.regions {
            let on: BTreeSet<u64> = region.peers.iter().map(|p| p.store_id).collect();
            assert_eq!(
                (on.len(), region.peers.len()),
                (3, 3),
                "region {id}: {:?}",
                region.peers
            );
            assert!(
                on.iter().all(|s| stores.contains(s)),
                "region {id} on {on:?}"
            );
        }
    }

    /// Region and leader counts of `stores`.
    fn counts(&self, stores: &[u64]) -> (Vec<usize>, Vec<usize>) {
        let stats: Vec<_> = stores
            .iter()
            .map(|s| self.coord.cluster().store_region_stats(*s))
            .collect();
        (
            stats.iter().map(|s| s.region_count).collect(),
            stats.iter().map(|s| s.leader_count).collect(),
        )
    }

    fn assert_balanced(&self, stores: &[u64]) {
        let (regions, leaders) = self.counts(stores);
        let mean = regions.iter().sum::<usize>() as f64 / stores.len() as f64;
        assert!(
            regions.iter().all(|c| (*c as f64 - mean).abs() <= 1.0),
            "regions {regions:?}, mean {mean}"
        );
        let (min, max) = (leaders.iter().min(), leaders.iter().max());
        assert!(
            max.zip(min).is_some_and(|(max, min)| max - min <= 2),
            "leaders {leaders:?}"
        );
    }
}

#[test]
fn simulation_balances_regions_onto_new_stores() {
    let mut sim = Sim::five_stores_twenty_regions();
    sim.run_until_quiet();
    sim.assert_replicated_on(&[1, 2, 3, 4, 5]);
    sim.assert_balanced(&[1, 2, 3, 4, 5]);
    let created = &sim.coord.operator_counts().created;
    assert!(
        created.get("balance-region").is_some_and(|n| *n >= 20),
        "{created:?}"
    );
    assert!(created.contains_key("balance-leader"), "{created:?}");
}

#[test]
fn simulation_replaces_a_dead_store() {
    let mut sim = Sim::five_stores_twenty_regions();
    sim.run_until_quiet();
    // Store 5 dies: no more heartbeats from it; past the down time its peers move.
    sim.alive.remove(&5);
    sim.now += test_config().max_store_down_time_ms + 1;
    sim.run_until_quiet();
    sim.assert_replicated_on(&[1, 2, 3, 4]);
    sim.assert_balanced(&[1, 2, 3, 4]);
    assert_eq!(sim.coord.cluster().store_region_stats(5).region_count, 0);
}

#[test]
fn simulation_drains_an_offline_store() {
    let mut sim = Sim::five_stores_twenty_regions();
    sim.run_until_quiet();
    sim.coord
        .cluster_mut()
        .set_store_state(2, StoreState::Offline)
        .expect("offline");
    sim.run_until_quiet();
    sim.assert_replicated_on(&[1, 3, 4, 5]);
    sim.assert_balanced(&[1, 3, 4, 5]);
    assert!(sim
        .coord
        .operator_counts()
        .created
        .contains_key("replace-offline-replica"));
    assert_eq!(sim.coord.cluster_mut().finish_offline_stores(), vec![2]);
    assert_eq!(
        sim.coord.cluster().store(2).map(|s| s.state()),
        Some(StoreState::Tombstone)
    );
}

#[test]
fn simulated_steps_follow_add_before_remove() {
    // Every move in the first simulation added its new peer before removing the old one.
    let mut sim = Sim::five_stores_twenty_regions();
    sim.run_until_quiet();
    for ended in sim.coord.ended_operators() {
        let steps = &ended.operator.steps;
        if let Some(remove) = steps
            .iter()
            .position(|s| matches!(s, Step::RemovePeer { .. }))
        {
            if let Some(add) = steps.iter().position(|s| matches!(s, Step::AddPeer { .. })) {
                assert!(add < remove, "{steps:?}");
            }
        }
    }
}

#[test]
fn an_operator_leading_to_a_down_store_is_dropped_for_the_repair() {
    let mut coord = coordinator(&[1, 2, 3, 4]);
    let mut ids = IdCounter::default();
    let region = simple_region(1, &[1, 2, 3], 1);
    coord
        .on_region_heartbeat(heartbeat(&region), 0, &mut ids)
        .expect("accepted");
    let steps = transfer_leader_steps(&region, 3).expect("steps");
    coord
        .add_operator(Operator::new(
            &region,
            OperatorKind::Admin,
            "admin",
            steps,
            0,
            60_000,
        ))
        .expect("added");

    // Store 3 falls silent for longer than the down time; the others keep reporting.
    let now = test_config().max_store_down_time_ms + 500;
    for store_id in [1, 2, 4] {
        coord
            .on_store_heartbeat(
                StoreHeartbeat {
                    store_id,
                    ..Default::default()
                },
                now,
            )
            .expect("accepted");
    }
    let answer = coord
        .on_region_heartbeat(heartbeat(&region), now + 1, &mut ids)
        .expect("accepted");
    let ended = &coord.ended_operators()[0];
    assert_eq!(ended.outcome, OperatorOutcome::Stale);
    assert!(
        ended
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("store 3"),
        "{ended:?}"
    );
    // Instead of waiting for the transfer's timeout, the region is repaired at once.
    assert_eq!(add_node(answer).store_id, 4);
    assert_eq!(
        coord.operator(1).map(Operator::desc),
        Some("replace-down-replica")
    );
}
