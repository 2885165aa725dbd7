//! The adapters between the Functions host's envelope and the functions: each turns an
//! invocation ([`host_wire`](super::host_wire)) into a function call and the function's answer
//! back into the envelope's (docs/functions-host.md, "The invocation envelope").

use std::collections::HashMap;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::Value;

use super::host_wire::{binding, HttpOutput, HttpTriggerData, Invocation, InvocationResult};
use super::{ApiError, ApiRequest, ApiResponse, FunctionContext, MAX_BODY_BYTES};

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
        into_request(req)
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

/// The call the caller made, as the forwarded form would have carried it.
fn into_request(req: HttpTriggerData) -> Result<ApiRequest, String> {
    let method = Method::from_bytes(req.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("unknown method {:?}", req.method))?;
    let mut headers = HeaderMap::new();
    for (name, value) in req.header_values() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.append(name, value);
        }
    }
    Ok(ApiRequest {
        method,
        query: req.query_pairs(),
        headers,
        body: Bytes::from(req.body_text().unwrap_or_default()),
    })
}
