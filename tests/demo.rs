//! The README's first command, `hush demo`, end to end on a small fleet: it
//! finishes, and what it writes is readable by name, as a researcher reads it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod support;

use std::collections::HashMap;

use support::{hush, parse_csv, run_ok};

#[test]
fn the_demo_writes_a_summary_readable_by_header_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    run_ok(hush().args([
        "demo",
        "--devices",
        "700",
        "--days",
        "2",
        "--threads",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]));

    let records = parse_csv(&std::fs::read_to_string(out.join("estimates.csv")).unwrap());
    let (header, rows) = records.split_first().expect("a header line");
    let column: HashMap<&str, usize> = header
        .iter()
        .enumerate()
        .map(|(i, h)| (h.as_str(), i))
        .collect();
    assert_eq!(
        column.len(),
        header.len(),
        "header names are unique: {header:?}"
    );
    assert!(!rows.is_empty(), "some cells reach the release threshold");
    let catalog = hush_report::Catalog::builtin();
    for row in rows {
        assert_eq!(
            row.len(),
            header.len(),
            "every row has one field per header name: {row:?}"
        );
        let get = |name: &str| {
            row[*column
                .get(name)
                .unwrap_or_else(|| panic!("no column {name}"))]
            .as_str()
        };
        let date = get("period_start");
        assert!(
            date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-',
            "period_start is a date: {date}"
        );
        assert!(catalog.metric(get("metric")).is_some(), "{row:?}");
        let number = |name: &str| -> f64 {
            get(name)
                .parse()
                .unwrap_or_else(|e| panic!("{name} = {:?}: {e}", get(name)))
        };
        let (lo, estimate, hi) = (number("ci_low"), number("estimate"), number("ci_high"));
        assert!(lo <= estimate && estimate <= hi, "{row:?}");
        let truth = number("truth");
        let covered = get("covered");
        assert_eq!(covered == "true", lo <= truth && truth <= hi, "{row:?}");
        assert!(number("reports") >= 50.0, "only released cells: {row:?}");
        assert!(number("epsilon") > 0.0);
    }
    for artefact in [
        "estimates.svg",
        "dataset-parquet/_README.md",
        "dataset-csv/_README.md",
    ] {
        assert!(out.join(artefact).is_file(), "{artefact} written");
    }
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
fn days_from_civil(date: &str) -> i64 {
    let mut parts = date.split('-').map(|p| p.parse::<u32>().unwrap());
    let (y, m, d) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    hush_report::days_from_civil(i64::from(y), m, d)
}

/// `hush plan` predicts, before any report, the 95% half-widths the demo's
/// collector then reports for the same fleet: per working day (each count's
/// mean, each categorical metric's largest bucket, each distribution's
/// median) and pooled over the working days. Both are shares of the truth,
/// so the two populations (the plan's sample and the demo's fleet) need not
/// be the same people.
///
/// Tolerances: a mean's or bucket's half-width rests on about `n = devices x
/// share` reports, so its relative standard error is near `1 / sqrt(2 n)`
/// (4% at 4,000 devices and a 7.8% share, averaged over five days 2%); the
/// plan's sample of 2,000 people adds about as much. 10% is three of those
/// combined per day; the pooled figures, from one estimate each, get 15% per
/// metric and 10% on average. A median's interval is the inverted band, whose
/// width moves with where the noisy estimate falls among the bucket edges:
/// one day's width varies by 12-26% (coefficient of variation over 30
/// working days, `hush demo --devices 4000 --days 42 --seed 3`), the mean of
/// five by at most 12%; and the plan inverts the band around the population's
/// distribution function where the collector inverts it around a noisy one
/// (measured over predicted 0.70 to 0.99 per day here). So a median gets 35%
/// per day (about 3 of those standard errors) and 50% for its single pooled
/// width, and the six pooled medians 20% on average.
#[test]
fn plan_predicts_the_half_widths_the_demo_reports() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let devices = "4000";
    run_ok(hush().args([
        "demo",
        "--devices",
        devices,
        "--seed",
        "3",
        "--threads",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]));
    let plan = run_ok(hush().args(["plan", "--devices", devices, "--csv", "--seed", "3"]));
    let plan = parse_csv(&String::from_utf8(plan.stdout).unwrap());
    let records = parse_csv(&std::fs::read_to_string(out.join("estimates.csv")).unwrap());
    let index = |header: &[String], name: &str| header.iter().position(|h| h == name).unwrap();
    let (ph, plan_rows) = plan.split_first().unwrap();
    let (dh, demo_rows) = records.split_first().unwrap();
    let field = |row: &[String], header: &[String], name: &str| row[index(header, name)].clone();
    let number = |row: &[String], header: &[String], name: &str| -> f64 {
        field(row, header, name).parse().unwrap()
    };
    assert_eq!(plan_rows.len(), 16, "one plan row per metric");
    let (mut pooled_ratios, mut quantile_ratios, mut report) =
        (Vec::new(), Vec::new(), String::new());
    for p in plan_rows {
        let (metric, target) = (field(p, ph, "metric"), field(p, ph, "for"));
        let mine = |window: &str| {
            demo_rows
                .iter()
                .filter(|r| field(r, dh, "metric") == metric && field(r, dh, "bucket") == target)
                .filter(|r| field(r, dh, "window") == window)
                .filter(|r| (days_from_civil(&field(r, dh, "period_start")) + 3) % 7 < 5)
                .map(|r| {
                    let half = 0.5 * (number(r, dh, "ci_high") - number(r, dh, "ci_low"));
                    half / number(r, dh, "truth")
                })
                .collect::<Vec<f64>>()
        };
        let days = mine("day");
        assert_eq!(days.len(), 5, "{metric}: five working days in any seven");
        let day = days.iter().sum::<f64>() / 5.0;
        let predicted_day = number(p, ph, "day_half_width");
        let pooled = mine("working days");
        assert_eq!(pooled.len(), 1, "{metric}: one pooled row");
        let predicted_week = number(p, ph, "week_half_width");
        let (rd, rw) = (day / predicted_day, pooled[0] / predicted_week);
        report.push_str(&format!("{metric} {target}: day {rd:.3}, pooled {rw:.3}\n"));
        if target == "p50" {
            assert!((rd - 1.0).abs() < 0.35, "{report}");
            assert!((rw - 1.0).abs() < 0.50, "{report}");
            quantile_ratios.push(rw);
        } else {
            assert!((rd - 1.0).abs() < 0.10, "{report}");
            assert!((rw - 1.0).abs() < 0.15, "{report}");
            pooled_ratios.push(rw);
        }
    }
    assert_eq!(quantile_ratios.len(), 6, "{report}one median per count");
    for (ratios, tolerance) in [(&pooled_ratios, 0.10), (&quantile_ratios, 0.20)] {
        let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
        assert!(
            (mean - 1.0).abs() < tolerance,
            "{report}mean pooled ratio {mean}"
        );
    }
    println!("{report}");
}

/// `hush demo --serve` keeps its collector running on the demo's data, with
/// every simulated day released, behind a sign-in link that works once; it
/// stops on SIGTERM.
#[test]
fn the_demo_serves_its_dashboard_behind_a_one_time_link() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut demo = hush()
        .args(["demo", "--devices", "700", "--days", "2", "--threads", "2"])
        .args(["--serve", "--listen", "127.0.0.1:0", "--out"])
        .arg(dir.path().join("demo"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(demo.stdout.take().unwrap()).lines();
    let link = loop {
        let line = lines
            .next()
            .expect("the demo printed no sign-in link")
            .unwrap();
        if let Some(link) = line.strip_prefix("sign in once with: ") {
            break link.to_owned();
        }
    };
    let browser: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let mut form = browser.get(&link).call().unwrap();
    let login = form
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = form.body_mut().read_to_string().unwrap();
    let field = |name: &str| {
        let key = format!("name=\"{name}\" value=\"");
        let at = page.find(&key).unwrap() + key.len();
        page[at..].split('"').next().unwrap().to_owned()
    };
    let base = link.split("/dashboard").next().unwrap().to_owned();
    let signed = browser
        .post(format!("{base}/dashboard/login"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Cookie", &login)
        .send(format!(
            "token={}&once=true&csrf={}",
            field("token"),
            field("csrf")
        ))
        .unwrap();
    assert_eq!(signed.status(), 303);
    let session = signed
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("hush_session="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    // The demo's days are released: the metrics most reports carry have charts.
    let charted = hush_report::Catalog::builtin()
        .metrics()
        .iter()
        .filter(|m| {
            let mut page = browser
                .get(format!("{base}/dashboard?metric={}", m.name))
                .header("Cookie", &session)
                .call()
                .unwrap();
            assert_eq!(page.status(), 200);
            page.body_mut()
                .read_to_string()
                .unwrap()
                .contains("<svg id=\"chart\"")
        })
        .count();
    assert!(charted > 0, "no metric of the demo is released");
    assert!(support::terminate(&mut demo).success());
}
