//! The PeerFsm's side of its ApplyFsm: live, parking, or parked.
//!
//! A sleeping region applies nothing, and at ten thousand regions an idle ApplyFsm per
//! region is a good part of a store's memory. So once the core reports that the peer fell
//! asleep ([`Effect::Asleep`]) and it has slept for `raftstore.park_apply_after_ms` (a
//! region written every few seconds sleeps between writes, and keeps its ApplyFsm), the
//! shell asks its
//! ApplyFsm to [`Park`]: one with nothing in
//! flight hands back its state (a [`ParkedApply`]: the region, the apply state, the
//! sessions) and stops. The next message for the ApplyFsm starts a new one from that state
//! on the same arbiter, introduces the PeerFsm to it, and delivers the message. Messages
//! that come while the ApplyFsm decides wait in order and follow it, or its successor;
//! a PeerFsm that is to stop meanwhile (destroyed, or restarting) stops only once they
//! are delivered, for they carry its tombstone or its restart's flush.
//! A parked region costs its PeerFsm and this state, nothing else.

use super::*;
use crate::apply::{ApplyContext, Park, ParkedApply};

/// Where a store's ApplyFsms live: the arbiter and context a parked one is started again
/// with. One per apply arbiter, shared by its regions.
pub struct ApplyHome {
    /// The arbiter the region's ApplyFsm runs on.
    pub arbiter: ArbiterHandle,
    /// What every ApplyFsm works with.
    pub context: ApplyContext,
}

/// The state of a peer's ApplyFsm, as its PeerFsm sees it.
pub(super) enum ApplySide {
    /// Running.
    Live(Addr<ApplyFsm>),
    /// Asked to park; messages for it wait here, in order, for its answer.
    Parking {
        apply: Addr<ApplyFsm>,
        waiting: Vec<ToApply>,
    },
    /// Stopped, its state kept here.
    Parked(Box<ParkedApply>),
    /// Only inside [`PeerFsm::send_to_apply`] and [`PeerFsm::on_apply_parked`], while
    /// they move the state out to build the next one; never seen outside them.
    Switching,
}

impl PeerFsm {
    /// Hands `msg` to the ApplyFsm, starting it again if it is parked.
    pub(super) fn send_to_apply(&mut self, msg: ToApply, ctx: &mut Context<Self>) {
        match std::mem::replace(&mut self.apply, ApplySide::Switching) {
            ApplySide::Live(apply) => {
                deliver(&apply, msg);
                self.apply = ApplySide::Live(apply);
            }
            ApplySide::Parking { apply, mut waiting } => {
                waiting.push(msg);
                self.apply = ApplySide::Parking { apply, waiting };
            }
            ApplySide::Parked(parked) => {
                let apply = self.unpark(parked, ctx);
                deliver(&apply, msg);
                self.apply = ApplySide::Live(apply);
            }
            // Both functions that set `Switching` leave another state before returning, and
            // nothing runs in between: it cannot be seen here.
            ApplySide::Switching => unreachable!("apply side left switching"),
        }
    }

    /// The peer fell asleep: asks a running ApplyFsm to park.
    pub(super) fn park_apply(&mut self, ctx: &mut Context<Self>) {
        let ApplySide::Live(apply) = &self.apply else {
            return;
        };
        let (answer, answered) = tokio::sync::oneshot::channel();
        apply.do_send(Park(answer));
        self.apply = ApplySide::Parking {
            apply: apply.clone(),
            waiting: Vec::new(),
        };
        ctx.spawn(answered.into_actor(self).map(|parked, fsm, ctx| {
            // No answer: the ApplyFsm is gone (the peer is stopping); it stays as it was.
            fsm.on_apply_parked(parked.ok().flatten(), ctx);
        }));
    }

    /// The ApplyFsm answered [`Park`]: parked with its state, or still running.
    fn on_apply_parked(&mut self, parked: Option<Box<ParkedApply>>, ctx: &mut Context<Self>) {
        let (apply, waiting) = match std::mem::replace(&mut self.apply, ApplySide::Switching) {
            ApplySide::Parking { apply, waiting } => (apply, waiting),
            other => {
                // Only one Park is ever in flight (it is asked only from `Live`), so this
                // does not happen; if it did, the state stands.
                self.apply = other;
                return;
            }
        };
        self.apply = match parked {
            Some(parked) if waiting.is_empty() => ApplySide::Parked(parked),
            parked => {
                let apply = match parked {
                    Some(parked) => self.unpark(parked, ctx),
                    None => apply,
                };
                for msg in waiting {
                    deliver(&apply, msg);
                }
                ApplySide::Live(apply)
            }
        };
        if self.stop_pending {
            ctx.stop();
        }
    }

    /// Starts an ApplyFsm from a parked one's state and introduces this PeerFsm to it.
    fn unpark(&mut self, parked: Box<ParkedApply>, ctx: &mut Context<Self>) -> Addr<ApplyFsm> {
        let span = self.peer.span().clone();
        let context = self.apply_home.context.clone();
        let apply = ApplyFsm::start_in_arbiter(&self.apply_home.arbiter, move |_| {
            ApplyFsm::unpark(span, *parked, context)
        });
        apply.do_send(AttachPeer(ctx.address().recipient()));
        apply
    }

    /// The store stops: stops a running ApplyFsm.
    pub(super) fn stop_apply(&mut self) {
        match &self.apply {
            ApplySide::Live(apply) | ApplySide::Parking { apply, .. } => apply.do_send(Stop),
            ApplySide::Parked(_) | ApplySide::Switching => {}
        }
    }
}

fn deliver(apply: &Addr<ApplyFsm>, msg: ToApply) {
    match msg {
        ToApply::Apply(m) => apply.do_send(m),
        ToApply::Reset(m) => apply.do_send(m),
        ToApply::DropForwarded(m) => apply.do_send(m),
        ToApply::Destroy(m) => apply.do_send(m),
        ToApply::Stop(m) => apply.do_send(m),
    }
}
