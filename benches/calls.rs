//! The calls the phases make and time: tickets and status answers over HTTP, raw blob writes
//! beside them, and the failures left out of the samples.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use bytes::Bytes;
use serde_json::Value;
use summary_womble::store::{BlobName, BlobStore, WriteCondition};
use testkit::process::HandlerProcess;

/// SummaryWomble's address on the handler.
pub(super) fn api(handler: &HandlerProcess) -> String {
    handler.url("/api/SummaryWomble")
}

/// The default collection request (the timer's job).
pub(super) const TICKET_BODY: &str = "{}";

pub(super) async fn ticket(
    http: &reqwest::Client,
    handler: &HandlerProcess,
    body: &str,
) -> anyhow::Result<String> {
    let answer = http
        .post(api(handler))
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
pub(super) async fn submit(
    http: &reqwest::Client,
    api: &str,
    body: &'static str,
) -> anyhow::Result<()> {
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

pub(super) async fn status_answer(
    http: &reqwest::Client,
    handler: &HandlerProcess,
    id: &str,
) -> anyhow::Result<Bytes> {
    let answer = http
        .get(api(handler))
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

/// Distinct names for raw writes.
pub(super) struct RawNames {
    prefix: String,
    next: std::sync::atomic::AtomicUsize,
}

impl RawNames {
    pub(super) fn new(prefix: &str) -> Self {
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
pub(super) async fn raw_put(
    store: &dyn BlobStore,
    names: &RawNames,
    body: &Bytes,
) -> anyhow::Result<()> {
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
pub(super) async fn timed<T>(
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
pub(super) struct Failures {
    count: std::sync::atomic::AtomicUsize,
    first: std::sync::Mutex<Option<String>>,
}

impl Failures {
    pub(super) fn record(&self, error: anyhow::Error) {
        self.count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut first = self.first.lock().expect("not poisoned");
        first.get_or_insert_with(|| format!("{error:#}"));
    }

    fn count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(super) fn check(&self, calls: usize) -> anyhow::Result<()> {
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
    pub(super) fn note(&self) -> Option<String> {
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
