//! Operators: the multi-step plans the PD carries out on one region.
//!
//! An [`Operator`] is a short sequence of [`Step`]s (add a peer, remove a peer, transfer
//! the leadership) that the region's leader executes one at a time. The PD never acts
//! itself: on each heartbeat of the region it looks at the region as reported
//! ([`Operator::check`]), moves past the steps the region shows as done, and answers the
//! leader with what to do next ([`Step::to_answer`] gives a [`HeartbeatAnswer`]).
//!
//! Moving a peer is "add the new one, then remove the old one" so the region never has
//! fewer replicas than before; if the old peer leads, leadership goes to the new peer
//! before the old one is removed. A step counts as done only when the region shows it:
//! an added peer must also have caught up (not pending) before the next step runs.
//!
//! An operator goes stale when the region's membership changed in a way the operator did
//! not cause (its `conf_ver` moved further than the operator's own finished steps
//! explain), or when its current step no longer makes sense (the target store now holds
//! another peer of the region, the peer to remove became the leader, the leader's target
//! peer disappeared). A split alone (a `version` change) does not make it stale: the
//! peers of a region do not change when it splits.

use serde::Serialize;
use tinykv_proto::eraftpb::ConfChangeType;
use tinykv_proto::metapb::{Peer, RegionEpoch};

use super::region::RegionInfo;
use super::PdError;

/// A source of fresh, never reused peer ids.
pub trait AllocId {
    /// Returns a new unique id.
    fn alloc_id(&mut self) -> u64;
}

impl<F: FnMut() -> u64> AllocId for F {
    fn alloc_id(&mut self) -> u64 {
        self()
    }
}

/// Why an operator was created; balance operators are rate limited as a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorKind {
    /// Restores the replica count or replaces a peer on a down or tombstone store.
    Replica,
    /// Moves a peer off a store being drained (Offline).
    Offline,
    /// Evens out region sizes or leader counts between stores.
    Balance,
    /// Requested by an operator through the admin API.
    Admin,
    /// Merges a small region into a small neighbour.
    Merge,
}

/// One change to a region's membership or leadership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Step {
    /// Add peer `peer_id` on `store_id`; done once the peer is in the region and caught up.
    AddPeer {
        /// The store receiving the new peer.
        store_id: u64,
        /// The new peer's id, allocated when the operator was created.
        peer_id: u64,
    },
    /// Remove the region's peer on `store_id`; done once it is gone.
    RemovePeer {
        /// The store losing its peer.
        store_id: u64,
    },
    /// Move the leadership from `from_store` to the region's peer on `to_store`; done once
    /// the leader is on `to_store`.
    TransferLeader {
        /// The store of the current leader.
        from_store: u64,
        /// The store of the peer that should lead.
        to_store: u64,
    },
    /// Merge the region into its neighbour `target` (peers on the same stores). The
    /// region freezes (PrepareMerge bumps its version and conf_ver) and then disappears
    /// when the target absorbs it, which ends the operator; a rollback leaves it to time
    /// out.
    Merge {
        /// The neighbour to merge into.
        target: u64,
        /// The region's version when the merge was planned.
        version: u64,
    },
}

impl Step {
    /// Whether the region shows the step as done.
    pub fn is_finished(&self, region: &RegionInfo) -> bool {
        match *self {
            Step::AddPeer { store_id, peer_id } => region
                .peer_on_store(store_id)
                .is_some_and(|p| p.id == peer_id && !region.is_pending(p.id)),
            Step::RemovePeer { store_id } => region.peer_on_store(store_id).is_none(),
            Step::TransferLeader { to_store, .. } => region.leader_store_id() == Some(to_store),
            Step::Merge { .. } => false,
        }
    }

    /// Whether the step's effect shows in the region, even if not finished (an added peer
    /// that is still pending has taken effect, a merge source is frozen).
    pub fn has_taken_effect(&self, region: &RegionInfo) -> bool {
        match *self {
            Step::AddPeer { store_id, peer_id } => region
                .peer_on_store(store_id)
                .is_some_and(|p| p.id == peer_id),
            Step::RemovePeer { store_id } => region.peer_on_store(store_id).is_none(),
            Step::TransferLeader { to_store, .. } => region.leader_store_id() == Some(to_store),
            Step::Merge { version, .. } => region.epoch().version > version,
        }
    }

    /// Whether the step bumps `conf_ver` by one (a membership change, or a merge's
    /// PrepareMerge).
    pub fn changes_membership(&self) -> bool {
        !matches!(self, Step::TransferLeader { .. })
    }

    /// Why the step cannot proceed on the region as it is, if it cannot.
    fn obstacle(&self, region: &RegionInfo) -> Option<String> {
        match *self {
            Step::AddPeer { store_id, peer_id } => match region.peer_on_store(store_id) {
                Some(p) if p.id != peer_id => Some(format!(
                    "store {store_id} already holds another peer {}",
                    p.id
                )),
                _ => None,
            },
            Step::RemovePeer { store_id } => (region.leader_store_id() == Some(store_id))
                .then(|| format!("the peer to remove, on store {store_id}, is now the leader")),
            Step::TransferLeader { to_store, .. } => region
                .peer_on_store(to_store)
                .is_none()
                .then(|| format!("store {to_store} no longer holds a peer to lead")),
            Step::Merge { .. } => None,
        }
    }

    /// What the region's leader should do for this step now, or `None` if there is
    /// nothing to send (an added peer still catching up, a target peer still pending).
    pub fn to_answer(&self, region: &RegionInfo) -> Option<HeartbeatAnswer> {
        match *self {
            Step::AddPeer { store_id, peer_id } => region
                .peer_on_store(store_id)
                .is_none()
                .then_some(HeartbeatAnswer::ChangePeer {
                    change_type: ConfChangeType::AddNode,
                    peer: Peer {
                        id: peer_id,
                        store_id,
                    },
                }),
            Step::RemovePeer { store_id } => {
                region
                    .peer_on_store(store_id)
                    .map(|peer| HeartbeatAnswer::ChangePeer {
                        change_type: ConfChangeType::RemoveNode,
                        peer: *peer,
                    })
            }
            Step::TransferLeader { to_store, .. } => region
                .peer_on_store(to_store)
                .filter(|peer| !region.is_pending(peer.id))
                .map(|peer| HeartbeatAnswer::TransferLeader { peer: *peer }),
            Step::Merge { target, .. } => {
                (!self.has_taken_effect(region)).then_some(HeartbeatAnswer::Merge { target })
            }
        }
    }
}

/// What the PD tells a region's leader to do, in answer to its heartbeat. It applies to
/// the region and epoch of that heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatAnswer {
    /// Propose a membership change: add `peer` (AddNode) or remove it (RemoveNode).
    ChangePeer {
        /// AddNode or RemoveNode.
        change_type: ConfChangeType,
        /// The peer to add or remove (id and store).
        peer: Peer,
    },
    /// Hand the leadership to `peer`.
    TransferLeader {
        /// The peer that should lead.
        peer: Peer,
    },
    /// Merge the region into its neighbour `target` (whose peers are on the same
    /// stores; the leader's store holds one and knows the target's range and epoch).
    Merge {
        /// The neighbour to merge into.
        target: u64,
    },
}

/// Where an operator stands, given the latest view of its region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorProgress {
    /// This step is the next one to carry out.
    Step(Step),
    /// Every step is done.
    Finished,
    /// The region changed in a way the operator did not plan for; it must be dropped.
    Stale {
        /// What changed.
        reason: String,
    },
}

/// A plan of steps for one region.
#[derive(Debug, Clone, PartialEq)]
pub struct Operator {
    region_id: u64,
    region_epoch: RegionEpoch,
    kind: OperatorKind,
    desc: &'static str,
    steps: Vec<Step>,
    current_step: usize,
    created_at_ms: u64,
    timeout_ms: u64,
}

/// An operator as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperatorView {
    /// The region it acts on.
    pub region_id: u64,
    /// Why it exists.
    pub kind: OperatorKind,
    /// Which checker or scheduler made it (e.g. `balance-region`).
    pub desc: &'static str,
    /// The region's epoch when it was created: conf_ver.
    pub epoch_conf_ver: u64,
    /// The region's epoch when it was created: version.
    pub epoch_version: u64,
    /// All its steps.
    pub steps: Vec<Step>,
    /// The index of the step in progress (`steps.len()` once all are done).
    pub current_step: usize,
    /// When it was created.
    pub created_at_ms: u64,
    /// How long it may take in all.
    pub timeout_ms: u64,
}

impl Operator {
    /// An operator carrying out `steps` on `region` (as it is now), created at
    /// `created_at_ms`, dropped if not finished within `timeout_ms`.
    pub fn new(
        region: &RegionInfo,
        kind: OperatorKind,
        desc: &'static str,
        steps: Vec<Step>,
        created_at_ms: u64,
        timeout_ms: u64,
    ) -> Operator {
        Operator {
            region_id: region.id(),
            region_epoch: region.epoch(),
            kind,
            desc,
            steps,
            current_step: 0,
            created_at_ms,
            timeout_ms,
        }
    }

    /// The region it acts on.
    pub fn region_id(&self) -> u64 {
        self.region_id
    }

    /// The region's epoch when the operator was created.
    pub fn region_epoch(&self) -> RegionEpoch {
        self.region_epoch
    }

    /// Why it exists.
    pub fn kind(&self) -> OperatorKind {
        self.kind
    }

    /// Which checker or scheduler made it.
    pub fn desc(&self) -> &'static str {
        self.desc
    }

    /// All its steps.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The index of the step in progress (`steps().len()` once all are done).
    pub fn current_step(&self) -> usize {
        self.current_step
    }

    /// When it was created.
    pub fn created_at_ms(&self) -> u64 {
        self.created_at_ms
    }

    /// Whether more than its timeout has passed since it was created.
    pub fn is_timed_out(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.created_at_ms) > self.timeout_ms
    }

    /// Advances past the steps `region` shows as done and says what comes next.
    pub fn check(&mut self, region: &RegionInfo) -> OperatorProgress {
        if region.id() != self.region_id {
            return OperatorProgress::Stale {
                reason: format!("region {} is not {}", region.id(), self.region_id),
            };
        }
        while self.current_step < self.steps.len()
            && self.steps[self.current_step].is_finished(region)
        {
            self.current_step += 1;
        }
        let Some(step) = self.steps.get(self.current_step).copied() else {
            return OperatorProgress::Finished;
        };
        if let Some(reason) = step.obstacle(region) {
            return OperatorProgress::Stale { reason };
        }
        let own_changes = self.steps[..=self.current_step]
            .iter()
            .filter(|s| s.changes_membership() && s.has_taken_effect(region))
            .count() as u64;
        let changes = region
            .epoch()
            .conf_ver
            .saturating_sub(self.region_epoch.conf_ver);
        if changes > own_changes {
            return OperatorProgress::Stale {
                reason: format!(
                    "conf_ver went from {} to {}, the operator made {own_changes} change(s)",
                    self.region_epoch.conf_ver,
                    region.epoch().conf_ver
                ),
            };
        }
        OperatorProgress::Step(step)
    }

    /// The steps not yet in effect on `region` (from the current one on), for estimating
    /// how the operator will change the stores' loads.
    pub fn steps_to_come<'a>(
        &'a self,
        region: &'a RegionInfo,
    ) -> impl Iterator<Item = &'a Step> + 'a {
        self.steps
            .iter()
            .skip(self.current_step)
            .filter(move |s| !s.has_taken_effect(region))
    }

    /// The admin API's view of the operator.
    pub fn view(&self) -> OperatorView {
        OperatorView {
            region_id: self.region_id,
            kind: self.kind,
            desc: self.desc,
            epoch_conf_ver: self.region_epoch.conf_ver,
            epoch_version: self.region_epoch.version,
            steps: self.steps.clone(),
            current_step: self.current_step,
            created_at_ms: self.created_at_ms,
            timeout_ms: self.timeout_ms,
        }
    }
}

fn invalid(region: &RegionInfo, reason: String) -> PdError {
    PdError::InvalidOperator {
        region_id: region.id(),
        reason,
    }
}

/// The steps adding a peer on `to_store` (its id from `alloc`).
pub fn add_peer_steps(
    region: &RegionInfo,
    to_store: u64,
    alloc: &mut dyn AllocId,
) -> Result<Vec<Step>, PdError> {
    if region.peer_on_store(to_store).is_some() {
        return Err(invalid(
            region,
            format!("store {to_store} already holds a peer"),
        ));
    }
    Ok(vec![Step::AddPeer {
        store_id: to_store,
        peer_id: alloc.alloc_id(),
    }])
}

/// The step removing the peer on `store_id`, which must exist and must not be the leader.
pub fn remove_peer_steps(region: &RegionInfo, store_id: u64) -> Result<Vec<Step>, PdError> {
    if region.peer_on_store(store_id).is_none() {
        return Err(invalid(region, format!("store {store_id} holds no peer")));
    }
    if region.leader_store_id() == Some(store_id) {
        return Err(invalid(
            region,
            format!("the peer on store {store_id} is the leader; move the leadership first"),
        ));
    }
    Ok(vec![Step::RemovePeer { store_id }])
}

/// The steps moving the peer on `from_store` to `to_store`: add the new peer, transfer the
/// leadership to it if the old peer leads, then remove the old peer.
pub fn move_peer_steps(
    region: &RegionInfo,
    from_store: u64,
    to_store: u64,
    alloc: &mut dyn AllocId,
) -> Result<Vec<Step>, PdError> {
    if region.peer_on_store(from_store).is_none() {
        return Err(invalid(
            region,
            format!("store {from_store} holds no peer to move"),
        ));
    }
    let mut steps = add_peer_steps(region, to_store, alloc)?;
    if region.leader_store_id() == Some(from_store) {
        steps.push(Step::TransferLeader {
            from_store,
            to_store,
        });
    }
    steps.push(Step::RemovePeer {
        store_id: from_store,
    });
    Ok(steps)
}

/// The step moving the leadership to the peer on `to_store`.
pub fn transfer_leader_steps(region: &RegionInfo, to_store: u64) -> Result<Vec<Step>, PdError> {
    let Some(from_store) = region.leader_store_id() else {
        return Err(invalid(region, "the leader is unknown".to_string()));
    };
    if from_store == to_store {
        return Err(invalid(
            region,
            format!("the leader is already on store {to_store}"),
        ));
    }
    if region.peer_on_store(to_store).is_none() {
        return Err(invalid(region, format!("store {to_store} holds no peer")));
    }
    Ok(vec![Step::TransferLeader {
        from_store,
        to_store,
    }])
}

#[cfg(test)]
#[path = "operator_tests.rs"]
mod tests;
