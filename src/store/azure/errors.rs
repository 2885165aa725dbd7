//! Sorting the SDK's errors into what a caller can do about them, and keeping credentials
//! out of what they say.

use std::time::Duration;

use azure_core::error::ErrorKind;
use azure_core::StatusCode;

use crate::store::{StoreError, WriteCondition};

pub(crate) fn status_of(error: &azure_core::Error) -> Option<StatusCode> {
    match error.kind() {
        ErrorKind::HttpResponse { status, .. } => Some(*status),
        _ => None,
    }
}

pub(crate) fn error_code_of(error: &azure_core::Error) -> Option<&str> {
    match error.kind() {
        ErrorKind::HttpResponse { error_code, .. } => error_code.as_deref(),
        _ => None,
    }
}

pub(crate) fn is_client_error(error: &azure_core::Error) -> bool {
    status_of(error).is_some_and(|status| status.is_client_error())
}

/// Whether a failed write failed because of its precondition.
pub(crate) fn is_condition_failure(error: &azure_core::Error, condition: &WriteCondition) -> bool {
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
pub(crate) fn classify(error: azure_core::Error) -> StoreError {
    let retryable = match error.kind() {
        ErrorKind::Io => true,
        ErrorKind::HttpResponse { status, error_code } => {
            status.is_server_error()
                || *status == StatusCode::TooManyRequests
                || *status == StatusCode::RequestTimeout
                || matches!(
                    error_code.as_deref(),
                    Some("ContainerBeingDeleted" | "QueueBeingDeleted")
                )
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
pub(crate) struct ContainerWasMissing;

pub(crate) fn is_missing_container(error: &azure_core::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::HttpResponse { error_code: Some(code), .. } if code == "ContainerNotFound"
    )
}

/// What an SDK call failure says, without credentials, and the wait a throttling or busy
/// service asked for.
#[derive(Debug, thiserror::Error)]
#[error("{text}")]
pub(crate) struct SdkFailure {
    text: String,
    retry_after: Option<Duration>,
}

/// The `Retry-After` (whole seconds) of a failed storage answer. azure_core 0.21 keeps a
/// response's headers private but prints them with the error (`retry-after:<n>`).
///
/// It is not capped here: a wait that does not fit in what is left of the retry budget of the
/// call ends the call at once as unavailable (`crate::retry` checks every wait against the
/// budget), and the retry policy caps any server wait at [`crate::retry::MAX_SERVER_WAIT`].
pub(crate) fn retry_after_header(text: &str) -> Option<Duration> {
    let at = text.to_ascii_lowercase().find("retry-after:")?;
    let digits: String = text[at + "retry-after:".len()..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let seconds: u64 = digits.parse().ok()?;
    Some(Duration::from_secs(seconds))
}

/// The wait the service asked for, when `error` carries one.
pub(crate) fn server_wait(error: &StoreError) -> Option<Duration> {
    let StoreError::Unavailable(cause) = error else {
        return None;
    };
    cause.downcast_ref::<SdkFailure>()?.retry_after
}

/// A multi-chunk read saw the blob change between chunks; reading again will see one version.
#[derive(Debug, thiserror::Error)]
#[error("the blob changed while it was being read")]
pub(crate) struct ChangedDuringRead;
