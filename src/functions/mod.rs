//! The functions of the app, one module per `function.json` folder, and what they share.
//!
//! An HTTP call reaches SummaryWomble in two forms: forwarded (`/api/SummaryWomble`, the
//! request as the caller sent it) or inside the host's envelope (`POST /SummaryWomble`). Both
//! are turned into one [`ApiRequest`], handled once, and the [`ApiResponse`] is written back in
//! the form the call came in.
//!
//! Layout:
//! - [`envelope`]: the host's invocation and answer types.
//! - [`summary_womble`]: the job-ticket API.
//! - [`get_hot_topics`]: the timer that submits the scheduled job and purges old ones.
//! - [`dashboard`]: the job dashboard, one HTML page that calls SummaryWomble from the browser.

pub mod dashboard;
pub mod envelope;
pub mod get_hot_topics;
pub mod summary_womble;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde::Serialize;

use crate::config::Settings;
use crate::jobs::JobRunner;

/// What every function invocation can reach.
#[derive(Clone)]
pub struct FunctionContext {
    pub settings: Arc<Settings>,
    pub jobs: JobRunner,
    /// One HTTP client for outbound calls (the timer calling SummaryWomble).
    pub http: reqwest::Client,
}

/// The largest request body SummaryWomble reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// An HTTP call to a function, whichever form it arrived in.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: Method,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ApiRequest {
    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// A function's answer: status, headers and a JSON body.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl ApiResponse {
    pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Bytes::from(serde_json::to_vec(body).expect("our responses always serialise")),
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.push((name, value));
        }
        self
    }
}

/// Every way a call can fail, mapped to an HTTP status once, in [`ApiError::status`].
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("A valid function key is required in the x-functions-key header or the code query parameter.")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("Method {0} is not allowed; use GET, POST or DELETE.")]
    MethodNotAllowed(Method),
    #[error("{0}")]
    Conflict(String),
    #[error("The request body is larger than 64 KiB.")]
    PayloadTooLarge,
    #[error("Content-Type must be application/json.")]
    UnsupportedMediaType,
    #[error("Storage is unavailable; nothing was changed. Try again shortly.")]
    Unavailable(#[source] anyhow::Error),
    #[error("Something went wrong on our side; it has been logged.")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON answer. Server-side causes are logged here, once, and never sent.
    pub fn into_response(self) -> ApiResponse {
        #[derive(Serialize)]
        struct Body {
            error: String,
        }
        match &self {
            ApiError::Unavailable(cause) | ApiError::Internal(cause) => {
                tracing::error!(
                    status = self.status().as_u16(),
                    error = format!("{cause:#}"),
                    "request failed"
                )
            }
            _ => tracing::debug!(status = self.status().as_u16(), error = %self, "request refused"),
        }
        let response = ApiResponse::json(
            self.status(),
            &Body {
                error: self.to_string(),
            },
        );
        match self {
            ApiError::MethodNotAllowed(_) => {
                response.with_header(http::header::ALLOW, "GET, POST, DELETE")
            }
            ApiError::Unavailable(_) => response.with_header(http::header::RETRY_AFTER, "5"),
            _ => response,
        }
    }
}
