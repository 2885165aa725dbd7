//! Delivering completion callbacks at least once, whichever instance is alive.
//!
//! The callback owed is in the status document (`callback`, written with the terminal status).
//! The instance that ends a job claims its callback at once; any instance's stale-job scan
//! claims the callback of a job that ended at least `stale_after` ago and whose last claim has
//! lapsed. A claim is one conditional write, so one instance sends at a time; it is a lease the
//! sender renews while it sends, and each request is recorded, so a delivery is marked
//! `delivered` once and then never sent again.
//!
//! What a receiver may still see twice: a request that succeeded but whose `delivered` mark was
//! never written (the sender was killed in between, or storage stayed away until shutdown), or a
//! request still in flight when its sender's lease lapsed (storage unreachable for longer than
//! `stale_after`). The body and its signature are the same each time, so a receiver can
//! recognise the repeat by `job_id`.

use chrono::{DateTime, Utc};
use tracing::Instrument;

use super::JobRunner;
use crate::jobs::callback::{self, CallbackState, DELIVERY, MAX_ATTEMPTS};
use crate::jobs::id::JobId;
use crate::jobs::repository::RepositoryError;
use crate::jobs::status::{self, TransitionError};
use crate::retry::{retry, Verdict};

/// Why a delivery attempt ends the retrying or not.
enum Attempt {
    /// The request failed; another may succeed.
    Failed,
    /// Nothing more to do here: given up, claim lost, or storage gone.
    Over,
}

impl JobRunner {
    /// Delivers `job`'s callback, if one is owed and this instance can claim it, as a tracked
    /// task. `quiet_before`: `None` for the instance that ended the job; for a scan, the time
    /// before which the job must have ended for its callback to be taken over.
    pub(super) fn deliver_callback(&self, job: JobId, quiet_before: Option<DateTime<Utc>>) {
        if !self
            .inner
            .delivering
            .lock()
            .expect("delivering lock")
            .insert(job)
        {
            return;
        }
        let this = self.clone();
        let span = tracing::info_span!("callback", job_id = %job);
        self.inner.tracker.spawn(
            async move {
                tokio::select! {
                    // Abandoned on purpose: the claim lapses and another instance (or this
                    // one, restarted) sends the callback.
                    _ = this.inner.shutdown.cancelled() => {}
                    _ = this.deliver_owed(job, quiet_before) => {}
                }
                this.inner
                    .delivering
                    .lock()
                    .expect("delivering lock")
                    .remove(&job);
            }
            .instrument(span),
        );
    }

    /// Whether the stored `job` still owes its callback.
    pub(super) async fn callback_owed(&self, job: JobId) -> Result<bool, RepositoryError> {
        Ok(self
            .inner
            .repository
            .load(job)
            .await?
            .is_some_and(|versioned| versioned.document.callback_owed()))
    }

    fn callback_lease(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.inner.options.stale_after).expect("a sane duration")
    }

    async fn deliver_owed(&self, job: JobId, quiet_before: Option<DateTime<Utc>>) {
        let lease = self.callback_lease();
        let claimed = self
            .update(job, |doc| {
                doc.claim_callback(status::now(), lease, quiet_before)
                    .map(drop)
            })
            .await;
        let document = match claimed {
            Ok(document) => document,
            Err(RepositoryError::Transition(reason)) => {
                return tracing::debug!(reason = %reason, "no callback to send here")
            }
            Err(error) => {
                return tracing::error!(error = %crate::telemetry::Chain(&error), "could not claim the callback; another instance will send it")
            }
        };
        let (Some(url), Some(record)) = (&document.request.callback_url, &document.callback) else {
            return;
        };
        let claim = record.claims;
        let body = callback::body(&document);
        let send = |_| async {
            let outcome = self.inner.options.callbacks.attempt(url, &body).await;
            let recorded = self
                .with_storage_retries(|| {
                    self.inner.repository.update(job, |doc| {
                        doc.callback_sent(claim, outcome.clone(), MAX_ATTEMPTS)
                    })
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
            _ = retry(&DELIVERY, Some(&self.inner.shutdown), send, classify, |_, _| {}) => {}
            lost = self.hold_callback_claim(job, claim) => {
                if lost != TransitionError::NoCallbackOwed {
                    tracing::warn!(reason = %lost, "callback claim lost; stopping here");
                }
            }
        }
    }

    /// Renews claim number `claim` while the callback is being sent; returns only when the
    /// claim cannot be renewed.
    async fn hold_callback_claim(&self, job: JobId, claim: u32) -> TransitionError {
        let lease = self.callback_lease();
        let mut every = tokio::time::interval(self.inner.options.heartbeat_every());
        every.tick().await;
        loop {
            every.tick().await;
            match self
                .update(job, |doc| {
                    doc.renew_callback_claim(claim, status::now(), lease)
                })
                .await
            {
                Ok(_) => {}
                Err(RepositoryError::Transition(reason)) => return reason,
                // Purged (or deleted by its receiver): nothing is owed any more.
                Err(RepositoryError::NotFound) => return TransitionError::NoCallbackOwed,
                Err(error) => {
                    tracing::warn!(error = %crate::telemetry::Chain(&error), "could not renew the callback claim");
                    return TransitionError::Superseded;
                }
            }
        }
    }
}
