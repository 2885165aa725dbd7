//! The handler process under the host: started with the host's environment and probed until
//! it answers, restarted after an exit as the host restarts it (an exit code other than 0; 200
//! is an intentional restart and does not count as a failure; three failures within 30 minutes
//! stop the host; an exit with 0 stays down), killed as a scale-in kills it.

use std::fmt;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::logs::{drain, HostLog, LogSource};
use crate::process::Listen;

/// How often the host probes `GET /` while a handler starts.
const PROBE_INTERVAL: Duration = Duration::from_millis(25);
/// How long one probe may wait for its answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The exit code a handler uses to ask for a restart; it does not count as a failure.
const RESTART_EXIT_CODE: i32 = 200;
/// Three failures within this window stop the whole host.
const FAILURE_WINDOW: Duration = Duration::from_secs(30 * 60);
const FAILURES_THAT_STOP_THE_HOST: usize = 3;

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

/// Everything needed to start a handler process; shared by the first start and restarts.
pub(super) struct Launcher {
    pub(super) executable: PathBuf,
    pub(super) arguments: Vec<String>,
    pub(super) working_directory: PathBuf,
    pub(super) app_root: PathBuf,
    /// The app settings.
    pub(super) env: Vec<(String, String)>,
    pub(super) readiness_timeout: Duration,
    pub(super) log: HostLog,
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
        let mut command = crate::process::bare_command(&self.executable, &self.working_directory);
        command
            .args(&self.arguments)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            // The host's own variables win over the app settings.
            .envs(Listen::Host.variables(port, &self.app_root))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command.spawn()
    }

    /// `GET /` every 25 ms until any HTTP answer. Fails when the process exits first or the
    /// time runs out.
    async fn probe(&self, port: u16, child: &mut Child) -> Result<(), String> {
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
            // An answer counts only from the handler itself: another process that took the
            // port first answers too, while the handler fails to bind and exits (the loop then
            // sees the exit, and the start is tried on another port).
            if crate::process::answers_get(port, remaining.min(PROBE_TIMEOUT)).await
                && crate::process::listens_on(child.id(), port)
            {
                return Ok(());
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }
}

/// The current handler process and what the host remembers about past ones.
struct Worker {
    child: Child,
    readers: Vec<JoinHandle<()>>,
    /// Killed by [`Supervisor::kill`]: stays down until [`Supervisor::restart`].
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

/// The handler process of one host instance, and what the host remembers about past ones.
pub(super) struct Supervisor {
    launcher: Launcher,
    worker: tokio::sync::Mutex<Worker>,
    /// Shared with the queue listener, which invokes whichever handler runs.
    port: Arc<AtomicU16>,
    pid: AtomicU32,
    startup_time: Mutex<Duration>,
    restarts: AtomicUsize,
}

impl Supervisor {
    /// Starts the first handler and waits until it answers.
    pub(super) async fn start(launcher: Launcher) -> Result<Self, StartFailure> {
        let booted = launcher.boot().await?;
        Ok(Self {
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
        })
    }

    /// The host log.
    pub(super) fn log(&self) -> &HostLog {
        &self.launcher.log
    }

    /// The app settings the handler runs with.
    pub(super) fn app_settings(&self) -> &[(String, String)] {
        &self.launcher.env
    }

    /// The port the current handler listens on.
    pub(super) fn port(&self) -> u16 {
        self.port.load(Ordering::SeqCst)
    }

    /// The port, as it changes with each new handler.
    pub(super) fn shared_port(&self) -> Arc<AtomicU16> {
        self.port.clone()
    }

    pub(super) fn pid(&self) -> u32 {
        self.pid.load(Ordering::SeqCst)
    }

    pub(super) fn startup_time(&self) -> Duration {
        *self.startup_time.lock().expect("startup time lock")
    }

    pub(super) fn restarts(&self) -> usize {
        self.restarts.load(Ordering::SeqCst)
    }

    /// SIGKILL; the handler stays down until [`restart`](Self::restart).
    pub(super) fn kill(&mut self) {
        let worker = self.worker.get_mut();
        worker.terminate();
        worker.killed = true;
        self.launcher.log.host("killed the handler (SIGKILL)");
    }

    /// Kills the current handler if it still runs and starts a new one on a new port.
    pub(super) async fn restart(&mut self) -> Result<(), StartFailure> {
        self.worker.get_mut().terminate();
        self.launcher.log.host("restarting the handler");
        let booted = self.launcher.boot().await?;
        let mut worker = self.worker.lock().await;
        self.install(&mut worker, booted);
        worker.killed = false;
        worker.stopped = None;
        Ok(())
    }

    /// Kills the handler for good (the host is going away).
    pub(super) fn terminate(&mut self) {
        self.worker.get_mut().terminate();
    }

    /// The handler's exit status, when it has exited.
    pub(super) fn exit_status(&mut self) -> Option<ExitStatus> {
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
    pub(super) async fn ensure_running(&self) -> Result<u16, String> {
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
}
