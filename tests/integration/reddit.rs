//! The real Reddit client against the fake Reddit: authentication, pacing, retries and the
//! mapping of every error class.

use std::sync::Arc;
use std::time::Duration;

use summary_womble::reddit::client::{CredentialSource, Endpoints, FixedCredentials, RetryPolicy};
use summary_womble::reddit::{Credentials, FetchError, RedditClient, Subreddit, TopicSource};
use summary_womble::retry::Backoff;

use testkit::fake_reddit::{Behaviour, FakeReddit, CLIENT_ID, CLIENT_SECRET};

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        backoff: Backoff::new(Duration::from_millis(20))
            .max_delay(Duration::from_millis(100))
            .jitter(0.5)
            .max_attempts(4)
            .max_elapsed(Duration::from_secs(20)),
        rate_limited_patience: Duration::from_secs(20),
        request_timeout: Duration::from_secs(2),
    }
}

fn credentials(secret: &str) -> Arc<dyn CredentialSource> {
    Arc::new(FixedCredentials(Some(Credentials {
        client_id: CLIENT_ID.to_owned().into(),
        client_secret: secret.to_owned().into(),
        user_agent: None,
    })))
}

fn client_with(reddit: &FakeReddit, credentials: Arc<dyn CredentialSource>) -> RedditClient {
    let url = url::Url::parse(&reddit.url()).unwrap();
    RedditClient::new(
        Endpoints {
            auth: url.clone(),
            api: url.clone(),
            public: url,
        },
        "linux:summary-womble-tests:v1 (by /u/womble)",
        credentials,
        quick_retries(),
    )
    .unwrap()
}

fn client(reddit: &FakeReddit) -> RedditClient {
    client_with(reddit, credentials(CLIENT_SECRET))
}

fn sub(name: &str) -> Subreddit {
    Subreddit::parse(name).unwrap()
}

#[tokio::test]
async fn one_token_serves_every_request_of_its_lifetime() {
    let reddit = FakeReddit::start().await;
    let client = client(&reddit);
    for name in [
        "technology",
        "programming",
        "gadgets",
        "Futurology",
        "datascience",
    ] {
        client
            .hot_topics(&sub(name), 5, "20260101_000000")
            .await
            .unwrap();
    }
    assert_eq!(reddit.tokens_issued(), 1);
    let listings: Vec<_> = reddit
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/r/"))
        .collect();
    assert_eq!(listings.len(), 5);
    for request in &listings {
        assert_eq!(request.authorization.as_deref(), Some("Bearer token-1"));
        assert!(request.query.contains("raw_json=1"), "{}", request.query);
        assert_eq!(
            request.user_agent.as_deref(),
            Some("linux:summary-womble-tests:v1 (by /u/womble)")
        );
    }
}

#[tokio::test]
async fn an_expired_token_is_renewed_once_and_the_request_retried() {
    let reddit = FakeReddit::start().await;
    let client = client(&reddit);
    client.hot_topics(&sub("technology"), 3, "x").await.unwrap();
    reddit.expire_tokens();
    let topics = client.hot_topics(&sub("technology"), 3, "x").await.unwrap();
    assert_eq!(topics.len(), 3);
    assert_eq!(reddit.tokens_issued(), 2);
}

#[tokio::test]
async fn wrong_credentials_fail_clearly_without_naming_the_secret() {
    let reddit = FakeReddit::start().await;
    let client = client_with(&reddit, credentials("wrong-secret-value"));
    let error = client
        .hot_topics(&sub("technology"), 3, "x")
        .await
        .unwrap_err();
    assert!(
        matches!(error, FetchError::BadCredentials(401)),
        "{error:?}"
    );
    assert!(!error.to_string().contains("wrong-secret-value"));
    assert!(!format!("{error:?}").contains("wrong-secret-value"));
}

#[tokio::test]
async fn without_credentials_the_public_listing_is_used() {
    let reddit = FakeReddit::start().await;
    let client = client_with(&reddit, Arc::new(FixedCredentials(None)));
    let topics = client.hot_topics(&sub("technology"), 4, "x").await.unwrap();
    assert_eq!(topics.len(), 4);
    assert_eq!(reddit.tokens_issued(), 0);
    let request = &reddit.requests()[0];
    assert_eq!(request.path, "/r/technology/hot.json");
    assert_eq!(request.authorization, None);
}

#[tokio::test]
async fn stickied_posts_are_skipped_and_pages_followed_to_reach_the_limit() {
    let reddit = FakeReddit::start().await;
    reddit.set(
        "sticky",
        Behaviour::Posts {
            posts: 30,
            stickied: 4,
        },
    );
    let client = client(&reddit);
    let topics = client.hot_topics(&sub("sticky"), 10, "x").await.unwrap();
    assert_eq!(topics.len(), 10);
    let ids: Vec<&str> = topics.iter().map(|t| t.reddit_id.as_str()).collect();
    assert_eq!(ids.first(), Some(&"sticky_4"));
    assert_eq!(ids.last(), Some(&"sticky_13"));
    // The first page (limit + 2 = 12 posts, 4 of them stickied) fell short: a second page,
    // continuing after the last post of the first.
    assert_eq!(reddit.listing_requests("sticky"), 2);
    assert!(reddit
        .requests()
        .iter()
        .any(|r| r.query.contains("after=t3_sticky_11")));
}

#[tokio::test]
async fn the_usual_two_stickied_posts_cost_no_second_request() {
    let reddit = FakeReddit::start().await;
    let topics = client(&reddit)
        .hot_topics(&sub("technology"), 10, "x")
        .await
        .unwrap();
    assert_eq!(topics.len(), 10);
    assert!(topics
        .iter()
        .all(|t| t.reddit_id != "technology_0" && t.reddit_id != "technology_1"));
    assert_eq!(reddit.listing_requests("technology"), 1);
    assert!(
        reddit.requests()[1].query.contains("limit=12"),
        "{}",
        reddit.requests()[1].query
    );
}

#[tokio::test]
async fn a_short_subreddit_returns_what_it_has() {
    let reddit = FakeReddit::start().await;
    reddit.set(
        "tiny",
        Behaviour::Posts {
            posts: 3,
            stickied: 1,
        },
    );
    let topics = client(&reddit)
        .hot_topics(&sub("tiny"), 10, "x")
        .await
        .unwrap();
    assert_eq!(topics.len(), 2);
    assert_eq!(reddit.listing_requests("tiny"), 1);
}

#[tokio::test]
async fn each_error_class_maps_to_a_message_a_person_understands() {
    let reddit = FakeReddit::start().await;
    reddit.set("privatesub", Behaviour::Private);
    reddit.set("quarantined", Behaviour::Quarantined);
    reddit.set("bannedsub", Behaviour::Banned);
    reddit.set("nosuchsub", Behaviour::Missing);
    reddit.set("garbled", Behaviour::Malformed);
    let client = client(&reddit);
    let cases = [
        ("privatesub", "r/privatesub is private (HTTP 403)"),
        ("quarantined", "r/quarantined is quarantined (HTTP 403)"),
        ("bannedsub", "r/bannedsub is banned (HTTP 404)"),
        ("nosuchsub", "r/nosuchsub does not exist"),
    ];
    for (name, message) in cases {
        let error = client.hot_topics(&sub(name), 5, "x").await.unwrap_err();
        assert_eq!(error.to_string(), message);
        assert_eq!(
            reddit.listing_requests(name),
            1,
            "{name} is final and must not be retried"
        );
    }
    let error = client
        .hot_topics(&sub("garbled"), 5, "x")
        .await
        .unwrap_err();
    assert!(matches!(error, FetchError::Malformed { .. }), "{error:?}");
    assert!(error
        .to_string()
        .starts_with("r/garbled: Reddit answered with malformed JSON"));
    assert_eq!(reddit.listing_requests("garbled"), 1);
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_then_succeed() {
    let reddit = FakeReddit::start().await;
    reddit.set(
        "flaky",
        Behaviour::FailTimes {
            status: 503,
            times: 2,
        },
    );
    let topics = client(&reddit)
        .hot_topics(&sub("flaky"), 5, "x")
        .await
        .unwrap();
    assert_eq!(topics.len(), 5);
    assert_eq!(reddit.listing_requests("flaky"), 3);
}

#[tokio::test]
async fn retries_are_bounded() {
    let reddit = FakeReddit::start().await;
    reddit.set(
        "down",
        Behaviour::FailTimes {
            status: 500,
            times: 1000,
        },
    );
    let error = client(&reddit)
        .hot_topics(&sub("down"), 5, "x")
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "r/down: Reddit answered HTTP 500");
    assert_eq!(reddit.listing_requests("down"), 4, "max_attempts is 4");
}

#[tokio::test]
async fn a_slow_reddit_times_out_and_is_retried_a_bounded_number_of_times() {
    let reddit = FakeReddit::start().await;
    // Slower than the client's 2 s request timeout.
    reddit.set("slowpoke", Behaviour::Slow(Duration::from_secs(3)));
    let error = client(&reddit)
        .hot_topics(&sub("slowpoke"), 5, "x")
        .await
        .unwrap_err();
    assert!(matches!(error, FetchError::Unreachable { .. }), "{error:?}");
    assert!(error.to_string().contains("timed out"), "{error}");
    assert_eq!(reddit.listing_requests("slowpoke"), 4, "max_attempts is 4");
}

#[tokio::test]
async fn a_429_waits_for_retry_after_before_asking_again() {
    let reddit = FakeReddit::start().await;
    reddit.set(
        "busy",
        Behaviour::RateLimitedTimes {
            times: 1,
            retry_after: 1.0,
        },
    );
    let topics = client(&reddit)
        .hot_topics(&sub("busy"), 5, "x")
        .await
        .unwrap();
    assert_eq!(topics.len(), 5);
    let times: Vec<_> = reddit
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/r/busy"))
        .map(|r| r.at)
        .collect();
    assert_eq!(times.len(), 2);
    // Waiting less than Retry-After would be a bug; a slow machine only makes the gap longer.
    assert!(
        times[1] - times[0] >= Duration::from_secs(1),
        "asked again after {:?}",
        times[1] - times[0]
    );
}

#[tokio::test]
async fn a_429_is_waited_out_however_often_it_comes_and_fails_no_subreddit() {
    let reddit = FakeReddit::start().await;
    // More 429s than the policy's 4 attempts: the quota is other instances' to spend too, and
    // waiting for it is no failure.
    reddit.set(
        "crowded",
        Behaviour::RateLimitedTimes {
            times: 6,
            retry_after: 0.1,
        },
    );
    let topics = client(&reddit)
        .hot_topics(&sub("crowded"), 5, "x")
        .await
        .unwrap();
    assert_eq!(topics.len(), 5);
    assert_eq!(reddit.listing_requests("crowded"), 7);
}

#[tokio::test]
async fn each_client_id_spends_a_window_of_its_own() {
    let reddit = FakeReddit::start().await;
    reddit.set_fixed_window(2, Duration::from_secs(60));
    reddit.add_client("other-client-id", "other-secret");
    let other = client_with(
        &reddit,
        Arc::new(FixedCredentials(Some(Credentials {
            client_id: "other-client-id".to_owned().into(),
            client_secret: "other-secret".to_owned().into(),
            user_agent: None,
        }))),
    );
    let ours = client(&reddit);
    for name in ["first", "second"] {
        ours.hot_topics(&sub(name), 5, "x").await.unwrap();
        other.hot_topics(&sub(name), 5, "x").await.unwrap();
    }
    assert_eq!(reddit.rate_limited(), 0);
    assert_eq!(reddit.listings_answered(), 4);
    for client_id in [CLIENT_ID, "other-client-id"] {
        let windows = reddit.window_usage(client_id);
        assert_eq!(windows.len(), 1, "{client_id}: {windows:?}");
        assert_eq!(windows[0].admitted, 2, "{client_id}: {windows:?}");
    }
}

#[tokio::test]
async fn no_request_is_sent_while_the_window_is_exhausted() {
    let reddit = FakeReddit::start().await;
    // After one more answer the window reports 0 remaining, resetting in 2 s.
    reddit.set_window(1, 2.0);
    let client = client(&reddit);
    client.hot_topics(&sub("first"), 5, "x").await.unwrap();
    client.hot_topics(&sub("second"), 5, "x").await.unwrap();
    let listings: Vec<_> = reddit
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/r/"))
        .collect();
    assert_eq!(listings.len(), 2);
    let gap = listings[1].at - listings[0].at;
    assert!(
        gap >= Duration::from_millis(1900),
        "second request sent {gap:?} after the window ran out"
    );
}
