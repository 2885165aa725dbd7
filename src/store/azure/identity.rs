//! Microsoft Entra ID tokens for Azure Storage: the app's managed identity, user-assigned ones
//! included, or a developer's own login.
//!
//! `azure_identity` 0.21 asks the managed-identity endpoint for the system-assigned identity
//! only (its client-id variant is private), while a Function App created today usually has a
//! user-assigned identity alone, named by `AzureWebJobsStorage__clientId`. So the token request
//! is made here: the same REST call, with `client_id` when one is configured.
//!
//! - On App Service and Functions (Flex Consumption included) the platform sets
//!   `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`; the token comes from there.
//! - Elsewhere in Azure (a VM, a container) it comes from the instance metadata service.
//! - Without `__credential=managedidentity`, as the Functions host does with its default chain,
//!   the managed identity is used where the platform offers one, and otherwise `azure_identity`'s
//!   chain: environment variables (`AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`, `AZURE_TENANT_ID`),
//!   then the developer's Azure CLI login.
//!
//! The token client follows no redirect: the request carries `IDENTITY_HEADER`, and a token is
//! only ever the configured endpoint's to give. It reads at most 64 KiB of an answer, a chunk
//! at a time, so a confused or hostile endpoint cannot make it hold an answer of any size.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::auth::{AccessToken, Secret, TokenCredential};
use azure_core::error::{Error, ErrorKind};
use azure_core::Url;
use serde::Deserialize;
use time::OffsetDateTime;
use tokio::sync::Mutex;

/// The App Service identity endpoint and the secret it wants back, set by the platform.
const IDENTITY_ENDPOINT: &str = "IDENTITY_ENDPOINT";
const IDENTITY_HEADER: &str = "IDENTITY_HEADER";
const APP_SERVICE_API_VERSION: &str = "2019-08-01";
/// The instance metadata service of Azure VMs and containers.
const IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";
const IMDS_API_VERSION: &str = "2018-02-01";
/// A token is renewed this long before it expires, so no request carries one that runs out
/// on the way.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(300);
/// How long a token request may take; the endpoints are local to the instance.
const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of an answer that is read. A token answer is a few kilobytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Who a store authenticates as when it uses Entra ID tokens instead of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// `__credential=managedidentity`: the app's managed identity, and nothing else. With a
    /// client id, the user-assigned identity of that id; without, the system-assigned one.
    ManagedIdentity { client_id: Option<String> },
    /// No `__credential`: the managed identity (of `client_id` when given) where the platform
    /// offers one, else the environment's service principal or the developer's Azure CLI login.
    Default { client_id: Option<String> },
}

impl Identity {
    /// The credential that gets tokens for this identity, from the process environment.
    pub fn credential(&self) -> azure_core::Result<Arc<dyn TokenCredential>> {
        match self {
            Identity::ManagedIdentity { client_id } => Ok(Arc::new(
                ManagedIdentityCredential::from_env(client_id.clone())?,
            )),
            Identity::Default { client_id } if std::env::var_os(IDENTITY_ENDPOINT).is_some() => Ok(
                Arc::new(ManagedIdentityCredential::from_env(client_id.clone())?),
            ),
            Identity::Default { .. } => azure_identity::create_credential(),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::ManagedIdentity { client_id: None } => {
                f.write_str("system-assigned managed identity")
            }
            Identity::ManagedIdentity {
                client_id: Some(id),
            } => write!(f, "user-assigned managed identity {id}"),
            Identity::Default { client_id: None } => {
                f.write_str("managed identity or developer credentials")
            }
            Identity::Default {
                client_id: Some(id),
            } => write!(
                f,
                "user-assigned managed identity {id} or developer credentials"
            ),
        }
    }
}

/// Where tokens are asked for.
#[derive(Clone)]
pub enum TokenEndpoint {
    /// App Service and Functions: `IDENTITY_ENDPOINT`, with `IDENTITY_HEADER` sent back as
    /// `x-identity-header`.
    AppService { url: Url, header: Secret },
    /// The instance metadata service (`Metadata: true`).
    Imds { url: Url },
}

impl fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenEndpoint::AppService { url, .. } => write!(f, "AppService({url})"),
            TokenEndpoint::Imds { url } => write!(f, "Imds({url})"),
        }
    }
}

impl TokenEndpoint {
    /// The App Service endpoint when the platform announces one, else the metadata service.
    fn from_env() -> azure_core::Result<Self> {
        match std::env::var(IDENTITY_ENDPOINT) {
            Ok(endpoint) => {
                let url = Url::parse(&endpoint).map_err(|_| {
                    Error::message(ErrorKind::Credential, "IDENTITY_ENDPOINT is not a URL")
                })?;
                let header = std::env::var(IDENTITY_HEADER).map_err(|_| {
                    Error::message(
                        ErrorKind::Credential,
                        "IDENTITY_ENDPOINT is set but IDENTITY_HEADER is not",
                    )
                })?;
                Ok(TokenEndpoint::AppService {
                    url,
                    header: Secret::new(header),
                })
            }
            Err(_) => Ok(TokenEndpoint::Imds {
                url: Url::parse(IMDS_ENDPOINT).expect("a valid constant URL"),
            }),
        }
    }
}

/// Tokens of a managed identity, system- or user-assigned, kept until shortly before they
/// expire.
#[derive(Debug)]
pub struct ManagedIdentityCredential {
    http: reqwest::Client,
    endpoint: TokenEndpoint,
    client_id: Option<String>,
    /// Tokens by resource. The lock is held while a token is fetched, so concurrent requests
    /// wait for one fetch instead of each making their own.
    tokens: Mutex<HashMap<String, AccessToken>>,
}

impl ManagedIdentityCredential {
    pub fn new(endpoint: TokenEndpoint, client_id: Option<String>) -> azure_core::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(TOKEN_REQUEST_TIMEOUT)
            // The metadata service refuses requests that come through a proxy.
            .no_proxy()
            // A redirect would take the platform's secret header somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| Error::new(ErrorKind::Credential, error))?;
        Ok(Self {
            http,
            endpoint,
            client_id,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    pub fn from_env(client_id: Option<String>) -> azure_core::Result<Self> {
        Self::new(TokenEndpoint::from_env()?, client_id)
    }

    async fn fetch(&self, resource: &str) -> azure_core::Result<AccessToken> {
        let mut query = vec![("resource", resource)];
        if let Some(client_id) = &self.client_id {
            query.push(("client_id", client_id));
        }
        let request = match &self.endpoint {
            TokenEndpoint::AppService { url, header } => self
                .http
                .get(url.clone())
                .query(&[("api-version", APP_SERVICE_API_VERSION)])
                .header("x-identity-header", header.secret()),
            TokenEndpoint::Imds { url } => self
                .http
                .get(url.clone())
                .query(&[("api-version", IMDS_API_VERSION)])
                .header("Metadata", "true"),
        }
        .query(&query);
        // The endpoint being unreachable or slow is worth retrying; a refusal is not.
        let response = request.send().await.map_err(|error| {
            Error::full(
                ErrorKind::Io,
                error,
                "the identity endpoint cannot be reached",
            )
        })?;
        let status = response.status();
        if status.is_redirection() {
            return Err(Error::message(
                ErrorKind::Credential,
                format!(
                    "the identity endpoint answered a token request for {} with a redirect \
                     (HTTP {status}), which is not followed",
                    self.describe()
                ),
            ));
        }
        if !status.is_success() {
            let kind = if status.is_server_error() || status.as_u16() == 429 {
                ErrorKind::Io
            } else {
                ErrorKind::Credential
            };
            // The body may name the identity but holds no secret; keep it short all the same.
            let body = read_bounded(response).await.unwrap_or_default();
            let body: String = String::from_utf8_lossy(&body).chars().take(300).collect();
            return Err(Error::message(
                kind,
                format!(
                    "the identity endpoint refused a token for {}: HTTP {status}: {body}",
                    self.describe()
                ),
            ));
        }
        let body = read_bounded(response).await?;
        let token: TokenResponse = serde_json::from_slice(&body).map_err(|error| {
            Error::full(
                ErrorKind::Credential,
                error,
                "the identity endpoint's answer is not a token",
            )
        })?;
        let expires_on = OffsetDateTime::from_unix_timestamp(token.expires_on.seconds()?)
            .map_err(|error| Error::new(ErrorKind::Credential, error))?;
        Ok(AccessToken::new(token.access_token, expires_on))
    }

    fn describe(&self) -> String {
        match &self.client_id {
            Some(id) => format!("the user-assigned identity {id}"),
            None => "the system-assigned identity".to_owned(),
        }
    }
}

/// The answer's body, a chunk at a time, refused once it passes [`MAX_ANSWER_BYTES`]: an
/// answer that announces more is refused before any of it is read.
async fn read_bounded(mut response: reqwest::Response) -> azure_core::Result<Vec<u8>> {
    let too_large = || {
        Error::message(
            ErrorKind::Credential,
            format!(
                "the identity endpoint's answer is larger than {} KiB",
                MAX_ANSWER_BYTES / 1024
            ),
        )
    };
    if response
        .content_length()
        .is_some_and(|length| length > MAX_ANSWER_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|error| {
        Error::full(
            ErrorKind::Io,
            error,
            "the identity endpoint's answer was cut off",
        )
    })? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[async_trait]
impl TokenCredential for ManagedIdentityCredential {
    async fn get_token(&self, scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let [scope] = scopes else {
            return Err(Error::message(
                ErrorKind::Credential,
                "a managed identity token is for exactly one scope",
            ));
        };
        let resource = scope.strip_suffix("/.default").unwrap_or(scope);
        let mut tokens = self.tokens.lock().await;
        let fresh_until = OffsetDateTime::now_utc() + RENEW_BEFORE_EXPIRY;
        if let Some(token) = tokens.get(resource) {
            if token.expires_on > fresh_until {
                return Ok(token.clone());
            }
        }
        let token = self.fetch(resource).await?;
        tokens.insert(resource.to_owned(), token.clone());
        Ok(token)
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        self.tokens.lock().await.clear();
        Ok(())
    }
}

/// The answer of both endpoints. `expires_on` is a string of Unix seconds on App Service and
/// the metadata service; a number is accepted too.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_on: ExpiresOn,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ExpiresOn {
    Number(i64),
    Text(String),
}

impl ExpiresOn {
    fn seconds(&self) -> azure_core::Result<i64> {
        match self {
            ExpiresOn::Number(seconds) => Ok(*seconds),
            ExpiresOn::Text(text) => text.trim().parse().map_err(|_| {
                Error::message(
                    ErrorKind::Credential,
                    "the identity endpoint's expires_on is not a number of seconds",
                )
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::{Filter, Reply};

    /// A token endpoint that records each query and answers with a token that expires in
    /// `lifetime` seconds.
    async fn token_endpoint(lifetime: i64) -> (Url, Arc<std::sync::Mutex<Vec<String>>>) {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorded = seen.clone();
        let route = warp::query::raw()
            .and(warp::header::optional::<String>("x-identity-header"))
            .map(move |query: String, header: Option<String>| {
                recorded
                    .lock()
                    .unwrap()
                    .push(format!("{query} header={}", header.unwrap_or_default()));
                let expires = OffsetDateTime::now_utc().unix_timestamp() + lifetime;
                warp::reply::json(&serde_json::json!({
                    "access_token": "token-value",
                    "expires_on": expires.to_string(),
                    "token_type": "Bearer",
                    "resource": "https://storage.azure.com",
                }))
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!(
            "http://{}/msi/token",
            listener.local_addr().unwrap()
        ))
        .unwrap();
        tokio::spawn(warp::serve(route).incoming(listener).run());
        (url, seen)
    }

    #[tokio::test]
    async fn a_user_assigned_identity_is_asked_for_by_its_client_id_with_the_platform_header() {
        let (url, seen) = token_endpoint(3600).await;
        let credential = ManagedIdentityCredential::new(
            TokenEndpoint::AppService {
                url,
                header: Secret::new("platform-secret"),
            },
            Some("11111111-2222-3333-4444-555555555555".to_owned()),
        )
        .unwrap();
        let token = credential
            .get_token(&["https://storage.azure.com/.default"])
            .await
            .unwrap();
        assert_eq!(token.token.secret(), "token-value");
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        let request = &seen[0];
        assert!(request.contains("api-version=2019-08-01"), "{request}");
        assert!(
            request.contains("resource=https%3A%2F%2Fstorage.azure.com&"),
            "{request}"
        );
        assert!(
            request.contains("client_id=11111111-2222-3333-4444-555555555555"),
            "{request}"
        );
        assert!(request.ends_with("header=platform-secret"), "{request}");
    }

    #[tokio::test]
    async fn a_token_is_reused_until_shortly_before_it_expires() {
        for (lifetime, expected) in [(3600, 1), (60, 3)] {
            let (url, seen) = token_endpoint(lifetime).await;
            let credential =
                ManagedIdentityCredential::new(TokenEndpoint::Imds { url }, None).unwrap();
            for _ in 0..3 {
                credential
                    .get_token(&["https://storage.azure.com/.default"])
                    .await
                    .unwrap();
            }
            let seen = seen.lock().unwrap().clone();
            assert_eq!(seen.len(), expected, "lifetime {lifetime}: {seen:?}");
            assert!(!seen[0].contains("client_id"), "{seen:?}");
        }
    }

    /// Serves `route` on 127.0.0.1 and gives its URL with `path`.
    async fn serve<F>(route: F, path: &str) -> Url
    where
        F: Filter + Clone + Send + Sync + 'static,
        F::Extract: warp::Reply,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}{path}", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(warp::serve(route).incoming(listener).run());
        url
    }

    fn app_service(url: Url) -> ManagedIdentityCredential {
        ManagedIdentityCredential::new(
            TokenEndpoint::AppService {
                url,
                header: Secret::new("platform-secret"),
            },
            None,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_token_endpoint_that_redirects_elsewhere_is_not_followed() {
        // Another port on 127.0.0.1 is another origin, and it would hand out a token.
        let (elsewhere, seen) = token_endpoint(3600).await;
        type Redirect = fn(warp::http::Uri) -> warp::reply::Response;
        let redirects: [(&str, Redirect); 2] = [
            ("302", |uri| warp::redirect::found(uri).into_response()),
            ("307", |uri| warp::redirect::temporary(uri).into_response()),
        ];
        for (status, redirect) in redirects {
            let to: warp::http::Uri = elsewhere.as_str().parse().unwrap();
            let url = serve(warp::any().map(move || redirect(to.clone())), "/msi/token").await;
            let error = app_service(url)
                .get_token(&["https://storage.azure.com/.default"])
                .await
                .unwrap_err();
            assert!(matches!(error.kind(), ErrorKind::Credential), "{error:?}");
            let message = error.to_string();
            assert!(message.contains("redirect"), "{message}");
            assert!(message.contains(status), "{message}");
        }
        let seen = seen.lock().unwrap().clone();
        assert!(
            seen.is_empty(),
            "the platform header went elsewhere: {seen:?}"
        );
    }

    #[tokio::test]
    async fn a_token_answer_larger_than_64_kib_is_refused() {
        let route = warp::any().map(|| {
            let expires = OffsetDateTime::now_utc().unix_timestamp() + 3600;
            warp::reply::json(&serde_json::json!({
                "access_token": "t".repeat(MAX_ANSWER_BYTES),
                "expires_on": expires.to_string(),
            }))
        });
        let url = serve(route, "/msi/token").await;
        let error = app_service(url)
            .get_token(&["https://storage.azure.com/.default"])
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("larger than 64 KiB"), "{message}");
    }

    #[tokio::test]
    async fn an_endless_token_answer_is_refused_once_it_passes_64_kib() {
        // No length announced: the bound is found by reading, which must stop there.
        let route = warp::any().map(|| {
            let spaces = bytes::Bytes::from_static(&[b' '; 1024]);
            warp::reply::stream(futures::stream::repeat(Ok::<_, std::convert::Infallible>(
                spaces,
            )))
        });
        let url = serve(route, "/msi/token").await;
        let credential = app_service(url);
        // Well inside the client's own 10 s timeout, which would end an unbounded read.
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            credential.get_token(&["https://storage.azure.com/.default"]),
        )
        .await
        .expect("the read stops at the bound, not at the timeout");
        let message = answer.unwrap_err().to_string();
        assert!(message.contains("larger than 64 KiB"), "{message}");
    }

    #[tokio::test]
    async fn an_identity_endpoint_that_refuses_gives_a_credential_error_naming_the_identity() {
        let route = warp::any().map(|| {
            warp::reply::with_status("identity not found", warp::http::StatusCode::BAD_REQUEST)
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(warp::serve(route).incoming(listener).run());
        let credential =
            ManagedIdentityCredential::new(TokenEndpoint::Imds { url }, Some("abc".to_owned()))
                .unwrap();
        let error = credential
            .get_token(&["https://storage.azure.com/.default"])
            .await
            .unwrap_err();
        assert!(matches!(error.kind(), ErrorKind::Credential), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("user-assigned identity abc"), "{message}");
        assert!(message.contains("400"), "{message}");
    }
}
