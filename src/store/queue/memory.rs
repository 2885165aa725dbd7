//! An in-process queue with the contract of [`MessageQueue`], for unit tests of the code that
//! produces and consumes messages.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{MessageQueue, QueueMessage, Renewal};
use crate::store::StoreError;

/// How long a message lives, as Azure's default time-to-live.
const TIME_TO_LIVE: chrono::Duration = chrono::Duration::days(7);

#[derive(Debug)]
struct Stored {
    message: QueueMessage,
    /// Counts pop receipts, so each one is new.
    generation: u64,
}

/// A queue in memory. Visibility follows the wall clock, as Azure's does.
#[derive(Debug)]
pub struct MemoryQueue {
    name: String,
    messages: Mutex<Vec<Stored>>,
    sent: Mutex<u64>,
}

impl MemoryQueue {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            messages: Mutex::new(Vec::new()),
            sent: Mutex::new(0),
        }
    }

    /// How many times each message, visible or not, has been received, in the order sent.
    pub fn dequeue_counts(&self) -> Vec<u32> {
        let messages = self.messages.lock().expect("queue lock");
        messages
            .iter()
            .map(|stored| stored.message.dequeue_count)
            .collect()
    }

    /// Every message's text, visible or not, in the order sent.
    pub fn texts(&self) -> Vec<String> {
        let messages = self.messages.lock().expect("queue lock");
        messages
            .iter()
            .map(|stored| stored.message.text.clone())
            .collect()
    }
}

fn after(now: DateTime<Utc>, timeout: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::days(7))
}

fn receipt(id: &str, generation: u64) -> String {
    format!("{id}:{generation}")
}

#[async_trait]
impl MessageQueue for MemoryQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn ensure_queue(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn send(&self, text: &str) -> Result<(), StoreError> {
        let id = {
            let mut sent = self.sent.lock().expect("queue lock");
            *sent += 1;
            format!("message-{sent}")
        };
        let now = Utc::now();
        self.messages.lock().expect("queue lock").push(Stored {
            message: QueueMessage {
                pop_receipt: receipt(&id, 0),
                id,
                dequeue_count: 0,
                inserted_at: now,
                expires_at: now + TIME_TO_LIVE,
                next_visible_at: now,
                text: text.to_owned(),
            },
            generation: 0,
        });
        Ok(())
    }

    async fn receive(
        &self,
        max_messages: u8,
        visibility_timeout: Duration,
    ) -> Result<Vec<QueueMessage>, StoreError> {
        let now = Utc::now();
        let mut messages = self.messages.lock().expect("queue lock");
        messages.retain(|stored| stored.message.expires_at > now);
        let taken = messages
            .iter_mut()
            .filter(|stored| stored.message.next_visible_at <= now)
            .take(usize::from(max_messages.clamp(1, 32)))
            .map(|stored| {
                stored.generation += 1;
                stored.message.dequeue_count += 1;
                stored.message.pop_receipt = receipt(&stored.message.id, stored.generation);
                stored.message.next_visible_at = after(now, visibility_timeout);
                stored.message.clone()
            })
            .collect();
        Ok(taken)
    }

    async fn renew(
        &self,
        message: &QueueMessage,
        visibility_timeout: Duration,
    ) -> Result<Renewal, StoreError> {
        let mut messages = self.messages.lock().expect("queue lock");
        let stored = messages
            .iter_mut()
            .find(|stored| stored.message.id == message.id)
            .filter(|stored| stored.message.pop_receipt == message.pop_receipt)
            .ok_or(StoreError::ConditionFailed)?;
        stored.generation += 1;
        stored.message.pop_receipt = receipt(&stored.message.id, stored.generation);
        stored.message.next_visible_at = after(Utc::now(), visibility_timeout);
        Ok(Renewal {
            pop_receipt: stored.message.pop_receipt.clone(),
            next_visible_at: stored.message.next_visible_at,
        })
    }

    async fn delete(&self, message: &QueueMessage) -> Result<(), StoreError> {
        let mut messages = self.messages.lock().expect("queue lock");
        match messages
            .iter()
            .position(|stored| stored.message.id == message.id)
        {
            None => Ok(()),
            Some(index) if messages[index].message.pop_receipt == message.pop_receipt => {
                messages.remove(index);
                Ok(())
            }
            Some(_) => Err(StoreError::ConditionFailed),
        }
    }

    async fn approximate_message_count(&self) -> Result<u64, StoreError> {
        let now = Utc::now();
        let mut messages = self.messages.lock().expect("queue lock");
        messages.retain(|stored| stored.message.expires_at > now);
        Ok(messages.len() as u64)
    }

    fn describe(&self) -> String {
        format!("memory queue {}", self.name)
    }
}
