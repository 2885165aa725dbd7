//! Standalone mode's queue listener: with `JOB_DISPATCH=queue` and no Functions host, this
//! process takes the job messages itself, with the host listener's semantics
//! (docs/functions-host.md, "Queue trigger"), so several containers share one queue:
//!
//! - Poll; while the queue is empty, wait longer each time, up to `maxPollingInterval`.
//! - Take as many messages as there are free slots (`MAX_CONCURRENT_JOBS`), at most
//!   `batchSize`, each invisible for `stale_after`, renewed every third of that while its job
//!   runs: a container that dies lets go of its messages within `stale_after`.
//! - A delivery that succeeds deletes the message. One that fails makes it visible again after
//!   `visibilityTimeout`, or, on the `maxDequeueCount`-th delivery, moves it to the poison
//!   queue (the job was ended `failed` first, by [`JobRunner::run_delivered`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tracing::Instrument;

use super::super::message::JobMessage;
use super::super::JobRunner;
use super::QueueDispatch;
use crate::store::queue::QueueMessage;
use crate::store::StoreError;
use crate::telemetry::Chain;

/// The first wait after an empty poll; it doubles up to `maxPollingInterval`.
const FIRST_POLL_WAIT: Duration = Duration::from_millis(100);

impl JobRunner {
    /// Takes messages until shutdown, each delivery a tracked task of its own.
    pub(super) async fn listen(&self, dispatch: &QueueDispatch) {
        let slots = Arc::new(Semaphore::new(self.inner.options.max_concurrent_jobs));
        let hold = self.inner.options.stale_after;
        let mut poll_wait = FIRST_POLL_WAIT;
        tracing::info!(queue = %dispatch.queue.describe(), "taking job messages from the queue");
        loop {
            // At least one free slot before asking for messages.
            let first = tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            let free = 1 + slots.available_permits();
            let wanted = free.min(usize::from(dispatch.listener.batch_size)) as u8;
            let received = tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                received = dispatch.queue.receive(wanted, hold) => received,
            };
            let messages = match received {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(error = %Chain(&error), "the job queue cannot be read; polling again later");
                    Vec::new()
                }
            };
            if messages.is_empty() {
                drop(first);
                tokio::select! {
                    _ = self.inner.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(poll_wait) => {}
                }
                poll_wait = (poll_wait * 2).min(dispatch.listener.max_polling_interval);
                continue;
            }
            poll_wait = FIRST_POLL_WAIT;
            let mut permits = vec![first];
            for _ in 1..messages.len() {
                permits.push(
                    slots
                        .clone()
                        .try_acquire_owned()
                        .expect("no more messages than free slots"),
                );
            }
            for (message, permit) in messages.into_iter().zip(permits) {
                let this = self.clone();
                let dispatch = dispatch.clone();
                let span = tracing::info_span!("message", message_id = %message.id, dequeue_count = message.dequeue_count);
                self.inner.tracker.spawn(
                    async move {
                        this.handle_message(&dispatch, message, hold).await;
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
        }
    }

    /// One delivery: the job's run, with the message renewed meanwhile, then the message
    /// deleted, released for another delivery, or moved to the poison queue.
    async fn handle_message(
        &self,
        dispatch: &QueueDispatch,
        message: QueueMessage,
        hold: Duration,
    ) {
        let current = Mutex::new(message.clone());
        let job = match JobMessage::job_of(&serde_json::Value::String(message.text.clone())) {
            Ok(job) => job,
            Err(reason) => {
                tracing::error!(reason, "a queue message that names no job; deleting it");
                return self.settle(dispatch, &current, Settle::Delete).await;
            }
        };
        let renew = async {
            loop {
                tokio::time::sleep(hold / 3).await;
                let held = current.lock().expect("message lock").clone();
                match dispatch.queue.renew(&held, hold).await {
                    Ok(renewal) => {
                        current.lock().expect("message lock").pop_receipt = renewal.pop_receipt
                    }
                    Err(StoreError::ConditionFailed) => {
                        tracing::warn!(
                            "the message was taken by another delivery; no longer renewing it"
                        );
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(error = %Chain(&error), "could not renew the message; trying again")
                    }
                }
            }
        };
        let delivered = tokio::select! {
            delivered = self.run_delivered(job, message.dequeue_count) => delivered,
            _ = async { renew.await; std::future::pending::<()>().await } => unreachable!("renewal never ends the delivery"),
            // Left as it is: the message reappears when its hold lapses, and its next delivery
            // resumes the job.
            _ = self.inner.shutdown.cancelled() => return,
        };
        let settle = match delivered {
            Ok(outcome) => {
                tracing::info!(job_id = %job, outcome = ?outcome, "delivery done");
                Settle::Delete
            }
            Err(error) if message.dequeue_count >= dispatch.listener.max_dequeue_count => {
                tracing::error!(job_id = %job, error = %Chain(&error), "the last delivery failed; moving the message to the poison queue");
                Settle::Poison
            }
            Err(error) => {
                tracing::warn!(job_id = %job, error = %Chain(&error), "delivery failed; the message will be delivered again");
                Settle::Release
            }
        };
        self.settle(dispatch, &current, settle).await;
    }

    async fn settle(
        &self,
        dispatch: &QueueDispatch,
        current: &Mutex<QueueMessage>,
        settle: Settle,
    ) {
        let message = current.lock().expect("message lock").clone();
        let settled = match settle {
            Settle::Delete => dispatch.queue.delete(&message).await,
            Settle::Release => dispatch
                .queue
                .renew(&message, dispatch.listener.visibility_timeout)
                .await
                .map(drop),
            Settle::Poison => match dispatch.poison.send(&message.text).await {
                Ok(()) => dispatch.queue.delete(&message).await,
                Err(error) => Err(error),
            },
        };
        // Whatever failed here, the message reappears when its visibility runs out.
        if let Err(error) = settled {
            tracing::warn!(error = %Chain(&error), action = ?settle, "could not settle the message; it will be delivered again");
        }
    }
}

/// What becomes of a message after its delivery.
#[derive(Debug, Clone, Copy)]
enum Settle {
    Delete,
    Release,
    Poison,
}
