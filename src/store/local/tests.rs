use super::*;

#[test]
fn the_etag_is_the_sha256_of_the_content_when_there_is_no_metadata() {
    assert_eq!(
        etag_of(b"abc", &Metadata::new()).0,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn with_metadata_the_etag_tells_contents_and_metadata_apart() {
    let mut one = Metadata::new();
    one.insert("a", "b");
    let mut other = Metadata::new();
    other.insert("a", "c");
    let tags = [
        etag_of(b"abc", &Metadata::new()),
        etag_of(b"abc", &one),
        etag_of(b"abc", &other),
        etag_of(b"abd", &one),
    ];
    for (i, tag) in tags.iter().enumerate() {
        assert!(!tags[i + 1..].contains(tag), "{tags:?}");
    }
}

#[tokio::test]
async fn the_temp_directory_is_neither_listed_nor_writable() {
    let root = tempfile::tempdir().unwrap();
    let store = LocalDirStore::new(root.path(), "box");
    store.ensure_container().await.unwrap();
    std::fs::write(root.path().join("box").join(TEMP_DIR).join("stray"), b"x").unwrap();

    let reserved = BlobName::parse(format!("{TEMP_DIR}/stray")).unwrap();
    assert!(matches!(
        store
            .put(
                &reserved,
                Bytes::from_static(b"y"),
                "text/plain",
                WriteCondition::IfNotExists
            )
            .await,
        Err(StoreError::Failed(_))
    ));
    assert!(store.get(&reserved).await.unwrap().is_none());
    assert!(store.list("", None, 100).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn deleting_the_last_blob_of_a_directory_removes_the_directory() {
    let root = tempfile::tempdir().unwrap();
    let store = LocalDirStore::new(root.path(), "box");
    let name = BlobName::parse("jobs/1/status.json").unwrap();
    store
        .put(
            &name,
            Bytes::from_static(b"{}"),
            "application/json",
            WriteCondition::IfNotExists,
        )
        .await
        .unwrap();
    store.delete(&name).await.unwrap();
    assert!(!root.path().join("box/jobs").exists());
    assert!(root.path().join("box").exists());
}

#[tokio::test]
async fn no_temp_files_are_left_behind() {
    let root = tempfile::tempdir().unwrap();
    let store = LocalDirStore::new(root.path(), "box");
    let name = BlobName::parse("a.json").unwrap();
    let body = Bytes::from_static(b"1");
    let etag = store
        .put(
            &name,
            body.clone(),
            "application/json",
            WriteCondition::IfNotExists,
        )
        .await
        .unwrap();
    let _ = store
        .put(
            &name,
            body.clone(),
            "application/json",
            WriteCondition::IfNotExists,
        )
        .await;
    let etag = store
        .put(
            &name,
            body.clone(),
            "application/json",
            WriteCondition::IfMatch(etag),
        )
        .await
        .unwrap();
    store
        .put(
            &name,
            body,
            "application/json",
            WriteCondition::IfMatch(etag),
        )
        .await
        .unwrap();
    let leftovers = std::fs::read_dir(root.path().join("box").join(TEMP_DIR))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0);
}

#[tokio::test]
async fn directories_and_names_under_a_blob_are_missing_blobs() {
    let root = tempfile::tempdir().unwrap();
    let store = LocalDirStore::new(root.path(), "box");
    let status = BlobName::parse("jobs/1/status.json").unwrap();
    let etag = store
        .put(
            &status,
            Bytes::from_static(b"{}"),
            "application/json",
            WriteCondition::IfNotExists,
        )
        .await
        .unwrap();
    for missing in ["jobs", "jobs/1", "jobs/1/status.json/more"] {
        let missing = BlobName::parse(missing).unwrap();
        assert!(store.get(&missing).await.unwrap().is_none(), "{missing}");
        store.delete(&missing).await.unwrap();
        let outcome = store
            .put(
                &missing,
                Bytes::from_static(b"x"),
                "text/plain",
                WriteCondition::IfMatch(etag.clone()),
            )
            .await;
        assert!(
            matches!(outcome, Err(StoreError::ConditionFailed)),
            "{missing}: {outcome:?}"
        );
    }
    assert!(store.get(&status).await.unwrap().is_some());
}

#[tokio::test]
async fn a_prefix_inside_the_temp_directory_lists_nothing() {
    let root = tempfile::tempdir().unwrap();
    let store = LocalDirStore::new(root.path(), "box");
    store.ensure_container().await.unwrap();
    std::fs::write(root.path().join("box").join(TEMP_DIR).join("stray"), b"x").unwrap();
    let page = store.list(&format!("{TEMP_DIR}/"), None, 10).await.unwrap();
    assert!(page.items.is_empty(), "{:?}", page.items);
}

#[test]
fn describe_names_the_directory() {
    let store = LocalDirStore::new("./.data", "hot-topics");
    assert_eq!(store.describe(), "local dir ./.data/hot-topics");
}
