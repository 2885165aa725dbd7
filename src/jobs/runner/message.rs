//! A job's message and what one delivery of it does, whichever listener delivers it: the
//! host's (`RunJob`) or standalone mode's own (queue dispatch, docs/api.md section 9).
//!
//! A delivery resumes the job from its status document, waits for it when it runs elsewhere,
//! takes it over when that worker stopped, and, on the last delivery, ends the job `failed`
//! with the cause before the message goes to the poison queue.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{JobRunner, WATCH_EVERY};
use crate::jobs::id::JobId;
use crate::jobs::repository::{RepositoryError, StaleClaim, Versioned};
use crate::jobs::status::{self, JobStatus, StatusDocument, TransitionError};
use crate::jobs::usage;
use crate::meter;
use crate::telemetry::Chain;

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

impl JobRunner {
    /// One delivery of `job`'s message, the `dequeue_count`-th. Returns when the job is
    /// terminal (or cannot be run by anyone); an error asks for the message to be delivered
    /// again. On the last delivery an error first ends the job `failed` with its cause.
    pub async fn run_delivered(
        &self,
        job: JobId,
        dequeue_count: u32,
    ) -> Result<Delivered, DeliveryError> {
        meter::metered(
            usage::meter_for(job),
            self.run_delivered_metered(job, dequeue_count),
        )
        .await
    }

    /// [`Self::run_delivered`], metered as the job's work.
    async fn run_delivered_metered(
        &self,
        job: JobId,
        dequeue_count: u32,
    ) -> Result<Delivered, DeliveryError> {
        let delivered = self.deliver(job).await;
        if let Err(error) = &delivered {
            if dequeue_count >= self.inner.options.dispatch.last_delivery() {
                let reason = last_delivery_error(error, dequeue_count);
                match self
                    .update(job, |doc| doc.fail(reason.clone(), status::now()))
                    .await
                {
                    Ok(document) => {
                        tracing::error!(job_id = %job, error = %reason, "ended the job failed on its last delivery");
                        self.deliver_owed(&document, None);
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
        let mut waiting = false;
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
                self.deliver_owed(&document, Some(self.stale_before()));
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
            if !waiting {
                waiting = true;
                tracing::info!(job_id = %job, "the job runs elsewhere, alive; waiting for it to end or stop");
            }
            // Alive elsewhere: wait until it ends (this delivery then answers within about a
            // second, not holding its slot for a heartbeat's time), or stops (then it is taken
            // over here). One read a second is cheap beside the job it waits for.
            let check_every = WATCH_EVERY.min(self.inner.options.heartbeat_every());
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
