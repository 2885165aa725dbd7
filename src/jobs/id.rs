//! [`JobId`]: the name of a job everywhere (tickets, status blobs, logs).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

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

    /// The id as a number (what a [`crate::meter::Meter`] is owned by).
    pub fn as_u128(&self) -> u128 {
        self.0.as_u128()
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
}
