//! SummaryWomble: issues job tickets and answers status, cancel, retry, list and metrics
//! (api.md sections 2 to 5).
//!
//! Requests are parsed into domain types at the top of each action; a request that breaks a
//! rule is answered 400 naming the field, before anything is written.

use std::collections::HashMap;
use std::net::IpAddr;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use http::{header, Method, StatusCode};
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::{ApiError, ApiRequest, ApiResponse, FunctionContext};
use crate::config::DEFAULT_SUBREDDITS;
use crate::jobs::request::dedup_subreddits;
use crate::jobs::{
    JobId, JobRequest, JobStatus, Limit, Priority, RepositoryError, Source, StatusDocument,
    SubmitError, TransitionError,
};
use crate::reddit::Subreddit;

/// Seconds a client is asked to wait before polling a job that is not finished.
const POLL_AFTER_SECONDS: &str = "5";

const START_FIELDS: [&str; 6] = [
    "action",
    "source",
    "topics",
    "limit",
    "priority",
    "callback_url",
];

/// Handles one call, whichever form it came in.
pub async fn handle(context: &FunctionContext, request: ApiRequest) -> ApiResponse {
    match route(context, &request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn route(context: &FunctionContext, request: &ApiRequest) -> Result<ApiResponse, ApiError> {
    match request.method {
        Method::GET => match request.query_value("job_id") {
            Some(id) => {
                only_query(request, &["job_id"])?;
                status(context, parse_job_id(Some(id))?).await
            }
            None => {
                only_query(request, &["status", "top", "continuation"])?;
                list(context, ListFilter::from_query(request)?).await
            }
        },
        Method::DELETE => {
            only_query(request, &["job_id"])?;
            cancel(context, parse_job_id(request.query_value("job_id"))?).await
        }
        Method::POST => {
            only_query(request, &[])?;
            let idempotency_key = idempotency_key(request)?;
            let body = json_body(request)?;
            let action = match body.get("action") {
                None => "start",
                Some(Value::String(action)) => action.as_str(),
                Some(_) => return Err(bad("action must be a string")),
            };
            match action {
                "start" => start(context, request, &body, idempotency_key).await,
                "status" => {
                    only_fields(&body, &["action", "job_id"])?;
                    status(context, job_id_field(&body)?).await
                }
                "cancel" => {
                    only_fields(&body, &["action", "job_id"])?;
                    cancel(context, job_id_field(&body)?).await
                }
                "retry" => {
                    only_fields(&body, &["action", "job_id"])?;
                    retry(context, request, job_id_field(&body)?).await
                }
                "list" => {
                    only_fields(&body, &["action", "status", "top", "continuation"])?;
                    list(context, ListFilter::from_body(&body)?).await
                }
                "metrics" => {
                    only_fields(&body, &["action"])?;
                    metrics(context).await
                }
                other => Err(bad(format!(
                    "Unknown action {other:?}; use start, status, cancel, retry, list or metrics."
                ))),
            }
        }
        ref other => Err(ApiError::MethodNotAllowed(other.clone())),
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

/// The body of a POST as a JSON object. An empty body is an empty object (a start with every
/// default). A Content-Type, when sent, must be JSON.
fn json_body(request: &ApiRequest) -> Result<Map<String, Value>, ApiError> {
    if let Some(content_type) = request.header(header::CONTENT_TYPE.as_str()) {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        let is_json = essence.eq_ignore_ascii_case("application/json")
            || (essence.len() > 5 && essence[essence.len() - 5..].eq_ignore_ascii_case("+json"));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    if request.body.len() > super::MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge);
    }
    if request.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&request.body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(bad("The request body must be a JSON object.")),
        Err(error) => Err(bad(format!("The request body is not valid JSON: {error}."))),
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

/// The `Idempotency-Key` header, read as raw bytes: a value that is not 1 to 200 visible
/// ASCII characters is refused, not ignored.
fn idempotency_key(request: &ApiRequest) -> Result<Option<&str>, ApiError> {
    match request
        .headers
        .get("idempotency-key")
        .map(|value| value.as_bytes())
    {
        None => Ok(None),
        Some(key)
            if (1..=200).contains(&key.len()) && key.iter().all(|b| (0x20..0x7f).contains(b)) =>
        {
            Ok(Some(std::str::from_utf8(key).expect("ASCII is UTF-8")))
        }
        Some(_) => Err(bad(
            "Idempotency-Key must be 1 to 200 printable ASCII characters",
        )),
    }
}

fn only_fields(body: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    match body.keys().find(|key| !allowed.contains(&key.as_str())) {
        None => Ok(()),
        Some(unknown) => Err(bad(format!(
            "Unknown field {unknown:?}; this action takes {}.",
            allowed.join(", ")
        ))),
    }
}

fn parse_job_id(value: Option<&str>) -> Result<JobId, ApiError> {
    match value {
        None => Err(bad("job_id is required")),
        Some(text) => JobId::parse(text.trim()).map_err(|error| bad(error.to_string())),
    }
}

fn job_id_field(body: &Map<String, Value>) -> Result<JobId, ApiError> {
    match body.get("job_id") {
        None | Some(Value::Null) => Err(bad("job_id is required")),
        Some(Value::String(text)) => parse_job_id(Some(text)),
        Some(_) => Err(bad("job_id must be a string")),
    }
}

/// Turns a start body into a [`JobRequest`], naming the field that breaks a rule. An absent
/// field takes its default; `null` is not a value for any field.
pub fn parse_start(
    body: &Map<String, Value>,
    allow_insecure_callbacks: bool,
) -> Result<JobRequest, ApiError> {
    only_fields(body, &START_FIELDS)?;
    let source = match body.get("source") {
        None => Source::Reddit,
        Some(Value::String(text)) => text
            .parse::<Source>()
            .map_err(|error| bad(error.to_string()))?,
        Some(_) => return Err(bad("source must be a string")),
    };
    let topics = match body.get("topics") {
        None => DEFAULT_SUBREDDITS
            .iter()
            .map(|name| Subreddit::parse(name).expect("the defaults are valid names"))
            .collect(),
        Some(Value::Array(items)) => {
            if items.is_empty() || items.len() > JobRequest::MAX_TOPICS {
                return Err(bad(format!(
                    "topics must hold 1 to {} subreddit names",
                    JobRequest::MAX_TOPICS
                )));
            }
            let mut names = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let Value::String(text) = item else {
                    return Err(bad(format!("topics[{index}] must be a string")));
                };
                let name = Subreddit::parse(text)
                    .map_err(|error| bad(format!("topics[{index}]: {error}")))?;
                names.push(name);
            }
            dedup_subreddits(names)
        }
        Some(_) => return Err(bad("topics must be an array of subreddit names")),
    };
    let limit = match body.get("limit") {
        None => Limit::DEFAULT,
        Some(Value::Number(number)) => number
            .as_u64()
            .and_then(|value| u32::try_from(value).ok())
            .and_then(Limit::new)
            .ok_or_else(|| bad("limit must be an integer from 1 to 100"))?,
        Some(_) => return Err(bad("limit must be an integer from 1 to 100")),
    };
    let priority = match body.get("priority") {
        None => Priority::Normal,
        Some(Value::String(text)) if text == "normal" => Priority::Normal,
        Some(Value::String(text)) if text == "high" => Priority::High,
        Some(_) => return Err(bad("priority must be \"high\" or \"normal\"")),
    };
    let callback_url = match body.get("callback_url") {
        None => None,
        Some(Value::String(text)) => Some(parse_callback_url(text, allow_insecure_callbacks)?),
        Some(_) => return Err(bad("callback_url must be a string")),
    };
    Ok(JobRequest {
        source,
        topics,
        limit,
        priority,
        callback_url,
    })
}

/// Only `https` URLs to public hosts; `http://127.0.0.1` and `http://localhost` (and private
/// addresses) only when insecure callbacks are allowed for local use.
fn parse_callback_url(text: &str, allow_insecure: bool) -> Result<String, ApiError> {
    let url = url::Url::parse(text).map_err(|_| bad("callback_url must be an https URL"))?;
    let host = url.host_str().unwrap_or("");
    if host.is_empty() || !url.username().is_empty() || url.password().is_some() {
        return Err(bad("callback_url must be an https URL without credentials"));
    }
    let local = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| match ip {
                IpAddr::V4(v4) => {
                    v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified()
                }
                IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified(),
            });
    match (url.scheme(), local) {
        ("https", false) => Ok(url.to_string()),
        (_, true) if allow_insecure && matches!(url.scheme(), "http" | "https") => {
            Ok(url.to_string())
        }
        (_, true) => Err(bad(
            "callback_url must not point at a local or private address",
        )),
        _ => Err(bad("callback_url must be an https URL")),
    }
}

/// The app's public base, for the URLs in a ticket: `X-Forwarded-Host`/`-Proto` when present,
/// else `WEBSITE_HOSTNAME` over https, else the `Host` header over http.
fn public_base(context: &FunctionContext, request: &ApiRequest) -> String {
    let first = |value: &str| value.split(',').next().unwrap_or("").trim().to_owned();
    if let Some(host) = request
        .header("x-forwarded-host")
        .map(first)
        .filter(|h| !h.is_empty())
    {
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

fn ticket(
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

fn submit_error(error: SubmitError) -> ApiError {
    match error {
        SubmitError::StorageUnavailable(cause) => ApiError::Unavailable(cause.into()),
        SubmitError::Storage(cause) => ApiError::Internal(cause.into()),
    }
}

fn storage_error(error: RepositoryError) -> ApiError {
    if error.is_retryable() {
        ApiError::Unavailable(error.into())
    } else {
        ApiError::Internal(error.into())
    }
}

async fn start(
    context: &FunctionContext,
    request: &ApiRequest,
    body: &Map<String, Value>,
    idempotency_key: Option<&str>,
) -> Result<ApiResponse, ApiError> {
    let job = parse_start(body, context.settings.jobs.allow_insecure_callbacks)?;
    let document = context
        .jobs
        .submit(job, None, idempotency_key)
        .await
        .map_err(submit_error)?;
    Ok(ticket(context, request, &document))
}

async fn status(context: &FunctionContext, id: JobId) -> Result<ApiResponse, ApiError> {
    let versioned = context
        .jobs
        .repository()
        .load(id)
        .await
        .map_err(storage_error)?
        .ok_or_else(|| not_found(id))?;
    let response = ApiResponse::json(StatusCode::OK, &versioned.document);
    Ok(if versioned.document.status.is_terminal() {
        response
    } else {
        response.with_header(header::RETRY_AFTER, POLL_AFTER_SECONDS)
    })
}

fn not_found(id: JobId) -> ApiError {
    ApiError::NotFound(format!("No job with job_id {id}."))
}

async fn cancel(context: &FunctionContext, id: JobId) -> Result<ApiResponse, ApiError> {
    let repository = context.jobs.repository();
    match repository
        .update(id, |doc| doc.request_cancel(crate::jobs::status::now()))
        .await
    {
        Ok((document, ())) => {
            tracing::info!(job_id = %id, status = %document.status, "cancel recorded");
            Ok(ApiResponse::json(StatusCode::ACCEPTED, &document))
        }
        Err(RepositoryError::NotFound) => Err(not_found(id)),
        Err(RepositoryError::Transition(TransitionError::Terminal(status))) => {
            Err(ApiError::Conflict(format!(
                "Job {id} is already {status}; it cannot be cancelled."
            )))
        }
        Err(error) => Err(storage_error(error)),
    }
}

async fn retry(
    context: &FunctionContext,
    request: &ApiRequest,
    id: JobId,
) -> Result<ApiResponse, ApiError> {
    let old = context
        .jobs
        .repository()
        .load(id)
        .await
        .map_err(storage_error)?
        .ok_or_else(|| not_found(id))?
        .document;
    if !old.status.is_terminal() {
        return Err(ApiError::Conflict(format!(
            "Job {id} is still {}; only a finished job can be retried.",
            old.status
        )));
    }
    let document = context
        .jobs
        .submit(old.request, Some(id), None)
        .await
        .map_err(submit_error)?;
    Ok(ticket(context, request, &document))
}

/// Which jobs a list call wants.
#[derive(Debug)]
struct ListFilter {
    status: Option<JobStatus>,
    top: usize,
    after: Option<ListPosition>,
}

/// Where a page ended: jobs are ordered newest first, ties by id. Its token is the opaque
/// continuation a list answer hands out.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPosition {
    pub created_at: DateTime<Utc>,
    pub job_id: JobId,
}

impl ListPosition {
    pub fn token(&self) -> String {
        hex::encode(format!("{}|{}", self.created_at.to_rfc3339(), self.job_id))
    }

    pub fn parse(token: &str) -> Option<Self> {
        let text = String::from_utf8(hex::decode(token).ok()?).ok()?;
        let (at, id) = text.split_once('|')?;
        Some(Self {
            created_at: DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc),
            job_id: JobId::parse(id).ok()?,
        })
    }

    fn of(document: &StatusDocument) -> Self {
        Self {
            created_at: document.created_at,
            job_id: document.job_id,
        }
    }

    /// Whether `self` comes after `other` in newest-first order.
    fn is_after(&self, other: &ListPosition) -> bool {
        (other.created_at, other.job_id) > (self.created_at, self.job_id)
    }
}

impl ListFilter {
    fn new(
        status: Option<&str>,
        top: Option<&str>,
        continuation: Option<&str>,
    ) -> Result<Self, ApiError> {
        let status = status
            .map(|text| {
                JobStatus::parse(text).ok_or_else(|| {
                    bad("status must be one of queued, running, completed, failed, cancelled")
                })
            })
            .transpose()?;
        let top = match top {
            None => 20,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|top| (1..=100).contains(top))
                .ok_or_else(|| bad("top must be an integer from 1 to 100"))?,
        };
        let after = continuation
            .map(|token| {
                ListPosition::parse(token)
                    .ok_or_else(|| bad("continuation is not a token this API issued"))
            })
            .transpose()?;
        Ok(Self { status, top, after })
    }

    fn from_query(request: &ApiRequest) -> Result<Self, ApiError> {
        Self::new(
            request.query_value("status"),
            request.query_value("top"),
            request.query_value("continuation"),
        )
    }

    fn from_body(body: &Map<String, Value>) -> Result<Self, ApiError> {
        let text = |name: &str| -> Result<Option<String>, ApiError> {
            match body.get(name) {
                None => Ok(None),
                Some(Value::String(text)) => Ok(Some(text.clone())),
                Some(Value::Number(number)) if name == "top" => Ok(Some(number.to_string())),
                Some(_) => Err(bad(format!("{name} must be a string"))),
            }
        };
        Self::new(
            text("status")?.as_deref(),
            text("top")?.as_deref(),
            text("continuation")?.as_deref(),
        )
    }
}

/// Reads every stored status document. Listing by creation time needs them all; the cost is
/// one read per job, bounded by retention.
async fn all_documents(context: &FunctionContext) -> Result<Vec<StatusDocument>, ApiError> {
    use futures::StreamExt;
    let repository = context.jobs.repository();
    let mut ids = Vec::new();
    let mut marker = None;
    loop {
        let (page, next) = repository
            .list_ids(marker, 1000)
            .await
            .map_err(storage_error)?;
        ids.extend(page);
        match next {
            Some(next) => marker = Some(next),
            None => break,
        }
    }
    let loaded: Vec<_> = futures::stream::iter(ids)
        .map(|id| async move { repository.load(id).await })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut documents = Vec::with_capacity(loaded.len());
    for result in loaded {
        match result {
            Ok(Some(versioned)) => documents.push(versioned.document),
            Ok(None) => {}
            Err(RepositoryError::Corrupt(error)) => {
                tracing::warn!(error = %error, "skipping a status document that does not parse")
            }
            Err(error) => return Err(storage_error(error)),
        }
    }
    Ok(documents)
}

async fn list(context: &FunctionContext, filter: ListFilter) -> Result<ApiResponse, ApiError> {
    let mut documents: Vec<StatusDocument> = all_documents(context)
        .await?
        .into_iter()
        .filter(|doc| filter.status.is_none_or(|status| doc.status == status))
        .filter(|doc| {
            filter
                .after
                .as_ref()
                .is_none_or(|after| ListPosition::of(doc).is_after(after))
        })
        .collect();
    documents.sort_by_key(|doc| std::cmp::Reverse((doc.created_at, doc.job_id)));
    let more = documents.len() > filter.top;
    documents.truncate(filter.top);
    let continuation = more
        .then(|| documents.last().map(|last| ListPosition::of(last).token()))
        .flatten();
    // A page showing an unfinished job will change: say when to look again, as a status
    // answer does, so a client refreshing the list (the dashboard) need not guess.
    let unfinished = documents.iter().any(|doc| !doc.status.is_terminal());
    let response = ApiResponse::json(
        StatusCode::OK,
        &json!({"jobs": documents, "continuation": continuation}),
    );
    Ok(if unfinished {
        response.with_header(header::RETRY_AFTER, POLL_AFTER_SECONDS)
    } else {
        response
    })
}

async fn metrics(context: &FunctionContext) -> Result<ApiResponse, ApiError> {
    let since = Utc::now() - ChronoDuration::hours(24);
    let documents: Vec<StatusDocument> = all_documents(context)
        .await?
        .into_iter()
        .filter(|doc| doc.created_at >= since)
        .collect();
    Ok(ApiResponse::json(
        StatusCode::OK,
        &Metrics::of(&documents, since),
    ))
}

/// The metrics answer (api.md section 4).
#[derive(Debug, Serialize)]
struct Metrics {
    since: DateTime<Utc>,
    total_jobs: usize,
    by_status: HashMap<&'static str, usize>,
    /// Completed among terminal jobs; `null` when none is terminal.
    success_rate: Option<f64>,
    mean_duration_seconds: Option<f64>,
    p95_duration_seconds: Option<f64>,
    failures_by_subreddit: HashMap<String, usize>,
}

impl Metrics {
    fn of(documents: &[StatusDocument], since: DateTime<Utc>) -> Self {
        let mut by_status: HashMap<&'static str, usize> = JobStatus::ALL
            .iter()
            .map(|status| (status.as_str(), 0))
            .collect();
        let mut failures_by_subreddit: HashMap<String, usize> = HashMap::new();
        let mut durations: Vec<f64> = Vec::new();
        for doc in documents {
            *by_status.entry(doc.status.as_str()).or_default() += 1;
            if let (Some(started), Some(finished)) = (doc.started_at, doc.finished_at) {
                durations.push((finished - started).num_milliseconds() as f64 / 1000.0);
            }
            for outcome in doc.results.iter().flat_map(|results| &results.results) {
                if outcome.error.is_some() {
                    *failures_by_subreddit
                        .entry(outcome.subreddit.as_str().to_ascii_lowercase())
                        .or_default() += 1;
                }
            }
        }
        let terminal = documents
            .iter()
            .filter(|doc| doc.status.is_terminal())
            .count();
        let completed = by_status["completed"];
        durations.sort_by(f64::total_cmp);
        let mean =
            (!durations.is_empty()).then(|| durations.iter().sum::<f64>() / durations.len() as f64);
        let p95 = (!durations.is_empty()).then(|| {
            let rank = ((durations.len() as f64) * 0.95).ceil() as usize;
            durations[rank.clamp(1, durations.len()) - 1]
        });
        Self {
            since,
            total_jobs: documents.len(),
            by_status,
            success_rate: (terminal > 0).then(|| completed as f64 / terminal as f64),
            mean_duration_seconds: mean,
            p95_duration_seconds: p95,
            failures_by_subreddit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn an_empty_start_takes_every_default() {
        let job = parse_start(&Map::new(), false).unwrap();
        assert_eq!(job.topics.len(), 7);
        assert_eq!(job.limit.get(), 10);
        assert_eq!(job.priority, Priority::Normal);
        assert_eq!(job.source, Source::Reddit);
    }

    #[test]
    fn bad_start_fields_are_named_in_the_error() {
        let cases = [
            (json!({"source": "twitter"}), "Unsupported source: twitter"),
            (json!({"topics": []}), "topics"),
            (json!({"topics": ["ok", 3]}), "topics[1]"),
            (json!({"topics": ["bad name"]}), "topics[0]"),
            (json!({"limit": 0}), "limit"),
            (json!({"limit": 2.5}), "limit"),
            (json!({"priority": "urgent"}), "priority"),
            (
                json!({"callback_url": "http://example.com/hook"}),
                "callback_url",
            ),
            (
                json!({"callback_url": "https://10.0.0.1/hook"}),
                "callback_url",
            ),
            (json!({"topic": ["technology"]}), "\"topic\""),
            (json!({"limit": null}), "limit"),
            (json!({"topics": null}), "topics"),
        ];
        for (input, expected) in cases {
            let error = parse_start(&body(input.clone()), false).expect_err(&input.to_string());
            assert!(error.to_string().contains(expected), "{input}: {error}");
            assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn local_callbacks_are_accepted_only_when_allowed() {
        let local = body(json!({"callback_url": "http://127.0.0.1:9000/done"}));
        assert!(parse_start(&local, false).is_err());
        assert_eq!(
            parse_start(&local, true).unwrap().callback_url.as_deref(),
            Some("http://127.0.0.1:9000/done")
        );
        let public = body(json!({"callback_url": "https://hooks.example.com/done"}));
        assert!(parse_start(&public, false).is_ok());
    }

    #[test]
    fn continuation_tokens_round_trip_and_garbage_is_refused() {
        let position = ListPosition {
            created_at: crate::jobs::status::now(),
            job_id: JobId::new(),
        };
        assert_eq!(ListPosition::parse(&position.token()), Some(position));
        assert!(ListPosition::parse("zz").is_none());
        assert!(ListPosition::parse(&hex::encode("no-separator")).is_none());
    }
}
