//! Typed settings, read once from the environment at start.
//!
//! Every variable of docs/api.md section 8 is parsed here into a type that cannot hold a bad value;
//! an error names the variable so the person reading the host log knows what to fix. Secrets
//! are wrapped in [`SecretString`] so they never reach a log through `Debug`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::jobs::callback::{SigningKey, UnsignedCallbacks};
use crate::jobs::request::default_subreddits;
use crate::jobs::{CallbackPolicy, Limit};
use crate::reddit::Subreddit;
use crate::schedule::Schedule;
pub use crate::telemetry::LogFormat;

mod callbacks;
mod queues;
mod references;
mod storage;

pub use queues::{parse_time_span, DispatchSettings, DEFAULT_JOB_QUEUE};
pub use storage::{IdentityConnection, StorageAccount, StorageSettings};

/// Everything the handler needs to run, decided once at start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Mode,
    pub storage: StorageSettings,
    pub reddit: RedditSettings,
    pub jobs: JobSettings,
    pub timer: TimerSettings,
    pub log_format: LogFormat,
    /// `WEBSITE_HOSTNAME`: the app's public host name in Azure, used for public URLs when a
    /// request carries no `X-Forwarded-Host`.
    pub website_hostname: Option<String>,
}

/// Whether the Functions host is in front of us.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Under the Functions host: listen on loopback at the port it chose. The host checks keys
    /// and runs the timer, so we do neither.
    Host { port: u16 },
    /// On our own: listen where [`Bind`] says, check function keys ourselves (when any are
    /// configured) and run the GetHotTopics schedule ourselves.
    Standalone {
        port: u16,
        /// `None` means no check, announced with a warning at start.
        function_keys: Option<Vec<SecretString>>,
        bind: Bind,
    },
}

/// The address standalone mode listens on, and why: said at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub address: IpAddr,
    pub reason: &'static str,
}

impl Bind {
    /// `BIND_ADDRESS` when set. Otherwise every interface when function keys guard the API, and
    /// only this machine when nothing does: an app without keys must not be open to the
    /// network by default.
    fn choose(env: &Env, keys_set: bool) -> Result<Self, ConfigError> {
        if let Some(text) = env.get("BIND_ADDRESS") {
            let address = text.trim().parse().map_err(|_| ConfigError {
                variable: "BIND_ADDRESS",
                reason: format!("{text:?} is not an IP address (such as 127.0.0.1 or 0.0.0.0)"),
            })?;
            return Ok(Self {
                address,
                reason: "BIND_ADDRESS says so",
            });
        }
        Ok(if keys_set {
            Self {
                address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                reason: "every interface: FUNCTION_KEYS is set, so every call needs a key",
            }
        } else {
            Self {
                address: IpAddr::V4(Ipv4Addr::LOCALHOST),
                reason: "this machine only: FUNCTION_KEYS is not set, so nothing checks callers; \
                         set BIND_ADDRESS=0.0.0.0 to accept calls from the network anyway",
            }
        })
    }
}

impl Mode {
    /// Why [`listen_addr`](Self::listen_addr) is what it is, for the log line at start.
    pub fn listen_reason(&self) -> &'static str {
        match self {
            Mode::Host { .. } => "loopback: the Functions host connects over 127.0.0.1",
            Mode::Standalone { bind, .. } => bind.reason,
        }
    }

    pub fn listen_addr(&self) -> SocketAddr {
        match self {
            // The host always connects to 127.0.0.1 over IPv4.
            Mode::Host { port } => SocketAddr::from((Ipv4Addr::LOCALHOST, *port)),
            Mode::Standalone { port, bind, .. } => SocketAddr::from((bind.address, *port)),
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            Mode::Host { port } | Mode::Standalone { port, .. } => *port,
        }
    }

    pub fn is_host(&self) -> bool {
        matches!(self, Mode::Host { .. })
    }
}

#[derive(Debug, Clone)]
pub struct RedditSettings {
    pub auth_url: Url,
    pub api_url: Url,
    /// The base of the credential-less `.json` listing, used when no credentials exist.
    pub public_url: Url,
    pub client_id: Option<SecretString>,
    pub client_secret: Option<SecretString>,
    pub user_agent: Option<String>,
    pub key_vault_url: Option<Url>,
    /// `AZURE_CLIENT_ID`: the user-assigned identity that reads `KEY_VAULT_URL`; without it,
    /// the system-assigned identity (or, off Azure, the developer's Azure CLI login).
    pub key_vault_client_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct JobSettings {
    pub max_concurrent_jobs: usize,
    pub stale_after: Duration,
    pub retention_days: u32,
    /// `CALLBACK_SIGNING_KEY`: signs completion callbacks (api.md section 7).
    pub callback_signing_key: Option<SigningKey>,
    /// Without a signing key: whether callbacks go out unsigned or are refused at submit
    /// (refused under the host in Azure unless `ALLOW_UNSIGNED_CALLBACKS=true`).
    pub unsigned_callbacks: UnsignedCallbacks,
    /// `ALLOW_INSECURE_CALLBACKS`: whether local callback addresses are accepted.
    pub callback_policy: CallbackPolicy,
    /// `JOB_DISPATCH` and `JOB_QUEUE`.
    pub dispatch: DispatchSettings,
    /// `COMPLETION_QUEUE`: where every job that ends puts its hand-off to the next stage
    /// (docs/api.md section 10); `None` when no hand-off is wanted.
    pub completion_queue: Option<String>,
    /// Where the app's queues live (the job queue under queue dispatch, the completion queue):
    /// the account `RunJob`'s trigger watches. `None` when the app uses no queue.
    pub queue_account: Option<StorageAccount>,
}

#[derive(Debug, Clone)]
pub struct TimerSettings {
    /// Where GetHotTopics submits; `None` means "our own SummaryWomble", resolved at run time
    /// from the port we listen on.
    pub summary_womble_url: Option<Url>,
    pub summary_womble_key: Option<SecretString>,
    pub subreddits: Vec<Subreddit>,
    pub limit: Limit,
    pub status_check_delay: Duration,
    /// Standalone mode's schedule for GetHotTopics (`TIMER_SCHEDULE`).
    pub schedule: Schedule,
}

/// A setting that is present but unusable. The message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("setting {variable} is invalid: {reason}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
}

pub const DEFAULT_CONTAINER: &str = "hot-topics";

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Reads settings from a map of variables; the environment is one such map.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let env = Env(vars);
        references::refuse_unresolved_references(&env)?;
        let mode = match env.get("FUNCTIONS_CUSTOMHANDLER_PORT") {
            Some(_) => Mode::Host {
                port: env.parse("FUNCTIONS_CUSTOMHANDLER_PORT", 7071)?,
            },
            None => Mode::Standalone {
                port: env.parse("PORT", 7071)?,
                function_keys: env.get("FUNCTION_KEYS").map(|keys| {
                    keys.split(',')
                        .map(str::trim)
                        .filter(|key| !key.is_empty())
                        .map(|key| SecretString::from(key.to_owned()))
                        .collect()
                }),
                bind: Bind::choose(&env, env.get("FUNCTION_KEYS").is_some())?,
            },
        };
        if let Mode::Standalone {
            function_keys: Some(keys),
            ..
        } = &mode
        {
            if keys.is_empty() {
                return Err(ConfigError {
                    variable: "FUNCTION_KEYS",
                    reason: "is set but holds no key; unset it to turn the key check off".into(),
                });
            }
        }

        let container = env
            .get("OUTPUT_CONTAINER")
            .unwrap_or(DEFAULT_CONTAINER)
            .to_owned();
        validate_container(&container)?;
        let storage = storage::storage_settings(&env, &mode, container)?;

        let reddit = RedditSettings {
            auth_url: env.url("REDDIT_AUTH_URL", "https://www.reddit.com")?,
            api_url: env.url("REDDIT_API_URL", "https://oauth.reddit.com")?,
            public_url: env.url("REDDIT_PUBLIC_URL", "https://www.reddit.com")?,
            client_id: env.secret("REDDIT_CLIENT_ID"),
            client_secret: env.secret("REDDIT_CLIENT_SECRET"),
            user_agent: env.get("REDDIT_USER_AGENT").map(str::to_owned),
            key_vault_url: env.optional_url("KEY_VAULT_URL")?,
            key_vault_client_id: env.get("AZURE_CLIENT_ID").map(str::to_owned),
        };

        let callbacks = callbacks::CallbackSettings::from_env(&env, &mode)?;
        let mut jobs = JobSettings {
            max_concurrent_jobs: env.parse_in("MAX_CONCURRENT_JOBS", 4, 1..=256)?,
            stale_after: Duration::from_secs(env.parse_in(
                "JOB_STALE_AFTER_SECONDS",
                120,
                5..=86_400,
            )?),
            retention_days: env.parse_in("JOB_RETENTION_DAYS", 30, 1..=3650)?,
            callback_signing_key: callbacks.signing_key,
            unsigned_callbacks: callbacks.unsigned,
            callback_policy: callbacks.policy,
            dispatch: DispatchSettings::from_env(&env)?,
            completion_queue: queues::completion_queue(&env)?,
            queue_account: None,
        };
        let needs_a_queue = if matches!(jobs.dispatch, DispatchSettings::Queue { .. }) {
            Some(("JOB_DISPATCH", "\"queue\" needs"))
        } else if jobs.completion_queue.is_some() {
            Some(("COMPLETION_QUEUE", "the completion queue needs"))
        } else {
            None
        };
        if let Some((variable, what)) = needs_a_queue {
            jobs.queue_account = Some(storage::queue_account(&env, &storage)?.ok_or_else(
                || ConfigError {
                    variable,
                    reason: format!(
                        "{what} a storage account for its queue: set AzureWebJobsStorage \
                             (UseDevelopmentStorage=true for Azurite) or another storage \
                             connection"
                    ),
                },
            )?);
        }

        let subreddits = match env.get("HOT_TOPICS_SUBREDDITS") {
            None => default_subreddits(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(|name| {
                    Subreddit::parse(name).map_err(|error| ConfigError {
                        variable: "HOT_TOPICS_SUBREDDITS",
                        reason: error.to_string(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        if subreddits.is_empty() {
            return Err(ConfigError {
                variable: "HOT_TOPICS_SUBREDDITS",
                reason: "names no subreddit".into(),
            });
        }
        let timer = TimerSettings {
            summary_womble_url: match env.optional_url("SUMMARY_WOMBLE_URL")? {
                Some(url) => Some(url),
                None => env
                    .get("WEBSITE_HOSTNAME")
                    .map(|host| format!("https://{host}/api/SummaryWomble"))
                    .map(|url| {
                        Url::parse(&url).map_err(|error| ConfigError {
                            variable: "WEBSITE_HOSTNAME",
                            reason: error.to_string(),
                        })
                    })
                    .transpose()?,
            },
            summary_womble_key: env.secret("SUMMARY_WOMBLE_KEY"),
            subreddits,
            limit: Limit::new(env.parse_in(
                "HOT_TOPICS_LIMIT",
                Limit::DEFAULT.get(),
                1..=Limit::MAX,
            )?)
            .expect("the range is a limit's"),
            status_check_delay: Duration::from_secs(env.parse_in(
                "STATUS_CHECK_DELAY_SECONDS",
                10,
                0..=600,
            )?),
            schedule: Schedule::parse(env.get("TIMER_SCHEDULE").unwrap_or("0 0 */6 * * *"))
                .map_err(|error| ConfigError {
                    variable: "TIMER_SCHEDULE",
                    reason: error.to_string(),
                })?,
        };

        let log_format = match env.get("LOG_FORMAT") {
            None => LogFormat::Human,
            Some(value) if value.eq_ignore_ascii_case("json") => LogFormat::Json,
            Some(value)
                if value.eq_ignore_ascii_case("human") || value.eq_ignore_ascii_case("text") =>
            {
                LogFormat::Human
            }
            Some(value) => {
                return Err(ConfigError {
                    variable: "LOG_FORMAT",
                    reason: format!("{value:?} is neither \"json\" nor \"human\""),
                })
            }
        };

        Ok(Settings {
            mode,
            storage,
            reddit,
            jobs,
            timer,
            log_format,
            website_hostname: env.get("WEBSITE_HOSTNAME").map(str::to_owned),
        })
    }
}

/// Azure's container naming rules: 3 to 63 lowercase letters, digits and single hyphens,
/// starting and ending with a letter or digit.
fn validate_container(name: &str) -> Result<(), ConfigError> {
    if crate::store::azure::is_resource_name(name) {
        Ok(())
    } else {
        Err(ConfigError {
            variable: "OUTPUT_CONTAINER",
            reason: format!(
                "{name:?} is not a container name (3-63 lowercase letters, digits, single hyphens)"
            ),
        })
    }
}

/// Read access to the variables, treating an empty value as unset (as App Service does for
/// settings that were cleared).
struct Env<'a>(&'a HashMap<String, String>);

impl Env<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(|value| value.trim())
            .filter(|value| !value.is_empty())
    }

    /// As [`Env::get`], with the name matched ignoring ASCII case: the host reads the settings
    /// under a connection prefix (`AzureWebJobsStorage__accountName`) that way.
    fn get_any_case(&self, name: &str) -> Option<&str> {
        self.get(name).or_else(|| {
            self.0
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.trim())
                .filter(|value| !value.is_empty())
        })
    }

    fn secret(&self, name: &str) -> Option<SecretString> {
        self.get(name)
            .map(|value| SecretString::from(value.to_owned()))
    }

    fn parse<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(value) => value.parse().map_err(|error| ConfigError {
                variable: name,
                reason: format!("{value:?}: {error}"),
            }),
        }
    }

    fn parse_in<T>(
        &self,
        name: &'static str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display,
        T::Err: std::fmt::Display,
    {
        let value = self.parse(name, default)?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError {
                variable: name,
                reason: format!("{value} is outside {} to {}", range.start(), range.end()),
            })
        }
    }

    fn url(&self, name: &'static str, default: &str) -> Result<Url, ConfigError> {
        Ok(self
            .optional_url(name)?
            .unwrap_or_else(|| Url::parse(default).expect("the defaults are valid URLs")))
    }

    fn optional_url(&self, name: &'static str) -> Result<Option<Url>, ConfigError> {
        self.get(name)
            .map(|value| {
                let url = Url::parse(value).map_err(|error| ConfigError {
                    variable: name,
                    reason: format!("{value:?} is not a URL: {error}"),
                })?;
                if url.scheme() == "http" || url.scheme() == "https" {
                    Ok(url)
                } else {
                    Err(ConfigError {
                        variable: name,
                        reason: format!("{value:?} is not an http(s) URL"),
                    })
                }
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests;
