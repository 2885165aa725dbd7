//! A real browser for the dashboard tests: Debian's Chromium, headless, driven over the W3C
//! WebDriver protocol by `chromedriver` (both installed by `scripts/browser.sh`, which
//! `make test` runs).
//!
//! WebDriver is JSON over HTTP, and the tests need a dozen of its commands, so they are spoken
//! here with the tests' own reqwest client. (The fantoccini crate would bring hyper-rustls with
//! its default features, and with them aws-lc-rs: a C build, and a second rustls crypto
//! provider in the handler's own test build.)
//!
//! Every request the page makes is recorded from the browser's side too: chromedriver's
//! performance log carries Chromium's DevTools `Network.requestWillBeSent` events, read by
//! [`Browser::sent_requests`], so a test sees each request exactly as it left the browser (the
//! URL without its fragment, which a browser never sends, and the headers).
//!
//! Each [`Browser`] has its own chromedriver on a free loopback port, in a process group of its
//! own, and a fresh profile directory; [`Browser::close`] ends the session (chromedriver then
//! stops Chromium), and dropping a browser kills the whole group, so a failed test leaves no
//! browser behind.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The key of an element reference in WebDriver answers.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Enter and Tab, as WebDriver names keys.
pub const ENTER: &str = "\u{E007}";
pub const TAB: &str = "\u{E004}";

/// One request as it left the browser (a DevTools `Network.requestWillBeSent` event).
#[derive(Debug, Clone, PartialEq)]
pub struct SentRequest {
    pub method: String,
    /// The URL as sent: without the fragment.
    pub url: String,
    /// The fragment of the URL the browser was asked for (`#...`), when it had one; never sent.
    pub fragment: Option<String>,
    /// The headers the browser set, as DevTools reports them (`name: value`).
    pub headers: Vec<(String, String)>,
}

impl SentRequest {
    /// The value of header `name` (case-insensitive), when sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`.
    session: String,
    /// Every request read from the performance log so far (reading the log empties it).
    sent: Mutex<Vec<SentRequest>>,
    /// The profile directory, removed with the browser.
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium whose window is `width` × `height`.
    pub async fn start(width: u32, height: u32) -> Self {
        for program in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: run scripts/browser.sh (make test does) to install Chromium and chromedriver"
            );
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        // A chromedriver that exits before it answers lost its port to another process.
        let started = crate::port::start_on_a_free_port(
            |port| start_driver(&http, port),
            |failure: &DriverFailure| failure.exited,
        )
        .await;
        let (driver, base) = started.unwrap_or_else(|failure| panic!("{}", failure.reason));

        let profile = tempfile::tempdir().unwrap();
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": args,
                "perfLoggingPrefs": {"enableNetwork": true, "enablePage": false},
            },
            "goog:loggingPrefs": {"performance": "ALL"},
        }}});
        let mut browser = Self {
            driver,
            http,
            session: String::new(),
            sent: Mutex::default(),
            _profile: profile,
        };
        let answer = browser
            .command(
                reqwest::Method::POST,
                &format!("{base}/session"),
                capabilities,
            )
            .await;
        let id = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {answer}"));
        browser.session = format!("{base}/session/{id}");
        browser
    }

    /// One WebDriver command; panics with the driver's error.
    async fn command(&self, method: reqwest::Method, url: &str, body: Value) -> Value {
        let mut request = self.http.request(method.clone(), url);
        if method != reqwest::Method::GET {
            request = request.json(&body);
        }
        let answer = request
            .send()
            .await
            .unwrap_or_else(|error| panic!("WebDriver {method} {url}: {error}"));
        let status = answer.status();
        let value: Value = answer.json().await.unwrap_or(Value::Null);
        assert!(
            status.is_success(),
            "WebDriver {method} {url} answered {status}: {value}"
        );
        value["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(
            reqwest::Method::POST,
            &format!("{}{path}", self.session),
            body,
        )
        .await
    }

    async fn get(&self, path: &str) -> Value {
        self.command(
            reqwest::Method::GET,
            &format!("{}{path}", self.session),
            Value::Null,
        )
        .await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    /// The address bar.
    pub async fn current_url(&self) -> String {
        self.get("/url")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs `script` (a function body: `return` its result) in the page.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    /// Runs `expression` every 100 ms until it is truthy and returns that value; panics after
    /// `limit` with `what` and the last value.
    pub async fn wait_until(&self, what: &str, limit: Duration, expression: &str) -> Value {
        let script = format!("return ({expression});");
        let deadline = Instant::now() + limit;
        loop {
            let value = self.execute(&script, Vec::new()).await;
            let truthy = !matches!(&value, Value::Null | Value::Bool(false))
                && value != json!(0)
                && value != json!("");
            if truthy {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "waited {limit:?} for {what}; last value {value}; page text:\n{}",
                self.text("body").await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The reference of the first element matching `css`.
    async fn element(&self, css: &str) -> String {
        let found = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        found[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned()
    }

    /// Clicks the first element matching `css`, as a person would (WebDriver scrolls it into
    /// view and refuses an element that cannot be clicked).
    pub async fn click(&self, css: &str) {
        let element = self.element(css).await;
        self.post(&format!("/element/{element}/click"), json!({}))
            .await;
    }

    /// The rendered text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        let element = self.element(css).await;
        self.get(&format!("/element/{element}/text"))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Types `text` into the first element matching `css` (a form field), as keystrokes.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css).await;
        self.post(
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    /// Every request the browser has sent since it started, in order, as DevTools saw them
    /// leave: page loads, scripts' fetches, everything.
    pub async fn sent_requests(&self) -> Vec<SentRequest> {
        let entries = self.post("/se/log", json!({"type": "performance"})).await;
        let mut sent = self.sent.lock().expect("sent requests lock");
        for entry in entries.as_array().into_iter().flatten() {
            let Some(event) = entry["message"]
                .as_str()
                .and_then(|message| serde_json::from_str::<Value>(message).ok())
            else {
                continue;
            };
            let event = &event["message"];
            if event["method"] != "Network.requestWillBeSent" {
                continue;
            }
            let request = &event["params"]["request"];
            sent.push(SentRequest {
                method: request["method"].as_str().unwrap_or_default().to_owned(),
                url: request["url"].as_str().unwrap_or_default().to_owned(),
                fragment: request["urlFragment"].as_str().map(str::to_owned),
                headers: request["headers"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, value)| {
                        (name.clone(), value.as_str().unwrap_or_default().to_owned())
                    })
                    .collect(),
            });
        }
        sent.clone()
    }

    /// Presses and releases `key` on the keyboard, wherever the focus is.
    pub async fn press(&self, key: &str) {
        self.post(
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": key},
                {"type": "keyUp", "value": key},
            ]}]}),
        )
        .await;
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height}))
            .await;
    }

    /// Saves what the window shows as `target/dashboard/<name>.png` and returns the path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let encoded = self.get("/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("a base64 screenshot"))
            .expect("the screenshot is base64");
        let dir = crate::app_root().join("target/dashboard");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Scrolls the first element matching `css` to the top of the view, then saves the
    /// screenshot as [`screenshot`](Self::screenshot) does.
    pub async fn screenshot_at(&self, css: &str, name: &str) -> PathBuf {
        self.execute(
            "document.querySelector(arguments[0]).scrollIntoView({block: 'start'}); return true;",
            vec![json!(css)],
        )
        .await;
        self.screenshot(name).await
    }

    /// Ends the session; chromedriver stops Chromium.
    pub async fn close(self) {
        let _ = self
            .http
            .delete(&self.session)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
    }
}

/// Why chromedriver did not start; `exited` when it ended on its own (its port was taken).
struct DriverFailure {
    reason: String,
    exited: bool,
}

/// Starts chromedriver on `port` and waits until it answers; returns it and its base URL.
async fn start_driver(http: &reqwest::Client, port: u16) -> Result<(Child, String), DriverFailure> {
    let mut driver = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // A group of its own, so Drop can end chromedriver and its Chromium together.
        .process_group(0)
        .spawn()
        .expect("chromedriver starts");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = http
            .get(format!("{base}/status"))
            .send()
            .await
            .ok()
            .filter(|answer| answer.status().is_success())
            .is_some();
        // An answer counts only while this chromedriver runs.
        if let Ok(Some(status)) = driver.try_wait() {
            return Err(DriverFailure {
                reason: format!("chromedriver exited ({status}) on port {port}"),
                exited: true,
            });
        }
        if ready {
            return Ok((driver, base));
        }
        if Instant::now() >= deadline {
            let _ = driver.kill();
            let _ = driver.wait();
            return Err(DriverFailure {
                reason: format!("chromedriver did not answer on port {port}"),
                exited: false,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The group holds chromedriver and the Chromium it started; its id is chromedriver's.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.wait();
    }
}
