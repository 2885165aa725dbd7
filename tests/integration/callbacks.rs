//! Completion callbacks: which URLs are refused at submit, what answers show of a callback URL,
//! and delivery that survives a SIGKILL and happens once per job across instances.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use testkit::app::{job, JobApi as _, TestApp};
use testkit::fake_reddit::Behaviour;
use testkit::host::HostRequest;
use testkit::poll;

const WAIT: Duration = Duration::from_secs(45);
const QUICK_ADOPTION: (&str, &str) = ("JOB_STALE_AFTER_SECONDS", "5");
const LOCAL_CALLBACKS: (&str, &str) = ("ALLOW_INSECURE_CALLBACKS", "true");
const SIGNING_KEY: &str = "callback-signing-key";

/// One callback request as the receiver saw it.
#[derive(Debug, Clone)]
struct Delivery {
    signature: Option<String>,
    body: Vec<u8>,
    /// Whether the receiver answered it 2xx.
    succeeded: bool,
}

impl Delivery {
    fn job_id(&self) -> String {
        let document: Value = serde_json::from_slice(&self.body).unwrap();
        document["job_id"].as_str().unwrap().to_owned()
    }
}

/// A callback receiver on 127.0.0.1. While `hold` is set it keeps each request waiting, then
/// answers it 503; otherwise it answers 204 at once.
struct Receiver {
    port: u16,
    hold: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Delivery>>>,
}

impl Receiver {
    async fn start() -> Self {
        use warp::Filter;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<Vec<Delivery>>> = Arc::default();
        let routes = {
            let (hold, seen) = (hold.clone(), seen.clone());
            warp::post()
                .and(warp::header::optional::<String>("x-womble-signature"))
                .and(warp::body::bytes())
                .then(move |signature: Option<String>, body: bytes::Bytes| {
                    let (hold, seen) = (hold.clone(), seen.clone());
                    async move {
                        let index = {
                            let mut seen = seen.lock().unwrap();
                            seen.push(Delivery {
                                signature,
                                body: body.to_vec(),
                                succeeded: false,
                            });
                            seen.len() - 1
                        };
                        let held = hold.load(Ordering::SeqCst);
                        while hold.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        let status = if held { 503 } else { 204 };
                        seen.lock().unwrap()[index].succeeded = !held;
                        warp::reply::with_status(
                            warp::reply(),
                            warp::http::StatusCode::from_u16(status).unwrap(),
                        )
                    }
                })
        };
        tokio::spawn(warp::serve(routes).incoming(listener).run());
        Self { port, hold, seen }
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("http://127.0.0.1:{}{path_and_query}", self.port)
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn hold(&self, hold: bool) {
        self.hold.store(hold, Ordering::SeqCst);
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.seen.lock().unwrap().clone()
    }

    /// Successful deliveries per job id.
    fn successes(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for delivery in self.deliveries().iter().filter(|d| d.succeeded) {
            *counts.entry(delivery.job_id()).or_default() += 1;
        }
        counts
    }
}

fn post(body: Value) -> HostRequest {
    HostRequest::post("/api/SummaryWomble", Vec::new()).json(&body)
}

#[tokio::test]
async fn callback_urls_to_local_or_private_places_are_refused_at_submit() {
    let strict = TestApp::start().await;
    let local = TestApp::start_with(vec![LOCAL_CALLBACKS]).await;
    let refused_everywhere = [
        "https://localhost./x",
        "https://app.localhost/x",
        "https://[::ffff:7f00:1]/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://[fc00::1]/x",
        "https://[fe80::1]/x",
        "https://[::1]/x",
        "https://100.64.0.1/x",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.1/x",
        "http://10.0.0.1/x",
        "https://192.168.1.10/x",
        "http://192.168.1.10/x",
        "https://0.0.0.0/x",
        "http://example.com/x",
    ];
    let refused_unless_local = [
        "https://localhost/x",
        "http://localhost:9000/x",
        "https://127.0.0.1/x",
        "http://127.0.0.1:9000/x",
        "https://127.1/x",
    ];
    let cases = refused_everywhere.iter().map(|url| (&local, *url)).chain(
        refused_everywhere
            .iter()
            .chain(&refused_unless_local)
            .map(|url| (&strict, *url)),
    );
    for (app, url) in cases {
        let answer = app
            .host
            .forward(post(json!({"topics": ["technology"], "callback_url": url})))
            .await;
        assert_eq!(answer.status, 400, "{url}: {}", answer.text());
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains("callback_url"), "{url}: {error}");
    }
    for app in [&strict, &local] {
        assert!(app.container.names().await.is_empty(), "nothing was stored");
    }
    // What ALLOW_INSECURE_CALLBACKS opens, it opens.
    for url in refused_unless_local {
        let answer = local
            .host
            .forward(post(json!({"topics": ["technology"], "callback_url": url})))
            .await;
        assert_eq!(answer.status, 202, "{url}: {}", answer.text());
    }
}

#[tokio::test]
async fn answers_show_only_the_origin_of_a_callback_url_and_storage_keeps_all_of_it() {
    let receiver = Receiver::start().await;
    let app = TestApp::start_with(vec![LOCAL_CALLBACKS]).await;
    app.reddit
        .set("slowsub", Behaviour::Slow(Duration::from_secs(2)));
    let full = receiver.url("/hooks/s3cr3t-path?token=s3cr3t-query");
    let origin = receiver.origin();
    let id = app
        .submit(json!({"topics": ["slowsub"], "limit": 1, "callback_url": full}))
        .await;
    let other = app
        .submit(json!({"topics": ["technology"], "limit": 1, "callback_url": full}))
        .await;

    let cancel = app
        .host
        .forward(post(json!({"action": "cancel", "job_id": id})))
        .await;
    assert_eq!(cancel.status, 202, "{}", cancel.text());
    let done = app.wait_terminal(&id, WAIT).await;
    app.wait_terminal(&other, WAIT).await;
    let list = app
        .host
        .forward(HostRequest::get("/api/SummaryWomble?top=10"))
        .await;
    assert_eq!(list.status, 200);
    let list = list.json();
    let listed = list["jobs"].as_array().unwrap();
    assert_eq!(listed.len(), 2);

    let mut shown = vec![cancel.json(), done];
    shown.extend(listed.iter().cloned());
    for document in &shown {
        assert_eq!(
            document["request"]["callback_url"],
            origin.as_str(),
            "{document}"
        );
        assert!(!document.to_string().contains("s3cr3t"), "{document}");
    }
    poll::until("both callbacks", WAIT, async || {
        receiver.successes().len() == 2
    })
    .await;
    for delivery in receiver.deliveries() {
        let body = String::from_utf8(delivery.body).unwrap();
        assert!(!body.contains("s3cr3t"), "{body}");
    }
    for job_id in [&id, &other] {
        let stored = app.stored_status(job_id).await.unwrap();
        assert_eq!(stored["request"]["callback_url"], full.as_str());
    }
}

/// Checks a delivery's signature and returns its body as JSON.
fn signed_document(delivery: &Delivery) -> Value {
    let expected =
        summary_womble::jobs::callback::signature(SIGNING_KEY.as_bytes(), &delivery.body);
    assert_eq!(delivery.signature.as_deref(), Some(expected.as_str()));
    serde_json::from_slice(&delivery.body).unwrap()
}

#[tokio::test]
async fn a_callback_owed_by_a_killed_instance_is_delivered_by_another() {
    let receiver = Receiver::start().await;
    receiver.hold(true);
    let mut app = TestApp::start_with(vec![
        QUICK_ADOPTION,
        LOCAL_CALLBACKS,
        ("CALLBACK_SIGNING_KEY", SIGNING_KEY),
    ])
    .await;
    let id = app
        .submit(
            json!({"topics": ["technology"], "limit": 1, "callback_url": receiver.url("/hook")}),
        )
        .await;
    // The first instance has written the final status and is sending: kill it mid-request.
    poll::until("the first delivery to arrive", WAIT, async || {
        !receiver.deliveries().is_empty()
    })
    .await;
    let ended = app.stored_status(&id).await.unwrap();
    assert_eq!(ended["status"], "completed", "{ended}");
    app.host.kill();
    receiver.hold(false);

    let second = app.another_instance().await;
    poll::until("the second instance to deliver", WAIT, async || {
        !receiver.successes().is_empty()
    })
    .await;
    let delivered = receiver
        .deliveries()
        .into_iter()
        .find(|delivery| delivery.succeeded)
        .unwrap();
    let document = signed_document(&delivered);
    assert_eq!(document["job_id"], id.as_str());
    assert_eq!(document["status"], "completed");
    // The receiver answers before the sender records the delivery.
    poll::until("the delivery to be recorded", WAIT, async || {
        app.stored_status(&id).await.unwrap()["callback"]["state"] == "delivered"
    })
    .await;
    assert!(
        second
            .wait_for_log("completion callback delivered", WAIT)
            .await,
        "{}",
        second.logs()
    );
    assert_eq!(receiver.successes()[&id], 1);
}

/// One instance runs one job at a time and is kept busy; its queued job goes quiet, is adopted
/// and finished by the second instance, which sends its callback. When the first instance
/// reaches the job at last, it finds it finished and its callback delivered.
#[tokio::test]
async fn every_job_gets_exactly_one_successful_callback_across_instances() {
    let receiver = Receiver::start().await;
    let app = TestApp::start_with(vec![
        QUICK_ADOPTION,
        LOCAL_CALLBACKS,
        ("MAX_CONCURRENT_JOBS", "1"),
    ])
    .await;
    app.reddit
        .set("blocker", Behaviour::Slow(Duration::from_secs(9)));
    let with_callback = |topics: &[&str]| {
        let mut body = job(topics, 1);
        body["callback_url"] = json!(receiver.url("/hook"));
        body
    };
    let blocker = app.submit(with_callback(&["blocker"])).await;
    let queued = app.submit(with_callback(&["technology"])).await;
    let second = app.another_instance().await;
    let mut ids = vec![blocker.clone(), queued.clone()];
    for _ in 0..3 {
        ids.push(app.submit(with_callback(&["gadgets"])).await);
    }
    for id in &ids {
        app.wait_stored_terminal(id, WAIT).await;
    }
    assert!(
        second
            .wait_for_log("adopting a job whose worker stopped", WAIT)
            .await,
        "the second instance adopts the queued job"
    );
    assert!(
        app.host
            .wait_for_log("job ended before it started", WAIT)
            .await,
        "the first instance reaches the job the second one finished"
    );
    poll::until("every callback to be delivered", WAIT, async || {
        receiver.successes().len() == ids.len()
    })
    .await;
    // Time for any second delivery (a scan runs every 2.5 s).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let successes = receiver.successes();
    for id in &ids {
        assert_eq!(successes.get(id), Some(&1), "job {id}: {successes:?}");
    }
    for id in &ids {
        let stored = app.stored_status(id).await.unwrap();
        assert_eq!(stored["callback"]["state"], "delivered", "{stored}");
    }
}
