//! What SummaryWomble's tests and benchmark stand on. A dev-only crate: nothing here ships
//! (`.funcignore` keeps it out of the deployment package).
//!
//! Layout:
//! - [`host`]: the Azure Functions host, simulated: it starts the built `handler` as the host
//!   does and sends it calls, forwarded or as envelopes, and runs the queue listener of queue
//!   functions against Azurite. Its parts have modules of their own under `host/`: the function
//!   app on disk (`app_model`), the host log (`logs`), the handler process (`supervisor`),
//!   routes and keys (`routing`), requests and forwarded calls (`transport`), the envelope form
//!   (`envelope`) and the queue listener (`queue_listener`).
//! - [`app`]: a whole app under test ([`app::TestApp`]: the handler under the host simulator,
//!   a fresh Azurite container and a fake Reddit; [`app::StandaloneApp`]: the handler without
//!   a host).
//! - [`process`]: the handler as a plain process with the settings a test chooses (the
//!   benchmark's too: another build, a log file, a finer probe), and the environment and
//!   readiness probe the host simulator starts its handler with.
//! - [`in_process`]: the app inside the test's own process, on a local-directory store and a
//!   scripted source of topics, for tests that need no process of their own.
//! - [`fake_reddit`]: a local Reddit that answers as the real one does, and can hold a listing
//!   until the test releases it.
//! - [`azurite`]: the Azurite container and queues a test runs against, or an Azurite of its own
//!   (on disk, or in memory for the benchmark); the development account and its key.
//! - [`status`]: a job's status document as stored: its blob name, reading it, waiting for its
//!   end.
//! - [`gate`]: the public front door of a Function App (the function-key check).
//! - [`key_vault`]: a Key Vault secrets endpoint and managed-identity token endpoint.
//! - [`public`]: the app's public address in front of the host simulator (the dashboard's).
//! - [`storage_proxy`]: a proxy in front of Azurite's blob service that counts requests and can
//!   answer some itself, as storage in trouble does.
//! - [`browser`]: a headless Chromium driven over WebDriver, for the dashboard.
//! - [`port`]: loopback ports without races: bound listeners handed over, starts retried on a
//!   bind conflict.
//! - [`hold`]: a gate a fake keeps a request at until the test opens it.
//! - [`poll`]: waiting for a condition with a deadline.
//! - [`docs`]: the settings the handler reads, found in its source, for the documentation's
//!   checks.

#![forbid(unsafe_code)]

pub mod app;
pub mod azurite;
pub mod browser;
pub mod docs;
pub mod fake_reddit;
pub mod gate;
pub mod hold;
pub mod host;
pub mod in_process;
pub mod key_vault;
pub mod poll;
pub mod port;
pub mod process;
pub mod public;
pub mod status;
pub mod storage_proxy;

use std::path::{Path, PathBuf};

/// How the app under test runs jobs. The black-box suites of the job API, durability and the
/// timer run once with each: `make test` runs them a second time with `TEST_JOB_DISPATCH=queue`,
/// and every app they start then uses queue dispatch on a queue of its own
/// ([`azurite::Container::env`]), with the host simulator's queue listener delivering its
/// messages ([`app::TestApp`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    Inline,
    Queue,
}

impl Dispatch {
    /// The dispatch this test run is about: `TEST_JOB_DISPATCH` (`inline` by default).
    pub fn under_test() -> Self {
        match std::env::var("TEST_JOB_DISPATCH").as_deref() {
            Ok("queue") => Dispatch::Queue,
            Ok("inline") | Err(_) => Dispatch::Inline,
            Ok(other) => panic!("TEST_JOB_DISPATCH={other:?}: expected inline or queue"),
        }
    }
}

/// The app root: the repository folder holding `host.json` and the function folders (this
/// crate lives in its `testkit/` folder).
pub fn app_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ lies inside the app root")
        .to_path_buf()
}

/// The `handler` executable cargo built for the running test or benchmark: cargo builds a
/// package's binaries before its integration tests and benchmarks, into the folder above the
/// test binary's `deps/` (`target/debug` for tests, `target/release` for `cargo bench`).
pub fn handler_executable() -> PathBuf {
    let test_binary = std::env::current_exe().expect("the running test binary has a path");
    let profile_dir = test_binary
        .parent()
        .and_then(Path::parent)
        .expect("a test binary lies in <target>/<profile>/deps");
    let handler = profile_dir.join(format!("handler{}", std::env::consts::EXE_SUFFIX));
    assert!(
        handler.is_file(),
        "{} is missing: build it with `cargo build --bins` (cargo test and cargo bench do)",
        handler.display()
    );
    handler
}
