//! Property tests for every parser at the edge: whatever arrives, it either parses into a value
//! that round-trips or is refused with a 4xx-class error, and nothing panics.

use proptest::prelude::*;
use serde_json::{Map, Value};

use crate::functions::envelope::{binding, Invocation, TimerInfo};
use crate::functions::get_hot_topics::Schedule;
use crate::functions::summary_womble::{parse_start, ListPosition};
use crate::jobs::JobId;
use crate::reddit::Subreddit;
use crate::store::BlobName;

/// Any JSON value, a few levels deep, with strings that like to look like our inputs.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-zA-Z0-9_ ./:-]{0,30}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::hash_map(field_name(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Mostly the start request's own field names, sometimes anything.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["source", "topics", "limit", "priority", "callback_url", "action"])
            .prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_start_body_is_either_a_valid_request_or_a_400(body in prop::collection::hash_map(field_name(), json_value(), 0..6)) {
        let body: Map<String, Value> = body.into_iter().collect();
        match parse_start(&body, false) {
            Ok(request) => {
                prop_assert!((1..=50).contains(&request.topics.len()));
                prop_assert!((1..=100).contains(&request.limit.get()));
                // Accepted requests survive the trip through the status document.
                let json = serde_json::to_value(&request).unwrap();
                let back: crate::jobs::JobRequest = serde_json::from_value(json).unwrap();
                prop_assert_eq!(back, request);
            }
            Err(error) => prop_assert_eq!(error.status().as_u16(), 400),
        }
    }

    #[test]
    fn subreddit_names_are_accepted_exactly_when_they_match_the_rule(name in any::<String>()) {
        let valid = name.len() >= 2 && name.len() <= 21
            && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        match Subreddit::parse(&name) {
            Ok(subreddit) => {
                prop_assert!(valid);
                prop_assert_eq!(subreddit.as_str(), name.as_str());
            }
            Err(_) => prop_assert!(!valid),
        }
    }

    #[test]
    fn valid_subreddit_names_round_trip(name in "[A-Za-z0-9][A-Za-z0-9_]{1,20}") {
        let subreddit = Subreddit::parse(&name).unwrap();
        let json = serde_json::to_string(&subreddit).unwrap();
        prop_assert_eq!(serde_json::from_str::<Subreddit>(&json).unwrap(), subreddit);
    }

    #[test]
    fn job_ids_parse_only_as_uuids_and_round_trip(text in prop_oneof![any::<String>(), "[0-9a-fA-F-]{36}"]) {
        if let Ok(id) = JobId::parse(&text) {
            prop_assert!(id.to_string().eq_ignore_ascii_case(&text));
        }
    }

    #[test]
    fn any_id_round_trips(bytes in any::<[u8; 16]>()) {
        let id: JobId = serde_json::from_value(Value::String(uuid::Uuid::from_bytes(bytes).to_string())).unwrap();
        prop_assert_eq!(JobId::parse(&id.to_string()).unwrap(), id);
    }

    #[test]
    fn any_envelope_bytes_decode_or_fail_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = serde_json::from_slice::<Invocation>(&bytes);
    }

    #[test]
    fn any_timer_binding_decodes_or_fails_without_panicking(value in json_value()) {
        let _ = binding::<TimerInfo>(&value);
    }

    #[test]
    fn continuation_tokens_round_trip_and_garbage_is_refused(text in any::<String>(), secs in 0i64..4_000_000_000, bytes in any::<[u8; 16]>()) {
        let _ = ListPosition::parse(&text);
        let position = ListPosition {
            created_at: chrono::DateTime::from_timestamp(secs, 0).unwrap(),
            job_id: JobId::parse(&uuid::Uuid::from_bytes(bytes).to_string()).unwrap(),
        };
        prop_assert_eq!(ListPosition::parse(&position.token()), Some(position));
    }

    #[test]
    fn ncrontab_input_parses_or_is_refused_and_accepted_schedules_move_forward(
        text in prop_oneof![
            any::<String>(),
            "([0-9*/,-]{1,6} ){5}[0-9*/,-]{1,6}",
        ],
        at in 0i64..4_000_000_000,
    ) {
        if let Ok(schedule) = Schedule::parse(&text) {
            let now = chrono::DateTime::from_timestamp(at, 0).unwrap();
            if let Some(next) = schedule.next_after(now) {
                prop_assert!(next > now);
            }
        }
    }

    #[test]
    fn accepted_blob_names_cannot_escape_their_prefix(name in prop_oneof![any::<String>(), "[a-z./\\\\]{0,20}"]) {
        if let Ok(blob) = BlobName::parse(name) {
            let text = blob.as_str();
            prop_assert!(!text.starts_with('/'));
            prop_assert!(!text.contains('\\'));
            prop_assert!(text.split('/').all(|segment| !segment.is_empty() && segment != "." && segment != ".."));
        }
    }
}
