//! Router: the store's directory of regions.
//!
//! Every message for a region passes through the Router, which knows each local region's
//! PeerFsm, its range and its last reported leader:
//!
//! - commands addressed by region id go to that region's PeerFsm (`RegionNotFound` if
//!   there is none);
//! - commands addressed by key go to the region whose range holds the key, found in a
//!   range index ordered by start key;
//! - raft messages from other stores go to the addressed region's PeerFsm, or to the Store
//!   actor if the region has no peer here yet (the Store may create one).
//!
//! PeerFsms register themselves and report their region's shape and leader with
//! [`RegionChanged`], so the index follows splits and leader changes without the Router
//! reading the engine.
//!
//! When the placement driver names stores it cannot reach, the Router wakes the local
//! peers of regions led from there ([`WakeRegionsLedBy`]), at most
//! [`WAKES_PER_REQUEST`] per request, taking up where the last request stopped: the node
//! asks on every heartbeat while the store stays silent, so thousands of sleeping regions
//! elect new leaders over a few seconds instead of all at once.

use std::collections::{BTreeMap, HashMap, HashSet};

use actix::dev::SendError;
use actix::prelude::*;
use tinykv_proto::raft_cmdpb::RaftRequestHeader;

use crate::alive::AliveToken;
use crate::error::Error;
use crate::keys;
use crate::msg::*;
use crate::peer::PeerFsm;
use crate::peer_storage::is_initialized;
use crate::store::Store;

/// At most this many peers are woken per [`WakeRegionsLedBy`] request.
pub const WAKES_PER_REQUEST: usize = 500;

/// Tells the Router where messages for unknown regions go.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetStore(pub Addr<Store>);

/// A led region's report as the Router keeps it until the placement driver takes it:
/// only what the region's route does not already hold. The route's region is the report's
/// (the peer updates its route before it reports on the region it names), and keeping a
/// second copy of every led region cost a leader's node ~400 bytes a region.
#[derive(Debug, Clone)]
struct KeptReport {
    leader: tinykv_proto::metapb::Peer,
    pending_peers: Vec<tinykv_proto::metapb::Peer>,
    approximate_size: Option<u64>,
}

/// The actor; see the module documentation.
pub struct Router {
    store_id: u64,
    peers: HashMap<u64, Addr<PeerFsm>>,
    routes: HashMap<u64, RegionRoute>,
    /// Start key → region id, for initialized regions.
    ranges: BTreeMap<Vec<u8>, u64>,
    /// How many routes name a leader on this store.
    leading: usize,
    /// The reports of the regions led here (what their routes do not already say), and
    /// those changed since last taken.
    reports: HashMap<u64, KeptReport>,
    changed_reports: HashSet<u64>,
    store: Option<Addr<Store>>,
    /// The last region woken by a [`WakeRegionsLedBy`] request; the next one starts after.
    wake_cursor: u64,
    _token: AliveToken,
}

impl Router {
    /// An empty router for store `store_id`.
    pub fn new(store_id: u64, token: AliveToken) -> Router {
        Router {
            store_id,
            peers: HashMap::new(),
            routes: HashMap::new(),
            ranges: BTreeMap::new(),
            leading: 0,
            reports: HashMap::new(),
            changed_reports: HashSet::new(),
            store: None,
            wake_cursor: 0,
            _token: token,
        }
    }

    fn update_route(&mut self, route: RegionRoute) {
        let id = route.region.id;
        self.remove_route(id);
        if is_initialized(&route.region) {
            self.ranges.insert(route.region.start_key.clone(), id);
        }
        if self.led_here(&route) {
            self.leading += 1;
        } else {
            self.reports.remove(&id);
            self.changed_reports.remove(&id);
        }
        self.routes.insert(id, route);
        self.update_gauges();
    }

    /// Removes the route of `region_id` from the range index and the leader count.
    fn remove_route(&mut self, region_id: u64) -> Option<RegionRoute> {
        let old = self.routes.remove(&region_id)?;
        if self.ranges.get(&old.region.start_key) == Some(&region_id) {
            self.ranges.remove(&old.region.start_key);
        }
        if self.led_here(&old) {
            self.leading -= 1;
        }
        Some(old)
    }

    fn led_here(&self, route: &RegionRoute) -> bool {
        route
            .leader
            .as_ref()
            .is_some_and(|l| l.store_id == self.store_id)
    }

    /// Sets the store's region and leader gauges.
    fn update_gauges(&self) {
        crate::metrics::set_store_counts(self.store_id, self.routes.len(), self.leading);
    }

    /// The PeerFsm of `region_id` if it is still running. A stopped one (destroyed, its
    /// unregistration not yet seen) is forgotten here, so messages for the region reach
    /// the Store and can create its successor.
    fn live_peer(&mut self, region_id: u64) -> Option<&Addr<PeerFsm>> {
        if self.peers.get(&region_id).is_some_and(|p| !p.connected()) {
            self.forget(region_id);
        }
        self.peers.get(&region_id)
    }

    fn forget(&mut self, region_id: u64) {
        self.peers.remove(&region_id);
        self.remove_route(region_id);
        self.reports.remove(&region_id);
        self.changed_reports.remove(&region_id);
        self.update_gauges();
    }

    /// Whether `[start, end)` intersects the range of any local initialized region.
    /// A local region overlapping the range from `start` to `end`, if any.
    fn overlapping(&self, start: &[u8], end: &[u8]) -> Option<u64> {
        // The region starting at or before `start`, and any starting inside the range.
        if let Some(route) = self.find(start) {
            return Some(route.region.id);
        }
        self.ranges
            .range(start.to_vec()..)
            .next()
            .filter(|(s, _)| end.is_empty() || s.as_slice() < end)
            .map(|(_, id)| *id)
    }

    fn find(&self, key: &[u8]) -> Option<&RegionRoute> {
        let (_, id) = self.ranges.range(..=key.to_vec()).next_back()?;
        let route = self.routes.get(id)?;
        keys::in_range(key, &route.region.start_key, &route.region.end_key).then_some(route)
    }
}

/// Hands `cmd` to `peer`, or answers it `ServerIsBusy` if the peer has as many messages
/// queued as it takes (its mailbox holds [`crate::MAILBOX_CAPACITY`]): nothing was done,
/// and the client backs off instead of queueing without bound.
fn hand_over(peer: &Addr<PeerFsm>, cmd: RaftCommand, region_id: u64) {
    match peer.try_send(cmd) {
        Ok(()) => {}
        Err(SendError::Full(cmd)) => {
            let busy = Error::ServerIsBusy(format!("region {region_id}'s peer has a full queue"));
            respond_error(cmd.callback, &busy, 0);
        }
        Err(SendError::Closed(cmd)) => {
            respond_error(cmd.callback, &Error::RegionNotFound(region_id), 0)
        }
    }
}

/// Whether a message may create a peer: a (pre-)vote, or a heartbeat of a leader that does
/// not know the receiver's log.
fn is_initial(msg: &tinykv_proto::raft_serverpb::RaftMessage) -> bool {
    use tinykv_proto::eraftpb::MessageType;
    let Some(m) = &msg.message else { return false };
    match m.msg_type() {
        MessageType::MsgRequestVote | MessageType::MsgRequestPreVote => true,
        MessageType::MsgHeartbeat => m.commit == 0,
        _ => false,
    }
}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::MAILBOX_CAPACITY);
    }
}

impl Handler<PeerDestroyed> for Router {
    type Result = ();

    fn handle(&mut self, msg: PeerDestroyed, _: &mut Self::Context) {
        if self.peers.get(&msg.region_id) == Some(&msg.peer) {
            self.forget(msg.region_id);
        }
        if let Some(store) = &self.store {
            store.do_send(msg);
        }
    }
}

impl Handler<RestartPeer> for Router {
    type Result = ();

    fn handle(&mut self, msg: RestartPeer, _: &mut Self::Context) {
        if self.peers.get(&msg.region_id) == Some(&msg.peer) {
            self.forget(msg.region_id);
        }
        if let Some(store) = &self.store {
            store.do_send(msg);
        }
    }
}

impl Handler<CheckSnapshotRange> for Router {
    type Result = bool;

    fn handle(&mut self, msg: CheckSnapshotRange, _: &mut Self::Context) -> bool {
        let overlapping: Vec<&RegionRoute> = self
            .routes
            .values()
            .filter(|route| {
                let r = &route.region;
                r.id != msg.region_id
                    && is_initialized(r)
                    && ranges_overlap(&r.start_key, &r.end_key, &msg.start_key, &msg.end_key)
            })
            .collect();
        // A merge source this region absorbed (the snapshot records it, or the local
        // peer is frozen for a merge into this region and the snapshot covers its
        // range): the snapshot holds its data, and its peer here goes.
        let absorbed_by_snapshot = |route: &RegionRoute| {
            let version = route.region.region_epoch.map_or(0, |e| e.version);
            route.merge_target == Some(msg.region_id)
                || msg
                    .merged_sources
                    .iter()
                    .any(|&(id, merged_at)| id == route.region.id && version <= merged_at)
        };
        let (absorbed, others): (Vec<&RegionRoute>, Vec<&RegionRoute>) = overlapping
            .into_iter()
            .partition(|r| absorbed_by_snapshot(r));
        if let Some(route) = others.first() {
            tracing::warn!(
                region = msg.region_id,
                overlaps = route.region.id,
                "refusing a snapshot whose range overlaps another local region"
            );
            // The overlapping peer may be a removed one nobody told (asleep, or cut off
            // when it was removed): it finds out, and goes, and raft sends the snapshot
            // again later.
            for route in others {
                if let Some(peer) = self.peers.get(&route.region.id) {
                    peer.do_send(CheckMembership);
                }
            }
            return false;
        }
        for route in absorbed {
            let Some(peer) = self.peers.get(&route.region.id) else {
                continue;
            };
            tracing::info!(
                region = msg.region_id,
                source = route.region.id,
                "a snapshot covers a merge source: its peer goes"
            );
            let version = msg
                .merged_sources
                .iter()
                .find(|(id, _)| *id == route.region.id)
                .map(|(_, merged_at)| *merged_at);
            peer.do_send(MergedAway {
                region_id: route.region.id,
                target: msg.region_id,
                version: version
                    .unwrap_or_else(|| route.region.region_epoch.map_or(0, |e| e.version)),
            });
        }
        true
    }
}

/// Whether `[a_start, a_end)` and `[b_start, b_end)` share a key (an empty end is
/// unbounded).
fn ranges_overlap(a_start: &[u8], a_end: &[u8], b_start: &[u8], b_end: &[u8]) -> bool {
    let before = |end: &[u8], start: &[u8]| !end.is_empty() && end <= start;
    !before(a_end, b_start) && !before(b_end, a_start)
}

impl Handler<CatchUpLogs> for Router {
    type Result = ();

    fn handle(&mut self, msg: CatchUpLogs, _: &mut Self::Context) {
        if let Some(peer) = self.live_peer(msg.region_id) {
            peer.do_send(msg);
        }
    }
}

impl Handler<MergedAway> for Router {
    type Result = ();

    fn handle(&mut self, msg: MergedAway, _: &mut Self::Context) {
        if let Some(peer) = self.live_peer(msg.region_id) {
            peer.do_send(msg);
        }
    }
}

impl Handler<CreateSplitPeer> for Router {
    type Result = ();

    fn handle(&mut self, msg: CreateSplitPeer, _: &mut Self::Context) {
        if let Some(store) = &self.store {
            store.do_send(msg);
        }
    }
}

impl Handler<SetStore> for Router {
    type Result = ();

    fn handle(&mut self, msg: SetStore, _: &mut Self::Context) {
        self.store = Some(msg.0);
    }
}

impl Handler<RegionChanged> for Router {
    type Result = ();

    fn handle(&mut self, msg: RegionChanged, _: &mut Self::Context) {
        self.peers.insert(msg.route.region.id, msg.peer);
        self.update_route(msg.route);
    }
}

impl Handler<RaftCommand> for Router {
    type Result = ();

    fn handle(&mut self, cmd: RaftCommand, _: &mut Self::Context) {
        let region_id = cmd.request.header.as_ref().map_or(0, |h| h.region_id);
        match self.peers.get(&region_id) {
            Some(peer) => hand_over(peer, cmd, region_id),
            None => respond_error(cmd.callback, &Error::RegionNotFound(region_id), 0),
        }
    }
}

impl Handler<KeyCommand> for Router {
    type Result = ();

    fn handle(&mut self, cmd: KeyCommand, _: &mut Self::Context) {
        let KeyCommand {
            key,
            mut request,
            callback,
        } = cmd;
        let Some(region_id) = self.find(&key).map(|r| r.region.id) else {
            respond_error(
                callback,
                &Error::KeyNotInRegion {
                    key,
                    region_id: 0,
                    start_key: vec![],
                    end_key: vec![],
                },
                0,
            );
            return;
        };
        let header = request
            .header
            .get_or_insert_with(RaftRequestHeader::default);
        header.region_id = region_id;
        header.region_epoch = None;
        match self.peers.get(&region_id) {
            Some(peer) => hand_over(peer, RaftCommand { request, callback }, region_id),
            None => respond_error(callback, &Error::RegionNotFound(region_id), 0),
        }
    }
}

impl Handler<InboundRaftMessage> for Router {
    type Result = ();

    fn handle(&mut self, msg: InboundRaftMessage, _: &mut Self::Context) {
        crate::metrics::ROUTER_INBOUND_QUEUED.dec();
        if msg.0.to_peer.as_ref().map(|p| p.store_id) != Some(self.store_id) {
            tracing::debug!(
                store = self.store_id,
                "dropping raft message for another store"
            );
            return;
        }
        if let Some(peer) = self.live_peer(msg.0.region_id) {
            // A peer that has as many messages queued as it takes loses this one, as a
            // congested network would: raft sends again what matters.
            if let Err(SendError::Full(_)) = peer.try_send(msg) {
                tracing::debug!(
                    store = self.store_id,
                    "a peer's mailbox is full; dropping a raft message"
                );
            }
            return;
        }
        // No peer here: a stale-peer check is the Store's to answer (from a tombstone, or
        // with nothing); otherwise only an initial message for a range no local region
        // covers may create one (a covering region has not applied the split that made
        // this region).
        if crate::stale_peer::is_check(&msg.0) {
            if let Some(store) = &self.store {
                store.do_send(msg);
            }
            return;
        }
        if msg.0.is_tombstone || msg.0.extra_msg.is_some() || !is_initial(&msg.0) {
            return;
        }
        let dead: Vec<u64> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.connected())
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            self.forget(id);
        }
        if let Some(local) = self.overlapping(&msg.0.start_key, &msg.0.end_key) {
            tracing::debug!(
                region = msg.0.region_id,
                overlaps = local,
                "not creating a peer over a local region's range"
            );
            // The local region may be a removed peer nobody told (it slept when it was
            // removed): if asleep, it checks, and goes if so. Awake, it has most likely
            // not applied the split yet, and ignores this.
            if let Some(peer) = self.peers.get(&local) {
                peer.do_send(CheckMembership);
            }
            return;
        }
        if let Some(store) = &self.store {
            store.do_send(msg);
        }
    }
}

impl Handler<FindRegion> for Router {
    type Result = MessageResult<FindRegion>;

    fn handle(&mut self, msg: FindRegion, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.find(&msg.key).cloned())
    }
}

impl Handler<ListRegions> for Router {
    type Result = MessageResult<ListRegions>;

    fn handle(&mut self, _: ListRegions, _: &mut Self::Context) -> Self::Result {
        let mut routes: Vec<RegionRoute> = self.routes.values().cloned().collect();
        routes.sort_by(|a, b| {
            (a.region.start_key.as_slice(), a.region.id)
                .cmp(&(b.region.start_key.as_slice(), b.region.id))
        });
        MessageResult(routes)
    }
}

impl Handler<LeaderReportChanged> for Router {
    type Result = ();

    fn handle(&mut self, msg: LeaderReportChanged, _: &mut Self::Context) {
        self.keep_report(msg.0);
    }
}

impl Handler<TakeLeaderReports> for Router {
    type Result = MessageResult<TakeLeaderReports>;

    fn handle(&mut self, msg: TakeLeaderReports, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.take_reports(msg.all))
    }
}

impl Router {
    /// Keeps a led region's new report, while its route (sent before it, by the same
    /// peer) names this store.
    fn keep_report(&mut self, report: LeaderReport) {
        let LeaderReport {
            region,
            leader,
            pending_peers,
            approximate_size,
        } = report;
        if self
            .routes
            .get(&region.id)
            .is_some_and(|r| self.led_here(r))
        {
            let kept = KeptReport {
                leader,
                pending_peers,
                approximate_size,
            };
            self.reports.insert(region.id, kept);
            self.changed_reports.insert(region.id);
        }
    }

    /// The reports changed since the last take, or all of them.
    fn take_reports(&mut self, all: bool) -> LeaderReports {
        let changed = std::mem::take(&mut self.changed_reports);
        let mut reports: Vec<LeaderReport> = if all {
            self.reports
                .keys()
                .filter_map(|&id| self.report(id))
                .collect()
        } else {
            changed.iter().filter_map(|&id| self.report(id)).collect()
        };
        reports.sort_by_key(|r| r.region.id);
        let used_size = self
            .reports
            .values()
            .filter_map(|r| r.approximate_size)
            .sum();
        LeaderReports {
            reports,
            region_count: self.routes.len(),
            used_size,
        }
    }

    /// The full report of led region `id`, from its route and what was kept of it.
    fn report(&self, id: u64) -> Option<LeaderReport> {
        let kept = self.reports.get(&id)?;
        let route = self.routes.get(&id)?;
        Some(LeaderReport {
            region: route.region.clone(),
            leader: kept.leader,
            pending_peers: kept.pending_peers.clone(),
            approximate_size: kept.approximate_size,
        })
    }
}

impl Handler<WakeRegionsLedBy> for Router {
    type Result = usize;

    fn handle(&mut self, msg: WakeRegionsLedBy, _: &mut Self::Context) -> usize {
        let led: Vec<u64> = self
            .routes
            .iter()
            .filter(|(id, route)| {
                route
                    .leader
                    .is_some_and(|leader| msg.0.contains(&leader.store_id))
                    && self.peers.contains_key(id)
            })
            .map(|(id, _)| *id)
            .collect();
        let chosen = next_wakes(led, self.wake_cursor, WAKES_PER_REQUEST);
        for id in &chosen {
            let _ = self.peers[id].try_send(WakeUp);
        }
        if let Some(last) = chosen.last() {
            self.wake_cursor = *last;
        }
        chosen.len()
    }
}

impl Handler<QueryRegionStatus> for Router {
    type Result = ResponseFuture<Option<PeerStatus>>;

    fn handle(&mut self, msg: QueryRegionStatus, _: &mut Self::Context) -> Self::Result {
        let peer = self.peers.get(&msg.0).cloned();
        Box::pin(async move {
            match peer {
                Some(peer) => peer.send(QueryPeerStatus).await.ok(),
                None => None,
            }
        })
    }
}

#[cfg(test)]
impl Handler<PeerOf> for Router {
    type Result = Option<Addr<PeerFsm>>;

    fn handle(&mut self, msg: PeerOf, _: &mut Self::Context) -> Self::Result {
        self.live_peer(msg.0).cloned()
    }
}

impl Handler<Stop> for Router {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        self.peers.clear();
        crate::metrics::set_store_counts(self.store_id, 0, 0);
        ctx.stop();
    }
}

/// Up to `limit` of the regions `led`, in id order starting after `cursor` and wrapping
/// around: successive requests with the last one chosen as the cursor go through all of
/// them before any comes twice.
fn next_wakes(mut led: Vec<u64>, cursor: u64, limit: usize) -> Vec<u64> {
    led.sort_unstable();
    let after = led.partition_point(|id| *id <= cursor);
    led[after..]
        .iter()
        .chain(&led[..after])
        .take(limit)
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use tinykv_proto::metapb;

    use super::{next_wakes, ranges_overlap, Router};
    use crate::msg::{LeaderReport, RegionRoute};

    fn region(id: u64, version: u64) -> metapb::Region {
        metapb::Region {
            id,
            start_key: format!("k{id}").into_bytes(),
            end_key: format!("k{id}z").into_bytes(),
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version,
            }),
            peers: (1..=3)
                .map(|s| metapb::Peer {
                    id: id * 10 + s,
                    store_id: s,
                })
                .collect(),
        }
    }

    fn route(region: metapb::Region, leader_store: u64) -> RegionRoute {
        let leader = region
            .peers
            .iter()
            .find(|p| p.store_id == leader_store)
            .copied();
        RegionRoute {
            region,
            leader,
            merge_target: None,
        }
    }

    fn report(region: metapb::Region, size: u64) -> LeaderReport {
        LeaderReport {
            leader: region.peers[0],
            pending_peers: vec![region.peers[2]],
            approximate_size: Some(size),
            region,
        }
    }

    #[test]
    fn reports_are_rebuilt_from_the_routes_they_were_kept_beside() {
        let (token, _watch) = crate::alive::alive_pair();
        let mut router = Router::new(1, token);
        router.update_route(route(region(5, 1), 1));
        router.update_route(route(region(6, 1), 1));
        router.keep_report(report(region(5, 1), 100));
        router.keep_report(report(region(6, 1), 50));
        // A region led elsewhere is not reported from here.
        router.update_route(route(region(7, 1), 2));
        router.keep_report(report(region(7, 1), 70));

        let taken = router.take_reports(false);
        assert_eq!(
            taken.reports,
            vec![report(region(5, 1), 100), report(region(6, 1), 50)]
        );
        assert_eq!((taken.region_count, taken.used_size), (3, 150));
        assert!(
            router.take_reports(false).reports.is_empty(),
            "nothing changed since"
        );

        // The route moved on (a split): the full report names the region as it is now.
        router.update_route(route(region(5, 2), 1));
        let all = router.take_reports(true);
        assert_eq!(all.reports[0].region, region(5, 2));
        assert_eq!(all.reports[0].approximate_size, Some(100));
        assert_eq!(all.reports.len(), 2);

        // Leadership went to another store: the report goes with it.
        router.update_route(route(region(6, 1), 3));
        let all = router.take_reports(true);
        assert_eq!(all.reports.len(), 1);
        assert_eq!(all.used_size, 100);
    }

    #[test]
    fn wakes_go_round_all_regions_a_bounded_number_at_a_time() {
        let led = vec![9, 2, 7, 4, 5];
        assert_eq!(next_wakes(led.clone(), 0, 2), vec![2, 4]);
        assert_eq!(next_wakes(led.clone(), 4, 2), vec![5, 7]);
        // Past the end it wraps around, and never takes one region twice in a request.
        assert_eq!(next_wakes(led.clone(), 7, 2), vec![9, 2]);
        assert_eq!(next_wakes(led.clone(), 9, 10), vec![2, 4, 5, 7, 9]);
        // A cursor region gone since (merged away, led elsewhere now) does not matter.
        assert_eq!(next_wakes(led, 6, 1), vec![7]);
        assert!(next_wakes(Vec::new(), 3, 5).is_empty());
    }

    #[test]
    fn ranges_overlap_unless_one_ends_before_the_other_starts() {
        assert!(ranges_overlap(b"a", b"c", b"b", b"d"));
        assert!(ranges_overlap(b"a", b"", b"x", b"y"), "unbounded end");
        assert!(ranges_overlap(b"", b"", b"m", b""));
        assert!(
            !ranges_overlap(b"a", b"b", b"b", b"c"),
            "ends are exclusive"
        );
        assert!(!ranges_overlap(b"c", b"", b"a", b"c"));
    }
}
