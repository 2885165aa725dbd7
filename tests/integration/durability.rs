//! Jobs that are never lost: SIGKILL and restart, adoption by another instance, idempotent
//! submits, callbacks, and storage outages. (Cancel, retry, list paging and priorities need no
//! process of their own: they are in `in_process`.)

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use testkit::app::{job, post, JobApi, TestApp};
use testkit::azurite::OwnAzurite;
use testkit::fake_reddit::Behaviour;
use testkit::host::HostRequest;
use testkit::poll;

const WAIT: Duration = Duration::from_secs(45);

/// Stale after 5 s: adoption within seconds, not minutes.
const QUICK_ADOPTION: (&str, &str) = ("JOB_STALE_AFTER_SECONDS", "5");

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

/// Starts a job whose last subreddit, `slowsub`, is held; once every other subreddit is
/// recorded, SIGKILLs the handler and lets `slowsub` answer normally from then on.
async fn kill_mid_job(app: &mut TestApp, topics: &[&str]) -> String {
    assert_eq!(topics.last(), Some(&"slowsub"));
    let hold = app.reddit.hold(&["slowsub"]);
    let id = app.submit(job(topics, 2)).await;
    let others = topics.len() as u64 - 1;
    poll::until("the other subreddits to be recorded", WAIT, async || {
        completed_count(app, &id).await == others
    })
    .await;
    hold.until_arrived(1, WAIT).await;
    app.host.kill();
    app.reddit.set(
        "slowsub",
        Behaviour::Posts {
            posts: 10,
            stickied: 0,
        },
    );
    // The killed handler's request is answered into a closed connection.
    hold.release();
    id
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
    let statuses = app.container.status_documents().await.len();
    assert_eq!(statuses, 2, "one job per key");
}

/// What a callback receiver got: the signature header and the body.
type Deliveries = Arc<Mutex<Vec<(Option<String>, Vec<u8>)>>>;

/// A receiver that checks the callback's signature and fails the first delivery.
#[tokio::test]
async fn the_completion_callback_is_signed_and_retried() {
    use warp::Filter;
    let received: Deliveries = Arc::default();
    let listener = testkit::port::listener().await;
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
    poll::until("the callback to be delivered", WAIT, async || {
        received.lock().unwrap().len() >= 2
    })
    .await;

    let received = received.lock().unwrap().clone();
    // The callback body is the final document without what the delivery moves: its own
    // record, and the usage its writes add to.
    let mut done = done;
    done.as_object_mut().unwrap().remove("callback");
    done.as_object_mut().unwrap().remove("usage");
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
    let azurite = OwnAzurite::start().await;
    let app = TestApp::start_on(azurite.container().await, vec![]).await;
    azurite.down();
    let answer = app.host.forward(post(&job(&["technology"], 1))).await;
    assert_eq!(answer.status, 503, "{}", answer.text());
    assert!(answer.json()["error"]
        .as_str()
        .unwrap()
        .contains("Storage is unavailable"));
    azurite.up();
    // A job started once storage is back: by its end, anything the refused start had set
    // going would show.
    let later = app.submit(job(&["gadgets"], 1)).await;
    app.wait_terminal(&later, WAIT).await;
    let stored = app.container.names().await;
    assert!(
        stored
            .iter()
            .all(|name| name.starts_with(&format!("jobs/{later}/"))
                || (name.starts_with("jobs/index/") && name.ends_with(&format!("_{later}")))
                || name.contains("gadgets")),
        "nothing of the refused start was stored: {stored:?}"
    );
    assert_eq!(
        app.reddit.listing_requests("technology"),
        0,
        "nothing was started"
    );
}

#[tokio::test]
async fn storage_lost_during_a_job_and_back_leaves_the_job_terminal_and_consistent() {
    let azurite = OwnAzurite::start().await;
    let app = TestApp::start_on(azurite.container().await, vec![]).await;
    let hold = app.reddit.hold(&["slowsub"]);
    let id = app.submit(job(&["fastone", "slowsub"], 2)).await;
    poll::until("the job to run", WAIT, async || {
        completed_count(&app, &id).await >= 1
    })
    .await;
    hold.until_arrived(1, WAIT).await;
    azurite.down();
    // The held subreddit answers while storage is away; its blob and the status must wait.
    let storage_failure = "storage call failed; retrying";
    let failures_before = app.host.logs().matches(storage_failure).count();
    hold.release();
    poll::until("a storage call to fail", WAIT, async || {
        app.host.logs().matches(storage_failure).count() > failures_before
    })
    .await;
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
    let container = testkit::azurite::Container::fresh().await;
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
