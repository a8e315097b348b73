//! A node's side of placement: report to the PD, and carry out what it answers.
//!
//! Every `pd.heartbeat_interval_ms` the node sends one [`HeartbeatBatch`]: its store
//! (addresses, how many peers it holds) and a report for each region its peer leads
//! (range, epoch, peers, the peers lagging behind, the size last measured) that changed
//! since the last heartbeat the PD answered. Every region it leads is reported when the
//! PD asks for it (a new PD leadership), after a heartbeat that got no answer, and every
//! [`FULL_REPORT_EVERY`] heartbeats: with ten thousand quiet regions, a heartbeat stays
//! small. The PD answers with [`RegionCommand`]s for regions the node leads and with its
//! list of stores, which refreshes the node's address book: that is how every node learns
//! where a store that joined later listens. It also names the stores it has not heard
//! from: the node wakes its sleeping peers of regions led from there, so that they elect
//! another leader (see `tinykv_actors::hibernate`).
//! The node also reports the version of the authentication state it enforces, and takes
//! the PD's newer one from the answer (see [`crate::auth::cache`]).
//!
//! A command is proposed to the local leader like an admin command, carrying the epoch
//! of the report it answers, so a command made for a region that has changed since is
//! refused by the raftstore (`EpochNotMatch`) and does nothing. Commands run in the
//! background, at most one per region at a time; the PD repeats an operator's step in
//! every answer until it sees the step done, so a lost or refused command is simply
//! tried again on a later heartbeat. A heartbeat that finds no PD (an election in the
//! meta region, a partition) is skipped; the next one tries again.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tinykv_actors::StoreRouter;
use tinykv_proto::eraftpb::ConfChangeType;
use tinykv_proto::metapb;
use tinykv_proto::raft_cmdpb::{RaftCmdRequest, RaftRequestHeader};
use tokio::task::JoinHandle;

use super::client::PdClient;
use super::wire::{
    HeartbeatBatch, HeartbeatReply, PdRequest, RegionAction, RegionCommand, RegionReport,
    StoreReport,
};
use crate::admin_service::{change_peer, transfer_leader_request};
use crate::auth::AuthCache;
use crate::config::StoreAddress;
use crate::error::{Error, Result};
use crate::server::address_book::{AddressBook, Learnt};
use crate::server::leader_drain::LeaderDrain;

/// How long a command from the PD may take before the node stops waiting for it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Every this many heartbeats, the node reports every region it leads.
pub const FULL_REPORT_EVERY: u64 = 60;

/// What the heartbeat loop reports about its own node.
#[derive(Clone)]
pub struct LocalStore {
    /// The store's id (resolved) and advertised addresses.
    pub own: StoreAddress,
    /// The config's `[[cluster.stores]]`, for reporting conflicts with the PD's records.
    pub configured: Vec<StoreAddress>,
    /// Whether the store is handing its leaderships away.
    pub drain: LeaderDrain,
}

/// Starts the heartbeat loop of the node `local`, which also keeps `auth` current and
/// `addresses` in step with the PD's records.
pub fn spawn_heartbeats(
    store: StoreRouter,
    client: Arc<PdClient>,
    addresses: AddressBook,
    local: LocalStore,
    auth: Arc<AuthCache>,
    interval: Duration,
) -> JoinHandle<()> {
    let LocalStore {
        own,
        configured,
        drain,
    } = local;
    tokio::spawn(async move {
        let busy_regions = Arc::new(Mutex::new(HashSet::new()));
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_tombstone = false;
        // The PD's differing record of this store last warned about.
        let mut own_conflict: Option<StoreAddress> = None;
        let mut full = true;
        for beat in 1u64.. {
            ticker.tick().await;
            full |= beat % FULL_REPORT_EVERY == 0;
            let draining = drain.is_draining();
            let sent = heartbeat_once(
                &store,
                &client,
                &own,
                draining,
                auth.version(),
                full,
                interval * 3,
            );
            let reply = match sent.await {
                Ok(reply) => reply,
                Err(e) => {
                    tracing::debug!(store = own.id, "heartbeat not delivered: {e}");
                    // The changed reports it carried are lost: send them all next time.
                    full = true;
                    continue;
                }
            };
            full = reply.full_report_wanted;
            if !reply.unreachable_stores.is_empty() {
                match store
                    .wake_regions_led_by(reply.unreachable_stores.clone())
                    .await
                {
                    Ok(0) | Err(_) => {}
                    Ok(woken) => tracing::info!(
                        stores = ?reply.unreachable_stores,
                        woken,
                        "woke the regions led from stores the PD cannot reach"
                    ),
                }
            }
            for record in &reply.stores {
                let configured = configured.iter().find(|c| c.id == record.id);
                match addresses.learn(record.address(), &own, configured) {
                    Learnt::Unchanged => {}
                    Learnt::Updated => tracing::info!(
                        store = record.id,
                        raft_addr = %record.raft_addr,
                        http_addr = %record.http_addr,
                        "learnt a store's address"
                    ),
                    Learnt::OverridesConfig { configured } => tracing::warn!(
                        store = record.id,
                        raft_addr = %record.raft_addr,
                        http_addr = %record.http_addr,
                        config_raft_addr = %configured.raft_addr,
                        config_http_addr = %configured.http_addr,
                        "the placement driver records a store at other addresses than \
                         cluster.stores gives; using the placement driver's (the store \
                         reported them and answers there): update the config"
                    ),
                    Learnt::OwnRecordDiffers { recorded } => {
                        if own_conflict.as_ref() != Some(&recorded) {
                            tracing::warn!(
                                store = own.id,
                                recorded_raft_addr = %recorded.raft_addr,
                                recorded_http_addr = %recorded.http_addr,
                                raft_addr = %own.raft_addr,
                                http_addr = %own.http_addr,
                                "the placement driver records this store at other \
                                 addresses than it advertises; it moves the record once \
                                 it has checked that this store answers at the new ones \
                                 and no longer at the old"
                            );
                            own_conflict = Some(recorded);
                        }
                        continue;
                    }
                }
                if record.id == own.id {
                    own_conflict = None;
                }
            }
            let tombstone = reply.store_state == "Tombstone";
            if tombstone && !was_tombstone {
                tracing::warn!(
                    store = own.id,
                    "this store was removed from the cluster (Tombstone); it holds no data and can be shut down"
                );
            }
            was_tombstone = tombstone;
            if let Some(set) = reply.auth {
                auth.update(set);
            }
            for command in reply.commands {
                execute(&store, command, &busy_regions);
            }
        }
    })
}

/// Collects and sends one heartbeat; returns the PD's answer.
async fn heartbeat_once(
    store: &StoreRouter,
    client: &PdClient,
    own: &StoreAddress,
    draining_leaders: bool,
    auth_version: u64,
    full: bool,
    timeout: Duration,
) -> Result<HeartbeatReply> {
    let mut batch = collect(store, own, full).await?;
    batch.auth_version = auth_version;
    batch.store.draining_leaders = draining_leaders;
    let answer = client.call(&PdRequest::Heartbeat(batch), timeout).await?;
    serde_json::from_value(answer)
        .map_err(|e| Error::Io(format!("the PD answered a heartbeat with garbage: {e}")))
}

/// The store's report and one report per region its peer leads (`full`) or per such
/// region whose report changed since the last call.
async fn collect(store: &StoreRouter, own: &StoreAddress, full: bool) -> Result<HeartbeatBatch> {
    let led = store.leader_reports(full).await?;
    let regions = led
        .reports
        .iter()
        .map(|r| RegionReport::new(&r.region, &r.leader, &r.pending_peers, r.approximate_size))
        .collect();
    Ok(HeartbeatBatch {
        store: StoreReport {
            store_id: own.id,
            raft_addr: own.raft_addr.clone(),
            http_addr: own.http_addr.clone(),
            region_count: led.region_count as u64,
            used_size: Some(led.used_size),
            draining_leaders: false,
        },
        regions,
        full,
        auth_version: 0,
    })
}

/// Proposes `command` to the local leader in the background, unless a command for the
/// same region is still running.
fn execute(store: &StoreRouter, command: RegionCommand, busy: &Arc<Mutex<HashSet<u64>>>) {
    let region_id = command.region_id;
    if !busy
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(region_id)
    {
        return;
    }
    let (store, busy) = (store.clone(), busy.clone());
    tokio::spawn(async move {
        let request = match admin_command(&store, &command).await {
            Ok(request) => request,
            Err(e) => {
                tracing::debug!(region = region_id, action = ?command.action, "cannot carry out the PD's command: {e}");
                busy.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&region_id);
                return;
            }
        };
        match store.command(request, COMMAND_TIMEOUT).await {
            Ok(response) => match response.err() {
                None => {
                    tracing::info!(region = region_id, action = ?command.action, "carried out the PD's command")
                }
                Some(e) => {
                    tracing::debug!(region = region_id, action = ?command.action, "the PD's command was refused: {e}")
                }
            },
            Err(e) => tracing::debug!(region = region_id, "the PD's command got no answer: {e}"),
        }
        busy.lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&region_id);
    });
}

/// The admin command carrying out `command`, for the epoch it names. A merge names the
/// target as this store's peer of it knows it: a target that changed since makes the
/// merge roll back, changing nothing.
async fn admin_command(store: &StoreRouter, command: &RegionCommand) -> Result<RaftCmdRequest> {
    let admin = match command.action {
        RegionAction::AddPeer { peer } => change_peer(ConfChangeType::AddNode, peer.into()),
        RegionAction::RemovePeer { peer } => change_peer(ConfChangeType::RemoveNode, peer.into()),
        RegionAction::TransferLeader { peer } => transfer_leader_request(peer.into()),
        RegionAction::Merge { target } => {
            let Some(status) = store.region_status(target).await? else {
                return Err(Error::Store(tinykv_actors::Error::RegionNotFound(target)));
            };
            tinykv_actors::prepare_merge_request(status.region)
        }
    };
    Ok(RaftCmdRequest {
        header: Some(RaftRequestHeader {
            region_id: command.region_id,
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: command.conf_ver,
                version: command.version,
            }),
            ..Default::default()
        }),
        admin_request: Some(admin),
        ..Default::default()
    })
}
