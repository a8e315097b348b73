//! AdminService: splitting and merging regions, changing their peers and moving their
//! leadership.
//!
//! An admin operation must reach the region's leader, wherever it is, and must carry the
//! region's current epoch: a split or a leader transfer names the epoch's `conf_ver` and
//! `version`, a membership change its `conf_ver`, and the leader refuses a command built
//! from an outdated view of the region with `EpochNotMatch`. So every operation follows
//! the same pursuit: it learns the region from its leader, checks the operator's input
//! against that view (a split key inside the range, a new peer on a store that holds none
//! yet, a peer to remove that is a member), builds the command with that view's epoch,
//! and sends it to the leader's store. The leader is found by asking the local store first
//! (its peer's status names the leader); a store that holds no peer of the region passes
//! the question on to the next store of the address book, and a store that is not the
//! leader names the one it believes in. Other stores are reached through the
//! [`Forwarder`]'s raw command path: a probe read tells whether the peer there leads and
//! what the region looks like, and the admin command itself travels the same way.
//!
//! Whatever tells the pursuit more (a leader hint, an `EpochNotMatch` carrying the
//! current region) is followed at once; anything else retryable (no leader yet, a command
//! overwritten by a new leader, an unreachable store) is retried with backoff until the
//! request's deadline. Input is always checked against the leader's view, so a rejected
//! request (400 `invalid_split_key`, `peer_exists`, ..., 404 `peer_not_found`) changed
//! nothing, and a region that no store of the address book holds is a 404
//! `region_not_found`. Like a client's write, a split or membership change whose outcome
//! is unknown (the command timed out) is never sent again: the operator gets a 504 and
//! looks at the region. A leader transfer is different: it changes no data, so it is
//! simply repeated until the target reports that it leads, or the deadline passes (504).

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use futures::future::BoxFuture;
use std::time::{Duration, Instant};

use tinykv_actors::validation::MAX_BATCH_SPLIT;
use tinykv_actors::{Error as StoreError, StoreRouter};
use tinykv_proto::eraftpb::ConfChangeType;
use tinykv_proto::metapb;
use tinykv_proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, AdminResponse, ChangePeerRequest, RaftCmdRequest, RaftCmdResponse,
    RaftRequestHeader, TransferLeaderRequest,
};

use crate::error::{Error, Result};
use crate::kv_service::{Forwarder, ServiceTimeouts};
use crate::server::address_book::AddressBook;

/// How often a leader transfer checks whether the target leads yet.
const LEADERSHIP_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How long a leader transfer waits for the target before asking the leader again (raft
/// gives a transfer up after an election timeout).
const TRANSFER_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// First and longest pause between retries.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_millis(200);

/// Knows whether a region exists, wherever it is (the placement driver, from its leaders'
/// heartbeats).
pub trait RegionDirectory: Send + Sync {
    /// Whether region `region_id` is known; `None` if there is no answer.
    fn region_known(&self, region_id: u64) -> BoxFuture<'static, Option<bool>>;
}

/// The node's executor of admin operations; see the module documentation. Clones share
/// the store, the forwarder and the address book.
#[derive(Clone)]
pub struct AdminService {
    store: StoreRouter,
    forwarder: Arc<dyn Forwarder>,
    addresses: AddressBook,
    timeouts: ServiceTimeouts,
    /// The placement driver, asked whether a region exists when no store within reach
    /// holds it.
    directory: Arc<OnceLock<Box<dyn RegionDirectory>>>,
}

impl AdminService {
    /// A service over the local store `store`, reaching the other stores of `addresses`
    /// through `forwarder`; each operation may take `timeouts.request`, each command sent
    /// `timeouts.attempt`.
    pub fn new(
        store: StoreRouter,
        forwarder: Arc<dyn Forwarder>,
        addresses: AddressBook,
        timeouts: ServiceTimeouts,
    ) -> AdminService {
        AdminService {
            store,
            forwarder,
            addresses,
            timeouts,
            directory: Arc::new(OnceLock::new()),
        }
    }

    /// Lets the service ask `directory` (the placement driver) whether a region exists,
    /// when no store within reach holds it (otherwise it keeps looking until the
    /// deadline).
    pub fn set_region_directory(&self, directory: Box<dyn RegionDirectory>) {
        let _ = self.directory.set(directory);
    }

    /// Whether the directory knows region `region_id`; `None` if there is none to ask, or
    /// it did not answer.
    async fn region_known(&self, region_id: u64) -> Option<bool> {
        self.directory.get()?.region_known(region_id).await
    }

    /// Splits region `region_id` at `split_keys` (ascending, 1 to [`MAX_BATCH_SPLIT`]) in
    /// one raft command: the region keeps `[start, first key)` and each key starts a new
    /// region with fresh ids that ends at the next key (the last at the region's end), with
    /// a peer on each store of the region. Returns the region and the new ones, in key
    /// order.
    pub async fn split(
        &self,
        region_id: u64,
        split_keys: Vec<Vec<u8>>,
    ) -> Result<Vec<metapb::Region>> {
        if split_keys.is_empty() || split_keys.len() > MAX_BATCH_SPLIT {
            return Err(Error::bad_request(
                "invalid_split_key",
                format!(
                    "a split names 1 to {MAX_BATCH_SPLIT} keys, not {}",
                    split_keys.len()
                ),
            ));
        }
        if split_keys.iter().any(|k| k.is_empty()) {
            return Err(Error::bad_request(
                "invalid_split_key",
                "the split key must not be empty",
            ));
        }
        if split_keys.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::bad_request(
                "invalid_split_key",
                "the split keys must be strictly ascending",
            ));
        }
        let split_keys_len = split_keys.len();
        let ids = self.store.id_allocator();
        self.split_with_ids(region_id, split_keys, |region| {
            Ok(ids.alloc(split_keys_len * (1 + region.peers.len()))?)
        })
        .await
    }

    /// [`AdminService::split`] with the new regions' ids from `ids`, given the region as
    /// its leader sees it: a region id and then a peer id per peer of it, for each key.
    /// Only the placement driver's first split calls it directly (its ids cannot come
    /// from a PD that does not exist yet); the keys are checked by the caller.
    pub async fn split_with_ids(
        &self,
        region_id: u64,
        split_keys: Vec<Vec<u8>>,
        ids: impl Fn(&metapb::Region) -> Result<Vec<u64>>,
    ) -> Result<Vec<metapb::Region>> {
        let deadline = self.deadline();
        let response = self
            .run(region_id, deadline, false, |region| {
                for key in &split_keys {
                    check_split_key(region, key)?;
                }
                let fresh = ids(region)?;
                Ok(tinykv_actors::split_request(split_keys.clone(), &fresh))
            })
            .await?;
        let regions = match (response.split, response.batch_split) {
            (Some(split), _) => split.regions,
            (None, Some(batch)) => batch.regions,
            (None, None) => vec![],
        };
        if regions.len() != split_keys.len() + 1 {
            return Err(Error::Io(format!(
                "the split of region {region_id} was answered with {} regions, not {}",
                regions.len(),
                split_keys.len() + 1
            )));
        }
        tracing::info!(region = region_id, regions = regions.len(), "region split");
        Ok(regions)
    }

    /// Merges region `source` into its neighbour `target` (see `tinykv_actors`' merge):
    /// freezes the source with a PrepareMerge naming the target as its leader sees it
    /// now, then waits until the target's leader covers both ranges, and returns that
    /// region. Refused, changing nothing, if the regions are not neighbours or do not
    /// have their peers on the same stores (400). If the target changes before the merge
    /// commits (a split, a membership change), the source rolls back and this is a 409
    /// `merge_target_changed`; a merge still under way at the deadline is a 504: it may
    /// yet complete.
    pub async fn merge(&self, source: u64, target: u64) -> Result<metapb::Region> {
        if source == target {
            return Err(Error::bad_request(
                "invalid_merge",
                "a region cannot merge into itself",
            ));
        }
        let deadline = self.deadline();
        let target_region = self.region_view(target, deadline).await?;
        let mut prepared = None;
        self.run(source, deadline, false, |region| {
            tinykv_actors::check_merge_pair(region, &target_region)
                .map_err(|e| Error::bad_request("invalid_merge", e.to_string()))?;
            prepared = Some(region.clone());
            Ok(tinykv_actors::prepare_merge_request(target_region.clone()))
        })
        .await?;
        let Some(prepared) = prepared else {
            return Err(Error::Io("a merge was prepared without its source".into()));
        };
        // PrepareMerge bumped the source's version once; a rollback bumps it again.
        let frozen_version = prepared.region_epoch.map_or(0, |e| e.version) + 1;
        tracing::info!(source, target, "merge prepared");
        loop {
            // Each look is short: the frozen source answers busy until the merge is over.
            let look = deadline.min(Instant::now() + TRANSFER_RETRY_INTERVAL);
            if let Ok(region) = self.region_view(target, look).await {
                if tinykv_actors::covers(&region, &prepared) {
                    tracing::info!(source, target, "regions merged");
                    return Ok(region);
                }
            }
            let look = deadline.min(Instant::now() + LEADERSHIP_POLL_INTERVAL);
            if let Ok(region) = self.region_view(source, look).await {
                if region.region_epoch.map_or(0, |e| e.version) > frozen_version {
                    return Err(Error::Store(StoreError::MergeTargetChanged(format!(
                        "region {target} changed before region {source} could merge into it; the merge was rolled back"
                    ))));
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Store(StoreError::Timeout));
            }
            tokio::time::sleep(LEADERSHIP_POLL_INTERVAL).await;
        }
    }

    /// Region `region_id` as its leader sees it: every store is asked in turn (following
    /// leader hints), round after round with backoff while the answers are retryable (no
    /// leader yet, a frozen merge source), until `deadline`. A region no store holds and
    /// the placement driver does not know is a 404.
    async fn region_view(&self, region_id: u64, deadline: Instant) -> Result<metapb::Region> {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let mut stores = self.stores_local_first();
            let mut last = Error::Store(StoreError::RegionNotFound(region_id));
            let mut held_somewhere = false;
            let mut next = 0;
            while next < stores.len() {
                match self.leader_view(stores[next], region_id).await {
                    Ok(region) => return Ok(region),
                    Err(Error::Store(StoreError::NotLeader {
                        leader: Some(leader),
                        ..
                    })) if stores[next] != leader.store_id
                        && !stores[..next].contains(&leader.store_id) =>
                    {
                        held_somewhere = true;
                        stores.retain(|&s| s != leader.store_id);
                        stores.insert(next, leader.store_id);
                    }
                    Err(e) => {
                        held_somewhere |= !matches!(e, Error::Store(StoreError::RegionNotFound(_)));
                        if !e.is_retryable() {
                            return Err(e);
                        }
                        last = e;
                        next += 1;
                    }
                }
            }
            if !held_somewhere && self.region_known(region_id).await == Some(false) {
                return Err(region_not_found(region_id));
            }
            if Instant::now() + backoff >= deadline {
                return Err(last);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Adds a peer with a fresh id on store `store_id` to region `region_id`; returns the
    /// region with its new membership. The store must be in the address book and hold no
    /// peer of the region yet.
    pub async fn add_peer(&self, region_id: u64, store_id: u64) -> Result<metapb::Region> {
        if self.addresses.get(store_id).is_none() {
            return Err(Error::bad_request(
                "unknown_store",
                format!("store {store_id} is not in the address book"),
            ));
        }
        let ids = self.store.id_allocator();
        let mut peer_id = None;
        let deadline = self.deadline();
        let response = self
            .run(region_id, deadline, false, |region| {
                if let Some(existing) = region.peers.iter().find(|p| p.store_id == store_id) {
                    return Err(Error::bad_request(
                        "peer_exists",
                        format!(
                            "store {store_id} already holds peer {} of region {region_id}",
                            existing.id
                        ),
                    ));
                }
                // A refused attempt changed nothing, so its id may be offered again.
                let id = match peer_id {
                    Some(id) => id,
                    None => *peer_id.insert(ids.alloc(1)?[0]),
                };
                Ok(change_peer(
                    ConfChangeType::AddNode,
                    metapb::Peer { id, store_id },
                ))
            })
            .await?;
        let region = changed_region(response, region_id)?;
        tracing::info!(region = region_id, store = store_id, peer = ?peer_id, "peer added");
        Ok(region)
    }

    /// Removes peer `peer_id` from region `region_id`; returns the region with its new
    /// membership. The peer must be a member, and not the region's only one.
    pub async fn remove_peer(&self, region_id: u64, peer_id: u64) -> Result<metapb::Region> {
        let deadline = self.deadline();
        let response = self
            .run(region_id, deadline, false, |region| {
                let peer = member(region, peer_id)?;
                if region.peers.len() == 1 {
                    return Err(Error::bad_request(
                        "last_peer",
                        format!("peer {peer_id} is the only peer of region {region_id}"),
                    ));
                }
                Ok(change_peer(ConfChangeType::RemoveNode, peer))
            })
            .await?;
        let region = changed_region(response, region_id)?;
        tracing::info!(region = region_id, peer = peer_id, "peer removed");
        Ok(region)
    }

    /// Makes peer `peer_id` the leader of region `region_id`; returns once that peer
    /// reports that it leads. A timeout error if it does not within the request deadline.
    pub async fn transfer_leader(&self, region_id: u64, peer_id: u64) -> Result<()> {
        let deadline = self.deadline();
        loop {
            let mut target = None;
            self.run(region_id, deadline, true, |region| {
                let peer = member(region, peer_id)?;
                target = Some(peer);
                Ok(transfer_leader_request(peer))
            })
            .await?;
            let Some(target) = target else {
                return Err(Error::Io(
                    "a leader transfer was sent without a target".into(),
                ));
            };
            let ask_again = deadline.min(Instant::now() + TRANSFER_RETRY_INTERVAL);
            loop {
                if self.leads(region_id, target, deadline).await {
                    tracing::info!(region = region_id, peer = peer_id, "leadership transferred");
                    return Ok(());
                }
                let now = Instant::now();
                if now >= deadline {
                    tracing::warn!(
                        region = region_id,
                        peer = peer_id,
                        "the transfer target did not become leader in time"
                    );
                    return Err(Error::Store(StoreError::Timeout));
                }
                if now >= ask_again {
                    break;
                }
                tokio::time::sleep(LEADERSHIP_POLL_INTERVAL.min(deadline - now)).await;
            }
        }
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.timeouts.request
    }

    /// Pursues region `region_id`'s leader (see the module documentation), has `build`
    /// make the admin command from the leader's view of the region, and sends it; returns
    /// the leader's answer. `build`'s errors are final. A command whose outcome is unknown
    /// is sent again only if `repeatable`.
    async fn run(
        &self,
        region_id: u64,
        deadline: Instant,
        repeatable: bool,
        mut build: impl FnMut(&metapb::Region) -> Result<AdminRequest>,
    ) -> Result<AdminResponse> {
        let local = self.store.store_id();
        let stores = self.stores_local_first();
        let mut pursuit = Pursuit {
            region_id,
            local,
            stores,
            target: local,
            region: None,
            missing: BTreeSet::new(),
            unreachable: BTreeSet::new(),
            deadline,
            backoff: FIRST_BACKOFF,
        };
        loop {
            if pursuit.out_of_reach() {
                // Every store said it holds no peer of the region, or cannot be reached:
                // the placement driver knows whether the region exists at all.
                if self.region_known(region_id).await == Some(false) {
                    return Err(region_not_found(region_id));
                }
                pursuit.missing.clear();
                pursuit.unreachable.clear();
                pursuit.target = local;
            }
            let region = match &pursuit.region {
                Some(region) => region.clone(),
                None => match self.leader_view(pursuit.target, region_id).await {
                    Ok(region) => {
                        pursuit.region = Some(region.clone());
                        region
                    }
                    Err(err) => {
                        // Learning the region is a read: it may always be tried again.
                        pursuit.recover(err, true).await?;
                        continue;
                    }
                },
            };
            let admin_request = match build(&region) {
                Ok(request) => request,
                // Nothing was sent: a refusal that may pass later (no ids at hand until
                // the pool refills from the PD) is tried again, until the deadline; the
                // input checks' refusals are final.
                Err(err) if err.is_retryable() => {
                    pursuit.recover(err, true).await?;
                    continue;
                }
                Err(err) => return Err(err),
            };
            let request = RaftCmdRequest {
                header: Some(RaftRequestHeader {
                    region_id,
                    // Never absent: a command without an epoch would skip the check.
                    region_epoch: Some(region.region_epoch.unwrap_or_default()),
                    ..Default::default()
                }),
                admin_request: Some(admin_request),
                ..Default::default()
            };
            match self.send(pursuit.target, request).await {
                Ok(response) => match response.admin_response {
                    Some(admin) => return Ok(admin),
                    None => {
                        return Err(Error::Io(format!(
                            "an admin command to region {region_id} was answered without an admin response"
                        )))
                    }
                },
                Err(err) => pursuit.recover(err, repeatable).await?,
            }
        }
    }

    /// Every store of the address book, this node's first.
    fn stores_local_first(&self) -> Vec<u64> {
        let local = self.store.store_id();
        let mut stores = vec![local];
        stores.extend(
            self.addresses
                .all()
                .into_iter()
                .map(|s| s.id)
                .filter(|&id| id != local),
        );
        stores
    }

    /// The region as its leader on store `store_id` sees it; an error if that store holds
    /// no peer of it or its peer does not lead (with a hint when it knows who does).
    async fn leader_view(&self, store_id: u64, region_id: u64) -> Result<metapb::Region> {
        if store_id != self.store.store_id() {
            let response = self.send(store_id, probe(region_id)).await?;
            return response
                .responses
                .into_iter()
                .find_map(|r| r.snap.and_then(|s| s.region))
                .ok_or_else(|| {
                    Error::Io(format!(
                        "store {store_id} answered a read of region {region_id} without the region"
                    ))
                });
        }
        let Some(status) = self.store.region_status(region_id).await? else {
            return Err(Error::Store(StoreError::RegionNotFound(region_id)));
        };
        if status.leader_id == status.peer.id {
            return Ok(status.region);
        }
        let leader = status
            .region
            .peers
            .iter()
            .find(|p| status.leader_id != 0 && p.id == status.leader_id)
            .copied();
        Err(Error::Store(StoreError::NotLeader { region_id, leader }))
    }

    /// Whether `peer` of region `region_id` leads: the local peer's status says so, or a
    /// read on the peer's store succeeds (only a leader serves one).
    async fn leads(&self, region_id: u64, peer: metapb::Peer, deadline: Instant) -> bool {
        if peer.store_id == self.store.store_id() {
            return matches!(
                self.store.region_status(region_id).await,
                Ok(Some(status)) if status.peer.id == peer.id && status.leader_id == peer.id
            );
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        matches!(
            tokio::time::timeout(remaining, self.send(peer.store_id, probe(region_id))).await,
            Ok(Ok(_))
        )
    }

    /// Sends `request` to store `store_id` (the local store directly, another through
    /// the forwarder); an error in the response header becomes the error.
    async fn send(&self, store_id: u64, request: RaftCmdRequest) -> Result<RaftCmdResponse> {
        let response = if store_id == self.store.store_id() {
            self.store
                .command(request, self.timeouts.attempt)
                .await?
                .response
        } else {
            self.forwarder.forward_command(store_id, request).await?
        };
        match response.header.as_ref().and_then(|h| h.error.as_ref()) {
            Some(err) => Err(Error::Store(StoreError::from_pb(err))),
            None => Ok(response),
        }
    }
}

/// Where an admin operation's pursuit of a region's leader stands.
struct Pursuit {
    region_id: u64,
    local: u64,
    /// Every store that may hold the region: the local store first.
    stores: Vec<u64>,
    /// The store to ask next.
    target: u64,
    /// The region as its leader last showed it; `None` until learned again.
    region: Option<metapb::Region>,
    /// Stores that said they hold no peer of the region.
    missing: BTreeSet<u64>,
    /// Other stores that could not be reached since the last round.
    unreachable: BTreeSet<u64>,
    deadline: Instant,
    backoff: Duration,
}

impl Pursuit {
    /// Takes what `err` tells about the region into account and, unless it told
    /// something new, waits a little before the next attempt. Gives up (returns the
    /// error) when `err` is final, when no store holds the region, or at the deadline. An
    /// outcome-unknown error is retried only if `repeatable`.
    async fn recover(&mut self, err: Error, repeatable: bool) -> Result<()> {
        if !(err.is_retryable() || (repeatable && err.is_outcome_unknown())) {
            return Err(err);
        }
        let learned = match &err {
            Error::Store(StoreError::NotLeader {
                leader: Some(leader),
                ..
            }) => {
                let fresh = leader.store_id != self.target && leader.store_id != self.local;
                self.target = leader.store_id;
                self.region = None;
                fresh
            }
            Error::Store(StoreError::EpochNotMatch {
                current_regions, ..
            }) => {
                let previous = self.region.as_ref().and_then(|r| r.region_epoch);
                self.region = current_regions
                    .iter()
                    .find(|r| r.id == self.region_id)
                    .cloned();
                self.region
                    .as_ref()
                    .is_some_and(|r| r.region_epoch != previous)
            }
            Error::Store(StoreError::RegionNotFound(_)) => {
                self.missing.insert(self.target);
                self.region = None;
                if self.unreachable.is_empty() && self.next_target().is_none() {
                    return Err(region_not_found(self.region_id));
                }
                self.target = self.next_target().unwrap_or(self.local);
                true
            }
            Error::Forward {
                maybe_delivered: false,
                ..
            } if self.target != self.local => {
                self.unreachable.insert(self.target);
                self.region = None;
                self.target = self.next_target().unwrap_or(self.local);
                false
            }
            _ => {
                self.target = self.local;
                self.region = None;
                false
            }
        };
        let now = Instant::now();
        if now >= self.deadline {
            return Err(err);
        }
        tracing::debug!(
            region = self.region_id,
            ?err,
            to = self.target,
            "retrying admin command"
        );
        if !learned {
            tokio::time::sleep(self.backoff.min(self.deadline - now)).await;
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        }
        Ok(())
    }
}

impl Pursuit {
    /// The next store neither known to lack the region nor unreachable.
    fn next_target(&self) -> Option<u64> {
        self.stores
            .iter()
            .copied()
            .find(|s| !self.missing.contains(s) && !self.unreachable.contains(s))
    }

    /// Whether every store lacks the region or is out of reach (and one at least lacks
    /// it): only the placement driver can tell whether the region exists.
    fn out_of_reach(&self) -> bool {
        !self.missing.is_empty() && self.next_target().is_none()
    }
}

/// The 404 of a region no store holds.
fn region_not_found(region_id: u64) -> Error {
    Error::NoSuchResource {
        code: "region_not_found",
        message: format!(
            "no store holds region {region_id}, and the placement driver knows no such region"
        ),
    }
}

/// A read of region `region_id` with no epoch: harmless, served only by the leader (after
/// confirming its leadership), and answered with the region.
fn probe(region_id: u64) -> RaftCmdRequest {
    crate::kv_service::snap_command(RaftRequestHeader {
        region_id,
        ..Default::default()
    })
}

/// A split key must leave both halves non-empty: strictly after the region's start and
/// before its end.
fn check_split_key(region: &metapb::Region, key: &[u8]) -> Result<()> {
    if tinykv_actors::keys::split_point(key) != key {
        return Err(Error::bad_request(
            "invalid_split_key",
            format!(
                "split key \"{}\" falls between the versions of a transactional key",
                key.escape_ascii()
            ),
        ));
    }
    let after_start = key > region.start_key.as_slice();
    let before_end = region.end_key.is_empty() || key < region.end_key.as_slice();
    if after_start && before_end {
        return Ok(());
    }
    Err(Error::bad_request(
        "invalid_split_key",
        format!(
            "split key \"{}\" is not strictly inside region {} [\"{}\", \"{}\")",
            key.escape_ascii(),
            region.id,
            region.start_key.escape_ascii(),
            region.end_key.escape_ascii()
        ),
    ))
}

/// Peer `peer_id` of `region`, or 404 `peer_not_found`.
fn member(region: &metapb::Region, peer_id: u64) -> Result<metapb::Peer> {
    region
        .peers
        .iter()
        .find(|p| p.id == peer_id)
        .copied()
        .ok_or_else(|| Error::NoSuchResource {
            code: "peer_not_found",
            message: format!("peer {peer_id} is not a member of region {}", region.id),
        })
}

/// The admin request adding (`AddNode`) or removing (`RemoveNode`) `peer`.
pub fn change_peer(change_type: ConfChangeType, peer: metapb::Peer) -> AdminRequest {
    AdminRequest {
        cmd_type: AdminCmdType::ChangePeer as i32,
        change_peer: Some(ChangePeerRequest {
            change_type: change_type as i32,
            peer: Some(peer),
        }),
        ..Default::default()
    }
}

/// The admin request handing the leadership to `peer`.
pub fn transfer_leader_request(peer: metapb::Peer) -> AdminRequest {
    AdminRequest {
        cmd_type: AdminCmdType::TransferLeader as i32,
        transfer_leader: Some(TransferLeaderRequest { peer: Some(peer) }),
        ..Default::default()
    }
}

/// The region a membership change answered with.
fn changed_region(response: AdminResponse, region_id: u64) -> Result<metapb::Region> {
    response.change_peer.and_then(|c| c.region).ok_or_else(|| {
        Error::Io(format!(
            "a membership change of region {region_id} was answered without the region"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(start: &[u8], end: &[u8]) -> metapb::Region {
        metapb::Region {
            id: 7,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            peers: vec![metapb::Peer { id: 1, store_id: 1 }],
        }
    }

    #[test]
    fn a_split_key_must_lie_strictly_inside_the_region() {
        let bounded = region(b"b", b"m");
        for key in [&b"c"[..], b"b\x00", b"lzzz"] {
            assert!(check_split_key(&bounded, key).is_ok(), "{key:?}");
        }
        for key in [&b"a"[..], b"b", b"m", b"z"] {
            let err = check_split_key(&bounded, key).unwrap_err();
            assert_eq!(err.code(), "invalid_split_key", "{key:?}");
        }
        let unbounded = region(b"", b"");
        assert!(check_split_key(&unbounded, &[0xff; 8]).is_ok());
        let err = check_split_key(&region(b"", b"k"), b"k\xff").unwrap_err();
        assert!(err.to_string().contains("k\\xff"), "{err}");
    }

    #[test]
    fn only_members_can_be_named() {
        let r = region(b"", b"");
        assert_eq!(member(&r, 1).unwrap(), metapb::Peer { id: 1, store_id: 1 });
        let err = member(&r, 2).unwrap_err();
        assert_eq!((err.code(), err.status().as_u16()), ("peer_not_found", 404));
    }

    #[tokio::test]
    async fn the_pursuit_follows_what_errors_tell_and_gives_up_when_nobody_has_the_region() {
        let mut pursuit = Pursuit {
            region_id: 7,
            local: 1,
            stores: vec![1, 2, 3],
            target: 1,
            region: None,
            missing: BTreeSet::new(),
            unreachable: BTreeSet::new(),
            deadline: Instant::now() + Duration::from_secs(5),
            backoff: FIRST_BACKOFF,
        };
        let hint = Error::Store(StoreError::NotLeader {
            region_id: 7,
            leader: Some(metapb::Peer { id: 5, store_id: 3 }),
        });
        pursuit.recover(hint, false).await.unwrap();
        assert_eq!(pursuit.target, 3);

        let newer = metapb::Region {
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 2,
                version: 1,
            }),
            ..region(b"", b"")
        };
        let stale = Error::Store(StoreError::EpochNotMatch {
            message: "stale".into(),
            current_regions: vec![newer.clone()],
        });
        pursuit.recover(stale, false).await.unwrap();
        assert_eq!((pursuit.target, pursuit.region.as_ref()), (3, Some(&newer)));

        let unknown = Error::Store(StoreError::Timeout);
        assert!(pursuit.recover(unknown, false).await.is_err());
        pursuit
            .recover(Error::Store(StoreError::Timeout), true)
            .await
            .unwrap();
        assert_eq!((pursuit.target, pursuit.region.as_ref()), (1, None));

        for expected_next in [2, 3] {
            pursuit
                .recover(Error::Store(StoreError::RegionNotFound(7)), false)
                .await
                .unwrap();
            assert_eq!(pursuit.target, expected_next);
        }
        let err = pursuit
            .recover(Error::Store(StoreError::RegionNotFound(7)), false)
            .await
            .unwrap_err();
        assert_eq!(
            (err.code(), err.status().as_u16()),
            ("region_not_found", 404)
        );

        // A store out of reach might hold the region: only the placement driver can
        // tell then (see `AdminService::run`).
        pursuit.missing.clear();
        pursuit.target = 1;
        pursuit
            .recover(Error::Store(StoreError::RegionNotFound(7)), false)
            .await
            .unwrap();
        let down = Error::Forward {
            store_id: 2,
            message: "connection refused".into(),
            maybe_delivered: false,
        };
        pursuit.recover(down, false).await.unwrap();
        assert_eq!(pursuit.target, 3);
        pursuit
            .recover(Error::Store(StoreError::RegionNotFound(7)), false)
            .await
            .unwrap();
        assert!(
            pursuit.out_of_reach(),
            "stores 1 and 3 lack it, store 2 is down"
        );

        let refused = Error::bad_request("peer_exists", "no");
        assert_eq!(
            pursuit.recover(refused, true).await.unwrap_err().code(),
            "peer_exists"
        );
    }
}
