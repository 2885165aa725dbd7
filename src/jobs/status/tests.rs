//! The state machine's rules, one transition at a time.

use super::*;
use crate::jobs::callback::CallbackState;
use crate::jobs::request::{Limit, Priority};

fn request(names: &[&str]) -> JobRequest {
    JobRequest {
        source: Source::Reddit,
        topics: names.iter().map(|n| Subreddit::parse(n).unwrap()).collect(),
        limit: Limit::DEFAULT,
        priority: Priority::Normal,
        callback_url: None,
    }
}

fn sub(name: &str) -> Subreddit {
    Subreddit::parse(name).unwrap()
}

#[test]
fn a_job_runs_to_completed_when_one_subreddit_succeeds() {
    let mut doc = StatusDocument::queued(JobId::new(), request(&["aa", "bb"]), None, now());
    doc.claim(now(), 0).unwrap();
    doc.record(
        SubredditOutcome::success(sub("aa"), 3, "x.json".into()),
        now(),
    )
    .unwrap();
    assert_eq!(doc.progress.completed, 1);
    assert_eq!(doc.pending(), vec![sub("bb")]);
    doc.record(
        SubredditOutcome::failed(
            sub("bb"),
            OutcomeStatus::FetchFailed,
            "r/bb is private (HTTP 403)".into(),
        ),
        now(),
    )
    .unwrap();
    doc.finish(now()).unwrap();
    assert_eq!(doc.status, JobStatus::Completed);
    let results = doc.results.as_ref().unwrap();
    assert_eq!(results.total_topics, 3);
    assert_eq!(results.total_subreddits, 2);
    assert_eq!(results.results[1].status, OutcomeStatus::FetchFailed);
    assert_eq!(doc.progress.step, ProgressStep::Finished);
    assert!(doc.finished_at.is_some());
}

#[test]
fn a_job_where_nothing_succeeded_fails_with_the_reasons() {
    let mut doc = StatusDocument::queued(JobId::new(), request(&["aa"]), None, now());
    doc.claim(now(), 0).unwrap();
    doc.record(
        SubredditOutcome::failed(
            sub("aa"),
            OutcomeStatus::FetchFailed,
            "r/aa does not exist".into(),
        ),
        now(),
    )
    .unwrap();
    doc.finish(now()).unwrap();
    assert_eq!(doc.status, JobStatus::Failed);
    assert!(doc
        .error
        .as_deref()
        .unwrap()
        .contains("r/aa does not exist"));
}

#[test]
fn terminal_states_refuse_every_transition() {
    let mut doc = StatusDocument::queued(JobId::new(), request(&["aa"]), None, now());
    doc.claim(now(), 0).unwrap();
    doc.fail("boom".into(), now()).unwrap();
    let before = doc.clone();
    let terminal = Err(TransitionError::Terminal(JobStatus::Failed));
    assert_eq!(doc.claim(now(), 0), terminal);
    assert_eq!(doc.heartbeat(now()), terminal);
    assert_eq!(doc.processing(&sub("aa"), now()), terminal);
    assert_eq!(
        doc.record(SubredditOutcome::success(sub("aa"), 1, "b".into()), now()),
        terminal
    );
    assert_eq!(doc.finish(now()), terminal);
    assert_eq!(doc.fail("again".into(), now()), terminal);
    assert_eq!(doc.request_cancel(now()), terminal);
    assert_eq!(doc.cancel(now()), terminal);
    assert_eq!(doc, before);
}

#[test]
fn a_queued_job_cannot_record_work() {
    let mut doc = StatusDocument::queued(JobId::new(), request(&["aa"]), None, now());
    assert!(matches!(
        doc.record(SubredditOutcome::success(sub("aa"), 1, "b".into()), now()),
        Err(TransitionError::WrongState { .. })
    ));
    assert!(doc.finish(now()).is_err());
}

#[test]
fn cancelling_keeps_finished_work_and_skips_the_rest() {
    let mut doc = StatusDocument::queued(JobId::new(), request(&["aa", "bb"]), None, now());
    doc.claim(now(), 0).unwrap();
    doc.record(
        SubredditOutcome::success(sub("aa"), 2, "a.json".into()),
        now(),
    )
    .unwrap();
    doc.request_cancel(now()).unwrap();
    assert_eq!(doc.status, JobStatus::Running);
    doc.cancel(now()).unwrap();
    let results = doc.results.unwrap();
    assert_eq!(results.status, JobStatus::Cancelled);
    assert_eq!(results.results[0].status, OutcomeStatus::Success);
    assert_eq!(results.results[1].status, OutcomeStatus::Skipped);
}

#[test]
fn a_cancel_request_leaves_the_heartbeat_of_a_running_job_alone() {
    let mut doc = StatusDocument::queued(JobId::new(), request(&["aa", "bb"]), None, now());
    doc.claim(now(), 0).unwrap();
    let last_heartbeat = doc.updated_at;
    let later = last_heartbeat + chrono::TimeDelta::minutes(5);
    doc.request_cancel(later).unwrap();
    assert_eq!(doc.cancel_requested_at, Some(later));
    assert_eq!(doc.updated_at, last_heartbeat);
}

#[test]
fn a_resumed_job_keeps_its_start_time_and_finished_subreddits() {
    let mut doc = StatusDocument::queued(JobId::new(), request(&["aa", "bb"]), None, now());
    doc.claim(now(), 0).unwrap();
    let started = doc.started_at;
    doc.record(
        SubredditOutcome::success(sub("aa"), 2, "a.json".into()),
        now(),
    )
    .unwrap();
    doc.claim(now(), 1).unwrap();
    assert_eq!(doc.attempts, 2);
    assert_eq!(doc.started_at, started);
    assert_eq!(doc.pending(), vec![sub("bb")]);
}

#[test]
fn a_claim_based_on_an_old_reading_is_refused() {
    let mut doc = StatusDocument::queued(JobId::new(), request(&["aa"]), None, now());
    doc.claim(now(), 0).unwrap();
    assert_eq!(doc.claim(now(), 0), Err(TransitionError::Superseded));
    assert_eq!(doc.attempts, 1);
}

#[test]
fn the_document_serialises_with_the_fields_every_client_reads() {
    let doc = StatusDocument::queued(JobId::new(), request(&["aa"]), None, now());
    let json = serde_json::to_value(&doc).unwrap();
    for key in [
        "job_id",
        "status",
        "updated_at",
        "progress",
        "error",
        "results",
        "created_at",
        "started_at",
        "finished_at",
        "request",
    ] {
        assert!(json.get(key).is_some(), "{key} missing from {json}");
    }
    assert_eq!(json["status"], "queued");
    assert!(json["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(json["request"]["priority"], "normal");
    let back: StatusDocument = serde_json::from_value(json).unwrap();
    assert_eq!(back, doc);
}

fn with_callback(names: &[&str]) -> StatusDocument {
    let mut job = request(names);
    job.callback_url = Some(
        crate::jobs::CallbackUrl::parse(
            "https://hooks.example.com/t/secret?k=v",
            crate::jobs::CallbackPolicy::PublicHttps,
        )
        .unwrap(),
    );
    StatusDocument::queued(JobId::new(), job, None, now())
}

#[test]
fn a_callback_is_owed_from_the_write_that_ends_the_job() {
    let mut running = with_callback(&["aa"]);
    running.claim(now(), 0).unwrap();
    assert!(running.callback.is_none(), "nothing is owed before the end");
    let mut finished = running.clone();
    finished.finish(now()).unwrap();
    let mut failed = running.clone();
    failed.fail("no".into(), now()).unwrap();
    let mut cancelled = running;
    cancelled.cancel(now()).unwrap();
    let mut cancelled_queued = with_callback(&["aa"]);
    cancelled_queued.request_cancel(now()).unwrap();
    for doc in [finished, failed, cancelled, cancelled_queued] {
        assert!(doc.callback_owed(), "{:?}", doc.status);
    }
    let mut without = StatusDocument::queued(JobId::new(), request(&["aa"]), None, now());
    without.request_cancel(now()).unwrap();
    assert!(without.callback.is_none());
}

#[test]
fn one_claim_holds_at_a_time_and_a_lapsed_one_is_taken_over() {
    let lease = chrono::Duration::seconds(5);
    let mut doc = with_callback(&["aa"]);
    doc.request_cancel(now()).unwrap();
    let ended = doc.finished_at.unwrap();
    // Another instance must wait for the job to be quiet; the one that ended it need not.
    assert_eq!(
        doc.claim_callback(ended, lease, Some(ended - chrono::Duration::seconds(1))),
        Err(TransitionError::CallbackClaimed)
    );
    assert_eq!(doc.claim_callback(ended, lease, None), Ok(1));
    assert_eq!(
        doc.claim_callback(ended + chrono::Duration::seconds(4), lease, None),
        Err(TransitionError::CallbackClaimed)
    );
    let later = ended + chrono::Duration::seconds(6);
    assert_eq!(doc.claim_callback(later, lease, Some(later)), Ok(2));
    // The first sender's claim is gone: its failures no longer count, nor may it renew.
    assert_eq!(
        doc.callback_sent(1, Err("HTTP 500".into()), 5),
        Err(TransitionError::Superseded)
    );
    assert_eq!(
        doc.renew_callback_claim(1, later, lease),
        Err(TransitionError::Superseded)
    );
    assert_eq!(
        doc.callback_sent(2, Err("HTTP 500".into()), 5),
        Ok(CallbackState::Owed)
    );
    // A success settles it whoever sent it, and nothing is owed any more.
    assert_eq!(
        doc.callback_sent(1, Ok(()), 5),
        Ok(CallbackState::Delivered)
    );
    let record = doc.callback.clone().unwrap();
    assert_eq!(record.attempts, 2);
    assert_eq!(doc.internals.callback_lease.claimed_until, None);
    assert_eq!(
        doc.claim_callback(later + lease * 2, lease, None),
        Err(TransitionError::NoCallbackOwed)
    );
    assert_eq!(
        doc.callback_sent(2, Ok(()), 5),
        Err(TransitionError::NoCallbackOwed)
    );
}

#[test]
fn a_callback_is_abandoned_after_its_last_attempt_fails() {
    let lease = chrono::Duration::seconds(5);
    let mut doc = with_callback(&["aa"]);
    doc.request_cancel(now()).unwrap();
    let claim = doc.claim_callback(now(), lease, None).unwrap();
    for _ in 0..4 {
        assert_eq!(
            doc.callback_sent(claim, Err("timed out".into()), 5),
            Ok(CallbackState::Owed)
        );
    }
    assert_eq!(
        doc.callback_sent(claim, Err("HTTP 404".into()), 5),
        Ok(CallbackState::Abandoned)
    );
    let record = doc.callback.unwrap();
    assert_eq!(record.attempts, 5);
    assert_eq!(record.last_error.as_deref(), Some("HTTP 404"));
}

#[test]
fn the_serialised_document_keeps_only_the_origin_of_the_callback_url_and_no_internals() {
    let lease = chrono::Duration::seconds(5);
    let mut doc = with_callback(&["aa"]);
    doc.internals.requeued_at = Some(now());
    doc.request_cancel(now()).unwrap();
    doc.claim_callback(now(), lease, None).unwrap();
    let shown = serde_json::to_value(&doc).unwrap();
    assert_eq!(
        shown["request"]["callback_url"],
        "https://hooks.example.com"
    );
    assert_eq!(
        shown["callback"],
        serde_json::json!({"state": "owed", "attempts": 0, "last_error": null})
    );
    assert!(shown.get("requeued_at").is_none(), "{shown}");
    assert_eq!(
        doc.request.callback_url.unwrap().as_str(),
        "https://hooks.example.com/t/secret?k=v"
    );
}
