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
//! The job queue of queue dispatch (api.md section 9) lives in another place: the account of
//! `AzureWebJobsStorage` (either form), because that is the connection `RunJob`'s queue trigger
//! names and so the queue the host watches. Job documents and topic blobs stay in the output
//! account. Only without `AzureWebJobsStorage` (standalone mode with an output connection alone)
//! is the queue in the output account: the standalone listener consumes the queue it sends to,
//! wherever that is. The queue service URI (`__queueServiceUri`) says where an identity-based
//! account's queues are; without it they are at the account's default queue service.

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

impl StorageSettings {
    /// The container that holds every blob of the app.
    pub fn container(&self) -> &str {
        match self {
            StorageSettings::ConnectionString { container, .. }
            | StorageSettings::Identity { container, .. }
            | StorageSettings::LocalDir { container, .. } => container,
        }
    }
}

/// A storage account, as one connection reaches it: for the app's queues (queue dispatch's,
/// the completion queue).
#[derive(Debug, Clone)]
pub enum StorageAccount {
    ConnectionString(SecretString),
    Identity(Box<IdentityConnection>),
}

/// An identity-based storage connection, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConnection {
    /// The setting (or prefix of settings) it was read from, for logs and messages.
    pub source: &'static str,
    pub account: String,
    /// The blob service, without a trailing `/`.
    pub blob_endpoint: Url,
    /// The queue service, for queue dispatch. `None` when only a blob
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

/// The account of the job queue; see the module documentation. `None` when jobs are kept in the
/// local directory and no `AzureWebJobsStorage` is set: there is no queue service then.
pub(super) fn queue_account(
    env: &Env,
    storage: &StorageSettings,
) -> Result<Option<StorageAccount>, ConfigError> {
    if let Some(connection_string) = env.get(HOST_CONNECTION.connection_string) {
        return Ok(Some(StorageAccount::ConnectionString(SecretString::from(
            connection_string.to_owned(),
        ))));
    }
    if let Some(connection) = identity_connection(env, &HOST_CONNECTION)? {
        return Ok(Some(StorageAccount::Identity(Box::new(connection))));
    }
    Ok(match storage {
        StorageSettings::ConnectionString {
            connection_string, ..
        } => Some(StorageAccount::ConnectionString(connection_string.clone())),
        StorageSettings::Identity { connection, .. } => {
            Some(StorageAccount::Identity(connection.clone()))
        }
        StorageSettings::LocalDir { .. } => None,
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
pub(super) fn azure_marker(env: &Env) -> Option<&'static str> {
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
mod tests;
