//! A headless Chromium driven through ChromeDriver's W3C WebDriver API, plain
//! HTTP and JSON over ureq: enough to sign in, follow links, read the DOM
//! and cookies, and take screenshots, with no browser-automation crate.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The key under which WebDriver returns an element's id.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A ChromeDriver process and one browser session, both ended when dropped.
pub struct Browser {
    driver: Child,
    base: String,
    profile: tempfile::TempDir,
    agent: ureq::Agent,
}

impl Browser {
    /// Starts `chromedriver` on a free port and a headless Chromium session
    /// with a new, empty profile.
    pub fn start() -> Browser {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver on PATH (Debian's chromium-driver)");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let root = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while agent
            .get(format!("{root}/status"))
            .call()
            .map_or(true, |r| r.status() != 200)
        {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            driver,
            base: root,
            profile,
            agent,
        };
        // The flags keep a sandboxed CI machine quiet: no sandbox (root), no
        // GPU, and no background connections to Google's hosts.
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", browser.profile.path().display()),
                ]
            }
        }}});
        let created = browser.call("POST", "/session", Some(capabilities));
        let id = created["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        browser.base = format!("{}/session/{id}", browser.base);
        browser
    }

    /// One WebDriver command; its `value`. Fails the test on a WebDriver error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let response = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or_else(|| json!({})).to_string()),
        };
        let text = response.unwrap().body_mut().read_to_string().unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        assert!(
            value["value"].get("error").is_none(),
            "{method} {path}: {text}"
        );
        value["value"].clone()
    }

    /// Opens `url` and waits for the page to load; returns how long it took.
    pub fn open(&self, url: &str) -> Duration {
        let started = Instant::now();
        self.call("POST", "/url", Some(json!({ "url": url })));
        started.elapsed()
    }

    /// The current page's URL.
    pub fn url(&self) -> String {
        self.call("GET", "/url", None).as_str().unwrap().to_owned()
    }

    /// Waits (up to 10 s) for the current URL to satisfy `done`, as a click
    /// that submits a form may return before the next page has loaded;
    /// returns the URL.
    pub fn wait_for_url(&self, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let url = self.url();
            if done(&url) {
                return url;
            }
            assert!(Instant::now() < deadline, "still at {url}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (up to `seconds`) for the current DOM to satisfy `done`, as a
    /// form that redirects back to the same URL leaves nothing else to wait
    /// on; returns the DOM.
    pub fn wait_for_source(&self, seconds: u64, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let source = self.source();
            if done(&source) {
                return source;
            }
            assert!(
                Instant::now() < deadline,
                "the page never changed: {source}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The current DOM, serialized.
    pub fn source(&self) -> String {
        self.call("GET", "/source", None)
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The first element matching a CSS selector.
    pub fn find(&self, css: &str) -> String {
        let found = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("{css}: {found}"))
            .to_owned()
    }

    /// Types into an element.
    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Clicks an element (and waits for a navigation it starts).
    pub fn click(&self, css: &str) {
        let e = self.find(css);
        self.call("POST", &format!("/element/{e}/click"), None);
    }

    /// A DOM property of the first element matching `css` (an `href` comes
    /// resolved to an absolute URL).
    pub fn property(&self, css: &str, name: &str) -> Option<String> {
        let e = self.find(css);
        self.call("GET", &format!("/element/{e}/property/{name}"), None)
            .as_str()
            .map(str::to_owned)
    }

    /// The browser's cookies, HttpOnly ones included, as `name=value`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        let all = self.call("GET", "/cookie", None);
        all.as_array()?
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| format!("{name}={}", c["value"].as_str().unwrap_or("")))
    }

    /// Resizes the window, so a screenshot shows a long page whole.
    pub fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// A screenshot of a page, checked to be a PNG and not blank (a page of
    /// text, a chart and a table compresses far worse than `blank`, a
    /// screenshot of about:blank), written as NAME into the tests' directory.
    pub fn screenshot_not_blank(&self, blank: &[u8], name: &str) -> Vec<u8> {
        let shot = self.screenshot();
        assert_eq!(&shot[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
        assert!(
            shot.len() > 4 * blank.len(),
            "{} bytes against {} for a blank page",
            shot.len(),
            blank.len()
        );
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&path, &shot).unwrap();
        eprintln!("screenshot: {}", path.display());
        shot
    }

    /// A PNG screenshot of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        let encoded = self.call("GET", "/screenshot", None);
        base64_decode(encoded.as_str().unwrap())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.agent.delete(&self.base).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64 with padding, as WebDriver's screenshots come.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|b| *b != b'=').collect();
        let n = data
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | value(*b) << (18 - 6 * i as u32));
        out.extend_from_slice(&n.to_be_bytes()[1..data.len().max(1)]);
    }
    out
}
