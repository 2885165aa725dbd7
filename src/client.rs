//! [`ApiClient`]: the typed client of the job-ticket API (docs/api.md), used by the command line and
//! by the timer, which submits its job over HTTP as any caller does.
//!
//! One `reqwest::Client`, configured once. Every answer is kept twice: as the JSON the API
//! sent (for `--json`, which prints documents unchanged) and parsed into the library's own
//! types (for the text output and the exit code), so client and server can never disagree on
//! what a status document is.
//!
//! The function key goes only where the base URL says:
//!
//! - A redirect is followed only to the same origin (scheme, host and port). reqwest's default
//!   policy follows any redirect and drops only the headers it knows to be credentials
//!   (`Authorization`, `Cookie`), so `x-functions-key` would go to whatever host a redirect
//!   names; a redirect elsewhere is answered as an error naming where it pointed.
//! - `http` is accepted only for this machine (`localhost`, `127.0.0.0/8`, `[::1]`, where
//!   `make run` and the Functions host's own loopback call listen); anywhere else the key would
//!   cross the network in clear, so the URL is refused before any connection. `localhost` is
//!   pinned to the loopback addresses rather than resolved, so it cannot mean another machine.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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
/// Same-origin redirects followed in a row before the call counts as failed.
const MAX_REDIRECTS: usize = 10;
/// While following a job, how long the server may be unreachable (a restart, a deployment)
/// before we give up: asked again after 250 ms, doubling to 5 s, for up to 30 s.
const PATIENCE: Backoff = Backoff::new(Duration::from_millis(250))
    .max_delay(Duration::from_secs(5))
    .max_elapsed(Duration::from_secs(30));

/// Why a call gave no usable answer (for the command line, each is its exit code 3).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    BadUrl(UnusableUrl),
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

/// A base URL the client will not call, and why.
#[derive(Debug)]
pub struct UnusableUrl {
    pub url: String,
    pub reason: UnusableReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnusableReason {
    /// Not an `http` or `https` URL with a host.
    NotHttp,
    /// `http` to a host that is not this machine: the key would travel in clear.
    ClearTextOffThisMachine,
}

impl fmt::Display for UnusableUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            UnusableReason::NotHttp => write!(
                f,
                "{:?} is not a usable base URL (expected something like http://localhost:7071)",
                self.url
            ),
            UnusableReason::ClearTextOffThisMachine => write!(
                f,
                "{:?} is plain http to a host that is not this machine: the function key would \
                 cross the network in clear; use https (http is for localhost, 127.0.0.0/8 and \
                 [::1] only)",
                self.url
            ),
        }
    }
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
    ///
    /// `http` is refused unless the host is this machine, before any connection is made.
    pub fn new(base: &str, key: Option<&str>) -> Result<Self, ClientError> {
        let endpoint = endpoint(base)?;
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("summary-womble-client/", env!("CARGO_PKG_VERSION")))
            .redirect(same_origin_redirects())
            .resolve_to_addrs("localhost", &LOOPBACK)
            .build()
            .map_err(ClientError::Build)?;
        Ok(Self {
            http,
            endpoint,
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
        if status.is_redirection() {
            // Only a redirect to another origin comes back: the policy follows the others.
            return Err(redirected_elsewhere(status, response.headers()));
        }
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

/// Where `localhost` goes: this machine, whatever a hosts file or resolver might say. IPv4
/// first, as most local servers listen there; the port comes from the URL.
const LOOPBACK: [SocketAddr; 2] = [
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
    SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0),
];

/// Follows a redirect only to the origin of the first request, so the key never leaves it. A
/// redirect elsewhere is not an error here: it comes back as the answer, and
/// [`redirected_elsewhere`] says where it pointed.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let Some(first) = attempt.previous().first() else {
            return attempt.stop();
        };
        if attempt.url().origin() != first.origin() {
            attempt.stop()
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    })
}

/// The error for a redirect that was not followed, naming only the origin it pointed to (the
/// rest of a `Location` may carry a token).
fn redirected_elsewhere(status: StatusCode, headers: &reqwest::header::HeaderMap) -> ClientError {
    let target = headers
        .get(reqwest::header::LOCATION)
        .and_then(|location| location.to_str().ok())
        .and_then(|location| Url::parse(location).ok())
        .map(|location| location.origin().ascii_serialization())
        .unwrap_or_else(|| "an address it did not give".to_owned());
    ClientError::Api {
        status: status.as_u16(),
        message: format!(
            "redirected to {target}, another origin: not followed, so the function key stays \
             with the URL given"
        ),
    }
}

/// Whether `url` names this machine: `localhost` (pinned to loopback), `127.0.0.0/8`, `[::1]`.
fn is_this_machine(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// `<base>/api/SummaryWomble`.
fn endpoint(base: &str) -> Result<Url, ClientError> {
    let unusable = |reason| {
        ClientError::BadUrl(UnusableUrl {
            url: base.to_owned(),
            reason,
        })
    };
    let bad = || unusable(UnusableReason::NotHttp);
    let mut url = Url::parse(base.trim()).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad());
    }
    if url.scheme() == "http" && !is_this_machine(&url) {
        return Err(unusable(UnusableReason::ClearTextOffThisMachine));
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
    use std::sync::{Arc, Mutex};

    use warp::{Filter, Reply};

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
                "https://example.test/prefix",
                "https://example.test/prefix/api/SummaryWomble",
            ),
            (
                "http://127.0.0.1:7071",
                "http://127.0.0.1:7071/api/SummaryWomble",
            ),
            ("http://[::1]:7071", "http://[::1]:7071/api/SummaryWomble"),
        ] {
            assert_eq!(endpoint(base).unwrap().as_str(), expected, "{base}");
        }
    }

    #[test]
    fn base_urls_that_are_not_http_are_refused() {
        for base in ["", "localhost:7071", "ftp://example.test", "not a url"] {
            assert!(
                matches!(
                    endpoint(base),
                    Err(ClientError::BadUrl(UnusableUrl {
                        reason: UnusableReason::NotHttp,
                        ..
                    }))
                ),
                "{base:?}"
            );
        }
    }

    #[test]
    fn plain_http_to_another_machine_is_refused_before_any_connection() {
        for base in [
            "http://example.com",
            "http://app.azurewebsites.net/api/SummaryWomble",
            "http://10.0.0.5:7071",
            "http://[2001:db8::1]:7071",
            "http://localhost.example.com:7071",
            "http://127.0.0.1.nip.io",
            "http://0.0.0.0:7071",
        ] {
            // Building the client connects nowhere: the refusal comes first.
            let error = ApiClient::new(base, Some("sesame")).err();
            let Some(ClientError::BadUrl(unusable)) = &error else {
                panic!("{base} was accepted: {error:?}");
            };
            assert_eq!(unusable.reason, UnusableReason::ClearTextOffThisMachine);
            let message = unusable.to_string();
            assert!(message.contains(base), "{message}");
            assert!(message.contains("use https"), "{message}");
        }
        for base in [
            "http://localhost:7071",
            "http://LOCALHOST:7071",
            "http://127.0.0.1:7071",
            "http://127.8.9.10",
            "http://[::1]:7071",
            "https://example.com",
            "https://10.0.0.5",
        ] {
            assert!(ApiClient::new(base, Some("sesame")).is_ok(), "{base}");
        }
    }

    /// What a test server saw: the path of each request and its `x-functions-key`.
    type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

    /// A server on 127.0.0.1 that records each request and answers with `answer(path)`.
    async fn server<R: warp::Reply + 'static>(
        answer: impl Fn(&str) -> R + Clone + Send + Sync + 'static,
    ) -> (SocketAddr, Seen) {
        let seen: Seen = Arc::default();
        let recorded = seen.clone();
        let route = warp::path::full()
            .and(warp::header::optional::<String>("x-functions-key"))
            .map(move |path: warp::path::FullPath, key: Option<String>| {
                recorded
                    .lock()
                    .unwrap()
                    .push((path.as_str().to_owned(), key));
                answer(path.as_str())
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(warp::serve(route).incoming(listener).run());
        (address, seen)
    }

    fn no_jobs() -> warp::reply::Json {
        warp::reply::json(&json!({"jobs": [], "continuation": null}))
    }

    #[tokio::test]
    async fn a_redirect_to_another_origin_is_not_followed_and_the_key_does_not_go_there() {
        // Another port on the same address is another origin.
        let (elsewhere, seen_elsewhere) = server(|_: &str| no_jobs()).await;
        let target: warp::http::Uri = format!("http://{elsewhere}/api/SummaryWomble")
            .parse()
            .unwrap();
        type Redirect = fn(warp::http::Uri) -> warp::reply::Response;
        let redirects: [(u16, Redirect); 4] = [
            (301, |uri| warp::redirect::redirect(uri).into_response()),
            (302, |uri| warp::redirect::found(uri).into_response()),
            (307, |uri| warp::redirect::temporary(uri).into_response()),
            (308, |uri| warp::redirect::permanent(uri).into_response()),
        ];
        for (status, redirect) in redirects {
            let to = target.clone();
            let (home, seen_home) = server(move |_: &str| redirect(to.clone())).await;
            let client = ApiClient::new(&format!("http://{home}"), Some("sesame")).unwrap();
            let error = client.list(None, None, None).await.unwrap_err();
            let ClientError::Api {
                status: answered,
                message,
            } = &error
            else {
                panic!("HTTP {status}: {error:?}");
            };
            assert_eq!(*answered, status);
            assert!(
                message.contains(&format!("http://{elsewhere}")),
                "{message}"
            );
            assert!(message.contains("not followed"), "{message}");
            assert_eq!(seen_home.lock().unwrap().len(), 1, "HTTP {status}");
        }
        let elsewhere_saw = seen_elsewhere.lock().unwrap().clone();
        assert!(elsewhere_saw.is_empty(), "{elsewhere_saw:?}");
    }

    #[tokio::test]
    async fn a_redirect_within_the_origin_is_followed_with_the_key() {
        let (home, seen) = server(|path: &str| {
            if path == "/moved/api/SummaryWomble" {
                no_jobs().into_response()
            } else {
                warp::redirect::temporary(warp::http::Uri::from_static("/moved/api/SummaryWomble"))
                    .into_response()
            }
        })
        .await;
        let client = ApiClient::new(&format!("http://{home}"), Some("sesame")).unwrap();
        let list = client.list(None, None, None).await.unwrap();
        assert!(list.parsed.jobs.is_empty());
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                ("/api/SummaryWomble".to_owned(), Some("sesame".to_owned())),
                (
                    "/moved/api/SummaryWomble".to_owned(),
                    Some("sesame".to_owned())
                ),
            ]
        );
    }

    #[tokio::test]
    async fn localhost_is_this_machine() {
        let (home, seen) = server(|_: &str| no_jobs()).await;
        let base = format!("http://localhost:{}", home.port());
        let client = ApiClient::new(&base, None).unwrap();
        client.list(None, None, None).await.unwrap();
        assert_eq!(seen.lock().unwrap().len(), 1);
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
