//! What a caller asked for, in types that only hold valid values.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::reddit::Subreddit;

/// A job's id: a random UUID v4, shown in lower-case hyphenated form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(Uuid);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job_id must be a UUID like 6ce324a8-0502-4b0c-b729-12e10f0f22f6")]
pub struct InvalidJobId;

impl JobId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    /// Accepts the hyphenated form only (any case), which is what tickets hand out.
    pub fn parse(text: &str) -> Result<Self, InvalidJobId> {
        if text.len() != 36 {
            return Err(InvalidJobId);
        }
        Uuid::try_parse(text).map(Self).map_err(|_| InvalidJobId)
    }

    /// The first 8 characters, used to keep output blob names apart.
    pub fn short(&self) -> String {
        self.to_string()[..8].to_owned()
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for JobId {
    type Err = InvalidJobId;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// Where topics come from. Only Reddit, for now; the name is in every output blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Reddit,
}

impl Source {
    pub fn as_str(&self) -> &'static str {
        match self {
            Source::Reddit => "reddit",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Unsupported source: {0}")]
pub struct UnsupportedSource(pub String);

impl FromStr for Source {
    type Err = UnsupportedSource;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "reddit" => Ok(Source::Reddit),
            other => Err(UnsupportedSource(other.to_owned())),
        }
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

/// A complete, valid collection request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRequest {
    pub source: Source,
    /// 1 to [`JobRequest::MAX_TOPICS`] names, no two the same subreddit.
    pub topics: Vec<Subreddit>,
    pub limit: Limit,
    pub priority: Priority,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

impl JobRequest {
    pub const MAX_TOPICS: usize = 50;
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
mod tests {
    use super::*;

    #[test]
    fn job_ids_round_trip_through_their_text_form() {
        let id = JobId::new();
        assert_eq!(JobId::parse(&id.to_string()).unwrap(), id);
        assert_eq!(id.short().len(), 8);
    }

    #[test]
    fn job_ids_must_be_hyphenated_uuids() {
        for bad in [
            "",
            "123",
            "6ce324a8-0502-4b0c-b729-12e10f0f22f",
            "6ce324a805024b0cb72912e10f0f22f6",
            "{6ce324a8-0502-4b0c-b729-12e10f0f22f6}",
            "../../etc/passwd",
            "6ce324a8-0502-4b0c-b729-12e10f0f22fg",
        ] {
            assert!(JobId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(JobId::parse("6CE324A8-0502-4B0C-B729-12E10F0F22F6").is_ok());
    }

    #[test]
    fn duplicate_subreddits_keep_the_first_spelling() {
        let names = [
            "Technology",
            "programming",
            "technology",
            "PROGRAMMING",
            "gadgets",
        ]
        .iter()
        .map(|n| Subreddit::parse(n).unwrap())
        .collect();
        let kept: Vec<String> = dedup_subreddits(names)
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(kept, ["Technology", "programming", "gadgets"]);
    }

    #[test]
    fn limits_outside_1_to_100_do_not_exist() {
        assert!(Limit::new(0).is_none());
        assert!(Limit::new(101).is_none());
        assert_eq!(Limit::new(100).unwrap().get(), 100);
    }
}
