//! `make bench`: the service measured against the storage limit, in one run.
//!
//! A ticket cannot be faster than one blob write, a status answer than one blob read, so every
//! service figure is measured next to its storage reference, in the same run, against the same
//! Azurite, through the same SDK (`AzureBlobStore`). The ratio between the two is what holds on a
//! noisy machine; the absolute numbers do not.
//!
//! The handler is the release `handler` binary, started the way the Functions host starts it
//! (`testkit::process`: `FUNCTIONS_CUSTOMHANDLER_PORT`, app settings in the environment, cwd =
//! app root, `GET /` probed until it answers), with the log filter a deployment has. Reddit is
//! the fake of the integration tests, with a listing latency set per phase. Phases 1 to 6 each
//! get an Azurite of their own, in memory (`testkit::azurite::OwnAzurite::in_memory`), and a
//! fresh handler on a fresh container, so no phase sees the blobs or jobs of another.
//!
//! Phases, in the order they run (`BENCH_PHASES` names the ones to run, comma-separated:
//! `latency`, `throughput`, `job`, `memory`, `list`, `requests`, `scale`; all by default):
//! 1. Latency, one keep-alive client (`tickets.rs`): tickets against raw Put Blob of the
//!    ticket's own status document, then status answers against raw Get Blob of the same blob.
//!    The two sides take turns, one call each, so drift on the machine hits both. The fake Reddit
//!    holds every request longer than the phase lasts, so the few jobs that start wait there (for
//!    their token) and the figure is the submit path, not the workers' storage traffic. Then the
//!    HTTP hop to the handler alone (`GET /`). The handler's RSS is read a second after its start
//!    (reported with phase 4).
//! 2. Throughput, 32 concurrent clients (32 connections; `tickets.rs`): tickets per second
//!    against raw puts per second, in alternating rounds, workers held as in phase 1.
//! 3. A job of the 7 standard subreddits with a listing latency of 200 ms, from the POST to the
//!    first read of its status document that shows it finished, on a handler that has no Reddit
//!    token yet; 3 runs, each on a handler of its own (`jobs.rs`). Its floor is measured right
//!    after each: one token call and one listing call to the fake, plus the writes a job cannot
//!    do without (create the status document, the 7 output blobs in parallel, read and write the
//!    final status).
//! 4. Memory (`jobs.rs`): the idle RSS of phase 1, then the RSS after 10,000 one-subreddit jobs
//!    (limit 1) have run to the end against the fake without latency; `MAX_CONCURRENT_JOBS=32`
//!    for this phase so it finishes in a few minutes. Jobs are paced by their completion
//!    callbacks, and finished jobs' blobs deleted (see [`jobs::memory_phase`]).
//! 5. A list as the history grows (`storage_cost.rs`): `GET ?top=20` with 100 jobs kept, then
//!    with 10,000, each beside a raw listing of the index and the reads it names.
//! 6. The storage requests of one 7-subreddit job, counted at a proxy in front of Azurite
//!    (`storage_cost.rs`), against the fewest a job can make.
//! 7. Scale (`scale.rs`): queue dispatch with 1, 2 and 4 instances under the host simulator,
//!    then several instances under one shared Reddit window, each run on an Azurite of its own.
//!
//! Then two figures of the whole run: spawn-to-ready of every handler phases 1 to 6 started
//! (probing every millisecond, where the host probes every 25 ms), and the size of the
//! measured binary.
//!
//! `BENCH_HANDLER=<path>` measures another build of the handler (the `make handler` one, or one
//! with symbols for a profiler).
//!
//! Each phase is watched (`machine.rs`): the table shows the 1-minute load average at its end
//! beside each figure, and a phase during which processes other than the benchmark's own kept
//! half a core or more busy is marked noisy (a warning while it runs, a note under the table).
//!
//! Output: a table on stdout and `target/bench/results.json`, the handlers' and Azurites' logs
//! beside it. A MISS does not fail the run; only a benchmark that cannot run exits non-zero.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use summary_womble::store::BlobStore;
use testkit::azurite::OwnAzurite;
use testkit::fake_reddit::FakeReddit;
use testkit::process::{HandlerOptions, HandlerProcess, Listen};

mod calls;
mod jobs;
mod machine;
mod report;
mod scale;
mod storage_cost;
mod tickets;

use jobs::{MEMORY_CONCURRENT_JOBS, MEMORY_JOBS};
use machine::Watch;
use report::{ms, progress, show, Figure, Summary};

/// Ends the watch of `phase` and tags its figures with what the machine did meanwhile; warns
/// when other processes held a core.
fn watched(phase: &str, watch: Watch, figures: Vec<Figure>) -> Vec<Figure> {
    let during = watch.stop();
    let load = during
        .load
        .map_or("unknown".to_owned(), |load| format!("{load:.2}"));
    let others = during
        .others_cores
        .map_or("unknown".to_owned(), |cores| format!("{cores:.2}"));
    progress(&format!(
        "phase {phase}: load average {load}, other processes {others} cores"
    ));
    if during.noisy() {
        progress(&format!(
            "WARNING: other processes kept about {others} cores busy during phase {phase}: its figures are noisy"
        ));
    }
    figures
        .into_iter()
        .map(|figure| figure.during(during))
        .collect()
}

/// The handler to measure: `BENCH_HANDLER` names another build (the `make handler` one, a
/// build with symbols for a profiler), else the release one cargo built with the benchmark.
fn handler_program() -> PathBuf {
    std::env::var_os("BENCH_HANDLER")
        .map(PathBuf::from)
        .unwrap_or_else(testkit::handler_executable)
}

/// Unrecorded calls before the samples of a comparison.
const WARMUP_SAMPLES: usize = 50;
/// Concurrent clients of the throughput phase, and of the memory and list phases' submits.
const CLIENTS: usize = 32;
/// Runs of the 7-subreddit job (each on a fresh handler, so each needs its token call).
const JOB_RUNS: usize = 3;
const LISTING_LATENCY: Duration = Duration::from_millis(200);
/// Listing latency that holds the workers while tickets are measured.
const HOLD_WORKERS: Duration = Duration::from_secs(600);
/// How often a starting handler is probed: finely, since its spawn-to-ready is a figure.
const PROBE_INTERVAL: Duration = Duration::from_millis(1);

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench: the async runtime cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(figures) => match report::publish(&figures) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("bench: {error:#}");
                ExitCode::FAILURE
            }
        },
        Err(error) => {
            eprintln!("bench: the benchmark could not run: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<Vec<Figure>> {
    let out_dir = bench_dir();
    std::fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {out_dir:?}"))?;
    let fake = FakeReddit::start().await;
    // The fake counts down a 600-request window by default; 10,000 jobs need more.
    fake.set_window(1_000_000_000, 600.0);
    let bench = Bench {
        fake,
        out_dir,
        spawns: Vec::new(),
    };
    bench.measure().await
}

/// Whether `phase` is measured: all of them, unless `BENCH_PHASES` names some.
fn wanted(phase: &str) -> bool {
    match std::env::var("BENCH_PHASES") {
        Ok(list) => list.split(',').any(|name| name.trim() == phase),
        Err(_) => true,
    }
}

fn bench_dir() -> PathBuf {
    testkit::app_root().join("target").join("bench")
}

struct Bench {
    fake: FakeReddit,
    out_dir: PathBuf,
    /// Spawn-to-first-answer of every handler started.
    spawns: Vec<Duration>,
}

impl Bench {
    async fn measure(mut self) -> anyhow::Result<Vec<Figure>> {
        let mut figures = Vec::new();
        let mut rss_idle = None;

        if wanted("latency") {
            // 1. Latency, one client.
            progress("ticket and status latency");
            let watch = Watch::start();
            self.fake.set_latency(HOLD_WORKERS);
            let azurite = self.azurite("latency").await;
            let (handler, store) = self.handler(&azurite, "latency", &[]).await;
            rss_idle = Some(jobs::idle_rss(&handler).await?);
            let latency = tickets::latency_phase(&handler, &store).await?;
            drop(handler);
            drop(azurite);
            let latency = watched("latency", watch, latency);
            show(&latency);
            figures.extend(latency);
        }

        if wanted("throughput") {
            // 2. Throughput, 32 clients.
            progress("throughput, 32 clients");
            let watch = Watch::start();
            let azurite = self.azurite("throughput").await;
            let (handler, store) = self.handler(&azurite, "throughput", &[]).await;
            let throughput = tickets::throughput_phase(&handler, &store).await?;
            drop(handler);
            drop(azurite);
            let throughput = watched("throughput", watch, throughput);
            show(&throughput);
            figures.extend(throughput);
        }

        if wanted("job") {
            // 3. The 7-subreddit job.
            progress("7-subreddit job");
            let watch = Watch::start();
            self.fake.set_latency(LISTING_LATENCY);
            let azurite = self.azurite("job").await;
            let mut jobs = Vec::new();
            let mut floors = Vec::new();
            for run in 0..JOB_RUNS {
                let (handler, store) = self.handler(&azurite, &format!("job-{run}"), &[]).await;
                let (took, status, output) = jobs::standard_job(&handler, &store).await?;
                drop(handler);
                jobs.push(took);
                floors.push(jobs::job_floor(&self.fake, &store, &status, &output).await?);
            }
            drop(azurite);
            let job = watched("job", watch, vec![jobs::job_figure(&jobs, &floors)]);
            show(&job);
            figures.extend(job);
        }

        if wanted("memory") {
            // 4. Memory.
            progress(&format!("{MEMORY_JOBS} jobs"));
            let watch = Watch::start();
            self.fake.set_latency(Duration::ZERO);
            let azurite = self.azurite("memory").await;
            let callbacks = jobs::Callbacks::start().await?;
            let (handler, store) = self
                .handler(
                    &azurite,
                    "memory",
                    &[
                        ("MAX_CONCURRENT_JOBS", MEMORY_CONCURRENT_JOBS),
                        ("ALLOW_INSECURE_CALLBACKS", "true"),
                        ("CALLBACK_SIGNING_KEY", "bench-signing-key"),
                    ],
                )
                .await;
            let mut memory: Vec<Figure> = rss_idle
                .map(|rss| Figure::new("RSS idle", rss, "MB").at_most(15.0))
                .into_iter()
                .collect();
            memory.extend(jobs::memory_phase(&handler, &store, callbacks).await?);
            drop(handler);
            drop(azurite);
            let memory = watched("memory", watch, memory);
            show(&memory);
            figures.extend(memory);
        }

        if wanted("list") {
            // 5. A list as the history grows.
            progress("list with 100 and then 10,000 jobs kept");
            let watch = Watch::start();
            self.fake.set_latency(HOLD_WORKERS);
            let azurite = self.azurite("list").await;
            let (handler, store) = self.handler(&azurite, "list", &[]).await;
            let list = storage_cost::list_phase(&handler, &store).await?;
            drop(handler);
            drop(azurite);
            let list = watched("list", watch, list);
            show(&list);
            figures.extend(list);
        }

        if wanted("requests") {
            // 6. The storage requests of one job.
            progress("storage requests of a 7-subreddit job");
            let watch = Watch::start();
            self.fake.set_latency(LISTING_LATENCY);
            let azurite = self.azurite("requests").await;
            let requests = storage_cost::requests_per_job(&mut self, &azurite).await?;
            drop(azurite);
            let requests = watched("requests", watch, vec![requests]);
            show(&requests);
            figures.extend(requests);
        }

        if wanted("scale") {
            // 7. Queue dispatch across instances.
            progress("queue dispatch with 1, 2 and 4 instances, then a shared Reddit window");
            let watch = Watch::start();
            let scale = scale::scale_phase().await?;
            figures.extend(watched("scale", watch, scale));
        }

        // Every start, from spawn to the first answer of `GET /`.
        let mut spawns = self.spawns.clone();
        let spawn = Summary::of(&mut spawns);
        figures.push(
            Figure::new("spawn to first GET / answer, p50", ms(spawn.p50), "ms")
                .note(format!(
                    "{} starts, max {:.1} ms",
                    spawns.len(),
                    ms(spawn.max)
                ))
                .at_most(20.0),
        );
        let program = handler_program();
        let size = std::fs::metadata(&program)
            .with_context(|| format!("cannot read {program:?}"))?
            .len();
        figures.push(
            Figure::new("release binary size", size as f64 / 1e6, "MB").note(
                program
                    .strip_prefix(testkit::app_root())
                    .unwrap_or(&program)
                    .display()
                    .to_string(),
            ),
        );
        Ok(figures)
    }

    /// An Azurite of the phase's own, in memory, its logs in `target/bench/azurite-<phase>/`.
    async fn azurite(&self, phase: &str) -> OwnAzurite {
        OwnAzurite::in_memory(&self.out_dir.join(format!("azurite-{phase}"))).await
    }

    /// Starts a handler on a fresh container, as the host would, and opens the same container
    /// for the raw references.
    async fn handler(
        &mut self,
        azurite: &OwnAzurite,
        phase: &str,
        extra: &[(&str, &str)],
    ) -> (HandlerProcess, Arc<dyn BlobStore>) {
        let container = azurite.container().await;
        let options = HandlerOptions::new(Listen::Host)
            .executable(handler_program())
            .default_log_filter()
            .log_file(self.out_dir.join(format!("handler-{phase}.log")))
            .probe_every(PROBE_INTERVAL)
            .env(self.fake.env())
            .env(container.storage_env())
            .env(extra.iter().copied());
        let handler = HandlerProcess::start_with(options).await;
        self.spawns.push(handler.spawn_to_ready());
        (handler, container.store)
    }
}
