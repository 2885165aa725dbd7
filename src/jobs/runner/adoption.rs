//! Adopting the jobs of workers that died: a regular scan for jobs whose heartbeat stopped.
//!
//! The scan only finds them. It hands at most as many as this instance has idle workers to the
//! queue, and the worker that takes one claims it (one conditional write) at the moment it
//! starts it. A job is therefore never claimed by an instance that cannot run it yet: a claimed
//! job waiting in a queue would have no heartbeat, look stale again, be adopted by another
//! instance, and then run in two processes.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::jobs::id::JobId;
use crate::jobs::repository::{status_blob, RepositoryError, StaleClaim, Versioned};
use crate::jobs::status;

use super::{JobRunner, Start};

impl JobRunner {
    /// At start and then regularly: adopts jobs whose worker died.
    pub(super) async fn scan_for_stale_jobs(&self) {
        let mut every = tokio::time::interval(self.inner.options.scan_every());
        loop {
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            if let Err(error) = self.adopt_stale_jobs().await {
                tracing::warn!(error = %crate::telemetry::Chain(&error), "scan for stale jobs failed");
            }
        }
    }

    /// Jobs not written since this time have lost their worker.
    pub(super) fn stale_before(&self) -> DateTime<Utc> {
        status::now()
            - chrono::Duration::from_std(self.inner.options.stale_after).expect("a sane duration")
    }

    /// Queue dispatch: a job quiet since this time has no message left to bring it a worker.
    /// A message held by a worker that died is visible again within `stale_after` (standalone)
    /// or the host's visibility timeout, and its delivery takes the job over; a job still
    /// quiet after twice `stale_after` lost its message, or its message waits behind a long
    /// backlog (then the copy costs one extra delivery, once).
    fn requeue_before(&self) -> DateTime<Utc> {
        status::now()
            - chrono::Duration::from_std(self.inner.options.stale_after * 2)
                .expect("a sane duration")
    }

    /// Workers that could start a job now: neither running one nor about to take one that
    /// waits in the queue.
    fn idle_workers(&self) -> usize {
        let queue = self.inner.queue.lock().expect("queue lock");
        self.inner
            .options
            .max_concurrent_jobs
            .saturating_sub(queue.busy + queue.waiting.len())
    }

    /// One scan: queues stale jobs not already ours, at most one per idle worker, for the
    /// workers to claim. Returns how many were queued.
    ///
    /// Candidates come from one listing (status blobs not written for `stale_after`). Finished
    /// jobs are quiet too, and stay so until retention purges them: each is read once, then
    /// remembered, since a terminal state never changes, once no callback is owed for it (an
    /// owed callback whose sender is gone is delivered from here). A document that cannot be read is
    /// skipped with a warning (once), so it cannot stop the scan of the jobs listed after it.
    pub async fn adopt_stale_jobs(&self) -> Result<usize, RepositoryError> {
        let repository = &self.inner.repository;
        let mut idle = self.idle_workers();
        let stale_before = self.stale_before();
        let quiet = repository.quiet_since(stale_before).await?;
        let candidates: Vec<JobId> = {
            let queue = self.inner.queue.lock().expect("queue lock");
            let mut finished = self.inner.finished.lock().expect("finished lock");
            // Forget purged jobs.
            let listed: HashSet<JobId> = quiet.iter().copied().collect();
            finished.retain(|job| listed.contains(job));
            quiet
                .into_iter()
                .filter(|job| !queue.ours.contains(job) && !finished.contains(job))
                .collect()
        };
        let mut queued = 0;
        for job in candidates {
            let document = match repository.load(job).await {
                Ok(Some(Versioned { document, .. })) => document,
                Ok(None) => continue,
                Err(RepositoryError::Corrupt(error)) => {
                    tracing::warn!(
                        blob = %status_blob(job),
                        error = %crate::telemetry::Chain(&error),
                        "skipping a status document that does not parse"
                    );
                    self.remember_finished(job);
                    continue;
                }
                Err(error) => return Err(error),
            };
            if document.status.is_terminal() {
                if document.callback_owed() {
                    self.deliver_callback(job, Some(stale_before));
                } else {
                    self.remember_finished(job);
                }
                continue;
            }
            if let Some(dispatch) = self.queue_dispatch() {
                // Under queue dispatch a job's message, not this scan, brings it a worker; only
                // a job with no message left needs one sent again.
                if self
                    .requeue(dispatch, &document, self.requeue_before())
                    .await?
                {
                    queued += 1;
                }
                continue;
            }
            if idle == 0 || document.updated_at > stale_before {
                continue;
            }
            if self
                .enqueue(job, document.request.priority, Start::Stale)
                .is_some()
            {
                tracing::info!(job_id = %job, status = %document.status, "found a job whose worker stopped");
                idle -= 1;
                queued += 1;
            }
        }
        Ok(queued)
    }

    /// Claims a job the scan found stale, now that a worker is free for it, and runs it. The
    /// claim re-checks that the job is still stale: its worker may have been slow, not dead,
    /// or another instance may have adopted it since the scan.
    pub(super) async fn adopt(&self, job: JobId) {
        let repository = &self.inner.repository;
        let claim = self
            .with_storage_retries(|| {
                repository.claim_stale(job, self.stale_before(), status::now())
            })
            .await;
        match claim {
            Ok(StaleClaim::Adopted(document)) => {
                tracing::warn!(status = %document.status, attempt = document.attempts, "adopting a job whose worker stopped");
                // The outcome is logged where it happens.
                let _ = self.carry_out(*document).await;
            }
            Ok(StaleClaim::Finished) => match self.callback_owed(job).await {
                Ok(true) => self.deliver_callback(job, Some(self.stale_before())),
                _ => self.remember_finished(job),
            },
            Ok(StaleClaim::Declined) => {
                tracing::info!("the job is no longer stale; not adopting it")
            }
            Err(error) => {
                tracing::warn!(error = %crate::telemetry::Chain(&error), "could not adopt the job")
            }
        }
    }

    fn remember_finished(&self, job: JobId) {
        self.inner
            .finished
            .lock()
            .expect("finished lock")
            .insert(job);
    }
}
