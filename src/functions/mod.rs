//! The functions of the app, one module per `function.json` folder, and what they share.
//!
//! An HTTP call reaches SummaryWomble in two forms: forwarded (`/api/SummaryWomble`, the
//! request as the caller sent it) or inside the host's envelope (`POST /SummaryWomble`). Both
//! are turned into one [`ApiRequest`], handled once, and the [`ApiResponse`] is written back in
//! the form the call came in.
//!
//! Layout:
//! - [`host_wire`]: the host's invocation and answer types, as they travel; no function's.
//! - [`envelope`]: the adapters that unwrap an invocation into a function's call and wrap its
//!   answer.
//! - [`error`]: [`ApiError`], every failure mapped to its HTTP answer once.
//! - [`summary_womble`]: the job-ticket API.
//! - [`get_hot_topics`]: the timer that submits the scheduled job and purges old ones.
//! - [`run_job`]: the queue-triggered function of queue dispatch.
//! - [`dashboard`]: the job dashboard, one HTML page that calls SummaryWomble from the browser.

pub mod dashboard;
pub mod envelope;
pub mod error;
pub mod get_hot_topics;
pub mod host_wire;
pub mod run_job;
pub mod summary_womble;

pub use error::ApiError;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde::Serialize;

use crate::client::ApiClient;
use crate::config::Settings;
use crate::jobs::JobRunner;

/// What every function invocation can reach.
#[derive(Clone)]
pub struct FunctionContext {
    pub settings: Arc<Settings>,
    pub jobs: JobRunner,
    /// The timer's client of SummaryWomble (it submits over HTTP, with the function key, as
    /// any caller does).
    pub summary_womble: Arc<ApiClient>,
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
