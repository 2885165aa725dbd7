//! Hardening: what one bad blob, a busy instance, an ambiguous storage failure or a predictable
//! key must not be able to do. Each test here failed before its fix.

use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{TimeDelta, Utc};
use summary_womble::jobs::status::SubredditOutcome;
use summary_womble::jobs::{
    JobId, JobRequest, Limit, Priority, Source, StatusDocument, StatusRepository,
};
use summary_womble::reddit::Subreddit;
use summary_womble::store::WriteCondition;

use testkit::app::{job, JobApi as _, TestApp};
use testkit::azurite::Container;
use testkit::fake_reddit::{Behaviour, FakeReddit};
use testkit::gate::Gate;
use testkit::host::{timer_payload, HostRequest};
use testkit::poll;

const WAIT: Duration = Duration::from_secs(45);

/// Stale after 5 s (the least the settings allow): adoption within seconds.
const QUICK_ADOPTION: (&str, &str) = ("JOB_STALE_AFTER_SECONDS", "5");

/// Sorts before any job id a UUID v4 can produce, so a listing of `jobs/` meets it first.
const FIRST_ID: &str = "00000000-0000-4000-8000-000000000000";

/// When the fake Reddit was asked for each page of `subreddit`'s listing.
fn listing_requests_at(reddit: &FakeReddit, subreddit: &str) -> Vec<Instant> {
    let prefix = format!("/r/{subreddit}/hot");
    reddit
        .requests()
        .into_iter()
        .filter(|seen| seen.path.starts_with(&prefix))
        .map(|seen| seen.at)
        .collect()
}

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
    let name = testkit::status::blob_name(FIRST_ID);
    container
        .store
        .put(
            &name,
            Bytes::from_static(b"{\"schema\": 99, \"this is\": not json"),
            "application/json",
            WriteCondition::IfNotExists,
        )
        .await
        .unwrap();
    name.as_str().to_owned()
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

#[tokio::test]
async fn a_busy_instance_claims_no_stale_job_so_no_subreddit_is_fetched_by_two_live_processes() {
    // Instance A has one worker, held by `heldone` for 16 s.
    let app = TestApp::start_with(vec![QUICK_ADOPTION, ("MAX_CONCURRENT_JOBS", "1")]).await;
    app.reddit
        .set("heldone", Behaviour::Slow(Duration::from_secs(16)));
    app.reddit
        .set("heldtwo", Behaviour::Slow(Duration::from_secs(12)));
    let busy = app.submit(job(&["heldone"], 1)).await;
    poll::until("A to start its job", WAIT, async || {
        app.reddit.listing_requests("heldone") == 1
    })
    .await;

    // A job whose instance died before starting it: stale 5 s from now. A's scans see it while
    // A's only worker is busy; before the fix A claimed it anyway and let it wait, unheartbeaten.
    let repository = StatusRepository::new(app.container.store.clone());
    let orphan = JobId::new();
    repository
        .create(&StatusDocument::queued(
            orphan,
            request(&["heldtwo"]),
            None,
            Utc::now() - TimeDelta::hours(1),
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;

    // Instance B is idle: it adopts the orphan and starts fetching `heldtwo`.
    let mut second = app.another_instance().await;
    poll::until("B to fetch the orphan's subreddit", WAIT, async || {
        app.reddit.listing_requests("heldtwo") >= 1
    })
    .await;
    // The worst moment: A's worker has just come free while B is mid-fetch; then B dies.
    app.wait_terminal(&busy, WAIT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    second.kill();
    let killed_at = Instant::now();
    app.reddit.set(
        "heldtwo",
        Behaviour::Posts {
            posts: 10,
            stickied: 0,
        },
    );

    // A, now idle, adopts the job once B's heartbeat has stopped, and finishes it.
    let done = app.wait_stored_terminal(&orphan.to_string(), WAIT).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 2, "claimed by B, then by A: {done}");
    let fetches = listing_requests_at(&app.reddit, "heldtwo");
    assert_eq!(
        fetches.len(),
        2,
        "once by B, once by A after B died: {fetches:?}\nA:\n{}",
        app.host.logs()
    );
    assert!(
        fetches[1] > killed_at,
        "A fetched r/heldtwo while B was still fetching it:\nA:\n{}\nB:\n{}",
        app.host.logs(),
        second.logs()
    );
    assert_eq!(app.reddit.listing_requests("heldone"), 1);
}

#[tokio::test]
async fn a_caller_who_registers_the_next_slots_predictable_key_does_not_stop_the_timers_job() {
    const KEY: &str = "summary-womble-function-key";
    let gate = Gate::start(KEY).await;
    let app = TestApp::start_with(vec![
        ("SUMMARY_WOMBLE_URL", &gate.url()),
        ("SUMMARY_WOMBLE_KEY", KEY),
        ("HOT_TOPICS_SUBREDDITS", "technology"),
        ("STATUS_CHECK_DELAY_SECONDS", "0"),
    ])
    .await;
    gate.forward_to(app.host.port());

    // Any holder of a function key could compute the key the timer used to send for a slot.
    let squatted = app
        .host
        .forward(
            HostRequest::post("/api/SummaryWomble", Vec::new())
                .header(
                    "Idempotency-Key",
                    "GetHotTopics:next:2026-11-28T12:00:00+00:00",
                )
                .json(&job(&["gadgets"], 1)),
        )
        .await;
    assert_eq!(squatted.status, 202, "{}", squatted.text());
    let squatter = squatted.json()["job_id"].as_str().unwrap().to_owned();

    let outcome = app
        .host
        .invoke_timer(
            "GetHotTopics",
            timer_payload(Some("2026-11-28T12:00:00Z"), false),
        )
        .await;
    assert!(outcome.succeeded, "{outcome:?}");
    let accepted = outcome
        .logs
        .iter()
        .find_map(|line| line.strip_prefix("Job ")?.split_once(" accepted"))
        .map(|(id, _)| id.to_owned())
        .unwrap_or_else(|| panic!("no ticket logged: {:?}", outcome.logs));
    assert_ne!(accepted, squatter, "the timer got the squatter's job");
    let stored = app.stored_status(&accepted).await.expect("the timer's job");
    assert_eq!(
        stored["request"]["topics"],
        serde_json::json!(["technology"])
    );
}

#[tokio::test]
async fn a_failed_timer_submit_does_not_skip_the_purge() {
    let gate = Gate::start("summary-womble-function-key").await;
    let container = Container::fresh().await;
    let repository = StatusRepository::new(container.store.clone());
    let old = JobId::new();
    repository.create(&finished(old, 45)).await.unwrap();
    let app = TestApp::start_on(
        container,
        vec![
            ("SUMMARY_WOMBLE_URL", &gate.url()),
            ("SUMMARY_WOMBLE_KEY", "summary-womble-function-key"),
            ("STATUS_CHECK_DELAY_SECONDS", "0"),
        ],
    )
    .await;
    gate.answer_with(500);

    let outcome = app
        .host
        .invoke_timer("GetHotTopics", timer_payload(None, false))
        .await;
    assert!(!outcome.succeeded, "{outcome:?}");
    assert!(
        app.stored_status(&old.to_string()).await.is_none(),
        "the old job is purged all the same:\n{}",
        app.host.logs()
    );
}
