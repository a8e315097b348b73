//! Region and peer ids from the placement driver, at hand when the raftstore needs them.
//!
//! A split needs a region id and a peer id per replica for each new region, and adding a
//! peer needs a peer id. The PD allocates them ([`crate::pd::PdRequest::AllocIds`]): it
//! raises its high-water mark through raft before answering, so an id is never handed out
//! twice, whatever fails or restarts. The raftstore asks for ids on its own threads and
//! must not wait for the network there, so each node keeps a pool, [`PdIds`]: the
//! raftstore takes from it without blocking, and a task refills it from the PD whenever
//! it runs low. When the pool cannot serve a request (the PD is unreachable, or has not
//! answered since the node started), the request gets `IdsUnavailable`: a size-driven
//! split is tried again at the next split check, an admin split or peer addition is
//! retried until its deadline and then answered 503 `ids_unavailable`, not applied.
//! Nothing else depends on the PD: writes and reads go on.
//!
//! Ids in a pool that the node never uses (it stops, or crashes) are simply skipped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tinykv_actors::Error as StoreError;
use tinykv_actors::IdAllocator;

use super::wire::IdsReply;
use super::{PdClient, PdRequest};
use crate::error::{Error, Result};

/// The most ids one [`PdRequest::AllocIds`] may ask for: enough for the largest admin
/// split (1,000 keys) of a region with nine replicas.
pub const MAX_ID_BATCH: u64 = 10_000;
/// How many ids a node keeps at hand.
const POOL_TARGET: usize = 256;
/// The pool is refilled when it falls below this.
const LOW_WATER: usize = 64;
/// How long the refill waits for the PD's answer.
const REFILL_TIMEOUT: Duration = Duration::from_secs(5);
/// First and longest pause after a failed refill.
const RETRY_PAUSES: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(5));

/// A node's pool of PD-allocated ids; see the module documentation.
#[derive(Default)]
pub struct PdIds {
    pool: Mutex<VecDeque<u64>>,
    /// The largest request the pool could not serve since the last refill, so that the
    /// refill brings at least that many.
    wanted: AtomicUsize,
    low: tokio::sync::Notify,
}

impl PdIds {
    /// An empty pool; ids arrive once [`PdIds::spawn_refill`] has reached the PD.
    pub fn new() -> Arc<PdIds> {
        Arc::new(PdIds::default())
    }

    /// How many ids are at hand.
    pub fn available(&self) -> usize {
        self.pool().len()
    }

    /// Keeps the pool filled from `pd` until the returned task is aborted: whenever it
    /// runs low, and at once when it is empty at the start.
    pub fn spawn_refill(self: &Arc<Self>, pd: Arc<PdClient>) -> tokio::task::JoinHandle<()> {
        let ids = self.clone();
        tokio::spawn(async move {
            let mut pause = RETRY_PAUSES.0;
            loop {
                let short = ids.shortfall();
                if short == 0 {
                    ids.low.notified().await;
                    continue;
                }
                match ask(&pd, short as u64).await {
                    Ok(reply) => {
                        ids.pool().extend(reply.first..reply.first + reply.count);
                        ids.wanted.store(0, Ordering::Relaxed);
                        pause = RETRY_PAUSES.0;
                    }
                    Err(e) => {
                        tracing::debug!("cannot get region and peer ids from the PD: {e}");
                        // Someone waiting for ids (a split, a peer to add) cuts the pause
                        // short; they retry with backoff of their own.
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            () = ids.low.notified() => {}
                        }
                        pause = (pause * 2).min(RETRY_PAUSES.1);
                    }
                }
            }
        })
    }

    /// How many ids the refill should bring now (0: the pool is full enough).
    fn shortfall(&self) -> usize {
        let have = self.available();
        let wanted = self.wanted.load(Ordering::Relaxed);
        if have >= LOW_WATER && have >= wanted {
            return 0;
        }
        let target = POOL_TARGET.max(wanted);
        target.saturating_sub(have).min(MAX_ID_BATCH as usize)
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, VecDeque<u64>> {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl IdAllocator for PdIds {
    fn alloc(&self, count: usize) -> tinykv_actors::Result<Vec<u64>> {
        let mut pool = self.pool();
        if pool.len() < count {
            let have = pool.len();
            drop(pool);
            self.wanted.fetch_max(count, Ordering::Relaxed);
            self.low.notify_one();
            return Err(StoreError::IdsUnavailable(format!(
                "{count} wanted, {have} at hand; the placement driver allocates them and has \
                 not answered yet"
            )));
        }
        let ids = pool.drain(..count).collect();
        if pool.len() < LOW_WATER {
            self.low.notify_one();
        }
        Ok(ids)
    }
}

/// Asks the PD for `count` ids and checks the answer.
async fn ask(pd: &PdClient, count: u64) -> Result<IdsReply> {
    let answer = pd
        .call(&PdRequest::AllocIds { count }, REFILL_TIMEOUT)
        .await?;
    let reply: IdsReply = serde_json::from_value(answer)
        .map_err(|e| Error::Io(format!("the PD answered ids garbled: {e}")))?;
    if reply.count != count || reply.first == 0 || reply.first.checked_add(count).is_none() {
        return Err(Error::Io(format!(
            "the PD answered {} ids from {} when {count} were asked for",
            reply.count, reply.first
        )));
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_pool_refuses_and_asks_for_enough() {
        let ids = PdIds::new();
        let refused = ids.alloc(300).unwrap_err();
        assert!(
            matches!(refused, StoreError::IdsUnavailable(_)),
            "{refused}"
        );
        assert!(refused.is_retryable());
        // The refill brings at least what the refused request wanted.
        assert_eq!(ids.shortfall(), 300);
        ids.pool().extend(1000..1300);
        ids.wanted.store(0, Ordering::Relaxed);
        assert_eq!(ids.shortfall(), 0);
        let got = ids.alloc(3).unwrap();
        assert_eq!(got, vec![1000, 1001, 1002]);
        // Below the low-water mark, the refill tops the pool up again.
        let _ = ids.alloc(250).unwrap();
        assert_eq!(ids.available(), 47);
        assert_eq!(ids.shortfall(), POOL_TARGET - 47);
    }
}
