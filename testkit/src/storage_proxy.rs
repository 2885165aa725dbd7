//! An HTTP proxy between the handler and one of Azurite's services (the blob service, or the
//! queue service): it counts and records the requests it forwards, and can be told to answer
//! some of them itself, as a storage service in trouble does (a 503 with no body), so tests and
//! the benchmark see what the handler does then.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use warp::http::{self, HeaderMap, Method};
use warp::Filter;

/// A request as the proxy sees it, for a [`Fault`] to judge.
pub struct Seen<'a> {
    pub method: &'a Method,
    /// The path, account and container (or queue) included
    /// (`/devstoreaccount1/<container>/jobs/...`, `/devstoreaccount1/<queue>/messages`).
    pub path: &'a str,
    pub body: &'a [u8],
}

/// Decides which requests fail: `Some(status)` answers with that status instead of forwarding.
pub type Fault = Box<dyn Fn(&Seen<'_>) -> Option<u16> + Send + Sync>;

/// A request the proxy received, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: Method,
    /// The path, account and container included.
    pub path: String,
    pub query: String,
    pub body_len: usize,
}

#[derive(Clone)]
pub struct StorageProxy {
    /// The connection string to hand the handler: Azurite's, with the proxied service's
    /// endpoint moved to the proxy (the other service is reached directly).
    pub connection_string: String,
    requests: Arc<AtomicUsize>,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    fault: Arc<Mutex<Option<Fault>>>,
}

impl StorageProxy {
    /// A proxy in front of the blob endpoint of `azurite_connection_string`.
    pub async fn start(azurite_connection_string: &str) -> Self {
        Self::in_front_of(azurite_connection_string, "BlobEndpoint").await
    }

    /// A proxy in front of the queue endpoint of `azurite_connection_string`.
    pub async fn start_for_queues(azurite_connection_string: &str) -> Self {
        Self::in_front_of(azurite_connection_string, "QueueEndpoint").await
    }

    /// A proxy in front of the endpoint the connection string names under `endpoint`.
    async fn in_front_of(azurite_connection_string: &str, endpoint: &str) -> Self {
        let prefix = format!("{endpoint}=");
        let target = azurite_connection_string
            .split(';')
            .find_map(|part| part.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("the Azurite connection string has a {endpoint}"))
            .to_owned();
        let url = url::Url::parse(&target).expect("the blob endpoint is a URL");
        let origin = format!(
            "http://{}:{}",
            url.host_str().expect("a host"),
            url.port().expect("a port")
        );
        let requests = Arc::new(AtomicUsize::new(0));
        let fault: Arc<Mutex<Option<Fault>>> = Arc::new(Mutex::new(None));
        let client = reqwest::Client::new();
        let recorded: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let (counter, record, judge) = (requests.clone(), recorded.clone(), fault.clone());
        let route = warp::method()
            .and(warp::path::full())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .then(
                move |method: Method,
                      path: warp::path::FullPath,
                      query: String,
                      headers: HeaderMap,
                      body: Bytes| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    record.lock().expect("record lock").push(Recorded {
                        method: method.clone(),
                        path: path.as_str().to_owned(),
                        query: query.clone(),
                        body_len: body.len(),
                    });
                    let refused = judge
                        .lock()
                        .expect("fault lock")
                        .as_ref()
                        .and_then(|fault| {
                            fault(&Seen {
                                method: &method,
                                path: path.as_str(),
                                body: &body,
                            })
                        });
                    let url = match query.as_str() {
                        "" => format!("{origin}{}", path.as_str()),
                        query => format!("{origin}{}?{query}", path.as_str()),
                    };
                    let client = client.clone();
                    async move {
                        match refused {
                            Some(status) => http::Response::builder()
                                .status(status)
                                .body(Bytes::new())
                                .expect("a bare status"),
                            None => forward(client, method, url, headers, body).await,
                        }
                    }
                },
            );
        let listener = crate::port::listener().await;
        let port = listener.local_addr().expect("a bound listener").port();
        tokio::spawn(warp::serve(route).incoming(listener).run());
        let mut proxied = url.clone();
        proxied
            .set_port(Some(port))
            .expect("an http URL takes a port");
        let connection_string =
            azurite_connection_string.replace(&target, proxied.as_str().trim_end_matches('/'));
        Self {
            connection_string,
            requests,
            recorded,
            fault,
        }
    }

    /// Requests forwarded or refused so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Every request received so far, in order.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.recorded.lock().expect("record lock").clone()
    }

    /// From now on, answers the requests `fault` picks itself.
    pub fn fail(&self, fault: impl Fn(&Seen<'_>) -> Option<u16> + Send + Sync + 'static) {
        *self.fault.lock().expect("fault lock") = Some(Box::new(fault));
    }

    /// Forwards everything again.
    pub fn heal(&self) {
        *self.fault.lock().expect("fault lock") = None;
    }
}

async fn forward(
    client: reqwest::Client,
    method: Method,
    url: String,
    headers: HeaderMap,
    body: Bytes,
) -> http::Response<Bytes> {
    let mut request = client.request(method, url).body(body);
    for (name, value) in &headers {
        // Content-Length stays: a Put Blob of an empty body must say `0`, and it is signed.
        if !matches!(name.as_str(), "host" | "connection" | "transfer-encoding") {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(answer) => {
            let mut response = http::Response::builder().status(answer.status());
            for (name, value) in answer.headers() {
                if !matches!(
                    name.as_str(),
                    "content-length" | "transfer-encoding" | "connection"
                ) {
                    response = response.header(name, value);
                }
            }
            let body = answer.bytes().await.unwrap_or_default();
            response.body(body).expect("a response from a response")
        }
        Err(_) => http::Response::builder()
            .status(502)
            .body(Bytes::new())
            .expect("a plain 502"),
    }
}
