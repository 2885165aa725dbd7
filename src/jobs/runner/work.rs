//! One job's work: fetch every pending subreddit as a task of its own, store its topics,
//! record each outcome with a conditional update, heartbeat meanwhile, then end the job.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use serde::Serialize;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use super::{owned, JobRunner};
use crate::jobs::id::JobId;
use crate::jobs::progress::RunStamp;
use crate::jobs::repository::RepositoryError;
use crate::jobs::request::Source;
use crate::jobs::status::{self, OutcomeStatus, StatusDocument, SubredditOutcome};
use crate::reddit::{Subreddit, Topic};

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
        let cancelled = Arc::new(AtomicBool::new(document.cancel_requested_at.is_some()));
        let pending = document.pending();
        let mut in_flight: Vec<Subreddit> = Vec::new();

        // Each subreddit is a task of its own: the loop below awaits a status write after every
        // outcome, and futures polled only through the stream would stand still meanwhile
        // (the 7 subreddits of a job would be stored one after another). The tasks are tracked
        // and aborted when the stream is dropped (shutdown, or the job taken over).
        let mut outcomes = futures::stream::iter(pending.clone())
            .map(|subreddit| {
                let cancelled = cancelled.clone();
                let this = self.clone();
                let stamp = stamp.clone();
                let task = self.inner.tracker.spawn(
                    async move {
                        if cancelled.load(Ordering::SeqCst) {
                            return None;
                        }
                        Some(
                            this.fetch_and_store(job, source, &subreddit, limit, &stamp)
                                .await,
                        )
                    }
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
        loop {
            tokio::select! {
                outcome = outcomes.next() => {
                    let Some(outcome) = outcome else { break };
                    let Some(outcome) = outcome else { continue };
                    in_flight.retain(|name| name != &outcome.subreddit);
                    let next = in_flight.first().cloned();
                    let document = self
                        .update(job, |doc| {
                            owned(doc, mine)?;
                            doc.record(outcome.clone(), status::now())?;
                            if let Some(next) = &next {
                                doc.processing(next, status::now())?;
                            }
                            Ok(())
                        })
                        .await?;
                    if document.cancel_requested_at.is_some() {
                        cancelled.store(true, Ordering::SeqCst);
                    }
                }
                _ = heartbeat.tick() => {
                    let document = self
                        .update(job, |doc| {
                            owned(doc, mine)?;
                            doc.heartbeat(status::now())
                        })
                        .await?;
                    if document.cancel_requested_at.is_some() {
                        cancelled.store(true, Ordering::SeqCst);
                    }
                }
            }
        }
        drop(outcomes);

        self.update(job, |doc| {
            owned(doc, mine)?;
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
    ) -> SubredditOutcome {
        let topics = match self
            .inner
            .topics
            .hot_topics(subreddit, limit, stamp.as_str())
            .await
        {
            Ok(topics) => topics,
            Err(error) => {
                tracing::warn!(subreddit = %subreddit, error = %crate::telemetry::Chain(&error), "subreddit could not be fetched");
                return SubredditOutcome::failed(
                    subreddit.clone(),
                    OutcomeStatus::FetchFailed,
                    error.to_string(),
                );
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
        match self
            .with_storage_retries(|| self.inner.repository.store_output(job, &stem, &output))
            .await
        {
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
        }
    }
}
