//! Completion callbacks (docs/api.md section 7): the final status document POSTed to the job's
//! `callback_url`, signed with HMAC-SHA256, retried with backoff. A callback that keeps failing
//! is logged and given up; it never changes the job's outcome.
//!
//! - [`address`]: which addresses a callback may reach, on the URL's text and at connection.
//! - [`record`](CallbackRecord): where a callback stands, kept in the status document so that
//!   it survives the instance that owes it; the runner delivers it (`runner/delivery.rs`).
//! - [`CallbackSender`]: one signed request.

pub mod address;
mod record;

pub use record::{CallbackRecord, CallbackState};

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::request::{CallbackPolicy, CallbackUrl};
use super::status::StatusDocument;
use crate::retry::Backoff;

/// The header carrying `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Womble-Signature";

/// `sha256=<hex>` of `body` keyed by `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Requests sent for one callback, by every instance together, before it is abandoned.
pub const MAX_ATTEMPTS: u32 = 5;

/// 0.5, 1, 2 and 4 s apart. Every failure is retried, whatever the answer (api.md section 7).
pub const DELIVERY: Backoff = Backoff::new(Duration::from_millis(500)).max_attempts(MAX_ATTEMPTS);

/// One HTTP client for every callback, configured once: a 10 s timeout, no redirects, no
/// proxy (a proxy would make the connection, and judge the address, in our stead), and a
/// resolver that connects to public addresses only. `Debug` shows no key: `SecretString`
/// redacts itself.
#[derive(Clone)]
pub struct CallbackSender {
    http: reqwest::Client,
    signing_key: Option<SecretString>,
    policy: CallbackPolicy,
}

impl std::fmt::Debug for CallbackSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackSender")
            .field("signing_key", &self.signing_key)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl CallbackSender {
    pub fn new(
        signing_key: Option<SecretString>,
        policy: CallbackPolicy,
    ) -> Result<Self, reqwest::Error> {
        Self::with_lookup(signing_key, policy, address::system_lookup())
    }

    /// As [`new`](Self::new), resolving host names with `lookup` (tests make names resolve
    /// where they like).
    pub fn with_lookup(
        signing_key: Option<SecretString>,
        policy: CallbackPolicy,
        lookup: address::Lookup,
    ) -> Result<Self, reqwest::Error> {
        if signing_key.is_none() {
            tracing::warn!(
                "CALLBACK_SIGNING_KEY is not set: completion callbacks are sent unsigned"
            );
        }
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                // A callback receiver has no business redirecting us elsewhere.
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .dns_resolver(Arc::new(address::PublicOnlyResolver::new(policy, lookup)))
                .build()?,
            signing_key,
            policy,
        })
    }

    /// One POST of `body` to `url`. The URL's text is judged again first: the rules may have
    /// tightened since the job was stored.
    pub async fn attempt(&self, url: &CallbackUrl, body: &[u8]) -> Result<(), String> {
        let url =
            CallbackUrl::parse(url.as_str(), self.policy).map_err(|refused| refused.to_owned())?;
        let mut request = self
            .http
            .post(url.as_str())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        if let Some(key) = &self.signing_key {
            request = request.header(
                SIGNATURE_HEADER,
                signature(key.expose_secret().as_bytes(), body),
            );
        }
        match request.send().await {
            Ok(answer) if answer.status().is_success() => Ok(()),
            Ok(answer) => Err(format!("HTTP {}", answer.status().as_u16())),
            Err(error) if refused_host(&error) => Err(
                "the callback host resolves to a local or private address, or not at all"
                    .to_owned(),
            ),
            Err(error) => Err(crate::outbound::failure(&error).to_owned()),
        }
    }
}

/// The callback body: the final status document as an API answer shows it (the callback URL
/// cut down to its origin), without the delivery's own record, so every attempt sends the same
/// bytes.
pub fn body(document: &StatusDocument) -> Vec<u8> {
    let mut shown = document.redacted();
    shown.callback = None;
    serde_json::to_vec(&shown).expect("status documents serialise")
}

/// Whether reqwest failed because our resolver refused the host.
fn refused_host(error: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<address::RefusedHost>() {
            return true;
        }
        source = cause.source();
    }
    false
}

#[cfg(test)]
mod tests;
