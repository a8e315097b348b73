//! Proposing: checking a client or admin command against this peer's view (store,
//! leadership, term, epoch, key range), batching small writes, forwarding a follower's
//! writes to its leader through raft, membership changes, splits and leader transfers,
//! and keeping every proposal's callback until its entry applies or is overwritten.

use super::*;

impl Peer {
    pub(super) fn check_command(&self, request: &mut RaftCmdRequest) -> Result<()> {
        validation::check_command(request)?;
        let header = request.header.get_or_insert_with(Default::default).clone();
        if let Some(peer) = &header.peer {
            if peer.store_id != self.env.store_id {
                return Err(Error::StoreNotMatch {
                    request_store_id: peer.store_id,
                    actual_store_id: self.env.store_id,
                });
            }
        }
        // A command naming a term, or asking for the leader, is served by the leader
        // itself: a follower's read or forwarded write would decide or propose outside
        // the leadership the caller binds it to.
        let leader_only = header.leader_only || header.term != 0;
        if !self.is_leader()
            && (leader_only
                || (!self.can_read_as_follower(request) && !self.can_forward_write(request)))
        {
            return Err(self.not_leader());
        }
        if let Some(peer) = &header.peer {
            if peer.id != self.peer.id {
                return Err(Error::InvalidRequest(format!(
                    "request names peer {} but this is peer {}",
                    peer.id, self.peer.id
                )));
            }
        }
        // A command naming a term is proposed only in that term: the placement driver
        // writes its metadata this way, so that a write decided on a view read in an
        // earlier term of leadership can never commit.
        if header.term != 0 && header.term != self.term() {
            return Err(Error::StaleCommand);
        }
        let region = self.region();
        match &header.region_epoch {
            Some(_) => util::check_region_epoch(request, region)?,
            None => {
                // Routed by key: this peer's current view is the reference.
                for req in &request.requests {
                    if let Some(key) = util::request_key(req) {
                        util::check_key_in_region(key, region)?;
                    }
                }
            }
        }
        let header = request.header.get_or_insert_with(Default::default);
        if header.region_epoch.is_none() {
            header.region_epoch = region.region_epoch;
        }
        header.region_id = self.region_id;
        Ok(())
    }

    pub(super) fn on_command(&mut self, cmd: RaftCommand) {
        let RaftCommand {
            mut request,
            callback,
        } = cmd;
        if self.destroyed {
            // Stopping (its actor waits for its ApplyFsm): nothing is proposed.
            return respond_error(callback, &Error::Stopped, self.term());
        }
        self.wake_needing_leader();
        let admin_type = request.admin_request.as_ref().map(|a| a.cmd_type());
        if self.is_merging() {
            // Frozen: nothing is proposed but the merge's own commands (which the peer
            // makes itself, not through here).
            metrics::proposal_dropped("refused");
            respond_error(callback, &self.merging_error(), self.term());
            return;
        }
        if admin_type == Some(AdminCmdType::CommitMerge) {
            if let Err(e) = validation::check_command(&request) {
                return respond_error(callback, &e, self.term());
            }
            self.on_commit_merge(request, callback);
            self.schedule_ready();
            return;
        }
        if let Err(e) = self.check_command(&mut request) {
            metrics::proposal_dropped("refused");
            respond_error(callback, &e, self.term());
            return;
        }
        if let Some(admin) = &request.admin_request {
            match admin.cmd_type() {
                AdminCmdType::TransferLeader => self.transfer_leader(&request, callback),
                AdminCmdType::CompactLog => self.propose_write(request, callback),
                AdminCmdType::ChangePeer => self.propose_conf_change(request, callback),
                AdminCmdType::Split | AdminCmdType::BatchSplit => {
                    self.propose_split(request, callback)
                }
                AdminCmdType::PrepareMerge => self.propose_prepare_merge(request, callback),
                other => respond_error(
                    callback,
                    &Error::InvalidRequest(format!("admin command {other:?} is not supported")),
                    self.term(),
                ),
            }
            self.schedule_ready();
            return;
        }
        if request.requests.is_empty() {
            respond_error(
                callback,
                &Error::InvalidRequest("command has no requests".into()),
                self.term(),
            );
            return;
        }
        if util::is_read_only(&request) {
            self.propose_read(request, callback);
        } else if ProposalBatch::accepts(&request) {
            if !self.write_batch.fits(&request) {
                self.flush_writes();
            }
            self.write_batch.push(request, callback);
            if self.write_batch.bytes() >= MAX_BATCH_BYTES {
                self.flush_writes();
            }
        } else if self.is_leader() {
            self.propose_write(request, callback);
        } else {
            self.forward_write(request, callback);
        }
        self.schedule_ready();
    }

    /// Proposes the writes batched since the last ready as one command: as leader, or
    /// forwarded to the leader; refused if this peer can do neither any more.
    pub(super) fn flush_writes(&mut self) {
        let Some((request, callback)) = self.write_batch.take() else {
            return;
        };
        // One entry serves every request named here.
        let ids: Option<Vec<String>> = tracing::enabled!(tracing::Level::DEBUG).then(|| {
            request
                .requests
                .iter()
                .filter(|r| !r.trace_id.is_empty())
                .map(|r| util::trace_id_text(&r.trace_id).into_owned())
                .collect()
        });
        let writes = request.requests.len();
        if self.is_leader() {
            self.propose_write(request, callback);
        } else if self.can_forward_write(&request) {
            self.forward_write(request, callback);
        } else {
            metrics::proposal_dropped("refused");
            respond_error(callback, &self.not_leader(), self.term());
            return;
        }
        if let Some(ids) = ids {
            // As leader, the entry's index: the raft-log writer's `batch written` line
            // that lists this region at or past it made the entry durable here.
            let last = self.raft.raft.raft_log.last_index();
            let proposed =
                self.is_leader() && self.proposals.back().is_some_and(|p| p.index == last);
            let index = proposed.then_some(last);
            tracing::debug!(writes, request_ids = ?ids, index, "proposing writes");
        }
    }

    /// Leader transfer is not replicated: raft starts it and the command is answered at
    /// once; the client watches the leader change.
    pub(super) fn transfer_leader(&mut self, request: &RaftCmdRequest, callback: Callback) {
        let target = request
            .admin_request
            .as_ref()
            .and_then(|a| a.transfer_leader.as_ref())
            .and_then(|t| t.peer);
        let Some(target) = target.filter(|t| self.region().peers.contains(t)) else {
            let e = Error::InvalidRequest("transfer target is not a peer of the region".into());
            respond_error(callback, &e, self.term());
            return;
        };
        if target.id != self.peer.id {
            // The target will campaign at once, regardless of the followers' lease.
            self.lease_until = None;
            self.lease_fence = Instant::now();
            self.raft.transfer_leader(target.id);
        }
        let response = RaftCmdResponse {
            header: Some(RaftResponseHeader {
                current_term: self.term(),
                ..Default::default()
            }),
            admin_response: Some(AdminResponse {
                cmd_type: AdminCmdType::TransferLeader as i32,
                transfer_leader: Some(TransferLeaderResponse {}),
                ..Default::default()
            }),
            ..Default::default()
        };
        let _ = callback.send(CmdResponse {
            response,
            snapshot: None,
            stages: None,
        });
    }

    /// Proposes a membership change as a raft conf change whose context is the command.
    /// One change at a time: a change proposed while another is unapplied is refused.
    pub(super) fn propose_conf_change(&mut self, request: RaftCmdRequest, callback: Callback) {
        let term = self.term();
        let Some(change) = request.admin_request.as_ref().and_then(|a| a.change_peer) else {
            let e = Error::InvalidRequest("ChangePeer without its request".into());
            return respond_error(callback, &e, term);
        };
        let Some(peer) = change.peer else {
            let e = Error::InvalidRequest("ChangePeer without a peer".into());
            return respond_error(callback, &e, term);
        };
        if self.raft.raft.has_pending_conf() {
            let e = Error::InvalidRequest(
                "another membership change of this region is still being applied".into(),
            );
            return respond_error(callback, &e, term);
        }
        let mut cc = ConfChange::default();
        cc.set_change_type(match change.change_type() {
            tinykv_proto::eraftpb::ConfChangeType::AddNode => ConfChangeType::AddNode,
            tinykv_proto::eraftpb::ConfChangeType::RemoveNode => ConfChangeType::RemoveNode,
            tinykv_proto::eraftpb::ConfChangeType::AddLearnerNode => {
                let e = Error::InvalidRequest("learners are not supported".into());
                return respond_error(callback, &e, term);
            }
        });
        if cc.get_change_type() == ConfChangeType::RemoveNode {
            let voters = self.raft.raft.prs().conf().voters().ids();
            if voters.len() == 1 && voters.contains(peer.id) {
                let e = Error::InvalidRequest(format!(
                    "cannot remove peer {} of region {}: it is the last one",
                    peer.id, self.region_id
                ));
                return respond_error(callback, &e, term);
            }
        }
        if let Some(successor) = self.successor_before_removing_self(&cc, &peer) {
            // See `successor_before_removing_self`: hand over first; the client retries
            // the removal at the new leader, where it is a plain follower removal.
            self.raft.transfer_leader(successor.id);
            let e = Error::NotLeader {
                region_id: self.region_id,
                leader: Some(successor),
            };
            return respond_error(callback, &e, term);
        }
        cc.node_id = peer.id;
        cc.context = request.encode_to_vec().into();
        let last_before = self.raft.raft.raft_log.last_index();
        let accepted = self.raft.propose_conf_change(vec![], cc).is_ok();
        self.track_proposal(last_before, accepted, "conf_change", callback);
    }

    /// The peer that must lead before this leader may propose removing itself, if any.
    ///
    /// A leader destroys itself as soon as it applies its own removal, possibly before
    /// telling anyone that the entry committed. With three or more voters that is
    /// harmless: the others still form a majority of the old configuration, elect a
    /// leader and commit the entry themselves. With two voters it is fatal: the survivor
    /// holds the entry but not its commit, still counts the removed leader as a voter, and
    /// can never win an election again. So in a two-voter region the leader transfers
    /// leadership to the other voter instead, and that one removes this peer as a follower.
    pub(super) fn successor_before_removing_self(
        &self,
        cc: &ConfChange,
        peer: &metapb::Peer,
    ) -> Option<metapb::Peer> {
        if cc.get_change_type() != ConfChangeType::RemoveNode || peer.id != self.peer.id {
            return None;
        }
        let voters = self.raft.raft.prs().conf().voters().ids();
        if voters.len() != 2 {
            return None;
        }
        let other = voters.iter().find(|&id| id != self.peer.id)?;
        self.region().peers.iter().find(|p| p.id == other).cloned()
    }

    /// Proposes a split or a batch split whose keys all lie strictly inside the region
    /// (their order and ids were checked with the command).
    pub(super) fn propose_split(&mut self, request: RaftCmdRequest, callback: Callback) {
        let admin = request.admin_request.as_ref();
        let keys: Vec<&[u8]> = match admin.and_then(|a| a.batch_split.as_ref()) {
            Some(batch) => batch.requests.iter().map(|s| &s.split_key[..]).collect(),
            None => admin
                .and_then(|a| a.split.as_ref())
                .map(|s| vec![&s.split_key[..]])
                .unwrap_or_default(),
        };
        let region = self.region();
        let checked = keys
            .iter()
            .try_for_each(|key| util::check_split_key_in_region(key, region));
        match checked {
            Ok(()) => self.propose_write(request, callback),
            Err(e) => respond_error(callback, &e, self.term()),
        }
    }

    /// Proposes freezing this region to merge it into its neighbour: the target must be
    /// adjacent with peers on the same stores (checked again when it applies), and
    /// every follower must be there to hold the log until the merge completes.
    pub(super) fn propose_prepare_merge(&mut self, request: RaftCmdRequest, callback: Callback) {
        let target = request
            .admin_request
            .as_ref()
            .and_then(|a| a.prepare_merge.as_ref())
            .and_then(|p| p.target.clone())
            .unwrap_or_default();
        if let Err(e) = util::check_merge_pair(self.region(), &target) {
            return respond_error(callback, &e, self.term());
        }
        let lagging = self.pending_peers();
        if !lagging.is_empty() {
            let e = Error::ServerIsBusy(format!(
                "region {} has peers catching up ({lagging:?}); merge it later",
                self.region_id
            ));
            return respond_error(callback, &e, self.term());
        }
        self.propose_write(request, callback);
    }

    pub(super) fn propose_write(&mut self, request: RaftCmdRequest, callback: Callback) {
        let last_before = self.raft.raft.raft_log.last_index();
        let accepted = self.raft.propose(vec![], request.encode_to_vec()).is_ok();
        self.track_proposal(
            last_before,
            accepted,
            metrics::proposal_kind(&request),
            callback,
        );
    }

    /// A follower that heard from its leader within the election timeout proposes a
    /// client write through raft, which forwards it to the leader (instead of the node
    /// forwarding the request over HTTP). The command gets a `uuid`; the ApplyFsm answers
    /// it when this peer applies the entry carrying that uuid. Raft refusing it here
    /// answers "not leader" at once. A leader that does not take it (it no longer leads,
    /// or is transferring) says so in a `dropped_proposals` message, and the write is
    /// answered "not leader" (not appended: retryable) by [`Self::on_dropped_proposals`];
    /// if the leader changes before it applies, it is answered `Timeout` (outcome unknown,
    /// retried on the new leader under its session) by
    /// [`Self::abandon_proposals_of_old_leader`]. The epoch was checked against this
    /// peer's view and is checked again when the entry applies.
    pub(super) fn forward_write(&mut self, mut request: RaftCmdRequest, callback: Callback) {
        let uuid = util::unique_proposal_id(self.env.store_id);
        request.header.get_or_insert_with(Default::default).uuid = uuid.clone();
        if self.raft.propose(vec![], request.encode_to_vec()).is_err() {
            metrics::proposal_dropped("dropped");
            respond_error(callback, &self.not_leader(), self.term());
            return;
        }
        metrics::proposed("forwarded");
        self.forwarded.push(ForwardedProposal {
            uuid,
            callback,
            proposed_at: Instant::now(),
        });
    }

    /// Whether this follower may forward `request` to its leader through raft: a client
    /// write (no admin command) or a merge's CommitMerge, with a leader heard from within
    /// the election timeout.
    pub(super) fn can_forward_write(&self, request: &RaftCmdRequest) -> bool {
        let raft = &self.raft.raft;
        let forwardable = match &request.admin_request {
            None => !request.requests.is_empty() && !util::is_read_only(request),
            Some(admin) => admin.cmd_type() == AdminCmdType::CommitMerge,
        };
        forwardable
            && raft.leader_id != raft::INVALID_ID
            && raft.state == StateRole::Follower
            && raft.election_elapsed < raft.election_timeout()
    }

    /// Remembers a command raft took as the new last entry of the log, to answer once it
    /// applies; one that raft refused or dropped silently (the log did not grow past
    /// `last_before`, e.g. during a leader transfer) is answered "not leader" now.
    pub(super) fn track_proposal(
        &mut self,
        last_before: u64,
        accepted: bool,
        kind: &'static str,
        callback: Callback,
    ) {
        let index = self.raft.raft.raft_log.last_index();
        if !accepted || index == last_before {
            metrics::proposal_dropped("dropped");
            respond_error(callback, &self.not_leader(), self.term());
            return;
        }
        metrics::proposed(kind);
        self.proposals.push_back(Proposal {
            index,
            term: self.term(),
            callback,
            proposed_at: Instant::now(),
            persisted_at: None,
        });
    }

    /// Tells a follower that the writes it forwarded were not taken (this peer no longer
    /// leads, or is transferring its leadership), so that it fails them as retryable
    /// instead of letting its clients wait for a timeout.
    pub(super) fn notify_dropped_proposals(&mut self, to: metapb::Peer, uuids: Vec<Vec<u8>>) {
        if uuids.is_empty() {
            return;
        }
        debug!(
            to = to.id,
            count = uuids.len(),
            "forwarded proposals dropped"
        );
        self.env.transport.send(RaftMessage {
            region_id: self.region_id,
            from_peer: Some(self.peer),
            to_peer: Some(to),
            region_epoch: self.region().region_epoch,
            dropped_proposals: uuids,
            ..Default::default()
        });
    }

    /// Fails the forwarded writes the leader reports it did not take: not appended, so
    /// the client may retry them.
    pub(super) fn on_dropped_proposals(&mut self, uuids: Vec<Vec<u8>>) {
        let err = self.not_leader();
        let term = self.term();
        for p in self.forwarded.extract_if(.., |p| uuids.contains(&p.uuid)) {
            respond_error(p.callback, &err, term);
        }
        self.outbox
            .push(Effect::Apply(ToApply::DropForwarded(DropForwarded {
                uuids: Some(uuids),
                error: err,
            })));
    }

    /// The leader changed: writes this peer proposed as leader, or forwarded to the old
    /// leader, may or may not commit. Their clients are answered at once with
    /// [`Error::Timeout`] (outcome unknown) rather than after their whole timeout: a
    /// client write names a session, so the node retries it on the new leader, where it
    /// applies at most once whichever copy commits.
    pub(super) fn abandon_proposals_of_old_leader(&mut self) {
        let term = self.term();
        let own = if self.is_leader() {
            VecDeque::new()
        } else {
            std::mem::take(&mut self.proposals)
        };
        for p in own {
            respond_error(p.callback, &Error::Timeout, term);
        }
        for p in self.forwarded.drain(..) {
            respond_error(p.callback, &Error::Timeout, term);
        }
        self.outbox
            .push(Effect::Apply(ToApply::DropForwarded(DropForwarded {
                uuids: None,
                error: Error::Timeout,
            })));
    }

    /// Entries from a new leader replace this peer's log from their first index on: a
    /// proposal this peer made (as an old leader) at one of those indexes, or past the new
    /// end of the log, with another term can never commit, so it is answered now rather
    /// than when the index eventually commits.
    pub(super) fn drop_overwritten_proposals(&mut self, entries: &[eraftpb::Entry]) {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return;
        };
        let (first_index, last_index) = (first.index, last.index);
        let term_at = |index: u64| entries[(index - first_index) as usize].term;
        let term = self.term();
        let mut kept = VecDeque::with_capacity(self.proposals.len());
        for p in self.proposals.drain(..) {
            let overwritten =
                p.index >= first_index && (p.index > last_index || term_at(p.index) != p.term);
            if overwritten {
                respond_error(p.callback, &Error::StaleCommand, term);
            } else {
                kept.push_back(p);
            }
        }
        self.proposals = kept;
    }
}
