//! raft-rs's `Ready`: persisting entries and hard state through the raft-log writer,
//! sending what may go before and after persistence, applying snapshots, handing
//! committed entries to the ApplyFsm, and acting on what the ApplyFsm reports applied
//! (compactions, membership changes, splits) and on role changes.

use super::*;

impl Peer {
    pub(super) fn handle_ready(&mut self) {
        self.flush_writes();
        self.announce_wake_unless_sent();
        if !self.raft.has_ready() {
            return;
        }
        // A snapshot replaces the state machine: wait until the ApplyFsm has nothing in
        // flight, or an older apply could land after it.
        let snapshot_pending = self.raft.raft.raft_log.unstable_snapshot().is_some();
        if snapshot_pending && self.sent_to_apply > self.raft.store().applied_index() {
            debug!(
                sent_to_apply = self.sent_to_apply,
                applied = self.raft.store().applied_index(),
                "snapshot waits for in-flight applies"
            );
            return;
        }
        let mut ready = self.raft.ready();
        metrics::READY_HANDLED.inc();
        if ready.ss().is_some() {
            self.on_soft_state_change();
        }
        self.send_messages(ready.take_messages());
        let committed = ready.take_committed_entries();
        for state in ready.take_read_states() {
            self.on_read_state(state);
        }

        let mut mutations = Vec::new();
        if !ready.snapshot().is_empty() {
            let Some(snapshot_mutations) = self.apply_snapshot(ready.snapshot()) else {
                // Nothing of this ready is persisted: the peer starts again from disk.
                self.restart();
                return;
            };
            mutations.extend(snapshot_mutations);
            self.persisting_snapshot =
                Some((ready.number(), ready.snapshot().get_metadata().index));
        }
        let entries = ready.take_entries();
        self.drop_overwritten_proposals(&entries);
        self.log_size_hint += entries
            .iter()
            .map(|e| (e.data.len() + e.context.len()) as u64)
            .sum::<u64>();
        let last_index = entries.last().map(|e| e.index);
        let storage = self.raft.mut_store();
        storage.append(entries, &mut mutations);
        if let Some(hs) = ready.hs() {
            storage.set_hard_state(hs);
        }
        // The commit index is persisted lazily: a hard state that moved only the commit
        // waits for the next write that persists the raft state anyway (the commit index
        // may be stale on disk; a restart raises it to the applied index, and the leader
        // tells the rest). raft-rs's `must_sync` is set exactly when the term or vote
        // changed or entries or a snapshot came. Most readies of a region written now and
        // then are a commit and nothing else; this spares each one a raft-log write and
        // its round trip.
        let must_sync = ready.must_sync();
        if !mutations.is_empty() || must_sync {
            mutations.push(storage.raft_state_mutation());
        }
        let number = ready.number();
        let persisted_msgs = ready.take_persisted_messages();
        if mutations.is_empty() && self.unpersisted_ready.is_none() {
            // Nothing to write and nothing written before it still in flight (a heartbeat
            // and its answer): durable already, so its messages go out without a round
            // trip through the raft-log writer.
            self.raft.advance_append_async(ready);
            self.raft.on_persist_ready(number);
            self.send_messages(persisted_msgs);
        } else {
            if !persisted_msgs.is_empty() {
                self.unpersisted_msgs.push_back((number, persisted_msgs));
            }
            self.raft.advance_append_async(ready);
            self.unpersisted_ready = Some(number);
            self.outbox.push(Effect::PersistReady(WriteTask {
                region_id: self.region_id,
                ready_number: number,
                mutations,
                must_sync,
                last_index,
                notify: None,
                flushed: None,
            }));
        }
        self.apply_committed(committed);
        self.issue_reads();
        self.serve_reads();
        self.maybe_generate_snapshot();
        if self.raft.has_ready() {
            self.schedule_ready();
        }
    }

    /// Replaces this peer's state with a snapshot from the leader; returns the mutations
    /// for the raft-log writer. raft only hands back snapshots this peer verified before
    /// stepping them (see [`Peer::verify_snapshot_then_step`]); one that it cannot find
    /// verified, and that fails verification now, is refused (`None`): accepting part of
    /// it would corrupt the region.
    pub(super) fn apply_snapshot(&mut self, snap: &eraftpb::Snapshot) -> Option<Vec<Mutation>> {
        let metadata = snap.get_metadata();
        let verified = match self
            .verified_snapshot
            .take()
            .filter(|v| (v.index, v.term) == (metadata.index, metadata.term))
        {
            Some(verified) => *verified,
            None => match snapshot::verify_for(snap, self.region_id, &self.peer) {
                Ok(verified) => verified,
                Err(e) => {
                    error!("raft accepted a snapshot that fails verification: {e}");
                    return None;
                }
            },
        };
        debug!(
            index = verified.index,
            term = verified.term,
            "applying snapshot"
        );
        let mutations = self.raft.mut_store().apply_snapshot(&verified);
        metrics::snapshot("apply", true);
        for p in &verified.region.peers {
            self.peer_cache.insert(*p);
        }
        self.sent_to_apply = verified.index;
        // The snapshot's write removes the whole log.
        self.log_deleted_below = Some(verified.index + 1);
        self.outbox.push(Effect::Apply(ToApply::Reset(ResetApply {
            region: verified.region.clone(),
            apply_state: *self.raft.store().apply_state(),
            sessions: verified.sessions.clone(),
        })));
        // A snapshot's region is never frozen; and the sources it absorbed are gone
        // here too if their peers still wait for a CommitMerge this peer skipped.
        self.merge_state = None;
        self.commit_merge_asked = None;
        self.merge_frozen_since = None;
        for source in &verified.merged_sources {
            self.outbox
                .push(Effect::Route(ToRouter::MergedAway(MergedAway {
                    region_id: source.id,
                    target: self.region_id,
                    version: source.region_epoch.map_or(0, |e| e.version),
                })));
        }
        self.report_route();
        Some(mutations)
    }

    pub(super) fn apply_committed(&mut self, entries: Vec<eraftpb::Entry>) {
        let Some(last) = entries.last().map(|e| e.index) else {
            return;
        };
        let mut answered = Vec::new();
        let mut waiting = VecDeque::with_capacity(self.proposals.len());
        for p in self.proposals.drain(..) {
            if p.index <= last {
                answered.push(p);
            } else {
                waiting.push_back(p);
            }
        }
        self.proposals = waiting;
        self.sent_to_apply = self.sent_to_apply.max(last);
        self.outbox.push(Effect::Apply(ToApply::Apply(Apply {
            entries,
            proposals: answered,
            forwarded: std::mem::take(&mut self.forwarded),
            committed_at: std::time::Instant::now(),
        })));
    }

    pub(super) fn on_soft_state_change(&mut self) {
        let leader = self.raft.raft.leader_id;
        let leading = self.is_leader();
        if leading != self.hibernation.is_leading() {
            self.hibernation.on_leadership(leading);
        }
        if !self.is_leader() {
            self.lease_until = None;
            self.fail_reads_without_index();
        }
        if self.reported_leader != Some(leader) {
            if self.reported_leader.is_some() {
                self.abandon_proposals_of_old_leader();
            }
            self.reported_leader = Some(leader);
            debug!(leader, term = self.term(), "leader changed");
            self.report_route();
        }
    }

    /// Tells the Router the region's shape and leader, then (as leader) the report for the
    /// placement driver.
    pub(super) fn report_route(&mut self) {
        let route = RegionRoute {
            region: self.region().clone(),
            leader: self.leader_peer(),
            merge_target: self
                .merge_state
                .as_ref()
                .and_then(|s| s.target.as_ref())
                .map(|t| t.id),
        };
        self.outbox
            .push(Effect::Route(ToRouter::RegionChanged(route)));
        self.last_report = None;
        self.report_leadership();
    }

    /// Leader: hands the Router this region's report for the placement driver if it
    /// changed since the last one (the node's heartbeat sends only changed reports).
    pub(super) fn report_leadership(&mut self) {
        if !self.is_leader() {
            self.last_report = None;
            return;
        }
        let report = LeaderReport {
            region: self.region().clone(),
            leader: self.peer,
            pending_peers: self.pending_peers(),
            approximate_size: self.approximate_size,
        };
        let digest = report_digest(&report);
        if self.last_report != Some(digest) {
            self.last_report = Some(digest);
            self.outbox
                .push(Effect::Route(ToRouter::LeaderReport(report)));
        }
    }

    pub(super) fn on_persisted(&mut self, msg: Persisted) {
        if let Some(index) = msg.last_index {
            self.raft.mut_store().on_persisted(index);
            // Stamp the proposals this write made durable, newest first, down to the
            // first one an earlier write stamped.
            let now = Instant::now();
            for p in self.proposals.iter_mut().rev() {
                if p.persisted_at.is_some() {
                    break;
                }
                if p.index <= index {
                    p.persisted_at = Some(now);
                }
            }
        }
        self.raft.on_persist_ready(msg.ready_number);
        if self
            .unpersisted_ready
            .is_some_and(|n| n <= msg.ready_number)
        {
            self.unpersisted_ready = None;
        }
        if let Some((number, index)) = self.persisting_snapshot {
            if number <= msg.ready_number {
                self.persisting_snapshot = None;
                self.raft.advance_apply_to(index);
            }
        }
        while self
            .unpersisted_msgs
            .front()
            .is_some_and(|(n, _)| *n <= msg.ready_number)
        {
            let Some((_, messages)) = self.unpersisted_msgs.pop_front() else {
                break;
            };
            self.send_messages(messages);
        }
        self.schedule_ready();
    }

    pub(super) fn on_applied(&mut self, msg: Applied) {
        if self.destroyed {
            return;
        }
        let applied = msg.apply_state.applied_index;
        if applied < self.raft.store().applied_index() {
            // Progress from before a snapshot was applied.
            return;
        }
        let first_before = self.raft.store().first_log_index();
        self.raft.mut_store().set_apply_state(msg.apply_state);
        self.size_diff_hint += msg.written_bytes;
        let mut splits = 0usize;
        for result in msg.results {
            match result {
                ExecResult::CompactLog { index } => {
                    self.shrink_log_size_hint(first_before, index);
                    self.delete_compacted_entries(index);
                }
                ExecResult::ChangePeer { change, region } => {
                    self.on_peers_changed(change, region);
                    if self.destroyed {
                        return;
                    }
                }
                ExecResult::Split { left, right } => {
                    // A batch split yields one result per new region: one line each at
                    // debug, the region's new shape at info once they are all done.
                    debug!(left = ?left, right = ?right, "region split");
                    splits += 1;
                    self.approximate_size = None;
                    self.raft.mut_store().set_region(left);
                    self.report_route();
                    let campaign = self.is_leader();
                    self.outbox
                        .push(Effect::Route(ToRouter::CreateSplitPeer(CreateSplitPeer {
                            region: right,
                            campaign,
                        })));
                }
                ExecResult::PrepareMerge { region, state } => {
                    self.on_prepare_merge_applied(region, state)
                }
                ExecResult::CommitMerge { region, source } => {
                    self.on_commit_merge_applied(region, source)
                }
                ExecResult::RollbackMerge { region } => self.on_rollback_merge_applied(region),
            }
        }
        if splits > 0 {
            info!(splits, region = ?self.region(), "region split");
        }
        self.raft.advance_apply_to(applied);
        if self.log_past_size_threshold() {
            // Large entries: compact now rather than at the next GC tick, so that they
            // leave the log while the engine's memtable still holds them.
            self.propose_log_compaction();
        }
        self.serve_reads();
        self.schedule_ready();
    }

    pub(super) fn on_peers_changed(&mut self, change: Option<ConfChange>, region: metapb::Region) {
        if let Some(change) = change {
            if let Err(e) = self.raft.apply_conf_change(&change) {
                warn!("raft refused an applied conf change: {e}");
            }
        }
        info!(peers = ?region.peers, epoch = ?region.region_epoch, "membership changed");
        for p in &region.peers {
            self.peer_cache.insert(*p);
        }
        let removed = !region.peers.iter().any(|p| p.id == self.peer.id);
        self.raft.mut_store().set_region(region);
        self.report_route();
        if removed {
            self.destroy("removed from the region");
        }
    }
}

/// A digest of `report`, to tell whether it changed: the region as encoded (every field
/// of it, present and future), the leader, the lagging peers and the size. Two different
/// reports share a digest with a chance of one in 2^64; the node's full report, every
/// so many heartbeats, would then correct the placement driver's view.
pub(super) fn report_digest(report: &LeaderReport) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    report.region.encode_to_vec().hash(&mut hasher);
    (report.leader.id, report.leader.store_id).hash(&mut hasher);
    for p in &report.pending_peers {
        (p.id, p.store_id).hash(&mut hasher);
    }
    report.approximate_size.hash(&mut hasher);
    hasher.finish()
}
