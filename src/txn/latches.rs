//! Latches: keeping two writing commands on one key from deciding on the same snapshot.
//!
//! A transactional command reads a snapshot, decides, and proposes its writes through
//! raft. If a second command on the same key read its snapshot before the first one's
//! writes applied, both would decide on the same state: two prewrites would each find the
//! key unlocked. So a node holds a latch on every key a writing command touches from
//! before its read until its writes have applied or failed for certain (TinyKV's
//! `latches`, TiKV's scheduler latches).
//!
//! Keys hash into a fixed number of slots, each an async mutex; a command takes the slots
//! of its keys in slot order, so two commands never wait for each other in a cycle. Two
//! keys sharing a slot only wait for one another needlessly. The mutexes are fair: the
//! commands waiting on a slot get it in the order they asked.
//!
//! Latches are per node. That is enough because the commands that write transactional
//! keys run only at a region's leader and propose only in the term their snapshot was
//! read in: another node's commands on the key belong to another term, whose first
//! commit orders them after every entry of this one.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};

/// Number of latch slots of a node.
pub const LATCH_SLOTS: usize = 4096;

/// A node's latches; see the module documentation.
pub struct Latches {
    slots: Vec<Arc<Mutex<()>>>,
}

/// The latches one command holds; dropping it releases them.
pub struct LatchGuard {
    _held: Vec<OwnedMutexGuard<()>>,
}

impl Latches {
    /// Latches with `slots` slots (at least one).
    pub fn new(slots: usize) -> Latches {
        Latches {
            slots: (0..slots.max(1))
                .map(|_| Arc::new(Mutex::new(())))
                .collect(),
        }
    }

    /// Waits for the latches of `keys` (in any order, repeats allowed) and holds them.
    pub async fn acquire<K: AsRef<[u8]>>(&self, keys: &[K]) -> LatchGuard {
        let mut slots: Vec<usize> = keys.iter().map(|key| self.slot(key.as_ref())).collect();
        slots.sort_unstable();
        slots.dedup();
        let mut held = Vec::with_capacity(slots.len());
        for slot in slots {
            held.push(self.slots[slot].clone().lock_owned().await);
        }
        LatchGuard { _held: held }
    }

    fn slot(&self, key: &[u8]) -> usize {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        (hasher.finish() % self.slots.len() as u64) as usize
    }
}

impl Default for Latches {
    fn default() -> Self {
        Latches::new(LATCH_SLOTS)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_key_is_held_by_one_command_at_a_time() {
        let latches = Arc::new(Latches::new(64));
        let first = latches.acquire(&[b"a".as_slice(), b"b"]).await;
        // Another command on b waits...
        let waiting = {
            let latches = latches.clone();
            tokio::spawn(async move { latches.acquire(&[b"b".as_slice()]).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        // ... while one on other keys goes ahead.
        let other = tokio::time::timeout(Duration::from_secs(1), latches.acquire(&[b"zz"])).await;
        let same_slot =
            latches.slot(b"zz") == latches.slot(b"a") || latches.slot(b"zz") == latches.slot(b"b");
        assert_eq!(other.is_ok(), !same_slot);
        drop(other);
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("the latch is released")
            .unwrap();
    }

    #[tokio::test]
    async fn commands_taking_keys_in_opposite_orders_do_not_deadlock() {
        let latches = Arc::new(Latches::new(8));
        let mut tasks = Vec::new();
        for i in 0..50u32 {
            let latches = latches.clone();
            tasks.push(tokio::spawn(async move {
                let keys: Vec<Vec<u8>> = if i % 2 == 0 {
                    vec![b"x".to_vec(), b"y".to_vec(), b"x".to_vec()]
                } else {
                    vec![b"y".to_vec(), b"x".to_vec()]
                };
                let _guard = latches.acquire(&keys).await;
                tokio::task::yield_now().await;
            }));
        }
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("no deadlock")
                .unwrap();
        }
    }
}
