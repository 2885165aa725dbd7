//! [`BlobStore`] over the SDK calls of [`AzureBlobStore`]: each call retried by the store's
//! own policy, and a retried conditional write checked for an earlier attempt that landed.

use async_trait::async_trait;
use bytes::Bytes;

use std::num::NonZeroU32;

use super::{sdk, AzureBlobStore, MAX_LIST_RESULTS};
use crate::store::{
    Blob, BlobName, BlobStore, ETag, ListPage, Metadata, StoreError, WriteCondition,
};

#[async_trait]
impl BlobStore for AzureBlobStore {
    async fn ensure_container(&self) -> Result<(), StoreError> {
        sdk::retrying("ensure_container", |_| self.ensure_container_once()).await
    }

    async fn get(&self, name: &BlobName) -> Result<Option<Blob>, StoreError> {
        sdk::retrying("get", |_| self.get_once(name)).await
    }

    async fn put_with_metadata(
        &self,
        name: &BlobName,
        body: Bytes,
        content_type: &str,
        metadata: &Metadata,
        condition: WriteCondition,
    ) -> Result<ETag, StoreError> {
        metadata
            .check()
            .map_err(|error| StoreError::Failed(Box::new(error)))?;
        let mut retried = false;
        let outcome = sdk::retrying("put", |attempt| {
            retried = attempt > 1;
            self.put_once(name, body.clone(), content_type, metadata, &condition)
        })
        .await;
        match outcome {
            Err(StoreError::ConditionFailed) if retried => {
                self.earlier_attempt_landed(name, &body, metadata).await
            }
            outcome => outcome,
        }
    }

    async fn delete(&self, name: &BlobName) -> Result<(), StoreError> {
        sdk::retrying("delete", |_| self.delete_once(name)).await
    }

    async fn list(
        &self,
        prefix: &str,
        marker: Option<String>,
        max_results: u32,
    ) -> Result<ListPage, StoreError> {
        let max_results =
            NonZeroU32::new(max_results.min(MAX_LIST_RESULTS)).unwrap_or(NonZeroU32::MIN);
        sdk::retrying("list", |_| {
            self.list_once(prefix, marker.clone(), max_results)
        })
        .await
    }

    fn describe(&self) -> String {
        format!(
            "azure blob {}/{} at {}",
            self.account,
            self.container.container_name(),
            self.endpoint
        )
    }
}
