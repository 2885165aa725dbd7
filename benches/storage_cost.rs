//! What the service asks of storage: a list as the history grows (phase 5), and the storage
//! requests of one 7-subreddit job against the fewest a job can make (phase 6).
//!
//! Phase 6 puts a counting proxy between the handler and Azurite: every request the handler
//! sends to storage passes through it and is counted. Shared-key signatures cover the path,
//! query and `x-ms-*` headers, not the host, so Azurite accepts the proxied requests as they
//! are (`testkit::storage_proxy`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use futures::StreamExt as _;
use serde_json::Value;
use summary_womble::store::BlobStore;
use testkit::azurite::OwnAzurite;
use testkit::process::HandlerProcess;
use testkit::status;
use testkit::storage_proxy::StorageProxy;

use super::calls::{api, ticket, timed, Failures, TICKET_BODY};
use super::jobs::standard_job;
use super::report::{ms, Figure, Summary};
use super::{Bench, CLIENTS, WARMUP_SAMPLES};

/// Jobs kept when the list is first measured, then when it is measured again.
const FEW_JOBS: usize = 100;
const MANY_JOBS: usize = 10_000;
/// Lists per side (the service's, the raw reference) at each size, and the time that may take.
const LIST_SAMPLES: usize = 200;
const LIST_BUDGET: Duration = Duration::from_secs(60);
/// The jobs a list answers with.
const LIST_TOP: usize = 20;
/// The flat prefix under which the raw reference lists (one entry per job, newest first).
const RAW_INDEX_PREFIX: &str = "jobs/index/";
/// What a job cannot do without: create its status document, write its 7 output blobs, write
/// its final status.
const JOB_FLOOR_REQUESTS: f64 = 9.0;

/// Phase 5: `GET ?top=20` with 100 jobs kept, then with 10,000, on the same handler and the
/// same Azurite. Each list is measured next to a raw reference, in turns: one bare listing of
/// the index (`maxresults=20`) and the 20 Get Blob of the status documents it names, which is
/// what the emulator itself costs for the answer at that size.
pub(super) async fn list_phase(
    handler: &HandlerProcess,
    store: &Arc<dyn BlobStore>,
) -> anyhow::Result<Vec<Figure>> {
    let http = reqwest::Client::new();
    fill(&http, handler, FEW_JOBS).await?;
    let few = list_latency(&http, handler, store).await?;
    fill(&http, handler, MANY_JOBS - FEW_JOBS).await?;
    let many = list_latency(&http, handler, store).await?;
    Ok(vec![
        Figure::new("list top=20 p50, 10,000 jobs kept", ms(many.list.p50), "ms")
            .against(ms(few.list.p50), "the same list, 100 jobs kept")
            .note(format!(
                "p99 {:.1} ms against {:.1} ms; {} and {} lists",
                ms(many.list.p99),
                ms(few.list.p99),
                many.samples,
                few.samples
            ))
            .ratio_at_most(1.5),
        Figure::new(
            "raw list + 20 reads p50, 10,000 jobs",
            ms(many.raw.p50),
            "ms",
        )
        .against(ms(few.raw.p50), "the same, 100 jobs kept")
        .note(format!(
            "the emulator's own cost: one List Blobs of {RAW_INDEX_PREFIX} (maxresults=20) \
                 p50 {:.1} ms against {:.1} ms, then 20 Get Blob at once p50 {:.1} ms against \
                 {:.1} ms",
            ms(many.raw_listing.p50),
            ms(few.raw_listing.p50),
            ms(many.raw_reads.p50),
            ms(few.raw_reads.p50)
        )),
        Figure::new(
            "list top=20 p50 against raw, 10,000 jobs",
            ms(many.list.p50),
            "ms",
        )
        .against(ms(many.raw.p50), "raw list + 20 reads, 10,000 jobs"),
    ])
}

/// Issues `count` more tickets, 32 clients at once.
async fn fill(
    http: &reqwest::Client,
    handler: &HandlerProcess,
    count: usize,
) -> anyhow::Result<()> {
    let failures = Failures::default();
    futures::stream::iter(0..count)
        .map(|_| ticket(http, handler, TICKET_BODY))
        .buffer_unordered(CLIENTS)
        .for_each(|result| {
            if let Err(error) = result {
                failures.record(error);
            }
            async {}
        })
        .await;
    failures.check(count)
}

/// Lists measured at one size.
struct ListLatency {
    /// The service's `GET ?top=20`.
    list: Summary,
    /// The raw reference, whole, and its two steps.
    raw: Summary,
    raw_listing: Summary,
    raw_reads: Summary,
    samples: usize,
}

async fn list_latency(
    http: &reqwest::Client,
    handler: &HandlerProcess,
    store: &Arc<dyn BlobStore>,
) -> anyhow::Result<ListLatency> {
    let url = format!("{}?top={LIST_TOP}", api(handler));
    let list = || async {
        let answer = http.get(&url).send().await?;
        ensure!(
            answer.status() == 200,
            "a list answered {}",
            answer.status()
        );
        let page: Value = serde_json::from_slice(&answer.bytes().await?)?;
        let jobs = page["jobs"].as_array().map_or(0, Vec::len);
        ensure!(jobs == LIST_TOP, "a list answered {jobs} jobs");
        anyhow::Ok(())
    };
    let failures = Failures::default();
    let (mut lists, mut raws, mut listings, mut reads) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut scratch = (Vec::new(), Vec::new(), Vec::new());
    let started = Instant::now();
    for _ in 0..WARMUP_SAMPLES {
        timed(&mut scratch.0, &failures, list()).await;
        if let Some((listing, read)) = timed(&mut scratch.1, &failures, raw_list(store)).await {
            scratch.2.extend([listing, read]);
        }
        if started.elapsed() > LIST_BUDGET / 4 {
            break;
        }
    }
    let started = Instant::now();
    let mut calls = scratch.0.len() * 2;
    // In turns, the order alternating, so both sides see the same machine.
    for n in 0..LIST_SAMPLES {
        if n % 2 == 1 {
            if let Some((listing, read)) = timed(&mut raws, &failures, raw_list(store)).await {
                listings.push(listing);
                reads.push(read);
            }
        }
        timed(&mut lists, &failures, list()).await;
        if n % 2 == 0 {
            if let Some((listing, read)) = timed(&mut raws, &failures, raw_list(store)).await {
                listings.push(listing);
                reads.push(read);
            }
        }
        calls += 2;
        if started.elapsed() > LIST_BUDGET {
            break;
        }
    }
    failures.check(calls)?;
    Ok(ListLatency {
        samples: lists.len(),
        list: Summary::of(&mut lists),
        raw: Summary::of(&mut raws),
        raw_listing: Summary::of(&mut listings),
        raw_reads: Summary::of(&mut reads),
    })
}

/// The raw reference of a list: one listing of the flat index prefix, then the status documents
/// of the 20 jobs it names, all at once. Returns how long each step took.
async fn raw_list(store: &Arc<dyn BlobStore>) -> anyhow::Result<(Duration, Duration)> {
    let started = Instant::now();
    let page = store.list(RAW_INDEX_PREFIX, None, LIST_TOP as u32).await?;
    let listing = started.elapsed();
    let ids: Vec<String> = page
        .items
        .iter()
        .filter_map(|item| item.name.as_str().rsplit_once('_'))
        .map(|(_, id)| id.to_owned())
        .collect();
    ensure!(
        ids.len() == LIST_TOP,
        "the index listing named {} jobs",
        ids.len()
    );
    let started = Instant::now();
    let reads = futures::future::join_all(ids.iter().map(|id| async move {
        let name = status::blob_name(id);
        store.get(&name).await
    }))
    .await;
    for read in reads {
        read?.context("an indexed job's status document is missing")?;
    }
    Ok((listing, started.elapsed()))
}

/// Phase 6: the storage requests of the standard job, counted at a proxy.
pub(super) async fn requests_per_job(
    bench: &mut Bench,
    azurite: &OwnAzurite,
) -> anyhow::Result<Figure> {
    let proxy = StorageProxy::start(&azurite.connection_string()).await;
    let (handler, store) = bench
        .handler(
            azurite,
            "requests",
            &[
                ("OUTPUT_STORAGE_CONNECTION_STRING", &proxy.connection_string),
                // No stale-job scan during the job: only the job's own requests are counted.
                ("JOB_STALE_AFTER_SECONDS", "86400"),
            ],
        )
        .await;
    // Start-up (the container, the first scan) is not the job's.
    let before = proxy.requests();
    standard_job(&handler, &store).await?;
    let counted = (proxy.requests() - before) as f64;
    drop(handler);
    Ok(
        Figure::new("storage requests, 7-subreddit job", counted, "requests")
            .against(
                JOB_FLOOR_REQUESTS,
                "1 create + 7 output writes + 1 final write",
            )
            .ratio_at_most(1.5),
    )
}
