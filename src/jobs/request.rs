//! What a caller asked for, in types that only hold valid values, and the rules that turn a
//! caller's start request into one (the same for HTTP, the timer and the command line).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::callback::address::CallbackPolicy;
use super::callback::url::CallbackUrl;
use crate::reddit::Subreddit;

/// The subreddits collected when a request (or the timer) names none.
pub const DEFAULT_SUBREDDITS: [&str; 7] = [
    "technology",
    "programming",
    "MachineLearning",
    "datascience",
    "computerscience",
    "gadgets",
    "Futurology",
];

/// [`DEFAULT_SUBREDDITS`] as names.
pub fn default_subreddits() -> Vec<Subreddit> {
    DEFAULT_SUBREDDITS
        .iter()
        .map(|name| Subreddit::parse(name).expect("the defaults are valid names"))
        .collect()
}

/// Where topics come from. Only Reddit, for now; the name is in every output blob and is the
/// topic source's own ([`crate::reddit::SOURCE_NAME`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Source {
    Reddit,
}

impl Source {
    const ALL: [Source; 1] = [Source::Reddit];

    pub fn name(self) -> &'static str {
        match self {
            Source::Reddit => crate::reddit::SOURCE_NAME,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Source> for &'static str {
    fn from(source: Source) -> Self {
        source.name()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Unsupported source: {0}")]
pub struct UnsupportedSource(pub String);

impl FromStr for Source {
    type Err = UnsupportedSource;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Source::ALL
            .into_iter()
            .find(|source| source.name() == text)
            .ok_or_else(|| UnsupportedSource(text.to_owned()))
    }
}

impl TryFrom<String> for Source {
    type Error = UnsupportedSource;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

/// Posts per subreddit: 1 to 100 (Reddit's page size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Limit(u32);

impl Limit {
    pub const MAX: u32 = 100;
    pub const DEFAULT: Limit = Limit(10);

    pub fn new(value: u32) -> Option<Self> {
        (1..=Self::MAX).contains(&value).then_some(Self(value))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for Limit {
    type Error = String;
    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Self::new(value).ok_or_else(|| format!("limit {value} is outside 1 to 100"))
    }
}

impl From<Limit> for u32 {
    fn from(value: Limit) -> Self {
        value.0
    }
}

/// High-priority jobs leave the queue first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    #[default]
    Normal,
    High,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }
}

/// A complete, valid collection request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRequest {
    pub source: Source,
    /// 1 to [`JobRequest::MAX_TOPICS`] names, no two the same subreddit.
    pub topics: Vec<Subreddit>,
    pub limit: Limit,
    pub priority: Priority,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<CallbackUrl>,
}

impl JobRequest {
    pub const MAX_TOPICS: usize = 50;

    /// Applies the start rules (docs/api.md section 2) to what a caller asked for: an absent part
    /// takes its default; a part that breaks a rule is named in the error.
    pub fn from_requested(
        requested: RequestedJob,
        callbacks: CallbackPolicy,
    ) -> Result<Self, RequestError> {
        let source = match requested.source {
            None => Source::Reddit,
            Some(text) => text
                .parse()
                .map_err(|error: UnsupportedSource| RequestError::new("source", error))?,
        };
        let topics = match requested.topics {
            None => default_subreddits(),
            Some(names) => {
                if names.is_empty() || names.len() > Self::MAX_TOPICS {
                    return Err(RequestError::new(
                        "topics",
                        format!("topics must hold 1 to {} subreddit names", Self::MAX_TOPICS),
                    ));
                }
                let parsed = names
                    .iter()
                    .enumerate()
                    .map(|(index, name)| {
                        Subreddit::parse(name).map_err(|error| {
                            RequestError::new("topics", format!("topics[{index}]: {error}"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                dedup_subreddits(parsed)
            }
        };
        let limit = match requested.limit {
            None => Limit::DEFAULT,
            Some(value) => u32::try_from(value)
                .ok()
                .and_then(Limit::new)
                .ok_or_else(|| {
                    RequestError::new("limit", "limit must be an integer from 1 to 100")
                })?,
        };
        let priority = match requested.priority.as_deref() {
            None | Some("normal") => Priority::Normal,
            Some("high") => Priority::High,
            Some(_) => {
                return Err(RequestError::new(
                    "priority",
                    "priority must be \"high\" or \"normal\"",
                ))
            }
        };
        let callback_url = requested
            .callback_url
            .map(|text| CallbackUrl::parse(&text, callbacks))
            .transpose()
            .map_err(|error| RequestError::new("callback_url", error))?;
        Ok(Self {
            source,
            topics,
            limit,
            priority,
            callback_url,
        })
    }
}

/// A start request as a caller states it: every part optional and not yet checked. Its JSON
/// form is the start body of the API, with only the parts that were given.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct RequestedJob {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

/// A start request that breaks a rule; the message names the part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RequestError {
    pub field: &'static str,
    pub message: String,
}

impl RequestError {
    fn new(field: &'static str, message: impl fmt::Display) -> Self {
        Self {
            field,
            message: message.to_string(),
        }
    }
}

/// An `Idempotency-Key`: 1 to 200 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Idempotency-Key must be 1 to 200 printable ASCII characters")]
pub struct InvalidIdempotencyKey;

impl IdempotencyKey {
    /// Reads raw header bytes: anything but 1 to 200 visible ASCII characters is refused.
    pub fn parse(bytes: &[u8]) -> Result<Self, InvalidIdempotencyKey> {
        if (1..=200).contains(&bytes.len()) && bytes.iter().all(|b| (0x20..0x7f).contains(b)) {
            Ok(Self(
                String::from_utf8(bytes.to_vec()).expect("ASCII is UTF-8"),
            ))
        } else {
            Err(InvalidIdempotencyKey)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Removes later spellings of a subreddit already in the list (Reddit names are
/// case-insensitive), keeping the first.
pub fn dedup_subreddits(names: Vec<Subreddit>) -> Vec<Subreddit> {
    let mut kept: Vec<Subreddit> = Vec::with_capacity(names.len());
    for name in names {
        if !kept.iter().any(|seen| seen.same_as(&name)) {
            kept.push(name);
        }
    }
    kept
}

#[cfg(test)]
mod tests;
