//! Where new region and peer ids come from.
//!
//! Splits and membership changes need region and peer ids that no store has ever used.
//! The raftstore does not make them up: it is handed an [`IdAllocator`] when it starts.
//! A node gives it one backed by the placement driver, which allocates ids in batches
//! and records each batch's high-water mark through raft before handing out an id below
//! it (as TinyKV's and TiKV's PD do), so ids are small, unique across the cluster and
//! never repeated, even across PD leader changes. A node that cannot reach the PD gets
//! [`crate::Error::IdsUnavailable`] and so cannot split, as in TinyKV; nothing else stops.
//!
//! [`SequentialIds`] is the allocator of a raftstore run without a placement driver: the
//! in-process test cluster shares one between its stores, as TinyKV's tests share a mock
//! scheduler.
//!
//! Stores written by earlier versions allocated their own ids (`store_id << 40 | n`,
//! 13-digit numbers). Those ids stay valid; the PD's ids stay below `1 << 40` and so
//! never meet them.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Result;

/// Hands out ids that are unique across the cluster and across restarts.
pub trait IdAllocator: Send + Sync + 'static {
    /// Returns `count` fresh ids, or [`crate::Error::IdsUnavailable`] (nothing handed out) if
    /// there are not that many at hand. Never blocks: it is called on raftstore threads.
    fn alloc(&self, count: usize) -> Result<Vec<u64>>;
}

/// Ids from an in-memory counter, for a raftstore without a placement driver (tests, the
/// in-process cluster): unique among the users of one `SequentialIds`, and only for the
/// life of the process.
#[derive(Debug)]
pub struct SequentialIds {
    next: AtomicU64,
}

impl SequentialIds {
    /// A counter whose first id is `first`.
    pub fn starting_at(first: u64) -> SequentialIds {
        SequentialIds {
            next: AtomicU64::new(first),
        }
    }
}

impl IdAllocator for SequentialIds {
    fn alloc(&self, count: usize) -> Result<Vec<u64>> {
        let first = self.next.fetch_add(count as u64, Ordering::Relaxed);
        Ok((first..first + count as u64).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_never_repeat_between_users() {
        let ids = std::sync::Arc::new(SequentialIds::starting_at(1000));
        let a = ids.alloc(3).unwrap();
        let b = ids.alloc(2).unwrap();
        assert_eq!(a, vec![1000, 1001, 1002]);
        assert_eq!(b, vec![1003, 1004]);
    }
}
