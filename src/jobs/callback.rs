//! Completion callbacks (docs/api.md section 7): the final status document POSTed to the job's
//! `callback_url`, signed as Standard Webhooks says, retried with backoff. A callback that keeps
//! failing is logged and given up; it never changes the job's outcome.
//!
//! - [`address`]: which addresses a callback may reach ([`CallbackPolicy`]), on the URL's
//!   text and at connection.
//! - [`url`]: [`CallbackUrl`], the URL's text and the rules it passes at submit.
//! - [`record`]: where a callback stands ([`CallbackRecord`]), kept in the status document so
//!   that it survives the instance that owes it; `transitions.rs`: the status document's claim
//!   on it and the record of each attempt.
//! - [`delivery`]: claiming, sending and recording an owed callback, at least once across
//!   instances; the runner runs it as a tracked task (`runner/delivery.rs`).
//! - [`signing`]: the `webhook-*` headers and the key that signs them.
//! - [`CallbackSender`]: one signed request.
//! - [`UnsignedCallbacks`]: where a callback that would go out unsigned is refused at submit.

pub mod address;
pub mod delivery;
pub mod record;
pub mod signing;
mod transitions;
pub mod url;

pub use self::url::CallbackUrl;
pub use address::CallbackPolicy;
pub use record::{CallbackRecord, CallbackState};
/// The old `X-Womble-Signature` value, `sha256=<hex>` of the body: see [`signing`].
pub use signing::legacy_signature as signature;
pub use signing::SigningKey;

use std::sync::Arc;
use std::time::Duration;

use super::request::JobRequest;
use super::status::StatusDocument;
use crate::retry::Backoff;

/// Requests sent for one callback, by every instance together, before it is abandoned.
pub const MAX_ATTEMPTS: u32 = 5;

/// 0.5, 1, 2 and 4 s apart. Every failure is retried, whatever the answer (api.md section 7).
pub const DELIVERY: Backoff = Backoff::new(Duration::from_millis(500)).max_attempts(MAX_ATTEMPTS);

/// One HTTP client for every callback, configured once: a 10 s timeout, no redirects, no
/// proxy (a proxy would make the connection, and judge the address, in our stead), and a
/// resolver that connects to public addresses only. `Debug` shows no key.
#[derive(Clone)]
pub struct CallbackSender {
    http: reqwest::Client,
    signing_key: Option<SigningKey>,
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
        signing_key: Option<SigningKey>,
        policy: CallbackPolicy,
    ) -> Result<Self, reqwest::Error> {
        Self::with_lookup(signing_key, policy, address::system_lookup())
    }

    /// As [`new`](Self::new), resolving host names with `lookup` (tests make names resolve
    /// where they like).
    pub fn with_lookup(
        signing_key: Option<SigningKey>,
        policy: CallbackPolicy,
        lookup: address::Lookup,
    ) -> Result<Self, reqwest::Error> {
        match signing_key.as_ref().map(SigningKey::form) {
            None => tracing::warn!(
                "CALLBACK_SIGNING_KEY is not set: completion callbacks carry no signature"
            ),
            Some(signing::KeyForm::Legacy) => tracing::warn!(
                "CALLBACK_SIGNING_KEY is not a whsec_ secret: it signs callbacks as the raw bytes \
                 of its text, and the deprecated X-Womble-Signature header is still sent; \
                 see docs/api.md section 7 to move to a whsec_ secret"
            ),
            Some(signing::KeyForm::Standard) => {}
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

    /// One POST of `message` to `url`, stamped with the time of this attempt. The URL's text is
    /// judged again first: the rules may have tightened since the job was stored.
    pub async fn attempt(&self, url: &CallbackUrl, message: &Message) -> Result<(), String> {
        let url =
            CallbackUrl::parse(url.as_str(), self.policy).map_err(|refused| refused.to_owned())?;
        let timestamp = chrono::Utc::now().timestamp();
        let mut request = self
            .http
            .post(url.as_str())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(signing::WEBHOOK_ID, &message.id)
            .header(signing::WEBHOOK_TIMESTAMP, timestamp.to_string())
            .body(message.body.clone());
        if let Some(key) = &self.signing_key {
            for (name, value) in key.headers(&message.id, timestamp, &message.body) {
                request = request.header(name, value);
            }
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

/// One job's callback as every attempt sends it: the same `webhook-id` and the same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `webhook-id`: the job id.
    pub id: String,
    pub body: Vec<u8>,
}

/// The callback message of a terminal job. Its body is the final status document as an API
/// answer shows it (the callback URL cut down to its origin), without what the delivery itself
/// moves (its own record, and the `usage` its writes add to), so every attempt sends the same
/// bytes.
pub fn body(document: &StatusDocument) -> Message {
    let mut shown = document.clone();
    shown.callback = None;
    shown.usage = Default::default();
    Message {
        id: document.job_id.to_string(),
        body: serde_json::to_vec(&shown).expect("status documents serialise"),
    }
}

/// What happens to a `callback_url` when there is no signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsignedCallbacks {
    /// The callback is sent unsigned (a warning at start says so): outside Azure, or with
    /// `ALLOW_UNSIGNED_CALLBACKS=true`.
    Sent,
    /// A job that asks for one is refused at submit: under the Functions host in Azure, where a
    /// receiver could not tell our callbacks from anyone's.
    Refused,
}

/// A job refused because its callback would go out unsigned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "callback_url is refused: this deployment has no callback signing key, and it sends no \
     unsigned callbacks (its operator can set CALLBACK_SIGNING_KEY, or \
     ALLOW_UNSIGNED_CALLBACKS=true to send them unsigned)"
)]
pub struct UnsignedCallbackRefused;

impl UnsignedCallbacks {
    /// Admits `request` unless it asks for a callback that `signing_key` would not sign where
    /// unsigned callbacks are refused.
    pub fn admit(
        self,
        signing_key: Option<&SigningKey>,
        request: &JobRequest,
    ) -> Result<(), UnsignedCallbackRefused> {
        match (self, signing_key, &request.callback_url) {
            (Self::Refused, None, Some(_)) => Err(UnsignedCallbackRefused),
            _ => Ok(()),
        }
    }
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
