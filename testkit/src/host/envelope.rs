//! The envelope form of a call (`POST /<Function>` with `Data` and `Metadata`): how the host
//! builds it for an HTTP call and a timer, sends it chunked, and what it accepts as the answer
//! (2xx, `application/json`, a JSON object, the HTTP output binding's response in `Outputs`).

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Map, Value};

use super::transport::{read_answer, HostRequest, HostResponse};
use super::{FunctionDefinition, HOST_VERSION};

/// How large the chunks of an envelope body are, so the handler must reassemble them.
const ENVELOPE_CHUNK_BYTES: usize = 8 * 1024;

/// A timer binding value as the host sends it. `next` is the next occurrence (RFC 3339);
/// `Last` and `LastUpdated` are put six hours earlier, the project's schedule. `None` sends
/// `ScheduleStatus: null`, as on a first run without a monitor record.
pub fn timer_payload(next: Option<&str>, past_due: bool) -> Value {
    let schedule_status = match next {
        None => Value::Null,
        Some(next) => {
            let next_time = DateTime::parse_from_rfc3339(next)
                .unwrap_or_else(|error| panic!("timer_payload: {next:?} is not RFC 3339: {error}"));
            let last = (next_time - chrono::TimeDelta::hours(6))
                .to_rfc3339_opts(SecondsFormat::AutoSi, false);
            json!({"Last": last, "Next": next, "LastUpdated": last})
        }
    };
    json!({
        "Schedule": {"AdjustForDST": true},
        "ScheduleStatus": schedule_status,
        "IsPastDue": past_due,
    })
}

/// How a timer invocation went, from the host's side.
#[derive(Debug, Clone)]
pub struct TimerOutcome {
    /// The host's verdict: a 2xx `application/json` object answer.
    pub succeeded: bool,
    /// The handler's HTTP status; 0 when no answer came (handler down, connection lost, timeout).
    pub status: u16,
    /// The answer's `Logs`, whether or not the run succeeded (the host writes them to its log
    /// only on success; see [`HostSimulator::logs`](super::HostSimulator::logs)).
    pub logs: Vec<String>,
    /// The answer body as JSON; a JSON string of the raw text when it is not JSON; `Null` when
    /// there was no answer.
    pub body: Value,
}

/// The envelope of an HTTP call: the `req` binding and its metadata, as the host builds them
/// from the caller's request (see
/// [`HostSimulator::invoke_http`](super::HostSimulator::invoke_http)).
pub(super) fn http_envelope(
    function: &FunctionDefinition,
    request: &HostRequest,
    public_host: &str,
) -> Value {
    let query: Map<String, Value> = request
        .query_dictionary()
        .into_iter()
        .map(|(name, value)| (name, Value::String(value)))
        .collect();
    let mut groups = request.header_groups();
    let host = match request.header_value("host") {
        Some(host) => host.to_owned(),
        None => {
            groups.push(("Host".into(), vec![public_host.to_owned()]));
            public_host.to_owned()
        }
    };
    groups.retain(|(name, _)| !name.eq_ignore_ascii_case("content-length"));
    if !request.body.is_empty() {
        groups.push((
            "Content-Length".into(),
            vec![request.body.len().to_string()],
        ));
    }
    let headers: Map<String, Value> = groups
        .into_iter()
        .map(|(name, values)| (name, json!(values)))
        .collect();

    let mut req = json!({
        "Url": format!("http://{host}{}", request.path),
        "Method": request.method,
        "Query": query,
        "Headers": headers,
        "Params": {},
        "Identities": [],
    });
    if !request.body.is_empty() {
        // Binary media types arrive as bytes, which Json.NET writes as base64.
        let binary = request
            .header_value("content-type")
            .is_some_and(|content_type| {
                let media = media_type(content_type);
                media == "application/octet-stream" || media.starts_with("multipart/")
            });
        req["Body"] = Value::String(if binary {
            base64::engine::general_purpose::STANDARD.encode(&request.body)
        } else {
            String::from_utf8_lossy(&request.body).into_owned()
        });
    }
    json!({
        "Data": {function.trigger().name.as_str(): req},
        "Metadata": {
            "Query": req["Query"].clone(),
            "Headers": req["Headers"].clone(),
            "sys": sys_metadata(&function.name),
        },
    })
}

/// `POST /<Function>` on the handler at `port` with the envelope as a chunked body (no
/// Content-Length), with the host's headers.
pub(super) async fn post_envelope(
    client: &reqwest::Client,
    port: u16,
    function: &str,
    invocation_id: &str,
    envelope: &Value,
) -> Result<HostResponse, reqwest::Error> {
    let bytes = serde_json::to_vec(envelope).expect("an envelope serialises");
    let chunks: Vec<Result<Bytes, std::io::Error>> = bytes
        .chunks(ENVELOPE_CHUNK_BYTES)
        .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
        .collect();
    let answer = client
        .post(format!("http://127.0.0.1:{port}/{function}"))
        .header("Content-Type", "application/json; charset=utf-8")
        .header("User-Agent", format!("Azure-Functions-Host/{HOST_VERSION}"))
        .header("X-Azure-Functions-HostVersion", HOST_VERSION)
        .header("X-Azure-Functions-InvocationId", invocation_id)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await?;
    read_answer(answer).await
}

/// `Metadata.sys` of an invocation.
pub(super) fn sys_metadata(function: &str) -> Value {
    json!({
        "MethodName": function,
        "UtcNow": Utc::now().to_rfc3339_opts(SecondsFormat::AutoSi, true),
        "RandGuid": uuid::Uuid::new_v4().to_string(),
    })
}

/// `type/subtype` in lower case, without parameters.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The host's acceptance rule for an envelope answer: 2xx, `application/json`, a JSON object.
pub(super) fn accept_envelope_answer(answer: &HostResponse) -> Result<Map<String, Value>, String> {
    if !(200..300).contains(&answer.status) {
        return Err(format!(
            "answered HTTP {}: {}",
            answer.status,
            answer.text()
        ));
    }
    let content_type = answer.header("content-type").unwrap_or_default();
    if media_type(&content_type) != "application/json" {
        return Err(format!(
            "answered Content-Type {content_type:?}, not application/json: {}",
            answer.text()
        ));
    }
    match serde_json::from_slice::<Value>(&answer.body) {
        Ok(Value::Object(result)) => Ok(result),
        Ok(other) => Err(format!("answered JSON that is not an object: {other}")),
        Err(error) => Err(format!(
            "answered a body that is not JSON ({error}): {:?}",
            answer.text()
        )),
    }
}

/// `Logs` of an answer (strings only; anything else is shown as JSON).
pub(super) fn log_lines(body: &Value) -> Vec<String> {
    body.get("Logs")
        .and_then(Value::as_array)
        .map(|lines| {
            lines
                .iter()
                .map(|line| match line {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A value of a JSON object by case-insensitive key (Json.NET binds properties that way).
fn field<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).or_else(|| {
        object
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, value)| value)
    })
}

/// The caller's answer from `Outputs.<binding>`, with notes on what the host tolerates but the
/// contract forbids. `Err` when the host cannot build an answer at all.
pub(super) fn http_output(
    result: &Map<String, Value>,
    binding: &str,
) -> Result<(HostResponse, Vec<String>), String> {
    let mut notes = Vec::new();
    let outputs = result
        .get("Outputs")
        .and_then(Value::as_object)
        .ok_or("the answer has no Outputs object")?;
    let output = outputs
        .get(binding)
        .ok_or_else(|| format!("Outputs has no {binding:?} (binding names are exact-case)"))?;
    // The host reads the output through its text form, so a JSON string holding the object
    // works too.
    let output = match output {
        Value::Object(object) => object.clone(),
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(object)) => object,
            _ => {
                return Err(format!(
                    "Outputs.{binding} is not an HTTP response object: {text:?}"
                ))
            }
        },
        other => {
            return Err(format!(
                "Outputs.{binding} is not an HTTP response object: {other}"
            ))
        }
    };

    let status = match field(&output, "statusCode") {
        Some(Value::Number(number)) => number.as_u64().and_then(|n| u16::try_from(n).ok()),
        Some(Value::String(text)) => text.trim().parse().ok(),
        None => {
            notes.push(format!(
                "Outputs.{binding} has no statusCode; the host answers 200"
            ));
            Some(200)
        }
        Some(_) => None,
    };
    let status = status
        .filter(|status| (100..1000).contains(status))
        .ok_or_else(|| {
            format!(
                "Outputs.{binding}.statusCode is not a status code: {:?}",
                field(&output, "statusCode")
            )
        })?;

    let mut headers = HeaderMap::new();
    match field(&output, "headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(entries)) => {
            for (name, value) in entries {
                let text = match value {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                match (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(&text),
                ) {
                    (Ok(name), Ok(value)) => {
                        headers.append(name, value);
                    }
                    _ => notes.push(format!(
                        "Outputs.{binding}.headers has an invalid header {name}: {text:?}"
                    )),
                }
            }
        }
        Some(other) => {
            return Err(format!(
                "Outputs.{binding}.headers is not an object: {other}"
            ))
        }
    }

    let body = match field(&output, "body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) => text.clone().into_bytes(),
        Some(other) => {
            notes.push(format!("Outputs.{binding}.body is not a string"));
            other.to_string().into_bytes()
        }
    };
    Ok((
        HostResponse {
            status,
            headers,
            body,
        },
        notes,
    ))
}
