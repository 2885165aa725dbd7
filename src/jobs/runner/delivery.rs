//! The runner's part in what an ended job still owes: its completion callback and its hand-off
//! to the next stage. One tracked task per job and kind that this instance tries to deliver,
//! running a [`CallbackDelivery`] or a [`HandoffDelivery`] with the runner's status writes,
//! lease and shutdown. How each is delivered across instances is in its own module
//! (`jobs/callback/delivery.rs`, `jobs/handoff/delivery.rs`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::Instrument;

use super::JobRunner;
use crate::jobs::callback::delivery::CallbackDelivery;
use crate::jobs::handoff::delivery::HandoffDelivery;
use crate::jobs::id::JobId;
use crate::jobs::lease::writes::StatusWrites;
use crate::jobs::repository::RepositoryError;
use crate::jobs::status::{StatusDocument, TransitionError};
use crate::jobs::usage;
use crate::meter;

/// What an ended job may owe, each delivered by a task of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Owed {
    Callback,
    Handoff,
}

impl JobRunner {
    /// Delivers what the ended `document` owes and this instance can deliver. `quiet_before`:
    /// `None` for the instance that ended the job; for a scan, the time before which the job
    /// must have ended for what it owes to be taken over.
    pub(super) fn deliver_owed(
        &self,
        document: &StatusDocument,
        quiet_before: Option<DateTime<Utc>>,
    ) {
        for owed in self.owed_here(document) {
            self.spawn_delivery(document.job_id, owed, quiet_before);
        }
    }

    /// Tries to deliver whatever the stored `job` owes, for an instance that ended it (or saw it
    /// end) without reading it: each delivery reads the record and claims only what is owed.
    pub(super) fn deliver_whatever_is_owed(&self, job: JobId) {
        self.spawn_delivery(job, Owed::Callback, None);
        if self.inner.options.handoff.is_some() {
            self.spawn_delivery(job, Owed::Handoff, None);
        }
    }

    /// What the ended `document` owes that this instance can deliver. A hand-off owed while
    /// this instance has no completion queue (`COMPLETION_QUEUE` unset here) is left to an
    /// instance that has one.
    pub(super) fn owed_here(&self, document: &StatusDocument) -> Vec<Owed> {
        let mut owed = Vec::new();
        if document.callback_owed() {
            owed.push(Owed::Callback);
        }
        if document.handoff_owed() && self.inner.options.handoff.is_some() {
            owed.push(Owed::Handoff);
        }
        owed
    }

    /// Delivers `job`'s `owed`, if this instance can claim it, as a tracked task: at most one
    /// per job and kind at a time.
    fn spawn_delivery(&self, job: JobId, owed: Owed, quiet_before: Option<DateTime<Utc>>) {
        if !self
            .inner
            .delivering
            .lock()
            .expect("delivering lock")
            .insert((job, owed))
        {
            return;
        }
        let this = self.clone();
        let span = match owed {
            Owed::Callback => tracing::info_span!("callback", job_id = %job),
            Owed::Handoff => tracing::info_span!("handoff", job_id = %job),
        };
        self.inner.deliveries.spawn(
            async move {
                let delivery = async {
                    match owed {
                        Owed::Callback => {
                            this.callback_delivery()
                                .deliver_owed(job, quiet_before)
                                .await
                        }
                        Owed::Handoff => {
                            if let Some(delivery) = this.handoff_delivery() {
                                delivery.deliver_owed(job, quiet_before).await;
                            }
                        }
                    }
                };
                tokio::select! {
                    // Abandoned on purpose: the claim lapses and another instance (or this
                    // one, restarted) delivers it.
                    _ = this.inner.shutdown.cancelled() => {}
                    _ = meter::metered(usage::meter_for(job), delivery) => {}
                }
                this.inner
                    .delivering
                    .lock()
                    .expect("delivering lock")
                    .remove(&(job, owed));
            }
            .instrument(span),
        );
    }

    /// Delivers what `job`, which this process ended, still owes, waiting for at most `limit`:
    /// for a process about to stop after its own job (`handler collect`), so that it sends
    /// what its job owes rather than leave it to another instance's scan.
    pub async fn finish_owed(&self, job: JobId, limit: Duration) {
        // The deliveries the job's end started are under way already, and are not doubled.
        self.deliver_whatever_is_owed(job);
        self.inner.deliveries.close();
        if tokio::time::timeout(limit, self.inner.deliveries.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "deliveries still under way; another instance's stale-job scan finishes them"
            );
        }
        self.inner.deliveries.reopen();
    }

    /// The stored `job`, when it still owes something this instance can deliver.
    pub(super) async fn load_if_owing(
        &self,
        job: JobId,
    ) -> Result<Option<StatusDocument>, RepositoryError> {
        Ok(self
            .inner
            .repository
            .load(job)
            .await?
            .map(|versioned| versioned.document)
            .filter(|document| !self.owed_here(document).is_empty()))
    }

    /// A callback delivery with this runner's status writes, sender, lease (`stale_after`) and
    /// shutdown.
    fn callback_delivery(&self) -> CallbackDelivery<'_, Self> {
        let options = &self.inner.options;
        CallbackDelivery {
            writes: self,
            sender: &options.callbacks,
            lease: self.lease(),
            renew_every: options.heartbeat_every(),
            shutdown: &self.inner.shutdown,
        }
    }

    /// A hand-off delivery to this runner's completion queue, with its status writes, lease
    /// (`stale_after`), storage retries and shutdown; `None` without a completion queue.
    fn handoff_delivery(&self) -> Option<HandoffDelivery<'_, Self>> {
        let options = &self.inner.options;
        let handoff = options.handoff.as_ref()?;
        Some(HandoffDelivery {
            writes: self,
            queue: handoff.queue.as_ref(),
            container: &handoff.container,
            lease: self.lease(),
            renew_every: options.heartbeat_every(),
            send_retries: options.storage_backoff(),
            shutdown: &self.inner.shutdown,
        })
    }

    /// How long a claim on owed work holds unless renewed: `stale_after`, so a claim whose
    /// holder died lapses when its job would look stale.
    fn lease(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.inner.options.stale_after).expect("a sane duration")
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
