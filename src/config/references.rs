//! Key Vault references that App Service could not resolve.
//!
//! An app setting `@Microsoft.KeyVault(SecretUri=...)` reaches the handler as the secret's value
//! when the platform could read it, and as the reference text itself when it could not (no
//! access for the `keyVaultReferenceIdentity`, a missing secret, a network rule). Used as a
//! credential, that text would fail every job with a misleading error from Reddit, so a
//! setting that still holds it stops the handler at start, named, like any malformed setting.

use super::{ConfigError, Env};

/// The settings that may be Key Vault references.
const SECRET_SETTINGS: [&str; 7] = [
    "REDDIT_CLIENT_ID",
    "REDDIT_CLIENT_SECRET",
    "REDDIT_USER_AGENT",
    "SUMMARY_WOMBLE_KEY",
    "CALLBACK_SIGNING_KEY",
    "OUTPUT_STORAGE_CONNECTION_STRING",
    "AzureWebJobsStorage",
];

const REFERENCE_PREFIX: &str = "@Microsoft.KeyVault(";

pub(super) fn refuse_unresolved_references(env: &Env) -> Result<(), ConfigError> {
    for variable in SECRET_SETTINGS {
        let unresolved = env.get(variable).is_some_and(|value| {
            value.len() >= REFERENCE_PREFIX.len()
                && value[..REFERENCE_PREFIX.len()].eq_ignore_ascii_case(REFERENCE_PREFIX)
        });
        if unresolved {
            return Err(ConfigError {
                variable,
                reason: "is a Key Vault reference that App Service could not resolve; see the \
                         reference's status in the app's environment variables (the identity \
                         named by keyVaultReferenceIdentity needs Key Vault Secrets User)"
                    .into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn an_unresolved_key_vault_reference_is_refused_naming_the_setting() {
        for variable in SECRET_SETTINGS {
            let vars = HashMap::from([(
                variable.to_owned(),
                "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/x)".to_owned(),
            )]);
            let error = refuse_unresolved_references(&Env(&vars)).unwrap_err();
            assert_eq!(error.variable, variable);
        }
        let resolved = HashMap::from([("REDDIT_CLIENT_ID".to_owned(), "abc123".to_owned())]);
        assert!(refuse_unresolved_references(&Env(&resolved)).is_ok());
    }
}
