//! Where blobs live: the storage settings, read as the Functions host reads a connection.
//!
//! A connection has a name (`AzureWebJobsStorage`, or `OUTPUT_STORAGE_CONNECTION_STRING` for a
//! separate output account) and comes in one of two forms:
//!
//! - a connection string in the setting of that name;
//! - identity-based, in settings under the name: `<name>__accountName`, or
//!   `<name>__blobServiceUri` (and `<name>__queueServiceUri`), with `<name>__credential` set to
//!   `managedidentity` and, for a user-assigned identity, `<name>__clientId`. Without
//!   `__credential` the token comes from the managed identity where the platform offers one,
//!   else from the developer's credentials (Azure CLI), as the host's default chain does.
//!
//! The first connection found wins: `OUTPUT_STORAGE_CONNECTION_STRING` (either form), then
//! `AzureWebJobsStorage` (either form), then `OUTPUT_STORAGE_ACCOUNT` (an account name used with
//! an identity, as the identity-based form without `__credential`), then the local directory.
//!
//! The local directory is the zero-setup default for `make run` and local use. It cannot be
//! right under the Functions host in Azure, where jobs must outlive an instance and be seen by
//! every instance: there, without a storage setting, the handler refuses to start and names the
//! settings it looked for.
//!
//! The queue service URI is parsed and carried for queue dispatch (api.md section 9), which the
//! handler does not implement yet; nothing reads it today.

use std::path::PathBuf;

use secrecy::SecretString;
use url::Url;

use super::{ConfigError, Env, Mode};
use crate::store::azure::{account_from_endpoint, Identity};

/// Where blobs live.
#[derive(Debug, Clone)]
pub enum StorageSettings {
    /// A storage connection string (`UseDevelopmentStorage=true` for Azurite).
    ConnectionString {
        connection_string: SecretString,
        container: String,
    },
    /// An account reached with Entra ID tokens. (Boxed: it is the largest variant by far.)
    Identity {
        connection: Box<IdentityConnection>,
        container: String,
    },
    /// A directory on this machine: one process only.
    LocalDir { dir: PathBuf, container: String },
}

/// An identity-based storage connection, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConnection {
    /// The setting (or prefix of settings) it was read from, for logs and messages.
    pub source: &'static str,
    pub account: String,
    /// The blob service, without a trailing `/`.
    pub blob_endpoint: Url,
    /// The queue service, for queue dispatch (not implemented yet). `None` when only a blob
    /// service URI was given.
    pub queue_endpoint: Option<Url>,
    pub identity: Identity,
}

/// The names of one connection's settings. Spelled out in full (not built from the prefix) so
/// that each can be named by an error and found by a search.
struct ConnectionNames {
    connection_string: &'static str,
    account_name: &'static str,
    blob_service_uri: &'static str,
    queue_service_uri: &'static str,
    credential: &'static str,
    client_id: &'static str,
}

const OUTPUT_CONNECTION: ConnectionNames = ConnectionNames {
    connection_string: "OUTPUT_STORAGE_CONNECTION_STRING",
    account_name: "OUTPUT_STORAGE_CONNECTION_STRING__accountName",
    blob_service_uri: "OUTPUT_STORAGE_CONNECTION_STRING__blobServiceUri",
    queue_service_uri: "OUTPUT_STORAGE_CONNECTION_STRING__queueServiceUri",
    credential: "OUTPUT_STORAGE_CONNECTION_STRING__credential",
    client_id: "OUTPUT_STORAGE_CONNECTION_STRING__clientId",
};

const HOST_CONNECTION: ConnectionNames = ConnectionNames {
    connection_string: "AzureWebJobsStorage",
    account_name: "AzureWebJobsStorage__accountName",
    blob_service_uri: "AzureWebJobsStorage__blobServiceUri",
    queue_service_uri: "AzureWebJobsStorage__queueServiceUri",
    credential: "AzureWebJobsStorage__credential",
    client_id: "AzureWebJobsStorage__clientId",
};

const OUTPUT_STORAGE_ACCOUNT: &str = "OUTPUT_STORAGE_ACCOUNT";
const OUTPUT_STORAGE_DIR: &str = "OUTPUT_STORAGE_DIR";
/// Set by App Service on every instance in Azure, never by Core Tools.
const AZURE_MARKERS: [&str; 2] = ["WEBSITE_INSTANCE_ID", "WEBSITE_SITE_NAME"];
/// The only `__credential` value the host knows for a managed identity.
const MANAGED_IDENTITY: &str = "managedidentity";
/// The public cloud's storage endpoints, used with `__accountName` and `OUTPUT_STORAGE_ACCOUNT`.
const ENDPOINT_SUFFIX: &str = "core.windows.net";

/// Chooses where blobs live; see the module documentation for the order.
pub(super) fn storage_settings(
    env: &Env,
    mode: &Mode,
    container: String,
) -> Result<StorageSettings, ConfigError> {
    for names in [&OUTPUT_CONNECTION, &HOST_CONNECTION] {
        if let Some(connection_string) = env.get(names.connection_string) {
            return Ok(StorageSettings::ConnectionString {
                connection_string: SecretString::from(connection_string.to_owned()),
                container,
            });
        }
        if let Some(connection) = identity_connection(env, names)? {
            return Ok(StorageSettings::Identity {
                connection: Box::new(connection),
                container,
            });
        }
    }
    if let Some(account) = env.get(OUTPUT_STORAGE_ACCOUNT) {
        return Ok(StorageSettings::Identity {
            connection: Box::new(IdentityConnection {
                source: OUTPUT_STORAGE_ACCOUNT,
                account: account_name(OUTPUT_STORAGE_ACCOUNT, account)?,
                blob_endpoint: service_endpoint(account, "blob"),
                queue_endpoint: Some(service_endpoint(account, "queue")),
                identity: Identity::Default { client_id: None },
            }),
            container,
        });
    }
    let dir = env.get(OUTPUT_STORAGE_DIR);
    if let (Mode::Host { .. }, None, Some(marker)) = (mode, dir, azure_marker(env)) {
        return Err(no_storage_on_azure(marker));
    }
    Ok(StorageSettings::LocalDir {
        dir: PathBuf::from(dir.unwrap_or("./.data")),
        container,
    })
}

/// The identity-based form of a connection, when any of its settings is present.
fn identity_connection(
    env: &Env,
    names: &ConnectionNames,
) -> Result<Option<IdentityConnection>, ConfigError> {
    let account = env.get_any_case(names.account_name);
    let blob = env.get_any_case(names.blob_service_uri);
    let queue = env.get_any_case(names.queue_service_uri);
    let credential = env.get_any_case(names.credential);
    let client_id = env.get_any_case(names.client_id);
    if [account, blob, queue, credential, client_id]
        .iter()
        .all(Option::is_none)
    {
        return Ok(None);
    }

    let blob_endpoint = blob
        .map(|uri| service_uri(names.blob_service_uri, uri))
        .transpose()?;
    let queue_endpoint = queue
        .map(|uri| service_uri(names.queue_service_uri, uri))
        .transpose()?;
    let (account, blob_endpoint, queue_endpoint) = match (account, blob_endpoint) {
        // Explicit service URIs win over the ones the account name implies.
        (Some(account), blob_endpoint) => (
            account_name(names.account_name, account)?,
            blob_endpoint.unwrap_or_else(|| service_endpoint(account, "blob")),
            queue_endpoint.or_else(|| Some(service_endpoint(account, "queue"))),
        ),
        (None, Some(blob_endpoint)) => {
            let account = account_from_endpoint(&blob_endpoint).ok_or_else(|| ConfigError {
                variable: names.blob_service_uri,
                reason: format!("{blob_endpoint} names no storage account"),
            })?;
            (
                account_name(names.blob_service_uri, &account)?,
                blob_endpoint,
                queue_endpoint,
            )
        }
        (None, None) => {
            let given = [
                (names.queue_service_uri, queue),
                (names.credential, credential),
                (names.client_id, client_id),
            ]
            .iter()
            .filter(|(_, value)| value.is_some())
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ");
            return Err(ConfigError {
                variable: names.account_name,
                reason: format!(
                    "is not set, nor is {}, but {given} is: an identity-based connection \
                     needs the account name or the blob service URI",
                    names.blob_service_uri
                ),
            });
        }
    };

    let client_id = client_id
        .map(|id| client_id_value(names.client_id, id))
        .transpose()?;
    let identity = match credential {
        Some(value) if value.eq_ignore_ascii_case(MANAGED_IDENTITY) => {
            Identity::ManagedIdentity { client_id }
        }
        Some(value) => {
            return Err(ConfigError {
                variable: names.credential,
                reason: format!(
                    "{value:?} is not supported: use \"{MANAGED_IDENTITY}\", or leave it unset \
                     for the managed identity or developer credentials (Azure CLI)"
                ),
            })
        }
        None => Identity::Default { client_id },
    };
    Ok(Some(IdentityConnection {
        source: names.connection_string,
        account,
        blob_endpoint,
        queue_endpoint,
        identity,
    }))
}

/// A storage service URI: `https`, or `http` to this machine only (Azurite, a test double), so
/// that no token travels in the clear. Any trailing `/` is dropped.
fn service_uri(variable: &'static str, value: &str) -> Result<Url, ConfigError> {
    let invalid = |reason: String| ConfigError { variable, reason };
    let mut url =
        Url::parse(value).map_err(|error| invalid(format!("{value:?} is not a URL: {error}")))?;
    let local = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match url.scheme() {
        "https" => {}
        "http" if local => {}
        _ => {
            return Err(invalid(format!(
                "{value:?} must be an https URL (http only to 127.0.0.1 or localhost)"
            )))
        }
    }
    if url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(invalid(format!(
            "{value:?} must be the service URI alone, without credentials, query or fragment"
        )));
    }
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    Ok(url)
}

/// Azure's account naming rule: 3 to 24 lowercase letters and digits.
fn account_name(variable: &'static str, account: &str) -> Result<String, ConfigError> {
    let valid = (3..=24).contains(&account.len())
        && account
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if valid {
        Ok(account.to_owned())
    } else {
        Err(ConfigError {
            variable,
            reason: format!(
                "{account:?} is not a storage account name (3-24 lowercase letters and digits)"
            ),
        })
    }
}

/// A managed identity's client id is a GUID; anything else is a paste error worth naming.
fn client_id_value(variable: &'static str, value: &str) -> Result<String, ConfigError> {
    let groups: Vec<&str> = value.split('-').collect();
    let valid = groups.iter().map(|group| group.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|group| group.bytes().all(|b| b.is_ascii_hexdigit()));
    if valid {
        Ok(value.to_owned())
    } else {
        Err(ConfigError {
            variable,
            reason: format!("{value:?} is not a client id (a GUID)"),
        })
    }
}

fn service_endpoint(account: &str, service: &str) -> Url {
    Url::parse(&format!("https://{account}.{service}.{ENDPOINT_SUFFIX}"))
        .expect("a checked account name makes a valid URL")
}

/// The App Service setting that says we run in Azure, if any.
fn azure_marker(env: &Env) -> Option<&'static str> {
    AZURE_MARKERS
        .into_iter()
        .find(|marker| env.get(marker).is_some())
}

fn no_storage_on_azure(marker: &'static str) -> ConfigError {
    let looked_for = [&OUTPUT_CONNECTION, &HOST_CONNECTION]
        .iter()
        .flat_map(|names| {
            [
                names.connection_string,
                names.account_name,
                names.blob_service_uri,
            ]
        })
        .chain([OUTPUT_STORAGE_ACCOUNT])
        .collect::<Vec<_>>()
        .join(", ");
    ConfigError {
        variable: HOST_CONNECTION.connection_string,
        reason: format!(
            "no storage is configured, and this is the Functions host in Azure ({marker} is \
             set), where the local directory store would keep jobs on one instance's disk and \
             lose them. Looked for: {looked_for}. Set AzureWebJobsStorage__accountName with \
             AzureWebJobsStorage__credential=managedidentity (and AzureWebJobsStorage__clientId \
             for a user-assigned identity), or a connection string in AzureWebJobsStorage"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use secrecy::ExposeSecret;

    use super::*;

    const CLIENT_ID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    fn resolve(pairs: &[(&str, &str)]) -> Result<StorageSettings, ConfigError> {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = Env(&vars);
        let mode = if env.get("FUNCTIONS_CUSTOMHANDLER_PORT").is_some() {
            Mode::Host { port: 1 }
        } else {
            Mode::Standalone {
                port: 1,
                function_keys: None,
            }
        };
        storage_settings(&env, &mode, "hot-topics".to_owned())
    }

    fn identity(pairs: &[(&str, &str)]) -> IdentityConnection {
        match resolve(pairs) {
            Ok(StorageSettings::Identity { connection, .. }) => *connection,
            other => panic!("expected an identity-based connection for {pairs:?}, got {other:?}"),
        }
    }

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn an_account_name_with_a_user_assigned_identity_selects_that_account_its_endpoints_and_identity(
    ) {
        let connection = identity(&[
            ("AzureWebJobsStorage__accountName", "wombledata"),
            ("AzureWebJobsStorage__credential", "managedidentity"),
            ("AzureWebJobsStorage__clientId", CLIENT_ID),
        ]);
        assert_eq!(
            connection,
            IdentityConnection {
                source: "AzureWebJobsStorage",
                account: "wombledata".into(),
                blob_endpoint: url("https://wombledata.blob.core.windows.net"),
                queue_endpoint: Some(url("https://wombledata.queue.core.windows.net")),
                identity: Identity::ManagedIdentity {
                    client_id: Some(CLIENT_ID.into())
                },
            }
        );
    }

    #[test]
    fn service_uris_win_over_the_account_name_and_name_the_account_when_it_is_not_given() {
        let connection = identity(&[
            (
                "AzureWebJobsStorage__blobServiceUri",
                "https://wombledata.blob.core.windows.net/",
            ),
            (
                "AzureWebJobsStorage__queueServiceUri",
                "https://wombledata.queue.core.windows.net",
            ),
            ("AzureWebJobsStorage__credential", "managedidentity"),
        ]);
        assert_eq!(connection.account, "wombledata");
        assert_eq!(
            connection.blob_endpoint,
            url("https://wombledata.blob.core.windows.net")
        );
        assert_eq!(
            connection.queue_endpoint,
            Some(url("https://wombledata.queue.core.windows.net"))
        );
        assert_eq!(
            connection.identity,
            Identity::ManagedIdentity { client_id: None }
        );

        // A private endpoint: the URIs are used as given, the account as named.
        let connection = identity(&[
            ("AzureWebJobsStorage__accountName", "wombledata"),
            (
                "AzureWebJobsStorage__blobServiceUri",
                "https://wombledata.privatelink.blob.core.windows.net",
            ),
        ]);
        assert_eq!(connection.account, "wombledata");
        assert_eq!(
            connection.blob_endpoint,
            url("https://wombledata.privatelink.blob.core.windows.net")
        );
        assert_eq!(
            connection.queue_endpoint,
            Some(url("https://wombledata.queue.core.windows.net"))
        );

        // Azurite's path-style URI names the account in its path.
        let connection = identity(&[(
            "AzureWebJobsStorage__blobServiceUri",
            "http://127.0.0.1:10000/devstoreaccount1",
        )]);
        assert_eq!(connection.account, "devstoreaccount1");
        assert_eq!(connection.queue_endpoint, None);
    }

    #[test]
    fn without_a_credential_setting_the_default_chain_is_used_with_any_client_id() {
        let connection = identity(&[("AzureWebJobsStorage__accountName", "wombledata")]);
        assert_eq!(connection.identity, Identity::Default { client_id: None });
        let connection = identity(&[
            ("AzureWebJobsStorage__accountName", "wombledata"),
            ("AzureWebJobsStorage__clientId", CLIENT_ID),
        ]);
        assert_eq!(
            connection.identity,
            Identity::Default {
                client_id: Some(CLIENT_ID.into())
            }
        );
    }

    #[test]
    fn setting_names_under_the_prefix_are_matched_ignoring_case_as_the_host_does() {
        let connection = identity(&[
            ("AzureWebJobsStorage__AccountName", "wombledata"),
            ("AzureWebJobsStorage__Credential", "ManagedIdentity"),
        ]);
        assert_eq!(connection.account, "wombledata");
        assert_eq!(
            connection.identity,
            Identity::ManagedIdentity { client_id: None }
        );
    }

    #[test]
    fn the_output_connection_wins_over_azure_web_jobs_storage_in_either_form() {
        let connection = identity(&[
            ("AzureWebJobsStorage", "UseDevelopmentStorage=true"),
            (
                "OUTPUT_STORAGE_CONNECTION_STRING__accountName",
                "outputdata",
            ),
            (
                "OUTPUT_STORAGE_CONNECTION_STRING__credential",
                "managedidentity",
            ),
        ]);
        assert_eq!(connection.source, "OUTPUT_STORAGE_CONNECTION_STRING");
        assert_eq!(connection.account, "outputdata");

        match resolve(&[
            ("AzureWebJobsStorage__accountName", "hostdata"),
            (
                "OUTPUT_STORAGE_CONNECTION_STRING",
                "UseDevelopmentStorage=true",
            ),
        ])
        .unwrap()
        {
            StorageSettings::ConnectionString {
                connection_string, ..
            } => assert_eq!(
                connection_string.expose_secret(),
                "UseDevelopmentStorage=true"
            ),
            other => panic!("expected the output connection string, got {other:?}"),
        }
    }

    #[test]
    fn a_connection_string_wins_over_the_identity_form_of_the_same_connection() {
        let settings = resolve(&[
            ("AzureWebJobsStorage", "UseDevelopmentStorage=true"),
            ("AzureWebJobsStorage__accountName", "hostdata"),
        ])
        .unwrap();
        assert!(
            matches!(settings, StorageSettings::ConnectionString { .. }),
            "{settings:?}"
        );
    }

    #[test]
    fn azure_web_jobs_storage_wins_over_the_output_storage_account() {
        let connection = identity(&[
            ("OUTPUT_STORAGE_ACCOUNT", "outputdata"),
            ("AzureWebJobsStorage__accountName", "hostdata"),
        ]);
        assert_eq!(connection.account, "hostdata");

        let connection = identity(&[("OUTPUT_STORAGE_ACCOUNT", "outputdata")]);
        assert_eq!(connection.source, "OUTPUT_STORAGE_ACCOUNT");
        assert_eq!(
            connection.blob_endpoint,
            url("https://outputdata.blob.core.windows.net")
        );
        assert_eq!(connection.identity, Identity::Default { client_id: None });
    }

    #[test]
    fn unusable_identity_settings_are_refused_naming_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("AzureWebJobsStorage__accountName", "Womble_Data")],
                "AzureWebJobsStorage__accountName",
            ),
            (
                &[("AzureWebJobsStorage__credential", "managedidentity")],
                "AzureWebJobsStorage__accountName",
            ),
            (
                &[("AzureWebJobsStorage__clientId", CLIENT_ID)],
                "AzureWebJobsStorage__accountName",
            ),
            (
                &[
                    ("AzureWebJobsStorage__accountName", "wombledata"),
                    ("AzureWebJobsStorage__credential", "clientsecret"),
                ],
                "AzureWebJobsStorage__credential",
            ),
            (
                &[
                    ("AzureWebJobsStorage__accountName", "wombledata"),
                    ("AzureWebJobsStorage__clientId", "not-a-guid"),
                ],
                "AzureWebJobsStorage__clientId",
            ),
            (
                &[(
                    "AzureWebJobsStorage__blobServiceUri",
                    "http://wombledata.blob.core.windows.net",
                )],
                "AzureWebJobsStorage__blobServiceUri",
            ),
            (
                &[(
                    "AzureWebJobsStorage__blobServiceUri",
                    "https://wombledata.blob.core.windows.net/?sv=2024&sig=x",
                )],
                "AzureWebJobsStorage__blobServiceUri",
            ),
            (
                &[
                    ("AzureWebJobsStorage__accountName", "wombledata"),
                    ("AzureWebJobsStorage__queueServiceUri", "queue"),
                ],
                "AzureWebJobsStorage__queueServiceUri",
            ),
            (
                &[(
                    "OUTPUT_STORAGE_CONNECTION_STRING__blobServiceUri",
                    "ftp://x",
                )],
                "OUTPUT_STORAGE_CONNECTION_STRING__blobServiceUri",
            ),
            (&[("OUTPUT_STORAGE_ACCOUNT", "a")], "OUTPUT_STORAGE_ACCOUNT"),
        ];
        for (pairs, variable) in cases {
            let error = resolve(pairs).expect_err(&format!("{pairs:?}"));
            assert_eq!(error.variable, *variable, "{pairs:?}: {error}");
            assert!(error.to_string().contains(variable), "{error}");
        }
    }

    #[test]
    fn under_the_host_in_azure_without_storage_the_handler_refuses_naming_what_it_looked_for() {
        for marker in AZURE_MARKERS {
            let error =
                resolve(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "1"), (marker, "x")]).expect_err(marker);
            let message = error.to_string();
            for name in [
                marker,
                "AzureWebJobsStorage",
                "AzureWebJobsStorage__accountName",
                "AzureWebJobsStorage__blobServiceUri",
                "OUTPUT_STORAGE_CONNECTION_STRING",
                "OUTPUT_STORAGE_ACCOUNT",
            ] {
                assert!(message.contains(name), "{name} missing from: {message}");
            }
        }
    }

    #[test]
    fn the_local_store_stays_the_default_off_azure_in_standalone_mode_and_when_asked_for() {
        for pairs in [
            &[][..],
            &[("FUNCTIONS_CUSTOMHANDLER_PORT", "1")][..],
            &[("WEBSITE_INSTANCE_ID", "x")][..],
            &[
                ("FUNCTIONS_CUSTOMHANDLER_PORT", "1"),
                ("WEBSITE_SITE_NAME", "x"),
                ("OUTPUT_STORAGE_DIR", "/home/data"),
            ][..],
        ] {
            let settings = resolve(pairs).unwrap();
            assert!(
                matches!(settings, StorageSettings::LocalDir { .. }),
                "{pairs:?}: {settings:?}"
            );
        }
    }
}
