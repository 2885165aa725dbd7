//! The app's public address, for a browser: a loopback port whose requests reach the handler
//! the way a caller's reach it in Azure, through the host simulator ([`HostSimulator::call`]:
//! routing, the key check, forwarding). Every request is recorded with its answer, so a test
//! can count and inspect what a page asked for.
//!
//! [`HostSimulator::call`]: crate::host::HostSimulator::call

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use warp::http::{HeaderMap, Method, Response};
use warp::Filter;

use crate::app::TestApp;
use crate::host::HostRequest;

/// One request as the public address saw it.
#[derive(Debug, Clone)]
pub struct PublicRequest {
    pub method: String,
    /// The path without the query.
    pub path: String,
    /// The raw query, empty when there was none.
    pub query: String,
    /// The `x-functions-key` header, when sent.
    pub key_header: Option<String>,
    pub status: u16,
    pub at: Instant,
}

impl PublicRequest {
    /// Whether this is a call of the SummaryWomble API (not the page itself).
    pub fn is_api_call(&self) -> bool {
        self.path.eq_ignore_ascii_case("/api/SummaryWomble")
    }

    /// Whether this is a list call (`GET` without `job_id`).
    pub fn is_list_call(&self) -> bool {
        self.is_api_call() && self.method == "GET" && !self.query.contains("job_id=")
    }
}

/// Any request, whole: method, path, raw query (empty when there is none), headers and body.
/// For the kit's stand-ins that pass calls on.
pub fn whole_request(
) -> impl Filter<Extract = (Method, String, String, HeaderMap, Bytes), Error = warp::Rejection> + Clone
{
    warp::method()
        .and(warp::path::full().map(|path: warp::path::FullPath| path.as_str().to_owned()))
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
}

pub struct PublicAddress {
    port: u16,
    seen: Arc<Mutex<Vec<PublicRequest>>>,
}

impl PublicAddress {
    /// Serves `app` on a free loopback port until the test's runtime ends.
    pub async fn serve(app: Arc<TestApp>) -> Self {
        let seen: Arc<Mutex<Vec<PublicRequest>>> = Arc::default();
        let listener = crate::port::listener().await;
        let port = listener.local_addr().unwrap().port();
        let record = seen.clone();
        let routes = whole_request().then(
            move |method: Method, path: String, query: String, headers: HeaderMap, body: Bytes| {
                let app = app.clone();
                let record = record.clone();
                async move {
                    let at = Instant::now();
                    let target = if query.is_empty() {
                        path.clone()
                    } else {
                        format!("{path}?{query}")
                    };
                    let mut request = HostRequest::new(method.as_str(), &target);
                    for (name, value) in &headers {
                        if let Ok(value) = value.to_str() {
                            request = request.header(name.as_str(), value);
                        }
                    }
                    request.body = body.to_vec();
                    let answer = app.host.call(request).await;
                    record.lock().unwrap().push(PublicRequest {
                        method: method.to_string(),
                        path,
                        query,
                        key_header: headers
                            .get("x-functions-key")
                            .and_then(|value| value.to_str().ok())
                            .map(str::to_owned),
                        status: answer.status,
                        at,
                    });
                    let mut response = Response::builder().status(answer.status);
                    for (name, value) in &answer.headers {
                        // The connection's own headers are this server's business.
                        if !matches!(
                            name.as_str(),
                            "content-length" | "transfer-encoding" | "connection"
                        ) {
                            response = response.header(name, value);
                        }
                    }
                    response.body(answer.body).unwrap()
                }
            },
        );
        tokio::spawn(warp::serve(routes).incoming(listener).run());
        Self { port, seen }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<PublicRequest> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests that arrived at or after `since`.
    pub fn requests_since(&self, since: Instant) -> Vec<PublicRequest> {
        self.requests()
            .into_iter()
            .filter(|request| request.at >= since)
            .collect()
    }
}
