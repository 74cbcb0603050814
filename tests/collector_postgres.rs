//! The collector on PostgreSQL, against a real server (a throwaway cluster
//! per test): the same answers, estimates and byte-identical Parquet as
//! SQLite for the same uploads; `hush collector migrate`; migrations under
//! concurrency; 503 (never 500 or a hang) while the database is down; two
//! collectors sharing the load with one killed mid-load; and the reseal
//! that takes the order of arrival out of closed periods.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hush_collector::store::{self, Database};
use hush_collector::{Catalogs, PeriodClock};
use hush_report::{Catalog, Report};
use support::postgres::PgCluster;
use support::{Collector, client, hush, make_certificates, report, run_ok, today, upload};

/// Every file under `dir`, by relative path, with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(path.strip_prefix(dir).unwrap().to_path_buf(), bytes);
            }
        }
    }
    out
}

/// GET /v1/estimates as `token`.
fn estimates(c: &Collector, query: &str, token: &str) -> (u16, String) {
    let mut r = client()
        .get(format!("{}/v1/estimates{query}", c.url))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

/// The same script of uploads against a collector: what each request
/// answered. Devices and their order are the same whatever the backend.
fn script(c: &Collector, days: [u32; 2]) -> Vec<(u16, String)> {
    let agent = client();
    let catalog = Catalog::builtin();
    let mut answers = Vec::new();
    let tokens: Vec<String> = (0..12)
        .map(|i| c.token(&["--cohort", if i % 3 == 0 { "red" } else { "blue" }]))
        .collect();
    let mut say = |(status, text): (u16, String)| answers.push((status, text));
    for (i, token) in tokens.iter().enumerate() {
        let reports: Vec<Report> = days
            .iter()
            .enumerate()
            .map(|(d, &day)| report(&catalog, day, 2.0, 500 + 2 * i as u64 + d as u64))
            .collect();
        say(upload(
            &agent,
            &c.url,
            Some(token),
            &Report::encode_batch(&reports),
        ));
    }
    let first = report(&catalog, days[0], 2.0, 500);
    // A retry: acknowledged as a duplicate.
    say(upload(
        &agent,
        &c.url,
        Some(&tokens[0]),
        &Report::encode_batch(std::slice::from_ref(&first)),
    ));
    // The same report from another device: refused.
    say(upload(
        &agent,
        &c.url,
        Some(&tokens[1]),
        &Report::encode_batch(std::slice::from_ref(&first)),
    ));
    // A second report for a period the device has reported: refused.
    let second = report(&catalog, days[0], 2.0, 9_000);
    say(upload(
        &agent,
        &c.url,
        Some(&tokens[0]),
        &Report::encode_batch(&[second]),
    ));
    // One refused report refuses its upload whole: the new report after it
    // is not stored either.
    let taken = report(&catalog, days[0], 2.0, 9_005);
    let beside = report(&catalog, today() - 3, 2.0, 9_006);
    say(upload(
        &agent,
        &c.url,
        Some(&tokens[0]),
        &Report::encode_batch(&[taken, beside]),
    ));
    // One upload with a report twice and a new one: stored once, one duplicate.
    let fresh = report(&catalog, today(), 2.0, 9_001);
    say(upload(
        &agent,
        &c.url,
        Some(&tokens[1]),
        &Report::encode_batch(&[fresh.clone(), fresh]),
    ));
    // Two reports for one period in one upload: refused whole, nothing stored.
    let (a, b) = (
        report(&catalog, today(), 2.0, 9_002),
        report(&catalog, today(), 2.0, 9_003),
    );
    say(upload(
        &agent,
        &c.url,
        Some(&tokens[2]),
        &Report::encode_batch(&[a, b]),
    ));
    // A revoked device: 401.
    run_ok(&mut c.command(&["token", "revoke", &tokens[3]]));
    let late = report(&catalog, today(), 2.0, 9_004);
    say(upload(
        &agent,
        &c.url,
        Some(&tokens[3]),
        &Report::encode_batch(&[late]),
    ));
    // An erased device: its reports leave every cell.
    run_ok(&mut c.command(&["device", "erase", &tokens[4]]));
    answers
}

fn open(database: &Database) -> Box<dyn store::Store> {
    store::open(database).unwrap()
}

#[test]
#[ignore = "needs PostgreSQL (Debian's postgresql; installed by .ci/run)"]
fn postgres_answers_estimates_and_exports_as_sqlite_does_and_migrate_keeps_them() {
    let mut cluster = PgCluster::start();
    let (url, migrated_url) = (cluster.create_db(), cluster.create_db());
    let extra = "min_devices = 3\n";
    let sqlite = Collector::start(extra);
    let pg = Collector::start_on(&url, extra);
    let days = [today() - 2, today() - 1];
    let answers = script(&sqlite, days);
    assert_eq!(
        answers.iter().filter(|(s, _)| *s == 200).count(),
        14,
        "{answers:?}"
    );
    assert_eq!(script(&pg, days), answers);

    // The stored cells are the same, and equal to a recount of the reports.
    let catalogs = Catalogs::builtin();
    let (lite_db, pg_db) = (Database::Sqlite(sqlite.database()), Database::parse(&url));
    let cells = open(&lite_db).all_cells(None, None).unwrap();
    assert_eq!(open(&pg_db).all_cells(None, None).unwrap(), cells);
    let recount = store::recount_cells(open(&pg_db).as_mut(), &catalogs).unwrap();
    assert_eq!(recount, cells.iter().cloned().collect::<BTreeMap<_, _>>());
    assert_eq!(
        open(&pg_db).report_count().unwrap(),
        open(&lite_db).report_count().unwrap()
    );

    // Moving the SQLite database up gives a third copy (read in one
    // transaction, so the running collector cannot tear it).
    let out = run_ok(
        hush()
            .args(["collector", "migrate", "--from"])
            .arg(sqlite.database())
            .args(["--to", &migrated_url]),
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("copied 11 devices") && said.contains(" reports and "),
        "{said}"
    );
    let again = hush()
        .args(["collector", "migrate", "--from"])
        .arg(sqlite.database())
        .args(["--to", &migrated_url])
        .output()
        .unwrap();
    assert_eq!(
        again.status.code(),
        Some(2),
        "a second copy into a full database is refused"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds collector data"));
    let migrated = Database::parse(&migrated_url);
    assert_eq!(open(&migrated).all_cells(None, None).unwrap(), cells);

    // Past the grace window: the same estimates and byte-identical exports.
    let moved = Collector::start_on(&migrated_url, extra);
    let mut outputs = Vec::new();
    for c in [sqlite, pg, moved] {
        let admin = c.token(&["--admin"]);
        let c = c.restart_days_later(9);
        let (status, body) = estimates(&c, "?window=day", &admin);
        assert_eq!(status, 200, "{body}");
        let out = c.dir.path().join("export");
        let out_arg = out.to_str().unwrap();
        run_ok(&mut c.command(&[
            "export",
            "--format",
            "parquet",
            "--windows",
            "day,week,month",
            "--out",
            out_arg,
        ]));
        outputs.push((body, files(&out)));
    }
    let (body, tree) = &outputs[0];
    assert!(
        body.contains("\"rows\":[{"),
        "something is released: {body}"
    );
    assert!(
        tree.keys()
            .any(|p| p.extension().is_some_and(|e| e == "parquet"))
    );
    for (other_body, other_tree) in &outputs[1..] {
        assert_eq!(other_body, body);
        assert_eq!(
            other_tree.keys().collect::<Vec<_>>(),
            tree.keys().collect::<Vec<_>>()
        );
        for (path, bytes) in tree {
            assert!(other_tree[path] == *bytes, "{} differs", path.display());
        }
    }
}

#[test]
#[ignore = "needs PostgreSQL (Debian's postgresql; installed by .ci/run)"]
fn migrations_run_once_and_unsafe_servers_or_newer_schemas_are_refused() {
    let mut cluster = PgCluster::start();
    let url = cluster.create_db();
    let database = Database::parse(&url);
    // Four collectors starting at once migrate once.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| open(&database));
        }
    });
    let name = url.rsplit('/').next().unwrap();
    assert_eq!(
        cluster.psql(name, "SELECT count(*), max(version) FROM hush_migrations"),
        "1|1"
    );
    // Export and the like never create a schema.
    let empty = cluster.create_db();
    let e = store::open_existing(&Database::parse(&empty))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no collector schema"), "{e}");
    // A database of a newer Hush.
    cluster.psql(name, "INSERT INTO hush_migrations VALUES (99)");
    let e = store::open(&database).err().unwrap().to_string();
    assert!(e.contains("newer Hush"), "{e}");
    // A server that timestamps every commit would give each report its arrival time.
    cluster.psql("postgres", "ALTER SYSTEM SET track_commit_timestamp = on");
    cluster.stop("fast");
    cluster.resume();
    let fresh = cluster.create_db();
    let e = store::open(&Database::parse(&fresh))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("track_commit_timestamp"), "{e}");
}

#[test]
#[ignore = "needs PostgreSQL (Debian's postgresql; installed by .ci/run)"]
fn while_postgres_is_down_uploads_get_503_and_work_again_after() {
    let mut cluster = PgCluster::start();
    let url = cluster.create_db();
    let c = Collector::start_on(&url, "");
    let agent = client();
    let catalog = Catalog::builtin();
    let token = c.token(&[]);
    let body =
        |seed: u32| Report::encode_batch(&[report(&catalog, today() - seed, 2.0, seed.into())]);
    assert_eq!(upload(&agent, &c.url, Some(&token), &body(1)).0, 200);
    cluster.stop("fast");
    let started = Instant::now();
    let (status, text) = upload(&agent, &c.url, Some(&token), &body(2));
    assert_eq!(status, 503, "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "answered in {:?}",
        started.elapsed()
    );
    let ready = agent.get(format!("{}/readyz", c.url)).call().unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    cluster.resume();
    // The writer and the readers connect again on their next use.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let (status, _) = upload(&agent, &c.url, Some(&token), &body(2));
        if status == 200 || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status, 200);
    assert_eq!(open(&Database::parse(&url)).report_count().unwrap(), 2);
}

/// The ids (hex) in an acked file, each with how often it was acknowledged.
fn acked(path: &Path) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        *out.entry(line.trim().to_owned()).or_insert(0) += 1;
    }
    out
}

/// Starts `hush collector loadgen` sending `reports` across collectors `a`
/// and `b` (resending after a 503 or no answer, as agents do), writing the
/// acknowledged ids to a file in `a`'s directory; returns once 2,000 are
/// acknowledged, with the process and the file.
fn load_until_2000_acked(
    a: &Collector,
    b: &Collector,
    reports: u32,
) -> (std::process::Child, PathBuf) {
    let acked_file = a.dir.path().join("acked");
    let reports = reports.to_string();
    let load = hush()
        .args(["collector", "loadgen", "--config"])
        .arg(a.config())
        .args([
            "--url",
            &a.url,
            "--url",
            &b.url,
            "--reports",
            &reports,
            "--batch",
            "20",
            "--concurrency",
            "8",
            "--retry-for",
            "60",
            "--acked",
        ])
        .arg(&acked_file)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked(&acked_file).len() < 2_000 {
        assert!(
            Instant::now() < deadline,
            "the load never reached 2,000 acknowledgements"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (load, acked_file)
}

/// Waits for the load to end, then checks that all `reports` were
/// acknowledged, each stored exactly once, and that the cells are the sum
/// of the stored reports.
fn every_acknowledged_report_stored_once(
    load: std::process::Child,
    acked_file: &Path,
    url: &str,
    reports: usize,
) {
    let out = load.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!("{reports} reports acknowledged")) && said.contains("0 failed"),
        "{said}"
    );
    let mut db = open(&Database::parse(url));
    let stored: std::collections::BTreeSet<String> = db
        .stored_reports(0, u32::MAX)
        .unwrap()
        .into_iter()
        .map(|(_, _, _, r)| r.id().to_string())
        .collect();
    let acks = acked(acked_file);
    assert_eq!(acks.len(), reports);
    assert!(
        acks.keys().all(|id| stored.contains(id)),
        "an acknowledged report is missing"
    );
    assert_eq!(
        db.report_count().unwrap(),
        reports as u64,
        "a report stored twice or a stray one"
    );
    let recount = store::recount_cells(db.as_mut(), &Catalogs::builtin()).unwrap();
    let cells: BTreeMap<_, _> = db.all_cells(None, None).unwrap().into_iter().collect();
    assert_eq!(cells, recount);
}

#[test]
#[ignore = "needs PostgreSQL (Debian's postgresql; installed by .ci/run)"]
fn two_collectors_share_the_load_and_one_killed_loses_nothing_acknowledged() {
    let mut cluster = PgCluster::start();
    let url = cluster.create_db();
    let a = Collector::start_on(&url, "");
    let b = Collector::start_on(&url, "");
    let (load, acked_file) = load_until_2000_acked(&a, &b, 12_000);
    // The acked file lives in its directory, which must outlive the test.
    let _a_dir = a.kill();
    every_acknowledged_report_stored_once(load, &acked_file, &url, 12_000);
    drop(b);
}

#[test]
#[ignore = "needs PostgreSQL (Debian's postgresql; installed by .ci/run)"]
fn postgres_restarted_under_load_loses_nothing_acknowledged() {
    let mut cluster = PgCluster::start();
    let url = cluster.create_db();
    let a = Collector::start_on(&url, "");
    let b = Collector::start_on(&url, "");
    let (load, acked_file) = load_until_2000_acked(&a, &b, 16_000);
    let token = a.token(&[]);
    // A crash of the server, not a clean shutdown.
    cluster.stop("immediate");
    let agent = client();
    let started = Instant::now();
    let ready = agent.get(format!("{}/readyz", b.url)).call().unwrap();
    assert_eq!(
        ready.status().as_u16(),
        503,
        "readyz while the database is down"
    );
    let body = Report::encode_batch(&[report(&Catalog::builtin(), today(), 2.0, 1)]);
    let (status, text) = upload(&agent, &a.url, Some(&token), &body);
    assert_eq!(status, 503, "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "answered in {:?}",
        started.elapsed()
    );
    std::thread::sleep(Duration::from_secs(2));
    cluster.resume();
    every_acknowledged_report_stored_once(load, &acked_file, &url, 16_000);
    // No answer was a 500: every failure was a storage refusal (503).
    for c in [&a, &b] {
        let metrics = agent
            .get(format!("{}/metrics", c.url))
            .header(
                "Authorization",
                &format!("Bearer {}", c.token(&["--admin"])),
            )
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        assert!(
            !metrics
                .lines()
                .any(|l| l.contains("reason=\"internal\"") && !l.ends_with(" 0")),
            "{metrics}"
        );
    }
}

#[test]
#[ignore = "needs PostgreSQL (Debian's postgresql; installed by .ci/run)"]
fn a_closed_periods_reports_are_resealed_in_id_order() {
    let mut cluster = PgCluster::start();
    let url = cluster.create_db();
    let name = url.rsplit('/').next().unwrap().to_owned();
    let c = Collector::start_on(&url, "");
    let agent = client();
    let catalog = Catalog::builtin();
    let day = today() - 1;
    // Uploads one by one: each its own transaction, in arrival order.
    for seed in 0..20u64 {
        let token = c.token(&[]);
        let body = Report::encode_batch(&[report(&catalog, day, 2.0, 100 + seed)]);
        assert_eq!(upload(&agent, &c.url, Some(&token), &body).0, 200);
    }
    let xmins = |cluster: &PgCluster| {
        cluster.psql(
            &name,
            &format!("SELECT count(DISTINCT xmin::text) FROM reports WHERE period = {day}"),
        )
    };
    assert_eq!(xmins(&cluster), "20", "before: one transaction per upload");
    drop(c);
    // Upkeep a period after the period closed (nine days on).
    let clock = PeriodClock {
        current: day + 9,
        grace_periods: 7,
    };
    let mut db = open(&Database::parse(&url));
    db.upkeep(&clock).unwrap();
    assert_eq!(
        xmins(&cluster),
        "1",
        "after: one transaction for the whole period"
    );
    let by_place = cluster.psql(&name, &format!("SELECT string_agg(encode(id, 'hex'), ',' ORDER BY ctid) FROM reports WHERE period = {day}"));
    let by_id = cluster.psql(&name, &format!("SELECT string_agg(encode(id, 'hex'), ',' ORDER BY id) FROM reports WHERE period = {day}"));
    assert_eq!(by_place, by_id, "the heap holds them in id order");
    assert_eq!(
        cluster.psql(&name, "SELECT resealed_through FROM hush_state"),
        day.to_string()
    );
    // Nothing to do the second time.
    db.upkeep(&clock).unwrap();
    assert_eq!(xmins(&cluster), "1");
}

#[test]
#[ignore = "needs PostgreSQL and the openssl command (installed by .ci/run)"]
fn over_the_network_the_database_is_reached_over_verified_tls_only() {
    let mut cluster = PgCluster::start();
    let certificates = tempfile::tempdir().unwrap();
    make_certificates(certificates.path());
    let port = cluster.enable_tls(certificates.path());
    cluster.psql("postgres", "CREATE DATABASE tls");
    let ca = certificates.path().join("ca.pem");
    let at =
        |query: &str| Database::parse(&format!("postgres://hush@127.0.0.1:{port}/tls?{query}"));
    // The server admits TCP over TLS only, so this working proves TLS, and
    // its certificate verified against the private CA.
    let mut db = store::open(&at(&format!(
        "sslmode=require&sslrootcert={}",
        ca.display()
    )))
    .unwrap();
    assert_eq!(db.report_count().unwrap(), 0);
    // Against the public roots, the private CA's certificate is refused.
    let e = store::open(&at("sslmode=require"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // Without TLS the server refuses the connection.
    let e = store::open(&at("sslmode=disable"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no encryption") || e.contains("pg_hba"), "{e}");
}
