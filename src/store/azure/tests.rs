use std::time::Instant;

use std::sync::Arc;
use std::time::Duration;

use super::errors::retry_after_header;
use super::sdk::refused_port;
use super::*;
use crate::store::BlobStore;

const KEY: &str = "c2VjcmV0LWtleS10aGF0LW11c3Qtbm90LWxlYWs=";

fn container_url(connection_string: &str) -> String {
    let store = AzureBlobStore::from_connection_string(connection_string, "hot-topics")
        .unwrap_or_else(|error| panic!("{connection_string:?} was rejected: {error}"));
    store.container.url().unwrap().to_string()
}

#[test]
fn development_storage_means_azurite_on_its_default_port() {
    let store =
        AzureBlobStore::from_connection_string("UseDevelopmentStorage=true", "hot-topics").unwrap();
    assert_eq!(store.account, "devstoreaccount1");
    assert_eq!(
        store.container.url().unwrap().as_str(),
        "http://127.0.0.1:10000/devstoreaccount1/hot-topics"
    );
}

#[test]
fn a_blob_endpoint_is_used_as_given() {
    let azurite = format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={EMULATOR_ACCOUNT_KEY};\
         BlobEndpoint=http://127.0.0.1:41234/devstoreaccount1;"
    );
    assert_eq!(
        container_url(&azurite),
        "http://127.0.0.1:41234/devstoreaccount1/hot-topics"
    );
    let trailing_slash = azurite.replace("41234/devstoreaccount1;", "41234/devstoreaccount1/;");
    assert_eq!(
        container_url(&trailing_slash),
        "http://127.0.0.1:41234/devstoreaccount1/hot-topics"
    );
}

#[test]
fn an_account_string_points_at_the_public_cloud_by_default() {
    let connection_string = format!(
        "DefaultEndpointsProtocol=https;AccountName=womble;AccountKey={KEY};EndpointSuffix=core.windows.net"
    );
    assert_eq!(
        container_url(&connection_string),
        "https://womble.blob.core.windows.net/hot-topics"
    );
    assert_eq!(
        container_url(&format!("AccountName=womble;AccountKey={KEY}")),
        "https://womble.blob.core.windows.net/hot-topics"
    );
    assert_eq!(
        container_url(&format!(
            "AccountName=womble;AccountKey={KEY};EndpointSuffix=core.chinacloudapi.cn"
        )),
        "https://womble.blob.core.chinacloudapi.cn/hot-topics"
    );
}

#[test]
fn keys_of_other_services_and_key_case_do_not_matter() {
    let connection_string = format!(
        "accountname=womble;ACCOUNTKEY={KEY};QueueEndpoint=https://womble.queue.core.windows.net/;\
         TableEndpoint=https://womble.table.core.windows.net/"
    );
    assert_eq!(
        container_url(&connection_string),
        "https://womble.blob.core.windows.net/hot-topics"
    );
}

#[test]
fn a_shared_access_signature_string_needs_no_account_name() {
    let store = AzureBlobStore::from_connection_string(
        "BlobEndpoint=https://womble.blob.core.windows.net/;SharedAccessSignature=sv=2022-11-02&ss=b&srt=co&sp=rwdlac&se=2030-01-01T00:00:00Z&sig=abc%3D",
        "hot-topics",
    )
    .unwrap();
    assert_eq!(store.account, "womble");
    assert_eq!(
        store.describe(),
        "azure blob womble/hot-topics at https://womble.blob.core.windows.net/"
    );
}

#[test]
fn neither_describe_nor_debug_shows_the_key() {
    let store = AzureBlobStore::from_connection_string(
        &format!("AccountName=womble;AccountKey={KEY}"),
        "hot-topics",
    )
    .unwrap();
    let description = store.describe();
    assert!(
        description.starts_with("azure blob womble/hot-topics"),
        "{description}"
    );
    assert!(!description.contains(KEY));
    assert!(!format!("{store:?}").contains(KEY), "{store:?}");
}

#[test]
fn bad_connection_strings_are_rejected_without_quoting_the_key() {
    let cases = [
        (
            format!("AccountName=womble;{}", KEY.trim_end_matches('=')),
            "no `=`",
        ),
        (
            format!("AccountName=womble;AccountKey={KEY};Extra="),
            "empty key or value",
        ),
        (format!("AccountKey={KEY}"), "no AccountName"),
        (
            "AccountName=womble".to_owned(),
            "no AccountKey or SharedAccessSignature",
        ),
        (
            format!("AccountName=womble;AccountKey={KEY}!not-base64"),
            "AccountKey is not valid",
        ),
        (
            format!("AccountName=womble;AccountKey={KEY};SharedAccessSignature=sv=1&sig=x"),
            "both AccountKey and SharedAccessSignature",
        ),
        (
            format!("AccountName=womble;AccountKey={KEY};DefaultEndpointsProtocol=ftp"),
            "DefaultEndpointsProtocol is not valid",
        ),
        (
            format!("AccountName=womble;AccountKey={KEY};BlobEndpoint=not a url"),
            "BlobEndpoint is not valid",
        ),
        (
            format!(
                "AccountName=womble;AccountKey={KEY};BlobEndpoint=https://x.example/?sig={KEY}"
            ),
            "BlobEndpoint is not valid",
        ),
        (
            format!("AccountName=Womble_1;AccountKey={KEY}"),
            "invalid storage account name",
        ),
        (
            "UseDevelopmentStorage=yes".to_owned(),
            "UseDevelopmentStorage is not valid",
        ),
        (
            "UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://proxy".to_owned(),
            "not supported",
        ),
        ("  ;  ".to_owned(), "it is empty"),
    ];
    for (connection_string, expected) in cases {
        let error = AzureBlobStore::from_connection_string(&connection_string, "hot-topics")
            .expect_err(&format!("{connection_string:?} should be rejected"));
        let message = error.to_string();
        assert!(
            message.contains(expected),
            "{message:?} should mention {expected:?}"
        );
        assert!(!message.contains(KEY), "{message:?} leaks the key");
        assert!(
            !message.contains("c2VjcmV0"),
            "{message:?} leaks part of the key"
        );
    }
}

#[test]
fn container_names_follow_azure_rules() {
    let connection_string = "UseDevelopmentStorage=true";
    for good in ["hot-topics", "abc", "a1-b2-c3", &"a".repeat(63)] {
        assert!(
            AzureBlobStore::from_connection_string(connection_string, good).is_ok(),
            "{good:?} should be accepted"
        );
    }
    for bad in [
        "",
        "ab",
        "Hot-Topics",
        "-abc",
        "abc-",
        "a--b",
        "a_b",
        "a/b",
        &"a".repeat(64),
    ] {
        assert!(
            matches!(
                AzureBlobStore::from_connection_string(connection_string, bad),
                Err(AzureConfigError::InvalidContainer(_))
            ),
            "{bad:?} should be rejected"
        );
    }
}

#[test]
fn an_identity_based_store_needs_a_valid_account_name() {
    let endpoint = Url::parse("https://account.blob.core.windows.net").unwrap();
    let identity = Identity::ManagedIdentity { client_id: None };
    assert!(matches!(
        AzureBlobStore::with_identity("evil.example.com/x", &endpoint, &identity, "hot-topics"),
        Err(AzureConfigError::InvalidAccount(_))
    ));
}

#[test]
fn an_identity_based_store_uses_the_blob_service_uri_it_is_given() {
    let identity = Identity::ManagedIdentity {
        client_id: Some("client".to_owned()),
    };
    for (endpoint, expected) in [
        (
            "https://acct.blob.core.windows.net/",
            "https://acct.blob.core.windows.net/hot-topics",
        ),
        (
            "https://acct.privatelink.blob.core.usgovcloudapi.net",
            "https://acct.privatelink.blob.core.usgovcloudapi.net/hot-topics",
        ),
        (
            "http://127.0.0.1:10000/devstoreaccount1",
            "http://127.0.0.1:10000/devstoreaccount1/hot-topics",
        ),
    ] {
        let store = AzureBlobStore::with_identity(
            "acct",
            &Url::parse(endpoint).unwrap(),
            &identity,
            "hot-topics",
        )
        .unwrap();
        assert_eq!(store.container.url().unwrap().as_str(), expected);
    }
}

/// A blob service that answers every request `503 ServerBusy` with `Retry-After: <seconds>`,
/// a store in front of it, and the times of the requests it has seen.
async fn busy_service(retry_after: u64) -> (AzureBlobStore, Arc<std::sync::Mutex<Vec<Instant>>>) {
    use std::sync::Mutex;
    use warp::Filter as _;
    let seen: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let routes = {
        let seen = seen.clone();
        warp::any().map(move || {
            seen.lock().unwrap().push(Instant::now());
            warp::http::Response::builder()
                .status(503)
                .header("retry-after", retry_after.to_string())
                .header("x-ms-error-code", "ServerBusy")
                .body(String::new())
                .unwrap()
        })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(warp::serve(routes).incoming(listener).run());
    let store = AzureBlobStore::from_connection_string(
        &format!(
            "AccountName=devstoreaccount1;AccountKey={EMULATOR_ACCOUNT_KEY};\
             BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1"
        ),
        "hot-topics",
    )
    .unwrap();
    (store, seen)
}

#[tokio::test]
async fn a_busy_service_is_asked_again_no_sooner_than_its_retry_after() {
    let (store, seen) = busy_service(1).await;
    let error = store.ensure_container().await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 2, "asked {} times", seen.len());
    for pair in seen.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(950),
            "asked again after {:?}",
            pair[1] - pair[0]
        );
    }
}

#[tokio::test]
async fn a_retry_after_beyond_the_stores_budget_ends_the_call_at_once_as_unavailable() {
    let (store, seen) = busy_service(60).await;
    let started = Instant::now();
    let error = store.ensure_container().await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_call_whose_caller_retries_it_makes_one_attempt_and_passes_on_the_retry_after() {
    let (store, seen) = busy_service(1).await;
    let error = crate::store::retried_by_caller(store.ensure_container())
        .await
        .unwrap_err();
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert_eq!(
        error.verdict(),
        crate::retry::Verdict::RetryAfter(Duration::from_secs(1))
    );
}

#[test]
fn a_retry_after_is_read_from_the_printed_headers() {
    let text = "HttpError { Status: 503, Headers: [ retry-after:7 x-ms-error-code:ServerBusy ] }";
    assert_eq!(retry_after_header(text), Some(Duration::from_secs(7)));
    assert_eq!(
        retry_after_header("Retry-After: 99999"),
        Some(Duration::from_secs(99999))
    );
    assert_eq!(retry_after_header("no such header"), None);
    assert_eq!(retry_after_header("retry-after:soon"), None);
}

#[tokio::test]
async fn a_shared_access_signature_never_reaches_an_error_text() {
    let (_held, port) = refused_port();
    let store = AzureBlobStore::from_connection_string(
        &format!(
            "BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;\
             SharedAccessSignature=sv=2022-11-02&ss=b&srt=sco&sp=rwdlac&se=2030-01-01T00:00:00Z&sig=THE-SECRET-SIGNATURE"
        ),
        "hot-topics",
    )
    .unwrap();
    let error = store
        .get(&BlobName::parse("jobs/x/status.json").unwrap())
        .await
        .unwrap_err();
    let text = format!("{} {error:?}", crate::telemetry::Chain(&error));
    assert!(text.contains("127.0.0.1"), "{text}");
    assert!(!text.contains("THE-SECRET-SIGNATURE"), "{text}");
    assert!(!text.contains("sig="), "{text}");
}

#[tokio::test]
async fn storage_that_cannot_be_reached_fails_fast_as_unavailable() {
    let (_held, port) = refused_port();
    let store = AzureBlobStore::from_connection_string(
        &format!(
            "AccountName=devstoreaccount1;AccountKey={EMULATOR_ACCOUNT_KEY};\
             BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1"
        ),
        "hot-topics",
    )
    .unwrap();
    let started = Instant::now();
    let error = store
        .get(&BlobName::parse("jobs/x/status.json").unwrap())
        .await
        .unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
