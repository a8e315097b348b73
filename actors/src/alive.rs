//! Knowing when every actor of a store has stopped.
//!
//! An in-process restart (tests stop a store and start it again over the same directory)
//! must wait until every actor and every in-flight write has dropped its engine handle,
//! because fjall keeps the directory locked while any handle lives. Each actor and each
//! background write holds an [`AliveToken`]; [`AliveWatch::all_stopped`] completes when the
//! last token is dropped. This is an event to await, not a state to poll.

use tokio::sync::mpsc;

/// Held by everything that must stop before the store counts as stopped.
#[derive(Clone, Debug)]
pub struct AliveToken(#[allow(dead_code)] mpsc::Sender<()>);

/// Waits for every [`AliveToken`] of a store to be dropped.
#[derive(Debug)]
pub struct AliveWatch(mpsc::Receiver<()>);

/// Creates the first token and its watch.
pub fn alive_pair() -> (AliveToken, AliveWatch) {
    let (tx, rx) = mpsc::channel(1);
    (AliveToken(tx), AliveWatch(rx))
}

impl AliveWatch {
    /// Completes once every token is gone.
    pub async fn all_stopped(mut self) {
        while self.0.recv().await.is_some() {}
    }
}
