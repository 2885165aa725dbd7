//! The runner against a local store that can be made to misbehave.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::jobs::callback::CallbackSender;
use crate::jobs::repository::StatusRepository;
use crate::jobs::request::{IdempotencyKey, JobRequest, Limit, Priority, Source};
use crate::jobs::runner::{JobRunner, RunnerOptions, SubmitError};
use crate::reddit::{NoTopics, Subreddit};
use crate::store::steered::{Steer, Steered};
use crate::store::{BlobName, BlobStore, StoreError, WriteCondition};

/// The next `creations` creates of a status document land, but their answer is lost: the
/// caller sees a timeout.
struct LoseCreateAnswers {
    creations: AtomicUsize,
}

impl Steer for LoseCreateAnswers {
    fn after_put(&self, name: &BlobName, condition: &WriteCondition) -> Option<StoreError> {
        let creates_a_job =
            name.as_str().ends_with("/status.json") && *condition == WriteCondition::IfNotExists;
        let lose = creates_a_job
            && self
                .creations
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        lose.then(|| StoreError::Unavailable("operation timed out".into()))
    }
}

/// A runner with no workers: these tests are about what a submit stores.
fn runner(store: Arc<dyn BlobStore>) -> JobRunner {
    JobRunner::start(
        StatusRepository::new(store),
        Arc::new(NoTopics),
        RunnerOptions {
            max_concurrent_jobs: 0,
            fetch_concurrency: 1,
            stale_after: Duration::from_secs(60),
            process: crate::jobs::runner::Process::OneOffCollection,
            callbacks: CallbackSender::new(None, crate::jobs::CallbackPolicy::PublicHttps).unwrap(),
            handoff: None,
            dispatch: Arc::new(crate::jobs::runner::InlineDispatch::default()),
        },
    )
}

fn request() -> JobRequest {
    JobRequest {
        source: Source::Reddit,
        topics: vec![Subreddit::parse("technology").unwrap()],
        limit: Limit::DEFAULT,
        priority: Priority::Normal,
        callback_url: None,
    }
}

async fn status_blobs(store: &dyn BlobStore) -> Vec<String> {
    store
        .list("jobs/", None, 1000)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|item| item.name.as_str().to_owned())
        .filter(|name| name.ends_with("/status.json"))
        .collect()
}

#[tokio::test]
async fn a_create_that_timed_out_but_landed_keeps_its_key_so_a_repeat_makes_no_second_job() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Steered::new(
        dir.path(),
        LoseCreateAnswers {
            creations: AtomicUsize::new(1),
        },
    ));
    store.ensure_container().await.unwrap();
    let runner = runner(store.clone());
    let key = IdempotencyKey::parse(b"nightly-2026-11-28").unwrap();

    let first = runner.submit(request(), None, Some(&key)).await;
    assert!(
        matches!(first, Err(SubmitError::StorageUnavailable(_))),
        "{first:?}"
    );
    let again = runner.submit(request(), None, Some(&key)).await.unwrap();

    let stored = status_blobs(store.as_ref()).await;
    assert_eq!(stored, [format!("jobs/{}/status.json", again.job_id)]);
    runner.shutdown().await;
}
