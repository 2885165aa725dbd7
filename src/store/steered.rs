//! A local store that unit tests can watch and steer: it counts every call, and a [`Steer`]
//! may hold a write back or replace its answer. One double for every test that needs storage to
//! misbehave in a particular way.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use super::local::LocalDirStore;
use super::{Blob, BlobName, BlobStore, ETag, ListPage, Metadata, StoreError, WriteCondition};

/// What a test does to the writes of a [`Steered`] store. Both hooks do nothing by default.
#[async_trait]
pub trait Steer: Send + Sync + 'static {
    /// Runs before a put reaches the store; it may wait.
    async fn before_put(&self, _name: &BlobName) {}

    /// Runs after a put landed: an error returned here is what the caller sees instead.
    fn after_put(&self, _name: &BlobName, _condition: &WriteCondition) -> Option<StoreError> {
        None
    }
}

/// Steers nothing: a store that only counts.
impl Steer for () {}

pub struct Steered<S> {
    inner: LocalDirStore,
    pub steer: S,
    calls: AtomicUsize,
}

impl<S: Steer> Steered<S> {
    /// A local store in `dir` (container `hot-topics`) steered by `steer`.
    pub fn new(dir: &std::path::Path, steer: S) -> Self {
        Self {
            inner: LocalDirStore::new(dir.to_owned(), "hot-topics"),
            steer,
            calls: AtomicUsize::new(0),
        }
    }

    /// Calls since the last time this was asked (`ensure_container` is not counted).
    pub fn take_calls(&self) -> usize {
        self.calls.swap(0, Ordering::SeqCst)
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl<S: Steer> BlobStore for Steered<S> {
    async fn ensure_container(&self) -> Result<(), StoreError> {
        self.inner.ensure_container().await
    }

    async fn get(&self, name: &BlobName) -> Result<Option<Blob>, StoreError> {
        self.count();
        self.inner.get(name).await
    }

    async fn put_with_metadata(
        &self,
        name: &BlobName,
        body: Bytes,
        content_type: &str,
        metadata: &Metadata,
        condition: WriteCondition,
    ) -> Result<ETag, StoreError> {
        self.count();
        self.steer.before_put(name).await;
        let written = self
            .inner
            .put_with_metadata(name, body, content_type, metadata, condition.clone())
            .await?;
        match self.steer.after_put(name, &condition) {
            Some(error) => Err(error),
            None => Ok(written),
        }
    }

    async fn delete(&self, name: &BlobName) -> Result<(), StoreError> {
        self.count();
        self.inner.delete(name).await
    }

    async fn list(
        &self,
        prefix: &str,
        marker: Option<String>,
        max_results: u32,
    ) -> Result<ListPage, StoreError> {
        self.count();
        self.inner.list(prefix, marker, max_results).await
    }

    fn describe(&self) -> String {
        "a steered local store".into()
    }
}
