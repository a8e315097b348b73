//! A per-key linearizability checker for histories of gets, puts, deletes and
//! compare-and-sets.
//!
//! # The model
//!
//! Every key is an independent register whose initial value is *absent*. A `put(v)` sets
//! it to `v`, a `delete` sets it to absent, and a `get` returns the current value (or
//! absent) without changing it. A `cas(e→v)` that succeeded found the register at `e`
//! (a value, or absent) and set it to `v`; one that failed (`cas!(e)`) found it at
//! anything but `e` and changed nothing, so it is a read. (Conditional writes compare
//! versions; with every written value unique, a version names exactly one value.) An
//! indeterminate `cas` may have run either way, or not at all. Linearizability is compositional (a history is
//! linearizable if and only if the sub-history of every object is), so the history is
//! partitioned by key and each key is checked on its own; a key's verdict never depends on
//! another key's operations.
//!
//! # The history
//!
//! An [`Operation`] has an invocation time and a completion time, both read from one
//! monotonic clock (a [`Recorder`] stamps them with nanoseconds since it was created), and
//! an [`Outcome`]:
//!
//! - [`Outcome::Ok`]: the operation took effect exactly once, at some instant between its
//!   invocation and its completion; a completed get carries the value it read;
//! - [`Outcome::Fail`]: the operation definitely did not take effect (the request was
//!   refused before it executed). Failed operations are dropped before checking;
//! - [`Outcome::Info`]: indeterminate. A write that timed out may have happened, or not,
//!   or may still happen later: its completion is taken as +infinity, so it may be
//!   linearized anywhere after its invocation, or not at all (linearizing it after every
//!   other operation is the same as never applying it, as nothing observes it there). A
//!   read with an unknown result tells nothing and is dropped.
//!
//! An operation still pending when the history is checked counts as `Info`.
//!
//! # The search
//!
//! [`check_key`] is Wing & Gong's search with Lowe's memoization, as in Porcupine. The
//! invocations and completions of a key's operations are sorted by time into one doubly
//! linked list of events. The search walks the list from its head: at an invocation it
//! tries to linearize that operation next, which is possible if the model accepts it in
//! the current state (a get must read the current value). If so, and the pair (set of
//! operations linearized so far, register value) has not been seen before, it records the
//! step on a stack, removes the operation's two events from the list and starts again at
//! the head. If it reaches a completion instead, the operation completing was not
//! linearized before it completed, so the last step is undone and the search moves on to
//! the next candidate. An empty list means every operation has been linearized: the key is
//! linearizable. Backtracking past the first step means no order works: it is not.
//!
//! The cache of visited (set, value) pairs bounds the work to the number of distinct
//! reachable configurations, which is small when a key's history is short and its
//! concurrency moderate: that is why the chaos runner rotates its keys every few seconds.
//! Sets are cached as 128-bit Zobrist fingerprints (the XOR of random words of their
//! members, updated in constant time per step), so a step costs neither an allocation nor
//! hashing a whole set. Past [`CheckConfig::max_states`] configurations the search gives
//! up and the key's verdict is [`KeyVerdict::Unknown`].
//!
//! Indeterminate writes are what makes the search expensive: each may take effect at any
//! point after its invocation, or never. Those that nothing could have observed (a put of
//! a value that no read returned; a delete after whose invocation no read returned absent)
//! are removed before searching: taking effect or not changes no read's explanation.
//!
//! # Explaining a failure
//!
//! A key that is not linearizable gets a [`Failure`] with a small set of operations that
//! is still not linearizable, shrunk soundly in two steps. First, the history is cut at the
//! earliest completion time at which its prefix is already not linearizable (operations
//! still running at the cut become indeterminate writes, or are dropped if they are reads).
//! Linearizability is prefix-closed, so the cut keeps the violation and drops everything
//! after it. Then operations are removed one at a time while the rest stays
//! non-linearizable: first reads (a read does not change the register, so if the history
//! without it has no linearization, neither has the one with it), then writes that no
//! remaining read could have observed (a put of a value no remaining read returned, a
//! delete no remaining read of absent could follow): leaving such a write out of a
//! linearization changes no read's explanation, so again the smaller history has none if
//! the larger has none. A write whose value is read stays, or that read would look like a
//! violation of its own. The passes repeat while they remove anything, within a budget of
//! searches and time. [`Failure::diagram`] draws the remaining operations on a time axis,
//! one line each, as `|----put(v3)----|`.
//!
//! This file holds the history types, the recorder and the checking API; the search is in
//! [`search`], the shrinking in [`shrink`], the diagrams in [`diagram`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::json;

mod diagram;
mod search;
mod shrink;
#[cfg(test)]
mod tests;

pub use diagram::render_diagram;
use search::*;
use shrink::*;

/// What an operation does to its key's register.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Command {
    /// Reads the key. Once completed, carries the value read (`None`: absent).
    Get(Option<String>),
    /// Writes a value.
    Put(String),
    /// Removes the key.
    Delete,
    /// Sets the key to `new` if it holds `expected` (`None`: absent).
    Cas {
        /// What the key must hold.
        expected: Option<String>,
        /// What it then holds.
        new: String,
    },
    /// A compare-and-set that found the key not holding `expected`; changed nothing.
    CasFailed {
        /// What the key did not hold.
        expected: Option<String>,
    },
}

impl Command {
    /// Whether the command may change the register.
    pub fn is_write(&self) -> bool {
        !matches!(self, Command::Get(_) | Command::CasFailed { .. })
    }

    /// The value the command found the register at, if it observes one: a read's result,
    /// a successful compare-and-set's expected value.
    fn observes(&self) -> Option<&Option<String>> {
        match self {
            Command::Get(value) => Some(value),
            Command::Cas { expected, .. } => Some(expected),
            _ => None,
        }
    }

    /// A short text for diagrams: `get=v`, `get=nil`, `put(v)`, `delete`.
    pub fn label(&self) -> String {
        match self {
            Command::Get(Some(value)) => format!("get={value}"),
            Command::Get(None) => "get=nil".into(),
            Command::Put(value) => format!("put({value})"),
            Command::Delete => "delete".into(),
            Command::Cas { expected, new } => {
                format!("cas({}→{new})", expected.as_deref().unwrap_or("nil"))
            }
            Command::CasFailed { expected } => {
                format!("cas!({})", expected.as_deref().unwrap_or("nil"))
            }
        }
    }
}

/// How an operation ended; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It took effect exactly once between invocation and completion.
    Ok,
    /// It definitely did not take effect.
    Fail,
    /// Unknown: it may have taken effect, at any time after its invocation, or not at all.
    Info,
}

impl Outcome {
    /// `ok`, `fail` or `info`.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
        }
    }
}

/// One operation of a [`History`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Unique within its history.
    pub id: usize,
    /// The client (process) that issued it; informational.
    pub client: u64,
    /// The node it was sent to (0: unknown); informational.
    pub node: u64,
    /// The key it operates on.
    pub key: String,
    /// What it does, and for a completed get what it read.
    pub command: Command,
    /// How it ended.
    pub outcome: Outcome,
    /// Invocation time, in nanoseconds on the history's clock.
    pub invoke: u64,
    /// Completion time (`None` while pending); ignored for [`Outcome::Info`], whose
    /// completion is taken as +infinity.
    pub complete: Option<u64>,
    /// Free text, for example the error that made it fail; informational.
    pub note: String,
}

impl Operation {
    /// The operation as one JSON object (one line of `history.jsonl`).
    pub fn to_json(&self) -> serde_json::Value {
        let (kind, value) = match &self.command {
            Command::Get(value) => ("get", value.clone()),
            Command::Put(value) => ("put", Some(value.clone())),
            Command::Delete => ("delete", None),
            Command::Cas { new, .. } => ("cas", Some(new.clone())),
            Command::CasFailed { .. } => ("cas_failed", None),
        };
        let expected = match &self.command {
            Command::Cas { expected, .. } | Command::CasFailed { expected } => expected.clone(),
            _ => None,
        };
        json!({
            "expected": expected,
            "id": self.id,
            "client": self.client,
            "node": self.node,
            "key": self.key,
            "op": kind,
            "value": value,
            "outcome": self.outcome.name(),
            "invoke_ns": self.invoke,
            "complete_ns": self.complete,
            "note": self.note,
        })
    }

    /// The completion time the checker uses: +infinity (`u64::MAX`) unless `Ok`.
    fn effective_complete(&self) -> u64 {
        match (self.outcome, self.complete) {
            (Outcome::Ok, Some(t)) => t.max(self.invoke),
            _ => u64::MAX,
        }
    }
}

/// A history: every operation of a run, on any key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// The operations, in no particular order.
    pub ops: Vec<Operation>,
}

impl History {
    /// The history as JSON lines, one operation per line, in invocation order.
    pub fn to_jsonl(&self) -> String {
        let mut ops: Vec<&Operation> = self.ops.iter().collect();
        ops.sort_by_key(|op| (op.invoke, op.id));
        let mut out = String::new();
        for op in ops {
            out.push_str(&op.to_json().to_string());
            out.push('\n');
        }
        out
    }

    /// The operations of each key.
    pub fn by_key(&self) -> BTreeMap<&str, Vec<&Operation>> {
        let mut keys: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
        for op in &self.ops {
            keys.entry(op.key.as_str()).or_default().push(op);
        }
        keys
    }

    /// How many operations ended with `outcome` (pending ones count as `Info`).
    pub fn count(&self, outcome: Outcome) -> usize {
        self.ops.iter().filter(|op| op.outcome == outcome).count()
    }
}

/// Records a history from concurrent clients, stamping times on one monotonic clock.
///
/// [`Recorder::invoke`] before sending a request; then exactly one of [`Recorder::ok`],
/// [`Recorder::ok_read`], [`Recorder::fail`] or [`Recorder::info`] when it ends. An
/// operation never completed stays `Info`.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    ops: Mutex<Vec<Operation>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// An empty history whose clock starts now.
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the recorder was created.
    pub fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Records the invocation of `command` on `key` by `client` through `node`; returns the
    /// operation's id. A get's read value is filled in by [`Recorder::ok_read`].
    pub fn invoke(&self, client: u64, node: u64, key: &str, command: Command) -> usize {
        let invoke = self.now();
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        let id = ops.len();
        ops.push(Operation {
            id,
            client,
            node,
            key: key.to_string(),
            command,
            outcome: Outcome::Info,
            invoke,
            complete: None,
            note: String::new(),
        });
        id
    }

    fn complete(&self, id: usize, outcome: Outcome, read: Option<Option<String>>, note: String) {
        let complete = self.now();
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        let op = &mut ops[id];
        op.outcome = outcome;
        op.complete = Some(complete);
        op.note = note;
        if let (Some(read), Command::Get(value)) = (read, &mut op.command) {
            *value = read;
        }
    }

    /// Operation `id` (a write) took effect.
    pub fn ok(&self, id: usize) {
        self.complete(id, Outcome::Ok, None, String::new());
    }

    /// Operation `id` (a get) read `value` (`None`: absent).
    pub fn ok_read(&self, id: usize, value: Option<String>) {
        self.complete(id, Outcome::Ok, Some(value), String::new());
    }

    /// Operation `id` completed as `command` instead of what it was invoked as (a
    /// compare-and-set that found its condition false is a read: `CasFailed`).
    pub fn ok_as(&self, id: usize, command: Command) {
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        ops[id].command = command;
        drop(ops);
        self.complete(id, Outcome::Ok, None, String::new());
    }

    /// Operation `id` definitely did not take effect, because of `why`.
    pub fn fail(&self, id: usize, why: impl Into<String>) {
        self.complete(id, Outcome::Fail, None, why.into());
    }

    /// Operation `id` may or may not have taken effect, because of `why`.
    pub fn info(&self, id: usize, why: impl Into<String>) {
        self.complete(id, Outcome::Info, None, why.into());
    }

    /// A copy of the history so far.
    pub fn history(&self) -> History {
        History {
            ops: self.ops.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

/// Limits of the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckConfig {
    /// Distinct configurations (set of linearized operations, register value) one key's
    /// search may visit before giving up with [`KeyVerdict::Unknown`]. Explaining a
    /// failure runs several searches, each with this bound.
    pub max_states: usize,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            max_states: 1_000_000,
        }
    }
}

/// Why a key is not linearizable: a small sub-history that has no linearization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The key.
    pub key: String,
    /// The operations involved, in invocation order (see the module documentation for how
    /// they are chosen); indeterminate ones include operations cut short by the prefix.
    pub ops: Vec<Operation>,
    /// Operations of the key that were checked (after dropping failed ones).
    pub checked: usize,
    /// The operations drawn on a time axis; see [`render_diagram`].
    pub diagram: String,
}

/// The verdict on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyVerdict {
    /// Some order of the operations explains every result.
    Linearizable,
    /// No order does.
    NotLinearizable(Box<Failure>),
    /// The search gave up after visiting this many configurations.
    Unknown {
        /// Configurations visited.
        states: usize,
    },
}

/// The verdict on a whole history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every key is linearizable.
    Pass,
    /// Some key is not.
    Fail,
    /// No key is known not to be, but the search gave up on some.
    Unknown,
}

impl Verdict {
    /// `PASS`, `FAIL` or `UNKNOWN`.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Unknown => "UNKNOWN",
        }
    }
}

/// The result of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Keys checked.
    pub keys: usize,
    /// Operations checked (failed ones excluded).
    pub checked_ops: usize,
    /// The keys that are not linearizable, with explanations.
    pub failures: Vec<Failure>,
    /// The keys whose search gave up, with the configurations visited.
    pub unknown: Vec<(String, usize)>,
}

impl Report {
    /// The overall verdict: any failure is `Fail`; otherwise any give-up is `Unknown`.
    pub fn verdict(&self) -> Verdict {
        if !self.failures.is_empty() {
            Verdict::Fail
        } else if !self.unknown.is_empty() {
            Verdict::Unknown
        } else {
            Verdict::Pass
        }
    }
}

/// Checks every key of `history`; see the module documentation.
pub fn check(history: &History, config: CheckConfig) -> Report {
    let mut report = Report {
        keys: 0,
        checked_ops: 0,
        failures: Vec::new(),
        unknown: Vec::new(),
    };
    for (key, ops) in history.by_key() {
        let ops: Vec<Operation> = ops.into_iter().cloned().collect();
        report.keys += 1;
        report.checked_ops += ops.iter().filter(|op| op.outcome != Outcome::Fail).count();
        match check_key(&ops, config) {
            KeyVerdict::Linearizable => {}
            KeyVerdict::NotLinearizable(failure) => report.failures.push(*failure),
            KeyVerdict::Unknown { states } => report.unknown.push((key.to_string(), states)),
        }
    }
    report
}

/// Checks the operations of one key (all of `ops` must be on the same key).
pub fn check_key(ops: &[Operation], config: CheckConfig) -> KeyVerdict {
    let ops: Vec<Operation> = ops.iter().filter(|op| relevant(op)).cloned().collect();
    let ops = without_unobserved_writes(ops);
    let Some(key) = ops.first().map(|op| op.key.clone()) else {
        return KeyVerdict::Linearizable;
    };
    debug_assert!(ops.iter().all(|op| op.key == key), "one key per check");
    match search(&ops, config.max_states) {
        Search::Linearizable => KeyVerdict::Linearizable,
        Search::GaveUp(states) => KeyVerdict::Unknown { states },
        Search::Illegal => {
            let witness = shrink(ops.clone(), config.max_states);
            let diagram = render_diagram(&key, &witness);
            KeyVerdict::NotLinearizable(Box::new(Failure {
                key,
                ops: witness,
                checked: ops.len(),
                diagram,
            }))
        }
    }
}
