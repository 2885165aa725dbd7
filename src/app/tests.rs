//! The routes, driven in-process with `warp::test`: no sockets, no child processes.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::routes;
use crate::config::Settings;
use crate::functions::FunctionContext;
use crate::reddit::NoTopics;
use crate::startup::{self, JobQueues, Services};
use crate::store::local::LocalDirStore;
use crate::store::queue::azure::AzureQueue;
use crate::store::queue::memory::MemoryQueue;
use crate::store::queue::MessageQueue;

struct App {
    context: FunctionContext,
    _dir: tempfile::TempDir,
}

fn app(vars: &[(&str, &str)]) -> App {
    app_with_queues(vars, None)
}

/// An app with queue dispatch over `queues` when given (inline dispatch without).
fn app_with_queues(vars: &[(&str, &str)], queues: Option<JobQueues>) -> App {
    let dir = tempfile::tempdir().unwrap();
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    let settings = Settings::from_vars(&vars).unwrap();
    let services = Services {
        store: Arc::new(LocalDirStore::new(dir.path().to_owned(), "hot-topics")),
        topics: Arc::new(NoTopics),
        queues,
        completion: None,
    };
    App {
        context: startup::server(settings, services).unwrap(),
        _dir: dir,
    }
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

#[tokio::test]
async fn the_readiness_probe_is_answered() {
    let app = app(&[]);
    let answer = warp::test::request()
        .path("/")
        .reply(&routes(app.context.clone()))
        .await;
    assert_eq!(answer.status(), 200);
}

#[tokio::test]
async fn a_refused_method_is_named_with_the_methods_allowed() {
    let app = app(&[]);
    let cases = [
        ("PUT", "/api/SummaryWomble", "GET, POST, DELETE"),
        ("PATCH", "/api/summarywomble", "GET, POST, DELETE"),
        ("DELETE", "/GetHotTopics", "POST"),
        ("GET", "/SummaryWomble", "POST"),
    ];
    for (method, path, allow) in cases {
        let answer = warp::test::request()
            .method(method)
            .path(path)
            .reply(&routes(app.context.clone()))
            .await;
        assert_eq!(answer.status(), 405, "{method} {path}");
        assert_eq!(answer.headers()["allow"], allow, "{method} {path}");
        let error = json(answer.body())["error"].as_str().unwrap().to_owned();
        assert!(
            error.starts_with(&format!("Method {method} is not allowed")),
            "{method} {path}: {error}"
        );
    }
}

#[tokio::test]
async fn an_unknown_path_is_a_json_404() {
    let app = app(&[]);
    let answer = warp::test::request()
        .path("/api/Nothing")
        .reply(&routes(app.context.clone()))
        .await;
    assert_eq!(answer.status(), 404);
    assert_eq!(answer.headers()["content-type"], "application/json");
    assert!(json(answer.body())["error"].is_string());
}

#[tokio::test]
async fn standalone_keys_are_checked_from_the_header_then_the_code() {
    let app = app(&[("FUNCTION_KEYS", "sesame, other")]);
    let routes = routes(app.context.clone());
    let status = |request: warp::test::RequestBuilder| {
        let routes = routes.clone();
        async move { request.reply(&routes).await.status() }
    };
    let list = || warp::test::request().path("/api/SummaryWomble");
    assert_eq!(status(list()).await, 401);
    assert_eq!(status(list().header("x-functions-key", "wrong")).await, 401);
    assert_eq!(
        status(list().header("x-functions-key", "sesame")).await,
        200
    );
    assert_eq!(
        status(warp::test::request().path("/api/SummaryWomble?code=other")).await,
        200
    );
    // The header wins over the code, as with the host.
    assert_eq!(
        status(
            warp::test::request()
                .path("/api/SummaryWomble?code=sesame")
                .header("x-functions-key", "wrong")
        )
        .await,
        401
    );
}

#[tokio::test]
async fn a_start_gets_a_ticket_whose_location_answers_the_status() {
    let app = app(&[]);
    let routes = routes(app.context.clone());
    let answer = warp::test::request()
        .method("POST")
        .path("/api/SummaryWomble")
        .header("host", "example.test")
        .header("content-type", "application/json")
        .body(r#"{"topics": ["rust"], "limit": 3}"#)
        .reply(&routes)
        .await;
    assert_eq!(answer.status(), 202);
    let ticket = json(answer.body());
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        location,
        format!(
            "http://example.test/api/SummaryWomble?job_id={}",
            ticket["job_id"].as_str().unwrap()
        )
    );
    let path = location.trim_start_matches("http://example.test");
    let status = warp::test::request().path(path).reply(&routes).await;
    assert_eq!(status.status(), 200);
    assert_eq!(json(status.body())["job_id"], ticket["job_id"]);
}

#[tokio::test]
async fn a_body_over_64_kib_is_refused_before_it_is_read_whole() {
    let app = app(&[]);
    let answer = warp::test::request()
        .method("POST")
        .path("/api/SummaryWomble")
        .body(vec![b' '; 64 * 1024 + 1])
        .reply(&routes(app.context.clone()))
        .await;
    assert_eq!(answer.status(), 413);
    assert!(json(answer.body())["error"]
        .as_str()
        .unwrap()
        .contains("64 KiB"));
}

#[tokio::test]
async fn a_forwarded_host_is_trusted_only_under_the_host() {
    async fn start(app: &App) -> http::Response<bytes::Bytes> {
        warp::test::request()
            .method("POST")
            .path("/api/SummaryWomble")
            .header("host", "127.0.0.1:7071")
            .header("x-forwarded-host", "evil.example")
            .header("x-forwarded-proto", "https")
            .body("{}")
            .reply(&routes(app.context.clone()))
            .await
    }
    let standalone = app(&[]);
    let answer = start(&standalone).await;
    assert_eq!(answer.status(), 202);
    let location = answer.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with("http://127.0.0.1:7071/api/SummaryWomble?job_id="),
        "{location}"
    );

    let hosted = app(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "7072")]);
    let answer = start(&hosted).await;
    let location = answer.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with("https://evil.example/api/SummaryWomble?job_id="),
        "{location}"
    );
}

#[tokio::test]
async fn keys_of_any_length_are_told_apart_only_by_their_content() {
    // One configured key and wrong keys of every length around it: all refused alike.
    let app = app(&[("FUNCTION_KEYS", "a-key-of-some-length")]);
    for wrong in [
        "",
        "a",
        "a-key-of-some-lengt",
        "a-key-of-some-length!",
        &"x".repeat(500),
    ] {
        let answer = warp::test::request()
            .path("/api/SummaryWomble")
            .header("x-functions-key", wrong)
            .reply(&routes(app.context.clone()))
            .await;
        assert_eq!(answer.status(), 401, "{wrong:?}");
    }
}

#[tokio::test]
async fn a_content_type_that_is_not_ascii_is_refused_as_not_json() {
    let app = app(&[]);
    let answer = warp::test::request()
        .method("POST")
        .path("/api/SummaryWomble")
        .header(
            "content-type",
            http::HeaderValue::from_bytes(b"text/plain; charset=\xe9").unwrap(),
        )
        .body("{}")
        .reply(&routes(app.context.clone()))
        .await;
    assert_eq!(answer.status(), 415);
}

/// The metrics answer of `app`, asserting the 200.
async fn metrics_answer(app: &App) -> Value {
    let answer = warp::test::request()
        .method("POST")
        .path("/api/SummaryWomble")
        .header("content-type", "application/json")
        .body(r#"{"action": "metrics"}"#)
        .reply(&routes(app.context.clone()))
        .await;
    assert_eq!(answer.status(), 200, "{:?}", answer.body());
    json(answer.body())
}

/// Under the host, where the host's listener (not the handler) takes the job messages: what a
/// start sends stays on the queue.
const UNDER_THE_HOST: (&str, &str) = ("FUNCTIONS_CUSTOMHANDLER_PORT", "7071");

#[tokio::test]
async fn the_metrics_answer_has_a_null_queue_depth_under_inline_dispatch() {
    let app = app(&[]);
    let metrics = metrics_answer(&app).await;
    assert_eq!(metrics["total_jobs"], 0, "{metrics}");
    assert!(metrics.get("queue_depth").is_some(), "{metrics}");
    assert_eq!(metrics["queue_depth"], Value::Null, "{metrics}");
}

#[tokio::test]
async fn the_metrics_answer_counts_the_job_queue_and_the_poison_queue_under_queue_dispatch() {
    let jobs = Arc::new(MemoryQueue::new("jobs"));
    let poison = Arc::new(MemoryQueue::new("jobs-poison"));
    let queues = JobQueues {
        jobs: jobs.clone(),
        poison: poison.clone(),
    };
    let app = app_with_queues(&[UNDER_THE_HOST], Some(queues));
    assert_eq!(
        metrics_answer(&app).await["queue_depth"],
        serde_json::json!({"jobs": 0, "poison": 0})
    );
    for _ in 0..2 {
        let answer = warp::test::request()
            .method("POST")
            .path("/api/SummaryWomble")
            .header("content-type", "application/json")
            .body(r#"{"topics": ["rust"]}"#)
            .reply(&routes(app.context.clone()))
            .await;
        assert_eq!(answer.status(), 202);
    }
    poison.send(r#"{"job_id": "parked"}"#).await.unwrap();
    let metrics = metrics_answer(&app).await;
    assert_eq!(jobs.texts().len(), 2);
    assert_eq!(
        metrics["queue_depth"],
        serde_json::json!({"jobs": 2, "poison": 1}),
        "{metrics}"
    );
    assert_eq!(metrics["by_status"]["queued"], 2, "{metrics}");
}

#[tokio::test]
async fn a_queue_that_cannot_be_counted_is_null_in_a_metrics_answer_that_still_comes() {
    let (_refusing, port) = crate::store::azure::sdk::refused_port();
    let unreachable = AzureQueue::from_connection_string(
        &format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;\
             AccountKey=c2VjcmV0;QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        ),
        "jobs-poison",
    )
    .unwrap();
    let queues = JobQueues {
        jobs: Arc::new(MemoryQueue::new("jobs")),
        poison: Arc::new(unreachable),
    };
    let app = app_with_queues(&[UNDER_THE_HOST], Some(queues));
    let metrics = metrics_answer(&app).await;
    assert_eq!(
        metrics["queue_depth"],
        serde_json::json!({"jobs": 0, "poison": null}),
        "{metrics}"
    );
    assert_eq!(
        metrics["total_jobs"], 0,
        "the rest of the answer is there: {metrics}"
    );
}
