//! Jobs: what was asked, what became of it, and the runner that does the work.
//!
//! Layout:
//! - [`id`]: the job id, [`JobId`].
//! - [`request`]: [`JobRequest`] with its parsed parts, and the start rules that make one.
//! - [`progress`]: the progress step and the run stamp.
//! - [`status`]: the [`StatusDocument`] stored at `jobs/<id>/status.json` and its state machine.
//! - [`repository`]: [`StatusRepository`], status documents on a blob store with ETag
//!   conditions, and the output blobs; [`listing`]: its newest-first pages.
//! - [`metrics`]: the numbers over the jobs of the last 24 hours.
//! - [`callback`]: completion callbacks: the URL rules, the record, signing, sending and
//!   delivery.
//! - [`handoff`]: the hand-off to the next stage: one message per ended job on the completion
//!   queue, its record, sending and delivery.
//! - [`lease`]: the claim with a lease that lets one instance at a time send what an ended job
//!   owes (its callback, its hand-off).
//! - [`runner`]: [`JobRunner`], which accepts jobs and runs them as tracked tasks.
//! - [`usage`]: what a job used (requests, bytes, seconds), recorded in its status document.

pub mod callback;
pub mod handoff;
pub mod id;
pub mod lease;
pub mod listing;
pub mod metrics;
pub mod progress;
pub mod repository;
pub mod request;
pub mod runner;
pub mod status;
pub mod usage;

pub use callback::{CallbackPolicy, CallbackUrl};
pub use id::JobId;
pub use listing::{JobPage, ListFilter, ListPosition};
pub use progress::{ProgressStep, RunStamp};
pub use repository::{RepositoryError, StatusRepository};
pub use request::{
    IdempotencyKey, JobRequest, Limit, Priority, RequestError, RequestedJob, Source,
};
pub use runner::{JobRunner, SubmitError};
pub use status::{JobStatus, StatusDocument, SubredditOutcome, TransitionError};
