//! How far a job has come ([`Progress`], [`ProgressStep`]) and the stamp of its run
//! ([`RunStamp`]), each a type whose text form is fixed by the API.

use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::reddit::Subreddit;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub step: ProgressStep,
    pub completed: u32,
    pub total: u32,
}

/// What a job is doing: `initializing`, `processing r/<name>`, or `finished` in its text form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ProgressStep {
    Initializing,
    Processing(Subreddit),
    Finished,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a progress step (initializing, processing r/<name>, finished)")]
pub struct InvalidProgressStep(String);

impl TryFrom<String> for ProgressStep {
    type Error = InvalidProgressStep;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        match text.as_str() {
            "initializing" => Ok(Self::Initializing),
            "finished" => Ok(Self::Finished),
            other => other
                .strip_prefix("processing r/")
                .and_then(|name| Subreddit::parse(name).ok())
                .map(Self::Processing)
                .ok_or(InvalidProgressStep(text)),
        }
    }
}

impl From<ProgressStep> for String {
    fn from(step: ProgressStep) -> Self {
        step.to_string()
    }
}

impl fmt::Display for ProgressStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Initializing => f.write_str("initializing"),
            Self::Processing(subreddit) => write!(f, "processing r/{subreddit}"),
            Self::Finished => f.write_str("finished"),
        }
    }
}

/// The `YYYYmmdd_HHMMSS` (UTC) stamp of a run: the prefix of its output blob names, the
/// `fetched_at` of its topics and the `timestamp` of its results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunStamp(String);

const RUN_STAMP_FORMAT: &str = "%Y%m%d_%H%M%S";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a YYYYmmdd_HHMMSS run stamp")]
pub struct InvalidRunStamp(String);

impl RunStamp {
    pub fn of(at: DateTime<Utc>) -> Self {
        Self(at.format(RUN_STAMP_FORMAT).to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RunStamp {
    type Error = InvalidRunStamp;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        match NaiveDateTime::parse_from_str(&text, RUN_STAMP_FORMAT) {
            Ok(at) if at.format(RUN_STAMP_FORMAT).to_string() == text => Ok(Self(text)),
            _ => Err(InvalidRunStamp(text)),
        }
    }
}

impl From<RunStamp> for String {
    fn from(stamp: RunStamp) -> Self {
        stamp.0
    }
}

impl fmt::Display for RunStamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_round_trips_through_its_text() {
        let steps = [
            ProgressStep::Initializing,
            ProgressStep::Processing(Subreddit::parse("rust_lang").unwrap()),
            ProgressStep::Finished,
        ];
        for step in steps {
            let text = String::from(step.clone());
            assert_eq!(ProgressStep::try_from(text), Ok(step));
        }
        for bad in [
            "",
            "processing",
            "processing r/_x",
            "Finished",
            "processing r/a b",
        ] {
            assert!(ProgressStep::try_from(bad.to_owned()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_run_stamp_is_the_utc_second_of_its_run() {
        let at = DateTime::parse_from_rfc3339("2025-08-11T13:52:21.355702Z")
            .unwrap()
            .with_timezone(&Utc);
        let stamp = RunStamp::of(at);
        assert_eq!(stamp.as_str(), "20250811_135221");
        assert_eq!(RunStamp::try_from(stamp.to_string()), Ok(stamp));
        for bad in [
            "2025-08-11",
            "20250811_1352",
            "20251311_135221",
            "20250811_135221x",
        ] {
            assert!(RunStamp::try_from(bad.to_owned()).is_err(), "{bad:?}");
        }
    }
}
