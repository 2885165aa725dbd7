//! Hardening: what one bad blob, a busy instance, an ambiguous storage failure or a predictable
//! key must not be able to do. Each test here failed before its fix.

use std::time::Duration;

use bytes::Bytes;
use chrono::{TimeDelta, Utc};
use summary_womble::jobs::status::SubredditOutcome;
use summary_womble::jobs::{
    JobId, JobRequest, Limit, Priority, Source, StatusDocument, StatusRepository,
};
use summary_womble::reddit::Subreddit;
use summary_womble::store::{BlobName, WriteCondition};

use crate::support::app::TestApp;
use crate::support::azurite::Container;

const WAIT: Duration = Duration::from_secs(45);

/// Stale after 5 s (the least the settings allow): adoption within seconds.
const QUICK_ADOPTION: (&str, &str) = ("JOB_STALE_AFTER_SECONDS", "5");

/// Sorts before any job id a UUID v4 can produce, so a listing of `jobs/` meets it first.
const FIRST_ID: &str = "00000000-0000-4000-8000-000000000000";

fn request(topics: &[&str]) -> JobRequest {
    JobRequest {
        source: Source::Reddit,
        topics: topics
            .iter()
            .map(|name| Subreddit::parse(name).unwrap())
            .collect(),
        limit: Limit::DEFAULT,
        priority: Priority::Normal,
        callback_url: None,
    }
}

/// A job that finished `days` ago.
fn finished(id: JobId, days: i64) -> StatusDocument {
    let at = Utc::now() - TimeDelta::days(days);
    let mut doc = StatusDocument::queued(id, request(&["technology"]), None, at);
    doc.claim(at, 0).unwrap();
    doc.record(
        SubredditOutcome::success(Subreddit::parse("technology").unwrap(), 1, "x.json".into()),
        at,
    )
    .unwrap();
    doc.finish(at).unwrap();
    doc
}

/// Stores a status document this version cannot read, under an id that lists first.
async fn store_garbage_status(container: &Container) -> String {
    let name = format!("jobs/{FIRST_ID}/status.json");
    container
        .store
        .put(
            &BlobName::parse(name.clone()).unwrap(),
            Bytes::from_static(b"{\"schema\": 99, \"this is\": not json"),
            "application/json",
            WriteCondition::IfNotExists,
        )
        .await
        .unwrap();
    name
}

#[tokio::test]
async fn an_unreadable_status_document_does_not_stop_the_adoption_of_stale_jobs() {
    let container = Container::fresh().await;
    let garbage = store_garbage_status(&container).await;
    // A job queued an hour ago by an instance that died before starting it.
    let repository = StatusRepository::new(container.store.clone());
    let stale = JobId::new();
    let queued = StatusDocument::queued(
        stale,
        request(&["technology"]),
        None,
        Utc::now() - TimeDelta::hours(1),
    );
    repository.create(&queued).await.unwrap();

    let app = TestApp::start_on(container, vec![QUICK_ADOPTION]).await;
    let done = app.wait_stored_terminal(&stale.to_string(), WAIT).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 1);
    let logs = app.host.logs();
    assert!(
        logs.contains("skipping a status document that does not parse") && logs.contains(&garbage),
        "the warning names the blob:\n{logs}"
    );
    // The unreadable document is left as it is.
    assert!(app.container.read(&garbage).await.is_some());
}

#[tokio::test]
async fn an_unreadable_status_document_does_not_stop_the_purge() {
    let container = Container::fresh().await;
    let garbage = store_garbage_status(&container).await;
    let repository = StatusRepository::new(container.store.clone());
    let old = JobId::new();
    repository.create(&finished(old, 45)).await.unwrap();

    let purged = repository
        .purge_finished_before(Utc::now() - TimeDelta::days(30))
        .await
        .expect("the purge goes past the unreadable document");
    assert_eq!(purged, 1);
    assert!(repository.load(old).await.unwrap().is_none());
    assert!(container.read(&garbage).await.is_some());
}
