//! Unique ids for new regions and peers.
//!
//! Splits and membership changes need region and peer ids that no store has ever used.
//! Until a placement driver owns allocation (it will implement [`IdAllocator`]), each
//! store allocates from its own id space: ids are `store_id << 40 | n`, so two stores can
//! never hand out the same id, and `n` only grows. The high-water mark of `n` is persisted
//! (fsynced) in steps of [`BATCH`] before any id below it is handed out, so a restart skips
//! at most one batch and never repeats an id. Bootstrap ids (region 1, peers 1..=N) are far
//! below `1 << 40`.

use std::sync::Mutex;

use crate::engine::{Cf, Engine, Mutation};
use crate::error::{Error, Result};
use crate::keys;

/// Ids persisted per high-water-mark write.
pub const BATCH: u64 = 1000;
const SPACE_BITS: u32 = 40;

/// Hands out ids that are unique across the cluster and across restarts.
pub trait IdAllocator: Send + Sync + 'static {
    /// Returns `count` fresh ids.
    fn alloc(&self, count: usize) -> Result<Vec<u64>>;
}

struct State {
    next: u64,
    limit: u64,
}

/// The store-local allocator; see the module documentation.
pub struct StoreIdAllocator {
    engine: Engine,
    base: u64,
    state: Mutex<State>,
}

impl StoreIdAllocator {
    /// The allocator of store `store_id`, resuming above its persisted high-water mark.
    pub fn new(engine: Engine, store_id: u64) -> Result<StoreIdAllocator> {
        if store_id == 0 || store_id >= 1 << (64 - SPACE_BITS) {
            return Err(Error::InvalidRequest(format!(
                "store id {store_id} is outside the allocatable range"
            )));
        }
        let limit = match engine.get(Cf::Meta, keys::ID_ALLOC_KEY)? {
            Some(bytes) => u64::from_be_bytes(
                bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| Error::Corruption("id allocator state is not 8 bytes".into()))?,
            ),
            None => 0,
        };
        Ok(StoreIdAllocator {
            engine,
            base: store_id << SPACE_BITS,
            state: Mutex::new(State { next: limit, limit }),
        })
    }
}

impl IdAllocator for StoreIdAllocator {
    fn alloc(&self, count: usize) -> Result<Vec<u64>> {
        let mut state = self.state.lock().expect("id allocator lock");
        let wanted = state.next + count as u64;
        if wanted > state.limit {
            let limit = wanted.div_ceil(BATCH) * BATCH;
            if limit >= 1 << SPACE_BITS {
                return Err(Error::InvalidRequest(
                    "store's id space is exhausted".into(),
                ));
            }
            self.engine.write(
                &[Mutation::Put {
                    cf: Cf::Meta,
                    key: keys::ID_ALLOC_KEY.to_vec(),
                    value: limit.to_be_bytes().to_vec(),
                }],
                true,
            )?;
            state.limit = limit;
        }
        let ids = (state.next..wanted).map(|n| self.base | (n + 1)).collect();
        state.next = wanted;
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_per_store_and_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let a = StoreIdAllocator::new(engine.clone(), 1).unwrap();
        let first = a.alloc(3).unwrap();
        assert_eq!(first.len(), 3);
        assert!(first.iter().all(|id| *id > 1 << 40 && *id < 2 << 40));
        drop(a);
        // After a restart, no id is repeated (the rest of the batch is skipped).
        let b = StoreIdAllocator::new(engine.clone(), 1).unwrap();
        let second = b.alloc(BATCH as usize + 5).unwrap();
        assert!(second.iter().all(|id| !first.contains(id)));
        let mut all = first.clone();
        all.extend(&second);
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), first.len() + second.len());
        // Another store's ids never collide.
        let other = StoreIdAllocator::new(engine, 2).unwrap().alloc(3).unwrap();
        assert!(other.iter().all(|id| !all.contains(id)));
    }
}
