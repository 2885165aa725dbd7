//! Jobs: what was asked, what became of it, and the runner that does the work.
//!
//! Layout:
//! - [`request`]: [`JobId`] and [`JobRequest`] with its parsed parts.
//! - [`status`]: the [`StatusDocument`] stored at `jobs/<id>/status.json` and its state machine.
//! - [`repository`]: [`StatusRepository`], status documents on a blob store with ETag
//!   conditions, and the output blobs.
//! - [`callback`]: signed completion callbacks.
//! - [`runner`]: [`JobRunner`], which accepts jobs and runs them as tracked tasks.

pub mod callback;
pub mod repository;
pub mod request;
pub mod runner;
pub mod status;

pub use repository::{RepositoryError, StatusRepository};
pub use request::{JobId, JobRequest, Limit, Priority, Source};
pub use runner::{JobRunner, SubmitError};
pub use status::{JobStatus, StatusDocument, SubredditOutcome, TransitionError};
