//! Logging set-up, in one place for every way the executable runs, and [`Chain`], the way an
//! error is written into a log line.
//!
//! The host turns stdout lines into Information logs and stderr lines into Error logs, so a
//! server writes warnings and errors to stderr and the rest to stdout: human-readable by
//! default, JSON lines with `LOG_FORMAT=json`. A command-line collection writes only errors,
//! to stderr, because its progress display is its output.

use std::fmt;

use tracing::Level;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::EnvFilter;

/// How log lines are written (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// The server's filter without `RUST_LOG`: `info`, except warp's two lines for every request
/// answered without error (the host already records each invocation, and the host's health
/// pings would flood the log). Those two writes were also a measurable part of a status
/// answer's time (`make bench`). Failed requests are still logged, as warnings and errors.
const SERVER_FILTER: &str = "info,warp::filters::trace=warn";

/// The command line's filter without `RUST_LOG`.
const COMMAND_LINE_FILTER: &str = "error";

/// Who reads the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The Functions host (or a container's log collector): stdout and stderr by level.
    Server(LogFormat),
    /// A person at a terminal whose stdout is the program's output: stderr only.
    CommandLine,
}

/// Installs the global subscriber. `RUST_LOG` filters.
pub fn init(audience: Audience) {
    let default = match audience {
        Audience::Server(_) => SERVER_FILTER,
        Audience::CommandLine => COMMAND_LINE_FILTER,
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    // A second initialisation (tests) keeps the first subscriber.
    let _ = match audience {
        Audience::Server(format) => {
            let builder = builder.with_writer(
                std::io::stderr
                    .with_max_level(Level::WARN)
                    .or_else(std::io::stdout),
            );
            match format {
                LogFormat::Json => builder
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .try_init(),
                LogFormat::Human => builder.with_ansi(false).try_init(),
            }
        }
        Audience::CommandLine => builder.with_writer(std::io::stderr).try_init(),
    };
}

/// An error with every cause after it, `outer: inner: innermost`, for log fields
/// (`error = %Chain(&error)`): a bare `%error` prints only the outermost message, which is
/// rarely the one a person can act on.
pub struct Chain<'a>(pub &'a dyn std::error::Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause: Option<&dyn std::error::Error> = self.0.source();
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("storage request failed")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_chain_names_every_cause() {
        let error = Outer(std::io::Error::other("connection refused"));
        assert_eq!(
            Chain(&error).to_string(),
            "storage request failed: connection refused"
        );
    }
}
