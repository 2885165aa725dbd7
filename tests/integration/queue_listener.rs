//! The host simulator's queue listener (functions-host.md, "Queue trigger"), against
//! Azurite's queue service: first against stub handlers in this process, each standing in for
//! one instance's handler, then under the host simulator with the real handler.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use testkit::azurite::{Container, Queue};
use testkit::host::{
    FunctionApp, HostOptions, HostSimulator, InvocationOutcome, QueueListener,
    QueueListenerOptions, QueueSettings,
};
use warp::Filter as _;

/// How long a test waits for deliveries it expects (polling backs off to 1 s in the stub app).
const DELIVERY_LIMIT: Duration = Duration::from_secs(20);

/// How a stub handler answers one delivery.
#[derive(Debug, Clone, Copy)]
enum Reply {
    /// 200, `application/json`, an object: the host's success.
    Success,
    /// A 500 with a JSON error.
    ServerError,
    /// 200 with a text body: not an answer the host accepts.
    NotJson,
    /// Never answers (a handler stuck, or busy with a long job).
    Hold,
}

/// What a stub handler received: the path, the headers and the raw body of each envelope.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: warp::http::HeaderMap,
    body: String,
}

impl Received {
    fn envelope(&self) -> Value {
        serde_json::from_str(&self.body).expect("the envelope is JSON")
    }
}

/// A handler for one simulated instance: answers its `n`-th delivery (from 0) as `reply(n)`
/// says, and keeps everything it received.
struct StubHandler {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    running: Arc<AtomicUsize>,
    most_running: Arc<AtomicUsize>,
}

impl StubHandler {
    async fn start(
        delay: Duration,
        reply: impl Fn(usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let running = Arc::new(AtomicUsize::new(0));
        let most_running = Arc::new(AtomicUsize::new(0));
        let reply = Arc::new(reply);
        let routes = {
            let (received, running, most_running) =
                (received.clone(), running.clone(), most_running.clone());
            warp::post()
                .and(warp::path::full())
                .and(warp::header::headers_cloned())
                .and(warp::body::bytes())
                .then(
                    move |path: warp::path::FullPath, headers, body: bytes::Bytes| {
                        let (received, running, most_running, reply) = (
                            received.clone(),
                            running.clone(),
                            most_running.clone(),
                            reply.clone(),
                        );
                        async move {
                            let index = {
                                let mut received = received.lock().unwrap();
                                received.push(Received {
                                    path: path.as_str().to_owned(),
                                    headers,
                                    body: String::from_utf8_lossy(&body).into_owned(),
                                });
                                received.len() - 1
                            };
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most_running.fetch_max(now, Ordering::SeqCst);
                            tokio::time::sleep(delay).await;
                            let answer = match reply(index) {
                                Reply::Success => warp::http::Response::builder()
                                    .status(200)
                                    .header("content-type", "application/json")
                                    .body(
                                        r#"{"Outputs":{},"Logs":["done"],"ReturnValue":null}"#
                                            .to_owned(),
                                    ),
                                Reply::ServerError => warp::http::Response::builder()
                                    .status(500)
                                    .header("content-type", "application/json")
                                    .body(r#"{"error":"storage is unavailable"}"#.to_owned()),
                                Reply::NotJson => warp::http::Response::builder()
                                    .status(200)
                                    .header("content-type", "text/plain")
                                    .body("ok".to_owned()),
                                Reply::Hold => futures::future::pending().await,
                            };
                            running.fetch_sub(1, Ordering::SeqCst);
                            answer.unwrap()
                        }
                    },
                )
        };
        let listener = testkit::port::listener().await;
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(warp::serve(routes).incoming(listener).run());
        Self {
            port,
            received,
            running,
            most_running,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// An app of one queue function, `Work` (binding `message`, queue `%WORK_QUEUE%`), with the
/// listener settings a test wants: quick polling, failed messages visible again at once.
struct StubApp {
    _root: tempfile::TempDir,
    app: FunctionApp,
    settings: Vec<(String, String)>,
}

impl StubApp {
    fn new(queue: &Queue, max_dequeue_count: u32) -> Self {
        let root = tempfile::tempdir().unwrap();
        let host = json!({
            "version": "2.0",
            "extensions": {"queues": {
                "maxPollingInterval": "00:00:01",
                "visibilityTimeout": "00:00:00",
                "batchSize": 4,
                "newBatchThreshold": 2,
                "maxDequeueCount": max_dequeue_count,
            }},
            "customHandler": {"description": {"defaultExecutablePath": "handler"}},
        });
        std::fs::write(root.path().join("host.json"), host.to_string()).unwrap();
        std::fs::create_dir(root.path().join("Work")).unwrap();
        let function = json!({"bindings": [{
            "type": "queueTrigger", "direction": "in", "name": "message",
            "queueName": "%WORK_QUEUE%", "connection": "AzureWebJobsStorage",
        }]});
        std::fs::write(root.path().join("Work/function.json"), function.to_string()).unwrap();
        let app = FunctionApp::load(root.path()).unwrap();
        let settings = vec![
            (
                "AzureWebJobsStorage".to_owned(),
                queue.connection_string().to_owned(),
            ),
            ("WORK_QUEUE".to_owned(), queue.name.clone()),
        ];
        Self {
            _root: root,
            app,
            settings,
        }
    }

    /// One simulated instance's listener, invoking `handler`.
    fn instance(&self, options: &QueueListenerOptions, handler: &StubHandler) -> QueueListener {
        QueueListener::start(&self.app, &self.settings, options, handler.port)
            .unwrap_or_else(|error| panic!("the listener did not start: {error}"))
    }
}

fn failed(outcome: &Option<InvocationOutcome>) -> bool {
    matches!(outcome, Some(InvocationOutcome::Failed(_)))
}

#[test]
fn host_json_queue_settings_are_read_with_the_hosts_defaults() {
    let defaults = QueueSettings::from_host_json(&json!({"version": "2.0"})).unwrap();
    assert_eq!(defaults.max_polling_interval, Duration::from_secs(60));
    assert_eq!(defaults.visibility_timeout, Duration::ZERO);
    assert_eq!(defaults.batch_size, 16);
    assert_eq!(defaults.max_dequeue_count, 5);
    assert_eq!(defaults.message_encoding, "base64");
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(defaults.new_batch_threshold, 8 * cores);

    let project = QueueSettings::from_host_json(
        &serde_json::from_str(
            &std::fs::read_to_string(testkit::app_root().join("host.json")).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(project.max_polling_interval, Duration::from_secs(2));
    assert_eq!(project.visibility_timeout, Duration::from_secs(30));
    assert_eq!((project.batch_size, project.new_batch_threshold), (4, 2));

    for (bad, named) in [
        (json!({"batchSize": 33}), "batchSize"),
        (json!({"maxDequeueCount": 0}), "maxDequeueCount"),
        (json!({"visibilityTimeout": "soon"}), "visibilityTimeout"),
        (
            json!({"maxPollingInterval": "1.00:60:00"}),
            "maxPollingInterval",
        ),
    ] {
        let error = QueueSettings::from_host_json(&json!({"extensions": {"queues": bad}}))
            .expect_err(&format!("{bad} should be refused"));
        assert!(error.contains(named), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_fails_twice_is_delivered_with_dequeue_counts_1_2_3_and_then_deleted() {
    let queue = Queue::fresh().await;
    let app = StubApp::new(&queue, 5);
    let handler = StubHandler::start(Duration::ZERO, |index| match index {
        0 => Reply::ServerError,
        1 => Reply::NotJson,
        _ => Reply::Success,
    })
    .await;
    let listener = app.instance(&QueueListenerOptions::default(), &handler);
    let record = listener.record();
    queue.send(r#"{"job_id":"x"}"#).await;

    testkit::poll::until("a successful delivery", DELIVERY_LIMIT, async || {
        !record.succeeded().is_empty()
    })
    .await;
    let deliveries = record.invocations();
    let counts: Vec<u32> = deliveries.iter().map(|d| d.dequeue_count).collect();
    assert_eq!(counts, [1, 2, 3], "{deliveries:?}");
    assert!(failed(&deliveries[0].outcome) && failed(&deliveries[1].outcome));
    assert_eq!(deliveries[2].outcome, Some(InvocationOutcome::Succeeded));
    let seen: Vec<Value> = handler
        .received()
        .iter()
        .map(|r| r.envelope()["Metadata"]["DequeueCount"].clone())
        .collect();
    assert_eq!(seen, [json!("1"), json!("2"), json!("3")]);

    // Deleted: not delivered again, and in no queue.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(record.invocations().len(), 3);
    assert!(queue.visible_texts().await.is_empty());
    assert!(queue.poison().visible_texts().await.is_empty());
    assert!(record.poisoned().is_empty());
    assert_eq!(record.problems(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_envelope_binds_the_message_as_a_json_encoded_string_with_the_queue_metadata() {
    let queue = Queue::fresh().await;
    let app = StubApp::new(&queue, 5);
    let handler = StubHandler::start(Duration::ZERO, |_| Reply::Success).await;
    let listener = app.instance(&QueueListenerOptions::default(), &handler);
    let record = listener.record();
    let plain = r#"{"job_id":"x"}"#;
    let with_scalars = r#"{"job_id":"y","attempt":2,"urgent":true,"nested":{"a":1}}"#;
    queue.send(plain).await;
    queue.send(with_scalars).await;
    testkit::poll::until("two successful deliveries", DELIVERY_LIMIT, async || {
        record.succeeded().len() == 2
    })
    .await;

    let received = handler.received();
    let of = |text: &str| {
        received
            .iter()
            .find(|r| {
                r.envelope()["Data"]["message"] == json!(serde_json::to_string(text).unwrap())
            })
            .unwrap_or_else(|| panic!("no envelope carries {text}: {received:?}"))
            .clone()
    };
    let first = of(plain);
    // The form in functions-host.md, byte for byte.
    assert!(
        first
            .body
            .contains(r#""message":"\"{\\\"job_id\\\":\\\"x\\\"}\"""#),
        "{}",
        first.body
    );
    assert_eq!(first.path, "/Work");
    let header = |name: &str| {
        first
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    assert!(header("content-type").starts_with("application/json"));
    assert!(header("user-agent").starts_with("Azure-Functions-Host/"));
    assert!(!header("x-azure-functions-invocationid").is_empty());
    assert!(!header("x-azure-functions-hostversion").is_empty());

    let envelope = first.envelope();
    let metadata = &envelope["Metadata"];
    let delivery = record
        .invocations()
        .into_iter()
        .find(|d| d.text == plain)
        .unwrap();
    assert_eq!(metadata["DequeueCount"], "1");
    assert_eq!(
        metadata["Id"],
        json!(format!("\"{}\"", delivery.message_id))
    );
    let receipt = metadata["PopReceipt"].as_str().unwrap();
    assert!(receipt.len() > 2 && receipt.starts_with('"') && receipt.ends_with('"'));
    for key in ["InsertionTime", "ExpirationTime", "NextVisibleTime"] {
        let time = metadata[key].as_str().unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(time).is_ok(),
            "{key}: {time:?}"
        );
    }
    assert_eq!(metadata["job_id"], "\"x\"");
    assert_eq!(metadata["sys"]["MethodName"], "Work");

    let scalars = of(with_scalars).envelope();
    let metadata = &scalars["Metadata"];
    assert_eq!(metadata["job_id"], "\"y\"");
    assert_eq!(metadata["attempt"], "2");
    assert_eq!(metadata["urgent"], "true");
    assert!(metadata.get("nested").is_none(), "{metadata}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_always_fails_ends_in_the_poison_queue_after_max_dequeue_count() {
    let queue = Queue::fresh().await;
    let app = StubApp::new(&queue, 3);
    let handler = StubHandler::start(Duration::ZERO, |_| Reply::ServerError).await;
    let listener = app.instance(&QueueListenerOptions::default(), &handler);
    let record = listener.record();
    let text = r#"{"job_id":"doomed"}"#;
    queue.send(text).await;

    testkit::poll::until(
        "the message in the poison queue",
        DELIVERY_LIMIT,
        async || !record.poisoned().is_empty(),
    )
    .await;
    let poisoned = record.poisoned();
    assert_eq!(poisoned.len(), 1);
    assert_eq!(poisoned[0].text, text);
    assert_eq!(poisoned[0].dequeue_count, 3);
    assert_eq!(poisoned[0].poison_queue, format!("{}-poison", queue.name));
    let counts: Vec<u32> = record
        .invocations()
        .iter()
        .map(|d| d.dequeue_count)
        .collect();
    assert_eq!(counts, [1, 2, 3]);
    assert!(record.invocations().iter().all(|d| failed(&d.outcome)));

    assert_eq!(queue.poison().visible_texts().await, [text]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        record.invocations().len(),
        3,
        "delivered after it was poisoned"
    );
    assert!(queue.visible_texts().await.is_empty());
    assert_eq!(record.problems(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_mid_invocation_leaves_its_message_to_another_after_the_visibility_timeout(
) {
    let queue = Queue::fresh().await;
    let app = StubApp::new(&queue, 5);
    // Renewed every second while an invocation runs.
    let options = QueueListenerOptions::default().visibility_timeout(Duration::from_secs(2));
    let stuck = StubHandler::start(Duration::ZERO, |_| Reply::Hold).await;
    let healthy = StubHandler::start(Duration::ZERO, |_| Reply::Success).await;
    let mut first = app.instance(&options, &stuck);
    queue.send(r#"{"job_id":"long"}"#).await;
    testkit::poll::until(
        "the first instance's delivery",
        DELIVERY_LIMIT,
        async || !stuck.received().is_empty(),
    )
    .await;

    // A second instance on the same queue finds nothing while the first renews the message,
    // well past its 2 s visibility timeout.
    let second = app.instance(&options, &healthy);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(healthy.received().is_empty(), "{:?}", healthy.received());
    assert!(queue.visible_texts().await.is_empty());

    first.stop();
    let record = second.record();
    testkit::poll::until(
        "the second instance's delivery",
        DELIVERY_LIMIT,
        async || !record.succeeded().is_empty(),
    )
    .await;
    let delivery = &record.succeeded()[0];
    assert_eq!(delivery.dequeue_count, 2);
    assert_eq!(
        healthy.received()[0].envelope()["Metadata"]["DequeueCount"],
        "2"
    );

    let abandoned = first.record().invocations();
    assert_eq!(abandoned.len(), 1);
    assert_eq!(abandoned[0].dequeue_count, 1);
    assert_eq!(abandoned[0].message_id, delivery.message_id);
    assert_eq!(
        abandoned[0].outcome, None,
        "the killed instance finished nothing"
    );
    assert_eq!(stuck.received().len(), 1);
    assert_eq!(first.record().problems(), Vec::<String>::new());
    assert_eq!(record.problems(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_a_queue_deliver_each_message_once_in_batches() {
    let queue = Queue::fresh().await;
    let app = StubApp::new(&queue, 5);
    let options = QueueListenerOptions::default();
    let handlers = [
        StubHandler::start(Duration::from_millis(300), |_| Reply::Success).await,
        StubHandler::start(Duration::from_millis(300), |_| Reply::Success).await,
    ];
    const MESSAGES: usize = 16;
    for index in 0..MESSAGES {
        queue.send(&format!(r#"{{"job_id":"{index}"}}"#)).await;
    }
    let instances: Vec<QueueListener> = handlers
        .iter()
        .map(|handler| app.instance(&options, handler))
        .collect();
    let succeeded = || -> Vec<_> {
        instances
            .iter()
            .flat_map(|instance| instance.record().succeeded())
            .collect()
    };
    testkit::poll::until("every message delivered", DELIVERY_LIMIT, async || {
        succeeded().len() >= MESSAGES
    })
    .await;
    let mut ids: Vec<String> = succeeded().into_iter().map(|d| d.message_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), MESSAGES);
    let all: Vec<_> = instances
        .iter()
        .flat_map(|instance| instance.record().invocations())
        .collect();
    assert_eq!(
        all.len(),
        MESSAGES,
        "a message was delivered twice: {all:?}"
    );
    // batchSize 4, and the next batch once no more than newBatchThreshold 2 run.
    for handler in &handlers {
        let most = handler.most_running.load(Ordering::SeqCst);
        assert!(most <= 6, "{most} invocations ran at once on one instance");
        assert_eq!(handler.running.load(Ordering::SeqCst), 0);
    }
    assert!(queue.visible_texts().await.is_empty());
}

/// The real handler under the host simulator with its listener on: `RunJob` is driven from
/// the queue, `kill` stops the listener with the handler and `restart` starts it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_simulator_drives_the_apps_queue_function_until_killed_and_again_after_a_restart()
{
    let container = Container::fresh().await;
    let queue = Queue::fresh().await;
    let mut options = HostOptions::default()
        .queue_listener(QueueListenerOptions::default().queue_for("RunJob", &queue.name));
    options.env.extend(container.env());
    let mut host = HostSimulator::start(options).await;
    let record = host.queue_record();
    assert!(host
        .app()
        .function("RunJob")
        .is_some_and(|function| function.is_queue()));

    let first = json!({"job_id": uuid::Uuid::new_v4()}).to_string();
    queue.send(&first).await;
    testkit::poll::until("RunJob invoked", DELIVERY_LIMIT, async || {
        record
            .invocations()
            .iter()
            .any(|d| d.text == first && d.outcome.is_some())
    })
    .await;
    let delivery = &record.invocations()[0];
    assert_eq!(
        (delivery.function.as_str(), delivery.dequeue_count),
        ("RunJob", 1)
    );

    host.kill();
    let second = json!({"job_id": uuid::Uuid::new_v4()}).to_string();
    queue.send(&second).await;
    // Longer than host.json's maxPollingInterval (2 s): a live listener would have polled.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        record.invocations().iter().all(|d| d.text != second),
        "a killed host delivered a message"
    );

    host.restart().await;
    testkit::poll::until(
        "RunJob invoked after the restart",
        DELIVERY_LIMIT,
        async || record.invocations().iter().any(|d| d.text == second),
    )
    .await;
    assert_eq!(record.problems(), Vec::<String>::new());
    assert!(host.logs().contains("listens to queue"), "{}", host.logs());
}

/// A listener on a queue nobody created finds it empty: no error, no noise.
#[tokio::test]
async fn a_queue_that_does_not_exist_is_polled_quietly() {
    let queue = Queue::named(
        &testkit::azurite::connection_string(),
        &format!("t-missing-{}", uuid::Uuid::new_v4().simple()),
    );
    let app = StubApp::new(&queue, 5);
    let handler = StubHandler::start(Duration::ZERO, |_| Reply::Success).await;
    let listener = app.instance(&QueueListenerOptions::default(), &handler);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(listener.record().invocations().is_empty());
    assert_eq!(listener.record().problems(), Vec::<String>::new());
    assert!(!listener.logs().contains("failed"), "{}", listener.logs());
}
