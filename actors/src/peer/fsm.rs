//! PeerFsm: the actor shell around a [`Peer`] core.
//!
//! The shell owns what only an actor can own: the addresses of the peer's ApplyFsm, the
//! Router and the writers, the tick timer, and the futures of off-thread work. Each actor
//! message becomes one call into the core, after which the shell carries out every
//! [`Effect`] the core pushed, in order ([`PeerFsm::carry_out`]). Off-thread work (a
//! snapshot generated or verified, a size check, a merge target asked to commit) runs as
//! a future of this actor whose result is handed back to the core the same way.
//!
//! Nothing here decides anything about raft, proposals or reads: that is the core's,
//! and is tested there without an actor system.

use super::*;

/// Internal notification: take and handle raft's `Ready`.
#[derive(Message)]
#[rtype(result = "()")]
struct HandleReady;

/// The one timer a PeerFsm runs.
enum PeerTimer {
    /// Raft's tick, while the peer is awake.
    Ticking(SpawnHandle),
    /// The countdown to parking the ApplyFsm, while the peer sleeps.
    ParkCountdown(SpawnHandle),
}

impl PeerTimer {
    fn handle(&self) -> SpawnHandle {
        match self {
            PeerTimer::Ticking(h) | PeerTimer::ParkCountdown(h) => *h,
        }
    }
}

/// The actor; see the module documentation.
pub struct PeerFsm {
    pub(super) peer: Peer,
    /// Its ApplyFsm, parked while the peer sleeps (see `apply_side`).
    pub(super) apply: ApplySide,
    /// Where a parked ApplyFsm is started again.
    pub(super) apply_home: Arc<ApplyHome>,
    /// The core asked to stop while the ApplyFsm was deciding whether to park: the actor
    /// stops once it answered and the messages waiting for it are delivered.
    pub(super) stop_pending: bool,
    router: Addr<Router>,
    log_writer: Addr<RaftLogWriter>,
    log_gc: Addr<RaftLogGcWriter>,
    /// The tick timer while the peer is awake, the countdown to parking while it sleeps.
    timer: Option<PeerTimer>,
}

impl PeerFsm {
    /// Builds the peer of `storage`'s region on this store. `apply` is its ApplyFsm, and
    /// `apply_home` where it is started again after parking; `merge_state` is what its
    /// region state records if the region is a frozen merge source.
    pub fn new(
        ctx: PeerContext,
        (peer, span): (metapb::Peer, tracing::Span),
        storage: PeerStorage,
        (apply, apply_home): (Addr<ApplyFsm>, Arc<ApplyHome>),
        merge_state: Option<MergeState>,
    ) -> Result<PeerFsm> {
        let PeerContext {
            env,
            router,
            log_writer,
            log_gc,
        } = ctx;
        Ok(PeerFsm {
            peer: Peer::new(env, (peer, span), storage, merge_state)?,
            apply: ApplySide::Live(apply),
            apply_home,
            stop_pending: false,
            router,
            log_writer,
            log_gc,
            timer: None,
        })
    }

    /// Sets how the peer begins when its actor starts.
    pub fn set_start(&mut self, start: PeerStart) {
        self.peer.start = start;
    }

    /// Runs `f` on the core inside the peer's span, then carries out what it asked for.
    fn drive(&mut self, ctx: &mut Context<Self>, f: impl FnOnce(&mut Peer)) {
        let _entry = SpanEntry::enter(self.peer.span());
        f(&mut self.peer);
        self.carry_out(ctx);
    }

    /// Carries out the core's effects, in the order it pushed them.
    fn carry_out(&mut self, ctx: &mut Context<Self>) {
        for effect in self.peer.take_effects() {
            match effect {
                Effect::PersistReady(mut task) => {
                    task.notify = Some(ctx.address().recipient());
                    self.log_writer.do_send(task);
                }
                Effect::WriteLog(task) => self.log_writer.do_send(task),
                Effect::DeleteLog(task) => self.log_gc.do_send(task),
                Effect::Apply(msg) => self.send_to_apply(msg, ctx),
                Effect::Asleep => {
                    if let Some(timer) = self.timer.take() {
                        ctx.cancel_future(timer.handle());
                    }
                    let after = self.peer.env.cfg.park_apply_after();
                    let countdown = ctx.run_later(after, |fsm, ctx| {
                        fsm.timer = None;
                        fsm.park_apply(ctx);
                    });
                    self.timer = Some(PeerTimer::ParkCountdown(countdown));
                }
                Effect::Route(msg) => self.route(msg, ctx),
                Effect::StartTicking => self.start_ticking(ctx),
                Effect::ScheduleReady => ctx.notify(HandleReady),
                Effect::GenerateSnapshot => self.generate_snapshot(ctx),
                Effect::VerifySnapshot(message) => self.verify_snapshot(*message, ctx),
                Effect::CheckSize {
                    region,
                    max_size,
                    split_size,
                } => self.check_size(region, max_size, split_size, ctx),
                Effect::AskCommitMerge { request, commit } => {
                    self.ask_commit_merge(*request, commit, ctx)
                }
                Effect::Stop => self.stop(ctx),
            }
        }
    }

    /// Stops the actor, but not while its ApplyFsm decides whether to park: the messages
    /// waiting for that answer (a destroyed peer's tombstone and data removal, a restart's
    /// flush) must reach it, or its successor, first.
    fn stop(&mut self, ctx: &mut Context<Self>) {
        if matches!(self.apply, ApplySide::Parking { .. }) {
            self.stop_pending = true;
        } else {
            ctx.stop();
        }
    }

    fn route(&mut self, msg: ToRouter, ctx: &mut Context<Self>) {
        let region_id = self.peer.region_id;
        match msg {
            ToRouter::RegionChanged(route) => self.router.do_send(RegionChanged {
                route,
                peer: ctx.address(),
            }),
            ToRouter::LeaderReport(report) => self.router.do_send(LeaderReportChanged(report)),
            ToRouter::CreateSplitPeer(m) => self.router.do_send(m),
            ToRouter::MergedAway(m) => self.router.do_send(m),
            ToRouter::Destroyed => self.router.do_send(PeerDestroyed {
                region_id,
                peer: ctx.address(),
            }),
            ToRouter::Restart(flushed) => self.router.do_send(RestartPeer {
                region_id,
                peer: ctx.address(),
                flushed,
            }),
        }
    }

    fn start_ticking(&mut self, ctx: &mut Context<Self>) {
        if let Some(PeerTimer::ParkCountdown(countdown)) = self.timer {
            ctx.cancel_future(countdown);
            self.timer = None;
        }
        if self.timer.is_none() {
            let base_tick = self.peer.env.cfg.base_tick();
            let handle = ctx.run_interval(base_tick, |fsm, ctx| {
                fsm.drive(ctx, Peer::on_tick);
            });
            self.timer = Some(PeerTimer::Ticking(handle));
        }
    }

    fn generate_snapshot(&mut self, ctx: &mut Context<Self>) {
        let engine = self.peer.env.engine.clone();
        let token = self.peer.env.token.clone();
        let region_id = self.peer.region_id;
        let task = tokio::task::spawn_blocking(move || {
            let _token = token;
            snapshot::generate(&engine, region_id)
        });
        ctx.spawn(task.into_actor(self).map(|joined, fsm, ctx| {
            let result = joined.unwrap_or_else(|e| Err(Error::Engine(e.to_string())));
            fsm.drive(ctx, |peer| peer.on_snapshot_generated(result));
        }));
    }

    /// Verifies a snapshot off-thread, then its epoch (the core's view) and its range (the
    /// Router's), and hands the outcome to the core.
    fn verify_snapshot(&mut self, message: eraftpb::Message, ctx: &mut Context<Self>) {
        let (region_id, peer, token) = (
            self.peer.region_id,
            self.peer.peer,
            self.peer.env.token.clone(),
        );
        let task = tokio::task::spawn_blocking(move || {
            let _token = token;
            let verified = snapshot::verify_for(message.get_snapshot(), region_id, &peer);
            (message, verified)
        });
        ctx.spawn(task.into_actor(self).then(|joined, fsm, _| {
            let verified = match joined {
                Ok((message, Ok(verified))) => fsm.peer.check_snapshot_epoch(message, verified),
                Ok((_, Err(e))) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let router = fsm.router.clone();
            async move {
                let (message, verified) = verified?;
                let range = CheckSnapshotRange {
                    region_id: verified.region.id,
                    start_key: verified.region.start_key.clone(),
                    end_key: verified.region.end_key.clone(),
                    merged_sources: verified
                        .merged_sources
                        .iter()
                        .map(|s| (s.id, s.region_epoch.map_or(0, |e| e.version)))
                        .collect(),
                };
                match router.send(range).await {
                    Ok(true) => Ok((message, verified)),
                    Ok(false) => Err("its range overlaps another local region".to_string()),
                    Err(_) => Err("the router is gone".to_string()),
                }
            }
            .into_actor(fsm)
            .map(|checked, fsm, ctx| {
                fsm.drive(ctx, |peer| peer.on_snapshot_verified(checked));
            })
        }));
    }

    fn check_size(
        &mut self,
        region: metapb::Region,
        max_size: u64,
        split_size: u64,
        ctx: &mut Context<Self>,
    ) {
        let (engine, token) = (self.peer.env.engine.clone(), self.peer.env.token.clone());
        let task = tokio::task::spawn_blocking(move || {
            let _token = token;
            let started = std::time::Instant::now();
            let outcome = split_check::check(&engine, &region, max_size, split_size);
            (outcome, started.elapsed())
        });
        ctx.spawn(task.into_actor(self).map(|joined, fsm, ctx| {
            let outcome = match joined {
                Ok((outcome, took)) => {
                    tracing::debug!(millis = took.as_millis() as u64, "size check done");
                    outcome
                }
                Err(e) => Err(Error::Engine(e.to_string())),
            };
            fsm.drive(ctx, |peer| peer.on_split_check_done(outcome));
        }));
    }

    fn ask_commit_merge(&mut self, request: RaftCmdRequest, commit: u64, ctx: &mut Context<Self>) {
        let (callback, answer) = tokio::sync::oneshot::channel();
        self.router.do_send(RaftCommand { request, callback });
        let me = ctx.address();
        actix::spawn(async move {
            let error = match answer.await {
                Ok(response) => response.err(),
                Err(_) => Some(Error::Stopped),
            };
            me.do_send(merge::CommitMergeAnswer { commit, error });
        });
    }
}

impl Actor for PeerFsm {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::MAILBOX_CAPACITY);
        if let ApplySide::Live(apply) = &self.apply {
            apply.do_send(AttachPeer(ctx.address().recipient()));
        }
        self.drive(ctx, |peer| {
            debug!(region = ?peer.region(), "peer started");
            peer.on_start();
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.peer.on_stop();
    }
}

impl Handler<HandleReady> for PeerFsm {
    type Result = ();

    fn handle(&mut self, _: HandleReady, ctx: &mut Self::Context) {
        self.drive(ctx, Peer::on_ready_due);
    }
}

impl Handler<RaftCommand> for PeerFsm {
    type Result = ();

    fn handle(&mut self, cmd: RaftCommand, ctx: &mut Self::Context) {
        self.drive(ctx, |peer| peer.on_command(cmd));
    }
}

impl Handler<InboundRaftMessage> for PeerFsm {
    type Result = ();

    fn handle(&mut self, msg: InboundRaftMessage, ctx: &mut Self::Context) {
        self.drive(ctx, |peer| peer.on_inbound_message(msg.0));
    }
}

impl Handler<Persisted> for PeerFsm {
    type Result = ();

    fn handle(&mut self, msg: Persisted, ctx: &mut Self::Context) {
        self.drive(ctx, |peer| peer.on_persisted(msg));
    }
}

impl Handler<Applied> for PeerFsm {
    type Result = ();

    fn handle(&mut self, msg: Applied, ctx: &mut Self::Context) {
        self.drive(ctx, |peer| peer.on_applied(msg));
    }
}

impl Handler<CatchUpLogs> for PeerFsm {
    type Result = ();

    fn handle(&mut self, msg: CatchUpLogs, ctx: &mut Self::Context) {
        self.drive(ctx, |peer| {
            if !peer.is_destroyed() {
                peer.on_catch_up_logs(msg);
            }
        });
    }
}

impl Handler<MergedAway> for PeerFsm {
    type Result = ();

    fn handle(&mut self, msg: MergedAway, ctx: &mut Self::Context) {
        self.drive(ctx, |peer| peer.on_merged_away(msg));
    }
}

impl Handler<merge::CommitMergeAnswer> for PeerFsm {
    type Result = ();

    fn handle(&mut self, msg: merge::CommitMergeAnswer, ctx: &mut Self::Context) {
        self.drive(ctx, |peer| {
            if !peer.is_destroyed() {
                peer.on_commit_merge_answer(msg);
            }
        });
    }
}

impl Handler<QueryPeerStatus> for PeerFsm {
    type Result = MessageResult<QueryPeerStatus>;

    fn handle(&mut self, _: QueryPeerStatus, _: &mut Self::Context) -> Self::Result {
        let mut status = self.peer.status();
        status.apply_parked = matches!(self.apply, ApplySide::Parked(_));
        MessageResult(status)
    }
}

impl Handler<WakeUp> for PeerFsm {
    type Result = ();

    fn handle(&mut self, _: WakeUp, ctx: &mut Self::Context) {
        self.drive(ctx, |peer| {
            if !peer.is_destroyed() {
                peer.wake_needing_leader();
            }
        });
    }
}

impl Handler<CheckMembership> for PeerFsm {
    type Result = ();

    fn handle(&mut self, _: CheckMembership, ctx: &mut Self::Context) {
        self.drive(ctx, Peer::on_membership_check);
    }
}

impl Handler<Stop> for PeerFsm {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        self.stop_apply();
        ctx.stop();
    }
}

/// Tests: makes raft "panic" on the next message this peer steps.
#[cfg(test)]
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct PanicOnNextStep;

#[cfg(test)]
impl Handler<PanicOnNextStep> for PeerFsm {
    type Result = ();

    fn handle(&mut self, _: PanicOnNextStep, _: &mut Self::Context) {
        self.peer.panic_on_next_step();
    }
}

#[cfg(test)]
mod restart_tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tinykv_proto::eraftpb::{Message as RaftMsg, MessageType};
    use tinykv_proto::metapb::Peer;
    use tinykv_proto::raft_serverpb::RaftMessage;

    use super::PanicOnNextStep;
    use crate::bootstrap::ensure_bootstrapped;
    use crate::msg::PeerOf;
    use crate::peer::tests::{get, put};
    use crate::{start_store, Engine, RaftStoreConfig, SequentialIds, Transport};

    struct NoNetwork;

    impl Transport for NoNetwork {
        fn send(&self, _: RaftMessage) {}
    }

    const T: Duration = Duration::from_secs(10);

    /// A panic inside raft-rs while stepping a message costs the peer a restart from its
    /// state on disk, not the node: the region comes back with its data and takes writes.
    #[actix_rt::test]
    async fn a_peer_whose_raft_panics_restarts_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        ensure_bootstrapped(&engine, 1, 1, &[1]).unwrap();
        let store = start_store(
            RaftStoreConfig::for_tests(),
            engine,
            Arc::new(NoNetwork),
            Arc::new(SequentialIds::starting_at(1000)),
        )
        .await
        .unwrap();
        let router = store.router();
        let response = router
            .key_command(b"k".to_vec(), put(b"k"), T)
            .await
            .unwrap();
        assert!(response.err().is_none());
        let before = crate::metrics::PEER_RESTARTS.get();

        let peer = router.router_addr().send(PeerOf(1)).await.unwrap().unwrap();
        peer.send(PanicOnNextStep).await.unwrap();
        let vote = RaftMsg {
            msg_type: MessageType::MsgRequestPreVote as i32,
            from: 9,
            to: 1,
            term: 50,
            ..Default::default()
        };
        router.deliver(RaftMessage {
            region_id: 1,
            from_peer: Some(Peer { id: 9, store_id: 2 }),
            to_peer: Some(Peer { id: 1, store_id: 1 }),
            message: Some(vote),
            ..Default::default()
        });

        // The old peer stops, and a new one takes its place once its writes have landed.
        let deadline = std::time::Instant::now() + T;
        loop {
            let restarted = router.router_addr().send(PeerOf(1)).await.unwrap();
            if restarted.is_some_and(|p| p != peer) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the peer did not come back"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(crate::metrics::PEER_RESTARTS.get(), before + 1);
        let read = get(b"k");
        let mut value = None;
        for _ in 0..200 {
            if let Ok(response) = router.key_command(b"k".to_vec(), read.clone(), T).await {
                if response.err().is_none() {
                    value = response.response.responses[0].get.clone().map(|g| g.value);
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(value.as_deref(), Some(&b"v"[..]));
        let response = router
            .key_command(b"k2".to_vec(), put(b"k2"), T)
            .await
            .unwrap();
        assert!(response.err().is_none(), "{:?}", response.err());
        store.shutdown().await;
    }
}
