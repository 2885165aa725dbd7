//! Completion callbacks (docs/api.md section 7): the final status document POSTed to the job's
//! `callback_url`, signed with HMAC-SHA256, retried with backoff. A callback that keeps failing
//! is logged and given up; it never changes the job's outcome.

use std::time::Duration;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::status::StatusDocument;
use crate::retry::{retry, Backoff, Verdict};

/// The header carrying `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Womble-Signature";

/// `sha256=<hex>` of `body` keyed by `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Five attempts, 0.5, 1, 2 and 4 s apart. Every failure is retried, whatever the answer
/// (api.md section 7: "retried with backoff on failure").
const DELIVERY: Backoff = Backoff::new(Duration::from_millis(500)).max_attempts(5);

/// `Debug` shows no key: `SecretString` redacts itself.
#[derive(Clone, Debug)]
pub struct CallbackSender {
    http: reqwest::Client,
    signing_key: Option<SecretString>,
}

impl CallbackSender {
    pub fn new(signing_key: Option<SecretString>) -> Result<Self, reqwest::Error> {
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
                .build()?,
            signing_key,
        })
    }

    /// Sends `document` to `url` until a 2xx answer or the attempts run out. Returns whether
    /// it was delivered.
    pub async fn deliver(&self, url: &str, document: &StatusDocument) -> bool {
        let body = serde_json::to_vec(document).expect("status documents serialise");
        let signed = self
            .signing_key
            .as_ref()
            .map(|key| signature(key.expose_secret().as_bytes(), &body));
        let send = |attempt| {
            let mut request = self
                .http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some(signed) = &signed {
                request = request.header(SIGNATURE_HEADER, signed);
            }
            async move {
                let failure = match request.send().await {
                    Ok(answer) if answer.status().is_success() => {
                        tracing::info!(job_id = %document.job_id, attempt, "completion callback delivered");
                        return Ok(());
                    }
                    Ok(answer) => format!("HTTP {}", answer.status().as_u16()),
                    Err(error) => crate::outbound::failure(&error).to_owned(),
                };
                tracing::warn!(job_id = %document.job_id, attempt, failure = %failure, "completion callback failed");
                Err(failure)
            }
        };
        let delivered = retry(&DELIVERY, None, send, |_| Verdict::Retry, |_, _| {})
            .await
            .is_ok();
        if !delivered {
            tracing::error!(job_id = %document.job_id, "completion callback given up");
        }
        delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hex_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
