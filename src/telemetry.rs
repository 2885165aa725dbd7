//! Logging set-up. The host turns stdout lines into Information logs and stderr lines into
//! Error logs, so warnings and errors go to stderr and the rest to stdout: human-readable by
//! default, JSON lines with `LOG_FORMAT=json`.

use tracing::Level;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The filter without `RUST_LOG`: `info`, except warp's two lines for every request answered
/// without error (the host already records each invocation, and the host's health pings would
/// flood the log). Those two writes were also a measurable part of a status answer's time
/// (`make bench`). Failed requests are still logged, as warnings and errors.
const DEFAULT_FILTER: &str = "info,warp::filters::trace=warn";

/// Installs the global subscriber. `RUST_LOG` filters (default [`DEFAULT_FILTER`]).
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(
            std::io::stderr
                .with_max_level(Level::WARN)
                .or_else(std::io::stdout),
        )
        .with_target(false);
    // A second initialisation (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Human => builder.with_ansi(false).try_init(),
    };
}
