//! The runner over a local directory store and a topic source of the test's making.

use std::time::Instant;

use async_trait::async_trait;

use super::super::*;
use crate::jobs::callback::CallbackSender;
use crate::jobs::request::{Limit, Priority, Source};
use crate::jobs::JobStatus;
use crate::reddit::{FetchError, Subreddit, Topic};
use crate::store::local::LocalDirStore;
use crate::store::BlobStore;

/// Every subreddit has no topics, except `boom`, whose fetch panics.
struct PanicsOnBoom;

#[async_trait]
impl TopicSource for PanicsOnBoom {
    async fn hot_topics(
        &self,
        subreddit: &Subreddit,
        _: u32,
        _: &str,
    ) -> Result<Vec<Topic>, FetchError> {
        if subreddit.as_str() == "boom" {
            panic!("a bug in a topic source");
        }
        Ok(Vec::new())
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

/// One worker, so a job that runs after a panic shows the same worker lived on.
async fn one_worker(dir: &std::path::Path, topics: Arc<dyn TopicSource>) -> JobRunner {
    let store: Arc<dyn BlobStore> = Arc::new(LocalDirStore::new(dir.to_owned(), "hot-topics"));
    store.ensure_container().await.unwrap();
    JobRunner::start(
        StatusRepository::new(store),
        topics,
        RunnerOptions {
            max_concurrent_jobs: 1,
            fetch_concurrency: 4,
            stale_after: Duration::from_secs(60),
            process: crate::jobs::runner::Process::OneOffCollection,
            callbacks: CallbackSender::new(None, crate::jobs::CallbackPolicy::PublicHttps).unwrap(),
            handoff: None,
            dispatch: Arc::new(crate::jobs::runner::InlineDispatch::default()),
        },
    )
}

/// Polls the stored document until the job is terminal; panics after 60 s (a hang).
async fn terminal(runner: &JobRunner, job: JobId) -> StatusDocument {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let document = runner
            .repository()
            .load(job)
            .await
            .unwrap()
            .unwrap()
            .document;
        if document.status.is_terminal() {
            return document;
        }
        assert!(
            Instant::now() < deadline,
            "job still {} after 60 s",
            document.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_panicking_topic_source_fails_its_job_and_the_worker_runs_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let runner = one_worker(dir.path(), Arc::new(PanicsOnBoom)).await;

    let doomed = runner
        .submit(request(&["fine", "boom"]), None, None)
        .await
        .unwrap();
    let ended = terminal(&runner, doomed.job_id).await;
    assert_eq!(ended.status, JobStatus::Failed);
    assert_eq!(ended.error.as_deref(), Some(INTERNAL_ERROR));

    let next = runner.submit(request(&["fine"]), None, None).await.unwrap();
    assert_eq!(
        terminal(&runner, next.job_id).await.status,
        JobStatus::Completed
    );
    runner.shutdown().await;
}
