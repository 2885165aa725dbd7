//! Queue dispatch (docs/api.md section 9), whatever `TEST_JOB_DISPATCH` says: the handler under
//! the host simulator's queue listener on Azurite's queue service, or consuming the queue
//! itself in standalone mode. Scale-out with a SIGKILL, the poison path, a refused send, a job
//! stored without its message, a duplicate delivery, and the queue depth in the metrics.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use summary_womble::jobs::request::{JobRequest, Limit, Priority, Source};
use summary_womble::jobs::{JobId, StatusDocument};
use summary_womble::reddit::Subreddit;
use summary_womble::store::queue::poison_queue_name;
use summary_womble::store::WriteCondition;
use testkit::app::{job, post, JobApi, TestApp, QUEUE_VISIBILITY_UNDER_TEST};
use testkit::azurite::{self, Container, Queue};
use testkit::fake_reddit::FakeReddit;
use testkit::host::{HostOptions, HostSimulator, QueueListenerOptions};
use testkit::poll;
use testkit::process::{HandlerProcess, Listen};
use testkit::storage_proxy::StorageProxy;

use crate::openapi::Spec;

const WAIT: Duration = Duration::from_secs(60);
/// Heartbeats every 1.25 s; a job quiet for 5 s has lost its worker.
const QUICK_ADOPTION: (&str, &str) = ("JOB_STALE_AFTER_SECONDS", "5");

/// The simulated host's listener, with a killed instance's messages back after seconds and a
/// failed delivery tried again after one.
fn listener() -> QueueListenerOptions {
    QueueListenerOptions::default()
        .visibility_timeout(QUEUE_VISIBILITY_UNDER_TEST)
        .retry_after_failure(Duration::from_secs(1))
}

/// An app with queue dispatch on a queue named as its container, under the simulated host.
async fn queued_app(container: Container, extra: Vec<(&str, &str)>) -> TestApp {
    let queue = container.name.clone();
    let mut settings = vec![
        ("JOB_DISPATCH", "queue"),
        ("JOB_QUEUE", queue.as_str()),
        QUICK_ADOPTION,
    ];
    settings.extend(extra);
    TestApp::start_hosted(
        container,
        settings,
        HostOptions::default().queue_listener(listener()),
    )
    .await
}

/// The subreddit a listing request asked for (`/r/<name>/hot`).
fn listed(path: &str) -> Option<&str> {
    path.strip_prefix("/r/")?.strip_suffix("/hot")
}

/// Subreddit name of an output blob (`<stamp>_reddit_<subreddit>[_<id>].json`).
fn subreddit_of_output(name: &str) -> Option<&str> {
    let rest = name.split_once("_reddit_")?.1;
    rest.split(['_', '.']).next()
}

async fn submit_to(instance: &HostSimulator, body: &Value) -> String {
    let response = instance.forward(post(body)).await;
    assert_eq!(response.status, 202, "start answered {}", response.text());
    response.json()["job_id"].as_str().unwrap().to_owned()
}

/// 3 instances share one queue; 300 jobs from 20 clients; one instance is SIGKILLed mid-run
/// and a new one takes its place. Every job completes, every subreddit of every job has one
/// output blob, and the fake Reddit's log shows no job run by two processes at once: a
/// subreddit is fetched a second time only when one of its two fetches was the killed
/// process's. Each process sends a user agent of its own, so who sent a request is read off the
/// request itself, never off the moment it arrived (a request the killed process sent just
/// before its death can arrive after the kill).
#[tokio::test]
async fn three_instances_share_three_hundred_jobs_and_a_killed_one_loses_none() {
    let app = queued_app(
        Container::fresh().await,
        vec![("REDDIT_USER_AGENT", "instance-0")],
    )
    .await;
    app.reddit.set_unlimited();
    app.reddit.set_latency(Duration::from_millis(100));
    let mut instances = [
        app.another_instance_with(vec![("REDDIT_USER_AGENT", "instance-1")])
            .await,
        app.another_instance_with(vec![("REDDIT_USER_AGENT", "instance-2")])
            .await,
    ];

    let clients = (0..20).map(|client| {
        let targets = [&app.host, &instances[0], &instances[1]];
        async move {
            let mut ids = Vec::new();
            for k in 0..15 {
                let n = client * 15 + k;
                let body = job(&[&format!("j{n:03}a"), &format!("j{n:03}b")], 2);
                ids.push(submit_to(targets[n % 3], &body).await);
            }
            ids
        }
    });
    let ids: Vec<String> = futures::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(ids.len(), 300);

    // Kill instance-1 while the work is in full swing.
    poll::until("a fifth of the listings to be fetched", WAIT, async || {
        app.reddit.listing_requests_total() >= 120
    })
    .await;
    instances[0].kill();
    let _replacement = app
        .another_instance_with(vec![("REDDIT_USER_AGENT", "instance-3")])
        .await;

    let mut waiting: HashSet<String> = ids.iter().cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !waiting.is_empty() {
        let mut done = Vec::new();
        for id in &waiting {
            if let Some(document) = app.stored_status(id).await {
                match document["status"].as_str() {
                    Some("completed") => done.push(id.clone()),
                    Some("failed" | "cancelled") => panic!("job {id} ended {document}"),
                    _ => {}
                }
            }
        }
        for id in done {
            waiting.remove(&id);
        }
        assert!(
            Instant::now() < deadline,
            "{} jobs not completed; instance-1 log:\n{}",
            waiting.len(),
            instances[0].logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // One output blob per subreddit of every job.
    let mut outputs: BTreeMap<String, usize> = BTreeMap::new();
    for name in app.container.names().await {
        if let Some(subreddit) = subreddit_of_output(&name) {
            *outputs.entry(subreddit.to_owned()).or_default() += 1;
        }
    }
    assert_eq!(outputs.len(), 600, "a subreddit has no output blob");
    let doubled: Vec<_> = outputs.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        doubled.is_empty(),
        "subreddits with several blobs: {doubled:?}"
    );

    // Who fetched what: instance-1 is the killed process and no other.
    let mut fetches: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for seen in app.reddit.requests() {
        if let Some(subreddit) = listed(&seen.path) {
            fetches
                .entry(subreddit.to_owned())
                .or_default()
                .push(seen.user_agent.unwrap_or_default());
        }
    }
    assert_eq!(fetches.len(), 600);
    let by_the_killed = |agent: &String| agent.contains("instance-1");
    let mut refetched = 0;
    for (subreddit, seen) in &fetches {
        match seen.as_slice() {
            [_] => {}
            [_, _] => {
                refetched += 1;
                assert_eq!(
                    seen.iter().filter(|agent| by_the_killed(agent)).count(),
                    1,
                    "r/{subreddit} was fetched twice, not only because of the kill: {seen:?}"
                );
            }
            more => panic!("r/{subreddit} was fetched {} times", more.len()),
        }
    }
    eprintln!(
        "300 jobs on 3 instances, one killed: {refetched} subreddits fetched again after the kill"
    );
}

/// Storage refuses every write that would start the job: each delivery fails after its
/// retries, the host delivers again, and the last delivery ends the job `failed`, naming the
/// cause, before the message goes to the poison queue.
#[tokio::test]
async fn a_job_whose_deliveries_keep_failing_ends_failed_naming_the_cause_and_its_message_is_poisoned(
) {
    let proxy = StorageProxy::start(&azurite::connection_string()).await;
    let container = Container::fresh().await;
    let queue = container.name.clone();
    let app = queued_app(
        container,
        vec![("AzureWebJobsStorage", proxy.connection_string.as_str())],
    )
    .await;
    // A claim writes `running`; the create (`queued`) and the end (`failed`) get through.
    proxy.fail(|seen| {
        let claim = seen.method.as_str() == "PUT"
            && seen.path.ends_with("/status.json")
            && String::from_utf8_lossy(seen.body).contains(r#""status":"running""#);
        claim.then_some(503)
    });
    let id = app.submit(job(&["neverfetched"], 2)).await;

    let poison = Queue::named(&azurite::connection_string(), &queue).poison();
    poll::until(
        "the message to reach the poison queue",
        WAIT * 2,
        async || !poison.visible_texts().await.is_empty(),
    )
    .await;
    // The stale-job scan may have sent the quiet job's message a second time; every message
    // in the poison queue names this job, and the first went through every delivery.
    for text in poison.visible_texts().await {
        let message: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(message["job_id"], id.as_str(), "{text}");
    }
    let record = app.host.queue_record();
    let poisoned = record.poisoned();
    let counts: Vec<u32> = record
        .deliveries_of(&poisoned[0].message_id)
        .iter()
        .map(|delivery| delivery.dequeue_count)
        .collect();
    assert_eq!(counts, [1, 2, 3, 4, 5]);

    let stored = app.stored_status(&id).await.unwrap();
    assert_eq!(stored["status"], "failed", "{stored}");
    let error = stored["error"].as_str().unwrap();
    assert!(error.contains("storage is unavailable"), "{error}");
    assert!(error.contains("delivery 5, the last"), "{error}");
    assert_eq!(app.reddit.listing_requests("neverfetched"), 0);
}

/// The queue service cannot be reached: the caller gets a 503 and the job is ended, not left
/// `queued` with nothing to run it.
#[tokio::test]
async fn a_job_whose_message_cannot_be_sent_gets_503_and_is_not_left_queued() {
    let container = Container::fresh().await;
    // Nothing listens on port 1 of this machine: every queue call is refused at once.
    let unreachable_queue = azurite::connection_string().replace(
        &azurite::queue_endpoint(),
        "http://127.0.0.1:1/devstoreaccount1",
    );
    let app = queued_app(
        container,
        vec![("AzureWebJobsStorage", unreachable_queue.as_str())],
    )
    .await;
    let response = app.call(post(&job(&["unsent"], 2))).await;
    assert_eq!(response.status, 503, "{}", response.text());
    assert!(response.json()["error"]
        .as_str()
        .unwrap()
        .contains("Storage is unavailable"));

    let documents: Vec<String> = app
        .container
        .names()
        .await
        .into_iter()
        .filter(|name| name.ends_with("/status.json"))
        .collect();
    assert_eq!(documents.len(), 1, "{documents:?}");
    let stored = app.container.read_json(&documents[0]).await.unwrap();
    assert_eq!(stored["status"], "failed", "{stored}");
    assert!(stored["error"]
        .as_str()
        .unwrap()
        .contains("could not be queued"));
    assert_eq!(app.reddit.listing_requests("unsent"), 0);
}

/// A process that died between storing a job and sending its message left a `queued` job with
/// no message: the stale-job scan sends it, once, and the job runs.
#[tokio::test]
async fn a_job_stored_without_its_message_is_sent_again_and_runs() {
    let app = queued_app(Container::fresh().await, vec![]).await;
    let created = summary_womble::jobs::status::now() - chrono::TimeDelta::minutes(5);
    let request = JobRequest {
        source: Source::Reddit,
        topics: vec![Subreddit::parse("stranded").unwrap()],
        limit: Limit::DEFAULT,
        priority: Priority::Normal,
        callback_url: None,
    };
    let stranded = StatusDocument::queued(JobId::new(), request, None, created);
    let id = stranded.job_id.to_string();
    app.container
        .store
        .put(
            &testkit::status::blob_name(&id),
            serde_json::to_vec(&stranded).unwrap().into(),
            "application/json",
            WriteCondition::IfNotExists,
        )
        .await
        .unwrap();

    let done = app.wait_stored_terminal(&id, WAIT).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 1);
    let stored = testkit::status::read(app.container.store.as_ref(), &id)
        .await
        .unwrap();
    assert!(
        stored.metadata.get("requeued_at").is_some(),
        "the requeue is recorded with the job's internals: {:?}",
        stored.metadata
    );
    assert_eq!(app.reddit.listing_requests("stranded"), 1);
}

/// A second message for a job that runs elsewhere, alive: its delivery waits for the job to
/// end, runs nothing, and lets go of its slot within about a second of the job's end, not a
/// heartbeat later (a quarter of `JOB_STALE_AFTER_SECONDS`: 30 s here, so a delivery that
/// looked again only then would miss the deadline below by far).
#[tokio::test]
async fn a_second_message_for_a_running_job_runs_nothing_and_ends_soon_after_the_job() {
    let app = queued_app(
        Container::fresh().await,
        vec![("JOB_STALE_AFTER_SECONDS", "120")],
    )
    .await;
    let hold = app.reddit.hold(&["slowone"]);
    let id = app.submit(job(&["slowone"], 2)).await;
    hold.until_arrived(1, WAIT).await;
    Queue::named(&azurite::connection_string(), &app.container.name)
        .send(&format!(r#"{{"job_id":"{id}"}}"#))
        .await;
    // The second delivery has read the job, found it running, and waits.
    assert!(
        app.host
            .wait_for_log("waiting for it to end or stop", WAIT)
            .await,
        "the second delivery never waited; log:\n{}",
        app.host.logs()
    );
    assert_eq!(app.host.queue_record().invocations().len(), 2);
    hold.release();

    let done = app.wait_stored_terminal(&id, WAIT).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 1, "claimed once");
    poll::until(
        "both deliveries to succeed soon after the job's end",
        // The old wait was a quarter of JOB_STALE_AFTER_SECONDS (120 s here): 30 s.
        Duration::from_secs(20),
        async || app.host.queue_record().succeeded().len() == 2,
    )
    .await;
    assert_eq!(app.reddit.listing_requests("slowone"), 1);
}

/// Two containers in standalone mode take the jobs of one queue between them.
#[tokio::test]
async fn standalone_processes_share_one_queue() {
    let reddit = FakeReddit::start().await;
    reddit.set_latency(Duration::from_millis(100));
    let container = Container::fresh().await;
    let mut env = container.env();
    env.extend(reddit.env());
    env.extend(
        [
            ("JOB_DISPATCH", "queue"),
            ("JOB_QUEUE", container.name.as_str()),
            ("MAX_CONCURRENT_JOBS", "2"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let root = testkit::app_root();
    let (first, second) = tokio::join!(
        HandlerProcess::start(&root, Listen::Standalone, &env),
        HandlerProcess::start(&root, Listen::Standalone, &env)
    );
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for n in 0..20 {
        let answer = client
            .post(first.url("/api/SummaryWomble"))
            .json(&job(&[&format!("s{n:02}")], 2))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202);
        let ticket: Value = answer.json().await.unwrap();
        ids.push(ticket["job_id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        poll::until("the job to complete", WAIT, async || {
            container
                .stored_status(id)
                .await
                .is_some_and(|document| document["status"] == "completed")
        })
        .await;
    }
    for n in 0..20 {
        assert_eq!(reddit.listing_requests(&format!("s{n:02}")), 1);
    }
    for process in [&first, &second] {
        assert!(
            process.logs().contains("delivery done"),
            "one process ran no job; its log:\n{}",
            process.logs()
        );
    }
}

/// The output in an account of its own (`OUTPUT_STORAGE_CONNECTION_STRING`) and the host's
/// storage in another (`AzureWebJobsStorage`, the connection `RunJob`'s trigger names): the job
/// messages go to the queue the trigger watches, in the host's account, and every job
/// completes with its documents and blobs in the output account. Nothing is left on either
/// account's job queue or poison queue.
#[tokio::test]
async fn with_the_output_in_an_account_of_its_own_jobs_go_through_the_queue_the_trigger_watches() {
    let output = Container::fresh().await;
    let output_account = azurite::connection_string();
    let host_account = azurite::second_account_connection_string();
    let queue = output.name.clone();
    let app = TestApp::start_hosted(
        output,
        vec![
            ("OUTPUT_STORAGE_CONNECTION_STRING", output_account.as_str()),
            ("AzureWebJobsStorage", host_account.as_str()),
            ("JOB_DISPATCH", "queue"),
            ("JOB_QUEUE", queue.as_str()),
        ],
        HostOptions::default().queue_listener(listener()),
    )
    .await;

    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(submit_to(&app.host, &job(&[&format!("acct{n}")], 2)).await);
    }
    for id in &ids {
        let done = app.wait_terminal(id, WAIT).await;
        assert_eq!(done["status"], "completed", "{done}");
        let stored = app
            .container
            .stored_status(id)
            .await
            .expect("the status document is in the output account");
        assert_eq!(stored["status"], "completed");
        let blob = done["results"]["results"][0]["blob_name"].as_str().unwrap();
        assert!(
            app.container.read(blob).await.is_some(),
            "{blob} is in the output account"
        );
    }

    // Each job's message was delivered through the trigger's queue and deleted.
    poll::until("every job's delivery to succeed", WAIT, async || {
        let delivered: HashSet<String> = app
            .host
            .queue_record()
            .succeeded()
            .iter()
            .filter(|invocation| invocation.queue == queue)
            .filter_map(|invocation| {
                serde_json::from_str::<Value>(&invocation.text).ok()?["job_id"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        ids.iter().all(|id| delivered.contains(id))
    })
    .await;
    assert!(app.host.queue_record().poisoned().is_empty());
    let jobs_queue = Queue::named(&host_account, &queue);
    assert_eq!(jobs_queue.visible_texts().await, Vec::<String>::new());
    assert_eq!(
        jobs_queue.poison().visible_texts().await,
        Vec::<String>::new()
    );
    // The output account holds no job queue at all: a queue that does not exist holds nothing.
    for left in [
        Queue::named(&output_account, &queue),
        Queue::named(&output_account, &queue).poison(),
    ] {
        assert_eq!(
            left.queue.peek_stored().await.unwrap_or_default(),
            Vec::<String>::new(),
            "the output account's {}",
            left.name
        );
    }
}

/// The app's metrics answer, checked against `openapi.yaml`.
async fn metrics(app: &TestApp) -> Value {
    let response = app.call(post(&json!({"action": "metrics"}))).await;
    assert_eq!(response.status, 200, "metrics answered {}", response.text());
    Spec::load().check("/api/SummaryWomble", "post", &response);
    response.json()
}

/// The `queue_depth` of the app's metrics answer.
async fn queue_depth(app: &TestApp) -> Value {
    metrics(app).await["queue_depth"].clone()
}

/// Three jobs held at Reddit, so each delivery runs and its message stays on the queue,
/// hidden, until the job ends; two messages parked in the poison queue. The metrics count
/// 3 and 2, and once the jobs end and their messages are deleted, 0 and 2.
#[tokio::test]
async fn the_metrics_count_the_messages_on_the_job_queue_and_the_poison_queue() {
    let app = queued_app(
        Container::fresh().await,
        vec![("JOB_STALE_AFTER_SECONDS", "120")],
    )
    .await;
    assert_eq!(queue_depth(&app).await, json!({"jobs": 0, "poison": 0}));
    let subreddits = ["depthone", "depthtwo", "depththree"];
    let hold = app.reddit.hold(&subreddits);
    let mut ids = Vec::new();
    for subreddit in subreddits {
        ids.push(app.submit(job(&[subreddit], 2)).await);
    }
    // Every job's message has been delivered (hidden) and its job is at Reddit.
    hold.until_arrived(3, WAIT).await;
    let poison = Queue::named(&azurite::connection_string(), &app.container.name).poison();
    poison.send(r#"{"job_id":"parked-one"}"#).await;
    poison.send(r#"{"job_id":"parked-two"}"#).await;
    assert_eq!(queue_depth(&app).await, json!({"jobs": 3, "poison": 2}));

    hold.release();
    for id in &ids {
        let done = app.wait_stored_terminal(id, WAIT).await;
        assert_eq!(done["status"], "completed", "{done}");
    }
    // A message is deleted once its delivery has answered, just after the job's end.
    poll::until("the job messages deleted", WAIT, async || {
        queue_depth(&app).await == json!({"jobs": 0, "poison": 2})
    })
    .await;
}

/// The queue service cannot be reached: the metrics still answer, from the status documents,
/// with both counts `null`, and the log says why.
#[tokio::test]
async fn with_the_queue_service_down_the_metrics_answer_with_null_counts_and_a_warning() {
    let unreachable_queue = azurite::connection_string().replace(
        &azurite::queue_endpoint(),
        "http://127.0.0.1:1/devstoreaccount1",
    );
    let app = queued_app(
        Container::fresh().await,
        vec![("AzureWebJobsStorage", unreachable_queue.as_str())],
    )
    .await;
    let metrics = metrics(&app).await;
    assert_eq!(
        metrics["queue_depth"],
        json!({"jobs": null, "poison": null}),
        "{metrics}"
    );
    assert_eq!(metrics["total_jobs"], 0, "{metrics}");
    assert!(
        app.host
            .wait_for_log("could not count the queue's messages", WAIT)
            .await,
        "no warning; log:\n{}",
        app.host.logs()
    );
    let logs = app.host.logs();
    let poison = poison_queue_name(&app.container.name);
    assert!(
        logs.lines()
            .any(|line| line.contains("could not count") && line.contains(&poison)),
        "the warning names the queue; log:\n{logs}"
    );
}
