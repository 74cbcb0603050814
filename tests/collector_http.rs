//! The collector over real HTTP on loopback with a real SQLite file: uploads,
//! idempotent retries, every refusal with its status, auth, limits and estimates.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod support;

use hush_collector::estimate;
use hush_report::{Catalog, Encoding, Privatized, Report};
use support::{Collector, DAY, client, hush, query_u64, report, run_ok, today, upload};

/// The JSON error body of a refusal: its category and nothing else.
fn refusal(category: &str) -> String {
    serde_json::json!({ "error": category }).to_string()
}

/// GET /v1/estimates (with a query) as `token`; returns (status, body).
fn estimates(c: &Collector, query: &str, token: &str) -> (u16, serde_json::Value) {
    let mut r = client()
        .get(format!("{}/v1/estimates{query}", c.url))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    let text = r.body_mut().read_to_string().unwrap();
    (
        r.status().as_u16(),
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
    )
}

#[test]
fn accepts_dedups_and_refuses_with_specific_statuses() {
    let c = Collector::start("min_devices = 3\n");
    let agent = client();
    let device = c.token(&["--cohort", "research"]);
    let other = c.token(&[]);
    let admin = c.token(&["--admin"]);
    let catalog = Catalog::builtin();
    let day = today();

    let r1 = report(&catalog, day - 1, 2.0, 1);
    let body = Report::encode_batch(std::slice::from_ref(&r1));
    let (status, text) = upload(&agent, &c.url, Some(&device), &body);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"accepted\":1"), "{text}");

    // A retry of the same report: acknowledged, not counted again.
    let (status, text) = upload(&agent, &c.url, Some(&device), &body);
    assert_eq!(
        (status, text.contains("\"duplicates\":1")),
        (200, true),
        "{text}"
    );
    assert_eq!(query_u64(&c.database(), "SELECT COUNT(*) FROM reports"), 1);

    // The same report replayed by another device: refused.
    let (status, text) = upload(&agent, &c.url, Some(&other), &body);
    assert_eq!(
        (status, text),
        (409, refusal("report already received from another device"))
    );

    // A second report from the same device for the same period, about another
    // metric: refused, one report per device and period whatever its metric.
    let mut seed = 2;
    let second = loop {
        let r = report(&catalog, day - 1, 2.0, seed);
        if r.metrics()[0].metric() != r1.metrics()[0].metric() {
            break r;
        }
        seed += 1;
    };
    let (status, text) = upload(
        &agent,
        &c.url,
        Some(&device),
        &Report::encode_batch(&[second]),
    );
    assert_eq!(
        (status, text),
        (409, refusal("this device already reported for this period"))
    );

    // Epsilons other than the policy's (2 per report, 4 per value by default),
    // above or below: each would open a cell of its own.
    for eps in [3.0, 1.0] {
        let off_terms = report(&catalog, day - 1, eps, 99);
        let (status, text) = upload(
            &agent,
            &c.url,
            Some(&other),
            &Report::encode_batch(&[off_terms]),
        );
        assert_eq!(
            (status, text),
            (422, refusal("terms differ from this collector's policy"))
        );
    }

    // An unknown catalog: the same metrics with one range changed hash differently.
    let mut metrics = catalog.metrics().to_vec();
    if let Encoding::Numeric { hi, .. } = &mut metrics[0].encoding {
        *hi *= 2.0;
    }
    let foreign = Catalog::new(1, 1, metrics).unwrap();
    let (status, text) = upload(
        &agent,
        &c.url,
        Some(&other),
        &Report::encode_batch(&[report(&foreign, day - 1, 2.0, 5)]),
    );
    assert_eq!((status, text), (422, refusal("unknown catalog")));

    // An out-of-domain value: a valid report whose value is swapped for one the
    // mechanism cannot produce, re-encoded byte for byte.
    let good = report(&catalog, day - 2, 2.0, 7);
    let value = good.metrics()[0].value().clone();
    let bad_value = match value.clone() {
        Privatized::Grid { branch, .. } => Privatized::Grid {
            branch,
            index: 1 << 45,
        },
        Privatized::Hashed { seed, .. } => Privatized::Hashed {
            seed,
            value: 1_000_000,
        },
        Privatized::Bits { words, .. } => Privatized::Bits { len: 3, words },
        Privatized::Value(_) => Privatized::Value(1_000_000),
    };
    let config = bincode::config::standard();
    let old = bincode::serde::encode_to_vec(&value, config).unwrap();
    let new = bincode::serde::encode_to_vec(&bad_value, config).unwrap();
    let mut bytes = good.encode();
    bytes.truncate(bytes.len() - old.len());
    bytes.extend(new);
    let tampered = Report::decode(&bytes).unwrap();
    let (status, text) = upload(
        &agent,
        &c.url,
        Some(&other),
        &Report::encode_batch(&[tampered]),
    );
    assert_eq!((status, text), (422, refusal("invalid report")));

    // A report from the future.
    let (status, text) = upload(
        &agent,
        &c.url,
        Some(&other),
        &Report::encode_batch(&[report(&catalog, day + 5, 2.0, 8)]),
    );
    assert_eq!((status, text), (422, refusal("future period")));

    // Garbage and an unknown wire version: 400, and not a word of the decoder's message.
    for garbage in [&b"\x01garbage"[..], &[9, 0, 0]] {
        assert_eq!(
            upload(&agent, &c.url, Some(&other), garbage),
            (400, refusal("malformed report"))
        );
    }

    // Only the first report was ever stored.
    assert_eq!(query_u64(&c.database(), "SELECT COUNT(*) FROM reports"), 1);
    let conn = support::open_db(c.database());
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");

    // Estimates: admin only; nothing released while the period is open.
    assert_eq!(
        estimates(&c, "", &device),
        (403, serde_json::json!({"error": "wrong kind of token"})),
        "a device token cannot read estimates"
    );
    let (status, v) = estimates(&c, "", &admin);
    assert_eq!(status, 200);
    assert_eq!(v["rows"].as_array().unwrap().len(), 0);
    assert_eq!(v["withheld_cells"], 0, "an open period is not even counted");
    // An admin token cannot upload.
    assert_eq!(
        upload(&agent, &c.url, Some(&admin), &body),
        (403, refusal("wrong kind of token"))
    );

    // A week later the period has closed: its one cell is withheld below min_devices.
    let c = c.restart_days_later(7);
    let (status, v) = estimates(&c, "", &admin);
    assert_eq!(status, 200);
    assert_eq!(v["rows"].as_array().unwrap().len(), 0);
    assert_eq!(v["withheld_cells"], 1, "{v}");
}

#[test]
fn periods_are_accepted_from_the_grace_window_to_tomorrow() {
    let c = Collector::start("");
    let agent = client();
    let device = c.token(&[]);
    let catalog = Catalog::builtin();
    let day = today();
    let send = |period: u32, seed: u64| {
        upload(
            &agent,
            &c.url,
            Some(&device),
            &Report::encode_batch(&[report(&catalog, period, 2.0, seed)]),
        )
    };
    // grace_periods = 7 by default: a missed day is reported up to 7 days later.
    assert_eq!(send(day - 8, 1), (422, refusal("late period")));
    assert_eq!(send(day - 7, 2).0, 200);
    assert_eq!(send(day, 3).0, 200);
    // One period of clock skew is tolerated, not two.
    assert_eq!(send(day + 1, 4).0, 200);
    assert_eq!(send(day + 2, 5), (422, refusal("future period")));
    assert_eq!(query_u64(&c.database(), "SELECT COUNT(*) FROM reports"), 3);
}

#[test]
fn failed_requests_are_limited_per_client_address() {
    // The operators' address, which the limit does not cover, reads the counters.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = Collector::start(&format!(
        "failed_requests_per_minute = 5\nmetrics_listen = \"127.0.0.1:{port}\"\n"
    ));
    let agent = client();
    let catalog = Catalog::builtin();
    let tokens: Vec<String> = (0..3).map(|_| c.token(&[])).collect();
    // Successes cost nothing: many more than five go through.
    for _ in 0..20 {
        assert_eq!(
            agent
                .get(format!("{}/v1/policy", c.url))
                .call()
                .unwrap()
                .status()
                .as_u16(),
            200
        );
    }
    for (i, t) in tokens[..2].iter().enumerate() {
        let body = Report::encode_batch(&[report(&catalog, today() - 1, 2.0, i as u64)]);
        assert_eq!(upload(&agent, &c.url, Some(t), &body).0, 200);
    }
    // Five failures of any kind: unknown tokens (guesses) and malformed bodies.
    for _ in 0..3 {
        assert_eq!(upload(&agent, &c.url, Some("hush_dev_guess"), b"x").0, 401);
    }
    for _ in 0..2 {
        assert_eq!(upload(&agent, &c.url, Some(&tokens[0]), b"x").0, 400);
    }
    // Then this address gets 429 for everything, a valid upload included.
    let body = Report::encode_batch(&[report(&catalog, today() - 1, 2.0, 9)]);
    assert_eq!(
        upload(&agent, &c.url, Some(&tokens[2]), &body),
        (429, refusal("too many requests"))
    );
    let status = agent
        .get(format!("{}/healthz", c.url))
        .call()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 429);
    assert_eq!(query_u64(&c.database(), "SELECT COUNT(*) FROM reports"), 2);
    // The limiter's refusals are counted like any other answer.
    let metrics = agent
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    for line in [
        "hush_requests_refused_total{reason=\"rate_limited\"} 2",
        "hush_requests_refused_total{reason=\"unknown_token\"} 3",
        "hush_requests_refused_total{reason=\"malformed\"} 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "no {line} in {metrics}");
    }
}

#[test]
fn authentication_failures_are_401() {
    let c = Collector::start("");
    let agent = client();
    let body = Report::encode_batch(&[report(&Catalog::builtin(), today() - 1, 2.0, 3)]);
    assert_eq!(
        upload(&agent, &c.url, None, &body),
        (401, refusal("missing bearer token"))
    );
    assert_eq!(
        upload(&agent, &c.url, Some("hush_dev_0000"), &body),
        (401, refusal("unknown or revoked token"))
    );
    let token = c.token(&[]);
    let revoke = support::hush()
        .args(["collector", "token", "revoke", "--config"])
        .arg(c.config())
        .arg(&token)
        .status()
        .unwrap();
    assert!(revoke.success());
    assert_eq!(
        upload(&agent, &c.url, Some(&token), &body).0,
        401,
        "a revoked token"
    );
}

#[test]
fn a_token_revoked_or_erased_after_its_first_upload_stores_nothing() {
    let c = Collector::start("");
    let agent = client();
    let catalog = Catalog::builtin();
    let batch =
        |period: u32, seed: u64| Report::encode_batch(&[report(&catalog, period, 2.0, seed)]);
    let run = |args: &[&str]| support::run_ok(&mut c.command(args));
    // Revoked after the server has learned the token: the writer refuses it.
    let revoked = c.token(&[]);
    assert_eq!(
        upload(&agent, &c.url, Some(&revoked), &batch(today(), 1)).0,
        200
    );
    run(&["token", "revoke", &revoked]);
    assert_eq!(
        upload(&agent, &c.url, Some(&revoked), &batch(today() - 1, 2)),
        (401, refusal("unknown or revoked token"))
    );
    // Erased: its id is the highest, so SQLite gives it to the next device;
    // the erased token must not upload as that device.
    let erased = c.token(&[]);
    assert_eq!(
        upload(&agent, &c.url, Some(&erased), &batch(today(), 3)).0,
        200
    );
    let id = query_u64(&c.database(), "SELECT MAX(id) FROM devices");
    run(&["device", "erase", &erased]);
    let next = c.token(&["--cohort", "other"]);
    assert_eq!(query_u64(&c.database(), "SELECT MAX(id) FROM devices"), id);
    assert_eq!(
        upload(&agent, &c.url, Some(&erased), &batch(today() - 1, 4)),
        (401, refusal("unknown or revoked token"))
    );
    assert_eq!(
        upload(&agent, &c.url, Some(&next), &batch(today() - 1, 5)).0,
        200
    );
    assert_eq!(
        query_u64(
            &c.database(),
            &format!("SELECT COUNT(*) FROM reports WHERE device = {id}")
        ),
        1,
        "only the new device's own report"
    );
    assert_eq!(query_u64(&c.database(), "SELECT COUNT(*) FROM reports"), 2);
}

#[test]
fn oversized_bodies_get_413_and_floods_get_429() {
    let c = Collector::start("max_body_bytes = 4096\ndevice_requests_per_minute = 5\n");
    let agent = client();
    let token = c.token(&[]);
    assert_eq!(
        upload(&agent, &c.url, Some(&token), &vec![1u8; 10_000]),
        (413, refusal("too large"))
    );
    let catalog = Catalog::builtin();
    let mut statuses = Vec::new();
    // Eight periods the grace window accepts, one report each.
    for i in 0..8u64 {
        let body = Report::encode_batch(&[report(&catalog, today() - i as u32, 2.0, 100 + i)]);
        statuses.push(upload(&agent, &c.url, Some(&token), &body).0);
    }
    // The oversized body was refused before it reached the rate limiter; five
    // requests fit the minute's allowance, the rest get 429.
    assert_eq!(statuses[..5], [200; 5], "{statuses:?}");
    assert_eq!(statuses[5..], [429, 429, 429], "{statuses:?}");
}

#[test]
fn estimates_are_released_once_the_grace_window_closes_with_enough_devices() {
    let c = Collector::start("min_devices = 20\n");
    let agent = client();
    let admin = c.token(&["--admin"]);
    let catalog = Catalog::builtin();
    let day = today() - 1;
    // 300 devices, one report each: every metric cell gets about 30.
    for i in 0..300u64 {
        let token = c.token(&["--cohort", "eng"]);
        let (status, text) = upload(
            &agent,
            &c.url,
            Some(&token),
            &Report::encode_batch(&[report(&catalog, day, 2.0, 1000 + i)]),
        );
        assert_eq!(status, 200, "{text}");
    }
    let late = |c: &Collector, seed: u64| {
        let token = c.token(&["--cohort", "late"]);
        let body = Report::encode_batch(&[report(&catalog, day, 2.0, seed)]);
        upload(&client(), &c.url, Some(&token), &body)
    };
    let released = |c: &Collector| {
        let (status, v) = estimates(c, "?metric=keystrokes", &admin);
        assert_eq!(status, 200, "{v}");
        v
    };
    // Open: enough devices, yet nothing is released.
    assert_eq!(released(&c)["rows"].as_array().unwrap().len(), 0);
    // Six days later the period is still open: a late report is accepted, and
    // still nothing is released.
    let c = c.restart_days_later(6);
    assert_eq!(late(&c, 1).0, 200);
    assert_eq!(released(&c)["rows"].as_array().unwrap().len(), 0);
    // Seven days later it has closed: released, and no report can change it any more.
    let c = c.restart_days_later(7);
    assert_eq!(late(&c, 2), (422, refusal("late period")));
    let v = released(&c);
    assert_eq!(v["released_through"], day, "{v}");
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    let row = &rows[0];
    assert_eq!(row["cohort"], "eng");
    assert_eq!(row["bucket"], "mean");
    assert!(row["reports"].as_u64().unwrap() >= 20);
    let (lo, hi, est) = (
        row["ci_low"].as_f64().unwrap(),
        row["ci_high"].as_f64().unwrap(),
        row["estimate"].as_f64().unwrap(),
    );
    assert!(lo < est && est < hi);
    // Keystrokes were seed % 5000 for seeds 1000..1300: true mean 1149.5; the
    // interval covers it unless a 1-in-20 event happened (this seed is fixed).
    assert!(lo < 1149.5 && 1149.5 < hi, "{row}");
}

/// A closed calendar week, pooled: `/v1/estimates?window=week` gives rows
/// dated the week's Monday whose estimate is the reports-weighted average of
/// the *released* day rows (the pooled estimator is the mean of every
/// report's unbiased value, and a withheld day cell's reports stay out, or
/// the week minus its days would give them away), whose report count is
/// theirs summed, and whose standard error is clustered by device. The export
/// writes the same rows into the Monday's partition. Weeks not yet closed are
/// not released, and pruning part of a week takes the week out whole instead
/// of letting it be recomputed from fewer days.
#[test]
fn a_closed_week_pools_every_report_of_its_days() {
    // The Monday two weeks back; the collector's clock starts on its Sunday so
    // that all seven days are open for reports.
    let monday = today() - (today() + 3) % 7 - 14;
    let sunday = monday + 6;
    let offset = |day: u32| (i64::from(day) - i64::from(today())) * DAY;
    let c = Collector::start(&format!(
        "min_devices = 10\nclock_offset_seconds = {}\n",
        offset(sunday)
    ));
    let agent = client();
    let admin = c.token(&["--admin"]);
    let catalog = Catalog::builtin();
    for i in 0..300u64 {
        let reports: Vec<Report> = (monday..=sunday)
            .map(|d| report(&catalog, d, 2.0, 50_000 + 7 * i + u64::from(d - monday)))
            .collect();
        c.device_uploads(&agent, "eng", &reports);
    }
    // Still open: no week row.
    let (status, v) = estimates(&c, "?window=week", &admin);
    assert_eq!(status, 200, "{v}");
    assert!(v["rows"].as_array().unwrap().is_empty(), "{v}");
    // Eight days after its Sunday the whole week has closed.
    let c = c.restart_days_later(offset(sunday + 8) / DAY);
    let (_, week) = estimates(&c, "?window=week", &admin);
    let (_, days) = estimates(&c, &format!("?from={monday}&to={sunday}"), &admin);
    let week = week["rows"].as_array().unwrap().clone();
    let days = days["rows"].as_array().unwrap().clone();
    // About 10 reports a day for the rarest metric: some of its day cells
    // fall below min_devices and are withheld.
    assert!(!week.is_empty());
    let (mut partial, mut quantiles, mut pooled_days) = (0, 0, 0);
    for row in &week {
        assert_eq!(row["window"], "week");
        assert_eq!(row["period"], monday);
        assert_eq!(row["period_start"], estimate::period_start(monday, 86_400));
        let same =
            |d: &&serde_json::Value| d["metric"] == row["metric"] && d["bucket"] == row["bucket"];
        let mine: Vec<&serde_json::Value> = days.iter().filter(same).collect();
        assert!(mine.iter().all(|d| d["window"] == "day"));
        partial += usize::from(mine.len() < 7);
        let n: u64 = mine.iter().map(|d| d["reports"].as_u64().unwrap()).sum();
        assert_eq!(row["reports"], n, "{row}");
        if row["kind"] == "distribution" && row["bucket_index"] == -1 {
            // A quantile is no average of the days' quantiles: it is read
            // off the pooled distribution, inside its own interval.
            // JSON has no infinity: an unbounded end is null.
            let end = |k: &str| row[k].as_f64().unwrap_or(f64::INFINITY);
            let (lo, e, hi) = (end("ci_low"), end("estimate"), end("ci_high"));
            assert!(lo <= e && e <= hi && lo.is_finite(), "{row}");
            quantiles += 1;
            continue;
        }
        let weighted: f64 = mine
            .iter()
            .map(|d| d["reports"].as_f64().unwrap() * d["estimate"].as_f64().unwrap())
            .sum::<f64>()
            / n as f64;
        let estimate = row["estimate"].as_f64().unwrap();
        assert!(
            (estimate - weighted).abs() <= 1e-9 * weighted.abs().max(1.0),
            "{row}: {weighted}"
        );
        let se = row["std_error"].as_f64().unwrap();
        assert!(se > 0.0 && se.is_finite(), "{row}");
        // Several days' reports: the pooled interval is narrower than any
        // day's. (A week whose only released day is one cell holds that
        // cell's reports alone, estimated another way: nothing to compare.)
        let narrowest_day = mine
            .iter()
            .map(|d| d["std_error"].as_f64().unwrap())
            .fold(f64::INFINITY, f64::min);
        assert!(se < narrowest_day || mine.len() == 1, "{row}");
        pooled_days += usize::from(mine.len() > 1);
    }
    assert!(quantiles > 0, "a week of a distribution has quantile rows");
    assert!(pooled_days > 0, "some week rows pool several released days");
    assert!(
        partial > 0,
        "some metric had a withheld day: the test must cover it"
    );
    // The export holds the same rows in the Monday's partition.
    let out = c.dir.path().join("weeks");
    run_ok(
        hush()
            .args([
                "collector",
                "export",
                "--format",
                "jsonl",
                "--windows",
                "week",
                "--config",
            ])
            .arg(c.config())
            .arg("--out")
            .arg(&out),
    );
    let file = out
        .join(format!("period={}", estimate::period_start(monday, 86_400)))
        .join("part-0.jsonl");
    let exported = std::fs::read_to_string(&file).unwrap();
    assert_eq!(exported.lines().count(), week.len());
    assert!(exported.lines().all(|l| l.contains("\"window\":\"week\"")));
    // A bad window is a 400 that says which windows exist.
    let (status, v) = estimates(&c, "?window=fortnight", &admin);
    assert_eq!(status, 400, "{v}");
    // Pruning the first days of the week: the week is withheld, not
    // recomputed from the days left; the day rows left stay as they were.
    let cut = estimate::period_start(monday + 3, 86_400);
    run_ok(&mut c.command(&["prune", "--before", &cut]));
    let (_, after) = estimates(&c, "?window=week", &admin);
    assert!(after["rows"].as_array().unwrap().is_empty(), "{after}");
    let (_, days_after) = estimates(&c, &format!("?from={}&to={sunday}", monday + 3), &admin);
    let kept: Vec<&serde_json::Value> = days
        .iter()
        .filter(|d| d["period"].as_u64().unwrap() >= u64::from(monday + 3))
        .collect();
    let left: Vec<&serde_json::Value> = days_after["rows"].as_array().unwrap().iter().collect();
    assert_eq!(left, kept);
}
