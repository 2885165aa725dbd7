//! The handler against a Reddit that misbehaves on purpose: absurd header values, long
//! `Retry-After`s or a held answer while a job is cancelled, and a tight rate-limit window.
//! Each test shows a promise of the README's "Reliability" table.
//!
//! "Nothing more after the cancel" is judged by what Reddit could observe: the listing
//! requests it has received (answered or still in flight) when the cancel's answer arrives,
//! against those it has received once the job has ended. A request on its way before the
//! answer counts as before it; no clock of one process is compared with another's.

use std::time::Duration;

use serde_json::{json, Value};

use testkit::app::{job, JobApi, TestApp};
use testkit::fake_reddit::Behaviour;
use testkit::host::HostRequest;
use testkit::poll;

const WAIT: Duration = Duration::from_secs(45);

/// One worker: a job that runs after another shows the worker lived on.
const ONE_WORKER: (&str, &str) = ("MAX_CONCURRENT_JOBS", "1");

async fn run_to_end(app: &TestApp, topics: &[&str]) -> Value {
    let id = app.submit(job(topics, 3)).await;
    app.wait_terminal(&id, WAIT).await
}

#[tokio::test]
async fn an_absurd_rate_limit_reset_is_bounded_and_the_next_job_still_runs() {
    let app = TestApp::start_with(vec![ONE_WORKER]).await;
    app.reddit.set_answer_header("x-ratelimit-reset", "1e20");
    let first = run_to_end(&app, &["technology", "programming"]).await;
    assert_eq!(first["status"], "completed", "{first}");
    let second = run_to_end(&app, &["gadgets"]).await;
    assert_eq!(second["status"], "completed", "{second}");
}

#[tokio::test]
async fn absurd_token_lifetimes_are_bounded_and_the_next_job_still_runs() {
    let app = TestApp::start_with(vec![ONE_WORKER]).await;
    // Each job gets a token of its own: the one before is forgotten, so Reddit answers 401 and
    // the client asks for a new one, with the next lifetime.
    for expires_in in [json!(u64::MAX), json!(1e30), json!(-5), json!(0)] {
        app.reddit.set_token_expires_in(expires_in.clone());
        app.reddit.expire_tokens();
        let done = run_to_end(&app, &["technology", "programming"]).await;
        assert_eq!(
            done["status"], "completed",
            "expires_in {expires_in}: {done}"
        );
    }
}

#[tokio::test]
async fn a_tight_rate_limit_window_draws_no_429() {
    let app = TestApp::start().await;
    app.reddit.set_fixed_window(10, Duration::from_secs(3));
    // Four of the first answers arrive a second late, after newer ones: their budget is stale.
    for late in ["window0", "window1", "window2", "window3"] {
        app.reddit.set_late(late, Duration::from_secs(1));
    }
    let names: Vec<String> = (0..15).map(|i| format!("window{i}")).collect();
    let topics: Vec<&str> = names.iter().map(String::as_str).collect();
    let done = run_to_end(&app, &topics).await;
    assert_eq!(done["status"], "completed", "{done}");
    let results = done["results"]["results"].as_array().unwrap();
    assert!(results.iter().all(|r| r["status"] == "success"), "{done}");
    assert_eq!(
        app.reddit.window_refusals(),
        0,
        "Reddit refused requests beyond its window"
    );
}

#[tokio::test]
async fn a_cancel_ends_the_waits_of_a_rate_limited_job_at_once_and_sends_nothing_more() {
    let app = TestApp::start().await;
    let names: Vec<String> = (0..5).map(|i| format!("limited{i}")).collect();
    for name in &names {
        app.reddit.set(
            name,
            Behaviour::RateLimitedTimes {
                times: 100,
                retry_after: 20.0,
            },
        );
    }
    let topics: Vec<&str> = names.iter().map(String::as_str).collect();
    let id = app.submit(job(&topics, 3)).await;
    // Reddit has answered 429: the job's fetches wait 20 s for their next attempt.
    poll::until("a listing to be requested", WAIT, async || {
        app.reddit.listing_requests_total() > 0
    })
    .await;

    let before = cancel_and_count(&app, &id).await;
    // Well inside the 20 s the job's fetches would otherwise wait, with room for a loaded
    // machine.
    let done = app.wait_terminal(&id, Duration::from_secs(15)).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    for result in done["results"]["results"].as_array().unwrap() {
        assert_eq!(result["status"], "skipped", "{done}");
    }
    assert_listed_nothing_after(&app, before);
}

/// The cancel is recorded by the very process that runs the job, while the job's first listing
/// (the probe of a new rate-limit window, which the other subreddits wait for) is held by
/// Reddit. The job's token is cancelled before the cancel is answered, so neither the probe's
/// replacement nor the other subreddits, once the probe answers, reach Reddit after it.
#[tokio::test]
async fn a_cancel_recorded_by_the_process_running_the_job_lets_no_request_out_after_its_answer() {
    let app = TestApp::start().await;
    let hold = app.reddit.hold_listings();
    let names: Vec<String> = (0..5).map(|i| format!("heldprobe{i}")).collect();
    let topics: Vec<&str> = names.iter().map(String::as_str).collect();
    let id = app.submit(job(&topics, 3)).await;
    hold.until_arrived(1, WAIT).await;

    let before = cancel_and_count(&app, &id).await;
    hold.release();
    let done = app.wait_terminal(&id, WAIT).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    assert_listed_nothing_after(&app, before);
}

/// Cancels job `id` through the host and returns how many listing requests Reddit had received
/// when the answer arrived.
async fn cancel_and_count(app: &TestApp, id: &str) -> usize {
    let cancel = app
        .host
        .forward(HostRequest::delete(&format!(
            "/api/SummaryWomble?job_id={id}"
        )))
        .await;
    let before = app.reddit.listing_requests_total();
    assert_eq!(cancel.status, 202, "{}", cancel.text());
    before
}

/// Reddit has received no listing request beyond the `before` it had at the cancel's answer.
fn assert_listed_nothing_after(app: &TestApp, before: usize) {
    let listings: Vec<String> = app
        .reddit
        .requests()
        .into_iter()
        .filter(|seen| seen.path.starts_with("/r/"))
        .map(|seen| seen.path)
        .collect();
    assert_eq!(
        listings.len(),
        before,
        "listings requested after the cancel was answered: {:?}",
        &listings[before.min(listings.len())..]
    );
}
