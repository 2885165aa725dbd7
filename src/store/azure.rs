//! Azure Blob Storage through the `azure_storage_blobs` 0.21 SDK, and what the project's Azure
//! Storage clients share (connection strings, the HTTP client, retries, error classification;
//! the queue client is [`crate::store::queue::azure`]).
//!
//! Every Azure SDK call for blobs is in this file. Decisions worth knowing:
//!
//! - The connection string is parsed here, not by `azure_storage::ConnectionString`: that parser
//!   quotes the whole string (account key included) in its error messages and rejects keys it
//!   does not know, such as the `QueueEndpoint` of an `AzureWebJobsStorage` string. Our errors
//!   name the setting at fault and never repeat a value.
//! - The SDK's own retry policy is switched off: it retries for up to a minute, and it would
//!   retry a conditional write whose first attempt may already have landed. [`AzureBlobStore`]
//!   retries a little itself (the policy [`sdk::RETRIES`]; one attempt for a caller that
//!   retries itself, [`crate::store::retried_by_caller`]) and, when a retried conditional
//!   write reports a failed condition, checks whether the blob already holds exactly the bytes
//!   being written (then the earlier attempt did land, and the write succeeded).
//! - Each HTTP attempt has a connect timeout and an overall timeout, so a call against storage
//!   that is down fails within a few seconds as [`StoreError::Unavailable`].
//! - Identity-based connections get their tokens from [`identity`]: the SDK's own managed
//!   identity credential cannot name a user-assigned identity.
//! - Reads use the SDK's ranged GET. Azure answers a ranged GET of an empty blob with
//!   `416 InvalidRange`, so that case is answered from the blob's properties.

use std::num::NonZeroU32;

use azure_core::request_options::{IfMatchCondition, MaxResults, NextMarker};
use azure_core::{StatusCode, Url};
use azure_storage::CloudLocation;
use azure_storage_blobs::prelude::{BlobClient, ClientBuilder, ContainerClient, PublicAccess};
use bytes::Bytes;
use futures::StreamExt;

use super::{Blob, BlobItem, BlobName, ETag, ListPage, Metadata, StoreError, WriteCondition};
use crate::meter::{self, Request};

mod blob_store;
pub(crate) mod connection;
pub(crate) mod errors;
mod identity;
pub(crate) mod sdk;

pub use connection::{account_from_endpoint, is_resource_name};
use connection::{validate_container, Service, StorageTarget};
use errors::{
    classify, error_code_of, is_client_error, is_condition_failure, is_missing_container,
    status_of, ChangedDuringRead, ContainerWasMissing,
};

pub use identity::{Identity, ManagedIdentityCredential, TokenEndpoint};

/// The account of Azurite and the storage emulator. Its key is published by Microsoft and is no
/// secret.
const EMULATOR_ACCOUNT: &str = "devstoreaccount1";
const EMULATOR_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// Where `UseDevelopmentStorage=true` points: Azurite's default blob port.
const EMULATOR_BLOB_ENDPOINT: &str = "http://127.0.0.1:10000/devstoreaccount1";
/// Where `UseDevelopmentStorage=true` points for queues: Azurite's default queue port.
const EMULATOR_QUEUE_ENDPOINT: &str = "http://127.0.0.1:10001/devstoreaccount1";
/// Azure's largest page of a blob listing.
const MAX_LIST_RESULTS: u32 = 5000;

/// Why an Azure Storage client ([`AzureBlobStore`], or the queue client
/// [`crate::store::queue::azure::AzureQueue`]) could not be configured. No message contains an
/// account key or a shared access signature.
#[derive(Debug, thiserror::Error)]
pub enum AzureConfigError {
    #[error("the storage connection string is malformed: {0}")]
    Malformed(String),
    #[error("the storage connection string has no {0}")]
    Missing(&'static str),
    #[error("the storage connection string's {0} is not valid")]
    Invalid(&'static str),
    #[error("the storage connection string's {0} is not supported")]
    Unsupported(&'static str),
    #[error("invalid storage account name {0:?}: expected 3 to 24 lowercase letters and digits")]
    InvalidAccount(String),
    #[error(
        "invalid container name {0:?}: expected 3 to 63 lowercase letters, digits and single \
         hyphens, starting and ending with a letter or digit"
    )]
    InvalidContainer(String),
    #[error(
        "invalid queue name {0:?}: expected 3 to 63 lowercase letters, digits and single \
         hyphens, starting and ending with a letter or digit"
    )]
    InvalidQueue(String),
    #[error("no Azure credential is available for the identity-based connection")]
    Credential(#[source] azure_core::Error),
    #[error("the HTTP client for Azure Storage could not be built")]
    HttpClient(#[source] reqwest::Error),
}

/// A container in an Azure Storage account (or Azurite).
///
/// Cloning is cheap; clones share one HTTP client.
#[derive(Debug, Clone)]
pub struct AzureBlobStore {
    container: ContainerClient,
    account: String,
    /// The blob service URL, for [`BlobStore::describe`]; it carries no credential.
    endpoint: Url,
}

impl AzureBlobStore {
    /// A store from a storage connection string: `UseDevelopmentStorage=true` (Azurite on
    /// `127.0.0.1:10000`), or `AccountName` with `AccountKey` or `SharedAccessSignature`, and
    /// either `BlobEndpoint` (Azurite on another port, private endpoints) or
    /// `DefaultEndpointsProtocol` and `EndpointSuffix` (default `https` and `core.windows.net`).
    ///
    /// Keys are matched case-insensitively; keys for other services are ignored.
    pub fn from_connection_string(
        connection_string: &str,
        container: &str,
    ) -> Result<Self, AzureConfigError> {
        let target = StorageTarget::parse(connection_string, Service::Blob)?;
        Self::build(target, container)
    }

    /// A store that authenticates with Entra ID tokens of `identity` (see [`Identity`]), at the
    /// blob service `endpoint` of `account` (`https://<account>.blob.core.windows.net`, or the
    /// `__blobServiceUri` a Function App names).
    pub fn with_identity(
        account: &str,
        endpoint: &Url,
        identity: &Identity,
        container: &str,
    ) -> Result<Self, AzureConfigError> {
        let target = StorageTarget::with_identity(account, endpoint, identity, Service::Blob)?;
        Self::build(target, container)
    }

    fn build(target: StorageTarget, container: &str) -> Result<Self, AzureConfigError> {
        validate_container(container)?;
        let options = sdk::client_options()?;
        let location = CloudLocation::Custom {
            account: target.account.clone(),
            uri: target.endpoint.to_string(),
        };
        let container = ClientBuilder::with_location(location, target.credentials)
            .client_options(options)
            .container_client(container);
        Ok(Self {
            container,
            account: target.account,
            endpoint: target.endpoint,
        })
    }

    /// The content type stored with a blob, `None` when the blob does not exist. For tests.
    #[cfg(any(test, feature = "test-support"))]
    #[doc(hidden)]
    pub async fn content_type(&self, name: &BlobName) -> Result<Option<String>, StoreError> {
        match self.blob(name).get_properties().await {
            Ok(properties) => Ok(Some(properties.blob.properties.content_type)),
            Err(error) if status_of(&error) == Some(StatusCode::NotFound) => Ok(None),
            Err(error) => Err(classify(error)),
        }
    }

    fn blob(&self, name: &BlobName) -> BlobClient {
        self.container.blob_client(name.as_str())
    }

    async fn get_once(&self, name: &BlobName) -> Result<Option<Blob>, StoreError> {
        let client = self.blob(name);
        let mut chunks = client.get().into_stream();
        let mut body = Vec::new();
        let mut etag: Option<String> = None;
        let mut metadata = Metadata::new();
        while let Some(chunk) = chunks.next().await {
            // Each chunk is one ranged request.
            meter::count(Request::Read);
            let response = match chunk {
                Ok(response) => response,
                Err(error) if etag.is_none() => {
                    return match status_of(&error) {
                        Some(StatusCode::NotFound) => Ok(None),
                        Some(StatusCode::RequestedRangeNotSatisfiable) => {
                            self.get_empty(&client).await
                        }
                        _ => Err(classify(error)),
                    };
                }
                // A later chunk failing with 404 or 412 means the blob changed under us.
                Err(error) if is_client_error(&error) => {
                    return Err(StoreError::Unavailable(Box::new(ChangedDuringRead)));
                }
                Err(error) => return Err(classify(error)),
            };
            let chunk_etag = response.blob.properties.etag.to_string();
            if etag.is_none() {
                metadata = metadata_of(&response.blob);
            }
            if *etag.get_or_insert_with(|| chunk_etag.clone()) != chunk_etag {
                return Err(StoreError::Unavailable(Box::new(ChangedDuringRead)));
            }
            let data = response.data.collect().await.map_err(classify)?;
            body.extend_from_slice(&data);
        }
        Ok(etag.map(|etag| Blob {
            body: Bytes::from(body),
            etag: ETag(etag),
            metadata,
        }))
    }

    /// Reads a blob that answered a ranged GET with 416, which Azure does for empty blobs.
    async fn get_empty(&self, client: &BlobClient) -> Result<Option<Blob>, StoreError> {
        meter::count(Request::Read);
        match client.get_properties().await {
            Ok(response) if response.blob.properties.content_length == 0 => Ok(Some(Blob {
                body: Bytes::new(),
                etag: ETag(response.blob.properties.etag.to_string()),
                metadata: metadata_of(&response.blob),
            })),
            // It grew between the two requests.
            Ok(_) => Err(StoreError::Unavailable(Box::new(ChangedDuringRead))),
            Err(error) if status_of(&error) == Some(StatusCode::NotFound) => Ok(None),
            Err(error) => Err(classify(error)),
        }
    }

    async fn put_once(
        &self,
        name: &BlobName,
        body: Bytes,
        content_type: &str,
        metadata: &Metadata,
        condition: &WriteCondition,
    ) -> Result<ETag, StoreError> {
        meter::count_write(body.len());
        let mut request = self
            .blob(name)
            .put_block_blob(body)
            .content_type(content_type.to_owned());
        if !metadata.is_empty() {
            let mut headers = azure_core::request_options::Metadata::new();
            for (key, value) in metadata.iter() {
                headers.insert(key.to_owned(), value.to_owned());
            }
            request = request.metadata(headers);
        }
        let request = match condition {
            WriteCondition::IfNotExists => {
                request.if_match(IfMatchCondition::NotMatch("*".to_owned()))
            }
            WriteCondition::IfMatch(etag) => {
                request.if_match(IfMatchCondition::Match(etag.0.clone()))
            }
        };
        match request.await {
            Ok(response) => Ok(ETag(response.etag)),
            Err(error) if is_condition_failure(&error, condition) => {
                Err(StoreError::ConditionFailed)
            }
            Err(error) if is_missing_container(&error) => {
                // The first write before the container exists (a submit that beat the
                // background creation at start): create it, and let the retry write again.
                self.ensure_container_once().await?;
                Err(StoreError::Unavailable(Box::new(ContainerWasMissing)))
            }
            Err(error) => Err(classify(error)),
        }
    }

    async fn delete_once(&self, name: &BlobName) -> Result<(), StoreError> {
        meter::count(Request::Delete);
        match self.blob(name).delete().await {
            Ok(_) => Ok(()),
            Err(error) if status_of(&error) == Some(StatusCode::NotFound) => Ok(()),
            Err(error) => Err(classify(error)),
        }
    }

    async fn list_once(
        &self,
        prefix: &str,
        marker: Option<String>,
        max_results: NonZeroU32,
    ) -> Result<ListPage, StoreError> {
        meter::count(Request::List);
        let mut request = self
            .container
            .list_blobs()
            .max_results(MaxResults::new(max_results));
        if !prefix.is_empty() {
            request = request.prefix(prefix.to_owned());
        }
        if let Some(marker) = marker {
            request = request.marker(NextMarker::new(marker));
        }
        let Some(page) = request.into_stream().next().await else {
            return Ok(ListPage::default());
        };
        let page = page.map_err(classify)?;
        let items = page
            .blobs
            .blobs()
            .filter_map(|blob| match BlobName::parse(blob.name.clone()) {
                Ok(name) => {
                    Some(BlobItem {
                        name,
                        last_modified: sdk::utc(blob.properties.last_modified),
                        size: blob.properties.content_length,
                    })
                }
                Err(error) => {
                    tracing::warn!(error = %crate::telemetry::Chain(&error), "skipping a blob whose name this store cannot use");
                    None
                }
            })
            .collect();
        Ok(ListPage {
            items,
            next_marker: page.next_marker.map(|marker| marker.as_str().to_owned()),
        })
    }

    async fn ensure_container_once(&self) -> Result<(), StoreError> {
        meter::count(Request::Write);
        match self
            .container
            .create()
            .public_access(PublicAccess::None)
            .await
        {
            Ok(()) => Ok(()),
            Err(error) if error_code_of(&error) == Some("ContainerAlreadyExists") => Ok(()),
            Err(error) => Err(classify(error)),
        }
    }

    /// After a retried conditional write failed its condition: did an earlier attempt land?
    /// It did when the blob holds exactly our bytes (or someone wrote the very same bytes, which
    /// leaves the blob as our write would have).
    async fn earlier_attempt_landed(
        &self,
        name: &BlobName,
        body: &Bytes,
        metadata: &Metadata,
    ) -> Result<ETag, StoreError> {
        match sdk::retrying("get", |_| self.get_once(name)).await? {
            Some(blob) if blob.body == *body && blob.metadata == *metadata => Ok(blob.etag),
            _ => Err(StoreError::ConditionFailed),
        }
    }
}

/// The metadata a read returned with a blob (header names come back lowercased).
fn metadata_of(blob: &azure_storage_blobs::blob::Blob) -> Metadata {
    blob.metadata
        .iter()
        .flatten()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
        .collect()
}

#[cfg(test)]
mod tests;
