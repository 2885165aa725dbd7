//! Blob storage behind one trait.
//!
//! This module speaks blobs only: names, bytes, content types, ETag conditions, prefixes and
//! listing. It knows nothing about jobs; `crate::jobs` builds the status repository on top of it.
//! Every Azure SDK call for blobs lives in [`azure`] and every one for queues in
//! [`queue::azure`], so moving to another SDK generation touches those two files (and what they
//! share under `azure/`).
//!
//! Layout:
//! - [`BlobStore`]: the trait every store implements, with its contract spelled out.
//! - [`azure`]: Azure Blob Storage (connection string, Azurite, or managed identity).
//! - [`local`]: a directory on disk, the zero-setup default.
//! - [`queue`]: storage queues ([`queue::MessageQueue`]), for queue dispatch.

pub mod azure;
pub mod local;
mod metadata;
pub mod queue;
#[cfg(test)]
pub mod steered;

use std::fmt;
use std::future::Future;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

pub use metadata::{InvalidMetadata, Metadata};

use crate::retry::Verdict;

/// A blob name that is safe to use under the container: relative, `/`-separated, and unable to
/// escape its prefix.
///
/// Rejected: empty names, a leading `/`, empty segments (`a//b`), `.` and `..` segments,
/// backslashes, control characters, and names over 1,024 bytes (Azure's limit).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobName(String);

impl BlobName {
    pub fn parse(name: impl Into<String>) -> Result<Self, InvalidBlobName> {
        let name = name.into();
        let valid = !name.is_empty()
            && name.len() <= 1024
            && !name.contains('\\')
            && !name.chars().any(char::is_control)
            && name
                .split('/')
                .all(|segment| !segment.is_empty() && segment != "." && segment != "..");
        if valid {
            Ok(Self(name))
        } else {
            Err(InvalidBlobName(name))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BlobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid blob name {0:?}")]
pub struct InvalidBlobName(pub String);

/// An entity tag as the store returns it; opaque, compared only for equality.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ETag(pub String);

/// The precondition of a write. Conditional writes are how no update is ever lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCondition {
    /// Create only: fails with [`StoreError::ConditionFailed`] when the blob exists
    /// (`If-None-Match: *`).
    IfNotExists,
    /// Replace only the version we read: fails with [`StoreError::ConditionFailed`] when the blob
    /// changed or is gone (`If-Match: <etag>`).
    IfMatch(ETag),
}

/// A blob read back from the store.
#[derive(Debug, Clone)]
pub struct Blob {
    pub body: Bytes,
    pub etag: ETag,
    /// What the write that stored `body` set with it (empty when it set none).
    pub metadata: Metadata,
}

/// One entry of a listing.
#[derive(Debug, Clone)]
pub struct BlobItem {
    pub name: BlobName,
    pub last_modified: DateTime<Utc>,
    pub size: u64,
}

/// One page of a listing, in name order, with the marker that continues it.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub items: Vec<BlobItem>,
    pub next_marker: Option<String>,
}

/// What a store call can fail with. Callers decide what to retry from the kind.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A write precondition did not hold (the blob exists, or changed since it was read).
    #[error("the blob's write condition did not hold")]
    ConditionFailed,
    /// The store could not be reached or answered with a server error: worth retrying.
    #[error("storage is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Anything else (bad credentials, a refused request): retrying will not help.
    #[error("storage request failed")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Whether the same call may succeed later (network trouble, 5xx, throttling).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// What this failure means for another attempt: after the wait the service asked for
    /// (`Retry-After`) when it named one, after the caller's backoff when it may pass, never
    /// when it is final.
    pub fn verdict(&self) -> Verdict {
        match azure::errors::server_wait(self) {
            Some(wait) => Verdict::RetryAfter(wait),
            None => Verdict::retry_if(self.is_retryable()),
        }
    }
}

tokio::task_local! {
    /// Set while the store calls of a caller that retries them itself run: each call is then
    /// one attempt, so that the caller's budget is the only one (docs/storage.md, "Retry
    /// budgets").
    static RETRIED_BY_CALLER: ();
}

/// Runs `calls`, whose store calls the caller retries itself (through [`crate::retry`], with
/// its own budget), with one attempt per store call: the store's own short retry
/// ([`StoreError::verdict`] tells the caller how to go on) would otherwise run inside every
/// attempt of the caller's.
pub async fn retried_by_caller<F: Future>(calls: F) -> F::Output {
    RETRIED_BY_CALLER.scope((), calls).await
}

/// Whether the store call under way is inside [`retried_by_caller`].
pub(crate) fn is_retried_by_caller() -> bool {
    RETRIED_BY_CALLER.try_with(|()| ()).is_ok()
}

/// A container of blobs.
///
/// The contract, which `tests/store_contract.rs` checks for every implementation:
/// - `get` of a missing blob is `Ok(None)`.
/// - `put` returns the new ETag; the ETag changes whenever the content or the metadata changes.
/// - A put stores its content and its metadata together: a `get` returns the metadata of the
///   write whose content it returns, never another's. A put without metadata clears it.
///   Metadata that breaks [`Metadata::check`] is `Err(StoreError::Failed)` and writes nothing.
/// - `put` with [`WriteCondition::IfNotExists`] on an existing blob, or with
///   [`WriteCondition::IfMatch`] on a changed or missing blob, is
///   `Err(StoreError::ConditionFailed)` and changes nothing. Of two racing conditional writes on
///   the same version, exactly one succeeds.
/// - `delete` of a missing blob is `Ok(())`.
/// - `list` returns the blobs whose name starts with `prefix`, in name order, at most
///   `max_results` per page, and a marker to pass back for the next page (`None` at the end).
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Creates the container when it does not exist yet. Idempotent.
    async fn ensure_container(&self) -> Result<(), StoreError>;

    async fn get(&self, name: &BlobName) -> Result<Option<Blob>, StoreError>;

    /// Stores `body` with no metadata.
    async fn put(
        &self,
        name: &BlobName,
        body: Bytes,
        content_type: &str,
        condition: WriteCondition,
    ) -> Result<ETag, StoreError> {
        self.put_with_metadata(name, body, content_type, &Metadata::new(), condition)
            .await
    }

    /// Stores `body` and `metadata` in one write.
    async fn put_with_metadata(
        &self,
        name: &BlobName,
        body: Bytes,
        content_type: &str,
        metadata: &Metadata,
        condition: WriteCondition,
    ) -> Result<ETag, StoreError>;

    async fn delete(&self, name: &BlobName) -> Result<(), StoreError>;

    async fn list(
        &self,
        prefix: &str,
        marker: Option<String>,
        max_results: u32,
    ) -> Result<ListPage, StoreError>;

    /// A short description for logs (`azure blob account/container`, `local dir ./.data`),
    /// never containing a secret.
    fn describe(&self) -> String;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_names_that_could_escape_their_prefix_are_rejected() {
        for bad in [
            "", "/abs", "a//b", "a/../b", "..", ".", "a/./b", "a\\b", "a/b/", "a\nb", "a\0b",
        ] {
            assert!(BlobName::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let too_long = "a".repeat(1025);
        assert!(BlobName::parse(too_long).is_err());
    }

    #[test]
    fn ordinary_blob_names_are_accepted() {
        for good in [
            "jobs/6ce324a8-0502-4b0c-b729-12e10f0f22f6/status.json",
            "20250811_135221_reddit_technology.json",
            "a.b/c..d",
        ] {
            assert_eq!(BlobName::parse(good).unwrap().as_str(), good);
        }
    }
}
