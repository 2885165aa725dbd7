//! The Functions host's wire types (docs/functions-host.md, "The invocation envelope"): the
//! invocation the host POSTs to `/<FunctionName>`, its bindings and metadata, and the answer it
//! accepts. Plain data with their decoding rules; what each function makes of an invocation is
//! in [`envelope`](super::envelope) and the function's own module, so this module imports none
//! of them.
//!
//! `POST /<FunctionName>` carries `{"Data": {<binding>: ...}, "Metadata": {...}}`; the answer
//! the host accepts is a 2xx `application/json` object `{"Outputs", "Logs", "ReturnValue"}`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
