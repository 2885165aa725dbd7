//! [`RedditClient`]: application-only OAuth and the hot listing, with retries.
//!
//! One `reqwest::Client` serves every job of the process: built once with timeouts, the
//! User-Agent and redirects turned off (Reddit answers an unknown subreddit with a redirect to
//! its search page, which must be seen, not followed). The OAuth token and the rate-limit window
//! are shared the same way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use crate::outbound::failure;
use crate::retry::{retry, Backoff, Verdict, MAX_SERVER_WAIT};

use super::rate_limit::{header_f64, RateLimiter};
use super::topic::{Listing, Post};
use super::{FetchError, Subreddit, Topic, TopicSource};

/// How many posts a subreddit can pin at the top of its listings.
const STICKY_SLOTS: u32 = 2;
/// Reddit's largest listing page.
const MAX_PAGE: u32 = 100;

/// A Reddit "script" or "web" app's credentials.
#[derive(Clone)]
pub struct Credentials {
    pub client_id: SecretString,
    pub client_secret: SecretString,
    /// A User-Agent that came with the credentials (Key Vault's `reddit-user-agent`); it
    /// replaces the client's own on every request made with them.
    pub user_agent: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { .. }")
    }
}

/// Where credentials come from; loading may be slow or fail (Key Vault), so it happens when a
/// job first needs them, and a failure fails that job rather than the process.
#[async_trait]
pub trait CredentialSource: Send + Sync + 'static {
    /// `Ok(None)`: there are no credentials; use the public listing.
    async fn credentials(&self) -> Result<Option<Credentials>, String>;
}

/// How persistent to be with one page of a subreddit's listing.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Between attempts after a retryable failure (connection trouble, timeouts, 429, 5xx).
    pub backoff: Backoff,
    /// One request, connect to last byte.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    /// Five attempts; waits of 0.5 s doubling to 20 s, each drawn at random from the upper half
    /// of its step; no retry that would start 90 s after the first attempt.
    fn default() -> Self {
        Self {
            backoff: Backoff::new(Duration::from_millis(500))
                .max_delay(Duration::from_secs(20))
                .jitter(0.5)
                .max_attempts(5)
                .max_elapsed(Duration::from_secs(90)),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// The base URLs, so tests can point the client at a local fake Reddit.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// Token endpoint base: `<auth>/api/v1/access_token`.
    pub auth: Url,
    /// OAuth listing base: `<api>/r/<name>/hot`.
    pub api: Url,
    /// Credential-less listing base: `<public>/r/<name>/hot.json`.
    pub public: Url,
}

pub struct RedditClient {
    http: reqwest::Client,
    endpoints: Endpoints,
    credentials: Arc<dyn CredentialSource>,
    token: Mutex<Option<Token>>,
    limiter: RateLimiter,
    retry: RetryPolicy,
}

#[derive(Clone)]
struct Token {
    value: SecretString,
    user_agent: Option<String>,
    /// Renew a little before Reddit's expiry so no request carries a just-expired token.
    renew_at: Instant,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default = "default_expiry")]
    expires_in: u64,
}

fn default_expiry() -> u64 {
    3600
}

/// One page of a listing, and where the next one starts.
type Page = (Vec<Post>, Option<String>);

/// Why one attempt at a page failed.
enum Failure {
    /// Asking again may help: after `after` when Reddit said how long (429).
    Retry {
        after: Option<Duration>,
        error: FetchError,
    },
    /// Reddit refused the access token (401).
    TokenRejected,
    Final(FetchError),
}

impl Failure {
    fn verdict(&self) -> Verdict {
        match self {
            Failure::Retry {
                after: Some(wait), ..
            } => Verdict::RetryAfter(*wait),
            Failure::Retry { after: None, .. } => Verdict::Retry,
            Failure::TokenRejected | Failure::Final(_) => Verdict::Final,
        }
    }

    fn into_error(self) -> FetchError {
        match self {
            Failure::Retry { error, .. } | Failure::Final(error) => error,
            Failure::TokenRejected => FetchError::BadCredentials(401),
        }
    }
}

/// The default User-Agent, in the form Reddit asks for.
pub fn default_user_agent() -> String {
    format!(
        "linux:summary-womble:v{} (content collection)",
        env!("CARGO_PKG_VERSION")
    )
}

impl RedditClient {
    pub fn new(
        endpoints: Endpoints,
        user_agent: &str,
        credentials: Arc<dyn CredentialSource>,
        retry: RetryPolicy,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .user_agent(user_agent)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(retry.request_timeout)
            .build()?;
        Ok(Self {
            http,
            endpoints,
            credentials,
            token: Mutex::new(None),
            limiter: RateLimiter::new(),
            retry,
        })
    }

    /// The bearer token, fetched when missing or due for renewal. `Ok(None)`: no credentials.
    async fn token(&self, force_renew: bool) -> Result<Option<Token>, FetchError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref() {
            if !force_renew && Instant::now() < token.renew_at {
                return Ok(Some(token.clone()));
            }
        }
        let Some(credentials) = self
            .credentials
            .credentials()
            .await
            .map_err(FetchError::CredentialsUnavailable)?
        else {
            return Ok(None);
        };
        let url = self
            .endpoints
            .auth
            .join("api/v1/access_token")
            .expect("a fixed relative path joins");
        let mut request = self.http.post(url);
        if let Some(user_agent) = &credentials.user_agent {
            request = request.header(reqwest::header::USER_AGENT, user_agent);
        }
        let answer = request
            .basic_auth(
                credentials.client_id.expose_secret(),
                Some(credentials.client_secret.expose_secret()),
            )
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(|error| {
                FetchError::CredentialsUnavailable(format!(
                    "token request failed: {}",
                    failure(&error).to_owned()
                ))
            })?;
        let status = answer.status();
        if status == StatusCode::UNAUTHORIZED
            || status == StatusCode::FORBIDDEN
            || status == StatusCode::BAD_REQUEST
        {
            return Err(FetchError::BadCredentials(status.as_u16()));
        }
        if !status.is_success() {
            return Err(FetchError::CredentialsUnavailable(format!(
                "token endpoint answered HTTP {}",
                status.as_u16()
            )));
        }
        let answer: TokenAnswer = answer.json().await.map_err(|_| {
            FetchError::CredentialsUnavailable("token endpoint answered malformed JSON".into())
        })?;
        let lifetime = Duration::from_secs(answer.expires_in);
        let margin = (lifetime / 10).min(Duration::from_secs(300));
        let token = Token {
            value: SecretString::from(answer.access_token),
            user_agent: credentials.user_agent.clone(),
            renew_at: Instant::now() + lifetime - margin,
        };
        tracing::info!(
            expires_in_s = answer.expires_in,
            "obtained a Reddit access token"
        );
        *cached = Some(token.clone());
        Ok(Some(token))
    }

    /// One request for a page. `number` is the attempt's, 1-based.
    async fn attempt(
        &self,
        subreddit: &Subreddit,
        limit: u32,
        after: Option<&str>,
        token: Option<&Token>,
        number: u32,
    ) -> Result<Page, Failure> {
        let name = subreddit.as_str();
        let mut url = match token {
            Some(_) => self.endpoints.api.join(&format!("r/{name}/hot")),
            None => self.endpoints.public.join(&format!("r/{name}/hot.json")),
        }
        .expect("a validated subreddit name joins");
        url.query_pairs_mut()
            .append_pair("limit", &limit.to_string())
            .append_pair("raw_json", "1");
        if let Some(after) = after {
            url.query_pairs_mut().append_pair("after", after);
        }
        let mut request = self.http.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token.value.expose_secret());
            if let Some(user_agent) = &token.user_agent {
                request = request.header(reqwest::header::USER_AGENT, user_agent);
            }
        }

        self.limiter.acquire().await;
        let answer = match request.send().await {
            Ok(answer) => answer,
            Err(error) => {
                return Err(Failure::Retry {
                    after: None,
                    error: FetchError::Unreachable {
                        subreddit: name.to_owned(),
                        reason: failure(&error).to_owned(),
                    },
                })
            }
        };
        self.limiter.observe(answer.headers()).await;
        let status = answer.status();
        match status.as_u16() {
            200 => {}
            401 if token.is_some() => return Err(Failure::TokenRejected),
            403 => return Err(Failure::Final(forbidden(name, answer).await)),
            404 => {
                let reason = error_reason(answer).await;
                return Err(Failure::Final(if reason.as_deref() == Some("banned") {
                    FetchError::Banned(name.to_owned())
                } else {
                    FetchError::DoesNotExist(name.to_owned())
                }));
            }
            301 | 302 | 303 | 307 | 308 => {
                return Err(Failure::Final(FetchError::DoesNotExist(name.to_owned())))
            }
            429 => {
                let headers = answer.headers();
                let wait = header_f64(headers, "retry-after")
                    .or_else(|| header_f64(headers, "x-ratelimit-reset"))
                    .map(|seconds| {
                        Duration::from_secs_f64(seconds.clamp(0.0, MAX_SERVER_WAIT.as_secs_f64()))
                    });
                if let Some(wait) = wait {
                    self.limiter.exhaust_for(wait).await;
                }
                return Err(Failure::Retry {
                    after: wait,
                    error: FetchError::RateLimited {
                        subreddit: name.to_owned(),
                        attempts: number,
                    },
                });
            }
            code if status.is_server_error() => {
                return Err(Failure::Retry {
                    after: None,
                    error: FetchError::Status {
                        subreddit: name.to_owned(),
                        status: code,
                    },
                })
            }
            code => {
                return Err(Failure::Final(FetchError::Status {
                    subreddit: name.to_owned(),
                    status: code,
                }))
            }
        }
        let body = match answer.bytes().await {
            Ok(body) => body,
            Err(error) => {
                return Err(Failure::Retry {
                    after: None,
                    error: FetchError::Unreachable {
                        subreddit: name.to_owned(),
                        reason: failure(&error).to_owned(),
                    },
                })
            }
        };
        match serde_json::from_slice::<Listing>(&body) {
            Ok(listing) if listing.kind == "Listing" => Ok((
                listing
                    .data
                    .children
                    .into_iter()
                    .filter(|thing| thing.kind == "t3")
                    .map(|thing| thing.data)
                    .collect(),
                listing.data.after,
            )),
            Ok(listing) => Err(Failure::Final(FetchError::Malformed {
                subreddit: name.to_owned(),
                reason: format!("expected a Listing, got {:?}", listing.kind),
            })),
            Err(error) => Err(Failure::Final(FetchError::Malformed {
                subreddit: name.to_owned(),
                reason: error.to_string(),
            })),
        }
    }

    /// One page of the listing, retried as the policy allows.
    async fn page(
        &self,
        subreddit: &Subreddit,
        limit: u32,
        after: Option<&str>,
    ) -> Result<Page, FetchError> {
        let renewed = AtomicBool::new(false);
        retry(
            &self.retry.backoff,
            None,
            |number| self.attempt_with_token(subreddit, limit, after, number, &renewed),
            Failure::verdict,
            |failure, retrying| {
                if let Failure::Retry { error, .. } = failure {
                    tracing::warn!(subreddit = %subreddit, attempt = retrying.attempt, wait_ms = retrying.wait.as_millis() as u64, error = %crate::telemetry::Chain(error), "retrying Reddit listing");
                }
            },
        )
        .await
        .map_err(Failure::into_error)
    }

    /// One attempt with the current token. A refused token is renewed, and the request sent
    /// again, once per page (`renewed`): that is not a retry, so it costs no attempt and no wait.
    async fn attempt_with_token(
        &self,
        subreddit: &Subreddit,
        limit: u32,
        after: Option<&str>,
        number: u32,
        renewed: &AtomicBool,
    ) -> Result<Page, Failure> {
        let token = self.token(false).await.map_err(Failure::Final)?;
        match self
            .attempt(subreddit, limit, after, token.as_ref(), number)
            .await
        {
            Err(Failure::TokenRejected) if !renewed.swap(true, Ordering::Relaxed) => {
                tracing::info!(subreddit = %subreddit, "Reddit refused the access token; renewing it once");
                let token = self.token(true).await.map_err(Failure::Final)?;
                self.attempt(subreddit, limit, after, token.as_ref(), number)
                    .await
            }
            outcome => outcome,
        }
    }
}

async fn error_reason(answer: reqwest::Response) -> Option<String> {
    #[derive(Deserialize)]
    struct ErrorBody {
        reason: Option<String>,
    }
    let body = answer.bytes().await.ok()?;
    serde_json::from_slice::<ErrorBody>(&body).ok()?.reason
}

async fn forbidden(name: &str, answer: reqwest::Response) -> FetchError {
    match error_reason(answer).await.as_deref() {
        Some("private") => FetchError::Private(name.to_owned()),
        Some("quarantined") => FetchError::Quarantined(name.to_owned()),
        Some("gated") => FetchError::Gated(name.to_owned()),
        _ => FetchError::Forbidden(name.to_owned()),
    }
}

#[async_trait]
impl TopicSource for RedditClient {
    async fn hot_topics(
        &self,
        subreddit: &Subreddit,
        limit: u32,
        fetched_at: &str,
    ) -> Result<Vec<Topic>, FetchError> {
        let wanted = limit as usize;
        let mut topics = Vec::with_capacity(wanted);
        let mut after: Option<String> = None;
        // Stickied posts take places at the top of the listing. A subreddit has at most
        // STICKY_SLOTS of them, so asking for that many more posts than wanted gets `limit`
        // real posts in one round trip; another page is fetched only if that fell short.
        let page_size = (limit + STICKY_SLOTS).min(MAX_PAGE);
        for _ in 0..4 {
            let (posts, next) = self.page(subreddit, page_size, after.as_deref()).await?;
            let exhausted = posts.is_empty() || next.is_none();
            topics.extend(
                posts
                    .into_iter()
                    .filter(|post| !post.stickied)
                    .map(|post| post.into_topic(fetched_at))
                    .take(wanted - topics.len()),
            );
            if topics.len() >= wanted || exhausted {
                break;
            }
            after = next;
        }
        Ok(topics)
    }
}

/// Hands out fixed credentials (or none); used when they come from the environment.
pub struct FixedCredentials(pub Option<Credentials>);

#[async_trait]
impl CredentialSource for FixedCredentials {
    async fn credentials(&self) -> Result<Option<Credentials>, String> {
        Ok(self.0.clone())
    }
}
