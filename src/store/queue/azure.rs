//! Azure Storage queues through the `azure_storage_queues` 0.21 SDK.
//!
//! Every Azure SDK call for queues is in this file. It is built and behaves like the blob
//! store ([`crate::store::azure`]), whose connection-string parser, HTTP client, retry policy
//! and error classification it shares. Decisions worth knowing:
//!
//! - Message text is base64-encoded on the wire, as the Functions host's queue trigger expects
//!   by default (`messageEncoding: base64`), and decoded on receipt. Stored text that is not
//!   base64 of UTF-8 text (a producer that does not encode) is returned as it is stored.
//! - A renewal only moves the visibility timeout: the request carries no message, as the
//!   host's own renewal does. (The SDK's update always sends one, which would rewrite text it
//!   could not decode, so the renewal is sent through the SDK's pipeline directly.)
//! - Azure answers a stale pop receipt with `400 PopReceiptMismatch` while the message is
//!   still there (Azurite does), but may answer `404 MessageNotFound` once it moved on; a
//!   delete cannot tell that from a message that is gone, and counts both as done, as the
//!   Functions host does.
//! - A send to a queue that does not exist creates it and sends again (as a blob write creates
//!   its container); a receive from a queue that does not exist finds nothing, as the host's
//!   listener does, so consumers may start before the first producer. For the same reason a
//!   queue that does not exist counts 0 messages.
//! - The message count is `Get Queue Metadata`'s `x-ms-approximate-messages-count`: every
//!   message not yet deleted or expired, the invisible ones included. Azure calls it
//!   approximate: it may lag behind the queue a little.
//! - Retries: a retried send whose first attempt landed leaves the message twice, and a
//!   retried receive may leave messages invisible until their timeout runs out. Both are
//!   within the queue's at-least-once delivery, which consumers must handle anyway.

use std::time::Duration;

use async_trait::async_trait;
use azure_core::headers::{rfc1123_from_headers_mandatory, HeaderName, Headers};
use azure_core::{Context, Method, Pipeline, StatusCode, Url};
use azure_storage::clients::{finalize_request, new_pipeline_from_options, ServiceType};
use azure_storage::CloudLocation;
use azure_storage_queues::operations::Message;
use azure_storage_queues::{QueueClient, QueueServiceClientBuilder};
use base64::Engine as _;

use super::{MessageQueue, QueueMessage, Renewal};
use crate::meter::{self, Request};
use crate::store::azure::connection::{validate_queue, Service, StorageTarget};
use crate::store::azure::errors::{classify, error_code_of, status_of};
use crate::store::azure::{sdk, AzureConfigError, Identity};
use crate::store::StoreError;

/// Azure's bounds for a visibility timeout. A receive needs at least a second.
const MAX_VISIBILITY: Duration = Duration::from_secs(7 * 24 * 60 * 60);
const MIN_RECEIVE_VISIBILITY: Duration = Duration::from_secs(1);
/// The most messages one receive may ask for.
const MAX_BATCH: u8 = 32;

/// One queue in an Azure Storage account (or Azurite).
///
/// Cloning is cheap; clones share one HTTP client.
#[derive(Debug, Clone)]
pub struct AzureQueue {
    queue: QueueClient,
    /// The SDK's pipeline (authentication, our HTTP client) for the one call the SDK does not
    /// offer: a renewal without message text.
    pipeline: Pipeline,
    account: String,
    /// The queue service URL, for [`MessageQueue::describe`]; it carries no credential.
    endpoint: Url,
}

impl AzureQueue {
    /// A queue from a storage connection string: `UseDevelopmentStorage=true` (Azurite on
    /// `127.0.0.1:10001`), or `AccountName` with `AccountKey` or `SharedAccessSignature`, and
    /// either `QueueEndpoint` (Azurite on another port, private endpoints) or
    /// `DefaultEndpointsProtocol` and `EndpointSuffix` (default `https` and
    /// `core.windows.net`, giving `https://<account>.queue.core.windows.net`).
    ///
    /// The same string serves [`crate::store::azure::AzureBlobStore`]: keys are matched
    /// case-insensitively, and keys for other services are ignored.
    pub fn from_connection_string(
        connection_string: &str,
        queue: &str,
    ) -> Result<Self, AzureConfigError> {
        let target = StorageTarget::parse(connection_string, Service::Queue)?;
        Self::build(target, queue)
    }

    /// A queue that authenticates with Entra ID tokens of `identity`, at the queue service
    /// `endpoint` of `account` (`https://<account>.queue.core.windows.net`, or the
    /// `__queueServiceUri` a Function App names).
    pub fn with_identity(
        account: &str,
        endpoint: &Url,
        identity: &Identity,
        queue: &str,
    ) -> Result<Self, AzureConfigError> {
        let target = StorageTarget::with_identity(account, endpoint, identity, Service::Queue)?;
        Self::build(target, queue)
    }

    fn build(target: StorageTarget, queue: &str) -> Result<Self, AzureConfigError> {
        validate_queue(queue)?;
        let options = sdk::client_options()?;
        let pipeline = new_pipeline_from_options(options.clone(), target.credentials.clone());
        let location = CloudLocation::Custom {
            account: target.account.clone(),
            uri: target.endpoint.to_string(),
        };
        let queue = QueueServiceClientBuilder::with_location(location, target.credentials)
            .client_options(options)
            .build()
            .queue_client(queue);
        Ok(Self {
            queue,
            pipeline,
            account: target.account,
            endpoint: target.endpoint,
        })
    }

    /// The queue's URL (no credential in it).
    pub fn url(&self) -> Url {
        self.queue
            .url()
            .expect("the endpoint was checked when the queue was built")
    }

    /// The texts of the visible messages as stored, without decoding or changing anything
    /// (at most 32, oldest first). For tests of the wire format.
    #[cfg(any(test, feature = "test-support"))]
    #[doc(hidden)]
    pub async fn peek_stored(&self) -> Result<Vec<String>, StoreError> {
        match self
            .queue
            .peek_messages()
            .number_of_messages(MAX_BATCH)
            .await
        {
            Ok(response) => Ok(response
                .messages
                .into_iter()
                .map(|message| message.message_text)
                .collect()),
            Err(error) if status_of(&error) == Some(StatusCode::NotFound) => Ok(Vec::new()),
            Err(error) => Err(classify(error)),
        }
    }

    /// The names of every queue in the account `connection_string` reaches (its first 5,000),
    /// in name order. For tests that show which queues exist.
    #[cfg(any(test, feature = "test-support"))]
    #[doc(hidden)]
    pub async fn names_in_account(connection_string: &str) -> Result<Vec<String>, StoreError> {
        use futures::StreamExt as _;
        let target = StorageTarget::parse(connection_string, Service::Queue)
            .map_err(|error| StoreError::Failed(Box::new(error)))?;
        let location = CloudLocation::Custom {
            account: target.account.clone(),
            uri: target.endpoint.to_string(),
        };
        let service = QueueServiceClientBuilder::with_location(location, target.credentials)
            .client_options(
                sdk::client_options().map_err(|error| StoreError::Failed(Box::new(error)))?,
            )
            .build();
        let mut pages = service.list_queues().into_stream();
        let mut names = Vec::new();
        if let Some(page) = pages.next().await {
            names.extend(
                page.map_err(classify)?
                    .queues
                    .into_iter()
                    .map(|queue| queue.name),
            );
        }
        names.sort();
        Ok(names)
    }

    /// Sends `stored` as it is, unencoded: how a producer that does not base64-encode writes.
    /// For tests.
    #[cfg(any(test, feature = "test-support"))]
    #[doc(hidden)]
    pub async fn send_stored(&self, stored: &str) -> Result<(), StoreError> {
        self.queue
            .put_message(stored)
            .await
            .map(drop)
            .map_err(classify)
    }

    /// Deletes the queue and every message in it; a missing queue is fine. For tests.
    #[cfg(any(test, feature = "test-support"))]
    #[doc(hidden)]
    pub async fn delete_queue(&self) -> Result<(), StoreError> {
        match self.queue.delete().await {
            Ok(_) => Ok(()),
            Err(error) if status_of(&error) == Some(StatusCode::NotFound) => Ok(()),
            Err(error) => Err(classify(error)),
        }
    }

    async fn ensure_queue_once(&self) -> Result<(), StoreError> {
        meter::count(Request::Queue);
        match self.queue.create().await {
            Ok(_) => Ok(()),
            // Only when it exists with other metadata; we set none.
            Err(error) if error_code_of(&error) == Some("QueueAlreadyExists") => Ok(()),
            Err(error) => Err(classify(error)),
        }
    }

    async fn send_once(&self, encoded: &str) -> Result<(), StoreError> {
        meter::count(Request::Queue);
        match self.queue.put_message(encoded).await {
            Ok(_) => Ok(()),
            Err(error) if error_code_of(&error) == Some("QueueNotFound") => {
                // The first message before the queue exists: create it, and let the retry
                // send again.
                self.ensure_queue_once().await?;
                Err(StoreError::Unavailable(Box::new(QueueWasMissing)))
            }
            Err(error) => Err(classify(error)),
        }
    }

    async fn receive_once(
        &self,
        max_messages: u8,
        visibility_timeout: Duration,
    ) -> Result<Vec<QueueMessage>, StoreError> {
        meter::count(Request::Queue);
        let request = self
            .queue
            .get_messages()
            .number_of_messages(max_messages)
            .visibility_timeout(visibility_timeout);
        match request.await {
            Ok(response) => Ok(response.messages.into_iter().map(from_sdk).collect()),
            Err(error) if error_code_of(&error) == Some("QueueNotFound") => Ok(Vec::new()),
            Err(error) => Err(classify(error)),
        }
    }

    /// `Update Message` without a body: only the visibility changes.
    async fn renew_once(
        &self,
        message: &QueueMessage,
        visibility_timeout: Duration,
    ) -> Result<Renewal, StoreError> {
        meter::count(Request::Queue);
        let mut url = self.url();
        url.path_segments_mut()
            .expect("a queue URL has a path")
            .push("messages")
            .push(&message.id);
        url.query_pairs_mut()
            .append_pair("popreceipt", &message.pop_receipt)
            .append_pair(
                "visibilitytimeout",
                &visibility_timeout.as_secs().to_string(),
            );
        let mut request =
            finalize_request(url, Method::Put, Headers::new(), None).map_err(classify)?;
        let mut context = Context::new();
        context.insert(ServiceType::Queue);
        match self.pipeline.send(&context, &mut request).await {
            Ok(response) => renewal_from(response.headers()).map_err(classify),
            Err(error) if is_stale_or_gone(&error) => Err(StoreError::ConditionFailed),
            Err(error) => Err(classify(error)),
        }
    }

    async fn approximate_message_count_once(&self) -> Result<u64, StoreError> {
        meter::count(Request::Queue);
        match self.queue.get_metadata().await {
            Ok(response) => {
                Ok(u64::try_from(response.approximate_messages_count).unwrap_or(u64::MAX))
            }
            Err(error) if error_code_of(&error) == Some("QueueNotFound") => Ok(0),
            Err(error) => Err(classify(error)),
        }
    }

    async fn delete_once(&self, message: &QueueMessage) -> Result<(), StoreError> {
        meter::count(Request::Queue);
        let receipt = azure_storage_queues::PopReceipt::new(&message.id, &message.pop_receipt);
        match self.queue.pop_receipt_client(receipt).delete().await {
            Ok(_) => Ok(()),
            Err(error) if status_of(&error) == Some(StatusCode::NotFound) => Ok(()),
            Err(error) if is_stale_or_gone(&error) => Err(StoreError::ConditionFailed),
            Err(error) => Err(classify(error)),
        }
    }
}

#[async_trait]
impl MessageQueue for AzureQueue {
    fn name(&self) -> &str {
        self.queue.queue_name()
    }

    async fn ensure_queue(&self) -> Result<(), StoreError> {
        sdk::retrying("ensure_queue", |_| self.ensure_queue_once()).await
    }

    async fn send(&self, text: &str) -> Result<(), StoreError> {
        let encoded = encode(text);
        sdk::retrying("send", |_| self.send_once(&encoded)).await
    }

    async fn receive(
        &self,
        max_messages: u8,
        visibility_timeout: Duration,
    ) -> Result<Vec<QueueMessage>, StoreError> {
        let max_messages = max_messages.clamp(1, MAX_BATCH);
        // Azure counts whole seconds: round up, so a message is never visible sooner than asked.
        let visibility_timeout =
            whole_seconds_up(visibility_timeout).clamp(MIN_RECEIVE_VISIBILITY, MAX_VISIBILITY);
        sdk::retrying("receive", |_| {
            self.receive_once(max_messages, visibility_timeout)
        })
        .await
    }

    async fn renew(
        &self,
        message: &QueueMessage,
        visibility_timeout: Duration,
    ) -> Result<Renewal, StoreError> {
        let visibility_timeout = whole_seconds_up(visibility_timeout).min(MAX_VISIBILITY);
        sdk::retrying("renew", |_| self.renew_once(message, visibility_timeout)).await
    }

    async fn delete(&self, message: &QueueMessage) -> Result<(), StoreError> {
        sdk::retrying("delete", |_| self.delete_once(message)).await
    }

    async fn approximate_message_count(&self) -> Result<u64, StoreError> {
        sdk::retrying("approximate_message_count", |_| {
            self.approximate_message_count_once()
        })
        .await
    }

    fn describe(&self) -> String {
        format!(
            "azure queue {}/{} at {}",
            self.account,
            self.queue.queue_name(),
            self.endpoint
        )
    }
}

/// A message text as the Functions host's queue trigger reads it by default.
fn encode(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The text a producer sent: the base64-decoded stored text, or the stored text itself when
/// it is not base64 of UTF-8 text (a producer that does not encode).
fn decode(stored: String) -> String {
    base64::engine::general_purpose::STANDARD
        .decode(stored.as_bytes())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or(stored)
}

fn from_sdk(message: Message) -> QueueMessage {
    QueueMessage {
        dequeue_count: u32::try_from(message.dequeue_count).unwrap_or(u32::MAX),
        inserted_at: sdk::utc(message.insertion_time),
        expires_at: sdk::utc(message.expiration_time),
        next_visible_at: sdk::utc(message.time_next_visible),
        text: decode(message.message_text),
        id: message.message_id,
        pop_receipt: message.pop_receipt,
    }
}

fn renewal_from(headers: &azure_core::headers::Headers) -> azure_core::Result<Renewal> {
    let next_visible_at = rfc1123_from_headers_mandatory(
        headers,
        &HeaderName::from_static("x-ms-time-next-visible"),
    )?;
    let pop_receipt = headers.get_str(&HeaderName::from_static("x-ms-popreceipt"))?;
    Ok(Renewal {
        pop_receipt: pop_receipt.to_owned(),
        next_visible_at: sdk::utc(next_visible_at),
    })
}

/// A pop receipt that no longer holds: someone else received the message since, or it is gone
/// (`404` also when the whole queue is).
fn is_stale_or_gone(error: &azure_core::Error) -> bool {
    status_of(error) == Some(StatusCode::NotFound)
        || error_code_of(error) == Some("PopReceiptMismatch")
}

fn whole_seconds_up(duration: Duration) -> Duration {
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    Duration::from_secs(seconds)
}

/// A send found no queue; it has been created, and the send is worth another attempt.
#[derive(Debug, thiserror::Error)]
#[error("the queue did not exist yet; it has been created")]
struct QueueWasMissing;

#[cfg(test)]
mod tests;
