//! Completion callbacks: which URLs are refused at submit, what answers show of a callback URL,
//! delivery that survives a SIGKILL and happens once per job across instances, signatures that
//! the Standard Webhooks library accepts (and refuses when they are tampered with, made with
//! another secret or replayed late), and what the settings may not do under the host in Azure.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use testkit::app::{job, JobApi as _, TestApp};
use testkit::fake_reddit::Behaviour;
use testkit::host::HostRequest;
use testkit::poll;
use testkit::port::ClosedPort;

const WAIT: Duration = Duration::from_secs(45);
const QUICK_ADOPTION: (&str, &str) = ("JOB_STALE_AFTER_SECONDS", "5");
const LOCAL_CALLBACKS: (&str, &str) = ("ALLOW_INSECURE_CALLBACKS", "true");
/// What App Service sets on every instance in Azure.
const IN_AZURE: (&str, &str) = ("WEBSITE_INSTANCE_ID", "summary-womble-instance-1");

/// One callback request as the receiver saw it.
#[derive(Debug, Clone)]
struct Delivery {
    /// Every header, by its lower-case name.
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
    /// Whether the receiver answered it 2xx.
    succeeded: bool,
}

impl Delivery {
    fn job_id(&self) -> String {
        let document: Value = serde_json::from_slice(&self.body).unwrap();
        document["job_id"].as_str().unwrap().to_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// A new Standard Webhooks secret: `whsec_` and 32 random bytes in base64.
fn whsec() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// What the Standard Webhooks library made of a delivery.
#[derive(Debug)]
enum Verdict {
    /// Accepted: the body, parsed by the library.
    Verified(Value),
    /// Refused, with the library's reason.
    Refused(String),
}

/// The secret a receiver hands the library: a `whsec_` value as it is, or a legacy key as the
/// raw bytes of its text.
enum Secret<'a> {
    Whsec(&'a str),
    Raw(&'a str),
}

/// Verifies what a receiver got with the `standardwebhooks` package from PyPI
/// (scripts/verify-webhook.py), with the receiver's clock `later_seconds` ahead of ours.
async fn verify(
    secret: Secret<'_>,
    headers: &BTreeMap<String, String>,
    body: &[u8],
    later_seconds: u64,
) -> Verdict {
    let root = testkit::app_root();
    let python = root.join(".tools/venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: these tests verify callbacks with the Standard Webhooks library that \
         scripts/tools-venv.sh installs there. Run `make test` (or scripts/tools-venv.sh once)",
        python.display()
    );
    let (secret, raw_secret) = match secret {
        Secret::Whsec(text) => (text, false),
        Secret::Raw(text) => (text, true),
    };
    let case = json!({
        "secret": secret,
        "raw_secret": raw_secret,
        "headers": headers,
        "body_base64": base64::engine::general_purpose::STANDARD.encode(body),
        "later_seconds": later_seconds,
    });
    let mut child = tokio::process::Command::new(&python)
        .arg(root.join("scripts/verify-webhook.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("{}: {error}", python.display()));
    {
        use tokio::io::AsyncWriteExt as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(case.to_string().as_bytes()).await.unwrap();
    }
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let answer: Value = match (output.status.code(), serde_json::from_slice(&output.stdout)) {
        (Some(0 | 1), Ok(answer)) => answer,
        _ => panic!("verify-webhook.py failed ({}): {stderr}", output.status),
    };
    if answer["verified"] == true {
        Verdict::Verified(answer["document"].clone())
    } else {
        Verdict::Refused(answer["reason"].as_str().unwrap().to_owned())
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
                .and(warp::header::headers_cloned())
                .and(warp::body::bytes())
                .then(move |headers: warp::http::HeaderMap, body: bytes::Bytes| {
                    let (hold, seen) = (hold.clone(), seen.clone());
                    async move {
                        let headers = headers
                            .iter()
                            .map(|(name, value)| {
                                (name.to_string(), value.to_str().unwrap().to_owned())
                            })
                            .collect();
                        let index = {
                            let mut seen = seen.lock().unwrap();
                            seen.push(Delivery {
                                headers,
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

/// The names of what only instances use: none may appear in an answer, a callback or
/// `status.json`.
const INTERNAL_NAMES: [&str; 5] = [
    "claims",
    "claimed_until",
    "requeued_at",
    "callback_claims",
    "callback_claimed_until",
];

/// The internal names that `document` holds as object keys, anywhere.
fn internal_names_in(document: &Value) -> Vec<String> {
    match document {
        Value::Object(map) => map
            .iter()
            .flat_map(|(key, inner)| {
                let own = INTERNAL_NAMES.contains(&key.as_str()).then(|| key.clone());
                own.into_iter().chain(internal_names_in(inner))
            })
            .collect(),
        Value::Array(items) => items.iter().flat_map(internal_names_in).collect(),
        _ => Vec::new(),
    }
}

/// While a callback is claimed (its receiver holds the request) and after it is delivered:
/// the status answer is `status.json`, byte for byte; neither it, nor the cancel and list
/// answers, nor the callback body carries a lease, a claim or the full callback URL; the blob's
/// metadata keeps those.
#[tokio::test]
async fn the_status_answer_is_status_json_and_no_answer_callback_or_status_json_shows_internals() {
    let receiver = Receiver::start().await;
    receiver.hold(true);
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
    let mut shown = vec![cancel.json()];
    for job_id in [&id, &other] {
        app.wait_terminal(job_id, WAIT).await;
    }
    poll::until("both callbacks claimed and held", WAIT, async || {
        receiver.deliveries().len() >= 2
    })
    .await;

    let answer_is_status_json = async |job_id: &str| {
        let answer = app
            .host
            .forward(HostRequest::get(&format!(
                "/api/SummaryWomble?job_id={job_id}"
            )))
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let stored = testkit::status::read(app.container.store.as_ref(), job_id)
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8(answer.body.clone()).unwrap(),
            String::from_utf8(stored.body.to_vec()).unwrap(),
            "the status answer is status.json"
        );
        assert_eq!(stored.metadata.get("callback_url"), Some(full.as_str()));
        (answer.json(), stored)
    };
    for job_id in [&id, &other] {
        let (answer, stored) = answer_is_status_json(job_id).await;
        assert!(
            stored.metadata.get("callback_claimed_until").is_some(),
            "the claim is held, and kept in metadata: {:?}",
            stored.metadata
        );
        shown.push(answer);
    }
    let list = app
        .host
        .forward(HostRequest::get("/api/SummaryWomble?top=10"))
        .await;
    assert_eq!(list.status, 200);
    let listed = list.json()["jobs"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 2);
    shown.extend(listed);

    receiver.hold(false);
    poll::until("both callbacks delivered", WAIT, async || {
        receiver.successes().len() == 2
    })
    .await;
    for job_id in [&id, &other] {
        poll::until("the delivery recorded", WAIT, async || {
            let stored = testkit::status::read(app.container.store.as_ref(), job_id)
                .await
                .unwrap();
            stored.document["callback"]["state"] == "delivered"
        })
        .await;
        shown.push(answer_is_status_json(job_id).await.0);
    }
    for delivery in receiver.deliveries() {
        shown.push(serde_json::from_slice(&delivery.body).unwrap());
    }

    assert_eq!(shown.len(), 1 + 2 + 2 + 2 + receiver.deliveries().len());
    for document in &shown {
        assert_eq!(
            document["request"]["callback_url"],
            origin.as_str(),
            "{document}"
        );
        assert!(!document.to_string().contains("s3cr3t"), "{document}");
        assert_eq!(
            internal_names_in(document),
            Vec::<String>::new(),
            "{document}"
        );
    }
}

#[tokio::test]
async fn a_callback_owed_by_a_killed_instance_is_delivered_by_another() {
    let receiver = Receiver::start().await;
    receiver.hold(true);
    let secret = whsec();
    let mut app = TestApp::start_with(vec![
        QUICK_ADOPTION,
        LOCAL_CALLBACKS,
        ("CALLBACK_SIGNING_KEY", &secret),
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
    let deliveries = receiver.deliveries();
    let delivered = deliveries
        .iter()
        .find(|delivery| delivery.succeeded)
        .unwrap();
    let verdict = verify(
        Secret::Whsec(&secret),
        &delivered.headers,
        &delivered.body,
        0,
    )
    .await;
    let Verdict::Verified(document) = verdict else {
        panic!("{verdict:?}")
    };
    assert_eq!(document["job_id"], id.as_str());
    assert_eq!(document["status"], "completed");
    // Both instances' attempts are one message to the receiver: the same webhook-id.
    assert!(deliveries.len() >= 2, "{deliveries:?}");
    for delivery in &deliveries {
        assert_eq!(delivery.header("webhook-id"), Some(id.as_str()));
    }
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

/// An app that signs with `key`, the first callback of a one-subreddit job of it, and the
/// job's id.
async fn first_delivery_signed_with(key: &str) -> (TestApp, Delivery, String) {
    let receiver = Receiver::start().await;
    let app = TestApp::start_with(vec![LOCAL_CALLBACKS, ("CALLBACK_SIGNING_KEY", key)]).await;
    let id = app
        .submit(
            json!({"topics": ["technology"], "limit": 1, "callback_url": receiver.url("/hook")}),
        )
        .await;
    let delivery = first_success(&receiver).await;
    (app, delivery, id)
}

/// Waits for the first callback the receiver answered 2xx.
async fn first_success(receiver: &Receiver) -> Delivery {
    poll::until("a callback to be delivered", WAIT, async || {
        !receiver.successes().is_empty()
    })
    .await;
    receiver
        .deliveries()
        .into_iter()
        .find(|delivery| delivery.succeeded)
        .unwrap()
}

#[tokio::test]
async fn a_delivery_verifies_with_the_standard_webhooks_library_and_a_tampered_foreign_or_late_one_does_not(
) {
    let secret = whsec();
    let (_app, delivery, id) = first_delivery_signed_with(&secret).await;
    assert_eq!(delivery.header("webhook-id"), Some(id.as_str()));
    assert!(
        delivery.header("x-womble-signature").is_none(),
        "the old header goes out with a legacy key only: {:?}",
        delivery.headers
    );
    let (headers, body) = (&delivery.headers, delivery.body.as_slice());

    match verify(Secret::Whsec(&secret), headers, body, 0).await {
        Verdict::Verified(document) => {
            assert_eq!(document["job_id"], id.as_str());
            assert_eq!(document["status"], "completed");
        }
        refused => panic!("a real delivery is refused: {refused:?}"),
    }

    let text = String::from_utf8(body.to_vec()).unwrap();
    let tampered = text.replace(r#""status":"completed""#, r#""status":"failed""#);
    assert_ne!(tampered, text);
    let mut restamped = headers.clone();
    let now = chrono::Utc::now().timestamp() + 1;
    restamped.insert("webhook-timestamp".into(), now.to_string());
    let other_secret = whsec();
    let refusals = [
        (
            "a tampered body",
            verify(Secret::Whsec(&secret), headers, tampered.as_bytes(), 0).await,
            "No matching signature found",
        ),
        (
            "another secret",
            verify(Secret::Whsec(&other_secret), headers, body, 0).await,
            "No matching signature found",
        ),
        (
            "a replay 10 minutes later",
            verify(Secret::Whsec(&secret), headers, body, 600).await,
            "Message timestamp too old",
        ),
        (
            "a replay restamped with a fresh timestamp",
            verify(Secret::Whsec(&secret), &restamped, body, 0).await,
            "No matching signature found",
        ),
    ];
    for (case, verdict, reason) in refusals {
        match verdict {
            Verdict::Refused(refusal) => assert_eq!(refusal, reason, "{case}"),
            verified => panic!("{case} is accepted: {verified:?}"),
        }
    }
}

#[tokio::test]
async fn a_legacy_signing_key_signs_the_new_headers_with_its_raw_bytes_and_still_sends_the_old_one()
{
    let key = "a-signing-key-set-before-standard-webhooks";
    let (app, delivery, id) = first_delivery_signed_with(key).await;
    assert_eq!(delivery.header("webhook-id"), Some(id.as_str()));
    let old = summary_womble::jobs::callback::signature(key.as_bytes(), &delivery.body);
    assert_eq!(delivery.header("x-womble-signature"), Some(old.as_str()));
    match verify(Secret::Raw(key), &delivery.headers, &delivery.body, 0).await {
        Verdict::Verified(document) => assert_eq!(document["job_id"], id.as_str()),
        refused => panic!("{refused:?}"),
    }
    assert!(
        app.host
            .wait_for_log("CALLBACK_SIGNING_KEY is not a whsec_ secret", WAIT)
            .await,
        "{}",
        app.host.logs()
    );
    assert!(!app.host.logs().contains(key));
}

#[tokio::test]
async fn under_the_host_in_azure_a_callback_url_without_a_signing_key_is_refused_unless_unsigned_ones_are_allowed(
) {
    let receiver = Receiver::start().await;
    // A job with a callback from before, for the retry below.
    let app = TestApp::start_with(vec![LOCAL_CALLBACKS]).await;
    let earlier = app
        .submit(
            json!({"topics": ["technology"], "limit": 1, "callback_url": receiver.url("/hook")}),
        )
        .await;
    app.wait_terminal(&earlier, WAIT).await;
    // Jobs accepted below stay running until the test ends: no callback leaves this machine.
    app.reddit
        .set("slowsub", Behaviour::Slow(Duration::from_secs(600)));
    let with_callback = json!({"topics": ["slowsub"], "limit": 1, "callback_url": "https://hooks.example.com/done"});

    let azure = app
        .another_instance_with(vec![IN_AZURE, ("ALLOW_INSECURE_CALLBACKS", "")])
        .await;
    let stored = app.container.names().await;
    for request in [
        post(with_callback.clone()),
        post(json!({"action": "retry", "job_id": earlier})),
    ] {
        let answer = azure.forward(request).await;
        assert_eq!(answer.status, 400, "{}", answer.text());
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(error.starts_with("callback_url"), "{error}");
        assert!(error.contains("CALLBACK_SIGNING_KEY"), "{error}");
    }
    assert_eq!(app.container.names().await, stored, "nothing was stored");
    let answer = azure
        .forward(post(json!({"topics": ["slowsub"], "limit": 1})))
        .await;
    assert_eq!(
        answer.status,
        202,
        "a job without a callback: {}",
        answer.text()
    );
    drop(azure);

    let secret = whsec();
    for allowed in [
        ("ALLOW_UNSIGNED_CALLBACKS", "true"),
        ("CALLBACK_SIGNING_KEY", secret.as_str()),
    ] {
        let azure = app
            .another_instance_with(vec![IN_AZURE, ("ALLOW_INSECURE_CALLBACKS", ""), allowed])
            .await;
        let answer = azure.forward(post(with_callback.clone())).await;
        assert_eq!(answer.status, 202, "{allowed:?}: {}", answer.text());
    }
}

#[test]
fn under_the_host_in_azure_allow_insecure_callbacks_stops_the_handler_at_start() {
    let dir = tempfile::tempdir().unwrap();
    // The handler refuses to start before it binds; the port stays held by the test.
    let port = ClosedPort::new();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_handler"))
        .current_dir(dir.path())
        .env_clear()
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.port().to_string())
        .env("AzureWebJobsStorage", "UseDevelopmentStorage=true")
        .env(IN_AZURE.0, IN_AZURE.1)
        .env("ALLOW_INSECURE_CALLBACKS", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("setting ALLOW_INSECURE_CALLBACKS is invalid"),
        "{stderr}"
    );
    assert!(stderr.contains(IN_AZURE.0), "{stderr}");
}
