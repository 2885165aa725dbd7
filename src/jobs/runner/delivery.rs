//! The runner's part in delivering completion callbacks: one tracked task per job whose
//! callback this instance tries to deliver, running a [`CallbackDelivery`] with the runner's
//! status writes, sender, lease and shutdown. How a callback is delivered at least once, across
//! instances, is `jobs/callback/delivery.rs`.

use chrono::{DateTime, Utc};
use tracing::Instrument;

use super::JobRunner;
use crate::jobs::callback::delivery::{CallbackDelivery, StatusWrites};
use crate::jobs::id::JobId;
use crate::jobs::repository::RepositoryError;
use crate::jobs::status::{StatusDocument, TransitionError};
use crate::jobs::usage;
use crate::meter;

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
                let delivery = this.callback_delivery();
                let deliver = delivery.deliver_owed(job, quiet_before);
                tokio::select! {
                    // Abandoned on purpose: the claim lapses and another instance (or this
                    // one, restarted) sends the callback.
                    _ = this.inner.shutdown.cancelled() => {}
                    _ = meter::metered(usage::meter_for(job), deliver) => {}
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

    /// A delivery with this runner's status writes, sender, lease (`stale_after`) and shutdown.
    fn callback_delivery(&self) -> CallbackDelivery<'_, Self> {
        let options = &self.inner.options;
        CallbackDelivery {
            writes: self,
            sender: &options.callbacks,
            lease: chrono::Duration::from_std(options.stale_after).expect("a sane duration"),
            renew_every: options.heartbeat_every(),
            shutdown: &self.inner.shutdown,
        }
    }
}

/// A delivery's writes are the runner's: retried as long as the runner retries storage calls.
impl StatusWrites for JobRunner {
    async fn update<T, F>(
        &self,
        job: JobId,
        change: F,
    ) -> Result<(StatusDocument, T), RepositoryError>
    where
        T: Send,
        F: Fn(&mut StatusDocument) -> Result<T, TransitionError> + Send + Sync,
    {
        let repository = &self.inner.repository;
        self.with_storage_retries(|| repository.update(job, &change))
            .await
    }
}
