//! The command line of the `handler` executable, for people at a terminal.
//!
//! The same executable the Functions host starts is also a client of the API it serves:
//! `handler submit --wait` starts a job and follows it with a progress bar, `handler collect`
//! runs one collection in this process against the configured storage, without a server.
//! Without a subcommand (or with `serve`) the executable is the custom handler, exactly as the
//! host expects; `main` decides that before anything here runs.
//!
//! The exit code says how the job ended, so scripts can branch on it: 0 completed (or a job
//! that is still going, for commands that do not wait), 1 failed, 2 cancelled, 3 the command
//! could not do its work (bad usage, nothing listening, the API refused the call).
//!
//! Exit codes: [`crate::exit::CommandExit`].
//!
//! Layout (the API itself is spoken by [`crate::client::ApiClient`]):
//! - [`progress`]: following a job until it ends, as a progress bar or as plain lines.
//! - [`report`]: what people read: the ticket, the status, the results table, the job list.
//! - [`collect`]: one collection in-process, through the library's runner.
//! - [`smoke`]: the design document's manual test against a deployment, naming the failed step.

pub mod collect;
pub mod progress;
pub mod report;
pub mod smoke;

use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::process::ExitCode;

use crate::client::{ApiClient, ClientError};
use crate::exit::CommandExit as Exit;
use crate::jobs::{JobId, JobStatus, Limit, Priority, RequestedJob};
use crate::reddit::Subreddit;
use clap::builder::{PossibleValuesParser, TypedValueParser as _};
use clap::{Args, CommandFactory as _, Parser, Subcommand};
use progress::Display;

/// `handler [OPTIONS] [COMMAND]`.
#[derive(Debug, Parser)]
#[command(
    name = "handler",
    version,
    about = "SummaryWomble: the Azure Functions custom handler, and a command line for its job API",
    after_help = "Exit codes: 0 completed (or still running, for commands that do not wait), \
                  1 failed, 2 cancelled, 3 usage or connection error."
)]
pub struct Cli {
    #[command(flatten)]
    pub client: ClientOptions,
    /// Without a command, the handler serves (what the Functions host runs).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Where the API is and how to talk to it. Kept as text until a client command needs it, so
/// a stray `WOMBLE_URL` in the server's environment can never stop the server from starting.
#[derive(Debug, Clone, Args)]
pub struct ClientOptions {
    /// Base URL of the app (the API is at <URL>/api/SummaryWomble) [default: http://localhost:7071]
    // No clap default_value: clap would show a defaulted option in usage lines as if required.
    #[arg(long, env = "WOMBLE_URL", global = true)]
    pub url: Option<String>,
    /// Function key, sent as x-functions-key
    #[arg(long, env = "WOMBLE_KEY", hide_env_values = true, global = true)]
    pub key: Option<String>,
    /// Print the JSON documents as the API sends them, one per line, instead of text
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the custom handler until stopped (the default)
    Serve,
    /// Start a collection job
    Submit {
        #[command(flatten)]
        job: JobArgs,
        /// Follow the job until it ends; the exit code says how it ended
        #[arg(long)]
        wait: bool,
        /// Repeats of the same key return the original job and start nothing
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
    },
    /// Show a job's status
    Status { job_id: JobId },
    /// Follow a job until it ends, with a progress bar
    Watch { job_id: JobId },
    /// List jobs, newest first
    List {
        /// Only jobs in this state
        #[arg(long, value_parser = status_parser())]
        status: Option<JobStatus>,
        /// How many jobs (1 to 100; the API's default is 20)
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
        top: Option<u32>,
        /// Continue a previous listing from its continuation token
        #[arg(long, value_name = "TOKEN")]
        continuation: Option<String>,
    },
    /// Ask a job to stop: nothing more is fetched, and it ends cancelled
    Cancel { job_id: JobId },
    /// Start a new job with the request of a finished one
    Retry {
        job_id: JobId,
        /// Follow the new job until it ends
        #[arg(long)]
        wait: bool,
    },
    /// Run one collection in this process against the configured storage, without a server
    Collect {
        #[command(flatten)]
        job: JobArgs,
    },
    /// Check a deployment: start a small job, read its status, follow it to its end
    Smoke {
        /// How long the job may take, from the start of the check (90s, 5m, 1h or seconds)
        #[arg(long, default_value = smoke::Timeout::DEFAULT, value_parser = smoke::Timeout::parse)]
        timeout: smoke::Timeout,
    },
}

/// What to collect; every field may be left to the API's defaults.
#[derive(Debug, Clone, Args)]
pub struct JobArgs {
    /// Subreddits, comma-separated [default: the 7 standard ones]
    #[arg(long, value_delimiter = ',', value_parser = parse_subreddit, value_name = "NAMES")]
    pub topics: Vec<Subreddit>,
    /// Posts per subreddit, 1 to 100 [default: 10]
    #[arg(long, value_parser = parse_limit)]
    pub limit: Option<Limit>,
    /// High-priority jobs leave the queue first [default: normal]
    #[arg(long, value_parser = priority_parser())]
    pub priority: Option<Priority>,
}

impl JobArgs {
    /// The start request these arguments make; what was not given is left to the defaults.
    pub fn requested(&self) -> RequestedJob {
        RequestedJob {
            topics: (!self.topics.is_empty())
                .then(|| self.topics.iter().map(|name| name.to_string()).collect()),
            limit: self.limit.map(|limit| u64::from(limit.get())),
            priority: self.priority.map(|priority| priority.as_str().to_owned()),
            ..RequestedJob::default()
        }
    }
}

fn parse_subreddit(text: &str) -> Result<Subreddit, String> {
    Subreddit::parse(text.trim()).map_err(|error| error.to_string())
}

fn parse_limit(text: &str) -> Result<Limit, String> {
    text.parse::<u32>()
        .ok()
        .and_then(Limit::new)
        .ok_or_else(|| format!("{text:?} is not a number from 1 to {}", Limit::MAX))
}

fn priority_parser() -> impl clap::builder::TypedValueParser<Value = Priority> {
    PossibleValuesParser::new(["high", "normal"]).map(|text| match text.as_str() {
        "high" => Priority::High,
        _ => Priority::Normal,
    })
}

fn status_parser() -> impl clap::builder::TypedValueParser<Value = JobStatus> {
    PossibleValuesParser::new(JobStatus::ALL.map(JobStatus::as_str))
        .map(|text| JobStatus::parse(&text).expect("only the listed names get through"))
}

/// Where the API is when neither `--url` nor `WOMBLE_URL` says: `make run`'s address.
pub const DEFAULT_URL: &str = "http://localhost:7071";

/// Parses the command line. Help and version print and exit 0; every other parse error prints
/// the error and the usage line and exits 3, not clap's own 2, which would read as "cancelled".
pub fn parse() -> Result<Cli, ExitCode> {
    let arguments: Vec<OsString> = std::env::args_os().collect();
    Cli::try_parse_from(&arguments).map_err(|error| {
        let _ = error.print();
        if !error.use_stderr() {
            return ExitCode::SUCCESS;
        }
        // clap leaves the usage out of some errors (a bad value); a person still needs it.
        if !error.to_string().contains("Usage:") {
            eprintln!("\n{}", usage(&arguments));
        }
        Exit::Trouble.into()
    })
}

/// The usage line of the command the arguments name, else of `handler` itself.
fn usage(arguments: &[OsString]) -> String {
    let mut command = Cli::command();
    command.build();
    let named = arguments
        .iter()
        .skip(1)
        .filter_map(|argument| argument.to_str())
        .find(|argument| command.find_subcommand(argument).is_some())
        .map(str::to_owned);
    match named.and_then(|name| command.find_subcommand_mut(&name)) {
        Some(subcommand) => subcommand.render_usage().to_string(),
        None => command.render_usage().to_string(),
    }
}

/// Runs a client command (anything but `serve`) and decides its exit code.
pub fn run(options: ClientOptions, command: Command) -> ExitCode {
    let runtime = match crate::startup::runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("handler: {error:#}");
            return Exit::Trouble.into();
        }
    };
    match runtime.block_on(execute(options, command)) {
        Ok(exit) => exit.into(),
        Err(error) => {
            eprintln!("handler: {error:#}");
            if let Some(ClientError::Api { status: 401, .. }) = error.downcast_ref() {
                eprintln!("Pass --key or set WOMBLE_KEY.");
            }
            Exit::Trouble.into()
        }
    }
}

async fn execute(options: ClientOptions, command: Command) -> anyhow::Result<Exit> {
    let display = Display::choose(options.json, std::io::stdout().is_terminal());
    if let Command::Collect { job } = &command {
        return collect::run(job, display).await;
    }
    let url = options.url.as_deref().unwrap_or(DEFAULT_URL);
    let client = ApiClient::new(url, options.key.as_deref())?;
    let exit = match command {
        Command::Serve => unreachable!("main serves without coming here"),
        Command::Collect { .. } => unreachable!("collected above, without a client"),
        Command::Submit {
            job,
            wait,
            idempotency_key,
        } => {
            let ticket = client
                .submit(&job.requested(), idempotency_key.as_deref())
                .await?;
            report::ticket(&ticket, display);
            if wait {
                follow(&client, ticket.parsed.job_id, display).await?
            } else {
                Exit::Success
            }
        }
        Command::Status { job_id } => {
            let status = client.status(job_id).await?;
            report::status(&status, display);
            Exit::for_status(status.parsed.status)
        }
        Command::Watch { job_id } => follow(&client, job_id, display).await?,
        Command::List {
            status,
            top,
            continuation,
        } => {
            let list = client.list(status, top, continuation.as_deref()).await?;
            report::list(&list, display);
            Exit::Success
        }
        Command::Cancel { job_id } => {
            let status = client.cancel(job_id).await?;
            report::cancelled(&status, display);
            Exit::Success
        }
        Command::Smoke { timeout } => {
            let target = smoke::Target {
                url,
                key_given: options.key.as_deref().is_some_and(|key| !key.is_empty()),
            };
            smoke::run(&client, target, timeout, display).await
        }
        Command::Retry { job_id, wait } => {
            let ticket = client.retry(job_id).await?;
            report::ticket(&ticket, display);
            if wait {
                follow(&client, ticket.parsed.job_id, display).await?
            } else {
                Exit::Success
            }
        }
    };
    Ok(exit)
}

/// Follows a job over the API until it ends, then prints how it ended.
async fn follow(client: &ApiClient, job_id: JobId, display: Display) -> Result<Exit, ClientError> {
    let last = progress::follow(display, || client.status_patiently(job_id)).await?;
    report::finished(&last, display);
    Ok(Exit::for_status(last.parsed.status))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("handler").chain(args.iter().copied()))
    }

    #[test]
    fn no_arguments_means_serve() {
        assert!(parse(&[]).unwrap().command.is_none());
        assert!(matches!(
            parse(&["serve"]).unwrap().command,
            Some(Command::Serve)
        ));
    }

    #[test]
    fn submit_takes_comma_separated_topics_and_only_sends_what_was_given() {
        let cli = parse(&[
            "submit",
            "--topics",
            "technology,programming",
            "--priority",
            "high",
        ])
        .unwrap();
        let Some(Command::Submit { job, wait, .. }) = cli.command else {
            panic!("not a submit");
        };
        assert!(!wait);
        assert_eq!(
            serde_json::to_value(job.requested()).unwrap(),
            serde_json::json!({"topics": ["technology", "programming"], "priority": "high"})
        );
    }

    #[test]
    fn bad_arguments_are_refused_before_anything_is_sent() {
        for args in [
            &["submit", "--limit", "0"][..],
            &["submit", "--limit", "101"],
            &["submit", "--topics", "not a name"],
            &["submit", "--priority", "urgent"],
            &["status", "not-a-uuid"],
            &["list", "--top", "0"],
            &["list", "--status", "done"],
            &["frobnicate"],
        ] {
            assert!(parse(args).is_err(), "{args:?} was accepted");
        }
    }

    #[test]
    fn options_may_come_after_the_command() {
        let cli = parse(&[
            "list",
            "--url",
            "http://example.test:8080",
            "--json",
            "--top",
            "5",
        ])
        .unwrap();
        assert_eq!(cli.client.url.as_deref(), Some("http://example.test:8080"));
        assert!(cli.client.json);
    }

    #[test]
    fn each_job_status_has_its_exit_code() {
        assert_eq!(Exit::for_status(JobStatus::Completed) as u8, 0);
        assert_eq!(Exit::for_status(JobStatus::Running) as u8, 0);
        assert_eq!(Exit::for_status(JobStatus::Failed) as u8, 1);
        assert_eq!(Exit::for_status(JobStatus::Cancelled) as u8, 2);
        assert_eq!(Exit::Trouble as u8, 3);
    }
}
