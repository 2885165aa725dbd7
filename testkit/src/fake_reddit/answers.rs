//! How the fake answers: the token endpoint, listings with paging, the error shapes of each
//! [`Behaviour`], and the rate-limit headers on every answer.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine as _;
use serde_json::{json, Value};
use warp::http::{HeaderMap, Response, StatusCode};
use warp::Filter;

use super::window::FixedWindow;
use super::{Behaviour, Seen, State, ANONYMOUS};

/// What a subreddit answers unless a test set another behaviour.
const NORMAL: Behaviour = Behaviour::Posts {
    posts: 25,
    stickied: 2,
};

pub(super) fn routes(
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

/// An answer with the rate-limit headers Reddit puts on every answer: about `client`'s window.
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
