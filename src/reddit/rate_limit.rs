//! Pacing from Reddit's rate-limit headers.
//!
//! Reddit tells every client how many requests remain in the current window and when it
//! resets. One [`RateLimiter`] is shared by every request of the process (all jobs use the same
//! client id), so no request is sent while the window is known to be exhausted.

use std::time::Duration;

use reqwest::header::HeaderMap;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::retry::MAX_SERVER_WAIT;

#[derive(Debug, Default)]
pub struct RateLimiter {
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    /// Requests left in the window as last reported, minus those sent since. `None` until the
    /// first answer tells us.
    remaining: Option<f64>,
    /// When the window resets.
    resets_at: Option<Instant>,
}

impl RateLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits until a request may be sent, and counts it as sent.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut window = self.window.lock().await;
                let now = Instant::now();
                if window.resets_at.is_some_and(|at| at <= now) {
                    // A new window: we do not know its budget until the next answer.
                    *window = Window::default();
                }
                match (window.remaining, window.resets_at) {
                    (Some(remaining), Some(resets_at)) if remaining < 1.0 => resets_at - now,
                    (Some(remaining), _) => {
                        window.remaining = Some(remaining - 1.0);
                        return;
                    }
                    (None, _) => return,
                }
            };
            tracing::info!(
                wait_ms = wait.as_millis() as u64,
                "reddit rate limit window exhausted; waiting for reset"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Records what an answer said about the window.
    pub async fn observe(&self, headers: &HeaderMap) {
        let remaining = header_f64(headers, "x-ratelimit-remaining");
        let reset = header_wait(headers, "x-ratelimit-reset");
        if let (Some(remaining), Some(reset)) = (remaining, reset) {
            let mut window = self.window.lock().await;
            window.remaining = Some(remaining);
            window.resets_at = Some(Instant::now() + reset);
        }
    }

    /// Marks the window exhausted until `wait` from now (after a 429).
    pub async fn exhaust_for(&self, wait: Duration) {
        let mut window = self.window.lock().await;
        window.remaining = Some(0.0);
        window.resets_at = Some(Instant::now() + wait);
    }
}

/// A number of seconds to wait, as a header says (`X-Ratelimit-Reset`, `Retry-After`), capped
/// to [`MAX_SERVER_WAIT`]: a reset years away would otherwise hold every request of the process
/// that long while the job's heartbeats kept it looking alive. A negative or non-finite value,
/// or one that is not a number, counts as no value at all.
pub(crate) fn header_wait(headers: &HeaderMap, name: &str) -> Option<Duration> {
    header_f64(headers, name).and_then(|seconds| bounded_seconds(seconds, MAX_SERVER_WAIT))
}

/// `seconds` as a duration of at most `max`; `None` when negative or not finite. Never panics,
/// whatever the value (`Duration::from_secs_f64` and `Instant + Duration` do on huge ones).
pub(crate) fn bounded_seconds(seconds: f64, max: Duration) -> Option<Duration> {
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Some(Duration::try_from_secs_f64(seconds).map_or(max, |wait| wait.min(max)))
}

pub(crate) fn header_f64(headers: &HeaderMap, name: &str) -> Option<f64> {
    headers
        .get(name)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|value| value.is_finite())
}

#[cfg(test)]
mod tests {
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

    #[tokio::test(start_paused = true)]
    async fn an_exhausted_window_holds_requests_until_it_resets() {
        let limiter = RateLimiter::new();
        limiter.observe(&headers("0", "3.5")).await;
        let start = Instant::now();
        limiter.acquire().await;
        assert!(start.elapsed() >= Duration::from_millis(3500));
    }

    #[tokio::test(start_paused = true)]
    async fn requests_left_in_the_window_pass_at_once_and_are_counted() {
        let limiter = RateLimiter::new();
        limiter.observe(&headers("2.0", "60")).await;
        let start = Instant::now();
        limiter.acquire().await;
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        // The third would exceed what Reddit allowed: it waits for the reset.
        limiter.acquire().await;
        assert!(start.elapsed() >= Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn an_absurd_reset_is_capped_and_a_nonsensical_one_ignored() {
        let limiter = RateLimiter::new();
        limiter.observe(&headers("0", "1e20")).await;
        let start = Instant::now();
        limiter.acquire().await;
        assert_eq!(start.elapsed(), MAX_SERVER_WAIT);
        for reset in ["-5", "NaN", "inf", "soon"] {
            let limiter = RateLimiter::new();
            limiter.observe(&headers("0", reset)).await;
            let start = Instant::now();
            limiter.acquire().await;
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
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
