//! A SummaryWomble call parsed into a typed [`Call`] before any action runs: the query or the
//! JSON body (serde structs), then the job model's own types. A call that breaks a rule is
//! answered 400 naming the field, before anything is written.

use http::{header, Method};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::super::{ApiError, ApiRequest, MAX_BODY_BYTES};
use crate::jobs::{IdempotencyKey, JobId, JobStatus, ListFilter, ListPosition, RequestedJob};

/// What a call asks for.
#[derive(Debug, PartialEq)]
pub enum Call {
    Start {
        requested: RequestedJob,
        idempotency_key: Option<IdempotencyKey>,
    },
    Status(JobId),
    Cancel(JobId),
    Retry(JobId),
    List(ListFilter),
    Metrics,
}

/// The methods SummaryWomble answers (its `function.json`).
pub const METHODS: &[Method] = &[Method::GET, Method::POST, Method::DELETE];

pub fn parse(request: &ApiRequest) -> Result<Call, ApiError> {
    match request.method {
        Method::GET => match request.query_value("job_id") {
            Some(id) => {
                only_query(request, &["job_id"])?;
                Ok(Call::Status(parse_job_id(Some(id))?))
            }
            None => {
                only_query(request, &["status", "top", "continuation"])?;
                Ok(Call::List(list_filter(
                    request.query_value("status"),
                    request.query_value("top"),
                    request.query_value("continuation"),
                )?))
            }
        },
        Method::DELETE => {
            only_query(request, &["job_id"])?;
            Ok(Call::Cancel(parse_job_id(request.query_value("job_id"))?))
        }
        Method::POST => {
            only_query(request, &[])?;
            let idempotency_key = request
                .headers
                .get("idempotency-key")
                .map(|value| IdempotencyKey::parse(value.as_bytes()))
                .transpose()
                .map_err(|error| bad(error.to_string()))?;
            parse_post(json_body(request)?, idempotency_key)
        }
        ref other => Err(ApiError::MethodNotAllowed {
            used: other.clone(),
            allowed: METHODS,
        }),
    }
}

fn parse_post(
    mut body: Map<String, Value>,
    idempotency_key: Option<IdempotencyKey>,
) -> Result<Call, ApiError> {
    let action = match body.remove("action") {
        None => "start".to_owned(),
        Some(Value::String(action)) => action,
        Some(_) => return Err(bad("action must be a string")),
    };
    match action.as_str() {
        "start" => {
            let start: StartBody = fields(body, StartBody::FIELDS)?;
            Ok(Call::Start {
                requested: start.into(),
                idempotency_key,
            })
        }
        "status" => Ok(Call::Status(job_id_body(body)?)),
        "cancel" => Ok(Call::Cancel(job_id_body(body)?)),
        "retry" => Ok(Call::Retry(job_id_body(body)?)),
        "list" => {
            let list: ListBody = fields(body, ListBody::FIELDS)?;
            let top = list.top.map(|top| match top {
                Top::Number(number) => number.to_string(),
                Top::Text(text) => text,
            });
            Ok(Call::List(list_filter(
                list.status.as_deref(),
                top.as_deref(),
                list.continuation.as_deref(),
            )?))
        }
        "metrics" => {
            let _: Empty = fields(body, &[])?;
            Ok(Call::Metrics)
        }
        other => Err(bad(format!(
            "Unknown action {other:?}; use start, status, cancel, retry, list or metrics."
        ))),
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

/// The start body (docs/api.md section 2). A field that is present must hold a value: `null` is
/// not a way to ask for the default.
#[derive(Debug, Deserialize)]
struct StartBody {
    #[serde(default, deserialize_with = "present")]
    source: Option<String>,
    #[serde(default, deserialize_with = "present")]
    topics: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    limit: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    priority: Option<String>,
    #[serde(default, deserialize_with = "present")]
    callback_url: Option<String>,
}

impl StartBody {
    const FIELDS: &'static [&'static str] =
        &["source", "topics", "limit", "priority", "callback_url"];
}

impl From<StartBody> for RequestedJob {
    fn from(body: StartBody) -> Self {
        RequestedJob {
            source: body.source,
            topics: body.topics,
            limit: body.limit,
            priority: body.priority,
            callback_url: body.callback_url,
        }
    }
}

#[derive(Debug, Deserialize)]
struct JobIdBody {
    #[serde(default)]
    job_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ListBody {
    #[serde(default, deserialize_with = "present")]
    status: Option<String>,
    #[serde(default, deserialize_with = "present")]
    top: Option<Top>,
    #[serde(default, deserialize_with = "present")]
    continuation: Option<String>,
}

impl ListBody {
    const FIELDS: &'static [&'static str] = &["status", "top", "continuation"];
}

/// `top` as a number or as the text a query string would carry.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Top {
    Number(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
struct Empty {}

/// A field's value, refusing `null`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// The body's fields as `T`, refusing names outside `allowed` (the action's own) and naming
/// the field whose value has the wrong type.
fn fields<T: DeserializeOwned>(body: Map<String, Value>, allowed: &[&str]) -> Result<T, ApiError> {
    if let Some(unknown) = body.keys().find(|key| !allowed.contains(&key.as_str())) {
        let takes = std::iter::once("action")
            .chain(allowed.iter().copied())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(bad(format!(
            "Unknown field {unknown:?}; this action takes {takes}."
        )));
    }
    serde_path_to_error::deserialize(Value::Object(body))
        .map_err(|error| bad(format!("{}: {}", error.path(), error.inner())))
}

fn job_id_body(body: Map<String, Value>) -> Result<JobId, ApiError> {
    let body: JobIdBody = fields(body, &["job_id"])?;
    parse_job_id(body.job_id.as_deref())
}

fn parse_job_id(value: Option<&str>) -> Result<JobId, ApiError> {
    match value {
        None => Err(bad("job_id is required")),
        Some(text) => JobId::parse(text.trim()).map_err(|error| bad(error.to_string())),
    }
}

fn list_filter(
    status: Option<&str>,
    top: Option<&str>,
    continuation: Option<&str>,
) -> Result<ListFilter, ApiError> {
    let status = status
        .map(|text| {
            JobStatus::parse(text).ok_or_else(|| {
                bad("status must be one of queued, running, completed, failed, cancelled")
            })
        })
        .transpose()?;
    let top = match top {
        None => ListFilter::DEFAULT_TOP,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|top| (1..=ListFilter::MAX_TOP).contains(top))
            .ok_or_else(|| bad("top must be an integer from 1 to 100"))?,
    };
    let after = continuation
        .map(|token| {
            ListPosition::parse(token)
                .ok_or_else(|| bad("continuation is not a token this API issued"))
        })
        .transpose()?;
    Ok(ListFilter { status, top, after })
}

/// The body of a POST as a JSON object. An empty body is an empty object (a start with every
/// default). A body labelled JSON is parsed as JSON. A body sent without a label, or with one of
/// the labels `curl -d` and simple HTML clients send by default (a form, plain text), is read as
/// JSON too when it is a JSON object, so the shortest curl call works; anything else under those
/// labels is refused, asking for JSON. Every other label is refused as it is.
fn json_body(request: &ApiRequest) -> Result<Map<String, Value>, ApiError> {
    let label = BodyLabel::of(request)?;
    if request.body.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge);
    }
    if request.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let parsed = serde_json::from_slice::<Value>(&request.body);
    match (label, parsed) {
        (_, Ok(Value::Object(map))) => Ok(map),
        (BodyLabel::Json | BodyLabel::Absent, Ok(_)) => {
            Err(bad("The request body must be a JSON object."))
        }
        (BodyLabel::Json | BodyLabel::Absent, Err(error)) => {
            Err(bad(format!("The request body is not valid JSON: {error}.")))
        }
        (BodyLabel::Lenient(label), _) => Err(ApiError::NotJson { label }),
    }
}

/// How a POST body is labelled, as far as reading it goes.
enum BodyLabel {
    /// `application/json` or a `+json` type.
    Json,
    /// No `Content-Type` at all.
    Absent,
    /// A label clients send when they were not told to say JSON: read as JSON when it is.
    Lenient(&'static str),
}

/// The labels read as JSON when the body is a JSON object: what `curl -d` sends unless told
/// otherwise, and plain text.
const LENIENT_LABELS: [&str; 2] = ["application/x-www-form-urlencoded", "text/plain"];

impl BodyLabel {
    /// The request's label; any other is refused as unsupported.
    fn of(request: &ApiRequest) -> Result<Self, ApiError> {
        let Some(content_type) = request.headers.get(header::CONTENT_TYPE) else {
            return Ok(Self::Absent);
        };
        let content_type = content_type
            .to_str()
            .map_err(|_| ApiError::UnsupportedMediaType)?;
        let essence = content_type.split(';').next().unwrap_or("").trim();
        let is_json = essence.eq_ignore_ascii_case("application/json")
            || (essence.len() > 5 && essence[essence.len() - 5..].eq_ignore_ascii_case("+json"));
        if is_json {
            return Ok(Self::Json);
        }
        LENIENT_LABELS
            .into_iter()
            .find(|label| essence.eq_ignore_ascii_case(label))
            .map(Self::Lenient)
            .ok_or(ApiError::UnsupportedMediaType)
    }
}

/// Refuses query parameters other than `allowed` (and the function key's `code`).
fn only_query(request: &ApiRequest, allowed: &[&str]) -> Result<(), ApiError> {
    match request
        .query
        .iter()
        .find(|(name, _)| name != "code" && !allowed.contains(&name.as_str()))
    {
        None => Ok(()),
        Some((unknown, _)) if allowed.is_empty() => Err(bad(format!(
            "Unknown query parameter {unknown:?}; a POST takes its arguments in the body."
        ))),
        Some((unknown, _)) => Err(bad(format!(
            "Unknown query parameter {unknown:?}; this call takes {}.",
            allowed.join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::HeaderMap;
    use serde_json::json;

    fn post(body: Value) -> ApiRequest {
        ApiRequest {
            method: Method::POST,
            query: Vec::new(),
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_string()),
        }
    }

    fn refusal(body: Value) -> String {
        match parse(&post(body.clone())) {
            Err(ApiError::BadRequest(message)) => message,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn an_empty_post_is_a_start_with_every_default() {
        assert_eq!(
            parse(&post(json!({}))).unwrap(),
            Call::Start {
                requested: RequestedJob::default(),
                idempotency_key: None
            }
        );
    }

    #[test]
    fn a_start_body_is_read_into_the_requested_job() {
        let call = parse(&post(json!({
            "topics": ["rust", "golang"], "limit": 5, "priority": "high",
            "source": "reddit", "callback_url": "https://example.com/done"
        })))
        .unwrap();
        let Call::Start { requested, .. } = call else {
            panic!("{call:?}")
        };
        assert_eq!(requested.topics.unwrap(), ["rust", "golang"]);
        assert_eq!(requested.limit, Some(5));
        assert_eq!(requested.priority.as_deref(), Some("high"));
    }

    #[test]
    fn a_field_of_the_wrong_type_or_null_is_named() {
        let cases = [
            (json!({"topics": ["ok", 3]}), "topics[1]"),
            (json!({"limit": 2.5}), "limit"),
            (json!({"limit": -1}), "limit"),
            (json!({"limit": null}), "limit"),
            (json!({"topics": null}), "topics"),
            (json!({"source": 7}), "source"),
            (json!({"topic": ["technology"]}), "\"topic\""),
            (json!({"action": "status", "job_id": 123}), "job_id"),
            (json!({"action": "status"}), "job_id is required"),
            (json!({"action": "list", "top": true}), "top"),
            (json!({"action": "metrics", "top": 1}), "\"top\""),
            (json!({"action": 1}), "action"),
        ];
        for (body, needle) in cases {
            let message = refusal(body.clone());
            assert!(message.contains(needle), "{body}: {message}");
        }
    }

    #[test]
    fn a_list_takes_top_as_a_number_or_as_text() {
        for top in [json!(7), json!("7")] {
            let call = parse(&post(json!({"action": "list", "top": top}))).unwrap();
            assert!(
                matches!(call, Call::List(ListFilter { top: 7, .. })),
                "{call:?}"
            );
        }
    }

    #[test]
    fn a_method_outside_the_function_is_refused_by_name() {
        let mut request = post(json!({}));
        request.method = Method::PATCH;
        match parse(&request) {
            Err(ApiError::MethodNotAllowed { used, .. }) => assert_eq!(used, Method::PATCH),
            other => panic!("{other:?}"),
        }
    }

    fn labelled(label: Option<&str>, body: &str) -> ApiRequest {
        let mut request = post(json!({}));
        request.body = Bytes::from(body.to_owned());
        if let Some(label) = label {
            request
                .headers
                .insert(header::CONTENT_TYPE, label.parse().unwrap());
        }
        request
    }

    #[test]
    fn a_json_object_is_read_as_json_under_no_label_a_form_label_or_a_text_label() {
        let body = r#"{"source": "reddit", "topics": ["technology"], "limit": 2}"#;
        let expected = parse(&labelled(Some("application/json"), body)).unwrap();
        for label in [
            None,
            Some("application/x-www-form-urlencoded"),
            Some("application/x-www-form-urlencoded; charset=utf-8"),
            Some("Text/Plain"),
        ] {
            assert_eq!(
                parse(&labelled(label, body)).unwrap(),
                expected,
                "{label:?}"
            );
        }
    }

    #[test]
    fn a_body_that_is_not_a_json_object_under_a_form_or_text_label_is_refused_asking_for_json() {
        for label in ["application/x-www-form-urlencoded", "text/plain"] {
            for body in ["topics=technology&limit=2", "[1, 2]", "\"technology\"", "{"] {
                match parse(&labelled(Some(label), body)) {
                    Err(error @ ApiError::NotJson { .. }) => {
                        let text = error.to_string();
                        assert!(text.contains(label), "{text}");
                        assert!(text.contains("send a JSON object"), "{text}");
                    }
                    other => panic!("{label} {body:?}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn a_body_that_is_not_json_without_a_label_is_refused_as_before() {
        for body in ["topics=technology&limit=2", "[1, 2]"] {
            assert!(
                matches!(parse(&labelled(None, body)), Err(ApiError::BadRequest(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn other_labels_are_refused_whatever_the_body() {
        for label in [
            "application/xml",
            "multipart/form-data; boundary=x",
            "text/html",
        ] {
            assert!(
                matches!(
                    parse(&labelled(Some(label), "{}")),
                    Err(ApiError::UnsupportedMediaType)
                ),
                "{label}"
            );
        }
    }

    #[test]
    fn a_content_type_that_is_not_ascii_is_not_json() {
        let mut request = post(json!({}));
        request.headers.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_bytes(b"text/\xe9").unwrap(),
        );
        assert!(matches!(
            parse(&request),
            Err(ApiError::UnsupportedMediaType)
        ));
    }
}
