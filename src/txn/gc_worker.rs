//! The garbage collector's rounds on a node: advancing the safe point, and collecting
//! below it in the regions the node's store leads.
//!
//! Every node runs a [`GcWorker`]. Each round (every `gc.run_interval_ms`, with jitter):
//!
//! 1. **Advance** (only on the node whose placement driver leads): the candidate safe
//!    point is the clock minus `gc.life_time_ms`. Every lock of a transaction started
//!    before it is resolved first, region by region (such a transaction is long dead:
//!    its lock outlived its TTL many times over), then the PD records the candidate
//!    through raft. A round that cannot resolve every lock records nothing.
//! 2. **Collect** (on every node): for each region of the transactional range whose
//!    leader is on this store and that has not been collected up to the current safe
//!    point, garbage-collection passes of `gc.batch_keys` keys each, one raft command
//!    per pass with a pause between passes, so foreground traffic keeps the disk and the
//!    raft log to itself most of the time. A region that splits, merges or loses its
//!    leader in the middle is simply picked up again by whoever leads it next round.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tinykv_proto::kvrpcpb::{txn_request::Command, txn_response::Answer, GcRequest, TxnRequest};
use tinykv_proto::metapb;

use super::client::TxnClient;
use super::keys::{decode_key, TXN_KEYS_END, TXN_KEYS_START};
use crate::config::GcConfig;
use crate::error::{Error, Result};
use crate::kv_service::{KvOp, KvOutcome, KvService};
use crate::pd::{tso, PdClient, PdRequest};

/// Pause between two passes in one region.
const PASS_PAUSE: Duration = Duration::from_millis(20);

/// A node's garbage collector; see the module documentation.
pub struct GcWorker {
    service: KvService,
    txn: TxnClient,
    pd: Arc<PdClient>,
    config: GcConfig,
    /// The safe point each region (by id and epoch version) was collected up to.
    collected: HashMap<(u64, u64), u64>,
}

impl GcWorker {
    /// A worker for the node of `service`, coordinating through `txn` and `pd`.
    pub fn new(service: KvService, txn: TxnClient, pd: Arc<PdClient>, config: GcConfig) -> Self {
        GcWorker {
            service,
            txn,
            pd,
            config,
            collected: HashMap::new(),
        }
    }

    /// Runs rounds until the task is dropped.
    pub async fn run(mut self) {
        loop {
            let interval = self.config.run_interval();
            let jitter = interval.mul_f64(rand::random::<f64>() * 0.2);
            tokio::time::sleep(interval + jitter).await;
            if let Err(e) = self.round().await {
                tracing::debug!(error = %e, "a garbage-collection round stopped early");
            }
        }
    }

    /// One round; see the module documentation.
    pub async fn round(&mut self) -> Result<()> {
        self.advance().await?;
        let safe_point = self.safe_point().await?;
        crate::metrics::TXN_GC_SAFE_POINT.set(safe_point as i64);
        if safe_point == 0 {
            return Ok(());
        }
        let store_id = self.service.store_id();
        let routes = self.service.store().regions().await?;
        // Forget regions that split, merged or moved away since.
        let present: std::collections::HashSet<(u64, u64)> =
            routes.iter().map(|r| collected_key(&r.region)).collect();
        self.collected.retain(|region, _| present.contains(region));
        for route in routes {
            let region = route.region;
            let leads = route
                .leader
                .is_some_and(|leader| leader.store_id == store_id);
            let done = self.collected.get(&collected_key(&region)).copied();
            if !leads || !holds_txn_keys(&region) || done >= Some(safe_point) {
                continue;
            }
            self.collect_region(&region, safe_point).await?;
            self.collected.insert(collected_key(&region), safe_point);
        }
        Ok(())
    }

    /// Moves the safe point forward, if this node's placement driver leads.
    async fn advance(&self) -> Result<()> {
        let Some(server) = self.pd.local() else {
            return Ok(());
        };
        let current = match server.handle(PdRequest::SafePoint).await {
            Ok(answer) => safe_point_of(&answer)?,
            Err(Error::NotPdLeader { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let now_ms = crate::pd::server::now_ms();
        let life_time = self.config.life_time().as_millis() as u64;
        let candidate = tso::compose(now_ms.saturating_sub(life_time), 0);
        if candidate <= current {
            return Ok(());
        }
        let resolved = self.txn.resolve_locks_below(candidate).await?;
        if resolved > 0 {
            tracing::info!(resolved, "resolved the locks of abandoned transactions");
        }
        server
            .handle(PdRequest::AdvanceSafePoint {
                safe_point: candidate,
            })
            .await?;
        Ok(())
    }

    /// The safe point, as the PD leader has it.
    async fn safe_point(&self) -> Result<u64> {
        let answer = self
            .pd
            .call(&PdRequest::SafePoint, crate::api::pd::PD_REQUEST_TIMEOUT)
            .await?;
        safe_point_of(&answer)
    }

    /// Collects `region` below `safe_point`, pass by pass.
    async fn collect_region(&self, region: &metapb::Region, safe_point: u64) -> Result<()> {
        let Some(mut start) = first_client_key(region) else {
            return Ok(());
        };
        let mut deleted = 0;
        loop {
            let request = TxnRequest {
                command: Some(Command::Gc(GcRequest {
                    safe_point,
                    start_key: start,
                    limit: self.config.batch_keys,
                    ..Default::default()
                })),
            };
            let KvOutcome::Txn(response) = self.service.execute_local(KvOp::Txn(request)).await?
            else {
                return Err(Error::Io(
                    "garbage collection was answered with something else".into(),
                ));
            };
            let Some(Answer::Gc(pass)) = response.answer else {
                return Err(Error::Io(
                    "garbage collection was answered with something else".into(),
                ));
            };
            deleted += pass.deleted;
            if !pass.more {
                break;
            }
            start = pass.next_key;
            tokio::time::sleep(PASS_PAUSE).await;
        }
        if deleted > 0 {
            tracing::debug!(
                region_id = region.id,
                deleted,
                safe_point,
                "collected old versions"
            );
        }
        Ok(())
    }
}

/// How [`GcWorker`] remembers a region: its id and epoch version (a split or merge
/// makes it another).
fn collected_key(region: &metapb::Region) -> (u64, u64) {
    (region.id, region.region_epoch.map_or(0, |e| e.version))
}

/// Whether `region` overlaps the transactional keys.
fn holds_txn_keys(region: &metapb::Region) -> bool {
    (region.end_key.is_empty() || region.end_key.as_slice() > TXN_KEYS_START)
        && region.start_key.as_slice() < TXN_KEYS_END
}

/// The first client key of the transactional range in `region`; `None` if its start is
/// not a key's encoding (no collection then: it would start in another region).
fn first_client_key(region: &metapb::Region) -> Option<Vec<u8>> {
    if region.start_key.as_slice() <= TXN_KEYS_START {
        Some(Vec::new())
    } else {
        decode_key(&region.start_key)
    }
}

fn safe_point_of(answer: &serde_json::Value) -> Result<u64> {
    answer["safe_point"]
        .as_u64()
        .ok_or_else(|| Error::Io(format!("the PD answered the safe point garbled: {answer}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::keys::encode_key;

    fn region(start: &[u8], end: &[u8]) -> metapb::Region {
        metapb::Region {
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn only_regions_of_the_transactional_range_are_collected_from_their_first_key() {
        assert!(!holds_txn_keys(&region(b"", b"m")));
        assert!(!holds_txn_keys(&region(b"", TXN_KEYS_START)));
        assert!(holds_txn_keys(&region(b"", b"")));
        assert!(holds_txn_keys(&region(&encode_key(b"k"), TXN_KEYS_END)));
        assert!(!holds_txn_keys(&region(TXN_KEYS_END, b"")));
        assert_eq!(first_client_key(&region(b"a", b"")), Some(Vec::new()));
        assert_eq!(
            first_client_key(&region(&encode_key(b"k"), b"")),
            Some(b"k".to_vec())
        );
    }
}
