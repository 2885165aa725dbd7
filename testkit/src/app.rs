//! A whole app under test: the handler started by the host simulator, against a fresh Azurite
//! container and a fake Reddit of its own.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::azurite::Container;
use crate::fake_reddit::FakeReddit;
use crate::host::{HostOptions, HostRequest, HostResponse, HostSimulator, QueueListenerOptions};
use crate::process::{HandlerProcess, Listen};

/// How long the simulated queue listener hides a message it delivers (renewed at half of it):
/// the host's 10 minutes, shortened so a killed instance's job comes back within a test.
pub const QUEUE_VISIBILITY_UNDER_TEST: Duration = Duration::from_secs(4);

pub struct TestApp {
    pub host: HostSimulator,
    pub reddit: FakeReddit,
    pub container: Container,
    /// The settings the handler was started with, for starting more instances.
    pub env: Vec<(String, String)>,
    /// How the host was set up (keys), for starting more instances.
    options: HostOptions,
}

impl TestApp {
    pub async fn start() -> Self {
        Self::start_with(Vec::new()).await
    }

    /// Starts with extra settings (they win over the defaults).
    pub async fn start_with(extra: Vec<(&str, &str)>) -> Self {
        Self::start_on(Container::fresh().await, extra).await
    }

    /// Starts against a given container.
    pub async fn start_on(container: Container, extra: Vec<(&str, &str)>) -> Self {
        Self::start_hosted(container, extra, HostOptions::default()).await
    }

    /// Starts under a host set up by `options` (keys enforced, say); the app's settings are
    /// added to the options' own.
    pub async fn start_hosted(
        container: Container,
        extra: Vec<(&str, &str)>,
        options: HostOptions,
    ) -> Self {
        let reddit = FakeReddit::start().await;
        let mut env = container.env();
        env.extend(reddit.env());
        env.extend(extra.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())));
        let host = Self::instance(&options, &env).await;
        Self {
            host,
            reddit,
            container,
            env,
            options,
        }
    }

    async fn instance(options: &HostOptions, env: &[(String, String)]) -> HostSimulator {
        let mut options = options.clone();
        options.env.extend(env.iter().cloned());
        if crate::Dispatch::under_test() == crate::Dispatch::Queue
            && options.queue_listener.is_none()
        {
            // A killed instance's messages come back after seconds, not the host's minutes.
            options.queue_listener = Some(
                QueueListenerOptions::default()
                    .visibility_timeout(QUEUE_VISIBILITY_UNDER_TEST)
                    .retry_after_failure(Duration::from_secs(1)),
            );
        }
        let host = HostSimulator::start(options).await;
        if crate::Dispatch::under_test() == crate::Dispatch::Queue {
            host.wait_for_log("starting", Duration::from_secs(5)).await;
            let logs = host.logs();
            assert!(
                logs.lines()
                    .any(|line| line.contains("starting") && line.contains("queue")),
                "the handler did not start with queue dispatch; log:\n{logs}"
            );
        }
        host
    }

    /// Another handler instance sharing this app's storage and Reddit (a scaled-out app).
    pub async fn another_instance(&self) -> HostSimulator {
        Self::instance(&self.options, &self.env).await
    }

    /// Another instance, with settings of its own added (they win over the app's).
    pub async fn another_instance_with(&self, extra: Vec<(&str, &str)>) -> HostSimulator {
        let mut env = self.env.clone();
        env.extend(extra.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())));
        Self::instance(&self.options, &env).await
    }

    /// `request` as this app's callers send it: with a host key when the host wants one.
    pub fn with_key(&self, request: HostRequest) -> HostRequest {
        match self
            .options
            .enforce_keys
            .as_ref()
            .and_then(|keys| keys.first())
        {
            Some(key) => request.header("x-functions-key", key),
            None => request,
        }
    }

    /// Polls the stored status blob (not the API) until the job is terminal: for when this
    /// app's own handler is down and others do the work.
    pub async fn wait_stored_terminal(&self, job_id: &str, limit: Duration) -> Value {
        let every = Duration::from_millis(100);
        crate::status::wait_terminal(self.container.store.as_ref(), job_id, limit, every)
            .await
            .document
    }

    /// The status blob as stored.
    pub async fn stored_status(&self, job_id: &str) -> Option<Value> {
        self.container.stored_status(job_id).await
    }
}

#[async_trait]
impl JobApi for TestApp {
    /// Through the host, forwarded as `host.json` has it, with a host key when the host
    /// wants one.
    async fn call(&self, request: HostRequest) -> HostResponse {
        self.host.forward(self.with_key(request)).await
    }

    fn logs(&self) -> String {
        self.host.logs()
    }
}

/// The job-ticket API of an app under test, whichever way its calls arrive: what tests say to
/// SummaryWomble.
#[async_trait]
pub trait JobApi: Sync {
    /// Sends one call to SummaryWomble.
    async fn call(&self, request: HostRequest) -> HostResponse;

    /// What the app logged so far, for failure messages.
    fn logs(&self) -> String;

    /// Starts a job and returns the ticket, asserting the 202.
    async fn start_job(&self, body: Value) -> Value {
        let response = self.call(post(&body)).await;
        assert_eq!(response.status, 202, "start answered {}", response.text());
        response.json()
    }

    /// Starts a job and returns just its id.
    async fn submit(&self, body: Value) -> String {
        self.start_job(body).await["job_id"]
            .as_str()
            .expect("the ticket has a job_id")
            .to_owned()
    }

    async fn status(&self, job_id: &str) -> HostResponse {
        self.call(HostRequest::get(&format!(
            "/api/SummaryWomble?job_id={job_id}"
        )))
        .await
    }

    /// Polls the status until the job is terminal (panics after `limit`).
    async fn wait_terminal(&self, job_id: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let response = self.status(job_id).await;
            assert_eq!(response.status, 200, "status answered {}", response.text());
            let document = response.json();
            if crate::status::is_terminal(&document) {
                return document;
            }
            assert!(
                Instant::now() < deadline,
                "job {job_id} still {} after {limit:?}; log:\n{}",
                document["status"],
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A POST of `body` as JSON to SummaryWomble.
pub fn post(body: &Value) -> HostRequest {
    HostRequest::post("/api/SummaryWomble", Vec::new()).json(body)
}

/// A start body for the given subreddits.
pub fn job(topics: &[&str], limit: u32) -> Value {
    json!({"topics": topics, "limit": limit})
}

/// The handler in standalone mode (no Functions host): started directly, listening on `PORT`,
/// against a fresh container and a fake Reddit of its own.
pub struct StandaloneApp {
    /// Kept for the life of the app: the handler fetches from it.
    _reddit: FakeReddit,
    pub container: Container,
    process: HandlerProcess,
}

impl StandaloneApp {
    /// Starts with extra settings (they win over the defaults).
    pub async fn start(extra: Vec<(&str, &str)>) -> Self {
        let reddit = FakeReddit::start().await;
        let container = Container::fresh().await;
        let mut env = container.env();
        env.extend(reddit.env());
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let process = HandlerProcess::start(&crate::app_root(), Listen::Standalone, &env).await;
        Self {
            _reddit: reddit,
            container,
            process,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.process.url(path)
    }

    pub fn logs(&self) -> String {
        self.process.logs()
    }

    /// Waits until the log contains `needle`; panics with the log after `limit`.
    pub async fn wait_for_log(&self, needle: &str, limit: Duration) {
        self.process.wait_for_log(needle, limit).await;
    }
}
