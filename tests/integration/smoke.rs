//! `handler smoke`, run as an operator runs it after a deployment, against a real handler in
//! standalone mode (Azurite and a fake Reddit behind it, function keys checked as in Azure):
//! it passes against a working app, and otherwise names the step that failed and why.
//!
//! Every run here has stdout on a pipe, so progress comes as plain lines.

use serde_json::Value;

use testkit::app::StandaloneApp;
use testkit::fake_reddit::{Behaviour, FakeReddit};
use testkit::port::ClosedPort;

use super::cli::{handler, Run};

const KEY: &str = "smoke-test-key";

/// Step 2 (the status check) was reported passed.
fn assert_step_2_passed(run: &Run) {
    assert!(
        run.stdout
            .lines()
            .any(|line| line.starts_with("step 2 (check its status): ok, ")),
        "{run}"
    );
}

/// A standalone app that accepts only [`KEY`], with Reddit played by `reddit`.
async fn app_with(reddit: &FakeReddit) -> StandaloneApp {
    let mut env: Vec<(String, String)> = reddit.env();
    env.push(("FUNCTION_KEYS".into(), KEY.into()));
    StandaloneApp::start(env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()).await
}

/// The job id in `step 1 (start a job): ok, job <id> queued`.
fn job_id_of(run: &Run) -> String {
    let id = run
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("step 1 (start a job): ok, job "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no step 1 line:\n{run}"));
    assert_eq!(id.len(), 36, "{run}");
    id.to_owned()
}

#[tokio::test]
async fn smoke_passes_with_exit_0_against_a_working_app_and_its_function_key() {
    let reddit = FakeReddit::start().await;
    let app = app_with(&reddit).await;
    let run = handler(&["--url", &app.url(""), "--key", KEY, "smoke"]).await;
    assert_eq!(run.code, 0, "{run}\nhandler log:\n{}", app.logs());
    let id = job_id_of(&run);
    for line in [
        format!(
            "smoke check of {}: one job, r/technology, limit 2, within 5m",
            app.url("")
        ),
        format!("step 1 (start a job): ok, job {id} queued"),
        "step 3 (follow it to its end): ok, completed".to_owned(),
    ] {
        assert!(
            run.stdout.lines().any(|seen| seen == line),
            "{line:?}\n{run}"
        );
    }
    assert_step_2_passed(&run);
    assert!(
        run.stdout.contains(&format!("job {id} completed in "))
            && run.stdout.contains(": 1 of 1 subreddits, 2 topics"),
        "{run}"
    );
    let verdict = run.stdout.lines().last().unwrap_or_default();
    assert!(
        verdict.starts_with("smoke check passed in ")
            && verdict.ends_with(&format!(
                "{} started job {id}, answered its status and completed it",
                app.url("")
            )),
        "{run}"
    );
    assert!(run.stderr.is_empty(), "{run}");

    // The job is the design document's manual test, stored like any other.
    let stored = app
        .container
        .stored_status(&id)
        .await
        .expect("the smoke job is stored");
    assert_eq!(stored["status"], "completed");
    assert_eq!(
        stored["request"],
        serde_json::json!({"source": "reddit", "topics": ["technology"], "limit": 2, "priority": "normal"})
    );
}

#[tokio::test]
async fn with_json_stdout_holds_only_the_apis_documents_and_the_verdict_goes_to_stderr() {
    let reddit = FakeReddit::start().await;
    let app = app_with(&reddit).await;
    let run = handler(&["--url", &app.url(""), "--key", KEY, "--json", "smoke"]).await;
    assert_eq!(run.code, 0, "{run}");
    let documents: Vec<Value> = run
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("{line:?}\n{run}")))
        .collect();
    let ticket = documents.first().expect("the ticket");
    let id = ticket["job_id"].as_str().expect("a ticket names its job");
    assert_eq!(ticket["status"], "queued", "{run}");
    let last = documents.last().unwrap();
    assert_eq!(
        (last["job_id"].as_str(), last["status"].as_str()),
        (Some(id), Some("completed")),
        "{run}"
    );
    assert!(run.stderr.starts_with("smoke check passed in "), "{run}");
}

#[tokio::test]
async fn a_refused_or_missing_key_fails_step_1_naming_the_function_key_with_exit_3() {
    let reddit = FakeReddit::start().await;
    let app = app_with(&reddit).await;
    let base = app.url("");

    let run = handler(&["--url", &base, "--key", "not-the-key", "smoke"]).await;
    assert_eq!(run.code, 3, "{run}");
    assert!(
        run.stderr.starts_with(
            "step 1 (start a job): 401 Unauthorized — the key was refused; use the SummaryWomble function key"
        ),
        "{run}"
    );
    assert!(
        run.stderr.ends_with("smoke check failed at step 1 of 3\n"),
        "{run}"
    );

    let run = handler(&["--url", &base, "smoke"]).await;
    assert_eq!(run.code, 3, "{run}");
    assert!(
        run.stderr.starts_with(
            "step 1 (start a job): 401 Unauthorized — no key was sent; pass --key (or set WOMBLE_KEY) with the SummaryWomble function key"
        ),
        "{run}"
    );
    // A refused call starts nothing.
    assert_eq!(app.container.status_documents().await, Vec::<String>::new());
    assert_eq!(reddit.listing_requests_total(), 0);
}

#[tokio::test]
async fn a_port_nothing_listens_on_fails_step_1_telling_to_check_the_url_with_exit_3() {
    // Bound by this test but not listening: refused, and no one else can take it meanwhile.
    let closed = ClosedPort::new();
    let base = format!("http://127.0.0.1:{}", closed.port());
    let run = handler(&["--url", &base, "--key", KEY, "smoke"]).await;
    assert_eq!(run.code, 3, "{run}");
    let failure = run.stderr.lines().next().unwrap_or_default();
    assert!(
        failure.starts_with(&format!(
            "step 1 (start a job): could not connect to {base}/api/SummaryWomble ("
        )) && failure.ends_with(") — check the URL"),
        "{run}"
    );
    assert!(failure.contains("refused"), "{run}");
}

#[tokio::test]
async fn a_url_whose_path_is_not_the_app_fails_step_1_with_404_and_exit_3() {
    let reddit = FakeReddit::start().await;
    let app = app_with(&reddit).await;
    let wrong = app.url("/not-the-app");
    let run = handler(&["--url", &wrong, "--key", KEY, "smoke"]).await;
    assert_eq!(run.code, 3, "{run}");
    assert!(
        run.stderr.starts_with(&format!(
            "step 1 (start a job): 404 Not Found — no SummaryWomble function answers at {wrong}"
        )),
        "{run}"
    );
    assert!(run.stderr.contains("check the URL"), "{run}");
    assert_eq!(app.container.status_documents().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_job_that_ends_failed_fails_step_3_with_the_jobs_error_and_exit_1() {
    let reddit = FakeReddit::start().await;
    reddit.set("technology", Behaviour::Private);
    let app = app_with(&reddit).await;
    let run = handler(&["--url", &app.url(""), "--key", KEY, "smoke"]).await;
    assert_eq!(run.code, 1, "{run}\nhandler log:\n{}", app.logs());
    // Steps 1 and 2 passed; the job's end is shown as `watch` shows it.
    let id = job_id_of(&run);
    assert_step_2_passed(&run);
    assert!(
        run.stdout.contains(&format!("job {id} failed in ")),
        "{run}"
    );
    assert_eq!(
        run.stderr,
        "step 3 (follow it to its end): the job ended failed: No subreddit could be collected: \
         r/technology is private (HTTP 403)\nsmoke check failed at step 3 of 3\n",
        "{run}"
    );
}

#[tokio::test]
async fn a_job_that_does_not_end_within_the_timeout_fails_step_3_saying_where_it_stood() {
    let reddit = FakeReddit::start().await;
    // r/technology answers only after the check has given up.
    let hold = reddit.hold(&["technology"]);
    let app = app_with(&reddit).await;
    let run = handler(&[
        "--url",
        &app.url(""),
        "--key",
        KEY,
        "smoke",
        "--timeout",
        "2s",
    ])
    .await;
    hold.release();
    assert_eq!(run.code, 1, "{run}\nhandler log:\n{}", app.logs());
    let id = job_id_of(&run);
    let failure = run.stderr.lines().next().unwrap_or_default();
    assert!(
        failure.starts_with(&format!(
            "step 3 (follow it to its end): job {id} did not end within 2s: it is still "
        )),
        "{run}"
    );
    assert!(
        run.stderr.ends_with("smoke check failed at step 3 of 3\n"),
        "{run}"
    );
    // What held the job was its Reddit listing, which had been asked for.
    assert!(hold.arrived() >= 1, "{run}");
}

#[test]
fn a_timeout_that_is_not_a_time_prints_usage_and_exits_3_without_calling_anything() {
    for timeout in ["0", "soon", "5min", "25h"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_handler"))
            .args(["smoke", "--timeout", timeout])
            // Nothing may be called: a call here would fail differently.
            .args(["--url", "http://127.0.0.1:9"])
            .env_remove("WOMBLE_URL")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(3), "{timeout}: {stderr}");
        assert!(
            stderr.contains("Usage: handler smoke"),
            "{timeout}: {stderr}"
        );
        assert!(stderr.contains("90s, 5m, 1h or 300"), "{timeout}: {stderr}");
        assert!(output.stdout.is_empty(), "{timeout}");
    }
}
