//! A gate a fake keeps requests at until the test opens it, so a test orders events by saying
//! so ("this listing answers after the cancel") instead of by sleeping and hoping.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// Cloned handles share one gate. Every request that reaches [`pass`](Self::pass) waits there
/// until [`release`](Self::release); after that, requests pass at once.
#[derive(Clone)]
pub struct Hold {
    state: Arc<watch::Sender<State>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct State {
    released: bool,
    /// Requests that reached the gate, held or not.
    arrived: usize,
}

impl Default for Hold {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = *self.state.borrow();
        f.debug_struct("Hold")
            .field("released", &state.released)
            .field("arrived", &state.arrived)
            .finish()
    }
}

impl Hold {
    /// A closed gate.
    pub fn new() -> Self {
        Self {
            state: Arc::new(watch::channel(State::default()).0),
        }
    }

    /// Counts the arrival, then waits until the gate is open.
    pub async fn pass(&self) {
        let mut open = self.state.subscribe();
        self.state.send_modify(|state| state.arrived += 1);
        // The sender lives as long as `self`, so this only ends when the gate opens.
        let _ = open.wait_for(|state| state.released).await;
    }

    /// Opens the gate for every waiting and later request.
    pub fn release(&self) {
        self.state.send_modify(|state| state.released = true);
    }

    /// How many requests have reached the gate.
    pub fn arrived(&self) -> usize {
        self.state.borrow().arrived
    }

    /// Waits until `count` requests have reached the gate; panics after `limit`.
    pub async fn until_arrived(&self, count: usize, limit: Duration) {
        let mut state = self.state.subscribe();
        let reached = tokio::time::timeout(limit, state.wait_for(|state| state.arrived >= count))
            .await
            .is_ok();
        assert!(
            reached,
            "{} of {count} requests reached the hold within {limit:?}",
            self.arrived()
        );
    }
}
