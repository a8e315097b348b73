//! The search for a linearization of one key's history: indeterminate writes nothing
//! could observe are dropped first, then a depth-first search over which pending operation
//! takes effect next, with a cache of visited (linearized set, register) configurations
//! keyed by Zobrist hashes.

use super::*;

/// `ops` without the indeterminate writes nothing could have observed: a put of a value
/// no read returned, a delete after whose invocation no read completed with absent.
/// Such a write changes no read's explanation when it takes effect, so leaving it out is
/// the same as linearizing it last; and each one kept multiplies the configurations the
/// search may have to visit.
pub(super) fn without_unobserved_writes(ops: Vec<Operation>) -> Vec<Operation> {
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
pub(super) fn relevant(op: &Operation) -> bool {
    match op.outcome {
        Outcome::Ok => op.complete.is_some() || op.command.is_write(),
        Outcome::Fail => false,
        Outcome::Info => op.command.is_write(),
    }
}

/// The outcome of one search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Search {
    Linearizable,
    Illegal,
    GaveUp(usize),
}

/// A step of the model, with values interned ([`ABSENT`] for absent).
#[derive(Debug, Clone, Copy)]
pub(super) enum Step {
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
pub(super) struct Zobrist {
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
pub(super) struct FoldHasher(u64);

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

pub(super) type FoldBuild = std::hash::BuildHasherDefault<FoldHasher>;

/// The register's value in the search: an interned value, or [`ABSENT`].
pub(super) const ABSENT: u32 = u32::MAX;

pub(super) const NIL: usize = usize::MAX;

/// Wing & Gong's search with Lowe's cache over `ops` (all relevant, one key); see the
/// module documentation.
pub(super) fn search(ops: &[Operation], max_states: usize) -> Search {
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
