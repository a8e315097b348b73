//! Conditions on keys: what a compare-and-set or an etcd-style transaction checks.
//!
//! A [`Condition`] compares one key's version (its commit timestamp; 0 if the key is
//! absent), its value (bytewise; no value condition holds for an absent key) or its
//! existence. The REST API checks them on reads at a start timestamp; a prewrite checks
//! them too, under the latches of the keys it locks, on the versions at its start
//! timestamp: once prewrite has found no write committed since, those are the keys'
//! newest, so a condition that holds there still holds when the transaction commits.

use tinykv_proto::kvrpcpb::{self, condition::Target as PbTarget};

use super::mvcc::Version;
use crate::error::{Error, Result};

/// How a condition compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `==`.
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
}

/// What a condition compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The key's version (0: absent).
    Version(u64),
    /// The key's value.
    Value(Vec<u8>),
    /// Whether the key exists (`==` and `!=` only).
    Exists(bool),
}

/// A condition on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The key.
    pub key: Vec<u8>,
    /// How it compares.
    pub op: CompareOp,
    /// To what.
    pub target: Target,
}

impl CompareOp {
    fn holds<T: Ord>(self, actual: T, wanted: T) -> bool {
        match self {
            CompareOp::Eq => actual == wanted,
            CompareOp::Ne => actual != wanted,
            CompareOp::Lt => actual < wanted,
            CompareOp::Le => actual <= wanted,
            CompareOp::Gt => actual > wanted,
            CompareOp::Ge => actual >= wanted,
        }
    }
}

impl Condition {
    /// Whether the condition holds for the key's version read (`None`: absent).
    pub fn holds(&self, read: Option<&Version>) -> bool {
        match &self.target {
            Target::Version(wanted) => self.op.holds(read.map_or(0, |v| v.commit_ts), *wanted),
            Target::Exists(wanted) => self.op.holds(read.is_some(), *wanted),
            Target::Value(wanted) => {
                read.is_some_and(|v| self.op.holds(v.value.as_slice(), wanted.as_slice()))
            }
        }
    }

    /// The condition as its `kvrpcpb` message.
    pub fn to_pb(&self) -> kvrpcpb::Condition {
        let op = match self.op {
            CompareOp::Eq => kvrpcpb::CompareOp::Equal,
            CompareOp::Ne => kvrpcpb::CompareOp::NotEqual,
            CompareOp::Lt => kvrpcpb::CompareOp::Less,
            CompareOp::Le => kvrpcpb::CompareOp::LessEqual,
            CompareOp::Gt => kvrpcpb::CompareOp::Greater,
            CompareOp::Ge => kvrpcpb::CompareOp::GreaterEqual,
        };
        let target = match &self.target {
            Target::Version(version) => PbTarget::Version(*version),
            Target::Value(value) => PbTarget::Value(value.clone()),
            Target::Exists(exists) => PbTarget::Exists(*exists),
        };
        kvrpcpb::Condition {
            key: self.key.clone(),
            op: op as i32,
            target: Some(target),
        }
    }

    /// A condition from its `kvrpcpb` message; one without a target, with an unknown
    /// comparison, or ordering existence, is refused.
    pub fn from_pb(pb: &kvrpcpb::Condition) -> Result<Condition> {
        let invalid = |why: &str| Error::bad_request("invalid_txn_command", why.to_string());
        let op = match kvrpcpb::CompareOp::try_from(pb.op) {
            Ok(kvrpcpb::CompareOp::Equal) => CompareOp::Eq,
            Ok(kvrpcpb::CompareOp::NotEqual) => CompareOp::Ne,
            Ok(kvrpcpb::CompareOp::Less) => CompareOp::Lt,
            Ok(kvrpcpb::CompareOp::LessEqual) => CompareOp::Le,
            Ok(kvrpcpb::CompareOp::Greater) => CompareOp::Gt,
            Ok(kvrpcpb::CompareOp::GreaterEqual) => CompareOp::Ge,
            Err(_) => return Err(invalid("a condition has an unknown comparison")),
        };
        let target = match &pb.target {
            Some(PbTarget::Version(version)) => Target::Version(*version),
            Some(PbTarget::Value(value)) => Target::Value(value.clone()),
            Some(PbTarget::Exists(exists)) if matches!(op, CompareOp::Eq | CompareOp::Ne) => {
                Target::Exists(*exists)
            }
            Some(PbTarget::Exists(_)) => {
                return Err(invalid("existence compares only with == or !="))
            }
            None => return Err(invalid("a condition names nothing to compare")),
        };
        Ok(Condition {
            key: pb.key.clone(),
            op,
            target,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(value: &[u8], commit_ts: u64) -> Version {
        Version {
            value: value.to_vec(),
            commit_ts,
        }
    }

    #[test]
    fn conditions_compare_versions_values_and_existence() {
        let cond = |op, target| Condition {
            key: b"k".to_vec(),
            op,
            target,
        };
        let v = version(b"b", 7);
        assert!(cond(CompareOp::Eq, Target::Version(7)).holds(Some(&v)));
        assert!(cond(CompareOp::Eq, Target::Version(0)).holds(None));
        assert!(cond(CompareOp::Lt, Target::Version(8)).holds(Some(&v)));
        assert!(cond(CompareOp::Gt, Target::Value(b"a".to_vec())).holds(Some(&v)));
        assert!(!cond(CompareOp::Ne, Target::Value(b"a".to_vec())).holds(None));
        assert!(cond(CompareOp::Ne, Target::Exists(true)).holds(None));
        for c in [
            cond(CompareOp::Ge, Target::Version(3)),
            cond(CompareOp::Le, Target::Value(b"zz".to_vec())),
            cond(CompareOp::Eq, Target::Exists(false)),
        ] {
            assert_eq!(Condition::from_pb(&c.to_pb()).unwrap(), c);
        }
        let mut ordered_existence = cond(CompareOp::Eq, Target::Exists(true)).to_pb();
        ordered_existence.op = kvrpcpb::CompareOp::Less as i32;
        assert!(Condition::from_pb(&ordered_existence).is_err());
        let mut unknown = ordered_existence.clone();
        unknown.op = 99;
        assert!(Condition::from_pb(&unknown).is_err());
        unknown.target = None;
        assert!(Condition::from_pb(&unknown).is_err());
    }
}
