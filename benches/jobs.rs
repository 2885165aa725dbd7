//! Phases 3 and 4, whole jobs: the 7-subreddit job against its floor (the Reddit calls and the
//! blob writes it cannot do without), and the handler's memory after 10,000 jobs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use bytes::Bytes;
use serde_json::{json, Value};
use summary_womble::store::{BlobName, BlobStore, WriteCondition};
use testkit::fake_reddit::{self, FakeReddit};
use testkit::process::HandlerProcess;
use testkit::status;
use warp::Filter as _;

use super::calls::{api, ticket, TICKET_BODY};
use super::report::{ms, Figure, Summary};
use super::CLIENTS;

/// How long the 7-subreddit job may take, and how often its status document is read meanwhile.
const JOB_LIMIT: Duration = Duration::from_secs(60);
const JOB_POLL: Duration = Duration::from_millis(5);
/// One-subreddit jobs of the memory phase, and how many of them the handler runs at once.
pub(super) const MEMORY_JOBS: usize = 10_000;
pub(super) const MEMORY_CONCURRENT_JOBS: &str = "32";
/// Jobs of the memory phase submitted and not yet called back, at most.
const MEMORY_OUTSTANDING: usize = 256;
/// How long the memory phase may take to see every job end.
const DRAIN_LIMIT: Duration = Duration::from_secs(900);

/// Submits the standard job and waits for it to finish. Returns how long it took from the POST
/// to the first read that saw it terminal, its final status document and one output blob.
pub(super) async fn standard_job(
    handler: &HandlerProcess,
    store: &Arc<dyn BlobStore>,
) -> anyhow::Result<(Duration, Bytes, Bytes)> {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let id = ticket(&http, handler, TICKET_BODY).await?;
    let ended = status::wait_terminal(store.as_ref(), &id, JOB_LIMIT, JOB_POLL).await;
    let took = started.elapsed();
    let document = ended.document;
    ensure!(
        document["status"] == "completed",
        "the job ended {}: {}",
        document["status"],
        document["error"]
    );
    let outcomes = document["results"]["results"]
        .as_array()
        .context("a finished job without results")?;
    ensure!(
        outcomes.len() == 7 && outcomes.iter().all(|o| o["status"] == "success"),
        "not every subreddit succeeded: {}",
        document["results"]
    );
    let output = BlobName::parse(
        outcomes[0]["blob_name"]
            .as_str()
            .context("an outcome without blob_name")?,
    )?;
    let output = store
        .get(&output)
        .await?
        .context("an output blob is missing")?
        .body;
    Ok((took, ended.body, output))
}

/// One token call, one listing call, and the writes of a 7-subreddit job.
pub(super) async fn job_floor(
    fake: &FakeReddit,
    store: &Arc<dyn BlobStore>,
    status: &Bytes,
    output: &Bytes,
) -> anyhow::Result<Duration> {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let token: Value = http
        .post(format!("{}/api/v1/access_token", fake.url()))
        .basic_auth(fake_reddit::CLIENT_ID, Some(fake_reddit::CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = token["access_token"]
        .as_str()
        .context("no token")?
        .to_owned();
    let listing = http
        .get(format!(
            "{}/r/technology/hot?limit=12&raw_json=1",
            fake.url()
        ))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    ensure!(!listing.is_empty(), "the fake answered an empty listing");
    let reddit = started.elapsed();

    let started = Instant::now();
    let id = uuid::Uuid::new_v4();
    let status_name = BlobName::parse(format!("bench/floor/{id}/status.json"))?;
    store
        .put(
            &status_name,
            status.clone(),
            "application/json",
            WriteCondition::IfNotExists,
        )
        .await?;
    let outputs = (0..7).map(|i| {
        let name =
            BlobName::parse(format!("bench/floor/{id}/output-{i}.json")).expect("a valid name");
        let body = output.clone();
        async move {
            store
                .put(&name, body, "application/json", WriteCondition::IfNotExists)
                .await
        }
    });
    for written in futures::future::join_all(outputs).await {
        written?;
    }
    let read = store
        .get(&status_name)
        .await?
        .context("the floor's status vanished")?;
    store
        .put(
            &status_name,
            status.clone(),
            "application/json",
            WriteCondition::IfMatch(read.etag),
        )
        .await?;
    Ok(reddit + started.elapsed())
}

pub(super) fn job_figure(jobs: &[Duration], floors: &[Duration]) -> Figure {
    let job = Summary::of(&mut jobs.to_vec());
    let floor = Summary::of(&mut floors.to_vec());
    Figure::new("7-subreddit job, listing 200 ms, p50", ms(job.p50), "ms")
        .against(ms(floor.p50), "token + listing + writes")
        .note(format!("{} runs, max {:.0} ms", jobs.len(), ms(job.max)))
        .ratio_at_most(1.3)
}

/// Runs [`MEMORY_JOBS`] one-subreddit jobs through the handler and reads its RSS at the end.
///
/// Every job asks for a completion callback, which the benchmark receives; it then deletes the
/// job's status and output blobs, and only then submits another job beyond
/// [`MEMORY_OUTSTANDING`]. Azurite scans every blob it holds on each call (see
/// `testkit::azurite::OwnAzurite::in_memory`), so without this the phase would slow down to a
/// crawl as 30,000 blobs accumulate. The handler never reads a finished job again, so the
/// deletions change nothing for it.
pub(super) async fn memory_phase(
    handler: &HandlerProcess,
    store: &Arc<dyn BlobStore>,
    callbacks: Callbacks,
) -> anyhow::Result<Vec<Figure>> {
    let Callbacks { url, mut ended } = callbacks;
    let slots = Arc::new(tokio::sync::Semaphore::new(MEMORY_OUTSTANDING));
    let api = Arc::new(api(handler));
    let started = Instant::now();
    let submitters: Vec<_> = (0..CLIENTS)
        .map(|client_index| {
            let client = reqwest::Client::new();
            let api = api.clone();
            let url = url.clone();
            let slots = slots.clone();
            tokio::spawn(async move {
                let mut unavailable = 0;
                for n in (client_index..MEMORY_JOBS).step_by(CLIENTS) {
                    slots.acquire().await?.forget();
                    // One subreddit of its own per job, so no two jobs race for a blob name.
                    let body =
                        json!({"topics": [format!("b{n}")], "limit": 1, "callback_url": url})
                            .to_string();
                    for attempt in 1.. {
                        let answer = client
                            .post(api.as_str())
                            .header("content-type", "application/json")
                            .body(body.clone())
                            .send()
                            .await?;
                        let status = answer.status();
                        answer.bytes().await?;
                        // 503 is the service saying storage did not answer in time: nothing
                        // was started, so the job is submitted again, as a client would.
                        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE && attempt < 20 {
                            unavailable += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                        ensure!(
                            status == reqwest::StatusCode::ACCEPTED,
                            "a ticket was answered {status}"
                        );
                        break;
                    }
                }
                anyhow::Ok(unavailable)
            })
        })
        .collect();

    let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
    let (mut done, mut not_completed) = (0, 0);
    while done < MEMORY_JOBS {
        let Ok(Some(document)) = tokio::time::timeout_at(deadline, ended.recv()).await else {
            break;
        };
        done += 1;
        if document["status"] != "completed" {
            not_completed += 1;
        }
        let mut names = vec![document["job_id"]
            .as_str()
            .map(status::blob_name)
            .context("a callback without job_id")?];
        // The job's list-index entry too: Azurite slows down with every blob it holds.
        let id: summary_womble::jobs::JobId = serde_json::from_value(document["job_id"].clone())?;
        let created_at: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(document["created_at"].clone())?;
        names.push(summary_womble::jobs::repository::index_blob(created_at, id));
        names.extend(
            document["results"]["results"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|outcome| outcome["blob_name"].as_str())
                .filter_map(|name| BlobName::parse(name).ok()),
        );
        let store = store.clone();
        let slots = slots.clone();
        tokio::spawn(async move {
            for name in names {
                let _ = store.delete(&name).await;
            }
            slots.add_permits(1);
        });
    }
    let ran = started.elapsed();
    let mut unavailable = 0;
    for submitter in submitters {
        if done < MEMORY_JOBS {
            submitter.abort();
        } else {
            unavailable += submitter.await??;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss, peak) = memory(handler)?;
    let mut figure = Figure::new("RSS after 10,000 jobs", rss, "MB")
        .note(format!(
            "peak {peak:.1} MB; {done} jobs ended in {:.1} s ({not_completed} not completed, \
             {unavailable} submits answered 503 and repeated); MAX_CONCURRENT_JOBS={MEMORY_CONCURRENT_JOBS}",
            ran.as_secs_f64()
        ))
        .at_most(60.0);
    if done < MEMORY_JOBS {
        figure = figure.note(format!("only {done} jobs ended within {DRAIN_LIMIT:?}"));
        figure.pass = Some(false);
    }
    Ok(vec![figure])
}

/// A receiver of completion callbacks: where to send them, and the documents received.
pub(super) struct Callbacks {
    url: String,
    ended: tokio::sync::mpsc::UnboundedReceiver<Value>,
}

impl Callbacks {
    pub(super) async fn start() -> anyhow::Result<Self> {
        let (sender, ended) = tokio::sync::mpsc::unbounded_channel();
        let route = warp::path("done")
            .and(warp::post())
            .and(warp::body::bytes())
            .map(move |body: Bytes| {
                if let Ok(document) = serde_json::from_slice::<Value>(&body) {
                    let _ = sender.send(document);
                }
                warp::reply()
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/done", listener.local_addr()?);
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Ok(Self { url, ended })
    }
}

/// The handler's `VmRSS` and `VmHWM` (peak), in MB.
fn memory(handler: &HandlerProcess) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", handler.pid()))
        .context("cannot read the handler's /proc status")?;
    let field = |name: &str| -> anyhow::Result<f64> {
        let line = status
            .lines()
            .find(|line| line.starts_with(name))
            .with_context(|| format!("no {name} in /proc status"))?;
        let kib: f64 = line
            .trim_start_matches(name)
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()?;
        Ok(kib * 1024.0 / 1e6)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// The handler's RSS a second after its start, in MB.
pub(super) async fn idle_rss(handler: &HandlerProcess) -> anyhow::Result<f64> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(memory(handler)?.0)
}
