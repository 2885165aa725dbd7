//! [`JobRunner`]: accepts jobs, hands them to a worker, and runs them as tracked tasks.
//!
//! A ticket is issued only after the job's status document is stored, so the job exists even
//! if this process dies the next instant. The job is then handed over as the [`Dispatch`]
//! chosen at the composition root says: to this process's own workers (`inline`), or as a
//! message to whichever instance takes it (`queue`). Whoever starts the job claims it with a
//! conditional write, and everything a job needs to continue is in its status document: a job
//! whose heartbeat stopped (its process was killed) is claimed by another worker and resumed,
//! skipping the subreddits already done.

mod adoption;
mod delivery;
mod dispatch;
mod inline;
mod message;
mod storage_queue;
#[cfg(test)]
mod tests;
mod work;

pub use dispatch::{Dispatch, Process};
pub use inline::InlineDispatch;
pub use message::{Delivered, DeliveryError, JobMessage};
pub use storage_queue::{ListenerSettings, QueueDispatch};

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::callback::CallbackSender;
use super::handoff::HandoffQueue;
use super::id::JobId;
use super::metrics::QueueDepth;
use super::repository::{RepositoryError, StatusRepository};
use super::request::{IdempotencyKey, JobRequest};
use super::status::{self, JobStatus, StatusDocument, TransitionError};
use super::usage;
use crate::meter;
use crate::reddit::TopicSource;
use crate::retry::{retry, Backoff};
use crate::store::StoreError;

/// How often a job's status document is read for news another process may have written: a
/// cancel, for a running job; the end of the job, for a delivery waiting on it. A read, not a
/// write, so it can be often: the news takes effect within about a second, not at the next
/// heartbeat.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// How the runner behaves; from the settings, shortened in tests.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Jobs running at once in this instance.
    pub max_concurrent_jobs: usize,
    /// Subreddits of one job fetched at once.
    pub fetch_concurrency: usize,
    /// A non-terminal job not updated for this long has lost its worker.
    pub stale_after: Duration,
    /// What this process is: whether it scans for stale jobs and takes job messages itself.
    pub process: Process,
    /// Sends completion callbacks of jobs that asked for one.
    pub callbacks: CallbackSender,
    /// Where every job that ends puts its hand-off to the next stage (`COMPLETION_QUEUE`);
    /// `None` when no hand-off is wanted.
    pub handoff: Option<HandoffQueue>,
    /// How accepted jobs reach a worker.
    pub dispatch: Arc<dyn Dispatch>,
}

impl RunnerOptions {
    /// Heartbeats come often enough that a live job never looks stale.
    fn heartbeat_every(&self) -> Duration {
        self.stale_after / 4
    }

    fn scan_every(&self) -> Duration {
        self.stale_after / 2
    }

    /// How storage calls of a job are retried: for as long as the dispatch says.
    fn storage_backoff(&self) -> Backoff {
        let backoff = Backoff::new(Duration::from_millis(100)).max_delay(Duration::from_secs(10));
        match self.dispatch.storage_retry_budget(self.stale_after) {
            Some(budget) => backoff.max_elapsed(budget),
            None => backoff,
        }
    }
}

/// Why a job could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("storage is unavailable")]
    StorageUnavailable(#[source] RepositoryError),
    #[error("storage refused the job")]
    Storage(#[source] RepositoryError),
}

impl From<RepositoryError> for SubmitError {
    fn from(error: RepositoryError) -> Self {
        if error.is_retryable() {
            SubmitError::StorageUnavailable(error)
        } else {
            SubmitError::Storage(error)
        }
    }
}

struct Inner {
    repository: StatusRepository,
    topics: Arc<dyn TopicSource>,
    options: RunnerOptions,
    /// The cancel tokens of the jobs running in this process, so that a cancel recorded here
    /// ends their waits at once (`work`).
    running: Mutex<HashMap<JobId, work::Running>>,
    /// Jobs a scan found terminal with no callback owed, or could not read: never read again
    /// while they exist.
    finished: Mutex<HashSet<JobId>>,
    /// What ended jobs owe that this instance is trying to deliver (one task per job and
    /// kind).
    delivering: Mutex<HashSet<(JobId, delivery::Owed)>>,
    tracker: TaskTracker,
    /// The delivery tasks: tracked apart, so that a process can wait for them alone.
    deliveries: TaskTracker,
    shutdown: CancellationToken,
}

/// Cheap to clone; every clone is the same runner.
#[derive(Clone)]
pub struct JobRunner {
    inner: Arc<Inner>,
}

impl JobRunner {
    /// Starts what takes jobs in this process (as its dispatch says) and, in a server, the
    /// stale-job scanner.
    pub fn start(
        repository: StatusRepository,
        topics: Arc<dyn TopicSource>,
        options: RunnerOptions,
    ) -> Self {
        let runner = Self {
            inner: Arc::new(Inner {
                repository,
                topics,
                options,
                running: Mutex::new(HashMap::new()),
                finished: Mutex::new(HashSet::new()),
                delivering: Mutex::new(HashSet::new()),
                tracker: TaskTracker::new(),
                deliveries: TaskTracker::new(),
                shutdown: CancellationToken::new(),
            }),
        };
        runner.inner.options.dispatch.clone().start(&runner);
        if runner.inner.options.process.scans_for_stale_jobs() {
            let this = runner.clone();
            runner
                .inner
                .tracker
                .spawn(async move { this.scan_for_stale_jobs().await });
        }
        runner
    }

    pub fn repository(&self) -> &StatusRepository {
        &self.inner.repository
    }

    /// The name of the dispatch mode, for logs.
    pub fn dispatch_name(&self) -> &'static str {
        self.inner.options.dispatch.name()
    }

    /// How many messages the dispatch's queues hold now; `None` under a dispatch without a
    /// queue (inline).
    pub async fn queue_depth(&self) -> Option<QueueDepth> {
        self.inner.options.dispatch.queue_depth().await
    }

    /// Accepts a job: its status document is stored before this returns, then it is handed
    /// over.
    /// With an idempotency key that was used before, returns the original job's document and
    /// starts nothing.
    pub async fn submit(
        &self,
        request: JobRequest,
        retry_of: Option<JobId>,
        idempotency_key: Option<&IdempotencyKey>,
    ) -> Result<StatusDocument, SubmitError> {
        let id = JobId::new();
        let ticket = self.submit_as(id, request, retry_of, idempotency_key);
        meter::metered(usage::meter_for(id), ticket).await
    }

    /// [`Self::submit`] for a new job with id `id`, metered as that job's work.
    async fn submit_as(
        &self,
        mut id: JobId,
        request: JobRequest,
        retry_of: Option<JobId>,
        idempotency_key: Option<&IdempotencyKey>,
    ) -> Result<StatusDocument, SubmitError> {
        let repository = &self.inner.repository;
        if let Some(key) = idempotency_key {
            if let Some(original) = repository.reserve_idempotency_key(key, id).await? {
                if let Some(existing) = repository.load(original).await? {
                    tracing::info!(job_id = %original, "idempotency key seen before; returning the original job");
                    let document = existing.document;
                    // Stored by a submit that failed to hear back, the job may wait for no
                    // worker yet.
                    let dispatch = &self.inner.options.dispatch;
                    if document.status == JobStatus::Queued && dispatch.repeat_hands_over() {
                        dispatch.hand_over(self, &document).await.ok();
                    }
                    return Ok(document);
                }
                // The key was recorded but its job never stored (the process died in between):
                // create that job now, under the id the key already points to.
                id = original;
            }
        }
        let mut queued = StatusDocument::queued(id, request, retry_of, status::now());
        if self.inner.options.handoff.is_some() {
            queued.want_handoff().expect("a queued job is not over");
        }
        let hand_over = self.inner.options.dispatch.hand_over_requests();
        let document = match repository.create_ahead_of(queued, hand_over).await {
            Ok(stored) => stored,
            // Two submits with the same key raced: the other one created the job.
            Err(RepositoryError::Store(StoreError::ConditionFailed))
                if idempotency_key.is_some() =>
            {
                if let Some(existing) = repository.load(id).await? {
                    return Ok(existing.document);
                }
                return Err(RepositoryError::NotFound.into());
            }
            Err(error) => {
                // A failure that may pass (a timeout, a 5xx) leaves it unknown whether the job
                // was stored: the key keeps pointing at its id, so a repeat answers that job if
                // it exists and creates it under that id if not. Only a create that was surely
                // refused frees the key.
                if let Some(key) = idempotency_key.filter(|_| !error.is_retryable()) {
                    let _ = repository.release_idempotency_key(key).await;
                }
                return Err(error.into());
            }
        };
        if let Err(error) = self.inner.options.dispatch.hand_over(self, &document).await {
            tracing::error!(job_id = %id, error = %crate::telemetry::Chain(&error), "the job could not be handed over; ending it");
            self.withdraw(id).await;
            if let Some(key) = idempotency_key {
                let _ = repository.release_idempotency_key(key).await;
            }
            return Err(SubmitError::StorageUnavailable(RepositoryError::Store(
                error,
            )));
        }
        Ok(document)
    }

    /// Stops taking work and waits for the tasks to end. Jobs in flight are abandoned as they
    /// are: their stored state lets another instance resume them.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tracker.close();
        self.inner.deliveries.close();
        self.inner.tracker.wait().await;
        self.inner.deliveries.wait().await;
        self.inner.repository.finish_index_writes().await;
    }

    /// Ends a job whose hand-over failed, if nothing has touched it since it was stored: it
    /// must not stay `queued` with nothing to run it. It owes no callback and no hand-off: its
    /// caller got a 503, not a ticket.
    async fn withdraw(&self, job: JobId) {
        let withdrawn = self
            .update(job, |doc| {
                if doc.status != JobStatus::Queued || doc.attempts > 0 {
                    return Err(TransitionError::WrongState {
                        expected: JobStatus::Queued,
                        actual: doc.status,
                    });
                }
                doc.fail(NOT_HANDED_OVER.to_owned(), status::now())?;
                // The caller was refused (503) and never heard of this job: no callback either,
                // and no hand-off for a next stage.
                doc.callback = None;
                doc.internals.handoff = None;
                Ok(())
            })
            .await;
        if let Err(error) = withdrawn {
            tracing::error!(job_id = %job, error = %crate::telemetry::Chain(&error), "a job that was not handed over could not be ended; the stale-job scan finds it later");
        }
    }

    /// Claims a submitted job for this worker, as long as its claim count is still
    /// `seen_attempts`. `None` when it ended or someone else claimed it first.
    async fn claim_submitted(
        &self,
        job: JobId,
        seen_attempts: u32,
    ) -> Result<Option<StatusDocument>, RepositoryError> {
        let claimed = self
            .update(job, |doc| {
                doc.claim(status::now(), seen_attempts)?;
                if let Some(first) = doc.pending().first() {
                    doc.processing(first, status::now())?;
                }
                Ok(())
            })
            .await;
        match claimed {
            Ok(document) => Ok(Some(document)),
            Err(RepositoryError::Transition(TransitionError::Terminal(status))) => {
                tracing::info!(job_id = %job, status = %status, "job ended before it started");
                // Cancelled while queued, or run by another worker: its callback and its
                // hand-off may still be owed, and the stored records say.
                self.deliver_whatever_is_owed(job);
                Ok(None)
            }
            Err(RepositoryError::Transition(reason)) => {
                tracing::info!(job_id = %job, reason = %reason, "job not started");
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// Runs a job this worker has just claimed to a terminal state, or until another worker
    /// takes it over (`None`). An error means storage would not record the job's progress.
    async fn carry_out(
        &self,
        document: StatusDocument,
    ) -> Result<Option<JobStatus>, RepositoryError> {
        // The claim count this worker's own claim wrote: every later write checks it, so a
        // worker whose job was adopted elsewhere meanwhile writes nothing more.
        let mine = document.attempts;
        let job = document.job_id;
        if document.attempts > 1 {
            tracing::info!(
                attempt = document.attempts,
                remaining = document.pending().len(),
                "resuming job"
            );
        } else {
            tracing::info!("job started");
        }

        // The run's wall seconds are charged to the job at each of its writes, to the last.
        let clock = meter::current().filter(|meter| meter.owner() == job.as_u128());
        if let Some(clock) = &clock {
            clock.start_clock();
        }
        let ended = match AssertUnwindSafe(self.collect(document, mine))
            .catch_unwind()
            .await
        {
            Ok(ended) => ended,
            Err(panic) => {
                tracing::error!(
                    panic = panic_message(&*panic),
                    "the job panicked; ending it failed"
                );
                self.update(job, |doc| {
                    owned(doc, mine)?;
                    doc.fail(INTERNAL_ERROR.to_owned(), status::now())
                })
                .await
            }
        };
        if let Some(clock) = &clock {
            clock.stop_clock();
        }
        match ended {
            Ok(document) => {
                tracing::info!(status = %document.status, error = document.error.as_deref(), "job finished");
                self.deliver_owed(&document, None);
                Ok(Some(document.status))
            }
            Err(RepositoryError::Transition(TransitionError::Superseded)) => {
                tracing::warn!("another worker took the job over; stopping here");
                Ok(None)
            }
            Err(error) => {
                tracing::error!(error = %crate::telemetry::Chain(&error), "job could not record its progress; it will be resumed");
                Err(error)
            }
        }
    }

    /// A status update that outlasts storage outages: retried with backoff until storage
    /// answers or the runner shuts down.
    async fn update(
        &self,
        job: JobId,
        change: impl Fn(&mut StatusDocument) -> Result<(), TransitionError>,
    ) -> Result<StatusDocument, RepositoryError> {
        let repository = &self.inner.repository;
        self.with_storage_retries(|| repository.update(job, &change))
            .await
            .map(|(document, ())| document)
    }

    /// Retries `call` while it fails for a reason storage may get over, with exponential
    /// backoff (100 ms doubling to 10 s) or after the `Retry-After` storage named, for as long
    /// as [`RunnerOptions::storage_backoff`] says or until the runner shuts down. This is the
    /// one budget of these calls: inside it each store call makes one attempt
    /// ([`crate::store::retried_by_caller`]).
    async fn with_storage_retries<T, F, Fut>(&self, mut call: F) -> Result<T, RepositoryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RepositoryError>>,
    {
        retry(
            &self.inner.options.storage_backoff(),
            Some(&self.inner.shutdown),
            |_| crate::store::retried_by_caller(call()),
            RepositoryError::verdict,
            |error, retrying| tracing::warn!(error = %crate::telemetry::Chain(error), wait_ms = retrying.wait.as_millis() as u64, "storage call failed; retrying"),
        )
        .await
    }
}

/// The error of a job whose hand-over failed (its message could not be sent).
const NOT_HANDED_OVER: &str = "The job could not be queued, so it never ran; submit it again.";

/// The error of a job that panicked: it says nothing internal (the panic is in the log).
const INTERNAL_ERROR: &str = "An internal error occurred while running the job.";

/// What a caught panic said, for the log line.
fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

/// Refuses writes from a worker whose claim was superseded by another's.
fn owned(document: &StatusDocument, mine: u32) -> Result<(), TransitionError> {
    if document.attempts == mine {
        Ok(())
    } else {
        Err(TransitionError::Superseded)
    }
}
