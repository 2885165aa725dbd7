//! Jobs that are never lost: SIGKILL and restart, adoption by another instance, cancel, retry,
//! idempotent submits, list paging, priorities, callbacks, and storage outages.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::app::{job, TestApp};
use crate::support::azurite::OwnAzurite;
use crate::support::fake_reddit::Behaviour;
use crate::support::host::HostRequest;

const WAIT: Duration = Duration::from_secs(45);

/// Stale after 5 s: adoption within seconds, not minutes.
const QUICK_ADOPTION: (&str, &str) = ("JOB_STALE_AFTER_SECONDS", "5");

/// Polls `check` until it holds (panics after `limit`).
pub(crate) async fn wait_for(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn completed_count(app: &TestApp, id: &str) -> u64 {
    app.stored_status(id)
        .await
        .map_or(0, |doc| doc["progress"]["completed"].as_u64().unwrap_or(0))
}

/// Topic blobs (everything outside `jobs/`).
async fn output_blobs(app: &TestApp) -> Vec<String> {
    app.container
        .names()
        .await
        .into_iter()
        .filter(|name| !name.starts_with("jobs/"))
        .collect()
}

/// Starts a job whose last subreddit, `slowsub`, hangs; once every other subreddit is
/// recorded, SIGKILLs the handler and lets `slowsub` answer normally from then on.
async fn kill_mid_job(app: &mut TestApp, topics: &[&str]) -> String {
    assert_eq!(topics.last(), Some(&"slowsub"));
    app.reddit
        .set("slowsub", Behaviour::Slow(Duration::from_secs(120)));
    let id = app.submit(job(topics, 2)).await;
    let others = topics.len() as u64 - 1;
    wait_for("the other subreddits to be recorded", WAIT, async || {
        completed_count(app, &id).await == others
    })
    .await;
    app.host.kill();
    app.reddit.set(
        "slowsub",
        Behaviour::Posts {
            posts: 10,
            stickied: 0,
        },
    );
    id
}

fn post(body: Value) -> HostRequest {
    HostRequest::post("/api/SummaryWomble", Vec::new()).json(&body)
}

#[tokio::test]
async fn a_job_killed_mid_way_is_resumed_after_restart_without_refetching_finished_subreddits() {
    let mut app = TestApp::start_with(vec![QUICK_ADOPTION]).await;
    let id = kill_mid_job(&mut app, &["fastone", "fasttwo", "slowsub"]).await;
    app.host.restart().await;

    let done = app.wait_terminal(&id, WAIT).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 2, "claimed once, adopted once");
    let results = done["results"]["results"].as_array().unwrap();
    assert!(results.iter().all(|r| r["status"] == "success"), "{done}");
    // Finished subreddits were not fetched again; the one in flight at the kill was.
    assert_eq!(app.reddit.listing_requests("fastone"), 1);
    assert_eq!(app.reddit.listing_requests("fasttwo"), 1);
    assert_eq!(app.reddit.listing_requests("slowsub"), 2);
    // One topic blob per subreddit, each the one the status names.
    let mut blobs = output_blobs(&app).await;
    blobs.sort();
    let mut named: Vec<String> = results
        .iter()
        .map(|r| r["blob_name"].as_str().unwrap().to_owned())
        .collect();
    named.sort();
    assert_eq!(blobs, named);
}

#[tokio::test]
async fn two_instances_adopt_a_stale_job_exactly_once() {
    let mut app = TestApp::start_with(vec![QUICK_ADOPTION]).await;
    let id = kill_mid_job(&mut app, &["fastone", "slowsub"]).await;

    let (second, third) = tokio::join!(app.another_instance(), app.another_instance());
    let done = app.wait_stored_terminal(&id, WAIT).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 2);
    let adoptions = [second.logs(), third.logs()]
        .iter()
        .filter(|logs| logs.contains("adopting a job whose worker stopped"))
        .count();
    assert_eq!(adoptions, 1, "exactly one instance adopts the job");
    assert_eq!(app.reddit.listing_requests("fastone"), 1);
    assert_eq!(app.reddit.listing_requests("slowsub"), 2);
}

#[tokio::test]
async fn a_cancelled_job_stops_before_its_next_subreddit_and_keeps_finished_results() {
    let app = TestApp::start().await;
    // Twelve slow subreddits: eight are fetched at once, the last four wait their turn.
    let names: Vec<String> = (0..12).map(|i| format!("slow{i}")).collect();
    for name in &names {
        app.reddit
            .set(name, Behaviour::Slow(Duration::from_millis(1500)));
    }
    let topics: Vec<&str> = names.iter().map(String::as_str).collect();
    let id = app.submit(job(&topics, 1)).await;

    let cancel = app
        .host
        .forward(HostRequest::delete(&format!(
            "/api/SummaryWomble?job_id={id}"
        )))
        .await;
    assert_eq!(cancel.status, 202, "{}", cancel.text());
    assert!(cancel.json()["cancel_requested_at"].is_string());

    let done = app.wait_terminal(&id, WAIT).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    let results = done["results"]["results"].as_array().unwrap();
    assert_eq!(results.len(), 12);
    let skipped: Vec<&str> = results
        .iter()
        .filter(|r| r["status"] == "skipped")
        .map(|r| r["subreddit"].as_str().unwrap())
        .collect();
    assert!(
        !skipped.is_empty(),
        "the queued subreddits are skipped: {done}"
    );
    for name in &skipped {
        assert_eq!(
            app.reddit.listing_requests(name),
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
        .host
        .forward(post(json!({"action": "cancel", "job_id": id})))
        .await;
    assert_eq!(again.status, 409);
    assert!(again.json()["error"]
        .as_str()
        .unwrap()
        .contains("cancelled"));
    let unknown = app
        .host
        .forward(post(
            json!({"action": "cancel", "job_id": uuid::Uuid::new_v4().to_string()}),
        ))
        .await;
    assert_eq!(unknown.status, 404);
}

#[tokio::test]
async fn a_queued_job_is_cancelled_at_once() {
    let app = TestApp::start_with(vec![("MAX_CONCURRENT_JOBS", "1")]).await;
    app.reddit
        .set("blocker", Behaviour::Slow(Duration::from_secs(3)));
    let blocker = app.submit(job(&["blocker"], 1)).await;
    let queued = app.submit(job(&["technology"], 1)).await;
    let cancel = app
        .host
        .forward(post(json!({"action": "cancel", "job_id": queued})))
        .await;
    assert_eq!(cancel.status, 202);
    assert_eq!(cancel.json()["status"], "cancelled");
    assert_eq!(cancel.json()["results"]["results"][0]["status"], "skipped");
    app.wait_terminal(&blocker, WAIT).await;
    assert_eq!(
        app.stored_status(&queued).await.unwrap()["status"],
        "cancelled"
    );
    assert_eq!(app.reddit.listing_requests("technology"), 0);
}

#[tokio::test]
async fn a_finished_job_can_be_retried_as_a_new_job() {
    let app = TestApp::start().await;
    app.reddit.set("privatesub", Behaviour::Private);
    let first = app.submit(job(&["privatesub"], 2)).await;
    assert_eq!(app.wait_terminal(&first, WAIT).await["status"], "failed");

    app.reddit.set(
        "privatesub",
        Behaviour::Posts {
            posts: 5,
            stickied: 0,
        },
    );
    let retry = app
        .host
        .forward(post(json!({"action": "retry", "job_id": first})))
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
    let app = TestApp::start().await;
    app.reddit
        .set("slowsub", Behaviour::Slow(Duration::from_secs(3)));
    let id = app.submit(job(&["slowsub"], 1)).await;
    let retry = app
        .host
        .forward(post(json!({"action": "retry", "job_id": id})))
        .await;
    assert_eq!(retry.status, 409);
    let unknown = app
        .host
        .forward(post(
            json!({"action": "retry", "job_id": uuid::Uuid::new_v4().to_string()}),
        ))
        .await;
    assert_eq!(unknown.status, 404);
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_original_ticket_and_starts_nothing() {
    let app = TestApp::start().await;
    let submit = |key: &'static str| {
        app.host.forward(
            HostRequest::post("/api/SummaryWomble", Vec::new())
                .header("Idempotency-Key", key)
                .json(&job(&["technology"], 1)),
        )
    };
    let first = submit("order-42").await;
    let second = submit("order-42").await;
    assert_eq!(first.status, 202);
    assert_eq!(second.status, 202);
    assert_eq!(first.json()["job_id"], second.json()["job_id"]);

    // Eight at once with a new key: one job.
    let answers = futures::future::join_all((0..8).map(|_| submit("order-43"))).await;
    let ids: HashSet<String> = answers
        .iter()
        .map(|answer| {
            assert_eq!(answer.status, 202, "{}", answer.text());
            answer.json()["job_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let statuses = app
        .container
        .names()
        .await
        .into_iter()
        .filter(|n| n.ends_with("/status.json"))
        .count();
    assert_eq!(statuses, 2, "one job per key");
}

#[tokio::test]
async fn jobs_are_listed_newest_first_a_page_at_a_time() {
    let app = TestApp::start().await;
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
        let page = app.host.forward(HostRequest::get(&query)).await;
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
        .host
        .forward(post(
            json!({"action": "list", "status": "completed", "top": 100}),
        ))
        .await
        .json();
    assert_eq!(completed["jobs"].as_array().unwrap().len(), 5);
    let failed = app
        .host
        .forward(HostRequest::get("/api/SummaryWomble?status=failed"))
        .await
        .json();
    assert_eq!(failed["jobs"], json!([]));
    assert_eq!(failed["continuation"], Value::Null);

    let metrics = app.host.forward(post(json!({"action": "metrics"}))).await;
    assert_eq!(metrics.status, 200);
    let metrics = metrics.json();
    assert_eq!(metrics["total_jobs"], 5);
    assert_eq!(metrics["by_status"]["completed"], 5);
    assert_eq!(metrics["success_rate"], 1.0);
    assert!(metrics["p95_duration_seconds"].as_f64().unwrap() >= 0.0);
}

#[tokio::test]
async fn high_priority_jobs_leave_the_queue_first() {
    let app = TestApp::start_with(vec![("MAX_CONCURRENT_JOBS", "1")]).await;
    app.reddit
        .set("blocker", Behaviour::Slow(Duration::from_secs(2)));
    let blocker = app.submit(job(&["blocker"], 1)).await;
    let normal_one = app.submit(job(&["technology"], 1)).await;
    let normal_two = app.submit(job(&["gadgets"], 1)).await;
    let high = app
        .submit(json!({"topics": ["programming"], "limit": 1, "priority": "high"}))
        .await;
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
    assert!(app.host.logs().contains("queue_depth"));
}

/// What a callback receiver got: the signature header and the body.
type Deliveries = Arc<Mutex<Vec<(Option<String>, Vec<u8>)>>>;

/// A receiver that checks the callback's signature and fails the first delivery.
#[tokio::test]
async fn the_completion_callback_is_signed_and_retried() {
    use warp::Filter;
    let received: Deliveries = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let routes = {
        let received = received.clone();
        warp::post()
            .and(warp::header::optional::<String>("x-womble-signature"))
            .and(warp::body::bytes())
            .map(move |signature: Option<String>, body: bytes::Bytes| {
                let mut received = received.lock().unwrap();
                received.push((signature, body.to_vec()));
                let status = if received.len() == 1 { 500 } else { 204 };
                warp::reply::with_status(
                    warp::reply(),
                    warp::http::StatusCode::from_u16(status).unwrap(),
                )
            })
    };
    tokio::spawn(warp::serve(routes).incoming(listener).run());

    let key = "callback-signing-key";
    let app = TestApp::start_with(vec![
        ("CALLBACK_SIGNING_KEY", key),
        ("ALLOW_INSECURE_CALLBACKS", "true"),
    ])
    .await;
    let ticket = app
        .start_job(json!({"topics": ["technology"], "limit": 1, "callback_url": format!("http://127.0.0.1:{port}/hook")}))
        .await;
    let id = ticket["job_id"].as_str().unwrap().to_owned();
    let done = app.wait_terminal(&id, WAIT).await;
    wait_for("the callback to be delivered", WAIT, async || {
        received.lock().unwrap().len() >= 2
    })
    .await;

    let received = received.lock().unwrap().clone();
    // The callback body is the final document without the delivery's own record.
    let mut done = done;
    done.as_object_mut().unwrap().remove("callback");
    for (signature, body) in &received {
        let expected = summary_womble::jobs::callback::signature(key.as_bytes(), body);
        assert_eq!(signature.as_deref(), Some(expected.as_str()));
        let document: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(
            document, done,
            "the callback carries the final status document"
        );
    }
    // Delivery trouble never changes the outcome.
    assert_eq!(app.stored_status(&id).await.unwrap()["status"], "completed");
    assert!(!app.host.logs().contains(key));
}

#[tokio::test]
async fn storage_down_at_submit_answers_503_and_starts_nothing() {
    let azurite = OwnAzurite::start();
    let app = TestApp::start_on(azurite.container().await, vec![]).await;
    azurite.down();
    let answer = app.host.forward(post(job(&["technology"], 1))).await;
    assert_eq!(answer.status, 503, "{}", answer.text());
    assert!(answer.json()["error"]
        .as_str()
        .unwrap()
        .contains("Storage is unavailable"));
    azurite.up();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(app.container.names().await.is_empty(), "nothing was stored");
    assert!(app.reddit.requests().is_empty(), "nothing was started");
}

#[tokio::test]
async fn storage_lost_during_a_job_and_back_leaves_the_job_terminal_and_consistent() {
    let azurite = OwnAzurite::start();
    let app = TestApp::start_on(azurite.container().await, vec![]).await;
    app.reddit
        .set("slowsub", Behaviour::Slow(Duration::from_secs(2)));
    let id = app.submit(job(&["fastone", "slowsub"], 2)).await;
    wait_for("the job to run", WAIT, async || {
        completed_count(&app, &id).await >= 1
    })
    .await;
    azurite.down();
    // The slow subreddit answers while storage is away; its blob and the status must wait.
    tokio::time::sleep(Duration::from_secs(4)).await;
    azurite.up();

    let done = app.wait_terminal(&id, WAIT).await;
    assert_eq!(done["status"], "completed", "{done}");
    let results = done["results"]["results"].as_array().unwrap();
    assert!(results.iter().all(|r| r["status"] == "success"), "{done}");
    for result in results {
        let name = result["blob_name"].as_str().unwrap();
        let blob = app
            .container
            .read_json(name)
            .await
            .expect("every named blob exists");
        assert_eq!(blob["job_id"], id.as_str());
        assert_eq!(blob["count"], result["topics_count"]);
    }
    assert_eq!(output_blobs(&app).await.len(), 2);
}

#[tokio::test]
async fn an_output_blob_never_overwrites_another_jobs_and_a_resumed_job_writes_none_twice() {
    use summary_womble::jobs::{JobId, StatusRepository};
    let container = crate::support::azurite::Container::fresh().await;
    let repository = StatusRepository::new(container.store.clone());
    let (first, second) = (JobId::new(), JobId::new());
    let stem = "20261128_120000_reddit_technology";
    let name_one = repository
        .store_output(first, stem, &json!({"job_id": first, "n": 1}))
        .await
        .unwrap();
    let name_two = repository
        .store_output(second, stem, &json!({"job_id": second, "n": 2}))
        .await
        .unwrap();
    assert_eq!(name_one, format!("{stem}.json"));
    assert_eq!(
        name_two,
        format!("{stem}_{}.json", &second.to_string()[..8])
    );
    // The first job, resumed, finds its own blob and writes nothing new.
    let again = repository
        .store_output(first, stem, &json!({"job_id": first, "n": 3}))
        .await
        .unwrap();
    assert_eq!(again, name_one);
    assert_eq!(container.read_json(&name_one).await.unwrap()["n"], 1);
    assert_eq!(container.read_json(&name_two).await.unwrap()["n"], 2);
    assert_eq!(container.names().await.len(), 2);
}
