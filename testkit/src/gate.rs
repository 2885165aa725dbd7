//! The public front door of a Function App, for GetHotTopics' outbound call: checks
//! `x-functions-key` (else `code`) the way Azure does (401, empty body) and forwards the call
//! to the handler. It can also be told to answer every call with a fixed status, to show what
//! the timer does when SummaryWomble refuses it.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use warp::http::{HeaderMap, Method, Response, StatusCode};
use warp::Filter;

#[derive(Clone, Debug)]
pub struct GateCall {
    pub method: String,
    pub key: Option<String>,
    pub idempotency_key: Option<String>,
    pub status: u16,
}

#[derive(Default)]
struct State {
    target_port: Option<u16>,
    forced_status: Option<u16>,
    calls: Vec<GateCall>,
}

#[derive(Clone)]
pub struct Gate {
    state: Arc<Mutex<State>>,
    port: u16,
    key: String,
}

impl Gate {
    pub async fn start(key: &str) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let listener = crate::port::listener().await;
        let port = listener.local_addr().unwrap().port();
        let gate = Self {
            state,
            port,
            key: key.to_owned(),
        };
        let this = gate.clone();
        let routes = crate::public::whole_request().then(
            move |method: Method, path: String, query: String, headers: HeaderMap, body: Bytes| {
                let this = this.clone();
                let path = match query.as_str() {
                    "" => path,
                    query => format!("{path}?{query}"),
                };
                async move { this.answer(method, path, headers, body).await }
            },
        );
        tokio::spawn(warp::serve(routes).incoming(listener).run());
        gate
    }

    /// The URL GetHotTopics should submit to.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/api/SummaryWomble", self.port)
    }

    pub fn forward_to(&self, port: u16) {
        self.state.lock().unwrap().target_port = Some(port);
    }

    pub fn answer_with(&self, status: u16) {
        self.state.lock().unwrap().forced_status = Some(status);
    }

    pub fn calls(&self) -> Vec<GateCall> {
        self.state.lock().unwrap().calls.clone()
    }

    async fn answer(
        &self,
        method: Method,
        path: String,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response<Vec<u8>> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let key = header("x-functions-key");
        let (target, forced) = {
            let state = self.state.lock().unwrap();
            (state.target_port, state.forced_status)
        };
        let status;
        let response = if let Some(forced) = forced {
            status = forced;
            Response::builder()
                .status(forced)
                .header("content-type", "application/json")
                .body(br#"{"error":"forced by the test"}"#.to_vec())
                .unwrap()
        } else if key.as_deref() != Some(self.key.as_str()) {
            status = 401;
            Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .body(Vec::new())
                .unwrap()
        } else {
            let target = target.expect("the gate knows the handler's port");
            let mut request = reqwest::Client::new()
                .request(method.clone(), format!("http://127.0.0.1:{target}{path}"))
                .body(body.to_vec());
            for (name, value) in &headers {
                if name != "host" {
                    request = request.header(name, value);
                }
            }
            let answer = request.send().await.expect("the handler answers");
            status = answer.status().as_u16();
            let mut builder = Response::builder().status(status);
            for (name, value) in answer.headers() {
                builder = builder.header(name, value);
            }
            builder
                .body(answer.bytes().await.unwrap().to_vec())
                .unwrap()
        };
        self.state.lock().unwrap().calls.push(GateCall {
            method: method.to_string(),
            key,
            idempotency_key: header("idempotency-key"),
            status,
        });
        response
    }
}
