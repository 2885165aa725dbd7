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
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use warp::http::{HeaderMap, Response, StatusCode};
use warp::Filter;

use crate::hold::Hold;

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

/// A window of `limit` listing requests per `period`, starting with the first request after the
/// last one ended, as Reddit counts them; requests beyond `limit` are answered 429.
#[derive(Debug)]
struct FixedWindow {
    limit: usize,
    period: Duration,
    started: Option<Instant>,
    used: usize,
    /// Every window so far, the current one last.
    history: Vec<WindowUsage>,
}

/// What one window of a client id saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowUsage {
    /// Requests the window allows.
    pub limit: usize,
    /// Requests it admitted (at most `limit`).
    pub admitted: usize,
    /// Requests it refused with a 429.
    pub refused: usize,
}

impl WindowUsage {
    /// The share of the window used, from 0 to 1.
    pub fn share(&self) -> f64 {
        self.admitted as f64 / self.limit as f64
    }
}

impl FixedWindow {
    fn new(limit: usize, period: Duration) -> Self {
        Self {
            limit,
            period,
            started: None,
            used: 0,
            history: Vec::new(),
        }
    }

    /// Counts a request arriving now; `false` when it is over the limit.
    fn admit(&mut self, now: Instant) -> bool {
        if self
            .started
            .is_none_or(|started| now >= started + self.period)
        {
            self.started = Some(now);
            self.used = 0;
            self.history.push(WindowUsage {
                limit: self.limit,
                admitted: 0,
                refused: 0,
            });
        }
        self.used += 1;
        let admitted = self.used <= self.limit;
        let current = self.history.last_mut().expect("a window was started");
        if admitted {
            current.admitted += 1;
        } else {
            current.refused += 1;
        }
        admitted
    }

    /// `(used, remaining, seconds to reset)` as the headers report them.
    fn report(&self, now: Instant) -> (usize, f64, f64) {
        let reset = self.started.map_or(self.period, |started| {
            (started + self.period).saturating_duration_since(now)
        });
        (
            self.used,
            self.limit.saturating_sub(self.used) as f64,
            reset.as_secs_f64(),
        )
    }
}

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
        let routes = routes(state.clone());
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

fn routes(
    state: Arc<Mutex<State>>,
) -> impl Filter<Extract = (Response<String>,), Error = Infallible> + Clone {
    let state = warp::any().map(move || state.clone());
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(state)
        .then(
            |method: warp::http::Method,
             path: warp::path::FullPath,
             query: String,
             headers: HeaderMap,
             state: Arc<Mutex<State>>| async move {
                let late = path
                    .as_str()
                    .strip_prefix("/r/")
                    .and_then(|rest| rest.split('/').next())
                    .and_then(|name| {
                        let state = state.lock().unwrap();
                        state.late.get(&name.to_ascii_lowercase()).copied()
                    });
                let response =
                    answer(method, path.as_str().to_owned(), query, headers, state).await;
                if let Some(delay) = late {
                    tokio::time::sleep(delay).await;
                }
                response
            },
        )
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn answer(
    method: warp::http::Method,
    path: String,
    query: String,
    headers: HeaderMap,
    state: Arc<Mutex<State>>,
) -> Response<String> {
    let is_listing = path.starts_with("/r/");
    let (latency, hold) = {
        let mut state = state.lock().unwrap();
        if is_listing {
            state.in_flight += 1;
            state.max_in_flight = state.max_in_flight.max(state.in_flight);
        }
        state.requests.push(Seen {
            path: path.clone(),
            query: query.clone(),
            authorization: header(&headers, "authorization"),
            user_agent: header(&headers, "user-agent"),
            at: Instant::now(),
        });
        let hold = if is_listing {
            state.listings_hold.clone()
        } else {
            None
        };
        (state.latency, hold)
    };
    if let Some(hold) = hold {
        hold.pass().await;
    }
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if is_listing {
        state.lock().unwrap().in_flight -= 1;
    }

    if path == "/api/v1/access_token" && method == warp::http::Method::POST {
        return token(&headers, &state);
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (name, public) = match segments.as_slice() {
        ["r", name, "hot"] => (name.to_string(), false),
        ["r", name, "hot.json"] => (name.to_string(), true),
        _ => {
            return json_answer(
                &state,
                ANONYMOUS,
                StatusCode::NOT_FOUND,
                json!({"message": "Not Found", "error": 404}),
            )
        }
    };
    // Whose quota the request spends: the client id its token was issued to.
    let client = if public {
        ANONYMOUS.to_owned()
    } else {
        let client = header(&headers, "authorization")
            .and_then(|value| {
                // Reddit takes the scheme in any case.
                let (scheme, token) = value.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| token.to_owned())
            })
            .and_then(|token| state.lock().unwrap().valid_tokens.get(&token).cloned());
        match client {
            Some(client) => client,
            None => {
                return json_answer(
                    &state,
                    ANONYMOUS,
                    StatusCode::UNAUTHORIZED,
                    json!({"message": "Unauthorized", "error": 401}),
                )
            }
        }
    };
    let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let limit: usize = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(25)
        .min(100);
    let after = params.get("after").cloned();

    let refused_after = {
        let mut state = state.lock().unwrap();
        let now = Instant::now();
        let State {
            window_rule,
            windows,
            ..
        } = &mut *state;
        let admitted = window_rule.map(|(limit, period)| {
            let window = windows
                .entry(client.clone())
                .or_insert_with(|| FixedWindow::new(limit, period));
            (window.admit(now), window.report(now).2)
        });
        match admitted {
            Some((false, reset)) => {
                state.window_refusals += 1;
                Some(reset)
            }
            _ => None,
        }
    };
    if let Some(reset) = refused_after {
        return too_many_requests(&state, &client, reset.ceil());
    }

    let (behaviour, asked) = {
        let mut state = state.lock().unwrap();
        let key = name.to_ascii_lowercase();
        let asked = {
            let count = state.asked.entry(key.clone()).or_default();
            *count += 1;
            *count
        };
        let behaviour = state.behaviours.get(&key).cloned().unwrap_or(NORMAL);
        (behaviour, asked)
    };
    let behaviour = match behaviour {
        Behaviour::FailTimes { status, times } if asked <= times => {
            return json_answer(
                &state,
                &client,
                StatusCode::from_u16(status).unwrap(),
                json!({"message": "Internal Server Error", "error": status}),
            )
        }
        Behaviour::RateLimitedTimes { times, retry_after } if asked <= times => {
            return too_many_requests(&state, &client, retry_after);
        }
        Behaviour::FailTimes { .. } | Behaviour::RateLimitedTimes { .. } => NORMAL,
        Behaviour::Slow(delay) => {
            tokio::time::sleep(delay).await;
            NORMAL
        }
        Behaviour::Held(hold) => {
            hold.pass().await;
            NORMAL
        }
        other => other,
    };
    match behaviour {
        Behaviour::Private => json_answer(
            &state,
            &client,
            StatusCode::FORBIDDEN,
            json!({"reason": "private", "message": "Forbidden", "error": 403}),
        ),
        Behaviour::Quarantined => json_answer(
            &state,
            &client,
            StatusCode::FORBIDDEN,
            json!({"reason": "quarantined", "message": "Forbidden", "error": 403, "quarantine_message": "..."}),
        ),
        Behaviour::Banned => json_answer(
            &state,
            &client,
            StatusCode::NOT_FOUND,
            json!({"reason": "banned", "message": "Not Found", "error": 404}),
        ),
        Behaviour::Missing => {
            let mut response = json_answer(&state, &client, StatusCode::FOUND, json!({}));
            *response.body_mut() = String::new();
            response.headers_mut().insert(
                "location",
                format!("https://www.reddit.com/subreddits/search.json?q={name}")
                    .parse()
                    .unwrap(),
            );
            response
        }
        Behaviour::NotAListing(kind) => json_answer(
            &state,
            &client,
            StatusCode::OK,
            json!({"kind": kind, "data": {"after": null, "children": []}}),
        ),
        Behaviour::Malformed => {
            let mut response = json_answer(&state, &client, StatusCode::OK, json!({}));
            *response.body_mut() = "<html>we're doing some maintenance".into();
            response
        }
        Behaviour::Posts { posts, stickied } => {
            state.lock().unwrap().listings_answered += 1;
            json_answer(
                &state,
                &client,
                StatusCode::OK,
                listing(&name, posts, stickied, limit, after.as_deref()),
            )
        }
        Behaviour::FailTimes { .. }
        | Behaviour::RateLimitedTimes { .. }
        | Behaviour::Slow(_)
        | Behaviour::Held(_) => {
            unreachable!("resolved above")
        }
    }
}

/// The client id of a Basic `authorization` holding the id and secret of an app Reddit knows.
fn client_id(authorization: Option<&str>, state: &State) -> Option<String> {
    let encoded = authorization?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let (id, secret) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    (state.clients.get(id)? == secret).then(|| id.to_owned())
}

fn token(headers: &HeaderMap, state: &Arc<Mutex<State>>) -> Response<String> {
    let authorization = header(headers, "authorization");
    let issued = {
        let mut state = state.lock().unwrap();
        client_id(authorization.as_deref(), &state).map(|client| {
            state.tokens_issued += 1;
            let token = format!("token-{}", state.tokens_issued);
            state.valid_tokens.insert(token.clone(), client);
            (token, state.token_expires_in.clone().unwrap_or(json!(3600)))
        })
    };
    let Some((token, expires_in)) = issued else {
        return json_answer(
            state,
            ANONYMOUS,
            StatusCode::UNAUTHORIZED,
            json!({"message": "Unauthorized", "error": 401}),
        );
    };
    json_answer(
        state,
        ANONYMOUS,
        StatusCode::OK,
        json!({"access_token": token, "token_type": "bearer", "expires_in": expires_in, "scope": "*"}),
    )
}

/// An answer with the rate-limit headers Reddit puts on every answer: about `client`'s window.
/// What a subreddit answers unless a test set another behaviour.
const NORMAL: Behaviour = Behaviour::Posts {
    posts: 25,
    stickied: 2,
};

/// A 429 as Reddit sends it, asking for `retry_after` seconds.
fn too_many_requests(
    state: &Arc<Mutex<State>>,
    client: &str,
    retry_after: impl std::fmt::Display,
) -> Response<String> {
    let mut response = json_answer(
        state,
        client,
        StatusCode::TOO_MANY_REQUESTS,
        json!({"message": "Too Many Requests", "error": 429}),
    );
    response
        .headers_mut()
        .insert("retry-after", retry_after.to_string().parse().unwrap());
    response
}

fn json_answer(
    state: &Arc<Mutex<State>>,
    client: &str,
    status: StatusCode,
    body: Value,
) -> Response<String> {
    let (used, remaining, reset, overrides) = {
        let mut state = state.lock().unwrap();
        if status == StatusCode::TOO_MANY_REQUESTS {
            state.rate_limited += 1;
        }
        let overrides = state.answer_headers.clone();
        if let Some((limit, period)) = state.window_rule {
            let (used, remaining, reset) = match state.windows.get(client) {
                Some(window) => window.report(Instant::now()),
                None => (0, limit as f64, period.as_secs_f64()),
            };
            // Fractional, so that a client is never told the window resets before it does.
            let reset = format!("{reset:.3}");
            (used, remaining, reset, overrides)
        } else {
            let used = state.requests.len();
            let remaining = match state.window_budget.as_mut() {
                Some(budget) => {
                    *budget = budget.saturating_sub(1);
                    *budget as f64
                }
                None => (state.window_remaining - used as f64).max(0.0),
            };
            let reset = format!("{}", state.window_reset.round() as u64);
            (used, remaining, reset, overrides)
        }
    };
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=UTF-8")
        .header("x-ratelimit-used", used.to_string())
        .header("x-ratelimit-remaining", format!("{remaining:.1}"))
        .header("x-ratelimit-reset", reset)
        .body(body.to_string())
        .unwrap();
    for (name, value) in overrides {
        response.headers_mut().insert(
            warp::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    response
}

/// A hot listing: `posts` posts named `<name>_<i>`, the first `stickied` stickied, paged by
/// `after` as Reddit does (`after` names the last post of the page).
fn listing(name: &str, posts: usize, stickied: usize, limit: usize, after: Option<&str>) -> Value {
    let start = after
        .and_then(|after| after.strip_prefix("t3_"))
        .and_then(|id| id.rsplit('_').next())
        .and_then(|i| i.parse::<usize>().ok())
        .map_or(0, |i| i + 1);
    let end = (start + limit).min(posts);
    let children: Vec<Value> = (start..end)
        .map(|i| {
            let id = format!("{}_{i}", name.to_ascii_lowercase());
            json!({"kind": "t3", "data": {
                "id": id,
                "name": format!("t3_{id}"),
                "title": format!("Post {i} of r/{name}: <b>bold</b> & more"),
                "url": format!("https://example.com/{name}/{i}"),
                "permalink": format!("/r/{name}/comments/{id}/post_{i}/"),
                "score": 1000 - i as i64,
                "num_comments": i * 3,
                "created_utc": 1_754_920_341.0 + i as f64 + 0.5,
                "author": if i % 5 == 4 { "[deleted]".to_owned() } else { format!("user{i}") },
                "selftext": if i % 3 == 0 { "é".repeat(700) } else { String::new() },
                "stickied": i < stickied,
                "over_18": false,
                "subreddit": name,
                "is_self": i % 3 == 0,
            }})
        })
        .collect();
    let after = (end < posts).then(|| format!("t3_{}_{}", name.to_ascii_lowercase(), end - 1));
    json!({"kind": "Listing", "data": {"after": after, "before": null, "dist": children.len(), "children": children}})
}
