use super::*;
use crate::store::local::LocalDirStore;

#[tokio::test]
async fn jobs_of_one_second_never_share_an_output_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn BlobStore> = Arc::new(LocalDirStore::new(dir.path(), "hot-topics"));
    store.ensure_container().await.unwrap();
    let repository = StatusRepository::new(store);
    // Three jobs, two of whose ids begin alike.
    let jobs = [
        "6ce324a8-0502-4b0c-b729-12e10f0f22f6",
        "0badcafe-0000-4000-8000-000000000001",
        "0badcafe-0000-4000-8000-000000000002",
    ]
    .map(|id| JobId::parse(id).unwrap());
    let mut names = Vec::new();
    for job in jobs {
        let body = serde_json::json!({"job_id": job});
        let name = repository
            .store_output(job, "20250811_135221_reddit_technology", &body)
            .await
            .unwrap();
        names.push(name);
    }
    assert_eq!(
        names,
        [
            "20250811_135221_reddit_technology.json",
            "20250811_135221_reddit_technology_0badcafe.json",
            "20250811_135221_reddit_technology_0badcafe-0000-4000-8000-000000000002.json",
        ]
    );
    // A job that stores again (resumed after a kill) finds its own blob.
    let again = repository
        .store_output(
            jobs[2],
            "20250811_135221_reddit_technology",
            &serde_json::json!({"job_id": jobs[2]}),
        )
        .await
        .unwrap();
    assert_eq!(again, names[2]);
}
