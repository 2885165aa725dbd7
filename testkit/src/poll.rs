//! Waiting for a condition, with a deadline: how a test waits for something it cannot be told
//! about (a blob written, a log line printed by another process) instead of sleeping for a
//! guess.

use std::time::{Duration, Instant};

/// How often a condition is checked again.
const INTERVAL: Duration = Duration::from_millis(25);

/// Checks `check` until it holds; panics naming `what` after `limit`.
pub async fn until(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(INTERVAL).await;
    }
}
