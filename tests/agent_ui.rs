//! The person's page (`hush-agent ui`) as a real process over real HTTP: the
//! one-time link, what the page shows against `status` and `sent`, pause and
//! resume from the page, closing it and its idle stop; and, in a real
//! headless Chromium, the same clicks plus a preview of real X input.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::pages::{csrf, get, post};
use support::{Collector, agent_config, agent_home, run_ok, run_replay, terminate};

fn hush_agent() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hush-agent"));
    command.env("HUSH_AGENT_DEV_PERIODS", "1");
    command
}

/// `hush-agent ARGS --home HOME` as JSON.
fn json(home: &Path, args: &[&str]) -> serde_json::Value {
    let out = run_ok(hush_agent().args(args).arg("--home").arg(home));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// An enrolled home whose agent ran for a few one-second periods, so that
/// reports have left.
fn home_with_reports(collector: &Collector) -> tempfile::TempDir {
    let (home, mut agent) = home_with_agent(collector);
    assert!(terminate(&mut agent).success());
    home
}

/// An enrolled home whose agent runs (one-second periods), reports already sent.
fn home_with_agent(collector: &Collector) -> (tempfile::TempDir, Child) {
    let home = agent_home(collector, "");
    let replay = home.path().join("replay.txt");
    std::fs::write(&replay, "0 key letter\n200 key letter\n400 click left\n").unwrap();
    let agent = run_replay(home.path(), &replay);
    std::thread::sleep(Duration::from_secs(4));
    (home, agent)
}

/// A running `hush-agent ui` and the link it printed.
struct Page {
    child: Child,
    link: String,
    out: BufReader<std::process::ChildStdout>,
}

impl Page {
    fn start(home: &Path, idle: u64, display: Option<&str>) -> Page {
        let mut command = hush_agent();
        command
            .args([
                "ui",
                "--no-browser",
                "--idle-seconds",
                &idle.to_string(),
                "--home",
            ])
            .arg(home)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        match display {
            Some(d) => command.env("DISPLAY", d),
            None => command.env_remove("DISPLAY"),
        };
        let mut child = command.spawn().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut link = String::new();
        for _ in 0..3 {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            if let Some(at) = line.find("http://127.0.0.1:") {
                link = line[at..].trim().to_owned();
            }
        }
        assert!(link.contains("/open?secret="), "no link printed");
        Page { child, link, out }
    }

    fn origin(&self) -> &str {
        &self.link[..self.link.find("/open").unwrap()]
    }

    /// Waits (up to `seconds`) for the process to end; its last line.
    fn ended(&mut self, seconds: u64) -> (std::process::ExitStatus, Duration, String) {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(seconds);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut rest = String::new();
                std::io::Read::read_to_string(&mut self.out, &mut rest).unwrap();
                return (status, started.elapsed(), rest);
            }
            assert!(Instant::now() < deadline, "the page's server did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_page_opens_once_shows_the_agents_state_and_stops_when_closed() {
    let collector = Collector::start("period_seconds = 1\n");
    let home = home_with_reports(&collector);
    let status = json(home.path(), &["status", "--json"]);
    let sent = json(home.path(), &["sent", "--json"]);
    let sent = sent.as_array().unwrap();
    assert!(!sent.is_empty(), "the agent sent nothing to show");

    let before = files(home.path());
    let mut page = Page::start(home.path(), 60, None);
    let origin = page.origin().to_owned();
    assert_eq!(get(&format!("{origin}/"), None).status, 403);
    let opened = get(&page.link, None);
    assert_eq!(opened.status, 303);
    let base = opened.headers["location"].to_str().unwrap().to_owned();
    let set = opened.headers["set-cookie"].to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(
        set.contains(&format!("Path={}", base.trim_end_matches('/'))),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    assert_eq!(get(&page.link, None).status, 403, "the link opens once");

    let shown = get(&format!("{origin}{base}"), Some(&cookie));
    assert_eq!(shown.status, 200);
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(shown.headers[name].to_str().unwrap(), value, "{name}");
    }
    let html = &shown.body;
    assert!(!html.to_lowercase().contains("<script"));
    assert!(html.contains(&format!("reports to <strong>{}</strong>", collector.url)));
    assert!(html.contains("The agent is <strong>not running</strong>"));
    let per_report = status["epsilon_per_report"].as_f64().unwrap();
    assert!(
        html.contains(&format!("id=\"per-report\">epsilon {per_report}<")),
        "{html}"
    );
    // Every report `sent` lists is a row, and the chart counts them all.
    assert_eq!(html.matches(">accepted<").count(), sent.len());
    assert!(html.contains(&format!(
        "aria-label=\"{} reports over the last",
        sent.len()
    )));
    for row in sent {
        assert!(html.contains(&format!("<td class=\"n\">{}</td>", row["period"])));
    }

    // Pause and resume from the page change the agent's state.
    let form = format!("csrf={}", csrf(html));
    assert_eq!(
        post(&format!("{origin}{base}pause"), Some(&cookie), "csrf=wrong").status,
        403
    );
    assert_eq!(json(home.path(), &["status", "--json"])["paused"], false);
    assert_eq!(
        post(&format!("{origin}{base}pause"), Some(&cookie), &form).status,
        303
    );
    assert_eq!(json(home.path(), &["status", "--json"])["paused"], true);
    assert!(
        get(&format!("{origin}{base}"), Some(&cookie))
            .body
            .contains("<strong>Paused</strong>")
    );
    assert_eq!(
        post(&format!("{origin}{base}resume"), Some(&cookie), &form).status,
        303
    );
    assert_eq!(json(home.path(), &["status", "--json"])["paused"], false);

    let closed = post(&format!("{origin}{base}close"), Some(&cookie), &form);
    assert_eq!(closed.status, 200);
    let (exit, took, said) = page.ended(5);
    assert!(exit.success(), "{exit}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(said.contains("closed from the page"), "{said}");
    // Paused and resumed, the home is byte for byte as it was: the page
    // itself wrote nothing.
    assert_eq!(files(home.path()), before);
}

/// Every file under `dir` with its bytes.
fn files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = support::files_under(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_page_stops_when_no_one_shows_it() {
    let home = agent_config("");
    let started = Instant::now();
    let mut page = Page::start(home.path(), 5, None);
    let (exit, _, said) = page.ended(15);
    let took = started.elapsed();
    assert!(exit.success(), "{exit}");
    assert!(said.contains("not shown"), "{said}");
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(9),
        "{took:?}"
    );
}

#[test]
#[ignore = "needs chromium, chromedriver (Debian's chromium, chromium-driver), Xvfb and xdotool"]
fn a_browser_opens_the_link_pauses_resumes_and_previews_real_input() {
    let collector = Collector::start("period_seconds = 1\n");
    let (home, mut agent) = home_with_agent(&collector);
    let x = support::Xvfb::start();
    let page = Page::start(home.path(), 60, Some(&x.display));
    let browser = support::webdriver::Browser::start();
    browser.open("about:blank");
    let blank = browser.screenshot();

    let took = browser.open(&page.link);
    let url = browser.wait_for_url(|u| u.contains("/s/"));
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(
        browser.cookie("hush_ui").is_some(),
        "the session cookie is set"
    );
    let html = browser.source();
    assert!(html.contains("Not paused"), "{html}");
    assert!(html.contains("The agent is running"), "{html}");

    browser.click("#pause");
    browser.wait_for_source(10, |s| s.contains("<strong>Paused</strong>"));
    assert_eq!(json(home.path(), &["status", "--json"])["paused"], true);
    browser.click("#resume");
    browser.wait_for_source(10, |s| s.contains("Measuring again."));
    assert_eq!(json(home.path(), &["status", "--json"])["paused"], false);

    // The preview counts real X input in the page's own process.
    browser.click("#watch");
    browser.wait_for_source(10, |s| s.contains("id=\"watching\""));
    for _ in 0..3 {
        x.xdotool(&["type", "--delay", "20", "hello world"]);
        x.xdotool(&["click", "1"]);
    }
    let html = browser.wait_for_source(25, |s| s.contains("id=\"preview-table\""));
    let keys = &html[html.find("id=\"preview-keys\">").unwrap()..];
    assert!(keys.contains("letter 30"), "{keys}");
    assert!(browser.url() == url, "the page stays where it is");
    // A second preview works too: each runs in a child process whose
    // listener ends with it, so none is left listening in between.
    browser.click("#watch");
    browser.wait_for_source(10, |s| s.contains("id=\"watching\""));
    x.xdotool(&["type", "--delay", "20", "abc"]);
    let html = browser.wait_for_source(25, |s| s.contains("id=\"preview-table\""));
    let keys = &html[html.find("id=\"preview-keys\">").unwrap()..];
    assert!(keys.contains("letter 3,"), "{keys}");

    browser.resize(1100, 2700);
    browser.screenshot_not_blank(&blank, "agent-ui.png");

    // A preview under way ends with the page: closing it leaves no child
    // listening to the keyboard.
    browser.click("select[name=seconds] option[value='60']");
    browser.click("#watch");
    browser.wait_for_source(10, |s| s.contains("id=\"watching\""));
    let home_arg = home.path().display().to_string();
    let previews = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains("preview --json") && c.contains(&home_arg))
            .count()
    };
    assert_eq!(previews(), 1, "the preview runs as a child");
    browser.click("#close");
    let mut page = page;
    let (exit, _, _) = page.ended(10);
    assert!(exit.success());
    assert_eq!(previews(), 0, "the child ended with the page");
    assert!(terminate(&mut agent).success());
}

#[test]
#[ignore = "needs root, to connect as another user (setpriv, util-linux)"]
fn another_users_connection_is_refused_even_with_the_link() {
    let home = agent_config("");
    let page = Page::start(home.path(), 30, None);
    // The link, used by another user's process (as one that read it from
    // the opener's command line would): the connection is closed unanswered.
    let other = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(&page.link)
        .output()
        .expect("setpriv and curl");
    assert_eq!(
        String::from_utf8_lossy(&other.stdout),
        "000",
        "no answer at all"
    );
    // The link is unspent: this user's browser opens it.
    assert_eq!(get(&page.link, None).status, 303);
}

#[test]
fn without_no_browser_the_link_goes_to_the_desktops_opener() {
    let home = agent_config("");
    // A stand-in for xdg-open (a real process on PATH) that notes its argument.
    let bin = tempfile::tempdir().unwrap();
    let noted = bin.path().join("opened");
    let opener = bin.path().join("xdg-open");
    std::fs::write(
        &opener,
        format!("#!/bin/sh\nprintf '%s' \"$1\" > '{}'\n", noted.display()),
    )
    .unwrap();
    std::fs::set_permissions(&opener, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap()
    );
    let mut child = hush_agent()
        .args(["ui", "--idle-seconds", "5", "--home"])
        .arg(home.path())
        .env("PATH", path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    for _ in 0..2 {
        out.read_line(&mut printed).unwrap();
    }
    let link = printed[printed.find("http://").unwrap()..]
        .trim()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&noted).map_or(true, |s| s.is_empty()) {
        assert!(Instant::now() < deadline, "the opener was never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(std::fs::read_to_string(&noted).unwrap(), link);
    let _ = child.kill();
    let _ = child.wait();
}
