//! Pending one-phase commits: the keys a reader at the leader must wait for.
//!
//! Percolator's two phases keep snapshot reads repeatable: a transaction takes its commit
//! timestamp only after its locks are written, so a reader whose timestamp is newer finds
//! either the lock (and waits for it) or the commit record. A one-phase commit writes
//! no lock: the leader takes the commit timestamp while it holds the keys' latches and
//! proposes the values and commit records together. Between the timestamp and the apply,
//! a reader with a newer timestamp would find neither, read the older version, and a
//! moment later the same read would answer the new one.
//!
//! So the leader's node lists the keys of each such commit here, from before it asks the
//! oracle for the commit timestamp until the proposal's fate is known, and every
//! transactional read on the node waits until none of its keys is listed (TiKV's
//! in-memory locks of its concurrency manager). That covers every read that can matter:
//!
//! - transactional reads run only at the leader (a leader-only snapshot), on the same
//!   node as the commit;
//! - a reader whose timestamp is older than the commit timestamp may read either way,
//!   and one whose timestamp was handed out after it arrives after the keys were listed;
//! - once the keys are released the entry has applied at this leader, so the snapshot the
//!   reader takes next holds it; if leadership moved instead, the new leader serves reads
//!   only after applying every entry it committed, and an entry it does not hold can never
//!   commit.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

/// The keys (stored form) of one-phase commits in flight on a node; see the module
/// documentation. Clones share the list.
#[derive(Clone, Default)]
pub struct PendingCommits {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Each listed key and how many commits in flight hold it.
    keys: Mutex<BTreeMap<Vec<u8>, usize>>,
    /// Woken whenever keys are released.
    released: Notify,
}

/// One commit's listing; dropping it releases the keys and wakes the readers waiting.
pub struct PendingGuard {
    inner: Arc<Inner>,
    keys: Vec<Vec<u8>>,
}

impl PendingCommits {
    /// Lists `keys` (stored form) until the guard is dropped.
    pub fn hold(&self, keys: Vec<Vec<u8>>) -> PendingGuard {
        let mut listed = self.inner.keys.lock().unwrap_or_else(|e| e.into_inner());
        for key in &keys {
            *listed.entry(key.clone()).or_default() += 1;
        }
        PendingGuard {
            inner: self.inner.clone(),
            keys,
        }
    }

    /// Waits until no key of `[start, end)` (stored form; `None`: no end) is listed;
    /// `false` if `deadline` passed first.
    pub async fn wait_clear(&self, start: &[u8], end: Option<&[u8]>, deadline: Instant) -> bool {
        loop {
            // Registered before looking, so a release in between is not missed.
            let released = self.inner.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if !self.any_in(start, end) {
                return true;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(remaining, released).await.is_err() {
                return !self.any_in(start, end);
            }
        }
    }

    /// Whether a key of `[start, end)` is listed.
    fn any_in(&self, start: &[u8], end: Option<&[u8]>) -> bool {
        let listed = self.inner.keys.lock().unwrap_or_else(|e| e.into_inner());
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        if matches!(upper, Bound::Excluded(end) if end <= start) {
            return false;
        }
        listed
            .range::<[u8], _>((Bound::Included(start), upper))
            .next()
            .is_some()
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        {
            let mut listed = self.inner.keys.lock().unwrap_or_else(|e| e.into_inner());
            for key in &self.keys {
                if let Some(count) = listed.get_mut(key) {
                    *count -= 1;
                    if *count == 0 {
                        listed.remove(key);
                    }
                }
            }
        }
        self.inner.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn a_reader_waits_for_its_keys_only() {
        let pending = PendingCommits::default();
        let guard = pending.hold(vec![b"b".to_vec()]);
        // Keys and ranges around "b" are clear at once.
        assert!(pending.wait_clear(b"a", Some(b"b"), soon()).await);
        assert!(pending.wait_clear(b"b\0", None, soon()).await);
        assert!(pending.wait_clear(b"c", Some(b"a"), soon()).await);
        // One covering "b" waits until it is released.
        let waiter = {
            let pending = pending.clone();
            tokio::spawn(async move { pending.wait_clear(b"a", None, soon()).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(guard);
        assert!(waiter.await.unwrap());
    }

    #[tokio::test]
    async fn a_key_held_twice_stays_listed_until_both_release() {
        let pending = PendingCommits::default();
        let first = pending.hold(vec![b"k".to_vec()]);
        let second = pending.hold(vec![b"k".to_vec(), b"l".to_vec()]);
        drop(first);
        let short = Instant::now() + Duration::from_millis(20);
        assert!(!pending.wait_clear(b"k", Some(b"k\0"), short).await);
        drop(second);
        assert!(pending.wait_clear(b"k", None, soon()).await);
    }
}
