//! Adopting the jobs of workers that died: a regular scan for jobs whose heartbeat stopped,
//! each claimed with a conditional write and resumed here.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::jobs::id::JobId;
use crate::jobs::repository::{RepositoryError, StaleClaim};
use crate::jobs::status;

use super::JobRunner;

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

    /// One scan: claims each stale job not already ours and queues it. Returns how many.
    ///
    /// Candidates come from one listing (status blobs not written for `stale_after`). Finished
    /// jobs are quiet too, and stay so until retention purges them: each is read once, then
    /// remembered, since a terminal state never changes.
    pub async fn adopt_stale_jobs(&self) -> Result<usize, RepositoryError> {
        let repository = &self.inner.repository;
        let now = status::now();
        let stale_before: DateTime<Utc> = now
            - chrono::Duration::from_std(self.inner.options.stale_after).expect("a sane duration");
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
        let mut adopted = 0;
        for job in candidates {
            match repository.claim_stale(job, stale_before, now).await? {
                StaleClaim::Adopted(document) => {
                    let queue_depth = self.enqueue(&document, true);
                    tracing::warn!(job_id = %job, status = %document.status, attempt = document.attempts, queue_depth, "adopting a job whose worker stopped");
                    adopted += 1;
                }
                StaleClaim::Finished => {
                    self.inner
                        .finished
                        .lock()
                        .expect("finished lock")
                        .insert(job);
                }
                StaleClaim::Declined => {}
            }
        }
        Ok(adopted)
    }
}
