//! Pacing from Reddit's rate-limit headers.
//!
//! Reddit tells every client how many requests remain in the current window and when it
//! resets. One [`RateLimiter`] is shared by every request of the process (all jobs use the same
//! client id), so no request is sent while the window is known to be exhausted.
//!
//! Three rules keep bursts out (docs/reddit.md, "Rate limits"):
//! - Requests in flight count against what remains: an answer reports what Reddit had counted
//!   when it answered, not the requests still on their way.
//! - A stale answer never raises the budget: answers can arrive out of order, and within one
//!   window the one with the higher `X-Ratelimit-Used` (or, without it, the lower remainder) is
//!   the newer. An answer about a window that has already been replaced is ignored.
//! - A new window starts with the size the last one had (`used + remaining`), not unlimited:
//!   otherwise every fetch waiting for the reset would be sent at once.

use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::HeaderMap;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::retry::MAX_SERVER_WAIT;

/// Two answers whose resets are this close describe the same window: Reddit reports whole
/// seconds, and answers take a while to arrive.
const SAME_WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct RateLimiter {
    window: Mutex<Window>,
    /// Woken whenever more may be sent: an answer arrived or a request ended.
    changed: Notify,
}

#[derive(Debug, Default)]
struct Window {
    /// Requests left in the window as its newest answer reported, minus the requests answered
    /// since without a report. `None` until an answer tells us.
    remaining: Option<f64>,
    /// The highest `X-Ratelimit-Used` reported in this window.
    used: Option<f64>,
    /// When the window resets; `None` for a window whose first answer has not come yet.
    resets_at: Option<Instant>,
    /// How many requests a whole window allows, as last known: a new window starts with it.
    size: Option<f64>,
    /// Requests sent and not yet answered.
    in_flight: u32,
    /// After a 429: nothing is sent before this, whatever other answers say.
    refused_until: Option<Instant>,
}

/// Leave to send one request. Hand it the answer's headers with [`Permit::observe`]; a permit
/// dropped without an answer (the request failed or was abandoned) counts as one request spent.
#[must_use = "a permit counts a request in flight until it is observed or dropped"]
pub struct Permit<'a> {
    limiter: &'a RateLimiter,
    answered: bool,
    /// When the request was let go: Reddit answered after this.
    sent_at: Instant,
}

impl Permit<'_> {
    /// Records what the answer said about the window.
    pub fn observe(mut self, headers: &HeaderMap) {
        self.answered = true;
        self.limiter.answered(Some(headers), self.sent_at);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.limiter.answered(None, self.sent_at);
        }
    }
}

impl RateLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits until a request may be sent, and counts it in flight.
    pub async fn acquire(&self) -> Permit<'_> {
        loop {
            // Registered before looking, so a change made after the look still wakes us.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let wake_at = {
                let mut window = self.window.lock().expect("rate limit lock");
                let now = Instant::now();
                match window.admit(now) {
                    Ok(()) => {
                        return Permit {
                            limiter: self,
                            answered: false,
                            sent_at: now,
                        }
                    }
                    Err(wake_at) => wake_at,
                }
            };
            match wake_at {
                Some(at) => {
                    tracing::info!(
                        wait_ms = at.saturating_duration_since(Instant::now()).as_millis() as u64,
                        "reddit rate limit window exhausted; waiting for reset"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// Marks the window exhausted until `wait` from now (after a 429).
    pub fn exhaust_for(&self, wait: Duration) {
        let mut window = self.window.lock().expect("rate limit lock");
        let until = Instant::now() + wait;
        window.refused_until = Some(window.refused_until.map_or(until, |at| at.max(until)));
    }

    /// A request ended: with an answer's headers, or without an answer.
    fn answered(&self, headers: Option<&HeaderMap>, sent_at: Instant) {
        {
            let mut window = self.window.lock().expect("rate limit lock");
            window.in_flight = window.in_flight.saturating_sub(1);
            let report = headers.and_then(Report::read);
            match report {
                Some(report) => window.record(report, sent_at, Instant::now()),
                // Reddit may have counted it: spend one, so failures cannot add up to a burst.
                None => window.remaining = window.remaining.map(|left| (left - 1.0).max(0.0)),
            }
        }
        self.changed.notify_waiters();
    }
}

/// What one answer said about the window.
struct Report {
    remaining: f64,
    reset: Duration,
    used: Option<f64>,
}

impl Report {
    /// `None` unless the answer carries a usable remainder and reset.
    fn read(headers: &HeaderMap) -> Option<Self> {
        Some(Self {
            remaining: header_f64(headers, "x-ratelimit-remaining")?.max(0.0),
            reset: header_wait(headers, "x-ratelimit-reset")?,
            used: header_f64(headers, "x-ratelimit-used").filter(|used| *used >= 0.0),
        })
    }
}

impl Window {
    /// Counts a request in flight, or says until when to wait (`None`: until something
    /// changes, such as an answer to a request in flight).
    fn admit(&mut self, now: Instant) -> Result<(), Option<Instant>> {
        if let Some(until) = self.refused_until {
            if until > now {
                return Err(Some(until));
            }
            self.refused_until = None;
        }
        if self.resets_at.is_some_and(|at| at <= now) {
            // A new window, as big as the last one until its first answer says otherwise.
            self.remaining = self.size;
            self.used = None;
            self.resets_at = None;
        }
        let free = match self.remaining {
            None => true,
            Some(remaining) => remaining - f64::from(self.in_flight) >= 1.0,
        };
        // Nothing in flight and no reset known: no answer is coming to tell us more, so one
        // request goes out to ask.
        if free || (self.in_flight == 0 && self.resets_at.is_none()) {
            self.in_flight += 1;
            return Ok(());
        }
        Err(self.resets_at)
    }

    /// Takes in an answer to a request sent at `sent_at` and received `now`. Reddit's reset
    /// counts from a moment in between: from `now` it is the latest the window can reset (when
    /// to wait until), from `sent_at` the earliest (which window the answer is about; an answer
    /// held up on its way must not pass for one about a later window).
    fn record(&mut self, report: Report, sent_at: Instant, now: Instant) {
        let resets_at = now + report.reset;
        let earliest_reset = sent_at + report.reset;
        let size = report
            .used
            .map_or(report.remaining, |used| used + report.remaining);
        let current = self.resets_at.filter(|at| *at > now);
        match current {
            // The window we knew has been replaced: start over with this one.
            Some(at) if earliest_reset > at + SAME_WINDOW => {}
            None => {}
            // About a window already replaced: it says nothing about this one.
            Some(at) if resets_at + SAME_WINDOW < at => return,
            // The same window: only a newer answer may lower the budget, none may raise it.
            Some(_) => {
                let stale =
                    matches!((report.used, self.used), (Some(new), Some(seen)) if new < seen);
                if !stale {
                    self.remaining = Some(
                        self.remaining
                            .map_or(report.remaining, |left| left.min(report.remaining)),
                    );
                    self.used = report.used.or(self.used);
                }
                self.size = Some(self.size.map_or(size, |known| known.max(size)));
                return;
            }
        }
        self.remaining = Some(report.remaining);
        self.used = report.used;
        self.resets_at = Some(resets_at);
        self.size = Some(size);
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
}
