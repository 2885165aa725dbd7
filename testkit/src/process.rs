//! The handler as a plain process, started directly with the settings a test chooses (no
//! host simulator in front): for standalone mode, and for tests of what the handler does at
//! start under the host's variables.

use std::io::BufRead as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a handler may take to answer its first `GET /`.
const READY_LIMIT: Duration = Duration::from_secs(30);

/// Which variable tells the handler its port.
#[derive(Debug, Clone, Copy)]
pub enum Listen {
    /// `PORT`: standalone mode (on loopback without `FUNCTION_KEYS`, on every interface with
    /// them, unless `BIND_ADDRESS` says otherwise).
    Standalone,
    /// `FUNCTIONS_CUSTOMHANDLER_PORT`: host mode, on loopback.
    Host,
}

impl Listen {
    fn variable(self) -> &'static str {
        match self {
            Listen::Standalone => "PORT",
            Listen::Host => "FUNCTIONS_CUSTOMHANDLER_PORT",
        }
    }
}

/// A running handler, its stdout and stderr collected; killed when dropped.
pub struct HandlerProcess {
    child: std::process::Child,
    port: u16,
    logs: Arc<Mutex<String>>,
}

/// A handler that did not answer; `logs` is everything it printed.
struct StartFailure {
    reason: String,
    logs: String,
}

impl HandlerProcess {
    /// Starts the handler in `cwd` with only `PATH`, `RUST_LOG=info` (unless `env` says
    /// otherwise) and `env` in its environment, on a free port, and waits until it answers
    /// `GET /`. A start whose port another process took first is tried again on a new port.
    pub async fn start(cwd: &Path, listen: Listen, env: &[(String, String)]) -> Self {
        let started = crate::port::start_on_a_free_port(
            |port| Self::try_start(cwd, listen, port, env),
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

    async fn try_start(
        cwd: &Path,
        listen: Listen,
        port: u16,
        env: &[(String, String)],
    ) -> Result<Self, StartFailure> {
        let mut child = std::process::Command::new(crate::handler_executable())
            .current_dir(cwd)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env(listen.variable(), port.to_string())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the handler starts");
        let logs = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
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
        let url = format!("http://127.0.0.1:{port}/");
        let deadline = Instant::now() + READY_LIMIT;
        let reason = loop {
            let answered = reqwest::get(&url).await.is_ok();
            // An answer counts only while the handler runs: a handler that exited lost its
            // port to whoever answered.
            match child.try_wait() {
                Ok(None) if answered => return Ok(Self { child, port, logs }),
                Ok(None) if Instant::now() < deadline => {}
                Ok(None) => break format!("no answer on port {port} within {READY_LIMIT:?}"),
                Ok(Some(status)) => break format!("the handler exited ({status})"),
                Err(error) => break format!("the handler's state cannot be read: {error}"),
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        let _ = child.kill();
        let _ = child.wait();
        // The pipes close with the process: the log is complete once the readers end.
        for reader in readers {
            let _ = reader.join();
        }
        let logs = logs.lock().unwrap().clone();
        Err(StartFailure { reason, logs })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`; panics with the log after `limit`. The pipes are
    /// read on other threads, so a line printed just before an answer may arrive after it.
    pub async fn wait_for_log(&self, needle: &str, limit: Duration) {
        let what = format!("{needle:?} in the handler's log");
        crate::poll::until(&what, limit, async || self.logs().contains(needle)).await;
    }
}

impl Drop for HandlerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
