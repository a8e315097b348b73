//! ApplyFsm: one actor per region peer that turns committed entries into engine writes.
//!
//! The PeerFsm sends committed entries in log order, together with the proposals that may
//! be waiting for them. For each entry the ApplyFsm re-checks the command against the region
//! as of that log position (the epoch and key range may have changed since it was
//! proposed), builds the mutations, and computes the response. A proposal whose (index,
//! term) does not match the entry at its index was overwritten by another leader's entry and
//! is answered `StaleCommand`. A write a follower forwarded to its leader through raft
//! (see the PeerFsm) is recognised by the `uuid` in its header when the follower applies
//! it; one whose client stopped waiting is forgotten. A client write that names a session
//! applies at most once: the ApplyFsm keeps its region's [`SessionTable`] and answers a
//! repeated request id with the recorded outcome instead of writing again.
//!
//! The ApplyFsm does not write itself: it hands the mutations, plus the new
//! `RaftApplyState`, to the store's ApplyWriter, which commits them atomically (batched with
//! other regions' applies) and only then answers the callbacks and reports progress to the
//! PeerFsm. Because data and apply state land in the same atomic batch, a restart resumes
//! exactly after the last applied entry.

use std::collections::HashMap;

use actix::prelude::*;
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType};
use raft::eraftpb::{Entry, EntryType};
use tinykv_proto::metapb;
use tinykv_proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, AdminResponse, BatchSplitRequest, BatchSplitResponse,
    ChangePeerResponse, CmdType, CompactLogResponse, DeleteResponse, PutResponse, RaftCmdRequest,
    RaftCmdResponse, RaftResponseHeader, Response, SplitRequest, SplitResponse, WriteOutcome,
};
use tinykv_proto::raft_serverpb::{
    PeerState, RaftApplyState, RaftTruncatedState, RegionLocalState,
};
use tracing::warn;

use crate::alive::AliveToken;
use crate::batch_writer::ApplyWriter;
use crate::bootstrap::initial_region_mutations;
use crate::engine::{Cf, Mutation};
use crate::error::{Error, Result};
use crate::keys;
use crate::msg::*;
use crate::session::SessionTable;
use crate::util;
use crate::validation;

/// The actor; see the module documentation.
pub struct ApplyFsm {
    region: metapb::Region,
    apply_state: RaftApplyState,
    applied_term: u64,
    writer: Addr<ApplyWriter>,
    /// The PeerFsm to report progress to; attached by the PeerFsm when it starts.
    peer: Option<Recipient<Applied>>,
    /// Writes this peer forwarded to the leader, by uuid, until their entry applies.
    forwarded: HashMap<Vec<u8>, ForwardedProposal>,
    /// The outcomes of recent client writes to the region.
    sessions: SessionTable,
    span: tracing::Span,
    _token: AliveToken,
}

impl ApplyFsm {
    /// The apply side of `region`'s peer, resuming after `apply_state` with the region's
    /// `sessions` as of that state.
    pub fn new(
        store_id: u64,
        peer_id: u64,
        region: metapb::Region,
        (apply_state, sessions): (RaftApplyState, SessionTable),
        writer: Addr<ApplyWriter>,
        token: AliveToken,
    ) -> ApplyFsm {
        let span = tracing::info_span!(
            "apply",
            store = store_id,
            region = region.id,
            peer = peer_id
        );
        ApplyFsm {
            region,
            apply_state,
            applied_term: 0,
            writer,
            peer: None,
            forwarded: HashMap::new(),
            sessions,
            span,
            _token: token,
        }
    }

    fn apply(&mut self, msg: Apply) {
        let Some(peer) = self.peer.clone() else {
            warn!("apply before the peer attached; dropping");
            return;
        };
        if !msg.forwarded.is_empty() || !self.forwarded.is_empty() {
            self.forwarded.retain(|_, p| !p.callback.is_closed());
            self.forwarded
                .extend(msg.forwarded.into_iter().map(|p| (p.uuid.clone(), p)));
        }
        if let Some(last) = msg.entries.last() {
            self.sessions.begin_batch(last.index);
        }
        let mut proposals = msg.proposals;
        proposals.sort_by_key(|p| p.index);
        let mut proposals = proposals.into_iter().peekable();
        let mut mutations: Vec<Mutation> = Vec::new();
        let mut responses = Vec::new();
        let mut results = Vec::new();
        for entry in msg.entries {
            if entry.index <= self.apply_state.applied_index {
                continue;
            }
            let mut uuid = Vec::new();
            let response = self.apply_entry(&entry, &mut mutations, &mut results, &mut uuid);
            self.apply_state.applied_index = entry.index;
            self.applied_term = entry.term;
            if let Some(p) = (!uuid.is_empty())
                .then(|| self.forwarded.remove(&uuid))
                .flatten()
            {
                crate::metrics::applied_after(p.proposed_at);
                responses.push((p.callback, response_to_send(&response)));
            }
            while let Some(p) = proposals.next_if(|p| p.index <= entry.index) {
                if p.index == entry.index && p.term == entry.term {
                    crate::metrics::applied_after(p.proposed_at);
                    responses.push((p.callback, response_to_send(&response)));
                } else {
                    respond_error(p.callback, &Error::StaleCommand, entry.term);
                }
            }
        }
        for p in proposals {
            respond_error(p.callback, &Error::StaleCommand, self.applied_term);
        }
        let written_bytes = mutations.iter().map(|m| m.size() as u64).sum();
        mutations.extend(self.sessions.journal_mutations(self.region.id));
        mutations.push(Mutation::put_msg(
            Cf::Meta,
            keys::apply_state_key(self.region.id),
            &self.apply_state,
        ));
        self.writer.do_send(ApplyTask {
            region_id: self.region.id,
            mutations,
            responses,
            applied: Applied {
                apply_state: self.apply_state,
                applied_term: self.applied_term,
                results,
                written_bytes,
            },
            notify: peer,
        });
    }

    /// Applies one entry, returning the response for its proposal (if any waits); `uuid`
    /// receives the command's uuid, if it has one.
    fn apply_entry(
        &mut self,
        entry: &Entry,
        mutations: &mut Vec<Mutation>,
        results: &mut Vec<ExecResult>,
        uuid: &mut Vec<u8>,
    ) -> RaftCmdResponse {
        match entry.get_entry_type() {
            EntryType::EntryNormal if entry.data.is_empty() => {
                // A new leader's no-op entry.
                response_with(entry.term, Vec::new())
            }
            EntryType::EntryNormal => match RaftCmdRequest::decode(entry.data.as_ref()) {
                Ok(mut cmd) => {
                    if let Some(header) = cmd.header.as_mut() {
                        *uuid = std::mem::take(&mut header.uuid);
                    }
                    // Validated again here, whatever was checked when it was proposed: a
                    // committed command that breaks the rules changes nothing, on every
                    // replica alike, instead of failing the engine.
                    let applied =
                        validation::check_command(&cmd).and_then(|()| match &cmd.admin_request {
                            Some(admin) => self
                                .apply_admin(&cmd, admin, entry.index, mutations, results)
                                .map(|admin_response| RaftCmdResponse {
                                    admin_response: Some(admin_response),
                                    ..response_with(entry.term, Vec::new())
                                }),
                            None => self
                                .apply_command(&cmd, mutations)
                                .map(|responses| response_with(entry.term, responses)),
                        });
                    applied.unwrap_or_else(|e| {
                        if matches!(e, Error::InvalidRequest(_)) {
                            warn!(index = entry.index, "refusing a committed command: {e}");
                        }
                        CmdResponse::error(&e, entry.term).response
                    })
                }
                Err(e) => {
                    warn!(index = entry.index, "skipping undecodable entry: {e}");
                    CmdResponse::error(&Error::Codec(e.to_string()), entry.term).response
                }
            },
            EntryType::EntryConfChange => match self.apply_conf_change(entry, mutations, results) {
                Ok(admin_response) => RaftCmdResponse {
                    admin_response: Some(admin_response),
                    ..response_with(entry.term, Vec::new())
                },
                Err(e) => CmdResponse::error(&e, entry.term).response,
            },
            EntryType::EntryConfChangeV2 => {
                warn!(
                    index = entry.index,
                    "joint consensus is not used; ignoring entry"
                );
                response_with(entry.term, Vec::new())
            }
        }
    }

    /// Applies a membership change: AddNode adds a peer that is not there yet, RemoveNode
    /// removes one that is, unless it is the last; either bumps conf_ver. A change that changes nothing (a
    /// duplicate) is acknowledged without touching raft's configuration.
    fn apply_conf_change(
        &mut self,
        entry: &Entry,
        mutations: &mut Vec<Mutation>,
        results: &mut Vec<ExecResult>,
    ) -> Result<AdminResponse> {
        let change = ConfChange::parse_from_bytes(&entry.data)?;
        let cmd = RaftCmdRequest::decode(change.context.as_ref())?;
        validation::check_command(&cmd)?;
        util::check_region_epoch(&cmd, &self.region)?;
        let request = cmd
            .admin_request
            .and_then(|a| a.change_peer)
            .ok_or_else(|| Error::InvalidRequest("conf change without a ChangePeer".into()))?;
        let peer = request
            .peer
            .ok_or_else(|| Error::InvalidRequest("ChangePeer without a peer".into()))?;
        // Raft applies `change` to its configuration: the region must record the same.
        let same_kind = matches!(
            (change.get_change_type(), request.change_type()),
            (
                ConfChangeType::AddNode,
                tinykv_proto::eraftpb::ConfChangeType::AddNode
            ) | (
                ConfChangeType::RemoveNode,
                tinykv_proto::eraftpb::ConfChangeType::RemoveNode
            )
        );
        if !same_kind || change.node_id != peer.id {
            return Err(Error::InvalidRequest(format!(
                "conf change {:?} of node {} does not match its ChangePeer {:?} of peer {}",
                change.get_change_type(),
                change.node_id,
                request.change_type(),
                peer.id
            )));
        }
        let mut region = self.region.clone();
        let changed = match change.get_change_type() {
            ConfChangeType::AddNode => {
                if region.peers.iter().any(|p| p.id == peer.id) {
                    false
                } else if region.peers.iter().any(|p| p.store_id == peer.store_id) {
                    return Err(Error::InvalidRequest(format!(
                        "store {} already holds a peer of region {}",
                        peer.store_id, region.id
                    )));
                } else {
                    region.peers.push(peer);
                    true
                }
            }
            ConfChangeType::RemoveNode => {
                let before = region.peers.len();
                region.peers.retain(|p| p.id != peer.id);
                if region.peers.is_empty() {
                    // The proposer refuses this too; a region without peers would be
                    // lost, so the log entry is refused again here, changing nothing.
                    return Err(Error::InvalidRequest(format!(
                        "cannot remove peer {} of region {}: it is the last one",
                        peer.id, region.id
                    )));
                }
                region.peers.len() != before
            }
            ConfChangeType::AddLearnerNode => {
                return Err(Error::InvalidRequest("learners are not supported".into()))
            }
        };
        if changed {
            let epoch = region.region_epoch.get_or_insert_with(Default::default);
            epoch.conf_ver += 1;
            mutations.push(region_state_mutation(&region));
            self.region = region.clone();
        }
        results.push(ExecResult::ChangePeer {
            change: changed.then_some(change),
            region: region.clone(),
        });
        Ok(AdminResponse {
            cmd_type: AdminCmdType::ChangePeer as i32,
            change_peer: Some(ChangePeerResponse {
                region: Some(region),
            }),
            ..Default::default()
        })
    }

    /// Checks a split against the region as of this entry: the key lies strictly inside
    /// it, there is one new peer id per peer, and no id is one the region already uses.
    fn check_split(&self, request: &SplitRequest) -> Result<()> {
        util::check_split_key_in_region(&request.split_key, &self.region)?;
        if request.new_peer_ids.len() != self.region.peers.len() {
            return Err(Error::InvalidRequest(format!(
                "split names {} new peers for {} peers",
                request.new_peer_ids.len(),
                self.region.peers.len()
            )));
        }
        let reused = request.new_region_id == self.region.id
            || request
                .new_peer_ids
                .iter()
                .any(|id| self.region.peers.iter().any(|p| p.id == *id));
        if reused {
            return Err(Error::InvalidRequest(
                "a split must give the new region and its peers fresh ids".into(),
            ));
        }
        Ok(())
    }

    /// Cuts the region at the checked split's key: this region keeps `[start, key)`, a new
    /// region gets `[key, end)` with the new peer ids matched to the current peers by
    /// position; both bump their version. The new region starts from the initial raft and
    /// apply state, written in the same batch as both region states. Returns the new
    /// region.
    fn split_off(
        &mut self,
        request: &SplitRequest,
        mutations: &mut Vec<Mutation>,
        results: &mut Vec<ExecResult>,
    ) -> metapb::Region {
        let key = &request.split_key;
        let mut left = self.region.clone();
        let epoch = left.region_epoch.get_or_insert_with(Default::default);
        epoch.version += 1;
        let right = metapb::Region {
            id: request.new_region_id,
            start_key: key.clone(),
            end_key: left.end_key.clone(),
            region_epoch: left.region_epoch,
            peers: left
                .peers
                .iter()
                .zip(&request.new_peer_ids)
                .map(|(p, id)| metapb::Peer {
                    id: *id,
                    store_id: p.store_id,
                })
                .collect(),
        };
        left.end_key = key.clone();
        let mut right_sessions = self.sessions.split_off(key);
        mutations.push(region_state_mutation(&left));
        mutations.extend(initial_region_mutations(&right));
        mutations.extend(
            right_sessions.checkpoint_mutations(right.id, crate::peer_storage::RAFT_INIT_LOG_INDEX),
        );
        self.region = left.clone();
        results.push(ExecResult::Split {
            left,
            right: right.clone(),
        });
        right
    }

    /// Splits the region at one key (see [`Self::split_off`]).
    fn apply_split(
        &mut self,
        request: &SplitRequest,
        mutations: &mut Vec<Mutation>,
        results: &mut Vec<ExecResult>,
    ) -> Result<AdminResponse> {
        self.check_split(request)?;
        let right = self.split_off(request, mutations, results);
        Ok(AdminResponse {
            cmd_type: AdminCmdType::Split as i32,
            split: Some(SplitResponse {
                regions: vec![self.region.clone(), right],
            }),
            ..Default::default()
        })
    }

    /// Splits the region at several keys, ascending (checked when the command was
    /// validated): every split is checked against the region first, so a bad one changes
    /// nothing, then they are cut from the last key down, each from what the previous one
    /// left. The region's version grows by one per split.
    fn apply_batch_split(
        &mut self,
        request: &BatchSplitRequest,
        mutations: &mut Vec<Mutation>,
        results: &mut Vec<ExecResult>,
    ) -> Result<AdminResponse> {
        for split in &request.requests {
            self.check_split(split)?;
        }
        let mut regions: Vec<metapb::Region> = request
            .requests
            .iter()
            .rev()
            .map(|split| self.split_off(split, mutations, results))
            .collect();
        regions.push(self.region.clone());
        regions.reverse();
        Ok(AdminResponse {
            cmd_type: AdminCmdType::BatchSplit as i32,
            batch_split: Some(BatchSplitResponse { regions }),
            ..Default::default()
        })
    }

    /// Applies the admin command `cmd` of the entry at `index`.
    fn apply_admin(
        &mut self,
        cmd: &RaftCmdRequest,
        admin: &AdminRequest,
        index: u64,
        mutations: &mut Vec<Mutation>,
        results: &mut Vec<ExecResult>,
    ) -> Result<AdminResponse> {
        util::check_region_epoch(cmd, &self.region)?;
        match admin.cmd_type() {
            AdminCmdType::Split => {
                let request = admin.split.clone().unwrap_or_default();
                self.apply_split(&request, mutations, results)
            }
            AdminCmdType::BatchSplit => {
                let request = admin.batch_split.clone().unwrap_or_default();
                self.apply_batch_split(&request, mutations, results)
            }
            AdminCmdType::CompactLog => {
                let req = admin.compact_log.unwrap_or_default();
                if req.compact_index >= index || req.compact_term > self.applied_term {
                    // Only entries before this one are applied, and only applied entries
                    // may be compacted; none of them has a later term than the last.
                    return Err(Error::InvalidRequest(format!(
                        "cannot compact the log up to {} (term {}) at index {index}",
                        req.compact_index, req.compact_term
                    )));
                }
                let truncated = self.apply_state.truncated_state.unwrap_or_default();
                // A duplicate or out-of-date compaction changes nothing.
                if req.compact_index > truncated.index {
                    self.apply_state.truncated_state = Some(RaftTruncatedState {
                        index: req.compact_index,
                        term: req.compact_term,
                    });
                    results.push(ExecResult::CompactLog {
                        index: req.compact_index,
                    });
                }
                Ok(AdminResponse {
                    cmd_type: AdminCmdType::CompactLog as i32,
                    compact_log: Some(CompactLogResponse {}),
                    ..Default::default()
                })
            }
            other => Err(Error::InvalidRequest(format!(
                "admin command {other:?} cannot be applied"
            ))),
        }
    }

    fn apply_command(
        &mut self,
        cmd: &RaftCmdRequest,
        mutations: &mut Vec<Mutation>,
    ) -> Result<Vec<Response>> {
        util::check_region_epoch(cmd, &self.region)?;
        // Validate everything first so that a command applies entirely or not at all.
        let mut staged = Vec::with_capacity(cmd.requests.len());
        for req in &cmd.requests {
            if let Some(key) = util::request_key(req) {
                util::check_key_in_region(key, &self.region)?;
            }
            let mutation = match req.cmd_type() {
                CmdType::Put => {
                    let put = req.put.clone().unwrap_or_default();
                    Mutation::Put {
                        cf: Cf::from_name(&put.cf)?,
                        key: put.key,
                        value: put.value,
                    }
                }
                CmdType::Delete => {
                    let delete = req.delete.clone().unwrap_or_default();
                    Mutation::Delete {
                        cf: Cf::from_name(&delete.cf)?,
                        key: delete.key,
                    }
                }
                other => {
                    return Err(Error::InvalidRequest(format!(
                        "{other:?} cannot be applied from the log; reads use ReadIndex"
                    )))
                }
            };
            staged.push(mutation);
        }
        // Then decide each write against the session table: a request id it remembers
        // changes nothing.
        if let Some(now_ms) = cmd
            .requests
            .iter()
            .filter_map(|r| r.session.as_ref().map(|s| s.issued_ms))
            .max()
        {
            self.sessions.expire(now_ms);
        }
        let mut responses = Vec::with_capacity(cmd.requests.len());
        for (req, mutation) in cmd.requests.iter().zip(staged) {
            let outcome = match (&req.session, util::request_key(req)) {
                (Some(session), Some(key)) => self.sessions.decide(key, session, req),
                _ => WriteOutcome::Applied,
            };
            if outcome == WriteOutcome::Applied {
                mutations.push(mutation);
            }
            let mut response = Response {
                cmd_type: req.cmd_type,
                outcome: outcome as i32,
                ..Default::default()
            };
            match req.cmd_type() {
                CmdType::Put => response.put = Some(PutResponse {}),
                _ => response.delete = Some(DeleteResponse {}),
            }
            responses.push(response);
        }
        Ok(responses)
    }
}

impl ApplyFsm {
    /// Queues the last task of this ApplyFsm at the apply writer, behind every earlier
    /// one: `mutations`, then `responses` answered (nothing if no peer ever attached, so
    /// nothing was ever queued).
    fn queue_last(&self, mutations: Vec<Mutation>, responses: Vec<(Callback, CmdResponse)>) {
        let Some(peer) = self.peer.clone() else {
            return;
        };
        self.writer.do_send(ApplyTask {
            region_id: self.region.id,
            mutations,
            responses,
            applied: Applied {
                apply_state: self.apply_state,
                applied_term: self.applied_term,
                results: Vec::new(),
                written_bytes: 0,
            },
            notify: peer,
        });
    }
}

fn region_state_mutation(region: &metapb::Region) -> Mutation {
    Mutation::put_msg(
        Cf::Meta,
        keys::region_state_key(region.id),
        &RegionLocalState {
            state: PeerState::Normal as i32,
            region: Some(region.clone()),
        },
    )
}

fn response_with(term: u64, responses: Vec<Response>) -> RaftCmdResponse {
    RaftCmdResponse {
        header: Some(RaftResponseHeader {
            current_term: term,
            ..Default::default()
        }),
        responses,
        admin_response: None,
    }
}

fn response_to_send(response: &RaftCmdResponse) -> CmdResponse {
    CmdResponse {
        response: response.clone(),
        snapshot: None,
    }
}

impl Actor for ApplyFsm {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::MAILBOX_CAPACITY);
    }

    /// Forwarded writes still waiting may yet be committed by the others: their outcome
    /// is unknown.
    fn stopped(&mut self, _: &mut Self::Context) {
        for (_, p) in self.forwarded.drain() {
            respond_error(p.callback, &Error::Timeout, self.applied_term);
        }
    }
}

impl Handler<DropForwarded> for ApplyFsm {
    type Result = ();

    fn handle(&mut self, msg: DropForwarded, _: &mut Self::Context) {
        let dropped: Vec<ForwardedProposal> = match &msg.uuids {
            Some(uuids) => uuids
                .iter()
                .filter_map(|uuid| self.forwarded.remove(uuid))
                .collect(),
            None => self.forwarded.drain().map(|(_, p)| p).collect(),
        };
        for p in dropped {
            respond_error(p.callback, &msg.error, self.applied_term);
        }
    }
}

impl Handler<Apply> for ApplyFsm {
    type Result = ();

    fn handle(&mut self, msg: Apply, _: &mut Self::Context) {
        let _enter = self.span.clone().entered();
        self.apply(msg);
    }
}

impl Handler<DestroyApply> for ApplyFsm {
    type Result = ();

    fn handle(&mut self, msg: DestroyApply, ctx: &mut Self::Context) {
        // Queued behind every earlier apply of this region, so nothing lands after it.
        self.queue_last(msg.mutations, Vec::new());
        ctx.stop();
    }
}

impl Handler<StopApply> for ApplyFsm {
    type Result = ();

    fn handle(&mut self, msg: StopApply, ctx: &mut Self::Context) {
        // An empty task queued behind every earlier apply of this region: when its
        // callback is answered, they are all written.
        let (barrier, written) = tokio::sync::oneshot::channel();
        let done = response_to_send(&RaftCmdResponse::default());
        self.queue_last(Vec::new(), vec![(barrier, done)]);
        let flushed = msg.flushed;
        actix::spawn(async move {
            let _ = written.await;
            let _ = flushed.send(());
        });
        ctx.stop();
    }
}

impl Handler<ResetApply> for ApplyFsm {
    type Result = ();

    fn handle(&mut self, msg: ResetApply, _: &mut Self::Context) {
        self.region = msg.region;
        self.apply_state = msg.apply_state;
        self.sessions = msg.sessions;
        self.applied_term = msg.apply_state.truncated_state.map_or(0, |t| t.term);
    }
}

/// The PeerFsm introduces itself to its ApplyFsm (they are created in that order).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachPeer(pub Recipient<Applied>);

impl Handler<AttachPeer> for ApplyFsm {
    type Result = ();

    fn handle(&mut self, msg: AttachPeer, _: &mut Self::Context) {
        self.peer = Some(msg.0);
    }
}

impl Handler<Stop> for ApplyFsm {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
