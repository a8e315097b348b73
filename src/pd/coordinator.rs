//! The coordinator: drives the checkers and schedulers, and answers region heartbeats.
//!
//! [`Coordinator`] owns the [`ClusterInfo`] and the operators in flight, at most one per
//! region. On each region heartbeat it updates the cluster, advances the region's
//! operator (dropping it if finished, stale or timed out) and answers the leader with the
//! step to carry out now. A region without an operator gets one from the replica checker
//! if it needs one; then, at most once per `balance_interval_ms`, [`Coordinator::schedule`]
//! runs: a replica-checker patrol over all regions, then balance-region, then
//! balance-leader. Balance operators are rate limited by `max_balance_operators`, replica
//! and offline ones by `max_replica_operators`.
//!
//! Operators created for other regions are handed out when those regions heartbeat.
//! Ended operators are kept in a short history (outcome and time) for the admin API.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::cluster::{ClusterInfo, StoreHeartbeat};
use super::operator::{
    AllocId, HeartbeatAnswer, Operator, OperatorKind, OperatorProgress, OperatorView, Step,
};
use super::region::{RegionHeartbeat, RegionInfo};
use super::scheduler::{
    balance_leader, balance_region, check_merge, check_replicas, store_health, ScheduleContext,
    SchedulerConfig, StoreHealth,
};
use super::PdError;

/// How many ended operators the history keeps.
pub const OPERATOR_HISTORY_LEN: usize = 64;

/// How an operator ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorOutcome {
    /// Every step was done.
    Finished,
    /// It did not finish within its timeout.
    TimedOut,
    /// The region changed in a way it did not plan for.
    Stale,
    /// Its region disappeared from the PD's view (merged into or replaced by another).
    RegionGone,
    /// It was cancelled through the admin API.
    Cancelled,
}

/// An ended operator, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndedOperatorView {
    /// The operator as it was when it ended.
    pub operator: OperatorView,
    /// How it ended.
    pub outcome: OperatorOutcome,
    /// Details (why it went stale).
    pub reason: Option<String>,
    /// When it ended.
    pub ended_at_ms: u64,
}

/// How many operators were made and how they ended, since the coordinator started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorCounts {
    /// Operators created, by the checker or scheduler that made them (`desc`).
    pub created: BTreeMap<String, u64>,
    /// Operators ended, by outcome.
    pub ended: BTreeMap<OperatorOutcome, u64>,
}

/// The PD's scheduling core: cluster model, operators in flight, and their history.
#[derive(Debug, Clone)]
pub struct Coordinator {
    cluster: ClusterInfo,
    config: SchedulerConfig,
    operators: BTreeMap<u64, Operator>,
    history: VecDeque<EndedOperatorView>,
    counts: OperatorCounts,
    last_schedule_ms: Option<u64>,
    /// When this PD leadership first heard of each region, for `split_merge_interval_ms`.
    first_seen_ms: HashMap<u64, u64>,
}

impl Coordinator {
    /// A coordinator over `cluster`, with no operator in flight.
    pub fn new(cluster: ClusterInfo, config: SchedulerConfig) -> Self {
        Coordinator {
            cluster,
            config,
            operators: BTreeMap::new(),
            history: VecDeque::new(),
            counts: OperatorCounts::default(),
            last_schedule_ms: None,
            first_seen_ms: HashMap::new(),
        }
    }

    /// The cluster model.
    pub fn cluster(&self) -> &ClusterInfo {
        &self.cluster
    }

    /// The cluster model, to register stores or change their state.
    pub fn cluster_mut(&mut self) -> &mut ClusterInfo {
        &mut self.cluster
    }

    /// The scheduling settings.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Changes the scheduling settings (operators in flight keep their timeouts).
    pub fn set_config(&mut self, config: SchedulerConfig) {
        self.config = config;
    }

    /// Records a store heartbeat.
    pub fn on_store_heartbeat(
        &mut self,
        heartbeat: StoreHeartbeat,
        now_ms: u64,
    ) -> Result<(), PdError> {
        self.cluster.handle_store_heartbeat(heartbeat, now_ms)
    }

    /// Handles a region heartbeat received at `now_ms`: updates the cluster, advances or
    /// creates the region's operator, and returns what the region's leader should do now
    /// (for the region and epoch of this heartbeat), if anything. A refused heartbeat
    /// (stale, malformed) changes nothing and returns the error.
    pub fn on_region_heartbeat(
        &mut self,
        heartbeat: RegionHeartbeat,
        now_ms: u64,
        alloc: &mut dyn AllocId,
    ) -> Result<Option<HeartbeatAnswer>, PdError> {
        let region_id = heartbeat.region.id;
        self.cluster.handle_region_heartbeat(heartbeat)?;
        self.first_seen_ms.entry(region_id).or_insert(now_ms);
        if self.operators.contains_key(&region_id) {
            let answer = self.dispatch(region_id, now_ms);
            if self.operators.contains_key(&region_id) {
                return Ok(answer);
            }
        }
        if self.replica_operator_count() < self.config.max_replica_operators {
            let op = self.cluster.region(region_id).and_then(|region| {
                let ctx = ScheduleContext::new(&self.cluster, &self.config, now_ms)
                    .with_operators(self.operators.values());
                check_replicas(&ctx, region, alloc)
            });
            if let Some(op) = op {
                self.insert(op);
                return Ok(self.dispatch(region_id, now_ms));
            }
        }
        if self.schedule_if_due(now_ms, alloc) && self.operators.contains_key(&region_id) {
            return Ok(self.dispatch(region_id, now_ms));
        }
        Ok(None)
    }

    /// Runs [`Coordinator::schedule`] if `balance_interval_ms` passed since it last ran;
    /// returns whether it ran. Called on every store heartbeat too: leaders report a
    /// region only when it changed, so a quiet cluster sends no region heartbeats at all.
    pub fn schedule_if_due(&mut self, now_ms: u64, alloc: &mut dyn AllocId) -> bool {
        let due = self
            .last_schedule_ms
            .is_none_or(|last| now_ms >= last.saturating_add(self.config.balance_interval_ms));
        if due {
            self.schedule(now_ms, alloc);
        }
        due
    }

    /// The steps to take now for the operators of regions led from `store_id` (as last
    /// reported), other than those in `answered`: a leader reports a region only when it
    /// changed, so an operator made for a quiet region is handed out on its leader's store
    /// heartbeat. Each comes with the region as the PD knows it, whose epoch the command
    /// carries.
    pub fn answers_for_store(
        &mut self,
        store_id: u64,
        answered: &std::collections::HashSet<u64>,
        now_ms: u64,
    ) -> Vec<(RegionInfo, HeartbeatAnswer)> {
        let led: Vec<u64> = self
            .operators
            .keys()
            .copied()
            .filter(|id| !answered.contains(id))
            .filter(|id| {
                self.cluster
                    .region(*id)
                    .is_some_and(|r| r.leader_store_id() == Some(store_id))
            })
            .collect();
        let mut answers = Vec::new();
        for region_id in led {
            if let Some(answer) = self.dispatch(region_id, now_ms) {
                if let Some(region) = self.cluster.region(region_id) {
                    answers.push((region.clone(), answer));
                }
            }
        }
        answers
    }

    /// Runs the periodic work now: drops timed-out operators and those whose region is
    /// gone, runs the replica checker over every region without an operator, then
    /// balance-region and balance-leader (one operator each at most). Returns the regions
    /// that got a new operator.
    pub fn schedule(&mut self, now_ms: u64, alloc: &mut dyn AllocId) -> Vec<u64> {
        self.last_schedule_ms = Some(now_ms);
        self.sweep(now_ms);
        let mut new_ops = Vec::new();
        {
            let room = self
                .config
                .max_replica_operators
                .saturating_sub(self.replica_operator_count());
            let mut ctx = ScheduleContext::new(&self.cluster, &self.config, now_ms)
                .with_operators(self.operators.values());
            for region in self.cluster.regions() {
                if new_ops.len() >= room {
                    break;
                }
                if ctx.is_busy(region.id()) {
                    continue;
                }
                if let Some(op) = check_replicas(&ctx, region, alloc) {
                    ctx = ctx.with_operators([&op]);
                    new_ops.push(op);
                }
            }
        }
        let mut created: Vec<u64> = new_ops.iter().map(Operator::region_id).collect();
        for op in new_ops {
            self.insert(op);
        }
        for op in self.check_merges(now_ms) {
            created.push(op.region_id());
            self.insert(op);
        }
        for balancer in [Balancer::Region, Balancer::Leader] {
            if self.balance_operator_count() >= self.config.max_balance_operators {
                break;
            }
            let op = {
                let ctx = ScheduleContext::new(&self.cluster, &self.config, now_ms)
                    .with_operators(self.operators.values());
                match balancer {
                    Balancer::Region => balance_region(&ctx, alloc),
                    Balancer::Leader => balance_leader(&ctx),
                }
            };
            if let Some(op) = op {
                created.push(op.region_id());
                self.insert(op);
            }
        }
        created
    }

    /// Adds an operator built elsewhere (the admin API). Refused if the region is unknown
    /// or already has an operator.
    pub fn add_operator(&mut self, operator: Operator) -> Result<(), PdError> {
        let region_id = operator.region_id();
        if self.cluster.region(region_id).is_none() {
            return Err(PdError::RegionNotFound(region_id));
        }
        if self.operators.contains_key(&region_id) {
            return Err(PdError::OperatorExists(region_id));
        }
        self.insert(operator);
        Ok(())
    }

    /// Cancels the region's operator, if any; it goes to the history as cancelled.
    pub fn cancel_operator(&mut self, region_id: u64, now_ms: u64) -> Option<Operator> {
        self.end(region_id, OperatorOutcome::Cancelled, None, now_ms)
    }

    /// The region's operator in flight, if any.
    pub fn operator(&self, region_id: u64) -> Option<&Operator> {
        self.operators.get(&region_id)
    }

    /// The operators in flight, by region id, as the admin API shows them.
    pub fn operators(&self) -> Vec<OperatorView> {
        self.operators.values().map(Operator::view).collect()
    }

    /// The last ended operators (at most [`OPERATOR_HISTORY_LEN`]), oldest first.
    pub fn ended_operators(&self) -> Vec<EndedOperatorView> {
        self.history.iter().cloned().collect()
    }

    /// How many operators were made and how they ended.
    pub fn operator_counts(&self) -> &OperatorCounts {
        &self.counts
    }

    // ---- internals ----

    /// Advances the region's operator against the region as now known; returns the step
    /// to send, ending the operator if it finished, went stale or timed out.
    fn dispatch(&mut self, region_id: u64, now_ms: u64) -> Option<HeartbeatAnswer> {
        let Some(region) = self.cluster.region(region_id) else {
            self.end(region_id, OperatorOutcome::RegionGone, None, now_ms);
            return None;
        };
        let op = self.operators.get(&region_id)?;
        if op.is_timed_out(now_ms) {
            self.end(region_id, OperatorOutcome::TimedOut, None, now_ms);
            return None;
        }
        if let Some(reason) = self.unfit_target(op, region, now_ms) {
            self.end(region_id, OperatorOutcome::Stale, Some(reason), now_ms);
            return None;
        }
        let op = self.operators.get_mut(&region_id)?;
        match op.check(region) {
            OperatorProgress::Step(step) => step.to_answer(region),
            OperatorProgress::Finished => {
                self.end(region_id, OperatorOutcome::Finished, None, now_ms);
                None
            }
            OperatorProgress::Stale { reason } => {
                self.end(region_id, OperatorOutcome::Stale, Some(reason), now_ms);
                None
            }
        }
    }

    /// Ends the operators that timed out, whose region is gone, or whose next steps lead
    /// to a store that can no longer take them.
    fn sweep(&mut self, now_ms: u64) {
        let ended: Vec<(u64, OperatorOutcome, Option<String>)> = self
            .operators
            .values()
            .filter_map(|op| {
                let id = op.region_id();
                let Some(region) = self.cluster.region(id) else {
                    return Some((id, OperatorOutcome::RegionGone, None));
                };
                if op.is_timed_out(now_ms) {
                    return Some((id, OperatorOutcome::TimedOut, None));
                }
                let reason = self.unfit_target(op, region, now_ms)?;
                Some((id, OperatorOutcome::Stale, Some(reason)))
            })
            .collect();
        for (region_id, outcome, reason) in ended {
            self.end(region_id, outcome, reason, now_ms);
        }
    }

    /// Why the operator can no longer be carried out, if a step still to come adds a
    /// peer on, or hands the leadership to, a store that is not healthy any more (down,
    /// drained or removed): waiting for its timeout would keep the region from being
    /// repaired in the meantime.
    fn unfit_target(&self, op: &Operator, region: &RegionInfo, now_ms: u64) -> Option<String> {
        op.steps_to_come(region).find_map(|step| {
            let target = match *step {
                Step::AddPeer { store_id, .. } => store_id,
                Step::TransferLeader { to_store, .. } => to_store,
                Step::RemovePeer { .. } | Step::Merge { .. } => return None,
            };
            let health = store_health(&self.cluster, &self.config, target, now_ms);
            (health != StoreHealth::Healthy).then(|| format!("target store {target} is {health:?}"))
        })
    }

    fn insert(&mut self, op: Operator) {
        *self
            .counts
            .created
            .entry(op.desc().to_string())
            .or_default() += 1;
        self.operators.insert(op.region_id(), op);
    }

    fn end(
        &mut self,
        region_id: u64,
        outcome: OperatorOutcome,
        reason: Option<String>,
        now_ms: u64,
    ) -> Option<Operator> {
        let op = self.operators.remove(&region_id)?;
        *self.counts.ended.entry(outcome).or_default() += 1;
        if self.history.len() == OPERATOR_HISTORY_LEN {
            self.history.pop_front();
        }
        self.history.push_back(EndedOperatorView {
            operator: op.view(),
            outcome,
            reason,
            ended_at_ms: now_ms,
        });
        Some(op)
    }

    fn count_kind(&self, kinds: &[OperatorKind]) -> usize {
        self.operators
            .values()
            .filter(|op| kinds.contains(&op.kind()))
            .count()
    }

    /// Merges of disjoint pairs, up to `max_merge_operators` in flight: regions in key
    /// order that may merge into a neighbour (see [`check_merge`]); a pair being merged is
    /// busy for the next.
    fn check_merges(&mut self, now_ms: u64) -> Vec<Operator> {
        if self.first_seen_ms.len() > 2 * self.cluster.region_count() + 64 {
            // Regions merged or split away: forget them now and then, not every pass.
            let known: std::collections::HashSet<u64> =
                self.cluster.regions().map(RegionInfo::id).collect();
            self.first_seen_ms.retain(|id, _| known.contains(id));
        }
        let room = self
            .config
            .max_merge_operators
            .saturating_sub(self.count_kind(&[OperatorKind::Merge]));
        if self.config.max_merge_region_size == 0 || room == 0 {
            return Vec::new();
        }
        // Nothing is old enough to merge (a young cluster or PD leadership): skip the pass.
        let oldest = self.first_seen_ms.values().min().copied();
        if oldest
            .is_none_or(|since| now_ms.saturating_sub(since) < self.config.split_merge_interval_ms)
        {
            return Vec::new();
        }
        let mut made: Vec<Operator> = Vec::new();
        let seen = |id: u64| self.first_seen_ms.get(&id).copied();
        // One context for the whole pass (building one costs a walk over the stores and
        // the operators), told of each merge as it is made.
        let mut ctx = ScheduleContext::new(&self.cluster, &self.config, now_ms)
            .with_operators(self.operators.values());
        for region in self.cluster.regions_in_key_order() {
            if made.len() >= room {
                break;
            }
            if let Some(op) = check_merge(&ctx, region, &seen) {
                ctx = ctx.with_operators([&op]);
                made.push(op);
            }
        }
        made
    }

    fn replica_operator_count(&self) -> usize {
        self.count_kind(&[OperatorKind::Replica, OperatorKind::Offline])
    }

    fn balance_operator_count(&self) -> usize {
        self.count_kind(&[OperatorKind::Balance])
    }
}

/// The balancers `schedule` runs, in order.
#[derive(Debug, Clone, Copy)]
enum Balancer {
    Region,
    Leader,
}

#[cfg(test)]
#[path = "coordinator_tests.rs"]
mod tests;
