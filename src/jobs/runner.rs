//! [`JobRunner`]: accepts jobs, queues them, and runs them as tracked tasks.
//!
//! A ticket is issued only after the job's status document is stored, so the job exists even
//! if this process dies the next instant. Work then happens in a fixed set of worker tasks
//! (`MAX_CONCURRENT_JOBS`), taking high-priority jobs first, then the oldest. Everything a job
//! needs to continue is in its status document: a worker that finds a job whose heartbeat
//! stopped (its process was killed) claims it with a conditional write and resumes it, skipping
//! the subreddits already done.

mod adoption;
mod consumer;
mod delivery;
mod dispatch;
mod queue;
#[cfg(test)]
mod tests;
mod work;

pub use dispatch::{
    Delivered, DeliveryError, Dispatch, JobMessage, ListenerSettings, QueueDispatch,
};
use queue::{Queue, Start, Waiting};

use std::any::Any;
use std::collections::HashSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::callback::CallbackSender;
use super::id::JobId;
use super::repository::{RepositoryError, StatusRepository};
use super::request::{IdempotencyKey, JobRequest, Priority};
use super::status::{self, JobStatus, StatusDocument, TransitionError};
use crate::reddit::TopicSource;
use crate::retry::{retry, Backoff, Verdict};
use crate::store::StoreError;

/// How the runner behaves; from the settings, shortened in tests.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Jobs running at once in this instance.
    pub max_concurrent_jobs: usize,
    /// Subreddits of one job fetched at once.
    pub fetch_concurrency: usize,
    /// A non-terminal job not updated for this long has lost its worker.
    pub stale_after: Duration,
    /// Whether this runner looks for and resumes other workers' stale jobs (a server does; a
    /// one-off command-line collection does not).
    pub adopt_stale_jobs: bool,
    /// Sends completion callbacks of jobs that asked for one.
    pub callbacks: CallbackSender,
    /// In this process, or on a Storage queue.
    pub dispatch: Dispatch,
}

impl RunnerOptions {
    /// Heartbeats come often enough that a live job never looks stale.
    fn heartbeat_every(&self) -> Duration {
        self.stale_after / 4
    }

    fn scan_every(&self) -> Duration {
        self.stale_after / 2
    }

    /// How storage calls of a job are retried. Inline, until storage answers: the job waits
    /// for it. A delivered job gives up after `stale_after`, so its delivery fails and the
    /// message is delivered again (or, the last time, the job ends `failed`).
    fn storage_backoff(&self) -> Backoff {
        let backoff = Backoff::new(Duration::from_millis(100)).max_delay(Duration::from_secs(10));
        match self.dispatch {
            Dispatch::Inline => backoff,
            Dispatch::Queue(_) => backoff.max_elapsed(self.stale_after),
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
    queue: Mutex<Queue>,
    /// Jobs a scan found terminal with no callback owed, or could not read: never read again
    /// while they exist.
    finished: Mutex<HashSet<JobId>>,
    /// Jobs whose callback this instance is trying to deliver (one task per job).
    delivering: Mutex<HashSet<JobId>>,
    wake: Notify,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

/// Cheap to clone; every clone is the same runner.
#[derive(Clone)]
pub struct JobRunner {
    inner: Arc<Inner>,
}

impl JobRunner {
    /// Starts the workers and the stale-job scanner.
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
                queue: Mutex::new(Queue::default()),
                finished: Mutex::new(HashSet::new()),
                delivering: Mutex::new(HashSet::new()),
                wake: Notify::new(),
                tracker: TaskTracker::new(),
                shutdown: CancellationToken::new(),
            }),
        };
        match &runner.inner.options.dispatch {
            Dispatch::Inline => {
                for worker in 0..runner.inner.options.max_concurrent_jobs {
                    let this = runner.clone();
                    runner.inner.tracker.spawn(
                        async move { this.work().await }
                            .instrument(tracing::info_span!("worker", worker)),
                    );
                }
            }
            Dispatch::Queue(dispatch) if dispatch.consume => {
                let this = runner.clone();
                let dispatch = dispatch.clone();
                runner.inner.tracker.spawn(
                    async move { this.consume(dispatch).await }
                        .instrument(tracing::info_span!("queue_listener")),
                );
            }
            // The host's queue listener delivers the messages (`RunJob`).
            Dispatch::Queue(_) => {}
        }
        if runner.inner.options.adopt_stale_jobs {
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

    /// Accepts a job: its status document is stored before this returns, then it is queued.
    /// With an idempotency key that was used before, returns the original job's document and
    /// starts nothing.
    pub async fn submit(
        &self,
        request: JobRequest,
        retry_of: Option<JobId>,
        idempotency_key: Option<&IdempotencyKey>,
    ) -> Result<StatusDocument, SubmitError> {
        let repository = &self.inner.repository;
        let mut id = JobId::new();
        if let Some(key) = idempotency_key {
            if let Some(original) = repository.reserve_idempotency_key(key, id).await? {
                if let Some(existing) = repository.load(original).await? {
                    tracing::info!(job_id = %original, "idempotency key seen before; returning the original job");
                    let document = existing.document;
                    // Stored by a submit that failed to hear back, the job may wait for no
                    // worker yet: queue it here (a worker's claim is conditional, so a job
                    // queued twice still runs once). Under queue dispatch its message was sent,
                    // or the stale-job scan sends it: a repeat sends no copy of its own.
                    if document.status == JobStatus::Queued && self.queue_dispatch().is_none() {
                        self.dispatch(&document).await.ok();
                    }
                    return Ok(document);
                }
                // The key was recorded but its job never stored (the process died in between):
                // create that job now, under the id the key already points to.
                id = original;
            }
        }
        let document = StatusDocument::queued(id, request, retry_of, status::now());
        match repository.create(&document).await {
            Ok(()) => {}
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
        }
        if let Err(error) = self.dispatch(&document).await {
            tracing::error!(job_id = %id, error = %crate::telemetry::Chain(&error), "the job's message could not be sent; ending the job");
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

    /// Hands a stored, queued job to whatever runs jobs: this process's workers, or the
    /// Storage queue.
    async fn dispatch(&self, document: &StatusDocument) -> Result<(), StoreError> {
        let id = document.job_id;
        match &self.inner.options.dispatch {
            Dispatch::Inline => {
                let queue_depth = self.enqueue(
                    id,
                    document.request.priority,
                    Start::Submitted {
                        seen_attempts: document.attempts,
                    },
                );
                tracing::info!(job_id = %id, topics = document.request.topics.len(), priority = ?document.request.priority, queue_depth, "job accepted");
            }
            Dispatch::Queue(dispatch) => {
                dispatch.send(id).await?;
                tracing::info!(job_id = %id, topics = document.request.topics.len(), queue = dispatch.queue.name(), "job accepted and queued");
            }
        }
        Ok(())
    }

    /// Queues a job for a worker. Returns how many jobs now wait, or `None` when the job was
    /// ours already. (The callers log it: one line per accepted job keeps the ticket fast.)
    fn enqueue(&self, job: JobId, priority: Priority, start: Start) -> Option<usize> {
        let depth = {
            let mut queue = self.inner.queue.lock().expect("queue lock");
            if !queue.ours.insert(job) {
                return None;
            }
            queue.sequence += 1;
            let sequence = queue.sequence;
            queue.waiting.push(Waiting {
                priority,
                sequence,
                job,
                start,
            });
            queue.waiting.len()
        };
        self.inner.wake.notify_one();
        Some(depth)
    }

    /// Stops taking work and waits for the tasks to end. Jobs in flight are abandoned as they
    /// are: their stored state lets another instance resume them.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
        self.inner.repository.finish_index_writes().await;
    }

    async fn work(&self) {
        loop {
            let next = {
                let mut queue = self.inner.queue.lock().expect("queue lock");
                let next = queue.waiting.pop();
                if next.is_some() {
                    queue.busy += 1;
                }
                next
            };
            let Some(waiting) = next else {
                tokio::select! {
                    _ = self.inner.shutdown.cancelled() => return,
                    _ = self.inner.wake.notified() => continue,
                }
            };
            let job = waiting.job;
            let span = tracing::info_span!("job", job_id = %job);
            // A panic while running a job ends that job (`run` fails it), never the worker:
            // a dead worker is not replaced, and its instance would accept jobs it never runs.
            let run = AssertUnwindSafe(self.run(waiting).instrument(span.clone())).catch_unwind();
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                ran = run => if let Err(panic) = ran {
                    span.in_scope(|| tracing::error!(panic = panic_message(&*panic), "a job's worker panicked outside its run; the worker carries on"));
                }
            }
            let mut queue = self.inner.queue.lock().expect("queue lock");
            queue.ours.remove(&job);
            queue.busy -= 1;
        }
    }

    /// Runs one job to a terminal state, or until another worker takes it over.
    async fn run(&self, waiting: Waiting) {
        let job = waiting.job;
        let seen_attempts = match waiting.start {
            Start::Stale => return self.adopt(job).await,
            Start::Submitted { seen_attempts } => seen_attempts,
        };
        match self.claim_submitted(job, seen_attempts).await {
            Ok(Some(document)) => {
                // The outcome is logged where it happens.
                let _ = self.carry_out(document).await;
            }
            Ok(None) => {}
            Err(error) => {
                tracing::error!(error = %crate::telemetry::Chain(&error), "could not start the job")
            }
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
                // Cancelled while queued, or run by another worker: its callback may still
                // be owed, and the stored record says.
                self.deliver_callback(job, None);
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
        match ended {
            Ok(document) => {
                tracing::info!(status = %document.status, error = document.error.as_deref(), "job finished");
                if document.callback_owed() {
                    self.deliver_callback(job, None);
                }
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
    /// backoff (100 ms doubling to 10 s), for as long as [`RunnerOptions::storage_backoff`]
    /// says or until the runner shuts down.
    async fn with_storage_retries<T, F, Fut>(&self, mut call: F) -> Result<T, RepositoryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RepositoryError>>,
    {
        retry(
            &self.inner.options.storage_backoff(),
            Some(&self.inner.shutdown),
            |_| call(),
            |error| Verdict::retry_if(error.is_retryable()),
            |error, retrying| tracing::warn!(error = %crate::telemetry::Chain(error), wait_ms = retrying.wait.as_millis() as u64, "storage call failed; retrying"),
        )
        .await
    }
}

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
