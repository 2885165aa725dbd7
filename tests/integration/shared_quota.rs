//! Several instances of the app on one Reddit quota. Reddit's rate limit belongs to the OAuth
//! client id, so every instance of a scaled-out app spends the same window, and each sees the
//! others only in the `X-Ratelimit-*` headers. They must not turn each other's requests into
//! 429 storms, and no job may fail because of a 429.

use std::time::Duration;

use serde_json::Value;

use testkit::app::{job, post, JobApi, TestApp};
use testkit::fake_reddit::CLIENT_ID;

const WAIT: Duration = Duration::from_secs(40);
const INSTANCES: usize = 3;
const JOBS_PER_INSTANCE: usize = 2;
const SUBREDDITS_PER_JOB: usize = 10;

#[tokio::test]
async fn instances_sharing_one_tight_window_draw_few_429s_and_fail_no_subreddit() {
    let app = TestApp::start().await;
    // 60 listings against 15 a window: four windows at least, and each instance alone could
    // fetch 32 subreddits at once (4 jobs of 8).
    app.reddit.set_fixed_window(15, Duration::from_secs(3));
    let mut others = Vec::new();
    for _ in 1..INSTANCES {
        others.push(app.another_instance().await);
    }

    let mut started = Vec::new();
    for instance in 0..INSTANCES {
        for number in 0..JOBS_PER_INSTANCE {
            let names: Vec<String> = (0..SUBREDDITS_PER_JOB)
                .map(|i| format!("quota{instance}job{number}sub{i}"))
                .collect();
            let topics: Vec<&str> = names.iter().map(String::as_str).collect();
            let body = job(&topics, 3);
            let id = match instance {
                0 => app.submit(body).await,
                _ => {
                    let answer = others[instance - 1].forward(post(&body)).await;
                    assert_eq!(answer.status, 202, "{}", answer.text());
                    answer.json()["job_id"].as_str().unwrap().to_owned()
                }
            };
            started.push((id, names));
        }
    }

    for (id, names) in &started {
        let done = app.wait_terminal(id, WAIT).await;
        assert_eq!(done["status"], "completed", "{done}");
        let results = done["results"]["results"].as_array().unwrap();
        assert_eq!(results.len(), names.len(), "{done}");
        for result in results {
            assert_eq!(result["status"], "success", "{done}");
            let stored: Option<Value> = app
                .container
                .read_json(result["blob_name"].as_str().unwrap())
                .await;
            assert_eq!(stored.expect("the output blob exists")["count"], 3);
        }
    }

    // A 429 can still happen when every instance's count of the window is stale at once (the
    // answers that would show each instance the others' last requests are on their way): about
    // one for every window, when the windows are as small as this, would be a 429 for every
    // five listings; three in all is one for every twenty. Each instance believing it owns the
    // window draws dozens.
    let listings = INSTANCES * JOBS_PER_INSTANCE * SUBREDDITS_PER_JOB;
    let windows = app.reddit.window_usage(CLIENT_ID);
    assert!(
        app.reddit.rate_limited() <= 3,
        "{} 429s for {listings} listings; windows: {windows:?}",
        app.reddit.rate_limited(),
    );
    assert_eq!(app.reddit.listings_answered(), listings, "{windows:?}");
}
