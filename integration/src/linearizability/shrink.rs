//! Shrinking a history that is not linearizable to a small one that still is not: cut at
//! the earliest failing prefix, then remove reads and unobservable writes while the
//! violation stays (see the parent module's "Explaining a failure").

use super::*;

/// The history as it was at time `cut`: operations invoked later are gone, writes still
/// running become indeterminate, reads still running are dropped.
pub(super) fn prefix(ops: &[Operation], cut: u64) -> Vec<Operation> {
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
pub(super) const MAX_SHRINK_SEARCHES: usize = 2_000;

/// Longest one explanation is shrunk for; past it the witness so far is reported.
pub(super) const MAX_SHRINK_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// A small sub-history of `ops` (known not linearizable) that is still not linearizable;
/// see the module documentation.
pub(super) fn shrink(ops: Vec<Operation>, max_states: usize) -> Vec<Operation> {
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
pub(super) fn observed(ops: &[Operation], i: usize) -> bool {
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
