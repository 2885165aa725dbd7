//! SummaryWomble: issues job tickets and answers status, cancel, retry, list and metrics
//! (docs/api.md sections 2 to 5).
//!
//! A call is first parsed into a typed [`Call`](input::Call) ([`input`]); the actions below
//! then only speak the job model's language, and every failure is an [`ApiError`].

mod input;
mod ticket;

use chrono::{Duration as ChronoDuration, Utc};
use http::{header, StatusCode};
use serde::Serialize;

use super::{ApiError, ApiRequest, ApiResponse, FunctionContext};
use crate::jobs::metrics::Metrics;
use crate::jobs::{
    IdempotencyKey, JobId, JobRequest, ListFilter, RepositoryError, RequestedJob, StatusDocument,
    TransitionError,
};

pub use input::{parse as parse_call, Call, METHODS};

/// Seconds a client is asked to wait before polling a job that is not finished.
const POLL_AFTER_SECONDS: &str = "5";

/// Handles one call, whichever form it came in.
pub async fn handle(context: &FunctionContext, request: ApiRequest) -> ApiResponse {
    match answer(context, &request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn answer(context: &FunctionContext, request: &ApiRequest) -> Result<ApiResponse, ApiError> {
    match input::parse(request)? {
        Call::Start {
            requested,
            idempotency_key,
        } => start(context, request, requested, idempotency_key).await,
        Call::Status(id) => status(context, id).await,
        Call::Cancel(id) => cancel(context, id).await,
        Call::Retry(id) => retry(context, request, id).await,
        Call::List(filter) => list(context, &filter).await,
        Call::Metrics => metrics(context).await,
    }
}

async fn start(
    context: &FunctionContext,
    request: &ApiRequest,
    requested: RequestedJob,
    idempotency_key: Option<IdempotencyKey>,
) -> Result<ApiResponse, ApiError> {
    let job = JobRequest::from_requested(requested, context.settings.jobs.callback_policy)
        .map_err(|error| ApiError::BadRequest(error.to_string()))?;
    admit_callback(context, &job)?;
    let document = context
        .jobs
        .submit(job, None, idempotency_key.as_ref())
        .await?;
    Ok(ticket::ticket(context, request, &document))
}

/// A callback this deployment would send unsigned where it sends none is refused (api.md
/// section 7), at a retry too: the retry carries the old job's `callback_url`.
fn admit_callback(context: &FunctionContext, job: &JobRequest) -> Result<(), ApiError> {
    context
        .settings
        .jobs
        .admit_callback(job)
        .map_err(|refused| ApiError::BadRequest(refused.to_string()))
}

async fn load(context: &FunctionContext, id: JobId) -> Result<StatusDocument, ApiError> {
    Ok(context
        .jobs
        .repository()
        .load(id)
        .await?
        .ok_or(ApiError::JobNotFound(id))?
        .document)
}

async fn status(context: &FunctionContext, id: JobId) -> Result<ApiResponse, ApiError> {
    let document = load(context, id).await?;
    let response = ApiResponse::json(StatusCode::OK, &document);
    Ok(if document.status.is_terminal() {
        response
    } else {
        response.with_header(header::RETRY_AFTER, POLL_AFTER_SECONDS)
    })
}

async fn cancel(context: &FunctionContext, id: JobId) -> Result<ApiResponse, ApiError> {
    match context.jobs.cancel(id).await {
        Ok(document) => {
            tracing::info!(job_id = %id, status = %document.status, "cancel recorded");
            Ok(ApiResponse::json(StatusCode::ACCEPTED, &document))
        }
        Err(RepositoryError::NotFound) => Err(ApiError::JobNotFound(id)),
        Err(RepositoryError::Transition(TransitionError::Terminal(status))) => {
            Err(ApiError::AlreadyTerminal { id, status })
        }
        Err(error) => Err(error.into()),
    }
}

async fn retry(
    context: &FunctionContext,
    request: &ApiRequest,
    id: JobId,
) -> Result<ApiResponse, ApiError> {
    let old = load(context, id).await?;
    if !old.status.is_terminal() {
        return Err(ApiError::NotFinished {
            id,
            status: old.status,
        });
    }
    admit_callback(context, &old.request)?;
    let document = context.jobs.submit(old.request, Some(id), None).await?;
    Ok(ticket::ticket(context, request, &document))
}

/// The list answer (docs/api.md section 4).
#[derive(Serialize)]
struct JobList<'a> {
    jobs: &'a [StatusDocument],
    continuation: Option<String>,
}

async fn list(context: &FunctionContext, filter: &ListFilter) -> Result<ApiResponse, ApiError> {
    let page = context.jobs.repository().list(filter).await?;
    // A page showing an unfinished job will change: say when to look again, as a status
    // answer does, so a client refreshing the list (the dashboard) need not guess.
    let unfinished = page.jobs.iter().any(|doc| !doc.status.is_terminal());
    let response = ApiResponse::json(
        StatusCode::OK,
        &JobList {
            jobs: &page.jobs,
            continuation: page.next.map(|next| next.token()),
        },
    );
    Ok(if unfinished {
        response.with_header(header::RETRY_AFTER, POLL_AFTER_SECONDS)
    } else {
        response
    })
}

/// The metrics answer (docs/api.md section 4). The queues are counted while the documents are
/// read; a count that cannot be read is `null` in the answer, never a failed call.
async fn metrics(context: &FunctionContext) -> Result<ApiResponse, ApiError> {
    let since = Utc::now() - ChronoDuration::hours(24);
    let (documents, queue_depth) = tokio::join!(
        context.jobs.repository().created_since(since),
        context.jobs.queue_depth()
    );
    Ok(ApiResponse::json(
        StatusCode::OK,
        &Metrics::of(&documents?, since, queue_depth),
    ))
}
