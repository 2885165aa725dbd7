//! The job dashboard in a real browser. Headless Chromium loads `/api/dashboard` from the
//! handler under the host simulator, with keys enforced as in Azure, on Azurite with the fake
//! Reddit; the tests act on the page as a person would (clicks, keys) and read what it shows.
//! Each view is saved as a screenshot under `target/dashboard/`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use testkit::app::{job, JobApi, StandaloneApp, TestApp};
use testkit::azurite::Container;
use testkit::browser::{Browser, ENTER, TAB};
use testkit::fake_reddit::Behaviour;
use testkit::host::{HostOptions, HostRequest};
use testkit::public::{PublicAddress, PublicRequest};

/// A host key: every function accepts it.
const HOST_KEY: &str = "host-key-for-the-dashboard-tests";
/// Dashboard's own function key: SummaryWomble refuses it, as in Azure.
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

fn keys() -> HostOptions {
    HostOptions::default()
        .enforce_keys([HOST_KEY])
        .function_key("Dashboard", DASHBOARD_KEY)
}

/// Opens the page at `url` and waits until its first refresh has shown what the API said.
async fn open_page(browser: &Browser, url: &str) {
    browser.goto(url).await;
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
        let app =
            Arc::new(TestApp::start_hosted(Container::fresh().await, Vec::new(), keys()).await);
        let public = PublicAddress::serve(app.clone()).await;
        let browser = Browser::start(1280, 900).await;
        Self {
            app,
            public,
            browser,
        }
    }

    /// Opens the page as an operator does in Azure, and waits for its first refresh.
    async fn open(&self) {
        open_page(
            &self.browser,
            &self.public.url(&format!("/api/dashboard?code={HOST_KEY}")),
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
        assert_eq!(request.key_header.as_deref(), Some(HOST_KEY), "{request:?}");
        assert!(!request.query.contains("code="), "{request:?}");
        assert_eq!(request.status, 200, "{request:?}");
    }
    let address = page.browser.current_url().await;
    assert!(
        address.ends_with("/api/dashboard") && !address.contains(HOST_KEY),
        "{address}"
    );
    let kept = page
        .browser
        .execute(
            "return [localStorage.length, sessionStorage.length, document.cookie];",
            Vec::new(),
        )
        .await;
    assert_eq!(kept, json!([0, 0, ""]));
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
async fn a_wrong_key_shows_a_clear_message() {
    let page = Dashboard::start().await;
    page.app.submit(job(&["technology"], 1)).await;
    // In Azure a function key opens only its own function: the page loads with Dashboard's
    // key, and SummaryWomble refuses it.
    page.browser
        .goto(
            &page
                .public
                .url(&format!("/api/dashboard?code={DASHBOARD_KEY}")),
        )
        .await;
    let message = page
        .browser
        .wait_until("the key message", WAIT, MESSAGE)
        .await;
    let message = message.as_str().unwrap();
    assert!(
        message.contains("The function key was refused (HTTP 401)"),
        "{message}"
    );
    assert!(message.contains("/api/dashboard?code="), "{message}");
    let shown = page
        .browser
        .execute(
            &format!(
                "return [{ROWS}.length, document.getElementById('refresh-state').textContent];"
            ),
            Vec::new(),
        )
        .await;
    assert_eq!(shown, json!([0, "Not refreshing: the key was refused."]));
    let hidden = page
        .browser
        .execute(
            "return [document.getElementById('layout').hidden, document.getElementById('refresh').disabled];",
            Vec::new(),
        )
        .await;
    assert_eq!(hidden, json!([true, true]), "the message stands alone");
    page.browser.screenshot("wrong-key-1280").await;
    // A refused key is not asked again and again: longer than a poll interval, one call.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let calls: Vec<PublicRequest> = page
        .public
        .requests()
        .into_iter()
        .filter(PublicRequest::is_api_call)
        .collect();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0].status, 401);

    // A key the host does not know at all: its own empty 401; the page never loads.
    page.browser
        .goto(&page.public.url("/api/dashboard?code=nonsense"))
        .await;
    assert!(page
        .public
        .requests()
        .iter()
        .any(|r| r.path == "/api/dashboard" && r.status == 401));

    // Standalone mode: the handler checks the key of the page itself and says why it refuses.
    let standalone = StandaloneApp::start(vec![("FUNCTION_KEYS", "right-key")]).await;
    page.browser
        .goto(&standalone.url("/api/dashboard?code=wrong-key"))
        .await;
    let body = page.browser.text("body").await;
    assert!(body.contains("A valid function key is required"), "{body}");
    page.browser.screenshot("wrong-key-standalone").await;
    open_page(
        &page.browser,
        &standalone.url("/api/dashboard?code=right-key"),
    )
    .await;
    page.close().await;
}

#[tokio::test]
async fn the_page_has_a_strict_content_security_policy_that_allows_only_its_own_script_and_style() {
    let app = TestApp::start_hosted(Container::fresh().await, Vec::new(), keys()).await;
    let page = app
        .host
        .forward(HostRequest::get(&format!("/api/dashboard?code={HOST_KEY}")))
        .await;
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
    // Without a key the host refuses the page, as it refuses the API.
    let refused = app.host.forward(HostRequest::get("/api/dashboard")).await;
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
        &public.url(&format!("/api/dashboard?code={HOST_KEY}")),
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
