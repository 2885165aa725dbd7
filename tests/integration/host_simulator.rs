//! The Functions host simulator's own tests: the real handler under it, storing in a
//! temporary directory (no Azurite needed).

use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::host::{
    timer_payload, FunctionDefinition, HostOptions, HostRequest, HostSimulator, READINESS_LIMIT,
};

/// The handler under the host, storing in a temporary directory (no Azurite needed).
async fn local_host(options: HostOptions) -> (HostSimulator, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = dir
        .path()
        .to_str()
        .expect("a UTF-8 temporary path")
        .to_owned();
    let host = HostSimulator::start(options.env("OUTPUT_STORAGE_DIR", store)).await;
    (host, dir)
}

#[tokio::test]
async fn the_handler_is_ready_when_it_answers_the_probe() {
    let (host, _dir) = local_host(HostOptions::default()).await;
    assert!(host.startup_time() < READINESS_LIMIT);
    assert!(host
        .app()
        .function("SummaryWomble")
        .is_some_and(FunctionDefinition::is_http_in_and_out));
    assert!(host
        .app()
        .function("GetHotTopics")
        .is_some_and(FunctionDefinition::is_timer));
    let probe = host.direct(HostRequest::get("/")).await;
    assert!((100..600).contains(&probe.status));
}

#[tokio::test]
async fn a_forwarded_status_query_with_a_bad_job_id_answers_400_json() {
    let (host, _dir) = local_host(HostOptions::default()).await;
    let response = host
        .forward(HostRequest::get("/api/SummaryWomble?job_id=not-a-uuid"))
        .await;
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(response.json()["error"].is_string());
}

#[tokio::test]
async fn the_same_query_in_the_envelope_form_answers_400_too() {
    let (host, _dir) = local_host(HostOptions::default()).await;
    let response = host
        .invoke_http(HostRequest::get("/api/SummaryWomble?job_id=not-a-uuid"))
        .await;
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(response.json()["error"].is_string());
    assert_eq!(host.contract_violations(), Vec::<String>::new());
}

#[tokio::test]
async fn with_keys_enforced_a_call_without_a_valid_key_gets_an_empty_401_and_a_valid_key_passes() {
    let (host, _dir) = local_host(HostOptions::default().enforce_keys(["k1"])).await;
    let path = "/api/SummaryWomble?job_id=not-a-uuid";
    let refused = [
        HostRequest::get(path),
        HostRequest::get(path).header("x-functions-key", "wrong"),
        // The header wins over the query parameter.
        HostRequest::get(&format!("{path}&code=k1")).header("x-functions-key", "wrong"),
    ];
    for request in refused {
        let response = host.forward(request.clone()).await;
        assert_eq!(response.status, 401, "{request:?}");
        assert!(response.body.is_empty(), "{request:?}: {}", response.text());
        assert_eq!(host.invoke_http(request).await.status, 401);
    }
    for request in [
        HostRequest::get(path).header("x-functions-key", "k1"),
        HostRequest::get(&format!("{path}&code=k1")),
    ] {
        assert_eq!(
            host.forward(request.clone()).await.status,
            400,
            "{request:?}"
        );
        assert_eq!(host.invoke_http(request).await.status, 400);
    }
}

#[tokio::test]
async fn a_function_key_opens_only_its_own_function_at_its_declared_route() {
    let (host, _dir) = local_host(
        HostOptions::default()
            .enforce_keys(["host-key"])
            .function_key("Dashboard", "dashboard-key"),
    )
    .await;
    let dashboard = host
        .app()
        .http_function_at("/api/dashboard")
        .expect("Dashboard's route");
    assert_eq!(dashboard.name, "Dashboard");
    assert_eq!(
        dashboard.public_path(&host.app().route_prefix).as_deref(),
        Some("/api/dashboard")
    );

    let page = host
        .forward(HostRequest::get("/api/dashboard?code=dashboard-key"))
        .await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.text().contains("<html"));
    let by_host_key = host
        .forward(HostRequest::get("/api/DASHBOARD").header("x-functions-key", "host-key"))
        .await;
    assert_eq!(by_host_key.status, 200);

    let api = "/api/SummaryWomble?job_id=not-a-uuid";
    let refused = host
        .forward(HostRequest::get(api).header("x-functions-key", "dashboard-key"))
        .await;
    assert_eq!(refused.status, 401);
    assert!(refused.body.is_empty());
    let accepted = host
        .forward(HostRequest::get(api).header("x-functions-key", "host-key"))
        .await;
    assert_eq!(accepted.status, 400);
    // Dashboard lists GET only.
    assert_eq!(
        host.forward(HostRequest::post("/api/dashboard?code=host-key", "{}"))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn unknown_routes_and_unlisted_methods_get_the_hosts_empty_404() {
    let (host, _dir) = local_host(HostOptions::default()).await;
    for request in [
        HostRequest::get("/api/Nope"),
        HostRequest::get("/api/GetHotTopics"),
        HostRequest::new("PUT", "/api/SummaryWomble"),
    ] {
        let response = host.forward(request.clone()).await;
        assert_eq!(response.status, 404, "{request:?}");
        assert!(response.body.is_empty(), "{request:?}: {}", response.text());
    }
}

#[tokio::test]
async fn a_killed_handler_stays_down_until_restarted_and_then_answers_again() {
    let (mut host, _dir) = local_host(HostOptions::default()).await;
    host.kill();
    let status = host.exit_status().expect("a killed handler has exited");
    assert!(!status.success());
    let while_down = host
        .forward(HostRequest::get("/api/SummaryWomble?job_id=not-a-uuid"))
        .await;
    assert_eq!(while_down.status, 500);
    assert!(while_down.body.is_empty());

    host.restart().await;
    assert!(host.exit_status().is_none());
    assert_eq!(host.restarts(), 1);
    let response = host
        .forward(HostRequest::get("/api/SummaryWomble?job_id=not-a-uuid"))
        .await;
    assert_eq!(response.status, 400, "{}", response.text());
}

/// Sends `signal` to the handler and waits until it has exited.
async fn signal_and_wait(host: &mut HostSimulator, signal: &str) -> ExitStatus {
    let sent = Command::new("kill")
        .args([format!("-{signal}"), host.pid().to_string()])
        .status()
        .expect("kill(1) runs");
    assert!(sent.success(), "kill -{signal} failed");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = host.exit_status() {
            return status;
        }
        assert!(Instant::now() < deadline, "the handler ignored SIG{signal}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_crashed_handler_is_restarted_until_it_has_failed_three_times() {
    let (mut host, _dir) = local_host(HostOptions::default()).await;
    let call = || HostRequest::get("/api/SummaryWomble?job_id=not-a-uuid");
    for restarts in 1..=2 {
        // SIGUSR1 is not handled, so the process dies of it: a crash.
        assert!(!signal_and_wait(&mut host, "USR1").await.success());
        assert_eq!(host.forward(call()).await.status, 400);
        assert_eq!(host.restarts(), restarts);
    }
    signal_and_wait(&mut host, "USR1").await;
    let response = host.forward(call()).await;
    assert_eq!(response.status, 500);
    assert!(response.body.is_empty());
    assert_eq!(host.restarts(), 2);
    assert!(
        host.contract_violations()[0].contains("3 times"),
        "{:?}",
        host.contract_violations()
    );
}

#[tokio::test]
async fn a_handler_stopped_by_sigterm_exits_non_zero_so_the_host_restarts_it() {
    // An exit with code 0 would leave the app down for good: the handler never exits 0 under
    // the host, whoever stops it.
    let (mut host, _dir) = local_host(HostOptions::default()).await;
    let status = signal_and_wait(&mut host, "TERM").await;
    assert!(status.code().is_some_and(|code| code != 0), "{status:?}");
    let response = host
        .forward(HostRequest::get("/api/SummaryWomble?job_id=not-a-uuid"))
        .await;
    assert_eq!(response.status, 400);
    assert_eq!(host.restarts(), 1);
}

#[tokio::test]
async fn a_handler_that_cannot_start_reports_its_exit_and_log() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let failure = HostSimulator::try_start(
        HostOptions::default()
            .env("OUTPUT_STORAGE_DIR", dir.path().to_str().expect("UTF-8"))
            .env("MAX_CONCURRENT_JOBS", "many"),
    )
    .await
    .err()
    .expect("an invalid setting stops the handler");
    let code = failure.exit_status.and_then(|status| status.code());
    assert!(code.is_some_and(|code| code != 0), "{failure}");
    assert!(failure.logs.contains("MAX_CONCURRENT_JOBS"), "{failure}");
}

#[tokio::test]
async fn a_timer_run_arrives_as_an_envelope_and_its_logs_come_back() {
    use warp::Filter as _;
    // A SummaryWomble stand-in that issues a ticket (and knows no status, which the run
    // logs and lives with).
    let job_id = uuid::Uuid::new_v4().to_string();
    let ticket = json!({"job_id": job_id, "status": "queued", "topics_requested": ["technology"], "limit": 10});
    let routes = warp::post().map(move || {
        warp::reply::with_status(warp::reply::json(&ticket), warp::http::StatusCode::ACCEPTED)
    });
    let listener = testkit::port::listener().await;
    let url = format!(
        "http://{}/api/SummaryWomble",
        listener.local_addr().expect("an address")
    );
    tokio::spawn(warp::serve(routes).incoming(listener).run());

    let (host, _dir) = local_host(
        HostOptions::default()
            .env("SUMMARY_WOMBLE_URL", url)
            .env("STATUS_CHECK_DELAY_SECONDS", "0")
            .env("HOT_TOPICS_SUBREDDITS", "technology"),
    )
    .await;
    let outcome = host
        .invoke_timer(
            "GetHotTopics",
            timer_payload(Some("2026-01-01T06:00:00+00:00"), false),
        )
        .await;
    assert!(outcome.succeeded, "{outcome:?}\n{}", host.logs());
    assert_eq!(outcome.status, 200);
    assert!(!outcome.logs.is_empty());
    assert!(
        outcome.logs.iter().any(|line| line.contains(&job_id)),
        "{outcome:?}"
    );
    assert!(host
        .logs()
        .contains(&format!("[host] GetHotTopics: {}", outcome.logs[0])));
    assert_eq!(host.contract_violations(), Vec::<String>::new());
}

#[test]
fn a_timer_payload_carries_the_schedule_status_the_host_sends() {
    let payload = timer_payload(Some("2026-01-01T06:00:00+00:00"), true);
    assert_eq!(
        payload["ScheduleStatus"]["Next"],
        "2026-01-01T06:00:00+00:00"
    );
    assert_eq!(
        payload["ScheduleStatus"]["Last"],
        "2026-01-01T00:00:00+00:00"
    );
    assert_eq!(payload["IsPastDue"], true);
    assert_eq!(timer_payload(None, false)["ScheduleStatus"], Value::Null);
}

/// A handler counts as ready only when it holds the port that answered: a process that took
/// the port first answers the probe too, while the handler fails to bind. The check reads who
/// holds the listening socket, not when anything happened.
#[tokio::test]
async fn an_answer_counts_only_from_the_process_that_holds_the_port() {
    let listener = testkit::port::listener().await;
    let port = listener.local_addr().unwrap().port();
    let ours = std::process::id();
    assert!(testkit::process::listens_on(ours, port));
    let closed = testkit::port::ClosedPort::new();
    assert!(!testkit::process::listens_on(ours, closed.port()));
    // Another process does not hold our port.
    let mut other = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    assert!(!testkit::process::listens_on(other.id(), port));
    other.kill().unwrap();
    other.wait().unwrap();
}
