//! Prometheus metrics of the raftstore.
//!
//! What is measured, and why:
//!
//! - **Proposals** ([`PROPOSALS`], by kind: `write`, `read_index`, `admin`, `conf_change`)
//!   and the commands that never became one ([`PROPOSALS_DROPPED`], by reason: `refused`
//!   when the peer's checks failed (not leader, stale epoch, key outside the region),
//!   `dropped` when raft itself dropped the proposal, e.g. during a leader transfer). A
//!   rising drop rate means clients are chasing leaders.
//! - **Raft activity**: `Ready`s handled ([`READY_HANDLED`]) and messages sent by raft
//!   message type ([`MESSAGES_SENT`]; the set of types is fixed, see [`message_type`]),
//!   which show elections (votes), replication (appends) and snapshots at a glance.
//! - **Commit → apply**: the time from a proposal to the application of its entry
//!   ([`PROPOSE_APPLY_DURATION`], the replication and apply latency a write pays inside the
//!   raftstore), and how many committed entries a peer has not applied yet, sampled on each
//!   log-GC tick ([`COMMIT_APPLY_LAG`]): a growing lag means the apply path cannot keep up.
//! - **Group commit** of the batched writers, by writer (`raft_log`, `apply`, `log_gc`):
//!   tasks and bytes per batch ([`BATCH_TASKS`], [`BATCH_BYTES`]) and the time one batch
//!   takes to write, fsync included ([`BATCH_WRITE_DURATION`]). Batches of one task under
//!   load mean group commit is not grouping; long writes mean a slow disk. Batches that
//!   took longer than [`SLOW_BATCH`] are counted ([`BATCH_WRITE_SLOW`]) and logged at
//!   warn level with the engine's housekeeping at that moment: every write behind such a
//!   batch waited as long.
//! - **Regions and leaders** this store holds ([`STORE_REGIONS`], [`STORE_LEADERS`], by
//!   store id), kept up to date by the Router as peers report their region and leader.
//! - **Engine memory** ([`ENGINE_MEMORY`], by store and part: `write_buffer`, the bytes in
//!   fjall's memtables, and `block_cache`, the bytes its block cache holds), sampled by
//!   the Store every few seconds: the part of a node's memory that is the engine's
//!   caches rather than the raftstore's own. With it, the LSM-tree's housekeeping
//!   ([`ENGINE_HOUSEKEEPING`]: journal files, flushes queued, sealed memtables, tables,
//!   compactions running), which is what fjall stalls writers behind when it lags.
//! - **Router backlog**: raft messages from other stores waiting in the Router's mailbox
//!   ([`ROUTER_INBOUND_QUEUED`], and its high-water mark [`ROUTER_INBOUND_QUEUED_MAX`]):
//!   a Router that falls behind delays every region of the store, and its queue costs
//!   memory (the mailbox holds up to `MAILBOX_CAPACITY` messages).
//! - **Hibernation**: peers asleep now ([`HIBERNATING_PEERS`]; see `hibernate.rs`). On an
//!   idle store nearly all of them should be; a region that never sleeps costs a timer
//!   and, on its leader, heartbeats. [`HIBERNATION_TRANSITIONS`] counts peers falling
//!   asleep and waking: under load a high rate means regions sleep between writes.
//! - **Snapshots** ([`SNAPSHOTS`], by event `generate`, `apply`, `send`, `receive` and
//!   result `ok` / `failed`): snapshots are the expensive way to catch a follower up, so
//!   their rate and failures matter.
//! - **Refused input**: raft messages dropped before raft saw them ([`MESSAGES_REFUSED`],
//!   by reason) and peers restarted after raft panicked anyway ([`PEER_RESTARTS`]): any
//!   count above zero means a bug or someone forging traffic.
//!
//! Every metric lives in the process's default registry (`prometheus::default_registry`),
//! created on first use; the node's HTTP API exposes them all at `GET /metrics`. Labels
//! take values from small fixed sets (or store ids), so the number of series stays
//! bounded. Updating a metric is an atomic add: cheap enough for every proposal and batch.

use std::sync::LazyLock;
use std::time::Instant;

use prometheus::{
    exponential_buckets, register_histogram, register_histogram_vec, register_int_counter,
    register_int_counter_vec, register_int_gauge, register_int_gauge_vec, Histogram, HistogramVec,
    IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
};
use raft::eraftpb::MessageType;
use tinykv_proto::raft_cmdpb::{AdminCmdType, RaftCmdRequest};
use tinykv_proto::raft_serverpb::ExtraMessageType;

/// Histogram buckets for durations: 0.5 ms to about 16 s, doubling.
pub fn duration_buckets() -> Vec<f64> {
    exponential_buckets(0.0005, 2.0, 16).expect("valid buckets")
}

/// Proposals made by leaders, by kind (see [`proposal_kind`]).
pub static PROPOSALS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "tinykv_raft_proposals_total",
        "Commands proposed to raft (reads as ReadIndex requests), by kind.",
        &["kind"]
    )
    .expect("metric registers once")
});

/// Commands answered with an error instead of being proposed, by reason: `refused` (the
/// peer's checks failed) or `dropped` (raft dropped the proposal).
pub static PROPOSALS_DROPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "tinykv_raft_proposals_dropped_total",
        "Commands that were not proposed: refused by the peer's checks or dropped by raft.",
        &["reason"]
    )
    .expect("metric registers once")
});

/// `Ready`s taken from raft and handled by PeerFsms.
pub static READY_HANDLED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "tinykv_raft_ready_handled_total",
        "Raft Ready structs handled by the PeerFsms."
    )
    .expect("metric registers once")
});

/// Raft messages handed to the transport, by raft message type (and hibernation
/// messages, by their own names: see [`hibernation_message_sent`]).
pub static MESSAGES_SENT: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "tinykv_raft_messages_sent_total",
        "Raft messages handed to the transport, by raft message type.",
        &["type"]
    )
    .expect("metric registers once")
});

/// Seconds from a proposal to the application of its entry by the ApplyFsm.
pub static PROPOSE_APPLY_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "tinykv_raft_propose_apply_duration_seconds",
        "Time from proposing a command to applying its log entry.",
        duration_buckets()
    )
    .expect("metric registers once")
});

/// Committed but not yet applied entries of a peer, sampled on each log-GC tick.
pub static COMMIT_APPLY_LAG: LazyLock<Histogram> = LazyLock::new(|| {
    let mut buckets = vec![0.0];
    buckets.extend(exponential_buckets(1.0, 2.0, 15).expect("valid buckets"));
    register_histogram!(
        "tinykv_raft_commit_apply_lag_entries",
        "Committed minus applied index of a peer, sampled on each raft log GC tick.",
        buckets
    )
    .expect("metric registers once")
});

/// Tasks per batch of a batched writer, by writer.
pub static BATCH_TASKS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "tinykv_batch_write_size_tasks",
        "Tasks (one per region hand-off) written together in one batch, by writer.",
        &["writer"],
        exponential_buckets(1.0, 2.0, 12).expect("valid buckets")
    )
    .expect("metric registers once")
});

/// Bytes of mutations per batch of a batched writer, by writer.
pub static BATCH_BYTES: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "tinykv_batch_write_size_bytes",
        "Bytes of keys and values written together in one batch, by writer.",
        &["writer"],
        exponential_buckets(256.0, 4.0, 12).expect("valid buckets")
    )
    .expect("metric registers once")
});

/// Seconds one batch takes to write (and fsync, if any task asked), by writer.
pub static BATCH_WRITE_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "tinykv_batch_write_duration_seconds",
        "Time to write one batch to the engine, fsync included, by writer.",
        &["writer"],
        duration_buckets()
    )
    .expect("metric registers once")
});

/// A batch slower than this is a stall: counted and logged (see the module documentation).
pub const SLOW_BATCH: std::time::Duration = std::time::Duration::from_millis(50);

/// Batches that took longer than [`SLOW_BATCH`] to write, by writer.
pub static BATCH_WRITE_SLOW: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "tinykv_batch_write_slow_total",
        "Batches that took longer than 50 ms to write, fsync included, by writer.",
        &["writer"]
    )
    .expect("metric registers once")
});

/// The engine's housekeeping by store and part (`journals`, `flushes_queued`,
/// `sealed_memtables`, `tables`, `compactions_running`).
pub static ENGINE_HOUSEKEEPING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "tinykv_engine_housekeeping",
        "The LSM-tree's housekeeping: journal files, memtable flushes queued, sealed memtables, table files, compactions running.",
        &["store", "part"]
    )
    .expect("metric registers once")
});

/// Regions with a peer on the store, by store id.
pub static STORE_REGIONS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "tinykv_store_regions",
        "Regions with a peer on this store.",
        &["store"]
    )
    .expect("metric registers once")
});

/// Regions whose leader is the store's peer, by store id.
pub static STORE_LEADERS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "tinykv_store_leaders",
        "Regions whose leader is this store's peer.",
        &["store"]
    )
    .expect("metric registers once")
});

/// The engine's memory by store and part (`write_buffer`, `block_cache`), in bytes.
pub static ENGINE_MEMORY: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "tinykv_engine_memory_bytes",
        "Memory held by the engine: memtables (write_buffer) and block cache (block_cache).",
        &["store", "part"]
    )
    // Registration fails only for a name registered twice; this LazyLock is its only
    // registration, so it cannot.
    .expect("metric registers once")
});

/// Snapshot events (`generate`, `apply`, `send`, `receive`) by result (`ok`, `failed`).
pub static SNAPSHOTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "tinykv_snapshots_total",
        "Raft snapshots generated, applied, sent and received, by result.",
        &["event", "result"]
    )
    .expect("metric registers once")
});

/// Raft messages from other stores dropped before raft saw them, by reason:
/// `malformed` (they break a promise raft-rs relies on, see `inbound.rs`) or
/// `wrong_store` (a member peer's id on another store than the region records).
pub static MESSAGES_REFUSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "tinykv_raft_messages_refused_total",
        "Raft messages from other stores dropped before raft saw them, by reason.",
        &["reason"]
    )
    .expect("metric registers once")
});

/// Peers restarted from their state on disk after raft-rs panicked on a message.
pub static PEER_RESTARTS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "tinykv_raft_peer_restarts_total",
        "Peers restarted from their state on disk after raft panicked on a message."
    )
    .expect("metric registers once")
});

/// Raft messages from other stores waiting in the Router's mailbox now.
pub static ROUTER_INBOUND_QUEUED: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "tinykv_router_inbound_queued",
        "Raft messages from other stores in the Router's mailbox, not yet routed."
    )
    // Registration fails only for a name registered twice; this LazyLock is its only
    // registration, so it cannot.
    .expect("metric registers once")
});

/// The most raft messages from other stores ever waiting in the Router's mailbox at once.
pub static ROUTER_INBOUND_QUEUED_MAX: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "tinykv_router_inbound_queued_max",
        "The most raft messages from other stores that waited in the Router's mailbox at once since the node started."
    )
    // Registration fails only for a name registered twice; this LazyLock is its only
    // registration, so it cannot.
    .expect("metric registers once")
});

/// A raft message from another store entered the Router's mailbox.
pub fn router_inbound_queued() {
    ROUTER_INBOUND_QUEUED.inc();
    let queued = ROUTER_INBOUND_QUEUED.get();
    if queued > ROUTER_INBOUND_QUEUED_MAX.get() {
        ROUTER_INBOUND_QUEUED_MAX.set(queued);
    }
}

/// Peers of this process that sleep (hibernate) now.
pub static HIBERNATING_PEERS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "tinykv_raft_hibernating_peers",
        "Region peers asleep: no ticks and no heartbeats until a message or request wakes them."
    )
    // Registration fails only for a name registered twice; this LazyLock is its only
    // registration, so it cannot.
    .expect("metric registers once")
});

/// Peers of this process put to sleep and woken, by the state entered (`asleep`,
/// `awake`): a region that sleeps and wakes for every write pays for both.
pub static HIBERNATION_TRANSITIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "tinykv_raft_hibernation_transitions_total",
        "Region peers that fell asleep or woke up, by the state entered.",
        &["to"]
    )
    // Registration fails only for a name registered twice; this LazyLock is its only
    // registration, so it cannot.
    .expect("metric registers once")
});

/// The kinds of [`PROPOSALS`].
pub const PROPOSAL_KINDS: [&str; 4] = ["write", "read_index", "admin", "conf_change"];
/// The reasons of [`PROPOSALS_DROPPED`].
pub const DROP_REASONS: [&str; 2] = ["refused", "dropped"];
/// The reasons of [`MESSAGES_REFUSED`].
pub const REFUSAL_REASONS: [&str; 2] = ["malformed", "wrong_store"];
/// The writers of the batch metrics.
pub const WRITERS: [&str; 3] = ["raft_log", "apply", "log_gc"];
/// The events of [`SNAPSHOTS`].
pub const SNAPSHOT_EVENTS: [&str; 4] = ["generate", "apply", "send", "receive"];

/// Registers every raftstore metric now, with a zero series for each known label value,
/// so that `/metrics` lists them all from the start (a metric is otherwise registered on
/// first use, and a labelled one shows no series until one is used).
pub fn register_all() {
    for kind in PROPOSAL_KINDS {
        PROPOSALS.with_label_values(&[kind]);
    }
    for reason in DROP_REASONS {
        PROPOSALS_DROPPED.with_label_values(&[reason]);
    }
    for t in <MessageType as protobuf::ProtobufEnum>::values() {
        MESSAGES_SENT.with_label_values(&[message_type(*t)]);
    }
    for reason in REFUSAL_REASONS {
        MESSAGES_REFUSED.with_label_values(&[reason]);
    }
    for writer in WRITERS {
        BATCH_TASKS.with_label_values(&[writer]);
        BATCH_BYTES.with_label_values(&[writer]);
        BATCH_WRITE_DURATION.with_label_values(&[writer]);
        BATCH_WRITE_SLOW.with_label_values(&[writer]);
    }
    for event in SNAPSHOT_EVENTS {
        for result in ["ok", "failed"] {
            SNAPSHOTS.with_label_values(&[event, result]);
        }
    }
    LazyLock::force(&PROPOSALS);
    LazyLock::force(&PROPOSALS_DROPPED);
    LazyLock::force(&READY_HANDLED);
    LazyLock::force(&MESSAGES_SENT);
    LazyLock::force(&PROPOSE_APPLY_DURATION);
    LazyLock::force(&COMMIT_APPLY_LAG);
    LazyLock::force(&BATCH_TASKS);
    LazyLock::force(&BATCH_BYTES);
    LazyLock::force(&BATCH_WRITE_DURATION);
    LazyLock::force(&STORE_REGIONS);
    LazyLock::force(&STORE_LEADERS);
    LazyLock::force(&ENGINE_MEMORY);
    LazyLock::force(&ENGINE_HOUSEKEEPING);
    LazyLock::force(&BATCH_WRITE_SLOW);
    LazyLock::force(&SNAPSHOTS);
    LazyLock::force(&MESSAGES_REFUSED);
    LazyLock::force(&PEER_RESTARTS);
    LazyLock::force(&HIBERNATING_PEERS);
    LazyLock::force(&HIBERNATION_TRANSITIONS);
    LazyLock::force(&ROUTER_INBOUND_QUEUED);
    LazyLock::force(&ROUTER_INBOUND_QUEUED_MAX);
}

/// The kind a command is counted under in [`PROPOSALS`]: `conf_change` for a membership
/// change, `admin` for other admin commands, `read_index` for read-only commands, `write`
/// otherwise.
pub fn proposal_kind(request: &RaftCmdRequest) -> &'static str {
    match &request.admin_request {
        Some(admin) if admin.cmd_type() == AdminCmdType::ChangePeer => "conf_change",
        Some(_) => "admin",
        None if crate::util::is_read_only(request) => "read_index",
        None => "write",
    }
}

/// Counts one proposal of `kind`.
pub fn proposed(kind: &str) {
    PROPOSALS.with_label_values(&[kind]).inc();
}

/// Counts one command answered with an error instead of being proposed.
pub fn proposal_dropped(reason: &str) {
    PROPOSALS_DROPPED.with_label_values(&[reason]).inc();
}

/// Counts one raft message dropped before raft saw it, for `reason` (one of
/// [`REFUSAL_REASONS`]).
pub fn message_refused(reason: &str) {
    MESSAGES_REFUSED.with_label_values(&[reason]).inc();
}

/// Counts one peer restarted from disk after raft panicked.
pub fn peer_restarted() {
    PEER_RESTARTS.inc();
}

/// Records a proposal made at `proposed_at` whose entry was just applied.
pub fn applied_after(proposed_at: Instant) {
    PROPOSE_APPLY_DURATION.observe(proposed_at.elapsed().as_secs_f64());
}

/// Counts one snapshot `event` that succeeded (`ok`) or not.
pub fn snapshot(event: &str, ok: bool) {
    let result = if ok { "ok" } else { "failed" };
    SNAPSHOTS.with_label_values(&[event, result]).inc();
}

/// The label of a raft message type in [`MESSAGES_SENT`].
pub fn message_type(t: MessageType) -> &'static str {
    match t {
        MessageType::MsgHup => "hup",
        MessageType::MsgBeat => "beat",
        MessageType::MsgPropose => "propose",
        MessageType::MsgAppend => "append",
        MessageType::MsgAppendResponse => "append_response",
        MessageType::MsgRequestVote => "request_vote",
        MessageType::MsgRequestVoteResponse => "request_vote_response",
        MessageType::MsgSnapshot => "snapshot",
        MessageType::MsgHeartbeat => "heartbeat",
        MessageType::MsgHeartbeatResponse => "heartbeat_response",
        MessageType::MsgUnreachable => "unreachable",
        MessageType::MsgSnapStatus => "snap_status",
        MessageType::MsgCheckQuorum => "check_quorum",
        MessageType::MsgTransferLeader => "transfer_leader",
        MessageType::MsgTimeoutNow => "timeout_now",
        MessageType::MsgReadIndex => "read_index",
        MessageType::MsgReadIndexResp => "read_index_response",
        MessageType::MsgRequestPreVote => "request_pre_vote",
        MessageType::MsgRequestPreVoteResponse => "request_pre_vote_response",
    }
}

/// The label of an extra (non-raft) message type in [`MESSAGES_SENT`].
pub fn extra_message_type(t: ExtraMessageType) -> &'static str {
    match t {
        ExtraMessageType::MsgExtraInvalid => "extra_invalid",
        ExtraMessageType::MsgCheckStalePeer => "check_stale_peer",
        ExtraMessageType::MsgCheckStalePeerResponse => "check_stale_peer_response",
        ExtraMessageType::MsgHibernateRequest => "hibernate_request",
        ExtraMessageType::MsgHibernateResponse => "hibernate_response",
        ExtraMessageType::MsgRegionWakeUp => "region_wake_up",
    }
}

/// Counts one hibernation message of type `t` handed to the transport, in
/// [`MESSAGES_SENT`] beside raft's own.
pub fn hibernation_message_sent(t: ExtraMessageType) {
    MESSAGES_SENT
        .with_label_values(&[extra_message_type(t)])
        .inc();
}

/// Counts one peer entering `state` (`asleep` or `awake`).
pub fn hibernation_transition(state: &'static str) {
    HIBERNATION_TRANSITIONS.with_label_values(&[state]).inc();
}

/// Counts one raft message of type `t` handed to the transport.
pub fn message_sent(t: MessageType) {
    MESSAGES_SENT.with_label_values(&[message_type(t)]).inc();
}

/// Records one batch of `tasks` tasks and `bytes` bytes written by `writer` in `elapsed`;
/// answers whether it was slower than [`SLOW_BATCH`].
pub fn batch_written(
    writer: &str,
    tasks: usize,
    bytes: usize,
    elapsed: std::time::Duration,
) -> bool {
    BATCH_TASKS
        .with_label_values(&[writer])
        .observe(tasks as f64);
    BATCH_BYTES
        .with_label_values(&[writer])
        .observe(bytes as f64);
    BATCH_WRITE_DURATION
        .with_label_values(&[writer])
        .observe(elapsed.as_secs_f64());
    let slow = elapsed > SLOW_BATCH;
    if slow {
        BATCH_WRITE_SLOW.with_label_values(&[writer]).inc();
    }
    slow
}

/// Sets the region and leader gauges of store `store_id`.
pub fn set_store_counts(store_id: u64, regions: usize, leaders: usize) {
    let store = store_id.to_string();
    STORE_REGIONS
        .with_label_values(&[store.as_str()])
        .set(regions as i64);
    STORE_LEADERS
        .with_label_values(&[store.as_str()])
        .set(leaders as i64);
}

/// Sets the housekeeping gauges of store `store_id`.
pub fn set_engine_housekeeping(store_id: u64, state: &crate::engine::Housekeeping) {
    let store = store_id.to_string();
    for (part, count) in [
        ("journals", state.journals),
        ("flushes_queued", state.flushes_queued),
        ("sealed_memtables", state.sealed_memtables),
        ("tables", state.tables),
        ("compactions_running", state.compactions_running),
    ] {
        ENGINE_HOUSEKEEPING
            .with_label_values(&[store.as_str(), part])
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
}

/// Sets the engine memory gauges of store `store_id`.
pub fn set_engine_memory(store_id: u64, write_buffer: u64, block_cache: u64) {
    let store = store_id.to_string();
    for (part, bytes) in [("write_buffer", write_buffer), ("block_cache", block_cache)] {
        ENGINE_MEMORY
            .with_label_values(&[store.as_str(), part])
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use tinykv_proto::raft_cmdpb::{AdminRequest, CmdType, Request};

    use super::*;

    fn request(cmd_type: CmdType) -> RaftCmdRequest {
        RaftCmdRequest {
            requests: vec![Request {
                cmd_type: cmd_type as i32,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn admin(cmd_type: AdminCmdType) -> RaftCmdRequest {
        RaftCmdRequest {
            admin_request: Some(AdminRequest {
                cmd_type: cmd_type as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn proposals_are_counted_by_kind() {
        assert_eq!(proposal_kind(&request(CmdType::Put)), "write");
        assert_eq!(proposal_kind(&request(CmdType::Get)), "read_index");
        assert_eq!(
            proposal_kind(&admin(AdminCmdType::ChangePeer)),
            "conf_change"
        );
        assert_eq!(proposal_kind(&admin(AdminCmdType::Split)), "admin");
        let before = PROPOSALS.with_label_values(&["write"]).get();
        proposed("write");
        assert!(PROPOSALS.with_label_values(&["write"]).get() > before);
    }

    #[test]
    fn every_metric_is_exposed_with_its_name() {
        register_all();
        snapshot("generate", false);
        message_sent(MessageType::MsgAppend);
        set_store_counts(77, 3, 2);
        set_engine_memory(77, 1024, 2048);
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&prometheus::gather())
            .unwrap();
        for name in [
            "tinykv_snapshots_total{event=\"generate\",result=\"failed\"}",
            "tinykv_raft_messages_sent_total{type=\"append\"}",
            "tinykv_store_regions{store=\"77\"} 3",
            "tinykv_store_leaders{store=\"77\"} 2",
            "tinykv_engine_memory_bytes{part=\"write_buffer\",store=\"77\"} 1024",
            "tinykv_engine_memory_bytes{part=\"block_cache\",store=\"77\"} 2048",
            "tinykv_raft_ready_handled_total",
            "tinykv_raft_propose_apply_duration_seconds_bucket",
            "tinykv_raft_commit_apply_lag_entries_bucket",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
