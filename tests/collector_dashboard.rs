//! The collector's dashboard over real HTTP on a real collector process:
//! sign-in and its cookie, the page's estimates, withheld cells and hostile
//! cohort names, the download against the export, sign-out with CSRF, and
//! the security headers on every answer.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod support;

use std::collections::BTreeMap;

use hush_report::Catalog;
use support::pages::{csrf, get, post};
use support::{Collector, client, parse_csv, report, run_ok, today};

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Signs in with `token`; the session cookie ("hush_session=...").
fn sign_in(url: &str, token: &str) -> String {
    let form = get(&format!("{url}/dashboard/login"), None);
    let login = format!("hush_login={}", form.cookie("hush_login").unwrap());
    let done = post(
        &format!("{url}/dashboard/login"),
        Some(&login),
        &format!("token={}&csrf={}", encode(token), csrf(&form.body)),
    );
    assert_eq!(done.status, 303, "{}", done.body);
    format!("hush_session={}", done.cookie("hush_session").unwrap())
}

const HOSTILE: &str = "<script>alert('x')</script>\"><img src=x onerror=y>";

#[test]
fn signing_in_needs_an_admin_token_a_fresh_form_and_gives_a_strict_cookie() {
    let c = Collector::start("");
    let admin = c.token(&["--admin"]);
    let device = c.token(&[]);
    let url = &c.url;

    // Without a session: to the sign-in page.
    let page = get(&format!("{url}/dashboard"), None);
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), "/dashboard/login");

    let form = get(&format!("{url}/dashboard/login"), None);
    assert_eq!(form.status, 200);
    let set = form.header("set-cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/dashboard"] {
        assert!(set.contains(flag), "{set}");
    }
    let login = format!("hush_login={}", form.cookie("hush_login").unwrap());
    let token = csrf(&form.body);
    let at = format!("{url}/dashboard/login");
    // No CSRF cookie (a form posted from another site), or the wrong token: refused.
    let forged = post(&at, None, &format!("token={admin}&csrf={token}"));
    assert_eq!(forged.status, 403);
    let wrong = post(&at, Some(&login), &format!("token={admin}&csrf=0{token}"));
    assert_eq!(wrong.status, 403);
    assert!(wrong.cookie("hush_session").is_none());
    // A device token is not an admin token.
    let device_in = post(&at, Some(&login), &format!("token={device}&csrf={token}"));
    assert_eq!(device_in.status, 401);
    assert!(device_in.body.contains("not an active admin token"));
    assert!(device_in.cookie("hush_session").is_none());

    let ok = post(&at, Some(&login), &format!("token={admin}&csrf={token}"));
    assert_eq!(
        (ok.status, ok.header("location").as_str()),
        (303, "/dashboard")
    );
    let set = ok.header("set-cookie");
    let session_line = set
        .lines()
        .find(|l| l.starts_with("hush_session="))
        .unwrap();
    for flag in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/dashboard",
        "Max-Age=28800",
    ] {
        assert!(session_line.contains(flag), "{session_line}");
    }
    // Plain HTTP here, so not Secure (a browser would drop it); TLS adds it.
    assert!(!session_line.contains("Secure"));
    let session = format!("hush_session={}", ok.cookie("hush_session").unwrap());
    assert_eq!(get(&format!("{url}/dashboard"), Some(&session)).status, 200);
    // A made-up session is no session.
    assert_eq!(
        get(&format!("{url}/dashboard"), Some("hush_session=00ff")).status,
        303
    );
}

#[test]
fn the_page_shows_estimates_withheld_cells_and_escapes_hostile_cohorts() {
    let c = Collector::start("min_devices = 3\n");
    let catalog = Catalog::builtin();
    let day = today() - 1;
    // 24 devices in a cohort named like an attack, one device in another.
    for seed in 0..24 {
        c.device_uploads(&client(), HOSTILE, &[report(&catalog, day, 2.0, seed)]);
    }
    c.device_uploads(&client(), "small", &[report(&catalog, day, 2.0, 99)]);
    let c = c.restart_days_later(8);
    let admin = c.token(&["--admin"]);
    let session = sign_in(&c.url, &admin);

    // The metric the most devices of the cohort reported.
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for seed in 0..24 {
        for m in report(&catalog, day, 2.0, seed).metrics() {
            *counts
                .entry(catalog.metrics()[usize::from(m.metric())].name)
                .or_default() += 1;
        }
    }
    let (metric, devices) = counts.iter().max_by_key(|(_, n)| **n).unwrap();
    assert!(*devices >= 3);
    let view = format!("metric={metric}&cohort={}", encode(HOSTILE));
    let page = get(&format!("{}/dashboard?{view}", c.url), Some(&session));
    assert_eq!(page.status, 200, "{}", page.body);
    // Security headers on the private page.
    assert!(
        page.header("content-security-policy")
            .contains("default-src 'none'")
    );
    assert!(
        !page
            .header("content-security-policy")
            .contains("script-src")
    );
    assert_eq!(page.header("x-frame-options"), "DENY");
    assert_eq!(page.header("cache-control"), "no-store");
    // The hostile cohort name is text, never markup.
    assert!(!page.body.contains("<script>alert"), "unescaped cohort");
    assert!(!page.body.contains("<img src=x"), "unescaped cohort");
    assert!(
        page.body
            .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;")
    );
    // The chart and the table of the released day.
    assert!(page.body.contains("<svg id=\"chart\""), "{}", page.body);
    let date = hush_collector::estimate::period_start(day, 86_400);
    assert!(page.body.contains(&format!("<td>{date}</td>")));
    let described = catalog
        .metrics()
        .iter()
        .find(|m| m.name == *metric)
        .unwrap();
    assert!(
        page.body
            .contains(&described.description.replace('\'', "&#39;"))
    );

    // The small cohort's cells are withheld: counted, never named or dated,
    // as /v1/estimates counts them; the cohort is not even offered.
    assert!(page.body.contains("id=\"withheld\""), "{}", page.body);
    assert!(page.body.contains("fewer than 3 devices"));
    assert!(!page.body.contains("small"), "a withheld cohort is named");
    let small =
        catalog.metrics()[usize::from(report(&catalog, day, 2.0, 99).metrics()[0].metric())].name;
    let page = get(
        &format!("{}/dashboard?metric={small}&cohort=small", c.url),
        Some(&session),
    );
    assert!(!page.body.contains("<svg id=\"chart\""));
    assert!(!page.body.contains(&format!("<td>{date}</td>")));
    assert!(page.body.contains("No released estimate"));
    let (_, estimates) = {
        let mut r = client()
            .get(format!("{}/v1/estimates?from={day}&to={day}", c.url))
            .header("Authorization", &format!("Bearer {admin}"))
            .call()
            .unwrap();
        (r.status(), r.body_mut().read_to_string().unwrap())
    };
    let estimates: serde_json::Value = serde_json::from_str(&estimates).unwrap();
    let withheld = estimates["withheld_cells"].as_u64().unwrap();
    assert!(withheld > 0);
    assert!(
        page.body
            .contains(&format!("{withheld} cell(s) of this range")),
        "the same count as /v1/estimates: {}",
        page.body
    );
    // An unknown metric, a reversed range or a bad date is a clear 400.
    let unknown = get(&format!("{}/dashboard?metric=nope", c.url), Some(&session));
    assert_eq!(unknown.status, 400);
    assert!(unknown.body.contains("no metric named nope"));
    let reversed = get(
        &format!("{}/dashboard?from=2026-02-01&to=2026-01-01", c.url),
        Some(&session),
    );
    assert_eq!(reversed.status, 400);
    assert!(reversed.body.contains("after the last"));
    let bad = get(
        &format!("{}/dashboard?from=yesterday", c.url),
        Some(&session),
    );
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("neither a date"), "{}", bad.body);

    // The CSV download holds the rows the export writes for that metric and cohort.
    let csv = get(
        &format!("{}/dashboard/rows.csv?{view}", c.url),
        Some(&session),
    );
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-disposition").starts_with("attachment"));
    let downloaded = parse_csv(&csv.body);
    let out = c.dir.path().join("export");
    run_ok(
        support::hush()
            .args([
                "collector",
                "export",
                "--format",
                "csv",
                "--windows",
                "day",
                "--config",
            ])
            .arg(c.config())
            .arg("--out")
            .arg(&out),
    );
    let part = out.join(format!("period={date}")).join("part-0.csv");
    let exported = parse_csv(&std::fs::read_to_string(part).unwrap());
    assert_eq!(downloaded[0], exported[0], "same columns");
    let (m_col, c_col) = (
        exported[0].iter().position(|h| h == "metric").unwrap(),
        exported[0].iter().position(|h| h == "cohort").unwrap(),
    );
    let expected: Vec<_> = exported[1..]
        .iter()
        .filter(|r| r[m_col] == *metric && r[c_col] == HOSTILE)
        .cloned()
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(downloaded[1..].to_vec(), expected);
    // Without a session there is nothing to download.
    assert_eq!(
        get(&format!("{}/dashboard/rows.csv?{view}", c.url), None).status,
        401
    );
    let parquet = get(
        &format!("{}/dashboard/rows.parquet?{view}", c.url),
        Some(&session),
    );
    assert_eq!(parquet.status, 200);
}

/// A one-time sign-in link (as `hush demo --serve` prints) signs in once:
/// its admin token is revoked by the sign-in.
#[test]
fn a_one_time_link_signs_in_once() {
    let c = Collector::start("");
    let admin = c.token(&["--admin"]);
    let link = format!("{}/dashboard/login?once={admin}", c.url);
    let use_link = || {
        let form = get(&link, None);
        assert_eq!(form.status, 200);
        assert!(!form.body.contains("type=\"password\""), "no token to type");
        let login = format!("hush_login={}", form.cookie("hush_login").unwrap());
        let fields: Vec<String> = ["token", "once", "csrf"]
            .iter()
            .map(|name| {
                let key = format!("name=\"{name}\" value=\"");
                let at = form.body.find(&key).unwrap() + key.len();
                format!(
                    "{name}={}",
                    encode(form.body[at..].split('"').next().unwrap())
                )
            })
            .collect();
        post(
            &format!("{}/dashboard/login", c.url),
            Some(&login),
            &fields.join("&"),
        )
    };
    let first = use_link();
    assert_eq!(first.status, 303, "{}", first.body);
    assert!(first.cookie("hush_session").is_some());
    let again = use_link();
    assert_eq!(again.status, 401);
    assert!(again.body.contains("used already"), "{}", again.body);
    // The token is revoked for the API too.
    let status = client()
        .get(format!("{}/v1/estimates", c.url))
        .header("Authorization", &format!("Bearer {admin}"))
        .call()
        .unwrap()
        .status();
    assert_eq!(status, 401);
}

#[test]
fn signing_out_needs_the_sessions_csrf_token() {
    let c = Collector::start("");
    let admin = c.token(&["--admin"]);
    let session = sign_in(&c.url, &admin);
    let page = get(&format!("{}/dashboard", c.url), Some(&session));
    let token = csrf(&page.body);
    let out = format!("{}/dashboard/logout", c.url);
    // A sign-out posted without the token (or with another) changes nothing.
    assert_eq!(post(&out, Some(&session), "").status, 403);
    assert_eq!(post(&out, Some(&session), "csrf=forged").status, 403);
    assert_eq!(
        get(&format!("{}/dashboard", c.url), Some(&session)).status,
        200
    );
    // With it, the session ends and its cookie is deleted.
    let done = post(&out, Some(&session), &format!("csrf={token}"));
    assert_eq!(done.status, 303);
    assert!(done.header("set-cookie").contains("Max-Age=0"));
    assert_eq!(
        get(&format!("{}/dashboard", c.url), Some(&session)).status,
        303
    );
    // The stylesheet is public and also carries the headers.
    let css = get(&format!("{}/dashboard/style.css", c.url), None);
    assert_eq!(css.status, 200);
    assert_eq!(css.header("x-frame-options"), "DENY");
}

/// The dashboard in a real browser: sign in through the form, switch metric
/// and cohort, download the CSV with the browser's own session, and a
/// screenshot that is not blank. Each page must load within a second.
#[test]
#[ignore = "needs chromium and chromedriver (Debian's chromium, chromium-driver)"]
fn a_browser_signs_in_switches_metric_and_cohort_and_downloads() {
    let c = Collector::start("min_devices = 3\n");
    let catalog = Catalog::builtin();
    let day = today() - 1;
    for seed in 0..40 {
        let cohort = if seed % 2 == 0 { "research" } else { "support" };
        c.device_uploads(&client(), cohort, &[report(&catalog, day, 2.0, seed)]);
    }
    let c = c.restart_days_later(8);
    let admin = c.token(&["--admin"]);
    let browser = support::webdriver::Browser::start();

    browser.open("about:blank");
    let blank = browser.screenshot();
    browser.open(&format!("{}/dashboard", c.url));
    assert!(
        browser.url().ends_with("/dashboard/login"),
        "{}",
        browser.url()
    );
    browser.type_into("#token", &admin);
    browser.click("button[type=submit]");
    browser.wait_for_url(|u| u.ends_with("/dashboard"));
    assert!(browser.source().contains("<h1 id=\"metric\">"));
    // The session cookie is the browser's, HttpOnly and strict.
    let session = browser.cookie("hush_session").expect("signed in");

    // Every metric's page, each within a second (the bound).
    let mut slowest = std::time::Duration::ZERO;
    for m in catalog.metrics() {
        let took = browser.open(&format!(
            "{}/dashboard?metric={}&cohort=support",
            c.url, m.name
        ));
        slowest = slowest.max(took);
        assert!(took.as_secs_f64() < 1.0, "{}: {took:?}", m.name);
        assert!(
            browser
                .source()
                .contains(&format!("<h1 id=\"metric\">{}</h1>", m.name))
        );
    }
    eprintln!("slowest metric page: {slowest:?}");
    // Switch metric by its link (to the one the research cohort reported
    // most), then cohort by the form.
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for seed in (0..40).step_by(2) {
        for m in report(&catalog, day, 2.0, seed).metrics() {
            *counts
                .entry(catalog.metrics()[usize::from(m.metric())].name)
                .or_default() += 1;
        }
    }
    let (second, _) = counts.iter().max_by_key(|(_, n)| **n).unwrap();
    browser.click(&format!("nav a[href*=\"metric={second}\"]"));
    browser.wait_for_url(|u| u.contains(&format!("metric={second}")));
    browser.click("#cohort option[value=research]");
    browser.click("form.view button");
    browser.wait_for_url(|u| u.contains("cohort=research"));
    assert!(
        browser
            .source()
            .contains("<option value=\"research\" selected"),
        "the cohort shown is the one chosen"
    );

    // The download link, fetched with the browser's session.
    let href = browser.property("#csv", "href").unwrap();
    let csv = get(&href, Some(&session));
    assert_eq!(csv.status, 200, "{href}");
    let rows = parse_csv(&csv.body);
    assert!(rows.len() > 1 && rows[0].contains(&"estimate".to_owned()));
    assert!(rows[1..].iter().all(|r| r.contains(&"research".to_owned())));

    browser.screenshot_not_blank(&blank, "dashboard.png");
}
