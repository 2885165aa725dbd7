//! A job's status document as stored, read straight from storage rather than through the API:
//! for tests whose handler is down or must not be asked, and for the benchmark's raw
//! references. Its blob name, `jobs/<id>/status.json`, is the app's
//! (`summary_womble::jobs::repository`, where the function that makes it is not public); the
//! tests and the benchmark spell it here only.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use summary_womble::jobs::JobStatus;
use summary_womble::store::{BlobName, BlobStore, Metadata};

/// The name of the job's status document.
pub fn blob_name(job_id: &str) -> BlobName {
    BlobName::parse(format!("jobs/{job_id}/status.json")).expect("job ids make valid names")
}

/// Whether `name` is the name of a job's status document.
pub fn is_blob_name(name: &str) -> bool {
    name.strip_prefix("jobs/")
        .and_then(|rest| rest.strip_suffix("/status.json"))
        .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// Whether a status document (as stored or as answered) says its job has ended, by the app's
/// own rule ([`JobStatus::is_terminal`]).
pub fn is_terminal(document: &Value) -> bool {
    document["status"]
        .as_str()
        .and_then(JobStatus::parse)
        .is_some_and(JobStatus::is_terminal)
}

/// A status document as read: parsed, the bytes stored, and the blob's metadata (where the app
/// keeps what only its instances use).
#[derive(Debug, Clone)]
pub struct StoredStatus {
    pub document: Value,
    pub body: Bytes,
    pub metadata: Metadata,
}

/// The job's status document, if it is stored. Panics when the store fails or the document is
/// not JSON.
pub async fn read(store: &dyn BlobStore, job_id: &str) -> Option<StoredStatus> {
    let blob = store
        .get(&blob_name(job_id))
        .await
        .unwrap_or_else(|error| panic!("the status of job {job_id} cannot be read: {error}"))?;
    let document = serde_json::from_slice(&blob.body)
        .unwrap_or_else(|error| panic!("the status of job {job_id} is not JSON: {error}"));
    Some(StoredStatus {
        document,
        body: blob.body,
        metadata: blob.metadata,
    })
}

/// Reads the job's status document every `every` until it says the job has ended, and returns
/// that first terminal read; panics after `limit`.
pub async fn wait_terminal(
    store: &dyn BlobStore,
    job_id: &str,
    limit: Duration,
    every: Duration,
) -> StoredStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(stored) = read(store, job_id).await {
            if is_terminal(&stored.document) {
                return stored;
            }
        }
        assert!(
            Instant::now() < deadline,
            "job {job_id} not terminal after {limit:?}"
        );
        tokio::time::sleep(every).await;
    }
}
