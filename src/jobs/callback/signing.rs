//! How a callback is signed: the Standard Webhooks scheme
//! (<https://www.standardwebhooks.com>), so that a receiver can verify it with one of the
//! published libraries instead of code of its own.
//!
//! Every attempt carries three headers:
//!
//! - `webhook-id`: the job id. The same on every attempt of one job's callback, whichever
//!   instance sends it, so a receiver can use it to drop repeats.
//! - `webhook-timestamp`: when this attempt was made, in Unix seconds. A receiver refuses an
//!   attempt too far from its own clock (the libraries allow 5 minutes), which is what stops a
//!   captured callback from being replayed later.
//! - `webhook-signature`: `v1,<base64 of HMAC-SHA256 over "<id>.<timestamp>.<body>">`, so the
//!   id and the timestamp are signed with the body.
//!
//! The key is `CALLBACK_SIGNING_KEY`. In its Standard Webhooks form, `whsec_<base64>`, the
//! decoded bytes are the HMAC key, as every library expects. A value in any other form is a
//! key set before Standard Webhooks was adopted: it keeps working, as the raw bytes of its text
//! (a receiver hands the libraries those bytes), and with it the old `X-Womble-Signature` header
//! is still sent for this release, so receivers that check it keep working while they move to
//! the new headers (api.md section 7, "Migrating from the old signature header").

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;

/// The message id header: the job id.
pub const WEBHOOK_ID: &str = "webhook-id";
/// The attempt's time, in Unix seconds.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// `v1,<base64 signature>`.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
/// The header used before Standard Webhooks: `sha256=<hex HMAC-SHA256 of the body>`. Sent only
/// with a legacy key, and for this release only.
pub const LEGACY_SIGNATURE_HEADER: &str = "X-Womble-Signature";

/// The prefix of a Standard Webhooks symmetric secret.
const SECRET_PREFIX: &str = "whsec_";
/// The specification's bounds for a `whsec_` secret: 24 to 64 random bytes.
const SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// Standard base64, with or without its `=` padding (the libraries read either).
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The key that signs callbacks. `Debug` shows its form, never its bytes.
#[derive(Clone)]
pub struct SigningKey {
    bytes: SecretSlice<u8>,
    form: KeyForm,
}

/// How the key was written in `CALLBACK_SIGNING_KEY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyForm {
    /// `whsec_<base64>`: the decoded bytes are the key.
    Standard,
    /// Any other text, as accepted before Standard Webhooks: its bytes are the key, and the old
    /// header is sent too.
    Legacy,
}

/// A `whsec_` value that cannot be a Standard Webhooks secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSigningKey {
    #[error("starts with whsec_ but what follows is not base64")]
    NotBase64,
    #[error(
        "starts with whsec_ but holds {0} bytes; a Standard Webhooks secret is 24 to 64 random \
         bytes (for example: whsec_ followed by `openssl rand -base64 32`)"
    )]
    WrongLength(usize),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("form", &self.form)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads `CALLBACK_SIGNING_KEY`: `whsec_<base64>`, or a legacy value of any other form.
    pub fn parse(text: &str) -> Result<Self, InvalidSigningKey> {
        let Some(encoded) = text.strip_prefix(SECRET_PREFIX) else {
            return Ok(Self {
                bytes: text.as_bytes().to_vec().into(),
                form: KeyForm::Legacy,
            });
        };
        let bytes = SECRET_BASE64
            .decode(encoded)
            .map_err(|_| InvalidSigningKey::NotBase64)?;
        if !SECRET_BYTES.contains(&bytes.len()) {
            return Err(InvalidSigningKey::WrongLength(bytes.len()));
        }
        Ok(Self {
            bytes: bytes.into(),
            form: KeyForm::Standard,
        })
    }

    pub fn form(&self) -> KeyForm {
        self.form
    }

    /// The signing headers of one attempt of the message `id` with `body`, made at `timestamp`
    /// (Unix seconds): `webhook-signature`, and with a legacy key the old header too.
    /// (`webhook-id` and `webhook-timestamp` go out with or without a key.)
    pub fn headers(&self, id: &str, timestamp: i64, body: &[u8]) -> Vec<(&'static str, String)> {
        let mut headers = vec![(WEBHOOK_SIGNATURE, self.sign(id, timestamp, body))];
        if self.form == KeyForm::Legacy {
            headers.push((
                LEGACY_SIGNATURE_HEADER,
                legacy_signature(self.bytes.expose_secret(), body),
            ));
        }
        headers
    }

    /// `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = hmac(self.bytes.expose_secret());
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The old header's value: `sha256=<hex HMAC-SHA256 of the body>` keyed by `key`.
pub fn legacy_signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = hmac(key);
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn hmac(key: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length")
}
