//! Transactions: Percolator over the `lock`, `write` and `default` column families.
//!
//! This is TiKV's (and TinyKV's project 4's) transaction model. Timestamps come from the
//! placement driver's oracle ([`crate::pd::tso`]). A transaction reads as of its
//! start timestamp and writes in two phases: prewrite locks every key it writes and
//! stores the values under its start timestamp; commit replaces the locks with commit
//! records at its commit timestamp, the primary key's first, which is the moment the
//! whole transaction becomes visible. A transaction whose keys all lie in one region
//! commits in one phase instead: its prewrite writes the commit records directly.
//!
//! - [`keys`]: transactional keys live in their own range (`0xFE`), apart from the raw
//!   API's keys, with the version in each stored key;
//! - [`records`]: locks and commit records;
//! - [`mvcc`]: one transaction's reads and writes over a snapshot;
//! - [`commands`]: get, scan, prewrite, commit, rollback, check-txn-status and
//!   resolve-lock, each deciding on one snapshot and gathering its writes;
//! - [`conditions`]: what a compare-and-set or an etcd-style transaction checks;
//! - [`wire`]: the commands as `kvrpcpb` messages, checked as input from a socket;
//! - [`latches`] and [`region`]: running a command at the region's leader, its writes
//!   proposed through raft bound to the term and epoch it was decided in;
//! - [`pending`]: the keys of one-phase commits in flight, which reads wait for;
//! - [`client`]: the coordinator: two-phase commit across regions, reads that resolve
//!   the locks in their way;
//! - [`gc`] and [`gc_worker`]: garbage collection of versions below the safe point.
//!
//! `docs/architecture.md` (Transactions) tells why a decision stays true until it
//! applies; the REST endpoints are `crate::api::txn` and `crate::api::txn_kv`.

pub mod client;
pub mod commands;
pub mod conditions;
pub mod gc;
pub mod gc_worker;
pub mod keys;
pub mod latches;
pub mod mvcc;
pub mod pending;
pub mod records;
pub mod region;
#[cfg(test)]
mod test_store;
pub mod wire;
