//! The address book: where every store of the cluster listens.
//!
//! The raft transport needs a store's raft address and the forwarder its HTTP address,
//! both looked up by store id at the moment of (re)connecting. Both share one
//! [`AddressBook`], filled from `[[cluster.stores]]` at start and changeable while the node
//! runs (a store that moves or joins is reachable from the next connection attempt on),
//! so lookups go through a lock that is never held across an await.
//!
//! Addresses here are *advertised* addresses: what others dial, which is not always where
//! a node's listeners bind (`node.listen_raft_addr` in a container binds `0.0.0.0`).
//! Three sources can disagree, and [`AddressBook::learn`] settles it by one rule:
//!
//! 1. a node's **own** entry is what it advertises (its config), always: the placement
//!    driver may still record an old address for it while it verifies a move, and that
//!    must not send the node's own forwards astray;
//! 2. for **every other store**, the placement driver's record wins over
//!    `[[cluster.stores]]`: the PD writes a store's addresses only from that store's own
//!    heartbeat, and only after checking that the store answers there (see
//!    `placement::probe`), so it is newer than any config file. A difference from the
//!    config is reported, so that a stale file is noticed before it matters (a restart
//!    with an empty book, a new node joining through it).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::config::StoreAddress;

/// A shared, updatable map from store id to [`StoreAddress`]. Clones share the map.
#[derive(Debug, Clone, Default)]
pub struct AddressBook {
    stores: Arc<RwLock<HashMap<u64, StoreAddress>>>,
}

impl AddressBook {
    /// A book holding `stores`.
    pub fn new(stores: impl IntoIterator<Item = StoreAddress>) -> AddressBook {
        let book = AddressBook::default();
        for store in stores {
            book.insert(store);
        }
        book
    }

    /// The addresses of store `id`.
    pub fn get(&self, id: u64) -> Option<StoreAddress> {
        self.stores
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&id)
            .cloned()
    }

    /// The raft transport address of store `id`.
    pub fn raft_addr(&self, id: u64) -> Option<String> {
        self.get(id).map(|s| s.raft_addr)
    }

    /// The HTTP address of store `id`.
    pub fn http_addr(&self, id: u64) -> Option<String> {
        self.get(id).map(|s| s.http_addr)
    }

    /// Adds store `store.id`, or replaces its addresses.
    pub fn insert(&self, store: StoreAddress) {
        self.stores
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(store.id, store);
    }

    /// Forgets store `id`.
    pub fn remove(&self, id: u64) -> Option<StoreAddress> {
        self.stores
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&id)
    }

    /// Takes the placement driver's `record` of a store, by the rule of the module
    /// documentation: `own` is this node's advertised entry, `configured` the
    /// `[[cluster.stores]]` entry of the same store if there is one. Says what changed.
    pub fn learn(
        &self,
        record: StoreAddress,
        own: &StoreAddress,
        configured: Option<&StoreAddress>,
    ) -> Learnt {
        if record.id == own.id {
            return match &record == own {
                true => Learnt::Unchanged,
                false => Learnt::OwnRecordDiffers { recorded: record },
            };
        }
        if self.get(record.id).as_ref() == Some(&record) {
            return Learnt::Unchanged;
        }
        let differs_from_config = configured.filter(|c| **c != record).cloned();
        self.insert(record);
        match differs_from_config {
            Some(configured) => Learnt::OverridesConfig { configured },
            None => Learnt::Updated,
        }
    }

    /// Every known store, ordered by id.
    pub fn all(&self) -> Vec<StoreAddress> {
        let mut stores: Vec<StoreAddress> = self
            .stores
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .cloned()
            .collect();
        stores.sort_by_key(|s| s.id);
        stores
    }
}

/// What [`AddressBook::learn`] did with a record from the placement driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Learnt {
    /// The book already held it.
    Unchanged,
    /// A new store, or one that moved; the config did not say otherwise.
    Updated,
    /// Taken, though `[[cluster.stores]]` gives the store `configured` instead.
    OverridesConfig {
        /// The config's entry.
        configured: StoreAddress,
    },
    /// The PD records this node at other addresses than it advertises; the book keeps
    /// the node's own.
    OwnRecordDiffers {
        /// What the PD holds.
        recorded: StoreAddress,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(id: u64, port: u16) -> StoreAddress {
        StoreAddress {
            id,
            raft_addr: format!("127.0.0.1:{port}"),
            http_addr: format!("127.0.0.1:{}", port + 1),
        }
    }

    #[test]
    fn clones_see_updates() {
        let book = AddressBook::new([store(2, 200), store(1, 100)]);
        let clone = book.clone();
        assert_eq!(clone.raft_addr(1).as_deref(), Some("127.0.0.1:100"));
        book.insert(store(1, 300));
        assert_eq!(clone.http_addr(1).as_deref(), Some("127.0.0.1:301"));
        assert_eq!(
            clone.all().iter().map(|s| s.id).collect::<Vec<_>>(),
            vec![1, 2]
        );
        book.remove(2);
        assert!(clone.get(2).is_none());
    }

    #[test]
    fn the_pd_wins_over_the_config_but_never_over_a_node_about_itself() {
        let own = store(1, 100);
        let configured = store(2, 200);
        let book = AddressBook::new([own.clone(), configured.clone()]);

        // Another store's record from the PD replaces the configured one, and says so.
        let moved = store(2, 220);
        assert_eq!(
            book.learn(moved.clone(), &own, Some(&configured)),
            Learnt::OverridesConfig {
                configured: configured.clone()
            }
        );
        assert_eq!(book.get(2), Some(moved.clone()));
        assert_eq!(
            book.learn(moved.clone(), &own, Some(&configured)),
            Learnt::Unchanged
        );
        // A store the config does not know is simply learnt.
        assert_eq!(book.learn(store(3, 300), &own, None), Learnt::Updated);
        // A record agreeing with the config is not a conflict.
        assert_eq!(
            book.learn(configured.clone(), &own, Some(&configured)),
            Learnt::Updated
        );

        // The PD's stale record of this node is reported and not taken.
        let stale = store(1, 900);
        assert_eq!(
            book.learn(stale.clone(), &own, Some(&own)),
            Learnt::OwnRecordDiffers { recorded: stale }
        );
        assert_eq!(book.get(1), Some(own.clone()));
        assert_eq!(book.learn(own.clone(), &own, None), Learnt::Unchanged);
    }
}
