//! The handler as a plain process, started directly with the settings a test chooses (no
//! host simulator in front): for standalone mode, for tests of what the handler does at start
//! under the host's variables, and for the benchmark, which measures the release handler
//! started the way the host starts it.
//!
//! Also the pieces the host simulator starts its handler with ([`crate::host`]): the
//! environment of a handler ([`bare_command`], [`Listen::variables`]) and the readiness probe
//! ([`answers_get`]).

use std::ffi::OsString;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// How long a handler may take to answer its first `GET /`.
const READY_LIMIT: Duration = Duration::from_secs(30);
/// How often `GET /` is tried while a handler starts, unless the options say otherwise (the
/// host's interval).
const PROBE_INTERVAL: Duration = Duration::from_millis(25);
/// How long one probe waits for its answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Which variables tell the handler its port.
#[derive(Debug, Clone, Copy)]
pub enum Listen {
    /// `PORT`: standalone mode (on loopback without `FUNCTION_KEYS`, on every interface with
    /// them, unless `BIND_ADDRESS` says otherwise).
    Standalone,
    /// What the Functions host sets: `FUNCTIONS_CUSTOMHANDLER_PORT` (and the older
    /// `FUNCTIONS_HTTPWORKER_PORT`) and `FUNCTIONS_APP_ROOT_PATH`: host mode, on loopback.
    Host,
}

impl Listen {
    /// The variables that start the handler on `port`, with `app_root` as the app root the
    /// host announces.
    pub fn variables(self, port: u16, app_root: &Path) -> Vec<(&'static str, OsString)> {
        let port = OsString::from(port.to_string());
        match self {
            Listen::Standalone => vec![("PORT", port)],
            Listen::Host => vec![
                ("FUNCTIONS_CUSTOMHANDLER_PORT", port.clone()),
                ("FUNCTIONS_HTTPWORKER_PORT", port),
                ("FUNCTIONS_APP_ROOT_PATH", app_root.into()),
            ],
        }
    }
}

/// A command that runs `executable` in `cwd` with nothing of this process's environment but
/// `PATH` and `HOME`, as the host starts a handler (app settings come on top).
pub fn bare_command(executable: &Path, cwd: &Path) -> Command {
    let mut command = Command::new(executable);
    command.current_dir(cwd).env_clear();
    for inherited in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(inherited) {
            command.env(inherited, value);
        }
    }
    command.stdin(Stdio::null());
    command
}

/// Whether `GET /` on `127.0.0.1:<port>` gets an HTTP answer (any status, as the host's
/// readiness rule has it) within `timeout`. One connection, closed after the status line.
pub async fn answers_get(port: u16, timeout: Duration) -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut start = [0u8; 5];
        stream.read_exact(&mut start).await.ok()?;
        (&start == b"HTTP/").then_some(())
    };
    matches!(tokio::time::timeout(timeout, probe).await, Ok(Some(())))
}

/// Whether the process `pid` holds the socket listening on loopback port `port`, read from
/// `/proc` (Linux): the socket's inode in `/proc/net/tcp` or `tcp6`, among the process's open
/// files. An answer on a port proves nothing by itself: a port found free can be taken by
/// another process before the one meant to use it binds it, and that other process answers.
/// Where `/proc` cannot be read, the answer is taken on trust (`true`).
pub fn listens_on(pid: u32, port: u16) -> bool {
    let mut inodes = Vec::new();
    let mut readable = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        readable = true;
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let listening = *state == "0A";
            let on_port = local
                .rsplit_once(':')
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok())
                == Some(port);
            if listening && on_port {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if !readable {
        return true;
    }
    let Ok(files) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    files.flatten().any(|file| {
        std::fs::read_link(file.path()).is_ok_and(|target| {
            inodes
                .iter()
                .any(|inode| target.as_os_str() == inode.as_str())
        })
    })
}

/// How a [`HandlerProcess`] is started.
#[derive(Debug, Clone)]
pub struct HandlerOptions {
    executable: PathBuf,
    cwd: PathBuf,
    listen: Listen,
    env: Vec<(String, String)>,
    log_filter: Option<String>,
    log_file: Option<PathBuf>,
    probe_interval: Duration,
}

impl HandlerOptions {
    /// The handler cargo built ([`crate::handler_executable`]), in the app root, listening as
    /// `listen` says, with `RUST_LOG=info`, its output kept in memory, probed every 25 ms.
    pub fn new(listen: Listen) -> Self {
        Self {
            executable: crate::handler_executable(),
            cwd: crate::app_root(),
            listen,
            env: Vec::new(),
            log_filter: Some("info".into()),
            log_file: None,
            probe_interval: PROBE_INTERVAL,
        }
    }

    /// Runs another build of the handler.
    pub fn executable(mut self, path: impl Into<PathBuf>) -> Self {
        self.executable = path.into();
        self
    }

    /// The working directory (under the host, the app root).
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = dir.into();
        self
    }

    /// Adds settings; they win over `RUST_LOG` and the listening variables.
    pub fn env<I, K, V>(mut self, settings: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env
            .extend(settings.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// No `RUST_LOG` unless the settings give one: the handler logs with its own default
    /// filter, as a deployment does.
    pub fn default_log_filter(mut self) -> Self {
        self.log_filter = None;
        self
    }

    /// Writes stdout and stderr to `path` (created afresh) instead of keeping them in memory.
    pub fn log_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.log_file = Some(path.into());
        self
    }

    /// Tries `GET /` this often while the handler starts.
    pub fn probe_every(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }
}

/// Where a handler's stdout and stderr go.
enum Output {
    /// Read line by line on threads of their own.
    Memory(Arc<Mutex<String>>),
    File(PathBuf),
}

impl Output {
    fn text(&self) -> String {
        match self {
            Output::Memory(logs) => logs.lock().unwrap().clone(),
            Output::File(path) => std::fs::read_to_string(path).unwrap_or_default(),
        }
    }
}

/// A running handler, its stdout and stderr collected; killed when dropped.
pub struct HandlerProcess {
    child: Child,
    port: u16,
    output: Output,
    spawn_to_ready: Duration,
}

/// A handler that did not answer; `logs` is everything it printed.
struct StartFailure {
    reason: String,
    logs: String,
}

impl HandlerProcess {
    /// Starts the handler in `cwd` with only `PATH`, `HOME`, `RUST_LOG=info` (unless `env`
    /// says otherwise) and `env` in its environment, on a free port, and waits until it answers
    /// `GET /`. A start whose port another process took first is tried again on a new port.
    pub async fn start(cwd: &Path, listen: Listen, env: &[(String, String)]) -> Self {
        Self::start_with(
            HandlerOptions::new(listen)
                .cwd(cwd)
                .env(env.iter().cloned()),
        )
        .await
    }

    /// Starts the handler as `options` say (see [`start`](Self::start)).
    pub async fn start_with(options: HandlerOptions) -> Self {
        let started = crate::port::start_on_a_free_port(
            |port| Self::try_start(&options, port),
            |failure: &StartFailure| crate::port::is_bind_conflict(&failure.logs),
        )
        .await;
        started.unwrap_or_else(|failure| {
            panic!(
                "the handler did not answer: {}\n{}",
                failure.reason, failure.logs
            )
        })
    }

    async fn try_start(options: &HandlerOptions, port: u16) -> Result<Self, StartFailure> {
        let mut command = bare_command(&options.executable, &options.cwd);
        if let Some(filter) = &options.log_filter {
            command.env("RUST_LOG", filter);
        }
        command
            .envs(options.listen.variables(port, &options.cwd))
            .envs(options.env.iter().map(|(k, v)| (k, v)));
        let (output, mut readers) = match &options.log_file {
            Some(path) => {
                let file = std::fs::File::create(path)
                    .unwrap_or_else(|error| panic!("cannot create {}: {error}", path.display()));
                command
                    .stdout(file.try_clone().expect("the log file opens twice"))
                    .stderr(file);
                (Output::File(path.clone()), Vec::new())
            }
            None => {
                command.stdout(Stdio::piped()).stderr(Stdio::piped());
                (Output::Memory(Arc::default()), Vec::new())
            }
        };
        let spawned = Instant::now();
        let mut child = command.spawn().unwrap_or_else(|error| {
            panic!("{} cannot start: {error}", options.executable.display())
        });
        if let Output::Memory(logs) = &output {
            for stream in [
                Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
                Box::new(child.stderr.take().unwrap()),
            ] {
                let logs = logs.clone();
                readers.push(std::thread::spawn(move || {
                    for line in std::io::BufReader::new(stream)
                        .lines()
                        .map_while(Result::ok)
                    {
                        let mut logs = logs.lock().unwrap();
                        logs.push_str(&line);
                        logs.push('\n');
                    }
                }));
            }
        }
        let deadline = spawned + READY_LIMIT;
        let reason = loop {
            // An answer counts only from the handler itself: another process that took the
            // port first answers too, while the handler fails to bind and exits.
            let answered = answers_get(port, PROBE_TIMEOUT).await && listens_on(child.id(), port);
            match child.try_wait() {
                Ok(None) if answered => {
                    return Ok(Self {
                        child,
                        port,
                        output,
                        spawn_to_ready: spawned.elapsed(),
                    })
                }
                Ok(None) if Instant::now() < deadline => {}
                Ok(None) => break format!("no answer on port {port} within {READY_LIMIT:?}"),
                Ok(Some(status)) => break format!("the handler exited ({status})"),
                Err(error) => break format!("the handler's state cannot be read: {error}"),
            }
            tokio::time::sleep(options.probe_interval).await;
        };
        let _ = child.kill();
        let _ = child.wait();
        // The pipes close with the process: the log is complete once the readers end.
        for reader in readers {
            let _ = reader.join();
        }
        Err(StartFailure {
            reason,
            logs: output.text(),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id (for `/proc/<pid>/status`, or a signal of a test's choosing).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// From spawning the process to its first answer to `GET /`.
    pub fn spawn_to_ready(&self) -> Duration {
        self.spawn_to_ready
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Everything the handler printed so far.
    pub fn logs(&self) -> String {
        self.output.text()
    }

    /// Waits until the log contains `needle`; panics with the log after `limit`. The pipes are
    /// read on other threads, so a line printed just before an answer may arrive after it.
    pub async fn wait_for_log(&self, needle: &str, limit: Duration) {
        let what = format!("{needle:?} in the handler's log");
        crate::poll::until(&what, limit, async || self.logs().contains(needle)).await;
    }
}

impl Drop for HandlerProcess {
    /// SIGKILL, as the host ends a handler.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
