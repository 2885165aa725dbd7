use super::*;
use crate::store::local::LocalDirStore;
use crate::store::steered::{Steer, Steered};

#[tokio::test]
async fn jobs_of_one_second_never_share_an_output_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn BlobStore> = Arc::new(LocalDirStore::new(dir.path(), "hot-topics"));
    store.ensure_container().await.unwrap();
    let repository = StatusRepository::new(store);
    // Three jobs, two of whose ids begin alike.
    let jobs = [
        "6ce324a8-0502-4b0c-b729-12e10f0f22f6",
        "0badcafe-0000-4000-8000-000000000001",
        "0badcafe-0000-4000-8000-000000000002",
    ]
    .map(|id| JobId::parse(id).unwrap());
    let mut names = Vec::new();
    for job in jobs {
        let body = serde_json::json!({"job_id": job});
        let name = repository
            .store_output(job, "20250811_135221_reddit_technology", &body)
            .await
            .unwrap();
        names.push(name);
    }
    assert_eq!(
        names,
        [
            "20250811_135221_reddit_technology.json",
            "20250811_135221_reddit_technology_0badcafe.json",
            "20250811_135221_reddit_technology_0badcafe-0000-4000-8000-000000000002.json",
        ]
    );
    // A job that stores again (resumed after a kill) finds its own blob.
    let again = repository
        .store_output(
            jobs[2],
            "20250811_135221_reddit_technology",
            &serde_json::json!({"job_id": jobs[2]}),
        )
        .await
        .unwrap();
    assert_eq!(again, names[2]);
}

/// List-entry writes wait until the test lets them through.
struct HoldEntries {
    let_through: tokio::sync::Semaphore,
}

#[async_trait::async_trait]
impl Steer for HoldEntries {
    async fn before_put(&self, name: &BlobName) {
        if name.as_str().starts_with(INDEX_PREFIX) {
            self.let_through
                .acquire()
                .await
                .expect("never closed")
                .forget();
        }
    }
}

fn queued_job() -> StatusDocument {
    let request = crate::jobs::request::JobRequest {
        source: crate::jobs::request::Source::Reddit,
        topics: vec![crate::reddit::Subreddit::parse("technology").unwrap()],
        limit: crate::jobs::request::Limit::DEFAULT,
        priority: crate::jobs::request::Priority::Normal,
        callback_url: None,
    };
    StatusDocument::queued(JobId::new(), request, None, crate::jobs::status::now())
}

fn listed(page: &crate::jobs::JobPage) -> Vec<JobId> {
    page.jobs.iter().map(|doc| doc.job_id).collect()
}

#[tokio::test]
async fn a_job_is_listed_by_its_instance_while_its_entry_is_still_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Steered::new(
        dir.path(),
        HoldEntries {
            let_through: tokio::sync::Semaphore::new(0),
        },
    ));
    store.ensure_container().await.unwrap();
    let repository = StatusRepository::new(store.clone());
    let other_instance = StatusRepository::new(store.clone());
    let everything = crate::jobs::ListFilter {
        status: None,
        top: 20,
        after: None,
    };
    let older = queued_job();
    repository.create(&older).await.unwrap();
    store.steer.let_through.add_permits(1);
    repository.finish_index_writes().await;

    let job = queued_job();
    repository.create(&job).await.unwrap();
    let page = repository.list(&everything).await.unwrap();
    assert_eq!(listed(&page), [job.job_id, older.job_id]);
    let elsewhere = other_instance.list(&everything).await.unwrap();
    assert_eq!(listed(&elsewhere), [older.job_id], "not written yet");

    store.steer.let_through.add_permits(1);
    repository.finish_index_writes().await;
    let elsewhere = other_instance.list(&everything).await.unwrap();
    assert_eq!(listed(&elsewhere), [job.job_id, older.job_id]);
}

#[tokio::test]
async fn a_job_whose_entry_was_never_written_is_listed_after_the_stale_job_scan() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn BlobStore> = Arc::new(LocalDirStore::new(dir.path(), "hot-topics"));
    store.ensure_container().await.unwrap();
    let repository = StatusRepository::new(store.clone());
    // The process died between the status document and its list entry.
    let job = queued_job();
    store
        .put(
            &status_blob(job.job_id),
            to_json(&job),
            JSON,
            WriteCondition::IfNotExists,
        )
        .await
        .unwrap();
    let everything = crate::jobs::ListFilter {
        status: None,
        top: 20,
        after: None,
    };
    assert!(repository.list(&everything).await.unwrap().jobs.is_empty());

    let quiet = repository
        .quiet_since(crate::jobs::status::now())
        .await
        .unwrap();
    assert_eq!(quiet, [job.job_id]);
    let page = repository.list(&everything).await.unwrap();
    assert_eq!(listed(&page), [job.job_id]);
    assert_eq!(page.jobs[0].created_at, job.created_at);
}

#[tokio::test]
async fn an_update_over_its_own_last_write_still_sees_what_another_instance_wrote_since() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn BlobStore> = Arc::new(LocalDirStore::new(dir.path(), "hot-topics"));
    store.ensure_container().await.unwrap();
    let ours = StatusRepository::new(store.clone());
    let theirs = StatusRepository::new(store.clone());
    let at = crate::jobs::status::now();

    // Cancelled by another instance after our create, which we remember: our claim is refused.
    let cancelled = queued_job();
    ours.create(&cancelled).await.unwrap();
    theirs
        .update(cancelled.job_id, |doc| doc.request_cancel(at))
        .await
        .unwrap();
    let claim = ours.update(cancelled.job_id, |doc| doc.claim(at, 0)).await;
    assert!(
        matches!(claim, Err(RepositoryError::Transition(_))),
        "{claim:?}"
    );

    // Running here, a cancel requested elsewhere, then our heartbeat: the cancel is kept.
    let job = queued_job();
    ours.create(&job).await.unwrap();
    ours.update(job.job_id, |doc| doc.claim(at, 0))
        .await
        .unwrap();
    theirs
        .update(job.job_id, |doc| doc.request_cancel(at))
        .await
        .unwrap();
    let (beat, ()) = ours
        .update(job.job_id, |doc| doc.heartbeat(at))
        .await
        .unwrap();
    assert_eq!(beat.cancel_requested_at, Some(at));
    // Our own write is now the stored version: the next update goes over it, and loses nothing.
    ours.update(job.job_id, |doc| doc.heartbeat(at))
        .await
        .unwrap();
    let stored = ours.load(job.job_id).await.unwrap().unwrap().document;
    assert_eq!(stored.attempts, 1);
    assert_eq!(stored.cancel_requested_at, Some(at));
}

/// A status document stored before its internals moved into metadata (captured from that
/// version): it loads with its claim, and the next update stores it split.
#[tokio::test]
async fn a_document_stored_before_the_split_is_honoured_and_split_by_its_next_update() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn BlobStore> = Arc::new(LocalDirStore::new(dir.path(), "hot-topics"));
    store.ensure_container().await.unwrap();
    let captured = include_str!("../status/stored/before_the_split/callback-claimed.json");
    let id = JobId::parse("ff379475-bb45-46dd-9825-96e88cd8f71e").unwrap();
    store
        .put(
            &status_blob(id),
            Bytes::from(captured),
            JSON,
            WriteCondition::IfNotExists,
        )
        .await
        .unwrap();
    let repository = StatusRepository::new(store.clone());

    let loaded = repository.load(id).await.unwrap().unwrap().document;
    assert_eq!(loaded.internals.callback_lease.claims, 1);
    let (updated, state) = repository
        .update(id, |doc| doc.callback_sent(1, Ok(()), 5))
        .await
        .unwrap();
    assert_eq!(state, crate::jobs::callback::CallbackState::Delivered);

    let blob = store.get(&status_blob(id)).await.unwrap().unwrap();
    let content: serde_json::Value = serde_json::from_slice(&blob.body).unwrap();
    assert_eq!(
        content["callback"],
        serde_json::json!({"state": "delivered", "attempts": 1, "last_error": null})
    );
    assert_eq!(content["request"]["callback_url"], "http://127.0.0.1:18931");
    assert_eq!(
        blob.metadata.get("callback_url"),
        Some("http://127.0.0.1:18931/hooks/done?token=s3cr3t")
    );
    assert_eq!(blob.metadata.get("callback_claims"), Some("1"));
    assert_eq!(blob.body, serde_json::to_vec(&updated).unwrap());
    assert_eq!(
        repository.load(id).await.unwrap().unwrap().document,
        updated
    );
}
