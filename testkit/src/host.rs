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

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Map, Value};

mod queue_listener;

pub use queue_listener::{
    queue_envelope, InvocationOutcome, PoisonedMessage, QueueInvocation, QueueListener,
    QueueListenerOptions, QueueRecord, QueueSettings, HOST_VISIBILITY_TIMEOUT,
    MIN_POLLING_INTERVAL,
};

/// The host version announced to the handler.
pub const HOST_VERSION: &str = "4.1036.1.1";

/// Where `func start` serves the app; callers' `Host` when they send none.
pub const DEFAULT_PUBLIC_HOST: &str = "localhost:7071";

const PROBE_INTERVAL: Duration = Duration::from_millis(25);
pub const READINESS_LIMIT: Duration = Duration::from_secs(30);
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The exit code a handler uses to ask for a restart; it does not count as a failure.
const RESTART_EXIT_CODE: i32 = 200;
/// Three failures within this window stop the whole host.
const FAILURE_WINDOW: Duration = Duration::from_secs(30 * 60);
const FAILURES_THAT_STOP_THE_HOST: usize = 3;

/// How large the chunks of an envelope body are, so the handler must reassemble them.
const ENVELOPE_CHUNK_BYTES: usize = 8 * 1024;

/// A timer binding value as the host sends it. `next` is the next occurrence (RFC 3339);
/// `Last` and `LastUpdated` are put six hours earlier, the project's schedule. `None` sends
/// `ScheduleStatus: null`, as on a first run without a monitor record.
pub fn timer_payload(next: Option<&str>, past_due: bool) -> Value {
    let schedule_status = match next {
        None => Value::Null,
        Some(next) => {
            let next_time = DateTime::parse_from_rfc3339(next)
                .unwrap_or_else(|error| panic!("timer_payload: {next:?} is not RFC 3339: {error}"));
            let last = (next_time - chrono::TimeDelta::hours(6))
                .to_rfc3339_opts(SecondsFormat::AutoSi, false);
            json!({"Last": last, "Next": next, "LastUpdated": last})
        }
    };
    json!({
        "Schedule": {"AdjustForDST": true},
        "ScheduleStatus": schedule_status,
        "IsPastDue": past_due,
    })
}

// ---------------------------------------------------------------------------------------------
// The function app on disk
// ---------------------------------------------------------------------------------------------

/// What `host.json` and the function folders declare.
#[derive(Debug, Clone)]
pub struct FunctionApp {
    pub root: PathBuf,
    /// `customHandler.description.defaultExecutablePath`.
    pub executable: String,
    /// `customHandler.description.arguments`.
    pub arguments: Vec<String>,
    /// `customHandler.description.workingDirectory`, resolved against the root.
    pub working_directory: PathBuf,
    /// `customHandler.enableForwardingHttpRequest`.
    pub forwards_http: bool,
    /// `extensions.http.routePrefix` (default `api`).
    pub route_prefix: String,
    /// One per folder holding a `function.json`, sorted by name.
    pub functions: Vec<FunctionDefinition>,
}

/// One function folder.
#[derive(Debug, Clone)]
pub struct FunctionDefinition {
    /// The folder name, exact case: the envelope path and `sys.MethodName`.
    pub name: String,
    pub bindings: Vec<Binding>,
}

/// One entry of `bindings` in `function.json`.
#[derive(Debug, Clone)]
pub struct Binding {
    pub name: String,
    /// `type`: `httpTrigger`, `http`, `timerTrigger`, ...
    pub kind: String,
    /// `in` or `out`.
    pub direction: String,
    /// The whole entry, for settings such as `methods`, `route` or `schedule`.
    pub settings: Value,
}

impl FunctionApp {
    /// Reads the app at `root`. The error says which file is wrong and how.
    pub fn load(root: &Path) -> Result<Self, String> {
        let host_path = root.join("host.json");
        let host = read_json(&host_path)?;
        let handler = &host["customHandler"];
        let description = &handler["description"];
        let executable = description["defaultExecutablePath"]
            .as_str()
            .filter(|path| !path.is_empty())
            .ok_or_else(|| {
                format!(
                    "{}: customHandler.description.defaultExecutablePath is missing",
                    host_path.display()
                )
            })?
            .to_owned();
        let arguments = match &description["arguments"] {
            Value::Null => Vec::new(),
            Value::Array(items) => items
                .iter()
                .map(|item| {
                    item.as_str().map(str::to_owned).ok_or_else(|| {
                        format!(
                            "{}: customHandler.description.arguments holds a non-string",
                            host_path.display()
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(format!(
                    "{}: customHandler.description.arguments is not an array",
                    host_path.display()
                ))
            }
        };
        let working_directory = match description["workingDirectory"].as_str() {
            Some(dir) if !dir.is_empty() => root.join(dir),
            _ => root.to_path_buf(),
        };
        let route_prefix = host["extensions"]["http"]["routePrefix"]
            .as_str()
            .unwrap_or("api")
            .trim_matches('/')
            .to_owned();

        let mut functions = Vec::new();
        let entries =
            std::fs::read_dir(root).map_err(|error| format!("{}: {error}", root.display()))?;
        for entry in entries {
            let folder = entry
                .map_err(|error| format!("{}: {error}", root.display()))?
                .path();
            let function_json = folder.join("function.json");
            if folder.is_dir() && function_json.is_file() {
                let name = folder
                    .file_name()
                    .and_then(|name| name.to_str())
                    .ok_or_else(|| format!("{}: the folder name is not UTF-8", folder.display()))?
                    .to_owned();
                functions.push(FunctionDefinition::parse(name, &function_json)?);
            }
        }
        if functions.is_empty() {
            return Err(format!(
                "{}: no */function.json: the app has no functions",
                root.display()
            ));
        }
        functions.sort_by(|a, b| a.name.cmp(&b.name));

        Ok(Self {
            root: root.to_path_buf(),
            executable,
            arguments,
            working_directory,
            forwards_http: handler["enableForwardingHttpRequest"]
                .as_bool()
                .unwrap_or(false),
            route_prefix,
            functions,
        })
    }

    /// The function named exactly `name`.
    pub fn function(&self, name: &str) -> Option<&FunctionDefinition> {
        self.functions.iter().find(|function| function.name == name)
    }

    /// The HTTP function whose public route is `path` (no query). ASP.NET routing ignores case
    /// and a trailing slash.
    pub fn http_function_at(&self, path: &str) -> Option<&FunctionDefinition> {
        let path = path
            .strip_suffix('/')
            .filter(|p| !p.is_empty())
            .unwrap_or(path);
        self.functions.iter().find(|function| {
            function
                .public_path(&self.route_prefix)
                .is_some_and(|route| route.eq_ignore_ascii_case(path))
        })
    }
}

impl FunctionDefinition {
    fn parse(name: String, path: &Path) -> Result<Self, String> {
        let document = read_json(path)?;
        let entries = document["bindings"]
            .as_array()
            .filter(|bindings| !bindings.is_empty())
            .ok_or_else(|| format!("{}: bindings must be a non-empty array", path.display()))?;
        let mut bindings = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let field = |key: &str| {
                entry[key].as_str().map(str::to_owned).ok_or_else(|| {
                    format!("{}: bindings[{index}].{key} is missing", path.display())
                })
            };
            bindings.push(Binding {
                name: field("name")?,
                kind: field("type")?,
                direction: field("direction")?,
                settings: entry.clone(),
            });
        }
        let triggers = bindings
            .iter()
            .filter(|b| b.kind.ends_with("Trigger"))
            .count();
        if triggers != 1 {
            return Err(format!(
                "{}: a function needs exactly one trigger, found {triggers}",
                path.display()
            ));
        }
        Ok(Self { name, bindings })
    }

    /// The trigger binding (`parse` guarantees there is exactly one).
    pub fn trigger(&self) -> &Binding {
        self.bindings
            .iter()
            .find(|binding| binding.kind.ends_with("Trigger"))
            .expect("a parsed function has a trigger")
    }

    pub fn is_http(&self) -> bool {
        self.trigger().kind.eq_ignore_ascii_case("httpTrigger")
    }

    pub fn is_timer(&self) -> bool {
        self.trigger().kind.eq_ignore_ascii_case("timerTrigger")
    }

    /// Driven by the queue listener ([`QueueListener`]).
    pub fn is_queue(&self) -> bool {
        self.trigger().kind.eq_ignore_ascii_case("queueTrigger")
    }

    /// The `http` output binding, whose name is the key of `Outputs` in an envelope answer.
    pub fn http_output(&self) -> Option<&Binding> {
        self.bindings
            .iter()
            .find(|binding| binding.direction == "out" && binding.kind.eq_ignore_ascii_case("http"))
    }

    /// Exactly one `httpTrigger` in and one `http` out: the only shape the host forwards.
    pub fn is_http_in_and_out(&self) -> bool {
        let inputs: Vec<&Binding> = self
            .bindings
            .iter()
            .filter(|b| b.direction == "in")
            .collect();
        let outputs: Vec<&Binding> = self
            .bindings
            .iter()
            .filter(|b| b.direction == "out")
            .collect();
        matches!(inputs.as_slice(), [input] if input.kind.eq_ignore_ascii_case("httpTrigger"))
            && matches!(outputs.as_slice(), [output] if output.kind.eq_ignore_ascii_case("http"))
    }

    /// `authLevel` in lower case; `function` when absent.
    pub fn auth_level(&self) -> String {
        self.trigger().settings["authLevel"]
            .as_str()
            .unwrap_or("function")
            .to_ascii_lowercase()
    }

    /// Whether `method` is listed in `methods` (every method when the list is absent).
    pub fn allows_method(&self, method: &str) -> bool {
        match self.trigger().settings["methods"].as_array() {
            None => true,
            Some(methods) => methods
                .iter()
                .filter_map(Value::as_str)
                .any(|allowed| allowed.eq_ignore_ascii_case(method)),
        }
    }

    /// `/<prefix>/<route>` for an HTTP function (`route` defaults to the function name).
    pub fn public_path(&self, route_prefix: &str) -> Option<String> {
        if !self.is_http() {
            return None;
        }
        let route = self.trigger().settings["route"]
            .as_str()
            .unwrap_or(&self.name)
            .trim_matches('/');
        Some(if route_prefix.is_empty() {
            format!("/{route}")
        } else {
            format!("/{route_prefix}/{route}")
        })
    }
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text =
        std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
    serde_json::from_str(&text).map_err(|error| format!("{}: not JSON: {error}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Requests and answers
// ---------------------------------------------------------------------------------------------

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
    fn query_dictionary(&self) -> Vec<(String, String)> {
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
    fn header_groups(&self) -> Vec<(String, Vec<String>)> {
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
    fn empty(status: u16) -> Self {
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

/// How a timer invocation went, from the host's side.
#[derive(Debug, Clone)]
pub struct TimerOutcome {
    /// The host's verdict: a 2xx `application/json` object answer.
    pub succeeded: bool,
    /// The handler's HTTP status; 0 when no answer came (handler down, connection lost, timeout).
    pub status: u16,
    /// The answer's `Logs`, whether or not the run succeeded (the host writes them to its log
    /// only on success; see [`HostSimulator::logs`]).
    pub logs: Vec<String>,
    /// The answer body as JSON; a JSON string of the raw text when it is not JSON; `Null` when
    /// there was no answer.
    pub body: Value,
}

/// Why the handler did not become ready.
#[derive(Debug)]
pub struct StartFailure {
    pub reason: String,
    /// Set when the process exited before it answered the probe.
    pub exit_status: Option<ExitStatus>,
    /// Everything the handler printed.
    pub logs: String,
    /// The handler could not bind its port: another process took it first.
    pub port_taken: bool,
}

impl fmt::Display for StartFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n--- handler log ---\n{}", self.reason, self.logs)
    }
}

// ---------------------------------------------------------------------------------------------
// The host log
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogSource {
    /// Handler stdout: Information in the host log.
    Stdout,
    /// Handler stderr: Error in the host log.
    Stderr,
    /// The simulator's own lines (starts, exits, invocation logs).
    Host,
}

/// Lines in arrival order, shared with the threads that read the handler's pipes.
#[derive(Debug, Clone, Default)]
struct HostLog {
    lines: Arc<Mutex<Vec<(LogSource, String)>>>,
}

impl HostLog {
    fn push(&self, source: LogSource, text: String) {
        self.lines.lock().expect("log lock").push((source, text));
    }

    fn host(&self, text: impl Into<String>) {
        self.push(LogSource::Host, text.into());
    }

    fn render(&self) -> String {
        self.render_since(0)
    }

    /// How many lines there are so far: a mark for [`render_since`](Self::render_since).
    fn len(&self) -> usize {
        self.lines.lock().expect("log lock").len()
    }

    /// The lines from the `mark`-th on.
    fn render_since(&self, mark: usize) -> String {
        let lines = self.lines.lock().expect("log lock");
        let mut out = String::new();
        for (source, text) in lines.iter().skip(mark) {
            if *source == LogSource::Host {
                out.push_str("[host] ");
            }
            out.push_str(text);
            out.push('\n');
        }
        out
    }

    fn lines_from(&self, wanted: LogSource) -> Vec<String> {
        let lines = self.lines.lock().expect("log lock");
        lines
            .iter()
            .filter(|(source, _)| *source == wanted)
            .map(|(_, text)| text.clone())
            .collect()
    }

    /// Reads `stream` line by line on a thread of its own until the pipe closes.
    fn capture(&self, stream: impl Read + Send + 'static, source: LogSource) -> JoinHandle<()> {
        let log = self.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        log.push(source, text.trim_end_matches(['\n', '\r']).to_owned());
                    }
                }
            }
        })
    }
}

/// Waits (briefly) for the pipe readers of an exited process, so its last lines are in the log.
fn drain(readers: &mut Vec<JoinHandle<()>>) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while readers.iter().any(|reader| !reader.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    for reader in readers.drain(..) {
        if reader.is_finished() {
            let _ = reader.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The handler process
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

/// Everything needed to start a handler process; shared by the first start and restarts.
struct Launcher {
    executable: PathBuf,
    arguments: Vec<String>,
    working_directory: PathBuf,
    app_root: PathBuf,
    env: Vec<(String, String)>,
    readiness_timeout: Duration,
    client: reqwest::Client,
    log: HostLog,
}

/// A handler that answered the readiness probe.
struct Booted {
    child: Child,
    readers: Vec<JoinHandle<()>>,
    port: u16,
    startup_time: Duration,
}

impl Launcher {
    /// Spawns the handler on a fresh port and waits for it to answer `GET /`; starts it again
    /// on another port when another process took the port first.
    async fn boot(&self) -> Result<Booted, StartFailure> {
        crate::port::start_on_a_free_port(
            |port| self.boot_on(port),
            |failure: &StartFailure| failure.port_taken,
        )
        .await
    }

    async fn boot_on(&self, port: u16) -> Result<Booted, StartFailure> {
        let spawned_at = Instant::now();
        let log_mark = self.log.len();
        let mut child = self.spawn(port).map_err(|error| StartFailure {
            reason: format!("{} cannot be started: {error}", self.executable.display()),
            exit_status: None,
            logs: self.log.render(),
            port_taken: false,
        })?;
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(self.log.capture(stdout, LogSource::Stdout));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(self.log.capture(stderr, LogSource::Stderr));
        }
        self.log.host(format!(
            "started the handler (pid {}) on port {port}",
            child.id()
        ));

        match self.probe(port, &mut child).await {
            Ok(()) => {
                let startup_time = spawned_at.elapsed();
                self.log.host(format!(
                    "the handler answered the probe after {startup_time:?}"
                ));
                Ok(Booted {
                    child,
                    readers,
                    port,
                    startup_time,
                })
            }
            Err(reason) => {
                // Only an exit of its own is the handler's exit status; a handler that never
                // answered is killed here, as the host gives up on it.
                let exit_status = child.try_wait().ok().flatten();
                let _ = child.kill();
                let _ = child.wait();
                drain(&mut readers);
                self.log.host(reason.clone());
                Err(StartFailure {
                    reason,
                    exit_status,
                    logs: self.log.render(),
                    port_taken: crate::port::is_bind_conflict(&self.log.render_since(log_mark)),
                })
            }
        }
    }

    fn spawn(&self, port: u16) -> std::io::Result<Child> {
        let mut command = Command::new(&self.executable);
        command
            .args(&self.arguments)
            .current_dir(&self.working_directory)
            .env_clear();
        for inherited in ["PATH", "HOME"] {
            if let Some(value) = std::env::var_os(inherited) {
                command.env(inherited, value);
            }
        }
        command.env("RUST_LOG", "info");
        command.envs(self.env.iter().map(|(name, value)| (name, value)));
        command
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("FUNCTIONS_HTTPWORKER_PORT", port.to_string())
            .env("FUNCTIONS_APP_ROOT_PATH", &self.app_root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command.spawn()
    }

    /// `GET /` every 25 ms until any HTTP answer. Fails when the process exits first or the
    /// time runs out.
    async fn probe(&self, port: u16, child: &mut Child) -> Result<(), String> {
        let url = format!("http://127.0.0.1:{port}/");
        let deadline = Instant::now() + self.readiness_timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "the handler exited ({status}) before it answered GET /"
                ));
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(format!(
                    "the handler did not answer GET / on port {port} within {:?}",
                    self.readiness_timeout
                ));
            }
            let attempt = self
                .client
                .get(&url)
                .timeout(remaining.min(Duration::from_secs(2)))
                .send()
                .await;
            if attempt.is_ok() {
                // An answer from a handler that has exited since came from whoever took its
                // port.
                return match child.try_wait() {
                    Ok(Some(status)) => Err(format!(
                        "the handler exited ({status}); another process answered on port {port}"
                    )),
                    _ => Ok(()),
                };
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }
}

/// The current handler process and what the host remembers about past ones.
struct Worker {
    child: Child,
    readers: Vec<JoinHandle<()>>,
    /// Killed by [`HostSimulator::kill`]: stays down until [`HostSimulator::restart`].
    killed: bool,
    /// Why the host gave up on the handler; every later call fails.
    stopped: Option<String>,
    /// When earlier processes failed, for the three-in-30-minutes rule.
    failures: Vec<Instant>,
}

impl Worker {
    fn terminate(&mut self) {
        // Child::kill is SIGKILL on Unix, as the host's kill is.
        let _ = self.child.kill();
        let _ = self.child.wait();
        drain(&mut self.readers);
    }
}

// ---------------------------------------------------------------------------------------------
// The host
// ---------------------------------------------------------------------------------------------

/// One simulated host instance with its handler process. Dropping it kills the handler (and
/// prints the handler log when the test is panicking).
pub struct HostSimulator {
    app: FunctionApp,
    enforce_keys: Option<Vec<String>>,
    function_keys: Vec<(String, String)>,
    public_host: String,
    launcher: Launcher,
    worker: tokio::sync::Mutex<Worker>,
    /// Shared with the queue listener, which invokes whichever handler runs.
    port: Arc<AtomicU16>,
    pid: AtomicU32,
    startup_time: Mutex<Duration>,
    restarts: AtomicUsize,
    violations: Mutex<Vec<String>>,
    /// What the queue listener is asked to be, and what it did across restarts.
    queue_options: Option<QueueListenerOptions>,
    queue_record: QueueRecord,
    /// Runs while the host does: stopped by [`kill`](Self::kill), started by
    /// [`restart`](Self::restart).
    queue_listener: Option<QueueListener>,
}

/// The form a call reaches the handler in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Forwarded,
    Envelope,
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
        let launcher = Launcher {
            executable,
            arguments: app.arguments.clone(),
            working_directory: app.working_directory.clone(),
            app_root: app.root.clone(),
            env: options.env,
            readiness_timeout: options.readiness_timeout,
            client,
            log: HostLog::default(),
        };
        let booted = launcher.boot().await?;
        let mut host = Self {
            app,
            enforce_keys: options.enforce_keys,
            function_keys: options.function_keys,
            public_host: options.public_host,
            port: Arc::new(AtomicU16::new(booted.port)),
            pid: AtomicU32::new(booted.child.id()),
            startup_time: Mutex::new(booted.startup_time),
            worker: tokio::sync::Mutex::new(Worker {
                child: booted.child,
                readers: booted.readers,
                killed: false,
                stopped: None,
                failures: Vec::new(),
            }),
            launcher,
            restarts: AtomicUsize::new(0),
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
            client: self.launcher.client.clone(),
            port: self.port.clone(),
            log: self.launcher.log.clone(),
        };
        let listener = QueueListener::start_for(
            &self.app,
            &self.launcher.env,
            options,
            target,
            self.queue_record.clone(),
        )
        .unwrap_or_else(|error| panic!("the queue listener cannot start: {error}"));
        self.queue_listener = Some(listener);
    }

    /// What the queue listener did (every delivery, poisoned messages), across restarts.
    /// Empty without [`HostOptions::queue_listener`].
    pub fn queue_record(&self) -> QueueRecord {
        self.queue_record.clone()
    }

    /// What host.json and the function folders declare.
    pub fn app(&self) -> &FunctionApp {
        &self.app
    }

    /// The port the current handler listens on.
    pub fn port(&self) -> u16 {
        self.port.load(Ordering::SeqCst)
    }

    /// The process id of the current handler (to send it a signal of a test's choosing).
    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::SeqCst)
    }

    /// `http://127.0.0.1:<port>`, for calls that bypass the host.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    /// From spawning the current handler to its first answer to `GET /`.
    pub fn startup_time(&self) -> Duration {
        *self.startup_time.lock().expect("startup time lock")
    }

    /// How many times the handler was started again (by [`restart`](Self::restart) or after
    /// it exited).
    pub fn restarts(&self) -> usize {
        self.restarts.load(Ordering::SeqCst)
    }

    /// The host log so far: the handler's stdout and stderr lines in arrival order, with the
    /// simulator's own lines (starts, exits, successful invocations' `Logs`) marked `[host]`.
    pub fn logs(&self) -> String {
        self.launcher.log.render()
    }

    /// The handler's stderr lines (Error level in the host log).
    pub fn error_logs(&self) -> Vec<String> {
        self.launcher.log.lines_from(LogSource::Stderr)
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
        self.launcher
            .log
            .host(format!("contract violation: {text}"));
        self.violations.lock().expect("violations lock").push(text);
    }

    /// Sends an HTTP call the way this app's host.json makes the host send it: forwarded when
    /// `enableForwardingHttpRequest` is on and the function is HTTP-in/HTTP-out, else as the
    /// envelope.
    pub async fn call(&self, request: HostRequest) -> HostResponse {
        let forwarded = self.app.forwards_http
            && self
                .app
                .http_function_at(request.path_and_query().0)
                .is_some_and(FunctionDefinition::is_http_in_and_out);
        let delivery = if forwarded {
            Delivery::Forwarded
        } else {
            Delivery::Envelope
        };
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
        send_direct(&self.launcher.client, &self.base_url(), request)
            .await
            .unwrap_or_else(|error| panic!("the handler did not answer: {error}\n{}", self.logs()))
    }

    /// Runs a timer function: `POST /<Function>` with `{"Data": {<binding>: timer}}`.
    pub async fn invoke_timer(&self, function: &str, timer: Value) -> TimerOutcome {
        let definition = self.app.function(function).unwrap_or_else(|| {
            panic!(
                "no function folder {function:?} in {}",
                self.app.root.display()
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
        let port = match self.ensure_running().await {
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
                .launcher
                .log
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
        if let Some(mut listener) = self.queue_listener.take() {
            listener.stop();
        }
        let worker = self.worker.get_mut();
        worker.terminate();
        worker.killed = true;
        self.launcher.log.host("killed the handler (SIGKILL)");
    }

    /// Starts a new handler, as a host restart does: the same settings, a new port, and a new
    /// queue listener. Kills the current one first if it still runs. Panics with the log when
    /// it does not become ready.
    pub async fn restart(&mut self) {
        if let Some(mut listener) = self.queue_listener.take() {
            listener.stop();
        }
        self.worker.get_mut().terminate();
        self.launcher.log.host("restarting the handler");
        let booted = match self.launcher.boot().await {
            Ok(booted) => booted,
            Err(failure) => panic!("the handler did not restart: {failure}"),
        };
        let mut worker = self.worker.lock().await;
        self.install(&mut worker, booted);
        worker.killed = false;
        worker.stopped = None;
        drop(worker);
        self.start_queue_listener();
    }

    /// The handler's exit status, when it has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.worker.get_mut().child.try_wait().ok().flatten()
    }

    /// Makes `booted` the current handler, in place of the one `worker` held.
    fn install(&self, worker: &mut Worker, booted: Booted) {
        self.port.store(booted.port, Ordering::SeqCst);
        self.pid.store(booted.child.id(), Ordering::SeqCst);
        *self.startup_time.lock().expect("startup time lock") = booted.startup_time;
        self.restarts.fetch_add(1, Ordering::SeqCst);
        worker.child = booted.child;
        worker.readers = booted.readers;
    }

    /// The port of a running handler, restarting one that exited the way the host would.
    /// `Err` says why no handler can take the call.
    async fn ensure_running(&self) -> Result<u16, String> {
        let mut worker = self.worker.lock().await;
        if let Some(reason) = &worker.stopped {
            return Err(reason.clone());
        }
        let mut exit = match worker.child.try_wait() {
            Ok(None) => return Ok(self.port()),
            Ok(Some(status)) => status,
            Err(error) => return Err(format!("the handler's state cannot be read: {error}")),
        };
        if worker.killed {
            return Err("the handler was killed and has not been restarted".into());
        }
        loop {
            drain(&mut worker.readers);
            self.launcher
                .log
                .host(format!("the handler exited ({exit})"));
            match exit.code() {
                Some(0) => {
                    let reason =
                        "the handler exited with code 0; the host does not restart it".to_owned();
                    worker.stopped = Some(reason.clone());
                    return Err(reason);
                }
                Some(RESTART_EXIT_CODE) => {}
                _ => {
                    worker.failures.push(Instant::now());
                    worker.failures.retain(|at| at.elapsed() < FAILURE_WINDOW);
                    if worker.failures.len() >= FAILURES_THAT_STOP_THE_HOST {
                        let reason = format!(
                            "the handler failed {} times within 30 minutes; the host stopped",
                            worker.failures.len()
                        );
                        self.launcher.log.host(reason.clone());
                        worker.stopped = Some(reason.clone());
                        return Err(reason);
                    }
                }
            }
            self.launcher.log.host("restarting the handler");
            match self.launcher.boot().await {
                Ok(booted) => {
                    let port = booted.port;
                    self.install(&mut worker, booted);
                    return Ok(port);
                }
                Err(StartFailure {
                    exit_status: Some(status),
                    ..
                }) => exit = status,
                Err(failure) => {
                    worker.stopped = Some(failure.reason.clone());
                    return Err(failure.reason);
                }
            }
        }
    }

    /// The host's front half: route, method, key. `Err` is the status of the host's own,
    /// empty, answer.
    fn admit(&self, request: &HostRequest) -> Result<&FunctionDefinition, u16> {
        let (path, _) = request.path_and_query();
        let function = self.app.http_function_at(path).ok_or(404_u16)?;
        // A method missing from `methods` fails the route match, so the host answers as it
        // does for an unknown route: 404, not 405.
        if !function.allows_method(&request.method) {
            return Err(404);
        }
        if let Some(keys) = &self.enforce_keys {
            if function.auth_level() != "anonymous" {
                let presented = request
                    .header_value("x-functions-key")
                    .filter(|key| !key.is_empty())
                    .map(str::to_owned)
                    .or_else(|| {
                        request
                            .query_dictionary()
                            .into_iter()
                            .find(|(name, _)| name == "code")
                            .map(|(_, value)| value)
                    });
                let opens = |key: &String| {
                    keys.contains(key)
                        || self
                            .function_keys
                            .iter()
                            .any(|(name, own)| *name == function.name && own == key)
                };
                if !presented.is_some_and(|key| opens(&key)) {
                    return Err(401);
                }
            }
        }
        Ok(function)
    }

    async fn send_http(&self, request: HostRequest, delivery: Delivery) -> HostResponse {
        let function = match self.admit(&request) {
            Ok(function) => function,
            Err(status) => return HostResponse::empty(status),
        };
        let invocation_id = uuid::Uuid::new_v4().to_string();
        let port = match self.ensure_running().await {
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
                self.send_forwarded(port, function, &invocation_id, request)
                    .await
            }
            Delivery::Envelope => {
                self.send_envelope(port, function, &invocation_id, request)
                    .await
            }
        }
    }

    async fn send_forwarded(
        &self,
        port: u16,
        function: &FunctionDefinition,
        invocation_id: &str,
        request: HostRequest,
    ) -> HostResponse {
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
            headers.push(("Host".into(), self.public_host.clone()));
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

        let mut builder = self
            .launcher
            .client
            .request(method, url)
            .headers(header_map(
                headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            ));
        if has_body {
            builder = builder.body(request.body);
        }
        let outcome = match builder.send().await {
            Ok(answer) => read_answer(answer).await,
            Err(error) => Err(error),
        };
        outcome.unwrap_or_else(|error| {
            self.violation(format!(
                "{} ({invocation_id}): no answer: {error}",
                function.name
            ));
            HostResponse::empty(500)
        })
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
        let envelope = self.http_envelope(function, &request);
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

    /// The `req` binding and its metadata, as the host builds them from the caller's request.
    fn http_envelope(&self, function: &FunctionDefinition, request: &HostRequest) -> Value {
        let query: Map<String, Value> = request
            .query_dictionary()
            .into_iter()
            .map(|(name, value)| (name, Value::String(value)))
            .collect();
        let mut groups = request.header_groups();
        let host = match request.header_value("host") {
            Some(host) => host.to_owned(),
            None => {
                groups.push(("Host".into(), vec![self.public_host.clone()]));
                self.public_host.clone()
            }
        };
        groups.retain(|(name, _)| !name.eq_ignore_ascii_case("content-length"));
        if !request.body.is_empty() {
            groups.push((
                "Content-Length".into(),
                vec![request.body.len().to_string()],
            ));
        }
        let headers: Map<String, Value> = groups
            .into_iter()
            .map(|(name, values)| (name, json!(values)))
            .collect();

        let mut req = json!({
            "Url": format!("http://{host}{}", request.path),
            "Method": request.method,
            "Query": query,
            "Headers": headers,
            "Params": {},
            "Identities": [],
        });
        if !request.body.is_empty() {
            // Binary media types arrive as bytes, which Json.NET writes as base64.
            let binary = request
                .header_value("content-type")
                .is_some_and(|content_type| {
                    let media = media_type(content_type);
                    media == "application/octet-stream" || media.starts_with("multipart/")
                });
            req["Body"] = Value::String(if binary {
                base64::engine::general_purpose::STANDARD.encode(&request.body)
            } else {
                String::from_utf8_lossy(&request.body).into_owned()
            });
        }
        json!({
            "Data": {function.trigger().name.as_str(): req},
            "Metadata": {
                "Query": req["Query"].clone(),
                "Headers": req["Headers"].clone(),
                "sys": sys_metadata(&function.name),
            },
        })
    }

    /// `POST /<Function>` with the envelope as a chunked body (no Content-Length).
    async fn post_envelope(
        &self,
        port: u16,
        function: &str,
        invocation_id: &str,
        envelope: &Value,
    ) -> Result<HostResponse, reqwest::Error> {
        post_envelope(
            &self.launcher.client,
            port,
            function,
            invocation_id,
            envelope,
        )
        .await
    }

    /// An accepted invocation's `Logs` go to the host log at Information level.
    fn write_invocation_logs(&self, function: &str, lines: &[String]) {
        for line in lines {
            self.launcher.log.host(format!("{function}: {line}"));
        }
    }
}

impl Drop for HostSimulator {
    fn drop(&mut self) {
        if let Some(mut listener) = self.queue_listener.take() {
            listener.stop();
        }
        self.worker.get_mut().terminate();
        if std::thread::panicking() {
            eprintln!(
                "--- handler log ---\n{}--- end of handler log ---",
                self.logs()
            );
        }
    }
}

/// `POST /<Function>` on the handler at `port` with the envelope as a chunked body (no
/// Content-Length), with the host's headers.
async fn post_envelope(
    client: &reqwest::Client,
    port: u16,
    function: &str,
    invocation_id: &str,
    envelope: &Value,
) -> Result<HostResponse, reqwest::Error> {
    let bytes = serde_json::to_vec(envelope).expect("an envelope serialises");
    let chunks: Vec<Result<Bytes, std::io::Error>> = bytes
        .chunks(ENVELOPE_CHUNK_BYTES)
        .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
        .collect();
    let answer = client
        .post(format!("http://127.0.0.1:{port}/{function}"))
        .header("Content-Type", "application/json; charset=utf-8")
        .header("User-Agent", format!("Azure-Functions-Host/{HOST_VERSION}"))
        .header("X-Azure-Functions-HostVersion", HOST_VERSION)
        .header("X-Azure-Functions-InvocationId", invocation_id)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await?;
    read_answer(answer).await
}

fn sys_metadata(function: &str) -> Value {
    json!({
        "MethodName": function,
        "UtcNow": Utc::now().to_rfc3339_opts(SecondsFormat::AutoSi, true),
        "RandGuid": uuid::Uuid::new_v4().to_string(),
    })
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

/// Headers for reqwest, skipping any that are not valid HTTP (a test's mistake, not the
/// handler's).
fn header_map<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> HeaderMap {
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

async fn read_answer(answer: reqwest::Response) -> Result<HostResponse, reqwest::Error> {
    let status = answer.status().as_u16();
    let headers = answer.headers().clone();
    let body = answer.bytes().await?.to_vec();
    Ok(HostResponse {
        status,
        headers,
        body,
    })
}

/// `type/subtype` in lower case, without parameters.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The host's acceptance rule for an envelope answer: 2xx, `application/json`, a JSON object.
fn accept_envelope_answer(answer: &HostResponse) -> Result<Map<String, Value>, String> {
    if !(200..300).contains(&answer.status) {
        return Err(format!(
            "answered HTTP {}: {}",
            answer.status,
            answer.text()
        ));
    }
    let content_type = answer.header("content-type").unwrap_or_default();
    if media_type(&content_type) != "application/json" {
        return Err(format!(
            "answered Content-Type {content_type:?}, not application/json: {}",
            answer.text()
        ));
    }
    match serde_json::from_slice::<Value>(&answer.body) {
        Ok(Value::Object(result)) => Ok(result),
        Ok(other) => Err(format!("answered JSON that is not an object: {other}")),
        Err(error) => Err(format!(
            "answered a body that is not JSON ({error}): {:?}",
            answer.text()
        )),
    }
}

/// `Logs` of an answer (strings only; anything else is shown as JSON).
fn log_lines(body: &Value) -> Vec<String> {
    body.get("Logs")
        .and_then(Value::as_array)
        .map(|lines| {
            lines
                .iter()
                .map(|line| match line {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A value of a JSON object by case-insensitive key (Json.NET binds properties that way).
fn field<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).or_else(|| {
        object
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, value)| value)
    })
}

/// The caller's answer from `Outputs.<binding>`, with notes on what the host tolerates but the
/// contract forbids. `Err` when the host cannot build an answer at all.
fn http_output(
    result: &Map<String, Value>,
    binding: &str,
) -> Result<(HostResponse, Vec<String>), String> {
    let mut notes = Vec::new();
    let outputs = result
        .get("Outputs")
        .and_then(Value::as_object)
        .ok_or("the answer has no Outputs object")?;
    let output = outputs
        .get(binding)
        .ok_or_else(|| format!("Outputs has no {binding:?} (binding names are exact-case)"))?;
    // The host reads the output through its text form, so a JSON string holding the object
    // works too.
    let output = match output {
        Value::Object(object) => object.clone(),
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(object)) => object,
            _ => {
                return Err(format!(
                    "Outputs.{binding} is not an HTTP response object: {text:?}"
                ))
            }
        },
        other => {
            return Err(format!(
                "Outputs.{binding} is not an HTTP response object: {other}"
            ))
        }
    };

    let status = match field(&output, "statusCode") {
        Some(Value::Number(number)) => number.as_u64().and_then(|n| u16::try_from(n).ok()),
        Some(Value::String(text)) => text.trim().parse().ok(),
        None => {
            notes.push(format!(
                "Outputs.{binding} has no statusCode; the host answers 200"
            ));
            Some(200)
        }
        Some(_) => None,
    };
    let status = status
        .filter(|status| (100..1000).contains(status))
        .ok_or_else(|| {
            format!(
                "Outputs.{binding}.statusCode is not a status code: {:?}",
                field(&output, "statusCode")
            )
        })?;

    let mut headers = HeaderMap::new();
    match field(&output, "headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(entries)) => {
            for (name, value) in entries {
                let text = match value {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                match (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(&text),
                ) {
                    (Ok(name), Ok(value)) => {
                        headers.append(name, value);
                    }
                    _ => notes.push(format!(
                        "Outputs.{binding}.headers has an invalid header {name}: {text:?}"
                    )),
                }
            }
        }
        Some(other) => {
            return Err(format!(
                "Outputs.{binding}.headers is not an object: {other}"
            ))
        }
    }

    let body = match field(&output, "body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) => text.clone().into_bytes(),
        Some(other) => {
            notes.push(format!("Outputs.{binding}.body is not a string"));
            other.to_string().into_bytes()
        }
    };
    Ok((
        HostResponse {
            status,
            headers,
            body,
        },
        notes,
    ))
}
