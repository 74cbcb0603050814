//! `hush collector migrate`: moving a collector from its SQLite file to a
//! new PostgreSQL database, in one transaction that is checked before it
//! commits (the same rows, and cells equal to the source's), so the
//! estimates and exports before and after are the same.

use std::path::Path;

use rusqlite::Connection;

use super::postgres::conn::{MAINTENANCE_TIMEOUT, PgConn};
use super::postgres::{CELL_ROWS, CellArrays, PgStore, read_cells};
use super::sqlite;
use crate::CollectorError;
use crate::cells::{CellKey, CellState};

/// Rows per statement when copying reports.
const CHUNK: usize = 2_000;

/// What a migration copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Migrated {
    /// Device tokens (hashes), revoked ones included.
    pub devices: u64,
    /// Admin tokens (hashes).
    pub admins: u64,
    /// Published range revisions.
    pub ranges: u64,
    /// Stored reports.
    pub reports: u64,
    /// Aggregate cells.
    pub cells: u64,
}

/// Copies everything in the SQLite database at `from` into the PostgreSQL
/// database at `to`, which must hold no collector data yet (its schema is
/// created if missing). `shown` names `to` in messages (without a password);
/// `progress` is told (reports copied, reports in all).
///
/// The source is read in one read transaction, so a collector still
/// running on it cannot make the copy inconsistent; but reports it accepts
/// afterwards are not copied, so stop it first.
pub fn migrate(
    from: &Path,
    to: &str,
    shown: &str,
    progress: &dyn Fn(u64, u64),
) -> Result<Migrated, CollectorError> {
    if !from.exists() {
        return Err(CollectorError::Refused(format!(
            "no collector database at {}",
            from.display()
        )));
    }
    let source = sqlite::open(from)?;
    let mut target = PgStore::open(to, shown)?;
    source.execute_batch("BEGIN")?;
    // One connection throughout, never connected again: a transaction does
    // not survive its connection, and statements on a new one would commit
    // on their own.
    let copied = copy(&source, target.conn()?, progress);
    let _ = source.execute_batch("COMMIT");
    copied
}

fn copy(
    source: &Connection,
    target: &mut PgConn,
    progress: &dyn Fn(u64, u64),
) -> Result<Migrated, CollectorError> {
    let held: i64 = target.run(|c| async move {
        Ok(c.query_one(
            "SELECT (SELECT count(*) FROM devices) + (SELECT count(*) FROM admins)
                  + (SELECT count(*) FROM reports) + (SELECT count(*) FROM cells)
                  + (SELECT count(*) FROM ranges)",
            &[],
        )
        .await?
        .get(0))
    })?;
    if held > 0 {
        return Err(CollectorError::Refused(
            "the PostgreSQL database already holds collector data; migrate into a new, empty database".into(),
        ));
    }
    // A large copy may sit between statements while the source is read.
    target.run(|c| async move {
        c.batch_execute("SET idle_in_transaction_session_timeout = 0; BEGIN")
            .await
    })?;
    match fill(source, target, progress) {
        Ok(done) => {
            target.run(|c| async move { c.batch_execute("COMMIT").await })?;
            Ok(done)
        }
        Err(e) => {
            let _ = target.run(|c| async move { c.batch_execute("ROLLBACK").await });
            Err(e)
        }
    }
}

/// The copy inside the target's transaction, and its check.
fn fill(
    source: &Connection,
    target: &mut PgConn,
    progress: &dyn Fn(u64, u64),
) -> Result<Migrated, CollectorError> {
    let mut done = Migrated::default();

    type DeviceRow = (i64, Vec<u8>, String, bool, i64, Option<i64>);
    let devices: Vec<DeviceRow> = source
        .prepare("SELECT id, token_hash, cohort, loadgen, created_at, revoked_at FROM devices ORDER BY id")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))?
        .collect::<Result<_, _>>()?;
    done.devices = devices.len() as u64;
    for chunk in devices.chunks(CHUNK) {
        let ids: Vec<i64> = chunk.iter().map(|d| d.0).collect();
        let hashes: Vec<Vec<u8>> = chunk.iter().map(|d| d.1.clone()).collect();
        let cohorts: Vec<String> = chunk.iter().map(|d| d.2.clone()).collect();
        let loadgen: Vec<bool> = chunk.iter().map(|d| d.3).collect();
        let created: Vec<i64> = chunk.iter().map(|d| d.4).collect();
        let revoked: Vec<Option<i64>> = chunk.iter().map(|d| d.5).collect();
        target.run(|c| async move {
            c.execute(
                "INSERT INTO devices (id, token_hash, cohort, loadgen, created_at, revoked_at)
                 SELECT * FROM unnest($1::int8[], $2::bytea[], $3::text[], $4::bool[], $5::int8[], $6::int8[])",
                &[&ids, &hashes, &cohorts, &loadgen, &created, &revoked],
            )
            .await
        })?;
    }

    let admins: Vec<(i64, Vec<u8>, i64, Option<i64>)> = source
        .prepare("SELECT id, token_hash, created_at, revoked_at FROM admins ORDER BY id")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    done.admins = admins.len() as u64;
    for (id, hash, created, revoked) in admins {
        target.run(|c| async move {
            c.execute(
                "INSERT INTO admins (id, token_hash, created_at, revoked_at) VALUES ($1, $2, $3, $4)",
                &[&id, &hash, &created, &revoked],
            )
            .await
        })?;
    }
    // New tokens continue after the copied ids, never reusing one.
    target.run(|c| async move {
        c.batch_execute(
            "SELECT setval(pg_get_serial_sequence('devices', 'id'), (SELECT coalesce(max(id), 0) + 1 FROM devices), false);
             SELECT setval(pg_get_serial_sequence('admins', 'id'), (SELECT coalesce(max(id), 0) + 1 FROM admins), false);",
        )
        .await
    })?;

    let ranges: Vec<(i64, String, i64)> = source
        .prepare("SELECT revision, steps, published_period FROM ranges ORDER BY revision")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    done.ranges = ranges.len() as u64;
    for (revision, steps, period) in ranges {
        let revision = i32::try_from(revision)
            .map_err(|_| CollectorError::Internal(format!("range revision {revision}")))?;
        target.run(|c| async move {
            c.execute(
                "INSERT INTO ranges (revision, steps, published_period) VALUES ($1, $2, $3)",
                &[&revision, &steps, &period],
            )
            .await
        })?;
    }

    // Reports in id order, so the new heap keeps no order of arrival either.
    let total: i64 = source.query_row("SELECT COUNT(*) FROM reports", [], |r| r.get(0))?;
    let total = total as u64;
    let mut statement =
        source.prepare("SELECT id, device, period, body FROM reports ORDER BY id")?;
    let mut rows = statement.query([])?;
    let mut chunk: Vec<(Vec<u8>, i64, i64, Vec<u8>)> = Vec::with_capacity(CHUNK);
    loop {
        let row = rows.next()?;
        if let Some(r) = row {
            chunk.push((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?));
        }
        if chunk.len() == CHUNK || (row.is_none() && !chunk.is_empty()) {
            insert_reports(target, &chunk)?;
            done.reports += chunk.len() as u64;
            progress(done.reports, total);
            chunk.clear();
        }
        if row.is_none() {
            break;
        }
    }

    let cells = sqlite::all_cells(source, None, None)?;
    done.cells = cells.len() as u64;
    for chunk in cells.chunks(CHUNK) {
        insert_cells(target, chunk)?;
    }

    // The check before COMMIT: the same rows, and the same cells in the
    // same order (what estimates and exports are made of).
    if count(target, "SELECT count(*) FROM reports")? != done.reports
        || count(target, "SELECT count(*) FROM devices")? != done.devices
    {
        return Err(CollectorError::Internal(
            "the copy does not hold the source's reports and devices".into(),
        ));
    }
    if read_cells(target, None, None, MAINTENANCE_TIMEOUT)? != cells {
        return Err(CollectorError::Internal(
            "the copied cells differ from the source's".into(),
        ));
    }
    Ok(done)
}

fn count(target: &mut PgConn, sql: &'static str) -> Result<u64, CollectorError> {
    let n: i64 = target.run(|c| async move { Ok(c.query_one(sql, &[]).await?.get(0)) })?;
    Ok(n as u64)
}

fn insert_reports(
    target: &mut PgConn,
    chunk: &[(Vec<u8>, i64, i64, Vec<u8>)],
) -> Result<(), CollectorError> {
    let ids: Vec<&[u8]> = chunk.iter().map(|r| &r.0[..]).collect();
    let devices: Vec<i64> = chunk.iter().map(|r| r.1).collect();
    let periods: Vec<i64> = chunk.iter().map(|r| r.2).collect();
    let bodies: Vec<&[u8]> = chunk.iter().map(|r| &r.3[..]).collect();
    target.run(|c| async move {
        c.execute(
            "INSERT INTO reports (id, device, period, body)
             SELECT * FROM unnest($1::bytea[], $2::int8[], $3::int8[], $4::bytea[]) AS t(id, device, period, body) ORDER BY id",
            &[&ids, &devices, &periods, &bodies],
        )
        .await
    })?;
    Ok(())
}

fn insert_cells(target: &mut PgConn, chunk: &[(CellKey, CellState)]) -> Result<(), CollectorError> {
    let arrays = CellArrays::of(chunk.iter().map(|(k, s)| (k, s)))?;
    let sql = format!(
        "INSERT INTO cells (catalog, metric, period, cohort, epsilon_bits, epsilon_perm_bits, kind, reports, counts, sums) {CELL_ROWS}"
    );
    target.run(|c| async move { c.execute(&sql, &arrays.params()).await })?;
    Ok(())
}
