//! Property tests for every parser at the edge: whatever arrives, it either parses into a value
//! that round-trips or is refused with a 4xx-class error, and nothing panics.

use proptest::prelude::*;
use serde_json::{Map, Value};

use crate::functions::host_wire::{binding, Invocation, TimerInfo};
use crate::functions::summary_womble::{parse_call, Call};
use crate::functions::{ApiError, ApiRequest};
use crate::jobs::{CallbackPolicy, JobId, JobRequest, ListPosition, ProgressStep, RunStamp};
use crate::reddit::Subreddit;
use crate::schedule::Schedule;
use crate::store::BlobName;

/// Whether `name` matches the subreddit rule `^[A-Za-z0-9][A-Za-z0-9_]{1,20}$`, written out
/// here apart from the parser it checks.
fn follows_the_subreddit_rule(name: &str) -> bool {
    let bytes = name.as_bytes();
    (2..=21).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

/// A POST of `body` as the API receives it.
fn post(body: &Map<String, Value>) -> ApiRequest {
    ApiRequest {
        method: http::Method::POST,
        query: Vec::new(),
        headers: http::HeaderMap::new(),
        body: bytes::Bytes::from(serde_json::to_vec(body).unwrap()),
    }
}

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
        let request = parse_call(&post(&body)).and_then(|call| match call {
            Call::Start { requested, .. } => JobRequest::from_requested(requested, CallbackPolicy::PublicHttps)
                .map_err(|error| ApiError::BadRequest(error.to_string())),
            _ => Err(ApiError::BadRequest("not a start".into())),
        });
        match request {
            Ok(request) => {
                prop_assert!((1..=50).contains(&request.topics.len()));
                // No two names of one job are the same subreddit.
                for (i, a) in request.topics.iter().enumerate() {
                    prop_assert!(!request.topics[i + 1..].iter().any(|b| a.same_as(b)));
                }
                // Accepted requests survive the trip through the status document.
                let json = serde_json::to_value(&request).unwrap();
                let back: JobRequest = serde_json::from_value(json).unwrap();
                prop_assert_eq!(back, request);
            }
            Err(error) => prop_assert_eq!(error.status().as_u16(), 400),
        }
    }

    #[test]
    fn an_accepted_subreddit_name_is_kept_as_given_and_is_safe_in_a_blob_name(
        name in prop_oneof![any::<String>(), "[A-Za-z0-9][A-Za-z0-9_]{1,20}", "[A-Za-z0-9_./ -]{0,24}"],
    ) {
        let valid = follows_the_subreddit_rule(&name);
        prop_assert_eq!(Subreddit::parse(&name).is_ok(), valid, "{:?}", name);
        if let Ok(subreddit) = Subreddit::parse(&name) {
            prop_assert_eq!(subreddit.as_str(), name.as_str());
            // Output blobs are named `<stamp>_<source>_<subreddit>.json`: the name must stay
            // one plain segment.
            let blob = BlobName::parse(format!("20250101_000000_reddit_{subreddit}.json")).unwrap();
            prop_assert!(!blob.as_str().contains('/'));
            // Its progress step reads back as the same subreddit.
            let step = ProgressStep::Processing(subreddit.clone());
            prop_assert_eq!(ProgressStep::try_from(String::from(step.clone())).unwrap(), step);
        }
    }

    #[test]
    fn run_stamps_round_trip_and_order_as_their_times(a in 0i64..4_000_000_000, b in 0i64..4_000_000_000) {
        let (at_a, at_b) = (chrono::DateTime::from_timestamp(a, 0).unwrap(), chrono::DateTime::from_timestamp(b, 0).unwrap());
        let (stamp_a, stamp_b) = (RunStamp::of(at_a), RunStamp::of(at_b));
        prop_assert_eq!(RunStamp::try_from(stamp_a.to_string()).unwrap(), stamp_a.clone());
        prop_assert_eq!(at_a.cmp(&at_b), stamp_a.as_str().cmp(stamp_b.as_str()));
    }

    #[test]
    fn valid_subreddit_names_round_trip(name in "[A-Za-z0-9][A-Za-z0-9_]{1,20}") {
        let subreddit = Subreddit::parse(&name).unwrap();
        let json = serde_json::to_string(&subreddit).unwrap();
        prop_assert_eq!(serde_json::from_str::<Subreddit>(&json).unwrap(), subreddit);
    }

    #[test]
    fn job_ids_parse_only_as_uuids_and_round_trip(
        text in prop_oneof![
            any::<String>(),
            "[0-9a-fA-F-]{36}",
            any::<[u8; 16]>().prop_map(|bytes| uuid::Uuid::from_bytes(bytes).hyphenated().to_string()),
            any::<[u8; 16]>().prop_map(|bytes| uuid::Uuid::from_bytes(bytes).hyphenated().to_string().to_uppercase()),
        ],
    ) {
        let hyphenated = text.len() == 36
            && text.char_indices().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() });
        match JobId::parse(&text) {
            Ok(id) => prop_assert!(id.to_string().eq_ignore_ascii_case(&text)),
            Err(_) => prop_assert!(!hyphenated, "a hyphenated UUID was refused: {:?}", text),
        }
    }

    #[test]
    fn any_id_round_trips(bytes in any::<[u8; 16]>()) {
        let id: JobId = serde_json::from_value(Value::String(uuid::Uuid::from_bytes(bytes).to_string())).unwrap();
        prop_assert_eq!(JobId::parse(&id.to_string()).unwrap(), id);
    }

    #[test]
    fn an_envelope_decodes_only_from_a_json_object(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            json_value().prop_map(|value| serde_json::to_vec(&value).unwrap()),
        ],
    ) {
        let decoded = Invocation::parse(&bytes);
        let is_object = serde_json::from_slice::<Value>(&bytes).is_ok_and(|value| value.is_object());
        if !is_object {
            prop_assert!(decoded.is_err(), "{:?} decoded", String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn a_well_formed_envelope_decodes_with_its_bindings(
        data in prop::collection::hash_map("[a-zA-Z]{1,10}", json_value(), 0..4),
        dequeue_count in 1u32..10,
    ) {
        let body = serde_json::json!({
            "Data": data,
            "Metadata": {"DequeueCount": dequeue_count.to_string(), "sys": {"UtcNow": "2026-01-01T00:00:00Z"}},
        });
        let invocation = Invocation::parse(&serde_json::to_vec(&body).unwrap()).unwrap();
        prop_assert_eq!(invocation.data, data);
        prop_assert_eq!(invocation.metadata.dequeue_count(), dequeue_count);
    }

    #[test]
    fn a_timer_binding_decodes_as_an_object_or_its_text_and_nothing_else(value in json_value(), past_due in any::<bool>()) {
        // The binding arrives as an object, or as that object's JSON text.
        let timer = serde_json::json!({"IsPastDue": past_due, "ScheduleStatus": {"Next": "2026-01-01T06:00:00Z"}});
        for form in [timer.clone(), Value::String(timer.to_string())] {
            let decoded = binding::<TimerInfo>(&form).unwrap();
            prop_assert_eq!(decoded.is_past_due, past_due);
        }
        let decodes = binding::<TimerInfo>(&value).is_ok();
        let object_like = match &value {
            Value::Object(_) => true,
            Value::String(text) => serde_json::from_str::<Value>(text).is_ok_and(|inner| inner.is_object()),
            _ => false,
        };
        prop_assert!(!decodes || object_like, "{} decoded as a timer", value);
    }

    #[test]
    fn continuation_tokens_round_trip_and_garbage_is_refused(
        text in prop_oneof![any::<String>(), "[0-9a-f]{0,120}"],
        secs in 0i64..4_000_000_000,
        bytes in any::<[u8; 16]>(),
    ) {
        // Garbage: whatever is accepted is a token this API could have issued.
        if let Some(position) = ListPosition::parse(&text) {
            prop_assert_eq!(position.token(), text);
        }
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
    fn well_formed_schedules_parse_and_their_next_time_matches_every_field(
        second in 0u32..60, minute in 0u32..60, every in 1u32..12,
        at in 0i64..4_000_000_000,
    ) {
        use chrono::Timelike;
        let text = format!("{second} {minute} */{every} * * *");
        let schedule = Schedule::parse(&text).unwrap();
        let now = chrono::DateTime::from_timestamp(at, 0).unwrap();
        let next = schedule.next_after(now).unwrap();
        prop_assert!(next > now);
        prop_assert_eq!((next.second(), next.minute(), next.hour() % every), (second, minute, 0));
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
