//! Deterministic tests of the [`Peer`] core, without an actor system.
//!
//! A [`Net`] holds three cores of one region, one per store, each over its own engine.
//! The test is the whole world around them, and nothing happens unless it says so: it
//! carries out every [`Effect`] by hand, so it decides when a raft message arrives (or is
//! dropped by a partition), when a `Ready`'s write becomes durable, and when committed
//! entries are applied. The ApplyFsm is played by the harness: it marks entries applied
//! and answers their proposals' callbacks, which is all the core sees of it. Time is
//! ticks the test gives, so a scenario runs the same way every time; each one is written
//! the way toyDB tests its Raft node, as a short sequence of steps and what must hold after
//! each.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use tinykv_proto::eraftpb::MessageType;
use tinykv_proto::raft_cmdpb::{GetRequest, PutRequest, Request};
use tokio::sync::oneshot;

use super::*;
use crate::alive::alive_pair;
use crate::bootstrap::ensure_bootstrapped;
use crate::id_alloc::SequentialIds;

/// Raft messages a core sent, waiting for the test to deliver them.
#[derive(Default)]
struct Wire(Mutex<Vec<RaftMessage>>);

impl Transport for Arc<Wire> {
    fn send(&self, msg: RaftMessage) {
        self.0.lock().unwrap().push(msg);
    }
}

/// One store: its core and everything the test holds back from it.
struct Node {
    peer: Peer,
    engine: Engine,
    _dir: tempfile::TempDir,
    wire: Arc<Wire>,
    /// `Ready` writes handed to the raft-log writer, not yet durable.
    unpersisted: VecDeque<WriteTask>,
    /// Committed entries handed to the ApplyFsm, not yet applied.
    unapplied: VecDeque<Apply>,
    /// Forwarded writes waiting for their entry to apply here.
    forwarded: Vec<ForwardedProposal>,
    /// (index, term) of every entry applied, with its data's size.
    applied: Vec<(u64, u64, usize)>,
    /// Whether the core wants ticks.
    ticking: bool,
    /// The core asked to stop.
    stopped: bool,
    /// Names of the effects seen, in order (for the few tests that look at them).
    seen: Vec<&'static str>,
}

/// Three stores holding region 1, a peer on each (peer id = store id).
struct Net {
    nodes: BTreeMap<u64, Node>,
    /// Store pairs (both directions) whose messages are dropped.
    cut: BTreeSet<(u64, u64)>,
    cfg: Arc<RaftStoreConfig>,
}

impl Net {
    /// Regions never sleep: a tick is a tick.
    fn new() -> Net {
        Net::with_config(RaftStoreConfig {
            hibernate_regions: false,
            ..RaftStoreConfig::for_tests()
        })
    }

    /// Regions sleep when quiet, as in the node.
    fn with_hibernation() -> Net {
        Net::with_config(RaftStoreConfig::for_tests())
    }

    fn with_config(cfg: RaftStoreConfig) -> Net {
        let cfg = Arc::new(cfg);
        let mut nodes = BTreeMap::new();
        for store in 1..=3 {
            let dir = tempfile::tempdir().unwrap();
            let engine = Engine::open(dir.path()).unwrap();
            ensure_bootstrapped(&engine, 1, store, &[1, 2, 3]).unwrap();
            let wire = Arc::new(Wire::default());
            let peer = load_peer(&cfg, store, &engine, &wire, PeerStart::Follow);
            let node = Node {
                peer,
                engine,
                _dir: dir,
                wire,
                unpersisted: VecDeque::new(),
                unapplied: VecDeque::new(),
                forwarded: Vec::new(),
                applied: Vec::new(),
                ticking: false,
                stopped: false,
                seen: Vec::new(),
            };
            nodes.insert(store, node);
        }
        let mut net = Net {
            nodes,
            cut: BTreeSet::new(),
            cfg,
        };
        net.run();
        net
    }

    /// Store `id` crashes and starts again over its engine: everything not durable is
    /// lost (unpersisted writes, unapplied entries, undelivered messages), and its new
    /// core starts as a restarted store's does.
    fn restart(&mut self, id: u64) {
        let cfg = self.cfg.clone();
        let node = self.node(id);
        node.unpersisted.clear();
        node.unapplied.clear();
        node.wire.0.lock().unwrap().clear();
        node.peer = load_peer(&cfg, id, &node.engine, &node.wire, PeerStart::Restart);
        node.ticking = false;
        self.process(id);
    }

    fn node(&mut self, id: u64) -> &mut Node {
        self.nodes.get_mut(&id).unwrap()
    }

    /// Carries out `id`'s effects until it has none, except that `Ready` writes and
    /// applies wait for [`Net::persist`] and [`Net::apply`], and raft messages for
    /// [`Net::deliver`]. A scheduled ready runs after the effects pushed with it, as the
    /// actor's notification would.
    fn process(&mut self, id: u64) {
        let node = self.node(id);
        loop {
            let effects = node.peer.take_effects();
            if effects.is_empty() {
                return;
            }
            let mut ready_due = false;
            for effect in effects {
                node.seen.push(effect_name(&effect));
                match effect {
                    Effect::ScheduleReady => ready_due = true,
                    Effect::PersistReady(task) => node.unpersisted.push_back(task),
                    Effect::WriteLog(task) => {
                        node.engine.write(&task.mutations, true).unwrap();
                        if let Some(flushed) = task.flushed {
                            let _ = flushed.send(());
                        }
                    }
                    Effect::DeleteLog(task) => node.engine.write(&task.mutations, false).unwrap(),
                    Effect::Apply(ToApply::Apply(apply)) => node.unapplied.push_back(apply),
                    Effect::Apply(_) | Effect::Route(_) | Effect::AskCommitMerge { .. } => {}
                    Effect::StartTicking => node.ticking = true,
                    Effect::Asleep => node.ticking = false,
                    Effect::GenerateSnapshot => {
                        let snapshot = snapshot::generate(&node.engine, 1);
                        node.peer.on_snapshot_generated(snapshot);
                    }
                    Effect::VerifySnapshot(message) => {
                        let checked = snapshot::verify_for(
                            message.get_snapshot(),
                            node.peer.region_id,
                            &node.peer.peer,
                        )
                        .map_err(|e| e.to_string())
                        .and_then(|v| node.peer.check_snapshot_epoch(*message, v));
                        node.peer.on_snapshot_verified(checked);
                    }
                    Effect::CheckSize {
                        region,
                        max_size,
                        split_size,
                    } => {
                        let outcome =
                            split_check::check(&node.engine, &region, max_size, split_size);
                        node.peer.on_split_check_done(outcome);
                    }
                    Effect::Stop => node.stopped = true,
                }
            }
            if ready_due {
                node.peer.on_ready_due();
            }
        }
    }

    /// Makes `id`'s pending `Ready` writes durable and tells the core. Returns how many.
    fn persist(&mut self, id: u64) -> usize {
        self.process(id);
        let node = self.node(id);
        let tasks: Vec<WriteTask> = node.unpersisted.drain(..).collect();
        for task in &tasks {
            node.engine.write(&task.mutations, true).unwrap();
            node.peer.on_persisted(Persisted {
                ready_number: task.ready_number,
                last_index: task.last_index,
            });
        }
        self.process(id);
        tasks.len()
    }

    /// Applies what `id` committed, as the ApplyFsm would for the core: records the
    /// entries, answers their proposals (and the forwarded writes whose uuid an entry
    /// carries) with success, and reports the new applied index. Returns how many batches.
    fn apply(&mut self, id: u64) -> usize {
        self.process(id);
        let node = self.node(id);
        let batches: Vec<Apply> = node.unapplied.drain(..).collect();
        let count = batches.len();
        for batch in batches {
            node.forwarded.extend(batch.forwarded);
            let Some(last) = batch.entries.last() else {
                continue;
            };
            let (index, term) = (last.index, last.term);
            for e in &batch.entries {
                node.applied.push((e.index, e.term, e.data.len()));
                let uuid = RaftCmdRequest::decode(e.data.as_ref())
                    .ok()
                    .and_then(|c| c.header)
                    .map(|h| h.uuid)
                    .filter(|u| !u.is_empty());
                if let Some(uuid) = uuid {
                    for f in node.forwarded.extract_if(.., |f| f.uuid == uuid) {
                        let _ = f.callback.send(ok_response(e.term));
                    }
                }
            }
            for p in batch.proposals {
                let _ = p.callback.send(ok_response(term));
            }
            let mut apply_state = *node.peer.raft.store().apply_state();
            apply_state.applied_index = index;
            node.peer.on_applied(Applied {
                apply_state,
                applied_term: term,
                results: Vec::new(),
                written_bytes: 0,
            });
        }
        self.process(id);
        count
    }

    /// Delivers every message `id` sent, except across a cut. Returns how many arrived.
    fn deliver(&mut self, id: u64) -> usize {
        self.process(id);
        let sent: Vec<RaftMessage> = std::mem::take(&mut *self.node(id).wire.0.lock().unwrap());
        let mut arrived = 0;
        for msg in sent {
            let to = msg.to_peer.map_or(0, |p| p.store_id);
            if self.cut.contains(&(id, to)) || !self.nodes.contains_key(&to) {
                continue;
            }
            arrived += 1;
            self.node(to).peer.on_inbound_message(msg);
            self.process(to);
        }
        arrived
    }

    /// Persists, applies and delivers everywhere until nothing moves (bounded).
    fn run(&mut self) {
        for _ in 0..100 {
            let mut moved = 0;
            for id in 1..=3 {
                moved += self.persist(id) + self.apply(id) + self.deliver(id);
            }
            if moved == 0 {
                return;
            }
        }
        panic!("the cluster did not settle in 100 rounds");
    }

    /// Drops every message between `id` and the other stores.
    fn isolate(&mut self, id: u64) {
        for other in 1..=3 {
            if other != id {
                self.cut.insert((id, other));
                self.cut.insert((other, id));
            }
        }
    }

    fn heal(&mut self) {
        self.cut.clear();
    }

    /// Store `id` campaigns and the cluster settles.
    fn elect(&mut self, id: u64) {
        let node = self.node(id);
        node.peer.raft.campaign().unwrap();
        node.peer.schedule_ready();
        self.run();
        assert!(self.node(id).peer.is_leader(), "store {id} did not win");
    }

    /// Hands `id`'s core a command; returns where its answer will arrive.
    fn command(&mut self, id: u64, request: RaftCmdRequest) -> oneshot::Receiver<CmdResponse> {
        let (callback, answer) = oneshot::channel();
        self.node(id)
            .peer
            .on_command(RaftCommand { request, callback });
        self.process(id);
        answer
    }

    /// Messages of `kind` that `id` sent and the test has not delivered yet.
    fn sent(&mut self, id: u64, kind: MessageType) -> usize {
        self.process(id);
        let wire = self.node(id).wire.0.lock().unwrap();
        wire.iter()
            .filter(|m| m.message.as_ref().is_some_and(|m| m.msg_type() == kind))
            .count()
    }

    fn last_index(&mut self, id: u64) -> u64 {
        self.node(id).peer.raft.raft.raft_log.last_index()
    }
}

/// Store `store`'s core of region 1, loaded from `engine` and started as `start` says.
fn load_peer(
    cfg: &Arc<RaftStoreConfig>,
    store: u64,
    engine: &Engine,
    wire: &Arc<Wire>,
    start: PeerStart,
) -> Peer {
    let (region, me) = crate::store::regions_to_load(engine, store)
        .unwrap()
        .remove(0);
    let env = PeerEnv {
        store_id: store,
        cfg: cfg.clone(),
        engine: engine.clone(),
        transport: Arc::new(wire.clone()),
        ids: Arc::new(SequentialIds::starting_at(1000)),
        token: alive_pair().0,
    };
    let storage = PeerStorage::new(engine.clone(), region).unwrap();
    let span = peer_span(store, 1, me.id);
    let mut peer = Peer::new(env, (me, span), storage, None).unwrap();
    peer.start = start;
    peer.on_start();
    peer
}

fn effect_name(effect: &Effect) -> &'static str {
    match effect {
        Effect::PersistReady(_) => "persist",
        Effect::WriteLog(_) => "write log",
        Effect::DeleteLog(_) => "delete log",
        Effect::Apply(ToApply::Apply(_)) => "apply",
        Effect::Apply(ToApply::Reset(_)) => "reset apply",
        Effect::Apply(ToApply::DropForwarded(_)) => "drop forwarded",
        Effect::Apply(ToApply::Destroy(_)) => "destroy apply",
        Effect::Apply(ToApply::Stop(_)) => "stop apply",
        Effect::Route(ToRouter::Restart(_)) => "route restart",
        Effect::Route(ToRouter::Destroyed) => "route destroyed",
        Effect::Route(_) => "route",
        Effect::StartTicking => "start ticking",
        Effect::Asleep => "asleep",
        Effect::ScheduleReady => "ready",
        Effect::GenerateSnapshot => "generate snapshot",
        Effect::VerifySnapshot(_) => "verify snapshot",
        Effect::CheckSize { .. } => "check size",
        Effect::AskCommitMerge { .. } => "ask commit merge",
        Effect::Stop => "stop",
    }
}

fn ok_response(term: u64) -> CmdResponse {
    CmdResponse {
        response: RaftCmdResponse {
            header: Some(RaftResponseHeader {
                current_term: term,
                ..Default::default()
            }),
            ..Default::default()
        },
        snapshot: None,
        stages: None,
    }
}

fn command(request: Request) -> RaftCmdRequest {
    RaftCmdRequest {
        header: Some(RaftRequestHeader {
            region_id: 1,
            ..Default::default()
        }),
        requests: vec![request],
        ..Default::default()
    }
}

/// A put of `key` = `v` in region 1.
pub(super) fn put(key: &[u8]) -> RaftCmdRequest {
    command(Request {
        cmd_type: CmdType::Put as i32,
        put: Some(PutRequest {
            cf: "default".into(),
            key: key.to_vec(),
            value: b"v".to_vec(),
        }),
        ..Default::default()
    })
}

/// A put in region 1 naming an epoch older than the region's (version 0).
fn stale_put() -> RaftCmdRequest {
    let mut request = put(b"k");
    request.header.as_mut().unwrap().region_epoch = Some(metapb::RegionEpoch {
        conf_ver: 1,
        version: 0,
    });
    request
}

/// A get of `key` in region 1.
pub(super) fn get(key: &[u8]) -> RaftCmdRequest {
    command(Request {
        cmd_type: CmdType::Get as i32,
        get: Some(GetRequest {
            cf: "default".into(),
            key: key.to_vec(),
        }),
        ..Default::default()
    })
}

/// The answer, if there is one yet.
fn answer_of(rx: &mut oneshot::Receiver<CmdResponse>) -> Option<CmdResponse> {
    rx.try_recv().ok()
}

#[test]
fn the_peer_that_campaigns_is_elected_and_the_others_follow_it() {
    let mut net = Net::new();
    net.elect(2);
    let term = net.node(2).peer.term();
    for id in [1, 3] {
        let raft = &net.node(id).peer.raft.raft;
        assert_eq!(raft.state, StateRole::Follower);
        assert_eq!(raft.leader_id, 2);
        assert_eq!(raft.term, term);
    }
}

/// A follower's answer to an append says it holds the entries: it may go out only once
/// they are on disk, or a crash could lose an entry the leader counted as replicated.
#[test]
fn a_follower_acknowledges_an_append_only_once_it_is_durable() {
    let mut net = Net::new();
    net.elect(1);
    let _answer = net.command(1, put(b"k"));
    // The leader sends its appends before its own write is durable (raft allows it).
    assert_eq!(net.sent(1, MessageType::MsgAppend), 2);
    net.deliver(1);
    assert_eq!(
        net.node(2).unpersisted.len(),
        1,
        "the append waits for the disk"
    );
    assert_eq!(net.sent(2, MessageType::MsgAppendResponse), 0);
    net.persist(2);
    assert_eq!(net.sent(2, MessageType::MsgAppendResponse), 1);
}

/// The leader counts itself towards the quorum only once its own write is durable: with
/// one follower cut off and the other holding the entry, it commits when (and only when)
/// its own disk has it.
#[test]
fn the_leader_counts_itself_towards_a_quorum_only_once_its_write_is_durable() {
    let mut net = Net::new();
    net.elect(1);
    net.isolate(3);
    let applied_before = net.node(1).applied.len();
    let mut answer = net.command(1, put(b"k"));
    let index = net.last_index(1);
    net.deliver(1);
    net.persist(2);
    net.deliver(2);
    net.process(1);
    assert!(net.node(1).peer.raft.raft.raft_log.committed < index);
    assert!(net.node(1).unapplied.is_empty());
    net.persist(1);
    assert_eq!(net.node(1).peer.raft.raft.raft_log.committed, index);
    assert_eq!(net.apply(1), 1);
    assert_eq!(net.node(1).applied.len(), applied_before + 1);
    let response = answer_of(&mut answer).expect("answered once applied");
    assert!(response.err().is_none());
}

/// A leader cut off from both followers commits nothing and answers nothing: the write's
/// outcome is not known yet. Once the partition heals (before any election), it commits.
#[test]
fn a_leader_cut_off_from_its_quorum_commits_nothing_until_it_heals() {
    let mut net = Net::new();
    net.elect(1);
    net.isolate(1);
    let committed = net.node(1).peer.raft.raft.raft_log.committed;
    let mut answer = net.command(1, put(b"k"));
    net.run();
    assert_eq!(net.node(1).peer.raft.raft.raft_log.committed, committed);
    assert!(answer_of(&mut answer).is_none());

    net.heal();
    // raft sends the entry again with the next heartbeat round.
    net.node(1).peer.raft.ping();
    net.node(1).peer.schedule_ready();
    net.run();
    assert!(net.node(1).peer.raft.raft.raft_log.committed > committed);
    let response = answer_of(&mut answer).expect("answered once committed");
    assert!(response.err().is_none());
    for id in [2, 3] {
        assert_eq!(net.last_index(id), net.last_index(1));
    }
}

/// A read on the leader is linearizable: it is served only after a heartbeat round
/// confirms that no other leader can have been elected meanwhile.
#[test]
fn a_read_on_the_leader_waits_for_a_heartbeat_round_to_confirm_it() {
    let mut net = Net::new();
    net.elect(1);
    net.isolate(1);
    let mut read = net.command(1, get(b"k"));
    net.run();
    assert!(
        answer_of(&mut read).is_none(),
        "served without confirmation"
    );
    net.heal();
    // The round that was cut off is not sent again; the next heartbeat carries the read.
    let heartbeat_ticks = net.node(1).peer.env.cfg.raft_heartbeat_ticks;
    for _ in 0..heartbeat_ticks {
        net.node(1).peer.on_tick();
    }
    net.run();
    let response = answer_of(&mut read).expect("served after the heartbeat round");
    assert!(response.err().is_none(), "{:?}", response.err());
    assert_eq!(response.response.responses.len(), 1, "the get is answered");
}

/// A command checked against an older region epoch than the peer's is refused at once,
/// and nothing reaches the log or the network.
#[test]
fn a_command_with_a_stale_epoch_is_refused_and_proposes_nothing() {
    let mut net = Net::new();
    net.elect(1);
    let last = net.last_index(1);
    let mut refused = net.command(1, stale_put());
    let response = answer_of(&mut refused).expect("refused at once");
    assert!(matches!(response.err(), Some(Error::EpochNotMatch { .. })));
    assert_eq!(net.last_index(1), last);
    assert_eq!(net.sent(1, MessageType::MsgAppend), 0);
}

/// A command for this region addressed to another store's peer is refused: the client
/// routed it with a stale view.
#[test]
fn a_command_naming_another_store_is_refused() {
    let mut net = Net::new();
    net.elect(1);
    let mut request = put(b"k");
    request.header.as_mut().unwrap().peer = Some(metapb::Peer { id: 2, store_id: 2 });
    let mut refused = net.command(1, request);
    let response = answer_of(&mut refused).expect("refused at once");
    assert!(matches!(response.err(), Some(Error::StoreNotMatch { .. })));
}

/// A follower forwards a client write to its leader through raft; the entry commits on
/// the leader and comes back to the follower to be applied with the follower's callback.
#[test]
fn a_follower_forwards_a_write_and_answers_it_when_it_applies() {
    let mut net = Net::new();
    net.elect(1);
    let last = net.last_index(1);
    let mut answer = net.command(2, put(b"k"));
    assert!(answer_of(&mut answer).is_none());
    net.run();
    assert_eq!(net.last_index(1), last + 1);
    let response = answer_of(&mut answer).expect("answered when applied on store 2");
    assert!(response.err().is_none());
}

/// A leader that loses its term to another answers its own unfinished proposals with
/// `Timeout`: outcome unknown, because the entry may still commit under the new leader.
#[test]
fn a_deposed_leader_answers_its_pending_writes_as_outcome_unknown() {
    let mut net = Net::new();
    net.elect(1);
    net.isolate(1);
    let mut answer = net.command(1, put(b"k"));
    net.run();
    // The two others time out (past the leader's lease) and elect one of them.
    for _ in 0..100 {
        for id in [2, 3] {
            net.node(id).peer.on_tick();
        }
        net.run();
        if [2, 3].iter().any(|&id| net.node(id).peer.is_leader()) {
            break;
        }
    }
    let new_leader = [2, 3]
        .into_iter()
        .find(|&id| net.node(id).peer.is_leader())
        .expect("stores 2 and 3 elect a leader");
    net.heal();
    // The new leader's heartbeat tells store 1 about the higher term.
    net.node(new_leader).peer.raft.ping();
    net.node(new_leader).peer.schedule_ready();
    net.run();
    assert!(!net.node(1).peer.is_leader());
    let response = answer_of(&mut answer).expect("answered when deposed");
    assert!(matches!(response.err(), Some(Error::Timeout)));
}

/// raft-rs panicking on a message costs the peer a restart from disk: nothing of the
/// half-updated state is persisted (no `Ready` is taken), the writers are flushed, and
/// the Router is asked to start it again.
#[test]
fn a_panic_in_raft_restarts_the_peer_without_persisting_anything() {
    let mut net = Net::new();
    net.elect(1);
    net.node(2).seen.clear();
    net.node(2).peer.panic_on_next_step();
    net.node(1).peer.raft.ping();
    net.node(1).peer.schedule_ready();
    net.deliver(1);
    let node = net.node(2);
    assert!(node.stopped);
    assert!(node.peer.is_destroyed());
    assert_eq!(
        node.seen,
        ["write log", "stop apply", "route restart", "stop"],
        "no ready is persisted after the panic"
    );
}

/// A sleeping member asked to confirm its membership asks the other stores and, told it
/// is one, stays: the check is harmless to a peer that was not removed, and wakes nobody.
/// Awake peers ignore the request.
#[test]
fn a_membership_check_of_a_sleeping_member_asks_the_others_and_changes_nothing() {
    let mut net = Net::new();
    net.elect(1);
    let term = net.node(1).peer.term();
    net.node(3).peer.on_membership_check();
    net.process(3);
    assert!(
        net.node(3).wire.0.lock().unwrap().is_empty(),
        "awake, it asks nobody"
    );
    net.node(3).peer.sleep();
    net.process(3);
    assert!(!net.node(3).ticking);
    net.node(3).peer.on_membership_check();
    net.process(3);
    let questions: Vec<u64> = net
        .node(3)
        .wire
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|m| stale_peer::is_check(m))
        .filter_map(|m| m.to_peer.map(|p| p.store_id))
        .collect();
    assert_eq!(questions, [1, 2]);
    net.run();
    let node = net.node(3);
    assert!(!node.peer.is_destroyed() && !node.stopped);
    assert_eq!(node.peer.term(), term, "the check started no election");
    assert!(
        node.peer.hibernation.is_asleep() && !node.ticking,
        "nobody was woken"
    );
    // A leader knows it is a member and asks nobody.
    net.node(1).peer.on_membership_check();
    assert_eq!(net.sent(1, MessageType::MsgAppend), 0);
    assert!(net.node(1).wire.0.lock().unwrap().is_empty());
}

/// Ticks every store (those whose timer runs) and settles, until `done` holds or `max`
/// rounds pass; returns whether it held.
fn tick_until(net: &mut Net, max: usize, done: impl Fn(&mut Net) -> bool) -> bool {
    for _ in 0..max {
        if done(net) {
            return true;
        }
        for id in 1..=3 {
            if net.node(id).ticking {
                net.node(id).peer.on_tick();
            }
        }
        net.run();
    }
    done(net)
}

fn all_asleep(net: &mut Net) -> bool {
    (1..=3).all(|id| net.node(id).peer.hibernation.is_asleep() && !net.node(id).ticking)
}

/// A quiet region falls asleep once every follower agreed: the leader asks (measuring
/// the region first), each follower answers, and all three stop their timers, in the
/// same term, with the same leader.
#[test]
fn a_quiet_region_falls_asleep_once_every_follower_agrees() {
    let mut net = Net::with_hibernation();
    net.elect(1);
    let term = net.node(1).peer.term();
    assert!(
        tick_until(&mut net, 200, all_asleep),
        "the region did not fall asleep"
    );
    for id in 1..=3 {
        let raft = &net.node(id).peer.raft.raft;
        assert_eq!((raft.term, raft.leader_id), (term, 1), "store {id}");
    }
    // Asleep, nothing ticks and nothing is sent.
    for id in 1..=3 {
        assert!(net.node(id).wire.0.lock().unwrap().is_empty());
    }
}

/// A write wakes a sleeping leader: it starts ticking, and the append of the write
/// wakes the followers as followers of the same leader (no election, and no heartbeat
/// round besides: the append already tells every follower), and the write commits.
#[test]
fn a_command_wakes_a_sleeping_region_without_an_election() {
    let mut net = Net::with_hibernation();
    net.elect(1);
    let term = net.node(1).peer.term();
    assert!(tick_until(&mut net, 200, all_asleep));
    let mut answer = net.command(1, put(b"k"));
    assert!(net.node(1).ticking, "the leader woke");
    assert_eq!(
        net.sent(1, MessageType::MsgAppend),
        2,
        "the write to each follower"
    );
    assert_eq!(
        net.sent(1, MessageType::MsgHeartbeat),
        0,
        "no heartbeat round"
    );
    net.run();
    for id in 1..=3 {
        let node = net.node(id);
        assert!(
            node.ticking && !node.peer.hibernation.is_asleep(),
            "store {id} woke"
        );
        assert_eq!((node.peer.term(), node.peer.raft.raft.leader_id), (term, 1));
    }
    let response = answer_of(&mut answer).expect("the write committed");
    assert!(response.err().is_none());
}

/// Hibernation messages of `kind` that `id` sent and the test has not delivered yet.
fn sent_extra(net: &mut Net, id: u64, kind: ExtraMessageType) -> usize {
    net.process(id);
    let wire = net.node(id).wire.0.lock().unwrap();
    wire.iter()
        .filter(|m| m.extra_msg.as_ref().is_some_and(|e| e.r#type() == kind))
        .count()
}

/// A command that sends nothing (refused) still announces the wake-up: a leader pings
/// every follower, which wakes them; a follower wakes its leader, without which its
/// election clock, one tick short of the timeout, would start an election.
#[test]
fn a_refused_command_that_wakes_a_peer_still_announces_it() {
    let mut net = Net::with_hibernation();
    net.elect(1);
    assert!(tick_until(&mut net, 200, all_asleep));
    let mut refused = net.command(1, stale_put());
    assert!(matches!(
        answer_of(&mut refused).and_then(|r| r.err()),
        Some(Error::EpochNotMatch { .. })
    ));
    assert_eq!(
        net.sent(1, MessageType::MsgHeartbeat),
        2,
        "a ping to each follower"
    );
    net.run();
    assert!(tick_until(&mut net, 200, all_asleep));

    let mut refused = net.command(2, stale_put());
    assert!(answer_of(&mut refused).is_some());
    assert_eq!(
        sent_extra(&mut net, 2, ExtraMessageType::MsgRegionWakeUp),
        1
    );
    net.run();
    assert!(!net.node(1).peer.hibernation.is_asleep(), "the leader woke");
    let term = net.node(1).peer.term();
    // The follower's next ticks find its leader talking to it: no election.
    tick_until(&mut net, 3, |_| false);
    assert_eq!(net.node(1).peer.term(), term);
    assert!(net.node(1).peer.is_leader());
}

/// A follower woken by a write it forwards sends no wake-up message: the forwarded
/// proposal wakes the leader, whose append wakes everyone.
#[test]
fn a_follower_woken_by_a_write_it_forwards_needs_no_wake_up_message() {
    let mut net = Net::with_hibernation();
    net.elect(1);
    let term = net.node(1).peer.term();
    assert!(tick_until(&mut net, 200, all_asleep));
    let mut answer = net.command(2, put(b"k"));
    assert_eq!(
        sent_extra(&mut net, 2, ExtraMessageType::MsgRegionWakeUp),
        0
    );
    assert_eq!(net.sent(2, MessageType::MsgPropose), 1);
    net.run();
    assert_eq!(net.node(1).peer.term(), term, "no election");
    assert!((1..=3).all(|id| net.node(id).ticking), "all awake");
    let response = answer_of(&mut answer).expect("answered when applied on store 2");
    assert!(response.err().is_none());
}

/// A ready that moves only the commit index writes nothing: the commit index is
/// persisted lazily, with the next write of the raft state. A write costs each store
/// one raft-log write (its entry), not two.
#[test]
fn a_ready_that_only_moves_the_commit_index_writes_nothing() {
    let mut net = Net::new();
    net.elect(1);
    for id in 1..=3 {
        net.node(id).seen.clear();
    }
    let mut answer = net.command(1, put(b"k"));
    net.run();
    assert!(answer_of(&mut answer).is_some());
    for id in 1..=3 {
        let node = net.node(id);
        let persisted = node.seen.iter().filter(|e| **e == "persist").count();
        assert_eq!(persisted, 1, "store {id}: {:?}", node.seen);
        let log = &node.peer.raft.raft.raft_log;
        assert_eq!(log.committed, log.last_index(), "store {id} committed");
        let on_disk: tinykv_proto::raft_serverpb::RaftLocalState = node
            .engine
            .get_msg(Cf::Raft, &keys::raft_state_key(1))
            .unwrap()
            .unwrap();
        assert_eq!(
            on_disk.last_index,
            log.last_index(),
            "store {id}: the entry is durable"
        );
        assert!(
            on_disk.hard_state.unwrap().commit < log.committed,
            "store {id}: the commit index waits for the next write"
        );
    }
}

/// The store of a sleeping region's leader restarts. A request through it wakes its
/// peer, which knows no leader: it campaigns at once, and the followers, asked for their
/// votes by the very peer they follow, grant them although they heard from it within an
/// election timeout. The region is led again, and the request served, without a single
/// tick: no election clock had to run out.
#[test]
fn a_restarted_leader_woken_by_a_request_is_elected_again_without_waiting() {
    let mut net = Net::with_hibernation();
    net.elect(1);
    let mut answer = net.command(1, put(b"k"));
    net.run();
    assert!(answer_of(&mut answer).is_some());
    let term = net.node(1).peer.term();
    assert!(tick_until(&mut net, 200, all_asleep));

    net.restart(1);
    assert!(
        net.node(1).peer.hibernation.is_asleep(),
        "it restarts asleep"
    );
    let mut refused = net.command(1, get(b"k"));
    assert!(
        matches!(
            answer_of(&mut refused).and_then(|r| r.err()),
            Some(Error::NotLeader { leader: None, .. })
        ),
        "no leader yet"
    );
    assert_eq!(
        net.sent(1, MessageType::MsgRequestPreVote),
        2,
        "it campaigns at once"
    );
    net.run();
    assert!(net.node(1).peer.is_leader(), "elected again without a tick");
    assert!(net.node(1).peer.term() > term);
    let mut read = net.command(1, get(b"k"));
    net.run();
    let response = answer_of(&mut read).expect("the read is served");
    assert!(response.err().is_none());
}

/// A follower woken by a request while its leader lives elsewhere campaigns too (it
/// knows no leader), but only with a pre-vote: the others, hearing from their leader,
/// ignore it, the leader pings it into a follower, and nobody's term moves.
#[test]
fn a_restarted_follower_woken_by_a_request_disturbs_no_live_leader() {
    let mut net = Net::with_hibernation();
    net.elect(1);
    let term = net.node(1).peer.term();
    assert!(tick_until(&mut net, 200, all_asleep));
    net.restart(2);
    let mut refused = net.command(2, get(b"k"));
    assert!(matches!(
        answer_of(&mut refused).and_then(|r| r.err()),
        Some(Error::NotLeader { leader: None, .. })
    ));
    assert_eq!(net.sent(2, MessageType::MsgRequestPreVote), 2);
    net.run();
    for id in 1..=3 {
        let raft = &net.node(id).peer.raft.raft;
        assert_eq!((raft.term, raft.leader_id), (term, 1), "store {id}");
    }
    let mut read = net.command(2, get(b"k"));
    net.run();
    assert!(answer_of(&mut read).is_some_and(|r| r.err().is_none()));
}

/// A leader keeps only a digest of its last report for the placement driver; the digest
/// must change with every part of the report the PD acts on.
#[test]
fn the_report_digest_changes_with_every_part_of_the_report() {
    let peer = |id| metapb::Peer { id, store_id: id };
    let report = LeaderReport {
        region: metapb::Region {
            id: 1,
            start_key: b"a".to_vec(),
            end_key: b"m".to_vec(),
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            peers: vec![peer(1), peer(2), peer(3)],
        },
        leader: peer(1),
        pending_peers: Vec::new(),
        approximate_size: Some(100),
    };
    let digest = ready::report_digest(&report);
    assert_eq!(digest, ready::report_digest(&report.clone()));
    let changes: [fn(&mut LeaderReport); 8] = [
        |r| r.region.end_key = b"n".to_vec(),
        |r| r.region.region_epoch.as_mut().unwrap().version = 2,
        |r| r.region.region_epoch.as_mut().unwrap().conf_ver = 2,
        |r| {
            r.region.peers.pop();
        },
        |r| r.leader = metapb::Peer { id: 2, store_id: 2 },
        |r| r.pending_peers.push(metapb::Peer { id: 3, store_id: 3 }),
        |r| r.approximate_size = Some(101),
        |r| r.approximate_size = None,
    ];
    for (i, change) in changes.iter().enumerate() {
        let mut changed = report.clone();
        change(&mut changed);
        assert_ne!(ready::report_digest(&changed), digest, "change {i}");
    }
}
