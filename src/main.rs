//! The `handler` executable: what the Functions host starts, and a command line for people.
//!
//! The arguments are parsed first; the host passes none, and with none (or `serve`) the
//! executable is the custom handler: settings, logging, serve until stopped. Every part is
//! built in [`summary_womble::startup`]; every exit code is in [`summary_womble::exit`].

#![forbid(unsafe_code)]

use std::process::ExitCode;

use summary_womble::cli::{self, Command};
use summary_womble::config::Settings;
use summary_womble::exit::ServerExit;
use summary_womble::startup;
use summary_womble::telemetry::Audience;

fn main() -> ExitCode {
    let arguments = match cli::parse() {
        Ok(arguments) => arguments,
        Err(exit) => return exit,
    };
    match arguments.command {
        None | Some(Command::Serve) => serve().into(),
        Some(command) => cli::run(arguments.client, command),
    }
}

/// The custom handler.
fn serve() -> ServerExit {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            // Logging is not configured yet (its format is a setting): say it plainly.
            eprintln!("handler: {error}");
            return ServerExit::BadSettings;
        }
    };
    startup::logging(Audience::Server(settings.log_format));
    let under_host = settings.mode.is_host();
    match startup::serve(settings, stop_requested()) {
        Ok(()) if under_host => {
            tracing::warn!("stopped under the Functions host; exiting non-zero so the host restarts the handler");
            ServerExit::Failed
        }
        Ok(()) => ServerExit::Stopped,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "handler stopped");
            eprintln!("handler: {error:#}");
            ServerExit::Failed
        }
    }
}

/// Ctrl-C or SIGTERM. (The host itself only ever sends SIGKILL.)
async fn stop_requested() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
