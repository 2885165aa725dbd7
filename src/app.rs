//! The application: shared state, the warp routes, and serving until told to stop.
//!
//! Routes:
//! - `GET /`: readiness, answered at once (the host probes it every 25 ms while starting).
//! - `/api/SummaryWomble`: the forwarded HTTP function (GET, POST, DELETE).
//! - `POST /SummaryWomble`: the same function inside the host's envelope.
//! - `POST /GetHotTopics`: the timer, always an envelope.
//! - `GET /api/dashboard`: the Dashboard function, the job dashboard page.
//!
//! Everything else, and every rejection, becomes a JSON error in [`recover`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use warp::{Filter, Rejection, Reply};

use crate::config::{Mode, RedditSettings, Settings, StorageSettings};
use crate::functions::envelope::{HttpOutput, HttpTriggerData, Invocation, InvocationResult};
use crate::functions::{
    dashboard, get_hot_topics, summary_womble, ApiError, ApiRequest, ApiResponse, FunctionContext,
    MAX_BODY_BYTES,
};
use crate::jobs::callback::CallbackSender;
use crate::jobs::runner::RunnerOptions;
use crate::jobs::{JobRunner, StatusRepository};
use crate::reddit::client::{default_user_agent, Endpoints, RetryPolicy};
use crate::reddit::RedditClient;
use crate::store::azure::AzureBlobStore;
use crate::store::local::LocalDirStore;
use crate::store::BlobStore;

/// An envelope carries a 64 KiB body as an escaped JSON string plus headers; this bounds it.
const MAX_ENVELOPE_BYTES: usize = 1024 * 1024;

/// Opens the configured blob store.
pub fn open_store(settings: &StorageSettings) -> anyhow::Result<Arc<dyn BlobStore>> {
    Ok(match settings {
        StorageSettings::ConnectionString {
            connection_string,
            container,
        } => Arc::new(
            AzureBlobStore::from_connection_string(connection_string.expose_secret(), container)
                .context("the storage connection string cannot be used")?,
        ),
        StorageSettings::ManagedIdentity { account, container } => Arc::new(
            AzureBlobStore::with_managed_identity(account, container)
                .context("the storage account cannot be used with managed identity")?,
        ),
        StorageSettings::LocalDir { dir, container } => {
            Arc::new(LocalDirStore::new(dir.clone(), container))
        }
    })
}

/// The Reddit client of the process.
pub fn reddit_client(settings: &RedditSettings) -> anyhow::Result<RedditClient> {
    let endpoints = Endpoints {
        auth: settings.auth_url.clone(),
        api: settings.api_url.clone(),
        public: settings.public_url.clone(),
    };
    let user_agent = settings
        .user_agent
        .clone()
        .unwrap_or_else(default_user_agent);
    RedditClient::new(
        endpoints,
        &user_agent,
        crate::secrets::credential_source(settings),
        RetryPolicy::default(),
    )
    .context("the HTTP client cannot be built")
}

/// Subreddits of one job fetched at once: a whole default job (7) in one round trip.
const FETCH_CONCURRENCY: usize = 8;

/// How the job runner of this process behaves, from the settings.
pub fn runner_options(settings: &Settings) -> anyhow::Result<RunnerOptions> {
    Ok(RunnerOptions {
        max_concurrent_jobs: settings.jobs.max_concurrent_jobs,
        fetch_concurrency: FETCH_CONCURRENCY,
        stale_after: settings.jobs.stale_after,
        adopt_stale_jobs: true,
        callbacks: CallbackSender::new(settings.jobs.callback_signing_key.clone())
            .context("the HTTP client cannot be built")?,
    })
}

/// Builds the shared state and starts the job workers. Does not wait for storage: the
/// container is created in the background so the readiness probe is answered at once.
pub fn build(settings: Settings) -> anyhow::Result<FunctionContext> {
    let store = open_store(&settings.storage)?;
    tracing::info!(store = %store.describe(), mode = if settings.mode.is_host() { "host" } else { "standalone" }, "starting");
    if let Mode::Standalone {
        function_keys: None,
        ..
    } = settings.mode
    {
        tracing::warn!(
            "FUNCTION_KEYS is not set: standalone mode accepts every call without a function key"
        );
    }
    let reddit = Arc::new(reddit_client(&settings.reddit)?);
    let jobs = JobRunner::start(
        StatusRepository::new(store.clone()),
        reddit,
        runner_options(&settings)?,
    );
    tokio::spawn(ensure_container(store));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .context("the HTTP client cannot be built")?;
    Ok(FunctionContext {
        settings: Arc::new(settings),
        jobs,
        http,
    })
}

/// Creates the container, retrying until storage answers.
async fn ensure_container(store: Arc<dyn BlobStore>) {
    let mut wait = Duration::from_millis(200);
    loop {
        match store.ensure_container().await {
            Ok(()) => return tracing::debug!("container ready"),
            Err(error) if error.is_retryable() => {
                tracing::warn!(error = %error, "storage unavailable; will create the container when it answers");
            }
            Err(error) => {
                return tracing::error!(
                    error = format!("{:#}", anyhow::Error::from(error)),
                    "the container cannot be created"
                )
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

/// Serves until `shutdown` resolves, then stops the job workers.
pub async fn serve(
    listener: TcpListener,
    context: FunctionContext,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let jobs = context.jobs.clone();
    // Standalone mode has no host to fire the timer: run it ourselves.
    let timer_stop = tokio_util::sync::CancellationToken::new();
    let timer = (!context.settings.mode.is_host()).then(|| {
        tokio::spawn(get_hot_topics::run_on_schedule(
            context.clone(),
            context.settings.timer.schedule.clone(),
            timer_stop.clone(),
        ))
    });
    warp::serve(routes(context))
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
    timer_stop.cancel();
    if let Some(timer) = timer {
        // A run caught mid-way is safe to drop: its job, if submitted, is in storage, and a
        // repeat of the slot is idempotent.
        timer.abort();
    }
    jobs.shutdown().await;
}

/// Every route of the app.
pub fn routes(
    context: FunctionContext,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let readiness = warp::path::end()
        .and(warp::get().or(warp::head()).unify())
        .map(|| warp::reply::json(&serde_json::json!({"status": "ok"})));

    let with_context = {
        let context = context.clone();
        warp::any().map(move || context.clone())
    };

    let forwarded = route("/api/SummaryWomble")
        .and(authorized(context.settings.clone()))
        .and(warp::method())
        .and(raw_query())
        .and(warp::header::headers_cloned())
        .and(limited_body(MAX_BODY_BYTES))
        .and(with_context.clone())
        .then(
            |method: Method,
             query: String,
             headers: HeaderMap,
             body: Bytes,
             context: FunctionContext| async move {
                let request = ApiRequest {
                    method,
                    query: parse_query(&query),
                    headers,
                    body,
                };
                into_reply(summary_womble::handle(&context, request).await)
            },
        );

    let envelope_http = route("/SummaryWomble")
        .and(warp::post())
        .and(authorized(context.settings.clone()))
        .and(limited_body(MAX_ENVELOPE_BYTES))
        .and(with_context.clone())
        .then(|body: Bytes, context: FunctionContext| async move {
            http_envelope(&context, &body).await
        });

    let dashboard = route("/api/dashboard")
        .and(warp::get())
        .and(authorized(context.settings.clone()))
        .map(|| {
            let (parts, body) = dashboard::page().into_parts();
            warp::reply::Response::from_parts(parts, body.into())
        });

    let timer = route("/GetHotTopics")
        .and(warp::post())
        .and(authorized(context.settings.clone()))
        .and(limited_body(MAX_ENVELOPE_BYTES))
        .and(with_context)
        .then(|body: Bytes, context: FunctionContext| async move {
            timer_envelope(&context, &body).await
        });

    readiness
        .map(Reply::into_response)
        .or(forwarded)
        .unify()
        .or(envelope_http)
        .unify()
        .or(timer)
        .unify()
        .or(dashboard)
        .unify()
        .or(warp::any()
            .and_then(|| async { Err::<warp::reply::Response, _>(warp::reject::not_found()) }))
        .unify()
        .recover(recover)
        .unify()
        .with(warp::trace::request())
}

/// A function's route. The host matches routes without regard to case and forwards the
/// caller's own spelling, so we match the same way.
fn route(path: &'static str) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::path::full()
        .and_then(move |full: warp::path::FullPath| async move {
            if full
                .as_str()
                .trim_end_matches('/')
                .eq_ignore_ascii_case(path)
            {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
}

/// The query string, empty when there is none.
fn raw_query() -> impl Filter<Extract = (String,), Error = Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// A rejection carrying the API error it stands for.
#[derive(Debug)]
struct Refused(ApiError);
impl warp::reject::Reject for Refused {}

/// How much of an oversized body is read and thrown away before answering 413, so the client
/// (still sending) gets the JSON answer rather than a reset connection. Beyond this the
/// connection is simply closed.
const MAX_DRAIN_BYTES: u64 = 4 * 1024 * 1024;

/// The request body, refused with 413 once it passes `limit` bytes, whether or not the
/// client sent a Content-Length (the host may send envelopes chunked).
fn limited_body(limit: usize) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    let declared = warp::header::optional::<u64>("content-length").and_then(
        |length: Option<u64>| async move {
            match length {
                Some(length) if length > MAX_DRAIN_BYTES => {
                    Err(warp::reject::custom(Refused(ApiError::PayloadTooLarge)))
                }
                _ => Ok(()),
            }
        },
    );
    declared
        .untuple_one()
        .and(warp::body::stream())
        .and_then(move |stream| async move { collect_limited(stream, limit).await })
}

async fn collect_limited<S, B>(stream: S, limit: usize) -> Result<Bytes, Rejection>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut stream = std::pin::pin!(stream);
    let mut body = BytesMut::new();
    let mut seen: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.map_err(|_| {
            warp::reject::custom(Refused(ApiError::BadRequest(
                "The request body could not be read.".into(),
            )))
        })?;
        seen += chunk.remaining() as u64;
        if seen > MAX_DRAIN_BYTES {
            break;
        }
        if seen > limit as u64 {
            // Over the limit: keep reading (and dropping) so the answer can be heard.
            chunk.advance(chunk.remaining());
            continue;
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            body.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    if seen > limit as u64 {
        return Err(warp::reject::custom(Refused(ApiError::PayloadTooLarge)));
    }
    Ok(body.freeze())
}

/// Standalone mode with `FUNCTION_KEYS`: the key from `x-functions-key`, or from `code` when
/// the header is absent (the host's order), compared in constant time. Under the host, and
/// without configured keys, every call passes.
fn authorized(settings: Arc<Settings>) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<String>("x-functions-key")
        .and(raw_query())
        .and_then(move |header: Option<String>, query: String| {
            let settings = settings.clone();
            async move {
                let Mode::Standalone {
                    function_keys: Some(keys),
                    ..
                } = &settings.mode
                else {
                    return Ok(());
                };
                let presented = header.or_else(|| {
                    parse_query(&query)
                        .into_iter()
                        .find(|(name, _)| name == "code")
                        .map(|(_, value)| value)
                });
                if presented.is_some_and(|key| key_matches(keys, &key)) {
                    Ok(())
                } else {
                    Err(warp::reject::custom(Refused(ApiError::Unauthorized)))
                }
            }
        })
        .untuple_one()
}

/// Compares against every key without stopping early, so timing tells nothing about which
/// key or how much of it matched.
fn key_matches(keys: &[secrecy::SecretString], presented: &str) -> bool {
    keys.iter().fold(false, |matched, key| {
        let equal: bool = key
            .expose_secret()
            .as_bytes()
            .ct_eq(presented.as_bytes())
            .into();
        matched | equal
    })
}

fn into_reply(response: ApiResponse) -> warp::reply::Response {
    let mut reply = warp::reply::Response::new(response.body.into());
    *reply.status_mut() = response.status;
    let headers = reply.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in response.headers {
        headers.append(name, value);
    }
    reply
}

fn json_reply<T: serde::Serialize>(status: StatusCode, body: &T) -> warp::reply::Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

/// SummaryWomble inside the envelope: the `req` binding in, `Outputs.res` out.
async fn http_envelope(context: &FunctionContext, body: &[u8]) -> warp::reply::Response {
    let request = match serde_json::from_slice::<Invocation>(body)
        .map_err(|error| error.to_string())
        .and_then(|invocation| {
            let req = invocation
                .data
                .get("req")
                .ok_or_else(|| "the invocation has no req binding".to_owned())?;
            let req: HttpTriggerData =
                crate::functions::envelope::binding(req).map_err(|error| error.to_string())?;
            api_request(&req)
        }) {
        Ok(request) => request,
        Err(reason) => {
            tracing::warn!(reason = %reason, "malformed SummaryWomble envelope");
            return json_reply(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"error": format!("The invocation is malformed: {reason}")}),
            );
        }
    };
    let response = if request.body.len() > MAX_BODY_BYTES {
        ApiError::PayloadTooLarge.into_response()
    } else {
        summary_womble::handle(context, request).await
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
        serde_json::to_value(output).expect("serialisable"),
    );
    json_reply(
        StatusCode::OK,
        &InvocationResult {
            outputs,
            logs: Vec::new(),
            return_value: serde_json::Value::Null,
        },
    )
}

fn api_request(req: &HttpTriggerData) -> Result<ApiRequest, String> {
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

/// The timer: 200 with the run's log lines on success; 500 when the run failed, so the host
/// records the failure (the reason is in our log).
async fn timer_envelope(context: &FunctionContext, body: &[u8]) -> warp::reply::Response {
    let invocation: Invocation = match serde_json::from_slice(body) {
        Ok(invocation) => invocation,
        Err(error) => {
            tracing::error!(error = %error, "malformed GetHotTopics envelope");
            return json_reply(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"error": format!("The invocation is malformed: {error}")}),
            );
        }
    };
    match get_hot_topics::run(context, &invocation).await {
        Ok(log) => json_reply(
            StatusCode::OK,
            &InvocationResult {
                outputs: serde_json::Map::new(),
                logs: log.lines,
                return_value: serde_json::Value::Null,
            },
        ),
        Err((error, log)) => {
            tracing::error!(error = %error, "GetHotTopics run failed");
            let mut lines = log.lines;
            lines.push(format!("GetHotTopics failed: {error}"));
            json_reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                &serde_json::json!({"error": error.to_string(), "Logs": lines}),
            )
        }
    }
}

/// Turns every rejection into a JSON error.
async fn recover(rejection: Rejection) -> Result<warp::reply::Response, Infallible> {
    // Rejections are only borrowed here: the error is rebuilt from its kind.
    let error = if let Some(Refused(refused)) = rejection.find::<Refused>() {
        match refused {
            ApiError::Unauthorized => ApiError::Unauthorized,
            ApiError::PayloadTooLarge => ApiError::PayloadTooLarge,
            other => ApiError::BadRequest(other.to_string()),
        }
    } else if rejection.is_not_found() {
        ApiError::NotFound("No such function. The API is at /api/SummaryWomble.".into())
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::MethodNotAllowed(Method::GET)
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::PayloadTooLarge
    } else {
        ApiError::BadRequest(format!("The request could not be read: {rejection:?}"))
    };
    Ok(into_reply(error.into_response()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_matches_only_when_equal_to_one_of_the_configured_keys() {
        let keys = [
            secrecy::SecretString::from("first-key".to_owned()),
            secrecy::SecretString::from("second".to_owned()),
        ];
        assert!(key_matches(&keys, "first-key"));
        assert!(key_matches(&keys, "second"));
        for wrong in [
            "",
            "first",
            "first-key ",
            "FIRST-KEY",
            "second-key",
            "secon",
        ] {
            assert!(!key_matches(&keys, wrong), "{wrong:?}");
        }
    }
}
