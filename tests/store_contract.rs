//! The [`BlobStore`] contract, written once and run against every store.
//!
//! Each case in [`cases`] is generic over the store; [`contract_suite!`] turns the list of cases
//! into one test per case for a store fixture. The local directory store runs on a temporary
//! directory. The Azure store runs against Azurite, found through `AZURITE_CONNECTION_STRING`:
//! `make test` starts Azurite with `scripts/azurite.sh` and sets it. Without it the Azure tests
//! fail rather than pass unseen.
//!
//! Every test gets a fresh container (`contract-<uuid>`), so the tests run in parallel.

use std::sync::Arc;

use bytes::Bytes;
use summary_womble::store::azure::AzureBlobStore;
use summary_womble::store::local::LocalDirStore;
use summary_womble::store::{BlobName, BlobStore, Metadata, StoreError, WriteCondition};

/// A store under test, with what has to live as long as it does.
struct Fixture<B> {
    store: Arc<B>,
    container: String,
    _dir: Option<tempfile::TempDir>,
}

fn unique_container() -> String {
    format!("contract-{}", uuid::Uuid::new_v4().simple())
}

async fn ready<B: BlobStore>(
    store: B,
    container: String,
    dir: Option<tempfile::TempDir>,
) -> Fixture<B> {
    store
        .ensure_container()
        .await
        .unwrap_or_else(|error| panic!("ensure_container on {}: {error:?}", store.describe()));
    Fixture {
        store: Arc::new(store),
        container,
        _dir: dir,
    }
}

async fn local_store() -> Fixture<LocalDirStore> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let container = unique_container();
    let store = LocalDirStore::new(dir.path(), &container);
    ready(store, container, Some(dir)).await
}

fn azurite_connection_string() -> String {
    std::env::var("AZURITE_CONNECTION_STRING").unwrap_or_else(|_| {
        panic!(
            "AZURITE_CONNECTION_STRING is not set. The Azure store's contract tests run against \
             Azurite: run them with `make test`, or start it yourself with \
             `scripts/azurite.sh start <dir> && source <dir>/env`."
        )
    })
}

async fn azure_store() -> Fixture<AzureBlobStore> {
    let container = unique_container();
    let store = AzureBlobStore::from_connection_string(&azurite_connection_string(), &container)
        .expect("AZURITE_CONNECTION_STRING should configure a store");
    ready(store, container, None).await
}

fn name(name: &str) -> BlobName {
    BlobName::parse(name).expect("a valid blob name")
}

fn body(text: &str) -> Bytes {
    Bytes::from(text.to_owned())
}

/// The contract's clauses, one function per test, each generic over the store.
mod cases {
    use super::*;
    use std::collections::HashSet;
    use tokio::sync::Barrier;

    const JSON: &str = "application/json";
    /// How many writers race for one version.
    const RACERS: usize = 8;

    async fn put<B: BlobStore>(
        store: &B,
        blob: &str,
        text: &str,
        condition: WriteCondition,
    ) -> Result<summary_womble::store::ETag, StoreError> {
        store.put(&name(blob), body(text), JSON, condition).await
    }

    async fn content<B: BlobStore>(store: &B, blob: &str) -> Option<Bytes> {
        store
            .get(&name(blob))
            .await
            .expect("get should succeed")
            .map(|blob| blob.body)
    }

    fn metadata(pairs: &[(&str, &str)]) -> Metadata {
        let mut metadata = Metadata::new();
        for (name, value) in pairs {
            metadata.insert(name, *value);
        }
        metadata
    }

    pub async fn metadata_written_with_the_content_reads_back_with_it<B: BlobStore>(store: Arc<B>) {
        let written = metadata(&[
            ("claims", "2"),
            ("callback_url", "https://hooks.example.com/done?token=abc"),
        ]);
        let etag = store
            .put_with_metadata(
                &name("jobs/1/status.json"),
                body("{}"),
                JSON,
                &written,
                WriteCondition::IfNotExists,
            )
            .await
            .unwrap();
        let blob = store
            .get(&name("jobs/1/status.json"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (blob.body, blob.etag, blob.metadata),
            (body("{}"), etag, written)
        );

        put(&*store, "plain", "x", WriteCondition::IfNotExists)
            .await
            .unwrap();
        let plain = store.get(&name("plain")).await.unwrap().unwrap();
        assert!(plain.metadata.is_empty(), "{:?}", plain.metadata);
    }

    pub async fn the_etag_changes_when_only_the_metadata_changes<B: BlobStore>(store: Arc<B>) {
        let blob = name("jobs/1/status.json");
        let first = store
            .put_with_metadata(
                &blob,
                body("{}"),
                JSON,
                &metadata(&[("claims", "1")]),
                WriteCondition::IfNotExists,
            )
            .await
            .unwrap();
        let second = store
            .put_with_metadata(
                &blob,
                body("{}"),
                JSON,
                &metadata(&[("claims", "2")]),
                WriteCondition::IfMatch(first.clone()),
            )
            .await
            .unwrap();
        assert_ne!(first, second);
        let stale = store
            .put_with_metadata(
                &blob,
                body("{}"),
                JSON,
                &metadata(&[("claims", "3")]),
                WriteCondition::IfMatch(first),
            )
            .await;
        assert!(
            matches!(stale, Err(StoreError::ConditionFailed)),
            "{stale:?}"
        );
        let stored = store.get(&blob).await.unwrap().unwrap();
        assert_eq!(stored.metadata, metadata(&[("claims", "2")]));
        assert_eq!(stored.etag, second);
    }

    pub async fn a_write_without_metadata_clears_it<B: BlobStore>(store: Arc<B>) {
        let blob = name("jobs/1/status.json");
        let first = store
            .put_with_metadata(
                &blob,
                body("same"),
                JSON,
                &metadata(&[("claims", "1")]),
                WriteCondition::IfNotExists,
            )
            .await
            .unwrap();
        let second = store
            .put(&blob, body("same"), JSON, WriteCondition::IfMatch(first))
            .await
            .unwrap();
        let stored = store.get(&blob).await.unwrap().unwrap();
        assert!(stored.metadata.is_empty(), "{:?}", stored.metadata);
        assert_eq!(stored.etag, second);
    }

    pub async fn metadata_that_breaks_the_rules_is_refused_and_writes_nothing<B: BlobStore>(
        store: Arc<B>,
    ) {
        for bad in [
            metadata(&[("Claims", "1")]),
            metadata(&[("claims", "two\nlines")]),
            metadata(&[("claims", &"x".repeat(Metadata::MAX_BYTES))]),
        ] {
            let written = store
                .put_with_metadata(
                    &name("refused"),
                    body("x"),
                    JSON,
                    &bad,
                    WriteCondition::IfNotExists,
                )
                .await;
            assert!(matches!(written, Err(StoreError::Failed(_))), "{written:?}");
        }
        assert!(store.get(&name("refused")).await.unwrap().is_none());
    }

    pub async fn a_blob_with_metadata_lists_once_and_its_metadata_goes_with_it<B: BlobStore>(
        store: Arc<B>,
    ) {
        let blob = name("jobs/1/status.json");
        store
            .put_with_metadata(
                &blob,
                body("{}"),
                JSON,
                &metadata(&[("claims", "1")]),
                WriteCondition::IfNotExists,
            )
            .await
            .unwrap();
        let listed: Vec<String> = store
            .list("", None, 100)
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|item| item.name.to_string())
            .collect();
        assert_eq!(listed, ["jobs/1/status.json"]);
        store.delete(&blob).await.unwrap();
        put(
            &*store,
            "jobs/1/status.json",
            "{}",
            WriteCondition::IfNotExists,
        )
        .await
        .unwrap();
        let again = store.get(&blob).await.unwrap().unwrap();
        assert!(again.metadata.is_empty(), "{:?}", again.metadata);
    }

    /// Writers replace the blob over and over, each with its own number as content and as
    /// metadata, while readers check that every read pairs a content with its own metadata.
    pub async fn every_read_pairs_a_content_with_the_metadata_written_with_it<B: BlobStore>(
        store: Arc<B>,
    ) {
        let blob = name("jobs/1/status.json");
        let mut etag = store
            .put_with_metadata(
                &blob,
                body("0"),
                JSON,
                &metadata(&[("writer", "0")]),
                WriteCondition::IfNotExists,
            )
            .await
            .unwrap();
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let (store, blob) = (store.clone(), blob.clone());
                tokio::spawn(async move {
                    let mut last = 0;
                    while last < 40 {
                        let read = store.get(&blob).await.unwrap().unwrap();
                        let content: u32 =
                            std::str::from_utf8(&read.body).unwrap().parse().unwrap();
                        assert_eq!(
                            read.metadata.get("writer"),
                            Some(content.to_string().as_str()),
                            "a read paired content {content} with other metadata"
                        );
                        last = content;
                    }
                })
            })
            .collect();
        for round in 1..=40u32 {
            etag = store
                .put_with_metadata(
                    &blob,
                    body(&round.to_string()),
                    JSON,
                    &metadata(&[("writer", &round.to_string())]),
                    WriteCondition::IfMatch(etag),
                )
                .await
                .unwrap();
        }
        for reader in readers {
            reader.await.unwrap();
        }
    }

    pub async fn a_missing_blob_reads_as_none<B: BlobStore>(store: Arc<B>) {
        assert!(store
            .get(&name("jobs/none/status.json"))
            .await
            .unwrap()
            .is_none());
    }

    pub async fn a_written_blob_reads_back_with_the_etag_the_write_returned<B: BlobStore>(
        store: Arc<B>,
    ) {
        let etag = put(
            &*store,
            "jobs/1/status.json",
            r#"{"status":"queued"}"#,
            WriteCondition::IfNotExists,
        )
        .await
        .unwrap();
        let blob = store
            .get(&name("jobs/1/status.json"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(blob.body, body(r#"{"status":"queued"}"#));
        assert_eq!(blob.etag, etag);
    }

    pub async fn an_empty_blob_reads_back_empty<B: BlobStore>(store: Arc<B>) {
        let etag = put(&*store, "empty", "", WriteCondition::IfNotExists)
            .await
            .unwrap();
        let blob = store.get(&name("empty")).await.unwrap().unwrap();
        assert!(blob.body.is_empty());
        assert_eq!(blob.etag, etag);
    }

    pub async fn the_etag_changes_when_the_content_changes<B: BlobStore>(store: Arc<B>) {
        let first = put(&*store, "doc", "one", WriteCondition::IfNotExists)
            .await
            .unwrap();
        let second = put(
            &*store,
            "doc",
            "two",
            WriteCondition::IfMatch(first.clone()),
        )
        .await
        .unwrap();
        assert_ne!(first, second);
        let blob = store.get(&name("doc")).await.unwrap().unwrap();
        assert_eq!((blob.body, blob.etag), (body("two"), second));
    }

    pub async fn creating_a_blob_that_does_not_exist_succeeds<B: BlobStore>(store: Arc<B>) {
        let etag = put(&*store, "new", "fresh", WriteCondition::IfNotExists)
            .await
            .unwrap();
        let blob = store.get(&name("new")).await.unwrap().unwrap();
        assert_eq!((blob.body, blob.etag), (body("fresh"), etag));
    }

    pub async fn creating_a_blob_that_exists_fails_and_changes_nothing<B: BlobStore>(
        store: Arc<B>,
    ) {
        let etag = put(&*store, "taken", "original", WriteCondition::IfNotExists)
            .await
            .unwrap();
        let outcome = put(&*store, "taken", "intruder", WriteCondition::IfNotExists).await;
        assert!(
            matches!(outcome, Err(StoreError::ConditionFailed)),
            "{outcome:?}"
        );
        let blob = store.get(&name("taken")).await.unwrap().unwrap();
        assert_eq!((blob.body, blob.etag), (body("original"), etag));
    }

    pub async fn a_write_with_the_current_etag_succeeds<B: BlobStore>(store: Arc<B>) {
        let first = put(&*store, "doc", "v1", WriteCondition::IfNotExists)
            .await
            .unwrap();
        let second = put(&*store, "doc", "v2", WriteCondition::IfMatch(first.clone()))
            .await
            .unwrap();
        assert_ne!(first, second);
        let blob = store.get(&name("doc")).await.unwrap().unwrap();
        assert_eq!((blob.body, blob.etag), (body("v2"), second));
    }

    pub async fn a_stale_etag_write_fails_and_changes_nothing<B: BlobStore>(store: Arc<B>) {
        let stale = put(&*store, "doc", "v1", WriteCondition::IfNotExists)
            .await
            .unwrap();
        let current = put(&*store, "doc", "v2", WriteCondition::IfMatch(stale.clone()))
            .await
            .unwrap();
        let outcome = put(
            &*store,
            "doc",
            "lost update",
            WriteCondition::IfMatch(stale),
        )
        .await;
        assert!(
            matches!(outcome, Err(StoreError::ConditionFailed)),
            "{outcome:?}"
        );
        let blob = store.get(&name("doc")).await.unwrap().unwrap();
        assert_eq!((blob.body, blob.etag), (body("v2"), current));
    }

    pub async fn an_etag_write_to_a_missing_blob_fails_and_creates_nothing<B: BlobStore>(
        store: Arc<B>,
    ) {
        let etag = put(&*store, "gone", "v1", WriteCondition::IfNotExists)
            .await
            .unwrap();
        store.delete(&name("gone")).await.unwrap();
        let outcome = put(&*store, "gone", "v2", WriteCondition::IfMatch(etag.clone())).await;
        assert!(
            matches!(outcome, Err(StoreError::ConditionFailed)),
            "{outcome:?}"
        );
        let outcome = put(&*store, "never/was", "v2", WriteCondition::IfMatch(etag)).await;
        assert!(
            matches!(outcome, Err(StoreError::ConditionFailed)),
            "{outcome:?}"
        );
        assert_eq!(content(&*store, "gone").await, None);
        assert_eq!(content(&*store, "never/was").await, None);
    }

    pub async fn of_racing_writes_from_one_version_exactly_one_succeeds<B: BlobStore>(
        store: Arc<B>,
    ) {
        let version = put(
            &*store,
            "jobs/race/status.json",
            "v0",
            WriteCondition::IfNotExists,
        )
        .await
        .unwrap();
        let start = Arc::new(Barrier::new(RACERS));
        let writers: Vec<_> = (0..RACERS)
            .map(|writer| {
                let (store, start, version) = (store.clone(), start.clone(), version.clone());
                tokio::spawn(async move {
                    let text = format!("written by {writer}");
                    start.wait().await;
                    let outcome = put(
                        &*store,
                        "jobs/race/status.json",
                        &text,
                        WriteCondition::IfMatch(version),
                    )
                    .await;
                    (text, outcome)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for writer in writers {
            match writer.await.unwrap() {
                (text, Ok(etag)) => winners.push((text, etag)),
                (_, Err(StoreError::ConditionFailed)) => {}
                (_, Err(error)) => panic!("a racing write failed otherwise: {error:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "winners: {winners:?}");
        let (text, etag) = winners.pop().unwrap();
        let blob = store
            .get(&name("jobs/race/status.json"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((blob.body, blob.etag), (body(&text), etag));
    }

    pub async fn of_racing_creates_exactly_one_succeeds<B: BlobStore>(store: Arc<B>) {
        let start = Arc::new(Barrier::new(RACERS));
        let writers: Vec<_> = (0..RACERS)
            .map(|writer| {
                let (store, start) = (store.clone(), start.clone());
                tokio::spawn(async move {
                    let text = format!("created by {writer}");
                    start.wait().await;
                    let outcome =
                        put(&*store, "jobs/lease", &text, WriteCondition::IfNotExists).await;
                    (text, outcome)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for writer in writers {
            match writer.await.unwrap() {
                (text, Ok(_)) => winners.push(text),
                (_, Err(StoreError::ConditionFailed)) => {}
                (_, Err(error)) => panic!("a racing create failed otherwise: {error:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "winners: {winners:?}");
        assert_eq!(
            content(&*store, "jobs/lease").await,
            Some(body(&winners[0]))
        );
    }

    pub async fn deleting_a_missing_blob_is_ok<B: BlobStore>(store: Arc<B>) {
        store.delete(&name("never/there.json")).await.unwrap();
    }

    pub async fn a_deleted_blob_reads_as_none_and_can_be_created_again<B: BlobStore>(
        store: Arc<B>,
    ) {
        put(
            &*store,
            "jobs/2/status.json",
            "v1",
            WriteCondition::IfNotExists,
        )
        .await
        .unwrap();
        store.delete(&name("jobs/2/status.json")).await.unwrap();
        assert_eq!(content(&*store, "jobs/2/status.json").await, None);
        store.delete(&name("jobs/2/status.json")).await.unwrap();
        put(
            &*store,
            "jobs/2/status.json",
            "v2",
            WriteCondition::IfNotExists,
        )
        .await
        .unwrap();
        assert_eq!(
            content(&*store, "jobs/2/status.json").await,
            Some(body("v2"))
        );
    }

    pub async fn listing_pages_through_a_prefix_in_name_order_without_repeats_or_gaps<
        B: BlobStore,
    >(
        store: Arc<B>,
    ) {
        let mut expected = vec![
            "jobs/b/status.json",
            "jobs/a/status.json",
            "jobs/e/status.json",
            "jobs/c/status.json",
            "jobs/d/status.json",
        ];
        for blob in &expected {
            put(&*store, blob, blob, WriteCondition::IfNotExists)
                .await
                .unwrap();
        }
        expected.sort_unstable();

        let mut pages = Vec::new();
        let mut marker = None;
        loop {
            let page = store.list("jobs/", marker, 2).await.unwrap();
            assert!(
                page.items.len() <= 2,
                "a page of {} items",
                page.items.len()
            );
            pages.push(
                page.items
                    .iter()
                    .map(|item| item.name.to_string())
                    .collect::<Vec<_>>(),
            );
            marker = page.next_marker;
            if marker.is_none() {
                break;
            }
            assert!(pages.len() < 10, "the listing does not end: {pages:?}");
        }
        assert_eq!(pages.len(), 3, "pages: {pages:?}");
        let listed: Vec<String> = pages.concat();
        assert_eq!(listed, expected);
    }

    pub async fn listing_leaves_out_names_outside_the_prefix<B: BlobStore>(store: Arc<B>) {
        for blob in [
            "jobs/a1/status.json",
            "jobs/a2/status.json",
            "jobs/b1/status.json",
            "jobsx",
            "20250811_135221_reddit_technology.json",
        ] {
            put(&*store, blob, "{}", WriteCondition::IfNotExists)
                .await
                .unwrap();
        }
        let names = |page: summary_womble::store::ListPage| {
            assert_eq!(page.next_marker, None);
            page.items
                .into_iter()
                .map(|item| item.name.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(store.list("jobs/a", None, 100).await.unwrap()),
            ["jobs/a1/status.json", "jobs/a2/status.json"]
        );
        assert_eq!(
            names(store.list("jobs/", None, 100).await.unwrap()),
            [
                "jobs/a1/status.json",
                "jobs/a2/status.json",
                "jobs/b1/status.json"
            ]
        );
        let everything: HashSet<_> = names(store.list("", None, 100).await.unwrap())
            .into_iter()
            .collect();
        assert_eq!(everything.len(), 5, "{everything:?}");
    }

    pub async fn listing_an_unused_prefix_is_one_empty_page<B: BlobStore>(store: Arc<B>) {
        put(
            &*store,
            "jobs/a/status.json",
            "{}",
            WriteCondition::IfNotExists,
        )
        .await
        .unwrap();
        let page = store.list("nothing/here/", None, 10).await.unwrap();
        assert!(page.items.is_empty(), "{:?}", page.items);
        assert_eq!(page.next_marker, None);
    }

    pub async fn listing_reports_each_blob_size_and_a_recent_modification_time<B: BlobStore>(
        store: Arc<B>,
    ) {
        let before = chrono::Utc::now() - chrono::Duration::minutes(5);
        put(&*store, "sized/three", "abc", WriteCondition::IfNotExists)
            .await
            .unwrap();
        put(&*store, "sized/zero", "", WriteCondition::IfNotExists)
            .await
            .unwrap();
        let after = chrono::Utc::now() + chrono::Duration::minutes(5);
        let page = store.list("sized/", None, 10).await.unwrap();
        let sizes: Vec<_> = page
            .items
            .iter()
            .map(|item| (item.name.to_string(), item.size))
            .collect();
        assert_eq!(
            sizes,
            [("sized/three".to_owned(), 3), ("sized/zero".to_owned(), 0)]
        );
        for item in &page.items {
            assert!(
                before < item.last_modified && item.last_modified < after,
                "{} was last modified at {}",
                item.name,
                item.last_modified
            );
        }
    }

    pub async fn ensuring_the_container_again_is_harmless_and_keeps_its_blobs<B: BlobStore>(
        store: Arc<B>,
    ) {
        put(&*store, "kept", "still here", WriteCondition::IfNotExists)
            .await
            .unwrap();
        store.ensure_container().await.unwrap();
        store.ensure_container().await.unwrap();
        assert_eq!(content(&*store, "kept").await, Some(body("still here")));
    }
}

/// One test per contract case for the store that `$fixture` builds.
macro_rules! contract_suite {
    ($suite:ident, $fixture:ident) => {
        mod $suite {
            use super::*;

            contract_suite!(@cases $fixture;
                a_missing_blob_reads_as_none,
                a_written_blob_reads_back_with_the_etag_the_write_returned,
                an_empty_blob_reads_back_empty,
                the_etag_changes_when_the_content_changes,
                creating_a_blob_that_does_not_exist_succeeds,
                creating_a_blob_that_exists_fails_and_changes_nothing,
                a_write_with_the_current_etag_succeeds,
                a_stale_etag_write_fails_and_changes_nothing,
                an_etag_write_to_a_missing_blob_fails_and_creates_nothing,
                of_racing_writes_from_one_version_exactly_one_succeeds,
                of_racing_creates_exactly_one_succeeds,
                deleting_a_missing_blob_is_ok,
                a_deleted_blob_reads_as_none_and_can_be_created_again,
                listing_pages_through_a_prefix_in_name_order_without_repeats_or_gaps,
                listing_leaves_out_names_outside_the_prefix,
                listing_an_unused_prefix_is_one_empty_page,
                listing_reports_each_blob_size_and_a_recent_modification_time,
                ensuring_the_container_again_is_harmless_and_keeps_its_blobs,
                metadata_written_with_the_content_reads_back_with_it,
                the_etag_changes_when_only_the_metadata_changes,
                a_write_without_metadata_clears_it,
                metadata_that_breaks_the_rules_is_refused_and_writes_nothing,
                a_blob_with_metadata_lists_once_and_its_metadata_goes_with_it,
                every_read_pairs_a_content_with_the_metadata_written_with_it,
            );
        }
    };
    (@cases $fixture:ident; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let fixture = $fixture().await;
                cases::$case(fixture.store.clone()).await;
            }
        )*
    };
}

contract_suite!(local_dir_store, local_store);
contract_suite!(azure_blob_store, azure_store);

/// What only the local store promises beyond the contract.
mod local_dir_store_extras {
    use super::*;

    /// A write puts the metadata of its new content in place before the content: killed
    /// between the two, it leaves metadata that belongs to no content the blob holds.
    #[tokio::test]
    async fn metadata_left_by_a_write_killed_before_its_content_moved_in_is_never_read() {
        use sha2::Digest;
        let fixture = local_store().await;
        let blob = name("jobs/1/status.json");
        let mut kept = Metadata::new();
        kept.insert("claims", "1");
        let etag = fixture
            .store
            .put_with_metadata(&blob, body("old"), "x", &kept, WriteCondition::IfNotExists)
            .await
            .unwrap();
        let never_moved_in = hex::encode(sha2::Sha256::digest(b"new"));
        let dir = fixture
            ._dir
            .as_ref()
            .unwrap()
            .path()
            .join(&fixture.container)
            .join(summary_womble::store::local::METADATA_DIR)
            .join(blob.as_str());
        std::fs::write(dir.join(&never_moved_in), br#"{"claims":"2"}"#).unwrap();

        let read = fixture.store.get(&blob).await.unwrap().unwrap();
        assert_eq!(
            (read.body, read.metadata, read.etag),
            (body("old"), kept, etag)
        );
        assert_eq!(
            fixture.store.list("", None, 10).await.unwrap().items.len(),
            1,
            "metadata files are not blobs"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn creates_are_atomic_across_stores_sharing_a_directory() {
        // Separate stores share no lock, as separate processes would not.
        let dir = tempfile::tempdir().unwrap();
        let container = unique_container();
        let stores: Vec<_> = (0..8)
            .map(|_| Arc::new(LocalDirStore::new(dir.path(), &container)))
            .collect();
        stores[0].ensure_container().await.unwrap();
        let start = Arc::new(tokio::sync::Barrier::new(stores.len()));
        let creates: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(index, store)| {
                let (store, start) = (store.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    store
                        .put(
                            &name("jobs/lease"),
                            body(&index.to_string()),
                            "text/plain",
                            WriteCondition::IfNotExists,
                        )
                        .await
                })
            })
            .collect();
        let mut created = 0;
        for create in creates {
            match create.await.unwrap() {
                Ok(_) => created += 1,
                Err(StoreError::ConditionFailed) => {}
                Err(error) => panic!("a create failed otherwise: {error:?}"),
            }
        }
        assert_eq!(created, 1);
    }
}

/// What only the Azure store promises beyond the contract.
mod azure_blob_store_extras {
    use super::*;

    #[tokio::test]
    async fn the_content_type_written_is_the_content_type_stored() {
        let fixture = azure_store().await;
        let store = &fixture.store;
        for (blob, content_type) in [
            ("jobs/1/status.json", "application/json"),
            ("notes.txt", "text/plain; charset=utf-8"),
        ] {
            store
                .put(
                    &name(blob),
                    body("x"),
                    content_type,
                    WriteCondition::IfNotExists,
                )
                .await
                .unwrap();
            assert_eq!(
                store.content_type(&name(blob)).await.unwrap().as_deref(),
                Some(content_type)
            );
        }
        assert_eq!(store.content_type(&name("missing")).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_wrong_account_key_is_a_final_failure() {
        let connection_string = azurite_connection_string();
        let key_start = connection_string.find("AccountKey=").unwrap() + "AccountKey=".len();
        let key_end = key_start + connection_string[key_start..].find(';').unwrap();
        let wrong_key = format!(
            "{}{}{}",
            &connection_string[..key_start],
            "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=",
            &connection_string[key_end..]
        );
        let store =
            AzureBlobStore::from_connection_string(&wrong_key, &unique_container()).unwrap();
        let outcome = store.ensure_container().await;
        assert!(matches!(outcome, Err(StoreError::Failed(_))), "{outcome:?}");
    }

    /// Azurite's blob endpoint in `connection_string`, moved to `port`.
    fn with_blob_port(connection_string: &str, port: u16) -> String {
        connection_string
            .split(';')
            .map(|part| match part.split_once('=') {
                Some((key, endpoint)) if key.eq_ignore_ascii_case("BlobEndpoint") => {
                    let mut endpoint = url::Url::parse(endpoint).expect("a BlobEndpoint URL");
                    endpoint.set_port(Some(port)).unwrap();
                    format!("BlobEndpoint={endpoint}")
                }
                _ => part.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(";")
    }

    /// A proxy in front of Azurite that passes the first request on but never delivers its
    /// reply: the write lands, and the writer sees a broken connection. Later connections pass.
    async fn proxy_losing_the_first_reply() -> u16 {
        use tokio::io::AsyncReadExt;
        use tokio::net::{TcpListener, TcpStream};

        let connection_string = azurite_connection_string();
        let upstream = connection_string
            .split(';')
            .find_map(|part| part.strip_prefix("BlobEndpoint="))
            .and_then(|endpoint| url::Url::parse(endpoint).ok())
            .and_then(|endpoint| endpoint.port())
            .expect("AZURITE_CONNECTION_STRING names Azurite's BlobEndpoint with a port");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut first = true;
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    return;
                };
                let lose_reply = std::mem::replace(&mut first, false);
                tokio::spawn(async move {
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let requests = tokio::spawn(async move {
                        tokio::io::copy(&mut client_read, &mut server_write).await
                    });
                    if lose_reply {
                        // Once the reply starts, the request has been carried out.
                        let _ = server_read.read(&mut [0; 1]).await;
                        requests.abort();
                    } else {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    }
                });
            }
        });
        port
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_conditional_write_whose_reply_was_lost_still_succeeds() {
        let fixture = azure_store().await;
        let direct = &fixture.store;
        let lossy = |port| {
            AzureBlobStore::from_connection_string(
                &with_blob_port(&azurite_connection_string(), port),
                &fixture.container,
            )
            .unwrap()
        };

        // Retried, the create meets the blob its first attempt made.
        let store = lossy(proxy_losing_the_first_reply().await);
        let created = store
            .put(
                &name("jobs/lost/lease"),
                body("mine"),
                "text/plain",
                WriteCondition::IfNotExists,
            )
            .await
            .expect("the create landed, so it succeeded");
        let blob = direct.get(&name("jobs/lost/lease")).await.unwrap().unwrap();
        assert_eq!((blob.body, blob.etag), (body("mine"), created.clone()));

        // Retried, the update meets a changed ETag: its own.
        let store = lossy(proxy_losing_the_first_reply().await);
        let updated = store
            .put(
                &name("jobs/lost/lease"),
                body("mine, updated"),
                "text/plain",
                WriteCondition::IfMatch(created),
            )
            .await
            .expect("the update landed, so it succeeded");
        let blob = direct.get(&name("jobs/lost/lease")).await.unwrap().unwrap();
        assert_eq!((blob.body, blob.etag), (body("mine, updated"), updated));
    }

    #[test]
    fn the_description_names_account_and_container_and_no_key() {
        let connection_string = azurite_connection_string();
        let store =
            AzureBlobStore::from_connection_string(&connection_string, "hot-topics").unwrap();
        let description = store.describe();
        assert!(
            description.starts_with("azure blob devstoreaccount1/hot-topics"),
            "{description}"
        );
        assert!(!description.contains("AccountKey") && !description.contains("Eby8vdM0"));
    }
}

/// A write that comes before the container exists (a submit racing the handler's start)
/// creates the container and lands, in both stores.
async fn a_first_write_creates_the_missing_container<B: BlobStore>(store: B) {
    let blob = name("jobs/first/status.json");
    store
        .put(
            &blob,
            body("first"),
            "application/json",
            WriteCondition::IfNotExists,
        )
        .await
        .unwrap_or_else(|error| panic!("{}: {error:?}", store.describe()));
    let read = store
        .get(&blob)
        .await
        .unwrap()
        .expect("the blob was written");
    assert_eq!(read.body, body("first"));
}

#[tokio::test]
async fn the_local_store_creates_its_container_on_the_first_write() {
    let dir = tempfile::tempdir().unwrap();
    a_first_write_creates_the_missing_container(LocalDirStore::new(
        dir.path(),
        &unique_container(),
    ))
    .await;
}

#[tokio::test]
async fn the_azure_store_creates_its_container_on_the_first_write() {
    let store =
        AzureBlobStore::from_connection_string(&azurite_connection_string(), &unique_container())
            .expect("AZURITE_CONNECTION_STRING should configure a store");
    a_first_write_creates_the_missing_container(store).await;
}
