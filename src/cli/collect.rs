//! `handler collect`: one collection in this process, against the configured storage, without
//! a server.
//!
//! The settings are the server's (the same environment variables), and the store, the Reddit
//! client and the [`JobRunner`] come from the same composition root ([`crate::startup`]), in
//! the role of a one-off collection: it adopts no other worker's job. A job collected here is
//! indistinguishable in storage from one submitted over HTTP. The job is followed with the
//! same progress display as `watch`, and the runner is shut down once the job has ended and
//! what it owes (its hand-off to the next stage, with `COMPLETION_QUEUE` set) is sent.
//!
//! Logs go to stderr, errors only unless `RUST_LOG` says otherwise: the progress display is the
//! output here, and a subreddit's failure is in the results table anyway.

use anyhow::Context as _;

use super::progress::{self, Display};
use super::{report, Exit, JobArgs};
use crate::client::Fetched;
use crate::config::Settings;
use crate::jobs::{JobRequest, JobRunner, RepositoryError};
use crate::startup::{self, Process, Services};
use crate::telemetry::Audience;

pub async fn run(job: &JobArgs, display: Display) -> anyhow::Result<Exit> {
    let settings = Settings::from_env()?;
    startup::logging(Audience::CommandLine);
    // The same rules and defaults as a start over HTTP.
    let request = JobRequest::from_requested(job.requested(), settings.jobs.callback_policy)?;

    let services = Services::from_settings(&settings)?;
    services
        .store
        .ensure_container()
        .await
        .with_context(|| format!("storage is not usable ({})", services.store.describe()))?;
    let runner = services.runner(&settings, Process::OneOffCollection)?;
    let outcome = collect(&runner, request, display, settings.jobs.stale_after).await;
    runner.shutdown().await;
    outcome
}

/// Runs the job, follows it to its end, and sends what it owes (its hand-off) before the
/// process stops, for at most `send_for`; what is still unsent then is another instance's.
async fn collect(
    runner: &JobRunner,
    request: JobRequest,
    display: Display,
    send_for: std::time::Duration,
) -> anyhow::Result<Exit> {
    let accepted = runner
        .submit(request, None, None)
        .await
        .context("the job cannot be stored")?;
    let job_id = accepted.job_id;
    if display != Display::Json {
        println!(
            "collecting in this process: job {job_id}, {} subreddits",
            accepted.request.topics.len()
        );
    }
    let last = progress::follow(display, || async {
        let stored = runner
            .repository()
            .load(job_id)
            .await?
            .ok_or(RepositoryError::NotFound)?;
        Ok::<_, RepositoryError>(Fetched {
            raw: serde_json::to_value(&stored.document).expect("status documents serialise"),
            parsed: stored.document,
        })
    })
    .await
    .with_context(|| format!("the status of job {job_id} cannot be read"))?;
    runner.finish_owed(job_id, send_for).await;
    report::finished(&last, display);
    Ok(Exit::for_status(last.parsed.status))
}
