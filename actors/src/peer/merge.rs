//! Merging: a source region hands its range to its neighbour, the target.
//!
//! 1. **PrepareMerge** (proposed to the source, by the placement driver or the admin
//!    API) freezes the source once applied: both parts of its epoch grow, it takes no
//!    more commands (writes, reads, splits, membership changes are answered "busy"), its
//!    log is not compacted and no snapshot of it is made.
//! 2. The source's leader waits until its own peer applied the PrepareMerge and every
//!    follower's log holds it (raft's `matched`), then asks this store's peer of the
//!    target for a **CommitMerge** naming the source, the PrepareMerge entry, and the
//!    target's epoch the merge was prepared against. A target peer that does not lead
//!    forwards it to its leader through raft, as it does client writes.
//! 3. Each target peer's ApplyFsm applies the CommitMerge once this store's source peer
//!    has applied the PrepareMerge (telling it to commit up to that entry, which it holds,
//!    if it has not), then takes the source's range, data and sessions; the target's peer
//!    then tells the source's peer it was merged away, and it destroys itself without
//!    touching the data.
//! 4. If the target's epoch moved past the one named (it split, or changed membership,
//!    before the CommitMerge reached its log), the CommitMerge is refused with
//!    `MergeTargetChanged` — and so would any later copy be, as epochs only grow — and
//!    the source's leader proposes **RollbackMerge**, which thaws the source.
//!
//! A source merged already answers a repeated CommitMerge as done: the target records
//! every source it absorbed, and its snapshots carry those records, so a target replica
//! that skipped the CommitMerge through a snapshot still answers like the others.

use super::*;

/// How many base ticks a CommitMerge request may stay unanswered before the source's
/// leader asks again.
const COMMIT_MERGE_PATIENCE_TICKS: u64 = 50;

/// How many election timeouts a source's leader waits for every follower to hold the
/// PrepareMerge before it gives the merge up (see [`Peer::on_merge_tick`]).
const MERGE_PATIENCE_ELECTION_TIMEOUTS: u64 = 10;

/// The answer to this source leader's CommitMerge request (internal notification).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct CommitMergeAnswer {
    /// The PrepareMerge the request was for.
    pub commit: u64,
    /// `None` if the target applied it (or had already).
    pub error: Option<Error>,
}

impl Peer {
    /// Whether this peer is a frozen merge source.
    pub(super) fn is_merging(&self) -> bool {
        self.merge_state.is_some()
    }

    /// The refusal of a command while frozen: nothing was done; retry after the merge.
    pub(super) fn merging_error(&self) -> Error {
        Error::ServerIsBusy(format!("region {} is merging", self.region_id))
    }

    /// Source leader, every tick: once the PrepareMerge is applied here and held by every
    /// follower (and nothing after it waits to apply, such as a RollbackMerge), asks the
    /// target's peer on this store to commit the merge (one request at a time).
    ///
    /// A follower that never gets the PrepareMerge (its store is down) would keep the
    /// source frozen. So the leader that appended the PrepareMerge, still leading in that
    /// term and never having asked for the CommitMerge, gives the merge up after
    /// [`MERGE_PATIENCE_ELECTION_TIMEOUTS`]: nobody else can have asked for it (a leader
    /// of an earlier term did not know the entry, none of a later one exists yet), so no
    /// CommitMerge of it exists and a RollbackMerge is safe.
    pub(super) fn on_merge_tick(&mut self) {
        let Some(state) = self.merge_state.clone() else {
            return;
        };
        if !self.is_leader() || self.raft.store().applied_index() < state.commit {
            return;
        }
        let frozen_since = *self.merge_frozen_since.get_or_insert(self.ticks);
        if let Some(asked_at) = self.commit_merge_asked {
            if self.ticks < asked_at + COMMIT_MERGE_PATIENCE_TICKS {
                return;
            }
        }
        let all_hold_it = self
            .raft
            .raft
            .prs()
            .iter()
            .all(|(_, progress)| progress.matched >= state.commit);
        let all_applied = self.raft.store().applied_index() == self.raft.raft.raft_log.last_index();
        if !all_hold_it || !all_applied {
            let patience =
                MERGE_PATIENCE_ELECTION_TIMEOUTS * self.env.cfg.raft_election_timeout_ticks as u64;
            let term = self.term();
            if state.commit_term == term
                && self.commit_merge_asked_in != Some(term)
                && self.ticks >= frozen_since + patience
            {
                warn!(
                    "rolling the merge back: a follower still lacks the PrepareMerge after {patience} ticks"
                );
                // Throttled like a request: the rollback applies, or the next try comes
                // after the same patience.
                self.commit_merge_asked = Some(self.ticks);
                self.propose_rollback_merge(state.commit);
            }
            return;
        }
        let Some(target) = state.target.clone() else {
            return;
        };
        let request = RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: target.id,
                region_epoch: target.region_epoch,
                ..Default::default()
            }),
            admin_request: Some(AdminRequest {
                cmd_type: AdminCmdType::CommitMerge as i32,
                commit_merge: Some(CommitMergeRequest {
                    source: Some(self.region().clone()),
                    commit: state.commit,
                    commit_term: state.commit_term,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.commit_merge_asked = Some(self.ticks);
        self.commit_merge_asked_in = Some(self.term());
        debug!(target = target.id, "asking the target to commit the merge");
        let commit = state.commit;
        self.outbox.push(Effect::AskCommitMerge {
            request: Box::new(request),
            commit,
        });
    }

    /// The target answered this source leader's CommitMerge request.
    pub(super) fn on_commit_merge_answer(&mut self, msg: CommitMergeAnswer) {
        if self.merge_state.as_ref().map(|s| s.commit) != Some(msg.commit) {
            return;
        }
        self.commit_merge_asked = None;
        let refusal = match msg.error {
            None => return debug!("the target committed the merge"),
            Some(Error::MergeTargetChanged(reason)) => reason,
            Some(Error::RegionNotFound(_)) => match self.target_gone_past_prepare() {
                Some(reason) => reason,
                None => return debug!("the target has no peer on this store yet"),
            },
            Some(e) => return debug!("the target did not commit the merge yet: {e}"),
        };
        warn!("rolling the merge back: {refusal}");
        self.propose_rollback_merge(msg.commit);
    }

    /// Why the target can never commit this merge, if its peer on this store is gone
    /// after moving past the epoch the merge was prepared against (removed from this
    /// store, or merged into another region itself): it then applied every entry before
    /// that change here, so a CommitMerge among them would have merged this peer away;
    /// and none after it can apply. A target peer destroyed without that (a stale
    /// replica's tombstone keeps its old epoch) proves nothing.
    fn target_gone_past_prepare(&self) -> Option<String> {
        let target = self.merge_state.as_ref()?.target.as_ref()?;
        let state: RegionLocalState = self
            .env
            .engine
            .get_msg(Cf::Meta, &keys::region_state_key(target.id))
            .ok()??;
        if state.state() != PeerState::Tombstone {
            return None;
        }
        let gone = state.region?;
        match util::check_merge_target_epoch(&gone, target.region_epoch) {
            Err(Error::MergeTargetChanged(reason)) => {
                Some(format!("its peer here is gone: {reason}"))
            }
            _ => None,
        }
    }

    /// Source leader: proposes thawing the region. The next tick asks the target again
    /// if the rollback does not apply (the entry can only apply while still frozen).
    fn propose_rollback_merge(&mut self, commit: u64) {
        if !self.is_leader() {
            return;
        }
        let request = self.own_admin_command(AdminRequest {
            cmd_type: AdminCmdType::RollbackMerge as i32,
            rollback_merge: Some(RollbackMergeRequest { commit }),
            ..Default::default()
        });
        let (callback, _) = tokio::sync::oneshot::channel();
        self.propose_write(request, callback);
        self.schedule_ready();
    }

    /// Target: a CommitMerge request, from a source leader on this store or forwarded.
    /// A source merged already is answered done at once; otherwise the target's epoch
    /// must be the one the merge was prepared against (see
    /// [`util::check_merge_target_epoch`]), then the command is proposed or forwarded to
    /// the leader like a write.
    pub(super) fn on_commit_merge(&mut self, mut request: RaftCmdRequest, callback: Callback) {
        let source = request
            .admin_request
            .as_ref()
            .and_then(|a| a.commit_merge.as_ref())
            .and_then(|c| c.source.as_ref())
            .map_or(0, |s| s.id);
        match self
            .env
            .engine
            .get(Cf::Meta, &keys::merged_source_key(self.region_id, source))
        {
            Ok(Some(_)) => return respond(callback, self.merge_done_response()),
            Ok(None) => {}
            Err(e) => return respond_error(callback, &e, self.term()),
        }
        let checked = self.check_command(&mut request).and_then(|()| {
            let expected = request.header.as_ref().and_then(|h| h.region_epoch);
            util::check_merge_target_epoch(self.region(), expected)
        });
        if let Err(e) = checked {
            return respond_error(callback, &e, self.term());
        }
        if self.is_leader() {
            self.propose_write(request, callback);
        } else {
            self.forward_write(request, callback);
        }
    }

    fn merge_done_response(&self) -> CmdResponse {
        CmdResponse {
            response: RaftCmdResponse {
                header: Some(RaftResponseHeader {
                    current_term: self.term(),
                    ..Default::default()
                }),
                admin_response: Some(AdminResponse {
                    cmd_type: AdminCmdType::CommitMerge as i32,
                    commit_merge: Some(CommitMergeResponse {}),
                    ..Default::default()
                }),
                ..Default::default()
            },
            snapshot: None,
            stages: None,
        }
    }

    /// Source: a target on this store waits for this peer to apply its PrepareMerge.
    /// Every peer's log holds that entry (the CommitMerge was only asked for then), so it
    /// may be committed here even if no leader is left to say so.
    pub(super) fn on_catch_up_logs(&mut self, msg: CatchUpLogs) {
        self.wake(Wake::Announce);
        let log = &mut self.raft.raft.raft_log;
        if log.committed >= msg.commit {
            return;
        }
        if log.last_index() >= msg.commit && log.term(msg.commit).ok() == Some(msg.commit_term) {
            info!(
                commit = msg.commit,
                "committing up to the PrepareMerge for the merge target"
            );
            log.commit_to(msg.commit);
            self.schedule_ready();
        } else {
            debug!(
                commit = msg.commit,
                "the PrepareMerge the target waits for is not in this peer's log yet"
            );
        }
    }

    /// Applied PrepareMerge: this peer is frozen as `region`.
    pub(super) fn on_prepare_merge_applied(&mut self, region: metapb::Region, state: MergeState) {
        info!(target = ?state.target.as_ref().map(|t| t.id), "frozen for a merge");
        self.merge_state = Some(Box::new(state));
        self.commit_merge_asked = None;
        self.commit_merge_asked_in = None;
        self.merge_frozen_since = None;
        self.raft.mut_store().set_region(region);
        // Reads waiting here are answered "not leader": the client tries again and
        // finds the region busy until the merge is over.
        self.fail_reads_where(|_| true);
        self.report_route();
    }

    /// Applied CommitMerge: this region now holds `source`'s range; the source's peer on
    /// this store goes, leaving the data.
    pub(super) fn on_commit_merge_applied(
        &mut self,
        region: metapb::Region,
        source: metapb::Region,
    ) {
        self.approximate_size = None;
        self.raft.mut_store().set_region(region);
        self.report_route();
        // Measured at once, so that the placement driver can consider the merged region
        // for its next merge without waiting for a size-check tick.
        self.on_split_check_tick();
        self.outbox
            .push(Effect::Route(ToRouter::MergedAway(MergedAway {
                region_id: source.id,
                target: self.region_id,
                version: source.region_epoch.map_or(0, |e| e.version),
            })));
    }

    /// Applied RollbackMerge: the region takes commands again.
    pub(super) fn on_rollback_merge_applied(&mut self, region: metapb::Region) {
        self.merge_state = None;
        self.commit_merge_asked = None;
        self.merge_frozen_since = None;
        self.raft.mut_store().set_region(region);
        self.report_route();
    }

    /// This source was absorbed by its target on this store (frozen, or still behind
    /// its PrepareMerge when a snapshot of the target says it was merged at a version
    /// this peer has not passed): the peer goes, and its data stays (it is the target's
    /// now, or the snapshot's).
    pub(super) fn on_merged_away(&mut self, msg: MergedAway) {
        let version = self.region().region_epoch.map_or(0, |e| e.version);
        let target = self
            .merge_state
            .as_ref()
            .and_then(|s| s.target.as_ref())
            .map(|t| t.id);
        if target.is_some_and(|t| t != msg.target) || version > msg.version {
            warn!(
                target = msg.target,
                version = msg.version,
                "ignoring a merge notice for another state of this region"
            );
            return;
        }
        self.destroy_merged();
    }
}

fn respond(callback: Callback, response: CmdResponse) {
    let _ = callback.send(response);
}
