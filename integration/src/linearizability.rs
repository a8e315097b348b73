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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::json;

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

/// `ops` without the indeterminate writes nothing could have observed: a put of a value
/// no read returned, a delete after whose invocation no read completed with absent.
/// Such a write changes no read's explanation when it takes effect, so leaving it out is
/// the same as linearizing it last; and each one kept multiplies the configurations the
/// search may have to visit.
fn without_unobserved_writes(ops: Vec<Operation>) -> Vec<Operation> {
    // A failed compare-and-set observes only that the register held something else,
    // which any write may explain: with one in the history, every write is kept.
    if ops
        .iter()
        .any(|op| matches!(op.command, Command::CasFailed { .. }))
    {
        return ops;
    }
    let read: HashSet<&str> = ops
        .iter()
        .filter_map(|op| op.command.observes()?.as_deref())
        .collect();
    let last_absent_read = ops
        .iter()
        .filter(|op| op.command.observes() == Some(&None))
        .map(Operation::effective_complete)
        .max();
    let keep: Vec<bool> = ops
        .iter()
        .map(|op| {
            if op.outcome == Outcome::Ok && op.complete.is_some() {
                return true;
            }
            match &op.command {
                Command::Put(v) | Command::Cas { new: v, .. } => read.contains(v.as_str()),
                Command::Delete => last_absent_read.is_some_and(|t| t >= op.invoke),
                Command::Get(_) | Command::CasFailed { .. } => true,
            }
        })
        .collect();
    ops.into_iter()
        .zip(keep)
        .filter_map(|(op, keep)| keep.then_some(op))
        .collect()
}

/// Whether `op` constrains the register at all: failed operations and reads without a
/// result do not.
fn relevant(op: &Operation) -> bool {
    match op.outcome {
        Outcome::Ok => op.complete.is_some() || op.command.is_write(),
        Outcome::Fail => false,
        Outcome::Info => op.command.is_write(),
    }
}

/// The outcome of one search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Search {
    Linearizable,
    Illegal,
    GaveUp(usize),
}

/// A step of the model, with values interned ([`ABSENT`] for absent).
#[derive(Debug, Clone, Copy)]
enum Step {
    Get(u32),
    Put(u32),
    Delete,
    /// Expected, new, and whether it certainly succeeded (else it is indeterminate).
    Cas(u32, u32, bool),
    CasFailed(u32),
}

/// Fingerprints of sets of operations (Zobrist hashing): each operation gets two random
/// 64-bit words, and a set's fingerprint is the XOR of its members' words, updated in
/// O(1) as operations are linearized and undone. The cache stores 128-bit fingerprints
/// instead of the sets themselves; two different sets collide with probability 2^-128
/// per pair, far below anything a run can reach.
struct Zobrist {
    words: Vec<(u64, u64)>,
}

impl Zobrist {
    fn new(n: usize) -> Zobrist {
        // SplitMix64 from a fixed seed: deterministic, well mixed.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Zobrist {
            words: (0..n).map(|_| (next(), next())).collect(),
        }
    }

    /// `set` with operation `i` toggled in or out.
    fn toggle(&self, set: (u64, u64), i: usize) -> (u64, u64) {
        (set.0 ^ self.words[i].0, set.1 ^ self.words[i].1)
    }
}

/// A hasher for keys that are already random (fingerprints): folds the words it is given.
#[derive(Default)]
struct FoldHasher(u64);

impl std::hash::Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x100_0000_01B3);
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(29) ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_u32(&mut self, word: u32) {
        self.write_u64(u64::from(word));
    }
}

type FoldBuild = std::hash::BuildHasherDefault<FoldHasher>;

/// The register's value in the search: an interned value, or [`ABSENT`].
const ABSENT: u32 = u32::MAX;

const NIL: usize = usize::MAX;

/// Wing & Gong's search with Lowe's cache over `ops` (all relevant, one key); see the
/// module documentation.
fn search(ops: &[Operation], max_states: usize) -> Search {
    let n = ops.len();
    if n == 0 {
        return Search::Linearizable;
    }
    fn intern<'a>(values: &mut HashMap<&'a str, u32>, value: &'a str) -> u32 {
        let next = values.len() as u32;
        *values.entry(value).or_insert(next)
    }
    let mut values: HashMap<&str, u32> = HashMap::new();
    let mut steps: Vec<Step> = Vec::with_capacity(n);
    for op in ops {
        steps.push(match &op.command {
            Command::Get(v) => Step::Get(v.as_deref().map_or(ABSENT, |v| intern(&mut values, v))),
            Command::Put(v) => Step::Put(intern(&mut values, v)),
            Command::Delete => Step::Delete,
            Command::Cas { expected, new } => Step::Cas(
                expected
                    .as_deref()
                    .map_or(ABSENT, |v| intern(&mut values, v)),
                intern(&mut values, new),
                op.outcome == Outcome::Ok && op.complete.is_some(),
            ),
            Command::CasFailed { expected } => Step::CasFailed(
                expected
                    .as_deref()
                    .map_or(ABSENT, |v| intern(&mut values, v)),
            ),
        });
    }

    // Events: (time, is_return, op). At equal times invocations come first, so touching
    // intervals count as concurrent (the permissive reading).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.invoke, false, i));
        events.push((op.effective_complete(), true, i));
    }
    events.sort();
    // A doubly linked list over the events, with a head sentinel at index 2n.
    let head = 2 * n;
    let mut next = vec![NIL; 2 * n + 1];
    let mut prev = vec![NIL; 2 * n + 1];
    let mut op_of = vec![0usize; 2 * n];
    let mut is_return = vec![false; 2 * n];
    let mut return_of = vec![0usize; n];
    let mut last = head;
    for (e, &(_, ret, op)) in events.iter().enumerate() {
        op_of[e] = op;
        is_return[e] = ret;
        if ret {
            return_of[op] = e;
        }
        next[last] = e;
        prev[e] = last;
        last = e;
    }
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        next[prev[e]] = next[e];
        if next[e] != NIL {
            prev[next[e]] = prev[e];
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        next[prev[e]] = e;
        if next[e] != NIL {
            prev[next[e]] = e;
        }
    };

    let zobrist = Zobrist::new(n);
    let mut linearized = (0u64, 0u64);
    let mut cache: HashSet<(u64, u64, u32), FoldBuild> = HashSet::default();
    let mut stack: Vec<(usize, u32)> = Vec::new();
    let mut state: u32 = ABSENT;
    let mut entry = next[head];
    while next[head] != NIL {
        if !is_return[entry] {
            let op = op_of[entry];
            let stepped = match steps[op] {
                Step::Get(v) => (v == state).then_some(state),
                Step::Put(v) => Some(v),
                Step::Delete => Some(ABSENT),
                Step::Cas(expected, v, true) => (expected == state).then_some(v),
                // Indeterminate: if it ran, it either found `expected` and wrote, or
                // found something else and changed nothing (never running is the same
                // as running last, where both are allowed).
                Step::Cas(expected, v, false) => Some(if expected == state { v } else { state }),
                Step::CasFailed(expected) => (expected != state).then_some(state),
            };
            if let Some(new_state) = stepped {
                let with_op = zobrist.toggle(linearized, op);
                if cache.insert((with_op.0, with_op.1, new_state)) {
                    if cache.len() > max_states {
                        return Search::GaveUp(cache.len());
                    }
                    linearized = with_op;
                    stack.push((entry, state));
                    state = new_state;
                    unlink(&mut next, &mut prev, entry);
                    unlink(&mut next, &mut prev, return_of[op]);
                    entry = next[head];
                    continue;
                }
            }
            entry = next[entry];
        } else {
            // An operation completed before it could be linearized: undo the last step.
            let Some((call, previous)) = stack.pop() else {
                return Search::Illegal;
            };
            let op = op_of[call];
            linearized = zobrist.toggle(linearized, op);
            state = previous;
            relink(&mut next, &mut prev, return_of[op]);
            relink(&mut next, &mut prev, call);
            entry = next[call];
        }
    }
    Search::Linearizable
}

/// The history as it was at time `cut`: operations invoked later are gone, writes still
/// running become indeterminate, reads still running are dropped.
fn prefix(ops: &[Operation], cut: u64) -> Vec<Operation> {
    ops.iter()
        .filter(|op| op.invoke <= cut)
        .filter_map(|op| {
            if op.effective_complete() <= cut {
                return Some(op.clone());
            }
            op.command.is_write().then(|| Operation {
                outcome: Outcome::Info,
                ..op.clone()
            })
        })
        .collect()
}

/// Most searches one explanation runs.
const MAX_SHRINK_SEARCHES: usize = 2_000;

/// Longest one explanation is shrunk for; past it the witness so far is reported.
const MAX_SHRINK_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// A small sub-history of `ops` (known not linearizable) that is still not linearizable;
/// see the module documentation.
fn shrink(ops: Vec<Operation>, max_states: usize) -> Vec<Operation> {
    // Each search may visit up to `max_states` configurations; once one gives up (a
    // smaller history is not necessarily cheaper to refute) or the budget of searches is
    // spent, the witness so far is good enough.
    let searches = std::cell::Cell::new(0usize);
    let gave_up = std::cell::Cell::new(false);
    let started = Instant::now();
    let out_of_budget = || {
        gave_up.get()
            || searches.get() >= MAX_SHRINK_SEARCHES
            || started.elapsed() >= MAX_SHRINK_TIME
    };
    let illegal = |ops: &[Operation]| {
        if out_of_budget() {
            return false;
        }
        searches.set(searches.get() + 1);
        match search(ops, max_states) {
            Search::Illegal => true,
            Search::Linearizable => false,
            Search::GaveUp(_) => {
                gave_up.set(true);
                false
            }
        }
    };
    // The earliest completion at which the prefix is already illegal.
    let mut cuts: Vec<u64> = ops
        .iter()
        .map(Operation::effective_complete)
        .filter(|&t| t != u64::MAX)
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut witness = ops;
    let (mut lo, mut hi) = (0usize, cuts.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if illegal(&prefix(&witness, cuts[mid])) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    if let Some(&cut) = cuts.get(lo) {
        let cut_history = prefix(&witness, cut);
        if illegal(&cut_history) {
            witness = cut_history;
            // Usually the read completing at the cut is the only one needed: try keeping
            // just that, in one search, before removing reads one by one.
            let only_last: Vec<Operation> = witness
                .iter()
                .filter(|op| op.command.is_write() || op.effective_complete() == cut)
                .cloned()
                .collect();
            if only_last.len() < witness.len() && illegal(&only_last) {
                witness = only_last;
            }
        }
    }
    // Drop operations, latest first, while the rest stays illegal: first reads, then the
    // writes no remaining read could have observed; again while that removes anything.
    witness.sort_by_key(|op| (op.invoke, op.id));
    loop {
        let before = witness.len();
        for writes in [false, true] {
            let mut i = witness.len();
            while i > 0 {
                i -= 1;
                if witness[i].command.is_write() != writes || observed(&witness, i) {
                    continue;
                }
                let mut without = witness.clone();
                without.remove(i);
                if illegal(&without) {
                    witness = without;
                }
            }
        }
        if witness.len() == before || out_of_budget() {
            return witness;
        }
    }
}

/// Whether a read among `ops` may have observed the write `ops[i]`: a read of the value
/// it put, or a read of absent completing after the delete was invoked. Reads observe
/// nothing. A write nothing observed can be left out of a linearization without changing
/// any read's explanation, so removing it from a history that has none is sound.
fn observed(ops: &[Operation], i: usize) -> bool {
    // A failed compare-and-set may rest on any write (see without_unobserved_writes).
    let any_failed_cas = || {
        ops.iter()
            .any(|op| matches!(op.command, Command::CasFailed { .. }))
    };
    match &ops[i].command {
        Command::Get(_) | Command::CasFailed { .. } => false,
        Command::Put(value) | Command::Cas { new: value, .. } => {
            any_failed_cas()
                || ops
                    .iter()
                    .any(|op| matches!(op.command.observes(), Some(Some(v)) if v == value))
        }
        Command::Delete => {
            any_failed_cas()
                || ops.iter().any(|op| {
                    op.command.observes() == Some(&None) && op.effective_complete() >= ops[i].invoke
                })
        }
    }
}

/// Width of the time axis of a diagram, in characters.
const DIAGRAM_WIDTH: usize = 100;

/// Draws `ops` (all on `key`) on one time axis, one line per operation in invocation
/// order: `|----put(v3)----|` spans the operation's interval (the label goes after the bar
/// when it does not fit inside); an indeterminate operation runs off the right edge as
/// `|-----put(v4)---->?`. Each line starts with the operation's id, client, node, outcome
/// and times in milliseconds.
pub fn render_diagram(key: &str, ops: &[Operation]) -> String {
    let mut ops: Vec<&Operation> = ops.iter().collect();
    ops.sort_by_key(|op| (op.invoke, op.id));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "key {key:?}: not linearizable; {} operations involved",
        ops.len()
    );
    if ops.is_empty() {
        return out;
    }
    let t0 = ops.iter().map(|op| op.invoke).min().unwrap_or(0);
    let t1 = ops
        .iter()
        .map(|op| match op.effective_complete() {
            u64::MAX => op.invoke,
            t => t,
        })
        .max()
        .unwrap_or(t0)
        .max(t0 + 1);
    let ms = |t: u64| t as f64 / 1e6;
    let _ = writeln!(
        out,
        "time axis: {:.3} ms .. {:.3} ms ({:.3} ms per column); `>?` = indeterminate, may take effect later",
        ms(t0),
        ms(t1),
        ms(t1 - t0) / (DIAGRAM_WIDTH - 1) as f64
    );
    let column = |t: u64| -> usize {
        let t = t.clamp(t0, t1);
        (((t - t0) as u128 * (DIAGRAM_WIDTH - 1) as u128) / (t1 - t0) as u128) as usize
    };
    for op in ops {
        let start = column(op.invoke);
        let label = op.command.label();
        let mut bar = vec![' '; DIAGRAM_WIDTH + 2];
        let end;
        match op.effective_complete() {
            u64::MAX => {
                end = DIAGRAM_WIDTH + 1;
                bar[start] = '|';
                for c in bar.iter_mut().take(DIAGRAM_WIDTH).skip(start + 1) {
                    *c = '-';
                }
                bar[DIAGRAM_WIDTH] = '>';
                bar[DIAGRAM_WIDTH + 1] = '?';
            }
            complete => {
                end = column(complete).max(start + 1);
                bar[start] = '|';
                for c in bar.iter_mut().take(end).skip(start + 1) {
                    *c = '-';
                }
                bar[end] = '|';
            }
        }
        let inside = end - start - 1;
        let mut line: String;
        if label.chars().count() + 2 <= inside {
            let offset = start + 1 + (inside - label.chars().count()) / 2;
            for (i, ch) in label.chars().enumerate() {
                bar[offset + i] = ch;
            }
            line = bar.into_iter().collect();
        } else {
            line = bar.into_iter().collect();
            line.truncate(end + 1);
            line.push(' ');
            line.push_str(&label);
        }
        let complete = match (op.outcome, op.complete) {
            (Outcome::Ok, Some(t)) => format!("{:>10.3}", ms(t)),
            _ => format!("{:>10}", "?"),
        };
        let _ = writeln!(
            out,
            "#{:<6} c{:<3} n{:<2} {:<4} {:>10.3} {} {}",
            op.id,
            op.client,
            op.node,
            op.outcome.name(),
            ms(op.invoke),
            complete,
            line.trim_end()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Builds histories by hand, times in milliseconds.
    #[derive(Default)]
    struct Builder {
        ops: Vec<Operation>,
    }

    impl Builder {
        fn op(
            &mut self,
            client: u64,
            command: Command,
            outcome: Outcome,
            invoke: u64,
            complete: Option<u64>,
        ) -> &mut Self {
            self.ops.push(Operation {
                id: self.ops.len(),
                client,
                node: 1,
                key: "k".into(),
                command,
                outcome,
                invoke: invoke * 1_000_000,
                complete: complete.map(|t| t * 1_000_000),
                note: String::new(),
            });
            self
        }

        fn put(&mut self, client: u64, value: &str, invoke: u64, complete: u64) -> &mut Self {
            self.op(
                client,
                Command::Put(value.into()),
                Outcome::Ok,
                invoke,
                Some(complete),
            )
        }

        fn put_info(&mut self, client: u64, value: &str, invoke: u64) -> &mut Self {
            self.op(
                client,
                Command::Put(value.into()),
                Outcome::Info,
                invoke,
                None,
            )
        }

        fn delete(&mut self, client: u64, invoke: u64, complete: u64) -> &mut Self {
            self.op(client, Command::Delete, Outcome::Ok, invoke, Some(complete))
        }

        fn get(
            &mut self,
            client: u64,
            read: Option<&str>,
            invoke: u64,
            complete: u64,
        ) -> &mut Self {
            self.op(
                client,
                Command::Get(read.map(String::from)),
                Outcome::Ok,
                invoke,
                Some(complete),
            )
        }

        fn verdict(&self) -> KeyVerdict {
            check_key(&self.ops, CheckConfig::default())
        }

        fn is_linearizable(&self) -> bool {
            match self.verdict() {
                KeyVerdict::Linearizable => true,
                KeyVerdict::NotLinearizable(_) => false,
                KeyVerdict::Unknown { states } => panic!("gave up after {states} states"),
            }
        }

        fn failure(&self) -> Failure {
            match self.verdict() {
                KeyVerdict::NotLinearizable(failure) => *failure,
                other => panic!("expected a failure, got {other:?}"),
            }
        }
    }

    #[test]
    fn an_empty_history_and_a_sequential_one_pass() {
        assert!(Builder::default().is_linearizable());
        assert!(Builder::default()
            .get(1, None, 0, 1)
            .put(1, "a", 2, 3)
            .get(2, Some("a"), 4, 5)
            .put(2, "b", 6, 7)
            .get(1, Some("b"), 8, 9)
            .delete(1, 10, 11)
            .get(2, None, 12, 13)
            .is_linearizable());
    }

    #[test]
    fn concurrent_writes_may_be_read_in_either_order() {
        // Two overlapping puts; a read after both may see either, but two later sequential
        // reads must agree.
        for last in ["a", "b"] {
            assert!(Builder::default()
                .put(1, "a", 0, 10)
                .put(2, "b", 1, 11)
                .get(3, Some(last), 12, 13)
                .get(3, Some(last), 14, 15)
                .is_linearizable());
        }
        assert!(!Builder::default()
            .put(1, "a", 0, 10)
            .put(2, "b", 1, 11)
            .get(3, Some("a"), 12, 13)
            .get(3, Some("b"), 14, 15)
            .is_linearizable());
        // Reads overlapping the writes may see the old or new values, in a consistent
        // order.
        assert!(Builder::default()
            .put(1, "a", 0, 10)
            .get(2, None, 1, 3)
            .get(3, Some("a"), 2, 4)
            .put(4, "b", 5, 20)
            .get(2, Some("b"), 6, 7)
            .get(3, Some("a"), 6, 8)
            .is_linearizable());
        // ... but once a read has seen the newer value, a later read cannot see the older.
        assert!(!Builder::default()
            .put(1, "a", 0, 1)
            .put(4, "b", 5, 20)
            .get(2, Some("b"), 6, 7)
            .get(3, Some("a"), 8, 9)
            .is_linearizable());
    }

    #[test]
    fn a_stale_read_after_a_completed_write_fails() {
        let history = {
            let mut b = Builder::default();
            b.put(1, "a", 0, 1)
                .put(1, "b", 2, 3)
                .get(2, Some("b"), 3, 4)
                .get(2, Some("a"), 5, 6)
                .get(3, Some("b"), 7, 8);
            b
        };
        let failure = history.failure();
        assert_eq!(failure.key, "k");
        assert_eq!(failure.checked, 5);
        // The prefix ends with the stale read; the earlier read of "b" is not needed.
        let labels: Vec<String> = failure.ops.iter().map(|op| op.command.label()).collect();
        assert_eq!(labels, ["put(a)", "put(b)", "get=a"]);
        assert!(failure.diagram.contains("|--"), "{}", failure.diagram);
        assert!(failure.diagram.contains("get=a"), "{}", failure.diagram);
    }

    #[test]
    fn a_stale_read_among_many_writes_is_explained_by_three_operations() {
        let mut b = Builder::default();
        for i in 0..30 {
            b.put(1 + i % 3, &format!("v{i}"), 10 * i, 10 * i + 5);
            b.get(4, Some(&format!("v{i}")), 10 * i + 6, 10 * i + 8);
        }
        b.get(5, Some("v3"), 400, 401);
        b.put(1, "late", 402, 403);
        let failure = b.failure();
        assert_eq!(failure.checked, 62);
        let labels: Vec<String> = failure.ops.iter().map(|op| op.command.label()).collect();
        assert_eq!(labels.len(), 3, "{}", failure.diagram);
        assert_eq!(labels[0], "put(v3)");
        assert!(labels[1].starts_with("put(v"), "{}", failure.diagram);
        assert_eq!(labels[2], "get=v3");
    }

    #[test]
    fn a_read_of_a_value_never_written_fails() {
        let mut b = Builder::default();
        b.put(1, "a", 0, 1).get(2, Some("zzz"), 0, 5);
        let failure = b.failure();
        assert!(failure
            .ops
            .iter()
            .any(|op| op.command == Command::Get(Some("zzz".into()))));
        assert!(!Builder::default().get(1, Some("x"), 0, 1).is_linearizable());
    }

    #[test]
    fn an_indeterminate_write_may_or_may_not_take_effect() {
        // It did: a later read sees it, even long after it timed out.
        assert!(Builder::default()
            .put(1, "a", 0, 1)
            .put_info(2, "b", 2)
            .get(3, Some("b"), 50, 51)
            .is_linearizable());
        // It did not: later reads keep seeing the earlier value.
        assert!(Builder::default()
            .put(1, "a", 0, 1)
            .put_info(2, "b", 2)
            .get(3, Some("a"), 50, 51)
            .get(3, Some("a"), 52, 53)
            .is_linearizable());
        // It took effect late: first the old value, then the new one.
        assert!(Builder::default()
            .put(1, "a", 0, 1)
            .put_info(2, "b", 2)
            .get(3, Some("a"), 50, 51)
            .get(3, Some("b"), 52, 53)
            .is_linearizable());
        // But it cannot take effect before it was invoked ...
        assert!(!Builder::default()
            .put(1, "a", 0, 1)
            .get(3, Some("b"), 2, 3)
            .put_info(2, "b", 4)
            .is_linearizable());
        // ... nor twice.
        assert!(!Builder::default()
            .put_info(2, "b", 0)
            .get(3, Some("b"), 2, 3)
            .put(1, "a", 4, 5)
            .get(3, Some("b"), 6, 7)
            .is_linearizable());
        // A pending operation (never completed) is indeterminate too.
        assert!(Builder::default()
            .op(2, Command::Put("b".into()), Outcome::Ok, 0, None)
            .get(3, Some("b"), 2, 3)
            .is_linearizable());
    }

    #[test]
    fn failed_operations_are_ignored() {
        assert!(Builder::default()
            .put(1, "a", 0, 1)
            .op(2, Command::Put("b".into()), Outcome::Fail, 2, Some(3))
            .op(
                2,
                Command::Get(Some("junk".into())),
                Outcome::Fail,
                2,
                Some(3)
            )
            .get(3, Some("a"), 4, 5)
            .is_linearizable());
        // A failed write is not a source of values.
        assert!(!Builder::default()
            .op(2, Command::Put("b".into()), Outcome::Fail, 0, Some(1))
            .get(3, Some("b"), 2, 3)
            .is_linearizable());
    }

    #[test]
    fn deletes_reset_the_register() {
        assert!(Builder::default()
            .put(1, "a", 0, 1)
            .delete(2, 2, 3)
            .get(1, None, 4, 5)
            .put(1, "b", 6, 7)
            .get(2, Some("b"), 8, 9)
            .is_linearizable());
        // A read after a completed delete cannot see the deleted value.
        assert!(!Builder::default()
            .put(1, "a", 0, 1)
            .delete(2, 2, 3)
            .get(1, Some("a"), 4, 5)
            .is_linearizable());
        // Concurrent with the delete it may see either.
        for read in [Some("a"), None] {
            assert!(Builder::default()
                .put(1, "a", 0, 1)
                .delete(2, 2, 10)
                .get(1, read, 4, 5)
                .is_linearizable());
        }
        // An indeterminate delete may explain an absent read.
        assert!(Builder::default()
            .put(1, "a", 0, 1)
            .op(2, Command::Delete, Outcome::Info, 2, None)
            .get(1, None, 40, 41)
            .is_linearizable());
    }

    #[test]
    fn keys_are_checked_independently() {
        let mut history = History::default();
        let mut b = Builder::default();
        b.put(1, "a", 0, 1).get(2, Some("a"), 2, 3);
        history.ops.extend(b.ops.clone());
        let mut other = Builder::default();
        other.put(1, "x", 0, 1).get(2, None, 2, 3);
        for mut op in other.ops {
            op.key = "other".into();
            op.id += 100;
            history.ops.push(op);
        }
        let report = check(&history, CheckConfig::default());
        assert_eq!(report.keys, 2);
        assert_eq!(report.checked_ops, 4);
        assert_eq!(report.verdict(), Verdict::Fail);
        assert_eq!(report.failures.len(), 1);
        assert_eq!(report.failures[0].key, "other");
        let jsonl = history.to_jsonl();
        assert_eq!(jsonl.lines().count(), 4);
        let first: serde_json::Value = serde_json::from_str(jsonl.lines().next().unwrap()).unwrap();
        assert_eq!(first["op"], "put");
        assert_eq!(first["outcome"], "ok");
    }

    #[test]
    fn a_bounded_search_gives_up_with_unknown() {
        // Twelve indeterminate writes, each read by one of twelve concurrent reads: many
        // orders to try before the impossible last read is refuted.
        let mut b = Builder::default();
        for i in 0..12 {
            b.put_info(i, &format!("v{i}"), i);
            b.get(20 + i, Some(&format!("v{i}")), 50 + i, 90);
        }
        b.get(99, Some("never"), 100, 101);
        match check_key(&b.ops, CheckConfig { max_states: 50 }) {
            KeyVerdict::Unknown { states } => assert!(states > 50),
            other => panic!("expected unknown, got {other:?}"),
        }
        let history = History { ops: b.ops.clone() };
        let report = check(&history, CheckConfig { max_states: 50 });
        assert_eq!(report.verdict(), Verdict::Unknown);
    }

    #[test]
    fn unobserved_indeterminate_writes_cost_nothing() {
        // Forty timed-out writes nobody read, around a stale read: refuted at once, and
        // the explanation does not drag them along.
        let mut b = Builder::default();
        b.put(1, "a", 0, 1).put(1, "b", 2, 3);
        for i in 0..40 {
            b.put_info(10 + i, &format!("lost{i}"), 4 + i);
            b.op(10 + i, Command::Delete, Outcome::Info, 4 + i, None);
        }
        b.get(2, Some("a"), 100, 101);
        match check_key(&b.ops, CheckConfig { max_states: 1000 }) {
            KeyVerdict::NotLinearizable(failure) => {
                assert_eq!(failure.ops.len(), 3, "{}", failure.diagram)
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        // A read of absent makes the deletes observable: then they count, and explain it.
        let mut b = Builder::default();
        b.put(1, "a", 0, 1);
        for i in 0..40 {
            b.op(10 + i, Command::Delete, Outcome::Info, 4 + i, None);
        }
        b.get(2, None, 100, 101);
        assert_eq!(
            check_key(&b.ops, CheckConfig { max_states: 1000 }),
            KeyVerdict::Linearizable
        );
    }

    /// Whether `ops` is linearizable, by trying every subset of the indeterminate writes
    /// and every order: only for a handful of operations.
    fn brute_force(ops: &[Operation]) -> bool {
        let ops: Vec<&Operation> = ops.iter().filter(|op| relevant(op)).collect();
        let info: Vec<usize> = (0..ops.len())
            .filter(|&i| ops[i].effective_complete() == u64::MAX)
            .collect();
        (0..1u32 << info.len()).any(|mask| {
            let chosen: Vec<&Operation> = (0..ops.len())
                .filter(|i| match info.iter().position(|j| j == i) {
                    Some(bit) => mask & (1 << bit) != 0,
                    None => true,
                })
                .map(|i| ops[i])
                .collect();
            permutations_ok(&chosen, &mut Vec::new(), &mut vec![false; chosen.len()])
        })
    }

    fn permutations_ok(ops: &[&Operation], order: &mut Vec<usize>, used: &mut [bool]) -> bool {
        if order.len() == ops.len() {
            let mut register: Option<&String> = None;
            return order.iter().all(|&i| match &ops[i].command {
                Command::Get(v) => v.as_ref() == register,
                Command::Put(v) => {
                    register = Some(v);
                    true
                }
                Command::Delete => {
                    register = None;
                    true
                }
                Command::Cas { expected, new } => {
                    let holds = expected.as_ref() == register;
                    if holds {
                        register = Some(new);
                    }
                    holds
                }
                Command::CasFailed { expected } => expected.as_ref() != register,
            });
        }
        for i in 0..ops.len() {
            // Next may be any unused operation that no other unused one entirely precedes.
            let blocked = (0..ops.len())
                .any(|j| !used[j] && j != i && ops[j].effective_complete() < ops[i].invoke);
            if used[i] || blocked {
                continue;
            }
            used[i] = true;
            order.push(i);
            let ok = permutations_ok(ops, order, used);
            order.pop();
            used[i] = false;
            if ok {
                return true;
            }
        }
        false
    }

    #[test]
    fn the_search_agrees_with_brute_force_on_small_random_histories() {
        let mut rng = StdRng::seed_from_u64(42);
        let (mut legal, mut illegal) = (0, 0);
        for _ in 0..3000 {
            let mut b = Builder::default();
            for client in 0..rng.gen_range(1..7u64) {
                let invoke = rng.gen_range(0..20);
                let complete = invoke + rng.gen_range(0..10);
                let value = |rng: &mut StdRng| format!("v{}", rng.gen_range(0..3));
                let (command, outcome) = match rng.gen_range(0..11) {
                    0..=2 => {
                        let read = rng.gen_bool(0.75).then(|| value(&mut rng));
                        (Command::Get(read), Outcome::Ok)
                    }
                    3..=4 => (Command::Put(value(&mut rng)), Outcome::Ok),
                    5 => (Command::Put(value(&mut rng)), Outcome::Info),
                    6 => (Command::Delete, Outcome::Ok),
                    7 => (Command::Delete, Outcome::Info),
                    8 | 9 => {
                        let expected = rng.gen_bool(0.75).then(|| value(&mut rng));
                        let new = value(&mut rng);
                        let outcome = if rng.gen_bool(0.7) {
                            Outcome::Ok
                        } else {
                            Outcome::Info
                        };
                        (Command::Cas { expected, new }, outcome)
                    }
                    _ => {
                        let expected = rng.gen_bool(0.75).then(|| value(&mut rng));
                        (Command::CasFailed { expected }, Outcome::Ok)
                    }
                };
                b.op(client, command, outcome, invoke, Some(complete));
            }
            let expected = brute_force(&b.ops);
            assert_eq!(b.is_linearizable(), expected, "{:#?}", b.ops);
            if expected {
                legal += 1;
            } else {
                illegal += 1;
                // The explanation is itself a history without a linearization.
                let failure = b.failure();
                assert!(!brute_force(&failure.ops), "{}", failure.diagram);
                assert!(failure.ops.len() <= failure.checked);
            }
        }
        assert!(
            legal > 300 && illegal > 300,
            "{legal} legal, {illegal} illegal"
        );
    }

    #[test]
    fn the_recorder_stamps_a_monotonic_history() {
        let recorder = Recorder::new();
        let put = recorder.invoke(1, 2, "k", Command::Put("a".into()));
        recorder.ok(put);
        let get = recorder.invoke(1, 3, "k", Command::Get(None));
        recorder.ok_read(get, Some("a".into()));
        let lost = recorder.invoke(2, 1, "k", Command::Put("b".into()));
        recorder.info(lost, "timeout");
        let refused = recorder.invoke(2, 1, "k", Command::Delete);
        recorder.fail(refused, "connection refused");
        let pending = recorder.invoke(3, 1, "k", Command::Delete);
        let history = recorder.history();
        assert_eq!(history.ops.len(), 5);
        assert!(history.ops[put].complete.unwrap() <= history.ops[get].invoke);
        assert_eq!(history.ops[get].command, Command::Get(Some("a".into())));
        assert_eq!(history.ops[pending].outcome, Outcome::Info);
        assert_eq!(history.count(Outcome::Info), 2);
        assert_eq!(history.count(Outcome::Fail), 1);
        assert_eq!(
            check(&history, CheckConfig::default()).verdict(),
            Verdict::Pass
        );
    }

    #[test]
    fn the_diagram_draws_intervals_on_one_axis() {
        let mut b = Builder::default();
        b.put(1, "v1", 0, 100)
            .put_info(2, "v2", 50)
            .get(3, Some("v3"), 90, 95);
        let diagram = render_diagram("k", &b.ops);
        let lines: Vec<&str> = diagram.lines().collect();
        assert_eq!(lines.len(), 5, "{diagram}");
        assert!(
            lines[2].contains("|") && lines[2].contains("put(v1)"),
            "{diagram}"
        );
        assert!(lines[2].ends_with('|'), "the label fits inside: {diagram}");
        assert!(
            lines[3].ends_with(">?"),
            "indeterminate runs off: {diagram}"
        );
        assert!(
            lines[4].ends_with("get=v3"),
            "a short bar is labelled after: {diagram}"
        );
        // Bars line up with time: the first starts at column 0 of the axis.
        let bar_start = |line: &str| line.find('|').unwrap();
        assert!(bar_start(lines[2]) < bar_start(lines[3]));
        assert!(bar_start(lines[3]) < bar_start(lines[4]));
    }

    /// A random linearizable history: `clients` clients each run operations back to back,
    /// each taking effect at a random instant of its interval; with `cas`, some of them
    /// compare-and-sets (that win or lose).
    fn random_history(seed: u64, clients: u64, ops: usize, cas: bool) -> Vec<Operation> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut clock = vec![0u64; clients as usize];
        let mut planned = Vec::new();
        for i in 0..ops {
            let client = rng.gen_range(0..clients);
            let invoke = clock[client as usize] + rng.gen_range(0..5);
            let complete = invoke + rng.gen_range(1..40);
            clock[client as usize] = complete;
            let at = rng.gen_range(invoke..=complete);
            let command = match rng.gen_range(0..if cas { 12 } else { 10 }) {
                0..=4 => Command::Get(None),
                5..=8 => Command::Put(format!("c{client}-{i}")),
                9 => Command::Delete,
                // Filled in below, from the register at the instant it takes effect.
                _ => Command::Cas {
                    expected: None,
                    new: format!("c{client}-{i}"),
                },
            };
            let wins = rng.gen_bool(0.6);
            planned.push((at, i, client, (command, wins), invoke, complete));
        }
        planned.sort_by_key(|p| (p.0, p.1));
        let mut register: Option<String> = None;
        let mut history = Vec::new();
        for (_, i, client, (command, wins), invoke, complete) in planned {
            let command = match command {
                Command::Cas { new, .. } if wins => {
                    let expected = register.replace(new.clone());
                    Command::Cas { expected, new }
                }
                Command::Cas { .. } => Command::CasFailed {
                    expected: Some(format!("never-{i}")),
                },
                Command::Get(_) => Command::Get(register.clone()),
                Command::Put(v) => {
                    register = Some(v.clone());
                    Command::Put(v)
                }
                Command::Delete => {
                    register = None;
                    Command::Delete
                }
                other => other,
            };
            history.push(Operation {
                id: i,
                client,
                node: 0,
                key: "k".into(),
                command,
                outcome: Outcome::Ok,
                invoke: invoke * 1_000_000,
                complete: Some(complete * 1_000_000),
                note: String::new(),
            });
        }
        history.sort_by_key(|op| op.id);
        history
    }

    #[test]
    fn histories_with_compare_and_sets_are_checked() {
        for seed in 0..5 {
            let mut ops = random_history(seed, 4, 60, true);
            assert!(ops
                .iter()
                .any(|op| matches!(op.command, Command::CasFailed { .. })));
            assert_eq!(
                check_key(&ops, CheckConfig::default()),
                KeyVerdict::Linearizable,
                "seed {seed}"
            );
            // A compare-and-set said to have won from a value the key never held there.
            let cas = ops
                .iter()
                .rposition(|op| matches!(op.command, Command::Cas { .. }))
                .unwrap();
            if let Command::Cas { expected, .. } = &mut ops[cas].command {
                *expected = Some("bogus".into());
            }
            assert!(
                matches!(
                    check_key(&ops, CheckConfig::default()),
                    KeyVerdict::NotLinearizable(_)
                ),
                "seed {seed}: the bogus compare-and-set is not caught"
            );
        }
    }

    #[test]
    fn two_hundred_concurrent_operations_on_one_key_check_quickly() {
        for seed in 0..5 {
            let mut ops = random_history(seed, 6, 200, false);
            let started = Instant::now();
            assert_eq!(
                check_key(&ops, CheckConfig::default()),
                KeyVerdict::Linearizable,
                "seed {seed}"
            );
            // Some writes time out: still linearizable, still quick.
            for op in ops
                .iter_mut()
                .filter(|op| op.command.is_write())
                .step_by(10)
            {
                op.outcome = Outcome::Info;
            }
            assert_eq!(
                check_key(&ops, CheckConfig::default()),
                KeyVerdict::Linearizable,
                "seed {seed} with indeterminate writes"
            );
            // A read of a value never written somewhere in the middle: caught.
            let middle = ops
                .iter()
                .position(|op| !op.command.is_write() && op.id > 100)
                .unwrap();
            ops[middle].command = Command::Get(Some("bogus".into()));
            let KeyVerdict::NotLinearizable(failure) = check_key(&ops, CheckConfig::default())
            else {
                panic!("seed {seed}: the bogus read is not caught");
            };
            assert!(failure.ops.len() < ops.len(), "the explanation is shrunk");
            assert!(failure.ops.iter().any(|op| op.id == ops[middle].id));
            let elapsed = started.elapsed();
            assert!(
                elapsed.as_secs() < 10,
                "seed {seed}: checking took {elapsed:?}"
            );
        }
    }
}
