//! Queue dispatch (docs/api.md section 9): a job is a message `{"job_id": "<id>"}` on a
//! Storage queue, and whichever instance takes the message runs the job, to a terminal state,
//! before the message is deleted.
//!
//! - [`JobRunner::submit`] sends the message after the status document is stored; when it
//!   cannot, the job is ended `failed` (a conditional write) and the caller gets a 503.
//! - [`JobRunner::run_delivered`] is what a delivery does, under the host (`RunJob`) or in
//!   standalone mode's own listener (`consumer`): resume the job from its status document,
//!   wait for it when it runs elsewhere, take it over when that worker stopped, and, on the
//!   last delivery, end the job `failed` with the cause before the message goes to the poison
//!   queue.
//! - A job that sits still for long without a message (its process died between the status
//!   write and the send, or the job predates queue dispatch) is sent again, once, by the
//!   stale-job scan ([`JobRunner::requeue`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::JobRunner;
use crate::jobs::id::JobId;
use crate::jobs::repository::{RepositoryError, StaleClaim, Versioned};
use crate::jobs::status::{self, JobStatus, StatusDocument, TransitionError};
use crate::store::queue::MessageQueue;
use crate::store::StoreError;
use crate::telemetry::Chain;

/// How accepted jobs reach a worker.
#[derive(Debug, Clone)]
pub enum Dispatch {
    /// In this process: a queue in memory and a fixed set of worker tasks.
    Inline,
    /// On a Storage queue (`JOB_DISPATCH=queue`).
    Queue(QueueDispatch),
}

/// The queues of queue dispatch and how their messages are treated.
#[derive(Clone)]
pub struct QueueDispatch {
    pub queue: Arc<dyn MessageQueue>,
    /// Where a message goes after its last delivery failed (`<queue>-poison`).
    pub poison: Arc<dyn MessageQueue>,
    pub listener: ListenerSettings,
    /// Whether this process takes the messages itself (standalone mode); under the Functions
    /// host its queue listener does, and delivers them to `RunJob`.
    pub consume: bool,
}

/// How a queue listener treats messages (`host.json`, `extensions.queues`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSettings {
    /// The delivery that is the last: a failure then moves the message to the poison queue.
    pub max_dequeue_count: u32,
    /// How long a message whose run failed stays invisible before its next delivery.
    pub visibility_timeout: Duration,
    /// Messages taken at once.
    pub batch_size: u8,
    /// The longest wait between polls of an empty queue.
    pub max_polling_interval: Duration,
}

impl std::fmt::Debug for QueueDispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueDispatch")
            .field("queue", &self.queue.describe())
            .field("poison", &self.poison.describe())
            .field("listener", &self.listener)
            .field("consume", &self.consume)
            .finish()
    }
}

impl Default for ListenerSettings {
    /// The host's defaults.
    fn default() -> Self {
        Self {
            max_dequeue_count: 5,
            visibility_timeout: Duration::ZERO,
            batch_size: 16,
            max_polling_interval: Duration::from_secs(60),
        }
    }
}

/// A job's message.
#[derive(Debug, Serialize, Deserialize)]
pub struct JobMessage {
    pub job_id: JobId,
}

impl JobMessage {
    pub fn text(job: JobId) -> String {
        serde_json::to_string(&JobMessage { job_id: job }).expect("a message serialises")
    }

    /// The job a message names, from any form the host may bind it in: the JSON object, the
    /// object's text, or that text wrapped in a JSON string once more (the host binds a queue
    /// message as a string, so it usually arrives quoted).
    pub fn job_of(message: &Value) -> Result<JobId, String> {
        let mut value = message.clone();
        // Two levels of string wrapping at most; a message is never deeper.
        for _ in 0..3 {
            match value {
                Value::String(text) => {
                    value = serde_json::from_str(&text)
                        .map_err(|_| "the message is not JSON".to_owned())?;
                }
                Value::Object(_) => {
                    return serde_json::from_value::<JobMessage>(value)
                        .map(|message| message.job_id)
                        .map_err(|error| format!("the message names no job: {error}"));
                }
                _ => break,
            }
        }
        Err("the message is not a JSON object".to_owned())
    }
}

/// What a delivery came to (each answered as a success: the message is done with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// The job ran here to this terminal state.
    Ran(JobStatus),
    /// The job was over already.
    AlreadyOver(JobStatus),
    /// Another worker took the job over while it ran here; that worker finishes it.
    TakenOver,
    /// Another worker kept the job alive for as long as this delivery waited.
    RunningElsewhere,
    /// No such job (purged, or never stored).
    UnknownJob,
    /// The job's status document cannot be read, now or later.
    Unreadable,
}

/// Why a delivery failed: the message should be delivered again.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("storage is unavailable")]
    Storage(#[source] RepositoryError),
    #[error("the handler is shutting down")]
    ShuttingDown,
}

/// The error of a job ended on its last delivery.
fn last_delivery_error(error: &DeliveryError, delivery: u32) -> String {
    format!(
        "The job could not be run: {} (delivery {delivery}, the last).",
        Chain(error)
    )
}

/// The error of a job whose message could not be sent.
const NOT_QUEUED: &str = "The job could not be queued, so it never ran; submit it again.";

impl QueueDispatch {
    pub(super) async fn send(&self, job: JobId) -> Result<(), StoreError> {
        self.queue.send(&JobMessage::text(job)).await
    }
}

impl JobRunner {
    /// The queue of queue dispatch, `None` in inline mode.
    pub fn queue_dispatch(&self) -> Option<&QueueDispatch> {
        match &self.inner.options.dispatch {
            Dispatch::Queue(dispatch) => Some(dispatch),
            Dispatch::Inline => None,
        }
    }

    /// Ends a job whose message could not be sent, if nothing has touched it since it was
    /// stored: it must not stay `queued` with no message to run it. It owes no callback: its
    /// caller got a 503, not a ticket.
    pub(super) async fn withdraw(&self, job: JobId) {
        let withdrawn = self
            .update(job, |doc| {
                if doc.status != JobStatus::Queued || doc.attempts > 0 {
                    return Err(TransitionError::WrongState {
                        expected: JobStatus::Queued,
                        actual: doc.status,
                    });
                }
                doc.fail(NOT_QUEUED.to_owned(), status::now())?;
                // The caller was refused (503) and never heard of this job: no callback either.
                doc.callback = None;
                Ok(())
            })
            .await;
        if let Err(error) = withdrawn {
            tracing::error!(job_id = %job, error = %Chain(&error), "a job whose message was not sent could not be ended; the stale-job scan sends it later");
        }
    }

    /// One delivery of `job`'s message, the `dequeue_count`-th. Returns when the job is
    /// terminal (or cannot be run by anyone); an error asks for the message to be delivered
    /// again. On the last delivery an error first ends the job `failed` with its cause.
    pub async fn run_delivered(
        &self,
        job: JobId,
        dequeue_count: u32,
    ) -> Result<Delivered, DeliveryError> {
        let max = self
            .queue_dispatch()
            .map(|dispatch| dispatch.listener.max_dequeue_count)
            .unwrap_or(ListenerSettings::default().max_dequeue_count);
        let delivered = self.deliver(job).await;
        if let Err(error) = &delivered {
            if dequeue_count >= max {
                let reason = last_delivery_error(error, dequeue_count);
                match self
                    .update(job, |doc| doc.fail(reason.clone(), status::now()))
                    .await
                {
                    Ok(document) => {
                        tracing::error!(job_id = %job, error = %reason, "ended the job failed on its last delivery");
                        if document.callback_owed() {
                            self.deliver_callback(job, None);
                        }
                    }
                    Err(RepositoryError::Transition(TransitionError::Terminal(_))) => {}
                    Err(error) => {
                        tracing::error!(job_id = %job, error = %Chain(&error), "could not end the job on its last delivery")
                    }
                }
            }
        }
        delivered
    }

    async fn deliver(&self, job: JobId) -> Result<Delivered, DeliveryError> {
        let repository = &self.inner.repository;
        let started = Instant::now();
        // A worker that stopped is noticed within `stale_after`; waiting twice that for one
        // that keeps its heartbeat going is enough.
        let wait_at_most = self.inner.options.stale_after * 2;
        loop {
            let document = match self.with_storage_retries(|| repository.load(job)).await {
                Ok(Some(Versioned { document, .. })) => document,
                Ok(None) => {
                    tracing::warn!(job_id = %job, "a message for a job that does not exist; dropping it");
                    return Ok(Delivered::UnknownJob);
                }
                Err(RepositoryError::Corrupt(error)) => {
                    tracing::error!(job_id = %job, error = %Chain(&error), "a message for a job whose status document does not parse; dropping it");
                    return Ok(Delivered::Unreadable);
                }
                Err(error) => return Err(DeliveryError::Storage(error)),
            };
            if document.status.is_terminal() {
                tracing::info!(job_id = %job, status = %document.status, "a message for a job that is over");
                if document.callback_owed() {
                    self.deliver_callback(job, Some(self.stale_before()));
                }
                return Ok(Delivered::AlreadyOver(document.status));
            }
            if let Some(claimed) = self.claim_delivered(&document).await? {
                return match self.carry_out(claimed).await {
                    Ok(Some(status)) => Ok(Delivered::Ran(status)),
                    Ok(None) => Ok(Delivered::TakenOver),
                    Err(error) => Err(DeliveryError::Storage(error)),
                };
            }
            if started.elapsed() >= wait_at_most {
                tracing::info!(job_id = %job, "the job runs elsewhere, alive; leaving it to that worker");
                return Ok(Delivered::RunningElsewhere);
            }
            // Alive elsewhere: wait until it ends, or stops (then it is taken over here).
            let check_every = self.inner.options.heartbeat_every();
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return Err(DeliveryError::ShuttingDown),
                _ = tokio::time::sleep(check_every) => {}
            }
        }
    }

    /// Claims a delivered job that is waiting, or whose worker stopped. `None` when it runs
    /// elsewhere or someone else claimed it first.
    async fn claim_delivered(
        &self,
        document: &StatusDocument,
    ) -> Result<Option<StatusDocument>, DeliveryError> {
        let job = document.job_id;
        if document.status == JobStatus::Queued {
            return self
                .claim_submitted(job, document.attempts)
                .await
                .map_err(DeliveryError::Storage);
        }
        if document.updated_at > self.stale_before() {
            return Ok(None);
        }
        let repository = &self.inner.repository;
        let claim = self
            .with_storage_retries(|| {
                repository.claim_stale(job, self.stale_before(), status::now())
            })
            .await
            .map_err(DeliveryError::Storage)?;
        Ok(match claim {
            StaleClaim::Adopted(document) => {
                tracing::warn!(job_id = %job, attempt = document.attempts, "adopting a job whose worker stopped");
                Some(*document)
            }
            StaleClaim::Finished | StaleClaim::Declined => None,
        })
    }

    /// Queue dispatch's part of the stale-job scan: sends the message of a job that has sat
    /// still since `quiet_before` again, once. Returns whether it did.
    ///
    /// The message goes first and the mark after: a scan that dies in between only makes a
    /// second copy next time, which a delivery treats as the duplicate it is.
    pub(super) async fn requeue(
        &self,
        dispatch: &QueueDispatch,
        document: &StatusDocument,
        quiet_before: DateTime<Utc>,
    ) -> Result<bool, RepositoryError> {
        if document.requeued_at.is_some() || document.updated_at > quiet_before {
            return Ok(false);
        }
        let job = document.job_id;
        dispatch.send(job).await?;
        let marked = self
            .inner
            .repository
            .update(job, |doc| {
                doc.requeued_at = Some(status::now());
                Ok(())
            })
            .await;
        if let Err(error) = marked {
            tracing::warn!(job_id = %job, error = %Chain(&error), "sent a job's message again but could not record it");
        }
        tracing::warn!(job_id = %job, status = %document.status, "a job sat still with no message to run it; sent its message again");
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_message_names_its_job_in_every_form_the_host_binds_it() {
        let job = JobId::new();
        let text = JobMessage::text(job);
        let forms = [
            json!({ "job_id": job.to_string() }),
            Value::String(text.clone()),
            Value::String(serde_json::to_string(&text).unwrap()),
        ];
        for form in forms {
            assert_eq!(JobMessage::job_of(&form), Ok(job), "{form}");
        }
    }

    #[test]
    fn a_message_that_names_no_job_is_refused_with_a_reason() {
        for bad in [
            json!("not json"),
            json!({ "job_id": "not-a-uuid" }),
            json!({ "id": JobId::new().to_string() }),
            json!(7),
            Value::String(serde_json::to_string(&serde_json::to_string("\"x\"").unwrap()).unwrap()),
        ] {
            assert!(JobMessage::job_of(&bad).is_err(), "{bad}");
        }
    }
}
