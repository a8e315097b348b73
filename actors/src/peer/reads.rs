//! Reads: linearizable reads through raft's ReadIndex (or the leader's lease when
//! `lease_reads` is on), batched so that all reads waiting at one moment share one
//! request, served from the engine once the state machine has applied that far; a
//! follower asks its leader for the index and serves the read itself.

use super::*;

/// A read waiting for its ReadIndex to be confirmed and applied.
pub(super) struct PendingRead {
    pub(super) request: RaftCmdRequest,
    pub(super) callback: Callback,
    /// The ReadIndex request this read rides on, once raft was asked (it ignores the
    /// request until the leader has committed an entry of its own term, so the ask waits
    /// until then). All reads waiting at that moment share one request. With the moment
    /// it was asked.
    pub(super) batch: Option<(u64, Instant)>,
    pub(super) read_index: Option<u64>,
}

/// The context of a ReadIndex request: the asking peer's id and its batch number. The
/// leader keeps its pending requests keyed by context and ignores a request whose context
/// is already pending, so contexts must differ across peers: with bare batch numbers, two
/// followers' batches with the same number met at the leader and the second was dropped,
/// its reads answered only after an election timeout.
pub(super) fn read_context(peer_id: u64, batch: u64) -> Vec<u8> {
    let mut ctx = Vec::with_capacity(16);
    ctx.extend_from_slice(&peer_id.to_be_bytes());
    ctx.extend_from_slice(&batch.to_be_bytes());
    ctx
}

/// The batch number of a ReadIndex context of `peer_id`'s making.
pub(super) fn read_batch(peer_id: u64, ctx: &[u8]) -> Option<u64> {
    let (peer, batch) = ctx.split_at_checked(8)?;
    let peer = u64::from_be_bytes(peer.try_into().ok()?);
    let batch = u64::from_be_bytes(batch.try_into().ok()?);
    (peer == peer_id).then_some(batch)
}

impl Peer {
    pub(super) fn propose_read(&mut self, request: RaftCmdRequest, callback: Callback) {
        let read_index = self.lease_read_index();
        self.pending_reads.push_back(PendingRead {
            request,
            callback,
            batch: None,
            read_index,
        });
        if read_index.is_some() {
            metrics::proposed("lease_read");
            self.serve_reads();
        } else {
            self.issue_reads();
        }
    }

    /// With `lease_reads`, the index a read may be served at without a heartbeat round:
    /// the commit index, while this leader's lease runs, no leader transfer is under way
    /// (a transfer's target campaigns at once, ignoring the followers' lease) and an entry
    /// of its term has committed.
    pub(super) fn lease_read_index(&self) -> Option<u64> {
        let valid = self.env.cfg.lease_reads
            && self.is_leader()
            && self.raft.raft.lead_transferee.is_none()
            && self.lease_until.is_some_and(|until| Instant::now() < until)
            && self.committed_in_current_term();
        valid.then_some(self.raft.raft.raft_log.committed)
    }

    /// A heartbeat round that started at `asked_at` confirmed this leader: no follower
    /// that answered will vote for anyone else for an election timeout, so the lease runs
    /// 4/5 of that from `asked_at` (the rest is margin for clock drift). Rounds started
    /// before the last leader transfer began do not count.
    pub(super) fn renew_lease(&mut self, asked_at: Instant) {
        if !self.env.cfg.lease_reads
            || !self.is_leader()
            || self.raft.raft.lead_transferee.is_some()
            || asked_at <= self.lease_fence
        {
            return;
        }
        let until = asked_at + self.env.cfg.election_timeout() * 4 / 5;
        self.lease_until = Some(self.lease_until.map_or(until, |current| current.max(until)));
    }

    /// Whether the leader has committed an entry of its current term, which raft requires
    /// before it answers a ReadIndex request.
    pub(super) fn committed_in_current_term(&self) -> bool {
        let log = &self.raft.raft.raft_log;
        log.term(log.committed).unwrap_or(0) == self.term()
    }

    /// Whether this follower may serve `request` itself: a read, while it knows a leader.
    /// It asks the leader for a read index through raft (cheaper than forwarding the
    /// request to the leader's node) and serves the read once it has applied that far,
    /// which is as linearizable as a read on the leader.
    pub(super) fn can_read_as_follower(&self, request: &RaftCmdRequest) -> bool {
        request.admin_request.is_none()
            && !request.requests.is_empty()
            && util::is_read_only(request)
            && self.raft.raft.leader_id != raft::INVALID_ID
    }

    /// Asks raft for one read index covering every read that has not asked yet, once it
    /// can: one heartbeat round confirms leadership for all of them. A leader asks once it
    /// has committed an entry of its term; a follower asks its leader through raft.
    pub(super) fn issue_reads(&mut self) {
        let unasked = |r: &PendingRead| r.batch.is_none() && r.read_index.is_none();
        if !self.pending_reads.iter().any(unasked) {
            return;
        }
        if self.is_leader() {
            if !self.committed_in_current_term() {
                return;
            }
        } else if self.raft.raft.leader_id == raft::INVALID_ID {
            return;
        }
        let batch = self.next_read_id;
        let mut any = false;
        let now = Instant::now();
        for read in self.pending_reads.iter_mut().filter(|r| unasked(r)) {
            read.batch = Some((batch, now));
            any = true;
        }
        if any {
            self.next_read_id += 1;
            metrics::proposed("read_index");
            self.raft.read_index(read_context(self.raft.raft.id, batch));
        }
    }

    pub(super) fn on_read_state(&mut self, state: raft::ReadState) {
        let Some(batch) = read_batch(self.raft.raft.id, &state.request_ctx) else {
            return;
        };
        let mut asked_at = None;
        for read in self
            .pending_reads
            .iter_mut()
            .filter(|r| r.batch.is_some_and(|(b, _)| b == batch))
        {
            read.read_index = Some(state.index);
            asked_at = read.batch.map(|(_, at)| at);
        }
        if let Some(asked_at) = asked_at {
            self.renew_lease(asked_at);
        }
    }

    /// Serves every pending read whose index the state machine has reached. Not while a
    /// snapshot is being persisted: the storage already reports the snapshot's index as
    /// applied, but its data reaches the engine only with that write, and a read served
    /// in between would miss it.
    pub(super) fn serve_reads(&mut self) {
        if self.persisting_snapshot.is_some() {
            return;
        }
        let applied = self.raft.store().applied_index();
        let mut waiting = VecDeque::with_capacity(self.pending_reads.len());
        for read in std::mem::take(&mut self.pending_reads) {
            match read.read_index {
                Some(index) if index <= applied => {
                    let response = self.execute_read(&read.request);
                    let _ = read.callback.send(response);
                }
                _ => waiting.push_back(read),
            }
        }
        self.pending_reads = waiting;
    }

    pub(super) fn execute_read(&self, request: &RaftCmdRequest) -> CmdResponse {
        let term = self.term();
        let region = self.region().clone();
        let snapshot = self.env.engine.snapshot();
        let region_snapshot = RegionSnapshot { region, snapshot };
        let mut responses = Vec::with_capacity(request.requests.len());
        let mut wants_snapshot = false;
        for req in &request.requests {
            let response = match req.cmd_type() {
                CmdType::Get => {
                    let get = req.get.clone().unwrap_or_default();
                    let value =
                        Cf::from_name(&get.cf).and_then(|cf| region_snapshot.get(cf, &get.key));
                    match value {
                        Ok(value) => Response {
                            cmd_type: CmdType::Get as i32,
                            get: Some(GetResponse {
                                value: value.unwrap_or_default(),
                            }),
                            ..Default::default()
                        },
                        Err(e) => return CmdResponse::error(&e, term),
                    }
                }
                CmdType::Snap => {
                    wants_snapshot = true;
                    Response {
                        cmd_type: CmdType::Snap as i32,
                        snap: Some(SnapResponse {
                            region: Some(region_snapshot.region.clone()),
                        }),
                        ..Default::default()
                    }
                }
                other => {
                    let e = Error::InvalidRequest(format!("{other:?} is not a read"));
                    return CmdResponse::error(&e, term);
                }
            };
            responses.push(response);
        }
        CmdResponse {
            response: RaftCmdResponse {
                header: Some(RaftResponseHeader {
                    current_term: term,
                    ..Default::default()
                }),
                responses,
                admin_response: None,
            },
            snapshot: wants_snapshot.then_some(region_snapshot),
            stages: None,
        }
    }

    /// A follower's ReadIndex request can be lost (a leader that has not yet committed an
    /// entry of its term ignores it; messages drop). Reads that waited an election timeout
    /// for their index are answered "not leader", naming the leader, and the client asks
    /// the leader itself.
    pub(super) fn expire_follower_reads(&mut self) {
        if self.is_leader() {
            return;
        }
        let patience = self.env.cfg.election_timeout();
        self.fail_reads_where(|r| {
            r.read_index.is_none() && r.batch.is_some_and(|(_, at)| at.elapsed() > patience)
        });
    }

    pub(super) fn fail_reads_without_index(&mut self) {
        self.fail_reads_where(|r| r.read_index.is_none());
    }

    /// Answers "not leader" (naming the leader, if known) to every pending read that
    /// `fails` picks; the others keep waiting.
    pub(super) fn fail_reads_where(&mut self, fails: impl Fn(&PendingRead) -> bool) {
        if !self.pending_reads.iter().any(&fails) {
            return;
        }
        let err = self.not_leader();
        let term = self.term();
        let mut kept = VecDeque::with_capacity(self.pending_reads.len());
        for read in std::mem::take(&mut self.pending_reads) {
            if fails(&read) {
                respond_error(read.callback, &err, term);
            } else {
                kept.push_back(read);
            }
        }
        self.pending_reads = kept;
    }

    // ---- ticks and hibernation -------------------------------------------------------
}

#[cfg(test)]
mod tests {
    use super::{read_batch, read_context};

    #[test]
    fn read_contexts_of_different_peers_never_collide() {
        // Two followers' batches with the same number reach the leader at once: raft-rs
        // keeps pending ReadIndex requests by context, so equal contexts lose one.
        assert_ne!(read_context(2, 57), read_context(3, 57));
        assert_eq!(read_batch(2, &read_context(2, 57)), Some(57));
        assert_eq!(read_batch(3, &read_context(2, 57)), None);
        assert_eq!(read_batch(2, &57u64.to_be_bytes()), None);
    }
}
