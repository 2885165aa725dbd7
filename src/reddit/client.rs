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
use secrecy::ExposeSecret;
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::outbound::failure;
use crate::retry::{retry, spread_server_wait, Backoff, Verdict};

mod auth;

use auth::Token;
pub use auth::{CredentialSource, Credentials, FixedCredentials};

use super::rate_limit::{header_wait, RateLimiter};
use super::topic::{Listing, Post};
use super::{FetchError, Subreddit, Topic, TopicSource};

/// How many posts a subreddit can pin at the top of its listings.
const STICKY_SLOTS: u32 = 2;
/// Reddit's largest listing page.
const MAX_PAGE: u32 = 100;

/// How persistent to be with one page of a subreddit's listing.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Between attempts after a retryable failure (connection trouble, timeouts, 5xx).
    pub backoff: Backoff,
    /// How long one page keeps waiting out 429s. A 429 is no failure of Reddit's but the shared
    /// quota running out (other instances spend it too): it is waited out and the request sent
    /// again as often as it takes, without spending the backoff's attempts, for this long.
    pub rate_limited_patience: Duration,
    /// One request, connect to last byte.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    /// Five attempts; waits of 0.5 s doubling to 20 s, each drawn at random from the upper half
    /// of its step; no retry that would start 90 s after the first attempt. 429s are waited
    /// out for 30 minutes: three of Reddit's longest windows (10 minutes).
    fn default() -> Self {
        Self {
            backoff: Backoff::new(Duration::from_millis(500))
                .max_delay(Duration::from_secs(20))
                .jitter(0.5)
                .max_attempts(5)
                .max_elapsed(Duration::from_secs(90)),
            rate_limited_patience: Duration::from_secs(30 * 60),
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

/// One page of a listing, and where the next one starts.
type Page = (Vec<Post>, Option<String>);

/// Why one attempt at a page failed.
enum Failure {
    /// Asking again may help, after the backoff.
    Retry(FetchError),
    /// Reddit answered 429: the shared quota is spent for `wait` (from `Retry-After`, else
    /// `X-Ratelimit-Reset`; `None` when it said neither).
    RateLimited {
        wait: Option<Duration>,
        error: FetchError,
    },
    /// Reddit refused the access token (401).
    TokenRejected,
    Final(FetchError),
    /// The job was cancelled while the attempt waited for its turn: nothing was sent.
    Cancelled,
}

impl Failure {
    /// Reddit could not be reached, or its answer was cut off: worth another attempt.
    fn unreachable(subreddit: &str, error: &reqwest::Error) -> Self {
        Failure::Retry(FetchError::Unreachable {
            subreddit: subreddit.to_owned(),
            reason: failure(error).to_owned(),
        })
    }

    /// 429s never reach the backoff: [`RedditClient::attempt_until_admitted`] waits them out.
    fn verdict(&self) -> Verdict {
        match self {
            Failure::Retry(_) => Verdict::Retry,
            Failure::RateLimited { .. }
            | Failure::TokenRejected
            | Failure::Final(_)
            | Failure::Cancelled => Verdict::Final,
        }
    }

    /// The page's error. Once `cancel` is cancelled, a failure that would have been retried
    /// ends as [`FetchError::Cancelled`]: the wait was given up, not the subreddit.
    fn into_error(self, cancel: &CancellationToken) -> FetchError {
        match self {
            Failure::Retry(_) | Failure::Cancelled if cancel.is_cancelled() => {
                FetchError::Cancelled
            }
            Failure::Retry(error) | Failure::RateLimited { error, .. } | Failure::Final(error) => {
                error
            }
            Failure::TokenRejected => FetchError::BadCredentials(401),
            Failure::Cancelled => FetchError::Cancelled,
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

    /// One request for a page.
    async fn attempt(
        &self,
        subreddit: &Subreddit,
        limit: u32,
        after: Option<&str>,
        token: Option<&Token>,
        cancel: &CancellationToken,
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

        // The wait for the rate limit ends with a cancel; a request once sent is left to finish.
        let permit = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(Failure::Cancelled),
            permit = self.limiter.acquire() => permit,
        };
        crate::meter::count(crate::meter::Request::Reddit);
        let answer = match request.send().await {
            Ok(answer) => answer,
            Err(error) => return Err(Failure::unreachable(name, &error)),
        };
        permit.observe(answer.headers());
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
                let wait = header_wait(headers, "retry-after")
                    .or_else(|| header_wait(headers, "x-ratelimit-reset"));
                return Err(Failure::RateLimited {
                    wait,
                    error: FetchError::RateLimited {
                        subreddit: name.to_owned(),
                        attempts: 1,
                    },
                });
            }
            code if status.is_server_error() => {
                return Err(Failure::Retry(FetchError::Status {
                    subreddit: name.to_owned(),
                    status: code,
                }))
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
            Err(error) => return Err(Failure::unreachable(name, &error)),
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

    /// One page of the listing, retried as the policy allows; a cancel ends every wait.
    async fn page(
        &self,
        subreddit: &Subreddit,
        limit: u32,
        after: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<Page, FetchError> {
        let renewed = AtomicBool::new(false);
        retry(
            &self.retry.backoff,
            Some(cancel),
            |_| self.attempt_until_admitted(subreddit, limit, after, &renewed, cancel),
            Failure::verdict,
            |failure, retrying| {
                if let Failure::Retry(error) = failure {
                    tracing::warn!(subreddit = %subreddit, attempt = retrying.attempt, wait_ms = retrying.wait.as_millis() as u64, error = %crate::telemetry::Chain(error), "retrying Reddit listing");
                }
            },
        )
        .await
        .map_err(|failure| failure.into_error(cancel))
    }

    /// One attempt that Reddit admits: a 429 is waited out and the request sent again, for
    /// up to [`RetryPolicy::rate_limited_patience`], so that a quota spent by other instances
    /// fails no subreddit. The wait is Reddit's (`Retry-After`, else `X-Ratelimit-Reset`, else
    /// the backoff's step), capped and spread at random so that the processes it refused do not
    /// come back at once; it is set on the rate limiter, so that every request of the process
    /// waits with this one, and a cancel ends it there.
    async fn attempt_until_admitted(
        &self,
        subreddit: &Subreddit,
        limit: u32,
        after: Option<&str>,
        renewed: &AtomicBool,
        cancel: &CancellationToken,
    ) -> Result<Page, Failure> {
        let started = tokio::time::Instant::now();
        let mut refusals = 0;
        loop {
            let wait = match self
                .attempt_with_token(subreddit, limit, after, renewed, cancel)
                .await
            {
                Err(Failure::RateLimited { wait, .. }) => wait,
                outcome => return outcome,
            };
            refusals += 1;
            let wait =
                spread_server_wait(wait.unwrap_or_else(|| self.retry.backoff.delay(refusals)));
            if started.elapsed() + wait > self.retry.rate_limited_patience {
                return Err(Failure::Final(FetchError::RateLimited {
                    subreddit: subreddit.as_str().to_owned(),
                    attempts: refusals,
                }));
            }
            tracing::info!(subreddit = %subreddit, refusals, wait_ms = wait.as_millis() as u64, "Reddit answered 429; waiting for the shared quota");
            self.limiter.exhaust_for(wait);
        }
    }

    /// One attempt with the current token. A refused token is renewed, and the request sent
    /// again, once per page (`renewed`): that is not a retry, so it costs no attempt and no wait.
    async fn attempt_with_token(
        &self,
        subreddit: &Subreddit,
        limit: u32,
        after: Option<&str>,
        renewed: &AtomicBool,
        cancel: &CancellationToken,
    ) -> Result<Page, Failure> {
        let token = self.token(false).await.map_err(Failure::Final)?;
        match self
            .attempt(subreddit, limit, after, token.as_ref(), cancel)
            .await
        {
            Err(Failure::TokenRejected) if !renewed.swap(true, Ordering::Relaxed) => {
                tracing::info!(subreddit = %subreddit, "Reddit refused the access token; renewing it once");
                let token = self.token(true).await.map_err(Failure::Final)?;
                self.attempt(subreddit, limit, after, token.as_ref(), cancel)
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
        self.hot_topics_unless_cancelled(subreddit, limit, fetched_at, &CancellationToken::new())
            .await
    }

    /// A cancel ends the waits (the rate-limit window, a 429's `Retry-After`, the backoff
    /// between attempts) at once, and no request is sent after it; a request already on its way
    /// is left to finish (bounded by the request timeout).
    async fn hot_topics_unless_cancelled(
        &self,
        subreddit: &Subreddit,
        limit: u32,
        fetched_at: &str,
        cancel: &CancellationToken,
    ) -> Result<Vec<Topic>, FetchError> {
        let wanted = limit as usize;
        let mut topics = Vec::with_capacity(wanted);
        let mut after: Option<String> = None;
        // Stickied posts take places at the top of the listing. A subreddit has at most
        // STICKY_SLOTS of them, so asking for that many more posts than wanted gets `limit`
        // real posts in one round trip; another page is fetched only if that fell short.
        let page_size = (limit + STICKY_SLOTS).min(MAX_PAGE);
        for _ in 0..4 {
            if cancel.is_cancelled() {
                return Err(FetchError::Cancelled);
            }
            let (posts, next) = self
                .page(subreddit, page_size, after.as_deref(), cancel)
                .await?;
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
