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
use crate::store::sqlite::coalesce;
use crate::validate::{Rejection, category};

/// Cells the writer keeps in memory beyond this many are dropped (and reloaded
/// from the database when next touched), so the cache cannot grow without bound.
const CACHE_CELLS: usize = 1 << 16;

/// Log frames (pages) past which the writer copies the log into the
/// database: about 40 MiB of 1 KiB pages. Reports land in random pages, so
/// the longer the log, the more of its frames are a page written again, and
/// the checkpoint copies each page once: at 3,900 frames the checkpoint was
/// 29% of the writer's CPU samples, at 40,000 it is 8%, and the collector
/// took 5 to 23% less CPU per report in alternating rounds. Past the 4,062
/// frames of its first block the log's index grows blocks that emptying
/// zeroes (see [`scrub_index`]).
const CHECKPOINT_FRAMES: u64 = 40_000;

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
    cells: HashMap<CellKey, CellState>,
    /// Cells changed since they were last saved (all in `cells`).
    unsaved: HashSet<CellKey>,
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

impl Cache {
    /// Forgets everything: the next commit settles the pending periods
    /// from their reports first.
    fn forget(&mut self) {
        self.cells.clear();
        self.unsaved.clear();
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
    /// caller's transaction; `saved_at` moves once it commits.
    fn save(&mut self, conn: &Connection) -> Result<(), CollectorError> {
        for key in self.unsaved.drain() {
            let state = self.cells.get(&key).ok_or_else(|| {
                CollectorError::Internal("an unsaved cell is not in memory".into())
            })?;
            store::sqlite::save_cell(conn, &key, state)?;
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
                unsaved: HashSet::new(),
                pending: HashSet::new(),
                saved_at: Instant::now(),
                data_version: None,
                epoch: None,
            },
            frames,
            emptied_at: Instant::now(),
        };
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
        if cache.data_version.is_some() && cache.unsaved.is_empty() && cache.pending.is_empty() {
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
                conn.execute_batch("SAVEPOINT upload")?;
                let mut updates: Vec<(CellKey, usize, usize)> = Vec::new();
                match apply(conn, upload, pruned_before, &mut updates) {
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
                            // Marked in the transaction that stores the report, so a
                            // reader counts the period afresh until the cell is saved.
                            if cache.pending.insert(key.period) {
                                store::sqlite::mark_pending(conn, key.period)?;
                            }
                            cache.unsaved.insert(key);
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

/// Copies the whole log into the database and truncates it to zero bytes,
/// then scrubs the log's index; returns whether it did (readers still using
/// the log keep it until the next try, and the copy made so far stands).
///
/// The index (the `-shm` file) lists the page each frame wrote, in commit
/// order, and truncating the log does not clear it; SQLite clears a block of
/// it when the first frame of that block is written. So one more commit of
/// one page (page 1, the header) and a second truncation leave the first
/// block naming page 1 only, and [`scrub_index`] zeroes the later blocks a
/// long log grew.
fn empty_log(conn: &Connection) -> bool {
    // Without waiting: a truncating checkpoint that waits for readers also
    // holds off the writer's own next commit, and a command-line erasure
    // holding the write lock is waited for at the next try.
    let truncate = || {
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|busy| busy == 0)
    };
    let emptied = conn
        .busy_timeout(Duration::ZERO)
        .map_err(CollectorError::from)
        .and_then(|()| {
            Ok(truncate()?
                && conn
                    .pragma_update(None, "user_version", store::SCHEMA_VERSION)
                    .and_then(|()| truncate())?
                && scrub_index(conn)?)
        });
    let restored = conn
        .busy_timeout(store::BUSY_TIMEOUT)
        .map_err(CollectorError::from);
    match (emptied, restored) {
        (Ok(done), Ok(())) => done,
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!("cannot empty the write-ahead log: {e}");
            false
        }
    }
}

/// Zeroes the blocks of the log's index past the first, once the log is
/// empty; returns whether the log was still empty (a commit from another
/// connection in between leaves the scrub to the next emptying).
///
/// Under the write lock, so no commit fills a block meanwhile.
fn scrub_index(conn: &Connection) -> Result<bool, CollectorError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let scrubbed = coalesce::zero_index_past_first(conn);
    // Nothing was written: this only releases the lock, and must, even
    // after a failure.
    let released = conn.execute_batch("ROLLBACK");
    let scrubbed = scrubbed?;
    released?;
    Ok(scrubbed)
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
mod tests {
    use super::*;

    /// The page numbers every block of the log's index lists, in frame
    /// order, as `conn` maps the index.
    fn listed(conn: &Connection) -> Vec<u32> {
        coalesce::index_copy(conn)
            .chunks(coalesce::INDEX_REGION)
            .enumerate()
            .flat_map(|(block, bytes)| {
                // After the first block's 136-byte header, 4,062 page
                // numbers; 4,096 in each later block.
                let (from, frames) = if block == 0 { (136, 4062) } else { (0, 4096) };
                bytes[from..from + 4 * frames].chunks(4)
            })
            .map(|b| u32::from_ne_bytes(b.try_into().expect("four bytes")))
            .filter(|&page| page != 0)
            .collect()
    }

    /// Asserts that the index lists page 1 only (the scrubbing commit's),
    /// and that its blocks past the first, hash tables included, are zeros.
    fn assert_scrubbed(conn: &Connection) {
        let left = listed(conn);
        assert!(
            left == [1],
            "the index still lists {} pages, from {:?}",
            left.len(),
            &left[..left.len().min(8)]
        );
        let index = coalesce::index_copy(conn);
        assert!(index.len() > coalesce::INDEX_REGION);
        assert!(index[coalesce::INDEX_REGION..].iter().all(|&b| b == 0));
    }

    /// Commits `commits` transactions of 1,000 reports of one page each, in
    /// scattered id order, from report `from` on.
    fn fill(conn: &Connection, from: u64, commits: u64) {
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        for c in 0..commits {
            conn.execute_batch("BEGIN").unwrap();
            for i in from + c * 1_000..from + (c + 1) * 1_000 {
                let id = i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes();
                conn.execute(
                    "INSERT INTO reports (id, device, period, body) VALUES (?1, ?2, 0, zeroblob(700))",
                    params![&id[..], i as i64],
                )
                .unwrap();
            }
            conn.execute_batch("COMMIT").unwrap();
        }
    }

    /// The reports a new connection counts, once it found the file whole.
    fn count_afresh(path: &Path) -> i64 {
        let conn = store::sqlite::open(path).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        conn.query_row("SELECT COUNT(*) FROM reports", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn emptying_a_long_log_zeroes_every_block_of_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let writer = store::sqlite::open(&path).unwrap();
        // Another connection writes too, as a command-line erasure would.
        let other = store::sqlite::open(&path).unwrap();
        fill(&writer, 0, 10);
        let before = listed(&writer);
        assert!(
            before.len() > 4062 + 4096,
            "the log reached only {} frames: the test tests nothing",
            before.len()
        );

        assert!(empty_log(&writer));
        let wal = store::sqlite::sidecar(&path, "-wal");
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
        assert_scrubbed(&writer);
        assert_scrubbed(&other);

        // SQLite keeps finding every page in a log that grows over the
        // zeroed blocks again.
        fill(&other, 10_000, 6);
        assert!(listed(&writer).len() > 4062 + 4096);
        assert_eq!(count_afresh(&path), 16_000);
        assert!(empty_log(&writer));
        assert_scrubbed(&other);
        assert_eq!(count_afresh(&path), 16_000);
    }

    #[test]
    fn a_log_written_to_meanwhile_is_left_for_the_next_emptying() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let writer = store::sqlite::open(&path).unwrap();
        // A commit between the truncation and the scrub (here, before it):
        // the blocks past the first hold frames that readers look up.
        fill(&writer, 0, 6);
        let listed_before = listed(&writer);
        assert!(listed_before.len() > 4062 + 1000);
        assert!(!scrub_index(&writer).unwrap());
        assert_eq!(listed(&writer), listed_before);
        assert_eq!(count_afresh(&path), 6_000);
        // The transaction it took is over: the connection writes again.
        assert!(writer.is_autocommit());
        fill(&writer, 6_000, 1);
    }

    /// SQLite's POSIX locks on the index survive the scrub: among them the
    /// one that tells a process opening the database that the index is in
    /// use (byte 128), without which that process would reset the index
    /// under this one's mappings. Closing any handle to the file would drop
    /// them all, which a test in one process cannot otherwise see.
    /// The major and minor numbers of a Linux device number (glibc's
    /// `gnu_dev_major` and `gnu_dev_minor`).
    #[cfg(target_os = "linux")]
    fn dev_major(dev: u64) -> u64 {
        ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)
    }

    #[cfg(target_os = "linux")]
    fn dev_minor(dev: u64) -> u64 {
        ((dev >> 12) & 0xffff_ff00) | (dev & 0xff)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn scrubbing_keeps_the_index_locks_this_process_holds() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let writer = store::sqlite::open(&path).unwrap();
        fill(&writer, 0, 5);
        let index = std::fs::metadata(store::sqlite::sidecar(&path, "-shm")).unwrap();
        assert!(
            index.len() > coalesce::INDEX_REGION as u64,
            "nothing to zero"
        );
        // /proc/locks names the file as major:minor:inode, in hexadecimal,
        // hexadecimal and decimal.
        let (major, minor) = (dev_major(index.dev()), dev_minor(index.dev()));
        let file = format!("{major:02x}:{minor:02x}:{}", index.ino());
        let in_use_lock = || {
            let me = std::process::id().to_string();
            std::fs::read_to_string("/proc/locks")
                .unwrap()
                .lines()
                .any(|line| {
                    // "1: POSIX  ADVISORY  READ 4242 fd:01:1234 128 128"
                    let f: Vec<&str> = line.split_whitespace().collect();
                    f.len() >= 8 && f[1] == "POSIX" && f[4] == me && f[5] == file && f[6] == "128"
                })
        };
        assert!(in_use_lock(), "no lock to lose: the test tests nothing");
        assert!(empty_log(&writer));
        assert!(in_use_lock(), "the scrub dropped the index's in-use lock");
    }

    /// The database of a writer, enrolled devices and their uploads.
    struct Fleet {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        config: crate::CollectorConfig,
        db: Box<dyn store::Store>,
        rng: hush_ldp::NoiseRng,
        enrolled: u64,
    }

    impl Fleet {
        fn new() -> Fleet {
            use rand::SeedableRng;
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("c.sqlite");
            let config = crate::CollectorConfig {
                database: store::Database::Sqlite(path.clone()),
                ..crate::CollectorConfig::default()
            };
            let db = store::open(&config.database).unwrap();
            Fleet {
                _dir: dir,
                path,
                config,
                db,
                rng: hush_ldp::NoiseRng::seed_from_u64(29),
                enrolled: 0,
            }
        }

        /// Enrolls `devices` devices, each with its reports for the 8 open periods.
        fn uploads(&mut self, devices: u64) -> Vec<Upload> {
            self.uploads_of(devices, &hush_report::Catalog::builtin())
        }

        /// The same, under `catalog`, which must be known to the database.
        fn uploads_of(&mut self, devices: u64, catalog: &hush_report::Catalog) -> Vec<Upload> {
            let catalogs = crate::Catalogs::load(self.db.as_mut()).unwrap();
            let current = self.config.clock().current;
            (0..devices)
                .map(|d| {
                    self.enrolled += 1;
                    let token = format!("device-token-{}", self.enrolled);
                    let device = self
                        .db
                        .add_device(&token, "team", self.config.now(), false)
                        .unwrap();
                    let reports = crate::loadgen::device_reports(
                        &self.config,
                        catalog,
                        current,
                        d,
                        8,
                        &mut self.rng,
                    )
                    .unwrap()
                    .into_iter()
                    .map(|r| {
                        crate::validate::validate(r, &catalogs, &self.config, current).unwrap()
                    })
                    .collect();
                    Upload {
                        device,
                        token: crate::tokens::token_hash(&token),
                        reports,
                    }
                })
                .collect()
        }

        fn store(&mut self, writer: &mut SqliteIngest, uploads: &[Upload]) {
            for result in writer.commit_group(uploads).unwrap() {
                assert_eq!(result.unwrap().accepted, 8);
            }
        }

        /// The cells as the table holds them, read without counting the
        /// pending periods afresh.
        fn table(&self) -> std::collections::BTreeMap<CellKey, CellState> {
            let conn = store::sqlite::open(&self.path).unwrap();
            let cells = store::sqlite::stored_cells(&conn, 0, u32::MAX).unwrap();
            cells.into_iter().collect()
        }

        fn pending(&self) -> i64 {
            let conn = store::sqlite::open(&self.path).unwrap();
            conn.query_row("SELECT COUNT(*) FROM pending", [], |r| r.get(0))
                .unwrap()
        }

        fn recount(&mut self) -> std::collections::BTreeMap<CellKey, CellState> {
            let catalogs = crate::Catalogs::load(self.db.as_mut()).unwrap();
            store::recount_cells(self.db.as_mut(), &catalogs).unwrap()
        }

        fn cells(&mut self) -> std::collections::BTreeMap<CellKey, CellState> {
            self.db.all_cells(None, None).unwrap().into_iter().collect()
        }
    }

    #[test]
    fn cells_are_saved_at_most_once_a_second_and_read_exact_meanwhile() {
        let mut fleet = Fleet::new();
        let mut writer = SqliteIngest::open(&fleet.path).unwrap();
        let uploads = fleet.uploads(6);
        fleet.store(&mut writer, &uploads);
        let recount = fleet.recount();
        assert!(!recount.is_empty());
        // Not saved yet: the reports' 8 periods are pending, and a reader
        // counts them afresh.
        assert!(fleet.table().is_empty());
        assert_eq!(fleet.pending(), 8);
        assert_eq!(fleet.cells(), recount);
        // Saved once the writer is quiet.
        assert!(writer.tidy());
        assert_eq!(fleet.table(), recount);
        assert_eq!(fleet.pending(), 0);
        assert_eq!(fleet.cells(), recount);
        // And by a commit a second after the last save.
        let more = fleet.uploads(3);
        writer.cache.saved_at -= SAVE_CELLS_EVERY;
        fleet.store(&mut writer, &more);
        assert_eq!(fleet.pending(), 0);
        assert_eq!(fleet.table(), fleet.recount());
    }

    #[test]
    fn a_writer_that_stopped_without_saving_is_counted_afresh_at_the_next_start() {
        let mut fleet = Fleet::new();
        let mut writer = SqliteIngest::open(&fleet.path).unwrap();
        let uploads = fleet.uploads(5);
        fleet.store(&mut writer, &uploads);
        assert!(writer.tidy());
        let more = fleet.uploads(4);
        fleet.store(&mut writer, &more);
        // Killed: nothing saved since the first uploads.
        drop(writer);
        let recount = fleet.recount();
        assert_ne!(fleet.table(), recount);
        assert_eq!(fleet.cells(), recount);
        let _restarted = SqliteIngest::open(&fleet.path).unwrap();
        assert_eq!(fleet.table(), recount);
        assert_eq!(fleet.pending(), 0);
    }

    #[test]
    fn an_erasure_between_saves_is_never_undone_by_the_writers_memory() {
        let mut fleet = Fleet::new();
        let mut writer = SqliteIngest::open(&fleet.path).unwrap();
        let uploads = fleet.uploads(6);
        fleet.store(&mut writer, &uploads);
        // The writer holds the erased device's reports in cells it has not saved.
        let erased = fleet
            .db
            .erase_device(
                &crate::Catalogs::builtin(),
                &store::DeviceRef::Id(uploads[0].device),
            )
            .unwrap()
            .unwrap();
        assert_eq!(erased.reports, 8);
        let recount = fleet.recount();
        assert_eq!(fleet.table(), recount);
        // The next commit and save start from the erased cells.
        let more = fleet.uploads(2);
        fleet.store(&mut writer, &more);
        assert!(writer.tidy());
        assert_eq!(fleet.table(), fleet.recount());
        let reports: u64 = fleet.table().values().map(CellState::reports).sum();
        assert_eq!(
            reports,
            7 * 8 * u64::from(hush_report::Catalog::builtin().metrics_per_report())
        );
    }

    #[test]
    fn an_enrollment_between_saves_keeps_the_writers_memory() {
        let mut fleet = Fleet::new();
        let mut writer = SqliteIngest::open(&fleet.path).unwrap();
        let uploads = fleet.uploads(4);
        fleet.store(&mut writer, &uploads);
        // Enrolling devices commits from another connection, but leaves
        // reports and cells alone: nothing is counted afresh.
        let more = fleet.uploads(4);
        fleet.store(&mut writer, &more);
        assert!(fleet.table().is_empty());
        assert_eq!(fleet.cells(), fleet.recount());
        assert!(writer.tidy());
        assert_eq!(fleet.table(), fleet.recount());
    }

    #[test]
    fn two_writers_on_one_database_count_every_report() {
        let mut fleet = Fleet::new();
        let mut first = SqliteIngest::open(&fleet.path).unwrap();
        let mut second = SqliteIngest::open(&fleet.path).unwrap();
        for _ in 0..3 {
            let uploads = fleet.uploads(2);
            fleet.store(&mut first, &uploads);
            let uploads = fleet.uploads(2);
            fleet.store(&mut second, &uploads);
        }
        assert_eq!(fleet.cells(), fleet.recount());
        assert!(first.tidy());
        assert!(second.tidy());
        assert_eq!(fleet.table(), fleet.recount());
    }

    #[test]
    fn cells_of_a_catalog_this_build_does_not_know_are_kept_not_recounted() {
        let mut fleet = Fleet::new();
        // Reports under a published revision, counted and saved...
        let steps = hush_report::RangeSteps::new([(hush_report::Measure::Keystrokes, 8)]).unwrap();
        let period = fleet.config.clock().current;
        fleet.db.publish_ranges(&steps, period).unwrap();
        let mut writer = SqliteIngest::open(&fleet.path).unwrap();
        let revised = hush_report::Catalog::with_ranges(&steps);
        let uploads = fleet.uploads_of(3, &revised);
        fleet.store(&mut writer, &uploads);
        assert!(writer.tidy());
        drop(writer);
        let revised_cells: Vec<_> = fleet
            .table()
            .into_iter()
            .filter(|(key, _)| key.catalog == revised.hash())
            .collect();
        assert!(!revised_cells.is_empty());
        // ...and then a database that no longer knows the revision (as an
        // older build's catalog is unknown to a newer one).
        store::sqlite::open(&fleet.path)
            .unwrap()
            .execute_batch("DELETE FROM ranges")
            .unwrap();
        let mut writer = SqliteIngest::open(&fleet.path).unwrap();
        let uploads = fleet.uploads(2);
        fleet.store(&mut writer, &uploads);
        assert_eq!(fleet.pending(), 8);
        // Readers, an erasure and the writer's save all work, and keep the
        // unknown revision's cells as they were.
        let kept = |cells: &std::collections::BTreeMap<CellKey, CellState>| -> Vec<_> {
            cells
                .iter()
                .filter(|(key, _)| key.catalog == revised.hash())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        assert_eq!(kept(&fleet.cells()), revised_cells);
        fleet
            .db
            .erase_device(
                &crate::Catalogs::builtin(),
                &store::DeviceRef::Id(uploads[0].device),
            )
            .unwrap()
            .unwrap();
        assert_eq!(kept(&fleet.table()), revised_cells);
        let more = fleet.uploads(1);
        fleet.store(&mut writer, &more);
        assert!(writer.tidy());
        assert_eq!(kept(&fleet.table()), revised_cells);
        let builtin = |cells: std::collections::BTreeMap<CellKey, CellState>| -> u64 {
            cells
                .iter()
                .filter(|(key, _)| key.catalog != revised.hash())
                .map(|(_, c)| c.reports())
                .sum()
        };
        assert_eq!(
            builtin(fleet.table()),
            2 * 8 * u64::from(hush_report::Catalog::builtin().metrics_per_report())
        );
    }

    #[test]
    fn a_report_that_waited_while_its_period_was_pruned_is_refused() {
        let mut fleet = Fleet::new();
        let mut writer = SqliteIngest::open(&fleet.path).unwrap();
        let uploads = fleet.uploads(3);
        fleet.store(&mut writer, &uploads);
        assert!(writer.tidy());
        // Checked while its periods were open...
        let waiting = fleet.uploads(1);
        let released = fleet.table();
        // ...then they closed and were pruned, cells kept.
        let mut later = fleet.config.clock();
        later.current += 100;
        assert_eq!(fleet.db.prune(&later, later.current - 50).unwrap(), 3 * 8);
        assert_eq!(fleet.table(), released);
        let refused = writer.commit_group(&waiting).unwrap();
        let rejection = refused[0].as_ref().unwrap_err();
        assert_eq!(rejection.category, category::LATE);
        assert_eq!(fleet.pending(), 0);
        assert!(writer.tidy());
        assert_eq!(fleet.table(), released);
    }

    #[test]
    fn a_group_that_fails_while_saving_loses_no_committed_count() {
        let mut fleet = Fleet::new();
        let mut writer = SqliteIngest::open(&fleet.path).unwrap();
        let uploads = fleet.uploads(3);
        fleet.store(&mut writer, &uploads);
        // The next group is due to save the cells, and saving fails: the
        // group is refused whole, and the writer forgets which committed
        // cells it had not saved.
        writer
            .conn
            .execute_batch(
                "CREATE TEMP TRIGGER refuse BEFORE INSERT ON main.cells
                 BEGIN SELECT RAISE(ABORT, 'the disk is full'); END",
            )
            .unwrap();
        writer.cache.saved_at -= SAVE_CELLS_EVERY;
        let refused = fleet.uploads(2);
        assert!(writer.commit_group(&refused).is_err());
        writer.conn.execute_batch("DROP TRIGGER refuse").unwrap();
        // The next group counts the pending periods afresh, so the first
        // uploads stay counted and the refused ones are not.
        let more = fleet.uploads(1);
        fleet.store(&mut writer, &more);
        assert!(writer.tidy());
        let recount = fleet.recount();
        assert_eq!(fleet.table(), recount);
        let reports: u64 = recount.values().map(CellState::reports).sum();
        assert_eq!(
            reports,
            4 * 8 * u64::from(hush_report::Catalog::builtin().metrics_per_report())
        );
    }
}
