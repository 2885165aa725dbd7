//! `openapi.yaml` against the real service: every answer a tour of the API gets must be a
//! status code the spec documents for that operation, carry a JSON body that validates against
//! the documented schema, and have the documented headers. The spec cannot drift from the code
//! without this failing.

use std::time::Duration;

use serde_json::{json, Value};

use testkit::app::{job, post, JobApi, TestApp};
use testkit::fake_reddit::Behaviour;
use testkit::host::{HostRequest, HostResponse};

const PATH: &str = "/api/SummaryWomble";

pub struct Spec {
    document: Value,
}

impl Spec {
    pub fn load() -> Self {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml"))
            .expect("openapi.yaml exists");
        let document: Value = serde_yaml::from_str(&text).expect("openapi.yaml is valid YAML");
        assert_eq!(document["openapi"], "3.1.0");
        Self { document }
    }

    fn resolve<'a>(&'a self, mut value: &'a Value) -> &'a Value {
        while let Some(reference) = value.get("$ref").and_then(Value::as_str) {
            let pointer = reference.strip_prefix('#').expect("local references only");
            value = self
                .document
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling reference {reference}"));
        }
        value
    }

    /// The documented response of `method path` for `status`.
    fn response(&self, path: &str, method: &str, status: u16) -> &Value {
        let operation = &self.document["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not in the spec");
        let response = operation["responses"]
            .get(status.to_string())
            .unwrap_or_else(|| {
                panic!("{method} {path} answered {status}, which the spec does not document")
            });
        self.resolve(response)
    }

    /// Checks one real answer against the spec.
    pub fn check(&self, path: &str, method: &str, answer: &HostResponse) {
        let response = self.response(path, method, answer.status);
        let content_type = answer.header("content-type").unwrap_or_default();
        let schema = &response["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {path} {}: no JSON schema documented",
            answer.status
        );
        assert!(
            content_type.starts_with("application/json"),
            "{method} {path} {}: content type {content_type:?}",
            answer.status
        );
        let context = format!("{method} {path} {}", answer.status);
        self.validate(schema, &answer.json(), &context);
    }

    /// Checks `value` against the component schema `name`: for what the app sends elsewhere
    /// than in an HTTP answer (a queue message).
    pub fn check_schema(&self, name: &str, value: &Value) {
        let schema = json!({"$ref": format!("#/components/schemas/{name}")});
        assert!(
            self.document["components"]["schemas"][name].is_object(),
            "openapi.yaml has no schema {name}"
        );
        self.validate(&schema, value, name);
    }

    fn validate(&self, schema: &Value, value: &Value, context: &str) {
        // The schema with the components beside it, so its references resolve.
        let mut root = schema.clone();
        root["components"] = self.document["components"].clone();
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .expect("the documented schema compiles");
        let errors: Vec<String> = validator
            .iter_errors(value)
            .map(|error| format!("{error} at {}", error.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{context}: the body breaks the spec:\n{}\n{value:#}",
            errors.join("\n")
        );
    }
}

#[tokio::test]
async fn every_answer_of_a_tour_of_the_api_matches_openapi_yaml() {
    let spec = Spec::load();
    let app = TestApp::start().await;
    // Held until it has been seen running and cancelled.
    let hold = app.reddit.hold(&["slowsub"]);
    app.reddit.set("privatesub", Behaviour::Private);
    let call = |request: HostRequest| async { app.host.forward(request).await };

    // Start: the ticket, with Location and Retry-After.
    let started = call(post(
        &json!({"topics": ["technology", "privatesub"], "limit": 2}),
    ))
    .await;
    spec.check(PATH, "post", &started);
    assert!(started.header("location").is_some() && started.header("retry-after").is_some());
    let id = started.json()["job_id"].as_str().unwrap().to_owned();
    let slow = app.submit(job(&["slowsub"], 1)).await;

    // Status while running, by GET and by POST, then finished.
    let running = call(HostRequest::get(&format!("{PATH}?job_id={slow}"))).await;
    spec.check(PATH, "get", &running);
    spec.check(
        PATH,
        "post",
        &call(post(&json!({"action": "status", "job_id": slow}))).await,
    );
    app.wait_terminal(&id, Duration::from_secs(30)).await;
    let finished = call(HostRequest::get(&format!("{PATH}?job_id={id}"))).await;
    assert_eq!(finished.json()["status"], "completed");
    spec.check(PATH, "get", &finished);

    // Cancel a running job (202), then a finished one (409), both ways.
    spec.check(
        PATH,
        "delete",
        &call(HostRequest::delete(&format!("{PATH}?job_id={slow}"))).await,
    );
    hold.release();
    let conflict = call(post(&json!({"action": "cancel", "job_id": id}))).await;
    assert_eq!(conflict.status, 409);
    spec.check(PATH, "post", &conflict);
    let conflict = call(HostRequest::delete(&format!("{PATH}?job_id={id}"))).await;
    spec.check(PATH, "delete", &conflict);

    // Retry, list (both ways), metrics.
    let retried = call(post(&json!({"action": "retry", "job_id": id}))).await;
    assert_eq!(retried.status, 202);
    spec.check(PATH, "post", &retried);
    app.wait_terminal(
        retried.json()["job_id"].as_str().unwrap(),
        Duration::from_secs(30),
    )
    .await;
    app.wait_terminal(&slow, Duration::from_secs(30)).await;
    spec.check(
        PATH,
        "get",
        &call(HostRequest::get(&format!("{PATH}?top=1"))).await,
    );
    spec.check(
        PATH,
        "post",
        &call(post(
            &json!({"action": "list", "status": "completed", "top": 5}),
        ))
        .await,
    );
    let metrics = call(post(&json!({"action": "metrics"}))).await;
    assert_eq!(metrics.status, 200);
    spec.check(PATH, "post", &metrics);

    // Errors.
    let unknown = uuid::Uuid::new_v4();
    for (method, request, status) in [
        (
            "get",
            HostRequest::get(&format!("{PATH}?job_id={unknown}")),
            404,
        ),
        ("get", HostRequest::get(&format!("{PATH}?job_id=nope")), 400),
        ("post", post(&json!({"limit": 0})), 400),
        (
            "post",
            post(&json!({"action": "retry", "job_id": unknown})),
            404,
        ),
        (
            "post",
            HostRequest::post(PATH, b"{".to_vec()).header("Content-Type", "application/json"),
            400,
        ),
        (
            "post",
            HostRequest::post(PATH, b"x".to_vec()).header("Content-Type", "text/plain"),
            415,
        ),
        (
            "post",
            HostRequest::post(PATH, vec![b' '; 70 * 1024])
                .header("Content-Type", "application/json"),
            413,
        ),
        (
            "delete",
            HostRequest::delete(&format!("{PATH}?job_id={unknown}")),
            404,
        ),
        ("delete", HostRequest::delete(PATH), 400),
    ] {
        let answer = call(request).await;
        assert_eq!(answer.status, status, "{}", answer.text());
        spec.check(PATH, method, &answer);
    }

    // Readiness.
    spec.check("/", "get", &app.host.direct(HostRequest::get("/")).await);
}

#[test]
fn the_spec_documents_every_status_the_api_can_answer() {
    let spec = Spec::load();
    for (method, statuses) in [
        ("get", &[200, 400, 401, 404, 500, 503][..]),
        (
            "post",
            &[200, 202, 400, 401, 404, 409, 413, 415, 500, 503][..],
        ),
        ("delete", &[202, 400, 401, 404, 409, 500, 503][..]),
    ] {
        for status in statuses {
            let response = spec.response(PATH, method, *status);
            assert!(
                response["content"]["application/json"]["schema"].is_object(),
                "{method} {status}"
            );
        }
    }
}
