//! Delivering completion callbacks at least once, whichever instance is alive.
//!
//! [`CallbackDelivery`] claims, sends and records one job's owed callback. It reaches storage
//! only through [`StatusWrites`], the status writes of whoever runs it (the job runner, which
//! retries them as it retries every storage call), so the callback module knows nothing of the
//! runner: the runner starts a delivery as a tracked task and hands it what it needs.
//!
//! The callback owed is in the status document (`callback`, written with the terminal status).
//! The instance that ends a job claims its callback at once; any instance's stale-job scan
//! claims the callback of a job that ended at least `stale_after` ago and whose last claim has
//! lapsed. A claim is one conditional write, so one instance sends at a time; it is a lease
//! ([`crate::jobs::lease`]) the sender renews while it sends, and each request is recorded, so
//! a delivery is marked `delivered` once and then never sent again.
//!
//! What a receiver may still see twice: a request that succeeded but whose `delivered` mark was
//! never written (the sender was killed in between, or storage stayed away until shutdown), or a
//! request still in flight when its sender's lease lapsed (storage unreachable for longer than
//! `stale_after`). The body and its signature are the same each time, so a receiver can
//! recognise the repeat by `job_id`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::record::CallbackState;
use super::{CallbackSender, DELIVERY, MAX_ATTEMPTS};
use crate::jobs::id::JobId;
use crate::jobs::lease::writes::{keep_renewed, ClaimLost, StatusWrites};
use crate::jobs::repository::RepositoryError;
use crate::jobs::status::{self, TransitionError};
use crate::retry::{retry, Verdict};

/// What one delivery needs, and nothing more.
pub struct CallbackDelivery<'a, W> {
    /// Where the claim, its renewals and each attempt are written.
    pub writes: &'a W,
    pub sender: &'a CallbackSender,
    /// How long a claim holds unless renewed: the stale-job threshold, so a claim whose holder
    /// died lapses when its job would look stale.
    pub lease: chrono::Duration,
    /// How often the claim is renewed while sending (well within the lease).
    pub renew_every: Duration,
    /// Stops the retrying at shutdown; the claim then lapses and another instance sends.
    pub shutdown: &'a CancellationToken,
}

/// Why a delivery attempt ends the retrying or not.
enum Attempt {
    /// The request failed; another may succeed.
    Failed,
    /// Nothing more to do here: given up, claim lost, or storage gone.
    Over,
}

impl<W: StatusWrites> CallbackDelivery<'_, W> {
    /// Claims `job`'s owed callback and sends it until it is delivered, given up, or the claim
    /// is lost. `quiet_before`: `None` for the instance that ended the job; for a scan, the time
    /// before which the job must have ended for its callback to be taken over.
    pub async fn deliver_owed(&self, job: JobId, quiet_before: Option<DateTime<Utc>>) {
        let lease = self.lease;
        let claimed = self
            .writes
            .update(job, |doc| {
                doc.claim_callback(status::now(), lease, quiet_before)
            })
            .await;
        let (document, claim) = match claimed {
            Ok(claimed) => claimed,
            Err(RepositoryError::Transition(reason)) => {
                return tracing::debug!(reason = %reason, "no callback to send here")
            }
            Err(error) => {
                return tracing::error!(error = %crate::telemetry::Chain(&error), "could not claim the callback; another instance will send it")
            }
        };
        let Some(url) = &document.request.callback_url else {
            return;
        };
        let body = super::body(&document);
        let send = |_| async {
            let outcome = self.sender.attempt(url, &body).await;
            let recorded = self
                .writes
                .update(job, |doc| {
                    doc.callback_sent(claim, outcome.clone(), MAX_ATTEMPTS)
                })
                .await;
            match (outcome, recorded) {
                (Ok(()), Ok((document, _))) => {
                    let attempt = document.callback.map_or(0, |record| record.attempts);
                    tracing::info!(attempt, "completion callback delivered");
                    Ok(())
                }
                (Ok(()), Err(RepositoryError::NotFound)) => {
                    tracing::info!("completion callback delivered; the job is gone meanwhile");
                    Ok(())
                }
                (Ok(()), Err(error)) => {
                    tracing::warn!(error = %crate::telemetry::Chain(&error), "completion callback delivered, but not recorded; it may be sent again");
                    Ok(())
                }
                (Err(failure), Ok((document, state))) => {
                    let attempt = document.callback.map_or(0, |record| record.attempts);
                    tracing::warn!(attempt, failure = %failure, "completion callback failed");
                    if state == CallbackState::Abandoned {
                        tracing::error!(attempt, "completion callback given up");
                        Err(Attempt::Over)
                    } else {
                        Err(Attempt::Failed)
                    }
                }
                (Err(failure), Err(RepositoryError::Transition(reason))) => {
                    tracing::info!(failure = %failure, reason = %reason, "completion callback failed; another instance has it now");
                    Err(Attempt::Over)
                }
                (Err(failure), Err(error)) => {
                    tracing::error!(failure = %failure, error = %crate::telemetry::Chain(&error), "completion callback failed and could not be recorded");
                    Err(Attempt::Over)
                }
            }
        };
        let classify = |attempt: &Attempt| match attempt {
            Attempt::Failed => Verdict::Retry,
            Attempt::Over => Verdict::Final,
        };
        tokio::select! {
            _ = retry(&DELIVERY, Some(self.shutdown), send, classify, |_, _| {}) => {}
            lost = self.hold_claim(job, claim) => {
                if lost != TransitionError::NoCallbackOwed {
                    tracing::warn!(reason = %lost, "callback claim lost; stopping here");
                }
            }
        }
    }

    /// Renews claim number `claim` while the callback is being sent; returns only when the
    /// claim cannot be renewed.
    async fn hold_claim(&self, job: JobId, claim: u32) -> TransitionError {
        let lease = self.lease;
        let lost = keep_renewed(self.writes, job, self.renew_every, |doc| {
            doc.renew_callback_claim(claim, status::now(), lease)
        })
        .await;
        match lost {
            ClaimLost::Refused(reason) => reason,
            // Purged (or deleted by its receiver): nothing is owed any more.
            ClaimLost::JobGone => TransitionError::NoCallbackOwed,
            ClaimLost::Unrenewed(error) => {
                tracing::warn!(error = %crate::telemetry::Chain(&error), "could not renew the callback claim");
                TransitionError::Superseded
            }
        }
    }
}
