//! A whole app under test: the handler started by the host simulator, against a fresh Azurite
//! container and a fake Reddit of its own.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::azurite::Container;
use super::fake_reddit::FakeReddit;
use super::host::{HostOptions, HostRequest, HostResponse, HostSimulator};

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
        HostSimulator::start(options).await
    }

    /// Another handler instance sharing this app's storage and Reddit (a scaled-out app).
    pub async fn another_instance(&self) -> HostSimulator {
        Self::instance(&self.options, &self.env).await
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

    /// Starts a job through the forwarded route and returns the ticket, asserting the 202.
    pub async fn start_job(&self, body: Value) -> Value {
        let response = self
            .host
            .forward(self.with_key(HostRequest::post("/api/SummaryWomble", Vec::new()).json(&body)))
            .await;
        assert_eq!(response.status, 202, "start answered {}", response.text());
        response.json()
    }

    /// Starts a job and returns just its id.
    pub async fn submit(&self, body: Value) -> String {
        self.start_job(body).await["job_id"]
            .as_str()
            .expect("the ticket has a job_id")
            .to_owned()
    }

    pub async fn status(&self, job_id: &str) -> HostResponse {
        self.host
            .forward(self.with_key(HostRequest::get(&format!(
                "/api/SummaryWomble?job_id={job_id}"
            ))))
            .await
    }

    /// Polls the status until the job is terminal (panics after `limit`).
    pub async fn wait_terminal(&self, job_id: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let response = self.status(job_id).await;
            assert_eq!(response.status, 200, "status answered {}", response.text());
            let document = response.json();
            if ["completed", "failed", "cancelled"]
                .contains(&document["status"].as_str().unwrap_or(""))
            {
                return document;
            }
            assert!(
                Instant::now() < deadline,
                "job {job_id} still {} after {limit:?}; handler log:\n{}",
                document["status"],
                self.host.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls the stored status blob (not the API) until the job is terminal: for when this
    /// app's own handler is down and others do the work.
    pub async fn wait_stored_terminal(&self, job_id: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(document) = self.stored_status(job_id).await {
                if ["completed", "failed", "cancelled"]
                    .contains(&document["status"].as_str().unwrap_or(""))
                {
                    return document;
                }
            }
            assert!(
                Instant::now() < deadline,
                "job {job_id} not terminal after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The status blob as stored.
    pub async fn stored_status(&self, job_id: &str) -> Option<Value> {
        self.container
            .read_json(&format!("jobs/{job_id}/status.json"))
            .await
    }
}

/// A start body for the given subreddits.
pub fn job(topics: &[&str], limit: u32) -> Value {
    json!({"topics": topics, "limit": limit})
}

/// The handler in standalone mode (no Functions host): started directly, listening on `PORT`.
pub struct StandaloneApp {
    /// Kept for the life of the app: the handler fetches from it.
    _reddit: FakeReddit,
    pub container: Container,
    pub port: u16,
    child: std::process::Child,
    logs: std::sync::Arc<std::sync::Mutex<String>>,
}

impl StandaloneApp {
    pub async fn start(extra: Vec<(&str, &str)>) -> Self {
        use std::io::BufRead;
        let reddit = FakeReddit::start().await;
        let container = Container::fresh().await;
        let port = super::host::free_port();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_handler"));
        command
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("PORT", port.to_string())
            .envs(container.env())
            .envs(reddit.env())
            .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().expect("the handler starts");
        let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    let mut logs = logs.lock().unwrap();
                    logs.push_str(&line);
                    logs.push('\n');
                }
            });
        }
        let app = Self {
            _reddit: reddit,
            container,
            port,
            child,
            logs,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(app.url("/")).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "standalone handler not ready:\n{}",
                app.logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        app
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }
}

impl Drop for StandaloneApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
