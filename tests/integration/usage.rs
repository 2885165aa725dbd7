//! What a job records of its own cost (`usage` in its status document) against what storage
//! saw: a counting proxy between the handler and Azurite's blob service.

use std::time::Duration;

use testkit::app::{job, JobApi as _, TestApp};
use testkit::azurite;
use testkit::poll;
use testkit::storage_proxy::{Recorded, StorageProxy};

const WAIT: Duration = Duration::from_secs(45);
const SEVEN: [&str; 7] = [
    "technology",
    "programming",
    "MachineLearning",
    "datascience",
    "computerscience",
    "gadgets",
    "Futurology",
];

/// Whether a request the proxy saw was about one of `blobs` (names inside the container).
fn about(request: &Recorded, container: &str, blobs: &[String]) -> bool {
    blobs
        .iter()
        .any(|blob| request.path.ends_with(&format!("/{container}/{blob}")))
}

/// A 7-subreddit job counts for itself exactly the blob requests, and the bytes they wrote,
/// that the proxy saw for the job's blobs: its status document, its list entry and its seven
/// outputs. The test reads the job's status straight from Azurite, not through the handler,
/// whose status answers are not the job's cost.
#[tokio::test]
async fn the_storage_requests_a_job_counts_for_itself_are_those_a_proxy_in_front_of_azurite_sees() {
    let proxy = StorageProxy::start(&azurite::connection_string()).await;
    let app = TestApp::start_with(vec![
        ("AzureWebJobsStorage", proxy.connection_string.as_str()),
        // No stale-job scan reads the job meanwhile.
        ("JOB_STALE_AFTER_SECONDS", "600"),
    ])
    .await;
    let id = app.submit(job(&SEVEN, 10)).await;
    let store = app.container.store.as_ref();
    let done = testkit::status::wait_terminal(store, &id, WAIT, Duration::from_millis(50)).await;
    let document = done.document;
    assert_eq!(document["status"], "completed", "{document}");

    let container = app.container.name.clone();
    let mut blobs = vec![format!("jobs/{id}/status.json")];
    for result in document["results"]["results"].as_array().unwrap() {
        blobs.push(result["blob_name"].as_str().unwrap().to_owned());
    }
    assert_eq!(blobs.len(), 8);
    // The list entry is written in the background, and counted by the ticket ahead of time.
    let entry = |request: &Recorded| {
        request.method == "PUT"
            && request.path.contains(&format!("/{container}/jobs/index/"))
            && request.path.ends_with(&format!("_{id}"))
    };
    poll::until("the list entry written", WAIT, async || {
        proxy.recorded().iter().any(entry)
    })
    .await;

    let seen: Vec<Recorded> = proxy
        .recorded()
        .into_iter()
        .filter(|request| about(request, &container, &blobs) || entry(request))
        .collect();
    let count = |method: &str| seen.iter().filter(|r| r.method == method).count() as u64;
    let usage = &document["usage"];
    let counted = |kind: &str| usage["storage_requests"][kind].as_u64().unwrap();
    assert_eq!(
        (counted("read"), counted("write"), counted("delete")),
        (count("GET") + count("HEAD"), count("PUT"), count("DELETE")),
        "usage {usage}; the proxy saw {seen:#?}"
    );
    assert_eq!(counted("list"), 0, "a job lists nothing of its own");
    let written: u64 = seen
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.body_len as u64)
        .sum();
    assert_eq!(usage["bytes_written"].as_u64().unwrap(), written, "{usage}");
    // The stored document's bytes are among them, its own length included.
    assert!(written >= done.body.len() as u64 + 7);
    assert!(usage["reddit_requests"].as_u64().unwrap() >= 7, "{usage}");
    assert!(usage["handler_seconds"].as_f64().unwrap() > 0.0, "{usage}");
    eprintln!("usage {usage}; {} requests seen for the job", seen.len());
}
