//! The raftstore's error type.
//!
//! Region errors (`NotLeader`, `EpochNotMatch`, ...) are part of the protocol: they travel
//! to clients inside `RaftResponseHeader.error` as `errorpb::Error`, and clients react to
//! them (follow the leader hint, refresh the region, retry). Everything else (engine
//! failures, codec failures, shutdown) is an internal error that only carries a message.

use tinykv_proto::{errorpb, metapb};

/// Any failure inside the raftstore.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// This peer is not the leader; `leader` is its best guess of who is.
    #[error("peer of region {region_id} is not leader (leader hint: {leader:?})")]
    NotLeader {
        /// The region that was addressed.
        region_id: u64,
        /// The leader this peer believes in, if any.
        leader: Option<metapb::Peer>,
    },
    /// No peer of that region lives on this store.
    #[error("region {0} not found")]
    RegionNotFound(u64),
    /// The key lies outside the region's range.
    #[error("key {key:?} is not in region {region_id} [{start_key:?}, {end_key:?})")]
    KeyNotInRegion {
        /// The offending key.
        key: Vec<u8>,
        /// The region that was addressed.
        region_id: u64,
        /// The region's start key.
        start_key: Vec<u8>,
        /// The region's end key (empty: unbounded).
        end_key: Vec<u8>,
    },
    /// The request's region epoch is not the region's current one.
    #[error("epoch not match: {message}")]
    EpochNotMatch {
        /// What did not match.
        message: String,
        /// The regions the client should refresh its view with.
        current_regions: Vec<metapb::Region>,
    },
    /// The command was proposed but its log entry was overwritten by a newer leader, or its
    /// term is too old to be accepted.
    #[error("stale command")]
    StaleCommand,
    /// The request was addressed to another store.
    #[error(
        "store not match: request for store {request_store_id}, this is store {actual_store_id}"
    )]
    StoreNotMatch {
        /// The store the request named.
        request_store_id: u64,
        /// This store.
        actual_store_id: u64,
    },
    /// The store has as much queued as it takes: nothing was done, the request may be
    /// retried after a moment.
    #[error("server is busy: {0}")]
    ServerIsBusy(String),
    /// No fresh region or peer ids are at hand: the placement driver, which allocates
    /// them, has not answered yet or cannot be reached. Nothing was done; the request may
    /// be retried once the PD is back.
    #[error("no region or peer ids at hand: {0}")]
    IdsUnavailable(String),
    /// The storage engine failed.
    #[error("engine error: {0}")]
    Engine(String),
    /// A stored or received message could not be decoded.
    #[error("codec error: {0}")]
    Codec(String),
    /// The store is shutting down or the addressed actor stopped.
    #[error("store is stopped")]
    Stopped,
    /// The request did not complete in time, or its peer stopped while the command was
    /// proposed but not yet applied: its outcome is unknown (the command may still be
    /// committed and applied by the other peers).
    #[error("request timed out; its outcome is unknown")]
    Timeout,
    /// A request that the raftstore refuses, with the reason.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A CommitMerge found its target past the epoch its PrepareMerge named: it did not
    /// apply, and no CommitMerge of that PrepareMerge ever will, so the source may roll
    /// back.
    #[error("merge target changed: {0}")]
    MergeTargetChanged(String),
    /// Data on disk contradicts what this store expects (wrong cluster, missing state).
    #[error("corrupted or foreign data: {0}")]
    Corruption(String),
}

/// The raftstore's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl From<fjall::Error> for Error {
    fn from(e: fjall::Error) -> Self {
        Error::Engine(e.to_string())
    }
}

impl From<prost::DecodeError> for Error {
    fn from(e: prost::DecodeError) -> Self {
        Error::Codec(e.to_string())
    }
}

impl From<protobuf::ProtobufError> for Error {
    fn from(e: protobuf::ProtobufError) -> Self {
        Error::Codec(e.to_string())
    }
}

impl Error {
    /// Encodes the error for a `RaftResponseHeader`, setting exactly one typed field for a
    /// region error and only the message otherwise.
    pub fn to_pb(&self) -> errorpb::Error {
        let mut e = errorpb::Error {
            message: self.to_string(),
            ..Default::default()
        };
        match self {
            Error::NotLeader { region_id, leader } => {
                e.not_leader = Some(errorpb::NotLeader {
                    region_id: *region_id,
                    leader: *leader,
                })
            }
            Error::RegionNotFound(region_id) => {
                e.region_not_found = Some(errorpb::RegionNotFound {
                    region_id: *region_id,
                })
            }
            Error::KeyNotInRegion {
                key,
                region_id,
                start_key,
                end_key,
            } => {
                e.key_not_in_region = Some(errorpb::KeyNotInRegion {
                    key: key.clone(),
                    region_id: *region_id,
                    start_key: start_key.clone(),
                    end_key: end_key.clone(),
                })
            }
            Error::EpochNotMatch {
                current_regions, ..
            } => {
                e.epoch_not_match = Some(errorpb::EpochNotMatch {
                    current_regions: current_regions.clone(),
                })
            }
            Error::StaleCommand => e.stale_command = Some(errorpb::StaleCommand {}),
            Error::StoreNotMatch {
                request_store_id,
                actual_store_id,
            } => {
                e.store_not_match = Some(errorpb::StoreNotMatch {
                    request_store_id: *request_store_id,
                    actual_store_id: *actual_store_id,
                })
            }
            Error::ServerIsBusy(reason) => {
                e.server_is_busy = Some(errorpb::ServerIsBusy {
                    reason: reason.clone(),
                })
            }
            Error::IdsUnavailable(_) => {
                e.server_is_busy = Some(errorpb::ServerIsBusy {
                    reason: self.to_string(),
                })
            }
            _ => {}
        }
        e
    }

    /// Decodes an error from a response header: the inverse of [`Error::to_pb`] for region
    /// errors. An error that only carries a message comes back as [`Error::InvalidRequest`]
    /// with that message.
    pub fn from_pb(e: &errorpb::Error) -> Error {
        if let Some(nl) = &e.not_leader {
            return Error::NotLeader {
                region_id: nl.region_id,
                leader: nl.leader,
            };
        }
        if let Some(r) = &e.region_not_found {
            return Error::RegionNotFound(r.region_id);
        }
        if let Some(k) = &e.key_not_in_region {
            return Error::KeyNotInRegion {
                key: k.key.clone(),
                region_id: k.region_id,
                start_key: k.start_key.clone(),
                end_key: k.end_key.clone(),
            };
        }
        if let Some(en) = &e.epoch_not_match {
            return Error::EpochNotMatch {
                message: e.message.clone(),
                current_regions: en.current_regions.clone(),
            };
        }
        if e.stale_command.is_some() {
            return Error::StaleCommand;
        }
        if let Some(busy) = &e.server_is_busy {
            return Error::ServerIsBusy(busy.reason.clone());
        }
        if let Some(s) = &e.store_not_match {
            return Error::StoreNotMatch {
                request_store_id: s.request_store_id,
                actual_store_id: s.actual_store_id,
            };
        }
        // The errors errorpb has no field for travel as their message alone.
        let message = e.message.as_str();
        if message == Error::Timeout.to_string() {
            return Error::Timeout;
        }
        if message == Error::Stopped.to_string() {
            return Error::Stopped;
        }
        let prefixed = |prefix: &str| message.strip_prefix(prefix).map(str::to_string);
        if let Some(reason) = prefixed("invalid request: ") {
            return Error::InvalidRequest(reason);
        }
        if let Some(reason) = prefixed("merge target changed: ") {
            return Error::MergeTargetChanged(reason);
        }
        if let Some(reason) = prefixed("codec error: ") {
            return Error::Codec(reason);
        }
        if let Some(reason) = prefixed("corrupted or foreign data: ") {
            return Error::Corruption(reason);
        }
        Error::Engine(
            message
                .strip_prefix("engine error: ")
                .unwrap_or(message)
                .to_string(),
        )
    }

    /// Whether a client may retry the same request (possibly elsewhere) and expect a
    /// different outcome.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::NotLeader { .. }
                | Error::RegionNotFound(_)
                | Error::EpochNotMatch { .. }
                | Error::StaleCommand
                | Error::KeyNotInRegion { .. }
                | Error::Stopped
                | Error::Timeout
                | Error::ServerIsBusy(_)
                | Error::IdsUnavailable(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_errors_round_trip_through_pb() {
        let errors = vec![
            Error::NotLeader {
                region_id: 3,
                leader: Some(metapb::Peer { id: 4, store_id: 2 }),
            },
            Error::RegionNotFound(9),
            Error::KeyNotInRegion {
                key: b"k".to_vec(),
                region_id: 1,
                start_key: b"a".to_vec(),
                end_key: b"b".to_vec(),
            },
            Error::StaleCommand,
            Error::StoreNotMatch {
                request_store_id: 1,
                actual_store_id: 2,
            },
        ];
        for err in errors {
            let pb = err.to_pb();
            let set = [
                pb.not_leader.is_some(),
                pb.region_not_found.is_some(),
                pb.key_not_in_region.is_some(),
                pb.epoch_not_match.is_some(),
                pb.stale_command.is_some(),
                pb.store_not_match.is_some(),
            ];
            assert_eq!(set.iter().filter(|s| **s).count(), 1, "{err:?}");
            assert_eq!(Error::from_pb(&pb).to_string(), err.to_string());
        }
        let internal = Error::Engine("disk on fire".into()).to_pb();
        assert!(internal.not_leader.is_none() && internal.stale_command.is_none());
        assert!(internal.message.contains("disk on fire"));
        // The others keep their kind through their message: a timed-out write stays a
        // timeout (outcome unknown), never an invalid request.
        for err in [
            Error::Timeout,
            Error::Stopped,
            Error::Engine("disk on fire".into()),
            Error::Codec("bad bytes".into()),
            Error::Corruption("wrong cluster".into()),
            Error::InvalidRequest("no such command".into()),
        ] {
            let back = Error::from_pb(&err.to_pb());
            assert_eq!(
                std::mem::discriminant(&back),
                std::mem::discriminant(&err),
                "{err:?} came back as {back:?}"
            );
            assert_eq!(back.to_string(), err.to_string());
        }
    }
}
