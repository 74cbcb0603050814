//! The operators' view of a real collector process: `/metrics` counts what
//! was sent by reason and carries nothing that names a device, `/readyz`
//! follows the database's writability, promtool accepts the exposition, and
//! `--log-format json` writes one JSON object per line.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hush_report::{Catalog, Report};
use support::{Collector, client, hush, report, run_ok, today, upload};

/// GET `path` with an optional bearer token; (status, body).
fn get(url: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut req = client().get(format!("{url}{path}"));
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut r = req.call().unwrap();
    (
        r.status().as_u16(),
        r.body_mut().read_to_string().unwrap_or_default(),
    )
}

/// The samples of an exposition: `name{labels}` -> value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').unwrap();
            (key.to_owned(), value.parse::<f64>().unwrap())
        })
        .collect()
}

/// Every `label="value"` pair of an exposition's samples (values unescaped
/// enough for the checks here: none of ours holds a quote).
fn labels(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((_, rest)) = line.split_once('{') else {
            continue;
        };
        let (inside, _) = rest.rsplit_once('}').unwrap();
        for pair in inside.split("\",") {
            let (k, v) = pair.split_once("=\"").unwrap();
            out.push((k.to_owned(), v.trim_end_matches('"').to_owned()));
        }
    }
    out
}

/// `body` with the byte `offset` bytes after where `needle` starts changed by `change`.
fn corrupt(body: &[u8], needle: &[u8], offset: usize, change: fn(u8) -> u8) -> Vec<u8> {
    let at = body
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the field is in the encoding");
    let mut out = body.to_vec();
    out[at + offset] = change(out[at + offset]);
    out
}

const CONFIG: &str = "device_requests_per_minute = 40\nfailed_requests_per_minute = 1000\n";

#[test]
fn metrics_count_what_was_sent_by_reason_and_name_no_device() {
    let c = Collector::start(CONFIG);
    let agent = client();
    let catalog = Catalog::builtin();
    let day = today();
    let admin = c.token(&["--admin"]);

    // A load first, through the real load generator.
    let out = run_ok(&mut c.command(&["loadgen", "--url", &c.url, "--reports", "2000", "--json"]));
    let load: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let loaded = |k: &str| load[k].as_f64().unwrap();
    assert_eq!(loaded("failed"), 0.0, "{load}");

    let mut expected: BTreeMap<&str, f64> = BTreeMap::new();
    let mut expect = |reason: &'static str, (status, text): (u16, String), want: u16| {
        assert_eq!(status, want, "{reason}: {text}");
        *expected.entry(reason).or_default() += 1.0;
    };
    let (a, b, d) = (c.token(&[]), c.token(&[]), c.token(&[]));
    let mut tokens = vec![a.clone(), b.clone(), d.clone(), admin.clone()];
    let r1 = report(&catalog, day - 1, 2.0, 1);
    let one = |r: &Report| Report::encode_batch(std::slice::from_ref(r));
    assert_eq!(upload(&agent, &c.url, Some(&a), &one(&r1)).0, 200);
    expect("replayed", upload(&agent, &c.url, Some(&b), &one(&r1)), 409);
    let r2 = report(&catalog, day - 1, 2.0, 2);
    expect(
        "period_taken",
        upload(&agent, &c.url, Some(&a), &one(&r2)),
        409,
    );
    for _ in 0..3 {
        expect(
            "malformed",
            upload(&agent, &c.url, Some(&b), b"\x01garbage"),
            400,
        );
    }
    for _ in 0..2 {
        expect(
            "unauthenticated",
            upload(&agent, &c.url, None, &one(&r2)),
            401,
        );
    }
    let stranger = "hush_dev_not_a_token_this_collector_issued";
    tokens.push(stranger.to_owned());
    for _ in 0..2 {
        expect(
            "unknown_token",
            upload(&agent, &c.url, Some(stranger), &one(&r2)),
            401,
        );
    }
    expect(
        "wrong_token_kind",
        upload(&agent, &c.url, Some(&admin), &one(&r2)),
        403,
    );
    expect("wrong_token_kind", get(&c.url, "/metrics", Some(&b)), 403);
    // Every route that takes a token refuses a request without one: each
    // handler asks for it as an argument, so a route that forgot to would
    // answer here.
    for path in ["/v1/estimates", "/metrics"] {
        expect("unauthenticated", get(&c.url, path, None), 401);
    }
    expect("not_found", get(&c.url, "/nope", None), 404);
    expect("wrong_method", get(&c.url, "/v1/reports", None), 405);
    let huge = vec![0u8; hush_report::MAX_BATCH_BYTES + 10];
    expect("oversized", upload(&agent, &c.url, Some(&b), &huge), 413);
    let typed = agent
        .post(format!("{}/v1/reports", c.url))
        .header("Content-Type", "text/plain")
        .header("Authorization", &format!("Bearer {b}"))
        .send(&one(&r2)[..])
        .unwrap()
        .status()
        .as_u16();
    expect("content_type", (typed, String::new()), 415);
    let late = report(&catalog, day - 30, 2.0, 3);
    expect("late", upload(&agent, &c.url, Some(&b), &one(&late)), 422);
    let future = report(&catalog, day + 3, 2.0, 4);
    expect(
        "future",
        upload(&agent, &c.url, Some(&b), &one(&future)),
        422,
    );
    let terms = report(&catalog, day - 2, 1.0, 5);
    expect("terms", upload(&agent, &c.url, Some(&b), &one(&terms)), 422);
    let r6 = report(&catalog, day - 2, 2.0, 6);
    // The catalog version (one varint byte after the hash) no longer matches the hash.
    let hash = r6.catalog_hash().0;
    let bad_version = corrupt(&one(&r6), &hash, hash.len(), |v| v + 1);
    expect(
        "invalid",
        upload(&agent, &c.url, Some(&b), &bad_version),
        422,
    );
    let bad_catalog = corrupt(&one(&r6), &hash, 0, |v| v ^ 0xff);
    expect(
        "unknown_catalog",
        upload(&agent, &c.url, Some(&b), &bad_catalog),
        422,
    );
    // 40 uploads a minute: the same report 40 times (one new, 39 retries), then 429.
    let r7 = report(&catalog, day - 3, 2.0, 7);
    for _ in 0..40 {
        assert_eq!(upload(&agent, &c.url, Some(&d), &one(&r7)).0, 200);
    }
    expect(
        "rate_limited",
        upload(&agent, &c.url, Some(&d), &one(&r7)),
        429,
    );

    let (status, text) = get(&c.url, "/metrics", Some(&admin));
    assert_eq!(status, 200, "{text}");
    let s = samples(&text);
    for reason in [
        "malformed",
        "unauthenticated",
        "unknown_token",
        "wrong_token_kind",
        "not_found",
        "wrong_method",
        "replayed",
        "period_taken",
        "oversized",
        "content_type",
        "unknown_catalog",
        "invalid",
        "terms",
        "late",
        "future",
        "rate_limited",
        "internal",
        "storage",
        "other",
    ] {
        let key = format!("hush_requests_refused_total{{reason=\"{reason}\"}}");
        assert_eq!(
            s.get(&key).copied(),
            Some(expected.get(reason).copied().unwrap_or(0.0)),
            "{key}"
        );
    }
    assert_eq!(
        s["hush_reports_accepted_total"],
        loaded("accepted") + 2.0,
        "{text}"
    );
    assert_eq!(
        s["hush_reports_duplicate_total"],
        loaded("duplicates") + 39.0
    );
    assert!(s["hush_database_bytes{file=\"database\"}"] > 0.0);
    assert!(s["hush_commit_group_uploads_count"] > 0.0);

    // Nothing in it names a device: no token, token hash or report id, no
    // client address, and every label value from a fixed set.
    for t in &tokens {
        assert!(!text.contains(t.as_str()), "a token in /metrics");
        let hash = hex::encode(hush_collector::token_hash(t));
        assert!(!text.contains(&hash), "a token hash in /metrics");
    }
    for r in [&r1, &r2, &r6, &r7, &late, &future, &terms] {
        assert!(
            !text.contains(&hex::encode(r.id().0)),
            "a report id in /metrics"
        );
    }
    assert!(!text.contains("127.0.0.1"), "a client address in /metrics");
    for (k, v) in labels(&text) {
        let allowed = match k.as_str() {
            "reason" => {
                v == "other"
                    || hush_collector::metrics::REFUSAL_REASONS
                        .iter()
                        .any(|(_, label)| *label == v)
            }
            "route" => hush_collector::metrics::ROUTES.contains(&v.as_str()),
            "le" => v == "+Inf" || v.parse::<f64>().is_ok(),
            "file" => v == "database" || v == "wal",
            "state" => v == "released" || v == "withheld",
            _ => false,
        };
        assert!(allowed, "label {k}=\"{v}\" is not from a fixed set");
    }
}

/// A closed period's figures: its devices, its cells as `/v1/estimates`
/// releases them, and agent versions named only when `min_devices` devices
/// carry them (a version one laptop runs would name that laptop).
#[test]
fn the_last_closed_period_names_only_agent_versions_enough_devices_carry() {
    let c = Collector::start("min_devices = 10\n");
    let day = today();
    // 100 load generator devices, each reporting the 8 open periods.
    run_ok(&mut c.command(&["loadgen", "--url", &c.url, "--reports", "800", "--json"]));
    let catalog = Catalog::builtin();
    let rare: Vec<Report> = (0..3)
        .map(|i| report(&catalog, day, 2.0, 100 + i))
        .collect();
    for r in &rare {
        c.device_uploads(&client(), "default", std::slice::from_ref(r));
    }
    // Eight days later `day` is the last closed period.
    let c = c.restart_days_later(8);
    let admin = c.token(&["--admin"]);
    let (status, text) = get(&c.url, "/metrics", Some(&admin));
    assert_eq!(status, 200, "{text}");
    let s = samples(&text);
    assert_eq!(s["hush_last_closed_period"], f64::from(day), "{text}");
    assert_eq!(s["hush_last_closed_period_devices"], 103.0);
    let versions: BTreeMap<String, f64> = labels(&text)
        .into_iter()
        .filter(|(k, _)| k == "agent_version")
        .map(|(_, v)| {
            let key = format!(
                "hush_last_closed_period_devices_by_agent_version{{agent_version=\"{v}\"}}"
            );
            (v, s[&key])
        })
        .collect();
    assert_ne!(rare[0].agent_version(), "loadgen");
    assert_eq!(
        versions,
        BTreeMap::from([("loadgen".to_owned(), 100.0), ("other".to_owned(), 3.0)]),
        "{text}"
    );
    let (_, estimates) = get(
        &c.url,
        &format!("/v1/estimates?from={day}&to={day}"),
        Some(&admin),
    );
    let estimates: serde_json::Value = serde_json::from_str(&estimates).unwrap();
    assert_eq!(
        s["hush_last_closed_period_cells{state=\"withheld\"}"],
        estimates["withheld_cells"].as_f64().unwrap()
    );
    assert!(
        s["hush_last_closed_period_cells{state=\"released\"}"] > 0.0,
        "{text}"
    );
}

#[test]
fn readiness_follows_the_databases_writability() {
    let c = Collector::start("");
    let ready = || get(&c.url, "/readyz", None);
    assert_eq!(ready(), (200, r#"{"status":"ready"}"#.to_owned()));
    assert_eq!(get(&c.url, "/healthz", None).0, 200);

    // Another process takes the database's write lock: nothing can be written.
    // Within the reuse of the last answer (1 s) and the probe's patience (2 s)
    // readiness turns, and no answer waits longer than the patience.
    let lock = support::open_db(c.database());
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let locked = Instant::now();
    loop {
        let asked = Instant::now();
        let (status, body) = ready();
        assert!(
            asked.elapsed() < Duration::from_secs(4),
            "readyz must not hang"
        );
        if status == 503 {
            assert_eq!(
                body,
                r#"{"reason":"writer not keeping up","status":"not ready"}"#
            );
            break;
        }
        assert!(
            locked.elapsed() < Duration::from_secs(10),
            "still ready: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Liveness is another question: the process is up.
    assert_eq!(get(&c.url, "/healthz", None).0, 200);
    // What a service manager runs: not ready, exit 1, and why.
    let out = hush()
        .args(["collector", "ready", "--wait", "0", "--url", &c.url])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("503") && said.contains("not ready"), "{said}");

    lock.execute_batch("ROLLBACK").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = ready();
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still not ready: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = run_ok(hush().args(["collector", "ready", "--wait", "10", "--url", &c.url]));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ready"));
    // Nothing listening: not ready either, after the wait.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = hush()
        .args(["collector", "ready", "--wait", "1", "--url"])
        .arg(format!("http://{closed}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn metrics_listen_serves_loopback_without_a_token() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = Collector::start(&format!("metrics_listen = \"127.0.0.1:{port}\"\n"));
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, text) = loop {
        match client().get(format!("{url}/metrics")).call() {
            Ok(mut r) => break (r.status().as_u16(), r.body_mut().read_to_string().unwrap()),
            Err(e) => {
                assert!(Instant::now() < deadline, "{e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    assert_eq!(status, 200);
    assert!(
        text.contains("# TYPE hush_reports_accepted_total counter"),
        "{text}"
    );
    assert_eq!(get(&url, "/readyz", None).0, 200);
    // The uploads stay on `listen` only, and `/metrics` there still needs a token.
    assert_eq!(upload(&client(), &url, None, b"x").0, 404);
    assert_eq!(get(&c.url, "/metrics", None).0, 401);
}

#[test]
#[ignore = "needs promtool (Debian's prometheus package)"]
fn promtool_accepts_the_exposition() {
    let c = Collector::start(CONFIG);
    let admin = c.token(&["--admin"]);
    run_ok(&mut c.command(&["loadgen", "--url", &c.url, "--reports", "500", "--json"]));
    assert_eq!(upload(&client(), &c.url, None, b"x").0, 401);
    let (status, text) = get(&c.url, "/metrics", Some(&admin));
    assert_eq!(status, 200);
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool on PATH");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_collector_logs_one_json_object_per_line_without_times() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\ndatabase = \"c.sqlite\"\nclock_offset_seconds = 5\n",
    )
    .unwrap();
    let mut child = hush()
        .args(["collector", "serve", "--log-format", "json", "--config"])
        .arg(&config)
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let url = line.split_whitespace().nth(2).unwrap().to_owned();
    // A refusal logs at debug with its status and category as fields.
    assert_eq!(upload(&client(), &url, None, b"x").0, 401);
    assert_eq!(support::terminate(&mut child).code(), Some(0));
    let mut log = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
    let objects: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        objects
            .iter()
            .all(|o| o["level"].is_string() && o.get("timestamp").is_none()),
        "{log}"
    );
    assert!(
        objects.iter().any(|o| o["message"]
            .as_str()
            .unwrap_or("")
            .contains("clock_offset_seconds")
            && o["level"] == "WARN"),
        "{log}"
    );
    assert!(
        objects
            .iter()
            .any(|o| o["status"] == 401 && o["category"] == "missing bearer token"),
        "the event's fields are keys: {log}"
    );
}
