//! Draining a store's leaderships before it stops, so that a rolling restart costs
//! clients nothing.
//!
//! Stopping a node that leads regions stalls their writes until the followers notice
//! (an election timeout, about a second) and elect a new leader; requests caught in
//! between time out or fail. Stopping a node that leads nothing costs nothing: two of
//! three replicas keep every region writable. So before a planned stop, an operator runs
//! `tinykv-ctl store drain-leaders ID` (`POST /v1/admin/drain-leaders` on that node), and
//! this node then:
//!
//! - hands every leadership it holds to a follower that is caught up (not pending),
//!   spreading them over the followers by region id, a few regions at a time, each one a
//!   raft leader transfer (no data moves; a transfer that fails is tried again next round);
//! - keeps doing so every [`ROUND`] while draining, since a region may elect this node
//!   again (its leader died) or a transfer may have been in flight;
//! - reports `draining_leaders` in its store heartbeat, so that the placement driver's
//!   leader balancer gives it none back.
//!
//! `GET` on the same path says whether it drains and how many regions it still leads;
//! `DELETE` stops. The state lives in memory: a restarted node starts undrained, and the
//! balancer then gives it its share again, which is what a rolling restart wants.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tinykv_actors::StoreRouter;
use tokio::task::JoinHandle;

use crate::admin_service::AdminService;
use crate::error::{Error, Result};

/// How often a draining node looks for leaderships to hand away.
pub const ROUND: Duration = Duration::from_millis(200);

/// How many leader transfers run at once.
const TRANSFERS_AT_ONCE: usize = 16;

/// This node's leader drain; see the module documentation. Clones share state.
#[derive(Clone)]
pub struct LeaderDrain {
    inner: Arc<Inner>,
}

struct Inner {
    store_id: u64,
    store: StoreRouter,
    admin: AdminService,
    draining: AtomicBool,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// What `GET /v1/admin/drain-leaders` answers (and what `tinykv-ctl` reads it into).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainStatus {
    /// The answering store.
    pub store_id: u64,
    /// Whether it is draining its leaderships.
    pub draining: bool,
    /// How many regions it leads now.
    pub leader_count: usize,
    /// Of those, the regions with no other member that could lead (a region with one
    /// replica, or whose followers all lag): their leadership cannot move yet.
    pub stuck_regions: Vec<u64>,
}

impl LeaderDrain {
    /// The drain of store `store_id`, whose regions `store` reaches; transfers go through
    /// `admin`.
    pub fn new(store_id: u64, store: StoreRouter, admin: AdminService) -> LeaderDrain {
        LeaderDrain {
            inner: Arc::new(Inner {
                store_id,
                store,
                admin,
                draining: AtomicBool::new(false),
                task: Mutex::new(None),
            }),
        }
    }

    /// Whether the node is draining its leaderships.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }

    /// Starts draining (nothing if it already does). Must run inside a tokio runtime.
    pub fn start(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
        let mut task = self.inner.task.lock().unwrap_or_else(|p| p.into_inner());
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        tracing::info!(
            store = self.inner.store_id,
            "draining leaderships: this store hands every region it leads to a follower"
        );
        *task = Some(tokio::spawn(run(self.inner.clone())));
    }

    /// Stops draining; the placement driver may give the store leaderships again.
    pub fn stop(&self) {
        if self.inner.draining.swap(false, Ordering::Relaxed) {
            tracing::info!(store = self.inner.store_id, "stopped draining leaderships");
        }
        if let Some(task) = self
            .inner
            .task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
    }

    /// Whether the node drains, and what it still leads.
    pub async fn status(&self) -> Result<DrainStatus> {
        let led = led_regions(&self.inner).await?;
        let stuck_regions = led
            .iter()
            .filter(|(_, target)| target.is_none())
            .map(|(region_id, _)| *region_id)
            .collect();
        Ok(DrainStatus {
            store_id: self.inner.store_id,
            draining: self.is_draining(),
            leader_count: led.len(),
            stuck_regions,
        })
    }
}

/// The drain loop: every round, hands each leadership held here to its chosen follower.
async fn run(inner: Arc<Inner>) {
    while inner.draining.load(Ordering::Relaxed) {
        match led_regions(&inner).await {
            Ok(led) => {
                futures::stream::iter(led)
                    .filter_map(|(region_id, target)| async move { Some((region_id, target?)) })
                    .for_each_concurrent(TRANSFERS_AT_ONCE, |(region_id, target)| {
                        let admin = inner.admin.clone();
                        async move {
                            if let Err(e) = admin.transfer_leader(region_id, target).await {
                                tracing::debug!(
                                    region = region_id,
                                    peer = target,
                                    "leader transfer while draining failed; tried again: {e}"
                                );
                            }
                        }
                    })
                    .await
            }
            Err(e) => tracing::warn!("cannot list the regions to drain: {e}"),
        }
        tokio::time::sleep(ROUND).await;
    }
}

/// Every region whose local peer leads, with the follower its leadership should go to
/// (`None`: no member can take it now).
async fn led_regions(inner: &Inner) -> Result<Vec<(u64, Option<u64>)>> {
    let mut led = Vec::new();
    let routes = inner.store.regions().await.map_err(Error::Store)?;
    // The router's leader hints pick the candidates; each one's peer then confirms (and
    // names its pending followers): with thousands of regions, asking every peer each
    // round would flood the raft arbiter.
    let led_here = routes.iter().filter(|r| {
        r.leader
            .as_ref()
            .is_some_and(|l| l.store_id == inner.store_id)
    });
    for route in led_here {
        let region_id = route.region.id;
        let Some(status) = inner
            .store
            .region_status(region_id)
            .await
            .map_err(Error::Store)?
        else {
            continue;
        };
        if status.leader_id == 0 || status.leader_id != status.peer.id {
            continue;
        }
        let mut candidates: Vec<u64> = status
            .region
            .peers
            .iter()
            .filter(|p| p.id != status.peer.id && !status.pending_peers.contains(p))
            .map(|p| p.id)
            .collect();
        candidates.sort_unstable();
        let target = match candidates.len() {
            0 => None,
            n => Some(candidates[(region_id % n as u64) as usize]),
        };
        led.push((region_id, target));
    }
    Ok(led)
}
