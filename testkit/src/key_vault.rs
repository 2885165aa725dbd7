//! A local Key Vault secrets endpoint and App Service managed-identity token endpoint, as
//! `azure_identity` and `azure_security_keyvault` call them: the identity endpoint
//! (`IDENTITY_ENDPOINT`, header `x-identity-header: $IDENTITY_HEADER`) hands out a token, and
//! `GET /secrets/<name>?api-version=7.0` answers with the secret when that token is presented.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::json;
use warp::http::{HeaderMap, Response, StatusCode};
use warp::Filter;

pub const IDENTITY_HEADER: &str = "identity-header-value";
const VAULT_TOKEN: &str = "vault-access-token";

#[derive(Clone)]
pub struct FakeKeyVault {
    seen: Arc<Mutex<Vec<String>>>,
    secrets: Arc<Mutex<HashMap<String, String>>>,
    url: String,
}

impl FakeKeyVault {
    pub async fn start(secrets: &[(&str, &str)]) -> Self {
        let secrets: Arc<Mutex<HashMap<String, String>>> = Arc::new(Mutex::new(
            secrets
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let listener = crate::port::listener().await;
        let url = format!("http://localhost:{}", listener.local_addr().unwrap().port());
        let routes = {
            let secrets = secrets.clone();
            let seen = seen.clone();
            warp::path::full().and(warp::header::headers_cloned()).map(
                move |path: warp::path::FullPath, headers: HeaderMap| {
                    answer(path.as_str(), &headers, &secrets.lock().unwrap(), &seen)
                },
            )
        };
        tokio::spawn(warp::serve(routes).incoming(listener).run());
        Self { seen, secrets, url }
    }

    /// Sets a secret's value, as a rotation does: later reads get the new value.
    pub fn set_secret(&self, name: &str, value: &str) {
        self.secrets
            .lock()
            .unwrap()
            .insert(name.to_owned(), value.to_owned());
    }

    /// `KEY_VAULT_URL` and the managed-identity variables App Service sets.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("KEY_VAULT_URL".into(), format!("{}/", self.url)),
            (
                "IDENTITY_ENDPOINT".into(),
                format!("{}/msi/token", self.url),
            ),
            ("IDENTITY_HEADER".into(), IDENTITY_HEADER.into()),
            ("AZURE_CREDENTIAL_KIND".into(), "appservice".into()),
        ]
    }

    /// The paths asked for, in order.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn answer(
    path: &str,
    headers: &HeaderMap,
    secrets: &HashMap<String, String>,
    seen: &Mutex<Vec<String>>,
) -> Response<String> {
    seen.lock().unwrap().push(path.to_owned());
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let reply = |status: StatusCode, body: serde_json::Value| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(body.to_string())
            .unwrap()
    };
    if path == "/msi/token" {
        if header("x-identity-header") != IDENTITY_HEADER {
            return reply(
                StatusCode::UNAUTHORIZED,
                json!({"error": "bad identity header"}),
            );
        }
        let expires = chrono::Utc::now().timestamp() + 3600;
        return reply(
            StatusCode::OK,
            json!({"access_token": VAULT_TOKEN, "expires_on": expires.to_string(),
                   "token_type": "Bearer", "resource": "https://vault.azure.net"}),
        );
    }
    if let Some(name) = path.strip_prefix("/secrets/") {
        let name = name.trim_end_matches('/');
        if header("authorization") != format!("Bearer {VAULT_TOKEN}") {
            return reply(
                StatusCode::UNAUTHORIZED,
                json!({"error": {"code": "Unauthorized"}}),
            );
        }
        return match secrets.get(name) {
            Some(value) => reply(
                StatusCode::OK,
                json!({"value": value, "id": format!("https://vault.example/secrets/{name}/1"),
                       "attributes": {"enabled": true, "created": 1_700_000_000, "updated": 1_700_000_000,
                                      "recoveryLevel": "Recoverable+Purgeable"}}),
            ),
            None => reply(
                StatusCode::NOT_FOUND,
                json!({"error": {"code": "SecretNotFound"}}),
            ),
        };
    }
    reply(StatusCode::NOT_FOUND, json!({"error": "not found"}))
}
