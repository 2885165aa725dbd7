//! One job's work: fetch every pending subreddit as a task of its own, store its topics,
//! record the outcomes with conditional updates (at most one a second, with those that came in
//! since; the last ones by the write that ends the job), heartbeat meanwhile, then end the job.
//!
//! A cancel ends the job's waits through the job's own cancellation token. A cancel recorded
//! by this process ([`JobRunner::cancel`]) cancels the token of the job it runs at once, before
//! the caller is answered; one recorded by another instance is seen at the job's next read of
//! its status document, within about a second. Either way no listing request is sent after
//! the token is cancelled; one already on its way is left to finish.

use futures::{FutureExt, StreamExt};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use super::{owned, JobRunner, WATCH_EVERY};
use crate::jobs::id::JobId;
use crate::jobs::progress::RunStamp;
use crate::jobs::repository::RepositoryError;
use crate::jobs::request::Source;
use crate::jobs::status::{self, JobStatus, OutcomeStatus, StatusDocument, SubredditOutcome};
use crate::jobs::usage;
use crate::meter;
use crate::reddit::{FetchError, Subreddit, Topic};

/// A job running in this process: its cancel token, shared by the runs of the job here (one,
/// unless a delivery here took over a run here that looked stopped).
#[derive(Debug)]
pub(super) struct Running {
    cancel: CancellationToken,
    runs: usize,
}

/// A run's place among the jobs running in this process; dropped when the run ends.
struct Registered<'a> {
    runner: &'a JobRunner,
    job: JobId,
    cancel: CancellationToken,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let mut running = self.runner.inner.running.lock().expect("running lock");
        if let Some(entry) = running.get_mut(&self.job) {
            entry.runs -= 1;
            if entry.runs == 0 {
                running.remove(&self.job);
            }
        }
    }
}

/// The output blob body (docs/api.md section 6).
#[derive(Serialize)]
struct OutputDocument<'a> {
    job_id: JobId,
    source: &'static str,
    subject: &'a str,
    fetched_at: &'a str,
    count: usize,
    topics: &'a [Topic],
}

impl JobRunner {
    /// Records a cancel request for `job` and, when the job runs in this process, cancels its
    /// token before returning: the job's waits end, and it sends Reddit nothing more. A queued
    /// job ends `cancelled` at once; this instance ended it, so it delivers what the job owes
    /// (its callback, its hand-off) at once too.
    pub async fn cancel(&self, job: JobId) -> Result<StatusDocument, RepositoryError> {
        let record = self
            .inner
            .repository
            .update(job, |doc| doc.request_cancel(status::now()));
        let (document, ()) = meter::metered(usage::meter_for(job), record).await?;
        match document.status {
            JobStatus::Running => {
                if let Some(running) = self.inner.running.lock().expect("running lock").get(&job) {
                    running.cancel.cancel();
                }
            }
            JobStatus::Cancelled => self.deliver_owed(&document, None),
            _ => {}
        }
        Ok(document)
    }

    /// Registers a run of `job`; its token is cancelled by a cancel recorded here.
    fn register(&self, job: JobId) -> Registered<'_> {
        let mut running = self.inner.running.lock().expect("running lock");
        let entry = running.entry(job).or_insert_with(|| Running {
            cancel: CancellationToken::new(),
            runs: 0,
        });
        entry.runs += 1;
        Registered {
            runner: self,
            job,
            cancel: entry.cancel.clone(),
        }
    }

    /// Fetches and stores every pending subreddit, recording each outcome, then ends the job.
    pub(super) async fn collect(
        &self,
        document: StatusDocument,
        mine: u32,
    ) -> Result<StatusDocument, RepositoryError> {
        let job = document.job_id;
        let stamp = RunStamp::of(document.started_at.unwrap_or(document.created_at));
        let source = document.request.source;
        let limit = document.request.limit.get();
        // Cancelled when a cancel is recorded here, or when the status document shows one:
        // subreddits not started are skipped, and fetches waiting (rate limit, Retry-After,
        // backoff) give up at once.
        let registered = self.register(job);
        let cancel = registered.cancel.clone();
        if document.cancel_requested_at.is_some() {
            cancel.cancel();
        }
        let pending = document.pending();
        let mut in_flight: Vec<Subreddit> = Vec::new();

        // Each subreddit is a task of its own: the loop below awaits a status write after every
        // outcome, and futures polled only through the stream would stand still meanwhile
        // (the 7 subreddits of a job would be stored one after another). The tasks are tracked
        // and aborted when the stream is dropped (shutdown, or the job taken over).
        let mut outcomes = futures::stream::iter(pending.clone())
            .map(|subreddit| {
                let cancel = cancel.clone();
                let this = self.clone();
                let stamp = stamp.clone();
                let task = self.inner.tracker.spawn(
                    meter::inherited(async move {
                        if cancel.is_cancelled() {
                            return None;
                        }
                        this.fetch_and_store(job, source, &subreddit, limit, &stamp, &cancel)
                            .await
                    })
                    .in_current_span(),
                );
                AbortOnDropHandle::new(task).map(|joined| match joined {
                    Ok(outcome) => outcome,
                    // Only a panic: the handle is never aborted while it is being polled.
                    Err(error) => std::panic::resume_unwind(error.into_panic()),
                })
            })
            .buffer_unordered(self.inner.options.fetch_concurrency.max(1));
        in_flight.extend(pending);

        let mut heartbeat = tokio::time::interval(self.inner.options.heartbeat_every());
        heartbeat.tick().await;
        // Every second: the outcomes that came in since are recorded (those that finish close
        // together cost one write), or, when none did, the document is read for a cancel.
        let mut check =
            tokio::time::interval(WATCH_EVERY.min(self.inner.options.heartbeat_every()));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        check.tick().await;
        // Outcomes not recorded yet: the next check, heartbeat or the end records them.
        let mut unrecorded: Vec<SubredditOutcome> = Vec::new();
        loop {
            tokio::select! {
                outcome = outcomes.next() => {
                    let Some(outcome) = outcome else { break };
                    if let Some(outcome) = outcome {
                        in_flight.retain(|name| name != &outcome.subreddit);
                        unrecorded.push(outcome);
                    }
                }
                _ = check.tick() => {
                    if unrecorded.is_empty() {
                        if cancel.is_cancelled() {
                            continue;
                        }
                        // A failed read is no news: the next check or heartbeat looks again.
                        if let Ok(Some(stored)) = self.inner.repository.load(job).await {
                            if stored.document.cancel_requested_at.is_some() {
                                tracing::info!("cancel requested; giving up the waiting fetches");
                                cancel.cancel();
                            }
                        }
                        continue;
                    }
                    let ready = std::mem::take(&mut unrecorded);
                    let next = in_flight.first().cloned();
                    let document = self
                        .update(job, |doc| {
                            owned(doc, mine)?;
                            record(doc, &ready, next.as_ref())
                        })
                        .await?;
                    if document.cancel_requested_at.is_some() {
                        cancel.cancel();
                    }
                }
                _ = heartbeat.tick() => {
                    let ready = std::mem::take(&mut unrecorded);
                    let next = in_flight.first().cloned();
                    let document = self
                        .update(job, |doc| {
                            owned(doc, mine)?;
                            record(doc, &ready, next.as_ref())?;
                            doc.heartbeat(status::now())
                        })
                        .await?;
                    if document.cancel_requested_at.is_some() {
                        cancel.cancel();
                    }
                }
            }
        }
        drop(outcomes);

        self.update(job, |doc| {
            owned(doc, mine)?;
            record(doc, &unrecorded, None)?;
            if doc.cancel_requested_at.is_some() {
                doc.cancel(status::now())
            } else {
                doc.finish(status::now())
            }
        })
        .await
    }

    async fn fetch_and_store(
        &self,
        job: JobId,
        source: Source,
        subreddit: &Subreddit,
        limit: u32,
        stamp: &RunStamp,
        cancel: &CancellationToken,
    ) -> Option<SubredditOutcome> {
        let topics = match self
            .inner
            .topics
            .hot_topics_unless_cancelled(subreddit, limit, stamp.as_str(), cancel)
            .await
        {
            Ok(topics) => topics,
            // No outcome: the job's end records the subreddit `skipped`.
            Err(FetchError::Cancelled) => {
                tracing::info!(subreddit = %subreddit, "fetch given up: the job was cancelled");
                return None;
            }
            Err(error) => {
                tracing::warn!(subreddit = %subreddit, error = %crate::telemetry::Chain(&error), "subreddit could not be fetched");
                return Some(SubredditOutcome::failed(
                    subreddit.clone(),
                    OutcomeStatus::FetchFailed,
                    error.to_string(),
                ));
            }
        };
        let output = OutputDocument {
            job_id: job,
            source: source.name(),
            subject: subreddit.as_str(),
            fetched_at: stamp.as_str(),
            count: topics.len(),
            topics: &topics,
        };
        let stem = format!("{stamp}_{source}_{subreddit}");
        let stored = self
            .with_storage_retries(|| self.inner.repository.store_output(job, &stem, &output))
            .await;
        Some(match stored {
            Ok(blob_name) => {
                tracing::info!(subreddit = %subreddit, topics = topics.len(), blob = %blob_name, "subreddit stored");
                SubredditOutcome::success(subreddit.clone(), topics.len() as u32, blob_name)
            }
            Err(error) => {
                tracing::error!(subreddit = %subreddit, error = %crate::telemetry::Chain(&error), "topics could not be stored");
                SubredditOutcome::failed(
                    subreddit.clone(),
                    OutcomeStatus::UploadFailed,
                    format!("r/{subreddit}: the topics could not be stored"),
                )
            }
        })
    }
}

/// Records `outcomes` (none is no change) and, when some were, names `next` as the subreddit
/// being worked on.
fn record(
    document: &mut StatusDocument,
    outcomes: &[SubredditOutcome],
    next: Option<&Subreddit>,
) -> Result<(), crate::jobs::status::TransitionError> {
    for outcome in outcomes {
        document.record(outcome.clone(), status::now())?;
    }
    if let (false, Some(next)) = (outcomes.is_empty(), next) {
        document.processing(next, status::now())?;
    }
    Ok(())
}
