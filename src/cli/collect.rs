//! `handler collect`: one collection in this process, against the configured storage, without
//! a server.
//!
//! The settings are the server's (the same environment variables); the store, the Reddit
//! client and the [`JobRunner`] are built by the same library functions the server uses, so a
//! job collected here is indistinguishable in storage from one submitted over HTTP. The job is
//! followed with the same progress display as `watch`, and the runner is shut down once the
//! job has ended.
//!
//! Logs go to stderr, errors only unless `RUST_LOG` says otherwise: the progress display is the
//! output here, and a subreddit's failure is in the results table anyway.

use std::sync::Arc;

use anyhow::Context as _;
use serde_json::Value;
use tracing_subscriber::EnvFilter;

use super::client::Fetched;
use super::progress::{self, Display};
use super::{report, Exit, JobArgs};
use crate::app::{open_store, reddit_client};
use crate::config::Settings;
use crate::functions::summary_womble::parse_start;
use crate::jobs::runner::RunnerOptions;
use crate::jobs::{JobRequest, JobRunner, RepositoryError, StatusRepository};

pub async fn run(job: &JobArgs, display: Display) -> anyhow::Result<Exit> {
    let settings = Settings::from_env()?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();

    // The same rules and defaults as a start over HTTP.
    let body = match serde_json::to_value(job.start_body())? {
        Value::Object(body) => body,
        _ => unreachable!("a start body is an object"),
    };
    let request = parse_start(&body, settings.jobs.allow_insecure_callbacks)?;

    let store = open_store(&settings.storage)?;
    store
        .ensure_container()
        .await
        .with_context(|| format!("storage is not usable ({})", store.describe()))?;
    let reddit = Arc::new(reddit_client(&settings.reddit)?);
    let runner = JobRunner::start(
        StatusRepository::new(store),
        reddit,
        RunnerOptions {
            // A one-off collection leaves other workers' jobs to the servers.
            adopt_stale_jobs: false,
            ..crate::app::runner_options(&settings)?
        },
    );
    let outcome = collect(&runner, request, display).await;
    runner.shutdown().await;
    outcome
}

async fn collect(
    runner: &JobRunner,
    request: JobRequest,
    display: Display,
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
    report::finished(&last, display);
    Ok(Exit::for_status(last.parsed.status))
}
