//! Raft messages in and out: stepping inbound messages (verifying snapshots off the
//! actor's thread first, checking whether a stale sender's peer is gone), sending
//! raft's outbound messages through the transport, and generating snapshots.

use super::*;

impl Peer {
    /// The snapshot of [`Effect::GenerateSnapshot`] is made (or failed): raft may send
    /// it.
    pub fn on_snapshot_generated(&mut self, result: Result<eraftpb::Snapshot>) {
        self.generating_snapshot = false;
        self.schedule_ready();
        match result {
            Ok(snapshot) => {
                metrics::snapshot("generate", true);
                debug!(index = snapshot.get_metadata().index, "snapshot generated");
                self.raft.store().set_generated_snapshot(snapshot);
            }
            Err(e) => {
                metrics::snapshot("generate", false);
                warn!("snapshot generation failed: {e}");
            }
        }
    }

    pub(super) fn maybe_generate_snapshot(&mut self) {
        if !self.raft.store().take_snapshot_request() || self.generating_snapshot {
            return;
        }
        if self.is_merging() {
            // A frozen source's followers hold its log (no compaction while frozen); a
            // snapshot would not carry the frozen state. raft asks again later.
            return;
        }
        self.generating_snapshot = true;
        self.outbox.push(Effect::GenerateSnapshot);
    }

    pub(super) fn on_raft_message(&mut self, msg: RaftMessage) {
        let Some(to) = msg.to_peer else { return };
        if to.store_id != self.env.store_id {
            debug!(to = ?to, "dropping raft message for another store");
            return;
        }
        if stale_peer::is_check(&msg) {
            // Another store's peer asks how this store sees the region.
            let region = self.region();
            let view = (!region.peers.is_empty()).then_some(region);
            if let Some(answer) = stale_peer::answer(&msg, view, false) {
                self.env.transport.send(answer);
            }
            return;
        }
        if stale_peer::is_answer(&msg) {
            self.on_stale_check_answer(&msg);
            return;
        }
        let my_conf_ver = self.region().region_epoch.map_or(0, |e| e.conf_ver);
        let their_conf_ver = msg.region_epoch.map_or(0, |e| e.conf_ver);
        if to.id != self.peer.id && !msg.is_tombstone && their_conf_ver > my_conf_ver {
            // A newer membership may have another peer of the region on this store: this
            // one would then have been removed without learning it (a store holds one peer
            // per region). Peer ids say nothing about age: each store allocates from its
            // own id space.
            self.check_stale(
                "a newer peer of the region on this store was addressed",
                msg.from_peer,
            );
            return;
        }
        if !msg.dropped_proposals.is_empty() {
            if to.id == self.peer.id {
                self.on_dropped_proposals(msg.dropped_proposals);
            }
            return;
        }
        if msg.is_tombstone {
            let initialized = self.raft.store().is_initialized();
            if to.id == self.peer.id && their_conf_ver > my_conf_ver && initialized {
                self.check_stale("told it was removed from the region", msg.from_peer);
            }
            return;
        }
        // A stale sender is answered even when it addresses an earlier peer of this
        // store, long replaced.
        if self.raft.store().is_initialized() {
            if let Some(tombstone) = util::tombstone_for_stale_sender(&msg, self.region()) {
                self.env.transport.send(tombstone);
                return;
            }
        }
        let Some(from) = msg.from_peer else { return };
        if to.id != self.peer.id {
            debug!(to = ?to, "dropping raft message for an earlier peer of this store");
            return;
        }
        let known = self.region().peers.iter().find(|p| p.id == from.id);
        if known.is_some_and(|p| p.store_id != from.store_id) {
            warn!(from = ?from, "dropping a raft message from a member peer on the wrong store");
            metrics::message_refused("wrong_store");
            return;
        }
        self.hibernation.heard_from(from.id, Instant::now());
        if let Some(extra) = &msg.extra_msg {
            self.on_hibernation_message(from, extra);
            return;
        }
        let Some(inner) = &msg.message else { return };
        self.wake(if from.id == self.raft.raft.leader_id {
            Wake::ByLeader
        } else {
            Wake::Deferred
        });
        let message: eraftpb::Message = match to_raft(inner) {
            Ok(m) => m,
            Err(e) => {
                warn!("dropping undecodable raft message: {e}");
                return;
            }
        };
        let log = inbound::LocalLog {
            last_index: self.raft.raft.raft_log.last_index(),
            leader_id: self.raft.raft.leader_id,
        };
        if let Err(why) = inbound::check_message(&message, &from, &to, &log) {
            warn!(from = ?from, kind = ?message.get_msg_type(), "dropping a raft message raft could not take: {why}");
            metrics::message_refused("malformed");
            return;
        }
        self.peer_cache.insert(from);
        if message.get_msg_type() == eraftpb::MessageType::MsgSnapshot {
            self.verify_snapshot_then_step(message);
            return;
        }
        self.forget_leader_asking_for_votes(&message);
        // A leader not handing its leadership over always takes a forwarded write (there
        // is no limit on uncommitted entries); only otherwise may raft drop it, and only
        // then are the writes named, to tell the follower.
        let may_drop = !self.is_leader() || self.raft.raft.lead_transferee.is_some();
        let forwarded = (may_drop
            && message.get_msg_type() == eraftpb::MessageType::MsgPropose
            && message.from != self.peer.id)
            .then(|| inbound::check_forwarded_proposal(&message).unwrap_or_default());
        if let Err(e) = self.step(message) {
            debug!("raft rejected message: {e}");
            if let Some(uuids) = forwarded {
                self.notify_dropped_proposals(from, uuids);
            }
        }
    }

    /// A follower asked for its vote, in a later term, by the very peer it follows: that
    /// leader no longer leads (its store restarted, or it stepped down), so the lease that
    /// makes a follower ignore candidates for an election timeout after hearing from its
    /// leader protects nobody, and the follower forgets the leader before raft weighs the
    /// request. Without this a leader's store restarting over sleeping regions waits,
    /// region by region, for the followers' election clocks to run out before anyone is
    /// elected. A candidate other than the leader still meets the lease; and a leader that
    /// still held a lease would be asking for nothing (a leader never campaigns).
    fn forget_leader_asking_for_votes(&mut self, message: &eraftpb::Message) {
        let asks_for_vote = matches!(
            message.get_msg_type(),
            eraftpb::MessageType::MsgRequestPreVote | eraftpb::MessageType::MsgRequestVote
        );
        let raft = &mut self.raft.raft;
        if asks_for_vote
            && raft.state == StateRole::Follower
            && message.from == raft.leader_id
            && message.term > raft.term
        {
            debug!(
                leader = raft.leader_id,
                "the leader asks for votes: it leads no more"
            );
            raft.leader_id = raft::INVALID_ID;
        }
    }

    /// Steps `message` into raft. raft-rs asserts its peers' promises instead of checking
    /// them; [`inbound::check_message`] refuses every message known to break one, and if
    /// one still makes raft panic, the panic is contained and the peer restarts from its
    /// state on disk (see [`Peer::contain_raft`]).
    pub(super) fn step(&mut self, message: eraftpb::Message) -> raft::Result<()> {
        let (kind, from) = (message.get_msg_type(), message.from);
        #[cfg(test)]
        let must_panic = std::mem::take(&mut self.panic_on_next_step);
        #[cfg(not(test))]
        let must_panic = false;
        let stepped = self.contain_raft(
            || format!("a {kind:?} message from {from}"),
            |raft| {
                if must_panic {
                    panic!("raft asserts on a message (injected by a test)");
                }
                raft.step(message)
            },
        );
        stepped.unwrap_or(Ok(()))
    }

    /// Verifies a snapshot from the leader before raft sees it, off the actor's thread
    /// (it decodes and checksums the whole region): its data (counts, checksums, every
    /// key inside its range), that it is for this peer of this region and not older than
    /// the region this peer holds, and (asking the Router) that no other local region
    /// overlaps its range. Only then is it stepped; otherwise it is dropped, and raft
    /// sends another one if it was real.
    pub(super) fn verify_snapshot_then_step(&mut self, message: eraftpb::Message) {
        if self.verifying_snapshot {
            debug!("a snapshot is being verified already; dropping another");
            return;
        }
        self.verifying_snapshot = true;
        self.outbox.push(Effect::VerifySnapshot(Box::new(message)));
    }

    /// The verification of [`Effect::VerifySnapshot`] finished: a verified snapshot is
    /// stepped, one that failed is dropped.
    pub fn on_snapshot_verified(
        &mut self,
        checked: std::result::Result<(eraftpb::Message, snapshot::VerifiedSnapshot), String>,
    ) {
        self.verifying_snapshot = false;
        if self.destroyed {
            return;
        }
        match checked {
            Ok((message, verified)) => {
                self.verified_snapshot = Some(Box::new(verified));
                if let Err(e) = self.step(message) {
                    debug!("raft rejected a snapshot: {e}");
                }
                self.schedule_ready();
            }
            Err(why) => {
                metrics::snapshot("receive", false);
                warn!("dropping a snapshot that failed verification: {why}");
            }
        }
    }

    /// Refuses a snapshot of an older region than the one this (initialized) peer holds.
    pub fn check_snapshot_epoch(
        &self,
        message: eraftpb::Message,
        verified: snapshot::VerifiedSnapshot,
    ) -> std::result::Result<(eraftpb::Message, snapshot::VerifiedSnapshot), String> {
        let (mine, theirs) = (
            self.region().region_epoch.unwrap_or_default(),
            verified.region.region_epoch.unwrap_or_default(),
        );
        if self.raft.store().is_initialized()
            && (theirs.version < mine.version || theirs.conf_ver < mine.conf_ver)
        {
            return Err(format!(
                "its region epoch {theirs:?} is older than this peer's {mine:?}"
            ));
        }
        Ok((message, verified))
    }

    /// [`CheckMembership`]: a sleeping follower with a region asks the other stores
    /// whether it is still a member, and stays asleep. An awake peer needs no asking: a
    /// leader knows it is a member, and a removed follower stops hearing from its leader,
    /// campaigns, and is answered with a tombstone (a follower that is merely behind, e.g.
    /// on a split its range is in the way of, catches up by itself).
    pub fn on_membership_check(&mut self) {
        if self.destroyed
            || self.is_leader()
            || !self.hibernation.is_asleep()
            || !self.raft.store().is_initialized()
        {
            return;
        }
        self.check_stale("asleep with no word from a leader", None);
    }

    /// Starts making sure that this peer was removed from its region, as a message from
    /// `from` (if any) claims (see [`stale_peer`]); it destroys itself only once another
    /// store confirms.
    pub(super) fn check_stale(&mut self, reason: &str, from: Option<metapb::Peer>) {
        let base_tick = self.env.cfg.base_tick();
        if self
            .stale_check
            .as_ref()
            .is_some_and(|c| c.is_running(base_tick))
        {
            return;
        }
        info!(reason, from = ?from, "asking the other stores whether this peer was removed");
        let (check, questions) = StaleCheck::start(self.region(), &self.peer, from);
        self.stale_check = Some(check);
        for question in questions {
            self.env.transport.send(question);
        }
    }

    pub(super) fn on_stale_check_answer(&mut self, answer: &RaftMessage) {
        let confirmed = self
            .stale_check
            .as_ref()
            .is_some_and(|check| check.confirms(answer, self.region(), &self.peer));
        if confirmed {
            let by = answer.from_peer.map_or(0, |p| p.store_id);
            info!(
                confirmed_by = by,
                "another store confirms that this peer was removed"
            );
            self.stale_check = None;
            self.destroy("removed from the region (confirmed by another store)");
        }
    }

    pub(super) fn send_messages(&mut self, messages: Vec<eraftpb::Message>) {
        for m in messages {
            let Some(to_peer) = self.peer_cache.get(m.to) else {
                warn!(to = m.to, "no address for peer, dropping message");
                continue;
            };
            let region = self.region();
            let mut out = RaftMessage {
                region_id: self.region_id,
                from_peer: Some(self.peer),
                to_peer: Some(to_peer),
                region_epoch: region.region_epoch,
                ..Default::default()
            };
            if util::is_initial_msg(&m) {
                out.start_key = region.start_key.clone();
                out.end_key = region.end_key.clone();
            }
            out.message = Some(from_raft(&m));
            metrics::message_sent(m.get_msg_type());
            self.env.transport.send(out);
        }
    }

    // ---- ready ----------------------------------------------------------------------
}
