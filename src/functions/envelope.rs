//! The Functions host's invocation envelope (docs/functions-host.md, "The invocation envelope"), and the
//! adapters that turn an invocation into a function call and its answer back into the
//! envelope's.
//!
//! `POST /<FunctionName>` carries `{"Data": {<binding>: ...}, "Metadata": {...}}`; the answer
//! the host accepts is a 2xx `application/json` object `{"Outputs", "Logs", "ReturnValue"}`.

use std::collections::HashMap;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ApiError, ApiRequest, ApiResponse, FunctionContext, MAX_BODY_BYTES};

/// An invocation as the host sends it. Read with [`Invocation::parse`].
#[derive(Debug, Clone, Deserialize)]
pub struct Invocation {
    #[serde(rename = "Data", default)]
    pub data: HashMap<String, Value>,
    #[serde(rename = "Metadata", default)]
    pub metadata: Metadata,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub sys: Option<SysMetadata>,
    /// A queue trigger's delivery count, `"1"` on the first (a string on the wire).
    #[serde(rename = "DequeueCount", default)]
    pub dequeue_count: Option<Value>,
}

impl Invocation {
    /// The invocation in `body`: a JSON object whose `Metadata` and `Metadata.sys`, when
    /// present, are objects too. (A derived struct would also take a JSON array in their place,
    /// which no host sends.)
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let value: Value = serde_json::from_slice(body).map_err(|error| error.to_string())?;
        let metadata = value.get("Metadata");
        let sys = metadata.and_then(|metadata| metadata.get("sys"));
        let object_or_absent = |value: Option<&Value>| {
            matches!(value, None | Some(Value::Null) | Some(Value::Object(_)))
        };
        if !value.is_object() || !object_or_absent(metadata) || !object_or_absent(sys) {
            return Err(
                "an invocation is a JSON object, and its Metadata and sys are objects".into(),
            );
        }
        serde_json::from_value(value).map_err(|error| error.to_string())
    }
}

impl Metadata {
    /// A queue message's delivery count; 1 when absent or unreadable (a first delivery is the
    /// safe guess: it never ends a job early).
    pub fn dequeue_count(&self) -> u32 {
        match &self.dequeue_count {
            Some(Value::String(text)) => text.trim_matches('"').parse().ok(),
            Some(Value::Number(number)) => number.as_u64().and_then(|n| u32::try_from(n).ok()),
            _ => None,
        }
        .unwrap_or(1)
        .max(1)
    }
}

/// The host's `sys` metadata; only the invocation's time is read (other fields are ignored).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SysMetadata {
    #[serde(rename = "UtcNow", default)]
    pub utc_now: Option<String>,
}

/// The `req` binding of an HTTP trigger that was not forwarded.
#[derive(Debug, Clone, Deserialize)]
pub struct HttpTriggerData {
    #[serde(rename = "Url", default)]
    pub url: String,
    #[serde(rename = "Method")]
    pub method: String,
    #[serde(rename = "Query", default)]
    pub query: HashMap<String, Value>,
    #[serde(rename = "Headers", default)]
    pub headers: HashMap<String, Value>,
    #[serde(rename = "Body", default)]
    pub body: Option<Value>,
}

impl HttpTriggerData {
    /// Header values arrive as arrays of strings (sometimes as a bare string).
    pub fn header_values(&self) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        for (name, value) in &self.headers {
            match value {
                Value::Array(values) => pairs.extend(
                    values
                        .iter()
                        .filter_map(|v| v.as_str())
                        .map(|v| (name.clone(), v.to_owned())),
                ),
                Value::String(value) => pairs.push((name.clone(), value.clone())),
                _ => {}
            }
        }
        pairs
    }

    /// Query values are strings (or arrays of strings from some host versions).
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        for (name, value) in &self.query {
            match value {
                Value::String(value) => pairs.push((name.clone(), value.clone())),
                Value::Array(values) => pairs.extend(
                    values
                        .iter()
                        .filter_map(|v| v.as_str())
                        .map(|v| (name.clone(), v.to_owned())),
                ),
                other => pairs.push((name.clone(), other.to_string())),
            }
        }
        pairs
    }

    /// The body as the caller sent it. The host sends it as a string; a JSON body may also
    /// arrive already parsed, in which case it is written back as JSON text.
    pub fn body_text(&self) -> Option<String> {
        match &self.body {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text.clone()),
            Some(other) => Some(other.to_string()),
        }
    }
}

/// The timer binding (`mytimer`).
#[derive(Debug, Clone, Deserialize)]
pub struct TimerInfo {
    #[serde(rename = "ScheduleStatus", default)]
    pub schedule_status: Option<ScheduleStatus>,
    #[serde(rename = "IsPastDue", default)]
    pub is_past_due: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ScheduleStatus {
    /// The next occurrence, which identifies this run (its slot key).
    #[serde(rename = "Next", default)]
    pub next: Option<String>,
}

/// The answer to an invocation.
#[derive(Debug, Clone, Serialize)]
pub struct InvocationResult {
    #[serde(rename = "Outputs")]
    pub outputs: serde_json::Map<String, Value>,
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    #[serde(rename = "ReturnValue")]
    pub return_value: Value,
}

/// An HTTP output binding value (`Outputs.res`).
#[derive(Debug, Clone, Serialize)]
pub struct HttpOutput {
    #[serde(rename = "statusCode")]
    pub status_code: u16,
    pub headers: HashMap<String, String>,
    /// Always text, with `Content-Type` set, so the host never base64-decodes it.
    pub body: String,
}

/// Decodes a binding value: objects arrive as nested JSON, while plain values arrive
/// JSON-encoded inside a string.
pub fn binding<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, serde_json::Error> {
    let parsed;
    let object = match value {
        Value::String(text) => {
            parsed = serde_json::from_str::<Value>(text)?;
            &parsed
        }
        other => other,
    };
    if !object.is_object() {
        return Err(serde::de::Error::custom(
            "a binding is a JSON object or its text",
        ));
    }
    T::deserialize(object)
}

/// The answer to an invocation that succeeded: 200 with `result`.
fn invocation_answer(result: &InvocationResult) -> ApiResponse {
    ApiResponse::json(StatusCode::OK, result)
}

/// SummaryWomble inside the envelope: the `req` binding in, `Outputs.res` out. The call is
/// handled exactly as a forwarded one.
pub async fn summary_womble(context: &FunctionContext, body: &[u8]) -> ApiResponse {
    let request = match Invocation::parse(body).and_then(|invocation| {
        let req = invocation
            .data
            .get("req")
            .ok_or_else(|| "the invocation has no req binding".to_owned())?;
        let req: HttpTriggerData = binding(req).map_err(|error| error.to_string())?;
        req.into_request()
    }) {
        Ok(request) => request,
        Err(reason) => return ApiError::MalformedInvocation(reason).into_response(),
    };
    let response = if request.body.len() > MAX_BODY_BYTES {
        ApiError::PayloadTooLarge.into_response()
    } else {
        super::summary_womble::handle(context, request).await
    };
    let mut headers: HashMap<String, String> = HashMap::new();
    headers.insert("Content-Type".into(), "application/json".into());
    for (name, value) in &response.headers {
        if let Ok(value) = value.to_str() {
            headers.insert(name.to_string(), value.to_owned());
        }
    }
    let output = HttpOutput {
        status_code: response.status.as_u16(),
        headers,
        body: String::from_utf8_lossy(&response.body).into_owned(),
    };
    let mut outputs = serde_json::Map::new();
    outputs.insert(
        "res".into(),
        serde_json::to_value(output).expect("an HTTP output serialises"),
    );
    invocation_answer(&InvocationResult {
        outputs,
        logs: Vec::new(),
        return_value: Value::Null,
    })
}

/// The timer: 200 with the run's log lines on success; 500 when the run failed, so the host
/// records the failure (the reason is in our log).
pub async fn get_hot_topics(context: &FunctionContext, body: &[u8]) -> ApiResponse {
    let invocation = match Invocation::parse(body) {
        Ok(invocation) => invocation,
        Err(reason) => return ApiError::MalformedInvocation(reason).into_response(),
    };
    match super::get_hot_topics::run(context, &invocation).await {
        Ok(log) => invocation_answer(&InvocationResult {
            outputs: serde_json::Map::new(),
            logs: log.lines,
            return_value: Value::Null,
        }),
        Err((error, log)) => {
            let reason = error.to_string();
            let mut logs = log.lines;
            logs.push(format!("GetHotTopics failed: {reason}"));
            ApiError::InvocationFailed {
                function: "GetHotTopics",
                reason,
                logs,
            }
            .into_response()
        }
    }
}

/// RunJob: one delivery of a job's queue message (binding `message`, with `DequeueCount` in
/// the metadata). 200 when the message is done with; 500, so the host delivers it again, when
/// the job could not be run.
pub async fn run_job(context: &FunctionContext, body: &[u8]) -> ApiResponse {
    let invocation = match Invocation::parse(body) {
        Ok(invocation) => invocation,
        Err(reason) => return ApiError::MalformedInvocation(reason).into_response(),
    };
    let Some(message) = invocation.data.get("message") else {
        return ApiError::MalformedInvocation("the invocation has no message binding".into())
            .into_response();
    };
    match super::run_job::run(context, message, invocation.metadata.dequeue_count()).await {
        Ok(logs) => invocation_answer(&InvocationResult {
            outputs: serde_json::Map::new(),
            logs,
            return_value: Value::Null,
        }),
        Err(reason) => ApiError::InvocationFailed {
            function: "RunJob",
            reason,
            logs: Vec::new(),
        }
        .into_response(),
    }
}

impl HttpTriggerData {
    /// The call the caller made, as the forwarded form would have carried it.
    fn into_request(self) -> Result<ApiRequest, String> {
        let method = Method::from_bytes(self.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("unknown method {:?}", self.method))?;
        let mut headers = HeaderMap::new();
        for (name, value) in self.header_values() {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                headers.append(name, value);
            }
        }
        Ok(ApiRequest {
            method,
            query: self.query_pairs(),
            headers,
            body: Bytes::from(self.body_text().unwrap_or_default()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timer_binding_decodes_with_and_without_schedule_status() {
        let with: TimerInfo = binding(&serde_json::json!({
            "Schedule": {"AdjustForDST": true},
            "ScheduleStatus": {"Last": "2026-01-01T00:00:00Z", "Next": "2026-01-01T06:00:00Z", "LastUpdated": "2026-01-01T00:00:00Z"},
            "IsPastDue": false
        }))
        .unwrap();
        assert_eq!(
            with.schedule_status.unwrap().next.as_deref(),
            Some("2026-01-01T06:00:00Z")
        );
        let without: TimerInfo = binding(
            &serde_json::json!({"Schedule": {}, "ScheduleStatus": null, "IsPastDue": true}),
        )
        .unwrap();
        assert!(without.schedule_status.is_none());
        assert!(without.is_past_due);
    }

    #[test]
    fn a_binding_encoded_inside_a_string_decodes() {
        let info: TimerInfo = binding(&Value::String(r#"{"IsPastDue": true}"#.into())).unwrap();
        assert!(info.is_past_due);
    }

    #[test]
    fn http_trigger_headers_and_query_flatten_to_pairs() {
        let req: HttpTriggerData = serde_json::from_value(serde_json::json!({
            "Url": "http://localhost/api/SummaryWomble?job_id=x",
            "Method": "GET",
            "Query": {"job_id": "x"},
            "Headers": {"Accept": ["application/json"], "X-Many": ["a", "b"]},
            "Params": {}
        }))
        .unwrap();
        assert_eq!(
            req.query_pairs(),
            vec![("job_id".to_owned(), "x".to_owned())]
        );
        let mut headers = req.header_values();
        headers.sort();
        assert_eq!(headers.len(), 3);
        assert!(req.body_text().is_none());
    }
}
