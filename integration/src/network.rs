//! The simulated network between in-process stores.
//!
//! Every store of a test [`crate::Cluster`] gets a [`SimTransport`] that hands raft messages
//! to a shared [`SimNetwork`]. Before delivering a message, the network asks each installed
//! [`Filter`] for a [`Verdict`]: deliver, drop, or deliver after a delay. Filters only ever
//! see store-to-store raft messages, never client requests, as in TinyKV's MockTransport.
//!
//! The filters are the faults of TinyKV's and TiKV's test suites:
//! [`DropFilter`] loses a fraction of messages, [`DelayFilter`] holds messages back,
//! [`PartitionFilter`] cuts all traffic between two sets of stores, and
//! [`PartitionFilter::isolate`] cuts one store off from all others. Tests of hostile
//! input also [`SimNetwork::inject`] messages no store sent.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rand::Rng;
use tinykv_actors::{StoreRouter, Transport};
use tinykv_proto::raft_serverpb::RaftMessage;

/// What a filter decides for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through.
    Deliver,
    /// Lose it.
    Drop,
    /// Deliver it after this long.
    Delay(Duration),
}

/// A fault injected into the network.
pub trait Filter: Send + Sync + 'static {
    /// Decides the fate of a message from `from` to `to`.
    fn check(&self, from: u64, to: u64, msg: &RaftMessage) -> Verdict;
}

/// Drops each message with probability `rate`.
pub struct DropFilter {
    /// Fraction of messages lost, in [0, 1].
    pub rate: f64,
}

impl Filter for DropFilter {
    fn check(&self, _: u64, _: u64, _: &RaftMessage) -> Verdict {
        if rand::thread_rng().gen_bool(self.rate) {
            Verdict::Drop
        } else {
            Verdict::Deliver
        }
    }
}

/// Delays each message by a random duration up to `max`.
pub struct DelayFilter {
    /// Longest delay.
    pub max: Duration,
}

impl Filter for DelayFilter {
    fn check(&self, _: u64, _: u64, _: &RaftMessage) -> Verdict {
        let micros = rand::thread_rng().gen_range(0..=self.max.as_micros() as u64);
        Verdict::Delay(Duration::from_micros(micros))
    }
}

/// Drops every message between a store of `left` and a store of `right`.
pub struct PartitionFilter {
    left: HashSet<u64>,
    right: HashSet<u64>,
}

impl PartitionFilter {
    /// Cuts `left` from `right`; traffic within each side flows.
    pub fn new(left: impl IntoIterator<Item = u64>, right: impl IntoIterator<Item = u64>) -> Self {
        PartitionFilter {
            left: left.into_iter().collect(),
            right: right.into_iter().collect(),
        }
    }

    /// Cuts `store` off from every other store of `all`.
    pub fn isolate(store: u64, all: impl IntoIterator<Item = u64>) -> Self {
        PartitionFilter::new([store], all.into_iter().filter(|s| *s != store))
    }
}

impl Filter for PartitionFilter {
    fn check(&self, from: u64, to: u64, _: &RaftMessage) -> Verdict {
        let crosses = (self.left.contains(&from) && self.right.contains(&to))
            || (self.right.contains(&from) && self.left.contains(&to));
        if crosses {
            Verdict::Drop
        } else {
            Verdict::Deliver
        }
    }
}

/// The switchboard every [`SimTransport`] of a cluster sends through.
pub struct SimNetwork {
    stores: RwLock<HashMap<u64, StoreRouter>>,
    filters: RwLock<Vec<Arc<dyn Filter>>>,
    runtime: tokio::runtime::Handle,
}

impl SimNetwork {
    /// A network with no stores and no filters; delayed messages are scheduled on the
    /// caller's tokio runtime.
    pub fn new() -> Arc<SimNetwork> {
        Arc::new(SimNetwork {
            stores: RwLock::new(HashMap::new()),
            filters: RwLock::new(Vec::new()),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// Connects a running store.
    pub fn connect(&self, router: StoreRouter) {
        self.stores
            .write()
            .unwrap()
            .insert(router.store_id(), router);
    }

    /// Disconnects a store (it stopped); messages to it are lost.
    pub fn disconnect(&self, store_id: u64) {
        self.stores.write().unwrap().remove(&store_id);
    }

    /// Installs a filter.
    pub fn add_filter(&self, filter: impl Filter) {
        self.filters.write().unwrap().push(Arc::new(filter));
    }

    /// Removes every filter.
    pub fn clear_filters(&self) {
        self.filters.write().unwrap().clear();
    }

    /// Delivers `msg` to the store its `to_peer` names, past every filter, as a forger on
    /// the network would; whatever it claims about its sender is not checked.
    pub fn inject(&self, msg: RaftMessage) {
        let Some(to) = msg.to_peer.as_ref().map(|p| p.store_id) else {
            return;
        };
        if let Some(router) = self.stores.read().unwrap().get(&to).cloned() {
            router.deliver(msg);
        }
    }

    fn send(&self, from: u64, msg: RaftMessage) {
        let Some(to) = msg.to_peer.as_ref().map(|p| p.store_id) else {
            return;
        };
        let mut delay = Duration::ZERO;
        for filter in self.filters.read().unwrap().iter() {
            match filter.check(from, to, &msg) {
                Verdict::Deliver => {}
                Verdict::Drop => return,
                Verdict::Delay(d) => delay = delay.max(d),
            }
        }
        let Some(router) = self.stores.read().unwrap().get(&to).cloned() else {
            return;
        };
        if delay.is_zero() {
            router.deliver(msg);
        } else {
            self.runtime.spawn(async move {
                tokio::time::sleep(delay).await;
                router.deliver(msg);
            });
        }
    }
}

/// One store's view of the [`SimNetwork`].
pub struct SimTransport {
    store_id: u64,
    network: Arc<SimNetwork>,
}

impl SimTransport {
    /// The transport of store `store_id`.
    pub fn new(store_id: u64, network: Arc<SimNetwork>) -> SimTransport {
        SimTransport { store_id, network }
    }
}

impl Transport for SimTransport {
    fn send(&self, msg: RaftMessage) {
        self.network.send(self.store_id, msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_cuts_only_across_sides() {
        let f = PartitionFilter::new([1, 2], [3]);
        let m = RaftMessage::default();
        assert_eq!(f.check(1, 3, &m), Verdict::Drop);
        assert_eq!(f.check(3, 2, &m), Verdict::Drop);
        assert_eq!(f.check(1, 2, &m), Verdict::Deliver);
        let iso = PartitionFilter::isolate(2, 1..=3);
        assert_eq!(iso.check(2, 1, &m), Verdict::Drop);
        assert_eq!(iso.check(1, 3, &m), Verdict::Deliver);
    }

    #[test]
    fn drop_filter_rates_are_respected() {
        let m = RaftMessage::default();
        let all = DropFilter { rate: 1.0 };
        let none = DropFilter { rate: 0.0 };
        assert!((0..100).all(|_| all.check(1, 2, &m) == Verdict::Drop));
        assert!((0..100).all(|_| none.check(1, 2, &m) == Verdict::Deliver));
    }
}
