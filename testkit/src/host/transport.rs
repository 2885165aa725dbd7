//! How calls travel: the request a caller sends and the answer it gets, a call forwarded to
//! the handler as the host rebuilds it (`enableForwardingHttpRequest`), and a request sent to
//! the handler as it is.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::HOST_VERSION;

/// An HTTP request as a caller sends it to the app: path (with query), headers, body.
#[derive(Debug, Clone)]
pub struct HostRequest {
    /// Upper case.
    pub method: String,
    /// The public path and query, e.g. `/api/SummaryWomble?job_id=...`.
    pub path: String,
    /// In order, names as the caller spelled them.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HostRequest {
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    pub fn post(path: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            body: body.into(),
            ..Self::new("POST", path)
        }
    }

    pub fn delete(path: &str) -> Self {
        Self::new("DELETE", path)
    }

    /// Adds a header (a repeated name adds another value).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body to `value` and `Content-Type` to `application/json`.
    pub fn json(mut self, value: &Value) -> Self {
        self.body = serde_json::to_vec(value).expect("a JSON value serialises");
        self.headers
            .retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
        self.headers
            .push(("Content-Type".into(), "application/json".into()));
        self
    }

    /// The path without the query, and the raw query (empty when there is none).
    pub fn path_and_query(&self) -> (&str, &str) {
        self.path.split_once('?').unwrap_or((&self.path, ""))
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The query as the host sees it: one entry per name, in first-seen order, repeated values
    /// joined with commas (ASP.NET's `StringValues.ToString()`).
    pub(super) fn query_dictionary(&self) -> Vec<(String, String)> {
        let mut entries: Vec<(String, String)> = Vec::new();
        for (name, value) in url::form_urlencoded::parse(self.path_and_query().1.as_bytes()) {
            match entries.iter_mut().find(|(key, _)| *key == name) {
                Some((_, joined)) => {
                    joined.push(',');
                    joined.push_str(&value);
                }
                None => entries.push((name.into_owned(), value.into_owned())),
            }
        }
        entries
    }

    /// Headers grouped by case-insensitive name, first spelling kept, values in order.
    pub(super) fn header_groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for (name, value) in &self.headers {
            match groups
                .iter_mut()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
            {
                Some((_, values)) => values.push(value.clone()),
                None => groups.push((name.clone(), vec![value.clone()])),
            }
        }
        groups
    }
}

/// An answer as the caller receives it.
#[derive(Debug, Clone)]
pub struct HostResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl HostResponse {
    /// An answer the host makes itself: a status and nothing else.
    pub(super) fn empty(status: u16) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            body: Vec::new(),
        }
    }

    /// The body as JSON; panics with the body text when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "HTTP {} body is not JSON ({error}): {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first value of a header, when it is text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    }
}

/// Sends a call forwarded to the handler at `port`, built as the host builds it (see
/// [`HostSimulator::forward`](super::HostSimulator::forward)), and reads the whole answer.
pub(super) async fn forward(
    client: &reqwest::Client,
    port: u16,
    public_host: &str,
    invocation_id: &str,
    request: HostRequest,
) -> Result<HostResponse, reqwest::Error> {
    let method = reqwest::Method::from_bytes(request.method.as_bytes())
        .unwrap_or_else(|_| panic!("{:?} is not an HTTP method", request.method));
    let (path, _) = request.path_and_query();
    // The host rebuilds the query from its dictionary (repeated names joined with commas).
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(request.query_dictionary())
        .finish();
    let mut url = format!("http://127.0.0.1:{port}{path}");
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query);
    }

    let has_body = !request.body.is_empty();
    let mut user_agent = None;
    let mut headers = Vec::new();
    for (name, value) in &request.headers {
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            // Recomputed for the new connection.
            "content-length" | "transfer-encoding" | "connection" | "keep-alive" => {}
            // A content header only travels with content.
            "content-type" if !has_body => {}
            "user-agent" => user_agent = Some(value.clone()),
            _ => headers.push((name.clone(), value.clone())),
        }
    }
    if request.header_value("host").is_none() {
        headers.push(("Host".into(), public_host.to_owned()));
    }
    let host_agent = format!("Azure-Functions-Host/{HOST_VERSION}");
    headers.push((
        "User-Agent".into(),
        match user_agent {
            Some(agent) => format!("{agent} {host_agent}"),
            None => host_agent,
        },
    ));
    headers.push(("X-Azure-Functions-HostVersion".into(), HOST_VERSION.into()));
    headers.push((
        "X-Azure-Functions-InvocationId".into(),
        invocation_id.into(),
    ));

    let mut builder = client.request(method, url).headers(header_map(
        headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
    ));
    if has_body {
        builder = builder.body(request.body);
    }
    read_answer(builder.send().await?).await
}

/// Sends `request` as it is to `base_url` (`http://host:port`) and reads the whole answer.
pub async fn send_direct(
    client: &reqwest::Client,
    base_url: &str,
    request: HostRequest,
) -> Result<HostResponse, reqwest::Error> {
    let method = reqwest::Method::from_bytes(request.method.as_bytes())
        .unwrap_or_else(|_| panic!("{:?} is not an HTTP method", request.method));
    let mut builder = client
        .request(method, format!("{base_url}{}", request.path))
        .headers(header_map(
            request
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str())),
        ));
    if !request.body.is_empty() {
        builder = builder.body(request.body);
    }
    read_answer(builder.send().await?).await
}

/// Headers for reqwest; panics on one that is not valid HTTP (a test's mistake, not the
/// handler's).
pub(super) fn header_map<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                map.append(name, value);
            }
            _ => panic!("invalid header {name}: {value:?}"),
        }
    }
    map
}

/// The whole answer: status, headers and body.
pub(super) async fn read_answer(answer: reqwest::Response) -> Result<HostResponse, reqwest::Error> {
    let status = answer.status().as_u16();
    let headers = answer.headers().clone();
    let body = answer.bytes().await?.to_vec();
    Ok(HostResponse {
        status,
        headers,
        body,
    })
}
