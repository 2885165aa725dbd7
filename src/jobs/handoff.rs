//! The hand-off to the next stage of the pipeline (docs/api.md section 10): with
//! `COMPLETION_QUEUE` set, every job that ends puts one message on that Storage queue, naming
//! the job, its final status and its output blobs, for a queue-triggered function to bind to.
//!
//! Like the completion callback, it is owed from the write that ends the job, and sent once
//! across instances and kills:
//! - [`record`]: [`HandoffRecord`], `wanted → owed → sent`, with the [`Lease`] of whoever sends
//!   it; kept with the job's internals, in the status blob's metadata, never in `status.json`.
//! - `transitions`: the status document's moves: wanting a hand-off when the job is created,
//!   claiming it, renewing the claim, recording it sent. (The job's end turns `wanted` into
//!   `owed` in `StatusDocument::end`, so every way a job ends owes it, in the same write.)
//! - [`delivery`]: [`HandoffDelivery`](delivery::HandoffDelivery): claim, send, record.
//! - here: [`HandoffMessage`], the message body, and [`HandoffQueue`], where it goes.
//!
//! A job created while `COMPLETION_QUEUE` was unset owes none, and neither does a job whose
//! ticket was refused (its hand-over to a worker failed, and its caller got a 503).
//!
//! [`Lease`]: crate::jobs::lease::Lease

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::id::JobId;
use super::repository::status_blob;
use super::status::{JobStatus, OutcomeStatus, StatusDocument};
use crate::store::queue::MessageQueue;

pub mod delivery;
pub mod record;
mod transitions;

pub use record::{HandoffRecord, HandoffState};

/// The message a job's end puts on the completion queue (docs/api.md section 10): what a next
/// stage needs to find the job's output, and to bind to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoffMessage {
    pub job_id: JobId,
    /// `completed`, `failed` or `cancelled`.
    pub status: JobStatus,
    pub finished_at: DateTime<Utc>,
    /// The container that holds the output blobs and the status document.
    pub container: String,
    /// The job's status document, in `container`.
    pub status_blob: String,
    /// The output blobs of the subreddits that succeeded, in request order: the `blob_name`s of
    /// `results`. Empty for a job with none.
    pub blob_names: Vec<String>,
}

impl HandoffMessage {
    /// The message of an ended job whose blobs are in `container`; `None` while it runs.
    pub fn of(document: &StatusDocument, container: &str) -> Option<Self> {
        if !document.status.is_terminal() {
            return None;
        }
        let blob_names = document
            .results
            .iter()
            .flat_map(|results| &results.results)
            .filter(|outcome| outcome.status == OutcomeStatus::Success)
            .filter_map(|outcome| outcome.blob_name.clone())
            .collect();
        Some(Self {
            job_id: document.job_id,
            status: document.status,
            finished_at: document.finished_at.unwrap_or(document.updated_at),
            container: container.to_owned(),
            status_blob: status_blob(document.job_id).as_str().to_owned(),
            blob_names,
        })
    }

    /// The message text, JSON (the queue base64-encodes it on the wire).
    pub fn text(&self) -> String {
        serde_json::to_string(self).expect("a hand-off message serialises")
    }
}

/// Where hand-offs go: the completion queue (`COMPLETION_QUEUE`, in the job queue's account),
/// and the container their messages name.
#[derive(Clone)]
pub struct HandoffQueue {
    pub queue: Arc<dyn MessageQueue>,
    pub container: String,
}

impl std::fmt::Debug for HandoffQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandoffQueue")
            .field("queue", &self.queue.describe())
            .field("container", &self.container)
            .finish()
    }
}

#[cfg(test)]
mod tests;
