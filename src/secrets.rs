//! Reddit credentials: from the environment (in Azure, app settings that are Key Vault
//! references), else read from Key Vault with the app's managed identity.
//!
//! Key Vault is read when a job first needs the credentials, not at start, so a vault that is
//! briefly unreachable fails that job with a clear error instead of the whole handler. A
//! successful read is kept for [`REREAD_AFTER`], then read again, so a secret rotated in the
//! vault is taken up within that time without a restart; and at once when Reddit refuses the
//! credentials kept. A vault unreachable at a re-read keeps the credentials it gave before.

use std::sync::Arc;

use async_trait::async_trait;
use azure_security_keyvault::SecretClient;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tokio::time::{Duration, Instant};

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

/// How long credentials read from Key Vault are used before the vault is read again.
pub const REREAD_AFTER: Duration = Duration::from_secs(3600);

/// Credentials read from Key Vault, read again after [`REREAD_AFTER`] or when refused.
pub struct KeyVaultCredentials {
    vault_url: String,
    /// Whether to read `reddit-user-agent` too (`REDDIT_USER_AGENT` was not set).
    with_user_agent: bool,
    /// Who reads the vault: the managed identity (of this client id) where the platform offers
    /// one, else the developer's credentials.
    identity: Identity,
    kept: Kept,
}

/// The last credentials read, and until when they are used without asking the vault again.
struct Loaded {
    credentials: Credentials,
    fresh_until: Instant,
}

/// Credentials kept between reads of their source: for [`REREAD_AFTER`], until refused, and
/// past both while the source cannot be read.
struct Kept {
    loaded: Mutex<Option<Loaded>>,
}

impl Kept {
    fn new() -> Self {
        Self {
            loaded: Mutex::new(None),
        }
    }

    /// The kept credentials while fresh, else what `load` reads (kept in their place), else,
    /// when it fails, the stale ones; the error only when there are none.
    async fn get(
        &self,
        load: impl std::future::Future<Output = Result<Credentials, String>>,
    ) -> Result<Credentials, String> {
        let mut loaded = self.loaded.lock().await;
        if let Some(kept) = loaded
            .as_ref()
            .filter(|kept| Instant::now() < kept.fresh_until)
        {
            return Ok(kept.credentials.clone());
        }
        match load.await {
            Ok(credentials) => {
                *loaded = Some(Loaded {
                    credentials: credentials.clone(),
                    fresh_until: Instant::now() + REREAD_AFTER,
                });
                Ok(credentials)
            }
            Err(error) => match loaded.as_ref() {
                Some(kept) => {
                    tracing::warn!(
                        %error,
                        "Key Vault could not be read again; keeping the credentials read before"
                    );
                    Ok(kept.credentials.clone())
                }
                None => Err(error),
            },
        }
    }

    /// The kept credentials were refused: the next [`get`](Self::get) reads them anew.
    async fn refused(&self) {
        if let Some(kept) = self.loaded.lock().await.as_mut() {
            kept.fresh_until = Instant::now();
        }
    }
}

impl KeyVaultCredentials {
    pub fn new(vault_url: &str, with_user_agent: bool, client_id: Option<String>) -> Self {
        Self {
            vault_url: vault_url.to_owned(),
            with_user_agent,
            identity: Identity::Default { client_id },
            kept: Kept::new(),
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
        self.kept.get(self.load()).await.map(Some)
    }

    async fn refused(&self) -> bool {
        self.kept.refused().await;
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    /// A vault whose secret is the number of its reads so far, or that cannot be read.
    struct Vault {
        reads: AtomicUsize,
        down: AtomicBool,
    }

    impl Vault {
        fn new(down: bool) -> Self {
            Self {
                reads: AtomicUsize::new(0),
                down: AtomicBool::new(down),
            }
        }

        async fn read(&self) -> Result<Credentials, String> {
            if self.down.load(Ordering::SeqCst) {
                return Err("vault unreachable".into());
            }
            let n = self.reads.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(Credentials {
                client_id: SecretString::from("id".to_owned()),
                client_secret: SecretString::from(format!("secret-{n}")),
                user_agent: None,
            })
        }
    }

    async fn secret(kept: &Kept, vault: &Vault) -> Result<String, String> {
        kept.get(vault.read())
            .await
            .map(|credentials| credentials.client_secret.expose_secret().to_owned())
    }

    #[tokio::test(start_paused = true)]
    async fn credentials_are_read_again_after_an_hour_and_at_once_when_refused() {
        let (vault, kept) = (Vault::new(false), Kept::new());
        assert_eq!(secret(&kept, &vault).await.unwrap(), "secret-1");
        tokio::time::advance(REREAD_AFTER - Duration::from_secs(1)).await;
        assert_eq!(secret(&kept, &vault).await.unwrap(), "secret-1");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(secret(&kept, &vault).await.unwrap(), "secret-2");
        kept.refused().await;
        assert_eq!(secret(&kept, &vault).await.unwrap(), "secret-3");
        assert_eq!(secret(&kept, &vault).await.unwrap(), "secret-3");
    }

    #[tokio::test(start_paused = true)]
    async fn a_vault_down_at_a_re_read_keeps_the_credentials_it_gave_and_a_first_read_fails() {
        let (vault, kept) = (Vault::new(true), Kept::new());
        assert!(secret(&kept, &vault).await.is_err());
        vault.down.store(false, Ordering::SeqCst);
        assert_eq!(secret(&kept, &vault).await.unwrap(), "secret-1");
        vault.down.store(true, Ordering::SeqCst);
        tokio::time::advance(REREAD_AFTER).await;
        assert_eq!(secret(&kept, &vault).await.unwrap(), "secret-1");
        vault.down.store(false, Ordering::SeqCst);
        assert_eq!(secret(&kept, &vault).await.unwrap(), "secret-2");
    }
}
