//! Fault injection for tests: a switch that cuts this node off from chosen stores.
//!
//! Chaos tests of the real binary need network partitions between processes on one
//! machine, without root and without touching the kernel's packet filter. A node started
//! with `[debug] fault_injection = true` therefore lets its admin API (`POST` and `DELETE
//! /v1/admin/faults/partition`, see `api::faults`) set a list of *blocked stores*. While a
//! store is blocked this node:
//!
//! - drops every raft message to it, in [`TcpTransport`](crate::server::raft_transport::TcpTransport)'s
//!   `send` (snapshots included);
//! - drops every raft message from it, in the raft listener, before the message reaches
//!   the router;
//! - fails every request it would forward to it over HTTP at once, as a connection that
//!   could not be made ([`HttpForwarder`](crate::server::forward::HttpForwarder)): nothing is
//!   sent, so a write forwarded there definitely did not happen and may be retried
//!   elsewhere.
//!
//! Client requests to the node itself are not affected: the partition is between stores,
//! as a cut link between data centres would be. Blocking a store on one side is enough to
//! cut the link both ways; blocking it on both sides also stops the other side from
//! forwarding client requests here.
//!
//! [`Faults`] is cheap to clone and check: a node without fault injection never takes the
//! lock, and one with nothing blocked only reads an atomic flag. The state lives in memory:
//! a restarted node starts healed.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// The node's fault-injection switch; see the module documentation. Clones share state.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// `debug.fault_injection`: whether faults may be injected at all.
    enabled: bool,
    /// Whether `blocked` is non-empty, read without the lock on every message.
    any_blocked: AtomicBool,
    /// Stores this node neither sends to nor receives from.
    blocked: RwLock<BTreeSet<u64>>,
}

/// Why a fault could not be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultsDisabled;

impl std::fmt::Display for FaultsDisabled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fault injection is disabled (set debug.fault_injection = true)")
    }
}

impl std::error::Error for FaultsDisabled {}

impl Faults {
    /// A switch that refuses every fault: what a production node runs with.
    pub fn disabled() -> Faults {
        Faults::default()
    }

    /// A switch that accepts faults, with nothing blocked yet.
    pub fn enabled() -> Faults {
        Faults {
            inner: Arc::new(Inner {
                enabled: true,
                ..Default::default()
            }),
        }
    }

    /// [`Faults::enabled`] if `enabled`, else [`Faults::disabled`].
    pub fn new(enabled: bool) -> Faults {
        if enabled {
            Faults::enabled()
        } else {
            Faults::disabled()
        }
    }

    /// Whether faults may be injected.
    pub fn is_enabled(&self) -> bool {
        self.inner.enabled
    }

    /// Cuts this node off from `stores`, replacing any earlier partition. An empty list
    /// heals.
    pub fn partition(&self, stores: impl IntoIterator<Item = u64>) -> Result<(), FaultsDisabled> {
        if !self.inner.enabled {
            return Err(FaultsDisabled);
        }
        let mut blocked = self
            .inner
            .blocked
            .write()
            .unwrap_or_else(|p| p.into_inner());
        *blocked = stores.into_iter().collect();
        self.inner
            .any_blocked
            .store(!blocked.is_empty(), Ordering::Release);
        if blocked.is_empty() {
            tracing::warn!("fault injection: partition healed");
        } else {
            tracing::warn!(stores = ?*blocked, "fault injection: partitioned from stores");
        }
        Ok(())
    }

    /// Heals the partition: every store is reachable again.
    pub fn heal(&self) -> Result<(), FaultsDisabled> {
        self.partition([])
    }

    /// Whether messages to and from `store_id` are dropped now.
    pub fn is_blocked(&self, store_id: u64) -> bool {
        if !self.inner.any_blocked.load(Ordering::Acquire) {
            return false;
        }
        self.inner
            .blocked
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&store_id)
    }

    /// The stores blocked now, in ascending order.
    pub fn blocked(&self) -> Vec<u64> {
        self.inner
            .blocked
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_switch_refuses_faults_and_blocks_nothing() {
        let faults = Faults::disabled();
        assert!(!faults.is_enabled());
        assert_eq!(faults.partition([2]), Err(FaultsDisabled));
        assert_eq!(faults.heal(), Err(FaultsDisabled));
        assert!(!faults.is_blocked(2));
        assert!(faults.blocked().is_empty());
        assert!(!Faults::new(false).is_enabled());
    }

    #[test]
    fn a_partition_blocks_exactly_its_stores_until_healed() {
        let faults = Faults::new(true);
        let shared = faults.clone();
        faults.partition([3, 2, 3]).unwrap();
        assert_eq!(shared.blocked(), vec![2, 3]);
        assert!(shared.is_blocked(2) && shared.is_blocked(3));
        assert!(!shared.is_blocked(1) && !shared.is_blocked(4));
        // A new partition replaces the old one.
        faults.partition([4]).unwrap();
        assert_eq!(shared.blocked(), vec![4]);
        assert!(!shared.is_blocked(2));
        faults.heal().unwrap();
        assert!(!shared.is_blocked(4));
        assert!(shared.blocked().is_empty());
    }
}
