//! Transactions in the in-process cluster: a timestamp oracle for the test process, and
//! a coordinator on any store's service.
//!
//! The cluster has no placement driver, so [`LocalOracle`] stands in for the PD's: it
//! hands out strictly increasing hybrid timestamps from one counter that every store's
//! coordinator and executor share (the cluster owns it), which is all Percolator asks
//! of an oracle. The PD's own oracle is tested against real processes
//! (`tests/timestamps.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use tinykv::pd::tso;
use tinykv::txn::client::{TimestampSource, TxnClient};

use crate::Cluster;

/// Strictly increasing timestamps for one test process.
#[derive(Default)]
pub struct LocalOracle {
    last: AtomicU64,
}

impl LocalOracle {
    /// A fresh oracle.
    pub fn new() -> Arc<LocalOracle> {
        Arc::new(LocalOracle::default())
    }
}

impl TimestampSource for LocalOracle {
    fn timestamps(&self, count: u64) -> BoxFuture<'static, tinykv::Result<u64>> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let clock = tso::compose(now_ms, 0);
        let mut first = 0;
        // The counter moves to max(clock, last + 1) and past the batch, atomically.
        let _ = self
            .last
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                first = clock.max(last + 1);
                Some(first + count - 1)
            });
        Box::pin(async move { Ok(first) })
    }
}

/// A coordinator running its commands through store `store_id`'s service, with the
/// cluster's oracle (the one its stores' one-phase commits take timestamps from).
pub fn coordinator(cluster: &Cluster, store_id: u64) -> TxnClient {
    TxnClient::new(cluster.service(store_id), cluster.oracle())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_oracle_never_repeats_a_timestamp() {
        let oracle = LocalOracle::new();
        let a = oracle.timestamps(10).await.unwrap();
        let b = oracle.timestamps(1).await.unwrap();
        assert!(b >= a + 10);
    }
}
