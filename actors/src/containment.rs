//! Panics that may be survived: where one is caught, and how a process-wide panic hook
//! tells those from the rest.
//!
//! A node aborts on any panic (its binary installs such a hook): a storage node with a
//! dead actor would go on answering while part of it no longer works. One place is
//! different: raft-rs asserts on messages that break its peers' promises, and although
//! the PeerFsm refuses every such message it knows of before raft sees it, a message from
//! the network that still trips an assertion must cost one peer a restart from disk, not
//! the node (see the PeerFsm). [`contain`] runs a closure so that a panic in it unwinds
//! back to the caller, and [`is_contained`] lets the hook see that it should log the panic
//! and let it unwind instead of aborting.

use std::any::Any;
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    static CONTAINED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`; a panic in it is returned as an error instead of unwinding further. The
/// caller must not use any state `f` may have left half-updated.
pub fn contain<R>(f: impl FnOnce() -> R) -> Result<R, Box<dyn Any + Send>> {
    let outer = CONTAINED.with(|c| c.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    CONTAINED.with(|c| c.set(outer));
    result
}

/// Whether this thread runs inside [`contain`]: a panic hook should then let the panic
/// unwind to it.
pub fn is_contained() -> bool {
    CONTAINED.with(|c| c.get())
}

/// The message of a caught panic.
pub fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contained_panic_comes_back_as_an_error() {
        assert!(!is_contained());
        let caught = contain(|| {
            assert!(is_contained());
            panic!("raft is unhappy")
        });
        assert_eq!(
            panic_message(caught.unwrap_err().as_ref()),
            "raft is unhappy"
        );
        assert!(!is_contained(), "the scope ends with the call");
        assert_eq!(contain(|| 7).unwrap(), 7);
    }
}
