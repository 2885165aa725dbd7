//! A blob's metadata: name–value pairs stored with its content, written by the same put and
//! guarded by the same ETag (Azure's `x-ms-meta-*` headers).
//!
//! The rules are Azure's, narrowed to what travels safely as an HTTP header and reads back the
//! same from every store:
//! - names are lowercase ASCII letters, digits and `_`, starting with a letter (Azure keeps
//!   names as C# identifiers, case-insensitively, and answers them lowercased);
//! - values are printable ASCII without leading or trailing spaces (a header trims them);
//! - names and values together are at most [`Metadata::MAX_BYTES`].

use std::collections::BTreeMap;
use std::fmt;

/// A blob's metadata, in name order. Empty for a blob written without any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    /// Azure's limit on a blob's metadata: 8 KiB of names and values.
    pub const MAX_BYTES: usize = 8 * 1024;

    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`, replacing an earlier value. Whether the pair is allowed is
    /// checked when the blob is written ([`Metadata::check`]).
    pub fn insert(&mut self, name: &str, value: impl Into<String>) {
        self.0.insert(name.to_owned(), value.into());
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }

    /// Whether every pair keeps the rules above. Stores call it before they write.
    pub fn check(&self) -> Result<(), InvalidMetadata> {
        let mut total = 0;
        for (name, value) in self.iter() {
            let mut chars = name.chars();
            let name_ok = chars.next().is_some_and(|first| first.is_ascii_lowercase())
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !name_ok {
                return Err(InvalidMetadata(format!("name {name:?}")));
            }
            let value_ok =
                value.bytes().all(|b| (0x20..0x7f).contains(&b)) && value.trim() == value;
            if !value_ok {
                return Err(InvalidMetadata(format!("the value of {name}")));
            }
            total += name.len() + value.len();
        }
        if total > Self::MAX_BYTES {
            return Err(InvalidMetadata(format!(
                "{total} bytes in all, over {}",
                Self::MAX_BYTES
            )));
        }
        Ok(())
    }
}

impl FromIterator<(String, String)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        Self(pairs.into_iter().collect())
    }
}

/// Metadata that breaks a rule of [`Metadata::check`]; names what broke it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidMetadata(String);

impl fmt::Display for InvalidMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blob metadata not allowed: {}", self.0)
    }
}

impl std::error::Error for InvalidMetadata {}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, value: &str) -> Metadata {
        let mut metadata = Metadata::new();
        metadata.insert(name, value);
        metadata
    }

    #[test]
    fn names_are_lowercase_identifiers_and_values_printable_ascii_without_outer_spaces() {
        for good in [
            one("claims", "3"),
            one("callback_url", "https://hooks.example.com/a?b=c d"),
            one("a1_b", ""),
        ] {
            assert_eq!(good.check(), Ok(()), "{good:?}");
        }
        for bad in [
            one("Claims", "3"),
            one("1st", "3"),
            one("_x", "3"),
            one("a-b", "3"),
            one("", "3"),
            one("name", " padded"),
            one("name", "padded "),
            one("name", "line\nbreak"),
            one("name", "café"),
        ] {
            assert!(bad.check().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn more_than_eight_kib_in_all_is_refused() {
        let mut metadata = one("a", &"x".repeat(Metadata::MAX_BYTES - 2));
        assert_eq!(metadata.check(), Ok(()));
        metadata.insert("b", "x");
        assert!(metadata.check().is_err());
    }
}
