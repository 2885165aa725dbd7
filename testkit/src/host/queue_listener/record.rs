//! What a queue listener did, kept for tests to assert on: every delivery and how it ended,
//! the messages it poisoned, and the storage calls that failed.

use std::sync::{Arc, Mutex};

/// One delivery of a message to the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInvocation {
    pub function: String,
    pub queue: String,
    pub message_id: String,
    /// The message text as the producer sent it (decoded).
    pub text: String,
    /// `1` on the first delivery.
    pub dequeue_count: u32,
    /// `None` while the invocation runs, and for good when the listener was stopped during it.
    pub outcome: Option<InvocationOutcome>,
}

/// How an invocation ended, from the host's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvocationOutcome {
    /// 2xx, `application/json`, a JSON object: the message was deleted.
    Succeeded,
    /// Anything else (a non-2xx status, a bad body, no answer): the message was made visible
    /// again or moved to the poison queue.
    Failed(String),
}

/// A message moved to the poison queue after its last failed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoisonedMessage {
    pub function: String,
    /// The poison queue (`<queue>-poison`).
    pub poison_queue: String,
    pub message_id: String,
    pub text: String,
    pub dequeue_count: u32,
}

#[derive(Debug, Default)]
struct Entries {
    invocations: Vec<QueueInvocation>,
    poisoned: Vec<PoisonedMessage>,
    problems: Vec<String>,
}

/// What a listener did, shared with the test (cheap to clone; clones see the same record).
#[derive(Debug, Clone, Default)]
pub struct QueueRecord(Arc<Mutex<Entries>>);

impl QueueRecord {
    /// Every delivery so far, in the order they started.
    pub fn invocations(&self) -> Vec<QueueInvocation> {
        self.lock().invocations.clone()
    }

    /// The deliveries of one message, in order.
    pub fn deliveries_of(&self, message_id: &str) -> Vec<QueueInvocation> {
        self.lock()
            .invocations
            .iter()
            .filter(|invocation| invocation.message_id == message_id)
            .cloned()
            .collect()
    }

    /// The deliveries that succeeded (their messages were deleted).
    pub fn succeeded(&self) -> Vec<QueueInvocation> {
        self.lock()
            .invocations
            .iter()
            .filter(|invocation| invocation.outcome == Some(InvocationOutcome::Succeeded))
            .cloned()
            .collect()
    }

    /// Messages moved to a poison queue.
    pub fn poisoned(&self) -> Vec<PoisonedMessage> {
        self.lock().poisoned.clone()
    }

    /// Storage calls of the listener that failed (a lost renewal, a delete that did not hold):
    /// a test with a healthy queue service expects none.
    pub fn problems(&self) -> Vec<String> {
        self.lock().problems.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.0.lock().expect("queue record lock")
    }

    pub(super) fn started(&self, invocation: QueueInvocation) -> usize {
        let mut entries = self.lock();
        entries.invocations.push(invocation);
        entries.invocations.len() - 1
    }

    pub(super) fn ended(&self, index: usize, outcome: InvocationOutcome) {
        self.lock().invocations[index].outcome = Some(outcome);
    }

    pub(super) fn problem(&self, text: String) {
        self.lock().problems.push(text);
    }

    pub(super) fn poisoned_message(&self, message: PoisonedMessage) {
        self.lock().poisoned.push(message);
    }
}
