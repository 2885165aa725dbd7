//! Reddit credentials: from the environment (in Azure, app settings that are Key Vault
//! references), else read from Key Vault with the app's managed identity.
//!
//! Key Vault is read when a job first needs the credentials, not at start, so a vault that is
//! briefly unreachable fails that job with a clear error instead of the whole handler; a
//! successful read is kept for the life of the process.

use std::sync::Arc;

use async_trait::async_trait;
use azure_security_keyvault::SecretClient;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;

use crate::config::RedditSettings;
use crate::reddit::client::{CredentialSource, FixedCredentials};
use crate::reddit::Credentials;
use crate::store::azure::Identity;

/// The secret names in the vault (docs/api.md section 8).
pub const CLIENT_ID_SECRET: &str = "reddit-client-id";
pub const CLIENT_SECRET_SECRET: &str = "reddit-client-secret";
pub const USER_AGENT_SECRET: &str = "reddit-user-agent";

/// Chooses where the Reddit credentials come from.
pub fn credential_source(settings: &RedditSettings) -> Arc<dyn CredentialSource> {
    match (
        &settings.client_id,
        &settings.client_secret,
        &settings.key_vault_url,
    ) {
        (Some(id), Some(secret), _) => Arc::new(FixedCredentials(Some(Credentials {
            client_id: id.clone(),
            client_secret: secret.clone(),
            user_agent: None,
        }))),
        (_, _, Some(vault)) => {
            tracing::info!(vault = %vault, "Reddit credentials will be read from Key Vault");
            Arc::new(KeyVaultCredentials::new(
                vault.as_str(),
                settings.user_agent.is_none(),
                settings.key_vault_client_id.clone(),
            ))
        }
        _ => {
            tracing::warn!(
                "no Reddit credentials (REDDIT_CLIENT_ID/REDDIT_CLIENT_SECRET or KEY_VAULT_URL): \
                 using the public listing, which Reddit limits to about 10 requests a minute"
            );
            Arc::new(FixedCredentials(None))
        }
    }
}

/// Credentials read once from Key Vault.
pub struct KeyVaultCredentials {
    vault_url: String,
    /// Whether to read `reddit-user-agent` too (`REDDIT_USER_AGENT` was not set).
    with_user_agent: bool,
    /// Who reads the vault: the managed identity (of this client id) where the platform offers
    /// one, else the developer's credentials.
    identity: Identity,
    loaded: OnceCell<Credentials>,
}

impl KeyVaultCredentials {
    pub fn new(vault_url: &str, with_user_agent: bool, client_id: Option<String>) -> Self {
        Self {
            vault_url: vault_url.to_owned(),
            with_user_agent,
            identity: Identity::Default { client_id },
            loaded: OnceCell::new(),
        }
    }

    async fn load(&self) -> Result<Credentials, String> {
        let identity = self
            .identity
            .credential()
            .map_err(|error| format!("no Azure identity to read Key Vault with ({error})"))?;
        let client = SecretClient::new(&self.vault_url, identity)
            .map_err(|error| format!("Key Vault URL rejected ({error})"))?;
        let read = |name: &'static str| {
            let client = client.clone();
            async move {
                client
                    .get(name)
                    .await
                    .map(|secret| SecretString::from(secret.value))
                    .map_err(|error| {
                        format!(
                            "Key Vault secret {name} could not be read ({})",
                            error.kind()
                        )
                    })
            }
        };
        let (client_id, client_secret) =
            tokio::try_join!(read(CLIENT_ID_SECRET), read(CLIENT_SECRET_SECRET))?;
        // The User-Agent is optional: without it the default one is used.
        let user_agent = if self.with_user_agent {
            read(USER_AGENT_SECRET)
                .await
                .ok()
                .map(|agent| agent.expose_secret().trim().to_owned())
                .filter(|agent| !agent.is_empty())
        } else {
            None
        };
        tracing::info!(
            user_agent_from_vault = user_agent.is_some(),
            "Reddit credentials read from Key Vault"
        );
        Ok(Credentials {
            client_id,
            client_secret,
            user_agent,
        })
    }
}

#[async_trait]
impl CredentialSource for KeyVaultCredentials {
    async fn credentials(&self) -> Result<Option<Credentials>, String> {
        self.loaded
            .get_or_try_init(|| self.load())
            .await
            .map(|credentials| Some(credentials.clone()))
    }
}
