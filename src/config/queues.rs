//! Queue settings: `JOB_DISPATCH` and `JOB_QUEUE` (queue dispatch) and `COMPLETION_QUEUE` (the
//! hand-off to the next stage) from the environment, and the queue listener's behaviour from
//! `host.json` (`extensions.queues`), the file the Functions host reads too, so the handler and
//! the host agree on how often a message is tried.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Env};
pub use crate::jobs::runner::ListenerSettings;
use crate::store::queue::poison_queue_name;

/// The default of `JOB_QUEUE`.
pub const DEFAULT_JOB_QUEUE: &str = "hot-topics-jobs";

/// How accepted jobs reach a worker (`JOB_DISPATCH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatchSettings {
    /// `inline`: a job runs as a tracked task of the process that accepted it.
    Inline,
    /// `queue`: one message per job on the Storage queue `queue`, run by whichever instance
    /// takes it (docs/api.md section 9).
    Queue { queue: String },
}

impl DispatchSettings {
    pub(super) fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let queue = env.get("JOB_QUEUE").unwrap_or(DEFAULT_JOB_QUEUE);
        validate_queue_name("JOB_QUEUE", queue)?;
        match env.get("JOB_DISPATCH") {
            None => Ok(Self::Inline),
            Some(value) if value.eq_ignore_ascii_case("inline") => Ok(Self::Inline),
            Some(value) if value.eq_ignore_ascii_case("queue") => Ok(Self::Queue {
                queue: queue.to_owned(),
            }),
            Some(value) => Err(ConfigError {
                variable: "JOB_DISPATCH",
                reason: format!("{value:?} is neither \"inline\" nor \"queue\""),
            }),
        }
    }
}

/// The completion queue (`COMPLETION_QUEUE`), where every job that ends puts its hand-off to
/// the next stage (docs/api.md section 10); `None` when unset. It may not be the job queue or
/// its poison queue: `RunJob` listens to the job queue, and would take hand-offs for jobs.
pub(super) fn completion_queue(env: &Env<'_>) -> Result<Option<String>, ConfigError> {
    let Some(name) = env.get("COMPLETION_QUEUE") else {
        return Ok(None);
    };
    validate_queue_name("COMPLETION_QUEUE", name)?;
    let jobs = env.get("JOB_QUEUE").unwrap_or(DEFAULT_JOB_QUEUE);
    if name == jobs || name == poison_queue_name(jobs) || poison_queue_name(name) == jobs {
        return Err(ConfigError {
            variable: "COMPLETION_QUEUE",
            reason: format!(
                "{name:?} is the job queue {jobs:?}, its poison queue, or has the job queue as                  its poison queue; name a queue of its own"
            ),
        });
    }
    Ok(Some(name.to_owned()))
}

/// Azure's queue naming rules, leaving room for the `-poison` queue's suffix: 3 to 56
/// lowercase letters, digits and single hyphens, starting and ending with a letter or digit.
/// (A queue-triggered function's poison queue is `<name>-poison`, for the completion queue's
/// consumer as for `RunJob`.)
fn validate_queue_name(variable: &'static str, name: &str) -> Result<(), ConfigError> {
    let longest = 63 - "-poison".len();
    if name.len() <= longest && crate::store::azure::is_resource_name(name) {
        Ok(())
    } else {
        Err(ConfigError {
            variable,
            reason: format!(
                "{name:?} is not a queue name (3-{longest} lowercase letters, digits, single hyphens)"
            ),
        })
    }
}

#[derive(Deserialize)]
struct HostJson {
    #[serde(default)]
    extensions: Option<Extensions>,
}

#[derive(Deserialize)]
struct Extensions {
    #[serde(default)]
    queues: Option<QueuesSection>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueuesSection {
    max_dequeue_count: Option<u32>,
    visibility_timeout: Option<String>,
    batch_size: Option<u8>,
    max_polling_interval: Option<String>,
}

impl ListenerSettings {
    /// Reads `extensions.queues` of the `host.json` at `path`; the host's defaults where the
    /// file, the section or a value is absent.
    pub fn from_host_json(path: &Path) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default())
            }
            Err(error) => return Err(host_json_error(error.to_string())),
        };
        Self::from_host_json_text(&text)
    }

    fn from_host_json_text(text: &str) -> Result<Self, ConfigError> {
        let host: HostJson =
            serde_json::from_str(text).map_err(|error| host_json_error(error.to_string()))?;
        let defaults = Self::default();
        let Some(section) = host.extensions.and_then(|extensions| extensions.queues) else {
            return Ok(defaults);
        };
        let time_span = |value: Option<String>, default: Duration| match value {
            None => Ok(default),
            Some(text) => parse_time_span(&text)
                .ok_or_else(|| host_json_error(format!("{text:?} is not a time span (hh:mm:ss)"))),
        };
        let settings = Self {
            max_dequeue_count: section
                .max_dequeue_count
                .unwrap_or(defaults.max_dequeue_count),
            visibility_timeout: time_span(section.visibility_timeout, defaults.visibility_timeout)?,
            batch_size: section.batch_size.unwrap_or(defaults.batch_size),
            max_polling_interval: time_span(
                section.max_polling_interval,
                defaults.max_polling_interval,
            )?,
        };
        if settings.max_dequeue_count == 0 || !(1..=32).contains(&settings.batch_size) {
            return Err(host_json_error(
                "maxDequeueCount must be at least 1 and batchSize 1 to 32".into(),
            ));
        }
        Ok(settings)
    }
}

fn host_json_error(reason: String) -> ConfigError {
    ConfigError {
        variable: "host.json extensions.queues",
        reason,
    }
}

/// A .NET time span as host.json writes it: `hh:mm:ss`, optionally `d.hh:mm:ss` and fractional
/// seconds.
pub fn parse_time_span(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (days, clock) = match text.split_once('.') {
        Some((days, rest)) if rest.contains(':') && !days.contains(':') => {
            (days.parse::<u64>().ok()?, rest)
        }
        _ => (0, text),
    };
    let mut parts = clock.split(':');
    let hours: u64 = parts.next()?.parse().ok()?;
    let minutes: u64 = parts.next()?.parse().ok()?;
    let seconds: f64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || minutes >= 60 || !(0.0..60.0).contains(&seconds) {
        return None;
    }
    let whole = (days * 24 + hours) * 3600 + minutes * 60;
    Some(Duration::from_secs(whole) + Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_spans_read_as_host_json_writes_them() {
        assert_eq!(parse_time_span("00:00:02"), Some(Duration::from_secs(2)));
        assert_eq!(parse_time_span("00:10:00"), Some(Duration::from_secs(600)));
        assert_eq!(
            parse_time_span("1.00:00:01"),
            Some(Duration::from_secs(86_401))
        );
        assert_eq!(
            parse_time_span("00:00:00.5"),
            Some(Duration::from_millis(500))
        );
        for bad in ["", "2", "00:61:00", "a:b:c", "00:00:00:00", "00:00:-1"] {
            assert_eq!(parse_time_span(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_projects_host_json_is_read() {
        // Tests run in the package's root, the app root.
        let settings = ListenerSettings::from_host_json(Path::new("host.json")).unwrap();
        assert_eq!(settings.max_dequeue_count, 5);
        assert_eq!(settings.visibility_timeout, Duration::from_secs(30));
        assert_eq!(settings.batch_size, 4);
        assert_eq!(settings.max_polling_interval, Duration::from_secs(2));
    }

    #[test]
    fn a_host_json_without_a_queues_section_means_the_hosts_defaults() {
        let settings = ListenerSettings::from_host_json_text(r#"{"version": "2.0"}"#).unwrap();
        assert_eq!(settings, ListenerSettings::default());
        assert!(ListenerSettings::from_host_json_text(
            r#"{"extensions": {"queues": {"maxDequeueCount": 0}}}"#
        )
        .is_err());
    }
}
