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
mod tests;
