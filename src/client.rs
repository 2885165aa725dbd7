//! [`ApiClient`]: the typed client of the job-ticket API (docs/api.md), used by the command line and
//! by the timer, which submits its job over HTTP as any caller does.
//!
//! One `reqwest::Client`, configured once. Every answer is kept twice: as the JSON the API
//! sent (for `--json`, which prints documents unchanged) and parsed into the library's own
//! types (for the text output and the exit code), so client and server can never disagree on
//! what a status document is.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use url::Url;

use crate::jobs::{JobId, JobStatus, StatusDocument};
use crate::retry::{retry, Backoff, Verdict};

/// How long a call may take before the server counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// While following a job, how long the server may be unreachable (a restart, a deployment)
/// before we give up: asked again after 250 ms, doubling to 5 s, for up to 30 s.
const PATIENCE: Backoff = Backoff::new(Duration::from_millis(250))
    .max_delay(Duration::from_secs(5))
    .max_elapsed(Duration::from_secs(30));

/// Why a call gave no usable answer (for the command line, each is its exit code 3).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0:?} is not a usable base URL (expected something like http://localhost:7071)")]
    BadUrl(String),
    #[error("the HTTP client cannot be built")]
    Build(#[source] reqwest::Error),
    /// Nothing answered: refused, timed out, name not found. `cause` is the innermost reason,
    /// which is the one a person can act on.
    #[error("cannot reach {url}: {cause}")]
    Connection { url: String, cause: String },
    /// The API answered with an error document.
    #[error("{message} (HTTP {status})")]
    Api { status: u16, message: String },
    #[error("the answer from {url} is not what this client understands: {reason}")]
    Unexpected { url: String, reason: String },
}

impl ClientError {
    /// Worth asking again while following a job: the server may be restarting.
    fn is_transient(&self) -> bool {
        match self {
            ClientError::Connection { .. } => true,
            ClientError::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// An answer, as sent and as understood.
#[derive(Debug, Clone)]
pub struct Fetched<T> {
    pub raw: Value,
    pub parsed: T,
}

/// The 202 answer to a start or a retry (docs/api.md section 2).
#[derive(Debug, Clone, Deserialize)]
pub struct Ticket {
    pub job_id: JobId,
    pub status: JobStatus,
    pub topics_requested: Vec<String>,
    pub limit: u32,
    #[serde(default)]
    pub retry_of: Option<JobId>,
}

/// The answer to a list call (docs/api.md section 4).
#[derive(Debug, Clone, Deserialize)]
pub struct JobList {
    pub jobs: Vec<StatusDocument>,
    pub continuation: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

/// The job-ticket API at one address.
pub struct ApiClient {
    http: reqwest::Client,
    endpoint: Url,
    key: Option<String>,
}

impl ApiClient {
    /// `base` is the app's address (`http://localhost:7071`); a URL that already ends in
    /// `/api/SummaryWomble` is used as it is.
    pub fn new(base: &str, key: Option<&str>) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("summary-womble-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientError::Build)?;
        Ok(Self {
            http,
            endpoint: endpoint(base)?,
            key: key.filter(|key| !key.is_empty()).map(str::to_owned),
        })
    }

    pub async fn submit(
        &self,
        body: &impl Serialize,
        idempotency_key: Option<&str>,
    ) -> Result<Fetched<Ticket>, ClientError> {
        let mut request = self.request(Method::POST, &[]).json(body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        self.send(request).await
    }

    pub async fn status(&self, job_id: JobId) -> Result<Fetched<StatusDocument>, ClientError> {
        let id = job_id.to_string();
        self.send(self.request(Method::GET, &[("job_id", &id)]))
            .await
    }

    /// The status, asked again while the server is briefly unreachable or failing.
    pub async fn status_patiently(
        &self,
        job_id: JobId,
    ) -> Result<Fetched<StatusDocument>, ClientError> {
        retry(
            &PATIENCE,
            None,
            |_| self.status(job_id),
            |error| Verdict::retry_if(error.is_transient()),
            |_, _| {},
        )
        .await
    }

    pub async fn list(
        &self,
        status: Option<JobStatus>,
        top: Option<u32>,
        continuation: Option<&str>,
    ) -> Result<Fetched<JobList>, ClientError> {
        let top = top.map(|top| top.to_string());
        let query: Vec<(&str, &str)> = [
            ("status", status.map(JobStatus::as_str)),
            ("top", top.as_deref()),
            ("continuation", continuation),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
        .collect();
        self.send(self.request(Method::GET, &query)).await
    }

    pub async fn cancel(&self, job_id: JobId) -> Result<Fetched<StatusDocument>, ClientError> {
        let id = job_id.to_string();
        self.send(self.request(Method::DELETE, &[("job_id", &id)]))
            .await
    }

    pub async fn retry(&self, job_id: JobId) -> Result<Fetched<Ticket>, ClientError> {
        let body = json!({"action": "retry", "job_id": job_id});
        self.send(self.request(Method::POST, &[]).json(&body)).await
    }

    fn request(&self, method: Method, query: &[(&str, &str)]) -> RequestBuilder {
        let mut url = self.endpoint.clone();
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let request = self.http.request(method, url);
        match &self.key {
            Some(key) => request.header("x-functions-key", key),
            None => request,
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> Result<Fetched<T>, ClientError> {
        let url = self.endpoint.to_string();
        let response = request
            .send()
            .await
            .map_err(|error| ClientError::Connection {
                url: url.clone(),
                cause: innermost(&error),
            })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| ClientError::Connection {
                url: url.clone(),
                cause: innermost(&error),
            })?;
        if !status.is_success() {
            return Err(api_error(status, &body));
        }
        let raw: Value =
            serde_json::from_slice(&body).map_err(|error| ClientError::Unexpected {
                url: url.clone(),
                reason: error.to_string(),
            })?;
        let parsed = T::deserialize(&raw).map_err(|error| ClientError::Unexpected {
            url,
            reason: error.to_string(),
        })?;
        Ok(Fetched { raw, parsed })
    }
}

/// `<base>/api/SummaryWomble`.
fn endpoint(base: &str) -> Result<Url, ClientError> {
    let bad = || ClientError::BadUrl(base.to_owned());
    let mut url = Url::parse(base.trim()).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad());
    }
    url.set_query(None);
    url.set_fragment(None);
    let already = url
        .path()
        .trim_end_matches('/')
        .to_ascii_lowercase()
        .ends_with("/api/summarywomble");
    if !already {
        url.path_segments_mut()
            .map_err(|_| bad())?
            .pop_if_empty()
            .extend(["api", "SummaryWomble"]);
    }
    Ok(url)
}

/// The API's `{"error": ...}` sentence, with a hint where the fix is on this side.
fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    let message = serde_json::from_slice::<ErrorBody>(body)
        .map(|body| body.error)
        .unwrap_or_else(|_| {
            let text = String::from_utf8_lossy(body).trim().to_owned();
            if text.is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("no reason given")
                    .to_owned()
            } else {
                text
            }
        });
    ClientError::Api {
        status: status.as_u16(),
        message,
    }
}

/// The last error in a chain: "Connection refused (os error 111)" rather than
/// "error sending request for url".
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_endpoint_is_found_from_the_base_url() {
        for (base, expected) in [
            (
                "http://localhost:7071",
                "http://localhost:7071/api/SummaryWomble",
            ),
            (
                "http://localhost:7071/",
                "http://localhost:7071/api/SummaryWomble",
            ),
            (
                "https://app.azurewebsites.net/api/SummaryWomble",
                "https://app.azurewebsites.net/api/SummaryWomble",
            ),
            (
                "https://app.azurewebsites.net/api/summarywomble/?code=x",
                "https://app.azurewebsites.net/api/summarywomble/",
            ),
            (
                "http://example.test/prefix",
                "http://example.test/prefix/api/SummaryWomble",
            ),
        ] {
            assert_eq!(endpoint(base).unwrap().as_str(), expected, "{base}");
        }
    }

    #[test]
    fn base_urls_that_are_not_http_are_refused() {
        for base in ["", "localhost:7071", "ftp://example.test", "not a url"] {
            assert!(
                matches!(endpoint(base), Err(ClientError::BadUrl(_))),
                "{base:?}"
            );
        }
    }

    #[test]
    fn api_errors_carry_the_api_sentence() {
        let error = api_error(
            StatusCode::NOT_FOUND,
            br#"{"error": "No job with id 6ce324a8-0502-4b0c-b729-12e10f0f22f6."}"#,
        );
        assert_eq!(
            error.to_string(),
            "No job with id 6ce324a8-0502-4b0c-b729-12e10f0f22f6. (HTTP 404)"
        );
        let error = api_error(StatusCode::UNAUTHORIZED, b"");
        assert_eq!(error.to_string(), "Unauthorized (HTTP 401)");
        assert!(!error.is_transient());
        assert!(api_error(StatusCode::SERVICE_UNAVAILABLE, b"{}").is_transient());
    }
}
