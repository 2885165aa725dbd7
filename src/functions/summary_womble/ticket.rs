//! The 202 job ticket (docs/api.md section 2) and the public URLs in it.

use chrono::{DateTime, Utc};
use http::{header, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};

use super::super::{ApiRequest, ApiResponse, FunctionContext};
use super::POLL_AFTER_SECONDS;
use crate::jobs::{JobId, JobStatus, Limit, Source, StatusDocument};
use crate::reddit::Subreddit;

#[derive(Serialize)]
struct Ticket<'a> {
    job_id: JobId,
    status: JobStatus,
    message: &'static str,
    timestamp: DateTime<Utc>,
    source: Source,
    topics_requested: &'a [Subreddit],
    limit: Limit,
    status_query_url: String,
    status_check_example: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_of: Option<JobId>,
}

/// The ticket of an accepted job, with `Location` and `Retry-After`.
pub fn ticket(
    context: &FunctionContext,
    request: &ApiRequest,
    document: &StatusDocument,
) -> ApiResponse {
    let endpoint = format!("{}/api/SummaryWomble", public_base(context, request));
    let status_query_url = format!("{endpoint}?job_id={}", document.job_id);
    let body = Ticket {
        job_id: document.job_id,
        status: document.status,
        message: "Content processing started. Use job_id to check status.",
        timestamp: document.created_at,
        source: document.request.source,
        topics_requested: &document.request.topics,
        limit: document.request.limit,
        status_query_url: status_query_url.clone(),
        status_check_example: json!({
            "method": "POST",
            "url": endpoint,
            "body": {"action": "status", "job_id": document.job_id},
        }),
        retry_of: document.retry_of,
    };
    ApiResponse::json(StatusCode::ACCEPTED, &body)
        .with_header(header::LOCATION, &status_query_url)
        .with_header(header::RETRY_AFTER, POLL_AFTER_SECONDS)
}

/// The app's public base: under the host, `X-Forwarded-Host`/`-Proto` when present (the
/// platform sets them; in standalone mode any caller could, so they are not read there), else
/// `WEBSITE_HOSTNAME` over https, else the `Host` header over http.
fn public_base(context: &FunctionContext, request: &ApiRequest) -> String {
    let first = |value: &str| value.split(',').next().unwrap_or("").trim().to_owned();
    let forwarded = context
        .settings
        .mode
        .is_host()
        .then(|| request.header("x-forwarded-host"))
        .flatten();
    if let Some(host) = forwarded.map(first).filter(|h| !h.is_empty()) {
        let proto = request
            .header("x-forwarded-proto")
            .map(first)
            .filter(|p| p == "http" || p == "https")
            .unwrap_or_else(|| "https".to_owned());
        return format!("{proto}://{host}");
    }
    if let Some(host) = &context.settings.website_hostname {
        return format!("https://{host}");
    }
    let host = request.header("host").unwrap_or("localhost");
    format!("http://{host}")
}
