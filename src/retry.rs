//! One retry policy for every call that may fail for a while: storage, Reddit, callbacks and
//! the command line's status polling.
//!
//! A [`Backoff`] says how long to wait between attempts and when to stop; [`retry`] drives an
//! operation by it. The caller decides, per error, whether another attempt may help
//! ([`Verdict`]), and may hand over a cancellation token so that a shutdown ends a wait at once.
//! Every retry of a failed call waits here. The crate's other waits pace work, they retry
//! nothing: the Reddit rate limiter spaces requests; heartbeats and the once-a-second reads of
//! a job's status document (for a cancel, or for the end of a job a duplicate delivery waits
//! for) tick; standalone mode's queue listener waits between polls of an empty queue and
//! between renewals of the messages it holds.
//!
//! A crate such as `backon` was weighed and not taken: its jitter adds up to a whole delay on top
//! (Reddit's calls want a delay drawn from the upper half of the step), its time budget counts
//! only the sleeps (ours count the attempts too, so that no retry starts after the budget), and
//! it has no way to stop a wait on a cancellation token short of dropping the whole call.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The longest wait a server may ask for. A `Retry-After` beyond it is read as this, so a wrong
/// header cannot park a task for hours.
pub const MAX_SERVER_WAIT: Duration = Duration::from_secs(600);

/// A server-given wait is lengthened by up to a tenth of itself plus this much, so that clients
/// told the same moment do not all come back at once.
const SERVER_WAIT_SPREAD: Duration = Duration::from_millis(50);

/// How long to wait between attempts, and when to stop.
///
/// Built from [`Backoff::new`]: the wait after the first failed attempt is `first_delay`, each
/// later one `factor` times the one before, up to `max_delay`. Without
/// [`max_attempts`](Backoff::max_attempts) or [`max_elapsed`](Backoff::max_elapsed) it retries
/// until the operation succeeds, fails for good, or is cancelled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    first_delay: Duration,
    factor: u32,
    max_delay: Duration,
    /// The share of each delay that is random, from 0 (none) to 1: the delay is drawn from
    /// `[delay * (1 - jitter), delay]`. Spreads out clients that failed together.
    jitter: f64,
    /// Attempts in all, the first included.
    max_attempts: u32,
    /// No retry starts later than this after the first attempt.
    max_elapsed: Option<Duration>,
}

impl Backoff {
    /// Waits of `first_delay`, doubling, without bound, jitter or limit.
    pub const fn new(first_delay: Duration) -> Self {
        Self {
            first_delay,
            factor: 2,
            max_delay: Duration::MAX,
            jitter: 0.0,
            max_attempts: u32::MAX,
            max_elapsed: None,
        }
    }

    /// Each wait is `factor` times the one before (until `max_delay`).
    pub const fn factor(mut self, factor: u32) -> Self {
        self.factor = factor;
        self
    }

    /// No backoff wait is longer than this.
    pub const fn max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// The share of each wait that is random, from 0 to 1 (values outside are clamped).
    pub const fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Attempts in all, the first included.
    pub const fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// No retry starts later than this after the first attempt began: a wait that would end
    /// past it ends the retrying instead.
    pub const fn max_elapsed(mut self, max_elapsed: Duration) -> Self {
        self.max_elapsed = Some(max_elapsed);
        self
    }

    /// The wait after the `attempt`-th failed attempt (1-based), jitter applied.
    pub fn delay(&self, attempt: u32) -> Duration {
        let step = self.factor.max(1).saturating_pow(attempt.saturating_sub(1));
        let delay = self.first_delay.saturating_mul(step).min(self.max_delay);
        let share = self.jitter.clamp(0.0, 1.0);
        // Not `mul_f64`, which panics when rounding takes a huge delay past `Duration::MAX`.
        let random = Duration::try_from_secs_f64(delay.as_secs_f64() * share)
            .unwrap_or(delay)
            .min(delay);
        delay - up_to(random)
    }

    /// The wait before the next attempt, or `None` when the policy says to stop.
    fn next_wait(&self, attempt: u32, verdict: &Verdict, started: Instant) -> Option<Duration> {
        let wait = match verdict {
            Verdict::Final => return None,
            Verdict::Retry => self.delay(attempt),
            Verdict::RetryAfter(wait) => spread_server_wait(*wait),
        };
        let out_of_attempts = attempt >= self.max_attempts;
        let out_of_time = self
            .max_elapsed
            .is_some_and(|budget| started.elapsed().saturating_add(wait) > budget);
        (!out_of_attempts && !out_of_time).then_some(wait)
    }
}

/// What a failed attempt means for the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Another attempt may succeed, after the policy's backoff.
    Retry,
    /// Another attempt may succeed, but not before the server said (`Retry-After`).
    RetryAfter(Duration),
    /// Asking again will not help.
    Final,
}

impl Verdict {
    /// [`Verdict::Retry`] when `retryable`, else [`Verdict::Final`].
    pub fn retry_if(retryable: bool) -> Self {
        if retryable {
            Verdict::Retry
        } else {
            Verdict::Final
        }
    }
}

/// What a caller is told before each wait, for its log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retrying {
    /// The attempt that just failed, 1-based.
    pub attempt: u32,
    /// How long until the next one.
    pub wait: Duration,
}

/// Runs `operation` (given its 1-based attempt number) until it succeeds, `classify` calls an
/// error final, or `policy` says to stop; then returns the last outcome. Before each wait,
/// `on_retry` is told the error and the wait.
///
/// A cancelled `cancel` token ends a wait at once, and no wait starts once it is cancelled: the
/// last error is returned. An attempt under way is left to finish.
pub async fn retry<T, E, Op, Fut>(
    policy: &Backoff,
    cancel: Option<&CancellationToken>,
    mut operation: Op,
    mut classify: impl FnMut(&E) -> Verdict,
    mut on_retry: impl FnMut(&E, Retrying),
) -> Result<T, E>
where
    Op: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let mut attempt = 1;
    loop {
        let error = match operation(attempt).await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let Some(wait) = policy.next_wait(attempt, &classify(&error), started) else {
            return Err(error);
        };
        if cancel.is_some_and(CancellationToken::is_cancelled) {
            return Err(error);
        }
        on_retry(&error, Retrying { attempt, wait });
        match cancel {
            Some(cancel) => tokio::select! {
                _ = cancel.cancelled() => return Err(error),
                _ = tokio::time::sleep(wait) => {}
            },
            None => tokio::time::sleep(wait).await,
        }
        attempt += 1;
    }
}

/// A wait a server asked for, capped to [`MAX_SERVER_WAIT`] and lengthened by a random share
/// (up to a tenth of it plus 50 ms), so that the clients it told do not all come back at once.
pub fn spread_server_wait(wait: Duration) -> Duration {
    let wait = wait.min(MAX_SERVER_WAIT);
    wait + up_to(wait / 10 + SERVER_WAIT_SPREAD)
}

/// A random duration from zero to `max`, both included.
fn up_to(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    rand::thread_rng().gen_range(Duration::ZERO..=max)
}

#[cfg(test)]
mod tests;
