//! Connection strings: where they point (account, blob or queue endpoint) and how to
//! authenticate there (account key, shared access signature), with every part checked.

use std::collections::HashMap;

use azure_core::auth::Secret;
use azure_core::Url;
use azure_storage::StorageCredentials;

use super::{
    AzureConfigError, EMULATOR_ACCOUNT, EMULATOR_ACCOUNT_KEY, EMULATOR_BLOB_ENDPOINT,
    EMULATOR_QUEUE_ENDPOINT,
};

/// The storage service a client talks to: it decides which endpoint of a connection string
/// counts. One connection string (`AzureWebJobsStorage`) usually serves both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    Blob,
    Queue,
}

impl Service {
    /// The connection-string key that names this service's URL.
    fn endpoint_key(self) -> &'static str {
        match self {
            Service::Blob => "BlobEndpoint",
            Service::Queue => "QueueEndpoint",
        }
    }

    /// The host label of the service in `https://<account>.<label>.<suffix>`.
    fn subdomain(self) -> &'static str {
        match self {
            Service::Blob => "blob",
            Service::Queue => "queue",
        }
    }

    /// Where `UseDevelopmentStorage=true` points: Azurite's default port for the service.
    fn emulator_endpoint(self) -> &'static str {
        match self {
            Service::Blob => EMULATOR_BLOB_ENDPOINT,
            Service::Queue => EMULATOR_QUEUE_ENDPOINT,
        }
    }
}

/// Where a connection string points, for one service, and how to authenticate there.
pub(crate) struct StorageTarget {
    pub(crate) account: String,
    /// The service URL (blob or queue), without a trailing `/`.
    pub(crate) endpoint: Url,
    pub(crate) credentials: StorageCredentials,
}

impl StorageTarget {
    /// `service` of `account` at `endpoint`, reached with Entra ID tokens of `identity`.
    pub(crate) fn with_identity(
        account: &str,
        endpoint: &Url,
        identity: &super::Identity,
        service: Service,
    ) -> Result<Self, AzureConfigError> {
        validate_account(account)?;
        let endpoint =
            parse_endpoint(endpoint.as_str()).ok_or(AzureConfigError::Invalid(match service {
                Service::Blob => "blob service URI",
                Service::Queue => "queue service URI",
            }))?;
        let credential = identity
            .credential()
            .map_err(AzureConfigError::Credential)?;
        Ok(Self {
            account: account.to_owned(),
            endpoint,
            credentials: StorageCredentials::token_credential(credential),
        })
    }

    /// Where `connection_string` points for `service`: its `BlobEndpoint` or `QueueEndpoint`,
    /// else the endpoint built from the account, `DefaultEndpointsProtocol` and
    /// `EndpointSuffix`. Endpoints of other services are ignored.
    pub(crate) fn parse(
        connection_string: &str,
        service: Service,
    ) -> Result<Self, AzureConfigError> {
        let settings = ConnectionSettings::parse(connection_string)?;

        match settings.get("UseDevelopmentStorage") {
            Some(value) if value.eq_ignore_ascii_case("true") => {
                if settings.get("DevelopmentStorageProxyUri").is_some() {
                    return Err(AzureConfigError::Unsupported("DevelopmentStorageProxyUri"));
                }
                return Ok(Self {
                    account: EMULATOR_ACCOUNT.to_owned(),
                    endpoint: Url::parse(service.emulator_endpoint())
                        .expect("a valid constant URL"),
                    credentials: StorageCredentials::access_key(
                        EMULATOR_ACCOUNT,
                        Secret::new(EMULATOR_ACCOUNT_KEY),
                    ),
                });
            }
            Some(value) if value.eq_ignore_ascii_case("false") => {}
            Some(_) => return Err(AzureConfigError::Invalid("UseDevelopmentStorage")),
            None => {}
        }

        let endpoint_key = service.endpoint_key();
        let service_endpoint = settings
            .get(endpoint_key)
            .map(|endpoint| parse_endpoint(endpoint).ok_or(AzureConfigError::Invalid(endpoint_key)))
            .transpose()?;
        let account = match (settings.get("AccountName"), &service_endpoint) {
            (Some(account), _) => account.to_owned(),
            // Shared access signature strings often carry only the endpoint.
            (None, Some(endpoint)) => {
                account_from_endpoint(endpoint).ok_or(AzureConfigError::Missing("AccountName"))?
            }
            (None, None) => return Err(AzureConfigError::Missing("AccountName")),
        };
        validate_account(&account)?;

        let endpoint = match service_endpoint {
            Some(endpoint) => endpoint,
            None => {
                let protocol = match settings.get("DefaultEndpointsProtocol") {
                    None => "https",
                    Some(p) if p.eq_ignore_ascii_case("https") => "https",
                    Some(p) if p.eq_ignore_ascii_case("http") => "http",
                    Some(_) => return Err(AzureConfigError::Invalid("DefaultEndpointsProtocol")),
                };
                let suffix = settings.get("EndpointSuffix").unwrap_or("core.windows.net");
                let subdomain = service.subdomain();
                parse_endpoint(&format!("{protocol}://{account}.{subdomain}.{suffix}"))
                    .ok_or(AzureConfigError::Invalid("EndpointSuffix"))?
            }
        };

        let credentials = match (
            settings.get("AccountKey"),
            settings.get("SharedAccessSignature"),
        ) {
            (Some(_), Some(_)) => {
                return Err(AzureConfigError::Malformed(
                    "both AccountKey and SharedAccessSignature are set".to_owned(),
                ))
            }
            (Some(key), None) => {
                // The SDK would only find a bad key when signing the first request.
                if azure_core::base64::decode(key).is_err() {
                    return Err(AzureConfigError::Invalid("AccountKey"));
                }
                StorageCredentials::access_key(account.clone(), Secret::new(key.to_owned()))
            }
            (None, Some(sas)) => StorageCredentials::sas_token(sas.trim_start_matches('?'))
                .map_err(|_| AzureConfigError::Invalid("SharedAccessSignature"))?,
            (None, None) => {
                return Err(AzureConfigError::Missing(
                    "AccountKey or SharedAccessSignature",
                ))
            }
        };

        Ok(Self {
            account,
            endpoint,
            credentials,
        })
    }
}

/// The `key=value;` pairs of a connection string, keys compared case-insensitively.
struct ConnectionSettings<'a>(HashMap<String, &'a str>);

impl<'a> ConnectionSettings<'a> {
    fn parse(connection_string: &'a str) -> Result<Self, AzureConfigError> {
        let mut settings = HashMap::new();
        for (index, segment) in connection_string.split(';').enumerate() {
            let segment = segment.trim();
            if segment.is_empty() {
                continue;
            }
            // Never quote the segment: it may be (part of) a key.
            let (key, value) = segment.split_once('=').ok_or_else(|| {
                AzureConfigError::Malformed(format!("part {} has no `=`", index + 1))
            })?;
            let (key, value) = (key.trim(), value.trim());
            if key.is_empty() || value.is_empty() {
                return Err(AzureConfigError::Malformed(format!(
                    "part {} has an empty key or value",
                    index + 1
                )));
            }
            settings.insert(key.to_ascii_lowercase(), value);
        }
        if settings.is_empty() {
            return Err(AzureConfigError::Malformed("it is empty".to_owned()));
        }
        Ok(Self(settings))
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.0.get(&key.to_ascii_lowercase()).copied()
    }
}

/// An `http(s)` URL without query or fragment, with any trailing `/` removed so that the SDK
/// appends the container as a path segment of its own.
pub(crate) fn parse_endpoint(endpoint: &str) -> Option<Url> {
    let mut url = Url::parse(endpoint).ok()?;
    let usable = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if !usable {
        return None;
    }
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    Some(url)
}

/// The account a service endpoint names: the first path segment of a path-style URL
/// (`http://127.0.0.1:10000/devstoreaccount1`), else the first label of the host
/// (`https://account.blob.core.windows.net`).
pub fn account_from_endpoint(endpoint: &Url) -> Option<String> {
    let from_path = endpoint
        .path_segments()
        .and_then(|mut segments| segments.next())
        .filter(|segment| !segment.is_empty());
    let from_host = || endpoint.host_str().and_then(|host| host.split('.').next());
    from_path.or_else(from_host).map(str::to_owned)
}

pub(crate) fn validate_account(account: &str) -> Result<(), AzureConfigError> {
    let valid = (3..=24).contains(&account.len())
        && account
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(AzureConfigError::InvalidAccount(account.to_owned()))
    }
}

pub(crate) fn validate_container(container: &str) -> Result<(), AzureConfigError> {
    if is_resource_name(container) {
        Ok(())
    } else {
        Err(AzureConfigError::InvalidContainer(container.to_owned()))
    }
}

pub(crate) fn validate_queue(queue: &str) -> Result<(), AzureConfigError> {
    if is_resource_name(queue) {
        Ok(())
    } else {
        Err(AzureConfigError::InvalidQueue(queue.to_owned()))
    }
}

/// Azure's rule for container and queue names alike: 3 to 63 lowercase letters, digits and
/// single hyphens, starting and ending with a letter or digit.
pub fn is_resource_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
        && !name.contains("--")
}
