//! The Reddit client: turns a subreddit name into topics, as a good API citizen.
//!
//! It knows nothing about jobs or storage. Layout:
//! - [`subreddit`]: the validated [`Subreddit`] name.
//! - [`topic`]: Reddit's listing JSON and the [`Topic`] documents made from it.
//! - [`client`]: [`RedditClient`], application-only OAuth, the hot listing, retries.
//! - [`rate_limit`]: pacing from Reddit's `X-Ratelimit-*` headers, one limiter per process for a
//!   quota shared with every other instance.

pub mod client;
pub mod rate_limit;
pub mod subreddit;
pub mod topic;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

pub use client::{Credentials, RedditClient};
pub use subreddit::{InvalidSubreddit, Subreddit};
pub use topic::Topic;

/// The name jobs and output blobs give this source of topics.
pub const SOURCE_NAME: &str = "reddit";

/// Where a job gets its topics from. [`RedditClient`] is the real one; tests of the job runner
/// may use their own.
#[async_trait]
pub trait TopicSource: Send + Sync + 'static {
    /// Up to `limit` hot, non-stickied posts of `subreddit`, stamped with `fetched_at`.
    async fn hot_topics(
        &self,
        subreddit: &Subreddit,
        limit: u32,
        fetched_at: &str,
    ) -> Result<Vec<Topic>, FetchError>;

    /// As [`hot_topics`](TopicSource::hot_topics), but once `cancel` is cancelled nothing more
    /// is asked: a fetch not started by then ends with [`FetchError::Cancelled`]. This default
    /// cannot tell waiting from asking, so it takes a started fetch for a request on its way
    /// and lets it finish, as the real client does with a request once sent; a source that can
    /// tell (the real client's rate-limit, `Retry-After` and backoff waits) overrides it to end
    /// its waits at once.
    async fn hot_topics_unless_cancelled(
        &self,
        subreddit: &Subreddit,
        limit: u32,
        fetched_at: &str,
        cancel: &CancellationToken,
    ) -> Result<Vec<Topic>, FetchError> {
        if cancel.is_cancelled() {
            return Err(FetchError::Cancelled);
        }
        self.hot_topics(subreddit, limit, fetched_at).await
    }
}

/// Why a subreddit could not be fetched. The messages are for people reading a status
/// document; they never contain a credential.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("r/{0} is private (HTTP 403)")]
    Private(String),
    #[error("r/{0} is quarantined (HTTP 403)")]
    Quarantined(String),
    #[error("r/{0} is gated (HTTP 403)")]
    Gated(String),
    #[error("r/{0} is not accessible (HTTP 403)")]
    Forbidden(String),
    #[error("r/{0} is banned (HTTP 404)")]
    Banned(String),
    #[error("r/{0} does not exist")]
    DoesNotExist(String),
    #[error("r/{subreddit}: Reddit answered with malformed JSON ({reason})")]
    Malformed { subreddit: String, reason: String },
    #[error("Reddit refused the app's credentials (HTTP {0})")]
    BadCredentials(u16),
    #[error("Reddit credentials could not be loaded: {0}")]
    CredentialsUnavailable(String),
    #[error("r/{subreddit}: Reddit answered HTTP {status}")]
    Status { subreddit: String, status: u16 },
    #[error("r/{subreddit}: still rate limited after {attempts} attempts")]
    RateLimited { subreddit: String, attempts: u32 },
    #[error("r/{subreddit}: Reddit could not be reached ({reason})")]
    Unreachable { subreddit: String, reason: String },
    /// The fetch was given up because its job was cancelled: the subreddit is skipped, not
    /// failed.
    #[error("the fetch was cancelled")]
    Cancelled,
}

/// A topic source with nothing to say, for unit tests about everything around the topics.
#[cfg(test)]
pub(crate) struct NoTopics;

#[cfg(test)]
#[async_trait]
impl TopicSource for NoTopics {
    async fn hot_topics(
        &self,
        _subreddit: &Subreddit,
        _limit: u32,
        _fetched_at: &str,
    ) -> Result<Vec<Topic>, FetchError> {
        Ok(Vec::new())
    }
}
