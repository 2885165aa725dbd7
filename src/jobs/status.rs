//! The status document and the job state machine.
//!
//! `queued → running → completed | failed | cancelled`. Transitions are methods that refuse
//! illegal moves; once a document is terminal, every transition fails with
//! [`TransitionError::Terminal`], so a terminal status can never change.
//!
//! A [`StatusDocument`] serialises as the public document: what `status.json` holds, what the
//! status, cancel and list calls answer and what the completion callback carries, all the same
//! bytes. What only instances use ([`Internals`]: leases, bookkeeping, the callback URL in
//! full) never serialises; [`stored`] keeps it in the status blob's metadata, written by the
//! same conditional write.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use super::callback::record::CallbackRecord;
use super::handoff::record::HandoffRecord;
use super::id::JobId;
use super::lease::Lease;
use super::progress::{Progress, ProgressStep, RunStamp};
use super::request::{JobRequest, Source};
use super::usage::Usage;
use crate::reddit::Subreddit;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStatus {
    Success,
    FetchFailed,
    UploadFailed,
    Skipped,
}

impl OutcomeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeStatus::Success => "success",
            OutcomeStatus::FetchFailed => "fetch_failed",
            OutcomeStatus::UploadFailed => "upload_failed",
            OutcomeStatus::Skipped => "skipped",
        }
    }
}

/// What became of one subreddit of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubredditOutcome {
    pub subreddit: Subreddit,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob_name: Option<String>,
    pub status: OutcomeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SubredditOutcome {
    pub fn success(subreddit: Subreddit, topics_count: u32, blob_name: String) -> Self {
        Self {
            subreddit,
            topics_count: Some(topics_count),
            blob_name: Some(blob_name),
            status: OutcomeStatus::Success,
            error: None,
        }
    }

    pub fn failed(subreddit: Subreddit, status: OutcomeStatus, error: String) -> Self {
        Self {
            subreddit,
            topics_count: None,
            blob_name: None,
            status,
            error: Some(error),
        }
    }
}

/// The `results` object of a terminal job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResults {
    pub status: JobStatus,
    pub timestamp: RunStamp,
    pub source: Source,
    pub total_topics: u32,
    pub total_subreddits: u32,
    pub results: Vec<SubredditOutcome>,
}

/// A job's status: serialised, exactly what `jobs/<id>/status.json` holds and what the status
/// call answers; in memory, with the [`Internals`] that only instances use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusDocument {
    pub job_id: JobId,
    pub status: JobStatus,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    /// Also the heartbeat of a running job: a job whose `updated_at` is old has lost its worker.
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// As accepted. Its `callback_url` serialises as its origin only; the full URL is kept
    /// with the internals.
    pub request: JobRequest,
    pub progress: Progress,
    pub error: Option<String>,
    pub results: Option<JobResults>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<JobId>,
    /// Set by a cancel call; the worker sends Reddit nothing more and ends the job `cancelled`
    /// (subreddits not yet fetched are `skipped`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_requested_at: Option<DateTime<Utc>>,
    /// How many times a worker has claimed the job (more than one after a resume).
    #[serde(default)]
    pub attempts: u32,
    /// Subreddits finished so far, so a resumed job fetches none of them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outcomes: Vec<SubredditOutcome>,
    /// The completion callback of a terminal job that has a `callback_url`: written `owed`
    /// with the terminal status, so whichever instance is alive delivers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackRecord>,
    /// What the job used so far, up to and including the write of this document. Every stored
    /// document has used its own write; only the callback body leaves it out (empty).
    #[serde(default, skip_serializing_if = "Usage::is_empty")]
    pub usage: Usage,
    /// Never serialised: kept in the status blob's metadata ([`stored`]).
    #[serde(skip)]
    pub internals: Internals,
}

/// What only instances use, kept apart from the public document: written with it, in its
/// blob's metadata, and guarded by the same ETag ([`stored`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Internals {
    /// Queue dispatch: when a scan sent this job's message again because the job sat still
    /// for long (its first message was never sent, or was lost). Sent again only once.
    pub requeued_at: Option<DateTime<Utc>>,
    /// Who may send the owed completion callback.
    pub callback_lease: Lease,
    /// The hand-off to the next stage (`COMPLETION_QUEUE`): wanted by a job created while it
    /// was set, owed once the job ends, sent once. `None` for a job that owes none.
    pub handoff: Option<HandoffRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("job is already {0}; terminal states never change")]
    Terminal(JobStatus),
    #[error("job is {actual}, not {expected}")]
    WrongState {
        expected: JobStatus,
        actual: JobStatus,
    },
    /// Another worker claimed the job since this one did (it was thought dead and adopted).
    #[error("job was taken over by another worker")]
    Superseded,
    /// The job owes no callback: it has none, is not over, or its callback was delivered or
    /// abandoned.
    #[error("no completion callback is owed")]
    NoCallbackOwed,
    /// Another instance holds the claim to send the callback, or may still take it.
    #[error("another instance is sending the completion callback")]
    CallbackClaimed,
    /// The job owes no hand-off: it wants none, is not over, or it was sent.
    #[error("no hand-off is owed")]
    NoHandoffOwed,
    /// Another instance holds the claim to send the hand-off, or may still take it.
    #[error("another instance is sending the hand-off")]
    HandoffClaimed,
}

/// The current time at the precision we store (microseconds).
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

impl StatusDocument {
    /// A freshly accepted job.
    pub fn queued(
        job_id: JobId,
        request: JobRequest,
        retry_of: Option<JobId>,
        at: DateTime<Utc>,
    ) -> Self {
        let total = request.topics.len() as u32;
        Self {
            job_id,
            status: JobStatus::Queued,
            created_at: at,
            started_at: None,
            updated_at: at,
            finished_at: None,
            request,
            progress: Progress {
                step: ProgressStep::Initializing,
                completed: 0,
                total,
            },
            error: None,
            results: None,
            retry_of,
            cancel_requested_at: None,
            attempts: 0,
            outcomes: Vec::new(),
            callback: None,
            usage: Usage::default(),
            internals: Internals::default(),
        }
    }

    fn not_terminal(&self) -> Result<(), TransitionError> {
        if self.status.is_terminal() {
            Err(TransitionError::Terminal(self.status))
        } else {
            Ok(())
        }
    }

    fn must_be_running(&self) -> Result<(), TransitionError> {
        self.not_terminal()?;
        if self.status != JobStatus::Running {
            return Err(TransitionError::WrongState {
                expected: JobStatus::Running,
                actual: self.status,
            });
        }
        Ok(())
    }

    /// A worker takes the job: `queued → running`, or `running → running` when resuming a job
    /// whose worker died. Finished subreddits are kept. `seen_attempts` is the claim count the
    /// worker saw when it decided to take the job; if another worker claimed it since, the
    /// claim is refused.
    pub fn claim(&mut self, at: DateTime<Utc>, seen_attempts: u32) -> Result<(), TransitionError> {
        self.not_terminal()?;
        if self.attempts != seen_attempts {
            return Err(TransitionError::Superseded);
        }
        if self.status == JobStatus::Queued {
            self.started_at = Some(at);
        }
        self.status = JobStatus::Running;
        self.attempts += 1;
        self.progress.step = ProgressStep::Initializing;
        self.updated_at = at;
        Ok(())
    }

    /// Proof of life from the worker.
    pub fn heartbeat(&mut self, at: DateTime<Utc>) -> Result<(), TransitionError> {
        self.must_be_running()?;
        self.updated_at = at;
        Ok(())
    }

    /// Names the subreddit being worked on.
    pub fn processing(
        &mut self,
        subreddit: &Subreddit,
        at: DateTime<Utc>,
    ) -> Result<(), TransitionError> {
        self.must_be_running()?;
        self.progress.step = ProgressStep::Processing(subreddit.clone());
        self.updated_at = at;
        Ok(())
    }

    /// Records a finished subreddit (replacing an earlier outcome for the same one).
    pub fn record(
        &mut self,
        outcome: SubredditOutcome,
        at: DateTime<Utc>,
    ) -> Result<(), TransitionError> {
        self.must_be_running()?;
        self.outcomes
            .retain(|done| done.subreddit != outcome.subreddit);
        self.outcomes.push(outcome);
        self.progress.completed = self.outcomes.len() as u32;
        self.updated_at = at;
        Ok(())
    }

    /// The subreddits still to do, in request order.
    pub fn pending(&self) -> Vec<Subreddit> {
        self.request
            .topics
            .iter()
            .filter(|name| !self.outcomes.iter().any(|done| &done.subreddit == *name))
            .cloned()
            .collect()
    }

    /// Every subreddit done: `completed` when at least one succeeded, else `failed`.
    pub fn finish(&mut self, at: DateTime<Utc>) -> Result<(), TransitionError> {
        self.must_be_running()?;
        let any_success = self
            .outcomes
            .iter()
            .any(|outcome| outcome.status == OutcomeStatus::Success);
        if any_success {
            self.end(JobStatus::Completed, None, at);
        } else {
            let reasons: Vec<String> = self
                .outcomes
                .iter()
                .filter_map(|outcome| outcome.error.clone())
                .collect();
            let error = if reasons.is_empty() {
                "No subreddit could be collected.".to_owned()
            } else {
                format!("No subreddit could be collected: {}", reasons.join("; "))
            };
            self.end(JobStatus::Failed, Some(error), at);
        }
        Ok(())
    }

    /// The job cannot run at all (no credentials, storage gone).
    pub fn fail(&mut self, error: String, at: DateTime<Utc>) -> Result<(), TransitionError> {
        self.not_terminal()?;
        self.end(JobStatus::Failed, Some(error), at);
        Ok(())
    }

    /// Records a cancel request. A queued job ends `cancelled` at once; a running one when its
    /// worker next looks (it reads the document every second). `updated_at` is the worker's
    /// heartbeat, so a request leaves it alone: a job whose worker died stays due for takeover.
    pub fn request_cancel(&mut self, at: DateTime<Utc>) -> Result<(), TransitionError> {
        self.not_terminal()?;
        self.cancel_requested_at.get_or_insert(at);
        if self.status == JobStatus::Queued {
            self.end(JobStatus::Cancelled, None, at);
        }
        Ok(())
    }

    /// The worker stops: finished subreddits keep their results, the rest are `skipped`.
    pub fn cancel(&mut self, at: DateTime<Utc>) -> Result<(), TransitionError> {
        self.not_terminal()?;
        self.end(JobStatus::Cancelled, None, at);
        Ok(())
    }

    fn end(&mut self, status: JobStatus, error: Option<String>, at: DateTime<Utc>) {
        let mut results = Vec::with_capacity(self.request.topics.len());
        for name in &self.request.topics {
            let outcome = self
                .outcomes
                .iter()
                .find(|done| &done.subreddit == name)
                .cloned()
                .unwrap_or_else(|| SubredditOutcome {
                    subreddit: name.clone(),
                    topics_count: None,
                    blob_name: None,
                    status: OutcomeStatus::Skipped,
                    error: None,
                });
            results.push(outcome);
        }
        let total_topics = results.iter().filter_map(|r| r.topics_count).sum();
        self.status = status;
        self.error = error;
        self.results = Some(JobResults {
            status,
            timestamp: RunStamp::of(self.started_at.unwrap_or(at)),
            source: self.request.source,
            total_topics,
            total_subreddits: self.request.topics.len() as u32,
            results,
        });
        self.outcomes.clear();
        self.progress.step = ProgressStep::Finished;
        self.progress.completed = self.progress.total;
        self.finished_at = Some(at);
        self.updated_at = at;
        if self.request.callback_url.is_some() {
            self.callback = Some(CallbackRecord::owed());
        }
        if let Some(handoff) = &mut self.internals.handoff {
            handoff.job_ended();
        }
    }
}

pub mod stored;
#[cfg(test)]
mod tests;
