//! One retry policy for every call that may fail for a while: storage, Reddit, callbacks and
//! the command line's status polling.
//!
//! A [`Backoff`] says how long to wait between attempts and when to stop; [`retry`] drives an
//! operation by it. The caller decides, per error, whether another attempt may help
//! ([`Verdict`]), and may hand over a cancellation token so that a shutdown ends a wait at once.
//! This is the only place in the crate that sleeps between attempts (the Reddit rate limiter
//! paces requests; it does not retry them).
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
    fn delay(&self, attempt: u32) -> Duration {
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
            Verdict::RetryAfter(wait) => {
                let wait = (*wait).min(MAX_SERVER_WAIT);
                wait + up_to(wait / 10 + SERVER_WAIT_SPREAD)
            }
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

/// A random duration from zero to `max`, both included.
fn up_to(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    rand::thread_rng().gen_range(Duration::ZERO..=max)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// An operation that fails `failures` times with `error`, then succeeds; it records when each
    /// attempt started, relative to `start`.
    struct Flaky {
        failures: u32,
        error: Verdict,
        start: Instant,
        attempts: Mutex<Vec<(u32, Duration)>>,
    }

    impl Flaky {
        fn new(failures: u32, error: Verdict) -> Self {
            Self {
                failures,
                error,
                start: Instant::now(),
                attempts: Mutex::new(Vec::new()),
            }
        }

        async fn call(&self, attempt: u32) -> Result<u32, Verdict> {
            self.attempts
                .lock()
                .unwrap()
                .push((attempt, self.start.elapsed()));
            if attempt <= self.failures {
                Err(self.error)
            } else {
                Ok(attempt)
            }
        }

        fn started_at(&self) -> Vec<Duration> {
            self.attempts.lock().unwrap().iter().map(|a| a.1).collect()
        }

        async fn run(
            &self,
            policy: &Backoff,
            cancel: Option<&CancellationToken>,
        ) -> Result<u32, Verdict> {
            retry(
                policy,
                cancel,
                |attempt| self.call(attempt),
                |error| *error,
                |_, _| {},
            )
            .await
        }
    }

    #[test]
    fn delays_grow_by_the_factor_and_stop_at_the_cap() {
        let policy = Backoff::new(100 * MS).max_delay(1000 * MS);
        let delays: Vec<_> = (1..=6).map(|attempt| policy.delay(attempt)).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000].map(|ms| ms * MS));
        assert_eq!(policy.delay(u32::MAX), 1000 * MS, "no overflow");
        let tripling = Backoff::new(10 * MS).factor(3);
        assert_eq!(tripling.delay(3), 90 * MS);
        let huge = Backoff::new(Duration::MAX).jitter(1.0);
        assert!(huge.delay(100) <= Duration::MAX, "no overflow with jitter");
    }

    #[test]
    fn jitter_stays_within_its_share_of_the_delay() {
        let policy = Backoff::new(400 * MS).max_delay(1600 * MS).jitter(0.5);
        for attempt in 1..=5 {
            let full = Backoff::new(400 * MS).max_delay(1600 * MS).delay(attempt);
            for _ in 0..200 {
                let delay = policy.delay(attempt);
                assert!(
                    delay >= full / 2 && delay <= full,
                    "attempt {attempt}: {delay:?} outside {:?}..={full:?}",
                    full / 2
                );
            }
        }
        let wild = Backoff::new(400 * MS).jitter(7.0);
        assert!(
            (0..200).all(|_| wild.delay(1) <= 400 * MS),
            "jitter is clamped to 1"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_retried_operation_succeeds_after_the_backoff_waits() {
        let flaky = Flaky::new(2, Verdict::Retry);
        let policy = Backoff::new(100 * MS);
        assert_eq!(flaky.run(&policy, None).await, Ok(3));
        assert_eq!(flaky.started_at(), [0, 100, 300].map(|ms| ms * MS));
    }

    #[tokio::test(start_paused = true)]
    async fn a_final_error_is_returned_without_a_retry() {
        let flaky = Flaky::new(5, Verdict::Final);
        assert_eq!(
            flaky.run(&Backoff::new(MS), None).await,
            Err(Verdict::Final)
        );
        assert_eq!(flaky.started_at(), [Duration::ZERO]);
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_are_bounded() {
        let flaky = Flaky::new(10, Verdict::Retry);
        let policy = Backoff::new(100 * MS).max_attempts(3);
        assert_eq!(flaky.run(&policy, None).await, Err(Verdict::Retry));
        assert_eq!(flaky.started_at(), [0, 100, 300].map(|ms| ms * MS));
    }

    #[tokio::test(start_paused = true)]
    async fn no_retry_starts_after_the_time_budget() {
        let flaky = Flaky::new(10, Verdict::Retry);
        let policy = Backoff::new(100 * MS).max_elapsed(1000 * MS);
        assert_eq!(flaky.run(&policy, None).await, Err(Verdict::Retry));
        // The next wait (800 ms) would end at 1,500 ms.
        assert_eq!(flaky.started_at(), [0, 100, 300, 700].map(|ms| ms * MS));
        assert_eq!(
            flaky.start.elapsed(),
            700 * MS,
            "it gives up without waiting"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn time_spent_in_attempts_counts_against_the_budget() {
        let start = Instant::now();
        let slow = |_| async {
            tokio::time::sleep(400 * MS).await;
            Err::<(), _>(())
        };
        let policy = Backoff::new(100 * MS).max_elapsed(1000 * MS);
        let outcome = retry(&policy, None, slow, |_| Verdict::Retry, |_, _| {}).await;
        assert_eq!(outcome, Err(()));
        // 400 + 100 + 400 = 900; another 200 ms wait would end past 1,000 ms.
        assert_eq!(start.elapsed(), 900 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_given_wait_is_honoured_with_a_little_spread() {
        let flaky = Flaky::new(1, Verdict::RetryAfter(2000 * MS));
        let policy = Backoff::new(10 * MS).max_delay(20 * MS);
        assert_eq!(flaky.run(&policy, None).await, Ok(2));
        let second = flaky.started_at()[1];
        assert!(
            second >= 2000 * MS && second <= 2250 * MS,
            "the retry started at {second:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_given_wait_is_capped() {
        let flaky = Flaky::new(1, Verdict::RetryAfter(Duration::from_secs(86_400)));
        assert_eq!(flaky.run(&Backoff::new(MS), None).await, Ok(2));
        let second = flaky.started_at()[1];
        let most = MAX_SERVER_WAIT + MAX_SERVER_WAIT / 10 + SERVER_WAIT_SPREAD;
        assert!(
            second >= MAX_SERVER_WAIT && second <= most,
            "the retry started at {second:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_given_wait_past_the_budget_ends_the_retrying_at_once() {
        let flaky = Flaky::new(1, Verdict::RetryAfter(Duration::from_secs(120)));
        let policy = Backoff::new(MS).max_elapsed(Duration::from_secs(90));
        assert!(flaky.run(&policy, None).await.is_err());
        assert_eq!(flaky.started_at(), [Duration::ZERO]);
        assert_eq!(flaky.start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_ends_a_wait_at_once() {
        let flaky = Flaky::new(10, Verdict::Retry);
        let cancel = CancellationToken::new();
        let canceller = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(5000 * MS).await;
                cancel.cancel();
            })
        };
        let policy = Backoff::new(Duration::from_secs(3600));
        assert!(flaky.run(&policy, Some(&cancel)).await.is_err());
        assert_eq!(flaky.started_at(), [Duration::ZERO]);
        assert_eq!(flaky.start.elapsed(), 5000 * MS);
        canceller.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn no_wait_starts_once_cancelled() {
        let flaky = Flaky::new(10, Verdict::Retry);
        let cancel = CancellationToken::new();
        cancel.cancel();
        let retries = Arc::new(Mutex::new(0));
        let counted = retries.clone();
        let outcome = retry(
            &Backoff::new(Duration::from_secs(1)),
            Some(&cancel),
            |attempt| flaky.call(attempt),
            |error| *error,
            move |_, _| *counted.lock().unwrap() += 1,
        )
        .await;
        assert!(outcome.is_err());
        assert_eq!(flaky.start.elapsed(), Duration::ZERO);
        assert_eq!(*retries.lock().unwrap(), 0, "no retry was announced");
    }

    #[tokio::test(start_paused = true)]
    async fn each_wait_is_announced_with_the_failed_attempt_and_the_wait() {
        let flaky = Flaky::new(2, Verdict::Retry);
        let mut announced = Vec::new();
        let outcome = retry(
            &Backoff::new(100 * MS),
            None,
            |attempt| flaky.call(attempt),
            |error| *error,
            |_, retrying| announced.push(retrying),
        )
        .await;
        assert_eq!(outcome, Ok(3));
        assert_eq!(
            announced,
            [
                Retrying {
                    attempt: 1,
                    wait: 100 * MS
                },
                Retrying {
                    attempt: 2,
                    wait: 200 * MS
                },
            ]
        );
    }
}
