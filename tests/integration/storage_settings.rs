//! The storage settings at start, black-box: the handler started as the host starts it, with
//! the settings of a Function App. Identity-based connections need Entra ID tokens, which
//! Azurite accepts only over HTTPS with a certificate the handler would have to trust, so here
//! the identity endpoint and the blob service are local stand-ins that record what they are
//! asked; the parsing itself is unit-tested in `src/config/storage.rs`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use warp::http::{HeaderMap, Response, StatusCode};
use warp::Filter;

use testkit::port::ClosedPort;
use testkit::process::{HandlerProcess, Listen};

const CLIENT_ID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";
const TOKEN: &str = "token-for-the-user-assigned-identity";
const IDENTITY_HEADER: &str = "platform-identity-header";

/// The handler under the host's settings in `dir`, ready; killed when dropped.
async fn handler(dir: &std::path::Path, settings: &[(&str, String)]) -> HandlerProcess {
    let settings: Vec<(String, String)> = settings
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone()))
        .collect();
    HandlerProcess::start(dir, Listen::Host, &settings).await
}

/// One request as a stand-in saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path_and_query: String,
    authorization: String,
    identity_header: String,
}

/// The App Service identity endpoint (`/msi/token`) and a blob service under `/<account>/` in
/// one server: tokens for the right client id only, and 201 for any blob call that presents
/// the token.
async fn identity_and_blob_service() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::new(Mutex::new(Vec::new()));
    let recorded = seen.clone();
    let route = warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .map(
            move |method: warp::http::Method,
                  path: warp::path::FullPath,
                  query: String,
                  headers: HeaderMap| {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                let request = Seen {
                    method: method.to_string(),
                    path_and_query: format!("{}?{query}", path.as_str()),
                    authorization: header("authorization"),
                    identity_header: header("x-identity-header"),
                };
                recorded.lock().unwrap().push(request.clone());
                if path.as_str() == "/msi/token" {
                    let right_identity = query.contains(&format!("client_id={CLIENT_ID}"))
                        && request.identity_header == IDENTITY_HEADER;
                    if !right_identity {
                        return Response::builder()
                            .status(StatusCode::BAD_REQUEST)
                            .body("no such identity".to_owned())
                            .unwrap();
                    }
                    let expires = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs()
                        + 3600;
                    let body = serde_json::json!({
                        "access_token": TOKEN,
                        "expires_on": expires.to_string(),
                        "resource": "https://storage.azure.com",
                        "token_type": "Bearer",
                    });
                    return Response::builder()
                        .header("content-type", "application/json")
                        .body(body.to_string())
                        .unwrap();
                }
                let status = if request.authorization == format!("Bearer {TOKEN}") {
                    StatusCode::CREATED
                } else {
                    StatusCode::FORBIDDEN
                };
                Response::builder()
                    .status(status)
                    .body(String::new())
                    .unwrap()
            },
        );
    let listener = testkit::port::listener().await;
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(warp::serve(route).incoming(listener).run());
    (url, seen)
}

#[tokio::test]
async fn an_identity_based_connection_uses_the_named_account_endpoint_and_user_assigned_identity() {
    let (service, seen) = identity_and_blob_service().await;
    let dir = tempfile::tempdir().unwrap();
    let handler = handler(
        dir.path(),
        &[
            ("WEBSITE_INSTANCE_ID", "instance-1".into()),
            (
                "AzureWebJobsStorage__blobServiceUri",
                format!("{service}/wombledata"),
            ),
            ("AzureWebJobsStorage__credential", "managedidentity".into()),
            ("AzureWebJobsStorage__clientId", CLIENT_ID.into()),
            ("IDENTITY_ENDPOINT", format!("{service}/msi/token")),
            ("IDENTITY_HEADER", IDENTITY_HEADER.into()),
        ],
    )
    .await;

    // The container is created in the background once the handler listens.
    let deadline = Instant::now() + Duration::from_secs(10);
    let container_created = |seen: &[Seen]| {
        seen.iter().any(|request| {
            request.method == "PUT"
                && request
                    .path_and_query
                    .starts_with("/wombledata/hot-topics?")
                && request.path_and_query.contains("restype=container")
                && request.authorization == format!("Bearer {TOKEN}")
        })
    };
    while !container_created(&seen.lock().unwrap()) {
        assert!(
            Instant::now() < deadline,
            "no authorised container creation: {:?}\n{}",
            seen.lock().unwrap(),
            handler.logs()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let seen = seen.lock().unwrap().clone();
    let token_requests: Vec<&Seen> = seen
        .iter()
        .filter(|request| request.path_and_query.starts_with("/msi/token"))
        .collect();
    assert!(!token_requests.is_empty(), "{seen:?}");
    for request in token_requests {
        assert!(
            request
                .path_and_query
                .contains("resource=https%3A%2F%2Fstorage.azure.com"),
            "{request:?}"
        );
        assert!(
            request
                .path_and_query
                .contains(&format!("client_id={CLIENT_ID}")),
            "{request:?}"
        );
        assert_eq!(request.identity_header, IDENTITY_HEADER);
    }
    // Nothing went anywhere but the configured account, and nothing to the local store.
    assert!(
        seen.iter()
            .all(|request| request.path_and_query.starts_with("/msi/token")
                || request.path_and_query.starts_with("/wombledata/")),
        "{seen:?}"
    );
    assert!(!dir.path().join(".data").exists());
    // The log is read from the handler's pipes by other threads: it may lag.
    handler
        .wait_for_log("wombledata/hot-topics", Duration::from_secs(10))
        .await;
    let logs = handler.logs();
    assert!(!logs.contains(TOKEN), "{logs}");
}

#[test]
fn under_the_host_in_azure_without_storage_settings_the_handler_refuses_to_start_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    // The handler refuses to start before it binds; the port stays held by the test.
    let port = ClosedPort::new();
    for marker in ["WEBSITE_INSTANCE_ID", "WEBSITE_SITE_NAME"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_handler"))
            .current_dir(dir.path())
            .env_clear()
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.port().to_string())
            .env(marker, "summary-womble")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{marker}: {stderr}");
        for name in [
            marker,
            "AzureWebJobsStorage",
            "AzureWebJobsStorage__accountName",
            "AzureWebJobsStorage__blobServiceUri",
            "OUTPUT_STORAGE_CONNECTION_STRING",
            "OUTPUT_STORAGE_ACCOUNT",
        ] {
            assert!(stderr.contains(name), "{name} not named: {stderr}");
        }
        assert!(!dir.path().join(".data").exists(), "{marker}");
    }
}

#[tokio::test]
async fn a_local_run_without_storage_settings_still_uses_the_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let handler = handler(dir.path(), &[]).await;
    let container = dir.path().join(".data").join("hot-topics");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !container.is_dir() {
        assert!(
            Instant::now() < deadline,
            "no local container:\n{}",
            handler.logs()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    handler.wait_for_log("local", Duration::from_secs(10)).await;
}
