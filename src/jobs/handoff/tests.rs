//! The hand-off's transitions (wanted, owed at every kind of end, claimed, sent) and its message.

use chrono::TimeDelta;
use serde_json::{json, Value};

use super::*;
use crate::jobs::request::{JobRequest, Limit, Priority, Source};
use crate::jobs::status::{now, SubredditOutcome, TransitionError};
use crate::reddit::Subreddit;

fn sub(name: &str) -> Subreddit {
    Subreddit::parse(name).unwrap()
}

fn queued(names: &[&str]) -> StatusDocument {
    let request = JobRequest {
        source: Source::Reddit,
        topics: names.iter().map(|name| sub(name)).collect(),
        limit: Limit::DEFAULT,
        priority: Priority::Normal,
        callback_url: None,
    };
    StatusDocument::queued(JobId::new(), request, None, now())
}

/// A job created with `COMPLETION_QUEUE` set.
fn wanting(names: &[&str]) -> StatusDocument {
    let mut doc = queued(names);
    doc.want_handoff().unwrap();
    doc
}

fn state(doc: &StatusDocument) -> Option<HandoffState> {
    doc.internals.handoff.as_ref().map(|record| record.state)
}

/// Every way a job ends, from a job that wants a hand-off: completed, failed (no subreddit
/// collected; the job could not run), cancelled while running and while queued.
fn every_end() -> Vec<(&'static str, StatusDocument)> {
    let mut running = wanting(&["aa", "bb"]);
    running.claim(now(), 0).unwrap();
    let mut completed = running.clone();
    completed
        .record(
            SubredditOutcome::success(sub("aa"), 3, "a.json".into()),
            now(),
        )
        .unwrap();
    completed.finish(now()).unwrap();
    let mut none_collected = running.clone();
    none_collected
        .record(
            SubredditOutcome::failed(sub("aa"), OutcomeStatus::FetchFailed, "HTTP 403".into()),
            now(),
        )
        .unwrap();
    none_collected.finish(now()).unwrap();
    let mut could_not_run = running.clone();
    could_not_run.fail("storage".into(), now()).unwrap();
    let mut cancelled_running = running;
    cancelled_running.cancel(now()).unwrap();
    let mut cancelled_queued = wanting(&["aa"]);
    cancelled_queued.request_cancel(now()).unwrap();
    let mut failed_queued = wanting(&["aa"]);
    failed_queued
        .fail("no delivery ran it".into(), now())
        .unwrap();
    vec![
        ("completed", completed),
        ("failed: none collected", none_collected),
        ("failed: could not run", could_not_run),
        ("cancelled while running", cancelled_running),
        ("cancelled while queued", cancelled_queued),
        ("failed while queued", failed_queued),
    ]
}

#[test]
fn a_wanted_hand_off_is_owed_from_the_write_that_ends_the_job_whichever_way_it_ends() {
    let mut running = wanting(&["aa"]);
    assert_eq!(state(&running), Some(HandoffState::Wanted));
    running.claim(now(), 0).unwrap();
    running.heartbeat(now()).unwrap();
    assert_eq!(state(&running), Some(HandoffState::Wanted), "not over yet");
    assert!(!running.handoff_owed());
    for (end, doc) in every_end() {
        assert!(doc.status.is_terminal(), "{end}");
        assert!(doc.handoff_owed(), "{end}");
        assert_eq!(state(&doc), Some(HandoffState::Owed), "{end}");
    }
}

#[test]
fn a_job_that_wants_no_hand_off_owes_none_when_it_ends() {
    let mut doc = queued(&["aa"]);
    doc.request_cancel(now()).unwrap();
    assert_eq!(state(&doc), None);
    assert!(!doc.handoff_owed());
    assert_eq!(
        doc.claim_handoff(now(), TimeDelta::seconds(5), None),
        Err(TransitionError::NoHandoffOwed)
    );
}

#[test]
fn only_a_job_that_has_not_ended_can_come_to_want_a_hand_off() {
    let mut ended = queued(&["aa"]);
    ended.request_cancel(now()).unwrap();
    assert_eq!(
        ended.want_handoff(),
        Err(TransitionError::Terminal(JobStatus::Cancelled))
    );
    assert_eq!(state(&ended), None);
}

#[test]
fn one_claim_holds_at_a_time_a_lapsed_one_is_taken_over_and_sent_is_final() {
    let lease = TimeDelta::seconds(5);
    let (_, mut doc) = every_end().remove(0);
    let ended = doc.finished_at.unwrap();
    // Another instance must wait for the job to be quiet; the one that ended it need not.
    assert_eq!(
        doc.claim_handoff(ended, lease, Some(ended - TimeDelta::seconds(1))),
        Err(TransitionError::HandoffClaimed)
    );
    assert_eq!(doc.claim_handoff(ended, lease, None), Ok(1));
    assert_eq!(
        doc.claim_handoff(ended + TimeDelta::seconds(4), lease, None),
        Err(TransitionError::HandoffClaimed)
    );
    assert_eq!(
        doc.renew_handoff_claim(1, ended + TimeDelta::seconds(4), lease),
        Ok(())
    );
    // Lapsed (its holder died): a scan takes it over, and the first holder may not renew.
    let later = ended + TimeDelta::seconds(10);
    assert_eq!(doc.claim_handoff(later, lease, Some(later)), Ok(2));
    assert_eq!(
        doc.renew_handoff_claim(1, later, lease),
        Err(TransitionError::Superseded)
    );
    // Sent settles it, whoever holds the claim by now; nothing is owed any more.
    assert_eq!(doc.handoff_sent(), Ok(()));
    assert_eq!(state(&doc), Some(HandoffState::Sent));
    assert!(!doc.handoff_owed());
    let record = doc.internals.handoff.clone().unwrap();
    assert_eq!(record.lease.claimed_until, None);
    assert_eq!(record.lease.claims, 2);
    assert_eq!(doc.handoff_sent(), Err(TransitionError::NoHandoffOwed));
    assert_eq!(
        doc.claim_handoff(later + lease * 2, lease, None),
        Err(TransitionError::NoHandoffOwed)
    );
    assert_eq!(
        doc.renew_handoff_claim(2, later, lease),
        Err(TransitionError::NoHandoffOwed)
    );
}

#[test]
fn a_hand_off_cannot_be_claimed_or_sent_before_the_job_ends() {
    let mut running = wanting(&["aa"]);
    running.claim(now(), 0).unwrap();
    assert_eq!(
        running.claim_handoff(now(), TimeDelta::seconds(5), None),
        Err(TransitionError::NoHandoffOwed)
    );
    assert_eq!(running.handoff_sent(), Err(TransitionError::NoHandoffOwed));
}

#[test]
fn the_public_document_shows_nothing_of_the_hand_off() {
    let (_, mut doc) = every_end().remove(0);
    doc.claim_handoff(now(), TimeDelta::seconds(5), None)
        .unwrap();
    let shown = serde_json::to_string(&doc).unwrap();
    assert!(!shown.contains("handoff"), "{shown}");
    assert!(!shown.contains("claim"), "{shown}");
}

#[test]
fn the_message_names_the_job_its_status_its_container_and_the_blobs_of_its_successes_in_order() {
    let mut doc = wanting(&["aa", "bb", "cc", "dd"]);
    doc.claim(now(), 0).unwrap();
    doc.record(
        SubredditOutcome::success(sub("cc"), 2, "c.json".into()),
        now(),
    )
    .unwrap();
    doc.record(
        SubredditOutcome::failed(sub("bb"), OutcomeStatus::FetchFailed, "HTTP 404".into()),
        now(),
    )
    .unwrap();
    doc.record(
        SubredditOutcome::success(sub("aa"), 1, "a.json".into()),
        now(),
    )
    .unwrap();
    assert_eq!(
        HandoffMessage::of(&doc, "hot-topics"),
        None,
        "still running"
    );
    doc.cancel(now()).unwrap();
    let message = HandoffMessage::of(&doc, "hot-topics").unwrap();
    assert_eq!(
        message,
        HandoffMessage {
            job_id: doc.job_id,
            status: JobStatus::Cancelled,
            finished_at: doc.finished_at.unwrap(),
            container: "hot-topics".into(),
            status_blob: format!("jobs/{}/status.json", doc.job_id),
            blob_names: vec!["a.json".into(), "c.json".into()],
        }
    );
    let text: Value = serde_json::from_str(&message.text()).unwrap();
    assert_eq!(
        text,
        json!({
            "job_id": doc.job_id.to_string(),
            "status": "cancelled",
            "finished_at": doc.finished_at.unwrap(),
            "container": "hot-topics",
            "status_blob": format!("jobs/{}/status.json", doc.job_id),
            "blob_names": ["a.json", "c.json"],
        })
    );
    assert!(text["finished_at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn a_job_that_collected_nothing_hands_off_no_blob_names() {
    for (end, doc) in every_end().into_iter().skip(1) {
        let message = HandoffMessage::of(&doc, "c").unwrap();
        assert_eq!(message.status, doc.status, "{end}");
        assert_eq!(message.blob_names, Vec::<String>::new(), "{end}");
    }
}
