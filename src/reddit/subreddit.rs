//! The subreddit name, parsed once at the edge.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A valid subreddit name: letters, digits and `_`, 2 to 21 characters, not starting with `_`
/// (`^[A-Za-z0-9][A-Za-z0-9_]{1,20}$`). The spelling is kept as given; comparisons that decide
/// whether two names are the same subreddit use [`Subreddit::same_as`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subreddit(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a subreddit name (2 to 21 letters, digits or underscores, not starting with an underscore)")]
pub struct InvalidSubreddit(pub String);

impl Subreddit {
    pub fn parse(name: &str) -> Result<Self, InvalidSubreddit> {
        let mut chars = name.chars();
        let valid = (2..=21).contains(&name.len())
            && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidSubreddit(name.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Reddit treats names case-insensitively.
    pub fn same_as(&self, other: &Subreddit) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl fmt::Display for Subreddit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Subreddit {
    type Error = InvalidSubreddit;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Subreddit> for String {
    fn from(value: Subreddit) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_are_kept_as_spelled() {
        for name in [
            "technology",
            "MachineLearning",
            "a1",
            "x_",
            "AskReddit",
            "abcdefghijklmnopqrstu",
        ] {
            assert_eq!(Subreddit::parse(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn invalid_names_are_refused() {
        for name in [
            "",
            "a",
            "_under",
            "has space",
            "dash-name",
            "abcdefghijklmnopqrstuv",
            "r/tech",
            "ünï",
            "..",
            "tech\n",
        ] {
            assert!(Subreddit::parse(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn names_compare_case_insensitively() {
        let a = Subreddit::parse("Technology").unwrap();
        let b = Subreddit::parse("technology").unwrap();
        assert!(a.same_as(&b));
        assert_ne!(a, b);
    }
}
