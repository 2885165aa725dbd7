//! The stored form: public content, internals in metadata, and documents stored before the
//! split (captured from the version that stored them) still read.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::*;
use crate::jobs::callback::CallbackState;
use crate::jobs::status::{now, JobStatus};
use crate::jobs::{CallbackPolicy, JobId};

/// Stored by the previous version while its callback was being sent: claimed, with
/// `claimed_until`, and the full callback URL in `request`.
const CALLBACK_CLAIMED: &str = include_str!("before_the_split/callback-claimed.json");
/// The same job once its callback was delivered.
const CALLBACK_DELIVERED: &str = include_str!("before_the_split/callback-delivered.json");
/// A queue-dispatch job whose message a scan sent again (`requeued_at`).
const REQUEUED: &str = include_str!("before_the_split/requeued.json");

/// The names that only instances use, as they appeared in documents before the split.
const INTERNAL_NAMES: [&str; 3] = ["claims", "claimed_until", "requeued_at"];

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().into()
}

/// Every object key anywhere in `value`.
fn keys(value: &Value) -> Vec<String> {
    match value {
        Value::Object(map) => map
            .iter()
            .flat_map(|(key, inner)| std::iter::once(key.clone()).chain(keys(inner)))
            .collect(),
        Value::Array(items) => items.iter().flat_map(keys).collect(),
        _ => Vec::new(),
    }
}

/// A terminal job with a callback claimed and a requeue recorded: every internal set.
fn with_every_internal() -> StatusDocument {
    let mut request = crate::jobs::request::JobRequest {
        source: crate::jobs::request::Source::Reddit,
        topics: vec![crate::reddit::Subreddit::parse("technology").unwrap()],
        limit: crate::jobs::request::Limit::DEFAULT,
        priority: crate::jobs::request::Priority::Normal,
        callback_url: None,
    };
    request.callback_url = Some(
        CallbackUrl::parse(
            "https://hooks.example.com/t/s3cr3t?token=abc",
            CallbackPolicy::PublicHttps,
        )
        .unwrap(),
    );
    let mut doc = StatusDocument::queued(JobId::new(), request, None, now());
    doc.internals.requeued_at = Some(now());
    doc.request_cancel(now()).unwrap();
    doc.claim_callback(now(), chrono::Duration::seconds(30), None)
        .unwrap();
    doc
}

#[test]
fn the_content_is_the_public_document_and_the_internals_are_in_the_metadata() {
    let doc = with_every_internal();
    let (body, metadata) = encode(&doc);
    assert_eq!(
        body,
        serde_json::to_vec(&doc).unwrap(),
        "the answer's bytes"
    );
    let content: Value = serde_json::from_slice(&body).unwrap();
    for name in INTERNAL_NAMES {
        assert!(
            !keys(&content).contains(&name.to_owned()),
            "{name} in {content}"
        );
    }
    assert_eq!(
        content["request"]["callback_url"],
        "https://hooks.example.com"
    );
    assert!(!String::from_utf8_lossy(&body).contains("s3cr3t"));
    assert_eq!(
        metadata.get(CALLBACK_URL),
        Some("https://hooks.example.com/t/s3cr3t?token=abc")
    );
    assert_eq!(metadata.get(CALLBACK_CLAIMS), Some("1"));
    assert!(metadata.get(CALLBACK_CLAIMED_UNTIL).is_some());
    assert!(metadata.get(REQUEUED_AT).is_some());
    assert_eq!(metadata.check(), Ok(()));
    assert_eq!(decode(&body, &metadata).unwrap(), doc);
}

#[test]
fn a_job_without_a_callback_or_a_requeue_stores_no_metadata() {
    let mut doc = with_every_internal();
    doc.request.callback_url = None;
    doc.callback = None;
    doc.internals = Internals::default();
    let (body, metadata) = encode(&doc);
    assert!(metadata.is_empty(), "{metadata:?}");
    assert_eq!(decode(&body, &metadata).unwrap(), doc);
}

#[test]
fn a_document_stored_with_its_callback_claimed_before_the_split_reads_with_its_claim() {
    let doc = decode(CALLBACK_CLAIMED.as_bytes(), &Metadata::new()).unwrap();
    assert_eq!(doc.status, JobStatus::Failed);
    assert_eq!(
        doc.request.callback_url.as_ref().unwrap().as_str(),
        "http://127.0.0.1:18931/hooks/done?token=s3cr3t"
    );
    assert_eq!(doc.callback.as_ref().unwrap().state, CallbackState::Owed);
    assert_eq!(doc.internals.callback_lease.claims, 1);
    assert_eq!(
        doc.internals.callback_lease.claimed_until,
        Some(at("2026-12-08T01:00:12.630043Z"))
    );
    // Its claim is honoured: nobody else may send until it lapses.
    let mut other = doc.clone();
    assert_eq!(
        other.claim_callback(
            at("2026-12-08T01:00:00Z"),
            chrono::Duration::seconds(30),
            None
        ),
        Err(crate::jobs::status::TransitionError::CallbackClaimed)
    );
    assert_eq!(
        other.callback_sent(1, Err("HTTP 500".into()), 5),
        Ok(CallbackState::Owed),
        "the holder of claim 1 still records its attempts"
    );
}

#[test]
fn a_document_stored_before_the_split_is_stored_split_by_its_next_write() {
    for captured in [CALLBACK_CLAIMED, CALLBACK_DELIVERED, REQUEUED] {
        let doc = decode(captured.as_bytes(), &Metadata::new()).unwrap();
        let (body, metadata) = encode(&doc);
        let content: Value = serde_json::from_slice(&body).unwrap();
        for name in INTERNAL_NAMES {
            assert!(
                !keys(&content).contains(&name.to_owned()),
                "{name} in {content}"
            );
        }
        assert!(!String::from_utf8_lossy(&body).contains("token=s3cr3t"));
        assert_eq!(decode(&body, &metadata).unwrap(), doc, "{captured}");
        // Everything public reads as it did.
        let before: Value = serde_json::from_str(captured).unwrap();
        assert_eq!(content["status"], before["status"]);
        assert_eq!(content["results"], before["results"]);
        assert_eq!(content["attempts"], before["attempts"]);
    }
}

#[test]
fn documents_stored_delivered_or_requeued_before_the_split_keep_what_they_recorded() {
    let delivered = decode(CALLBACK_DELIVERED.as_bytes(), &Metadata::new()).unwrap();
    assert_eq!(
        delivered.callback.as_ref().unwrap().state,
        CallbackState::Delivered
    );
    assert_eq!(delivered.internals.callback_lease.claims, 1);
    assert_eq!(delivered.internals.callback_lease.claimed_until, None);

    let requeued = decode(REQUEUED.as_bytes(), &Metadata::new()).unwrap();
    assert_eq!(
        requeued.internals.requeued_at,
        Some(at("2026-12-08T00:58:51.628470Z"))
    );
    assert_eq!(requeued.request.callback_url, None);
}

#[test]
fn metadata_that_does_not_parse_is_an_error_naming_it() {
    let doc = with_every_internal();
    let (body, _) = encode(&doc);
    for (name, value) in [
        (CALLBACK_CLAIMS, "-1"),
        (CALLBACK_CLAIMED_UNTIL, "tomorrow"),
        (REQUEUED_AT, "2026-13-01T00:00:00Z"),
    ] {
        let mut metadata = Metadata::new();
        metadata.insert(name, value);
        match decode(&body, &metadata) {
            Err(Unreadable::Metadata {
                name: named,
                value: held,
            }) => {
                assert_eq!((named, held.as_str()), (name, value));
            }
            other => panic!("{name}={value}: {other:?}"),
        }
    }
}

/// A terminal job whose hand-off is in `state`, with a claim taken while it was owed.
fn with_handoff(state: crate::jobs::handoff::HandoffState) -> StatusDocument {
    use crate::jobs::handoff::HandoffState;
    let mut doc = with_every_internal();
    doc.internals.handoff = Some(crate::jobs::handoff::HandoffRecord {
        state: HandoffState::Owed,
        lease: Default::default(),
    });
    doc.claim_handoff(now(), chrono::Duration::seconds(30), None)
        .unwrap();
    match state {
        HandoffState::Sent => doc.handoff_sent().unwrap(),
        HandoffState::Owed => {}
        HandoffState::Wanted => doc.internals.handoff.as_mut().unwrap().state = state,
    }
    doc
}

#[test]
fn the_hand_off_is_stored_in_the_metadata_and_reads_back_in_every_state() {
    use crate::jobs::handoff::HandoffState;
    for state in [HandoffState::Wanted, HandoffState::Owed, HandoffState::Sent] {
        let doc = with_handoff(state);
        let (body, metadata) = encode(&doc);
        assert_eq!(metadata.get(HANDOFF), Some(state.as_str()));
        assert_eq!(metadata.get(HANDOFF_CLAIMS), Some("1"));
        assert_eq!(
            metadata.get(HANDOFF_CLAIMED_UNTIL).is_some(),
            state != HandoffState::Sent,
            "{state:?}: {metadata:?}"
        );
        assert_eq!(metadata.check(), Ok(()));
        assert!(
            !String::from_utf8_lossy(&body).contains("handoff"),
            "the content is the public document"
        );
        assert_eq!(decode(&body, &metadata).unwrap(), doc, "{state:?}");
    }
}

#[test]
fn a_job_that_wants_a_hand_off_stores_only_that_until_it_is_claimed() {
    let mut doc = StatusDocument::queued(JobId::new(), with_every_internal().request, None, now());
    doc.request.callback_url = None;
    doc.want_handoff().unwrap();
    let (body, metadata) = encode(&doc);
    assert_eq!(
        metadata.iter().collect::<Vec<_>>(),
        vec![(HANDOFF, "wanted")]
    );
    assert_eq!(decode(&body, &metadata).unwrap(), doc);
}

#[test]
fn hand_off_metadata_that_does_not_parse_is_an_error_naming_it() {
    let doc = with_handoff(crate::jobs::handoff::HandoffState::Owed);
    let (body, stored) = encode(&doc);
    for (name, value) in [
        (HANDOFF, "delivered"),
        (HANDOFF_CLAIMS, "one"),
        (HANDOFF_CLAIMED_UNTIL, "later"),
    ] {
        let mut metadata = stored.clone();
        metadata.insert(name, value);
        match decode(&body, &metadata) {
            Err(Unreadable::Metadata {
                name: named,
                value: held,
            }) => {
                assert_eq!((named, held.as_str()), (name, value));
            }
            other => panic!("{name}={value}: {other:?}"),
        }
    }
}
