//! The collector over real HTTP on loopback with a real SQLite file: uploads,
//! idempotent retries, every refusal with its status, auth, limits and estimates.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod support;

use hush_report::{Catalog, Encoding, Privatized, Report};
use support::{Collector, client, query_u64, report, today, upload};

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
    assert_eq!(status, 409, "{text}");

    // A second report from the same device for the same period and metric: refused.
    let mut seed = 2;
    let second = loop {
        let r = report(&catalog, day - 1, 2.0, seed);
        if r.metrics()[0].metric() == r1.metrics()[0].metric() {
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
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("already reported"), "{text}");

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
        assert_eq!(status, 422, "{text}");
        assert!(text.contains("epsilon"), "{text}");
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
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("unknown catalog"), "{text}");

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
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("domain"), "{text}");

    // A report from the future.
    let (status, _) = upload(
        &agent,
        &c.url,
        Some(&other),
        &Report::encode_batch(&[report(&catalog, day + 5, 2.0, 8)]),
    );
    assert_eq!(status, 422);

    // Garbage and an unknown wire version: 400.
    assert_eq!(upload(&agent, &c.url, Some(&other), b"\x01garbage").0, 400);
    assert_eq!(upload(&agent, &c.url, Some(&other), &[9, 0, 0]).0, 400);

    // Only the first report was ever stored.
    assert_eq!(query_u64(&c.database(), "SELECT COUNT(*) FROM reports"), 1);
    let conn = rusqlite::Connection::open(c.database()).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");

    // Estimates: admin only, withheld below min_devices.
    let get = |token: &str| {
        let mut r = agent
            .get(format!("{}/v1/estimates", c.url))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    assert_eq!(get(&device).0, 403, "a device token cannot read estimates");
    let (status, text) = get(&admin);
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["rows"].as_array().unwrap().len(), 0);
    assert_eq!(v["withheld_cells"], 1);
    // An admin token cannot upload.
    assert_eq!(upload(&agent, &c.url, Some(&admin), &body).0, 403);
}

#[test]
fn authentication_failures_are_401() {
    let c = Collector::start("");
    let agent = client();
    let body = Report::encode_batch(&[report(&Catalog::builtin(), today() - 1, 2.0, 3)]);
    assert_eq!(upload(&agent, &c.url, None, &body).0, 401);
    assert_eq!(upload(&agent, &c.url, Some("hush_dev_0000"), &body).0, 401);
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
fn oversized_bodies_get_413_and_floods_get_429() {
    let c = Collector::start("max_body_bytes = 4096\ndevice_requests_per_minute = 5\n");
    let agent = client();
    let token = c.token(&[]);
    let (status, _) = upload(&agent, &c.url, Some(&token), &vec![1u8; 10_000]);
    assert_eq!(status, 413);
    let catalog = Catalog::builtin();
    let mut statuses = Vec::new();
    for i in 0..8u64 {
        let body = Report::encode_batch(&[report(&catalog, today() - 10 - i as u32, 2.0, 100 + i)]);
        statuses.push(upload(&agent, &c.url, Some(&token), &body).0);
    }
    // The oversized body was refused before it reached the rate limiter; five
    // requests fit the minute's allowance, the rest get 429.
    assert_eq!(statuses[..5], [200; 5], "{statuses:?}");
    assert_eq!(statuses[5..], [429, 429, 429], "{statuses:?}");
}

#[test]
fn estimates_are_released_once_enough_devices_reported() {
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
    let mut r = agent
        .get(format!("{}/v1/estimates?metric=keystrokes", c.url))
        .header("Authorization", &format!("Bearer {admin}"))
        .call()
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
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
