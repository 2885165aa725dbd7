//! Azure Blob Storage through the `azure_storage_blobs` 0.21 SDK.
//!
//! Every Azure SDK call of the project is in this file. Decisions worth knowing:
//!
//! - The connection string is parsed here, not by `azure_storage::ConnectionString`: that parser
//!   quotes the whole string (account key included) in its error messages and rejects keys it
//!   does not know, such as the `QueueEndpoint` of an `AzureWebJobsStorage` string. Our errors
//!   name the setting at fault and never repeat a value.
//! - The SDK's own retry policy is switched off: it retries for up to a minute, and it would
//!   retry a conditional write whose first attempt may already have landed. [`AzureBlobStore`]
//!   retries a little itself (the policy [`RETRIES`]) and, when a retried conditional
//!   write reports a failed condition, checks whether the blob already holds exactly the bytes
//!   being written (then the earlier attempt did land, and the write succeeded).
//! - Each HTTP attempt has a connect timeout and an overall timeout, so a call against storage
//!   that is down fails within a few seconds as [`StoreError::Unavailable`].
//! - Identity-based connections get their tokens from [`identity`]: the SDK's own managed
//!   identity credential cannot name a user-assigned identity.
//! - Reads use the SDK's ranged GET. Azure answers a ranged GET of an empty blob with
//!   `416 InvalidRange`, so that case is answered from the blob's properties.

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::auth::Secret;
use azure_core::error::ErrorKind;
use azure_core::request_options::{IfMatchCondition, MaxResults, NextMarker};
use azure_core::{ClientOptions, RetryOptions, StatusCode, TransportOptions, Url};
use azure_storage::{CloudLocation, StorageCredentials};
use azure_storage_blobs::prelude::{BlobClient, ClientBuilder, ContainerClient, PublicAccess};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::{Blob, BlobItem, BlobName, BlobStore, ETag, ListPage, StoreError, WriteCondition};
use crate::retry::{retry, Backoff, Verdict};

mod identity;

pub use identity::{Identity, ManagedIdentityCredential, TokenEndpoint};

/// The account of Azurite and the storage emulator. Its key is published by Microsoft and is no
/// secret.
const EMULATOR_ACCOUNT: &str = "devstoreaccount1";
const EMULATOR_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// Where `UseDevelopmentStorage=true` points: Azurite's default blob port.
const EMULATOR_BLOB_ENDPOINT: &str = "http://127.0.0.1:10000/devstoreaccount1";

/// How long one attempt may wait for a TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one attempt may take in all. Our blobs are small JSON documents.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle connection is kept for reuse.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// After a retryable failure (connection trouble, timeouts, 5xx, 429): two retries, 250 ms
/// then 500 ms later, and none that would start 3 s after the first attempt.
const RETRIES: Backoff = Backoff::new(Duration::from_millis(250))
    .max_attempts(3)
    .max_elapsed(Duration::from_secs(3));
/// Azure's largest page of a blob listing.
const MAX_LIST_RESULTS: u32 = 5000;

/// Why an [`AzureBlobStore`] could not be configured. No message contains an account key or a
/// shared access signature.
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
        let target = StorageTarget::parse(connection_string)?;
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
        validate_account(account)?;
        let endpoint = parse_endpoint(endpoint.as_str())
            .ok_or(AzureConfigError::Invalid("blob service URI"))?;
        let credential = identity
            .credential()
            .map_err(AzureConfigError::Credential)?;
        let target = StorageTarget {
            account: account.to_owned(),
            endpoint,
            credentials: StorageCredentials::token_credential(credential),
        };
        Self::build(target, container)
    }

    fn build(target: StorageTarget, container: &str) -> Result<Self, AzureConfigError> {
        validate_container(container)?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // Connections are reused (a Functions instance that opens one per call runs out of
            // outbound SNAT ports), but dropped well before the service's own idle timeout; a
            // connection closed under us anyway is an I/O error, which is retried.
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build()
            .map_err(AzureConfigError::HttpClient)?;
        let options =
            ClientOptions::new(TransportOptions::new(Arc::new(http))).retry(RetryOptions::none());
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

    /// Runs `attempt` (given its 1-based number) until it succeeds, fails for good, or the retry
    /// allowance is spent.
    async fn retrying<T, F, Fut>(
        &self,
        operation: &'static str,
        attempt: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        retry(
            &RETRIES,
            None,
            attempt,
            |error| match server_wait(error) {
                Some(wait) if error.is_retryable() => Verdict::RetryAfter(wait),
                _ => Verdict::retry_if(error.is_retryable()),
            },
            |error, retrying| {
                tracing::debug!(
                    operation,
                    attempt = retrying.attempt,
                    error = %crate::telemetry::Chain(error),
                    "storage call failed; retrying"
                );
            },
        )
        .await
    }

    async fn get_once(&self, name: &BlobName) -> Result<Option<Blob>, StoreError> {
        let client = self.blob(name);
        let mut chunks = client.get().into_stream();
        let mut body = Vec::new();
        let mut etag: Option<String> = None;
        while let Some(chunk) = chunks.next().await {
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
            if *etag.get_or_insert_with(|| chunk_etag.clone()) != chunk_etag {
                return Err(StoreError::Unavailable(Box::new(ChangedDuringRead)));
            }
            let data = response.data.collect().await.map_err(classify)?;
            body.extend_from_slice(&data);
        }
        Ok(etag.map(|etag| Blob {
            body: Bytes::from(body),
            etag: ETag(etag),
        }))
    }

    /// Reads a blob that answered a ranged GET with 416, which Azure does for empty blobs.
    async fn get_empty(&self, client: &BlobClient) -> Result<Option<Blob>, StoreError> {
        match client.get_properties().await {
            Ok(response) if response.blob.properties.content_length == 0 => Ok(Some(Blob {
                body: Bytes::new(),
                etag: ETag(response.blob.properties.etag.to_string()),
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
        condition: &WriteCondition,
    ) -> Result<ETag, StoreError> {
        let request = self
            .blob(name)
            .put_block_blob(body)
            .content_type(content_type.to_owned());
        let request = match condition {
            WriteCondition::Always => request,
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
                    let modified = blob.properties.last_modified;
                    Some(BlobItem {
                        name,
                        last_modified: DateTime::<Utc>::from_timestamp(
                            modified.unix_timestamp(),
                            modified.nanosecond(),
                        )
                        .unwrap_or_default(),
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
    ) -> Result<ETag, StoreError> {
        match self.retrying("get", |_| self.get_once(name)).await? {
            Some(blob) if blob.body == *body => Ok(blob.etag),
            _ => Err(StoreError::ConditionFailed),
        }
    }
}

#[async_trait]
impl BlobStore for AzureBlobStore {
    async fn ensure_container(&self) -> Result<(), StoreError> {
        self.retrying("ensure_container", |_| self.ensure_container_once())
            .await
    }

    async fn get(&self, name: &BlobName) -> Result<Option<Blob>, StoreError> {
        self.retrying("get", |_| self.get_once(name)).await
    }

    async fn put(
        &self,
        name: &BlobName,
        body: Bytes,
        content_type: &str,
        condition: WriteCondition,
    ) -> Result<ETag, StoreError> {
        let mut retried = false;
        let outcome = self
            .retrying("put", |attempt| {
                retried = attempt > 1;
                self.put_once(name, body.clone(), content_type, &condition)
            })
            .await;
        match outcome {
            Err(StoreError::ConditionFailed) if retried => {
                self.earlier_attempt_landed(name, &body).await
            }
            outcome => outcome,
        }
    }

    async fn delete(&self, name: &BlobName) -> Result<(), StoreError> {
        self.retrying("delete", |_| self.delete_once(name)).await
    }

    async fn list(
        &self,
        prefix: &str,
        marker: Option<String>,
        max_results: u32,
    ) -> Result<ListPage, StoreError> {
        let max_results =
            NonZeroU32::new(max_results.min(MAX_LIST_RESULTS)).unwrap_or(NonZeroU32::MIN);
        self.retrying("list", |_| {
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

/// Where a connection string points and how to authenticate there.
struct StorageTarget {
    account: String,
    /// The blob service URL, without a trailing `/`.
    endpoint: Url,
    credentials: StorageCredentials,
}

impl StorageTarget {
    fn parse(connection_string: &str) -> Result<Self, AzureConfigError> {
        let settings = ConnectionSettings::parse(connection_string)?;

        match settings.get("UseDevelopmentStorage") {
            Some(value) if value.eq_ignore_ascii_case("true") => {
                if settings.get("DevelopmentStorageProxyUri").is_some() {
                    return Err(AzureConfigError::Unsupported("DevelopmentStorageProxyUri"));
                }
                return Ok(Self {
                    account: EMULATOR_ACCOUNT.to_owned(),
                    endpoint: Url::parse(EMULATOR_BLOB_ENDPOINT).expect("a valid constant URL"),
                    credentials: StorageCredentials::access_key(
                        EMULATOR_ACCOUNT,
                        Secret::new(EMULATOR_ACCOUNT_KEY),
                    ),
                });
            }
            Some(value) if value.eq_ignore_ascii_case("false") => {}
            Some(_) => return Err(AzureConfigError::Invalid("UseDevelopmentStorage")),
            None => {}
        }

        let blob_endpoint = settings
            .get("BlobEndpoint")
            .map(|endpoint| {
                parse_endpoint(endpoint).ok_or(AzureConfigError::Invalid("BlobEndpoint"))
            })
            .transpose()?;
        let account = match (settings.get("AccountName"), &blob_endpoint) {
            (Some(account), _) => account.to_owned(),
            // Shared access signature strings often carry only the endpoint.
            (None, Some(endpoint)) => {
                account_from_endpoint(endpoint).ok_or(AzureConfigError::Missing("AccountName"))?
            }
            (None, None) => return Err(AzureConfigError::Missing("AccountName")),
        };
        validate_account(&account)?;

        let endpoint = match blob_endpoint {
            Some(endpoint) => endpoint,
            None => {
                let protocol = match settings.get("DefaultEndpointsProtocol") {
                    None => "https",
                    Some(p) if p.eq_ignore_ascii_case("https") => "https",
                    Some(p) if p.eq_ignore_ascii_case("http") => "http",
                    Some(_) => return Err(AzureConfigError::Invalid("DefaultEndpointsProtocol")),
                };
                let suffix = settings.get("EndpointSuffix").unwrap_or("core.windows.net");
                parse_endpoint(&format!("{protocol}://{account}.blob.{suffix}"))
                    .ok_or(AzureConfigError::Invalid("EndpointSuffix"))?
            }
        };

        let credentials = match (
            settings.get("AccountKey"),
            settings.get("SharedAccessSignature"),
        ) {
            (Some(_), Some(_)) => {
                return Err(AzureConfigError::Malformed(
                    "both AccountKey and SharedAccessSignature are set".to_owned(),
                ))
            }
            (Some(key), None) => {
                // The SDK would only find a bad key when signing the first request.
                if azure_core::base64::decode(key).is_err() {
                    return Err(AzureConfigError::Invalid("AccountKey"));
                }
                StorageCredentials::access_key(account.clone(), Secret::new(key.to_owned()))
            }
            (None, Some(sas)) => StorageCredentials::sas_token(sas.trim_start_matches('?'))
                .map_err(|_| AzureConfigError::Invalid("SharedAccessSignature"))?,
            (None, None) => {
                return Err(AzureConfigError::Missing(
                    "AccountKey or SharedAccessSignature",
                ))
            }
        };

        Ok(Self {
            account,
            endpoint,
            credentials,
        })
    }
}

/// The `key=value;` pairs of a connection string, keys compared case-insensitively.
struct ConnectionSettings<'a>(HashMap<String, &'a str>);

impl<'a> ConnectionSettings<'a> {
    fn parse(connection_string: &'a str) -> Result<Self, AzureConfigError> {
        let mut settings = HashMap::new();
        for (index, segment) in connection_string.split(';').enumerate() {
            let segment = segment.trim();
            if segment.is_empty() {
                continue;
            }
            // Never quote the segment: it may be (part of) a key.
            let (key, value) = segment.split_once('=').ok_or_else(|| {
                AzureConfigError::Malformed(format!("part {} has no `=`", index + 1))
            })?;
            let (key, value) = (key.trim(), value.trim());
            if key.is_empty() || value.is_empty() {
                return Err(AzureConfigError::Malformed(format!(
                    "part {} has an empty key or value",
                    index + 1
                )));
            }
            settings.insert(key.to_ascii_lowercase(), value);
        }
        if settings.is_empty() {
            return Err(AzureConfigError::Malformed("it is empty".to_owned()));
        }
        Ok(Self(settings))
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.0.get(&key.to_ascii_lowercase()).copied()
    }
}

/// An `http(s)` URL without query or fragment, with any trailing `/` removed so that the SDK
/// appends the container as a path segment of its own.
fn parse_endpoint(endpoint: &str) -> Option<Url> {
    let mut url = Url::parse(endpoint).ok()?;
    let usable = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if !usable {
        return None;
    }
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    Some(url)
}

/// The account a blob endpoint names: the first path segment of a path-style URL
/// (`http://127.0.0.1:10000/devstoreaccount1`), else the first label of the host
/// (`https://account.blob.core.windows.net`).
pub fn account_from_endpoint(endpoint: &Url) -> Option<String> {
    let from_path = endpoint
        .path_segments()
        .and_then(|mut segments| segments.next())
        .filter(|segment| !segment.is_empty());
    let from_host = || endpoint.host_str().and_then(|host| host.split('.').next());
    from_path.or_else(from_host).map(str::to_owned)
}

fn validate_account(account: &str) -> Result<(), AzureConfigError> {
    let valid = (3..=24).contains(&account.len())
        && account
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(AzureConfigError::InvalidAccount(account.to_owned()))
    }
}

fn validate_container(container: &str) -> Result<(), AzureConfigError> {
    let bytes = container.as_bytes();
    let valid = (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
        && !container.contains("--");
    if valid {
        Ok(())
    } else {
        Err(AzureConfigError::InvalidContainer(container.to_owned()))
    }
}

fn status_of(error: &azure_core::Error) -> Option<StatusCode> {
    match error.kind() {
        ErrorKind::HttpResponse { status, .. } => Some(*status),
        _ => None,
    }
}

fn error_code_of(error: &azure_core::Error) -> Option<&str> {
    match error.kind() {
        ErrorKind::HttpResponse { error_code, .. } => error_code.as_deref(),
        _ => None,
    }
}

fn is_client_error(error: &azure_core::Error) -> bool {
    status_of(error).is_some_and(|status| status.is_client_error())
}

/// Whether a failed write failed because of its precondition.
fn is_condition_failure(error: &azure_core::Error, condition: &WriteCondition) -> bool {
    match (status_of(error), error_code_of(error)) {
        (Some(StatusCode::Conflict), Some("BlobAlreadyExists")) => true,
        (Some(StatusCode::PreconditionFailed), None | Some("ConditionNotMet")) => true,
        // `If-Match` on a blob that is gone; a missing container is a setup error instead.
        (Some(StatusCode::NotFound), code) => {
            matches!(condition, WriteCondition::IfMatch(_)) && code != Some("ContainerNotFound")
        }
        _ => false,
    }
}

/// Sorts an SDK error into what the caller can do about it: connection trouble, timeouts,
/// throttling and server errors are worth retrying; everything else is final.
fn classify(error: azure_core::Error) -> StoreError {
    let retryable = match error.kind() {
        ErrorKind::Io => true,
        ErrorKind::HttpResponse { status, error_code } => {
            status.is_server_error()
                || *status == StatusCode::TooManyRequests
                || *status == StatusCode::RequestTimeout
                || error_code.as_deref() == Some("ContainerBeingDeleted")
        }
        _ => false,
    };
    // The SDK's error names the request URL, which carries the signature of a SAS
    // connection: only a redacted text of the whole chain is kept.
    let text = crate::telemetry::Chain(&error).to_string();
    let cause = Box::new(SdkFailure {
        retry_after: retry_after_header(&text),
        text: crate::outbound::without_secrets(&text),
    });
    if retryable {
        StoreError::Unavailable(cause)
    } else {
        StoreError::Failed(cause)
    }
}

/// A write found no container; it has been created, and the write is worth another attempt.
#[derive(Debug, thiserror::Error)]
#[error("the container did not exist yet; it has been created")]
struct ContainerWasMissing;

fn is_missing_container(error: &azure_core::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::HttpResponse { error_code: Some(code), .. } if code == "ContainerNotFound"
    )
}

/// What an SDK call failure says, without credentials, and the wait a throttling or busy
/// service asked for.
#[derive(Debug, thiserror::Error)]
#[error("{text}")]
struct SdkFailure {
    text: String,
    retry_after: Option<Duration>,
}

/// The longest `Retry-After` of storage that is waited out inside one call; a longer one ends
/// the call as unavailable (the caller has its own, longer retries).
const MAX_STORAGE_WAIT: Duration = Duration::from_secs(30);

/// The `Retry-After` (whole seconds) of a failed storage answer. azure_core 0.21 keeps a
/// response's headers private but prints them with the error (`retry-after:<n>`).
fn retry_after_header(text: &str) -> Option<Duration> {
    let at = text.to_ascii_lowercase().find("retry-after:")?;
    let digits: String = text[at + "retry-after:".len()..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let seconds: u64 = digits.parse().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_STORAGE_WAIT))
}

/// The wait the service asked for, when `error` carries one.
fn server_wait(error: &StoreError) -> Option<Duration> {
    let StoreError::Unavailable(cause) = error else {
        return None;
    };
    cause.downcast_ref::<SdkFailure>()?.retry_after
}

/// A multi-chunk read saw the blob change between chunks; reading again will see one version.
#[derive(Debug, thiserror::Error)]
#[error("the blob changed while it was being read")]
struct ChangedDuringRead;

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    const KEY: &str = "c2VjcmV0LWtleS10aGF0LW11c3Qtbm90LWxlYWs=";

    fn container_url(connection_string: &str) -> String {
        let store = AzureBlobStore::from_connection_string(connection_string, "hot-topics")
            .unwrap_or_else(|error| panic!("{connection_string:?} was rejected: {error}"));
        store.container.url().unwrap().to_string()
    }

    #[test]
    fn development_storage_means_azurite_on_its_default_port() {
        let store =
            AzureBlobStore::from_connection_string("UseDevelopmentStorage=true", "hot-topics")
                .unwrap();
        assert_eq!(store.account, "devstoreaccount1");
        assert_eq!(
            store.container.url().unwrap().as_str(),
            "http://127.0.0.1:10000/devstoreaccount1/hot-topics"
        );
    }

    #[test]
    fn a_blob_endpoint_is_used_as_given() {
        let azurite = format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={EMULATOR_ACCOUNT_KEY};\
             BlobEndpoint=http://127.0.0.1:41234/devstoreaccount1;"
        );
        assert_eq!(
            container_url(&azurite),
            "http://127.0.0.1:41234/devstoreaccount1/hot-topics"
        );
        let trailing_slash = azurite.replace("41234/devstoreaccount1;", "41234/devstoreaccount1/;");
        assert_eq!(
            container_url(&trailing_slash),
            "http://127.0.0.1:41234/devstoreaccount1/hot-topics"
        );
    }

    #[test]
    fn an_account_string_points_at_the_public_cloud_by_default() {
        let connection_string = format!(
            "DefaultEndpointsProtocol=https;AccountName=womble;AccountKey={KEY};EndpointSuffix=core.windows.net"
        );
        assert_eq!(
            container_url(&connection_string),
            "https://womble.blob.core.windows.net/hot-topics"
        );
        assert_eq!(
            container_url(&format!("AccountName=womble;AccountKey={KEY}")),
            "https://womble.blob.core.windows.net/hot-topics"
        );
        assert_eq!(
            container_url(&format!(
                "AccountName=womble;AccountKey={KEY};EndpointSuffix=core.chinacloudapi.cn"
            )),
            "https://womble.blob.core.chinacloudapi.cn/hot-topics"
        );
    }

    #[test]
    fn keys_of_other_services_and_key_case_do_not_matter() {
        let connection_string = format!(
            "accountname=womble;ACCOUNTKEY={KEY};QueueEndpoint=https://womble.queue.core.windows.net/;\
             TableEndpoint=https://womble.table.core.windows.net/"
        );
        assert_eq!(
            container_url(&connection_string),
            "https://womble.blob.core.windows.net/hot-topics"
        );
    }

    #[test]
    fn a_shared_access_signature_string_needs_no_account_name() {
        let store = AzureBlobStore::from_connection_string(
            "BlobEndpoint=https://womble.blob.core.windows.net/;SharedAccessSignature=sv=2022-11-02&ss=b&srt=co&sp=rwdlac&se=2030-01-01T00:00:00Z&sig=abc%3D",
            "hot-topics",
        )
        .unwrap();
        assert_eq!(store.account, "womble");
        assert_eq!(
            store.describe(),
            "azure blob womble/hot-topics at https://womble.blob.core.windows.net/"
        );
    }

    #[test]
    fn neither_describe_nor_debug_shows_the_key() {
        let store = AzureBlobStore::from_connection_string(
            &format!("AccountName=womble;AccountKey={KEY}"),
            "hot-topics",
        )
        .unwrap();
        let description = store.describe();
        assert!(
            description.starts_with("azure blob womble/hot-topics"),
            "{description}"
        );
        assert!(!description.contains(KEY));
        assert!(!format!("{store:?}").contains(KEY), "{store:?}");
    }

    #[test]
    fn bad_connection_strings_are_rejected_without_quoting_the_key() {
        let cases = [
            (
                format!("AccountName=womble;{}", KEY.trim_end_matches('=')),
                "no `=`",
            ),
            (
                format!("AccountName=womble;AccountKey={KEY};Extra="),
                "empty key or value",
            ),
            (format!("AccountKey={KEY}"), "no AccountName"),
            (
                "AccountName=womble".to_owned(),
                "no AccountKey or SharedAccessSignature",
            ),
            (
                format!("AccountName=womble;AccountKey={KEY}!not-base64"),
                "AccountKey is not valid",
            ),
            (
                format!("AccountName=womble;AccountKey={KEY};SharedAccessSignature=sv=1&sig=x"),
                "both AccountKey and SharedAccessSignature",
            ),
            (
                format!("AccountName=womble;AccountKey={KEY};DefaultEndpointsProtocol=ftp"),
                "DefaultEndpointsProtocol is not valid",
            ),
            (
                format!("AccountName=womble;AccountKey={KEY};BlobEndpoint=not a url"),
                "BlobEndpoint is not valid",
            ),
            (
                format!(
                    "AccountName=womble;AccountKey={KEY};BlobEndpoint=https://x.example/?sig={KEY}"
                ),
                "BlobEndpoint is not valid",
            ),
            (
                format!("AccountName=Womble_1;AccountKey={KEY}"),
                "invalid storage account name",
            ),
            (
                "UseDevelopmentStorage=yes".to_owned(),
                "UseDevelopmentStorage is not valid",
            ),
            (
                "UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://proxy".to_owned(),
                "not supported",
            ),
            ("  ;  ".to_owned(), "it is empty"),
        ];
        for (connection_string, expected) in cases {
            let error = AzureBlobStore::from_connection_string(&connection_string, "hot-topics")
                .expect_err(&format!("{connection_string:?} should be rejected"));
            let message = error.to_string();
            assert!(
                message.contains(expected),
                "{message:?} should mention {expected:?}"
            );
            assert!(!message.contains(KEY), "{message:?} leaks the key");
            assert!(
                !message.contains("c2VjcmV0"),
                "{message:?} leaks part of the key"
            );
        }
    }

    #[test]
    fn container_names_follow_azure_rules() {
        let connection_string = "UseDevelopmentStorage=true";
        for good in ["hot-topics", "abc", "a1-b2-c3", &"a".repeat(63)] {
            assert!(
                AzureBlobStore::from_connection_string(connection_string, good).is_ok(),
                "{good:?} should be accepted"
            );
        }
        for bad in [
            "",
            "ab",
            "Hot-Topics",
            "-abc",
            "abc-",
            "a--b",
            "a_b",
            "a/b",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(
                    AzureBlobStore::from_connection_string(connection_string, bad),
                    Err(AzureConfigError::InvalidContainer(_))
                ),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn an_identity_based_store_needs_a_valid_account_name() {
        let endpoint = Url::parse("https://account.blob.core.windows.net").unwrap();
        let identity = Identity::ManagedIdentity { client_id: None };
        assert!(matches!(
            AzureBlobStore::with_identity("evil.example.com/x", &endpoint, &identity, "hot-topics"),
            Err(AzureConfigError::InvalidAccount(_))
        ));
    }

    #[test]
    fn an_identity_based_store_uses_the_blob_service_uri_it_is_given() {
        let identity = Identity::ManagedIdentity {
            client_id: Some("client".to_owned()),
        };
        for (endpoint, expected) in [
            (
                "https://acct.blob.core.windows.net/",
                "https://acct.blob.core.windows.net/hot-topics",
            ),
            (
                "https://acct.privatelink.blob.core.usgovcloudapi.net",
                "https://acct.privatelink.blob.core.usgovcloudapi.net/hot-topics",
            ),
            (
                "http://127.0.0.1:10000/devstoreaccount1",
                "http://127.0.0.1:10000/devstoreaccount1/hot-topics",
            ),
        ] {
            let store = AzureBlobStore::with_identity(
                "acct",
                &Url::parse(endpoint).unwrap(),
                &identity,
                "hot-topics",
            )
            .unwrap();
            assert_eq!(store.container.url().unwrap().as_str(), expected);
        }
    }

    #[tokio::test]
    async fn a_busy_service_is_asked_again_no_sooner_than_its_retry_after() {
        use std::sync::Mutex;
        use warp::Filter as _;
        let seen: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let routes = {
            let seen = seen.clone();
            warp::any().map(move || {
                seen.lock().unwrap().push(Instant::now());
                warp::http::Response::builder()
                    .status(503)
                    .header("retry-after", "1")
                    .header("x-ms-error-code", "ServerBusy")
                    .body(String::new())
                    .unwrap()
            })
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(warp::serve(routes).incoming(listener).run());
        let store = AzureBlobStore::from_connection_string(
            &format!(
                "AccountName=devstoreaccount1;AccountKey={EMULATOR_ACCOUNT_KEY};\
                 BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1"
            ),
            "hot-topics",
        )
        .unwrap();
        let error = store.ensure_container().await.unwrap_err();
        assert!(error.is_retryable(), "{error:?}");
        let seen = seen.lock().unwrap().clone();
        assert!(seen.len() >= 2, "asked {} times", seen.len());
        for pair in seen.windows(2) {
            assert!(
                pair[1] - pair[0] >= Duration::from_millis(950),
                "asked again after {:?}",
                pair[1] - pair[0]
            );
        }
    }

    #[test]
    fn a_retry_after_is_read_from_the_printed_headers_and_capped() {
        let text =
            "HttpError { Status: 503, Headers: [ retry-after:7 x-ms-error-code:ServerBusy ] }";
        assert_eq!(retry_after_header(text), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after_header("Retry-After: 99999"),
            Some(MAX_STORAGE_WAIT)
        );
        assert_eq!(retry_after_header("no such header"), None);
        assert_eq!(retry_after_header("retry-after:soon"), None);
    }

    #[tokio::test]
    async fn a_shared_access_signature_never_reaches_an_error_text() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let store = AzureBlobStore::from_connection_string(
            &format!(
                "BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;\
                 SharedAccessSignature=sv=2022-11-02&ss=b&srt=sco&sp=rwdlac&se=2030-01-01T00:00:00Z&sig=THE-SECRET-SIGNATURE"
            ),
            "hot-topics",
        )
        .unwrap();
        let error = store
            .get(&BlobName::parse("jobs/x/status.json").unwrap())
            .await
            .unwrap_err();
        let text = format!("{} {error:?}", crate::telemetry::Chain(&error));
        assert!(text.contains("127.0.0.1"), "{text}");
        assert!(!text.contains("THE-SECRET-SIGNATURE"), "{text}");
        assert!(!text.contains("sig="), "{text}");
    }

    #[tokio::test]
    async fn storage_that_cannot_be_reached_fails_fast_as_unavailable() {
        // A port bound but not listening: connections are refused, and no one else can take
        // it while the socket lives.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
        let port = socket.local_addr().unwrap().port();
        let store = AzureBlobStore::from_connection_string(
            &format!(
                "AccountName=devstoreaccount1;AccountKey={EMULATOR_ACCOUNT_KEY};\
                 BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1"
            ),
            "hot-topics",
        )
        .unwrap();
        let started = Instant::now();
        let error = store
            .get(&BlobName::parse("jobs/x/status.json").unwrap())
            .await
            .unwrap_err();
        assert!(error.is_retryable(), "{error:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
}
