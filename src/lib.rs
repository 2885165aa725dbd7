//! SummaryWomble: the content-collection stage of the pipeline, as an Azure Functions custom
//! handler.
//!
//! A caller POSTs a collection request to the `SummaryWomble` function and gets an HTTP 202 job
//! ticket at once. A tracked background task then fetches the hot posts of each requested
//! subreddit and stores them as JSON blobs, recording the job's life in
//! `jobs/<id>/status.json`. Everything a job needs to be resumed is in storage, because the
//! Functions host may SIGKILL the handler at any moment.
//!
//! Layout, top to bottom; a module imports only modules below it (docs/architecture.md):
//! - [`startup`]: the composition root: runtime, logging, store, Reddit client, runner.
//! - [`cli`]: the command line of the same executable (submit, watch, list, collect, ...).
//! - [`exit`]: every exit code of the executable.
//! - [`app`]: the warp routes and their filters; serve until stopped.
//! - [`functions`]: one module per function folder, the host's envelope, and [`functions::ApiError`].
//! - [`client`]: the typed client of the job-ticket API (the command line and the timer).
//! - [`secrets`]: Reddit credentials from the environment or Key Vault.
//! - [`config`]: typed settings from the environment; errors name the variable.
//! - [`schedule`]: the NCRONTAB schedule of the timer.
//! - [`jobs`]: the job model (id, request, status document, state machine), the status
//!   repository, metrics and the runner that executes jobs.
//! - [`reddit`]: the Reddit client; turns a subreddit name into topics.
//! - [`store`]: the blob storage trait and its implementations (Azure Blob, local directory).
//! - [`outbound`]: what may be said about a failed outbound HTTP call.
//! - [`retry`]: the one retry policy (backoff, jitter, bounds, server-given waits).
//! - [`telemetry`]: `tracing` set-up and the error-chain log field.

#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod client;
pub mod config;
pub mod exit;
pub mod functions;
pub mod jobs;
pub mod meter;
pub mod outbound;
pub mod reddit;
pub mod retry;
pub mod schedule;
pub mod secrets;
pub mod startup;
pub mod store;
pub mod telemetry;

#[cfg(test)]
mod proptests;
