//! The hand-off to the next stage (docs/api.md section 10), whatever `TEST_JOB_DISPATCH` says:
//! with `COMPLETION_QUEUE` set, every job that ends puts one message on that queue in Azurite,
//! across a SIGKILL too; without it, nothing is sent and no queue is made.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use testkit::app::{job, post, JobApi as _, TestApp};
use testkit::azurite::{self, OwnAzurite, Queue};
use testkit::fake_reddit::Behaviour;
use testkit::poll;
use testkit::storage_proxy::StorageProxy;

use crate::openapi::Spec;

const WAIT: Duration = Duration::from_secs(60);
/// Heartbeats and claim renewals every 1.25 s; a claim not renewed for 5 s has lapsed.
const QUICK_ADOPTION: (&str, &str) = ("JOB_STALE_AFTER_SECONDS", "5");

/// A completion queue name of the test's own; the app creates the queue.
fn completion_queue_name() -> String {
    format!("done-{}", uuid::Uuid::new_v4().simple())
}

/// The messages on `queue`, as the next stage's queue trigger reads them: each stored as
/// base64 (the trigger's default encoding) of a JSON object.
async fn messages(queue: &Queue) -> Vec<Value> {
    let stored = queue
        .queue
        .peek_stored()
        .await
        .expect("Azurite peeks the queue");
    stored
        .iter()
        .map(|text| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap_or_else(|_| panic!("not base64 on the wire: {text}"));
            serde_json::from_slice(&bytes).expect("the message is JSON")
        })
        .collect()
}

/// The job's hand-off state, as its status blob's metadata holds it.
async fn handoff_state(app: &TestApp, job_id: &str) -> Option<String> {
    testkit::status::read(app.container.store.as_ref(), job_id)
        .await
        .and_then(|stored| stored.metadata.get("handoff").map(str::to_owned))
}

/// Waits until the job's hand-off is recorded sent: its message was on the queue before that.
async fn wait_sent(app: &TestApp, job_id: &str) {
    poll::until("the hand-off recorded sent", WAIT, async || {
        handoff_state(app, job_id).await.as_deref() == Some("sent")
    })
    .await;
}

/// The message the ended job's stored status document calls for.
async fn expected_message(app: &TestApp, job_id: &str) -> Value {
    let stored = app.stored_status(job_id).await.unwrap();
    let blob_names: Vec<Value> = stored["results"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|outcome| outcome["status"] == "success")
        .map(|outcome| outcome["blob_name"].clone())
        .collect();
    json!({
        "job_id": job_id,
        "status": stored["status"],
        "finished_at": stored["finished_at"],
        "container": app.container.name,
        "status_blob": format!("jobs/{job_id}/status.json"),
        "blob_names": blob_names,
    })
}

#[tokio::test]
async fn completed_failed_and_cancelled_jobs_each_put_one_message_naming_their_end_and_blobs() {
    let name = completion_queue_name();
    let app = TestApp::start_with(vec![("COMPLETION_QUEUE", &name)]).await;
    let queue = Queue::named(app.container.connection_string(), &name);
    app.reddit.set("privatesub", Behaviour::Private);
    let hold = app.reddit.hold(&["slowsub"]);

    let completed = app.submit(job(&["technology", "privatesub"], 2)).await;
    let failed = app.submit(job(&["privatesub"], 2)).await;
    let cancelled = app.submit(job(&["slowsub", "gadgets"], 2)).await;
    hold.until_arrived(1, WAIT).await;
    let cancel = app
        .call(post(&json!({"action": "cancel", "job_id": cancelled})))
        .await;
    assert_eq!(cancel.status, 202, "{}", cancel.text());
    hold.release();

    let spec = Spec::load();
    let mut expected = Vec::new();
    for (job_id, status) in [
        (&completed, "completed"),
        (&failed, "failed"),
        (&cancelled, "cancelled"),
    ] {
        let ended = app.wait_terminal(job_id, WAIT).await;
        assert_eq!(ended["status"], status, "{ended}");
        wait_sent(&app, job_id).await;
        expected.push(expected_message(&app, job_id).await);
    }
    let mut got = messages(&queue).await;
    got.sort_by_key(|message| message["status"].as_str().unwrap().to_owned());
    expected.sort_by_key(|message| message["status"].as_str().unwrap().to_owned());
    assert_eq!(got, expected, "one message per job, with its outcome");

    for message in &got {
        spec.check_schema("CompletionMessage", message);
        // The next stage finds what the message names.
        let container = &app.container;
        assert!(container
            .read(message["status_blob"].as_str().unwrap())
            .await
            .is_some());
        for blob in message["blob_names"].as_array().unwrap() {
            let output = container.read_json(blob.as_str().unwrap()).await.unwrap();
            assert_eq!(output["job_id"], message["job_id"]);
        }
    }
    let completed_message = &got[1];
    assert_eq!(completed_message["status"], "completed");
    assert_eq!(completed_message["blob_names"].as_array().unwrap().len(), 1);
    // The public document says nothing of the hand-off.
    for job_id in [&completed, &failed, &cancelled] {
        let answer = app.status(job_id).await;
        assert!(!answer.text().contains("handoff"), "{}", answer.text());
    }
}

#[tokio::test]
async fn a_hand_off_owed_by_a_killed_instance_is_sent_by_another_once() {
    let name = completion_queue_name();
    // The first instance reaches the queue service through a proxy that refuses every send to
    // the completion queue: its hand-off stays owed, under its claim, until it is killed.
    let proxy = StorageProxy::start_for_queues(&azurite::connection_string()).await;
    let refused = Arc::new(AtomicUsize::new(0));
    let sends = format!("/{}/{name}/messages", azurite::ACCOUNT);
    let counter = refused.clone();
    proxy.fail(move |seen| {
        (seen.method.as_str() == "POST" && seen.path == sends).then(|| {
            counter.fetch_add(1, Ordering::SeqCst);
            503
        })
    });
    let mut app = TestApp::start_with(vec![
        ("AzureWebJobsStorage", &proxy.connection_string),
        ("COMPLETION_QUEUE", &name),
        QUICK_ADOPTION,
    ])
    .await;
    let queue = Queue::named(&azurite::connection_string(), &name);

    let id = app.submit(job(&["technology"], 1)).await;
    app.wait_terminal(&id, WAIT).await;
    poll::until("the first instance to try sending", WAIT, async || {
        refused.load(Ordering::SeqCst) >= 1
    })
    .await;
    let owed = testkit::status::read(app.container.store.as_ref(), &id)
        .await
        .unwrap();
    assert_eq!(owed.metadata.get("handoff"), Some("owed"));
    assert_eq!(owed.metadata.get("handoff_claims"), Some("1"));
    assert!(owed.metadata.get("handoff_claimed_until").is_some());
    app.host.kill();

    // Another instance, with the queue service in reach: its scan takes the hand-off over
    // once the dead instance's claim has lapsed.
    let second = app
        .another_instance_with(vec![(
            "AzureWebJobsStorage",
            azurite::connection_string().as_str(),
        )])
        .await;
    wait_sent(&app, &id).await;
    assert_eq!(
        messages(&queue).await,
        vec![expected_message(&app, &id).await],
        "sent once"
    );
    let sent = testkit::status::read(app.container.store.as_ref(), &id)
        .await
        .unwrap();
    assert_eq!(sent.metadata.get("handoff_claims"), Some("2"));
    assert_eq!(sent.metadata.get("handoff_claimed_until"), None);
    assert!(
        second.wait_for_log("hand-off sent", WAIT).await,
        "{}",
        second.logs()
    );
}

#[tokio::test]
async fn without_a_completion_queue_nothing_is_sent_and_no_queue_is_made() {
    // An Azurite of this test's own: every queue on it is this app's.
    let azurite = OwnAzurite::start().await;
    let app = TestApp::start_on(azurite.container().await, vec![]).await;
    let hold = app.reddit.hold(&["slowsub"]);
    let completed = app.submit(job(&["technology"], 1)).await;
    let cancelled = app.submit(job(&["slowsub"], 1)).await;
    hold.until_arrived(1, WAIT).await;
    let cancel = app
        .call(post(&json!({"action": "cancel", "job_id": cancelled})))
        .await;
    assert_eq!(cancel.status, 202, "{}", cancel.text());
    hold.release();
    for job_id in [&completed, &cancelled] {
        app.wait_terminal(job_id, WAIT).await;
        // The job never wanted a hand-off, so nothing can come to owe one.
        assert_eq!(handoff_state(&app, job_id).await, None);
    }
    // Queues are made at start, in the background, or by a send: by the time two jobs have
    // run and ended, only the job queues of queue dispatch exist.
    let expected: Vec<String> = match testkit::Dispatch::under_test() {
        testkit::Dispatch::Inline => Vec::new(),
        testkit::Dispatch::Queue => {
            let jobs = app.container.name.clone();
            vec![jobs.clone(), format!("{jobs}-poison")]
        }
    };
    assert_eq!(azurite.queue_names().await, expected);
}
