//! Inline dispatch (`JOB_DISPATCH=inline`, the default): a job runs as a tracked task of the
//! process that accepted it. `MAX_CONCURRENT_JOBS` worker tasks take the jobs waiting in this
//! process, high priority first, then the oldest ([`waiting`]). The stale-job scan hands a job
//! whose worker stopped to an idle worker here, at most one per idle worker, and that worker
//! claims it when it starts it (`adoption`).

mod waiting;

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use tokio::sync::Notify;
use tracing::Instrument;

use super::dispatch::Dispatch;
use super::{panic_message, JobRunner};
use crate::jobs::id::JobId;
use crate::jobs::metrics::QueueDepth;
use crate::jobs::repository::RepositoryError;
use crate::jobs::request::Priority;
use crate::jobs::status::StatusDocument;
use crate::jobs::usage;
use crate::meter;
use crate::store::StoreError;
use waiting::{Start, Waiting, WaitingJobs};

/// The jobs waiting in this process and the workers that take them.
#[derive(Debug, Default)]
pub struct InlineDispatch {
    jobs: Mutex<WaitingJobs>,
    /// Wakes an idle worker when a job is queued.
    wake: Notify,
}

#[async_trait]
impl Dispatch for InlineDispatch {
    fn name(&self) -> &'static str {
        "inline"
    }

    fn start(self: Arc<Self>, runner: &JobRunner) {
        for worker in 0..runner.inner.options.max_concurrent_jobs {
            let this = self.clone();
            let runner_of_worker = runner.clone();
            runner.inner.tracker.spawn(
                async move { this.work(runner_of_worker).await }
                    .instrument(tracing::info_span!("worker", worker)),
            );
        }
    }

    async fn hand_over(
        &self,
        _runner: &JobRunner,
        document: &StatusDocument,
    ) -> Result<(), StoreError> {
        let id = document.job_id;
        let queue_depth = self.enqueue(
            id,
            document.request.priority,
            Start::Submitted {
                seen_attempts: document.attempts,
            },
        );
        // One line per accepted job keeps the ticket fast.
        tracing::info!(job_id = %id, topics = document.request.topics.len(), priority = ?document.request.priority, queue_depth, "job accepted");
        Ok(())
    }

    fn repeat_hands_over(&self) -> bool {
        true
    }

    fn holds(&self, job: JobId) -> bool {
        self.jobs.lock().expect("jobs lock").ours.contains(&job)
    }

    async fn quiet_job(
        &self,
        runner: &JobRunner,
        document: &StatusDocument,
    ) -> Result<bool, RepositoryError> {
        let job = document.job_id;
        if self.idle_workers(runner) == 0 || document.updated_at > runner.stale_before() {
            return Ok(false);
        }
        let queued = self
            .enqueue(job, document.request.priority, Start::Stale)
            .is_some();
        if queued {
            tracing::info!(job_id = %job, status = %document.status, "found a job whose worker stopped");
        }
        Ok(queued)
    }

    fn storage_retry_budget(&self, _stale_after: Duration) -> Option<Duration> {
        // The job waits for storage: no message would bring it back to anyone else.
        None
    }

    fn scans_at_each_timer_run(&self) -> bool {
        false
    }

    async fn queue_depth(&self) -> Option<QueueDepth> {
        // The jobs waiting here are this process's alone, not a queue of the app's: other
        // instances keep theirs, and the metrics speak for the whole app.
        None
    }
}

impl InlineDispatch {
    /// Queues a job for a worker. Returns how many jobs now wait, or `None` when the job was
    /// ours already.
    fn enqueue(&self, job: JobId, priority: Priority, start: Start) -> Option<usize> {
        let depth = {
            let mut jobs = self.jobs.lock().expect("jobs lock");
            if !jobs.ours.insert(job) {
                return None;
            }
            jobs.sequence += 1;
            let sequence = jobs.sequence;
            jobs.waiting.push(Waiting {
                priority,
                sequence,
                job,
                start,
            });
            jobs.waiting.len()
        };
        self.wake.notify_one();
        Some(depth)
    }

    /// Workers that could start a job now: neither running one nor about to take one that
    /// waits here. The scan hands a stale job only to one of them: a job claimed while it
    /// waited here would have no heartbeat, look stale again, be adopted by another instance,
    /// and then run in two processes.
    fn idle_workers(&self, runner: &JobRunner) -> usize {
        let jobs = self.jobs.lock().expect("jobs lock");
        runner
            .inner
            .options
            .max_concurrent_jobs
            .saturating_sub(jobs.busy + jobs.waiting.len())
    }

    /// One worker: takes the next waiting job, runs it, and so on until shutdown.
    async fn work(&self, runner: JobRunner) {
        loop {
            let next = {
                let mut jobs = self.jobs.lock().expect("jobs lock");
                let next = jobs.waiting.pop();
                if next.is_some() {
                    jobs.busy += 1;
                }
                next
            };
            let Some(waiting) = next else {
                tokio::select! {
                    _ = runner.inner.shutdown.cancelled() => return,
                    _ = self.wake.notified() => continue,
                }
            };
            let job = waiting.job;
            let span = tracing::info_span!("job", job_id = %job);
            // A panic while running a job ends that job (`carry_out` fails it), never the
            // worker: a dead worker is not replaced, and its instance would accept jobs it
            // never runs.
            let metered = meter::metered(usage::meter_for(job), run(&runner, waiting));
            let run = AssertUnwindSafe(metered.instrument(span.clone())).catch_unwind();
            tokio::select! {
                _ = runner.inner.shutdown.cancelled() => return,
                ran = run => if let Err(panic) = ran {
                    span.in_scope(|| tracing::error!(panic = panic_message(&*panic), "a job's worker panicked outside its run; the worker carries on"));
                }
            }
            let mut jobs = self.jobs.lock().expect("jobs lock");
            jobs.ours.remove(&job);
            jobs.busy -= 1;
        }
    }
}

/// Runs one waiting job to a terminal state, or until another worker takes it over.
async fn run(runner: &JobRunner, waiting: Waiting) {
    let job = waiting.job;
    let seen_attempts = match waiting.start {
        Start::Stale => return runner.adopt(job).await,
        Start::Submitted { seen_attempts } => seen_attempts,
    };
    match runner.claim_submitted(job, seen_attempts).await {
        Ok(Some(document)) => {
            // The outcome is logged where it happens.
            let _ = runner.carry_out(document).await;
        }
        Ok(None) => {}
        Err(error) => {
            tracing::error!(error = %crate::telemetry::Chain(&error), "could not start the job")
        }
    }
}
