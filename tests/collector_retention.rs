//! Retention and erasure end to end: `hush collector device erase` takes a device
//! out of every cell exactly (checked against a recount of the reports that
//! remain), even while the server runs with the device's token and cells in its
//! caches; `hush collector prune` and `retention_days` delete the reports of
//! closed periods only and leave the released cells as they were.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use hush_collector::{Catalogs, CellKey, CellState, store, validate_structure};
use hush_report::{Catalog, Report};
use support::{Collector, client, query_u64, report, today, upload};

/// The cells as stored.
fn cells(db: &Path) -> BTreeMap<CellKey, CellState> {
    store::open(&store::Database::Sqlite(db.to_path_buf()))
        .unwrap()
        .all_cells(None, None)
        .unwrap()
        .into_iter()
        .collect()
}

/// The cells recounted from scratch: every stored report decoded, validated
/// and folded into fresh cells of its device's cohort.
fn recount(db: &Path) -> BTreeMap<CellKey, CellState> {
    let conn = support::open_db(db);
    let catalogs = Catalogs::builtin();
    let mut out: BTreeMap<CellKey, CellState> = BTreeMap::new();
    let rows: Vec<(Vec<u8>, String)> = conn
        .prepare("SELECT r.body, d.cohort FROM reports r JOIN devices d ON d.id = r.device")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (body, cohort) in rows {
        let valid = validate_structure(Report::decode(&body).unwrap(), &catalogs).unwrap();
        for (m, mechanism) in valid.report.metrics().iter().zip(&valid.mechanisms) {
            let metric = &valid.catalog.metrics()[usize::from(m.metric())];
            out.entry(CellKey::of(&valid.report, m, &cohort))
                .or_insert_with(|| CellState::empty(metric))
                .add(mechanism, m.value())
                .unwrap();
        }
    }
    out
}

/// `n` devices of cohort "eng", each uploading one report for each of `days`;
/// returns their tokens.
fn fleet(c: &Collector, n: u64, days: &[u32], seed: u64) -> Vec<String> {
    let agent = client();
    let catalog = Catalog::builtin();
    (0..n)
        .map(|i| {
            let reports: Vec<Report> = days
                .iter()
                .enumerate()
                .map(|(d, &day)| report(&catalog, day, 2.0, seed + 10 * i + d as u64))
                .collect();
            c.device_uploads(&agent, "eng", &reports)
        })
        .collect()
}

fn run(c: &Collector, args: &[&str]) -> std::process::Output {
    c.command(args).output().unwrap()
}

fn stdout_ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn device_id(db: &Path, token: &str) -> i64 {
    let hash = hush_collector::token_hash(token);
    support::open_db(db)
        .query_row(
            "SELECT id FROM devices WHERE token_hash = ?1",
            [&hash[..]],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn erasing_a_device_takes_it_out_of_every_cell_exactly() {
    // The least min_devices, so most cells are released.
    let c = Collector::start("min_devices = 2\n");
    let days = [today() - 3, today() - 2, today() - 1];
    let tokens = fleet(&c, 12, &days, 1);
    let db = c.database();
    assert_eq!(cells(&db), recount(&db));

    // Erase one device while the server runs: its token is in the server's
    // token cache (it just uploaded) and its cells in the writer's cache.
    let gone = &tokens[0];
    let id = device_id(&db, gone);
    let text = stdout_ok(&run(&c, &["device", "erase", gone]));
    assert!(
        text.contains(&format!("erased device {id}: 3 stored reports deleted")),
        "{text}"
    );
    assert!(
        text.contains("the database file was rewritten: it keeps no copy of them"),
        "{text}"
    );
    assert_eq!(
        query_u64(
            &db,
            &format!("SELECT COUNT(*) FROM reports WHERE device = {id}")
        ),
        0
    );
    assert_eq!(
        query_u64(
            &db,
            &format!("SELECT COUNT(*) FROM devices WHERE id = {id}")
        ),
        0
    );
    assert_eq!(cells(&db), recount(&db), "right after the erasure");

    // Its token no longer stores anything, cached or not.
    let body = Report::encode_batch(&[report(&Catalog::builtin(), today(), 2.0, 999)]);
    assert_eq!(upload(&client(), &c.url, Some(gone), &body).0, 401);
    // New uploads land in the same cells (24 devices cover every cell of the
    // erased one): the writer must not write back the erased contributions
    // from its cache.
    fleet(&c, 24, &days, 5000);
    assert_eq!(
        cells(&db),
        recount(&db),
        "after more uploads to the same cells"
    );

    // Later, with the periods closed and released, erase another device by its
    // id: released cells change (the one exception to "released once").
    let c = c.restart_days_later(10);
    let admin = c.token(&["--admin"]);
    let released = |c: &Collector| -> u64 {
        let mut r = client()
            .get(format!("{}/v1/estimates", c.url))
            .header("Authorization", &format!("Bearer {admin}"))
            .call()
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        let rows = v["rows"].as_array().unwrap();
        assert!(!rows.is_empty(), "{v}");
        // Each released cell's report count once (a cell gives a row per bucket).
        let mut seen = std::collections::BTreeSet::new();
        rows.iter()
            .filter(|r| seen.insert((r["metric"].to_string(), r["period"].to_string())))
            .map(|r| r["reports"].as_u64().unwrap())
            .sum()
    };
    let before = released(&c);
    let second = device_id(&db, &tokens[1]);
    let text = stdout_ok(&run(&c, &["device", "erase", &second.to_string()]));
    assert!(
        text.contains(&format!("erased device {second}: 3 stored reports deleted")),
        "{text}"
    );
    assert_eq!(cells(&db), recount(&db), "after erasing by id");
    assert!(released(&c) < before, "the released counts went down");

    // Erasing what does not exist is a usage error, which points at the
    // rewrite that finishes an interrupted erasure; the rewrite runs while
    // the server does.
    let out = run(&c, &["device", "erase", &second.to_string()]);
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("hush collector device rewrite"), "{said}");
    let out = run(&c, &["device", "erase", "hush_dev_unknown"]);
    assert_eq!(out.status.code(), Some(2));
    let text = stdout_ok(&run(&c, &["device", "rewrite"]));
    assert!(text.contains("was rewritten and its log emptied"), "{text}");
    assert_eq!(cells(&db), recount(&db), "after the rewrite");
}

#[test]
fn pruning_deletes_reports_of_closed_periods_and_keeps_the_cells() {
    let c = Collector::start("");
    let days = [today() - 3, today() - 2, today() - 1];
    fleet(&c, 6, &days, 1);
    let db = c.database();
    let date = |p: u32| hush_collector::estimate::period_start(p, 86_400);
    let count = |p: u32| {
        query_u64(
            &db,
            &format!("SELECT COUNT(*) FROM reports WHERE period = {p}"),
        )
    };
    let stored = cells(&db);

    // Today all three days are open: refused, nothing deleted.
    let out = run(&c, &["prune", "--before", &date(days[2])]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("still open"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(query_u64(&db, "SELECT COUNT(*) FROM reports"), 18);

    // Ten days later they have closed: the first two days' reports go, the cells stay.
    c.set_config("clock_offset_seconds", &(10 * support::DAY).to_string());
    let text = stdout_ok(&run(&c, &["prune", "--before", &date(days[2])]));
    assert!(text.contains("pruned 12 stored reports"), "{text}");
    assert_eq!((count(days[0]), count(days[1]), count(days[2])), (0, 0, 6));
    assert_eq!(cells(&db), stored, "pruning leaves every cell as it was");
    // Still refused where a period is open (at +10 days, from today + 3 on).
    let out = run(&c, &["prune", "--before", &date(today() + 4)]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(count(days[2]), 6);

    // retention_days does the same at start: 10 days keep nothing before today.
    c.set_config("retention_days", "10");
    let c = c.restart_days_later(10);
    assert_eq!(query_u64(&db, "SELECT COUNT(*) FROM reports"), 0);
    assert_eq!(cells(&db), stored, "retention leaves every cell as it was");
    assert_eq!(
        query_u64(&db, "SELECT COUNT(*) FROM devices"),
        6,
        "tokens are not data of a period"
    );
    drop(c);
}
