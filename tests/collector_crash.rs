//! Crash safety: kill -9 the collector in the middle of a load, restart it, and check
//! that every acknowledged report is present exactly once and the database is intact.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod support;

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use support::{Collector, query_u64};

#[test]
fn acknowledged_reports_survive_kill_9() {
    let c = Collector::start("");
    let acked = c.dir.path().join("acked.txt");
    let mut load = support::hush()
        .args([
            "collector",
            "loadgen",
            "--json",
            "--reports",
            "60000",
            "--concurrency",
            "4",
            "--batch",
            "50",
            "--url",
            &c.url,
            "--config",
        ])
        .arg(c.config())
        .arg("--acked")
        .arg(&acked)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill once some reports are acknowledged and the load is still running.
    let mut waited = 0;
    while std::fs::read_to_string(&acked).map_or(0, |t| t.lines().count()) < 2000 {
        std::thread::sleep(Duration::from_millis(20));
        waited += 1;
        assert!(waited < 1500, "the load never got going");
    }
    let dir = c.kill();
    let _ = load.wait();

    let acked_ids: Vec<String> = std::fs::read_to_string(&acked)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(acked_ids.len() >= 2000);
    // Before any restart, a reader finds the aggregates exact: the cells the
    // writer had not saved yet are counted from their periods' reports.
    {
        let mut store = hush_collector::store::open(&hush_collector::store::Database::Sqlite(
            dir.path().join("collector.sqlite"),
        ))
        .unwrap();
        let recount = hush_collector::store::recount_cells(
            store.as_mut(),
            &hush_collector::Catalogs::builtin(),
        )
        .unwrap();
        let cells: std::collections::BTreeMap<_, _> =
            store.all_cells(None, None).unwrap().into_iter().collect();
        assert!(!cells.is_empty());
        assert_eq!(cells, recount, "a reader's cells after the kill");
    }
    // Restart on the same database: it must open, recover the WAL and serve.
    let restarted = Collector::start_in(dir);
    let db = restarted.database();
    let conn = support::open_db(&db);
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let stored: HashSet<String> = conn
        .prepare("SELECT hex(id) FROM reports")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|r| r.unwrap().to_lowercase())
        .collect();
    let missing: Vec<&String> = acked_ids
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged reports lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(3)]
    );
    // One report per device and period.
    let device_periods = query_u64(
        &db,
        "SELECT COUNT(*) FROM (SELECT DISTINCT device, period FROM reports)",
    );
    assert_eq!(device_periods, stored.len() as u64);
    // Counted exactly once: the aggregates hold one report per stored report and metric.
    let per_report = u64::from(hush_report::Catalog::builtin().metrics_per_report());
    let cells: u64 = conn
        .prepare("SELECT state FROM cells")
        .unwrap()
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|s| {
            hush_collector::CellState::from_bytes(&s.unwrap())
                .unwrap()
                .reports()
        })
        .sum();
    assert_eq!(
        cells,
        stored.len() as u64 * per_report,
        "aggregates must count each stored report once"
    );
    // The load generator revoked its tokens when its run ended, killed collector or not.
    assert_eq!(
        query_u64(&db, "SELECT COUNT(*) FROM devices WHERE revoked_at IS NULL"),
        0
    );
    // And it still serves.
    let agent = support::client();
    let mut r = agent
        .get(format!("{}/healthz", restarted.url))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.body_mut().read_to_string().unwrap().contains("ok"));
}
