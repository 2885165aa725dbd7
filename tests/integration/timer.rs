//! GetHotTopics through the host simulator: the timer envelope, the real HTTP call to
//! SummaryWomble with the function key, one job per schedule slot, failures made visible, and
//! retention.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde_json::Value;
use summary_womble::jobs::status::SubredditOutcome;
use summary_womble::jobs::{
    IdempotencyKey, JobId, JobRequest, Limit, Priority, Source, StatusDocument, StatusRepository,
};
use summary_womble::reddit::Subreddit;

use testkit::app::TestApp;
use testkit::azurite::Container;
use testkit::gate::Gate;
use testkit::host::timer_payload;

const KEY: &str = "summary-womble-function-key";

/// An app whose timer submits through a key-checking gate to its own SummaryWomble.
async fn app_with_gate() -> (TestApp, Gate) {
    let gate = Gate::start(KEY).await;
    let app = TestApp::start_with(vec![
        ("SUMMARY_WOMBLE_URL", &gate.url()),
        ("SUMMARY_WOMBLE_KEY", KEY),
        ("HOT_TOPICS_SUBREDDITS", "technology,gadgets,Futurology"),
        ("HOT_TOPICS_LIMIT", "3"),
        ("STATUS_CHECK_DELAY_SECONDS", "1"),
    ])
    .await;
    gate.forward_to(app.host.port());
    (app, gate)
}

#[tokio::test]
async fn a_timer_run_submits_one_job_with_the_function_key_and_logs_its_ticket() {
    let (app, gate) = app_with_gate().await;
    let outcome = app
        .host
        .invoke_timer(
            "GetHotTopics",
            timer_payload(Some("2026-11-28T12:00:00Z"), false),
        )
        .await;
    assert!(
        outcome.succeeded,
        "the host would record a failure: {outcome:?}\n{}",
        app.host.logs()
    );
    assert_eq!(outcome.status, 200);
    assert_eq!(outcome.body["Outputs"], serde_json::json!({}));
    assert_eq!(outcome.body["ReturnValue"], Value::Null);

    let blobs = app.container.status_documents().await;
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    let job_id = blobs[0].split('/').nth(1).unwrap();
    let stored = app.stored_status(job_id).await.unwrap();
    assert_eq!(
        stored["request"]["topics"],
        serde_json::json!(["technology", "gadgets", "Futurology"])
    );
    assert_eq!(stored["request"]["limit"], 3);
    assert!(
        outcome.logs.iter().any(|line| line.contains(job_id)),
        "{:?}",
        outcome.logs
    );
    assert!(
        outcome
            .logs
            .iter()
            .any(|line| line.starts_with(&format!("Job {job_id} is "))),
        "{:?}",
        outcome.logs
    );
    assert!(
        outcome.logs.iter().any(|line| line.contains("Purged")),
        "{:?}",
        outcome.logs
    );

    let calls = gate.calls();
    let submit = &calls[0];
    assert_eq!(submit.method, "POST");
    assert_eq!(submit.key.as_deref(), Some(KEY));
    assert_eq!(submit.status, 202);
    assert!(submit.idempotency_key.is_some());
    // The one status check, also with the key.
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[1].method, "GET");
    assert_eq!(calls[1].key.as_deref(), Some(KEY));
    // The key itself is never logged.
    assert!(!app.host.logs().contains(KEY));
    assert!(!outcome.logs.iter().any(|line| line.contains(KEY)));
}

#[tokio::test]
async fn the_same_schedule_slot_twice_makes_one_job() {
    let (app, gate) = app_with_gate().await;
    let payload = timer_payload(Some("2026-11-28T18:00:00Z"), false);
    let (first, second) = tokio::join!(
        app.host.invoke_timer("GetHotTopics", payload.clone()),
        app.host.invoke_timer("GetHotTopics", payload.clone())
    );
    assert!(first.succeeded && second.succeeded);
    assert_eq!(app.container.status_documents().await.len(), 1);
    let keys: Vec<_> = gate
        .calls()
        .into_iter()
        .filter(|call| call.method == "POST")
        .map(|call| call.idempotency_key)
        .collect();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1]);
    // A later slot is a new job.
    let next = app
        .host
        .invoke_timer(
            "GetHotTopics",
            timer_payload(Some("2026-11-29T00:00:00Z"), false),
        )
        .await;
    assert!(next.succeeded);
    assert_eq!(app.container.status_documents().await.len(), 2);
}

#[tokio::test]
async fn a_run_without_schedule_status_and_past_due_still_submits_and_says_it_is_late() {
    let (app, _gate) = app_with_gate().await;
    let outcome = app
        .host
        .invoke_timer("GetHotTopics", timer_payload(None, true))
        .await;
    assert!(outcome.succeeded, "{outcome:?}");
    assert!(
        outcome.logs.iter().any(|line| line.contains("past due")),
        "{:?}",
        outcome.logs
    );
    assert_eq!(app.container.status_documents().await.len(), 1);
}

#[tokio::test]
async fn a_summary_womble_that_refuses_the_key_makes_the_run_fail_visibly() {
    let gate = Gate::start(KEY).await;
    let app = TestApp::start_with(vec![
        ("SUMMARY_WOMBLE_URL", &gate.url()),
        ("SUMMARY_WOMBLE_KEY", "the-wrong-key"),
        ("STATUS_CHECK_DELAY_SECONDS", "0"),
    ])
    .await;
    gate.forward_to(app.host.port());
    let outcome = app
        .host
        .invoke_timer("GetHotTopics", timer_payload(None, false))
        .await;
    assert!(!outcome.succeeded, "{outcome:?}");
    assert_eq!(gate.calls()[0].status, 401);
    assert!(app.host.logs().contains("HTTP 401"), "{}", app.host.logs());
    assert!(app.container.status_documents().await.is_empty());
}

#[tokio::test]
async fn a_summary_womble_that_answers_500_makes_the_run_fail_visibly() {
    let (app, gate) = app_with_gate().await;
    gate.answer_with(500);
    let outcome = app
        .host
        .invoke_timer("GetHotTopics", timer_payload(None, false))
        .await;
    assert!(!outcome.succeeded, "{outcome:?}");
    assert!(app.host.logs().contains("HTTP 500"), "{}", app.host.logs());
}

fn document(id: JobId, finished_days_ago: Option<i64>) -> StatusDocument {
    let request = JobRequest {
        source: Source::Reddit,
        topics: vec![Subreddit::parse("technology").unwrap()],
        limit: Limit::DEFAULT,
        priority: Priority::Normal,
        callback_url: None,
    };
    let created = Utc::now() - TimeDelta::days(finished_days_ago.unwrap_or(0) + 1);
    let mut doc = StatusDocument::queued(id, request, None, created);
    doc.claim(created, 0).unwrap();
    if let Some(days) = finished_days_ago {
        let at = Utc::now() - TimeDelta::days(days);
        doc.record(
            SubredditOutcome::success(Subreddit::parse("technology").unwrap(), 1, "x.json".into()),
            at,
        )
        .unwrap();
        doc.finish(at).unwrap();
    }
    doc
}

#[tokio::test]
async fn retention_purges_old_finished_jobs_and_keeps_recent_and_running_ones() {
    let container = Container::fresh().await;
    let repository = StatusRepository::new(container.store.clone());
    let old = JobId::new();
    let recent = JobId::new();
    let running = JobId::new();
    repository.create(&document(old, Some(45))).await.unwrap();
    repository.create(&document(recent, Some(3))).await.unwrap();
    repository.create(&document(running, None)).await.unwrap();
    // The old job's idempotency record goes with it; the recent one's stays.
    assert_eq!(
        repository
            .reserve_idempotency_key(&key("old-key"), old)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        repository
            .reserve_idempotency_key(&key("recent-key"), recent)
            .await
            .unwrap(),
        None
    );
    // Topic blobs belong to the next stage and are never purged.
    let topics = repository
        .store_output(
            old,
            "20251001_000000_reddit_technology",
            &serde_json::json!({"job_id": old}),
        )
        .await
        .unwrap();

    let purged = repository
        .purge_finished_before(Utc::now() - TimeDelta::days(30))
        .await
        .unwrap();
    assert_eq!(purged, 1);
    assert!(repository.load(old).await.unwrap().is_none());
    assert!(repository.load(recent).await.unwrap().is_some());
    assert!(repository.load(running).await.unwrap().is_some());
    assert!(
        container.read(&topics).await.is_some(),
        "topic blobs are kept"
    );
    let names = container.names().await;
    assert!(
        !names.iter().any(|name| name.contains(&old.to_string())),
        "{names:?}"
    );
    // The purged job's key is free again; the recent job's still points at it.
    let fresh = JobId::new();
    assert_eq!(
        repository
            .reserve_idempotency_key(&key("old-key"), fresh)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        repository
            .reserve_idempotency_key(&key("recent-key"), fresh)
            .await
            .unwrap(),
        Some(recent)
    );
}

#[tokio::test]
async fn standalone_mode_runs_the_timer_on_its_own_schedule() {
    // Every two seconds, in standalone mode (no FUNCTIONS_CUSTOMHANDLER_PORT): the handler's
    // own scheduler submits to its own SummaryWomble.
    let app = testkit::app::StandaloneApp::start(vec![
        ("TIMER_SCHEDULE", "*/2 * * * * *"),
        ("HOT_TOPICS_SUBREDDITS", "technology"),
        ("STATUS_CHECK_DELAY_SECONDS", "0"),
    ])
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if !app.container.status_documents().await.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled job after 20 s:\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.wait_for_log("GetHotTopics scheduled", Duration::from_secs(10))
        .await;
}

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::parse(text.as_bytes()).unwrap()
}
