//! A cancel recorded by the process that runs the job reaches the job's token before it is
//! answered.

use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::Semaphore;

use super::super::*;
use crate::jobs::callback::CallbackSender;
use crate::jobs::request::{Limit, Priority, Source};
use crate::reddit::{FetchError, Subreddit, Topic};
use crate::store::local::LocalDirStore;
use crate::store::BlobStore;

/// Every fetch waits until its job is cancelled, keeping the token it was given.
struct UntilCancelled {
    tokens: Mutex<Vec<CancellationToken>>,
    started: Semaphore,
}

#[async_trait]
impl TopicSource for UntilCancelled {
    async fn hot_topics(&self, _: &Subreddit, _: u32, _: &str) -> Result<Vec<Topic>, FetchError> {
        unreachable!("the runner fetches with its cancel token")
    }

    async fn hot_topics_unless_cancelled(
        &self,
        _: &Subreddit,
        _: u32,
        _: &str,
        cancel: &CancellationToken,
    ) -> Result<Vec<Topic>, FetchError> {
        self.tokens.lock().unwrap().push(cancel.clone());
        self.started.add_permits(1);
        cancel.cancelled().await;
        Err(FetchError::Cancelled)
    }
}

#[tokio::test]
async fn a_cancel_recorded_by_the_process_running_the_job_cancels_its_token_before_returning() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn BlobStore> =
        Arc::new(LocalDirStore::new(dir.path().to_owned(), "hot-topics"));
    store.ensure_container().await.unwrap();
    let topics = Arc::new(UntilCancelled {
        tokens: Mutex::default(),
        started: Semaphore::new(0),
    });
    let runner = JobRunner::start(
        StatusRepository::new(store),
        topics.clone(),
        RunnerOptions {
            max_concurrent_jobs: 1,
            fetch_concurrency: 4,
            stale_after: Duration::from_secs(60),
            process: Process::OneOffCollection,
            callbacks: CallbackSender::new(None, crate::jobs::CallbackPolicy::PublicHttps).unwrap(),
            handoff: None,
            dispatch: Arc::new(InlineDispatch::default()),
        },
    );
    let request = JobRequest {
        source: Source::Reddit,
        topics: vec![Subreddit::parse("rust").unwrap()],
        limit: Limit::DEFAULT,
        priority: Priority::Normal,
        callback_url: None,
    };
    let job = runner.submit(request, None, None).await.unwrap().job_id;
    tokio::time::timeout(Duration::from_secs(60), topics.started.acquire())
        .await
        .expect("the job's fetch started")
        .unwrap()
        .forget();

    let answered = runner.cancel(job).await.unwrap();
    assert_eq!(answered.status, JobStatus::Running);
    let tokens = topics.tokens.lock().unwrap().clone();
    assert!(
        tokens.iter().all(CancellationToken::is_cancelled),
        "the job's token was not cancelled when the cancel returned"
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let stored = runner.repository().load(job).await.unwrap().unwrap();
        if stored.document.status.is_terminal() {
            assert_eq!(stored.document.status, JobStatus::Cancelled);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the job never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    runner.shutdown().await;
}
