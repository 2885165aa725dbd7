//! Queue dispatch (`JOB_DISPATCH=queue`, docs/api.md section 9): a job is a message
//! `{"job_id": "<id>"}` on a Storage queue, and whichever instance takes the message runs the
//! job, to a terminal state, before the message is deleted.
//!
//! - A ticket sends the message after the status document is stored; when it cannot, the
//!   runner ends the job `failed` (a conditional write) and the caller gets a 503.
//! - Each delivery, under the host (`RunJob`) or from standalone mode's own listener
//!   ([`listener`]), is [`JobRunner::run_delivered`].
//! - The stale-job scan looks for jobs that sat still for long ([`QueueDispatch::quiet_job`]):
//!   their process died between the status write and the send, or every delivery of their
//!   message failed and it went to the poison queue. Such a job's message is sent again, once
//!   (`requeued_at`); a job still quiet once that copy's deliveries are spent is ended
//!   `failed`, naming the cause, so that no job stays `queued` forever.

mod listener;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tracing::Instrument;

use super::dispatch::Dispatch;
use super::message::JobMessage;
use super::JobRunner;
use crate::jobs::id::JobId;
use crate::jobs::metrics::QueueDepth;
use crate::jobs::repository::RepositoryError;
use crate::jobs::status::{self, StatusDocument, TransitionError};
use crate::meter::{Reading, Request};
use crate::store::queue::MessageQueue;
use crate::store::StoreError;
use crate::telemetry::Chain;

/// The queues of queue dispatch and how their messages are treated.
#[derive(Clone)]
pub struct QueueDispatch {
    queue: Arc<dyn MessageQueue>,
    /// Where a message goes after its last delivery failed (`<queue>-poison`).
    poison: Arc<dyn MessageQueue>,
    listener: ListenerSettings,
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

impl std::fmt::Debug for QueueDispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueDispatch")
            .field("queue", &self.queue.describe())
            .field("poison", &self.poison.describe())
            .field("listener", &self.listener)
            .finish()
    }
}

impl QueueDispatch {
    /// Jobs go to `queue`; a message whose last delivery failed goes to `poison`.
    pub fn new(
        queue: Arc<dyn MessageQueue>,
        poison: Arc<dyn MessageQueue>,
        listener: ListenerSettings,
    ) -> Self {
        Self {
            queue,
            poison,
            listener,
        }
    }

    async fn send(&self, job: JobId) -> Result<(), StoreError> {
        self.queue.send(&JobMessage::text(job)).await
    }

    /// A job quiet since this time has no message left to bring it a worker. A message held
    /// by a worker that died is visible again within `stale_after` (standalone) or the host's
    /// visibility timeout, and its delivery takes the job over; a job still quiet after twice
    /// `stale_after` lost its message, or its message waits behind a long backlog (then the
    /// copy costs one extra delivery, once).
    fn requeue_before(stale_after: Duration) -> DateTime<Utc> {
        status::now() - chrono::Duration::from_std(stale_after * 2).expect("a sane duration")
    }

    /// A job whose one copy was sent at this time, and that has been quiet since, is given up:
    /// every delivery of the copy has had its chance by then. Each delivery tries storage for
    /// `stale_after` before it fails, and a failed one is delivered again after
    /// `visibilityTimeout`, up to `maxDequeueCount` times; never sooner than the wait before
    /// the copy was sent.
    fn give_up_before(&self, stale_after: Duration) -> DateTime<Utc> {
        let deliveries =
            (stale_after + self.listener.visibility_timeout) * self.listener.max_dequeue_count;
        let patience = deliveries.max(stale_after * 2);
        status::now() - chrono::Duration::from_std(patience).expect("a sane duration")
    }

    /// The error of a job given up after its copy was sent.
    fn given_up(&self, requeued_at: DateTime<Utc>) -> String {
        format!(
            "The job could not be run: no delivery of its message ran it, nor of the copy sent \
             again at {} (their messages failed or were lost; see the queue {}).",
            requeued_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            self.poison.name()
        )
    }

    /// Sends the message of a job quiet since `quiet_before` again, once.
    ///
    /// The message goes first and the mark after: a scan that dies in between only makes a
    /// second copy next time, which a delivery treats as the duplicate it is.
    async fn requeue(
        &self,
        runner: &JobRunner,
        document: &StatusDocument,
    ) -> Result<bool, RepositoryError> {
        let job = document.job_id;
        self.send(job).await?;
        let marked = runner
            .inner
            .repository
            .update(job, |doc| {
                doc.internals.requeued_at = Some(status::now());
                Ok(())
            })
            .await;
        if let Err(error) = marked {
            tracing::warn!(job_id = %job, error = %Chain(&error), "sent a job's message again but could not record it");
        }
        tracing::warn!(job_id = %job, status = %document.status, "a job sat still with no message to run it; sent its message again");
        Ok(true)
    }

    /// Ends a job whose copy was spent, as long as nothing has touched it since the scan read
    /// it (a delivery that claimed it meanwhile writes `attempts` and `updated_at`).
    async fn give_up(
        &self,
        runner: &JobRunner,
        seen: &StatusDocument,
        requeued_at: DateTime<Utc>,
    ) -> Result<bool, RepositoryError> {
        let job = seen.job_id;
        let reason = self.given_up(requeued_at);
        let ended = runner
            .inner
            .repository
            .update(job, |doc| {
                if doc.attempts != seen.attempts || doc.updated_at != seen.updated_at {
                    return Err(TransitionError::Superseded);
                }
                doc.fail(reason.clone(), status::now())
            })
            .await;
        match ended {
            Ok((document, ())) => {
                tracing::error!(job_id = %job, error = %reason, "a job sat still after its message was sent again; ended it failed");
                runner.deliver_owed(&document, None);
                Ok(true)
            }
            Err(RepositoryError::Transition(reason)) => {
                tracing::info!(job_id = %job, reason = %reason, "a quiet job moved meanwhile; leaving it");
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }
}

#[async_trait]
impl Dispatch for QueueDispatch {
    fn name(&self) -> &'static str {
        "queue"
    }

    fn start(self: Arc<Self>, runner: &JobRunner) {
        // Under the host its queue listener delivers the messages (`RunJob`).
        if !runner.inner.options.process.takes_messages() {
            return;
        }
        let listening = runner.clone();
        runner.inner.tracker.spawn(
            async move { listening.listen(&self).await }
                .instrument(tracing::info_span!("queue_listener")),
        );
    }

    async fn hand_over(
        &self,
        _runner: &JobRunner,
        document: &StatusDocument,
    ) -> Result<(), StoreError> {
        let id = document.job_id;
        self.send(id).await?;
        tracing::info!(job_id = %id, topics = document.request.topics.len(), queue = self.queue.name(), "job accepted and queued");
        Ok(())
    }

    fn hand_over_requests(&self) -> Reading {
        // The message's send.
        Reading::one(Request::Queue)
    }

    fn repeat_hands_over(&self) -> bool {
        // Its message was sent, or the stale-job scan sends it: a repeat sends no copy.
        false
    }

    async fn quiet_job(
        &self,
        runner: &JobRunner,
        document: &StatusDocument,
    ) -> Result<bool, RepositoryError> {
        // A job's message, not this scan, brings it a worker; only a job with no message left
        // needs one sent again, and one whose copy was spent too is over.
        let stale_after = runner.inner.options.stale_after;
        match document.internals.requeued_at {
            None if document.updated_at <= Self::requeue_before(stale_after) => {
                self.requeue(runner, document).await
            }
            Some(requeued_at)
                if document.updated_at.max(requeued_at) <= self.give_up_before(stale_after) =>
            {
                self.give_up(runner, document, requeued_at).await
            }
            _ => Ok(false),
        }
    }

    fn storage_retry_budget(&self, stale_after: Duration) -> Option<Duration> {
        // A delivered job gives up after `stale_after`, so its delivery fails and the message
        // is delivered again (or, the last time, the job ends `failed`).
        Some(stale_after)
    }

    fn last_delivery(&self) -> u32 {
        self.listener.max_dequeue_count
    }

    fn scans_at_each_timer_run(&self) -> bool {
        // On a plan that scales to zero no instance may be up to scan between timer runs.
        true
    }

    async fn queue_depth(&self) -> Option<QueueDepth> {
        let (jobs, poison) = tokio::join!(
            message_count(self.queue.as_ref()),
            message_count(self.poison.as_ref())
        );
        Some(QueueDepth { jobs, poison })
    }
}

/// `queue`'s approximate message count, or `None` when storage does not give it: the reason
/// is logged here, once, and the metrics answer shows `null` for it.
async fn message_count(queue: &dyn MessageQueue) -> Option<u64> {
    match queue.approximate_message_count().await {
        Ok(count) => Some(count),
        Err(error) => {
            tracing::warn!(queue = queue.name(), error = %Chain(&error), "could not count the queue's messages; the metrics show null for it");
            None
        }
    }
}
