//! Pacing from Reddit's rate-limit headers, under a quota shared with other processes.
//!
//! Reddit tells every client how many requests remain in the current window and when it
//! resets. That quota belongs to the OAuth client id: every instance of a scaled-out app, and
//! every job in it, spends the same one, and each answer reports what is left of it. One
//! [`RateLimiter`] is shared by every request of the process; the other processes are known
//! only through the headers.
//!
//! Rules that keep requests inside the shared quota (docs/reddit.md, "Rate limits"):
//! - **Requests in flight count** against what remains: an answer reports what Reddit had
//!   counted when it answered, not the requests still on their way.
//! - **A stale answer never raises the budget**: answers can arrive out of order, and within one
//!   window the one with the higher `X-Ratelimit-Used` (or, without it, the lower remainder) is
//!   the newer. An answer about a window that has already been replaced is ignored.
//! - **A window is probed before its budget is used**: while no answer has reported the current
//!   window (at start, and once a reset has passed) one request goes out at a time, and another
//!   only if that one has been on its way for [`PROBE_PATIENCE`] (a held or slow answer must not
//!   stall the process). Each process used to start a new window with the size of the last
//!   one, and N processes then sent N times the quota at once.
//! - **Others' share is reserved**: the headers say how much the quota fell between two answers;
//!   what this process did not send itself, others did. From that the limiter keeps the ratio
//!   of others' requests to its own in the window (carried into the next window as a first
//!   guess) and treats only `remaining / (1 + ratio)` as its own share. Its own count is stale
//!   by the others' requests sent since its last answer, which this reserve covers; without it,
//!   every process spends the last few requests it believes are left, and all but one get 429.
//! - **The share is paced across the time left** (`spacing = time to reset / share`), with a
//!   burst allowance of a quarter of the share: a plentiful window (Reddit's 1000 per 10
//!   minutes) costs a short job no waiting, while a scarce one is spread out, so that no process
//!   spends the window in a burst that the others' stale counts do not yet show.
//!
//! The price: near the end of a window the last requests of a shared quota (about one per other
//! process) may go unused, and a window's first request waits for no one but pays one round
//! trip before the rest. Weighed and not taken: a random delay before the probe (N probes are N
//! requests, well inside any window; a random start would only cost time). The limiter never
//! retries; a 429 marks the window refused for the wait the client chose
//! ([`RateLimiter::exhaust_for`]).

use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::HeaderMap;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::retry::MAX_SERVER_WAIT;

/// Two answers whose resets are this close describe the same window: Reddit reports whole
/// seconds, and answers take a while to arrive.
const SAME_WINDOW: Duration = Duration::from_secs(1);

/// How long a probe may be on its way before another request may probe in its place: longer
/// than Reddit usually takes to answer, short enough that a held or timed-out probe costs the
/// other requests of the process little.
const PROBE_PATIENCE: Duration = Duration::from_secs(1);

/// A process may run ahead of its even pace by this share of its share of the window: a
/// quarter, so that up to four processes starting a window at once stay inside it before their
/// answers tell them of each other.
const BURST_SHARE: f64 = 0.25;

#[derive(Debug, Default)]
pub struct RateLimiter {
    window: Mutex<Window>,
    /// Woken whenever more may be sent: an answer arrived or a request ended.
    changed: Notify,
}

#[derive(Debug, Default)]
struct Window {
    /// Requests left in the window as its newest answer reported, minus the requests answered
    /// since without a report. `None` until an answer reports the window.
    remaining: Option<f64>,
    /// The highest `X-Ratelimit-Used` reported in this window.
    used: Option<f64>,
    /// When the window resets; `None` for a window whose first answer has not come yet.
    resets_at: Option<Instant>,
    /// Requests sent and not yet answered.
    in_flight: u32,
    /// When the request out to learn the window was sent: the others wait for its answer, or
    /// for [`PROBE_PATIENCE`].
    probing: Option<Instant>,
    /// After a 429: nothing is sent before this, whatever other answers say.
    refused_until: Option<Instant>,
    /// The window's first report, from which others' requests are counted.
    base: Option<Base>,
    /// Requests this process has let go, ever: each request's number in that order.
    sent: u64,
    /// Others' requests per request of this process, as measured in this window (or the last).
    others_per_own: f64,
    /// When the next request is due by the even pace; `None` at a window's start.
    due: Option<Instant>,
}

/// What the window's first answer said, to measure the quota spent since.
#[derive(Debug, Clone, Copy)]
struct Base {
    /// The remainder it reported.
    remaining: f64,
    /// The number of the request it answered.
    request: u64,
}

/// Leave to send one request. Hand it the answer's headers with [`Permit::observe`]; a permit
/// dropped without an answer (the request failed or was abandoned) counts as one request spent.
#[must_use = "a permit counts a request in flight until it is observed or dropped"]
pub struct Permit<'a> {
    limiter: &'a RateLimiter,
    answered: bool,
    /// When the request was let go: Reddit answered after this.
    sent_at: Instant,
    /// The request that probes an unknown window.
    probe: bool,
    /// The request's number in the order this process let requests go.
    number: u64,
}

impl Permit<'_> {
    /// Records what the answer said about the window.
    pub fn observe(mut self, headers: &HeaderMap) {
        self.answered = true;
        self.limiter.answered(Some(headers), &self);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.limiter.answered(None, self);
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
                    Ok(probe) => {
                        window.sent += 1;
                        return Permit {
                            limiter: self,
                            answered: false,
                            sent_at: now,
                            probe,
                            number: window.sent,
                        };
                    }
                    Err(wake_at) => wake_at,
                }
            };
            match wake_at {
                Some(at) => {
                    tracing::debug!(
                        wait_ms = at.saturating_duration_since(Instant::now()).as_millis() as u64,
                        "pacing Reddit requests"
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

    /// Marks the window refused until `wait` from now (after a 429).
    pub fn exhaust_for(&self, wait: Duration) {
        let mut window = self.window.lock().expect("rate limit lock");
        let until = Instant::now() + wait;
        window.refused_until = Some(window.refused_until.map_or(until, |at| at.max(until)));
    }

    /// A request ended: with an answer's headers, or without an answer.
    fn answered(&self, headers: Option<&HeaderMap>, permit: &Permit<'_>) {
        {
            let mut window = self.window.lock().expect("rate limit lock");
            window.in_flight = window.in_flight.saturating_sub(1);
            if permit.probe {
                window.probing = None;
            }
            match headers.and_then(Report::read) {
                Some(report) => window.record(report, permit, Instant::now()),
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
    /// Counts a request in flight (`true`: it probes an unknown window), or says until when
    /// to wait (`None`: until something changes, such as an answer to a request in flight).
    fn admit(&mut self, now: Instant) -> Result<bool, Option<Instant>> {
        if let Some(until) = self.refused_until {
            if until > now {
                return Err(Some(until));
            }
            self.refused_until = None;
        }
        if self.resets_at.is_some_and(|at| at <= now) {
            // A new window: nothing is known of it until its first answer.
            self.remaining = None;
            self.used = None;
            self.resets_at = None;
            self.base = None;
            self.due = None;
        }
        let (Some(remaining), Some(resets_at)) = (self.remaining, self.resets_at) else {
            // The probe: one request at a time until an answer reports the window (a probe
            // that ends without a report, or takes too long, lets the next one ask). Requests
            // of the window before that are still on their way do not hold it up.
            if let Some(since) = self.probing {
                if now < since + PROBE_PATIENCE {
                    return Err(Some(since + PROBE_PATIENCE));
                }
            }
            self.probing = Some(now);
            self.in_flight += 1;
            return Ok(true);
        };
        let share = remaining / (1.0 + self.others_per_own) - f64::from(self.in_flight);
        if share < 1.0 {
            return Err(Some(resets_at));
        }
        // `share` requests spread evenly over the time left, up to a quarter of them early.
        // In seconds, bounded by the time left (at most MAX_SERVER_WAIT): whatever the
        // headers said, no `Duration` arithmetic can overflow.
        let left = resets_at.saturating_duration_since(now).as_secs_f64();
        let spacing = Duration::from_secs_f64(left / share);
        let ahead = Duration::from_secs_f64(left * (share * BURST_SHARE).floor() / share);
        let due = self.due.unwrap_or(now);
        if due > now + ahead {
            return Err(Some(due - ahead));
        }
        self.due = Some(due.max(now) + spacing);
        self.in_flight += 1;
        Ok(false)
    }

    /// Takes in an answer to a request sent at `sent_at` and received `now`. Reddit's reset
    /// counts from a moment in between: from `now` it is the latest the window can reset (when
    /// to wait until), from `sent_at` the earliest (which window the answer is about; an answer
    /// held up on its way must not pass for one about a later window).
    fn record(&mut self, report: Report, permit: &Permit<'_>, now: Instant) {
        let resets_at = now + report.reset;
        let earliest_reset = permit.sent_at + report.reset;
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
                    self.measure_others(report.remaining, permit.number);
                }
                return;
            }
        }
        self.remaining = Some(report.remaining);
        self.used = report.used;
        self.resets_at = Some(resets_at);
        self.base = Some(Base {
            remaining: report.remaining,
            request: permit.number,
        });
        self.due = None;
    }

    /// Counts the requests others sent in this window, from the remainder reported to request
    /// number `request`: the quota spent since the window's first answer, less this process's
    /// requests let go between the two (Reddit counts requests in about the order they are
    /// sent, so those are the ones it had counted).
    fn measure_others(&mut self, remaining: f64, request: u64) {
        let Some(base) = self.base else { return };
        let own = request.saturating_sub(base.request);
        if own == 0 {
            return;
        }
        let others = (base.remaining - remaining - own as f64).max(0.0);
        self.others_per_own = others / own as f64;
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
