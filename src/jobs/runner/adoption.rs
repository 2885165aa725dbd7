//! The stale-job scan: every instance that is a server looks, regularly, for jobs whose
//! status blob has sat still for `JOB_STALE_AFTER_SECONDS`.
//!
//! A terminal job found there may still owe its callback or its hand-off to the next stage,
//! which are delivered from here. What
//! becomes of a job that is not over is its dispatch's ([`Dispatch::quiet_job`]): inline, an
//! idle worker here adopts it; under queue dispatch its message is sent again, once, and the
//! job is ended if it sits still after that too.
//!
//! The scan only finds jobs. A worker that adopts one claims it (one conditional write) at the
//! moment it starts it ([`JobRunner::adopt`]), so a job is never claimed by an instance that
//! cannot run it yet.
//!
//! [`Dispatch::quiet_job`]: super::Dispatch::quiet_job

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::jobs::id::JobId;
use crate::jobs::repository::{status_blob, RepositoryError, StaleClaim, Versioned};
use crate::jobs::status;

use super::JobRunner;

impl JobRunner {
    /// At start and then every half `stale_after`: one scan.
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

    /// One scan: hands each quiet job that is not over, and not already this process's, to
    /// the dispatch. Returns how many it handed over or ended.
    ///
    /// Candidates come from one listing (status blobs not written for `stale_after`). Finished
    /// jobs are quiet too, and stay so until retention purges them: each is read once, then
    /// remembered, since a terminal state never changes, once it owes nothing this instance
    /// can deliver (an owed callback or hand-off whose sender is gone is delivered from here). A document that cannot be read is
    /// skipped with a warning (once), so it cannot stop the scan of the jobs listed after it.
    pub async fn adopt_stale_jobs(&self) -> Result<usize, RepositoryError> {
        let repository = &self.inner.repository;
        let dispatch = &self.inner.options.dispatch;
        let stale_before = self.stale_before();
        let quiet = repository.quiet_since(stale_before).await?;
        let candidates: Vec<JobId> = {
            let mut finished = self.inner.finished.lock().expect("finished lock");
            // Forget purged jobs.
            let listed: HashSet<JobId> = quiet.iter().copied().collect();
            finished.retain(|job| listed.contains(job));
            quiet
                .into_iter()
                .filter(|job| !finished.contains(job) && !dispatch.holds(*job))
                .collect()
        };
        let mut taken = 0;
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
                if self.owed_here(&document).is_empty() {
                    self.remember_finished(job);
                } else {
                    self.deliver_owed(&document, Some(stale_before));
                }
                continue;
            }
            if dispatch.quiet_job(self, &document).await? {
                taken += 1;
            }
        }
        Ok(taken)
    }

    /// A GetHotTopics run's scan, when the dispatch wants one at each run: how many jobs it
    /// handed over or ended; `None` when the dispatch wants none.
    pub async fn scan_at_timer_run(&self) -> Option<Result<usize, RepositoryError>> {
        if !self.inner.options.dispatch.scans_at_each_timer_run() {
            return None;
        }
        Some(self.adopt_stale_jobs().await)
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
            Ok(StaleClaim::Finished) => match self.load_if_owing(job).await {
                Ok(Some(document)) => self.deliver_owed(&document, Some(self.stale_before())),
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
