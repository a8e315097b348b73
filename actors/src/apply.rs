//! ApplyFsm: one actor per region peer that turns committed entries into engine writes.
//!
//! The PeerFsm sends committed entries in log order, together with the proposals that may
//! be waiting for them. For each entry the ApplyFsm re-checks the command against the region
//! as of that log position (the epoch and key range may have changed since it was
//! proposed), builds the mutations, and computes the response. A proposal whose (index,
//! term) does not match the entry at its index was overwritten by another leader's entry and
//! is answered `StaleCommand`.
//!
//! The ApplyFsm does not write itself: it hands the mutations, plus the new
//! `RaftApplyState`, to the store's ApplyWriter, which commits them atomically (batched with
//! other regions' applies) and only then answers the callbacks and reports progress to the
//! PeerFsm. Because data and apply state land in the same atomic batch, a restart resumes
//! exactly after the last applied entry.

use actix::prelude::*;
use prost::Message as _;
use raft::eraftpb::{Entry, EntryType};
use tinykv_proto::metapb;
use tinykv_proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, AdminResponse, CmdType, CompactLogResponse, DeleteResponse,
    PutResponse, RaftCmdRequest, RaftCmdResponse, RaftResponseHeader, Response,
};
use tinykv_proto::raft_serverpb::{RaftApplyState, RaftTruncatedState};
use tracing::warn;

use crate::alive::AliveToken;
use crate::batch_writer::ApplyWriter;
use crate::engine::{Cf, Mutation};
use crate::error::{Error, Result};
use crate::keys;
use crate::msg::*;
use crate::util;

/// The actor; see the module documentation.
pub struct ApplyFsm {
    region: metapb::Region,
    apply_state: RaftApplyState,
    applied_term: u64,
    writer: Addr<ApplyWriter>,
    /// The PeerFsm to report progress to; attached by the PeerFsm when it starts.
    peer: Option<Recipient<Applied>>,
    span: tracing::Span,
    _token: AliveToken,
}

impl ApplyFsm {
    /// The apply side of `region`'s peer, resuming after `apply_state`.
    pub fn new(
        store_id: u64,
        peer_id: u64,
        region: metapb::Region,
        apply_state: RaftApplyState,
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
            span,
            _token: token,
        }
    }

    fn apply(&mut self, msg: Apply) {
        let Some(peer) = self.peer.clone() else {
            warn!("apply before the peer attached; dropping");
            return;
        };
        let mut proposals = msg.proposals;
        proposals.sort_by_key(|p| p.index);
        let mut proposals = proposals.into_iter().peekable();
        let mut mutations = Vec::new();
        let mut responses = Vec::new();
        let mut results = Vec::new();
        for entry in msg.entries {
            if entry.index <= self.apply_state.applied_index {
                continue;
            }
            let response = self.apply_entry(&entry, &mut mutations, &mut results);
            self.apply_state.applied_index = entry.index;
            self.applied_term = entry.term;
            while let Some(p) = proposals.next_if(|p| p.index <= entry.index) {
                if p.index == entry.index && p.term == entry.term {
                    responses.push((p.callback, response_to_send(&response)));
                } else {
                    respond_error(p.callback, &Error::StaleCommand, entry.term);
                }
            }
        }
        for p in proposals {
            respond_error(p.callback, &Error::StaleCommand, self.applied_term);
        }
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
            },
            notify: peer,
        });
    }

    /// Applies one entry, returning the response for its proposal (if any waits).
    fn apply_entry(
        &mut self,
        entry: &Entry,
        mutations: &mut Vec<Mutation>,
        results: &mut Vec<ExecResult>,
    ) -> RaftCmdResponse {
        match entry.get_entry_type() {
            EntryType::EntryNormal if entry.data.is_empty() => {
                // A new leader's no-op entry.
                response_with(entry.term, Vec::new())
            }
            EntryType::EntryNormal => match RaftCmdRequest::decode(entry.data.as_ref()) {
                Ok(cmd) if cmd.admin_request.is_some() => {
                    let admin = cmd.admin_request.as_ref().unwrap();
                    match self.apply_admin(&cmd, admin, results) {
                        Ok(admin_response) => RaftCmdResponse {
                            admin_response: Some(admin_response),
                            ..response_with(entry.term, Vec::new())
                        },
                        Err(e) => CmdResponse::error(&e, entry.term).response,
                    }
                }
                Ok(cmd) => match self.apply_command(&cmd, mutations) {
                    Ok(responses) => response_with(entry.term, responses),
                    Err(e) => CmdResponse::error(&e, entry.term).response,
                },
                Err(e) => {
                    warn!(index = entry.index, "skipping undecodable entry: {e}");
                    CmdResponse::error(&Error::Codec(e.to_string()), entry.term).response
                }
            },
            EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                warn!(
                    index = entry.index,
                    "conf change entries are not supported yet"
                );
                response_with(entry.term, Vec::new())
            }
        }
    }

    fn apply_admin(
        &mut self,
        cmd: &RaftCmdRequest,
        admin: &AdminRequest,
        results: &mut Vec<ExecResult>,
    ) -> Result<AdminResponse> {
        util::check_region_epoch(cmd, &self.region)?;
        match admin.cmd_type() {
            AdminCmdType::CompactLog => {
                let req = admin.compact_log.unwrap_or_default();
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
        let mut responses = Vec::with_capacity(cmd.requests.len());
        for req in &cmd.requests {
            if let Some(key) = util::request_key(req) {
                util::check_key_in_region(key, &self.region)?;
            }
            match req.cmd_type() {
                CmdType::Put => {
                    let put = req.put.clone().unwrap_or_default();
                    staged.push(Mutation::Put {
                        cf: Cf::from_name(&put.cf)?,
                        key: put.key,
                        value: put.value,
                    });
                    responses.push(Response {
                        cmd_type: CmdType::Put as i32,
                        put: Some(PutResponse {}),
                        ..Default::default()
                    });
                }
                CmdType::Delete => {
                    let delete = req.delete.clone().unwrap_or_default();
                    staged.push(Mutation::Delete {
                        cf: Cf::from_name(&delete.cf)?,
                        key: delete.key,
                    });
                    responses.push(Response {
                        cmd_type: CmdType::Delete as i32,
                        delete: Some(DeleteResponse {}),
                        ..Default::default()
                    });
                }
                other => {
                    return Err(Error::InvalidRequest(format!(
                        "{other:?} cannot be applied from the log; reads use ReadIndex"
                    )))
                }
            }
        }
        mutations.extend(staged);
        Ok(responses)
    }
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
}

impl Handler<Apply> for ApplyFsm {
    type Result = ();

    fn handle(&mut self, msg: Apply, _: &mut Self::Context) {
        let _enter = self.span.clone().entered();
        self.apply(msg);
    }
}

impl Handler<ResetApply> for ApplyFsm {
    type Result = ();

    fn handle(&mut self, msg: ResetApply, _: &mut Self::Context) {
        self.region = msg.region;
        self.apply_state = msg.apply_state;
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
