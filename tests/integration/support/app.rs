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
}

impl TestApp {
    pub async fn start() -> Self {
        Self::start_with(Vec::new()).await
    }

    /// Starts with extra settings (they win over the defaults).
    pub async fn start_with(extra: Vec<(&str, &str)>) -> Self {
        let reddit = FakeReddit::start().await;
        let container = Container::fresh().await;
        let mut env = container.env();
        env.extend(reddit.env());
        env.extend(extra.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())));
        let host = HostSimulator::start(HostOptions {
            env,
            ..HostOptions::default()
        })
        .await;
        Self {
            host,
            reddit,
            container,
        }
    }

    /// Starts a job through the forwarded route and returns the ticket, asserting the 202.
    pub async fn start_job(&self, body: Value) -> Value {
        let response = self
            .host
            .forward(HostRequest::post("/api/SummaryWomble", Vec::new()).json(&body))
            .await;
        assert_eq!(response.status, 202, "start answered {}", response.text());
        response.json()
    }

    pub async fn status(&self, job_id: &str) -> HostResponse {
        self.host
            .forward(HostRequest::get(&format!("/api/SummaryWomble?job_id={job_id}")))
            .await
    }

    /// Polls the status until the job is terminal (panics after `limit`).
    pub async fn wait_terminal(&self, job_id: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let response = self.status(job_id).await;
            assert_eq!(response.status, 200, "status answered {}", response.text());
            let document = response.json();
            if ["completed", "failed", "cancelled"].contains(&document["status"].as_str().unwrap_or("")) {
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
