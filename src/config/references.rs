//! Key Vault references that App Service could not resolve.
//!
//! An app setting `@Microsoft.KeyVault(SecretUri=...)` reaches the handler as the secret's value
//! when the platform could read it, and as the reference text itself when it could not (no
//! access for the `keyVaultReferenceIdentity`, a missing secret, a network rule). Used as a
//! credential, that text would fail every job with a misleading error from Reddit, so a
//! setting that still holds it stops the handler at start, named, like any malformed setting.
//!
//! Why stop rather than wait and read again: the environment is fixed for the life of the
//! process, and the host restarts a handler that exits with the same one. App Service resolves
//! its references again only when the app's settings change or when asked to (the
//! `config/configreferences/appsettings/refresh` call), never on a restart, and a new
//! resolution restarts the app with the new values. So the recovery is outside the process: the
//! postdeploy hook (`infra/hooks/postdeploy.sh`) asks for that refresh and waits for every
//! reference to resolve, and the message below names the call for any later occurrence
//! (docs/deploy.md, "First start").

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

/// The ARM call that has App Service resolve an app's references again, after the app's
/// resource id.
const REFRESH_PATH: &str = "/config/configreferences/appsettings/refresh?api-version=2022-03-01";

pub(super) fn refuse_unresolved_references(env: &Env) -> Result<(), ConfigError> {
    for variable in SECRET_SETTINGS {
        let unresolved = env.get(variable).is_some_and(|value| {
            value.len() >= REFERENCE_PREFIX.len()
                && value[..REFERENCE_PREFIX.len()].eq_ignore_ascii_case(REFERENCE_PREFIX)
        });
        if unresolved {
            return Err(ConfigError {
                variable,
                reason: format!(
                    "is a Key Vault reference that App Service could not resolve; see the \
                     reference's status in the app's environment variables (the identity named \
                     by keyVaultReferenceIdentity needs Key Vault Secrets User). A restart does \
                     not resolve it again; once the cause is fixed, a refresh does: \
                     az rest --method post --url <the app's resource id>{REFRESH_PATH} \
                     (docs/deploy.md)"
                ),
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

    #[test]
    fn the_refusal_names_the_call_that_has_app_service_resolve_the_reference_again() {
        let vars = HashMap::from([(
            "SUMMARY_WOMBLE_KEY".to_owned(),
            "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/summary-womble-key)"
                .to_owned(),
        )]);
        let error = refuse_unresolved_references(&Env(&vars)).unwrap_err();
        for needed in [
            "A restart does not resolve it again",
            "/config/configreferences/appsettings/refresh?api-version=2022-03-01",
            "docs/deploy.md",
        ] {
            assert!(
                error.reason.contains(needed),
                "{needed:?} missing: {}",
                error.reason
            );
        }
    }
}
