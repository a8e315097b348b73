//! The address book: where every store of the cluster listens.
//!
//! The raft transport needs a store's raft address and the forwarder its HTTP address,
//! both looked up by store id at the moment of (re)connecting. Both share one
//! [`AddressBook`], filled from `[[cluster.stores]]` at start and changeable while the node
//! runs (a store that moves or joins is reachable from the next connection attempt on),
//! so lookups go through a lock that is never held across an await.

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
}
