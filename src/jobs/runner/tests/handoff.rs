//! The hand-off to the next stage, with an in-memory completion queue: one message per job
//! that ends, whichever way it ends and whoever ends it; sent by another instance when the one
//! that owed it is gone; none for a job whose ticket was refused, or without a completion
//! queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use chrono::Utc;

use super::super::*;
use crate::jobs::callback::CallbackSender;
use crate::jobs::handoff::{HandoffMessage, HandoffQueue, HandoffState};
use crate::jobs::request::{Limit, Priority, Source};
use crate::reddit::{FetchError, Subreddit, Topic};
use crate::store::local::LocalDirStore;
use crate::store::queue::memory::MemoryQueue;
use crate::store::queue::{MessageQueue, QueueMessage, Renewal};
use crate::store::BlobStore;

const CONTAINER: &str = "hot-topics";

/// Every subreddit has no posts, except those whose name starts with `private`: Reddit refuses
/// them, so a job of those alone fails.
struct PrivateOnes;

#[async_trait]
impl TopicSource for PrivateOnes {
    async fn hot_topics(
        &self,
        subreddit: &Subreddit,
        _: u32,
        _: &str,
    ) -> Result<Vec<Topic>, FetchError> {
        if subreddit.as_str().starts_with("private") {
            Err(FetchError::Private(subreddit.as_str().to_owned()))
        } else {
            Ok(Vec::new())
        }
    }
}

fn request(names: &[&str]) -> JobRequest {
    JobRequest {
        source: Source::Reddit,
        topics: names.iter().map(|n| Subreddit::parse(n).unwrap()).collect(),
        limit: Limit::DEFAULT,
        priority: Priority::Normal,
        callback_url: None,
    }
}

/// How jobs reach a worker in a test: this process's workers, or a job queue nobody in this
/// process listens to (the test delivers its messages).
enum Dispatching {
    Inline,
    Queue(Arc<dyn MessageQueue>),
}

fn store(dir: &std::path::Path) -> Arc<dyn BlobStore> {
    Arc::new(LocalDirStore::new(dir.to_owned(), CONTAINER))
}

/// A runner on the store in `dir`, handing off to `completion` when given.
async fn runner(
    dir: &std::path::Path,
    dispatching: Dispatching,
    process: Process,
    stale_after: Duration,
    completion: Option<Arc<dyn MessageQueue>>,
) -> JobRunner {
    let store = store(dir);
    store.ensure_container().await.unwrap();
    let dispatch: Arc<dyn Dispatch> = match dispatching {
        Dispatching::Inline => Arc::new(InlineDispatch::default()),
        Dispatching::Queue(queue) => Arc::new(QueueDispatch::new(
            queue,
            Arc::new(MemoryQueue::new("jobs-poison")),
            ListenerSettings {
                max_dequeue_count: 3,
                visibility_timeout: Duration::ZERO,
                batch_size: 4,
                max_polling_interval: Duration::from_millis(200),
            },
        )),
    };
    JobRunner::start(
        StatusRepository::new(store),
        Arc::new(PrivateOnes),
        RunnerOptions {
            max_concurrent_jobs: 2,
            fetch_concurrency: 4,
            stale_after,
            process,
            callbacks: CallbackSender::new(None, crate::jobs::CallbackPolicy::PublicHttps).unwrap(),
            handoff: completion.map(|queue| HandoffQueue {
                queue,
                container: CONTAINER.into(),
            }),
            dispatch,
        },
    )
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

fn handoff_state(document: &StatusDocument) -> Option<HandoffState> {
    document
        .internals
        .handoff
        .as_ref()
        .map(|record| record.state)
}

/// Waits for `done`; the deadline only stops a hang.
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

/// Waits until `job` has ended and its hand-off is recorded sent; returns its final document.
async fn sent(runner: &JobRunner, job: JobId) -> StatusDocument {
    eventually("the hand-off recorded sent", async || {
        handoff_state(&status(runner, job).await) == Some(HandoffState::Sent)
    })
    .await;
    status(runner, job).await
}

/// The messages on `queue`, parsed, in the order sent.
fn messages(queue: &MemoryQueue) -> Vec<HandoffMessage> {
    queue
        .texts()
        .iter()
        .map(|text| serde_json::from_str(text).expect("a hand-off message"))
        .collect()
}

#[tokio::test]
async fn a_completed_and_a_failed_job_each_put_one_message_naming_their_end_and_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let completion = Arc::new(MemoryQueue::new("done"));
    let runner = runner(
        dir.path(),
        Dispatching::Inline,
        Process::HostedServer,
        Duration::from_secs(60),
        Some(completion.clone()),
    )
    .await;
    let completed = runner
        .submit(request(&["rust", "privateone", "golang"]), None, None)
        .await
        .unwrap();
    assert_eq!(handoff_state(&completed), Some(HandoffState::Wanted));
    let failed = runner
        .submit(request(&["privatetwo"]), None, None)
        .await
        .unwrap();

    let completed = sent(&runner, completed.job_id).await;
    let failed = sent(&runner, failed.job_id).await;
    assert_eq!(completed.status, JobStatus::Completed);
    assert_eq!(failed.status, JobStatus::Failed);
    let mut got = messages(&completion);
    got.sort_by_key(|message| message.status.as_str());
    assert_eq!(
        got,
        vec![
            HandoffMessage::of(&completed, CONTAINER).unwrap(),
            HandoffMessage::of(&failed, CONTAINER).unwrap(),
        ],
        "one message per job"
    );
    assert_eq!(got[0].blob_names.len(), 2, "{:?}", got[0]);
    assert!(got[0].blob_names[0].ends_with("_reddit_rust.json"));
    assert!(got[0].blob_names[1].ends_with("_reddit_golang.json"));
    assert_eq!(got[1].blob_names, Vec::<String>::new());
    runner.shutdown().await;
}

#[tokio::test]
async fn a_queued_job_cancelled_through_the_api_hands_off_at_once_and_its_message_delivered_later_sends_none(
) {
    let dir = tempfile::tempdir().unwrap();
    let jobs = Arc::new(MemoryQueue::new("jobs"));
    let completion = Arc::new(MemoryQueue::new("done"));
    // Under the host nothing in this process takes job messages: the job stays queued.
    let runner = runner(
        dir.path(),
        Dispatching::Queue(jobs.clone()),
        Process::HostedServer,
        Duration::from_secs(60),
        Some(completion.clone()),
    )
    .await;
    let job = runner
        .submit(request(&["rust"]), None, None)
        .await
        .unwrap()
        .job_id;
    let answered = runner.cancel(job).await.unwrap();
    assert_eq!(answered.status, JobStatus::Cancelled);
    // The job sat still for no time at all: only the instance that ended it sends this soon.
    let ended = sent(&runner, job).await;
    assert_eq!(
        messages(&completion),
        vec![HandoffMessage::of(&ended, CONTAINER).unwrap()]
    );
    assert_eq!(messages(&completion)[0].blob_names, Vec::<String>::new());

    // Its job message is still delivered: the delivery finds it over, and sends nothing.
    let delivered = runner.run_delivered(job, 1).await.unwrap();
    assert_eq!(delivered, Delivered::AlreadyOver(JobStatus::Cancelled));
    runner.shutdown().await;
    assert_eq!(completion.texts().len(), 1, "{:?}", completion.texts());
}

#[tokio::test]
async fn a_job_the_queue_machinery_ends_failed_hands_off_too() {
    let dir = tempfile::tempdir().unwrap();
    let completion = Arc::new(MemoryQueue::new("done"));
    let stale_after = Duration::from_millis(500);
    let runner = runner(
        dir.path(),
        Dispatching::Queue(Arc::new(MemoryQueue::new("jobs"))),
        Process::HostedServer,
        stale_after,
        Some(completion.clone()),
    )
    .await;
    // A job whose message was lost and whose copy was spent long ago, created while
    // `COMPLETION_QUEUE` was set: the scan ends it failed.
    let long_ago = Utc::now() - chrono::TimeDelta::minutes(5);
    let mut stranded = StatusDocument::queued(JobId::new(), request(&["rust"]), None, long_ago);
    stranded.want_handoff().unwrap();
    stranded.internals.requeued_at = Some(long_ago);
    runner.repository().create(&stranded).await.unwrap();

    let ended = sent(&runner, stranded.job_id).await;
    assert_eq!(ended.status, JobStatus::Failed);
    assert_eq!(
        messages(&completion),
        vec![HandoffMessage::of(&ended, CONTAINER).unwrap()]
    );
    runner.shutdown().await;
}

#[tokio::test]
async fn a_hand_off_owed_by_an_instance_that_died_is_sent_by_another_instances_scan_once() {
    let dir = tempfile::tempdir().unwrap();
    // What a killed instance left: the job ended long ago, its hand-off owed, and claimed by
    // that instance, whose claim lapsed with it.
    let long_ago = Utc::now() - chrono::TimeDelta::minutes(5);
    let mut left = StatusDocument::queued(JobId::new(), request(&["rust"]), None, long_ago);
    left.want_handoff().unwrap();
    left.request_cancel(long_ago).unwrap();
    left.claim_handoff(long_ago, chrono::TimeDelta::seconds(2), None)
        .unwrap();
    let store = store(dir.path());
    store.ensure_container().await.unwrap();
    StatusRepository::new(store).create(&left).await.unwrap();

    let completion = Arc::new(MemoryQueue::new("done"));
    // The scan looks every half of this, at jobs quiet for this long.
    let runner = runner(
        dir.path(),
        Dispatching::Inline,
        Process::HostedServer,
        Duration::from_secs(1),
        Some(completion.clone()),
    )
    .await;
    let ended = sent(&runner, left.job_id).await;
    assert_eq!(
        messages(&completion),
        vec![HandoffMessage::of(&ended, CONTAINER).unwrap()]
    );
    let record = ended.internals.handoff.unwrap();
    assert_eq!(record.lease.claims, 2, "taken over with the next claim");
    // A later scan finds it sent, and sends nothing more.
    runner.adopt_stale_jobs().await.unwrap();
    runner.shutdown().await;
    assert_eq!(completion.texts().len(), 1);
}

/// A completion queue whose first `failures` sends fail as a queue service in trouble does.
struct Flaky {
    queue: MemoryQueue,
    failures: usize,
    tried: AtomicUsize,
}

#[async_trait]
impl MessageQueue for Flaky {
    fn name(&self) -> &str {
        self.queue.name()
    }
    async fn ensure_queue(&self) -> Result<(), StoreError> {
        self.queue.ensure_queue().await
    }
    async fn send(&self, text: &str) -> Result<(), StoreError> {
        if self.tried.fetch_add(1, Ordering::SeqCst) < self.failures {
            return Err(StoreError::Unavailable("503 Server Busy".into()));
        }
        self.queue.send(text).await
    }
    async fn receive(&self, most: u8, hidden: Duration) -> Result<Vec<QueueMessage>, StoreError> {
        self.queue.receive(most, hidden).await
    }
    async fn renew(&self, message: &QueueMessage, hidden: Duration) -> Result<Renewal, StoreError> {
        self.queue.renew(message, hidden).await
    }
    async fn delete(&self, message: &QueueMessage) -> Result<(), StoreError> {
        self.queue.delete(message).await
    }
    async fn approximate_message_count(&self) -> Result<u64, StoreError> {
        self.queue.approximate_message_count().await
    }
    fn describe(&self) -> String {
        "a completion queue that fails at first".into()
    }
}

#[tokio::test]
async fn a_send_that_fails_for_a_while_is_tried_again_and_lands_once() {
    let dir = tempfile::tempdir().unwrap();
    let completion = Arc::new(Flaky {
        queue: MemoryQueue::new("done"),
        failures: 3,
        tried: AtomicUsize::new(0),
    });
    let runner = runner(
        dir.path(),
        Dispatching::Inline,
        Process::HostedServer,
        Duration::from_secs(60),
        Some(completion.clone()),
    )
    .await;
    let job = runner
        .submit(request(&["rust"]), None, None)
        .await
        .unwrap()
        .job_id;
    let ended = sent(&runner, job).await;
    assert_eq!(completion.tried.load(Ordering::SeqCst), 4);
    assert_eq!(
        messages(&completion.queue),
        vec![HandoffMessage::of(&ended, CONTAINER).unwrap()]
    );
    runner.shutdown().await;
}

#[tokio::test]
async fn a_job_whose_ticket_was_refused_owes_no_hand_off() {
    let dir = tempfile::tempdir().unwrap();
    let completion = Arc::new(MemoryQueue::new("done"));
    // Its job message cannot be sent: the caller gets a 503 and the job is withdrawn.
    let runner = runner(
        dir.path(),
        Dispatching::Queue(Arc::new(Flaky {
            queue: MemoryQueue::new("jobs"),
            failures: usize::MAX,
            tried: AtomicUsize::new(0),
        })),
        Process::HostedServer,
        Duration::from_secs(60),
        Some(completion.clone()),
    )
    .await;
    let refused = runner.submit(request(&["rust"]), None, None).await;
    assert!(
        matches!(refused, Err(SubmitError::StorageUnavailable(_))),
        "{refused:?}"
    );
    let jobs = runner.repository().quiet_since(Utc::now()).await.unwrap();
    let withdrawn = status(&runner, jobs[0]).await;
    assert_eq!(withdrawn.status, JobStatus::Failed);
    assert_eq!(handoff_state(&withdrawn), None);
    runner.shutdown().await;
    assert!(completion.texts().is_empty(), "{:?}", completion.texts());
}

#[tokio::test]
async fn without_a_completion_queue_a_job_wants_no_hand_off() {
    let dir = tempfile::tempdir().unwrap();
    let runner = runner(
        dir.path(),
        Dispatching::Inline,
        Process::HostedServer,
        Duration::from_secs(60),
        None,
    )
    .await;
    let job = runner.submit(request(&["rust"]), None, None).await.unwrap();
    assert_eq!(handoff_state(&job), None);
    eventually("the job to end", async || {
        status(&runner, job.job_id).await.status.is_terminal()
    })
    .await;
    assert_eq!(handoff_state(&status(&runner, job.job_id).await), None);
    runner.shutdown().await;
}

#[tokio::test]
async fn a_one_off_collection_sends_its_jobs_hand_off_before_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let completion = Arc::new(MemoryQueue::new("done"));
    let runner = runner(
        dir.path(),
        Dispatching::Inline,
        Process::OneOffCollection,
        Duration::from_secs(60),
        Some(completion.clone()),
    )
    .await;
    let job = runner
        .submit(request(&["rust"]), None, None)
        .await
        .unwrap()
        .job_id;
    eventually("the job to end", async || {
        status(&runner, job).await.status.is_terminal()
    })
    .await;
    runner.finish_owed(job, Duration::from_secs(60)).await;
    let ended = status(&runner, job).await;
    assert_eq!(handoff_state(&ended), Some(HandoffState::Sent));
    assert_eq!(
        messages(&completion),
        vec![HandoffMessage::of(&ended, CONTAINER).unwrap()]
    );
    runner.shutdown().await;
}
