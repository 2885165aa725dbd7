//! A callback URL's text and the rules it must pass when a job is submitted (and again before
//! each attempt): `https`, no credentials, a public host, unless the policy opens this machine.
//! What counts as public is [`address`](super::address)'s; this module reads the URL.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::address::{self, CallbackPolicy};

/// Where the final status document of a job is POSTed: an `https` URL without credentials
/// that names a public host (or, under [`CallbackPolicy::AllowLocal`], `127.0.0.1` or
/// `localhost`).
///
/// The full URL is often a secret (a token in its path or query): it is stored, but API answers
/// and the callback body show only its [`origin`](CallbackUrl::origin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CallbackUrl(String);

/// What a callback URL's host is, for the policy.
enum CallbackHost {
    Public,
    /// `127.0.0.1` or `localhost`, open under [`CallbackPolicy::AllowLocal`].
    ThisMachine,
    /// Anything else that is not public: never accepted.
    NotPublic,
}

impl CallbackUrl {
    /// Judges the URL's text. Host names are also judged when the callback is sent, on every
    /// address they resolve to ([`PublicOnlyResolver`](super::address::PublicOnlyResolver)).
    pub fn parse(text: &str, policy: CallbackPolicy) -> Result<Self, &'static str> {
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
        match (url.scheme(), host, policy) {
            ("https", CallbackHost::Public, _) => Ok(Self(url.to_string())),
            ("http" | "https", CallbackHost::ThisMachine, CallbackPolicy::AllowLocal) => {
                Ok(Self(url.to_string()))
            }
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

    /// The URL cut down to its [`origin`](CallbackUrl::origin).
    pub fn redacted(&self) -> Self {
        Self(self.origin())
    }
}

#[cfg(test)]
mod tests;
