//! Storage queues behind one trait: the work distribution of queue dispatch (docs/api.md
//! section 9).
//!
//! Like [`super::BlobStore`], this module speaks queues only (messages, pop receipts, dequeue
//! counts, visibility) and knows nothing about jobs. Every Azure SDK call for queues lives in
//! [`azure`]; `memory` is an in-process queue with the same contract, for tests only (built
//! with `cfg(test)` or the `test-support` feature, never into the deployed handler).
//!
//! Message text is what producers and consumers see. On the wire the Azure implementation
//! base64-encodes it, as the Functions host's queue trigger expects by default
//! (`messageEncoding: base64`).

pub mod azure;
#[cfg(any(test, feature = "test-support"))]
pub mod memory;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// A message taken from a queue: invisible to others until its visibility timeout runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    pub id: String,
    /// Proves the holder's right to delete or renew it; changes with every receive and renewal.
    pub pop_receipt: String,
    /// How many times it has been received, this time included (1 on the first delivery).
    pub dequeue_count: u32,
    pub inserted_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub next_visible_at: DateTime<Utc>,
    /// The text as it was sent (base64-decoded; text that is not base64 as it is stored).
    pub text: String,
}

/// What a renewal returns: the new pop receipt and when the message becomes visible again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewal {
    pub pop_receipt: String,
    pub next_visible_at: DateTime<Utc>,
}

/// One named queue.
///
/// The contract, which `tests/queue_contract.rs` checks for every implementation:
/// - `ensure_queue` creates the queue when missing and is idempotent.
/// - `send` appends a message that is visible at once; its text comes back unchanged. A send
///   to a queue that does not exist yet creates it.
/// - `receive` returns at most `max_messages` (1 to 32) visible messages, each made invisible
///   for `visibility_timeout` (whole seconds, at least one) and with its dequeue count raised by
///   one; a message is never returned to two receivers while it is invisible. A queue that does
///   not exist has no messages.
/// - `renew` with the current pop receipt sets a new visibility timeout (zero makes the message
///   visible at once) and returns the new pop receipt; with a stale pop receipt, or for a
///   message that is gone, it is `Err(StoreError::ConditionFailed)`.
/// - `delete` with the current pop receipt removes the message; with a stale pop receipt it is
///   `Err(StoreError::ConditionFailed)`; deleting a message that is already gone is `Ok(())`.
///   (Azure itself may answer a stale receipt as "no such message" once the message moved on;
///   then the delete is `Ok(())` too, and the message is delivered again later: delivery is at
///   least once either way.)
/// - `approximate_message_count` counts the messages the queue holds, visible or not: a
///   received message counts until it is deleted (or expires), as Azure's
///   `x-ms-approximate-messages-count` does. A queue that does not exist counts 0. Azure calls
///   the count approximate: it may lag behind the queue a little.
/// - Failures that may pass are `StoreError::Unavailable`, as for blobs.
#[async_trait]
pub trait MessageQueue: Send + Sync + 'static {
    /// The queue's name.
    fn name(&self) -> &str;

    /// Creates the queue when it does not exist yet. Idempotent.
    async fn ensure_queue(&self) -> Result<(), StoreError>;

    /// Appends a message holding `text`.
    async fn send(&self, text: &str) -> Result<(), StoreError>;

    /// Takes up to `max_messages` visible messages, hiding each for `visibility_timeout`.
    async fn receive(
        &self,
        max_messages: u8,
        visibility_timeout: Duration,
    ) -> Result<Vec<QueueMessage>, StoreError>;

    /// Hides a received message for `visibility_timeout` from now (zero shows it again).
    async fn renew(
        &self,
        message: &QueueMessage,
        visibility_timeout: Duration,
    ) -> Result<Renewal, StoreError>;

    /// Removes a received message for good.
    async fn delete(&self, message: &QueueMessage) -> Result<(), StoreError>;

    /// About how many messages the queue holds, hidden ones included; 0 when it does not exist.
    async fn approximate_message_count(&self) -> Result<u64, StoreError>;

    /// A short description for logs (`azure queue account/name`), never containing a secret.
    fn describe(&self) -> String;
}

/// The name of the queue where messages that failed `maxDequeueCount` times end.
pub fn poison_queue_name(queue: &str) -> String {
    format!("{queue}-poison")
}
