//! [`ApiError`]: every way a call can fail, mapped to an HTTP answer in one place,
//! [`ApiError::into_response`]. No other code builds an error body.

use http::{header, Method, StatusCode};
use serde::Serialize;

use super::ApiResponse;
use crate::jobs::{JobId, JobStatus, RepositoryError, SubmitError};
use crate::telemetry::Chain;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A request that breaks a rule; the message names the field.
    #[error("{0}")]
    BadRequest(String),
    /// An envelope the host would never send.
    #[error("The invocation is malformed: {0}")]
    MalformedInvocation(String),
    #[error("A valid function key is required in the x-functions-key header or the code query parameter.")]
    Unauthorized,
    #[error("No such function. The API is at /api/SummaryWomble.")]
    NoSuchFunction,
    #[error("No job with job_id {0}.")]
    JobNotFound(JobId),
    #[error("Method {used} is not allowed here; use {}.", allowed_list(.allowed))]
    MethodNotAllowed {
        used: Method,
        allowed: &'static [Method],
    },
    #[error("Job {id} is already {status}; it cannot be cancelled.")]
    AlreadyTerminal { id: JobId, status: JobStatus },
    #[error("Job {id} is still {status}; only a finished job can be retried.")]
    NotFinished { id: JobId, status: JobStatus },
    #[error("The request body is larger than 64 KiB.")]
    PayloadTooLarge,
    #[error("Content-Type must be application/json.")]
    UnsupportedMediaType,
    /// A body under a label read as JSON only when it is JSON (a form, plain text) that is not.
    #[error(
        "The request body was sent as {label} and is not a JSON object; send a JSON object, \
         with Content-Type: application/json."
    )]
    NotJson { label: &'static str },
    #[error("Storage is unavailable; nothing was changed. Try again shortly.")]
    Unavailable(#[source] anyhow::Error),
    #[error("Something went wrong on our side; it has been logged.")]
    Internal(#[source] anyhow::Error),
    /// A timer run or queue delivery that failed: the host records the invocation as failed
    /// (a queue message is then delivered again) and keeps its logs.
    #[error("{reason}")]
    InvocationFailed {
        function: &'static str,
        reason: String,
        logs: Vec<String>,
    },
}

fn allowed_list(methods: &[Method]) -> String {
    methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The error document (docs/api.md section 5). A failed timer run also carries its log lines.
#[derive(Serialize)]
struct ErrorBody {
    error: String,
    #[serde(rename = "Logs", skip_serializing_if = "Option::is_none")]
    logs: Option<Vec<String>>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::MalformedInvocation(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NoSuchFunction | ApiError::JobNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::AlreadyTerminal { .. } | ApiError::NotFinished { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType | ApiError::NotJson { .. } => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) | ApiError::InvocationFailed { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The JSON answer. Server-side causes are logged here, once, with their whole chain, and
    /// never sent.
    pub fn into_response(self) -> ApiResponse {
        let status = self.status();
        match &self {
            ApiError::Unavailable(cause) | ApiError::Internal(cause) => tracing::error!(
                status = status.as_u16(),
                error = %Chain(cause.as_ref()),
                "request failed"
            ),
            ApiError::InvocationFailed {
                function, reason, ..
            } => {
                tracing::error!(function, error = %reason, "invocation failed")
            }
            ApiError::MalformedInvocation(reason) => {
                tracing::warn!(reason = %reason, "malformed invocation")
            }
            _ => tracing::debug!(status = status.as_u16(), error = %self, "request refused"),
        }
        let error = self.to_string();
        match self {
            ApiError::MethodNotAllowed { allowed, .. } => {
                ApiResponse::json(status, &ErrorBody { error, logs: None })
                    .with_header(header::ALLOW, &allowed_list(allowed))
            }
            ApiError::Unavailable(_) => ApiResponse::json(status, &ErrorBody { error, logs: None })
                .with_header(header::RETRY_AFTER, "5"),
            ApiError::InvocationFailed { logs, .. } => ApiResponse::json(
                status,
                &ErrorBody {
                    error,
                    logs: Some(logs),
                },
            ),
            _ => ApiResponse::json(status, &ErrorBody { error, logs: None }),
        }
    }
}

/// Storage trouble at submit: 503 when it may pass, 500 otherwise.
impl From<SubmitError> for ApiError {
    fn from(error: SubmitError) -> Self {
        match error {
            SubmitError::StorageUnavailable(cause) => ApiError::Unavailable(cause.into()),
            SubmitError::Storage(cause) => ApiError::Internal(cause.into()),
        }
    }
}

/// Storage trouble while reading or updating a job: 503 when it may pass, 500 otherwise.
impl From<RepositoryError> for ApiError {
    fn from(error: RepositoryError) -> Self {
        if error.is_retryable() {
            ApiError::Unavailable(error.into())
        } else {
            ApiError::Internal(error.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_method_is_named_with_what_is_allowed() {
        let response = ApiError::MethodNotAllowed {
            used: Method::PUT,
            allowed: &[Method::POST],
        }
        .into_response();
        assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED);
        let allow = response
            .headers
            .iter()
            .find(|(name, _)| name == header::ALLOW)
            .map(|(_, value)| value.to_str().unwrap().to_owned());
        assert_eq!(allow.as_deref(), Some("POST"));
        let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(body["error"], "Method PUT is not allowed here; use POST.");
    }

    #[test]
    fn an_internal_error_says_nothing_of_its_cause() {
        let response =
            ApiError::Internal(anyhow::anyhow!("sig=secret in a storage URL")).into_response();
        assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
        let body = String::from_utf8(response.body.to_vec()).unwrap();
        assert!(!body.contains("secret"), "{body}");
        assert!(!body.contains("Logs"), "{body}");
    }
}
