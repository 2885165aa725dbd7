//! SummaryWomble: the content-collection stage of the pipeline, as an Azure Functions custom
//! handler.
//!
//! A caller POSTs a collection request to the `SummaryWomble` function and gets an HTTP 202 job
//! ticket at once. A tracked background task then fetches the hot posts of each requested
//! subreddit and stores them as JSON blobs, recording the job's life in
//! `jobs/<id>/status.json`. Everything a job needs to be resumed is in storage, because the
//! Functions host may SIGKILL the handler at any moment.
//!
//! Layout (dependencies point down the data flow: `app → functions → jobs → reddit, store`):
//! - [`config`]: typed settings from the environment; errors name the variable.
//! - [`telemetry`]: `tracing` set-up (human or JSON lines).
//! - [`app`]: the warp routes and shared state; bind, serve, shut down.
//! - [`functions`]: one module per function folder, plus the host's envelope types.
//! - [`jobs`]: the job model (id, request, status document, state machine), the status
//!   repository and the runner that executes jobs.
//! - [`outbound`]: what may be said about a failed outbound HTTP call.
//! - [`retry`]: the one retry policy ([`retry::Backoff`]) and the driver every retried call
//!   uses.
//! - [`reddit`]: the Reddit client; turns a subreddit name into topics.
//! - [`store`]: the blob storage trait and its implementations (Azure Blob, local directory).
//! - [`secrets`]: Reddit credentials from the environment.
//! - [`cli`]: the command line of the same executable (submit, watch, list, collect, ...).

pub mod app;
pub mod cli;
pub mod config;
pub mod functions;
pub mod jobs;
pub mod outbound;
pub mod reddit;
pub mod retry;
pub mod secrets;
pub mod store;
pub mod telemetry;

#[cfg(test)]
mod proptests;
