//! What every Azure Storage client of the project shares: the HTTP client with its timeouts,
//! the SDK options (its own retry policy off), our retry policy, and time conversion.
//!
//! Blob and queue clients are built and retried the same way, so a storage outage looks the
//! same from both: a few seconds of retries ([`RETRIES`]), then [`StoreError::Unavailable`];
//! or, for a caller that retries itself ([`crate::store::retried_by_caller`]), one attempt.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use azure_core::{ClientOptions, RetryOptions, TransportOptions};
use chrono::{DateTime, Utc};

use super::AzureConfigError;
use crate::retry::{retry, Backoff};
use crate::store::{is_retried_by_caller, StoreError};

/// How long one attempt may wait for a TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one attempt may take in all. Our blobs are small JSON documents, and queue
/// messages smaller still.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle connection is kept for reuse.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// After a retryable failure (connection trouble, timeouts, 5xx, 429): two retries, 250 ms
/// then 500 ms later, and none that would start 3 s after the first attempt. A `Retry-After`
/// that does not fit in what is left of the 3 s ends the call at once.
pub(crate) const RETRIES: Backoff = Backoff::new(Duration::from_millis(250))
    .max_attempts(3)
    .max_elapsed(Duration::from_secs(3));
/// A call whose caller retries it with a budget of its own: one attempt.
const ONE_ATTEMPT: Backoff = Backoff::new(Duration::ZERO).max_attempts(1);

/// SDK options over one HTTP client of our own (timeouts, connection reuse), with the SDK's
/// retry policy switched off: it retries for up to a minute, and it would repeat a
/// conditional write whose first attempt may already have landed.
pub(crate) fn client_options() -> Result<ClientOptions, AzureConfigError> {
    let http = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        // Connections are reused (a Functions instance that opens one per call runs out of
        // outbound SNAT ports), but dropped well before the service's own idle timeout; a
        // connection closed under us anyway is an I/O error, which is retried.
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build()
        .map_err(AzureConfigError::HttpClient)?;
    Ok(ClientOptions::new(TransportOptions::new(Arc::new(http))).retry(RetryOptions::none()))
}

/// Runs `attempt` (given its 1-based number) until it succeeds, fails for good, or the
/// [`RETRIES`] allowance is spent. A `Retry-After` of the service is honoured. Inside
/// [`crate::store::retried_by_caller`], one attempt only.
pub(crate) async fn retrying<T, F, Fut>(
    operation: &'static str,
    attempt: F,
) -> Result<T, StoreError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let policy = if is_retried_by_caller() {
        ONE_ATTEMPT
    } else {
        RETRIES
    };
    retry(
        &policy,
        None,
        attempt,
        StoreError::verdict,
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

/// A time of the SDK (the `time` crate) as the project's `chrono` time.
pub(crate) fn utc(time: time::OffsetDateTime) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(time.unix_timestamp(), time.nanosecond()).unwrap_or_default()
}

/// A loopback port bound but not listening: connections to it are refused, and no one else
/// can take it while the returned socket lives. For tests of an unreachable service.
#[cfg(test)]
pub(crate) fn refused_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}
