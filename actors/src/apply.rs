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
//!
//! **Parking.** A sleeping region applies nothing, so its ApplyFsm need not live: when
//! the peer falls asleep its PeerFsm asks the ApplyFsm to [`Park`]. One holding nothing
//! in flight (no forwarded write waiting, no merge state, no held entries) hands its small
//! state back as a [`ParkedApply`] and stops; the PeerFsm starts a new one from it
//! ([`ApplyFsm::unpark`]) with the next message for it. Nothing is read from disk: the
//! state is the one in memory, and the ApplyWriter writes every region's tasks in the
//! order they came, so the new ApplyFsm's writes land after the old one's.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use actix::prelude::*;
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType};
use raft::eraftpb::{Entry, EntryType};
use tinykv_proto::metapb;
use tinykv_proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, AdminResponse, BatchSplitRequest, BatchSplitResponse,
    ChangePeerResponse, CmdType, CommitMergeRequest, CommitMergeResponse, CompactLogResponse,
    DeleteResponse, PrepareMergeRequest, PrepareMergeResponse, PutResponse, RaftCmdRequest,
    RaftCmdResponse, RaftResponseHeader, Response, RollbackMergeRequest, RollbackMergeResponse,
    SplitRequest, SplitResponse, WriteOutcome,
};
use tinykv_proto::raft_serverpb::{
    MergeState, PeerState, RaftApplyState, RaftTruncatedState, RegionLocalState,
};
use tracing::{debug, warn};

use crate::alive::AliveToken;
use crate::batch_writer::ApplyWriter;
use crate::bootstrap::initial_region_mutations;
use crate::engine::{Cf, Engine, Mutation};
use crate::error::{Error, Result};
use crate::keys;
use crate::msg::*;
use crate::peer_storage;
use crate::router::Router;
use crate::session::SessionTable;
use crate::span_entry::SpanEntry;
use crate::util;
use crate::validation;

/// How often a merge target waiting for its local source looks again.
const SOURCE_POLL: Duration = Duration::from_millis(50);

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
    /// Set while this region is a merge's source (PrepareMerge applied): it takes no
    /// writes, splits or membership changes, only its RollbackMerge.
    merge_state: Option<Box<MergeState>>,
    /// Merge target: the committed entries from a CommitMerge on, held until this
    /// store's peer of the source has applied its PrepareMerge.
    paused: Option<Box<Apply>>,
    /// The CommitMerge being held waits for this.
    waiting_for: Option<CatchUpLogs>,
    /// Set by a CommitMerge whose source is not ready: hold it.
    hold: bool,
    /// Sources merged into this region by this ApplyFsm whose record may not be written
    /// yet (the engine holds the others).
    merged_here: HashSet<u64>,
    engine: Engine,
    router: Addr<Router>,
    span: tracing::Span,
    _token: AliveToken,
}

/// What the ApplyFsm works with besides its region's own state.
#[derive(Clone)]
pub struct ApplyContext {
    /// The store's apply writer.
    pub writer: Addr<ApplyWriter>,
    /// The store's engine, to read a merge source's state.
    pub engine: Engine,
    /// The store's router, to nudge a merge source.
    pub router: Addr<Router>,
    /// Keeps the store from counting as stopped while this actor lives.
    pub token: AliveToken,
}

impl ApplyFsm {
    /// The apply side of `region`'s peer, resuming after `apply_state` with the region's
    /// `sessions` and `merge_state` as of that state. `span` is the peer's (see
    /// [`crate::peer::peer_span`]): its PeerFsm and ApplyFsm log under one span.
    pub fn new(
        span: tracing::Span,
        region: metapb::Region,
        (apply_state, sessions, merge_state): (RaftApplyState, SessionTable, Option<MergeState>),
        context: ApplyContext,
    ) -> ApplyFsm {
        ApplyFsm {
            region,
            apply_state,
            applied_term: 0,
            writer: context.writer,
            peer: None,
            forwarded: HashMap::new(),
            sessions,
            merge_state: merge_state.map(Box::new),
            paused: None,
            waiting_for: None,
            hold: false,
            merged_here: HashSet::new(),
            engine: context.engine,
            router: context.router,
            span,
            _token: context.token,
        }
    }

    /// The ApplyFsm of a region whose previous one parked with `parked`.
    pub fn unpark(span: tracing::Span, parked: ParkedApply, context: ApplyContext) -> ApplyFsm {
        let ParkedApply {
            region,
            apply_state,
            applied_term,
            sessions,
            merged_here,
        } = parked;
        let mut fsm = ApplyFsm::new(span, region, (apply_state, sessions, None), context);
        fsm.applied_term = applied_term;
        fsm.merged_here = merged_here;
        fsm
    }

    /// The state to park with, if nothing is in flight that only this actor holds.
    fn parkable_state(&mut self) -> Option<ParkedApply> {
        let busy = !self.forwarded.is_empty()
            || self.merge_state.is_some()
            || self.paused.is_some()
            || self.waiting_for.is_some()
            || self.hold;
        (!busy).then(|| ParkedApply {
            region: std::mem::take(&mut self.region),
            apply_state: self.apply_state,
            applied_term: self.applied_term,
            sessions: std::mem::take(&mut self.sessions),
            merged_here: std::mem::take(&mut self.merged_here),
        })
    }

    /// Applies `msg`'s entries in order, or holds them behind a CommitMerge that waits
    /// for its source; returns whether the ApplyFsm is holding entries.
    fn apply(&mut self, msg: Apply) -> bool {
        let Some(peer) = self.peer.clone() else {
            warn!("apply before the peer attached; dropping");
            return false;
        };
        if !msg.forwarded.is_empty() || !self.forwarded.is_empty() {
            self.forwarded.retain(|_, p| !p.callback.is_closed());
            self.forwarded
                .extend(msg.forwarded.into_iter().map(|p| (p.uuid.clone(), p)));
        }
        if let Some(paused) = &mut self.paused {
            paused.entries.extend(msg.entries);
            paused.proposals.extend(msg.proposals);
            return true;
        }
        let Some(last_index) = msg.entries.last().map(|e| e.index) else {
            return false;
        };
        self.sessions.begin_batch(last_index);
        let committed_at = msg.committed_at;
        let mut proposals = msg.proposals;
        proposals.sort_by_key(|p| p.index);
        let mut proposals = proposals.into_iter().peekable();
        let mut mutations: Vec<Mutation> = Vec::new();
        let mut responses = Vec::new();
        let mut results = Vec::new();
        let mut entries = msg.entries.into_iter();
        while let Some(entry) = entries.next() {
            if entry.index <= self.apply_state.applied_index {
                continue;
            }
            let mut uuid = Vec::new();
            let response = self.apply_entry(&entry, &mut mutations, &mut results, &mut uuid);
            if std::mem::take(&mut self.hold) {
                // A CommitMerge whose source is not ready: it and everything after it
                // wait, with the proposals they may answer.
                let mut held = vec![entry];
                held.extend(entries);
                self.paused = Some(Box::new(Apply {
                    entries: held,
                    proposals: proposals.by_ref().collect(),
                    forwarded: Vec::new(),
                    committed_at,
                }));
                // The session journal of what did apply is written at the index of the
                // last applied entry, not of the batch's last.
                self.sessions.move_batch(self.apply_state.applied_index);
                break;
            }
            self.apply_state.applied_index = entry.index;
            self.applied_term = entry.term;
            if let Some(p) = (!uuid.is_empty())
                .then(|| self.forwarded.remove(&uuid))
                .flatten()
            {
                crate::metrics::applied_after(p.proposed_at);
                responses.push((
                    p.callback,
                    response_to_send(&response, p.proposed_at, None, committed_at),
                ));
            }
            while let Some(p) = proposals.next_if(|p| p.index <= entry.index) {
                if p.index == entry.index && p.term == entry.term {
                    crate::metrics::applied_after(p.proposed_at);
                    responses.push((
                        p.callback,
                        response_to_send(&response, p.proposed_at, p.persisted_at, committed_at),
                    ));
                } else {
                    respond_error(p.callback, &Error::StaleCommand, entry.term);
                }
            }
        }
        if self.paused.is_none() {
            for p in proposals {
                respond_error(p.callback, &Error::StaleCommand, self.applied_term);
            }
        }
        let written_bytes = mutations.iter().map(size_hint).sum();
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
        self.paused.is_some()
    }

    /// Tries the held entries again (the source may be ready now), nudging the source's
    /// peer if it still is not; returns whether entries are still held.
    fn retry_paused(&mut self) -> bool {
        let Some(held) = self.paused.take() else {
            return false;
        };
        self.apply(*held)
    }

    /// While entries are held: nudge the source and look again after a moment.
    fn wait_for_source(&mut self, ctx: &mut Context<Self>) {
        if let Some(wait) = &self.waiting_for {
            self.router.do_send(wait.clone());
        }
        ctx.run_later(SOURCE_POLL, |fsm, ctx| {
            let _entry = SpanEntry::enter(&fsm.span);
            if fsm.retry_paused() {
                fsm.wait_for_source(ctx);
            }
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
                                .apply_admin(&cmd, admin, entry, mutations, results)
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
        if self.merge_state.is_some() {
            return Err(self.merging());
        }
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

    /// Applies the admin command `cmd` of `entry`.
    fn apply_admin(
        &mut self,
        cmd: &RaftCmdRequest,
        admin: &AdminRequest,
        entry: &Entry,
        mutations: &mut Vec<Mutation>,
        results: &mut Vec<ExecResult>,
    ) -> Result<AdminResponse> {
        let index = entry.index;
        util::check_region_epoch(cmd, &self.region)?;
        if self.merge_state.is_some() && admin.cmd_type() != AdminCmdType::RollbackMerge {
            return Err(self.merging());
        }
        match admin.cmd_type() {
            AdminCmdType::PrepareMerge => {
                let request = admin.prepare_merge.clone().unwrap_or_default();
                self.apply_prepare_merge(&request, entry, mutations, results)
            }
            AdminCmdType::CommitMerge => {
                let request = admin.commit_merge.clone().unwrap_or_default();
                let expected = cmd.header.as_ref().and_then(|h| h.region_epoch);
                self.apply_commit_merge(&request, expected, mutations, results)
            }
            AdminCmdType::RollbackMerge => {
                let request = admin.rollback_merge.unwrap_or_default();
                self.apply_rollback_merge(&request, mutations, results)
            }
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
        if self.merge_state.is_some() {
            return Err(self.merging());
        }
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
            if !req.trace_id.is_empty() {
                // The client request's id, so every replica's log names the write.
                let id = util::trace_id_text(&req.trace_id);
                debug!(request_id = %id, ?outcome, "applied write");
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

/// Merges: the source's PrepareMerge and RollbackMerge, the target's CommitMerge.
impl ApplyFsm {
    /// The refusal of a command to a frozen merge source: nothing was done; the client
    /// retries once the merge is over.
    fn merging(&self) -> Error {
        Error::ServerIsBusy(format!("region {} is merging", self.region.id))
    }

    /// Freezes this region as a merge's source: the target must be its neighbour with
    /// peers on the same stores; both parts of the epoch grow, so that commands proposed
    /// before fail their epoch check, and the state records the entry and the target.
    fn apply_prepare_merge(
        &mut self,
        request: &PrepareMergeRequest,
        entry: &Entry,
        mutations: &mut Vec<Mutation>,
        results: &mut Vec<ExecResult>,
    ) -> Result<AdminResponse> {
        let target = request.target.clone().unwrap_or_default();
        util::check_merge_pair(&self.region, &target)?;
        let mut region = self.region.clone();
        let epoch = region.region_epoch.get_or_insert_with(Default::default);
        epoch.version += 1;
        epoch.conf_ver += 1;
        let state = MergeState {
            commit: entry.index,
            commit_term: entry.term,
            target: Some(target),
        };
        mutations.push(Mutation::put_msg(
            Cf::Meta,
            keys::region_state_key(region.id),
            &RegionLocalState {
                state: PeerState::Merging as i32,
                region: Some(region.clone()),
                merge_state: Some(state.clone()),
            },
        ));
        tracing::info!(target = ?state.target.as_ref().map(|t| t.id), index = entry.index, "prepared to merge");
        self.region = region.clone();
        self.merge_state = Some(Box::new(state.clone()));
        results.push(ExecResult::PrepareMerge { region, state });
        Ok(AdminResponse {
            cmd_type: AdminCmdType::PrepareMerge as i32,
            prepare_merge: Some(PrepareMergeResponse {}),
            ..Default::default()
        })
    }

    /// Thaws this merge source: its target refused the merge for good. The version grows
    /// again, so nothing proposed while it was frozen applies.
    fn apply_rollback_merge(
        &mut self,
        request: &RollbackMergeRequest,
        mutations: &mut Vec<Mutation>,
        results: &mut Vec<ExecResult>,
    ) -> Result<AdminResponse> {
        match self.merge_state.as_deref() {
            Some(state) if state.commit == request.commit => {}
            _ => {
                return Err(Error::InvalidRequest(format!(
                    "region {} has no merge prepared at index {} to roll back",
                    self.region.id, request.commit
                )))
            }
        }
        let epoch = self
            .region
            .region_epoch
            .get_or_insert_with(Default::default);
        epoch.version += 1;
        self.merge_state = None;
        mutations.push(region_state_mutation(&self.region));
        tracing::info!("merge rolled back");
        results.push(ExecResult::RollbackMerge {
            region: self.region.clone(),
        });
        Ok(AdminResponse {
            cmd_type: AdminCmdType::RollbackMerge as i32,
            rollback_merge: Some(RollbackMergeResponse {}),
            ..Default::default()
        })
    }

    /// Whether `source` was merged into this region already (a CommitMerge repeated, or
    /// one this replica learnt of from a snapshot).
    fn has_merged(&self, source: u64) -> Result<bool> {
        Ok(self.merged_here.contains(&source)
            || self
                .engine
                .get(Cf::Meta, &keys::merged_source_key(self.region.id, source))?
                .is_some())
    }

    /// Refuses a CommitMerge whose source can never be ready here, instead of holding
    /// this region's entries for good: a genuine one names a source whose peer on this
    /// store holds the PrepareMerge (the source's leader asked only then), so that peer
    /// exists and, while not yet frozen, has not applied that far. This guards against a
    /// command a faulty peer forwarded; a genuine CommitMerge never meets it, on any
    /// replica.
    fn check_source_can_become_ready(
        &self,
        source: &metapb::Region,
        local: Option<&RegionLocalState>,
        commit: u64,
    ) -> Result<()> {
        let bogus = |why: &str| {
            Err(Error::InvalidRequest(format!(
                "a CommitMerge of region {} whose peer on this store {why}",
                source.id
            )))
        };
        let Some(local) = local else {
            return bogus("does not exist");
        };
        match local.state() {
            PeerState::Tombstone => bogus("is gone"),
            PeerState::Merging => {
                let into = local
                    .merge_state
                    .as_ref()
                    .and_then(|m| m.target.as_ref())
                    .map(|t| t.id);
                if into != Some(self.region.id) {
                    return bogus("is merging into another region");
                }
                Ok(())
            }
            PeerState::Normal => {
                let applied = self
                    .engine
                    .get_msg::<RaftApplyState>(Cf::Meta, &keys::apply_state_key(source.id))?
                    .map_or(0, |s| s.applied_index);
                if applied >= commit {
                    return bogus("applied past that index without freezing");
                }
                Ok(())
            }
        }
    }

    /// Absorbs the source region. Deterministic on every replica: a source merged
    /// already is acknowledged again; a target whose epoch moved past the one the merge
    /// was prepared against refuses ([`Error::MergeTargetChanged`]). Otherwise the
    /// source's peer on this store must have applied its PrepareMerge: until it has, the
    /// ApplyFsm holds this entry and those after it (`waiting_for`), and the source's peer
    /// is told to catch up. Then the source's data simply becomes this region's (one
    /// engine holds both), its sessions join this region's, its peer here is tombstoned,
    /// and a record of the merge is kept for replicas that get a snapshot instead.
    fn apply_commit_merge(
        &mut self,
        request: &CommitMergeRequest,
        expected: Option<metapb::RegionEpoch>,
        mutations: &mut Vec<Mutation>,
        results: &mut Vec<ExecResult>,
    ) -> Result<AdminResponse> {
        let response = AdminResponse {
            cmd_type: AdminCmdType::CommitMerge as i32,
            commit_merge: Some(CommitMergeResponse {}),
            ..Default::default()
        };
        let source = request.source.clone().unwrap_or_default();
        if self.has_merged(source.id)? {
            return Ok(response);
        }
        util::check_merge_target_epoch(&self.region, expected)?;
        util::check_merge_pair(&source, &self.region)?;
        let local: Option<RegionLocalState> = self
            .engine
            .get_msg(Cf::Meta, &keys::region_state_key(source.id))?;
        let ready = local.as_ref().is_some_and(|state| {
            state.state() == PeerState::Merging
                && state.region.as_ref() == Some(&source)
                && state.merge_state.as_ref().is_some_and(|m| {
                    m.commit == request.commit
                        && m.target.as_ref().map(|t| t.id) == Some(self.region.id)
                })
        });
        if !ready {
            self.check_source_can_become_ready(&source, local.as_ref(), request.commit)?;
            if self.waiting_for.is_none() {
                tracing::info!(
                    source = source.id,
                    "the merge waits for this store's peer of the source to apply its PrepareMerge"
                );
            }
            self.waiting_for = Some(CatchUpLogs {
                region_id: source.id,
                commit: request.commit,
                commit_term: request.commit_term,
            });
            self.hold = true;
            return Ok(response);
        }
        self.waiting_for = None;
        let sessions = SessionTable::load(&self.engine, &source)?;
        let merged = util::merged_region(&source, &self.region);
        self.sessions.absorb(sessions);
        let (journal_start, journal_end) = keys::session_journal_range(source.id);
        mutations.push(Mutation::DeleteRange {
            cf: Cf::Meta,
            start: journal_start,
            end: journal_end,
        });
        mutations.extend(peer_storage::tombstone(&source));
        mutations.push(Mutation::put_msg(
            Cf::Meta,
            keys::merged_source_key(self.region.id, source.id),
            &source,
        ));
        mutations.push(region_state_mutation(&merged));
        tracing::info!(source = source.id, region = ?merged, "merged");
        self.merged_here.insert(source.id);
        self.region = merged.clone();
        results.push(ExecResult::CommitMerge {
            region: merged,
            source,
        });
        Ok(response)
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

/// What a deleted pair is counted as in the size hint: its value's size is not known,
/// and a region emptied by deletes must be measured again (to be merged).
const DELETED_VALUE_HINT: u64 = 256;

/// How much a mutation changes the region's size, for the hint that schedules the next
/// size check: a put's key and value, a delete's key and a typical value.
fn size_hint(mutation: &Mutation) -> u64 {
    match mutation {
        Mutation::Delete { .. } => mutation.size() as u64 + DELETED_VALUE_HINT,
        _ => mutation.size() as u64,
    }
}

fn region_state_mutation(region: &metapb::Region) -> Mutation {
    Mutation::put_msg(
        Cf::Meta,
        keys::region_state_key(region.id),
        &RegionLocalState {
            state: PeerState::Normal as i32,
            region: Some(region.clone()),
            merge_state: None,
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

fn response_to_send(
    response: &RaftCmdResponse,
    proposed_at: Instant,
    persisted_at: Option<Instant>,
    committed_at: Instant,
) -> CmdResponse {
    CmdResponse {
        response: response.clone(),
        snapshot: None,
        stages: Some(crate::msg::WriteStages {
            proposed_at,
            committed_at,
            persisted_at,
            applied_at: Instant::now(),
        }),
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

    fn handle(&mut self, msg: Apply, ctx: &mut Self::Context) {
        let _entry = SpanEntry::enter(&self.span);
        let was_paused = self.paused.is_some();
        if self.apply(msg) && !was_paused {
            self.wait_for_source(ctx);
        }
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
        let done = CmdResponse {
            response: RaftCmdResponse::default(),
            snapshot: None,
            stages: None,
        };
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
        // A snapshot replaces everything held: its entries are older than it.
        if let Some(held) = self.paused.take() {
            for p in held.proposals {
                respond_error(p.callback, &Error::StaleCommand, self.applied_term);
            }
        }
        self.waiting_for = None;
        self.hold = false;
        self.merge_state = None;
        self.region = msg.region;
        self.apply_state = msg.apply_state;
        self.sessions = msg.sessions;
        self.applied_term = msg.apply_state.truncated_state.map_or(0, |t| t.term);
    }
}

/// What a parked ApplyFsm leaves behind: everything a new one needs to go on where it
/// stopped (see the module documentation).
#[derive(Debug)]
pub struct ParkedApply {
    region: metapb::Region,
    apply_state: RaftApplyState,
    applied_term: u64,
    sessions: SessionTable,
    merged_here: HashSet<u64>,
}

/// The PeerFsm of a sleeping region asks its ApplyFsm to park: it answers with its
/// state and stops, or, holding something in flight, answers `None` and goes on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Park(pub tokio::sync::oneshot::Sender<Option<Box<ParkedApply>>>);

impl Handler<Park> for ApplyFsm {
    type Result = ();

    fn handle(&mut self, msg: Park, ctx: &mut Self::Context) {
        let parked = self.parkable_state();
        let parking = parked.is_some();
        // A PeerFsm gone meanwhile applies nothing again: the state can go with it.
        let _ = msg.0.send(parked.map(Box::new));
        if parking {
            ctx.stop();
        }
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
