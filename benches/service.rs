//! `make bench`: the service measured against the storage limit, in one run.
//!
//! A ticket cannot be faster than one blob write, a status answer than one blob read, so every
//! service figure is measured next to its storage reference, in the same run, against the same
//! Azurite, through the same SDK (`AzureBlobStore`). The ratio between the two is what holds on a
//! noisy machine; the absolute numbers do not.
//!
//! The handler is the release `handler` binary, started the way the Functions host starts it
//! (`FUNCTIONS_CUSTOMHANDLER_PORT`, app settings in the environment, cwd = app root, `GET /`
//! probed until it answers). Reddit is the fake of the integration tests, with a listing latency
//! set per phase. Each phase gets an Azurite of its own (in memory, see [`Azurite`]) and a fresh
//! handler on a fresh container, so no phase sees the blobs or jobs of another.
//!
//! Phases:
//! 1. Latency, one keep-alive client: tickets against raw Put Blob of the ticket's own status
//!    document, then status answers against raw Get Blob of the same blob. The two sides take
//!    turns, one call each, so drift on the machine hits both. The fake Reddit holds every request
//!    longer than the phase lasts, so the few jobs that start wait there (for their token) and
//!    the figure is the submit path, not the workers' storage traffic.
//! 2. Throughput, 32 concurrent clients (32 connections): tickets per second against raw puts
//!    per second, again in alternating rounds, workers held as in phase 1.
//! 3. A job of the 7 standard subreddits with a listing latency of 200 ms, from the POST to the
//!    first status read that shows it finished, on a handler that has no Reddit token yet. Its
//!    floor is measured right after: one token call and one listing call to the fake, plus the
//!    writes a job cannot do without (create the status document, the 7 output blobs in
//!    parallel, read and write the final status).
//! 4. Memory: RSS idle (after start), then after 10,000 one-subreddit jobs (limit 1) have run to
//!    the end against the fake without latency; `MAX_CONCURRENT_JOBS=32` for this phase so it
//!    finishes in a few minutes. Jobs are paced by their completion callbacks, and finished
//!    jobs' blobs deleted (see [`memory_phase`]).
//!
//! 7. Scale: queue dispatch with 1, 2 and 4 instances, then several instances under one shared
//!    Reddit window (see [`scale`]).
//!
//! `BENCH_HANDLER=<path>` measures another build of the handler (the `make handler` one, or one
//! with symbols for a profiler).
//!
//! Spawn-to-ready is measured on every handler start (probing every millisecond, where the host
//! probes every 25 ms). Output: a table on stdout and `target/bench/results.json`. A MISS does
//! not fail the run; only a benchmark that cannot run exits non-zero.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use bytes::Bytes;
use serde_json::{json, Value};
use summary_womble::store::azure::AzureBlobStore;
use summary_womble::store::{BlobName, BlobStore, WriteCondition};
use testkit::fake_reddit::{self, FakeReddit};
use testkit::port::{is_bind_conflict, start_on_a_free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warp::Filter as _;

mod scale;
mod storage_cost;

/// The release handler `cargo bench` built alongside this benchmark.
const BUILT_HANDLER: &str = env!("CARGO_BIN_EXE_handler");
/// The app root: the handler's working directory, as under the host.
const APP_ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The handler to measure: `BENCH_HANDLER` names another build (the `make handler` one, a
/// build with symbols for a profiler), else the one built with the benchmark.
fn handler_program() -> PathBuf {
    std::env::var_os("BENCH_HANDLER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(BUILT_HANDLER))
}

/// Samples per side of a latency comparison, unrecorded samples before them, and samples of
/// the bare HTTP hop.
const LATENCY_SAMPLES: usize = 1000;
const WARMUP_SAMPLES: usize = 50;
const HOP_SAMPLES: usize = 200;
/// Concurrent clients of the throughput phase, requests per client per round, rounds.
const CLIENTS: usize = 32;
const PER_CLIENT: usize = 25;
const THROUGHPUT_ROUNDS: usize = 3;
/// Runs of the 7-subreddit job (each on a fresh handler, so each needs its token call).
const JOB_RUNS: usize = 3;
const LISTING_LATENCY: Duration = Duration::from_millis(200);
/// Listing latency that holds the workers while tickets are measured.
const HOLD_WORKERS: Duration = Duration::from_secs(600);
const MEMORY_JOBS: usize = 10_000;
const MEMORY_CONCURRENT_JOBS: &str = "32";
/// Jobs of the memory phase submitted and not yet called back, at most.
const MEMORY_OUTSTANDING: usize = 256;

const READY_LIMIT: Duration = Duration::from_secs(30);
const JOB_LIMIT: Duration = Duration::from_secs(60);
const DRAIN_LIMIT: Duration = Duration::from_secs(900);

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
        Ok(figures) => match report(&figures) {
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

/// Whether `phase` is measured: all of them, unless `BENCH_PHASES` names some (comma-separated:
/// latency, throughput, job, memory, list, requests).
fn wanted(phase: &str) -> bool {
    match std::env::var("BENCH_PHASES") {
        Ok(list) => list.split(',').any(|name| name.trim() == phase),
        Err(_) => true,
    }
}

fn bench_dir() -> PathBuf {
    Path::new(APP_ROOT).join("target").join("bench")
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
            self.fake.set_latency(HOLD_WORKERS);
            let azurite = Azurite::start(&self.out_dir, "latency").await?;
            let (handler, store) = self.handler(&azurite, "latency", &[]).await?;
            rss_idle = Some(idle_rss(&handler).await?);
            let latency = latency_phase(&handler, &store).await?;
            drop(handler);
            drop(azurite);
            show(&latency);
            figures.extend(latency);
        }

        if wanted("throughput") {
            // 2. Throughput, 32 clients.
            progress("throughput, 32 clients");
            let azurite = Azurite::start(&self.out_dir, "throughput").await?;
            let (handler, store) = self.handler(&azurite, "throughput", &[]).await?;
            let throughput = throughput_phase(&handler, &store).await?;
            drop(handler);
            drop(azurite);
            show(&throughput);
            figures.extend(throughput);
        }

        if wanted("job") {
            // 3. The 7-subreddit job.
            progress("7-subreddit job");
            self.fake.set_latency(LISTING_LATENCY);
            let azurite = Azurite::start(&self.out_dir, "job").await?;
            let mut jobs = Vec::new();
            let mut floors = Vec::new();
            for run in 0..JOB_RUNS {
                let (handler, store) = self.handler(&azurite, &format!("job-{run}"), &[]).await?;
                let (took, status, output) = standard_job(&handler, &store).await?;
                drop(handler);
                jobs.push(took);
                floors.push(self.job_floor(&store, &status, &output).await?);
            }
            drop(azurite);
            let job = job_figure(&jobs, &floors);
            show(std::slice::from_ref(&job));
            figures.push(job);
        }

        if wanted("memory") {
            // 4. Memory.
            progress(&format!("{MEMORY_JOBS} jobs"));
            self.fake.set_latency(Duration::ZERO);
            let azurite = Azurite::start(&self.out_dir, "memory").await?;
            let callbacks = Callbacks::start().await?;
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
                .await?;
            let mut memory: Vec<Figure> = rss_idle
                .map(|rss| Figure::new("RSS idle", rss, "MB").at_most(15.0))
                .into_iter()
                .collect();
            memory.extend(memory_phase(&handler, &store, callbacks).await?);
            drop(handler);
            drop(azurite);
            show(&memory);
            figures.extend(memory);
        }

        if wanted("list") {
            // 5. A list as the history grows.
            progress("list with 100 and then 10,000 jobs kept");
            self.fake.set_latency(HOLD_WORKERS);
            let azurite = Azurite::start(&self.out_dir, "list").await?;
            let (handler, store) = self.handler(&azurite, "list", &[]).await?;
            let list = storage_cost::list_phase(&handler, &store).await?;
            drop(handler);
            drop(azurite);
            show(&list);
            figures.extend(list);
        }

        if wanted("requests") {
            // 6. The storage requests of one job.
            progress("storage requests of a 7-subreddit job");
            self.fake.set_latency(LISTING_LATENCY);
            let azurite = Azurite::start(&self.out_dir, "requests").await?;
            let requests = storage_cost::requests_per_job(&mut self, &azurite).await?;
            drop(azurite);
            show(std::slice::from_ref(&requests));
            figures.push(requests);
        }

        if wanted("scale") {
            // 7. Queue dispatch across instances.
            progress("queue dispatch with 1, 2 and 4 instances, then a shared Reddit window");
            figures.extend(scale::scale_phase().await?);
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
                    .strip_prefix(APP_ROOT)
                    .unwrap_or(&program)
                    .display()
                    .to_string(),
            ),
        );
        Ok(figures)
    }

    /// Starts a handler on a fresh container, as the host would, and opens the same container
    /// for the raw references.
    async fn handler(
        &mut self,
        azurite: &Azurite,
        phase: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<(Handler, Arc<dyn BlobStore>)> {
        let container = format!("bench-{}", uuid::Uuid::new_v4().simple());
        let store = AzureBlobStore::from_connection_string(&azurite.connection_string, &container)
            .context("the Azurite connection string cannot be used")?;
        let store: Arc<dyn BlobStore> = Arc::new(store);
        let mut env: Vec<(String, String)> = self.fake.env();
        env.push((
            "AzureWebJobsStorage".into(),
            azurite.connection_string.clone(),
        ));
        env.push(("OUTPUT_CONTAINER".into(), container));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let log = self.out_dir.join(format!("handler-{phase}.log"));
        let handler = Handler::start(&env, &log).await?;
        self.spawns.push(handler.spawn_to_ready);
        // The handler creates the container in the background; wait until it exists so the
        // first raw write does not race it.
        let deadline = Instant::now() + READY_LIMIT;
        while store.list("", None, 1).await.is_err() {
            ensure!(
                Instant::now() < deadline,
                "the handler never created its container"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok((handler, store))
    }

    /// One token call, one listing call, and the writes of a 7-subreddit job.
    async fn job_floor(
        &self,
        store: &Arc<dyn BlobStore>,
        status: &Bytes,
        output: &Bytes,
    ) -> anyhow::Result<Duration> {
        let http = reqwest::Client::new();
        let started = Instant::now();
        let token: Value = http
            .post(format!("{}/api/v1/access_token", self.fake.url()))
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
                self.fake.url()
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
}

fn progress(what: &str) {
    eprintln!("bench: {what}");
}

/// A phase's figures as soon as they are measured.
fn show(figures: &[Figure]) {
    for figure in figures {
        let reference = figure
            .reference
            .map(|(value, what)| format!(" vs {} ({what})", number(value, figure.unit)))
            .unwrap_or_default();
        eprintln!(
            "bench:   {}: {}{reference} {}",
            figure.name,
            number(figure.value, figure.unit),
            figure.result_text()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Azurite, one per phase
// ---------------------------------------------------------------------------------------------

/// The well-known development account of Azurite; its key is public.
const AZURITE_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// An Azurite of the phase's own, in memory. Azurite gets slower with every blob it holds (its
/// metadata store looks a blob up by scanning; on disk it also rewrites its whole metadata
/// database, one JSON file, every few seconds): against one shared, on-disk Azurite a phase
/// would measure how many blobs the earlier phases left behind.
struct Azurite {
    child: Child,
    connection_string: String,
}

impl Azurite {
    /// Starts on a free port (another, when a process takes the first meanwhile).
    async fn start(out_dir: &Path, phase: &str) -> anyhow::Result<Self> {
        start_on_a_free_port(
            |port| Self::start_on(port, out_dir, phase),
            |error: &anyhow::Error| is_bind_conflict(&format!("{error:#}")),
        )
        .await
    }

    async fn start_on(port: u16, out_dir: &Path, phase: &str) -> anyhow::Result<Self> {
        let program = Path::new(APP_ROOT).join("node_modules/.bin/azurite-blob");
        ensure!(
            program.exists(),
            "{program:?} is missing; `make bench` installs it (npm ci)"
        );
        let dir = out_dir.join(format!("azurite-{phase}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {dir:?}"))?;
        let log_path = dir.join("azurite.log");
        let log = File::create(&log_path)?;
        let child = Command::new(&program)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            // In memory it keeps nothing on disk but its config file, in its cwd.
            .current_dir(&dir)
            // As scripts/azurite.sh: the SDK's x-ms-version may be newer than Azurite's.
            .args([
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--loose",
                "--silent",
            ])
            .arg("--disableTelemetry")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {program:?} (is Node.js installed?)"))?;
        let mut azurite = Self {
            child,
            connection_string: format!(
                "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;\
                 AccountKey={AZURITE_ACCOUNT_KEY};\
                 BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
            ),
        };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Some(status) = azurite.child.try_wait()? {
                bail!(
                    "Azurite exited during start ({status}): {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            ensure!(
                started.elapsed() < READY_LIMIT,
                "Azurite did not listen within {READY_LIMIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(azurite)
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The handler, started as the host starts it
// ---------------------------------------------------------------------------------------------

struct Handler {
    child: Child,
    base: String,
    spawn_to_ready: Duration,
}

impl Handler {
    /// Starts on a free port (another, when a process takes the first meanwhile).
    async fn start(env: &[(String, String)], log: &Path) -> anyhow::Result<Self> {
        start_on_a_free_port(
            |port| Self::start_on(port, env, log),
            |error: &anyhow::Error| is_bind_conflict(&format!("{error:#}")),
        )
        .await
    }

    async fn start_on(
        port: u16,
        env: &[(String, String)],
        log_path: &Path,
    ) -> anyhow::Result<Self> {
        let log = File::create(log_path).with_context(|| format!("cannot create {log_path:?}"))?;
        let program = handler_program();
        let mut command = Command::new(&program);
        command
            .current_dir(APP_ROOT)
            .env_clear()
            .envs(std::env::var("PATH").map(|path| ("PATH", path)))
            .envs(std::env::var("HOME").map(|home| ("HOME", home)))
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("FUNCTIONS_HTTPWORKER_PORT", port.to_string())
            .env("FUNCTIONS_APP_ROOT_PATH", APP_ROOT)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let spawned = Instant::now();
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {program:?}"))?;
        let mut handler = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            spawn_to_ready: Duration::ZERO,
        };
        loop {
            let answered = probe(port).await;
            // An answer counts only while the handler runs: one that exited lost its port to
            // whoever answered.
            if let Some(status) = handler.child.try_wait()? {
                bail!(
                    "the handler exited during start ({status}): {}",
                    std::fs::read_to_string(log_path).unwrap_or_default()
                );
            }
            if answered {
                handler.spawn_to_ready = spawned.elapsed();
                return Ok(handler);
            }
            ensure!(
                spawned.elapsed() < READY_LIMIT,
                "the handler did not answer GET / within {READY_LIMIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn api(&self) -> String {
        format!("{}/api/SummaryWomble", self.base)
    }

    /// `VmRSS` and `VmHWM` (peak), in MB.
    fn memory(&self) -> anyhow::Result<(f64, f64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
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
}

impl Drop for Handler {
    /// SIGKILL, as the host ends a handler.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One readiness probe: any HTTP answer to `GET /` counts, as for the host.
async fn probe(port: u16) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request).await.is_err() {
        return false;
    }
    let mut buffer = [0u8; 12];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buffer)).await,
        Ok(Ok(n)) if n > 0 && buffer.starts_with(b"HTTP/")
    )
}

async fn idle_rss(handler: &Handler) -> anyhow::Result<f64> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(handler.memory()?.0)
}

// ---------------------------------------------------------------------------------------------
// Calls
// ---------------------------------------------------------------------------------------------

/// The default collection request (the timer's job).
const TICKET_BODY: &str = "{}";

async fn ticket(http: &reqwest::Client, handler: &Handler, body: &str) -> anyhow::Result<String> {
    let answer = http
        .post(handler.api())
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await?;
    ensure!(
        answer.status() == reqwest::StatusCode::ACCEPTED,
        "a ticket was answered {}",
        answer.status()
    );
    let ticket: Value = answer.json().await?;
    Ok(ticket["job_id"]
        .as_str()
        .context("a ticket without job_id")?
        .to_owned())
}

/// A ticket whose answer is read but not parsed.
async fn submit(http: &reqwest::Client, api: &str, body: &'static str) -> anyhow::Result<()> {
    let answer = http
        .post(api)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = answer.status();
    answer.bytes().await?;
    ensure!(
        status == reqwest::StatusCode::ACCEPTED,
        "a ticket was answered {status}"
    );
    Ok(())
}

async fn status(http: &reqwest::Client, handler: &Handler, id: &str) -> anyhow::Result<Bytes> {
    let answer = http
        .get(handler.api())
        .query(&[("job_id", id)])
        .send()
        .await?;
    ensure!(
        answer.status().is_success(),
        "a status was answered {}",
        answer.status()
    );
    Ok(answer.bytes().await?)
}

fn status_blob(id: &str) -> BlobName {
    BlobName::parse(format!("jobs/{id}/status.json")).expect("job ids make valid names")
}

/// Distinct names for raw writes.
struct RawNames {
    prefix: String,
    next: std::sync::atomic::AtomicUsize,
}

impl RawNames {
    fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            next: Default::default(),
        }
    }

    fn next(&self) -> BlobName {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        BlobName::parse(format!("bench/{}/{n}", self.prefix)).expect("a valid name")
    }
}

/// One raw Put Blob of a new document, with the condition a status document is created with.
async fn raw_put(store: &dyn BlobStore, names: &RawNames, body: &Bytes) -> anyhow::Result<()> {
    store
        .put(
            &names.next(),
            body.clone(),
            "application/json",
            WriteCondition::IfNotExists,
        )
        .await?;
    Ok(())
}

/// Runs `call`, adding its duration to `samples` when it succeeds, or counting its failure.
async fn timed<T>(
    samples: &mut Vec<Duration>,
    failures: &Failures,
    call: impl std::future::Future<Output = anyhow::Result<T>>,
) -> Option<T> {
    let started = Instant::now();
    match call.await {
        Ok(value) => {
            samples.push(started.elapsed());
            Some(value)
        }
        Err(error) => {
            failures.record(error);
            None
        }
    }
}

/// Calls that failed while being measured. On a loaded machine a storage call now and then
/// times out; such a call is left out of the samples and counted. When more than 1 call in 100
/// fails, the phase is not measured at all.
#[derive(Default)]
struct Failures {
    count: std::sync::atomic::AtomicUsize,
    first: std::sync::Mutex<Option<String>>,
}

impl Failures {
    fn record(&self, error: anyhow::Error) {
        self.count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut first = self.first.lock().expect("not poisoned");
        first.get_or_insert_with(|| format!("{error:#}"));
    }

    fn count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn check(&self, calls: usize) -> anyhow::Result<()> {
        let count = self.count();
        if count * 100 > calls {
            let first = self.first.lock().expect("not poisoned").clone();
            bail!(
                "{count} of {calls} calls failed; the first: {}",
                first.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// A note for the figures, when anything failed.
    fn note(&self) -> Option<String> {
        let count = self.count();
        (count > 0).then(|| {
            format!(
                "{count} calls failed and are left out (the first: {})",
                self.first
                    .lock()
                    .expect("not poisoned")
                    .clone()
                    .unwrap_or_default()
            )
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Phases
// ---------------------------------------------------------------------------------------------

async fn latency_phase(
    handler: &Handler,
    store: &Arc<dyn BlobStore>,
) -> anyhow::Result<Vec<Figure>> {
    let http = reqwest::Client::new();
    let names = RawNames::new("put");
    // The raw reference writes exactly what a ticket writes: the ticket's status document.
    let first = ticket(&http, handler, TICKET_BODY).await?;
    let document = store
        .get(&status_blob(&first))
        .await?
        .context("the first ticket's status document is missing")?
        .body;
    let failures = Failures::default();
    let mut ids = vec![first];
    let (mut tickets, mut puts) = (Vec::new(), Vec::new());
    let mut scratch = Vec::new();
    let put = || raw_put(store.as_ref(), &names, &document);
    for _ in 0..WARMUP_SAMPLES {
        ids.extend(timed(&mut scratch, &failures, ticket(&http, handler, TICKET_BODY)).await);
        timed(&mut scratch, &failures, put()).await;
    }
    // One of each at a time, the order alternating, so both sides see the same machine.
    for n in 0..LATENCY_SAMPLES {
        if n % 2 == 1 {
            timed(&mut puts, &failures, put()).await;
        }
        let id = timed(&mut tickets, &failures, ticket(&http, handler, TICKET_BODY));
        ids.extend(id.await);
        if n % 2 == 0 {
            timed(&mut puts, &failures, put()).await;
        }
    }

    progress("status latency");
    let (mut statuses, mut gets) = (Vec::new(), Vec::new());
    let get = |id: &str| {
        let name = status_blob(id);
        async move { store.get(&name).await?.context("a status blob is missing") }
    };
    for id in ids.iter().take(WARMUP_SAMPLES) {
        timed(&mut scratch, &failures, status(&http, handler, id)).await;
        timed(&mut scratch, &failures, get(id)).await;
    }
    for (n, id) in ids.iter().cycle().take(LATENCY_SAMPLES).enumerate() {
        if n % 2 == 1 {
            timed(&mut gets, &failures, get(id)).await;
        }
        timed(&mut statuses, &failures, status(&http, handler, id)).await;
        if n % 2 == 0 {
            timed(&mut gets, &failures, get(id)).await;
        }
    }
    // What the HTTP hop to the handler costs by itself: the readiness route does no work.
    let mut hops = Vec::new();
    let readiness = || async {
        let answer = http.get(&handler.base).send().await?;
        answer.bytes().await?;
        anyhow::Ok(())
    };
    for _ in 0..HOP_SAMPLES {
        timed(&mut hops, &failures, readiness()).await;
    }
    failures.check((LATENCY_SAMPLES + WARMUP_SAMPLES) * 4 + HOP_SAMPLES)?;

    let ticket = Summary::of(&mut tickets);
    let put = Summary::of(&mut puts);
    let status = Summary::of(&mut statuses);
    let get = Summary::of(&mut gets);
    let hop = Summary::of(&mut hops);
    let size = format!("{} B document", document.len());
    let mut figures = vec![
        Figure::new("ticket latency p50", ms(ticket.p50), "ms")
            .against(ms(put.p50), "raw Put Blob p50")
            .note(size.clone())
            .ratio_at_most(1.2),
        Figure::new("ticket latency p99", ms(ticket.p99), "ms")
            .against(ms(put.p99), "raw Put Blob p99"),
        Figure::new("status latency p50", ms(status.p50), "ms")
            .against(ms(get.p50), "raw Get Blob p50")
            .note(size)
            .ratio_at_most(1.2),
        Figure::new("status latency p99", ms(status.p99), "ms")
            .against(ms(get.p99), "raw Get Blob p99"),
        Figure::new("GET / round trip p50", ms(hop.p50), "ms")
            .note("the HTTP hop to the handler alone, in the ticket and status figures"),
    ];
    if let Some(note) = failures.note() {
        figures[0] = figures[0].clone().note(note);
    }
    Ok(figures)
}

async fn throughput_phase(
    handler: &Handler,
    store: &Arc<dyn BlobStore>,
) -> anyhow::Result<Vec<Figure>> {
    let http = reqwest::Client::new();
    let first = ticket(&http, handler, TICKET_BODY).await?;
    let document = store
        .get(&status_blob(&first))
        .await?
        .context("the first ticket's status document is missing")?
        .body;
    let names = Arc::new(RawNames::new("put32"));
    let failures = Arc::new(Failures::default());
    let clients: Vec<reqwest::Client> = (0..CLIENTS).map(|_| reqwest::Client::new()).collect();
    let api = Arc::new(handler.api());

    // One side of a round: `calls` per client, all clients at once. Returns how many calls
    // succeeded and how long the round took.
    #[derive(Clone, Copy)]
    enum Side {
        Tickets,
        Puts,
    }
    let run = |side: Side, calls: usize| {
        let tasks: Vec<_> = clients
            .iter()
            .map(|client| {
                let client = client.clone();
                let api = api.clone();
                let store = store.clone();
                let names = names.clone();
                let document = document.clone();
                let failures = failures.clone();
                tokio::spawn(async move {
                    let mut done = 0;
                    for _ in 0..calls {
                        let outcome = match side {
                            Side::Tickets => submit(&client, &api, TICKET_BODY).await,
                            Side::Puts => raw_put(store.as_ref(), &names, &document).await,
                        };
                        match outcome {
                            Ok(()) => done += 1,
                            Err(error) => failures.record(error),
                        }
                    }
                    done
                })
            })
            .collect();
        async move {
            let started = Instant::now();
            let mut done = 0;
            for task in tasks {
                done += task.await?;
            }
            anyhow::Ok((done, started.elapsed()))
        }
    };

    // Warm every connection on every side.
    for side in [Side::Tickets, Side::Puts] {
        run(side, 2).await?;
    }
    let mut totals = [(0usize, Duration::ZERO); 2];
    for round in 0..THROUGHPUT_ROUNDS {
        for index in [round % 2, 1 - round % 2] {
            let side = [Side::Tickets, Side::Puts][index];
            let (done, took) = run(side, PER_CLIENT).await?;
            totals[index].0 += done;
            totals[index].1 += took;
        }
    }
    failures.check(CLIENTS * (PER_CLIENT * THROUGHPUT_ROUNDS + 2) * 2)?;
    let [tickets, puts] = totals.map(|(done, took)| done as f64 / took.as_secs_f64());
    let mut figures = vec![Figure::new("tickets/s, 32 clients", tickets, "/s")
        .against(puts, "raw puts/s, 32 concurrent")
        .ratio_at_least(0.8)];
    if let Some(note) = failures.note() {
        figures[0] = figures[0].clone().note(note);
    }
    Ok(figures)
}

/// Submits the standard job and waits for it to finish. Returns how long it took from the POST
/// to the first read that saw it terminal, its final status document and one output blob.
async fn standard_job(
    handler: &Handler,
    store: &Arc<dyn BlobStore>,
) -> anyhow::Result<(Duration, Bytes, Bytes)> {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let id = ticket(&http, handler, TICKET_BODY).await?;
    let name = status_blob(&id);
    loop {
        let blob = store
            .get(&name)
            .await?
            .context("the job's status vanished")?;
        let document: Value = serde_json::from_slice(&blob.body)?;
        match document["status"].as_str() {
            Some("completed" | "failed" | "cancelled") => {
                let took = started.elapsed();
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
                return Ok((took, blob.body, output));
            }
            _ => {
                ensure!(
                    started.elapsed() < JOB_LIMIT,
                    "the job did not finish within {JOB_LIMIT:?}"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

fn job_figure(jobs: &[Duration], floors: &[Duration]) -> Figure {
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
/// [`MEMORY_OUTSTANDING`]. Azurite scans every blob it holds on each call (see [`Azurite`]), so
/// without this the phase would slow down to a crawl as 30,000 blobs accumulate. The handler
/// never reads a finished job again, so the deletions change nothing for it.
async fn memory_phase(
    handler: &Handler,
    store: &Arc<dyn BlobStore>,
    callbacks: Callbacks,
) -> anyhow::Result<Vec<Figure>> {
    let Callbacks { url, mut ended } = callbacks;
    let slots = Arc::new(tokio::sync::Semaphore::new(MEMORY_OUTSTANDING));
    let api = Arc::new(handler.api());
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
            .map(status_blob)
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
    let (rss, peak) = handler.memory()?;
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
struct Callbacks {
    url: String,
    ended: tokio::sync::mpsc::UnboundedReceiver<Value>,
}

impl Callbacks {
    async fn start() -> anyhow::Result<Self> {
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

// ---------------------------------------------------------------------------------------------
// Figures and the report
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Summary {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Summary {
    /// Nearest-rank percentiles.
    fn of(samples: &mut [Duration]) -> Self {
        samples.sort();
        let rank = |p: f64| {
            if samples.is_empty() {
                return Duration::ZERO;
            }
            let index = ((samples.len() as f64) * p).ceil() as usize;
            samples[index.clamp(1, samples.len()) - 1]
        };
        Self {
            p50: rank(0.50),
            p99: rank(0.99),
            max: rank(1.0),
        }
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[derive(Debug, Clone, Copy)]
enum Target {
    RatioAtMost(f64),
    RatioAtLeast(f64),
    AtMost(f64),
}

#[derive(Debug, Clone)]
struct Figure {
    name: &'static str,
    value: f64,
    unit: &'static str,
    reference: Option<(f64, &'static str)>,
    target: Option<Target>,
    pass: Option<bool>,
    notes: Vec<String>,
}

impl Figure {
    fn new(name: &'static str, value: f64, unit: &'static str) -> Self {
        Self {
            name,
            value,
            unit,
            reference: None,
            target: None,
            pass: None,
            notes: Vec::new(),
        }
    }

    fn against(mut self, reference: f64, what: &'static str) -> Self {
        self.reference = Some((reference, what));
        self
    }

    fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    fn ratio(&self) -> Option<f64> {
        self.reference.map(|(reference, _)| self.value / reference)
    }

    fn judged(mut self, target: Target) -> Self {
        self.target = Some(target);
        self.pass = match target {
            Target::RatioAtMost(limit) => self.ratio().map(|ratio| ratio <= limit),
            Target::RatioAtLeast(limit) => self.ratio().map(|ratio| ratio >= limit),
            Target::AtMost(limit) => Some(self.value <= limit),
        };
        self
    }

    fn ratio_at_most(self, limit: f64) -> Self {
        self.judged(Target::RatioAtMost(limit))
    }

    fn ratio_at_least(self, limit: f64) -> Self {
        self.judged(Target::RatioAtLeast(limit))
    }

    fn at_most(self, limit: f64) -> Self {
        self.judged(Target::AtMost(limit))
    }

    fn target_text(&self) -> String {
        match self.target {
            Some(Target::RatioAtMost(limit)) => format!("ratio ≤ {limit}"),
            Some(Target::RatioAtLeast(limit)) => format!("ratio ≥ {limit}"),
            Some(Target::AtMost(limit)) => format!("≤ {limit} {}", self.unit),
            None => "reported".into(),
        }
    }

    fn result_text(&self) -> &'static str {
        match self.pass {
            Some(true) => "PASS",
            Some(false) => "MISS",
            None => "—",
        }
    }

    fn json(&self) -> Value {
        json!({
            "figure": self.name,
            "value": round(self.value),
            "unit": self.unit,
            "reference": self.reference.map(|(value, _)| round(value)),
            "reference_is": self.reference.map(|(_, what)| what),
            "ratio": self.ratio().map(round),
            "target": self.target.map(|_| self.target_text()),
            "result": self.pass.map(|pass| if pass { "PASS" } else { "MISS" }),
            "notes": self.notes,
        })
    }
}

fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

fn number(value: f64, unit: &str) -> String {
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.digits$} {unit}")
}

fn report(figures: &[Figure]) -> anyhow::Result<()> {
    let rows: Vec<[String; 6]> = figures
        .iter()
        .map(|figure| {
            [
                figure.name.to_owned(),
                number(figure.value, figure.unit),
                figure
                    .reference
                    .map(|(value, what)| format!("{} ({what})", number(value, figure.unit)))
                    .unwrap_or_else(|| "—".into()),
                figure
                    .ratio()
                    .map(|ratio| format!("{ratio:.2}"))
                    .unwrap_or_else(|| "—".into()),
                figure.target_text(),
                figure.result_text().to_owned(),
            ]
        })
        .collect();
    let header = ["figure", "value", "reference", "ratio", "target", "result"];
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; 6]| {
        let mut text = String::from("|");
        for (cell, width) in cells.iter().zip(widths) {
            let pad = width - cell.chars().count();
            let _ = write!(text, " {cell}{} |", " ".repeat(pad));
        }
        text
    };
    let mut table = String::new();
    table.push_str(&line(&header.map(String::from)));
    table.push('\n');
    table.push('|');
    for width in widths {
        let _ = write!(table, "{}|", "-".repeat(width + 2));
    }
    table.push('\n');
    for row in &rows {
        table.push_str(&line(row));
        table.push('\n');
    }
    println!("\n{table}");
    for figure in figures.iter().filter(|figure| !figure.notes.is_empty()) {
        println!("{}: {}", figure.name, figure.notes.join("; "));
    }

    let results = json!({
        "machine": {
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        },
        "figures": figures.iter().map(Figure::json).collect::<Vec<_>>(),
    });
    let path = bench_dir().join("results.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&results)?)
        .with_context(|| format!("cannot write {path:?}"))?;
    println!("\nwritten to {}", path.display());
    Ok(())
}
