//! The SQLite store, the embedded default: schema and its version, tokens,
//! reports (the aggregate cells are in `sqlite/cells.rs`), and the two ways
//! stored reports go away: pruning closed periods and erasing a device.
//!
//! Reports are keyed by their random id (`WITHOUT ROWID`), so not even the
//! row order remembers the order of arrival.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hush_report::{PublishedRanges, RangeSteps, Report};
use rusqlite::{Connection, OptionalExtension, params};

use super::{DatabaseSizes, DeviceRef, DeviceRow, Erased, Principal, Residue, Store, StoredReport};
use crate::CollectorError;
use crate::cells::{CellKey, CellState};
use crate::periods::PeriodClock;
use crate::tokens::token_hash;
use crate::validate::{Catalogs, validate_structure};

pub(crate) mod coalesce;
mod pcache;

pub use pcache::{Truncations, install as install_page_cache, truncations};
mod cells;
use cells::delete_cell;
#[cfg(test)]
pub(crate) use cells::stored_cells;
pub(crate) use cells::{
    all_cells, clear_pending, epoch, load_cell, mark_pending, pruned_before, save_cell, settle,
};
mod devices;
pub(crate) use devices::device_cohort;
mod rewrite;
pub(crate) use rewrite::empty_log;
use rewrite::residue;
#[cfg(test)]
pub(crate) use rewrite::scrub_index;
pub use rewrite::{owed_rewrites, rewrite};

/// A SQLite database file opened for reading and writing.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the file; see [`open`].
    pub fn open(path: &Path) -> Result<SqliteStore, CollectorError> {
        Ok(SqliteStore {
            conn: open(path)?,
            path: path.to_path_buf(),
        })
    }

    /// The connection, for what only SQLite has (the writer's log upkeep,
    /// tests that read the file's own structures).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// The schema version this build reads and writes (`PRAGMA user_version`).
/// Version 1 was the unversioned schema with arrival times and per-metric
/// contributions; 2 keeps one report per device and period and no arrival time;
/// 3 adds the published range revisions; 4 the pending periods, whose cells
/// may lag their reports; 5 the erasures that owe the file a rewrite (a
/// version 2, 3 or 4 file is upgraded in place).
pub const SCHEMA_VERSION: i64 = 5;

/// How long a connection waits for another's lock before it fails.
pub const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The page size of a new database, in bytes.
pub const PAGE_SIZE: i64 = 1024;

/// What version 3 adds to version 2.
const RANGES_TABLE: &str = "
-- The count ranges learned from the fleet's released distributions, one row
-- per published revision (revision 0, the built-in catalog, has no row).
CREATE TABLE ranges (
    revision INTEGER PRIMARY KEY,
    steps TEXT NOT NULL,
    published_period INTEGER NOT NULL
);
";

/// What version 4 adds to version 3.
const PENDING_TABLE: &str = "
-- The periods whose stored cells may not yet count every stored report:
-- the ingestion writer keeps the cells it changes in memory and saves them
-- at most once a second, marking their periods here in the transactions
-- that store the reports. Readers count a pending period from its reports.
CREATE TABLE pending (period INTEGER PRIMARY KEY);
-- Moved on by every settlement (the pending periods counted afresh), with
-- which every transaction that changes reports or cells begins, except a
-- writer's own while what it holds is valid: a writer that finds it moved
-- since it last settled forgets what it holds.
CREATE TABLE epoch (n INTEGER NOT NULL);
INSERT INTO epoch (n) VALUES (0);
-- Reports of periods before this one were pruned: their cells stay as
-- released, and no report may join them (nor make them pending, which
-- would recount them from the reports left).
CREATE TABLE pruned (before_period INTEGER NOT NULL);
INSERT INTO pruned (before_period) VALUES (0);
";

/// What version 5 adds to version 4; idempotent, since a collector of
/// version 4 still running writes its version back into the file.
const ERASURES_TABLE: &str = "
-- Erasures committed, each counted in its own transaction, and how many of
-- them a rewrite of the file has cleared: a rewrite that succeeded moves
-- `cleared` up to the count it read before it began (see `rewrite`).
CREATE TABLE IF NOT EXISTS erasures (committed INTEGER NOT NULL, cleared INTEGER NOT NULL);
INSERT INTO erasures (committed, cleared) SELECT 0, 0 WHERE NOT EXISTS (SELECT 1 FROM erasures);
";

/// Applied with [`ERASURES_TABLE`] to a file of an older version, whose
/// erasures (by a build that did not rewrite, or not counted) may have
/// left copies: one rewrite is owed.
const ERASURES_OWED_BY_OLDER: &str = "UPDATE erasures SET committed = committed + 1;";

const SCHEMA: &str = "
CREATE TABLE devices (
    id INTEGER PRIMARY KEY,
    token_hash BLOB NOT NULL UNIQUE,
    cohort TEXT NOT NULL,
    -- 1 for the devices `hush collector loadgen` mints for itself.
    loadgen INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE admins (
    id INTEGER PRIMARY KEY,
    token_hash BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
-- Report ids start with their period, so inserts arrive nearly in key order;
-- the rest of an id is random, so the table's order says nothing about arrival.
CREATE TABLE reports (
    id BLOB PRIMARY KEY,
    device INTEGER NOT NULL,
    period INTEGER NOT NULL,
    body BLOB NOT NULL
) WITHOUT ROWID;
-- One report per device and period, whatever its metrics.
CREATE UNIQUE INDEX reports_device_period ON reports (device, period);
CREATE TABLE cells (
    catalog BLOB NOT NULL,
    metric INTEGER NOT NULL,
    period INTEGER NOT NULL,
    cohort TEXT NOT NULL,
    epsilon_bits INTEGER NOT NULL,
    epsilon_perm_bits INTEGER NOT NULL,
    state BLOB NOT NULL,
    PRIMARY KEY (catalog, metric, period, cohort, epsilon_bits, epsilon_perm_bits)
) WITHOUT ROWID;
";

/// Opens (creating if needed) the database in WAL mode with `synchronous=FULL`:
/// a committed transaction survives a crash or power cut, which is what an
/// acknowledgement promises.
///
/// A new file is created with mode 0600 before SQLite opens it, so its WAL and
/// shared-memory files, which SQLite creates with the database's mode, are
/// private too. A database of another schema version is refused.
///
/// The connection writes its log through [`coalesce`], which relies on the
/// `synchronous=FULL` set here.
pub fn open(path: &Path) -> Result<Connection, CollectorError> {
    create_private(path)?;
    // Before anything in the process initializes SQLite, or not at all.
    if !install_page_cache() {
        tracing::debug!("SQLite was initialized first: its page cache is used unwrapped");
    }
    let conn = Connection::open_with_flags_and_vfs(
        path,
        rusqlite::OpenFlags::default(),
        coalesce::register()?,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Only a new, empty file takes this (before WAL mode is set); an existing
    // database keeps its page size. Reports arrive in random key order, so
    // each one dirties a page of its own, and every dirty page is written
    // whole to the WAL and again at the checkpoint: 1 KiB pages write a
    // quarter of the bytes of 4 KiB ones per report (4.9 KB instead of 17 KB
    // under `hush collector loadgen`). A report row (about 110 bytes) still
    // fits in a page without overflow.
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Deleted reports (pruned or erased) are overwritten, not left in free pages.
    conn.pragma_update(None, "secure_delete", "ON")?;
    ensure_schema(&conn, path)?;
    Ok(conn)
}

/// The file SQLite keeps beside the database: `-wal` (the write-ahead log)
/// or `-shm` (the log's index).
pub(crate) fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Creates the file with mode 0600 if it does not exist; an existing file is
/// not touched (nor opened for writing here, so a read-only copy still exports).
fn create_private(path: &Path) -> Result<(), CollectorError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(CollectorError::Io(std::io::Error::new(
            e.kind(),
            format!("cannot create {}: {e}", path.display()),
        ))),
    }
}

fn user_version(conn: &Connection) -> Result<i64, CollectorError> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// Creates the schema in an empty database, or checks the version of an existing one.
fn ensure_schema(conn: &Connection, path: &Path) -> Result<(), CollectorError> {
    if user_version(conn)? == SCHEMA_VERSION {
        return Ok(());
    }
    // Under the write lock, so two processes opening a new file create it once.
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let created = (|| {
        let found = user_version(conn)?;
        let tables: i64 = conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))?;
        if found == 0 && tables == 0 {
            conn.execute_batch(SCHEMA)?;
            conn.execute_batch(RANGES_TABLE)?;
            conn.execute_batch(PENDING_TABLE)?;
            conn.execute_batch(ERASURES_TABLE)?;
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            return Ok(SCHEMA_VERSION);
        }
        if (2..=4).contains(&found) {
            if found == 2 {
                conn.execute_batch(RANGES_TABLE)?;
            }
            if found <= 3 {
                conn.execute_batch(PENDING_TABLE)?;
            }
            conn.execute_batch(ERASURES_TABLE)?;
            conn.execute_batch(ERASURES_OWED_BY_OLDER)?;
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            return Ok(SCHEMA_VERSION);
        }
        // The unversioned schema (before version 2) left user_version at 0.
        Ok::<_, CollectorError>(if found == 0 { 1 } else { found })
    })();
    match created {
        Ok(SCHEMA_VERSION) => {
            conn.execute_batch("COMMIT")?;
            Ok(())
        }
        Ok(found) => {
            conn.execute_batch("ROLLBACK")?;
            Err(CollectorError::SchemaVersion {
                database: path.display().to_string(),
                found,
                expected: SCHEMA_VERSION,
            })
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn published_ranges(conn: &Connection) -> Result<Vec<(PublishedRanges, u32)>, CollectorError> {
    let mut stmt =
        conn.prepare("SELECT revision, steps, published_period FROM ranges ORDER BY revision")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (revision, steps, period) = row?;
        let corrupt =
            |why: String| CollectorError::Internal(format!("ranges revision {revision}: {why}"));
        let steps: RangeSteps = serde_json::from_str(&steps).map_err(|e| corrupt(e.to_string()))?;
        let revision = u32::try_from(revision).map_err(|e| corrupt(e.to_string()))?;
        let period = u32::try_from(period).map_err(|e| corrupt(e.to_string()))?;
        out.push((PublishedRanges { revision, steps }, period));
    }
    Ok(out)
}

fn publish_ranges(
    conn: &Connection,
    steps: &RangeSteps,
    period: u32,
) -> Result<PublishedRanges, CollectorError> {
    let text = serde_json::to_string(steps)
        .map_err(|e| CollectorError::Internal(format!("range steps: {e}")))?;
    let revision: i64 = conn.query_row(
        "INSERT INTO ranges (revision, steps, published_period)
         VALUES ((SELECT COALESCE(MAX(revision), 0) + 1 FROM ranges), ?1, ?2) RETURNING revision",
        params![text, period],
        |r| r.get(0),
    )?;
    Ok(PublishedRanges {
        revision: u32::try_from(revision)
            .map_err(|e| CollectorError::Internal(format!("ranges revision: {e}")))?,
        steps: steps.clone(),
    })
}

fn stored_reports(
    conn: &Connection,
    from: u32,
    to: u32,
) -> Result<Vec<StoredReport>, CollectorError> {
    // A report id starts with its period (big-endian, checked at decoding),
    // so the periods are a range of the primary key: no scan of every
    // stored report.
    let mut stmt = conn.prepare_cached(
        "SELECT r.device, d.cohort, r.period, r.body FROM reports r JOIN devices d ON d.id = r.device
         WHERE r.id >= ?1 AND (?2 IS NULL OR r.id < ?2) AND r.period >= ?3 AND r.period <= ?4
         ORDER BY r.id",
    )?;
    let after = to.checked_add(1).map(|p| p.to_be_bytes().to_vec());
    let rows = stmt.query_map(params![&from.to_be_bytes()[..], after, from, to], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, u32>(2)?,
            r.get::<_, Vec<u8>>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (device, cohort, period, body) = row?;
        let report = hush_report::Report::decode(&body).map_err(|e| {
            CollectorError::Internal(format!("a stored report does not decode: {e}"))
        })?;
        out.push((device, cohort, period, report));
    }
    Ok(out)
}

fn report_count(conn: &Connection) -> Result<u64, CollectorError> {
    Ok(conn.query_row("SELECT COUNT(*) FROM reports", [], |r| r.get::<_, i64>(0))? as u64)
}

fn prune(conn: &Connection, clock: &PeriodClock, before: u32) -> Result<u64, CollectorError> {
    if super::prunable(clock, before)?.is_none() {
        return Ok(0);
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    // A pending period's cells are counted before its reports go.
    let deleted = settle(conn).and_then(|_| {
        conn.execute(
            "UPDATE pruned SET before_period = MAX(before_period, ?1)",
            params![before],
        )?;
        Ok(conn.execute("DELETE FROM reports WHERE period < ?1", params![before])?)
    });
    let n = finish(conn, deleted)?;
    // So that the deleted reports do not linger in the log; best effort,
    // a reader only delays it to the writer's next emptying.
    let _ = empty_log(conn);
    Ok(n as u64)
}

fn erase_device(
    conn: &Connection,
    catalogs: &Catalogs,
    device: &DeviceRef,
) -> Result<Option<Erased>, CollectorError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = erase_in_transaction(conn, catalogs, device);
    let Some((device, reports, cells)) = finish(conn, result)? else {
        return Ok(None);
    };
    Ok(Some(Erased {
        device,
        reports,
        cells,
        residue: residue(conn),
    }))
}

/// Erases the device in the caller's transaction; returns its id, the
/// reports deleted and the cells changed.
fn erase_in_transaction(
    conn: &Connection,
    catalogs: &Catalogs,
    device: &DeviceRef,
) -> Result<Option<(i64, u64, u64)>, CollectorError> {
    let found: Option<(i64, String)> = match device {
        DeviceRef::Token(token) => conn
            .query_row(
                "SELECT id, cohort FROM devices WHERE token_hash = ?1",
                params![&token_hash(token)[..]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?,
        DeviceRef::Id(id) => conn
            .query_row(
                "SELECT id, cohort FROM devices WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?,
    };
    let Some((id, cohort)) = found else {
        return Ok(None);
    };
    // The device's reports come out of exact cells.
    settle(conn)?;
    let bodies: Vec<Vec<u8>> = conn
        .prepare("SELECT body FROM reports WHERE device = ?1")?
        .query_map(params![id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut cells: BTreeMap<CellKey, CellState> = BTreeMap::new();
    for body in &bodies {
        let corrupt = |what: String| CollectorError::Internal(format!("a stored report {what}"));
        let report = Report::decode(body).map_err(|e| corrupt(format!("does not decode: {e}")))?;
        let valid = validate_structure(report, catalogs)
            .map_err(|r| corrupt(format!("no longer validates: {}", r.reason)))?;
        for (m, mechanism) in valid.report.metrics().iter().zip(&valid.mechanisms) {
            let key = CellKey::of(&valid.report, m, &cohort);
            let state = match cells.get_mut(&key) {
                Some(s) => s,
                None => {
                    let stored = load_cell(conn, &key)?.ok_or_else(|| {
                        CollectorError::Internal("a stored report's cell is missing".into())
                    })?;
                    cells.entry(key).or_insert(stored)
                }
            };
            state.remove(mechanism, m.value())?;
        }
    }
    for (key, state) in &cells {
        if state.reports() == 0 {
            delete_cell(conn, key)?;
        } else {
            save_cell(conn, key, state)?;
        }
    }
    let reports = conn.execute("DELETE FROM reports WHERE device = ?1", params![id])?;
    conn.execute("DELETE FROM devices WHERE id = ?1", params![id])?;
    // Owed in the transaction that erases, so no failure or crash after
    // it commits can leave its copies without the rewrite owed.
    conn.execute("UPDATE erasures SET committed = committed + 1", [])?;
    Ok(Some((id, reports as u64, cells.len() as u64)))
}

/// Commits after `result` succeeded, rolls back otherwise.
pub(crate) fn finish<T>(
    conn: &Connection,
    result: Result<T, CollectorError>,
) -> Result<T, CollectorError> {
    match result {
        Ok(v) => {
            conn.execute_batch("COMMIT")?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

impl Store for SqliteStore {
    fn add_admin(&mut self, token: &str, now: i64) -> Result<(), CollectorError> {
        devices::add_admin(&self.conn, token, now)
    }

    fn add_device(
        &mut self,
        token: &str,
        cohort: &str,
        now: i64,
        loadgen: bool,
    ) -> Result<i64, CollectorError> {
        devices::add_device(&self.conn, token, cohort, now, loadgen)
    }

    fn add_devices(
        &mut self,
        tokens: &[String],
        cohort: &str,
        now: i64,
    ) -> Result<Vec<i64>, CollectorError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let added = tokens
            .iter()
            .map(|token| devices::add_device(&self.conn, token, cohort, now, false))
            .collect();
        finish(&self.conn, added)
    }

    fn mint_loadgen_devices(
        &mut self,
        tokens: &[String],
        now: i64,
    ) -> Result<Result<Vec<i64>, u64>, CollectorError> {
        devices::mint_loadgen_devices(&self.conn, tokens, now)
    }

    fn revoke_token(&mut self, token: &str, now: i64) -> Result<bool, CollectorError> {
        devices::revoke_token(&self.conn, token, now)
    }

    fn revoke_devices(&mut self, ids: &[i64], now: i64) -> Result<(), CollectorError> {
        devices::revoke_devices(&self.conn, ids, now)
    }

    fn real_devices(&mut self) -> Result<u64, CollectorError> {
        devices::real_devices(&self.conn)
    }

    fn principal_by_hash(&mut self, hash: &[u8; 32]) -> Result<Option<Principal>, CollectorError> {
        devices::principal_by_hash(&self.conn, hash)
    }

    fn device_cohort(
        &mut self,
        device: i64,
        hash: &[u8; 32],
    ) -> Result<Option<String>, CollectorError> {
        devices::device_cohort(&self.conn, device, hash)
    }

    fn devices_after(&mut self, after: i64) -> Result<Vec<DeviceRow>, CollectorError> {
        devices::devices_after(&self.conn, after)
    }

    fn published_ranges(&mut self) -> Result<Vec<(PublishedRanges, u32)>, CollectorError> {
        published_ranges(&self.conn)
    }

    fn publish_ranges(
        &mut self,
        steps: &RangeSteps,
        period: u32,
    ) -> Result<PublishedRanges, CollectorError> {
        publish_ranges(&self.conn, steps, period)
    }

    fn save_cell(&mut self, key: &CellKey, state: &CellState) -> Result<(), CollectorError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let saved = settle(&self.conn).and_then(|_| save_cell(&self.conn, key, state));
        finish(&self.conn, saved)
    }

    fn all_cells(
        &mut self,
        from_period: Option<u32>,
        to_period: Option<u32>,
    ) -> Result<Vec<(CellKey, CellState)>, CollectorError> {
        all_cells(&self.conn, from_period, to_period)
    }

    fn stored_reports(&mut self, from: u32, to: u32) -> Result<Vec<StoredReport>, CollectorError> {
        stored_reports(&self.conn, from, to)
    }

    fn reports_and_cells(
        &mut self,
        from: u32,
        to: u32,
    ) -> Result<(Vec<StoredReport>, Vec<(CellKey, CellState)>), CollectorError> {
        // A read transaction is one snapshot in WAL mode.
        self.conn.execute_batch("BEGIN")?;
        let read = stored_reports(&self.conn, from, to)
            .and_then(|r| Ok((r, all_cells(&self.conn, Some(from), Some(to))?)));
        finish(&self.conn, read)
    }

    fn report_count(&mut self) -> Result<u64, CollectorError> {
        report_count(&self.conn)
    }

    fn sizes(&mut self) -> DatabaseSizes {
        let size = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
        DatabaseSizes {
            database: size(&self.path),
            wal: Some(size(&sidecar(&self.path, "-wal"))),
        }
    }

    fn prune(&mut self, clock: &PeriodClock, before: u32) -> Result<u64, CollectorError> {
        prune(&self.conn, clock, before)
    }

    fn erase_device(
        &mut self,
        catalogs: &Catalogs,
        device: &DeviceRef,
    ) -> Result<Option<Erased>, CollectorError> {
        erase_device(&self.conn, catalogs, device)
    }

    fn clear_residue(&mut self) -> Result<Residue, CollectorError> {
        Ok(residue(&self.conn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_database_is_private_and_versioned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let conn = open(&path).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(owed_rewrites(&conn).unwrap(), 0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        drop(conn);
        // Opening again finds the same version.
        open(&path).unwrap();
    }

    #[test]
    fn versions_2_to_4_are_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        for (version, tables) in [
            (2, SCHEMA.to_owned()),
            (3, format!("{SCHEMA}{RANGES_TABLE}")),
            (4, format!("{SCHEMA}{RANGES_TABLE}{PENDING_TABLE}")),
        ] {
            let path = dir.path().join(format!("v{version}.sqlite"));
            install_page_cache();
            let old = Connection::open(&path).unwrap();
            old.execute_batch(&tables).unwrap();
            old.pragma_update(None, "user_version", version).unwrap();
            drop(old);
            let conn = open(&path).unwrap();
            assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
            assert_eq!(epoch(&conn).unwrap(), 0);
            assert_eq!(pruned_before(&conn).unwrap(), 0);
            assert!(
                cells::pending_periods(&conn, 0, u32::MAX)
                    .unwrap()
                    .is_empty()
            );
            assert!(published_ranges(&conn).unwrap().is_empty());
            // An older build's erasures may have left copies: one rewrite.
            assert_eq!(owed_rewrites(&conn).unwrap(), 1);
            rewrite(&conn).unwrap();
            assert_eq!(owed_rewrites(&conn).unwrap(), 0);
            // A collector of version 4 still running writes 4 back; the
            // next open upgrades again, without failing.
            conn.pragma_update(None, "user_version", 4).unwrap();
            drop(conn);
            let conn = open(&path).unwrap();
            assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
            assert_eq!(owed_rewrites(&conn).unwrap(), 1);
        }
    }

    #[test]
    fn an_unversioned_or_other_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.sqlite");
        install_page_cache();
        Connection::open(&old)
            .unwrap()
            .execute_batch("CREATE TABLE reports (id BLOB PRIMARY KEY, received_at INTEGER)")
            .unwrap();
        let e = open(&old).unwrap_err().to_string();
        assert!(e.contains("older Hush") && e.contains("export it"), "{e}");
        let newer = dir.path().join("newer.sqlite");
        Connection::open(&newer)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let e = open(&newer).unwrap_err().to_string();
        assert!(e.contains("newer Hush"), "{e}");
    }
}
