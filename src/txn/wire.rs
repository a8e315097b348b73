//! The transactional commands as `kvrpcpb` messages: checking a request that arrived
//! from a socket, and turning the command layer's answers into responses.
//!
//! A node executes, and forwards to another node, the `kvrpcpb` requests themselves
//! ([`TxnRequest`]); the command layer works on [`TxnWrite`]s and [`KeyError`]s. Nothing
//! here trusts a request: an unknown operation, a write set without keys or a key named
//! twice is refused with a 400 before anything is read.

use std::collections::HashSet;

use tinykv_proto::kvrpcpb::{
    self, txn_request::Command, LockInfo, Mutation, Op, TxnRequest, WriteConflict,
};

use super::commands::{KeyError, TxnWrite};
use crate::error::{Error, Result};

/// A request's writes as the command layer takes them; refuses an unknown or rollback
/// operation, an empty set and a key written twice.
pub fn writes_of(mutations: &[Mutation]) -> Result<Vec<TxnWrite>> {
    if mutations.is_empty() {
        return Err(invalid("a prewrite names no key"));
    }
    let mut seen = HashSet::new();
    mutations
        .iter()
        .map(|m| {
            if !seen.insert(m.key.as_slice()) {
                return Err(invalid("a prewrite names a key twice"));
            }
            let key = m.key.clone();
            match Op::try_from(m.op) {
                Ok(Op::Put) => Ok(TxnWrite::Put {
                    key,
                    value: m.value.clone(),
                }),
                Ok(Op::Del) => Ok(TxnWrite::Delete { key }),
                Ok(Op::Lock) => Ok(TxnWrite::Lock { key }),
                Ok(Op::Rollback) | Err(_) => {
                    Err(invalid(&format!("operation {} cannot be prewritten", m.op)))
                }
            }
        })
        .collect()
}

/// A write as a `kvrpcpb` mutation.
pub fn mutation_of(write: &TxnWrite) -> Mutation {
    let (op, value) = match write {
        TxnWrite::Put { value, .. } => (Op::Put, value.clone()),
        TxnWrite::Delete { .. } => (Op::Del, Vec::new()),
        TxnWrite::Lock { .. } => (Op::Lock, Vec::new()),
    };
    Mutation {
        op: op as i32,
        key: write.key().to_vec(),
        value,
    }
}

/// The keys a request reads or writes, in its order; the first one routes it. Refuses a
/// request without a command or without keys.
pub fn request_keys(request: &TxnRequest) -> Result<Vec<Vec<u8>>> {
    let keys = match &request.command {
        None => return Err(invalid("the request names no command")),
        Some(Command::Get(get)) => vec![get.key.clone()],
        Some(Command::Scan(scan)) => vec![scan.start_key.clone()],
        Some(Command::Prewrite(prewrite)) => {
            prewrite.mutations.iter().map(|m| m.key.clone()).collect()
        }
        Some(Command::Commit(commit)) => commit.keys.clone(),
        Some(Command::Rollback(rollback)) => rollback.keys.clone(),
        Some(Command::CheckTxnStatus(check)) => vec![check.primary_key.clone()],
        Some(Command::ResolveLock(resolve)) => resolve.keys.clone(),
        Some(Command::ScanLock(scan)) => vec![scan.start_key.clone()],
        Some(Command::Gc(gc)) => vec![gc.start_key.clone()],
    };
    if keys.is_empty() {
        return Err(invalid("the command names no key"));
    }
    Ok(keys)
}

/// Whether the command writes (then it runs at the leader; all but garbage collection
/// under latches).
pub fn is_write(request: &TxnRequest) -> bool {
    !matches!(
        request.command,
        None | Some(Command::Get(_)) | Some(Command::Scan(_)) | Some(Command::ScanLock(_))
    )
}

/// A command-layer key error as its `kvrpcpb` form.
pub fn key_error_to_pb(error: &KeyError) -> kvrpcpb::KeyError {
    let mut pb = kvrpcpb::KeyError::default();
    match error {
        KeyError::Locked {
            key,
            primary,
            lock_ts,
            ttl,
        } => {
            pb.locked = Some(LockInfo {
                primary_lock: primary.clone(),
                lock_version: *lock_ts,
                key: key.clone(),
                lock_ttl: *ttl,
            })
        }
        KeyError::Conflict {
            key,
            start_ts,
            conflict_ts,
        } => {
            pb.conflict = Some(WriteConflict {
                start_ts: *start_ts,
                conflict_ts: *conflict_ts,
                key: key.clone(),
                primary: Vec::new(),
            })
        }
        KeyError::Retryable(why) => pb.retryable = why.clone(),
        KeyError::Abort(why) => pb.abort = why.clone(),
    }
    pb
}

/// A `kvrpcpb` key error as the command layer's; one naming nothing is an abort.
pub fn key_error_from_pb(pb: &kvrpcpb::KeyError) -> KeyError {
    if let Some(locked) = &pb.locked {
        return KeyError::Locked {
            key: locked.key.clone(),
            primary: locked.primary_lock.clone(),
            lock_ts: locked.lock_version,
            ttl: locked.lock_ttl,
        };
    }
    if let Some(conflict) = &pb.conflict {
        return KeyError::Conflict {
            key: conflict.key.clone(),
            start_ts: conflict.start_ts,
            conflict_ts: conflict.conflict_ts,
        };
    }
    if !pb.retryable.is_empty() {
        return KeyError::Retryable(pb.retryable.clone());
    }
    if pb.abort.is_empty() {
        KeyError::Abort("an unexplained key error".into())
    } else {
        KeyError::Abort(pb.abort.clone())
    }
}

fn invalid(message: &str) -> Error {
    Error::bad_request("invalid_txn_command", message.to_string())
}

#[cfg(test)]
mod tests {
    use tinykv_proto::kvrpcpb::{CommitRequest, PrewriteRequest};

    use super::*;

    fn mutation(op: i32, key: &[u8]) -> Mutation {
        Mutation {
            op,
            key: key.to_vec(),
            value: b"v".to_vec(),
        }
    }

    #[test]
    fn hostile_write_sets_are_refused() {
        assert!(writes_of(&[]).is_err());
        assert!(writes_of(&[
            mutation(Op::Put as i32, b"a"),
            mutation(Op::Del as i32, b"a")
        ])
        .is_err());
        assert!(writes_of(&[mutation(Op::Rollback as i32, b"a")]).is_err());
        assert!(writes_of(&[mutation(77, b"a")]).is_err());
        let writes = writes_of(&[
            mutation(Op::Put as i32, b"a"),
            mutation(Op::Lock as i32, b"b"),
        ])
        .unwrap();
        assert_eq!(writes.len(), 2);
        assert_eq!(mutation_of(&writes[0]), mutation(Op::Put as i32, b"a"));
    }

    #[test]
    fn a_request_without_command_or_keys_is_refused() {
        assert!(request_keys(&TxnRequest::default()).is_err());
        let empty_commit = TxnRequest {
            command: Some(Command::Commit(CommitRequest::default())),
        };
        assert!(request_keys(&empty_commit).is_err());
        let prewrite = TxnRequest {
            command: Some(Command::Prewrite(PrewriteRequest {
                mutations: vec![mutation(0, b"k")],
                ..Default::default()
            })),
        };
        assert_eq!(request_keys(&prewrite).unwrap(), vec![b"k".to_vec()]);
        assert!(is_write(&prewrite));
    }

    #[test]
    fn key_errors_cross_the_wire_unchanged() {
        let errors = [
            KeyError::Locked {
                key: b"k".to_vec(),
                primary: b"p".to_vec(),
                lock_ts: 5,
                ttl: 3000,
            },
            KeyError::Conflict {
                key: b"k".to_vec(),
                start_ts: 5,
                conflict_ts: 9,
            },
            KeyError::Retryable("later".into()),
            KeyError::Abort("rolled back".into()),
        ];
        for error in errors {
            assert_eq!(key_error_from_pb(&key_error_to_pb(&error)), error);
        }
    }
}
