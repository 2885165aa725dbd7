//! A callback URL's text and the rules it must pass when a job is submitted (and again before
//! each attempt): `https`, no credentials, a public host, unless the policy opens this machine.
//! What counts as public is [`address`](super::address)'s; this module reads the URL.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize, Serializer};

use super::address::{self, CallbackPolicy};

/// Where the final status document of a job is POSTed: an `https` URL without credentials
/// that names a public host (or, under [`CallbackPolicy::AllowLocal`], `127.0.0.1` or
/// `localhost`).
///
/// The full URL is often a secret (a token in its path or query), so it serialises as its
/// [`origin`](CallbackUrl::origin) only: that is all `status.json`, answers and the callback body
/// show. The full text ([`CallbackUrl::as_str`]) is kept in the status blob's metadata
/// (`crate::jobs::status::stored`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct CallbackUrl(String);

impl Serialize for CallbackUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.origin())
    }
}

/// What a callback URL's host is, for the policy.
enum CallbackHost {
    Public,
    /// `127.0.0.1` or `localhost`, open under [`CallbackPolicy::AllowLocal`].
    ThisMachine,
    /// Anything else that is not public: never accepted.
    NotPublic,
}

impl CallbackUrl {
    /// The longest URL accepted, in bytes: it is kept in blob metadata, which Azure holds to
    /// 8 KiB in all.
    pub const MAX_LEN: usize = 2048;

    /// Judges the URL's text. Host names are also judged when the callback is sent, on every
    /// address they resolve to ([`PublicOnlyResolver`](super::address::PublicOnlyResolver)).
    pub fn parse(text: &str, policy: CallbackPolicy) -> Result<Self, &'static str> {
        if text.len() > Self::MAX_LEN {
            return Err("callback_url must be at most 2048 characters");
        }
        let url = url::Url::parse(text).map_err(|_| "callback_url must be an https URL")?;
        let Some(host) = url.host() else {
            return Err("callback_url must be an https URL without credentials");
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err("callback_url must be an https URL without credentials");
        }
        let host = match host {
            url::Host::Domain("") => {
                return Err("callback_url must be an https URL without credentials")
            }
            url::Host::Domain(name) if name.eq_ignore_ascii_case("localhost") => {
                CallbackHost::ThisMachine
            }
            url::Host::Domain(name) if address::is_localhost_name(name) => CallbackHost::NotPublic,
            url::Host::Domain(_) => CallbackHost::Public,
            url::Host::Ipv4(ip) if ip == Ipv4Addr::LOCALHOST => CallbackHost::ThisMachine,
            url::Host::Ipv4(ip) if !address::is_public(ip.into()) => CallbackHost::NotPublic,
            url::Host::Ipv6(ip) if !address::is_public(ip.into()) => CallbackHost::NotPublic,
            url::Host::Ipv4(_) | url::Host::Ipv6(_) => CallbackHost::Public,
        };
        let accepted = || {
            let text = url.to_string();
            // Normalising percent-encodes, and can so lengthen the text.
            if text.len() > Self::MAX_LEN {
                Err("callback_url must be at most 2048 characters")
            } else {
                Ok(Self(text))
            }
        };
        match (url.scheme(), host, policy) {
            ("https", CallbackHost::Public, _) => accepted(),
            ("http" | "https", CallbackHost::ThisMachine, CallbackPolicy::AllowLocal) => accepted(),
            (_, CallbackHost::ThisMachine | CallbackHost::NotPublic, _) => {
                Err("callback_url must not point at a local or private address")
            }
            _ => Err("callback_url must be an https URL"),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `scheme://host[:port]`: all an answer may show of the URL.
    pub fn origin(&self) -> String {
        url::Url::parse(&self.0)
            .map(|url| url.origin().ascii_serialization())
            .unwrap_or_default()
    }

    /// A URL as stored: judged when its job was submitted, and judged again (its host's
    /// addresses) before every attempt.
    pub(crate) fn stored(text: String) -> Self {
        Self(text)
    }
}

#[cfg(test)]
mod tests;
