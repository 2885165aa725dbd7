//! Standalone mode (no Functions host): the handler checks function keys itself, and refuses
//! to start on bad settings.

use serde_json::json;

use testkit::app::StandaloneApp;

#[tokio::test]
async fn function_keys_are_checked_in_standalone_mode_header_first() {
    let app = StandaloneApp::start(vec![("FUNCTION_KEYS", "key-one,key-two")]).await;
    let client = reqwest::Client::new();
    let start = |key: Option<&str>, code: Option<&str>| {
        let mut url = app.url("/api/SummaryWomble");
        if let Some(code) = code {
            url.push_str(&format!("?code={code}"));
        }
        let mut request = client
            .post(url)
            .json(&json!({"topics": ["technology"], "limit": 1}));
        if let Some(key) = key {
            request = request.header("x-functions-key", key);
        }
        request.send()
    };
    let cases = [
        (None, None, 401),
        (Some("wrong"), None, 401),
        (None, Some("wrong"), 401),
        (Some(""), None, 401),
        (Some("key-one-and-more"), None, 401),
        // The header is looked at first; a right code does not rescue a wrong header.
        (Some("wrong"), Some("key-two"), 401),
        (Some("key-one"), None, 202),
        (Some("key-two"), None, 202),
        (None, Some("key-two"), 202),
        (Some("key-one"), Some("wrong"), 202),
    ];
    for (key, code, expected) in cases {
        let answer = start(key, code).await.unwrap();
        assert_eq!(
            answer.status().as_u16(),
            expected,
            "key {key:?}, code {code:?}"
        );
        let body: serde_json::Value = answer.json().await.unwrap();
        if expected == 401 {
            assert!(
                body["error"].as_str().unwrap().contains("function key"),
                "{body}"
            );
        }
    }
    // Readiness needs no key.
    assert_eq!(reqwest::get(app.url("/")).await.unwrap().status(), 200);
    // Nothing but the accepted calls wrote a job.
    let jobs = app.container.status_documents().await.len();
    assert_eq!(jobs, 4);
    assert!(!app.logs().contains("key-one") && !app.logs().contains("key-two"));
}

#[tokio::test]
async fn without_function_keys_standalone_mode_warns_and_lets_calls_through() {
    let app = StandaloneApp::start(vec![]).await;
    let answer = reqwest::Client::new()
        .post(app.url("/api/SummaryWomble"))
        .json(&json!({"topics": ["technology"], "limit": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    // The log is read from the handler's pipes by other threads: it may lag the answer.
    app.wait_for_log("FUNCTION_KEYS", std::time::Duration::from_secs(10))
        .await;
    // Nothing checks callers, so only this machine may call, and the log says so.
    app.wait_for_log("listening", std::time::Duration::from_secs(10))
        .await;
    let logs = app.logs();
    let listening = logs
        .lines()
        .find(|line| line.contains("listening"))
        .unwrap();
    assert!(listening.contains("127.0.0.1:"), "{listening}");
    assert!(
        listening.contains("FUNCTION_KEYS is not set"),
        "{listening}"
    );
}

#[test]
fn a_bad_setting_stops_the_handler_with_a_message_naming_it_and_a_non_zero_exit() {
    for (variable, value) in [
        ("MAX_CONCURRENT_JOBS", "0"),
        ("TIMER_SCHEDULE", "every six hours"),
        ("OUTPUT_CONTAINER", "Not_A_Container"),
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "port"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_handler"))
            .env_clear()
            .env(variable, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{variable}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(variable), "{variable}: {stderr}");
    }
}

#[tokio::test]
async fn with_log_format_json_every_log_line_is_a_json_object() {
    let app = StandaloneApp::start(vec![("LOG_FORMAT", "json")]).await;
    let answer = reqwest::Client::new()
        .post(app.url("/api/SummaryWomble"))
        .json(&json!({"topics": ["technology"], "limit": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    app.wait_for_log("\"job accepted\"", std::time::Duration::from_secs(10))
        .await;
    let logs = app.logs();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert!(!lines.is_empty());
    for line in lines {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(
            entry["level"].is_string() && entry["timestamp"].is_string(),
            "{line}"
        );
    }
    assert!(logs.contains("\"job accepted\""), "{logs}");
}
