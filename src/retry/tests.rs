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
