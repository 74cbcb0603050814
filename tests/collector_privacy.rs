//! What the collector keeps beyond the randomized reports, which the employer
//! running it could use against the people it measures: no arrival times, no
//! client addresses (in the database or its log), a private database file, a
//! schema version it checks, and a load generator that never mixes its
//! reports into real data.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod support;

use std::os::unix::fs::PermissionsExt;

use hush_report::{Catalog, Report};
use support::{Collector, client, query_u64, report, today, upload};

/// Words in a column name that would mean a report's arrival or its sender's
/// network identity.
const SHAPE_WORDS: [&str; 12] = [
    "received",
    "arrival",
    "arrived",
    "seen",
    "time",
    "timestamp",
    "ip",
    "addr",
    "address",
    "host",
    "agent",
    "useragent",
];

fn columns(conn: &rusqlite::Connection, table: &str) -> Vec<String> {
    conn.prepare(&format!("PRAGMA table_info({table})"))
        .unwrap()
        .query_map([], |r| r.get::<_, String>(1))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Uploads a few valid and a few refused reports, as the tests below need.
fn some_traffic(c: &Collector) {
    let agent = client();
    let catalog = Catalog::builtin();
    let device = c.token(&[]);
    for (i, day) in [today() - 2, today() - 1].into_iter().enumerate() {
        let body = Report::encode_batch(&[report(&catalog, day, 2.0, i as u64)]);
        assert_eq!(upload(&agent, &c.url, Some(&device), &body).0, 200);
        // A retry: acknowledged as a duplicate.
        assert_eq!(upload(&agent, &c.url, Some(&device), &body).0, 200);
    }
    let second = Report::encode_batch(&[report(&catalog, today() - 1, 2.0, 7)]);
    assert_eq!(upload(&agent, &c.url, Some(&device), &second).0, 409);
    let late = Report::encode_batch(&[report(&catalog, today() - 30, 2.0, 8)]);
    assert_eq!(upload(&agent, &c.url, Some(&device), &late).0, 422);
    assert_eq!(upload(&agent, &c.url, Some(&device), b"\x01junk").0, 400);
    assert_eq!(upload(&agent, &c.url, Some("hush_dev_nope"), b"x").0, 401);
    assert_eq!(upload(&agent, &c.url, None, b"x").0, 401);
}

#[test]
fn the_database_keeps_no_arrival_times_or_addresses_and_is_private() {
    let c = Collector::start("");
    some_traffic(&c);
    let conn = support::open_db(c.database());

    // The report tables hold exactly what the estimates and erasure need.
    assert_eq!(
        columns(&conn, "reports"),
        ["id", "device", "period", "body"]
    );
    assert_eq!(
        columns(&conn, "cells"),
        [
            "catalog",
            "metric",
            "period",
            "cohort",
            "epsilon_bits",
            "epsilon_perm_bits",
            "state"
        ]
    );
    // No table anywhere has a column for arrival times or network identities.
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(tables.contains(&"reports".to_owned()), "{tables:?}");
    for table in &tables {
        for column in columns(&conn, table) {
            assert!(
                !column
                    .split('_')
                    .any(|word| SHAPE_WORDS.contains(&word.to_lowercase().as_str())),
                "{table}.{column} could record when or from where a report came"
            );
        }
    }
    let schema: String = conn
        .prepare("SELECT group_concat(sql, ';') FROM sqlite_master")
        .unwrap()
        .query_row([], |r| r.get(0))
        .unwrap();
    assert!(!schema.contains("received_at"), "{schema}");
    // Reports are ordered by their random ids, not by arrival: no rowid.
    assert!(schema.contains("WITHOUT ROWID"), "{schema}");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, hush_collector::store::SCHEMA_VERSION);

    // The database and its WAL and shared-memory files: owner only.
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", c.database().display());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{path} has mode {mode:o}");
    }
}

#[test]
fn the_write_ahead_log_is_emptied_once_uploads_pause() {
    // The log holds page images in commit order, which is arrival order; it
    // must not keep them on disk once the collector is idle.
    let c = Collector::start("");
    some_traffic(&c);
    let wal = c.database().with_extension("sqlite-wal");
    let shm = c.database().with_extension("sqlite-shm");
    // The log's index (the -shm file) must not list which pages the commits
    // wrote, in their order, either: in 32 KiB blocks, the first after a
    // 136-byte header, one 32-bit page number per frame (4,062 in the first
    // block, 4,096 in each later one). Only page 1 (the scrubbing commit's)
    // may remain. (Read from this process: a collector reading its own
    // index this way would drop its locks on it.)
    let listed = || -> Vec<u32> {
        let index = std::fs::read(&shm).unwrap();
        index
            .chunks(32_768)
            .enumerate()
            .flat_map(|(block, bytes)| {
                let (from, frames) = if block == 0 { (136, 4062) } else { (0, 4096) };
                bytes[from..from + 4 * frames].chunks(4)
            })
            .map(|b| u32::from_ne_bytes(b.try_into().unwrap()))
            .filter(|&page| page != 0)
            .collect()
    };
    let scrubbed =
        || std::fs::metadata(&wal).is_ok_and(|m| m.len() == 0) && listed().iter().all(|&p| p == 1);
    assert!(
        !scrubbed(),
        "the traffic left nothing to empty: the test tests nothing"
    );
    // A health checker asking all along (each answer reused for 1 s, each
    // probe writing nothing) must not keep the log from being emptied.
    let readyz = format!("{}/readyz", c.url);
    let emptied = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(support::client().get(&readyz).call().unwrap().status(), 200);
        scrubbed()
    });
    assert!(
        emptied,
        "after 10 s the log is {:?} bytes and its index lists pages {:?}",
        std::fs::metadata(&wal).map(|m| m.len()),
        listed()
    );
    // And it still holds every report.
    assert_eq!(query_u64(&c.database(), "SELECT COUNT(*) FROM reports"), 2);
}

#[test]
fn the_log_names_no_client_address_and_no_time_even_at_debug() {
    let mut c = Collector::start_logged("");
    some_traffic(&c);
    c.stop();
    let log = c.log();
    // Debug logging was on: the refusals' details are there...
    assert!(log.contains("malformed report"), "{log}");
    assert!(log.contains("late period"), "{log}");
    // ...but no client address, and no time of day or date a request came at.
    assert!(!log.contains("127.0.0.1"), "{log}");
    let bytes = log.as_bytes();
    let digit = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_digit);
    for i in 0..bytes.len() {
        let clock = digit(i)
            && digit(i + 1)
            && bytes[i + 2] == b':'
            && digit(i + 3)
            && digit(i + 4)
            && bytes.get(i + 5) == Some(&b':');
        assert!(!clock, "a time of day in the log: {log}");
    }
    let date = hush_collector::estimate::period_start(today(), 86_400);
    assert!(!log.contains(&date), "today's date in the log: {log}");
    // The server's own address is named once, on the first line of stdout.
    let stdout = c.stdout();
    let (first, rest) = stdout.split_once('\n').unwrap();
    assert!(
        first.starts_with("listening on http://127.0.0.1:"),
        "{first}"
    );
    assert!(!rest.contains("127.0.0.1"), "{stdout}");
}

#[test]
fn a_database_of_an_older_schema_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // The unversioned schema, with its arrival times.
    support::open_db(dir.path().join("collector.sqlite"))
        .execute_batch(
            "CREATE TABLE reports (id BLOB PRIMARY KEY, device INTEGER NOT NULL, period INTEGER NOT NULL, received_at INTEGER NOT NULL, body BLOB NOT NULL) WITHOUT ROWID;",
        )
        .unwrap();
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\ndatabase = \"collector.sqlite\"\n",
    )
    .unwrap();
    for args in [
        &["serve"][..],
        &["export", "--out", dir.path().join("out").to_str().unwrap()],
    ] {
        let out = support::hush()
            .arg("collector")
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} ran on an old database");
        assert!(
            stderr.contains("older Hush") && stderr.contains("export it"),
            "{args:?}: {stderr}"
        );
    }
}

fn loadgen(c: &Collector, reports: &str) -> std::process::Output {
    c.command(&[
        "loadgen",
        "--json",
        "--reports",
        reports,
        "--concurrency",
        "2",
        "--url",
        &c.url,
    ])
    .output()
    .unwrap()
}

#[test]
fn loadgen_runs_only_against_its_own_data_and_revokes_its_tokens() {
    // Against its own database, twice: each run mints new tokens from the OS
    // generator (a fixed seed would mint the same tokens twice), sends at most
    // one report per device and open period, and revokes its tokens.
    let own = Collector::start("");
    for run in 1..=2u64 {
        let out = loadgen(&own, "200");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(result["accepted"], 200, "{result}");
        assert_eq!(result["devices"], 25, "200 reports over 8 open periods");
        // The collector runs here, so its CPU time was read (a few 10 ms ticks at most).
        let cpu = result["collector_cpu_seconds"].as_f64().unwrap();
        let per_1000 = result["collector_cpu_seconds_per_1000_reports"]
            .as_f64()
            .unwrap();
        assert!((0.0..5.0).contains(&cpu), "{result}");
        assert!((per_1000 - cpu * 1000.0 / 200.0).abs() < 1e-9, "{result}");
        let db = own.database();
        assert_eq!(query_u64(&db, "SELECT COUNT(*) FROM reports"), 200 * run);
        assert_eq!(
            query_u64(&db, "SELECT COUNT(*) FROM devices WHERE loadgen = 1"),
            25 * run
        );
        assert_eq!(
            query_u64(&db, "SELECT COUNT(*) FROM devices WHERE revoked_at IS NULL"),
            0,
            "every loadgen token is revoked when the run ends"
        );
    }

    // A database with one real device: refused, naming the database, and
    // nothing is minted or sent.
    let real = Collector::start("");
    real.token(&[]);
    let out = loadgen(&real, "100");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let db = real.database();
    assert!(
        stderr.contains(&db.display().to_string()) && stderr.contains("did not create"),
        "{stderr}"
    );
    assert_eq!(query_u64(&db, "SELECT COUNT(*) FROM devices"), 1);
    assert_eq!(query_u64(&db, "SELECT COUNT(*) FROM reports"), 0);

    // Asking for fewer devices than the grace window allows is a usage error.
    let out = own
        .command(&[
            "loadgen",
            "--reports",
            "100",
            "--devices",
            "10",
            "--url",
            &own.url,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("at least 13 devices"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
