//! The warp routes and serving until told to stop.
//!
//! Routes:
//! - `GET /`: readiness, answered at once (the host probes it every 25 ms while starting).
//! - `/api/SummaryWomble`: the forwarded HTTP function (GET, POST, DELETE).
//! - `POST /SummaryWomble`: the same function inside the host's envelope.
//! - `POST /GetHotTopics`: the timer, always an envelope.
//! - `POST /RunJob`: a job's queue message (queue dispatch), always an envelope.
//! - `GET /api/dashboard`: the Dashboard function, the job dashboard page (no key: it holds
//!   no data).
//!
//! Everything else, and every rejection, becomes a JSON error in [`recover`], through the one
//! mapping of [`ApiError`].

mod filters;

use std::convert::Infallible;
use std::future::Future;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use warp::{Filter, Rejection, Reply};

use crate::functions::{
    dashboard, envelope, get_hot_topics, summary_womble, ApiError, ApiRequest, ApiResponse,
    FunctionContext, MAX_BODY_BYTES,
};
use filters::{authorized, limited_body, methods, parse_query, raw_query, route, Refused};

/// An envelope carries a 64 KiB body as an escaped JSON string plus headers; this bounds it.
const MAX_ENVELOPE_BYTES: usize = 1024 * 1024;

/// Serves until `shutdown` resolves, then stops the job workers.
pub async fn serve(
    listener: TcpListener,
    context: FunctionContext,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let jobs = context.jobs.clone();
    // Standalone mode has no host to fire the timer: run it ourselves.
    let timer_stop = CancellationToken::new();
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
    let authorized = authorized(context.settings.clone());

    let forwarded = route("/api/SummaryWomble")
        .and(authorized.clone())
        .and(methods(summary_womble::METHODS))
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
        .and(methods(&[Method::POST]))
        .and(authorized.clone())
        .and(limited_body(MAX_ENVELOPE_BYTES))
        .and(with_context.clone())
        .then(|_, body: Bytes, context: FunctionContext| async move {
            into_reply(envelope::summary_womble(&context, &body).await)
        });

    // The page holds no data and needs no key (Dashboard is `authLevel: anonymous`, so the
    // host asks for none either); every call it makes to SummaryWomble does.
    let dashboard = route("/api/dashboard")
        .and(methods(&[Method::GET]))
        .map(|_| {
            let (parts, body) = dashboard::page().into_parts();
            warp::reply::Response::from_parts(parts, body.into())
        });

    let timer = route("/GetHotTopics")
        .and(methods(&[Method::POST]))
        .and(authorized.clone())
        .and(limited_body(MAX_ENVELOPE_BYTES))
        .and(with_context.clone())
        .then(|_, body: Bytes, context: FunctionContext| async move {
            into_reply(envelope::get_hot_topics(&context, &body).await)
        });

    let run_job = route("/RunJob")
        .and(methods(&[Method::POST]))
        .and(authorized)
        .and(limited_body(MAX_ENVELOPE_BYTES))
        .and(with_context)
        .then(|_, body: Bytes, context: FunctionContext| async move {
            into_reply(envelope::run_job(&context, &body).await)
        });

    readiness
        .map(Reply::into_response)
        .or(forwarded)
        .unify()
        .or(envelope_http)
        .unify()
        .or(timer)
        .unify()
        .or(run_job)
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

/// Turns every rejection into the JSON error it stands for.
async fn recover(rejection: Rejection) -> Result<warp::reply::Response, Infallible> {
    let error = if let Some(Refused(refused)) = rejection.find::<Refused>() {
        // Rejections are only borrowed here: the error is rebuilt from its kind.
        match refused {
            ApiError::Unauthorized => ApiError::Unauthorized,
            ApiError::PayloadTooLarge => ApiError::PayloadTooLarge,
            ApiError::MethodNotAllowed { used, allowed } => ApiError::MethodNotAllowed {
                used: used.clone(),
                allowed,
            },
            other => ApiError::BadRequest(other.to_string()),
        }
    } else if rejection.is_not_found() {
        ApiError::NoSuchFunction
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::PayloadTooLarge
    } else {
        ApiError::BadRequest(format!("The request could not be read: {rejection:?}"))
    };
    Ok(into_reply(error.into_response()))
}

#[cfg(test)]
mod tests;
