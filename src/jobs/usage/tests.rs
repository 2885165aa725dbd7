use super::*;
use crate::jobs::request::{JobRequest, Limit, Priority, Source};
use crate::jobs::status::now;
use crate::reddit::Subreddit;

fn queued() -> StatusDocument {
    let request = JobRequest {
        source: Source::Reddit,
        topics: vec![Subreddit::parse("technology").unwrap()],
        limit: Limit::DEFAULT,
        priority: Priority::Normal,
        callback_url: None,
    };
    StatusDocument::queued(JobId::new(), request, None, now())
}

#[test]
fn a_write_is_charged_with_itself_and_the_bytes_it_stores_are_the_bytes_it_says() {
    let mut document = queued();
    for bytes_before in [0, 9, 99_999_999] {
        document.usage.bytes_written = bytes_before;
        let writes_before = document.usage.storage_requests.write;
        let charged = charge(&mut document, Reading::default());
        assert_eq!(document.usage.storage_requests.write, writes_before + 1);
        assert_eq!(
            document.usage.bytes_written,
            bytes_before + charged.body.len() as u64,
            "the content counts its own length"
        );
        let stored: StatusDocument = serde_json::from_slice(&charged.body).unwrap();
        assert_eq!(stored.usage, document.usage);
    }
}

#[tokio::test]
async fn a_write_is_charged_with_what_its_own_job_counted_since_the_last_one_only() {
    let mut document = queued();
    let own = meter_for(document.job_id);
    let other = meter_for(JobId::new());
    meter::metered(other.clone(), async { meter::count(Request::Read) }).await;
    let charged = meter::metered(own.clone(), async {
        meter::count(Request::Read);
        meter::count(Request::Reddit);
        meter::count(Request::Reddit);
        let charged = charge(&mut document, Reading::one(Request::Queue));
        // The store counts the write as it sends it.
        meter::count_write(charged.body.len());
        charged
    })
    .await;
    let usage = &document.usage;
    assert_eq!(
        (
            usage.storage_requests.read,
            usage.storage_requests.write,
            usage.storage_requests.queue,
            usage.reddit_requests
        ),
        (1, 1, 1, 2)
    );
    charged.landed();
    assert_eq!(own.unflushed().reading, Reading::default(), "all recorded");

    // Outside its own job's work, a write is charged with itself alone.
    let mut unrelated = queued();
    meter::metered(other, async {
        charge(&mut unrelated, Reading::default());
    })
    .await;
    assert_eq!(unrelated.usage.storage_requests.total(), 1);
}

#[tokio::test]
async fn a_write_that_did_not_land_leaves_its_requests_to_the_next_one() {
    let document = queued();
    let meter = meter_for(document.job_id);
    meter::metered(meter.clone(), async {
        meter::count(Request::Read);
        let mut first = document.clone();
        let refused = charge(&mut first, Reading::default());
        meter::count_write(refused.body.len());
        // 412: not landed; the next attempt starts again from the stored document.
        let mut second = document.clone();
        let charged = charge(&mut second, Reading::default());
        assert_eq!(second.usage.storage_requests.read, 1);
        assert_eq!(
            second.usage.storage_requests.write, 2,
            "the refused write, and itself"
        );
        meter::count_write(charged.body.len());
        charged.landed();
    })
    .await;
    assert_eq!(meter.unflushed().reading, Reading::default());
}

#[test]
fn usage_sums_over_jobs() {
    let mut one = Usage::default();
    one.add(Reading::one(Request::Write), 1.25);
    let mut two = Usage::default();
    two.add(
        Reading::one(Request::List).plus(Reading::one(Request::Reddit)),
        0.5,
    );
    let total = Usage::sum([&one, &two]);
    assert_eq!(total.storage_requests.total(), 2);
    assert_eq!(total.reddit_requests, 1);
    assert_eq!(total.handler_seconds, 1.75);
}
