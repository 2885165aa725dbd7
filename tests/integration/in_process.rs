//! The job API in-process ([`testkit::in_process::spawn_app`]): cancel, retry, priorities and
//! list paging need nothing the real process adds, so they run against the app built in the
//! test itself, on a local-directory store and scripted topics. Holds order the events.

use std::time::Duration;

use serde_json::{json, Value};
use summary_womble::reddit::FetchError;
use testkit::app::{job, post, JobApi};
use testkit::host::HostRequest;
use testkit::in_process::{spawn_app, InProcessApp};

const WAIT: Duration = Duration::from_secs(20);

/// Topic blobs (everything outside `jobs/`).
async fn output_blobs(app: &InProcessApp) -> Vec<String> {
    app.store
        .list("", None, 1000)
        .await
        .expect("the local store lists")
        .items
        .into_iter()
        .map(|item| item.name.as_str().to_owned())
        .filter(|name| !name.starts_with("jobs/"))
        .collect()
}

#[tokio::test]
async fn a_cancelled_job_stops_before_its_next_subreddit_and_keeps_finished_results() {
    let app = spawn_app(&[]).await;
    // Twelve subreddits: eight are fetched at once, the last four wait their turn.
    let names: Vec<String> = (0..12).map(|i| format!("held{i}")).collect();
    let topics: Vec<&str> = names.iter().map(String::as_str).collect();
    let hold = app.topics.hold(&topics);
    let id = app.submit(job(&topics, 1)).await;
    hold.until_arrived(8, WAIT).await;

    let cancel = app
        .call(HostRequest::delete(&format!(
            "/api/SummaryWomble?job_id={id}"
        )))
        .await;
    assert_eq!(cancel.status, 202, "{}", cancel.text());
    assert!(cancel.json()["cancel_requested_at"].is_string());
    hold.release();

    let done = app.wait_terminal(&id, WAIT).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    let results = done["results"]["results"].as_array().unwrap();
    assert_eq!(results.len(), 12);
    let skipped: Vec<&str> = results
        .iter()
        .filter(|r| r["status"] == "skipped")
        .map(|r| r["subreddit"].as_str().unwrap())
        .collect();
    assert_eq!(
        skipped.len(),
        4,
        "the queued subreddits are skipped: {done}"
    );
    for name in &skipped {
        assert_eq!(
            app.topics.fetches(name),
            0,
            "{name} was skipped yet fetched"
        );
    }
    assert!(results
        .iter()
        .all(|r| r["status"] == "success" || r["status"] == "skipped"));
    assert_eq!(output_blobs(&app).await.len(), 12 - skipped.len());

    // A finished job cannot be cancelled again.
    let again = app
        .call(post(&json!({"action": "cancel", "job_id": id})))
        .await;
    assert_eq!(again.status, 409);
    assert!(again.json()["error"]
        .as_str()
        .unwrap()
        .contains("cancelled"));
    let unknown = app
        .call(post(
            &json!({"action": "cancel", "job_id": uuid::Uuid::new_v4().to_string()}),
        ))
        .await;
    assert_eq!(unknown.status, 404);
}

#[tokio::test]
async fn a_queued_job_is_cancelled_at_once() {
    let app = spawn_app(&[("MAX_CONCURRENT_JOBS", "1")]).await;
    let hold = app.topics.hold(&["blocker"]);
    let blocker = app.submit(job(&["blocker"], 1)).await;
    hold.until_arrived(1, WAIT).await;
    let queued = app.submit(job(&["technology"], 1)).await;
    let cancel = app
        .call(post(&json!({"action": "cancel", "job_id": queued})))
        .await;
    assert_eq!(cancel.status, 202);
    assert_eq!(cancel.json()["status"], "cancelled");
    assert_eq!(cancel.json()["results"]["results"][0]["status"], "skipped");
    hold.release();
    app.wait_terminal(&blocker, WAIT).await;
    assert_eq!(
        app.stored_status(&queued).await.unwrap()["status"],
        "cancelled"
    );
    assert_eq!(app.topics.fetches("technology"), 0);
}

#[tokio::test]
async fn a_finished_job_can_be_retried_as_a_new_job() {
    let app = spawn_app(&[]).await;
    app.topics
        .fail("privatesub", |name| FetchError::Private(name.into()));
    let first = app.submit(job(&["privatesub"], 2)).await;
    assert_eq!(app.wait_terminal(&first, WAIT).await["status"], "failed");

    app.topics.answer("privatesub", 5);
    let retry = app
        .call(post(&json!({"action": "retry", "job_id": first})))
        .await;
    assert_eq!(retry.status, 202, "{}", retry.text());
    let ticket = retry.json();
    let second = ticket["job_id"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(ticket["retry_of"], first.as_str());
    assert_eq!(ticket["topics_requested"], json!(["privatesub"]));
    let done = app.wait_terminal(&second, WAIT).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["retry_of"], first.as_str());
    assert_eq!(done["request"]["limit"], 2);
}

#[tokio::test]
async fn a_running_job_cannot_be_retried() {
    let app = spawn_app(&[]).await;
    let hold = app.topics.hold(&["heldsub"]);
    let id = app.submit(job(&["heldsub"], 1)).await;
    hold.until_arrived(1, WAIT).await;
    let retry = app
        .call(post(&json!({"action": "retry", "job_id": id})))
        .await;
    assert_eq!(retry.status, 409);
    let unknown = app
        .call(post(
            &json!({"action": "retry", "job_id": uuid::Uuid::new_v4().to_string()}),
        ))
        .await;
    assert_eq!(unknown.status, 404);
    hold.release();
}

#[tokio::test]
async fn jobs_are_listed_newest_first_a_page_at_a_time() {
    let app = spawn_app(&[]).await;
    let mut started = Vec::new();
    for _ in 0..5 {
        started.push(app.submit(job(&["technology"], 1)).await);
    }
    for id in &started {
        app.wait_terminal(id, WAIT).await;
    }
    let mut seen = Vec::new();
    let mut continuation: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &continuation {
            Some(token) => format!("/api/SummaryWomble?top=2&continuation={token}"),
            None => "/api/SummaryWomble?top=2".to_owned(),
        };
        let page = app.call(HostRequest::get(&query)).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        pages += 1;
        let jobs = page["jobs"].as_array().unwrap();
        assert!(jobs.len() <= 2);
        seen.extend(
            jobs.iter()
                .map(|doc| doc["job_id"].as_str().unwrap().to_owned()),
        );
        match page["continuation"].as_str() {
            Some(token) => continuation = Some(token.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    started.reverse();
    assert_eq!(seen, started, "newest first, none lost or repeated");

    let completed = app
        .call(post(
            &json!({"action": "list", "status": "completed", "top": 100}),
        ))
        .await
        .json();
    assert_eq!(completed["jobs"].as_array().unwrap().len(), 5);
    let failed = app
        .call(HostRequest::get("/api/SummaryWomble?status=failed"))
        .await
        .json();
    assert_eq!(failed["jobs"], json!([]));
    assert_eq!(failed["continuation"], Value::Null);

    let metrics = app.call(post(&json!({"action": "metrics"}))).await;
    assert_eq!(metrics.status, 200);
    let metrics = metrics.json();
    assert_eq!(metrics["total_jobs"], 5);
    assert_eq!(metrics["by_status"]["completed"], 5);
    assert_eq!(metrics["success_rate"], 1.0);
    assert!(metrics["p95_duration_seconds"].as_f64().unwrap() >= 0.0);
}

#[tokio::test]
async fn high_priority_jobs_leave_the_queue_first() {
    let app = spawn_app(&[("MAX_CONCURRENT_JOBS", "1")]).await;
    let hold = app.topics.hold(&["blocker"]);
    let blocker = app.submit(job(&["blocker"], 1)).await;
    // The blocker runs and holds the only worker: the rest queue behind it.
    hold.until_arrived(1, WAIT).await;
    let normal_one = app.submit(job(&["technology"], 1)).await;
    let normal_two = app.submit(job(&["gadgets"], 1)).await;
    let high = app
        .submit(json!({"topics": ["programming"], "limit": 1, "priority": "high"}))
        .await;
    hold.release();
    let mut started = Vec::new();
    for id in [&blocker, &normal_one, &normal_two, &high] {
        let done = app.wait_terminal(id, WAIT).await;
        started.push((done["started_at"].as_str().unwrap().to_owned(), id.clone()));
    }
    started.sort();
    let order: Vec<&str> = started.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(
        order,
        [
            blocker.as_str(),
            high.as_str(),
            normal_one.as_str(),
            normal_two.as_str()
        ]
    );
}
