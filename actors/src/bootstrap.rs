//! Bootstrap: giving a fresh store its identity and, for the initial stores, region 1.
//!
//! A store's identity (`StoreIdent`: cluster id and store id) is written once, when its
//! engine is empty. A store that is one of the cluster's initial stores also gets the first
//! region, covering the whole key space, with one peer on each initial store (peer id =
//! store id) and the initial raft and apply state (index and term 5), so every initial
//! store starts from the same log position without exchanging anything. Both are written
//! in one synced batch: a crash mid-bootstrap leaves an empty engine, never half a store.
//!
//! On every later start the identity is read back and checked against the configuration;
//! a store never bootstraps twice and never joins another cluster with old data.

use tinykv_proto::metapb;
use tinykv_proto::raft_serverpb::{PeerState, RegionLocalState, StoreIdent};

use crate::engine::{Cf, Engine, Mutation};
use crate::error::{Error, Result};
use crate::keys;
use crate::peer_storage::{initial_apply_state, initial_raft_state};

/// Id of the region that covers the whole key space when a cluster is created.
pub const FIRST_REGION_ID: u64 = 1;

/// What [`ensure_bootstrapped`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootstrapOutcome {
    /// The engine already belonged to this store.
    Existing,
    /// The engine was empty and has just been bootstrapped.
    Fresh,
}

/// Reads the store's identity, if it has one.
pub fn load_store_ident(engine: &Engine) -> Result<Option<StoreIdent>> {
    engine.get_msg(Cf::Meta, keys::STORE_IDENT_KEY)
}

/// The first region over `initial_stores`: the whole key space, one peer per store with
/// peer id = store id, epoch (1, 1).
pub fn first_region(initial_stores: &[u64]) -> metapb::Region {
    metapb::Region {
        id: FIRST_REGION_ID,
        start_key: vec![],
        end_key: vec![],
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        peers: initial_stores
            .iter()
            .map(|&id| metapb::Peer { id, store_id: id })
            .collect(),
    }
}

/// Mutations that create a peer of `region` with the initial raft and apply state.
pub fn initial_region_mutations(region: &metapb::Region) -> Vec<Mutation> {
    vec![
        Mutation::put_msg(
            Cf::Meta,
            keys::region_state_key(region.id),
            &RegionLocalState {
                state: PeerState::Normal as i32,
                region: Some(region.clone()),
                merge_state: None,
            },
        ),
        Mutation::put_msg(
            Cf::Raft,
            keys::raft_state_key(region.id),
            &initial_raft_state(),
        ),
        Mutation::put_msg(
            Cf::Meta,
            keys::apply_state_key(region.id),
            &initial_apply_state(),
        ),
    ]
}

/// Makes sure the engine belongs to store `store_id` of cluster `cluster_id`,
/// bootstrapping it if it is empty. A store listed in `initial_stores` also receives the
/// first region.
pub fn ensure_bootstrapped(
    engine: &Engine,
    cluster_id: u64,
    store_id: u64,
    initial_stores: &[u64],
) -> Result<BootstrapOutcome> {
    if let Some(ident) = load_store_ident(engine)? {
        if ident.cluster_id != cluster_id || ident.store_id != store_id {
            return Err(Error::Corruption(format!(
                "data directory {} belongs to store {} of cluster {}, but this node is configured as store {} of cluster {}",
                engine.path().display(),
                ident.store_id,
                ident.cluster_id,
                store_id,
                cluster_id
            )));
        }
        return Ok(BootstrapOutcome::Existing);
    }
    if !engine.is_empty()? {
        return Err(Error::Corruption(format!(
            "data directory {} holds data but no store identity; refusing to bootstrap over it",
            engine.path().display()
        )));
    }
    let mut mutations = vec![Mutation::put_msg(
        Cf::Meta,
        keys::STORE_IDENT_KEY.to_vec(),
        &StoreIdent {
            cluster_id,
            store_id,
        },
    )];
    if initial_stores.contains(&store_id) {
        mutations.extend(initial_region_mutations(&first_region(initial_stores)));
    }
    engine.write(&mutations, true)?;
    Ok(BootstrapOutcome::Fresh)
}

/// Reads every region state the store holds (the Store loads them itself when it
/// starts; the tests read what a bootstrap wrote).
#[cfg(test)]
fn load_regions(engine: &Engine) -> Result<Vec<RegionLocalState>> {
    let mut states = Vec::new();
    let mut failure = None;
    engine.scan(
        Cf::Meta,
        keys::REGION_STATE_PREFIX_KEY,
        &[keys::REGION_STATE_PREFIX_KEY[0] + 1],
        |_, v| match <RegionLocalState as prost::Message>::decode(v) {
            Ok(state) => {
                states.push(state);
                true
            }
            Err(e) => {
                failure = Some(e);
                false
            }
        },
    )?;
    if let Some(e) = failure {
        return Err(Error::Corruption(format!("undecodable region state: {e}")));
    }
    Ok(states)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_happens_once_and_checks_identity() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        assert_eq!(
            ensure_bootstrapped(&engine, 7, 2, &[1, 2, 3]).unwrap(),
            BootstrapOutcome::Fresh
        );
        assert_eq!(
            ensure_bootstrapped(&engine, 7, 2, &[1, 2, 3]).unwrap(),
            BootstrapOutcome::Existing
        );
        let regions = load_regions(&engine).unwrap();
        assert_eq!(regions.len(), 1);
        let region = regions[0].region.clone().unwrap();
        assert_eq!(region.peers.len(), 3);
        assert_eq!(region.region_epoch.unwrap().version, 1);

        let err = ensure_bootstrapped(&engine, 7, 3, &[1, 2, 3]).unwrap_err();
        assert!(err.to_string().contains("store 2"), "{err}");
        let err = ensure_bootstrapped(&engine, 8, 2, &[1, 2, 3]).unwrap_err();
        assert!(err.to_string().contains("cluster 7"), "{err}");
    }

    #[test]
    fn a_store_outside_the_initial_set_gets_no_region() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        ensure_bootstrapped(&engine, 1, 4, &[1, 2, 3]).unwrap();
        assert!(load_regions(&engine).unwrap().is_empty());
        assert_eq!(load_store_ident(&engine).unwrap().unwrap().store_id, 4);
    }

    #[test]
    fn data_without_identity_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        engine
            .write(
                &[Mutation::Put {
                    cf: Cf::Default,
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                }],
                true,
            )
            .unwrap();
        let err = ensure_bootstrapped(&engine, 1, 1, &[1]).unwrap_err();
        assert!(matches!(err, Error::Corruption(_)));
    }
}
