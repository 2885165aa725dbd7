//! Phase 7, scale: queue dispatch across instances (`JOB_DISPATCH=queue`).
//!
//! Each instance is the release handler under the host simulator with its queue listener (the
//! host's own settings from `host.json`: batches of 4, the next batch at 2 running), on one
//! Azurite of the phase's own (blob and queue service) and one fake Reddit.
//!
//! 1. Throughput: the same [`SCALE_JOBS`] one-subreddit jobs with 1, 2 and 4 instances, the
//!    fake answering every listing after [`SCALE_LATENCY`] with no rate limit; jobs completed per
//!    second from the first submit to the last job terminal. 2 and 4 instances are shown against
//!    1, measured in the same run.
//! 2. A shared Reddit window: [`WINDOW_INSTANCES`] instances under one window of
//!    [`WINDOW_LIMIT`] listings per [`WINDOW_PERIOD`] for the one client id they share, with more
//!    work than the windows allow; the share of the windows' requests used (windows that ended
//!    while work waited), 429 answers per 100 listings, and jobs that did not complete.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use serde_json::{json, Value};
use testkit::app::post;
use testkit::azurite::OwnAzurite;
use testkit::fake_reddit::{FakeReddit, CLIENT_ID};
use testkit::host::{HostOptions, HostRequest, HostSimulator, QueueListenerOptions};
use testkit::status;

use super::report::{show, Figure};

const SCALE_JOBS: usize = 96;
const SCALE_LATENCY: Duration = Duration::from_millis(1000);
const SCALE_INSTANCES: [usize; 3] = [1, 2, 4];
const WINDOW_INSTANCES: usize = 3;
const WINDOW_LIMIT: usize = 20;
const WINDOW_PERIOD: Duration = Duration::from_secs(2);
/// Jobs of 3 subreddits each under the shared window: 180 listings, 9 windows' worth.
const WINDOW_JOBS: usize = 60;
const PHASE_LIMIT: Duration = Duration::from_secs(300);

pub(super) async fn scale_phase() -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let mut rates = Vec::new();
    for instances in SCALE_INSTANCES {
        let fake = FakeReddit::start().await;
        fake.set_unlimited();
        fake.set_latency(SCALE_LATENCY);
        let jobs: Vec<Value> = (0..SCALE_JOBS)
            .map(|n| json!({"topics": [format!("s{n:03}")], "limit": 5}))
            .collect();
        let (took, documents) = run(&fake, instances, &jobs).await?;
        let completed = documents
            .iter()
            .filter(|doc| doc["status"] == "completed")
            .count();
        ensure!(
            completed == SCALE_JOBS,
            "{completed} of {SCALE_JOBS} jobs completed with {instances} instances"
        );
        rates.push(SCALE_JOBS as f64 / took.as_secs_f64());
    }
    let one = rates[0];
    figures.push(
        Figure::new("queue: jobs/s, 1 instance", one, "jobs/s").note(format!(
            "{SCALE_JOBS} one-subreddit jobs, listing latency {} ms, no rate limit",
            SCALE_LATENCY.as_millis()
        )),
    );
    figures.push(
        Figure::new("queue: jobs/s, 2 instances", rates[1], "jobs/s")
            .against(one, "1 instance, same run")
            .ratio_at_least(1.8),
    );
    figures.push(
        Figure::new("queue: jobs/s, 4 instances", rates[2], "jobs/s")
            .against(one, "1 instance, same run")
            .ratio_at_least(3.2),
    );
    show(&figures);

    let window = shared_window().await?;
    show(&window);
    figures.extend(window);
    Ok(figures)
}

/// Several instances under one window for the client id they share.
async fn shared_window() -> anyhow::Result<Vec<Figure>> {
    let fake = FakeReddit::start().await;
    fake.set_fixed_window(WINDOW_LIMIT, WINDOW_PERIOD);
    let jobs: Vec<Value> = (0..WINDOW_JOBS)
        .map(|n| json!({"topics": [format!("w{n:02}a"), format!("w{n:02}b"), format!("w{n:02}c")], "limit": 5}))
        .collect();
    let (_, documents) = run(&fake, WINDOW_INSTANCES, &jobs).await?;
    let failed = documents
        .iter()
        .filter(|doc| {
            doc["status"] != "completed"
                || doc["results"]["results"]
                    .as_array()
                    .is_none_or(|results| results.iter().any(|r| r["status"] != "success"))
        })
        .count();
    // The last window was still open when the work ran out: it says nothing about pacing.
    let usage = fake.window_usage(CLIENT_ID);
    let full = &usage[..usage.len().saturating_sub(1)];
    let admitted: usize = full.iter().map(|window| window.admitted).sum();
    let allowed: usize = full.iter().map(|window| window.limit).sum();
    let listings = fake.listings_answered();
    let refusals = fake.rate_limited();
    Ok(vec![
        Figure::new("shared window: requests used", admitted as f64, "requests")
            .against(allowed as f64, "requests the windows allowed")
            .ratio_at_least(0.9)
            .note(format!(
                "{WINDOW_INSTANCES} instances, {WINDOW_LIMIT} listings per {} s, {} windows",
                WINDOW_PERIOD.as_secs(),
                full.len()
            )),
        Figure::new(
            "shared window: 429s per 100 listings",
            100.0 * refusals as f64 / listings.max(1) as f64,
            "per 100",
        )
        .note(format!("{refusals} 429s, {listings} listings answered")),
        Figure::new("shared window: jobs failed", failed as f64, "jobs").at_most(0.0),
    ])
}

/// Runs `jobs` on `instances` queue-mode instances on a fresh Azurite: submits them all (8 at
/// a time, spread over the instances), then waits until every one is terminal. Returns the time
/// from the first submit to the last job terminal, and the final status documents.
async fn run(
    fake: &FakeReddit,
    instances: usize,
    jobs: &[Value],
) -> anyhow::Result<(Duration, Vec<Value>)> {
    let azurite = OwnAzurite::start().await;
    let container = azurite.container().await;
    let mut hosts = Vec::new();
    for _ in 0..instances {
        let mut options = HostOptions::default().queue_listener(QueueListenerOptions::default());
        for (name, value) in container.storage_env().into_iter().chain(fake.env()) {
            options = options.env(name, value);
        }
        options = options
            .env("JOB_DISPATCH", "queue")
            .env("JOB_QUEUE", container.name.clone());
        hosts.push(HostSimulator::start(options).await);
    }

    let started = Instant::now();
    let mut ids = Vec::new();
    for (round, chunk) in jobs.chunks(8).enumerate() {
        let submits = chunk.iter().enumerate().map(|(k, body)| {
            let host = &hosts[(round * 8 + k) % hosts.len()];
            async move {
                let answer = host.forward(post(body)).await;
                ensure!(answer.status == 202, "start answered {}", answer.text());
                answer.json()["job_id"]
                    .as_str()
                    .map(str::to_owned)
                    .context("a ticket without a job_id")
            }
        });
        for id in futures::future::join_all(submits).await {
            ids.push(id?);
        }
    }

    // Jobs end in about the order they were queued: check them in order, up to the first that
    // is still going, so waiting costs few status calls.
    let mut documents = Vec::new();
    let mut next = 0;
    while next < ids.len() {
        let answer = hosts[0]
            .forward(HostRequest::get(&format!(
                "/api/SummaryWomble?job_id={}",
                ids[next]
            )))
            .await;
        let document = answer.json();
        if status::is_terminal(&document) {
            documents.push(document);
            next += 1;
            continue;
        }
        ensure!(
            started.elapsed() < PHASE_LIMIT,
            "{} of {} jobs not terminal after {PHASE_LIMIT:?}",
            ids.len() - next,
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    drop(hosts);
    drop(azurite);
    Ok((took, documents))
}
