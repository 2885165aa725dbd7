//! Sending a job's hand-off once, whichever instance is alive.
//!
//! [`HandoffDelivery`] claims, sends and records one job's owed hand-off. It reaches the status
//! document only through [`StatusWrites`] (the runner's status writes, retried as the runner
//! retries every storage call), so this module knows nothing of the runner, which starts a
//! delivery as a tracked task and hands it what it needs.
//!
//! The instance that ends a job claims its hand-off at once; any instance's stale-job scan
//! claims the hand-off of a job that ended at least `stale_after` ago and whose last claim has
//! lapsed. A claim is one conditional write, so one instance sends at a time; it is a lease the
//! sender renews while it sends (storage may make it wait), and `sent` is recorded with a
//! conditional write once the queue has taken the message, after which no instance sends it
//! again.
//!
//! What the next stage may still see twice: a message whose `sent` mark was never written (its
//! sender was killed between the send and the mark, or storage stayed away until shutdown), or a
//! send still under way when its sender's lease lapsed (storage unreachable for longer than
//! `stale_after`). Both copies are the same message, so a consumer recognises the repeat by
//! `job_id`. A send that fails for good (the queue refuses this app) leaves the hand-off owed,
//! and a later scan tries again once the claim lapses.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::HandoffMessage;
use crate::jobs::id::JobId;
use crate::jobs::lease::writes::{keep_renewed, ClaimLost, StatusWrites};
use crate::jobs::repository::RepositoryError;
use crate::jobs::status;
use crate::retry::{retry, Backoff};
use crate::store::queue::MessageQueue;
use crate::store::StoreError;
use crate::telemetry::Chain;

/// What one hand-off needs, and nothing more.
pub struct HandoffDelivery<'a, W> {
    /// Where the claim, its renewals and the `sent` mark are written.
    pub writes: &'a W,
    /// The completion queue.
    pub queue: &'a dyn MessageQueue,
    /// The container the message names.
    pub container: &'a str,
    /// How long a claim holds unless renewed: the stale-job threshold, so a claim whose holder
    /// died lapses when its job would look stale.
    pub lease: chrono::Duration,
    /// How often the claim is renewed while sending (well within the lease).
    pub renew_every: Duration,
    /// How a send that failed for a reason that may pass is tried again.
    pub send_retries: Backoff,
    /// Stops the retrying at shutdown; the claim then lapses and another instance sends.
    pub shutdown: &'a CancellationToken,
}

impl<W: StatusWrites> HandoffDelivery<'_, W> {
    /// Claims `job`'s owed hand-off, sends it and records it sent, unless the claim is lost
    /// first. `quiet_before`: `None` for the instance that ended the job; for a scan, the time
    /// before which the job must have ended for its hand-off to be taken over.
    pub async fn deliver_owed(&self, job: JobId, quiet_before: Option<DateTime<Utc>>) {
        let lease = self.lease;
        let claimed = self
            .writes
            .update(job, |doc| {
                doc.claim_handoff(status::now(), lease, quiet_before)
            })
            .await;
        let (document, claim) = match claimed {
            Ok(claimed) => claimed,
            Err(RepositoryError::Transition(reason)) => {
                return tracing::debug!(reason = %reason, "no hand-off to send here")
            }
            Err(error) => {
                return tracing::error!(error = %Chain(&error), "could not claim the hand-off; another instance will send it")
            }
        };
        let Some(message) = HandoffMessage::of(&document, self.container) else {
            return;
        };
        let renewed = keep_renewed(self.writes, job, self.renew_every, |doc| {
            doc.renew_handoff_claim(claim, status::now(), lease)
        });
        tokio::select! {
            _ = self.send_and_record(job, &message) => {}
            lost = renewed => match lost {
                ClaimLost::Refused(reason) => tracing::warn!(reason = %reason, "hand-off claim lost; stopping here"),
                ClaimLost::JobGone => tracing::info!("the job is gone; its hand-off is no longer owed"),
                ClaimLost::Unrenewed(error) => tracing::warn!(error = %Chain(&error), "could not renew the hand-off claim; stopping here"),
            },
        }
    }

    /// Puts `message` on the queue, retrying while the failure may pass, then records it sent.
    async fn send_and_record(&self, job: JobId, message: &HandoffMessage) {
        let text = message.text();
        let sent = retry(
            &self.send_retries,
            Some(self.shutdown),
            |_| crate::store::retried_by_caller(self.queue.send(&text)),
            StoreError::verdict,
            |error, retrying| tracing::warn!(error = %Chain(error), wait_ms = retrying.wait.as_millis() as u64, "could not put the hand-off on the queue; retrying"),
        )
        .await;
        if let Err(error) = sent {
            return tracing::error!(error = %Chain(&error), queue = self.queue.name(), "could not put the hand-off on the queue; a stale-job scan tries again");
        }
        match self.writes.update(job, |doc| doc.handoff_sent()).await {
            Ok(_) => {
                tracing::info!(queue = self.queue.name(), status = %message.status, blobs = message.blob_names.len(), "hand-off sent")
            }
            Err(RepositoryError::NotFound) => {
                tracing::info!("hand-off sent; the job is gone meanwhile")
            }
            Err(error) => {
                tracing::warn!(error = %Chain(&error), "hand-off sent, but not recorded; it may be sent again")
            }
        }
    }
}
