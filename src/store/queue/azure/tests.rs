use std::time::Instant;

use super::*;
use crate::store::azure::sdk::refused_port;

const KEY: &str = "c2VjcmV0LWtleS10aGF0LW11c3Qtbm90LWxlYWs=";
const EMULATOR_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn queue_url(connection_string: &str) -> String {
    AzureQueue::from_connection_string(connection_string, "hot-topics-jobs")
        .unwrap_or_else(|error| panic!("{connection_string:?} was rejected: {error}"))
        .url()
        .to_string()
}

#[test]
fn development_storage_means_azurite_on_its_default_queue_port() {
    assert_eq!(
        queue_url("UseDevelopmentStorage=true"),
        "http://127.0.0.1:10001/devstoreaccount1/hot-topics-jobs"
    );
}

#[test]
fn a_queue_endpoint_is_used_as_given_and_the_blob_endpoint_ignored() {
    let azurite = format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={EMULATOR_KEY};\
         BlobEndpoint=http://127.0.0.1:41234/devstoreaccount1;\
         QueueEndpoint=http://127.0.0.1:41235/devstoreaccount1/;"
    );
    assert_eq!(
        queue_url(&azurite),
        "http://127.0.0.1:41235/devstoreaccount1/hot-topics-jobs"
    );
}

#[test]
fn an_account_string_points_at_the_public_queue_service_by_default() {
    assert_eq!(
        queue_url(&format!("AccountName=womble;AccountKey={KEY}")),
        "https://womble.queue.core.windows.net/hot-topics-jobs"
    );
    assert_eq!(
        queue_url(&format!(
            "DefaultEndpointsProtocol=http;AccountName=womble;AccountKey={KEY};\
             EndpointSuffix=core.chinacloudapi.cn"
        )),
        "http://womble.queue.core.chinacloudapi.cn/hot-topics-jobs"
    );
}

#[test]
fn a_shared_access_signature_string_names_its_account_by_the_queue_endpoint() {
    let queue = AzureQueue::from_connection_string(
        "QueueEndpoint=https://womble.queue.core.windows.net/;SharedAccessSignature=sv=2022-11-02&ss=q&srt=co&sp=rwdlacup&se=2030-01-01T00:00:00Z&sig=THE-SECRET-SIGNATURE",
        "hot-topics-jobs",
    )
    .unwrap();
    let description = queue.describe();
    assert_eq!(
        description,
        "azure queue womble/hot-topics-jobs at https://womble.queue.core.windows.net/"
    );
    assert!(!format!("{queue:?}").contains("THE-SECRET-SIGNATURE"));
}

#[test]
fn neither_describe_nor_debug_nor_errors_show_the_key() {
    let queue = AzureQueue::from_connection_string(
        &format!("AccountName=womble;AccountKey={KEY}"),
        "hot-topics-jobs",
    )
    .unwrap();
    assert!(!queue.describe().contains(KEY));
    assert!(!format!("{queue:?}").contains(KEY));
    for bad in [
        format!("AccountName=womble;AccountKey={KEY};QueueEndpoint=https://x.example/?sig={KEY}"),
        format!("AccountName=womble;AccountKey={KEY}!"),
        format!("AccountName=womble;{KEY}"),
    ] {
        let message = AzureQueue::from_connection_string(&bad, "hot-topics-jobs")
            .expect_err(&format!("{bad:?} should be rejected"))
            .to_string();
        assert!(!message.contains("c2VjcmV0"), "{message:?} leaks the key");
    }
}

#[test]
fn queue_names_follow_azure_rules_and_a_bad_one_is_named() {
    for good in [
        "abc",
        "hot-topics-jobs",
        "hot-topics-jobs-poison",
        &"q".repeat(63),
    ] {
        assert!(
            AzureQueue::from_connection_string("UseDevelopmentStorage=true", good).is_ok(),
            "{good:?} should be accepted"
        );
    }
    for bad in [
        "",
        "ab",
        "Jobs",
        "-jobs",
        "jobs-",
        "a--b",
        "a_b",
        "a/b",
        &"q".repeat(64),
    ] {
        let error = AzureQueue::from_connection_string("UseDevelopmentStorage=true", bad)
            .expect_err(&format!("{bad:?} should be rejected"));
        assert!(
            matches!(&error, AzureConfigError::InvalidQueue(name) if name == bad),
            "{error:?}"
        );
        assert!(error.to_string().contains(&format!("{bad:?}")), "{error}");
    }
}

#[test]
fn an_identity_based_queue_uses_the_queue_service_uri_it_is_given() {
    let identity = Identity::ManagedIdentity { client_id: None };
    let queue = AzureQueue::with_identity(
        "acct",
        &Url::parse("https://acct.queue.core.windows.net/").unwrap(),
        &identity,
        "hot-topics-jobs",
    )
    .unwrap();
    assert_eq!(
        queue.url().as_str(),
        "https://acct.queue.core.windows.net/hot-topics-jobs"
    );
    assert!(matches!(
        AzureQueue::with_identity(
            "Not An Account",
            &Url::parse("https://acct.queue.core.windows.net/").unwrap(),
            &identity,
            "hot-topics-jobs"
        ),
        Err(AzureConfigError::InvalidAccount(_))
    ));
}

#[test]
fn text_is_base64_on_the_wire_and_text_that_is_not_comes_back_as_stored() {
    let text = r#"{"job_id":"6ce324a8-0502-4b0c-b729-12e10f0f22f6"}"#;
    assert_eq!(
        encode(text),
        "eyJqb2JfaWQiOiI2Y2UzMjRhOC0wNTAyLTRiMGMtYjcyOS0xMmUxMGYwZjIyZjYifQ=="
    );
    assert_eq!(decode(encode(text)), text);
    assert_eq!(decode(encode("ünïcödé ✓")), "ünïcödé ✓");
    for stored in [
        r#"{"job_id":"x"}"#,
        "not base64!",
        "/w==", /* 0xFF: not UTF-8 */
    ] {
        assert_eq!(decode(stored.to_owned()), stored);
    }
}

#[test]
fn visibility_is_counted_in_whole_seconds_rounded_up() {
    assert_eq!(whole_seconds_up(Duration::ZERO), Duration::ZERO);
    assert_eq!(
        whole_seconds_up(Duration::from_millis(1)),
        Duration::from_secs(1)
    );
    assert_eq!(
        whole_seconds_up(Duration::from_secs(3)),
        Duration::from_secs(3)
    );
}

#[tokio::test]
async fn a_queue_service_that_cannot_be_reached_fails_fast_as_unavailable_without_the_signature() {
    let (_held, port) = refused_port();
    let queue = AzureQueue::from_connection_string(
        &format!(
            "QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;\
             SharedAccessSignature=sv=2022-11-02&ss=q&srt=sco&sp=rwdlacup&se=2030-01-01T00:00:00Z&sig=THE-SECRET-SIGNATURE"
        ),
        "hot-topics-jobs",
    )
    .unwrap();
    let started = Instant::now();
    let error = queue.send("{}").await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let text = format!("{} {error:?}", crate::telemetry::Chain(&error));
    assert!(text.contains("127.0.0.1"), "{text}");
    assert!(!text.contains("THE-SECRET-SIGNATURE"), "{text}");
    assert!(!text.contains("sig="), "{text}");
}
