//! Application-only OAuth (docs/reddit.md): the app's credentials, where they come from, and
//! the one bearer token the whole process shares, renewed shortly before it expires or once
//! after a 401.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::time::Instant;

use super::RedditClient;
use crate::outbound::failure;
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
    #[serde(default = "default_expiry")]
    expires_in: u64,
}

fn default_expiry() -> u64 {
    3600
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
        let Some(credentials) = self
            .credentials
            .credentials()
            .await
            .map_err(FetchError::CredentialsUnavailable)?
        else {
            return Ok(None);
        };
        let url = self
            .endpoints
            .auth
            .join("api/v1/access_token")
            .expect("a fixed relative path joins");
        let mut request = self.http.post(url);
        if let Some(user_agent) = &credentials.user_agent {
            request = request.header(reqwest::header::USER_AGENT, user_agent);
        }
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
        let answer: TokenAnswer = answer.json().await.map_err(|_| {
            FetchError::CredentialsUnavailable("token endpoint answered malformed JSON".into())
        })?;
        let lifetime = Duration::from_secs(answer.expires_in);
        let margin = (lifetime / 10).min(Duration::from_secs(300));
        let token = Token {
            value: SecretString::from(answer.access_token),
            user_agent: credentials.user_agent.clone(),
            renew_at: Instant::now() + lifetime - margin,
        };
        tracing::info!(
            expires_in_s = answer.expires_in,
            "obtained a Reddit access token"
        );
        *cached = Some(token.clone());
        Ok(Some(token))
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
