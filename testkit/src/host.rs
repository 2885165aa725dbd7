//! The Azure Functions host, simulated, so black-box tests drive the built `handler` exactly
//! the way the host does (as read from the host's source, Core Tools and Microsoft Learn).
//!
//! What it does, as the host does it:
//! - Reads `host.json` and every `*/function.json` under the app root to learn the executable,
//!   the route prefix, whether HTTP requests are forwarded, and each function's trigger,
//!   binding names, methods and `authLevel`.
//! - Starts the handler with an environment of its own (the app settings plus
//!   `FUNCTIONS_CUSTOMHANDLER_PORT`, `FUNCTIONS_HTTPWORKER_PORT` and `FUNCTIONS_APP_ROOT_PATH`,
//!   nothing inherited but `PATH` and `HOME`), cwd = app root, and probes `GET /` every 25 ms
//!   until any HTTP answer, for up to 30 s. stdout and stderr lines are captured as the host log.
//! - Routes an HTTP call to its function (case-insensitively, as ASP.NET routing does),
//!   refuses unknown routes and methods the function does not list with an empty 404, and,
//!   when keys are enforced, a missing or wrong key with an empty 401, without calling the
//!   handler. Host keys open every function; a function key opens only its own function.
//! - Sends the call either forwarded (`/api/<Function>`, the request as the caller sent it) or
//!   as the envelope (`POST /<Function>`, chunked), and applies the host's acceptance rule to an
//!   envelope answer: 2xx, `application/json`, a JSON object. A broken answer becomes an empty
//!   500 for an HTTP caller and a failed run for a timer, and is recorded as a contract
//!   violation.
//! - Restarts a handler that exited with a code other than 0 (200 is an intentional restart),
//!   and stops after three failures within 30 minutes; a handler that exited 0 stays down.
//!   [`HostSimulator::kill`] is the SIGKILL of a scale-in or deployment.
//! - When [`HostOptions::queue_listener`] asks for it, runs the queue listener
//!   ([`QueueListener`], in `host/queue_listener.rs`) for every `queueTrigger` function,
//!   against the queue service of the binding's connection (Azurite's): polling with backoff to
//!   `maxPollingInterval`, batches of `batchSize` with the next once no more than
//!   `newBatchThreshold` run, each message hidden and renewed while its envelope invocation
//!   runs, then deleted on success, released after `visibilityTimeout` on failure, or moved to
//!   `<queue>-poison` after `maxDequeueCount` deliveries. Several simulators can share a queue;
//!   [`HostSimulator::kill`] stops the listener abruptly (its messages reappear after their
//!   visibility timeout) and [`HostSimulator::restart`] starts it again.
//!   [`HostSimulator::queue_record`] tells a test what it did.
//!
//! What it does not simulate:
//! - The host's own answers carry no body here; the real host's 404 and 500 pages, its
//!   headers (`Request-Context`, ...) and its admin routes (`/admin/...`) are not reproduced.
//! - Route templates (`route: "jobs/{id}"`) and `Params` values: routes are matched literally.
//! - `Identities` is always empty; the `admin` level accepts the same keys as `function`.
//! - Exits are noticed on the next call, not the moment they happen, and the readiness probe
//!   waits for a real HTTP answer where the host would also accept some transport errors.
//! - The function timeout: an answer that takes longer than `call_timeout` is treated as lost.
//! - The timer schedule itself: tests invoke timers explicitly with [`HostSimulator::invoke_timer`].
//! - For queues: the randomised polling backoff (it doubles from 100 ms), `messageEncoding:
//!   none`, the scale controller, and a handler's exit: the listener does not restart an exited
//!   handler; its invocations fail until the next HTTP or timer call (or `restart`) starts one.
//!   The listener's visibility timeout is the host's 10 minutes unless a test sets a shorter one.
//!
//! Where each part lives: [`FunctionApp`] and its functions in `host/app_model.rs`; the host
//! log in `host/logs.rs`; starting, probing, restarting and killing the handler in
//! `host/supervisor.rs`; routes, methods and keys in `host/routing.rs`; requests, answers and
//! forwarded calls in `host/transport.rs`; the envelope form in `host/envelope.rs`; the queue
//! listener in `host/queue_listener.rs`. This file is the host itself, [`HostSimulator`], which
//! puts them together.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod app_model;
mod envelope;
mod logs;
mod queue_listener;
mod routing;
mod supervisor;
mod transport;

pub use app_model::{Binding, FunctionApp, FunctionDefinition};
pub use envelope::{timer_payload, TimerOutcome};
pub use queue_listener::{
    queue_envelope, InvocationOutcome, PoisonedMessage, QueueInvocation, QueueListener,
    QueueListenerOptions, QueueRecord, QueueSettings, HOST_VISIBILITY_TIMEOUT,
    MIN_POLLING_INTERVAL,
};
pub use supervisor::StartFailure;
pub use transport::{send_direct, HostRequest, HostResponse};

use envelope::{
    accept_envelope_answer, http_envelope, http_output, log_lines, post_envelope, sys_metadata,
};
use logs::{HostLog, LogSource};
use routing::{Delivery, Router};
use supervisor::{Launcher, Supervisor};

/// The host version announced to the handler.
pub const HOST_VERSION: &str = "4.1036.1.1";

/// Where `func start` serves the app; callers' `Host` when they send none.
pub const DEFAULT_PUBLIC_HOST: &str = "localhost:7071";

/// How long the host waits for a handler's first answer to `GET /`.
pub const READINESS_LIMIT: Duration = Duration::from_secs(30);
/// How long the host waits for the answer to one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// How the host is set up
// ---------------------------------------------------------------------------------------------

/// How the simulated host is set up.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// The function app root (host.json and the function folders). Default: this crate.
    pub app_root: PathBuf,
    /// App settings (`local.settings.json` `Values`). `RUST_LOG` here replaces the default
    /// `info`. The host's own variables (ports, app root) always win.
    pub env: Vec<(String, String)>,
    /// `Some(keys)`: enforce function keys as Azure does (any of these host keys is accepted
    /// by every function). `None`: no check, as under `func start`.
    pub enforce_keys: Option<Vec<String>>,
    /// Keys of one function each, `(function, key)`, accepted by that function only (Azure's
    /// function keys), when keys are enforced.
    pub function_keys: Vec<(String, String)>,
    /// The `Host` a caller sends when the request names none, and the authority of the
    /// envelope's `Url`.
    pub public_host: String,
    /// How long the host waits for an answer to one call.
    pub call_timeout: Duration,
    /// How long the host waits for the first answer to `GET /`.
    pub readiness_timeout: Duration,
    /// `Some`: run the queue listener for the app's queue functions, against the queue service
    /// of the connection their binding names (an app setting in `env`). `None` (the default):
    /// no listener, as for an app without queue functions.
    pub queue_listener: Option<QueueListenerOptions>,
}

impl Default for HostOptions {
    fn default() -> Self {
        Self {
            app_root: crate::app_root(),
            env: Vec::new(),
            enforce_keys: None,
            function_keys: Vec::new(),
            public_host: DEFAULT_PUBLIC_HOST.into(),
            call_timeout: CALL_TIMEOUT,
            readiness_timeout: READINESS_LIMIT,
            queue_listener: None,
        }
    }
}

impl HostOptions {
    /// Adds an app setting.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Enforces function keys, accepting any of `keys`.
    pub fn enforce_keys<I, K>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        self.enforce_keys = Some(keys.into_iter().map(Into::into).collect());
        self
    }

    /// Runs the queue listener (see [`HostOptions::queue_listener`]).
    pub fn queue_listener(mut self, options: QueueListenerOptions) -> Self {
        self.queue_listener = Some(options);
        self
    }

    /// Adds a key that only `function` accepts (keys must be enforced for it to matter).
    pub fn function_key(mut self, function: &str, key: &str) -> Self {
        self.function_keys
            .push((function.to_owned(), key.to_owned()));
        self
    }
}

// ---------------------------------------------------------------------------------------------
// The host
// ---------------------------------------------------------------------------------------------

/// One simulated host instance with its handler process. Dropping it kills the handler (and
/// prints the handler log when the test is panicking).
pub struct HostSimulator {
    router: Router,
    public_host: String,
    /// The host's one HTTP client: calls, envelopes and the queue listener's invocations.
    client: reqwest::Client,
    supervisor: Supervisor,
    violations: Mutex<Vec<String>>,
    /// What the queue listener is asked to be, and what it did across restarts.
    queue_options: Option<QueueListenerOptions>,
    queue_record: QueueRecord,
    /// Runs while the host does: stopped by [`kill`](Self::kill), started by
    /// [`restart`](Self::restart).
    queue_listener: Option<QueueListener>,
}

impl HostSimulator {
    /// Reads the app, starts the handler and waits until it answers. Panics with the handler
    /// log when it does not.
    pub async fn start(options: HostOptions) -> Self {
        match Self::try_start(options).await {
            Ok(host) => host,
            Err(failure) => panic!("the handler did not start: {failure}"),
        }
    }

    /// As [`start`](Self::start), returning why the handler did not become ready (for tests of
    /// start-up failures, such as an invalid setting).
    pub async fn try_start(options: HostOptions) -> Result<Self, StartFailure> {
        let app = FunctionApp::load(&options.app_root)
            .unwrap_or_else(|error| panic!("the function app cannot be read: {error}"));
        let executable = crate::handler_executable();
        let declared = Path::new(&app.executable).file_name();
        assert_eq!(
            declared,
            executable.file_name(),
            "host.json runs {:?}, but the built handler is {}",
            app.executable,
            executable.display()
        );
        let client = reqwest::Client::builder()
            .http1_only()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(options.call_timeout)
            .build()
            .expect("the HTTP client builds");
        let supervisor = Supervisor::start(Launcher {
            executable,
            arguments: app.arguments.clone(),
            working_directory: app.working_directory.clone(),
            app_root: app.root.clone(),
            env: options.env,
            readiness_timeout: options.readiness_timeout,
            log: HostLog::default(),
        })
        .await?;
        let mut host = Self {
            router: Router::new(app, options.enforce_keys, options.function_keys),
            public_host: options.public_host,
            client,
            supervisor,
            violations: Mutex::new(Vec::new()),
            queue_options: options.queue_listener,
            queue_record: QueueRecord::default(),
            queue_listener: None,
        };
        host.start_queue_listener();
        Ok(host)
    }

    /// Starts the queue listener when the options ask for one. Panics when the app's queue
    /// functions cannot be served (a missing connection setting, a bad queue name).
    fn start_queue_listener(&mut self) {
        let Some(options) = &self.queue_options else {
            return;
        };
        let target = queue_listener::Target {
            client: self.client.clone(),
            port: self.supervisor.shared_port(),
            log: self.log().clone(),
        };
        let listener = QueueListener::start_for(
            &self.router.app,
            self.supervisor.app_settings(),
            options,
            target,
            self.queue_record.clone(),
        )
        .unwrap_or_else(|error| panic!("the queue listener cannot start: {error}"));
        self.queue_listener = Some(listener);
    }

    /// Stops the queue listener, as the death of the host process does.
    fn stop_queue_listener(&mut self) {
        if let Some(mut listener) = self.queue_listener.take() {
            listener.stop();
        }
    }

    /// What the queue listener did (every delivery, poisoned messages), across restarts.
    /// Empty without [`HostOptions::queue_listener`].
    pub fn queue_record(&self) -> QueueRecord {
        self.queue_record.clone()
    }

    /// What host.json and the function folders declare.
    pub fn app(&self) -> &FunctionApp {
        &self.router.app
    }

    /// The port the current handler listens on.
    pub fn port(&self) -> u16 {
        self.supervisor.port()
    }

    /// The process id of the current handler (to send it a signal of a test's choosing).
    pub fn pid(&self) -> u32 {
        self.supervisor.pid()
    }

    /// `http://127.0.0.1:<port>`, for calls that bypass the host.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    /// From spawning the current handler to its first answer to `GET /`.
    pub fn startup_time(&self) -> Duration {
        self.supervisor.startup_time()
    }

    /// How many times the handler was started again (by [`restart`](Self::restart) or after
    /// it exited).
    pub fn restarts(&self) -> usize {
        self.supervisor.restarts()
    }

    fn log(&self) -> &HostLog {
        self.supervisor.log()
    }

    /// The host log so far: the handler's stdout and stderr lines in arrival order, with the
    /// simulator's own lines (starts, exits, successful invocations' `Logs`) marked `[host]`.
    pub fn logs(&self) -> String {
        self.log().render()
    }

    /// The handler's stderr lines (Error level in the host log).
    pub fn error_logs(&self) -> Vec<String> {
        self.log().lines_from(LogSource::Stderr)
    }
    /// Waits until the host log contains `needle`. The pipes are read on other threads, so a
    /// line printed just before an answer may arrive just after it.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.logs().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every answer the host could not use, and every call that got no answer, in order.
    pub fn contract_violations(&self) -> Vec<String> {
        self.violations.lock().expect("violations lock").clone()
    }

    fn violation(&self, text: String) {
        self.log().host(format!("contract violation: {text}"));
        self.violations.lock().expect("violations lock").push(text);
    }

    /// Sends an HTTP call the way this app's host.json makes the host send it: forwarded when
    /// `enableForwardingHttpRequest` is on and the function is HTTP-in/HTTP-out, else as the
    /// envelope.
    pub async fn call(&self, request: HostRequest) -> HostResponse {
        let delivery = self.router.delivery(&request);
        self.send_http(request, delivery).await
    }

    /// Sends an HTTP call forwarded (`enableForwardingHttpRequest: true`), built as the host
    /// builds it:
    /// - the caller's method and path, casing kept (the route itself matched case-insensitively);
    /// - the query rebuilt from the host's dictionary: repeated names joined with commas,
    ///   `code` included;
    /// - the caller's headers, with `Host: <public_host>` when the caller sent none,
    ///   `Content-Type` and `Content-Length` only with a body, `Azure-Functions-Host/<version>`
    ///   appended to the `User-Agent`, plus `X-Azure-Functions-InvocationId` and
    ///   `X-Azure-Functions-HostVersion`;
    /// - the body only when it is not empty.
    ///
    /// The handler's status, headers and body come back unchanged.
    pub async fn forward(&self, request: HostRequest) -> HostResponse {
        self.send_http(request, Delivery::Forwarded).await
    }

    /// Sends the same call as the envelope: `POST /<Function>`, chunked, with the trigger
    /// binding (`req`) holding `Url`, `Method`, `Query` (the host's dictionary), `Headers`
    /// (`{name: [values]}`, with `Host` and, with a body, `Content-Length`), `Params: {}`,
    /// `Identities: []` and `Body` (absent without a body; base64 for
    /// `application/octet-stream` and `multipart/*`, as Json.NET writes bytes). `Metadata`
    /// repeats `Query` and `Headers` beside `sys`. The handler's `Outputs.<http output>`
    /// becomes the caller's answer; an answer the host cannot use becomes an empty 500 and a
    /// contract violation.
    pub async fn invoke_http(&self, request: HostRequest) -> HostResponse {
        self.send_http(request, Delivery::Envelope).await
    }

    /// Sends `request` straight to the handler, with nothing added or checked (for the
    /// handler's own answers to what the host would never pass on). Panics when the handler
    /// does not answer.
    pub async fn direct(&self, request: HostRequest) -> HostResponse {
        send_direct(&self.client, &self.base_url(), request)
            .await
            .unwrap_or_else(|error| panic!("the handler did not answer: {error}\n{}", self.logs()))
    }

    /// Runs a timer function: `POST /<Function>` with `{"Data": {<binding>: timer}}`.
    pub async fn invoke_timer(&self, function: &str, timer: Value) -> TimerOutcome {
        let definition = self.router.app.function(function).unwrap_or_else(|| {
            panic!(
                "no function folder {function:?} in {}",
                self.router.app.root.display()
            )
        });
        assert!(definition.is_timer(), "{function} is not a timer function");
        let invocation_id = uuid::Uuid::new_v4().to_string();
        let envelope = json!({
            "Data": {definition.trigger().name.as_str(): timer},
            "Metadata": {"sys": sys_metadata(function)},
        });
        let no_answer = TimerOutcome {
            succeeded: false,
            status: 0,
            logs: Vec::new(),
            body: Value::Null,
        };
        let port = match self.supervisor.ensure_running().await {
            Ok(port) => port,
            Err(reason) => {
                self.violation(format!(
                    "{function} ({invocation_id}): no handler to run it: {reason}"
                ));
                return no_answer;
            }
        };
        let answer = match self
            .post_envelope(port, function, &invocation_id, &envelope)
            .await
        {
            Ok(answer) => answer,
            Err(error) => {
                self.violation(format!("{function} ({invocation_id}): no answer: {error}"));
                return no_answer;
            }
        };
        let body =
            serde_json::from_slice(&answer.body).unwrap_or_else(|_| Value::String(answer.text()));
        let logs = log_lines(&body);
        let verdict = accept_envelope_answer(&answer);
        match &verdict {
            Ok(_) => self.write_invocation_logs(function, &logs),
            // A deliberate failure (non-2xx) is how a handler fails a run; a 2xx the host
            // cannot read is a broken contract.
            Err(reason) if (200..300).contains(&answer.status) => {
                self.violation(format!("{function} ({invocation_id}): {reason}"))
            }
            Err(reason) => self
                .log()
                .host(format!("{function} ({invocation_id}) failed: {reason}")),
        }
        TimerOutcome {
            succeeded: verdict.is_ok(),
            status: answer.status,
            logs,
            body,
        }
    }

    /// SIGKILL, as on scale-in or deployment. The handler stays down until
    /// [`restart`](Self::restart); calls meanwhile get the host's empty 500.
    ///
    /// The queue listener dies with the host process: its running invocations are abandoned,
    /// and their messages reappear when their visibility runs out.
    pub fn kill(&mut self) {
        // First, so that no delete or renewal follows the handler's death.
        self.stop_queue_listener();
        self.supervisor.kill();
    }

    /// Starts a new handler, as a host restart does: the same settings, a new port, and a new
    /// queue listener. Kills the current one first if it still runs. Panics with the log when
    /// it does not become ready.
    pub async fn restart(&mut self) {
        self.stop_queue_listener();
        if let Err(failure) = self.supervisor.restart().await {
            panic!("the handler did not restart: {failure}");
        }
        self.start_queue_listener();
    }

    /// The handler's exit status, when it has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.supervisor.exit_status()
    }

    async fn send_http(&self, request: HostRequest, delivery: Delivery) -> HostResponse {
        let function = match self.router.admit(&request) {
            Ok(function) => function,
            Err(status) => return HostResponse::empty(status),
        };
        let invocation_id = uuid::Uuid::new_v4().to_string();
        let port = match self.supervisor.ensure_running().await {
            Ok(port) => port,
            Err(reason) => {
                self.violation(format!(
                    "{} ({invocation_id}): no handler to call: {reason}",
                    function.name
                ));
                return HostResponse::empty(500);
            }
        };
        match delivery {
            Delivery::Forwarded => {
                let sent = transport::forward(
                    &self.client,
                    port,
                    &self.public_host,
                    &invocation_id,
                    request,
                )
                .await;
                sent.unwrap_or_else(|error| {
                    self.violation(format!(
                        "{} ({invocation_id}): no answer: {error}",
                        function.name
                    ));
                    HostResponse::empty(500)
                })
            }
            Delivery::Envelope => {
                self.send_envelope(port, function, &invocation_id, request)
                    .await
            }
        }
    }

    async fn send_envelope(
        &self,
        port: u16,
        function: &FunctionDefinition,
        invocation_id: &str,
        request: HostRequest,
    ) -> HostResponse {
        let name = function.name.as_str();
        let Some(output) = function.http_output() else {
            panic!(
                "{name} has no http output binding: the host would have no answer for the caller"
            );
        };
        let envelope = http_envelope(function, &request, &self.public_host);
        let answer = match self
            .post_envelope(port, name, invocation_id, &envelope)
            .await
        {
            Ok(answer) => answer,
            Err(error) => {
                self.violation(format!("{name} ({invocation_id}): no answer: {error}"));
                return HostResponse::empty(500);
            }
        };
        let result = match accept_envelope_answer(&answer) {
            Ok(result) => result,
            Err(reason) => {
                self.violation(format!("{name} ({invocation_id}): {reason}"));
                return HostResponse::empty(500);
            }
        };
        let response = match http_output(&result, &output.name) {
            Ok((response, notes)) => {
                for note in notes {
                    self.violation(format!("{name} ({invocation_id}): {note}"));
                }
                response
            }
            Err(reason) => {
                self.violation(format!("{name} ({invocation_id}): {reason}"));
                return HostResponse::empty(500);
            }
        };
        self.write_invocation_logs(name, &log_lines(&Value::Object(result)));
        response
    }

    /// `POST /<Function>` with the envelope as a chunked body (no Content-Length).
    async fn post_envelope(
        &self,
        port: u16,
        function: &str,
        invocation_id: &str,
        envelope: &Value,
    ) -> Result<HostResponse, reqwest::Error> {
        post_envelope(&self.client, port, function, invocation_id, envelope).await
    }

    /// An accepted invocation's `Logs` go to the host log at Information level.
    fn write_invocation_logs(&self, function: &str, lines: &[String]) {
        for line in lines {
            self.log().host(format!("{function}: {line}"));
        }
    }
}

impl Drop for HostSimulator {
    fn drop(&mut self) {
        self.stop_queue_listener();
        self.supervisor.terminate();
        if std::thread::panicking() {
            eprintln!(
                "--- handler log ---\n{}--- end of handler log ---",
                self.logs()
            );
        }
    }
}
