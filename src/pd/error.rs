//! The placement driver's one error type.
//!
//! Every refusal of the PD is a value of [`PdError`]: a heartbeat that is older than what
//! the PD already knows, a store that cannot join or change state, an operator that does
//! not fit its region. A refused input never changes the PD's state, so the caller can
//! log the error and carry on.

use thiserror::Error;

/// Why the placement driver refused an input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PdError {
    /// The store id is unknown to the PD (it never joined).
    #[error("store {0} is not registered with the placement driver")]
    StoreNotFound(u64),
    /// The store was removed from the cluster for good; it can neither heartbeat nor rejoin.
    #[error("store {0} is a tombstone: it was removed from the cluster and cannot come back")]
    StoreTombstone(u64),
    /// A store description is malformed (id 0, empty address).
    #[error("invalid store {store_id}: {reason}")]
    InvalidStore {
        /// The store named in the request.
        store_id: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// Another live store already listens on this address.
    #[error("address {address} is already used by store {existing_store_id}")]
    DuplicateAddress {
        /// The contested address.
        address: String,
        /// The store that owns it.
        existing_store_id: u64,
    },
    /// A store that still holds region peers cannot become a tombstone.
    #[error(
        "store {store_id} still holds {region_count} region peer(s); it cannot be a tombstone"
    )]
    StoreNotEmpty {
        /// The store asked to become a tombstone.
        store_id: u64,
        /// How many peers it still holds.
        region_count: usize,
    },
    /// The requested store state change is not allowed (a tombstone is final).
    #[error("store {store_id} cannot go from {from} to {to}")]
    InvalidStateTransition {
        /// The store asked to change state.
        store_id: u64,
        /// Its current state.
        from: &'static str,
        /// The requested state.
        to: &'static str,
    },
    /// The region id is unknown to the PD.
    #[error("region {0} is not known to the placement driver")]
    RegionNotFound(u64),
    /// A region heartbeat is malformed (no epoch, empty range, leader outside the region).
    #[error("invalid heartbeat for region {region_id}: {reason}")]
    InvalidHeartbeat {
        /// The region the heartbeat describes.
        region_id: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A region heartbeat is older than what the PD knows: its epoch is behind the stored
    /// region of the same id, or its version is behind a region it overlaps.
    #[error(
        "stale heartbeat for region {region_id} (version {version}, conf_ver {conf_ver}): \
         region {newer_region_id} is newer (version {newer_version}, conf_ver {newer_conf_ver})"
    )]
    StaleRegion {
        /// The region the heartbeat describes.
        region_id: u64,
        /// The heartbeat's epoch version.
        version: u64,
        /// The heartbeat's epoch conf_ver.
        conf_ver: u64,
        /// The stored region that is newer (the same id, or one it overlaps).
        newer_region_id: u64,
        /// That region's epoch version.
        newer_version: u64,
        /// That region's epoch conf_ver.
        newer_conf_ver: u64,
    },
    /// The region already has an operator in flight; there is at most one per region.
    #[error("region {0} already has an operator in flight")]
    OperatorExists(u64),
    /// An operator cannot be built for the region as it is (peer already present, no such
    /// peer, removing the leader without moving it first...).
    #[error("invalid operator for region {region_id}: {reason}")]
    InvalidOperator {
        /// The region the operator would act on.
        region_id: u64,
        /// Why it does not fit.
        reason: String,
    },
}
