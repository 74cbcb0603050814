//! The page's rules, request by request, against a bound server's handler:
//! the one-time link, the session's path and cookie, the Host check, CSRF
//! and Origin on every change, and escaping.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use super::*;
use hush_report::SentLine;

use crate::control::Status;

fn ui(home: &std::path::Path) -> Ui {
    Ui::bind(
        AgentPaths::in_home(home),
        AgentConfig::default(),
        UiOptions {
            idle: DEFAULT_IDLE,
            recorder: None,
        },
    )
    .unwrap()
}

fn get(ui: &Ui, target: &str, cookie: Option<&str>) -> Response {
    let host = ui.state.host.clone();
    let mut headers = vec![("Host", host.as_str())];
    if let Some(c) = cookie {
        headers.push(("Cookie", c));
    }
    handle(&ui.state, &Request::new("GET", target, &headers, b""))
}

fn post(ui: &Ui, target: &str, cookie: &str, form: &str, origin: Option<&str>) -> Response {
    let host = ui.state.host.clone();
    let mut headers = vec![
        ("Host", host.as_str()),
        ("Cookie", cookie),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    if let Some(o) = origin {
        headers.push(("Origin", o));
    }
    handle(
        &ui.state,
        &Request::new("POST", target, &headers, form.as_bytes()),
    )
}

fn text(r: &Response) -> String {
    String::from_utf8(r.body().to_vec()).unwrap()
}

/// Opens the link: (base path, "hush_ui=..." cookie, csrf token).
fn open(ui: &Ui) -> (String, String, String) {
    let target = ui.link().split_once("127.0.0.1").unwrap().1;
    let target = &target[target.find('/').unwrap()..];
    let r = get(ui, target, None);
    assert_eq!(r.status(), 303);
    let base = r
        .header("location")
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let set = r.header("set-cookie").unwrap();
    assert!(
        set.ends_with(&format!("; Path={base}; HttpOnly; SameSite=Strict")),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    let page = text(&get(ui, &format!("{base}/"), Some(&cookie)));
    let at = page.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = page[at..at + 64].to_owned();
    (base, cookie, csrf)
}

#[test]
fn the_link_opens_once_and_the_pages_need_its_path_and_cookie() {
    let home = tempfile::tempdir().unwrap();
    let ui = ui(home.path());
    assert!(ui.link().starts_with("http://127.0.0.1:"));
    assert!(
        !format!("{ui:?}").contains("secret="),
        "the link stays out of debug output"
    );
    assert_eq!(get(&ui, "/", None).status(), 403, "nothing before the link");
    assert_eq!(get(&ui, "/open?secret=00", None).status(), 403);
    let link_target = format!("/open?{}", ui.link().split_once('?').unwrap().1);
    let (base, cookie, _) = open(&ui);
    assert!(base.starts_with("/s/") && base.len() == 3 + 32, "{base}");
    assert_eq!(
        get(&ui, &link_target, None).status(),
        403,
        "the link is spent"
    );
    let page = get(&ui, &format!("{base}/"), Some(&cookie));
    assert_eq!(page.status(), 200);
    assert!(text(&page).contains("not enrolled"));
    // The path without the cookie, the cookie without the path, a wrong cookie.
    assert_eq!(get(&ui, &format!("{base}/"), None).status(), 403);
    assert_eq!(get(&ui, "/", Some(&cookie)).status(), 403);
    assert_eq!(get(&ui, &format!("{base}x/"), Some(&cookie)).status(), 403);
    assert_eq!(
        get(&ui, &format!("{base}/"), Some("hush_ui=00")).status(),
        403
    );
    assert_eq!(
        get(&ui, &format!("{base}/nothing"), Some(&cookie)).status(),
        404
    );
    // Another name for 127.0.0.1 (DNS rebinding) is refused before anything.
    let rebound = handle(
        &ui.state,
        &Request::new(
            "GET",
            &format!("{base}/"),
            &[("Host", "evil.example:80"), ("Cookie", &cookie)],
            b"",
        ),
    );
    assert_eq!(rebound.status(), 421);
}

#[test]
fn changes_need_the_sessions_csrf_token_and_no_foreign_origin() {
    let home = tempfile::tempdir().unwrap();
    let ui = ui(home.path());
    let paths = AgentPaths::in_home(home.path());
    let (base, cookie, csrf) = open(&ui);
    let pause = format!("{base}/pause");
    assert_eq!(post(&ui, &pause, &cookie, "", None).status(), 403);
    assert_eq!(post(&ui, &pause, &cookie, "csrf=00", None).status(), 403);
    let form = format!("csrf={csrf}");
    assert_eq!(
        post(&ui, &pause, &cookie, &form, Some("http://evil.example")).status(),
        403
    );
    assert!(!paths.paused().exists(), "no refused request paused");
    // GET never changes anything.
    assert_eq!(get(&ui, &pause, Some(&cookie)).status(), 404);
    assert!(!paths.paused().exists());

    let origin = ui.state.origin.clone();
    let r = post(&ui, &pause, &cookie, &form, Some(&origin));
    assert_eq!(
        (r.status(), r.header("location")),
        (303, Some(format!("{base}/").as_str()))
    );
    assert!(paths.paused().exists());
    let page = text(&get(&ui, &format!("{base}/"), Some(&cookie)));
    assert!(
        page.contains("id=\"notice\">Paused: nothing is measured"),
        "{page}"
    );
    assert!(page.contains("<strong>Paused</strong>"));
    assert!(page.contains("id=\"resume\""));
    // The notice is shown once.
    assert!(!text(&get(&ui, &format!("{base}/"), Some(&cookie))).contains("id=\"notice\""));

    assert_eq!(
        post(&ui, &format!("{base}/resume"), &cookie, &form, None).status(),
        303
    );
    assert!(!paths.paused().exists());

    // Forget asks first: the question changes nothing, the answer deletes the secret.
    crate::device::load_or_create_secret(&paths).unwrap();
    assert!(paths.secret().exists());
    let question = get(&ui, &format!("{base}/forget"), Some(&cookie));
    assert!(text(&question).contains("Yes, forget"));
    assert!(paths.secret().exists());
    assert_eq!(
        post(&ui, &format!("{base}/forget"), &cookie, &form, None).status(),
        303
    );
    assert!(!paths.secret().exists());

    // A preview without a recorder says why; a length not offered is refused.
    assert_eq!(
        post(
            &ui,
            &format!("{base}/preview"),
            &cookie,
            &format!("{form}&seconds=7"),
            None
        )
        .status(),
        400
    );
    assert_eq!(
        post(
            &ui,
            &format!("{base}/preview"),
            &cookie,
            &format!("{form}&seconds=10"),
            None
        )
        .status(),
        303
    );
    assert!(
        text(&get(&ui, &format!("{base}/"), Some(&cookie)))
            .contains("needs this laptop&#39;s display")
    );

    assert!(!ui.state.closed.load(Ordering::SeqCst));
    assert_eq!(
        post(&ui, &format!("{base}/close"), &cookie, &form, None).status(),
        200
    );
    assert!(ui.state.closed.load(Ordering::SeqCst));
}

fn status(enrolled: &str) -> Status {
    Status {
        enrolled: Some(enrolled.to_owned()),
        paused: false,
        development_periods: false,
        period: 20_000,
        period_seconds: 86_400,
        epsilon_per_report: Some(1.0),
        epsilon_per_value: Some(4.0),
        epsilon_per_year_cap: Some(96.0),
        epsilon_past_year: 8.0,
        draws: Vec::new(),
        max_values_per_year: 8,
        reported_this_period: false,
        queued: 0,
        sent: 3,
        refused: 1,
        last_upload: Some(20_000 * 86_400),
    }
}

#[test]
fn the_page_escapes_what_it_shows_and_charts_reports_per_day() {
    let hostile = "https://x.example/<script>alert('x')</script>\"";
    let s = status(hostile);
    let day = 20_000u64 * 86_400;
    let line = SentLine {
        name: "clicks",
        mechanism: "<b>",
        epsilon: 1.0,
        epsilon_perm: 4.0,
        in_words: "<img src=x onerror=y>".to_owned(),
    };
    let reports: Vec<page::SentReport> = [
        (day - 86_400, true),
        (day, true),
        (day + 60, true),
        (day + 120, false),
    ]
    .iter()
    .map(|&(at, sent)| page::SentReport {
        at,
        sent,
        period: (at / 86_400) as u32,
        bytes: 40,
        lines: vec![line.clone()],
    })
    .collect();
    let html = page::main(&page::View {
        base: "/s/abc",
        csrf: "\"><script>",
        status: &s,
        running: true,
        reports: &reports,
        notice: Some("<i>"),
        preview: &Preview::Never,
        can_preview: true,
        idle: Duration::from_secs(300),
        now: day + 3600,
    });
    assert!(!html.to_lowercase().contains("<script"), "{html}");
    assert!(!html.contains("<img") && !html.contains("<b>") && !html.contains("<i>"));
    assert!(html.contains("x.example/&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;"));
    assert!(
        html.contains("id=\"per-report\">epsilon 1<")
            && html.contains("id=\"per-year\">epsilon 96<")
    );
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"60\">"));
    // Two days: one bar of one report, one of two accepted and one refused.
    assert_eq!(html.matches("<rect class=\"sent\"").count(), 2);
    assert_eq!(html.matches("<rect class=\"refused\"").count(), 1);
    assert!(html.contains("aria-label=\"4 reports over the last 14 days\""));
    // Newest first, each with what it said.
    assert_eq!(html.matches("&lt;img src=x onerror=y&gt;").count(), 4);
    let refused = html.find("class=\"refused\">refused").unwrap();
    let accepted = html.find(">accepted<").unwrap();
    assert!(
        refused < accepted,
        "the newest report (refused) comes first"
    );
}

#[test]
fn a_short_idle_time_reloads_the_page_often_enough_to_keep_it() {
    assert_eq!(page::refresh(Duration::from_secs(300)), 60);
    assert_eq!(page::refresh(Duration::from_secs(30)), 10);
    assert_eq!(page::refresh(Duration::from_secs(5)), 2);
}

#[test]
fn a_session_runs_at_most_its_previews_and_shows_their_numbers() {
    let home = tempfile::tempdir().unwrap();
    // The recorder the binary hands in runs a child process on a display;
    // here one that answers at once with what such a child prints.
    let recorder: Recorder = Arc::new(|d: Duration| {
        Watched::from_preview_json(&format!(
            r#"{{"seconds":{},"interactions":7,"dropped":0,"counts":{{"keys":{{"letter":5}},"chords":0,"shortcuts":{{}}}},
               "metrics":[{{"name":"keystrokes","in_words":"5 keys","description":"Keys pressed"}}]}}"#,
            d.as_secs()
        ))
    });
    let ui = Ui::bind(
        AgentPaths::in_home(home.path()),
        AgentConfig::default(),
        UiOptions {
            idle: DEFAULT_IDLE,
            recorder: Some(recorder),
        },
    )
    .unwrap();
    let (base, cookie, csrf) = open(&ui);
    let preview = |seconds: u64| {
        let r = post(
            &ui,
            &format!("{base}/preview"),
            &cookie,
            &format!("csrf={csrf}&seconds={seconds}"),
            None,
        );
        assert_eq!(r.status(), 303);
        let deadline = Instant::now() + Duration::from_secs(5);
        while lock(&ui.state.preview).watching() {
            assert!(Instant::now() < deadline, "the preview never ended");
            thread::sleep(Duration::from_millis(10));
        }
        text(&get(&ui, &format!("{base}/"), Some(&cookie)))
    };
    let page = preview(30);
    assert!(page.contains("From the 30 seconds you asked"), "{page}");
    assert!(page.contains("<td>5 keys</td>") && page.contains("letter 5"));
    for _ in 1..MAX_PREVIEWS {
        preview(10);
    }
    let page = preview(10);
    assert!(
        page.contains(&format!("has run its {MAX_PREVIEWS} previews")),
        "{page}"
    );
    assert_eq!(*lock(&ui.state.previews), MAX_PREVIEWS);
}
