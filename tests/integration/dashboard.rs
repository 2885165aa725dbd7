//! The job dashboard in a real browser. Headless Chromium loads `/api/dashboard` from the
//! handler under the host simulator, with keys enforced as in Azure, on Azurite with the fake
//! Reddit; the tests act on the page as a person would (clicks, keys) and read what it shows.
//! Each view is saved as a screenshot under `target/dashboard/`.
//!
//! The page is opened as the README says: `/api/dashboard#key=<SummaryWomble's key>`, or
//! without a key and then given one in its form. Where the key may go is checked from three
//! sides: the requests as they left the browser (DevTools), as they reached the public address,
//! and the host's log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use testkit::app::{job, JobApi, StandaloneApp, TestApp};
use testkit::azurite::{Container, Queue};
use testkit::browser::{Browser, ENTER, TAB};
use testkit::fake_reddit::Behaviour;
use testkit::host::{HostOptions, HostRequest};
use testkit::public::{PublicAddress, PublicRequest};
use testkit::Dispatch;

/// A host key: every function accepts it. The tests' own API calls use it, never the page.
const HOST_KEY: &str = "host-key-for-the-dashboard-tests";
/// SummaryWomble's own function key: the key the README says to open the dashboard with.
const SUMMARY_KEY: &str = "summary-womble-own-key-7Qx+/9z==";
/// Dashboard's own function key: SummaryWomble refuses it, as in Azure (and the page, being
/// anonymous, needs none).
const DASHBOARD_KEY: &str = "dashboard-only-key";
const WAIT: Duration = Duration::from_secs(45);

/// The job rows as the page shows them.
const ROWS: &str = "Array.from(document.querySelectorAll('#job-rows tr')).map(row => ({
    id: row.dataset.jobId,
    status: row.querySelector('.badge').textContent,
    progress: row.querySelector('.progress-text').textContent,
    step: row.querySelector('td.step').textContent,
}))";

/// The message box's text while it is shown, else null.
const MESSAGE: &str =
    "(() => { const box = document.getElementById('message'); return box.hidden ? null : box.textContent; })()";

/// The id of the job the detail panel shows, when it is open.
const DETAIL_ID: &str =
    "(() => document.getElementById('detail').hidden ? null : document.getElementById('detail-id').textContent)()";

/// True when nothing sticks out sideways: no horizontal scrolling.
const FITS: &str = "document.documentElement.scrollWidth <= window.innerWidth";

/// What the metrics panel shows of the queues: the job queue's and the poison queue's counts
/// (queue dispatch), or the sentence that there is no queue (inline); null where not shown.
const QUEUE_FIGURES: &str = "(() => {
    const shown = name => {
        const figure = document.querySelector(`#metrics-figures [data-figure=\"${name}\"] dd`);
        return figure ? figure.textContent : null;
    };
    return { jobs: shown('queue-jobs'), poison: shown('queue-poison'), none: shown('no-queue') };
})()";

fn keys() -> HostOptions {
    HostOptions::default()
        .enforce_keys([HOST_KEY])
        .function_key("SummaryWomble", SUMMARY_KEY)
        .function_key("Dashboard", DASHBOARD_KEY)
}

/// The page's address with `key` in its fragment, percent-encoded as a person's browser would
/// carry it.
fn with_key_in_fragment(key: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(key.as_bytes()).collect();
    format!("/api/dashboard#key={}", encoded.replace('+', "%20"))
}

/// Opens the page at `url` and waits until its first refresh has shown what the API said.
async fn open_page(browser: &Browser, url: &str) {
    browser.goto(url).await;
    first_refresh(browser).await;
}

/// Waits until the open page's first refresh has shown what the API said.
async fn first_refresh(browser: &Browser) {
    browser
        .wait_until(
            "the page's first refresh",
            WAIT,
            "document.getElementById('refresh-state').textContent.startsWith('Updated')",
        )
        .await;
}

/// An app behind the host's key check, its public address, and a browser.
struct Dashboard {
    app: Arc<TestApp>,
    public: PublicAddress,
    browser: Browser,
}

impl Dashboard {
    async fn start() -> Self {
        Self::start_with(Vec::new()).await
    }

    /// Starts with extra settings for the handler.
    async fn start_with(extra: Vec<(&str, &str)>) -> Self {
        Self::start_on(Container::fresh().await, extra).await
    }

    /// Starts against a given container, with extra settings for the handler.
    async fn start_on(container: Container, extra: Vec<(&str, &str)>) -> Self {
        let app = Arc::new(TestApp::start_hosted(container, extra, keys()).await);
        let public = PublicAddress::serve(app.clone()).await;
        let browser = Browser::start(1280, 900).await;
        Self {
            app,
            public,
            browser,
        }
    }

    /// Opens the page as an operator does in Azure, SummaryWomble's key in the fragment, and
    /// waits for its first refresh.
    async fn open(&self) {
        open_page(
            &self.browser,
            &self.public.url(&with_key_in_fragment(SUMMARY_KEY)),
        )
        .await;
    }

    /// Waits until the rows are exactly `ids`, in that order, and returns what they show.
    async fn wait_for_rows(&self, what: &str, ids: &[&str]) -> Vec<Value> {
        let expected = serde_json::to_string(ids).unwrap();
        let rows = self
            .browser
            .wait_until(
                what,
                WAIT,
                &format!(
                    "(() => {{ const rows = {ROWS}; return JSON.stringify(rows.map(r => r.id)) === JSON.stringify({expected}) ? rows : null; }})()"
                ),
            )
            .await;
        rows.as_array().unwrap().clone()
    }

    /// Waits until the row of `id` satisfies `condition` (a JS expression over `row`).
    async fn wait_for_row(&self, what: &str, id: &str, condition: &str) -> Value {
        self.browser
            .wait_until(
                what,
                WAIT,
                &format!(
                    "(() => {{ const row = {ROWS}.find(r => r.id === '{id}'); return row && ({condition}) ? row : null; }})()"
                ),
            )
            .await
    }

    /// Opens a job's detail with its Details button, and waits until the panel shows it.
    async fn open_job(&self, id: &str) {
        self.browser
            .click(&format!("#job-rows button[data-job-id=\"{id}\"]"))
            .await;
        self.wait_for_detail(id).await;
    }

    async fn wait_for_detail(&self, id: &str) {
        self.browser
            .wait_until(
                "the job's detail",
                WAIT,
                &format!("{DETAIL_ID} === '{id}' && document.querySelector('#detail-facts .badge') !== null"),
            )
            .await;
    }

    /// Waits until the metrics panel shows `jobs`, `poison` and `none` of the queues, as
    /// [`QUEUE_FIGURES`] reads them.
    async fn wait_for_queue_figures(&self, what: &str, expected: Value) {
        self.browser
            .wait_until(
                what,
                WAIT,
                &format!(
                    "(() => {{ const shown = {QUEUE_FIGURES}; const expected = {expected}; return shown.jobs === expected.jobs && shown.poison === expected.poison && shown.none === expected.none ? shown : null; }})()"
                ),
            )
            .await;
    }

    /// The status word of the job in the detail panel.
    async fn detail_status(&self) -> String {
        self.browser.text("#detail-facts .badge").await
    }

    async fn close(self) {
        self.browser.close().await;
    }
}

#[tokio::test]
async fn jobs_appear_and_their_progress_moves_to_completed() {
    let page = Dashboard::start().await;
    // Held until the page has shown the job still running.
    let hold = page.app.reddit.hold(&["slowtopic"]);
    let quick = page.app.submit(job(&["technology"], 3)).await;
    let slow = page.app.submit(job(&["gadgets", "slowtopic"], 3)).await;
    // While a listed job runs, a list answer says when to look again, as a status answer does.
    let list = || {
        page.app
            .host
            .forward(page.app.with_key(HostRequest::get("/api/SummaryWomble")))
    };
    assert_eq!(list().await.header("retry-after").as_deref(), Some("5"));
    page.open().await;

    let rows = page
        .wait_for_rows("both jobs, newest first", &[&slow, &quick])
        .await;
    assert_ne!(rows[0]["status"], "completed", "{rows:?}");
    assert_ne!(rows[0]["progress"], "2/2", "{rows:?}");
    hold.release();
    // The page's own polling brings the slow job to its end.
    let done = page
        .wait_for_row(
            "the slow job completed",
            &slow,
            "row.status === 'completed'",
        )
        .await;
    assert_eq!(done["progress"], "2/2");
    assert_eq!(done["step"], "finished");
    page.wait_for_row(
        "the quick job completed",
        &quick,
        "row.status === 'completed'",
    )
    .await;
    // The metrics follow: a job that ended is counted.
    page.browser
        .wait_until(
            "the metrics counting both jobs",
            WAIT,
            "document.querySelector('#metrics-chart svg').getAttribute('aria-label').includes('completed 2')",
        )
        .await;
    match Dispatch::under_test() {
        Dispatch::Inline => {
            page.wait_for_queue_figures(
                "the metrics saying there is no queue",
                json!({"jobs": null, "poison": null, "none": "inline dispatch: no queue"}),
            )
            .await
        }
        // The counts themselves are checked by the queue dispatch test below; a message may
        // still be on the queue just after its job ended, but nothing was poisoned.
        Dispatch::Queue => {
            page.browser
                .wait_until(
                    "the queue figures",
                    WAIT,
                    &format!("{QUEUE_FIGURES}.poison === '0'"),
                )
                .await;
        }
    }
    page.browser.screenshot("jobs-1280").await;
    assert_eq!(list().await.header("retry-after"), None);

    let requests = page.public.requests();
    let loads = requests
        .iter()
        .filter(|r| r.path == "/api/dashboard")
        .count();
    assert_eq!(loads, 1, "the page refreshes itself: {requests:#?}");
    assert!(
        requests.iter().filter(|r| r.is_list_call()).count() >= 2,
        "{requests:#?}"
    );
    // The key: in the header of every call the page makes, in no URL, nowhere in storage.
    for request in requests.iter().filter(|r| r.is_api_call()) {
        assert_eq!(
            request.key_header.as_deref(),
            Some(SUMMARY_KEY),
            "{request:?}"
        );
        assert!(!request.query.contains("code="), "{request:?}");
        assert_eq!(request.status, 200, "{request:?}");
    }
    assert_eq!(
        page.browser.current_url().await,
        page.public.url("/api/dashboard")
    );
    assert_eq!(kept_by_the_browser(&page.browser).await, json!([0, 0, ""]));
    page.close().await;
}

/// Under queue dispatch the metrics panel shows the job queue's and the poison queue's
/// message counts. Both jobs are held at Reddit: whether a listener delivers their messages
/// (hidden while the jobs run) or none does (visible, waiting), both stay on the queue. The
/// figures follow a message parked in the poison queue once the page is refreshed.
#[tokio::test]
async fn under_queue_dispatch_the_metrics_show_the_job_queue_and_the_poison_queue() {
    let container = Container::fresh().await;
    let queue = Queue::named(container.connection_string(), &container.name);
    let page = Dashboard::start_on(
        container,
        vec![
            ("JOB_DISPATCH", "queue"),
            ("JOB_QUEUE", queue.name.as_str()),
        ],
    )
    .await;
    let hold = page.app.reddit.hold(&["waitingone", "waitingtwo"]);
    page.app.submit(job(&["waitingone"], 2)).await;
    page.app.submit(job(&["waitingtwo"], 2)).await;
    queue.poison().send(r#"{"job_id":"parked-one"}"#).await;
    page.open().await;
    page.wait_for_queue_figures(
        "two jobs on the queue and one message in the poison queue",
        json!({"jobs": "2", "poison": "1", "none": null}),
    )
    .await;
    page.browser.screenshot("queue-depth-1280").await;

    queue.poison().send(r#"{"job_id":"parked-two"}"#).await;
    page.browser.click("#refresh").await;
    page.wait_for_queue_figures(
        "the second poisoned message counted",
        json!({"jobs": "2", "poison": "2", "none": null}),
    )
    .await;
    hold.release();
    page.close().await;
}

/// The key as it may be written anywhere: as is, and percent-encoded.
fn spellings(key: &str) -> Vec<String> {
    let encoded: String = url::form_urlencoded::byte_serialize(key.as_bytes()).collect();
    vec![key.to_owned(), encoded]
}

/// Whether `text` holds `key` in any spelling.
fn holds(text: &str, key: &str) -> bool {
    spellings(key)
        .iter()
        .any(|spelling| text.contains(spelling))
}

/// What the browser keeps for the page's origin: `[localStorage.length,
/// sessionStorage.length, document.cookie]`.
async fn kept_by_the_browser(browser: &Browser) -> Value {
    browser
        .execute(
            "return [localStorage.length, sessionStorage.length, document.cookie];",
            Vec::new(),
        )
        .await
}

/// The places a person or a server could read the key from after the page has used it: the
/// page's own address, everything it shows and holds in its document, every request as it
/// left the browser (URL, and for any request but an API call, every header), and every
/// request as the public address received it. The API calls carry it in `x-functions-key`
/// (or, before the page had a key, nothing), and only there.
async fn assert_the_key_went_only_into_the_header(
    browser: &Browser,
    public: &PublicAddress,
    key: &str,
) {
    let address = browser
        .execute(
            "return [location.href, document.URL, document.documentElement.outerHTML, document.body.innerText];",
            Vec::new(),
        )
        .await;
    for place in address.as_array().unwrap() {
        assert!(!holds(place.as_str().unwrap(), key), "the key in {place}");
    }
    let sent = browser.sent_requests().await;
    assert!(
        sent.iter()
            .any(|r| r.url.contains("/api/SummaryWomble")
                && r.header("x-functions-key") == Some(key)),
        "no API call with the key: {sent:#?}"
    );
    for request in &sent {
        assert!(!holds(&request.url, key), "the key in a URL: {request:#?}");
        if request.url.contains("/api/SummaryWomble") {
            let header = request.header("x-functions-key");
            assert!(header.is_none() || header == Some(key), "{request:#?}");
        } else {
            for (name, value) in &request.headers {
                assert!(!holds(value, key), "the key in {name}: {request:#?}");
            }
        }
    }
    let received = public.requests();
    for request in &received {
        assert!(
            !holds(&request.path, key) && !holds(&request.query, key),
            "the key in a URL: {request:#?}"
        );
        let header = request.key_header.as_deref();
        assert!(
            header.is_none() || (request.is_api_call() && header == Some(key)),
            "{request:#?}"
        );
    }
}

#[tokio::test]
async fn a_key_in_the_fragment_is_never_sent_is_gone_from_the_address_and_is_in_no_log() {
    // The handler logs at debug here: whatever it writes about a request, the key is not in it.
    let page = Dashboard::start_with(vec![("RUST_LOG", "debug")]).await;
    let id = page.app.submit(job(&["technology"], 1)).await;
    page.app.wait_terminal(&id, WAIT).await;
    page.open().await;
    page.wait_for_rows("the job", &[&id]).await;

    // The browser was asked for the address with the key in its fragment, and sent it without.
    let sent = page.browser.sent_requests().await;
    let load = sent
        .iter()
        .find(|r| r.url.ends_with("/api/dashboard"))
        .unwrap_or_else(|| panic!("no page load in {sent:#?}"));
    assert_eq!(load.url, page.public.url("/api/dashboard"));
    assert!(load
        .fragment
        .as_deref()
        .is_some_and(|f| f.starts_with("#key=")));
    assert_the_key_went_only_into_the_header(&page.browser, &page.public, SUMMARY_KEY).await;
    assert_eq!(
        page.browser.current_url().await,
        page.public.url("/api/dashboard")
    );
    // The address the page now stands at is the one a reload, a bookmark or a screenshot gets.
    let fragment = page
        .browser
        .execute("return location.hash;", Vec::new())
        .await;
    assert_eq!(fragment, "");
    assert_eq!(kept_by_the_browser(&page.browser).await, json!([0, 0, ""]));
    let logs = page.app.host.logs();
    assert!(
        logs.contains("path=/api/dashboard") && logs.contains("path=/api/SummaryWomble"),
        "the handler logs each request it answers at debug: {logs}"
    );
    assert!(
        !holds(&logs, SUMMARY_KEY),
        "the key in the host log:\n{logs}"
    );
    page.close().await;
}

#[tokio::test]
async fn without_a_key_in_the_address_the_page_asks_for_one_and_then_shows_the_jobs() {
    let page = Dashboard::start().await;
    let id = page.app.submit(job(&["technology"], 1)).await;
    page.app.wait_terminal(&id, WAIT).await;
    let form_alone = "(() => !document.getElementById('key-entry').hidden
        && document.getElementById('layout').hidden
        && document.activeElement.id === 'key-input'
        && document.getElementById('refresh-state').textContent)()";

    // An old address with the key in its query: the key has been sent already; the page does
    // not use it, takes it out of the address and says why. (Each load asks the API once
    // without a key, in case it wants none; here it does.)
    page.browser
        .goto(&page.public.url(&format!("/api/dashboard?code={HOST_KEY}")))
        .await;
    page.browser.wait_until("the form", WAIT, form_alone).await;
    let message = page.browser.wait_until("the warning", WAIT, MESSAGE).await;
    assert!(message.as_str().unwrap().contains("?code="), "{message}");
    assert_eq!(
        page.browser.current_url().await,
        page.public.url("/api/dashboard")
    );

    page.browser.goto(&page.public.url("/api/dashboard")).await;
    let waiting = page.browser.wait_until("the form", WAIT, form_alone).await;
    assert_eq!(waiting, "Waiting for a function key.");
    assert_eq!(
        page.browser
            .execute(&format!("return {MESSAGE};"), Vec::new())
            .await,
        Value::Null
    );
    page.browser.screenshot("key-form-1280").await;
    // The page was served without a key; it asked the API without one, and the host refused.
    let before: Vec<PublicRequest> = page.public.requests();
    for request in &before {
        assert!(request.key_header.is_none(), "{request:#?}");
        let expected = if request.is_api_call() { 401 } else { 200 };
        assert_eq!(request.status, expected, "{request:#?}");
    }
    assert_eq!(
        before.iter().filter(|r| r.is_api_call()).count(),
        2,
        "one call a load: {before:#?}"
    );

    page.browser.type_into("#key-input", SUMMARY_KEY).await;
    page.browser.press(ENTER).await;
    page.wait_for_rows("the job", &[&id]).await;
    let form = page
        .browser
        .execute(
            "return [document.getElementById('key-entry').hidden, document.getElementById('key-input').value];",
            Vec::new(),
        )
        .await;
    assert_eq!(form, json!([true, ""]), "the form is gone and emptied");
    assert_eq!(
        page.browser.current_url().await,
        page.public.url("/api/dashboard")
    );
    assert_the_key_went_only_into_the_header(&page.browser, &page.public, SUMMARY_KEY).await;
    assert!(!holds(&page.app.host.logs(), SUMMARY_KEY));
    assert_eq!(kept_by_the_browser(&page.browser).await, json!([0, 0, ""]));
    page.close().await;
}

#[tokio::test]
async fn the_failed_filter_shows_only_failed_jobs() {
    let page = Dashboard::start().await;
    page.app.reddit.set("privatestuff", Behaviour::Private);
    let completed = page.app.submit(job(&["technology"], 2)).await;
    let failed_first = page.app.submit(job(&["privatestuff"], 2)).await;
    let failed_second = page.app.submit(job(&["privatestuff"], 2)).await;
    for id in [&completed, &failed_first, &failed_second] {
        page.app.wait_terminal(id, WAIT).await;
    }
    page.open().await;
    page.wait_for_rows(
        "all three jobs",
        &[&failed_second, &failed_first, &completed],
    )
    .await;

    page.browser
        .click("#filters button[data-status=\"failed\"]")
        .await;
    let rows = page
        .wait_for_rows("only the failed jobs", &[&failed_second, &failed_first])
        .await;
    assert!(rows.iter().all(|row| row["status"] == "failed"), "{rows:?}");
    let pressed = page
        .browser
        .execute(
            "return Array.from(document.querySelectorAll('#filters button[aria-pressed=\"true\"]')).map(b => b.textContent);",
            Vec::new(),
        )
        .await;
    assert_eq!(pressed, json!(["Failed"]));
    assert!(page
        .public
        .requests()
        .iter()
        .any(|r| r.is_list_call() && r.query.contains("status=failed")));
    page.browser.screenshot("filter-failed-1280").await;

    page.browser
        .click("#filters button[data-status=\"\"]")
        .await;
    page.wait_for_rows(
        "every job again",
        &[&failed_second, &failed_first, &completed],
    )
    .await;
    page.close().await;
}

#[tokio::test]
async fn older_and_newer_page_through_the_jobs_with_the_apis_continuation() {
    let page = Dashboard::start().await;
    // The page shows 20 jobs at a time: 22 make two pages.
    let mut ids = Vec::new();
    for _ in 0..22 {
        ids.push(page.app.submit(job(&["technology"], 1)).await);
    }
    ids.reverse();
    let newest: Vec<&str> = ids.iter().take(20).map(String::as_str).collect();
    let oldest: Vec<&str> = ids.iter().skip(20).map(String::as_str).collect();
    page.open().await;
    page.wait_for_rows("the newest twenty", &newest).await;
    let pager = "[document.getElementById('page-number').textContent, document.getElementById('newer').disabled, document.getElementById('older').disabled]";
    assert_eq!(
        page.browser
            .execute(&format!("return {pager};"), Vec::new())
            .await,
        json!(["Page 1", true, false])
    );

    page.browser.click("#older").await;
    page.wait_for_rows("the oldest two", &oldest).await;
    assert_eq!(
        page.browser
            .execute(&format!("return {pager};"), Vec::new())
            .await,
        json!(["Page 2", false, true])
    );
    assert!(page
        .public
        .requests()
        .iter()
        .any(|r| r.is_list_call() && r.query.contains("continuation=")));
    page.browser.screenshot("page-2-1280").await;

    page.browser.click("#newer").await;
    page.wait_for_rows("the newest twenty again", &newest).await;
    page.close().await;
}

#[tokio::test]
async fn cancel_on_a_slow_job_ends_it_cancelled() {
    let page = Dashboard::start().await;
    // Ten held subreddits: eight are fetched at once, the last two wait their turn; all are
    // held until the cancel has been asked for.
    let names: Vec<String> = (0..10).map(|i| format!("slow{i}")).collect();
    let topics: Vec<&str> = names.iter().map(String::as_str).collect();
    let hold = page.app.reddit.hold(&topics);
    let id = page.app.submit(job(&topics, 1)).await;
    page.open().await;
    page.open_job(&id).await;
    let before = page.detail_status().await;
    assert!(
        before.starts_with("running") || before == "queued",
        "{before}"
    );

    page.browser.click("#cancel").await;
    let notice = page
        .browser
        .wait_until(
            "the cancel notice",
            WAIT,
            "document.getElementById('notice').textContent",
        )
        .await;
    assert!(
        notice.as_str().unwrap().contains("Cancel requested"),
        "{notice}"
    );
    hold.release();
    page.browser
        .wait_until(
            "the job cancelled",
            WAIT,
            "document.querySelector('#detail-facts .badge').textContent === 'cancelled'",
        )
        .await;
    let skipped = page
        .browser
        .execute(
            "return Array.from(document.querySelectorAll('#result-rows tr')).filter(tr => tr.textContent.includes('skipped')).length;",
            Vec::new(),
        )
        .await;
    assert!(skipped.as_u64().unwrap() >= 1, "{skipped}");
    let buttons = page
        .browser
        .execute(
            "return [document.getElementById('cancel').disabled, document.getElementById('retry').disabled];",
            Vec::new(),
        )
        .await;
    assert_eq!(buttons, json!([true, false]), "cancel off, retry on");
    page.wait_for_row("the row cancelled", &id, "row.status === 'cancelled'")
        .await;
    page.browser.screenshot("cancelled-1280").await;

    let stored = page.app.status(&id).await.json();
    assert_eq!(stored["status"], "cancelled", "{stored}");
    page.close().await;
}

#[tokio::test]
async fn retry_creates_a_job_carrying_retry_of() {
    let page = Dashboard::start().await;
    page.app.reddit.set("privatestuff", Behaviour::Private);
    let old = page
        .app
        .submit(job(&["privatestuff", "technology"], 2))
        .await;
    page.app.wait_terminal(&old, WAIT).await;
    page.open().await;
    page.open_job(&old).await;
    assert_eq!(page.detail_status().await, "completed");

    page.browser.click("#retry").await;
    let new = page
        .browser
        .wait_until(
            "the new job in the detail",
            WAIT,
            &format!(
                "(() => {{ const link = document.getElementById('open-retry-of'); const id = {DETAIL_ID}; return link && id !== '{old}' && link.textContent === '{old}' ? id : null; }})()"
            ),
        )
        .await
        .as_str()
        .unwrap()
        .to_owned();
    let stored = page.app.status(&new).await.json();
    assert_eq!(stored["retry_of"], old.as_str(), "{stored}");
    assert_eq!(
        stored["request"]["topics"],
        json!(["privatestuff", "technology"])
    );
    let notice = page.browser.text("#notice").await;
    assert!(notice.contains("retried as job"), "{notice}");
    page.wait_for_rows("the new job first", &[&new, &old]).await;
    page.wait_for_row("the new job finished", &new, "row.status === 'completed'")
        .await;
    page.browser.screenshot("retry-1280").await;

    // The retry_of value leads back to the old job.
    page.browser.click("#open-retry-of").await;
    page.wait_for_detail(&old).await;
    page.close().await;
}

#[tokio::test]
async fn a_subreddit_error_text_with_markup_renders_as_text_and_runs_nothing() {
    const MARKUP: &str = "<img src=x onerror=window.pwned=1>";
    let page = Dashboard::start().await;
    page.app
        .reddit
        .set("trap", Behaviour::NotAListing(MARKUP.to_owned()));
    let id = page.app.submit(job(&["trap"], 2)).await;
    let stored = page.app.wait_terminal(&id, WAIT).await;
    assert!(
        stored["results"]["results"][0]["error"]
            .as_str()
            .unwrap()
            .contains(MARKUP),
        "{stored}"
    );
    page.open().await;
    page.browser
        .execute(
            "window.violations = []; document.addEventListener('securitypolicyviolation', e => window.violations.push(e.violatedDirective)); return true;",
            Vec::new(),
        )
        .await;
    page.open_job(&id).await;

    let shown = page.browser.text("#result-rows .error-text").await;
    assert!(shown.contains(MARKUP), "{shown}");
    let job_error = page.browser.text("#detail-facts .error-text").await;
    assert!(job_error.contains(MARKUP), "{job_error}");
    let effects = page
        .browser
        .execute(
            "return {
                images: document.querySelectorAll('img').length,
                pwned: typeof window.pwned,
                violations: window.violations,
                markup: document.querySelector('#result-rows .error-text').innerHTML,
            };",
            Vec::new(),
        )
        .await;
    assert_eq!(effects["images"], 0, "{effects}");
    assert_eq!(effects["pwned"], "undefined", "{effects}");
    assert_eq!(effects["violations"], json!([]), "{effects}");
    assert!(
        effects["markup"].as_str().unwrap().contains("&lt;img"),
        "{effects}"
    );
    page.browser
        .screenshot_at("#result-rows", "markup-as-text-1280")
        .await;
    page.close().await;
}

#[tokio::test]
async fn a_wrong_key_shows_the_refusal_without_the_key_and_the_form_takes_another() {
    let page = Dashboard::start().await;
    let id = page.app.submit(job(&["technology"], 1)).await;
    // In Azure a function key opens only its own function: SummaryWomble refuses Dashboard's.
    page.browser
        .goto(&page.public.url(&with_key_in_fragment(DASHBOARD_KEY)))
        .await;
    let message = page
        .browser
        .wait_until("the key message", WAIT, MESSAGE)
        .await;
    let message = message.as_str().unwrap();
    assert!(
        message.contains("The function key was refused (HTTP 401).")
            && message.contains("SummaryWomble accepts: its own function key"),
        "{message}"
    );
    let shown = page
        .browser
        .execute(
            &format!(
                "return [{ROWS}.length, document.getElementById('refresh-state').textContent,
                    document.getElementById('layout').hidden, document.getElementById('refresh').disabled,
                    document.getElementById('key-entry').hidden, document.getElementById('key-input').value];"
            ),
            Vec::new(),
        )
        .await;
    assert_eq!(
        shown,
        json!([
            0,
            "Not refreshing: the key was refused.",
            true,
            true,
            false,
            ""
        ]),
        "the message and the form stand alone"
    );
    page.browser.screenshot("wrong-key-1280").await;
    // The refused key is shown nowhere, in no URL, in no log.
    assert_the_key_went_only_into_the_header(&page.browser, &page.public, DASHBOARD_KEY).await;
    assert!(!holds(&page.app.host.logs(), DASHBOARD_KEY));
    // A refused key is not asked again: the page's one call is the refused one, and a page
    // coming back into view (which refreshes a page that is due) asks nothing either.
    let calls = || -> Vec<PublicRequest> {
        page.public
            .requests()
            .into_iter()
            .filter(PublicRequest::is_api_call)
            .collect()
    };
    page.browser
        .execute(
            "document.dispatchEvent(new Event('visibilitychange')); return true;",
            Vec::new(),
        )
        .await;
    let refused = calls();
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(refused[0].status, 401);

    // The right key in the form: the jobs come.
    page.browser.type_into("#key-input", SUMMARY_KEY).await;
    page.browser.click("#key-form button[type=submit]").await;
    page.wait_for_rows("the job", &[&id]).await;
    assert_eq!(
        page.browser
            .execute(&format!("return {MESSAGE};"), Vec::new())
            .await,
        Value::Null
    );
    assert!(calls()[1..].iter().all(|call| call.status == 200));
    page.close().await;
}

#[tokio::test]
async fn in_standalone_mode_the_page_needs_no_key_shows_the_apis_refusal_and_works_without_keys() {
    let standalone = StandaloneApp::start(vec![("FUNCTION_KEYS", "right-key")]).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let get = |path: &str| http.get(standalone.url(path)).send();
    let page = get("/api/dashboard").await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<html"));
    // The handler checks SummaryWomble's key itself, and says why it refuses.
    let refused = get("/api/SummaryWomble").await.unwrap();
    assert_eq!(refused.status(), 401);
    let reason = refused.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.contains("A valid function key is required"),
        "{reason}"
    );

    let browser = Browser::start(1280, 900).await;
    browser
        .goto(&standalone.url("/api/dashboard#key=wrong-key"))
        .await;
    let message = browser.wait_until("the key message", WAIT, MESSAGE).await;
    let message = message.as_str().unwrap();
    assert!(
        message.contains(&format!(
            "The function key was refused (HTTP 401): {reason}"
        )),
        "{message}"
    );
    assert!(!message.contains("wrong-key"), "{message}");
    browser.screenshot("wrong-key-standalone").await;

    browser.type_into("#key-input", "right-key").await;
    browser.press(ENTER).await;
    first_refresh(&browser).await;
    assert_eq!(
        browser.current_url().await,
        standalone.url("/api/dashboard")
    );
    for request in browser.sent_requests().await {
        assert!(
            !request.url.contains("wrong-key") && !request.url.contains("right-key"),
            "{request:#?}"
        );
    }
    let logs = standalone.logs();
    assert!(
        !logs.contains("wrong-key") && !logs.contains("right-key"),
        "{logs}"
    );

    // Without FUNCTION_KEYS the API wants no key, and the page, opened without one, just works.
    let open = StandaloneApp::start(Vec::new()).await;
    open_page(&browser, &open.url("/api/dashboard")).await;
    let form_hidden = browser
        .execute(
            "return document.getElementById('key-entry').hidden;",
            Vec::new(),
        )
        .await;
    assert_eq!(form_hidden, true);
    browser.close().await;
}

#[tokio::test]
async fn the_page_has_a_strict_content_security_policy_that_allows_only_its_own_script_and_style() {
    let app = TestApp::start_hosted(Container::fresh().await, Vec::new(), keys()).await;
    // The page holds no data: it needs no key.
    let page = app.host.forward(HostRequest::get("/api/dashboard")).await;
    assert_eq!(page.status, 200);
    let header = |name: &str| page.header(name).unwrap_or_default();
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("referrer-policy"), "no-referrer");
    assert_eq!(header("cache-control"), "no-store");
    let policy = header("content-security-policy");
    let html = page.text();
    let inline = |open: &str, close: &str| -> String {
        let start = html.find(open).unwrap() + open.len();
        let end = start + html[start..].find(close).unwrap();
        let digest = Sha256::digest(&html.as_bytes()[start..end]);
        format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    };
    for directive in [
        "default-src 'self'".to_owned(),
        format!("script-src {}", inline("<script>", "</script>")),
        format!("style-src {}", inline("<style>", "</style>")),
        "connect-src 'self'".to_owned(),
        "frame-ancestors 'none'".to_owned(),
        "base-uri 'none'".to_owned(),
        "form-action 'none'".to_owned(),
    ] {
        assert!(
            policy.split("; ").any(|part| part == directive),
            "{directive} not in {policy}"
        );
    }
    // Every call of the API still does.
    let refused = app
        .host
        .forward(HostRequest::get("/api/SummaryWomble"))
        .await;
    assert_eq!(refused.status, 401);
}

#[tokio::test]
async fn the_page_fits_a_phone_and_a_wide_screen_and_works_from_the_keyboard() {
    let page = Dashboard::start().await;
    page.app.reddit.set("privatestuff", Behaviour::Private);
    // Held for the whole test: the job stays running.
    let _running_hold = page.app.reddit.hold(&["slowtopic"]);
    let running = page
        .app
        .submit(json!({"topics": ["slowtopic", "datascience", "Futurology"], "limit": 5, "priority": "high"}))
        .await;
    let failed = page.app.submit(job(&["privatestuff"], 5)).await;
    let completed = page
        .app
        .submit(job(&["technology", "programming", "MachineLearning"], 5))
        .await;
    // Only the callback's origin is shown: the rest of its URL may hold a secret.
    let mixed = page
        .app
        .submit(json!({
            "topics": ["gadgets", "privatestuff", "computerscience"],
            "limit": 5,
            "callback_url": "https://hooks.example.invalid/done?token=s3cret",
        }))
        .await;
    for id in [&failed, &completed, &mixed] {
        page.app.wait_terminal(id, WAIT).await;
    }
    page.open().await;
    page.wait_for_rows("four jobs", &[&mixed, &completed, &failed, &running])
        .await;
    page.wait_for_row(
        "the running job's first subreddits",
        &running,
        "row.progress === '2/3'",
    )
    .await;
    assert_eq!(
        page.browser
            .execute(&format!("return {FITS};"), Vec::new())
            .await,
        true
    );

    // Every control is a button the keyboard reaches, and every status shows as a word.
    let reachable = page
        .browser
        .execute(
            "return Array.from(document.querySelectorAll('button')).every(b => b.tabIndex >= 0)
                && document.querySelectorAll('[onclick], a[href]').length === 0;",
            Vec::new(),
        )
        .await;
    assert_eq!(reachable, true);
    let words = page
        .browser
        .execute(
            "return Array.from(document.querySelectorAll('#job-rows .badge')).map(b => b.textContent.split(' ')[0]);",
            Vec::new(),
        )
        .await;
    assert_eq!(
        words,
        json!(["completed", "completed", "failed", "running"])
    );

    // Tab to the first Details button and press Enter: the newest job opens, focus follows.
    let mut presses = 0;
    while page
        .browser
        .execute(
            "return document.activeElement.matches('#job-rows button.details');",
            Vec::new(),
        )
        .await
        != true
    {
        presses += 1;
        assert!(presses <= 20, "Tab never reached a Details button");
        page.browser.press(TAB).await;
    }
    page.browser.press(ENTER).await;
    page.wait_for_detail(&mixed).await;
    let focused = page
        .browser
        .execute("return document.activeElement.id;", Vec::new())
        .await;
    assert_eq!(focused, "detail-title");
    // What the job used, priced as the metrics answer prices it. (Its figures move while its
    // callback is retried: each attempt is recorded, and counted.)
    page.browser
        .wait_until(
            "the job's usage and its estimated cost",
            WAIT,
            "/^[1-9][0-9]* storage requests, [1-9][0-9]* Reddit requests, /.test(document.querySelector('[data-usage]').textContent) && /^\\$[0-9]/.test(document.querySelector('[data-cost]').textContent)",
        )
        .await;
    page.browser
        .wait_until(
            "the metrics' cost of the day and per job",
            WAIT,
            "['cost-day', 'cost-per-job'].every(name => /^\\$[0-9]/.test(document.querySelector(`[data-figure=${name}] dd`).textContent))",
        )
        .await;
    page.browser.screenshot("detail-1280").await;
    let request = page.browser.text("#detail-request").await;
    for shown in [
        "r/gadgets r/privatestuff r/computerscience",
        "5 posts each",
        "https://hooks.example.invalid",
    ] {
        assert!(request.contains(shown), "{shown} in {request}");
    }
    assert!(!page.browser.text("body").await.contains("s3cret"));
    let results = page
        .browser
        .execute(
            "return Array.from(document.querySelectorAll('#result-rows tr')).map(tr => tr.innerText.replace(/\\s+/g, ' '));",
            Vec::new(),
        )
        .await;
    let results: Vec<&str> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row.as_str().unwrap())
        .collect();
    assert_eq!(results.len(), 3, "{results:?}");
    assert!(
        results[0].contains("r/gadgets")
            && results[0].contains("success")
            && results[0].contains("_reddit_gadgets.json"),
        "{results:?}"
    );
    assert!(
        results[1].contains("fetch failed")
            && results[1].contains("r/privatestuff is private (HTTP 403)"),
        "{results:?}"
    );

    page.browser.resize(390, 844).await;
    let width = page
        .browser
        .wait_until(
            "a phone-wide window",
            WAIT,
            "window.innerWidth <= 400 && window.innerWidth",
        )
        .await;
    assert!(width.as_u64().unwrap() >= 360, "{width}");
    assert_eq!(
        page.browser
            .execute(&format!("return {FITS};"), Vec::new())
            .await,
        true
    );
    page.browser.screenshot_at("#detail", "detail-390").await;
    page.browser.screenshot_at("#jobs", "jobs-390").await;
    page.close().await;
}

/// The page's requests in `window`, by kind.
#[derive(Debug, Default)]
struct RequestCount {
    list: usize,
    status: usize,
    metrics: usize,
    other: usize,
}

impl RequestCount {
    fn of(requests: &[PublicRequest]) -> Self {
        let mut count = Self::default();
        for request in requests {
            if request.is_list_call() {
                count.list += 1;
            } else if request.is_api_call() && request.method == "GET" {
                count.status += 1;
            } else if request.is_api_call() && request.method == "POST" {
                count.metrics += 1;
            } else {
                count.other += 1;
            }
        }
        count
    }

    fn total(&self) -> usize {
        self.list + self.status + self.metrics + self.other
    }
}

/// Opens the dashboard of an app with three jobs running, then of one whose jobs are all
/// finished, and counts the page's requests over `window` in each.
async fn count_requests(window: Duration) -> (RequestCount, RequestCount) {
    let busy = Dashboard::start().await;
    // Held until the busy window has been counted: the jobs stay running.
    let hold = busy.app.reddit.hold(&["slowtopic"]);
    for _ in 0..3 {
        busy.app.submit(job(&["slowtopic"], 1)).await;
    }
    busy.open().await;
    busy.browser
        .wait_until(
            "three running jobs",
            WAIT,
            &format!("{ROWS}.filter(r => r.status === 'running').length === 3"),
        )
        .await;
    let from = Instant::now();
    tokio::time::sleep(window).await;
    let running = RequestCount::of(&busy.public.requests_since(from));
    hold.release();

    let idle = TestApp::start_hosted(Container::fresh().await, Vec::new(), keys()).await;
    for _ in 0..3 {
        let id = idle.submit(job(&["technology"], 1)).await;
        idle.wait_terminal(&id, WAIT).await;
    }
    let idle = Arc::new(idle);
    let public = PublicAddress::serve(idle).await;
    open_page(
        &busy.browser,
        &public.url(&with_key_in_fragment(SUMMARY_KEY)),
    )
    .await;
    let from = Instant::now();
    tokio::time::sleep(window).await;
    let finished = RequestCount::of(&public.requests_since(from));
    busy.close().await;
    (running, finished)
}

#[tokio::test]
async fn a_busy_page_polls_at_the_pace_the_api_asks_and_an_idle_page_hardly_at_all() {
    // 15 s of each: the API asks for 5 s between polls while a job runs; idle is 30 s.
    let window = Duration::from_secs(15);
    let (running, idle) = count_requests(window).await;
    println!("in {window:?}: 3 running jobs {running:?}; none running {idle:?}");
    assert!((2..=4).contains(&running.list), "{running:?}");
    assert_eq!(
        running.status, 0,
        "the list carries every shown job: {running:?}"
    );
    assert!(running.metrics <= 1, "{running:?}");
    assert_eq!(running.other, 0, "{running:?}");
    assert_eq!(idle.total(), 0, "{idle:?}");
}

#[tokio::test]
#[ignore = "two real minutes: run by hand for the figures in the README"]
async fn requests_in_one_minute_with_three_running_jobs_and_with_none() {
    let (running, idle) = count_requests(Duration::from_secs(60)).await;
    println!(
        "one minute, 3 running jobs: {} requests {running:?}",
        running.total()
    );
    println!(
        "one minute, no running job: {} requests {idle:?}",
        idle.total()
    );
}
