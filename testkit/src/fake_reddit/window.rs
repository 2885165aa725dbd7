//! Reddit's rate limit as the fake enforces it: a fixed window of requests per OAuth client id,
//! and what each window saw.

use std::time::{Duration, Instant};

/// A window of `limit` listing requests per `period`, starting with the first request after the
/// last one ended, as Reddit counts them; requests beyond `limit` are answered 429.
#[derive(Debug)]
pub(super) struct FixedWindow {
    limit: usize,
    period: Duration,
    started: Option<Instant>,
    used: usize,
    /// Every window so far, the current one last.
    pub(super) history: Vec<WindowUsage>,
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
    pub(super) fn new(limit: usize, period: Duration) -> Self {
        Self {
            limit,
            period,
            started: None,
            used: 0,
            history: Vec::new(),
        }
    }

    /// Counts a request arriving now; `false` when it is over the limit.
    pub(super) fn admit(&mut self, now: Instant) -> bool {
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
    pub(super) fn report(&self, now: Instant) -> (usize, f64, f64) {
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
