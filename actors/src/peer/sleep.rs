//! Hibernation glue: when a region may sleep, asking its followers, stopping the timer,
//! and waking (see [`crate::hibernate`] for the rules themselves).

use super::*;

/// What woke a sleeping peer, which decides how the others learn that it is awake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wake {
    /// A raft message from its leader: the leader is awake and talking to it.
    ByLeader,
    /// Anything else that must be announced at once: a leader pings every follower, a
    /// follower tells its leader (or every voter, knowing no leader).
    Announce,
    /// A command, or a raft message from a peer other than its leader, that is handled
    /// right after the wake-up and may send what announces it anyway: a leader's append
    /// or heartbeat to every follower, a follower's forwarded proposal or read to its
    /// leader (any raft message wakes its receiver). The next ready looks at what is about
    /// to be sent and announces the wake-up only if that does not
    /// ([`Peer::announce_wake_unless_sent`]). A region written now and then sleeps
    /// between writes; this spares every write a round of heartbeats.
    Deferred,
}

impl Peer {
    /// Leader, on a tick: if the region is quiet, opens a round asking the followers to
    /// sleep and skips this tick (no heartbeat, which would wake a follower that already
    /// agreed); the next tick closes an unfinished round and ticks as usual, so a round
    /// that keeps failing costs followers every other heartbeat, far within their election
    /// timeout. Returns whether the tick was skipped (or the peer fell asleep).
    pub(super) fn try_hibernate(&mut self) -> bool {
        if !self.is_leader() || !self.env.cfg.may_hibernate(self.region()) || self.is_merging() {
            return false;
        }
        if self.hibernation.round_is_open() {
            self.hibernation.cancel_round();
            return false;
        }
        if !self.is_quiet() || !self.leader_is_quiet() {
            return false;
        }
        // What the placement driver knows must be current before the region goes quiet:
        // a follower may have caught up since the last report.
        self.report_leadership();
        let followers = self.followers();
        let (term, last_index) = (self.term(), self.raft.raft.raft_log.last_index());
        for id in self
            .hibernation
            .ask(term, last_index, &followers, Instant::now())
        {
            self.send_hibernation_message(id, ExtraMessageType::MsgHibernateRequest);
        }
        self.sleep_if_agreed();
        true
    }

    /// The voters of the region other than this peer.
    pub(super) fn followers(&self) -> Vec<u64> {
        let voters = self.raft.raft.prs().conf().voters().ids();
        voters.iter().filter(|&id| id != self.peer.id).collect()
    }

    /// Leader: sleeps if the open round has the agreement it needs.
    pub(super) fn sleep_if_agreed(&mut self) {
        let followers = self.followers();
        let timeout = self.env.cfg.election_timeout();
        if self
            .hibernation
            .leader_may_sleep(&followers, Instant::now(), timeout)
        {
            self.sleep();
        }
    }

    /// Nothing is in flight on this peer, in either role: the whole log is committed and
    /// applied, and no proposal, read, forwarded write, unpersisted `Ready`, snapshot or
    /// removal check waits.
    pub(super) fn is_quiet(&self) -> bool {
        let log = &self.raft.raft.raft_log;
        let storage = self.raft.store();
        let base_tick = self.env.cfg.base_tick();
        storage.is_initialized()
            && !self.destroyed
            && log.committed == log.last_index()
            && storage.applied_index() == log.committed
            && self.unpersisted_ready.is_none()
            && self.proposals.is_empty()
            && self.forwarded.is_empty()
            && self.pending_reads.is_empty()
            && self.write_batch.is_empty()
            && self.persisting_snapshot.is_none()
            && !self.generating_snapshot
            && !self.verifying_snapshot
            && self
                .stale_check
                .as_ref()
                .is_none_or(|c| !c.is_running(base_tick))
            && !self.ready_scheduled
            && !self.raft.has_ready()
    }

    /// The leader's own conditions for sleeping: no leadership transfer, membership
    /// change or snapshot under way, the log compacted as far as its limits ask (a
    /// compaction is proposed if not: a region that slept with a long log would keep it,
    /// on disk and to replay at a restart, until woken), and the region's size known and
    /// measured since it last grew by an eighth of the split size (a size check is started
    /// if not, and the leader sleeps once it is done).
    pub(super) fn leader_is_quiet(&mut self) -> bool {
        let raft = &self.raft.raft;
        if raft.lead_transferee.is_some()
            || raft.has_pending_conf()
            || !self.snapshot_waits.is_empty()
            || self.checking_size
        {
            return false;
        }
        if self.log_gc_due() {
            self.propose_log_compaction();
            return false;
        }
        let split_size = self.env.cfg.region_split_size;
        if self.approximate_size.is_none() || self.size_diff_hint >= split_size / 8 {
            self.on_split_check_tick();
            return false;
        }
        true
    }

    /// Stops the tick timer and frees the memory a quiet peer does not need: raft's
    /// in-flight append buffers (a leader allocates them again on its next append) and the
    /// spare room of the log buffers, which a burst of writes grew. Ten thousand sleeping
    /// regions are most of a store's memory.
    pub(super) fn sleep(&mut self) {
        self.free_spare_memory();
        if !self.hibernation.is_asleep() {
            metrics::HIBERNATING_PEERS.inc();
            metrics::hibernation_transition("asleep");
            debug!(term = self.term(), "hibernating");
            self.outbox.push(Effect::Asleep);
        }
        self.hibernation.sleep(Instant::now());
    }

    /// What [`Peer::sleep`] frees.
    pub(super) fn free_spare_memory(&mut self) {
        let raft = &mut self.raft.raft;
        raft.maybe_free_inflight_buffers();
        raft.raft_log.unstable.entries.shrink_to_fit();
        raft.msgs.shrink_to_fit();
        self.raft.mut_store().shrink_cache();
        self.proposals.shrink_to_fit();
        self.pending_reads.shrink_to_fit();
        self.unpersisted_msgs.shrink_to_fit();
    }

    /// A peer loaded from disk as its store starts: sleeps from the start if its region
    /// may sleep, has other voters to elect a leader with, and is not a merge source
    /// (whose ticks drive the merge). Returns whether it sleeps.
    pub(super) fn sleep_from_start(&mut self) -> bool {
        let may_sleep = self.env.cfg.may_hibernate(self.region())
            && self.raft.store().is_initialized()
            && !self.followers().is_empty()
            && !self.is_merging();
        if may_sleep {
            metrics::HIBERNATING_PEERS.inc();
            self.hibernation.sleep_from_start(Instant::now());
            self.outbox.push(Effect::Asleep);
        }
        may_sleep
    }

    /// Wakes a sleeping peer: its timer starts again, and a follower moves its election
    /// clock on by the ticks it slept (see [`hibernate::caught_up_election_elapsed`]).
    /// `cause` decides how the others learn of it: not at all (its leader woke it), at
    /// once ([`Peer::announce_wake`]), or by the next ready unless its own messages do
    /// ([`Wake::Deferred`]). Returns whether the peer was asleep.
    pub(super) fn wake(&mut self, cause: Wake) -> bool {
        let Some(slept) = self
            .hibernation
            .wake(Instant::now(), self.env.cfg.base_tick())
        else {
            return false;
        };
        metrics::HIBERNATING_PEERS.dec();
        metrics::hibernation_transition("awake");
        debug!(slept_ticks = slept, ?cause, "waking up");
        self.start_ticking();
        if !self.is_leader() {
            let raft = &mut self.raft.raft;
            let timeout = raft.election_timeout();
            raft.election_elapsed =
                hibernate::caught_up_election_elapsed(raft.election_elapsed, slept, timeout);
        }
        match cause {
            Wake::ByLeader => {}
            Wake::Announce => self.announce_wake(),
            Wake::Deferred => self.wake_unannounced = true,
        }
        self.schedule_ready();
        true
    }

    /// Wakes the peer for something that needs a leader: a request, or its store's
    /// wake-up of a restarted peer whose region may have none. Woken knowing no leader
    /// (its store restarted), it campaigns at once rather than once its election clock
    /// runs out, one to ten ticks later; its (pre-)vote requests announce the wake-up.
    /// Pre-vote makes this harmless where a leader lives: the others, hearing from it,
    /// ignore the pre-candidate, and the leader, woken by it, pings it into a follower.
    pub(super) fn wake_needing_leader(&mut self) {
        if self.wake(Wake::Deferred)
            && !self.is_leader()
            && self.raft.raft.leader_id == raft::INVALID_ID
        {
            let _ = self.raft.campaign();
        }
    }

    /// Tells the other peers that this one is awake: a leader pings every follower,
    /// which wakes them; a follower wakes its leader, or every other voter if it knows no
    /// leader (the store just restarted), so that a live leader answers with a heartbeat
    /// within one round trip and a dead one's followers start counting towards an
    /// election.
    fn announce_wake(&mut self) {
        if self.is_leader() {
            self.raft.ping();
            return;
        }
        let leader = self.raft.raft.leader_id;
        if leader != raft::INVALID_ID {
            self.send_hibernation_message(leader, ExtraMessageType::MsgRegionWakeUp);
        } else {
            for id in self.followers() {
                self.send_hibernation_message(id, ExtraMessageType::MsgRegionWakeUp);
            }
        }
    }

    /// After a [`Wake::Deferred`], before the ready's messages go out: announces the
    /// wake-up unless they do it, that is unless a leader sends something to every
    /// follower, or a follower to its known leader. A raft message wakes its receiver,
    /// and a leader's resets its followers' election clocks as a heartbeat would.
    pub(super) fn announce_wake_unless_sent(&mut self) {
        if !std::mem::take(&mut self.wake_unannounced) {
            return;
        }
        let msgs = &self.raft.raft.msgs;
        let sent_to = |id: u64| msgs.iter().any(|m| m.to == id);
        let leader = self.raft.raft.leader_id;
        let announced = if self.is_leader() || leader == raft::INVALID_ID {
            // A leader's appends or heartbeats, a leaderless peer's (pre-)vote requests.
            self.followers().into_iter().all(sent_to)
        } else {
            sent_to(leader)
        };
        if !announced {
            self.announce_wake();
        }
    }

    /// A hibernation message from member peer `from`: a leader's request to sleep, a
    /// follower's agreement, or a follower's wake-up call. Other extra messages are
    /// ignored. Requests and agreements do not wake a sleeping peer.
    pub(super) fn on_hibernation_message(&mut self, from: metapb::Peer, extra: &ExtraMessage) {
        if !self.region().peers.contains(&from) {
            return;
        }
        match extra.r#type() {
            ExtraMessageType::MsgHibernateRequest => {
                let log = &self.raft.raft.raft_log;
                let view = FollowerView {
                    term: self.term(),
                    leader_id: self.raft.raft.leader_id,
                    last_index: log.last_index(),
                    committed: log.committed,
                    applied: self.raft.store().applied_index(),
                    quiet: !self.is_leader() && self.is_quiet(),
                };
                let agrees = self.env.cfg.may_hibernate(self.region())
                    && hibernate::follower_agrees(&view, from.id, extra.term, extra.index);
                if agrees {
                    self.send_hibernation_message(from.id, ExtraMessageType::MsgHibernateResponse);
                    self.sleep();
                }
            }
            ExtraMessageType::MsgHibernateResponse
                if self.is_leader() && !self.hibernation.is_asleep() =>
            {
                self.hibernation
                    .on_agreement(from.id, extra.term, extra.index);
                self.sleep_if_agreed();
            }
            ExtraMessageType::MsgRegionWakeUp => {
                self.wake(Wake::Announce);
            }
            _ => {}
        }
    }

    /// Sends a hibernation message of `kind` to peer `to`, naming this peer's term and
    /// last log index.
    pub(super) fn send_hibernation_message(&self, to: u64, kind: ExtraMessageType) {
        let Some(to_peer) = self.peer_cache.get(to) else {
            return;
        };
        metrics::hibernation_message_sent(kind);
        self.env.transport.send(RaftMessage {
            region_id: self.region_id,
            from_peer: Some(self.peer),
            to_peer: Some(to_peer),
            region_epoch: self.region().region_epoch,
            extra_msg: Some(ExtraMessage {
                r#type: kind as i32,
                term: self.term(),
                index: self.raft.raft.raft_log.last_index(),
                ..Default::default()
            }),
            ..Default::default()
        });
    }

    // ---- raft messages --------------------------------------------------------------
}
