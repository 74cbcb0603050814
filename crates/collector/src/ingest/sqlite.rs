//! Ingestion into SQLite: one write transaction per group of uploads, each
//! upload in its own savepoint; the cells the writer touched kept in memory
//! between groups; and the write-ahead log, which holds page images in commit
//! (arrival) order, emptied when the writer is quiet.

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
const CACHE_CELLS: usize = 1 << 16;

/// Log frames (pages) past which the writer copies the log into the
/// database: about 4 MiB of 1 KiB pages, more than SQLite's default of 1,000
/// so a page changed by many commits is copied once, and fewer than the
/// 4,062 frames the first block of the log's index (the `-shm` file) maps,
/// so emptying can scrub that index (see [`empty_log`]).
const CHECKPOINT_FRAMES: u64 = 3_900;

/// The log is emptied after [`QUIET`](super::QUIET) without an upload and,
/// under a steady trickle that never pauses that long, at least this often.
const MAX_LOG_AGE: Duration = Duration::from_secs(60);

/// The writer's memory: cells it has loaded, valid while no other connection
/// has changed the database (an erasure or a prune from the command line).
struct Cache {
    cells: HashMap<CellKey, CellState>,
    data_version: Option<i64>,
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
        Ok(SqliteIngest {
            conn,
            cache: Cache {
                cells: HashMap::new(),
                data_version: None,
            },
            frames,
            emptied_at: Instant::now(),
        })
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
        let mut dirty: HashSet<CellKey> = HashSet::new();
        let outcome = (|| -> Result<(), CollectorError> {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            // `data_version` changes when another connection commits. Checked under
            // the write lock, so nothing can change between here and COMMIT: an
            // erased contribution is never written back from a stale cached cell.
            let version: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
            if cache.data_version != Some(version) || cache.cells.len() > CACHE_CELLS {
                cache.cells.clear();
                cache.data_version = Some(version);
            }
            for upload in uploads {
                conn.execute_batch("SAVEPOINT upload")?;
                let mut updates: Vec<(CellKey, usize, usize)> = Vec::new();
                match apply(conn, upload, &mut updates) {
                    Ok(Ok(o)) => {
                        conn.execute_batch("RELEASE upload")?;
                        // Fold the upload into the cached cells only once it is part of the transaction.
                        for (key, r, m) in updates {
                            let valid = &upload.reports[r];
                            let metric = &valid.catalog.metrics()
                                [usize::from(valid.report.metrics()[m].metric())];
                            let state = match cache.cells.get_mut(&key) {
                                Some(s) => s,
                                None => {
                                    let loaded = store::sqlite::load_cell(conn, &key)?
                                        .unwrap_or_else(|| CellState::empty(metric));
                                    cache.cells.entry(key.clone()).or_insert(loaded)
                                }
                            };
                            state.add(&valid.mechanisms[m], valid.report.metrics()[m].value())?;
                            dirty.insert(key);
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
            for key in &dirty {
                if let Some(state) = cache.cells.get(key) {
                    store::sqlite::save_cell(conn, key, state)?;
                }
            }
            conn.execute_batch("COMMIT")?;
            Ok(())
        })();
        match outcome {
            Ok(()) => Ok(results),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                // The cache may hold updates that were never committed.
                cache.cells.clear();
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
        let emptied = empty_log(&self.conn);
        if emptied {
            self.emptied_at = Instant::now();
        }
        emptied
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

/// Copies the whole log into the database and truncates it to zero bytes,
/// then scrubs the log's index; returns whether it did (readers still using
/// the log keep it until the next try, and the copy made so far stands).
///
/// The index (the `-shm` file) lists the page each frame wrote, in commit
/// order, and truncating the log does not clear it; SQLite clears a block of
/// it when the first frame of that block is written. So one more commit of
/// one page (page 1, the header) and a second truncation leave the first
/// block, which is all a log of [`CHECKPOINT_FRAMES`] uses, naming page 1
/// only.
fn empty_log(conn: &Connection) -> bool {
    // Without waiting: a truncating checkpoint that waits for readers also
    // holds off the writer's own next commit.
    let truncate = || {
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|busy| busy == 0)
    };
    let emptied = conn.busy_timeout(Duration::ZERO).and_then(|()| {
        Ok(truncate()?
            && conn
                .pragma_update(None, "user_version", store::SCHEMA_VERSION)
                .and_then(|()| truncate())?)
    });
    let restored = conn.busy_timeout(store::BUSY_TIMEOUT);
    match (emptied, restored) {
        (Ok(done), Ok(())) => done,
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!("checkpoint failed: {e}");
            false
        }
    }
}

/// Inserts one upload's reports; returns the cells to update as (cell, report
/// index, metric index), or a rejection.
fn apply(
    conn: &Connection,
    job: &Upload,
    updates: &mut Vec<(CellKey, usize, usize)>,
) -> Result<Result<Outcome, Rejection>, CollectorError> {
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
