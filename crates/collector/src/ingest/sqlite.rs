//! Ingestion into SQLite: one write transaction per group of uploads, each
//! upload in its own savepoint; the cells the writer touched kept in memory
//! between groups; and the write-ahead log, which holds page images in commit
//! (arrival) order, emptied when the writer is quiet.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};

use super::{IngestBackend, Outcome, Upload};
use crate::CollectorError;
use crate::cells::{CellKey, CellState};
use crate::store;
use crate::validate::{Rejection, category};

/// Cells the writer keeps in memory beyond this many are dropped (and reloaded
/// from the database when next touched), so the cache cannot grow without bound.
/// Small under test, so that three of the writer's tests (up to 52 cells,
/// the stored cells compared with a recount) pass through the dropping.
const CACHE_CELLS: usize = if cfg!(test) { 32 } else { 1 << 16 };

/// Log frames (pages) past which the writer copies the log into the
/// database: about 40 MiB of 1 KiB pages. Reports land in random pages, so
/// the longer the log, the more of its frames are a page written again, and
/// the checkpoint copies each page once: at 3,900 frames the checkpoint was
/// 29% of the writer's CPU samples, at 40,000 it is 8%, and the collector
/// took 5 to 23% less CPU per report in alternating rounds. Past the 4,062
/// frames of its first block the log's index grows blocks that emptying
/// zeroes (see [`store::sqlite::empty_log`]).
const CHECKPOINT_FRAMES: u64 = 40_000;

/// The writer's page cache, in KiB (SQLite's default is 2 MiB). Report ids
/// start with their period, so inserts land among the open periods' pages
/// (with the (device, period) index, about 16 MiB for 100,000 reports),
/// and a cache that holds them saves a read per page touched: 58,000
/// `pread` calls for 100,000 reports instead of 267,000, and 4 to 21% of
/// the collector's CPU per report in five alternating rounds (8 and 16 MiB
/// measured between the two). It is only a bound: SQLite allocates pages as
/// the cache fills. A larger cache only pays with [`store::sqlite::pcache`]'s
/// layer, without which every commit that split a page scanned it whole.
const WRITER_CACHE_KIB: i64 = 64 << 10;

/// The log is emptied after [`QUIET`](super::QUIET) without an upload and,
/// under a steady trickle that never pauses that long, at least this often.
const MAX_LOG_AGE: Duration = Duration::from_secs(60);

/// The writer saves the cells it changed at most this often (and when it
/// is quiet, and when it stops). Every commit touches the cells of every
/// metric its reports carry, about 24 pages under `hush collector loadgen`,
/// and saving them at each commit took 15% of the collector's CPU.
const SAVE_CELLS_EVERY: Duration = Duration::from_secs(1);

/// The writer's memory: cells it has loaded, and those it changed since it
/// last saved them, valid while no other connection has changed the
/// database (an erasure or a prune from the command line, a second writer).
struct Cache {
    cells: HashMap<CellKey, Cell>,
    /// How many of `cells` changed since they were last saved.
    unsaved: usize,
    /// Periods this writer marked pending since it last saved.
    pending: HashSet<u32>,
    /// When the cells were last saved.
    saved_at: Instant,
    /// The database's `data_version` when this memory was last valid:
    /// `None` until the writer has made the stored cells exact (at its
    /// start, and after a failed commit lost the memory of unsaved ones).
    data_version: Option<i64>,
    /// The epoch this writer's last settlement left (see the schema): a
    /// commit by another connection that did not move it (a device enrolled
    /// or revoked, ranges published) left reports and cells alone. Each
    /// settlement's epoch is new, so a second writer's commits always find
    /// it moved: that writer settled since this one did, or is about to.
    epoch: Option<i64>,
}

/// A cell the writer holds: its state, and whether it changed since it
/// was last saved (a mark here rather than a set of keys beside the map,
/// which cost every report a second hash of its cell's key and a copy of it).
struct Cell {
    state: CellState,
    unsaved: bool,
}

impl Cache {
    /// Forgets everything: the next commit settles the pending periods
    /// from their reports first.
    fn forget(&mut self) {
        self.cells.clear();
        self.unsaved = 0;
        self.pending.clear();
        self.data_version = None;
        self.epoch = None;
    }

    /// Makes the stored cells exact and this memory valid, under the write
    /// lock: after another connection's commit (or at the start, or after a
    /// failure), any pending period is counted afresh from its reports.
    fn validate(&mut self, conn: &Connection) -> Result<(), CollectorError> {
        let version: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if self.data_version != Some(version) {
            if self.epoch != Some(store::sqlite::epoch(conn)?) {
                self.forget();
                self.epoch = Some(store::sqlite::settle(conn)?);
            }
            self.data_version = Some(version);
        }
        if self.cells.len() > CACHE_CELLS {
            self.save(conn)?;
            self.cells.clear();
        }
        Ok(())
    }

    /// Saves every changed cell and clears the pending marks, inside the
    /// caller's transaction; `saved_at` moves once it commits. A failure
    /// may leave the count above the marks; every caller then rolls back
    /// and forgets the whole cache.
    fn save(&mut self, conn: &Connection) -> Result<(), CollectorError> {
        debug_assert_eq!(
            self.unsaved,
            self.cells.values().filter(|c| c.unsaved).count(),
            "the count of unsaved cells is not the number marked"
        );
        if self.unsaved > 0 {
            for (key, cell) in self.cells.iter_mut().filter(|(_, c)| c.unsaved) {
                store::sqlite::save_cell(conn, key, &cell.state)?;
                cell.unsaved = false;
            }
            self.unsaved = 0;
        }
        if !self.pending.is_empty() {
            store::sqlite::clear_pending(conn)?;
            self.pending.clear();
        }
        Ok(())
    }
}

/// The SQLite writer's connection and what it remembers between groups.
pub(super) struct SqliteIngest {
    conn: Connection,
    cache: Cache,
    /// Frames in the log, as the WAL hook last reported them.
    frames: Arc<AtomicU64>,
    /// When the log was last emptied.
    emptied_at: Instant,
}

impl SqliteIngest {
    /// Opens the database for the writer.
    pub(super) fn open(path: &Path) -> Result<SqliteIngest, CollectorError> {
        let mut conn = store::sqlite::open(path)?;
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        let frames = Arc::new(AtomicU64::new(0));
        // Replaces SQLite's automatic checkpoint, which would run inside the
        // COMMIT an acknowledgement waits for; `after_group` checkpoints instead.
        conn.wal_hook(Some({
            let frames = Arc::clone(&frames);
            move |_: &mut rusqlite::hooks::Wal, n: std::ffi::c_int| {
                frames.store(u64::try_from(n).unwrap_or(0), Ordering::Relaxed);
                Ok(())
            }
        }))?;
        let mut ingest = SqliteIngest {
            conn,
            cache: Cache {
                cells: HashMap::new(),
                unsaved: 0,
                pending: HashSet::new(),
                saved_at: Instant::now(),
                data_version: None,
                epoch: None,
            },
            frames,
            emptied_at: Instant::now(),
        };
        // Not rewritten here: the rewrite needs memory about the file's size
        // and holds the write lock, and one that failed for want of either
        // would fail again at every start.
        match store::sqlite::owed_rewrites(&ingest.conn) {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                "{n} erasure(s) have not had the database file rewritten, so copies of what they erased may still be in it: run `hush collector device rewrite`"
            ),
            Err(e) => tracing::warn!("cannot read the erasures owed a rewrite: {e}"),
        }
        // Cells a collector that stopped without saving them (killed, or
        // the machine lost power) left pending are counted now, so the
        // stored cells are exact before the first upload (a database that
        // refuses writes is only reported here; its commits will fail).
        // And the log it left holds the order of its last commits.
        ingest.save_cells();
        empty_log(&ingest.conn);
        Ok(ingest)
    }
}

impl SqliteIngest {
    /// Saves the cells changed since they were last saved (after making the
    /// stored ones exact, if the writer's memory of them is not valid), in
    /// a transaction of its own; returns whether it did.
    fn save_cells(&mut self) -> bool {
        let (conn, cache) = (&self.conn, &mut self.cache);
        if cache.data_version.is_some() && cache.unsaved == 0 && cache.pending.is_empty() {
            return true;
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            tracing::warn!("cannot save the aggregate cells: {e}");
            return false;
        }
        let saved = cache
            .validate(conn)
            .and_then(|()| cache.save(conn))
            .and_then(|()| Ok(conn.execute_batch("COMMIT")?));
        match saved {
            Ok(()) => {
                cache.saved_at = Instant::now();
                true
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                cache.forget();
                tracing::warn!("cannot save the aggregate cells: {e}");
                false
            }
        }
    }
}

impl IngestBackend for SqliteIngest {
    /// One transaction for the group; each upload in its own savepoint, so a
    /// conflicting upload is refused without affecting the others.
    fn commit_group(
        &mut self,
        uploads: &[Upload],
    ) -> Result<Vec<Result<Outcome, Rejection>>, CollectorError> {
        let (conn, cache) = (&self.conn, &mut self.cache);
        let mut results: Vec<Result<Outcome, Rejection>> = Vec::with_capacity(uploads.len());
        let mut saving = false;
        // A group that cannot even take the write lock (behind a long
        // erasure from the command line) changed nothing: the writer's
        // memory stays valid.
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let outcome = (|| -> Result<(), CollectorError> {
            // `data_version` changes when another connection commits. Checked under
            // the write lock, so nothing can change between here and COMMIT: an
            // erased contribution is never written back from a stale cached cell.
            cache.validate(conn)?;
            let pruned_before = store::sqlite::pruned_before(conn)?;
            for upload in uploads {
                // Prepared once, not parsed afresh for every upload. A savepoint
                // (not deleting a refused upload's rows afterwards) because a
                // row moved before its deletion can leave a copy in the page's
                // free gap, which `secure_delete` does not clear.
                conn.prepare_cached("SAVEPOINT upload")?.execute([])?;
                let mut updates: Vec<(CellKey, usize, usize)> = Vec::new();
                match apply(conn, upload, pruned_before, &mut updates) {
                    Ok(Ok(o)) => {
                        conn.prepare_cached("RELEASE upload")?.execute([])?;
                        // Fold the upload into the cached cells only once it is part of the transaction.
                        for (key, r, m) in updates {
                            let valid = &upload.reports[r];
                            let metric = &valid.catalog.metrics()
                                [usize::from(valid.report.metrics()[m].metric())];
                            // Marked in the transaction that stores the report, so a
                            // reader counts the period afresh until the cell is saved.
                            if cache.pending.insert(key.period) {
                                store::sqlite::mark_pending(conn, key.period)?;
                            }
                            let cell = match cache.cells.entry(key) {
                                Entry::Occupied(held) => held.into_mut(),
                                Entry::Vacant(new) => {
                                    let state = store::sqlite::load_cell(conn, new.key())?
                                        .unwrap_or_else(|| CellState::empty(metric));
                                    new.insert(Cell {
                                        state,
                                        unsaved: false,
                                    })
                                }
                            };
                            cell.state
                                .add(&valid.mechanisms[m], valid.report.metrics()[m].value())?;
                            if !cell.unsaved {
                                cell.unsaved = true;
                                cache.unsaved += 1;
                            }
                        }
                        results.push(Ok(o));
                    }
                    Ok(Err(rejection)) => {
                        conn.execute_batch("ROLLBACK TO upload; RELEASE upload")?;
                        results.push(Err(rejection));
                    }
                    Err(e) => return Err(e),
                }
            }
            if cache.saved_at.elapsed() >= SAVE_CELLS_EVERY {
                cache.save(conn)?;
                saving = true;
            }
            conn.execute_batch("COMMIT")?;
            Ok(())
        })();
        match outcome {
            Ok(()) => {
                if saving {
                    cache.saved_at = Instant::now();
                }
                Ok(results)
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                // The cache may hold updates that were never committed, and
                // no longer knows which committed ones it had not saved.
                cache.forget();
                Err(e)
            }
        }
    }

    fn probe(&mut self, after_failure: bool) -> Result<(), String> {
        if after_failure {
            // After a failed commit, only a durable write says it is over:
            // the one-page write emptying the log makes.
            self.conn
                .pragma_update(None, "user_version", store::SCHEMA_VERSION)
        } else {
            // Otherwise the write lock will do; writing nothing, it leaves
            // other connections' caches (keyed on `data_version`) alone.
            self.conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK")
        }
        .map_err(|e| e.to_string())
    }

    fn tidy(&mut self) -> bool {
        // The log is emptied even if the cells could not be saved: its
        // order of arrival must not stay for want of them.
        let saved = self.save_cells();
        let emptied = empty_log(&self.conn);
        if emptied {
            self.emptied_at = Instant::now();
        }
        saved && emptied
    }

    fn after_group(&mut self) -> bool {
        // The uploads that arrive meanwhile wait in the queue and go into
        // the next, larger group.
        if self.emptied_at.elapsed() >= MAX_LOG_AGE {
            return self.tidy();
        }
        if self.frames.load(Ordering::Relaxed) >= CHECKPOINT_FRAMES {
            // Copied, not truncated: the next commit writes the log from its
            // start again, over blocks the file already has (truncating each
            // time made the file system allocate them anew, 8% more CPU).
            if let Err(e) = self
                .conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            {
                tracing::warn!("checkpoint failed: {e}");
            }
            self.frames.store(0, Ordering::Relaxed);
        }
        false
    }
}

/// Empties the log ([`store::sqlite::empty_log`]); returns whether it did,
/// and says in the log why not when it failed.
fn empty_log(conn: &Connection) -> bool {
    store::sqlite::empty_log(conn).unwrap_or_else(|e| {
        tracing::warn!("cannot empty the write-ahead log: {e}");
        false
    })
}

/// Inserts one upload's reports; returns the cells to update as (cell, report
/// index, metric index), or a rejection.
fn apply(
    conn: &Connection,
    job: &Upload,
    pruned_before: u32,
    updates: &mut Vec<(CellKey, usize, usize)>,
) -> Result<Result<Outcome, Rejection>, CollectorError> {
    // Its period was open when the upload arrived, but may have closed and
    // been pruned since: its released cells must not change.
    if let Some(late) = job
        .reports
        .iter()
        .find(|v| v.report.period() < pruned_before)
    {
        return Ok(Err(Rejection::unprocessable(
            category::LATE,
            format!(
                "period {} closed and was pruned while the upload waited",
                late.report.period()
            ),
        )));
    }
    // The token was checked when the request arrived, from the device
    // directory; a device revoked or erased since then must not store
    // anything. The cohort is read here too, not taken from the directory.
    let Some(cohort) = store::sqlite::device_cohort(conn, job.device, &job.token)? else {
        return Ok(Err(Rejection::new(
            401,
            category::UNKNOWN_TOKEN,
            "the device was revoked or erased after its token was checked",
        )));
    };
    let mut outcome = Outcome::default();
    // A new report id in a new (device, period) is the common case, so the
    // insert comes first; only when the primary key or the unique index on
    // (device, period) makes it a no-op is the id looked up, to tell a retry
    // from a conflict.
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO reports (id, device, period, body) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut find = conn.prepare_cached("SELECT device FROM reports WHERE id = ?1")?;
    for (r, valid) in job.reports.iter().enumerate() {
        let report = &valid.report;
        let id = report.id().0;
        let inserted = insert.execute(params![
            &id[..],
            job.device,
            report.period(),
            report.encode()
        ])?;
        if inserted == 0 {
            let existing: Option<i64> = find
                .query_row(params![&id[..]], |row| row.get(0))
                .optional()?;
            match existing {
                Some(d) if d == job.device => {
                    outcome.duplicates += 1;
                    continue;
                }
                Some(_) => {
                    return Ok(Err(Rejection::new(
                        409,
                        category::OTHER_DEVICE,
                        "a report id stored for another device",
                    )));
                }
                None => {
                    return Ok(Err(Rejection::new(
                        409,
                        category::PERIOD_TAKEN,
                        format!(
                            "a second report for period {} from one device",
                            report.period()
                        ),
                    )));
                }
            }
        }
        for (m, metric) in report.metrics().iter().enumerate() {
            updates.push((CellKey::of(report, metric, &cohort), r, m));
        }
        outcome.accepted += 1;
    }
    Ok(Ok(outcome))
}

#[cfg(test)]
mod tests;
