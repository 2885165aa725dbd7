//! The SummaryWomble API end to end, as a caller sees it through the Functions host.

use std::time::Duration;

use serde_json::{json, Value};

use testkit::app::{job, JobApi, TestApp};
use testkit::host::HostRequest;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_started_job_gets_a_ticket_and_completes_with_its_topics_stored() {
    // The manual test: one subreddit, two posts, then poll to completed.
    let app = TestApp::start().await;
    let response = app
        .host
        .forward(
            HostRequest::post("/api/SummaryWomble", Vec::new())
                .header("Host", "womble.example.net")
                .json(&json!({"topics": ["technology"], "limit": 2})),
        )
        .await;
    assert_eq!(response.status, 202);
    let ticket = response.json();
    let id = ticket["job_id"].as_str().unwrap().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
    assert_eq!(ticket["status"], "queued");
    assert_eq!(
        ticket["message"],
        "Content processing started. Use job_id to check status."
    );
    assert_eq!(ticket["source"], "reddit");
    assert_eq!(ticket["topics_requested"], json!(["technology"]));
    assert_eq!(ticket["limit"], 2);
    let status_url = format!("http://womble.example.net/api/SummaryWomble?job_id={id}");
    assert_eq!(ticket["status_query_url"], status_url);
    assert_eq!(
        response.header("location").as_deref(),
        Some(status_url.as_str())
    );
    assert!(response.header("retry-after").is_some());
    assert_eq!(
        ticket["status_check_example"],
        json!({"method": "POST", "url": "http://womble.example.net/api/SummaryWomble",
               "body": {"action": "status", "job_id": id}})
    );
    assert!(ticket["timestamp"].as_str().unwrap().ends_with('Z'));

    let done = app.wait_terminal(&id, WAIT).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["progress"],
        json!({"step": "finished", "completed": 1, "total": 1})
    );
    assert_eq!(done["error"], Value::Null);
    let results = &done["results"];
    assert_eq!(results["status"], "completed");
    assert_eq!(results["source"], "reddit");
    assert_eq!(results["total_topics"], 2);
    assert_eq!(results["total_subreddits"], 1);
    let outcome = &results["results"][0];
    assert_eq!(outcome["subreddit"], "technology");
    assert_eq!(outcome["status"], "success");
    assert_eq!(outcome["topics_count"], 2);
    let stamp = results["timestamp"].as_str().unwrap();
    assert_eq!(
        outcome["blob_name"],
        format!("{stamp}_reddit_technology.json")
    );

    // The output blob, exactly as api.md section 6 describes it.
    let output = app
        .container
        .read_json(outcome["blob_name"].as_str().unwrap())
        .await
        .expect("the output blob exists");
    assert_eq!(output["job_id"], id.as_str());
    assert_eq!(output["source"], "reddit");
    assert_eq!(output["subject"], "technology");
    assert_eq!(output["fetched_at"], stamp);
    assert_eq!(output["count"], 2);
    let topics = output["topics"].as_array().unwrap();
    assert_eq!(topics.len(), 2);
    // The fake's first two posts are stickied: the stored ones are the next two.
    assert_eq!(topics[0]["reddit_id"], "technology_2");
    assert_eq!(
        topics[0]["title"],
        "Post 2 of r/technology: <b>bold</b> & more"
    );
    assert_eq!(
        topics[0]["reddit_url"],
        "https://www.reddit.com/r/technology/comments/technology_2/post_2/"
    );
    assert_eq!(
        topics[0]["external_url"],
        "https://example.com/technology/2"
    );
    assert_eq!(topics[0]["created_utc"], 1_754_920_343_i64);
    assert_eq!(topics[0]["fetched_at"], stamp);
    assert_eq!(topics[1]["selftext"].as_str().unwrap().chars().count(), 500);
    for topic in topics {
        let mut keys: Vec<&str> = topic
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "author",
                "created_utc",
                "external_url",
                "fetched_at",
                "num_comments",
                "reddit_id",
                "reddit_url",
                "score",
                "selftext",
                "subreddit",
                "title"
            ]
        );
    }
}

#[tokio::test]
async fn the_status_answer_is_exactly_the_stored_status_blob() {
    let app = TestApp::start().await;
    let ticket = app.start_job(job(&["technology", "programming"], 3)).await;
    let id = ticket["job_id"].as_str().unwrap();
    let done = app.wait_terminal(id, WAIT).await;
    let stored = app.stored_status(id).await.expect("status.json exists");
    assert_eq!(stored, done);
    for key in [
        "job_id",
        "status",
        "created_at",
        "started_at",
        "updated_at",
        "finished_at",
        "request",
        "progress",
        "error",
        "results",
    ] {
        assert!(stored.get(key).is_some(), "{key} missing from {stored}");
    }
    assert_eq!(
        stored["request"],
        json!({"source": "reddit", "topics": ["technology", "programming"], "limit": 3, "priority": "normal"})
    );
    for key in ["created_at", "started_at", "updated_at", "finished_at"] {
        let text = stored[key].as_str().unwrap();
        assert!(text.ends_with('Z'), "{key} = {text}");
        chrono::DateTime::parse_from_rfc3339(text).unwrap();
    }
    // A terminal job is not polled again.
    assert!(app.status(id).await.header("retry-after").is_none());
}

#[tokio::test]
async fn the_job_is_stored_as_queued_before_the_ticket_is_answered() {
    let app = TestApp::start().await;
    // A held Reddit keeps the job from moving on before we look.
    let listings = app.reddit.hold_listings();
    let ticket = app.start_job(job(&["technology"], 1)).await;
    let id = ticket["job_id"].as_str().unwrap();
    let stored = app
        .stored_status(id)
        .await
        .expect("the status blob exists as soon as the ticket does");
    assert!(
        ["queued", "running"].contains(&stored["status"].as_str().unwrap()),
        "{stored}"
    );
    assert_eq!(stored["results"], Value::Null);
    let response = app.status(id).await;
    assert_eq!(response.header("retry-after").as_deref(), Some("5"));
    listings.release();
    app.wait_terminal(id, WAIT).await;
}

#[tokio::test]
async fn status_by_post_action_and_by_get_agree() {
    let app = TestApp::start().await;
    let id = app.submit(job(&["gadgets"], 1)).await;
    app.wait_terminal(&id, WAIT).await;
    let by_get = app.status(&id).await;
    let by_post = app
        .host
        .forward(
            HostRequest::post("/api/SummaryWomble", Vec::new())
                .json(&json!({"action": "status", "job_id": id})),
        )
        .await;
    assert_eq!(by_get.status, 200);
    assert_eq!(by_post.status, 200);
    assert_eq!(by_get.json(), by_post.json());
    assert_eq!(
        by_get.header("content-type").as_deref(),
        Some("application/json")
    );
}

#[tokio::test]
async fn an_unknown_job_is_404_in_both_forms() {
    let app = TestApp::start().await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let by_get = app.status(&unknown).await;
    assert_eq!(by_get.status, 404);
    assert!(by_get.json()["error"].as_str().unwrap().contains(&unknown));
    let by_post = app
        .host
        .forward(
            HostRequest::post("/api/SummaryWomble", Vec::new())
                .json(&json!({"action": "status", "job_id": unknown})),
        )
        .await;
    assert_eq!(by_post.status, 404);
    let by_envelope = app
        .host
        .invoke_http(HostRequest::get(&format!(
            "/api/SummaryWomble?job_id={unknown}"
        )))
        .await;
    assert_eq!(by_envelope.status, 404);
    assert!(by_envelope.json()["error"].is_string());
    // The host matches routes in any case and forwards the caller's spelling.
    let lower_case = app
        .host
        .forward(HostRequest::get(&format!(
            "/api/summarywomble?job_id={unknown}"
        )))
        .await;
    assert_eq!(lower_case.status, 404);
    assert!(lower_case.json()["error"]
        .as_str()
        .unwrap()
        .contains(&unknown));
}

#[tokio::test]
async fn the_envelope_form_starts_a_job_and_answers_its_status() {
    let app = TestApp::start().await;
    let response = app
        .host
        .invoke_http(
            HostRequest::post("/api/SummaryWomble", Vec::new())
                .header("X-Forwarded-Host", "womble.azurewebsites.net")
                .header("X-Forwarded-Proto", "https")
                .json(&json!({"topics": ["programming"], "limit": 2})),
        )
        .await;
    assert_eq!(
        response.status,
        202,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(
        response.header("content-type").as_deref(),
        Some("application/json")
    );
    let ticket = response.json();
    let id = ticket["job_id"].as_str().unwrap().to_owned();
    let expected = format!("https://womble.azurewebsites.net/api/SummaryWomble?job_id={id}");
    assert_eq!(ticket["status_query_url"], expected);
    assert_eq!(
        response.header("location").as_deref(),
        Some(expected.as_str())
    );
    assert!(
        app.host.contract_violations().is_empty(),
        "{:?}",
        app.host.contract_violations()
    );

    app.wait_terminal(&id, WAIT).await;
    let status = app
        .host
        .invoke_http(
            HostRequest::post("/api/SummaryWomble", Vec::new())
                .json(&json!({"action": "status", "job_id": id})),
        )
        .await;
    assert_eq!(status.status, 200);
    assert_eq!(status.json()["status"], "completed");
    assert_eq!(status.json(), app.stored_status(&id).await.unwrap());
}

#[tokio::test]
async fn an_empty_post_starts_the_default_collection() {
    let app = TestApp::start().await;
    let response = app
        .host
        .forward(HostRequest::post("/api/SummaryWomble", Vec::new()))
        .await;
    assert_eq!(response.status, 202);
    let ticket = response.json();
    assert_eq!(
        ticket["topics_requested"],
        json!([
            "technology",
            "programming",
            "MachineLearning",
            "datascience",
            "computerscience",
            "gadgets",
            "Futurology"
        ])
    );
    assert_eq!(ticket["limit"], 10);
    let done = app
        .wait_terminal(ticket["job_id"].as_str().unwrap(), WAIT)
        .await;
    assert_eq!(done["results"]["total_subreddits"], 7);
    assert_eq!(done["results"]["total_topics"], 70);
}

#[tokio::test]
async fn duplicate_topics_are_collected_once_keeping_the_first_spelling() {
    let app = TestApp::start().await;
    let ticket = app
        .start_job(job(
            &["Technology", "technology", "TECHNOLOGY", "gadgets"],
            1,
        ))
        .await;
    assert_eq!(ticket["topics_requested"], json!(["Technology", "gadgets"]));
    let done = app
        .wait_terminal(ticket["job_id"].as_str().unwrap(), WAIT)
        .await;
    assert_eq!(done["results"]["total_subreddits"], 2);
    assert_eq!(app.reddit.listing_requests("technology"), 1);
}

/// Every one of these is refused with a 4xx JSON error naming the problem, and nothing is
/// written to storage.
#[tokio::test]
async fn bad_input_gets_a_json_error_and_changes_nothing() {
    let app = TestApp::start().await;
    let before = app.container.names().await;
    let long_topics: Vec<String> = (0..51).map(|i| format!("sub{i}")).collect();
    let post = |body: &str| {
        HostRequest::post("/api/SummaryWomble", body.as_bytes().to_vec())
            .header("Content-Type", "application/json")
    };
    let cases: Vec<(&str, HostRequest, u16, &str)> = vec![
        ("not JSON", post("{\"topics\": ["), 400, "not valid JSON"),
        ("JSON array body", post("[1,2]"), 400, "JSON object"),
        (
            "JSON string body",
            post("\"technology\""),
            400,
            "JSON object",
        ),
        (
            "unsupported source",
            post(r#"{"source": "twitter"}"#),
            400,
            "Unsupported source: twitter",
        ),
        (
            "source not a string",
            post(r#"{"source": 7}"#),
            400,
            "source",
        ),
        (
            "topics not an array",
            post(r#"{"topics": "technology"}"#),
            400,
            "topics",
        ),
        ("empty topics", post(r#"{"topics": []}"#), 400, "topics"),
        (
            "too many topics",
            post(&json!({"topics": long_topics}).to_string()),
            400,
            "topics",
        ),
        (
            "topic not a string",
            post(r#"{"topics": ["technology", 5]}"#),
            400,
            "topics[1]",
        ),
        (
            "topic with a space",
            post(r#"{"topics": ["machine learning"]}"#),
            400,
            "topics[0]",
        ),
        (
            "topic too short",
            post(r#"{"topics": ["a"]}"#),
            400,
            "topics[0]",
        ),
        (
            "topic too long",
            post(r#"{"topics": ["abcdefghijklmnopqrstuv"]}"#),
            400,
            "topics[0]",
        ),
        (
            "topic starting with _",
            post(r#"{"topics": ["_hidden"]}"#),
            400,
            "topics[0]",
        ),
        (
            "topic path traversal",
            post(r#"{"topics": ["../jobs"]}"#),
            400,
            "topics[0]",
        ),
        ("limit zero", post(r#"{"limit": 0}"#), 400, "limit"),
        ("limit too big", post(r#"{"limit": 101}"#), 400, "limit"),
        ("limit negative", post(r#"{"limit": -1}"#), 400, "limit"),
        ("limit fractional", post(r#"{"limit": 2.5}"#), 400, "limit"),
        ("limit a string", post(r#"{"limit": "10"}"#), 400, "limit"),
        (
            "unknown priority",
            post(r#"{"priority": "urgent"}"#),
            400,
            "priority",
        ),
        (
            "plain http callback",
            post(r#"{"callback_url": "http://example.com/hook"}"#),
            400,
            "callback_url",
        ),
        (
            "callback not a URL",
            post(r#"{"callback_url": "not a url"}"#),
            400,
            "callback_url",
        ),
        (
            "callback to a private address",
            post(r#"{"callback_url": "https://192.168.1.10/hook"}"#),
            400,
            "callback_url",
        ),
        (
            "unknown field",
            post(r#"{"topic": ["technology"]}"#),
            400,
            "\"topic\"",
        ),
        (
            "unknown action",
            post(r#"{"action": "explode"}"#),
            400,
            "Unknown action",
        ),
        (
            "action not a string",
            post(r#"{"action": 1}"#),
            400,
            "action",
        ),
        (
            "status without job_id",
            post(r#"{"action": "status"}"#),
            400,
            "job_id",
        ),
        (
            "status with a bad job_id",
            post(r#"{"action": "status", "job_id": "123"}"#),
            400,
            "job_id",
        ),
        (
            "status with a numeric job_id",
            post(r#"{"action": "status", "job_id": 123}"#),
            400,
            "job_id",
        ),
        (
            "GET with a bad job_id",
            HostRequest::get("/api/SummaryWomble?job_id=../../etc"),
            400,
            "job_id",
        ),
        (
            "DELETE without job_id",
            HostRequest::delete("/api/SummaryWomble"),
            400,
            "job_id",
        ),
        (
            "list with a bad status",
            post(r#"{"action": "list", "status": "sleeping"}"#),
            400,
            "status",
        ),
        (
            "list with top 0",
            HostRequest::get("/api/SummaryWomble?top=0"),
            400,
            "top",
        ),
        (
            "list with a forged continuation",
            HostRequest::get("/api/SummaryWomble?continuation=abc"),
            400,
            "continuation",
        ),
        (
            "form content type",
            HostRequest::post("/api/SummaryWomble", b"topics=technology&limit=2".to_vec())
                .header("Content-Type", "application/x-www-form-urlencoded"),
            415,
            "send a JSON object",
        ),
        (
            "text content type with a body that is not JSON",
            HostRequest::post("/api/SummaryWomble", b"technology".to_vec())
                .header("Content-Type", "text/plain"),
            415,
            "send a JSON object",
        ),
        (
            "xml content type",
            HostRequest::post("/api/SummaryWomble", b"{}".to_vec())
                .header("Content-Type", "application/xml"),
            415,
            "Content-Type",
        ),
        (
            "body over 64 KiB",
            post(&format!(
                "{{\"topics\": [\"technology\"], \"pad\": \"{}\"}}",
                "x".repeat(70 * 1024)
            )),
            413,
            "64 KiB",
        ),
        (
            "PUT",
            HostRequest::new("PUT", "/api/SummaryWomble"),
            405,
            "not allowed",
        ),
        (
            "PATCH",
            HostRequest::new("PATCH", "/api/SummaryWomble"),
            405,
            "not allowed",
        ),
        (
            "bad idempotency key",
            post("{}").header("Idempotency-Key", &"k".repeat(201)),
            400,
            "Idempotency-Key",
        ),
    ];
    assert!(cases.len() >= 25);
    for (name, request, status, needle) in cases {
        // PUT and PATCH are not in function.json: the host itself refuses them. Send those
        // straight to the handler to check its own answer.
        let response = if status == 405 {
            app.host.direct(request).await
        } else {
            app.host.forward(request).await
        };
        assert_eq!(
            response.status,
            status,
            "{name}: {}",
            String::from_utf8_lossy(&response.body)
        );
        assert!(
            response
                .header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{name}: not JSON"
        );
        let error = response.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no error text"))
            .to_owned();
        assert!(
            error.contains(needle),
            "{name}: {error:?} should mention {needle:?}"
        );
    }
    assert_eq!(
        app.container.names().await,
        before,
        "a rejected request wrote to storage"
    );
    assert!(
        app.reddit.requests().is_empty(),
        "a rejected request reached Reddit"
    );
}

#[tokio::test]
async fn bad_input_in_the_envelope_form_is_refused_the_same_way() {
    let app = TestApp::start().await;
    let before = app.container.names().await;
    let response = app
        .host
        .invoke_http(
            HostRequest::post("/api/SummaryWomble", Vec::new()).json(&json!({"limit": 500})),
        )
        .await;
    assert_eq!(response.status, 400);
    assert!(response.json()["error"].as_str().unwrap().contains("limit"));
    let too_big = app
        .host
        .invoke_http(
            HostRequest::post("/api/SummaryWomble", Vec::new())
                .json(&json!({"topics": ["technology"], "pad": "x".repeat(70 * 1024)})),
        )
        .await;
    assert_eq!(too_big.status, 413);
    assert!(app.host.contract_violations().is_empty());
    assert_eq!(app.container.names().await, before);
}

#[tokio::test]
async fn subreddits_that_fail_are_reported_without_failing_the_job() {
    use testkit::fake_reddit::Behaviour;
    let app = TestApp::start().await;
    app.reddit.set("privatesub", Behaviour::Private);
    app.reddit.set("nosuchsub", Behaviour::Missing);
    let id = app
        .submit(job(&["technology", "privatesub", "nosuchsub"], 2))
        .await;
    let done = app.wait_terminal(&id, WAIT).await;
    assert_eq!(done["status"], "completed");
    let results = done["results"]["results"].as_array().unwrap();
    assert_eq!(
        results[1],
        json!({"subreddit": "privatesub", "status": "fetch_failed", "error": "r/privatesub is private (HTTP 403)"})
    );
    assert_eq!(
        results[2],
        json!({"subreddit": "nosuchsub", "status": "fetch_failed", "error": "r/nosuchsub does not exist"})
    );
    assert_eq!(done["results"]["total_topics"], 2);
}

#[tokio::test]
async fn a_job_where_every_subreddit_fails_ends_failed_with_the_reasons() {
    use testkit::fake_reddit::Behaviour;
    let app = TestApp::start().await;
    app.reddit.set("bannedsub", Behaviour::Banned);
    let id = app.submit(job(&["bannedsub"], 2)).await;
    let done = app.wait_terminal(&id, WAIT).await;
    assert_eq!(done["status"], "failed");
    assert!(
        done["error"]
            .as_str()
            .unwrap()
            .contains("r/bannedsub is banned (HTTP 404)"),
        "{done}"
    );
    assert_eq!(done["results"]["status"], "failed");
}

#[tokio::test]
async fn the_readiness_probe_and_unknown_routes_answer_json() {
    let app = TestApp::start().await;
    let ready = app.host.direct(HostRequest::get("/")).await;
    assert_eq!(ready.status, 200);
    let unknown = app.host.direct(HostRequest::get("/api/Nope")).await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.json()["error"].is_string());
}

#[tokio::test]
async fn a_seven_subreddit_job_fetches_its_subreddits_concurrently() {
    let app = TestApp::start().await;
    // The first listing of a process probes Reddit's rate-limit window alone; once the window
    // is known, a job's listings go together.
    let first = app.submit(job(&["warmup"], 1)).await;
    app.wait_terminal(&first, WAIT).await;
    let listings = app.reddit.hold_listings();
    let ticket = app.start_job(json!({"limit": 3})).await;
    // All seven listings reach Reddit before any is answered.
    listings.until_arrived(7, WAIT).await;
    listings.release();
    let done = app
        .wait_terminal(ticket["job_id"].as_str().unwrap(), WAIT)
        .await;
    assert_eq!(done["status"], "completed");
    // All seven listings were in flight at the same time: the job costs one listing round
    // trip, not seven.
    assert_eq!(app.reddit.max_in_flight(), 7);
}

/// The requests of the design document's two curl blocks, byte for byte: its "API Usage" start
/// (labelled JSON, body spread over lines) and its "Manual Testing" start and status check,
/// sent as `curl -d` sends them without a `-H 'Content-Type…'` (labelled as a form). The route
/// is the document's lower-case one, and the host demands the function key the document sends.
/// Each job must complete.
#[tokio::test]
async fn the_design_documents_curl_requests_start_jobs_that_complete() {
    const KEY: &str = "design-document-function-key";
    const ROUTE: &str = "/api/summarywomble";
    let options = testkit::host::HostOptions::default()
        .enforce_keys(["a-host-key-the-document-does-not-use"])
        .function_key("SummaryWomble", KEY);
    let app = TestApp::start_hosted(
        testkit::azurite::Container::fresh().await,
        Vec::new(),
        options,
    )
    .await;
    // What curl adds to every request it sends.
    let curl = |body: &str, content_type: &str| {
        HostRequest::post(ROUTE, body.as_bytes().to_vec())
            .header("User-Agent", "curl/7.88.1")
            .header("Accept", "*/*")
            .header("x-functions-key", KEY)
            .header("Content-Type", content_type)
    };
    const FORM: &str = "application/x-www-form-urlencoded";

    let keyless =
        HostRequest::post(ROUTE, br#"{"source": "reddit"}"#.to_vec()).header("Content-Type", FORM);
    assert_eq!(app.host.call(keyless).await.status, 401);

    let api_usage = curl(
        "{\n    \"source\": \"reddit\",\n    \"topics\": [\"technology\", \"programming\"],\n    \"limit\": 10\n  }",
        "application/json",
    );
    let manual_testing = curl(
        r#"{"source": "reddit", "topics": ["technology"], "limit": 2}"#,
        FORM,
    );
    for (block, start, subreddits) in [
        ("API Usage", api_usage, 2),
        ("Manual Testing", manual_testing, 1),
    ] {
        let ticket = app.host.call(start).await;
        assert_eq!(ticket.status, 202, "{block}: {}", ticket.text());
        let id = ticket.json()["job_id"].as_str().unwrap().to_owned();
        let status_check = format!("{{\"action\": \"status\", \"job_id\": \"{id}\"}}");
        let mut last = Value::Null;
        testkit::poll::until(&format!("the {block} job to end"), WAIT, async || {
            let answer = app.host.call(curl(&status_check, FORM)).await;
            assert_eq!(answer.status, 200, "{block}: {}", answer.text());
            last = answer.json();
            !["queued", "running"].contains(&last["status"].as_str().unwrap_or(""))
        })
        .await;
        assert_eq!(last["status"], "completed", "{block}: {last}");
        assert_eq!(last["results"]["total_subreddits"], subreddits, "{block}");
    }
}
