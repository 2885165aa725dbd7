//! An Azurite of the test's own, blob and queue service, in one of two forms:
//! - on disk ([`OwnAzurite::start`]), started by `scripts/azurite.sh` like the one `make test`
//!   starts; the test may stop it and start it again, on the same ports with the same data, to
//!   show what the handler does while storage is away;
//! - in memory ([`OwnAzurite::in_memory`]), for the benchmark. Azurite gets slower with every
//!   blob it holds: its metadata store looks a blob up by scanning, and on disk it also rewrites
//!   its whole metadata database, one JSON file, every few seconds. In memory there is no such
//!   rewrite, and a fresh one per benchmark phase holds only that phase's blobs. Azurite refuses
//!   `--inMemoryPersistence` beside the `--location` the script always gives, so this form is
//!   started here, with the script's other flags.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use summary_womble::store::azure::AzureBlobStore;
use summary_womble::store::BlobStore as _;

use super::{account_connection_string, Container, Queue, ACCOUNT};

/// How long Azurite may take to answer after it was started.
const START_LIMIT: Duration = Duration::from_secs(30);

/// An Azurite of the test's own; stopped when dropped.
pub struct OwnAzurite {
    port: u16,
    /// Chosen by the first start, kept by later ones.
    queue_port: OnceLock<u16>,
    form: Form,
}

enum Form {
    /// `scripts/azurite.sh` with its state and data in `state`.
    OnDisk { state: tempfile::TempDir },
    /// The blob and the queue service, started here.
    InMemory { services: Vec<Child> },
}

impl OwnAzurite {
    /// Starts it on disk, on a port of its own (another, when a process takes the first
    /// meanwhile).
    pub async fn start() -> Self {
        let started = crate::port::start_on_a_free_port(
            |port| async move {
                let azurite = Self {
                    port,
                    queue_port: OnceLock::new(),
                    form: Form::OnDisk {
                        state: tempfile::tempdir().unwrap(),
                    },
                };
                azurite.script("start")?;
                let Form::OnDisk { state } = &azurite.form else {
                    unreachable!("started on disk")
                };
                let chosen = std::fs::read_to_string(state.path().join("azurite-queue.port"))
                    .ok()
                    .and_then(|port| port.trim().parse().ok())
                    .expect("azurite.sh names the queue port it started on");
                azurite.queue_port.set(chosen).expect("set once");
                Ok(azurite)
            },
            |failure: &String| crate::port::is_bind_conflict(failure),
        )
        .await;
        started.unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// Starts it in memory, each service on a port of its own, with its logs
    /// (`azurite-blob.log`, `azurite-queue.log`) and Azurite's configuration file in `files`.
    /// It cannot go [`down`](Self::down) and [`up`](Self::up) again: its data would be lost.
    pub async fn in_memory(files: &Path) -> Self {
        std::fs::create_dir_all(files)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", files.display()));
        let (blob, port) = start_in_memory("blob", files).await;
        let (queue, queue_port) = start_in_memory("queue", files).await;
        Self {
            port,
            queue_port: OnceLock::from(queue_port),
            form: Form::InMemory {
                services: vec![blob, queue],
            },
        }
    }

    /// Runs `scripts/azurite.sh <action>`; `Err` holds what it printed.
    fn script(&self, action: &str) -> Result<(), String> {
        let Form::OnDisk { state } = &self.form else {
            panic!("an in-memory Azurite cannot stop and start again: its data would be lost");
        };
        let mut command = Command::new(crate::app_root().join("scripts/azurite.sh"));
        command
            .arg(action)
            .arg(state.path())
            .env("AZURITE_BLOB_PORT", self.port.to_string())
            .env_remove("AZURITE_QUEUE_PORT");
        if let Some(queue_port) = self.queue_port.get() {
            command.env("AZURITE_QUEUE_PORT", queue_port.to_string());
        }
        let output = command.output().expect("scripts/azurite.sh runs");
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "azurite.sh {action} failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// Starts it again, on the same port with the same data.
    pub fn up(&self) {
        self.script("start")
            .unwrap_or_else(|failure| panic!("{failure}"));
    }

    pub fn down(&self) {
        self.script("stop")
            .unwrap_or_else(|failure| panic!("{failure}"));
    }

    /// Names both services, as the one `make test` exports does.
    pub fn connection_string(&self) -> String {
        let queue_port = *self.queue_port.get().expect("started");
        account_connection_string(Some(self.port), Some(queue_port))
    }

    /// Every queue on this Azurite, by name.
    pub async fn queue_names(&self) -> Vec<String> {
        super::queue_names(&self.connection_string()).await
    }

    /// A queue on this Azurite, created.
    pub async fn queue(&self) -> Queue {
        Queue::fresh_at(&self.connection_string()).await
    }

    /// A container on this Azurite, created.
    pub async fn container(&self) -> Container {
        let name = format!("t-{}", uuid::Uuid::new_v4().simple());
        let store =
            AzureBlobStore::from_connection_string(&self.connection_string(), &name).unwrap();
        store.ensure_container().await.expect("own Azurite answers");
        Container {
            name,
            store: Arc::new(store),
            connection_string: self.connection_string(),
        }
    }
}

impl Drop for OwnAzurite {
    fn drop(&mut self) {
        match &mut self.form {
            // Stopping is best effort here: a panic while unwinding would abort the test run.
            Form::OnDisk { .. } => {
                let _ = self.script("stop");
            }
            Form::InMemory { services } => {
                for service in services {
                    let _ = service.kill();
                    let _ = service.wait();
                }
            }
        }
    }
}

/// Starts one service (`blob` or `queue`) in memory on a free port, and again on another when
/// a process takes the port first.
async fn start_in_memory(service: &str, files: &Path) -> (Child, u16) {
    let started = crate::port::start_on_a_free_port(
        |port| async move {
            launch_in_memory(service, port, files)
                .await
                .map(|child| (child, port))
        },
        |failure: &String| crate::port::is_bind_conflict(failure),
    )
    .await;
    started.unwrap_or_else(|failure| panic!("{failure}"))
}

/// Starts Azurite's `service` in memory on `port` and waits until Azurite itself answers
/// there. `Err` says why not, with its log.
async fn launch_in_memory(service: &str, port: u16, files: &Path) -> Result<Child, String> {
    let program = crate::app_root().join(format!("node_modules/.bin/azurite-{service}"));
    assert!(
        program.exists(),
        "{} is missing: `make test` and `make bench` install it (npm ci)",
        program.display()
    );
    let log_path = files.join(format!("azurite-{service}.log"));
    let log = std::fs::File::create(&log_path)
        .unwrap_or_else(|error| panic!("cannot create {}: {error}", log_path.display()));
    let mut child = Command::new(&program)
        .arg(format!("--{service}Host"))
        .arg("127.0.0.1")
        .arg(format!("--{service}Port"))
        .arg(port.to_string())
        // As scripts/azurite.sh: the SDK's x-ms-version may be newer than Azurite's, and
        // headers Azurite does not implement are accepted instead of failing the request.
        .args([
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--loose",
            "--silent",
        ])
        .arg("--disableTelemetry")
        // In memory it keeps nothing on disk but its configuration file, in its cwd.
        .current_dir(files)
        // The well-known account only.
        .env_remove("AZURITE_ACCOUNTS")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("the log file opens twice"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "cannot start {} (is Node.js installed?): {error}",
                program.display()
            )
        });
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("the HTTP client builds");
    let url = format!("http://127.0.0.1:{port}/{ACCOUNT}?comp=list");
    let deadline = Instant::now() + START_LIMIT;
    loop {
        // Azurite's own answer (its `Server` header says so), not another process's that
        // holds the port while Azurite starts.
        let answered = client.get(&url).send().await.is_ok_and(|answer| {
            answer
                .headers()
                .get("server")
                .and_then(|server| server.to_str().ok())
                .is_some_and(|server| server.to_ascii_lowercase().starts_with("azurite"))
        });
        // An answer counts only while Azurite runs: one that exited lost its port to whoever
        // answered.
        match child.try_wait() {
            Ok(None) if answered => return Ok(child),
            Ok(None) if Instant::now() < deadline => {}
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "Azurite's {service} service did not answer on 127.0.0.1:{port} within \
                     {START_LIMIT:?}; its log:\n{}",
                    log()
                ));
            }
            Ok(Some(status)) => {
                return Err(format!(
                    "Azurite's {service} service exited during start ({status}); its log:\n{}",
                    log()
                ))
            }
            Err(error) => panic!("Azurite's state cannot be read: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
