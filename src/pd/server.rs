//! The placement driver as one node runs it: active only while this node leads the meta
//! region.
//!
//! Every node has a [`PdServer`]; each request first checks where the meta region's
//! leadership is. A node whose peer does not lead it answers [`Error::NotPdLeader`]
//! naming the leader it knows. The leader serves from a `Leadership`: the PD core's
//! [`Coordinator`] and the durable records, loaded when the leadership began and tied to
//! that raft term. When the term changes (even if this node leads again) the state is
//! loaded afresh, because another leader may have written in between.
//!
//! **Taking over.** The new leader reads the records with a linearizable read of the
//! meta region. If there are none yet, this is the cluster's first PD: it writes the
//! cluster record, the initial stores and the allocator's mark. If the key space has
//! never been split at [`META_REGION_START`], the leader of the region holding that key
//! splits it first, so the meta region exists before anything is written to it. The
//! liveness clocks start at the takeover, so no store is declared down for heartbeats
//! sent to the previous leader.
//!
//! **Writing.** Every change (a store joins, is drained or becomes a tombstone, the
//! allocator's mark moves) is written through raft before it is acknowledged or acted
//! on. Writes name the leadership's term, and the raftstore proposes such a command only
//! in that very term: a decision made on a view read in an earlier leadership can never
//! commit. A failed write discards the loaded state, so the next request reloads it.
//!
//! **Heartbeats.** A node's heartbeat carries its store and every region it leads; the
//! coordinator records each and answers with the step of that region's operator, if it
//! has one. Stores being drained whose last peer is gone are then recorded as
//! tombstones, but only once the leadership is old enough for every region leader to
//! have reported (three heartbeat intervals): a fresh leader's empty view of a store is
//! not proof that the store is empty.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tinykv_actors::msg::CmdResponse;
use tinykv_actors::{Cf, StoreRouter};
use tinykv_proto::metapb::{self, StoreState};
use tinykv_proto::raft_cmdpb::{
    CmdType, GetRequest, PutRequest, RaftCmdRequest, RaftRequestHeader, Request, SnapRequest,
};

use super::auth_records;
use super::ids::MAX_ID_BATCH;
use super::meta::{
    auth_entry, cluster_entry, gc_safe_point_entry, id_limit_entry, store_entry,
    store_id_limit_entry, tso_limit_entry, ClusterRecord, DamagedRecord, PdRecords, RecordKind,
    StoreRecord, META_REGION_START, RECORDS_END, RECORDS_START, STORE_ID_BATCH,
};
use super::probe::Probe;
use super::tso::{self, Take, TimestampOracle, Timestamps};
use super::views;
use super::wire::{
    HeartbeatBatch, HeartbeatReply, IdsReply, JoinReply, PdRequest, RegionCommand, TimestampsReply,
};
use crate::admin_service::AdminService;
use crate::auth::AuthSet;
use crate::config::{PdConfig, StoreAddress};
use crate::error::{Error, Result};
use crate::kv_service::cf_name;
use crate::pd::{AllocId, ClusterConfig, ClusterInfo, Coordinator, PdError, StoreHealth};
use crate::security::Tls;
use crate::server::address_book::AddressBook;

/// The region and peer ids the PD allocates lie in `[FIRST_ALLOCATED_ID, ID_SPACE_END)`:
/// small, above the bootstrap ids (region 1, peers numbered like the initial stores, the
/// meta region), and below the `store_id << 40` ids of stores of earlier versions.
pub const FIRST_ALLOCATED_ID: u64 = 1000;
/// See [`FIRST_ALLOCATED_ID`].
pub const ID_SPACE_END: u64 = 1 << 40;
/// How many region and peer ids the PD reserves per durable write.
const ID_BATCH: u64 = 10_000;
/// How far past every id it knows a leader that found the id mark damaged resumes: more
/// ids than any cluster allocates between two PD leaderships.
const ID_REPAIR_MARGIN: u64 = 1 << 32;
/// The meta region's id: the one region split off with ids nobody allocated, before there
/// is a PD to allocate them (see [`meta_split_ids`]).
const META_REGION_ID: u64 = 2;

/// How far past its own clock a leader that found the oracle's limit damaged resumes
/// timestamps.
const TSO_REPAIR_MARGIN_MS: u64 = 60_000;

/// How many heartbeat intervals a leadership must last before it turns drained stores
/// into tombstones.
const SETTLE_INTERVALS: u64 = 3;

/// How many heartbeat intervals a leadership must last before its view of the regions
/// counts for `GET /health` (every leader reports once per interval).
const HEALTH_SETTLE_INTERVALS: u64 = 2;

/// How often, and how long apart, the meta region is looked up again while the local
/// view is catching up with a split.
const MAX_VIEW_RETRIES: usize = 50;
const VIEW_RETRY_PAUSE: Duration = Duration::from_millis(20);

/// The node's placement-driver endpoint; see the module documentation. Clones share it.
#[derive(Clone)]
pub struct PdServer {
    inner: Arc<Inner>,
}

/// What a placement driver needs to know besides the store it runs on.
#[derive(Debug, Clone)]
pub struct PdSetup {
    /// The `[pd]` section.
    pub config: PdConfig,
    /// The cluster's id.
    pub cluster_id: u64,
    /// The stores recorded as the cluster's first if this node is the first PD leader.
    pub initial_stores: Vec<StoreAddress>,
    /// How long a write to the meta region may take.
    pub timeout: Duration,
    /// SHA-256 of `security.root_token`, recorded as the root token if none is yet.
    pub root_token_sha256: Option<String>,
}

struct Inner {
    store: StoreRouter,
    admin: AdminService,
    addresses: AddressBook,
    setup: PdSetup,
    probe: Probe,
    leadership: tokio::sync::Mutex<Option<Leadership>>,
    /// Timestamp requests waiting to be served together (see [`PdServer::timestamps`]).
    waiting_timestamps: std::sync::Mutex<Vec<WaitingTimestamps>>,
}

/// A timestamp request waiting for a batch: how many, and where the answer goes.
type WaitingTimestamps = (u64, tokio::sync::oneshot::Sender<Result<Timestamps>>);

/// The PD state of one leadership of the meta region.
struct Leadership {
    region_id: u64,
    term: u64,
    since_ms: u64,
    coordinator: Coordinator,
    cluster: ClusterRecord,
    stores: BTreeMap<u64, StoreRecord>,
    next_store_id: u64,
    store_id_limit: u64,
    /// Region and peer ids, for the operators and for the nodes.
    ids: IdRange,
    /// Stores whose damaged record could not be repaired when the leadership began; each
    /// is recorded again from its next heartbeat.
    unrecorded_stores: BTreeSet<u64>,
    /// Set when a write failed: the state may no longer match the records.
    poisoned: bool,
    /// Authentication's state, as recorded.
    auth: AuthSet,
    /// Stores that sent a full report (every region they lead) in this leadership; the
    /// others are asked for one.
    fully_reported: BTreeSet<u64>,
    /// The timestamp oracle, resumed from the recorded limit.
    tso: TimestampOracle,
    /// Garbage collection's safe point, as recorded.
    gc_safe_point: u64,
}

impl PdServer {
    /// A server over the local store, reaching other nodes with `tls` (plaintext if
    /// `None`).
    pub fn new(
        store: StoreRouter,
        admin: AdminService,
        addresses: AddressBook,
        setup: PdSetup,
        tls: Option<&Tls>,
    ) -> Result<PdServer> {
        Ok(PdServer {
            inner: Arc::new(Inner {
                store,
                admin,
                addresses,
                probe: Probe::new(setup.cluster_id, tls)?,
                setup,
                leadership: tokio::sync::Mutex::new(None),
                waiting_timestamps: std::sync::Mutex::new(Vec::new()),
            }),
        })
    }

    /// Serves one request if this node leads the meta region.
    pub async fn handle(&self, request: PdRequest) -> Result<Value> {
        if let PdRequest::Timestamps { count } = request {
            let batch = self.timestamps(count).await?;
            return Ok(
                serde_json::to_value(TimestampsReply::from(batch)).expect("replies serialize")
            );
        }
        // Under the lock, so that two requests of a first leadership never both split.
        let mut guard = self.inner.leadership.lock().await;
        let leadership = self.current_leadership(&mut guard).await?;
        let result = self.dispatch(leadership, request).await;
        if leadership.poisoned {
            *guard = None;
        }
        result
    }

    /// The leadership this node holds now, loaded afresh if the term changed.
    async fn current_leadership<'a>(
        &self,
        guard: &'a mut Option<Leadership>,
    ) -> Result<&'a mut Leadership> {
        let (region_id, term) = self.meta_leadership().await?;
        if guard.as_ref().map(|l| (l.region_id, l.term)) != Some((region_id, term)) {
            *guard = None;
            *guard = Some(self.take_over(region_id, term).await?);
        }
        Ok(guard.as_mut().expect("loaded above"))
    }

    /// `count` timestamps. Requests that arrive while another batch is served wait
    /// together: whichever takes the leadership lock next serves every waiting request
    /// with one leadership check and one confirming read, so the oracle's rate is not
    /// bounded by one read per request.
    async fn timestamps(&self, count: u64) -> Result<Timestamps> {
        if !(1..=tso::MAX_BATCH).contains(&count) {
            return Err(Error::bad_request(
                "invalid_count",
                format!("count must be 1 to {}, not {count}", tso::MAX_BATCH),
            ));
        }
        // A batch whose server was cancelled (its client went away) is dropped unanswered:
        // its requests wait again, for the next batch.
        loop {
            let (answer, mut answered) = tokio::sync::oneshot::channel();
            self.waiting().push((count, answer));
            let mut guard = self.inner.leadership.lock().await;
            match answered.try_recv() {
                // An earlier holder of the lock served this request with its batch.
                Ok(result) => return result,
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => continue,
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
            }
            let waiting = std::mem::take(&mut *self.waiting());
            let served: Result<Vec<Timestamps>> = async {
                let leadership = self.current_leadership(&mut guard).await?;
                self.confirm_leadership(leadership).await?;
                let mut batches = Vec::with_capacity(waiting.len());
                for (count, _) in &waiting {
                    batches.push(self.take_timestamps(leadership, *count).await?);
                }
                Ok(batches)
            }
            .await;
            if guard.as_ref().is_some_and(|l| l.poisoned) {
                *guard = None;
            }
            // Answered before the lock is let go, so the next holder finds them answered.
            match served {
                Ok(batches) => {
                    for ((_, answer), batch) in waiting.into_iter().zip(batches) {
                        let _ = answer.send(Ok(batch));
                    }
                }
                Err(e) => {
                    for (_, answer) in waiting {
                        let _ = answer.send(Err(e.replicate()));
                    }
                }
            }
            drop(guard);
            if let Ok(result) = answered.await {
                return result;
            }
        }
    }

    /// The timestamp requests waiting for a batch.
    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<WaitingTimestamps>> {
        self.inner
            .waiting_timestamps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The meta region's id and this node's term as its leader; splits the meta region
    /// off if the key space has no such region yet.
    async fn meta_leadership(&self) -> Result<(u64, u64)> {
        let store = &self.inner.store;
        let not_leader = |leader: Option<StoreAddress>| Err(Error::NotPdLeader { leader });
        let mut split_issued = false;
        for _ in 0..MAX_VIEW_RETRIES {
            let Some(route) = store.find_region(META_REGION_START).await? else {
                return not_leader(None);
            };
            let Some(status) = store.region_status(route.region.id).await? else {
                return not_leader(None);
            };
            let region = &status.region;
            let holds_meta_start = region.start_key.as_slice() <= META_REGION_START
                && (region.end_key.is_empty() || region.end_key.as_slice() > META_REGION_START);
            if !holds_meta_start || (split_issued && region.start_key != META_REGION_START) {
                // The router, or the peer (it learns of a split after the split's
                // answer), has not yet caught up with a split that just happened.
                tokio::time::sleep(VIEW_RETRY_PAUSE).await;
                continue;
            }
            if status.leader_id != status.peer.id {
                let leader = region
                    .peers
                    .iter()
                    .find(|p| p.id == status.leader_id)
                    .and_then(|p| self.inner.addresses.get(p.store_id));
                return not_leader(leader);
            }
            if region.start_key == META_REGION_START {
                return Ok((region.id, status.term));
            }
            tracing::info!(
                region = region.id,
                "splitting the meta region off the key space"
            );
            let highest_store_id = self.inner.addresses.all().iter().map(|a| a.id).max();
            let highest_store_id = highest_store_id.unwrap_or(0);
            self.inner
                .admin
                .split_with_ids(region.id, vec![META_REGION_START.to_vec()], |region| {
                    Ok(meta_split_ids(region, highest_store_id))
                })
                .await?;
            split_issued = true;
        }
        not_leader(None)
    }

    /// Loads (or, for the first PD ever, writes) the records and builds the state of a
    /// new leadership.
    async fn take_over(&self, region_id: u64, term: u64) -> Result<Leadership> {
        let inner = &self.inner;
        let (mut records, damaged) = PdRecords::decode(&self.read_records(region_id, term).await?);
        let mut unrecorded_stores = BTreeSet::new();
        if !damaged.is_empty() {
            let repairs = self.repair(&mut records, &damaged, &mut unrecorded_stores);
            if !repairs.is_empty() {
                self.write(region_id, term, repairs).await?;
            }
        }
        if records.cluster.is_none() {
            let cluster = ClusterRecord {
                cluster_id: inner.setup.cluster_id,
                max_peer_count: inner.setup.config.max_peer_count,
            };
            let stores: Vec<StoreRecord> = inner
                .setup
                .initial_stores
                .iter()
                .map(StoreRecord::up)
                .collect();
            let limit = stores.iter().map(|s| s.id).max().unwrap_or(0);
            let mut entries = vec![cluster_entry(&cluster), store_id_limit_entry(limit)];
            entries.extend(stores.iter().map(store_entry));
            self.write(region_id, term, entries).await?;
            tracing::info!(?cluster, stores = stores.len(), "cluster metadata written");
            records = PdRecords {
                cluster: Some(cluster),
                stores: stores.into_iter().map(|s| (s.id, s)).collect(),
                store_id_limit: limit,
                id_limit: 0,
                auth: AuthSet::default(),
                tso_limit: 0,
                gc_safe_point: 0,
            };
        }
        let root = inner.setup.root_token_sha256.as_deref();
        if let Some(auth) = auth_records::bootstrap_root(&records.auth, root, now_ms()) {
            self.write(region_id, term, vec![auth_entry(&auth)]).await?;
            tracing::info!("the root token of security.root_token is recorded");
            records.auth = auth;
        }
        let Some(cluster) = records.cluster else {
            return Err(Error::Io("the cluster record is missing".into()));
        };
        if cluster.cluster_id != inner.setup.cluster_id {
            return Err(Error::Io(format!(
                "the placement driver's records belong to cluster {}, but this node is in cluster {}",
                cluster.cluster_id, inner.setup.cluster_id
            )));
        }
        let now = now_ms();
        let mut info = ClusterInfo::new(ClusterConfig::from(&metapb::Cluster {
            id: cluster.cluster_id,
            max_peer_count: cluster.max_peer_count as u32,
        }));
        for record in records.stores.values() {
            info.put_store(store_meta(record), now)?;
            if record.state() != StoreState::Up {
                info.set_store_state(record.id, record.state())?;
            }
        }
        info.reset_liveness_clocks(now);
        let ids = if records.id_limit > 0 {
            IdRange::above(records.id_limit)
        } else {
            let meta = inner
                .store
                .region_status(region_id)
                .await?
                .map(|s| s.region);
            let highest = self.highest_bootstrap_id(&records, meta.as_ref());
            IdRange::above(highest.max(FIRST_ALLOCATED_ID - 1))
        };
        let next_store_id = records
            .store_id_limit
            .max(records.stores.keys().max().copied().unwrap_or(0))
            + 1;
        tracing::info!(
            region = region_id,
            term,
            stores = records.stores.len(),
            "this node now runs the placement driver"
        );
        Ok(Leadership {
            region_id,
            term,
            since_ms: now,
            coordinator: Coordinator::new(info, inner.setup.config.scheduler()),
            cluster,
            stores: records.stores,
            next_store_id,
            store_id_limit: next_store_id - 1,
            ids,
            unrecorded_stores,
            poisoned: false,
            auth: records.auth,
            fully_reported: BTreeSet::new(),
            tso: TimestampOracle::resume(records.tso_limit),
            gc_safe_point: records.gc_safe_point,
        })
    }

    /// Repairs the damaged records (logging each): the cluster record from this node's
    /// configuration, a store's record from the address book (its state reset to Up; a
    /// store the book does not know is recorded again from its next heartbeat, listed in
    /// `unrecorded_stores`), the allocator's mark from the highest store id known plus a
    /// margin. Returns the entries to write; `records` is updated to match.
    fn repair(
        &self,
        records: &mut PdRecords,
        damaged: &[DamagedRecord],
        unrecorded_stores: &mut BTreeSet<u64>,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let inner = &self.inner;
        let mut entries = Vec::new();
        for record in damaged {
            match record.record {
                RecordKind::Cluster => {
                    let cluster = ClusterRecord {
                        cluster_id: inner.setup.cluster_id,
                        max_peer_count: inner.setup.config.max_peer_count,
                    };
                    tracing::warn!(
                        ?cluster,
                        "{}; rewriting it from this node's configuration",
                        record.problem
                    );
                    entries.push(cluster_entry(&cluster));
                    records.cluster = Some(cluster);
                }
                RecordKind::Store(id) => match inner.addresses.get(id) {
                    Some(address) => {
                        tracing::warn!(
                            store = id,
                            "{}; rewriting it from the address book (state Up)",
                            record.problem
                        );
                        let store = StoreRecord::up(&address);
                        entries.push(store_entry(&store));
                        records.stores.insert(id, store);
                    }
                    None => {
                        tracing::warn!(
                            store = id,
                            "{}; the store is recorded again from its next heartbeat",
                            record.problem
                        );
                        unrecorded_stores.insert(id);
                    }
                },
                RecordKind::StoreIdLimit => {
                    let highest = records
                        .stores
                        .keys()
                        .chain(unrecorded_stores.iter())
                        .chain(inner.addresses.all().iter().map(|a| &a.id))
                        .max()
                        .copied()
                        .unwrap_or(0);
                    let limit = highest + STORE_ID_BATCH;
                    tracing::warn!(
                        limit,
                        "{}; raising the mark past every store id known",
                        record.problem
                    );
                    entries.push(store_id_limit_entry(limit));
                    records.store_id_limit = limit;
                }
                RecordKind::IdLimit => {
                    let limit = self.highest_bootstrap_id(records, None) + ID_REPAIR_MARGIN;
                    tracing::warn!(
                        limit,
                        "{}; raising the mark far past every id known",
                        record.problem
                    );
                    entries.push(id_limit_entry(limit));
                    records.id_limit = limit;
                }
                RecordKind::Auth => {
                    let root = inner.setup.root_token_sha256.as_deref();
                    let closed = auth_records::closed_after_damage(root, now_ms());
                    tracing::error!(
                        "{}; authentication is switched on with the root token of \
                         security.root_token as its only credential (none, if it is not \
                         set): create tokens and users again",
                        record.problem
                    );
                    entries.push(auth_entry(&closed));
                    records.auth = closed;
                }
                RecordKind::TsoLimit => {
                    // A limit only ever ran WINDOW_MS ahead of a leader's clock: this far
                    // past this node's clock is past it unless the clocks are that far apart.
                    let limit = now_ms() + TSO_REPAIR_MARGIN_MS;
                    tracing::warn!(
                        limit,
                        "{}; timestamps resume a minute past this node's clock",
                        record.problem
                    );
                    entries.push(tso_limit_entry(limit));
                    records.tso_limit = limit;
                }
                RecordKind::GcSafePoint => {
                    // Reads never reach back past the clock-bound window anyway (see
                    // txn::region::check_age); the next round advances it again.
                    tracing::warn!("{}; garbage collection starts over from 0", record.problem);
                    entries.push(gc_safe_point_entry(0));
                    records.gc_safe_point = 0;
                }
                RecordKind::Unknown => tracing::warn!("{}; left alone", record.problem),
            }
        }
        entries
    }

    async fn dispatch(&self, leadership: &mut Leadership, request: PdRequest) -> Result<Value> {
        let now = now_ms();
        let max_down = self.inner.setup.config.max_store_down_time_ms;
        match request {
            PdRequest::Heartbeat(batch) => {
                let reply = self.heartbeat(leadership, batch, now).await?;
                Ok(serde_json::to_value(reply).expect("replies serialize"))
            }
            PdRequest::Join {
                cluster_id,
                raft_addr,
                http_addr,
                join_token,
                store_id,
            } => {
                let joining = StoreAddress {
                    id: store_id,
                    raft_addr,
                    http_addr,
                };
                let reply = self
                    .join(leadership, cluster_id, joining, &join_token, now)
                    .await?;
                Ok(serde_json::to_value(reply).expect("replies serialize"))
            }
            PdRequest::SetStoreOffline { store_id } => {
                self.set_offline(leadership, store_id).await?;
                let store = views::store_summary(
                    &leadership.coordinator,
                    &leadership.stores,
                    store_id,
                    now,
                    max_down,
                );
                Ok(views::offline(store))
            }
            // Served in batches by `PdServer::timestamps`, never dispatched one by one.
            PdRequest::Timestamps { .. } => {
                Err(Error::Io("timestamp requests are served in batches".into()))
            }
            PdRequest::Auth(change) => {
                if let Some(next) = auth_records::apply(&leadership.auth, change)? {
                    self.write_logged(leadership, vec![auth_entry(&next)])
                        .await?;
                    tracing::info!(
                        version = next.version,
                        enabled = next.enabled,
                        "authentication state changed"
                    );
                    leadership.auth = next;
                }
                Ok(serde_json::to_value(&leadership.auth).expect("the auth state serializes"))
            }
            PdRequest::Cluster => Ok(views::cluster(
                &leadership.coordinator,
                &leadership.stores,
                self.inner.store.store_id(),
                leadership.region_id,
                now,
                max_down,
            )),
            PdRequest::AllocIds { count } => {
                let reply = self.take_ids(leadership, count).await?;
                Ok(serde_json::to_value(reply).expect("replies serialize"))
            }
            PdRequest::SafePoint => Ok(views::safe_point(leadership.gc_safe_point)),
            PdRequest::AdvanceSafePoint { safe_point } => {
                // Never in the last seconds (no life time is that short), so a garbled
                // request cannot stall collection for good; never backwards: what was
                // collected stays collected.
                if safe_point > super::tso::compose(now.saturating_sub(MIN_GC_LIFE_TIME_MS), 0) {
                    return Err(Error::bad_request(
                        "invalid_safe_point",
                        "a safe point must trail the clock by the garbage collector's life time",
                    ));
                }
                if safe_point > leadership.gc_safe_point {
                    self.write_logged(leadership, vec![gc_safe_point_entry(safe_point)])
                        .await?;
                    tracing::info!(safe_point, "garbage collection's safe point advanced");
                    leadership.gc_safe_point = safe_point;
                }
                Ok(views::safe_point(leadership.gc_safe_point))
            }
            PdRequest::Operators => Ok(views::operators(&leadership.coordinator, now)),
            PdRequest::Regions => Ok(views::regions(&leadership.coordinator, now)),
            PdRequest::Health => {
                // A leadership younger than a few heartbeats has not heard from every
                // region yet: its picture is not a verdict.
                let settled =
                    self.inner.setup.config.heartbeat_interval_ms * HEALTH_SETTLE_INTERVALS;
                if now < leadership.since_ms + settled {
                    let problem = "the placement driver's leadership is new; it is still learning the regions";
                    return Ok(json!({ "problems": [problem] }));
                }
                let silence = self.inner.setup.config.max_store_disconnect_time_ms;
                Ok(views::health(&leadership.coordinator, now, silence))
            }
            PdRequest::Region { region_id } => {
                let known = leadership.coordinator.cluster().region(region_id).is_some();
                Ok(json!({ "known": known }))
            }
        }
    }

    async fn heartbeat(
        &self,
        leadership: &mut Leadership,
        batch: HeartbeatBatch,
        now: u64,
    ) -> Result<HeartbeatReply> {
        let report = &batch.store;
        if leadership.unrecorded_stores.contains(&report.store_id) {
            self.record_again(leadership, report, now).await?;
        }
        let Some(record) = leadership.stores.get(&report.store_id).cloned() else {
            return Err(PdError::StoreNotFound(report.store_id).into());
        };
        let mut commands = Vec::new();
        if record.state() != StoreState::Tombstone {
            if record.raft_addr != report.raft_addr || record.http_addr != report.http_addr {
                let reported = StoreAddress {
                    id: record.id,
                    raft_addr: report.raft_addr.clone(),
                    http_addr: report.http_addr.clone(),
                };
                self.inner
                    .probe
                    .check_move(&record.address(), &reported)
                    .await
                    .inspect_err(|e| tracing::warn!("refusing a store's new address: {e}"))?;
                let moved = StoreRecord {
                    raft_addr: report.raft_addr.clone(),
                    http_addr: report.http_addr.clone(),
                    ..record
                };
                leadership
                    .coordinator
                    .cluster_mut()
                    .put_store(store_meta(&moved), now)?;
                self.write_stores(leadership, vec![moved]).await?;
            }
            leadership
                .coordinator
                .on_store_heartbeat(report.heartbeat(), now)?;
            let wanted = leadership.coordinator.cluster().region_count() + batch.regions.len() + 4;
            self.reserve_ids(leadership, wanted as u64).await?;
            let mut answered = std::collections::HashSet::new();
            for region in &batch.regions {
                answered.insert(region.id);
                let answer = leadership.coordinator.on_region_heartbeat(
                    region.heartbeat(),
                    now,
                    &mut leadership.ids,
                );
                match answer {
                    Ok(Some(answer)) => commands.push(RegionCommand::new(region, answer)),
                    Ok(None) => {}
                    Err(e) => tracing::debug!(region = region.id, "heartbeat refused: {e}"),
                }
            }
            // Leaders report only the regions that changed: the periodic scheduling and
            // the operators of quiet regions ride on the store's heartbeat.
            leadership
                .coordinator
                .schedule_if_due(now, &mut leadership.ids);
            let quiet = leadership
                .coordinator
                .answers_for_store(report.store_id, &answered, now);
            for (region, answer) in quiet {
                let epoch = region.epoch();
                commands.push(RegionCommand::for_epoch(
                    region.id(),
                    epoch.conf_ver,
                    epoch.version,
                    answer,
                ));
            }
            if batch.full {
                leadership.fully_reported.insert(report.store_id);
            }
        }
        self.bury_drained_stores(leadership, now).await?;
        let store_state = leadership.stores[&report.store_id].state.clone();
        let unreachable_stores = leadership
            .stores
            .keys()
            .copied()
            .filter(|id| *id != report.store_id)
            .filter(|id| {
                let health = crate::pd::store_health(
                    leadership.coordinator.cluster(),
                    leadership.coordinator.config(),
                    *id,
                    now,
                );
                matches!(
                    health,
                    StoreHealth::Disconnected | StoreHealth::Down | StoreHealth::Tombstone
                )
            })
            .collect();
        Ok(HeartbeatReply {
            commands,
            stores: leadership.stores.values().cloned().collect(),
            store_state,
            auth: (leadership.auth.version > batch.auth_version).then(|| leadership.auth.clone()),
            full_report_wanted: !leadership.fully_reported.contains(&report.store_id),
            unreachable_stores,
        })
    }

    /// Records again a store whose damaged record could not be repaired, from its own
    /// heartbeat, once the node at the reported peer address answers as that store.
    async fn record_again(
        &self,
        leadership: &mut Leadership,
        report: &super::wire::StoreReport,
        now: u64,
    ) -> Result<()> {
        let reported = StoreAddress {
            id: report.store_id,
            raft_addr: report.raft_addr.clone(),
            http_addr: report.http_addr.clone(),
        };
        let vacant = StoreAddress {
            id: report.store_id,
            raft_addr: String::new(),
            http_addr: String::new(),
        };
        self.inner.probe.check_move(&vacant, &reported).await?;
        let record = StoreRecord::up(&reported);
        self.write_stores(leadership, vec![record.clone()]).await?;
        leadership
            .coordinator
            .cluster_mut()
            .put_store(store_meta(&record), now)?;
        leadership.unrecorded_stores.remove(&report.store_id);
        tracing::warn!(
            store = report.store_id,
            "a store's damaged record was recorded again from its heartbeat"
        );
        Ok(())
    }

    /// Records as tombstones the stores being drained that hold no peer any more.
    async fn bury_drained_stores(&self, leadership: &mut Leadership, now: u64) -> Result<()> {
        let settled = self.inner.setup.config.heartbeat_interval_ms * SETTLE_INTERVALS;
        if now < leadership.since_ms + settled {
            return Ok(());
        }
        let drained = leadership.coordinator.cluster().drained_offline_stores();
        if drained.is_empty() {
            return Ok(());
        }
        let records = drained
            .iter()
            .map(|id| {
                leadership.stores[id]
                    .clone()
                    .with_state(StoreState::Tombstone)
            })
            .collect();
        self.write_stores(leadership, records).await?;
        leadership.coordinator.cluster_mut().finish_offline_stores();
        tracing::info!(stores = ?drained, "drained stores are now tombstones");
        Ok(())
    }

    async fn join(
        &self,
        leadership: &mut Leadership,
        cluster_id: u64,
        joining: StoreAddress,
        join_token: &str,
        now: u64,
    ) -> Result<JoinReply> {
        let StoreAddress {
            id: requested,
            raft_addr,
            http_addr,
        } = joining;
        if cluster_id != leadership.cluster.cluster_id {
            return Err(Error::bad_request(
                "cluster_mismatch",
                format!(
                    "this is cluster {}, not cluster {cluster_id}",
                    leadership.cluster.cluster_id
                ),
            ));
        }
        let taken = leadership.stores.values().find(|s| {
            s.state() != StoreState::Tombstone
                && (s.raft_addr == raft_addr || s.http_addr == http_addr)
        });
        if let Some(owner) = taken {
            return Err(PdError::DuplicateAddress {
                address: format!("{raft_addr} / {http_addr}"),
                existing_store_id: owner.id,
            }
            .into());
        }
        let store_id = match requested {
            0 => leadership.next_store_id,
            id if leadership.stores.contains_key(&id) => {
                return Err(Error::Conflict {
                    code: "store_exists",
                    message: format!(
                        "store {id} is already a member of the cluster (or was one): a \
                         joining node needs a certificate naming a new store id"
                    ),
                })
            }
            id => id,
        };
        self.inner
            .probe
            .check_joiner(&raft_addr, join_token)
            .await
            .inspect_err(|e| tracing::warn!("refusing a join: {e}"))?;
        let mut entries = Vec::new();
        if store_id > leadership.store_id_limit {
            entries.push(store_id_limit_entry(store_id - 1 + STORE_ID_BATCH));
        }
        let record = StoreRecord::up(&StoreAddress {
            id: store_id,
            raft_addr,
            http_addr,
        });
        entries.push(store_entry(&record));
        self.write_logged(leadership, entries).await?;
        if store_id > leadership.store_id_limit {
            leadership.store_id_limit = store_id - 1 + STORE_ID_BATCH;
        }
        leadership.next_store_id = leadership.next_store_id.max(store_id + 1);
        leadership
            .coordinator
            .cluster_mut()
            .put_store(store_meta(&record), now)?;
        leadership.stores.insert(store_id, record.clone());
        tracing::info!(store = store_id, raft_addr = %record.raft_addr, "a store joined");
        Ok(JoinReply {
            store_id,
            stores: leadership.stores.values().cloned().collect(),
            auth: leadership.auth.clone(),
        })
    }

    async fn set_offline(&self, leadership: &mut Leadership, store_id: u64) -> Result<()> {
        let record = leadership
            .stores
            .get(&store_id)
            .cloned()
            .ok_or(PdError::StoreNotFound(store_id))?;
        match record.state() {
            StoreState::Offline => return Ok(()),
            StoreState::Tombstone => return Err(PdError::StoreTombstone(store_id).into()),
            StoreState::Up => {}
        }
        let remaining = leadership
            .stores
            .values()
            .filter(|s| s.id != store_id && s.state() == StoreState::Up)
            .count();
        let needed = leadership.cluster.max_peer_count;
        if remaining < needed {
            return Err(Error::Conflict {
                code: "not_enough_stores",
                message: format!(
                    "store {store_id} cannot be drained: only {remaining} other store(s) are up, and every region needs {needed} replicas"
                ),
            });
        }
        self.write_stores(leadership, vec![record.with_state(StoreState::Offline)])
            .await?;
        leadership
            .coordinator
            .cluster_mut()
            .set_store_state(store_id, StoreState::Offline)?;
        tracing::info!(store = store_id, "store is being drained");
        Ok(())
    }

    /// Takes `count` timestamps from the leadership's oracle (see
    /// [`crate::pd::tso`]), raising the recorded limit through raft first when the
    /// batch comes near it. The caller has confirmed the leadership.
    async fn take_timestamps(&self, leadership: &mut Leadership, count: u64) -> Result<Timestamps> {
        loop {
            match leadership.tso.take(count, now_ms()) {
                Take::Given(batch) => return Ok(batch),
                Take::RaiseLimit(limit) => {
                    self.write_logged(leadership, vec![tso_limit_entry(limit)])
                        .await?;
                    leadership.tso.limit_raised(limit);
                }
            }
        }
    }

    /// Confirms, with a linearizable read of the meta region in the leadership's term (a
    /// lease read while the lease runs), that this node still leads: a leader deposed
    /// without knowing it then hands out no timestamp after its successor began.
    async fn confirm_leadership(&self, leadership: &mut Leadership) -> Result<()> {
        let get = Request {
            cmd_type: CmdType::Get as i32,
            get: Some(GetRequest {
                cf: cf_name(Cf::Default).into(),
                key: RECORDS_START.to_vec(),
            }),
            ..Default::default()
        };
        let command = meta_command(leadership.region_id, leadership.term, vec![get]);
        let result = self.send_meta(command).await.map(drop);
        if result.is_err() {
            // Whoever leads now reloads the state first.
            leadership.poisoned = true;
        }
        result
    }

    /// Writes store records and keeps them in the leadership's copy.
    async fn write_stores(
        &self,
        leadership: &mut Leadership,
        records: Vec<StoreRecord>,
    ) -> Result<()> {
        let entries = records.iter().map(store_entry).collect();
        self.write_logged(leadership, entries).await?;
        for record in records {
            leadership.stores.insert(record.id, record);
        }
        Ok(())
    }

    /// The highest id below [`ID_SPACE_END`] that may be in use without the PD having
    /// allocated it: store ids (the initial stores' peers of region 1 are numbered like
    /// them) and, when known, the meta region's ids.
    fn highest_bootstrap_id(&self, records: &PdRecords, meta: Option<&metapb::Region>) -> u64 {
        let book = self.inner.addresses.all();
        let stores = records
            .stores
            .keys()
            .copied()
            .chain(book.iter().map(|a| a.id));
        let meta_ids = meta
            .into_iter()
            .flat_map(|r| std::iter::once(r.id).chain(r.peers.iter().map(|p| p.id)));
        stores
            .chain(meta_ids)
            .filter(|id| *id < ID_SPACE_END)
            .max()
            .unwrap_or(0)
    }

    /// Makes sure `count` ids from `leadership.ids.next` on are recorded as reserved,
    /// raising the recorded mark (by [`ID_BATCH`] more than needed) if they are not.
    async fn reserve_ids(&self, leadership: &mut Leadership, count: u64) -> Result<()> {
        let last = leadership.ids.next + count.max(1) - 1;
        if last <= leadership.ids.limit {
            return Ok(());
        }
        let limit = last + ID_BATCH;
        if limit >= ID_SPACE_END {
            return Err(Error::Io(
                "the placement driver's region and peer ids are exhausted".into(),
            ));
        }
        self.write_logged(leadership, vec![id_limit_entry(limit)])
            .await?;
        leadership.ids.limit = limit;
        Ok(())
    }

    /// Hands out `count` region and peer ids (1 to [`MAX_ID_BATCH`]), recorded as
    /// reserved first.
    async fn take_ids(&self, leadership: &mut Leadership, count: u64) -> Result<IdsReply> {
        if !(1..=MAX_ID_BATCH).contains(&count) {
            return Err(Error::bad_request(
                "invalid_count",
                format!("count must be 1 to {MAX_ID_BATCH}, not {count}"),
            ));
        }
        self.reserve_ids(leadership, count).await?;
        let first = leadership.ids.next;
        leadership.ids.next += count;
        Ok(IdsReply { first, count })
    }

    /// Writes entries in the leadership's term; a failure poisons the leadership.
    async fn write_logged(
        &self,
        leadership: &mut Leadership,
        entries: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<()> {
        let result = self
            .write(leadership.region_id, leadership.term, entries)
            .await;
        if result.is_err() {
            leadership.poisoned = true;
        }
        result
    }

    /// Writes `entries` to the meta region through raft, proposed only in `term`.
    async fn write(
        &self,
        region_id: u64,
        term: u64,
        entries: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<()> {
        let requests = entries
            .into_iter()
            .map(|(key, value)| Request {
                cmd_type: CmdType::Put as i32,
                put: Some(PutRequest {
                    cf: cf_name(Cf::Default).into(),
                    key,
                    value,
                }),
                ..Default::default()
            })
            .collect();
        let mut command = meta_command(region_id, term, requests);
        if let Some(header) = command.header.as_mut() {
            header.metadata = true;
        }
        self.send_meta(command).await.map(drop)
    }

    /// Sends a command to the meta region and waits for its answer, an error answer
    /// turned into an error.
    async fn send_meta(&self, command: RaftCmdRequest) -> Result<CmdResponse> {
        let response = self
            .inner
            .store
            .command(command, self.inner.setup.timeout)
            .await?;
        match response.err() {
            Some(err) => Err(Error::Store(err)),
            None => Ok(response),
        }
    }

    /// Reads the records with a linearizable read of the meta region in `term`.
    async fn read_records(&self, region_id: u64, term: u64) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let snap = Request {
            cmd_type: CmdType::Snap as i32,
            snap: Some(SnapRequest {}),
            ..Default::default()
        };
        let response = self
            .send_meta(meta_command(region_id, term, vec![snap]))
            .await?;
        let snapshot = response
            .snapshot
            .ok_or_else(|| Error::Io("the meta region's read came without a snapshot".into()))?;
        Ok(snapshot.scan(
            Cf::Default,
            RECORDS_START,
            RECORDS_END,
            usize::MAX,
            usize::MAX,
        )?)
    }
}

/// The shortest life time of old versions a configuration may set (`gc.life_time_ms`).
pub const MIN_GC_LIFE_TIME_MS: u64 = 20_000;

fn meta_command(region_id: u64, term: u64, requests: Vec<Request>) -> RaftCmdRequest {
    RaftCmdRequest {
        header: Some(RaftRequestHeader {
            region_id,
            term,
            ..Default::default()
        }),
        requests,
        ..Default::default()
    }
}

/// The `metapb::Store` the PD core keeps for a record.
fn store_meta(record: &StoreRecord) -> metapb::Store {
    let mut store = metapb::Store {
        id: record.id,
        address: record.raft_addr.clone(),
        ..Default::default()
    };
    store.set_state(record.state());
    store
}

/// Milliseconds since the Unix epoch: the PD's clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The region and peer ids of one leadership: those from `next` up to `limit` are
/// recorded as reserved, so they may be handed out without another write.
struct IdRange {
    next: u64,
    limit: u64,
}

impl IdRange {
    /// Ids from `mark + 1` on, none reserved yet.
    fn above(mark: u64) -> IdRange {
        IdRange {
            next: mark + 1,
            limit: mark,
        }
    }
}

impl AllocId for IdRange {
    /// The next id. Every heartbeat first reserves more ids than it can use (one per
    /// region the PD knows and per region reported, plus a few), so the range never runs
    /// out here; if it did, the node stops (exit status 74), as it does when any write
    /// fails, rather than hand out an id that is not recorded.
    fn alloc_id(&mut self) -> u64 {
        if self.next > self.limit {
            stop_on_id_failure(&Error::Io(
                "an operator needed more ids than the heartbeat reserved".into(),
            ));
        }
        self.next += 1;
        self.next - 1
    }
}

/// The ids of the split that makes the meta region, before any PD exists to allocate
/// them: region 2, and for each peer of the region being split a peer id
/// above every id that region's peers have, above `highest_store_id` (region 1's peers,
/// present or removed, are numbered like their stores) and above the region's own id
/// (a split's ids must all differ). Only region 1 exists
/// then, as nothing splits or adds a peer without PD-allocated ids, and a split issued
/// twice commits at most once (the second is refused as stale). The PD's own ids start
/// above them.
pub fn meta_split_ids(region: &metapb::Region, highest_store_id: u64) -> Vec<u64> {
    let highest = region
        .peers
        .iter()
        .map(|p| p.id.max(p.store_id))
        .fold(highest_store_id.max(META_REGION_ID), u64::max);
    std::iter::once(META_REGION_ID)
        .chain((1..=region.peers.len() as u64).map(|n| highest + n))
        .collect()
}

/// Stops the node after the id allocator failed, like a failed write does.
fn stop_on_id_failure(error: &Error) -> ! {
    tracing::error!(
        "allocating an id failed: {error}; stopping the node so no id is handed out twice"
    );
    std::process::exit(tinykv_actors::WRITE_FAILURE_EXIT_CODE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(id: u64, peers: &[(u64, u64)]) -> metapb::Region {
        metapb::Region {
            id,
            peers: peers
                .iter()
                .map(|&(id, store_id)| metapb::Peer { id, store_id })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_meta_regions_ids_lie_above_every_bootstrap_id() {
        // Region 1's peers are numbered like their stores.
        let ids = meta_split_ids(&region(1, &[(1, 1), (2, 2), (3, 3)]), 3);
        assert_eq!(ids, vec![META_REGION_ID, 4, 5, 6]);
        // One store: the peer id is not the region's.
        let ids = meta_split_ids(&region(1, &[(1, 1)]), 1);
        assert_eq!(ids, vec![META_REGION_ID, 3]);
        // A store removed from region 1 keeps its number out of use.
        let ids = meta_split_ids(&region(1, &[(1, 1), (2, 2)]), 5);
        assert_eq!(ids, vec![META_REGION_ID, 6, 7]);
        assert!(ids.iter().all(|id| *id < FIRST_ALLOCATED_ID));
    }

    #[test]
    fn an_id_range_hands_out_what_it_reserved_once() {
        let mut range = IdRange::above(FIRST_ALLOCATED_ID - 1);
        range.limit += 3;
        let ids: Vec<u64> = (0..3).map(|_| range.alloc_id()).collect();
        assert_eq!(ids, vec![1000, 1001, 1002]);
        assert_eq!(range.next, range.limit + 1);
    }
}
