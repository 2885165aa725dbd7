//! Application-only OAuth (docs/reddit.md): the app's credentials, where they come from, and
//! the one bearer token the whole process shares, renewed shortly before it expires or once
//! after a 401. Credentials Reddit refuses are read anew, once, from a source that can change
//! (Key Vault), so a rotated secret is taken up without a restart.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::time::Instant;

use super::RedditClient;
use crate::outbound::failure;
use crate::reddit::rate_limit::bounded_seconds;
use crate::reddit::FetchError;

/// A Reddit "script" or "web" app's credentials.
#[derive(Clone)]
pub struct Credentials {
    pub client_id: SecretString,
    pub client_secret: SecretString,
    /// A User-Agent that came with the credentials (Key Vault's `reddit-user-agent`); it
    /// replaces the client's own on every request made with them.
    pub user_agent: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { .. }")
    }
}

/// Where credentials come from; loading may be slow or fail (Key Vault), so it happens when a
/// job first needs them, and a failure fails that job rather than the process.
#[async_trait]
pub trait CredentialSource: Send + Sync + 'static {
    /// `Ok(None)`: there are no credentials; use the public listing.
    async fn credentials(&self) -> Result<Option<Credentials>, String>;

    /// Reddit refused the credentials last handed out: the next [`credentials`] reads them
    /// anew. Returns whether that can give other credentials (a fixed source cannot).
    ///
    /// [`credentials`]: CredentialSource::credentials
    async fn refused(&self) -> bool {
        false
    }
}

#[derive(Clone)]
pub(super) struct Token {
    pub(super) value: SecretString,
    pub(super) user_agent: Option<String>,
    /// Renew a little before Reddit's expiry so no request carries a just-expired token.
    renew_at: Instant,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    /// Seconds; any JSON number is taken, then bounded by [`token_lifetime`].
    expires_in: Option<f64>,
}

/// Reddit's usual token lifetime, taken when the answer gives none (or a nonsensical one).
const USUAL_LIFETIME: Duration = Duration::from_secs(3600);
/// A token is kept at most this long, whatever Reddit says: a lifetime that overflows the clock
/// would panic, and a token kept for years is never renewed.
const LONGEST_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// A token is kept at least this long, so that a tiny `expires_in` does not cost a token
/// request per listing request.
const SHORTEST_LIFETIME: Duration = Duration::from_secs(5);

/// How long to keep a token Reddit said expires in `expires_in` seconds: a negative,
/// non-finite or missing value counts as absent (an hour), others are bounded.
fn token_lifetime(expires_in: Option<f64>) -> Duration {
    expires_in
        .and_then(|seconds| bounded_seconds(seconds, LONGEST_LIFETIME))
        .unwrap_or(USUAL_LIFETIME)
        .max(SHORTEST_LIFETIME)
}

impl RedditClient {
    /// The bearer token, fetched when missing or due for renewal. `Ok(None)`: no credentials.
    pub(super) async fn token(&self, force_renew: bool) -> Result<Option<Token>, FetchError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref() {
            if !force_renew && Instant::now() < token.renew_at {
                return Ok(Some(token.clone()));
            }
        }
        let mut read_anew = false;
        let (credentials, answer) = loop {
            let Some(credentials) = self
                .credentials
                .credentials()
                .await
                .map_err(FetchError::CredentialsUnavailable)?
            else {
                return Ok(None);
            };
            match self.request_token(&credentials).await {
                // Rotated in the vault since they were read: read them again, once.
                Err(FetchError::BadCredentials(_))
                    if !read_anew && self.credentials.refused().await =>
                {
                    tracing::warn!("Reddit refused the credentials; reading them again");
                    read_anew = true;
                }
                Err(error) => return Err(error),
                Ok(answer) => break (credentials, answer),
            }
        };
        let answer: TokenAnswer = answer.json().await.map_err(|_| {
            FetchError::CredentialsUnavailable("token endpoint answered malformed JSON".into())
        })?;
        let lifetime = token_lifetime(answer.expires_in);
        let margin = (lifetime / 10).min(Duration::from_secs(300));
        let token = Token {
            value: SecretString::from(answer.access_token),
            user_agent: credentials.user_agent.clone(),
            renew_at: Instant::now() + lifetime - margin,
        };
        tracing::info!(
            expires_in_s = answer.expires_in,
            kept_s = lifetime.as_secs(),
            "obtained a Reddit access token"
        );
        *cached = Some(token.clone());
        Ok(Some(token))
    }

    /// Asks Reddit for a token with `credentials`; the answer, when it is one.
    async fn request_token(
        &self,
        credentials: &Credentials,
    ) -> Result<reqwest::Response, FetchError> {
        let url = self
            .endpoints
            .auth
            .join("api/v1/access_token")
            .expect("a fixed relative path joins");
        let mut request = self.http.post(url);
        if let Some(user_agent) = &credentials.user_agent {
            request = request.header(reqwest::header::USER_AGENT, user_agent);
        }
        crate::meter::count(crate::meter::Request::Reddit);
        let answer = request
            .basic_auth(
                credentials.client_id.expose_secret(),
                Some(credentials.client_secret.expose_secret()),
            )
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(|error| {
                FetchError::CredentialsUnavailable(format!(
                    "token request failed: {}",
                    failure(&error).to_owned()
                ))
            })?;
        let status = answer.status();
        if status == StatusCode::UNAUTHORIZED
            || status == StatusCode::FORBIDDEN
            || status == StatusCode::BAD_REQUEST
        {
            return Err(FetchError::BadCredentials(status.as_u16()));
        }
        if !status.is_success() {
            return Err(FetchError::CredentialsUnavailable(format!(
                "token endpoint answered HTTP {}",
                status.as_u16()
            )));
        }
        Ok(answer)
    }
}

/// Hands out fixed credentials (or none); used when they come from the environment.
pub struct FixedCredentials(pub Option<Credentials>);

#[async_trait]
impl CredentialSource for FixedCredentials {
    async fn credentials(&self) -> Result<Option<Credentials>, String> {
        Ok(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_lifetime_from_outside_is_bounded() {
        let cases = [
            (Some(3600.0), USUAL_LIFETIME),
            (None, USUAL_LIFETIME),
            (Some(-5.0), USUAL_LIFETIME),
            (Some(f64::NAN), USUAL_LIFETIME),
            (Some(f64::INFINITY), USUAL_LIFETIME),
            (Some(1e30), LONGEST_LIFETIME),
            (Some(u64::MAX as f64), LONGEST_LIFETIME),
            (Some(0.0), SHORTEST_LIFETIME),
            (Some(1.0), SHORTEST_LIFETIME),
            (Some(90.5), Duration::from_millis(90_500)),
        ];
        for (expires_in, kept) in cases {
            assert_eq!(
                token_lifetime(expires_in),
                kept,
                "expires_in {expires_in:?}"
            );
        }
    }

    #[test]
    fn any_json_number_is_read_as_a_lifetime() {
        for (body, expires_in) in [
            (
                r#"{"access_token": "t", "expires_in": 18446744073709551615}"#,
                Some(u64::MAX as f64),
            ),
            (r#"{"access_token": "t", "expires_in": 1e30}"#, Some(1e30)),
            (r#"{"access_token": "t", "expires_in": -5}"#, Some(-5.0)),
            (r#"{"access_token": "t"}"#, None),
        ] {
            let answer: TokenAnswer = serde_json::from_str(body).unwrap();
            assert_eq!(answer.expires_in, expires_in, "{body}");
        }
    }
}
