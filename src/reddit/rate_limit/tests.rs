use super::*;
use reqwest::header::HeaderValue;

fn headers(remaining: &str, reset: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-ratelimit-remaining",
        HeaderValue::from_str(remaining).unwrap(),
    );
    headers.insert("x-ratelimit-reset", HeaderValue::from_str(reset).unwrap());
    headers
}

fn report(used: &str, remaining: &str, reset: &str) -> HeaderMap {
    let mut headers = headers(remaining, reset);
    headers.insert("x-ratelimit-used", HeaderValue::from_str(used).unwrap());
    headers
}

/// Sends one request and hands the limiter its answer.
async fn answer(limiter: &RateLimiter, headers: &HeaderMap) {
    limiter.acquire().await.observe(headers);
}

/// Whether a request may be sent within `wait` (paused time: it passes at once).
async fn passes_within(limiter: &RateLimiter, wait: Duration) -> bool {
    tokio::time::timeout(wait, limiter.acquire()).await.is_ok()
}

#[tokio::test(start_paused = true)]
async fn an_exhausted_window_holds_requests_until_it_resets() {
    let limiter = RateLimiter::new();
    answer(&limiter, &headers("0", "3.5")).await;
    let start = Instant::now();
    let _permit = limiter.acquire().await;
    assert!(start.elapsed() >= Duration::from_millis(3500));
}

#[tokio::test(start_paused = true)]
async fn requests_left_in_the_window_pass_at_once_and_are_counted() {
    let limiter = RateLimiter::new();
    answer(&limiter, &headers("2.0", "60")).await;
    let start = Instant::now();
    // Sent and lost without an answer: each still counts.
    drop(limiter.acquire().await);
    drop(limiter.acquire().await);
    assert_eq!(start.elapsed(), Duration::ZERO);
    // The third would exceed what Reddit allowed: it waits for the reset.
    let _permit = limiter.acquire().await;
    assert!(start.elapsed() >= Duration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn no_more_requests_are_in_flight_than_remain() {
    let limiter = RateLimiter::new();
    answer(&limiter, &report("7", "3", "60")).await;
    let first = limiter.acquire().await;
    let _second = limiter.acquire().await;
    let _third = limiter.acquire().await;
    // Reddit counted the first when it answered, not the two still on their way: two remain
    // by its count, and both are in flight already.
    first.observe(&report("8", "2", "60"));
    assert!(!passes_within(&limiter, Duration::from_secs(1)).await);
}

#[tokio::test(start_paused = true)]
async fn an_answer_that_arrives_late_does_not_raise_the_budget() {
    let limiter = RateLimiter::new();
    answer(&limiter, &report("4", "6", "60")).await;
    let older = limiter.acquire().await;
    let newer = limiter.acquire().await;
    newer.observe(&report("6", "4", "60"));
    older.observe(&report("5", "5", "60"));
    let held: Vec<_> = futures::future::join_all((0..4).map(|_| limiter.acquire())).await;
    assert_eq!(held.len(), 4);
    assert!(!passes_within(&limiter, Duration::from_secs(59)).await);
}

#[tokio::test(start_paused = true)]
async fn without_used_a_late_answer_still_cannot_raise_the_budget() {
    let limiter = RateLimiter::new();
    answer(&limiter, &headers("6", "60")).await;
    let older = limiter.acquire().await;
    let newer = limiter.acquire().await;
    newer.observe(&headers("4", "60"));
    older.observe(&headers("5", "60"));
    let held: Vec<_> = futures::future::join_all((0..4).map(|_| limiter.acquire())).await;
    assert_eq!(held.len(), 4);
    assert!(!passes_within(&limiter, Duration::from_secs(59)).await);
}

#[tokio::test(start_paused = true)]
async fn a_new_window_starts_with_the_size_of_the_last_one() {
    let limiter = RateLimiter::new();
    answer(&limiter, &report("8", "2", "3")).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    // The window reset: ten requests, as the last window allowed, go at once ...
    let start = Instant::now();
    let held: Vec<_> = futures::future::join_all((0..10).map(|_| limiter.acquire())).await;
    assert_eq!(held.len(), 10);
    assert_eq!(start.elapsed(), Duration::ZERO);
    // ... and the eleventh waits for their answers.
    assert!(!passes_within(&limiter, Duration::from_secs(1)).await);
    let mut held = held.into_iter();
    held.next().unwrap().observe(&report("10", "0", "3"));
    assert!(!passes_within(&limiter, Duration::from_secs(1)).await);
}

#[tokio::test(start_paused = true)]
async fn an_answer_held_up_on_its_way_is_not_taken_for_a_new_window() {
    let limiter = RateLimiter::new();
    let late = limiter.acquire().await;
    answer(&limiter, &report("5", "5", "3")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Made when the window had 3 s to go, received 1.5 s later: the same window.
    late.observe(&report("4", "6", "3"));
    let held: Vec<_> = futures::future::join_all((0..5).map(|_| limiter.acquire())).await;
    assert_eq!(held.len(), 5);
    assert!(!passes_within(&limiter, Duration::from_secs(1)).await);
}

#[tokio::test(start_paused = true)]
async fn an_answer_about_the_window_before_does_not_refill_this_one() {
    let limiter = RateLimiter::new();
    answer(&limiter, &report("0", "10", "3")).await;
    let late = limiter.acquire().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    // The new window's first answer: nothing left, for 3 s.
    answer(&limiter, &report("10", "0", "3")).await;
    // An answer from the old window, reset long past, with room: it is no news.
    late.observe(&report("1", "9", "0"));
    assert!(!passes_within(&limiter, Duration::from_secs(2)).await);
}

#[tokio::test(start_paused = true)]
async fn a_429_holds_every_request_whatever_other_answers_say() {
    let limiter = RateLimiter::new();
    let other = limiter.acquire().await;
    limiter.exhaust_for(Duration::from_secs(20));
    other.observe(&report("1", "500", "600"));
    let start = Instant::now();
    let _permit = limiter.acquire().await;
    assert_eq!(start.elapsed(), Duration::from_secs(20));
}

#[tokio::test(start_paused = true)]
async fn an_absurd_reset_is_capped_and_a_nonsensical_one_ignored() {
    let limiter = RateLimiter::new();
    answer(&limiter, &headers("0", "1e20")).await;
    let start = Instant::now();
    drop(limiter.acquire().await);
    assert_eq!(start.elapsed(), MAX_SERVER_WAIT);
    for reset in ["-5", "NaN", "inf", "soon"] {
        let limiter = RateLimiter::new();
        answer(&limiter, &headers("0", reset)).await;
        let start = Instant::now();
        drop(limiter.acquire().await);
        assert_eq!(start.elapsed(), Duration::ZERO, "reset {reset}");
    }
}

#[test]
fn seconds_from_outside_are_bounded() {
    let max = Duration::from_secs(600);
    assert_eq!(bounded_seconds(1.5, max), Some(Duration::from_millis(1500)));
    assert_eq!(bounded_seconds(1e20, max), Some(max));
    assert_eq!(bounded_seconds(f64::MAX, max), Some(max));
    assert_eq!(bounded_seconds(-1.0, max), None);
    assert_eq!(bounded_seconds(f64::NAN, max), None);
    assert_eq!(bounded_seconds(f64::INFINITY, max), None);
}

#[tokio::test(start_paused = true)]
async fn an_unknown_window_does_not_hold_requests() {
    let limiter = RateLimiter::new();
    let start = Instant::now();
    let held: Vec<_> = futures::future::join_all((0..8).map(|_| limiter.acquire())).await;
    assert_eq!(held.len(), 8);
    assert_eq!(start.elapsed(), Duration::ZERO);
}
