//! A node's side of placement: report to the PD, and carry out what it answers.
//!
//! Every `pd.heartbeat_interval_ms` the node sends one [`HeartbeatBatch`]: its store
//! (addresses, how many peers it holds) and a report for every region its peer leads
//! (range, epoch, peers, the peers lagging behind, the size last measured). The PD
//! answers with [`RegionCommand`]s for some of those regions and with its list of stores,
//! which refreshes the node's address book: that is how every node learns where a store
//! that joined later listens.
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
use crate::address_book::AddressBook;
use crate::admin::{change_peer, transfer_leader_request};
use crate::auth::AuthCache;
use crate::config::StoreAddress;
use crate::error::{Error, Result};

/// How long a command from the PD may take before the node stops waiting for it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the heartbeat loop of the node at `own` (its store id resolved), which also
/// keeps `auth` current.
pub fn spawn_heartbeats(
    store: StoreRouter,
    client: Arc<PdClient>,
    addresses: AddressBook,
    own: StoreAddress,
    auth: Arc<AuthCache>,
    interval: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let busy_regions = Arc::new(Mutex::new(HashSet::new()));
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_tombstone = false;
        loop {
            ticker.tick().await;
            let sent = heartbeat_once(&store, &client, &own, auth.version(), interval * 3);
            let reply = match sent.await {
                Ok(reply) => reply,
                Err(e) => {
                    tracing::debug!(store = own.id, "heartbeat not delivered: {e}");
                    continue;
                }
            };
            for record in &reply.stores {
                if addresses.get(record.id).as_ref() != Some(&record.address()) {
                    tracing::info!(store = record.id, raft_addr = %record.raft_addr, "learnt a store's address");
                    addresses.insert(record.address());
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
    auth_version: u64,
    timeout: Duration,
) -> Result<HeartbeatReply> {
    let mut batch = collect(store, own).await?;
    batch.auth_version = auth_version;
    let answer = client.call(&PdRequest::Heartbeat(batch), timeout).await?;
    serde_json::from_value(answer)
        .map_err(|e| Error::Io(format!("the PD answered a heartbeat with garbage: {e}")))
}

/// The store's report and one report per region its peer leads.
async fn collect(store: &StoreRouter, own: &StoreAddress) -> Result<HeartbeatBatch> {
    let routes = store.regions().await?;
    let led = routes
        .iter()
        .filter(|r| r.leader.as_ref().is_some_and(|l| l.store_id == own.id));
    let mut regions = Vec::new();
    for route in led {
        let Some(status) = store.region_status(route.region.id).await? else {
            continue;
        };
        if status.leader_id == status.peer.id {
            regions.push(RegionReport::new(
                &status.region,
                &status.peer,
                &status.pending_peers,
                status.approximate_size,
            ));
        }
    }
    let used_size = regions.iter().filter_map(|r| r.approximate_size).sum();
    Ok(HeartbeatBatch {
        store: StoreReport {
            store_id: own.id,
            raft_addr: own.raft_addr.clone(),
            http_addr: own.http_addr.clone(),
            region_count: routes.len() as u64,
            used_size: Some(used_size),
        },
        regions,
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
        let request = admin_command(&command);
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

/// The admin command carrying out `command`, for the epoch it names.
fn admin_command(command: &RegionCommand) -> RaftCmdRequest {
    let admin = match command.action {
        RegionAction::AddPeer { peer } => change_peer(ConfChangeType::AddNode, peer.into()),
        RegionAction::RemovePeer { peer } => change_peer(ConfChangeType::RemoveNode, peer.into()),
        RegionAction::TransferLeader { peer } => transfer_leader_request(peer.into()),
    };
    RaftCmdRequest {
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
    }
}
