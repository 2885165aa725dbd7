//! The `handler` executable: reads settings, starts logging, serves until stopped.
//!
//! The exit code is decided here, once: 2 for unusable settings, 1 for any other failure, and
//! after a requested stop (Ctrl-C, SIGTERM) 0 in standalone mode but 1 under the Functions
//! host. The host restarts a handler that exits non-zero and never one that exits 0, so under
//! the host no exit may be 0: whoever stopped us, the app must come back.
//!
//! The same executable is also a command line for people (`handler submit --wait`, `handler
//! watch <id>`, ...; see [`summary_womble::cli`]). The arguments are parsed first; the host
//! passes none, and with none (or `serve`) what follows is the server path above, unchanged.
//! A client command decides its own exit code (0 completed, 1 failed, 2 cancelled, 3 usage or
//! connection error), and so does a command line that does not parse (3).

use std::process::ExitCode;

use anyhow::Context as _;
use summary_womble::cli::{self, Command};
use summary_womble::config::Settings;
use summary_womble::{app, telemetry};

fn main() -> ExitCode {
    let arguments = match cli::parse() {
        Ok(arguments) => arguments,
        Err(exit) => return exit,
    };
    match arguments.command {
        None | Some(Command::Serve) => serve(),
        Some(command) => cli::run(arguments.client, command),
    }
}

/// The custom handler: what the Functions host starts.
fn serve() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            // Logging is not configured yet (its format is a setting): say it plainly.
            eprintln!("handler: {error}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.log_format);
    let under_host = settings.mode.is_host();
    match run(settings) {
        Ok(()) if under_host => {
            tracing::warn!("stopped under the Functions host; exiting non-zero so the host restarts the handler");
            ExitCode::from(1)
        }
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "handler stopped");
            eprintln!("handler: {error:#}");
            ExitCode::from(1)
        }
    }
}

fn run(settings: Settings) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("the async runtime cannot start")?;
    runtime.block_on(async move {
        let address = settings.mode.listen_addr();
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let context = app::build(settings)?;
        tracing::info!(address = %listener.local_addr()?, "listening");
        app::serve(listener, context, stop_requested()).await;
        tracing::info!("stopped");
        Ok(())
    })
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
