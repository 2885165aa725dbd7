//! A local Reddit that answers as the real one does (reddit.md): the application-only token
//! endpoint with Basic auth, `/r/<name>/hot` Listings with stickied posts and `after` paging,
//! `X-Ratelimit-*` headers on every answer, and the real error shapes: 403 with a `reason` for
//! private/quarantined subreddits, 404 `banned`, a 302 to the search page for a subreddit that
//! does not exist, 401 for a bad or expired token, 429 with `Retry-After`, 5xx, slow answers and
//! malformed JSON. Every request is recorded so tests can count what the handler sent.
//!
//! The rate limit is Reddit's: a quota per OAuth client id ([`FakeReddit::set_fixed_window`]),
//! shared by every process that holds a token of that client, whichever process asks. Each
//! answer reports that client's window (`X-Ratelimit-Used` counts every request of the window,
//! refused ones too, so it orders answers); a request over the limit is answered 429 with
//! `Retry-After`. What a benchmark reads: [`FakeReddit::listings_answered`],
//! [`FakeReddit::rate_limited`] and [`FakeReddit::window_usage`] (requests per window).
//!
//! A test that needs a listing to answer only after something else has happened holds it
//! ([`FakeReddit::hold`], [`FakeReddit::hold_listings`]) and releases it then: no sleeps.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::hold::Hold;

mod answers;
mod window;

use window::FixedWindow;
pub use window::WindowUsage;

pub const CLIENT_ID: &str = "fake-client-id";
pub const CLIENT_SECRET: &str = "fake-client-secret-do-not-log";

/// How one subreddit behaves.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// A normal subreddit with `posts` posts, the first `stickied` of them stickied.
    Posts {
        posts: usize,
        stickied: usize,
    },
    Private,
    Quarantined,
    Banned,
    /// Unknown name: Reddit redirects to its search page.
    Missing,
    /// Answers `status` this many times, then behaves normally.
    FailTimes {
        status: u16,
        times: usize,
    },
    /// Answers 429 with `Retry-After: retry_after` this many times, then normally.
    RateLimitedTimes {
        times: usize,
        retry_after: f64,
    },
    /// 200 with a body that is not JSON.
    Malformed,
    /// A normal subreddit that takes this long to answer (for a client's timeouts; to order
    /// events, hold it instead).
    Slow(Duration),
    /// A normal subreddit whose listings wait until the hold is released.
    Held(Hold),
    /// 200 with well-formed JSON whose `kind` is this text instead of `Listing`: the handler
    /// quotes it in the subreddit's error, so a test chooses the error text a job records.
    NotAListing(String),
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub user_agent: Option<String>,
    pub at: Instant,
}

#[derive(Debug)]
struct State {
    behaviours: HashMap<String, Behaviour>,
    /// How many times each subreddit has been asked for (for FailTimes / RateLimitedTimes).
    asked: HashMap<String, usize>,
    requests: Vec<Seen>,
    tokens_issued: usize,
    /// The apps Reddit knows: client secret by client id.
    clients: HashMap<String, String>,
    /// The client id each valid token was issued to.
    valid_tokens: HashMap<String, String>,
    /// Listing requests answered 200.
    listings_answered: usize,
    /// Every 429 answered, for the window or by a subreddit's behaviour.
    rate_limited: usize,
    latency: Duration,
    /// Rate-limit window the fake reports: remaining requests and seconds to reset.
    window_remaining: f64,
    window_reset: f64,
    /// When set, the remaining count the fake reports is exhausted after this many answers.
    window_budget: Option<usize>,
    /// Listing requests being answered right now, and the most there ever were at once.
    in_flight: usize,
    max_in_flight: usize,
    /// When set, every listing request waits here first.
    listings_hold: Option<Hold>,
    /// Headers put on every answer in place of the usual ones (hostile values).
    answer_headers: Vec<(String, String)>,
    /// `expires_in` of the token answer, when not the usual 3600.
    token_expires_in: Option<Value>,
    /// A real fixed window per client id, enforced with 429s, when set: `(limit, period)`.
    window_rule: Option<(usize, Duration)>,
    /// Each client id's window (requests without a token count as [`ANONYMOUS`]'s).
    windows: HashMap<String, FixedWindow>,
    /// 429s answered because the fixed window was exceeded.
    window_refusals: usize,
    /// Subreddits whose answers are held this long after they were made, so that they arrive
    /// after newer ones (their rate-limit headers stale by then).
    late: HashMap<String, Duration>,
}

/// Whose window requests without a token count against.
const ANONYMOUS: &str = "";

#[derive(Clone)]
pub struct FakeReddit {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
}

impl FakeReddit {
    /// Starts on a free loopback port; every subreddit not configured has 25 posts, 2 stickied.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State {
            behaviours: HashMap::new(),
            asked: HashMap::new(),
            requests: Vec::new(),
            tokens_issued: 0,
            clients: HashMap::from([(CLIENT_ID.to_owned(), CLIENT_SECRET.to_owned())]),
            valid_tokens: HashMap::new(),
            listings_answered: 0,
            rate_limited: 0,
            latency: Duration::ZERO,
            window_remaining: 600.0,
            window_reset: 600.0,
            window_budget: None,
            in_flight: 0,
            max_in_flight: 0,
            listings_hold: None,
            answer_headers: Vec::new(),
            token_expires_in: None,
            window_rule: None,
            windows: HashMap::new(),
            window_refusals: 0,
            late: HashMap::new(),
        }));
        let listener = crate::port::listener().await;
        let addr = listener.local_addr().unwrap();
        let routes = answers::routes(state.clone());
        tokio::spawn(warp::serve(routes).incoming(listener).run());
        Self { state, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The environment that points the handler at this fake with credentials.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("REDDIT_AUTH_URL".into(), self.url()),
            ("REDDIT_API_URL".into(), self.url()),
            ("REDDIT_PUBLIC_URL".into(), self.url()),
            ("REDDIT_CLIENT_ID".into(), CLIENT_ID.into()),
            ("REDDIT_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
            (
                "REDDIT_USER_AGENT".into(),
                "linux:summary-womble-tests:v1 (by /u/womble)".into(),
            ),
        ]
    }

    pub fn set(&self, subreddit: &str, behaviour: Behaviour) {
        self.state
            .lock()
            .unwrap()
            .behaviours
            .insert(subreddit.to_ascii_lowercase(), behaviour);
    }

    /// Holds the listings of `subreddits` until the returned hold is released; they answer
    /// normally then.
    pub fn hold(&self, subreddits: &[&str]) -> Hold {
        let hold = Hold::new();
        for subreddit in subreddits {
            self.set(subreddit, Behaviour::Held(hold.clone()));
        }
        hold
    }

    /// Holds every listing request (of any subreddit, counted as in flight while it waits)
    /// until the returned hold is released.
    pub fn hold_listings(&self) -> Hold {
        let hold = Hold::new();
        self.state.lock().unwrap().listings_hold = Some(hold.clone());
        hold
    }

    /// Answers every request this much later (for measurements; to order events, hold).
    pub fn set_latency(&self, latency: Duration) {
        self.state.lock().unwrap().latency = latency;
    }

    /// Reports a window in which only `budget` more requests may be sent, resetting in
    /// `reset` seconds.
    pub fn set_window(&self, budget: usize, reset: f64) {
        let mut state = self.state.lock().unwrap();
        state.window_budget = Some(budget);
        state.window_reset = reset;
    }

    /// Reports a window that never runs out (for load tests; Reddit's own would).
    pub fn set_unlimited(&self) {
        self.state.lock().unwrap().window_remaining = 1e12;
    }

    /// Puts `name: value` on every answer from now on, in place of the usual value.
    pub fn set_answer_header(&self, name: &str, value: &str) {
        self.state
            .lock()
            .unwrap()
            .answer_headers
            .push((name.to_owned(), value.to_owned()));
    }

    /// The `expires_in` of every token answer from now on.
    pub fn set_token_expires_in(&self, expires_in: Value) {
        self.state.lock().unwrap().token_expires_in = Some(expires_in);
    }

    /// Enforces a real window of `limit` listing requests per `period` for each client id,
    /// shared by every process holding one of its tokens: a request beyond it is answered 429
    /// with `Retry-After` (the seconds left, rounded up), and every answer reports the window of
    /// the client that asked.
    pub fn set_fixed_window(&self, limit: usize, period: Duration) {
        let mut state = self.state.lock().unwrap();
        state.window_rule = Some((limit, period));
        state.windows.clear();
    }

    /// Another app Reddit knows, with a quota of its own.
    pub fn add_client(&self, client_id: &str, client_secret: &str) {
        self.state
            .lock()
            .unwrap()
            .clients
            .insert(client_id.to_owned(), client_secret.to_owned());
    }

    /// Listing requests answered 200 so far.
    pub fn listings_answered(&self) -> usize {
        self.state.lock().unwrap().listings_answered
    }

    /// Every 429 answered so far: for a client's window, or by a subreddit's behaviour.
    pub fn rate_limited(&self) -> usize {
        self.state.lock().unwrap().rate_limited
    }

    /// The windows of `client_id` so far, oldest first; the last may still be running. Empty
    /// without [`set_fixed_window`](Self::set_fixed_window).
    pub fn window_usage(&self, client_id: &str) -> Vec<WindowUsage> {
        self.state
            .lock()
            .unwrap()
            .windows
            .get(client_id)
            .map(|window| window.history.clone())
            .unwrap_or_default()
    }

    /// Holds every answer for `subreddit` for `delay` after it was made (headers included).
    pub fn set_late(&self, subreddit: &str, delay: Duration) {
        self.state
            .lock()
            .unwrap()
            .late
            .insert(subreddit.to_ascii_lowercase(), delay);
    }

    /// How many requests the fixed window refused with a 429.
    pub fn window_refusals(&self) -> usize {
        self.state.lock().unwrap().window_refusals
    }

    pub fn tokens_issued(&self) -> usize {
        self.state.lock().unwrap().tokens_issued
    }

    /// Forgets every issued token, as if they had expired.
    pub fn expire_tokens(&self) {
        self.state.lock().unwrap().valid_tokens.clear();
    }

    /// The most listing requests that were ever in flight at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.state.lock().unwrap().max_in_flight
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Listing requests for every subreddit together.
    pub fn listing_requests_total(&self) -> usize {
        self.requests()
            .iter()
            .filter(|seen| seen.path.starts_with("/r/"))
            .count()
    }

    /// Listing requests for one subreddit.
    pub fn listing_requests(&self, subreddit: &str) -> usize {
        let prefix = format!("/r/{}/hot", subreddit.to_ascii_lowercase());
        self.requests()
            .iter()
            .filter(|seen| seen.path.to_ascii_lowercase().starts_with(&prefix))
            .count()
    }
}
