//! The command line of the `handler` executable, run as a person would run it, against a real
//! handler in standalone mode (Azurite and a fake Reddit behind it); and the deployment
//! package that ships the same executable.
//!
//! Every run here has stdout on a pipe, not a terminal, so progress comes as plain lines.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use testkit::app::StandaloneApp;
use testkit::azurite::Container;
use testkit::fake_reddit::{Behaviour, FakeReddit};
use testkit::hold::Hold;
use testkit::port::ClosedPort;

const HANDLER: &str = env!("CARGO_BIN_EXE_handler");
/// Longer than any job here takes; a hang fails the test instead of stalling the suite.
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// One finished run of `handler`.
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// `handler <args>` with the client settings of the test's environment removed.
fn command(args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(HANDLER);
    command
        .args(args)
        .env_remove("WOMBLE_URL")
        .env_remove("WOMBLE_KEY")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

async fn finish(command: &mut tokio::process::Command) -> Run {
    let output = tokio::time::timeout(RUN_LIMIT, command.output())
        .await
        .expect("handler finished in time")
        .expect("handler runs");
    Run {
        code: output.status.code().expect("handler exited, not killed"),
        stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
    }
}

pub(crate) async fn handler(args: &[&str]) -> Run {
    finish(&mut command(args)).await
}

/// Runs `handler <args>` and releases `hold` once a line of its stdout contains `cue`.
async fn run_releasing_at(args: &[&str], cue: &str, hold: &Hold) -> Run {
    use tokio::io::AsyncReadExt as _;
    let mut child = command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("handler starts");
    let mut stderr = child.stderr.take().unwrap();
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        stderr.read_to_string(&mut text).await.map(|_| text)
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    while let Some(line) = tokio::time::timeout(RUN_LIMIT, lines.next_line())
        .await
        .expect("output in time")
        .unwrap()
    {
        if line.contains(cue) {
            hold.release();
        }
        stdout.push_str(&line);
        stdout.push('\n');
    }
    let status = tokio::time::timeout(RUN_LIMIT, child.wait())
        .await
        .expect("handler finished in time")
        .unwrap();
    Run {
        code: status.code().expect("handler exited, not killed"),
        stdout,
        stderr: stderr.await.unwrap().expect("utf-8 stderr"),
    }
}

/// A standalone handler whose Reddit is `reddit` (its settings win over the app's own fake).
async fn app_with(reddit: &FakeReddit) -> StandaloneApp {
    let env = reddit.env();
    StandaloneApp::start(env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()).await
}

/// The job id in the ticket line `job <id> queued: ...`.
fn job_id_of(ticket_line: &str) -> String {
    let id = ticket_line
        .strip_prefix("job ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("not a ticket line: {ticket_line:?}"));
    assert_eq!(id.len(), 36, "{ticket_line:?}");
    id.to_owned()
}

/// The plain progress lines (`running 1/2 processing r/x`) of an output.
fn progress_lines(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|line| {
            let mut words = line.split_whitespace();
            let status = words.next().unwrap_or("");
            let count = words.next().unwrap_or("");
            ["queued", "running", "completed", "failed", "cancelled"].contains(&status)
                && count.split_once('/').is_some_and(|(done, total)| {
                    done.parse::<u32>().is_ok() && total.parse::<u32>().is_ok()
                })
        })
        .collect()
}

fn assert_no_terminal_control(run: &Run) {
    assert!(
        !run.stdout.contains('\u{1b}') && !run.stdout.contains('\r'),
        "a bar was drawn into a pipe:\n{run}"
    );
}

#[tokio::test]
async fn submit_with_wait_exits_0_and_shows_the_results_when_the_job_completes() {
    let app = StandaloneApp::start(vec![]).await;
    let base = app.url("");
    let run = handler(&[
        "--url",
        &base,
        "submit",
        "--topics",
        "technology,gadgets",
        "--limit",
        "2",
        "--wait",
    ])
    .await;
    assert_eq!(run.code, 0, "{run}\nhandler log:\n{}", app.logs());
    assert_no_terminal_control(&run);
    let mut lines = run.stdout.lines();
    let ticket = lines.next().unwrap();
    assert!(
        ticket.ends_with(" queued: r/technology r/gadgets, limit 2"),
        "{run}"
    );
    let id = job_id_of(ticket);
    assert_eq!(
        progress_lines(&run.stdout).last(),
        Some(&"completed 2/2 finished"),
        "{run}"
    );
    assert!(
        run.stdout.contains(&format!("job {id} completed in "))
            && run.stdout.contains(": 2 of 2 subreddits, 4 topics"),
        "{run}"
    );
    for subreddit in ["technology", "gadgets"] {
        let row = run
            .stdout
            .lines()
            .find(|line| line.starts_with(&format!("{subreddit} ")))
            .unwrap_or_else(|| panic!("no row for {subreddit}:\n{run}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[1..3], ["success", "2"], "{row}");
        assert!(
            cells[3].ends_with(&format!("_reddit_{subreddit}.json")),
            "{row}"
        );
    }

    // The finished job's status: exit 0, and with --json exactly the stored document.
    let status = handler(&["--url", &base, "status", &id]).await;
    assert_eq!(status.code, 0, "{status}");
    assert!(status.stdout.contains("status    completed"), "{status}");
    let status = handler(&["--url", &base, "--json", "status", &id]).await;
    let printed: Value = serde_json::from_str(status.stdout.trim()).expect("one JSON document");
    let stored = app.container.stored_status(&id).await.unwrap();
    assert_eq!(printed, stored);
}

#[tokio::test]
async fn submit_with_wait_exits_1_when_every_subreddit_fails() {
    let reddit = FakeReddit::start().await;
    reddit.set("closedone", Behaviour::Private);
    reddit.set("closedtwo", Behaviour::Private);
    let app = app_with(&reddit).await;
    let run = handler(&[
        "--url",
        &app.url(""),
        "submit",
        "--topics",
        "closedone,closedtwo",
        "--wait",
    ])
    .await;
    assert_eq!(run.code, 1, "{run}\nhandler log:\n{}", app.logs());
    assert!(run.stdout.contains(" failed in "), "{run}");
    assert!(run.stdout.contains("error: "), "{run}");
    for subreddit in ["closedone", "closedtwo"] {
        assert!(
            run.stdout.lines().any(|line| line.starts_with(subreddit)
                && line.contains("fetch_failed")
                && line.contains(&format!("r/{subreddit} is private (HTTP 403)"))),
            "{run}"
        );
    }
}

#[tokio::test]
async fn submit_with_wait_exits_2_when_another_process_cancels_the_job() {
    let reddit = FakeReddit::start().await;
    // Held until the cancel has been asked for.
    let hold = reddit.hold(&["slowone", "slowtwo"]);
    let app = app_with(&reddit).await;
    let base = app.url("");

    let mut waiting = command(&[
        "--url",
        &base,
        "submit",
        "--topics",
        "slowone,slowtwo",
        "--wait",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("handler starts");
    let mut lines = BufReader::new(waiting.stdout.take().unwrap()).lines();
    let ticket = tokio::time::timeout(RUN_LIMIT, lines.next_line())
        .await
        .expect("a ticket in time")
        .unwrap()
        .expect("a ticket line");
    let id = job_id_of(&ticket);

    let cancel = handler(&["--url", &base, "cancel", &id]).await;
    assert_eq!(cancel.code, 0, "{cancel}");
    assert!(
        cancel
            .stdout
            .starts_with(&format!("cancel requested: job {id}"))
            || cancel.stdout.starts_with(&format!("job {id} cancelled")),
        "{cancel}"
    );
    hold.release();

    let mut rest = String::new();
    while let Some(line) = tokio::time::timeout(RUN_LIMIT, lines.next_line())
        .await
        .expect("output in time")
        .unwrap()
    {
        rest.push_str(&line);
        rest.push('\n');
    }
    let status = waiting.wait().await.unwrap();
    assert_eq!(status.code(), Some(2), "{ticket}\n{rest}");
    assert!(rest.contains(&format!("job {id} cancelled")), "{rest}");
    let stored = app.container.stored_status(&id).await.unwrap();
    assert_eq!(stored["status"], "cancelled");
}

#[tokio::test]
async fn watch_prints_one_plain_line_per_change_when_stdout_is_not_a_terminal() {
    let reddit = FakeReddit::start().await;
    let hold = reddit.hold(&["slowone"]);
    let app = app_with(&reddit).await;
    let ticket: Value = reqwest::Client::new()
        .post(app.url("/api/SummaryWomble"))
        .json(&json!({"topics": ["quickone", "slowone"], "limit": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = ticket["job_id"].as_str().unwrap();

    // r/slowone is held until the watch has shown the job waiting for it.
    let run = run_releasing_at(
        &["--url", &app.url(""), "watch", id],
        "running 1/2 processing r/slowone",
        &hold,
    )
    .await;
    assert_eq!(run.code, 0, "{run}");
    assert_no_terminal_control(&run);
    let progress = progress_lines(&run.stdout);
    assert!(
        progress.contains(&"running 1/2 processing r/slowone"),
        "{run}"
    );
    assert_eq!(progress.last(), Some(&"completed 2/2 finished"), "{run}");
    for pair in progress.windows(2) {
        assert_ne!(pair[0], pair[1], "a line without a change:\n{run}");
    }
    assert!(
        run.stdout.contains(&format!("job {id} completed in ")),
        "{run}"
    );
}

#[tokio::test]
async fn list_shows_the_jobs_newest_first_and_pages_with_a_continuation() {
    let app = StandaloneApp::start(vec![]).await;
    let base = app.url("");
    let mut ids = Vec::new();
    for topic in ["technology", "gadgets"] {
        let run = handler(&["--url", &base, "submit", "--topics", topic, "--limit", "1"]).await;
        assert_eq!(run.code, 0, "{run}");
        ids.push(job_id_of(run.stdout.lines().next().unwrap()));
    }

    let run = handler(&["--url", &base, "list"]).await;
    assert_eq!(run.code, 0, "{run}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("JOB"), "{run}");
    assert!(lines[1].starts_with(&ids[1]), "newest first:\n{run}");
    assert!(lines[2].starts_with(&ids[0]), "{run}");

    let run = handler(&["--url", &base, "--json", "list", "--top", "1"]).await;
    assert_eq!(run.code, 0, "{run}");
    let page: Value = serde_json::from_str(run.stdout.trim()).expect("one JSON document");
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(page["jobs"][0]["job_id"], ids[1].as_str());
    let token = page["continuation"].as_str().expect("a continuation token");

    let run = handler(&[
        "--url",
        &base,
        "list",
        "--top",
        "1",
        "--continuation",
        token,
    ])
    .await;
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stdout.contains(&ids[0]) && !run.stdout.contains(&ids[1]),
        "{run}"
    );
}

#[tokio::test]
async fn cancel_of_a_finished_or_unknown_job_is_refused_with_exit_3() {
    let app = StandaloneApp::start(vec![]).await;
    let base = app.url("");
    let run = handler(&[
        "--url",
        &base,
        "submit",
        "--topics",
        "technology",
        "--limit",
        "1",
        "--wait",
    ])
    .await;
    assert_eq!(run.code, 0, "{run}");
    let id = job_id_of(run.stdout.lines().next().unwrap());

    let run = handler(&["--url", &base, "cancel", &id]).await;
    assert_eq!(run.code, 3, "{run}");
    assert!(run.stderr.contains("(HTTP 409)"), "{run}");
    let run = handler(&[
        "--url",
        &base,
        "cancel",
        "6ce324a8-0502-4b0c-b729-12e10f0f22f6",
    ])
    .await;
    assert_eq!(run.code, 3, "{run}");
    assert!(run.stderr.contains("(HTTP 404)"), "{run}");
}

#[tokio::test]
async fn a_missing_function_key_is_reported_with_exit_3_and_the_key_option_gets_through() {
    let app = StandaloneApp::start(vec![("FUNCTION_KEYS", "sesame")]).await;
    let base = app.url("");
    let run = handler(&["--url", &base, "list"]).await;
    assert_eq!(run.code, 3, "{run}");
    assert!(
        run.stderr.contains("(HTTP 401)") && run.stderr.contains("WOMBLE_KEY"),
        "{run}"
    );
    let run = finish(command(&["--url", &base, "list"]).env("WOMBLE_KEY", "sesame")).await;
    assert_eq!(run.code, 0, "{run}");
    let run = handler(&["--url", &base, "--key", "sesame", "list"]).await;
    assert_eq!(run.code, 0, "{run}");
}

#[test]
fn bad_flags_print_usage_and_exit_3_without_calling_anything() {
    for args in [
        &["submit", "--limit", "abc"][..],
        &["submit", "--limit", "0"],
        &["submit", "--topics", "no spaces allowed"],
        &["submit", "--priority", "urgent"],
        &["submit", "--bogus"],
        &["watch"],
        &["status", "not-a-job-id"],
        &["list", "--top", "500"],
        &["list", "--status", "done"],
        &["frobnicate"],
    ] {
        let output = std::process::Command::new(HANDLER)
            .args(args)
            // Nothing may be called: a call here would fail differently.
            .args(["--url", "http://127.0.0.1:9"])
            .env_remove("WOMBLE_URL")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(3), "{args:?}: {stderr}");
        assert!(stderr.contains("Usage: handler"), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    let help = std::process::Command::new(HANDLER)
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage: handler"));
}

#[tokio::test]
async fn nothing_listening_at_the_url_exits_3_with_the_reason() {
    // Bound by this test but not listening: refused, and no one else can take it meanwhile.
    let closed = ClosedPort::new();
    let base = format!("http://127.0.0.1:{}", closed.port());
    for args in [
        &["status", "6ce324a8-0502-4b0c-b729-12e10f0f22f6"][..],
        &["submit", "--wait"],
        &["list"],
    ] {
        let mut all = vec!["--url", base.as_str()];
        all.extend_from_slice(args);
        let run = handler(&all).await;
        assert_eq!(run.code, 3, "{args:?}: {run}");
        assert!(
            run.stderr
                .contains(&format!("cannot reach {base}/api/SummaryWomble")),
            "{args:?}: {run}"
        );
        assert!(run.stderr.contains("refused"), "{args:?}: {run}");
    }
}

#[tokio::test]
async fn collect_runs_one_job_in_process_against_the_configured_storage() {
    let container = Container::fresh().await;
    let reddit = FakeReddit::start().await;
    reddit.set("closedsub", Behaviour::Private);
    let run = finish(
        command(&[
            "collect",
            "--topics",
            "technology,closedsub",
            "--limit",
            "3",
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(container.env())
        .envs(reddit.env()),
    )
    .await;
    assert_eq!(run.code, 0, "{run}");
    assert_no_terminal_control(&run);
    let first = run.stdout.lines().next().unwrap();
    let id = first
        .strip_prefix("collecting in this process: job ")
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("{run}"));
    assert!(
        run.stdout.contains(&format!("job {id} completed in "))
            && run.stdout.contains(": 1 of 2 subreddits, 3 topics"),
        "{run}"
    );
    assert!(
        run.stdout.contains("r/closedsub is private (HTTP 403)"),
        "{run}"
    );

    let stored = container
        .stored_status(id)
        .await
        .expect("the job is in the configured storage");
    assert_eq!(stored["status"], "completed");
    let blob = stored["results"]["results"][0]["blob_name"]
        .as_str()
        .unwrap()
        .to_owned();
    let topics = container.read_json(&blob).await.expect("the topics blob");
    assert_eq!(topics["count"], 3);
}

#[test]
fn collect_with_an_invalid_setting_names_it_and_exits_3() {
    let output = std::process::Command::new(HANDLER)
        .arg("collect")
        .env_clear()
        .env("MAX_CONCURRENT_JOBS", "many")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("MAX_CONCURRENT_JOBS"), "{stderr}");
}

// The deployment package: scripts/package.sh, with the handler handed in (PACKAGE_HANDLER) so
// no release build is needed.

/// One entry of a zip: its name and the Unix mode in its external attributes.
#[derive(Debug, PartialEq)]
struct Entry {
    name: String,
    mode: u32,
    size: u64,
}

/// The entries of a zip, read with Python's zipfile (what a second implementation sees).
fn zip_entries(zip: &Path) -> Vec<Entry> {
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\n\
             for i in zipfile.ZipFile(sys.argv[1]).infolist():\n\
             \x20   print(i.external_attr >> 16, i.file_size, i.filename)",
        ])
        .arg(zip)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            Entry {
                mode: parts.next().unwrap().parse().unwrap(),
                size: parts.next().unwrap().parse().unwrap(),
                name: parts.next().unwrap().to_owned(),
            }
        })
        .collect()
}

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// How scripts/package.sh is run: an app root, the handler handed in, where the zip goes.
struct Packaging<'a> {
    root: &'a Path,
    handler: &'a Path,
    out: &'a Path,
    /// `zip`, `python3`, or empty for the script's own choice.
    zipper: &'a str,
    allow_strays: bool,
    /// Package a handler that needs a newer glibc than the package promises (a debug build).
    allow_newer_glibc: bool,
}

impl Packaging<'_> {
    fn run(&self) -> std::process::Output {
        std::process::Command::new(repository().join("scripts/package.sh"))
            .env("PACKAGE_ROOT", self.root)
            .env("PACKAGE_HANDLER", self.handler)
            .env("PACKAGE_OUT", self.out)
            .env("PACKAGE_ZIPPER", self.zipper)
            .env(
                "PACKAGE_ALLOW_STRAYS",
                if self.allow_strays { "1" } else { "" },
            )
            .env(
                "PACKAGE_ALLOW_NEWER_GLIBC",
                if self.allow_newer_glibc { "1" } else { "" },
            )
            .output()
            .expect("package.sh runs")
    }

    /// Runs it, asserting success; returns its report (stderr).
    fn package(&self) -> String {
        let output = self.run();
        let report = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "package.sh failed:\n{report}");
        report
    }
}

fn write(root: &Path, name: &str, text: &str) {
    let path = root.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// An app root like this repository's, with everything Core Tools must leave out beside it.
fn app_root_with_decoys() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for name in [
        "host.json",
        ".funcignore",
        "SummaryWomble/function.json",
        "GetHotTopics/function.json",
        "Dashboard/function.json",
    ] {
        let text = std::fs::read_to_string(repository().join(name)).unwrap();
        write(root.path(), name, &text);
    }
    for decoy in [
        "local.settings.json",
        "GetHotTopics/local.settings.json",
        ".gitignore",
        ".git/HEAD",
        ".vscode/settings.json",
        "src/main.rs",
        "tests/integration/main.rs",
        "target/release/handler",
        "node_modules/azurite/package.json",
        "scripts/package.sh",
        ".ci/run",
        ".test-state/env",
        "Cargo.toml",
        "Cargo.lock",
        "Makefile",
        "README.md",
        "docs/notes.md",
        "docs/dashboard.png",
        "openapi.yaml",
        "package.json",
        // A stale copy at the root: the handler handed in replaces it.
        "handler",
    ] {
        write(root.path(), decoy, "not for publishing");
    }
    root
}

/// A small Linux x86-64 executable to stand in for the handler (the real one is large): a
/// statically linked C program, which needs no glibc at all, so it passes the package's glibc
/// check as the release handler does.
/// The built handler stripped into `dir`, as the release profile strips it: compressing the
/// debug information of a debug build would take most of a package test's time.
fn stripped_handler(dir: &Path) -> PathBuf {
    let stripped = dir.join("handler");
    let strip = std::process::Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(HANDLER)
        .output()
        .expect("strip runs");
    assert!(
        strip.status.success(),
        "{}",
        String::from_utf8_lossy(&strip.stderr)
    );
    stripped
}

fn small_executable() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("womble-static-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let source = dir.join("true.c");
            std::fs::write(&source, "int main(void) { return 0; }\n").unwrap();
            let executable = dir.join("true");
            let output = std::process::Command::new("cc")
                .arg("-static")
                .arg("-o")
                .arg(&executable)
                .arg(&source)
                .output()
                .expect("a C compiler (cc) runs");
            assert!(
                output.status.success(),
                "cc -static failed (static libc needed, e.g. Debian's libc6-dev): {}",
                String::from_utf8_lossy(&output.stderr)
            );
            executable
        })
        .clone()
}

#[test]
fn the_package_holds_host_json_the_function_folders_and_an_executable_handler_and_nothing_else() {
    let root = app_root_with_decoys();
    let stand_in = small_executable();
    let stand_in_size = std::fs::metadata(&stand_in).unwrap().len();
    for zipper in ["zip", "python3"] {
        if zipper == "zip"
            && std::process::Command::new("zip")
                .arg("-v")
                .output()
                .is_err()
        {
            continue;
        }
        let out = tempfile::tempdir().unwrap();
        let zip = out.path().join("summary-womble.zip");
        let report = Packaging {
            root: root.path(),
            handler: &stand_in,
            out: &zip,
            zipper,
            allow_strays: false,
            allow_newer_glibc: false,
        }
        .package();
        assert!(!report.contains("warning"), "{zipper}: {report}");
        let entries = zip_entries(&zip);
        let names: Vec<&str> = entries.iter().map(|entry| entry.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Dashboard/function.json",
                "GetHotTopics/function.json",
                "SummaryWomble/function.json",
                "handler",
                "host.json"
            ],
            "{zipper}"
        );
        for entry in &entries {
            let expected = if entry.name == "handler" {
                0o100755
            } else {
                0o100644
            };
            assert_eq!(entry.mode, expected, "{zipper}: {entry:?}");
        }
        assert_eq!(
            entries[3].size, stand_in_size,
            "{zipper}: the handler handed in"
        );
    }
}

#[test]
fn a_file_that_funcignore_lets_through_stops_the_package_unless_strays_are_allowed() {
    let root = app_root_with_decoys();
    write(root.path(), "notes/todo.txt", "publishable, by mistake");
    let out = tempfile::tempdir().unwrap();
    let zip = out.path().join("summary-womble.zip");
    let mut packaging = Packaging {
        root: root.path(),
        handler: &small_executable(),
        out: &zip,
        zipper: "python3",
        allow_strays: false,
        allow_newer_glibc: false,
    };
    let refused = packaging.run();
    let report = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{report}");
    assert!(report.contains("error:   notes/todo.txt\n"), "{report}");
    assert!(report.contains(".funcignore"), "{report}");
    assert!(!zip.exists());

    packaging.allow_strays = true;
    let report = packaging.package();
    assert!(report.contains("warning:   notes/todo.txt\n"), "{report}");
    assert!(zip_entries(&zip)
        .iter()
        .any(|entry| entry.name == "notes/todo.txt"));
}

/// What a fresh clone of this repository's last commit publishes, with the real handler. The
/// exact selection rules are pinned by the test above on a made-up app root; here the app's
/// own files must be in, nothing that .funcignore or Core Tools leaves out may be, and anything
/// else a clone would publish must at least have been warned about. (The work tree itself may
/// hold anything, build state or a developer's tools, so it is not what is packaged here.)
#[test]
fn the_package_of_this_repository_holds_exactly_the_app_and_the_real_handler() {
    let root = tempfile::tempdir().unwrap();
    let export = std::process::Command::new("sh")
        .arg("-c")
        .arg("git archive --format=tar HEAD | tar -x -C \"$1\"")
        .arg("export")
        .arg(root.path())
        .current_dir(repository())
        .output()
        .expect("git and tar run");
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let mut app: Vec<String> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| root.path().join(name).join("function.json").is_file())
        .map(|name| format!("{name}/function.json"))
        .collect();
    assert!(app.contains(&"SummaryWomble/function.json".to_owned()));
    assert!(app.contains(&"GetHotTopics/function.json".to_owned()));
    assert!(app.contains(&"Dashboard/function.json".to_owned()));
    app.extend(["handler".to_owned(), "host.json".to_owned()]);

    let out = tempfile::tempdir().unwrap();
    let stripped = stripped_handler(out.path());
    let zip = out.path().join("summary-womble.zip");
    let report = Packaging {
        root: root.path(),
        handler: &stripped,
        out: &zip,
        zipper: "",
        allow_strays: false,
        // A debug build needs this machine's glibc; the glibc check has tests of its own.
        allow_newer_glibc: true,
    }
    .package();
    let entries = zip_entries(&zip);
    let mut names: Vec<String> = entries.iter().map(|entry| entry.name.clone()).collect();
    names.sort();
    app.sort();
    // Everything else in the repository (sources, tests, tools, settings) is left out by
    // .funcignore: the package is exactly the app.
    assert_eq!(names, app, "{report}");
    let handler = entries
        .iter()
        .find(|entry| entry.name == "handler")
        .unwrap();
    assert_eq!(handler.mode, 0o100755);
    assert_eq!(handler.size, std::fs::metadata(&stripped).unwrap().len());
}

/// The glibc version the package promises, as package.sh checks it (`glibc_max=`).
fn promised_glibc() -> String {
    let script = std::fs::read_to_string(repository().join("scripts/package.sh")).unwrap();
    script
        .lines()
        .find_map(|line| line.strip_prefix("glibc_max="))
        .expect("package.sh sets glibc_max")
        .trim()
        .to_owned()
}

fn check_glibc(executable: &Path, max: &str) -> std::process::Output {
    std::process::Command::new(repository().join("scripts/check-glibc.sh"))
        .arg(executable)
        .arg(max)
        .output()
        .expect("check-glibc.sh runs")
}

#[test]
fn the_glibc_check_refuses_a_debug_handler_naming_the_version_and_accepts_a_static_executable() {
    let max = promised_glibc();
    let refused = check_glibc(Path::new(HANDLER), &max);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    // A debug build links against this machine's glibc (2.34 or newer since `__libc_start_main`
    // moved there).
    assert!(stderr.contains("needs GLIBC_2."), "{stderr}");
    assert!(
        stderr.contains(&format!("newer than GLIBC_{max}")),
        "{stderr}"
    );
    assert!(stderr.contains("__libc_start_main"), "{stderr}");

    let accepted = check_glibc(&small_executable(), &max);
    let stdout = String::from_utf8_lossy(&accepted.stdout);
    assert!(
        accepted.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    assert!(stdout.contains("statically linked"), "{stdout}");

    // The same debug handler passes against a maximum as new as the one it needs.
    let found = stderr
        .split("needs GLIBC_")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap()
        .to_owned();
    let accepted = check_glibc(Path::new(HANDLER), &found);
    let stdout = String::from_utf8_lossy(&accepted.stdout);
    assert!(accepted.status.success(), "{stdout}");
    assert!(stdout.contains(&format!("GLIBC_{found}")), "{stdout}");
}

#[test]
fn a_handler_needing_a_newer_glibc_than_promised_is_not_packaged_unless_allowed() {
    let root = app_root_with_decoys();
    let out = tempfile::tempdir().unwrap();
    let stripped = stripped_handler(out.path());
    let zip = out.path().join("summary-womble.zip");
    let mut packaging = Packaging {
        root: root.path(),
        handler: &stripped,
        out: &zip,
        zipper: "python3",
        allow_strays: false,
        allow_newer_glibc: false,
    };
    let refused = packaging.run();
    let report = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{report}");
    assert!(
        report.contains(&format!("newer than {}", promised_glibc())),
        "{report}"
    );
    assert!(report.contains("PACKAGE_ALLOW_NEWER_GLIBC"), "{report}");
    assert!(!zip.exists());

    packaging.allow_newer_glibc = true;
    let report = packaging.package();
    assert!(report.contains("warning"), "{report}");
    assert!(zip.exists());
}

#[test]
fn the_readme_promises_the_glibc_version_the_package_is_checked_against() {
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    let promise = format!("glibc {}", promised_glibc());
    assert!(
        readme.contains(&promise),
        "README.md does not name {promise:?}, the version scripts/package.sh checks"
    );
}
