//! `handler smoke`: the design document's manual test, run against any deployment, saying in
//! one sentence which step failed and why.
//!
//! Three steps, each through the same [`ApiClient`] the other commands use:
//!
//! 1. **start a job**: `POST {"source": "reddit", "topics": ["technology"], "limit": 2}`, the
//!    manual test's request;
//! 2. **check its status**: read the job the ticket names;
//! 3. **follow it to its end**: read its status until it is terminal, for at most `--timeout`
//!    counted from the start of the check.
//!
//! A person running this has just deployed, rotated a key or changed a setting, and wants to
//! know whether the app works and, if not, what to fix. So a failure names the step and says
//! what the answer means for them (a refused key, an address where nothing listens, a path
//! that is not the app, the job's own errors), rather than echoing an HTTP status.
//!
//! Exit codes ([`crate::exit::CommandExit`]): 0 the check passed; 3 the app could not be used
//! (steps 1 and 2, or a status read in step 3: the URL, the key, or the app's refusal); 1 the
//! app took the job but it failed or did not end within `--timeout`; 2 someone cancelled it.
//! So 3 points at the caller's settings and 1 at the app's work.

use std::cell::RefCell;
use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use tokio::time::Instant;

use super::progress::{self, progress_line, Display};
use super::{report, Exit};
use crate::client::{ApiClient, ClientError};
use crate::jobs::{JobId, JobStatus, RequestedJob, StatusDocument};

/// The manual test's subreddit and post count: one small job that any working deployment ends
/// within seconds.
const SUBREDDIT: &str = "technology";
const LIMIT: u64 = 2;

/// How long the whole check may take before step 3 gives up (`--timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(Duration);

impl Timeout {
    /// The default: long enough for a cold start, a queue delivery and a Reddit rate-limit
    /// wait, short enough that a stuck job is reported while the person is still watching.
    pub const DEFAULT: &'static str = "5m";
    const MAX: Duration = Duration::from_secs(24 * 60 * 60);

    /// `90s`, `5m`, `1h`, or plain seconds (`300`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
            Some(at) => text.split_at(at),
            None => (text, "s"),
        };
        let seconds_per_unit = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 60 * 60,
            _ => 0,
        };
        let duration = number
            .parse::<u64>()
            .ok()
            .filter(|_| seconds_per_unit > 0)
            .and_then(|count| count.checked_mul(seconds_per_unit))
            .map(Duration::from_secs)
            .filter(|duration| !duration.is_zero() && *duration <= Self::MAX);
        duration.map(Timeout).ok_or_else(|| {
            format!("{text:?} is not a time from 1s to 24h (write it as 90s, 5m, 1h or 300)")
        })
    }
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.0.as_secs();
        match seconds {
            _ if seconds % 3600 == 0 => write!(f, "{}h", seconds / 3600),
            _ if seconds % 60 == 0 => write!(f, "{}m", seconds / 60),
            _ => write!(f, "{seconds}s"),
        }
    }
}

/// The deployment under check, as the person named it.
pub struct Target<'a> {
    /// The base URL as given (`--url`), for messages.
    pub url: &'a str,
    /// Whether a key was given, so a 401 can say "refused" or "missing".
    pub key_given: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Start = 1,
    Status = 2,
    Follow = 3,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Step::Start => "start a job",
            Step::Status => "check its status",
            Step::Follow => "follow it to its end",
        };
        write!(f, "step {} ({what})", *self as u8)
    }
}

/// Why the check stopped: the step, a sentence a person can act on, and the exit code.
#[derive(Debug)]
struct Failure {
    step: Step,
    reason: String,
    exit: Exit,
}

impl Failure {
    /// A call that gave no usable answer: the caller's settings or the app's refusal.
    fn call(step: Step, error: &ClientError, target: &Target<'_>) -> Self {
        Self {
            step,
            reason: explain(error, target),
            exit: Exit::Trouble,
        }
    }
}

/// Runs the check and decides its exit code. Passing steps go to stdout (with `--json`, the
/// documents the API sent instead); the failure goes to stderr.
pub async fn run(
    client: &ApiClient,
    target: Target<'_>,
    timeout: Timeout,
    display: Display,
) -> Exit {
    let started = Instant::now();
    say(
        display,
        format!(
            "smoke check of {}: one job, r/{SUBREDDIT}, limit {LIMIT}, within {timeout}",
            target.url
        ),
    );
    match check(client, &target, started + timeout.0, timeout, display).await {
        Ok(job_id) => {
            let took = started.elapsed().as_secs_f64();
            let verdict = format!(
                "smoke check passed in {took:.1}s: {} started job {job_id}, answered its status and completed it",
                target.url
            );
            if display == Display::Json {
                eprintln!("{verdict}");
            } else {
                println!("{verdict}");
            }
            Exit::Success
        }
        Err(failure) => {
            eprintln!("{}: {}", failure.step, failure.reason);
            eprintln!("smoke check failed at step {} of 3", failure.step as u8);
            failure.exit
        }
    }
}

async fn check(
    client: &ApiClient,
    target: &Target<'_>,
    deadline: Instant,
    timeout: Timeout,
    display: Display,
) -> Result<JobId, Failure> {
    // Step 1: the manual test's request, every field spelled out as the design document does.
    let request = RequestedJob {
        source: Some("reddit".to_owned()),
        topics: Some(vec![SUBREDDIT.to_owned()]),
        limit: Some(LIMIT),
        ..RequestedJob::default()
    };
    let ticket = client
        .submit(&request, None)
        .await
        .map_err(|error| Failure::call(Step::Start, &error, target))?;
    let job_id = ticket.parsed.job_id;
    if display == Display::Json {
        report::ticket(&ticket, display);
    }
    say(
        display,
        format!("{}: ok, job {job_id} {}", Step::Start, ticket.parsed.status),
    );

    // Step 2: the job the ticket names can be read back.
    let status = client
        .status(job_id)
        .await
        .map_err(|error| Failure::call(Step::Status, &error, target))?;
    if status.parsed.job_id != job_id {
        return Err(Failure {
            step: Step::Status,
            reason: format!(
                "the answer is the status of job {}, not of job {job_id} — is the URL the app's address?",
                status.parsed.job_id
            ),
            exit: Exit::Trouble,
        });
    }
    say(
        display,
        format!("{}: ok, {}", Step::Status, progress_line(&status.parsed)),
    );

    // Step 3: to a terminal state, remembering the last state seen for a timeout's message.
    say(display, format!("{}: waiting for it to end", Step::Follow));
    let last_seen: RefCell<Option<StatusDocument>> = RefCell::new(None);
    let seen = &last_seen;
    let followed = tokio::time::timeout_at(
        deadline,
        progress::follow(display, move || async move {
            let fetched = client.status_patiently(job_id).await;
            if let Ok(fetched) = &fetched {
                seen.replace(Some(fetched.parsed.clone()));
            }
            fetched
        }),
    )
    .await;
    let last = match followed {
        Ok(Ok(last)) => last,
        Ok(Err(error)) => return Err(Failure::call(Step::Follow, &error, target)),
        Err(_elapsed) => {
            let seen = last_seen.borrow().clone().unwrap_or(status.parsed);
            return Err(Failure {
                step: Step::Follow,
                reason: not_ended(&seen, timeout),
                exit: Exit::JobFailed,
            });
        }
    };
    report::finished(&last, display);
    let document = &last.parsed;
    match document.status {
        JobStatus::Completed => {
            say(display, format!("{}: ok, completed", Step::Follow));
            Ok(job_id)
        }
        JobStatus::Failed => Err(Failure {
            step: Step::Follow,
            reason: format!(
                "the job ended failed: {}",
                document
                    .error
                    .as_deref()
                    .unwrap_or("it carries no error (handler status shows the rest)")
            ),
            exit: Exit::JobFailed,
        }),
        JobStatus::Cancelled => Err(Failure {
            step: Step::Follow,
            reason: format!("job {job_id} was cancelled by someone else before it ended"),
            exit: Exit::JobCancelled,
        }),
        JobStatus::Queued | JobStatus::Running => {
            unreachable!("following ends only at a terminal status")
        }
    }
}

/// What a call's failure means for the person running the check.
fn explain(error: &ClientError, target: &Target<'_>) -> String {
    match error {
        ClientError::Connection { url, cause } => {
            format!("could not connect to {url} ({cause}) — check the URL")
        }
        ClientError::Api { status, message } => {
            let code = StatusCode::from_u16(*status).ok();
            let reason = code.and_then(|code| code.canonical_reason()).unwrap_or("");
            // Azure's front door answers some refusals with an empty body; the handler with a
            // sentence. Show the sentence when there is one.
            let said = if message.is_empty() || message == reason {
                String::new()
            } else {
                format!(" (the app said: {message})")
            };
            let status_line = format!("{status} {reason}").trim_end().to_owned();
            match *status {
                401 if target.key_given => format!(
                    "{status_line} — the key was refused; use the SummaryWomble function key{said}"
                ),
                401 => format!(
                    "{status_line} — no key was sent; pass --key (or set WOMBLE_KEY) with the SummaryWomble function key{said}"
                ),
                403 => format!(
                    "{status_line} — the app refused the call{said}; it may be stopped, or its access restrictions keep this address out"
                ),
                404 => format!(
                    "{status_line} — no SummaryWomble function answers at {}{said}; check the URL: it is the app's address, such as https://<app>.azurewebsites.net",
                    target.url
                ),
                503 => format!(
                    "{status_line} — the app or its storage is not available{said}; nothing was started, try again in a minute"
                ),
                500.. => format!(
                    "{status_line} — the app failed{said}; its log has the cause (docs/operations.md, \"Finding a job\")"
                ),
                _ => format!("{status_line} — the app refused the request{said}"),
            }
        }
        ClientError::Unexpected { url, reason } => format!(
            "the answer from {url} is not the job API's ({reason}) — is the URL the app's address?"
        ),
        ClientError::BadUrl(_) | ClientError::Build(_) => error.to_string(),
    }
}

/// Why a job that did not end in time may be where it is.
fn not_ended(seen: &StatusDocument, timeout: Timeout) -> String {
    let hint = match seen.status {
        JobStatus::Queued => {
            "no worker has taken it: with JOB_DISPATCH=queue, check that RunJob runs and look in \
             the poison queue (docs/operations.md, \"Finding a job\")"
        }
        _ => {
            "a subreddit may be waiting out Reddit's rate limit; `handler watch <job_id>` follows \
             it further"
        }
    };
    format!(
        "job {} did not end within {timeout}: it is still {}; {hint}",
        seen.job_id,
        progress_line(seen)
    )
}

/// A passing step's line, on stdout unless the output is the API's documents.
fn say(display: Display, line: String) {
    if display != Display::Json {
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_is_seconds_minutes_or_hours() {
        for (text, seconds, shown) in [
            ("300", 300, "5m"),
            ("90s", 90, "90s"),
            ("5m", 300, "5m"),
            (" 2h ", 7200, "2h"),
            ("24h", 86_400, "24h"),
        ] {
            let timeout = Timeout::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"));
            assert_eq!(timeout.0, Duration::from_secs(seconds), "{text}");
            assert_eq!(timeout.to_string(), shown, "{text}");
        }
        assert_eq!(Timeout::parse(Timeout::DEFAULT).unwrap().to_string(), "5m");
    }

    #[test]
    fn timeouts_that_are_not_a_time_from_1s_to_24h_are_refused() {
        for text in [
            "",
            "0",
            "0s",
            "-5",
            "5 m",
            "5min",
            "1.5m",
            "m",
            "25h",
            "1d",
            "99999999999999999999",
        ] {
            let error = Timeout::parse(text).expect_err(text);
            assert!(error.contains("90s, 5m, 1h or 300"), "{text}: {error}");
        }
    }

    fn target(key_given: bool) -> Target<'static> {
        Target {
            url: "https://app.azurewebsites.net",
            key_given,
        }
    }

    fn api(status: u16, message: &str) -> ClientError {
        ClientError::Api {
            status,
            message: message.to_owned(),
        }
    }

    #[test]
    fn each_refusal_says_what_to_fix() {
        for (error, key_given, expected) in [
            (
                api(401, "Unauthorized"),
                true,
                "401 Unauthorized — the key was refused; use the SummaryWomble function key",
            ),
            (
                api(401, ""),
                false,
                "401 Unauthorized — no key was sent; pass --key (or set WOMBLE_KEY) with the SummaryWomble function key",
            ),
            (
                api(404, "No such function. The API is at /api/SummaryWomble."),
                true,
                "404 Not Found — no SummaryWomble function answers at https://app.azurewebsites.net (the app said: No such function. The API is at /api/SummaryWomble.); check the URL: it is the app's address, such as https://<app>.azurewebsites.net",
            ),
            (
                api(503, "Storage is unavailable."),
                true,
                "503 Service Unavailable — the app or its storage is not available (the app said: Storage is unavailable.); nothing was started, try again in a minute",
            ),
            (
                api(500, "Internal Server Error"),
                true,
                "500 Internal Server Error — the app failed; its log has the cause (docs/operations.md, \"Finding a job\")",
            ),
            (
                ClientError::Connection {
                    url: "http://127.0.0.1:9/api/SummaryWomble".into(),
                    cause: "Connection refused (os error 111)".into(),
                },
                true,
                "could not connect to http://127.0.0.1:9/api/SummaryWomble (Connection refused (os error 111)) — check the URL",
            ),
        ] {
            assert_eq!(explain(&error, &target(key_given)), expected);
        }
    }
}
