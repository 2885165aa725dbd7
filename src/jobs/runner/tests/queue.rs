//! Queue dispatch over an in-memory queue: what a submit sends, what a delivery does, the
//! standalone listener, and the scan that sends a stranded job's message again and ends a job
//! whose copy was spent too.

use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::super::*;
use crate::jobs::callback::CallbackSender;
use crate::jobs::request::{Limit, Priority, Source};
use crate::jobs::JobStatus;
use crate::reddit::{NoTopics, Subreddit};
use crate::store::local::LocalDirStore;
use crate::store::queue::memory::MemoryQueue;
use crate::store::queue::{MessageQueue, QueueMessage, Renewal};
use crate::store::BlobStore;

fn request() -> JobRequest {
    JobRequest {
        source: Source::Reddit,
        topics: vec![Subreddit::parse("rust").unwrap()],
        limit: Limit::DEFAULT,
        priority: Priority::Normal,
        callback_url: None,
    }
}

struct Setup {
    runner: JobRunner,
    queue: Arc<MemoryQueue>,
    poison: Arc<MemoryQueue>,
}

/// Under the host (`HostedServer`) nothing in the process takes messages: the test delivers
/// them. A `StandaloneServer` takes them itself. Both scan for stale jobs.
async fn setup(
    dir: &std::path::Path,
    queue: Arc<dyn MessageQueue>,
    process: Process,
    stale_after: Duration,
) -> (JobRunner, Arc<dyn BlobStore>, Arc<MemoryQueue>) {
    setup_with(dir, queue, process, stale_after, Arc::new(NoTopics)).await
}

/// The listener settings of these tests: three deliveries, a failed one back at once.
fn listener() -> ListenerSettings {
    ListenerSettings {
        max_dequeue_count: 3,
        visibility_timeout: Duration::ZERO,
        batch_size: 4,
        max_polling_interval: Duration::from_millis(200),
    }
}

/// A job stored `queued` five minutes ago by a process that died before it sent its message
/// (or whose message was lost): quiet, with no message. Its blob is written now.
async fn stranded(store: Arc<dyn BlobStore>) -> StatusDocument {
    let long_ago: DateTime<Utc> = Utc::now() - chrono::TimeDelta::minutes(5);
    let job = StatusDocument::queued(JobId::new(), request(), None, long_ago);
    StatusRepository::new(store).create(&job).await.unwrap();
    job
}

async fn setup_with(
    dir: &std::path::Path,
    queue: Arc<dyn MessageQueue>,
    process: Process,
    stale_after: Duration,
    topics: Arc<dyn TopicSource>,
) -> (JobRunner, Arc<dyn BlobStore>, Arc<MemoryQueue>) {
    let store: Arc<dyn BlobStore> = Arc::new(LocalDirStore::new(dir.to_owned(), "hot-topics"));
    store.ensure_container().await.unwrap();
    let poison = Arc::new(MemoryQueue::new("jobs-poison"));
    let runner = JobRunner::start(
        StatusRepository::new(store.clone()),
        topics,
        RunnerOptions {
            max_concurrent_jobs: 2,
            fetch_concurrency: 4,
            stale_after,
            process,
            callbacks: CallbackSender::new(None, crate::jobs::CallbackPolicy::PublicHttps).unwrap(),
            handoff: None,
            dispatch: Arc::new(QueueDispatch::new(queue, poison.clone(), listener())),
        },
    );
    (runner, store, poison)
}

async fn queued_setup(dir: &std::path::Path, process: Process) -> Setup {
    let queue = Arc::new(MemoryQueue::new("jobs"));
    let (runner, _, poison) = setup(dir, queue.clone(), process, Duration::from_secs(60)).await;
    Setup {
        runner,
        queue,
        poison,
    }
}

async fn status(runner: &JobRunner, job: JobId) -> StatusDocument {
    runner
        .repository()
        .load(job)
        .await
        .unwrap()
        .unwrap()
        .document
}

#[tokio::test]
async fn a_submit_sends_one_message_naming_the_job_and_runs_nothing_itself() {
    let dir = tempfile::tempdir().unwrap();
    let setup = queued_setup(dir.path(), Process::HostedServer).await;
    let job = setup.runner.submit(request(), None, None).await.unwrap();
    assert_eq!(setup.queue.texts(), vec![JobMessage::text(job.job_id)]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stored = status(&setup.runner, job.job_id).await;
    assert_eq!(
        stored.status,
        JobStatus::Queued,
        "no worker of this process may run it"
    );
    assert_eq!(stored.attempts, 0);
}

#[tokio::test]
async fn a_delivery_runs_the_job_to_its_end_and_a_repeat_finds_it_over() {
    let dir = tempfile::tempdir().unwrap();
    let setup = queued_setup(dir.path(), Process::HostedServer).await;
    let job = setup
        .runner
        .submit(request(), None, None)
        .await
        .unwrap()
        .job_id;
    let first = setup.runner.run_delivered(job, 1).await.unwrap();
    assert_eq!(first, Delivered::Ran(JobStatus::Completed));
    let again = setup.runner.run_delivered(job, 2).await.unwrap();
    assert_eq!(again, Delivered::AlreadyOver(JobStatus::Completed));
    assert_eq!(status(&setup.runner, job).await.attempts, 1, "ran once");
    let unknown = setup.runner.run_delivered(JobId::new(), 1).await.unwrap();
    assert_eq!(unknown, Delivered::UnknownJob);
}

/// A queue whose sends fail as a queue service that is down does.
struct Unreachable;

#[async_trait]
impl MessageQueue for Unreachable {
    fn name(&self) -> &str {
        "unreachable"
    }
    async fn ensure_queue(&self) -> Result<(), StoreError> {
        Err(down())
    }
    async fn send(&self, _: &str) -> Result<(), StoreError> {
        Err(down())
    }
    async fn receive(&self, _: u8, _: Duration) -> Result<Vec<QueueMessage>, StoreError> {
        Err(down())
    }
    async fn renew(&self, _: &QueueMessage, _: Duration) -> Result<Renewal, StoreError> {
        Err(down())
    }
    async fn delete(&self, _: &QueueMessage) -> Result<(), StoreError> {
        Err(down())
    }
    async fn approximate_message_count(&self) -> Result<u64, StoreError> {
        Err(down())
    }
    fn describe(&self) -> String {
        "a queue that cannot be reached".into()
    }
}

fn down() -> StoreError {
    StoreError::Unavailable("connection refused".into())
}

#[tokio::test]
async fn a_job_whose_message_cannot_be_sent_is_refused_and_does_not_stay_queued() {
    let dir = tempfile::tempdir().unwrap();
    let (runner, _, _) = setup(
        dir.path(),
        Arc::new(Unreachable),
        Process::HostedServer,
        Duration::from_secs(60),
    )
    .await;
    let key = IdempotencyKey::parse(b"once").unwrap();
    let with_callback = JobRequest {
        callback_url: Some(
            crate::jobs::CallbackUrl::parse(
                "https://example.com/hook",
                crate::jobs::CallbackPolicy::PublicHttps,
            )
            .unwrap(),
        ),
        ..request()
    };
    let refused = runner.submit(with_callback, None, Some(&key)).await;
    assert!(
        matches!(refused, Err(SubmitError::StorageUnavailable(_))),
        "{refused:?}"
    );
    let jobs = runner.repository().quiet_since(Utc::now()).await.unwrap();
    assert_eq!(jobs.len(), 1);
    let stored = status(&runner, jobs[0]).await;
    assert_eq!(stored.status, JobStatus::Failed);
    assert!(stored.error.unwrap().contains("could not be queued"));
    assert!(
        stored.callback.is_none(),
        "a caller refused with 503 gets no callback"
    );
    // The key was freed: a repeat makes a new job rather than answering the failed one.
    let again = runner.submit(request(), None, Some(&key)).await;
    assert!(again.is_err());
    assert_eq!(
        runner
            .repository()
            .quiet_since(Utc::now())
            .await
            .unwrap()
            .len(),
        2
    );
}

/// Waits for `done`; the deadline only stops a hang, so it is far beyond what any wait here
/// takes on a loaded machine.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    const LIMIT: Duration = Duration::from_secs(60);
    let deadline = Instant::now() + LIMIT;
    while !done().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_standalone_listener_runs_queued_jobs_and_deletes_their_messages() {
    let dir = tempfile::tempdir().unwrap();
    let setup = queued_setup(dir.path(), Process::StandaloneServer).await;
    let mut jobs = Vec::new();
    for _ in 0..5 {
        jobs.push(
            setup
                .runner
                .submit(request(), None, None)
                .await
                .unwrap()
                .job_id,
        );
    }
    // A message no delivery could ever run is dropped, not retried.
    setup
        .queue
        .send("{\"job_id\": \"nonsense\"}")
        .await
        .unwrap();
    let runner = setup.runner.clone();
    eventually("every job completed", async || {
        let mut all = true;
        for job in &jobs {
            all &= status(&runner, *job).await.status == JobStatus::Completed;
        }
        all
    })
    .await;
    let queue = setup.queue.clone();
    eventually("every message deleted", async || queue.texts().is_empty()).await;
    assert!(setup.poison.texts().is_empty());
    for job in jobs {
        assert_eq!(status(&setup.runner, job).await.attempts, 1);
    }
}

#[tokio::test]
async fn a_job_left_queued_with_no_message_is_sent_again_once() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Arc::new(MemoryQueue::new("jobs"));
    // The server scans every half of this. The stranded job is found once its blob has been
    // quiet this long; a job with a message is sent again only after twice this of quiet, a
    // margin of at least 4 s that a loaded machine does not eat up.
    let stale_after = Duration::from_secs(8);
    let (runner, store, _) = setup(
        dir.path(),
        queue.clone(),
        Process::HostedServer,
        stale_after,
    )
    .await;
    // The scan goes by the blob's last write: the stranded job is found once its blob has been
    // quiet for `stale_after`.
    let stranded = stranded(store).await;
    // Fresh: its message is on its way.
    let fresh = runner.submit(request(), None, None).await.unwrap();
    assert_eq!(queue.texts(), vec![JobMessage::text(fresh.job_id)]);

    // The scan sends the message, then records `requeued_at`: wait for both.
    let sent = queue.clone();
    let recorded = runner.clone();
    eventually(
        "the stranded job's message sent again and recorded",
        async || {
            sent.texts().len() > 1
                && status(&recorded, stranded.job_id)
                    .await
                    .internals
                    .requeued_at
                    .is_some()
        },
    )
    .await;
    assert_eq!(
        queue.texts(),
        vec![
            JobMessage::text(fresh.job_id),
            JobMessage::text(stranded.job_id)
        ],
        "only the stranded job is sent again"
    );
    assert!(status(&runner, stranded.job_id)
        .await
        .internals
        .requeued_at
        .is_some());
    assert_eq!(
        runner.adopt_stale_jobs().await.unwrap(),
        0,
        "sent once, not at every scan"
    );
    assert_eq!(queue.texts().len(), 2);
}

/// Every delivery of a job's message failed (storage was down) and the message was parked in
/// the poison queue; the scan sent it again, once, and every delivery of that copy failed too.
/// Once the copy's deliveries are spent and the job is still quiet, the scan ends it `failed`,
/// naming the cause: it does not stay `queued` forever.
#[tokio::test]
async fn a_job_whose_message_sent_again_is_poisoned_too_is_ended_failed_naming_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Arc::new(MemoryQueue::new("jobs"));
    let stale_after = Duration::from_millis(500);
    let (runner, store, poison) = setup(
        dir.path(),
        queue.clone(),
        Process::HostedServer,
        stale_after,
    )
    .await;
    // Its first message is in the poison queue: the job is `queued`, quiet, with no message.
    let id = stranded(store).await.job_id;

    // The scan sends the copy, then records `requeued_at`: wait for both.
    let sent = queue.clone();
    let recorded = runner.clone();
    eventually("the job's message sent again and recorded", async || {
        !sent.texts().is_empty() && status(&recorded, id).await.internals.requeued_at.is_some()
    })
    .await;
    let requeued_at = status(&runner, id)
        .await
        .internals
        .requeued_at
        .expect("the copy is recorded");
    // Every delivery of the copy fails too, and the listener parks it.
    let copy = queue
        .receive(1, Duration::from_secs(60))
        .await
        .unwrap()
        .remove(0);
    poison.send(&copy.text).await.unwrap();
    queue.delete(&copy).await.unwrap();

    let watched = runner.clone();
    eventually("the job to end", async || {
        status(&watched, id).await.status.is_terminal()
    })
    .await;
    let ended = status(&runner, id).await;
    assert_eq!(ended.status, JobStatus::Failed);
    let error = ended.error.unwrap();
    assert!(error.contains("sent again"), "{error}");
    assert!(error.contains("jobs-poison"), "{error}");
    // Not before each of the copy's three deliveries could have tried storage for
    // `stale_after` (both times are this process's).
    assert!(
        ended.finished_at.unwrap() >= requeued_at + stale_after * 3,
        "ended at {:?}, the copy sent at {requeued_at}",
        ended.finished_at
    );
    assert_eq!(poison.texts(), vec![JobMessage::text(id)], "one copy only");
    assert!(queue.texts().is_empty());
}

#[tokio::test]
async fn a_repeated_idempotency_key_sends_no_second_message() {
    let dir = tempfile::tempdir().unwrap();
    let setup = queued_setup(dir.path(), Process::HostedServer).await;
    let key = IdempotencyKey::parse(b"twice").unwrap();
    let first = setup
        .runner
        .submit(request(), None, Some(&key))
        .await
        .unwrap();
    let again = setup
        .runner
        .submit(request(), None, Some(&key))
        .await
        .unwrap();
    assert_eq!(again.job_id, first.job_id);
    assert_eq!(setup.queue.texts(), vec![JobMessage::text(first.job_id)]);
}

/// Every listing waits until the test lets it through.
struct Held(Arc<tokio::sync::Semaphore>);

#[async_trait]
impl TopicSource for Held {
    async fn hot_topics(
        &self,
        _: &Subreddit,
        _: u32,
        _: &str,
    ) -> Result<Vec<crate::reddit::Topic>, crate::reddit::FetchError> {
        self.0.acquire().await.expect("never closed").forget();
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn the_standalone_listener_keeps_a_running_jobs_message_hidden_past_its_first_hold() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Arc::new(MemoryQueue::new("jobs"));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    // Messages are held for `stale_after` (1 s) and renewed every third of it.
    let (runner, _, _) = setup_with(
        dir.path(),
        queue.clone(),
        Process::StandaloneServer,
        Duration::from_secs(1),
        Arc::new(Held(gate.clone())),
    )
    .await;
    let job = runner.submit(request(), None, None).await.unwrap().job_id;
    let running = runner.clone();
    eventually("the job to run", async || {
        status(&running, job).await.status == JobStatus::Running
    })
    .await;
    // Three holds' worth: without renewals the message would have come back and been taken
    // again (a second delivery).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        queue.dequeue_counts(),
        vec![1],
        "delivered again while it ran"
    );

    gate.add_permits(1);
    let done = runner.clone();
    eventually("the job to complete", async || {
        status(&done, job).await.status == JobStatus::Completed
    })
    .await;
    let emptied = queue.clone();
    eventually("the message deleted", async || emptied.texts().is_empty()).await;
}
