//! The ingestion writer: one thread owns the database connection and commits
//! concurrent uploads together (group commit), acknowledging each only after
//! its transaction is durable; it checkpoints the write-ahead log after it
//! has acknowledged, never inside a commit an acknowledgement waits for.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::CollectorError;
use crate::cells::{CellKey, CellState};
use crate::metrics::Metrics;
use crate::store;
use crate::validate::{Rejection, ValidReport, category};

/// What happened to an accepted upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Outcome {
    /// Reports stored and counted.
    pub accepted: u32,
    /// Reports seen before (a retry), acknowledged and not counted again.
    pub duplicates: u32,
}

/// Why an upload was not stored.
#[derive(Debug)]
pub enum IngestError {
    /// The upload conflicts with stored data (4xx for the sender).
    Rejected(Rejection),
    /// The database failed; nothing of the upload was stored (5xx).
    Storage(CollectorError),
}

/// Why the collector is not ready to take uploads (`/readyz` answers 503).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// The writer's queue is full: uploads arrive faster than it commits.
    QueueFull,
    /// An earlier probe is still waiting for the writer.
    ProbeWaiting,
    /// The writer did not commit the probe in time (behind a long queue, or
    /// waiting for a lock another process holds).
    Slow(Duration),
    /// The database refused the write (read-only, full, locked, failing).
    WriteFailed(String),
    /// The writer thread has stopped.
    Stopped,
}

impl NotReady {
    /// The few fixed words `/readyz` answers with; the details go to the log.
    pub fn category(&self) -> &'static str {
        match self {
            NotReady::QueueFull => "ingest queue full",
            NotReady::ProbeWaiting | NotReady::Slow(_) => "writer not keeping up",
            NotReady::WriteFailed(_) => "database not writable",
            NotReady::Stopped => "writer stopped",
        }
    }
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::QueueFull => write!(f, "the ingest queue is full"),
            NotReady::ProbeWaiting => write!(f, "an earlier probe is still waiting for the writer"),
            NotReady::Slow(d) => write!(f, "the writer did not commit within {} ms", d.as_millis()),
            NotReady::WriteFailed(e) => write!(f, "the database refused a write: {e}"),
            NotReady::Stopped => write!(f, "the writer has stopped"),
        }
    }
}

/// Cells the writer keeps in memory beyond this many are dropped (and reloaded
/// from the database when next touched), so the cache cannot grow without bound.
const CACHE_CELLS: usize = 1 << 16;

/// Log frames (pages) past which the writer copies the log into the
/// database: about 4 MiB of 1 KiB pages, more than SQLite's default of 1,000
/// so a page changed by many commits is copied once, and fewer than the
/// 4,062 frames the first block of the log's index (the `-shm` file) maps,
/// so emptying can scrub that index (see [`empty_log`]).
const CHECKPOINT_FRAMES: u64 = 3_900;

/// The log holds page images in commit order, which is arrival order, so it
/// is emptied (copied into the database and truncated to zero bytes) after
/// this long without an upload...
const QUIET: Duration = Duration::from_secs(2);

/// ...and, under a steady trickle that never pauses that long, at least this
/// often.
const MAX_LOG_AGE: Duration = Duration::from_secs(60);

/// What the writer is asked to do.
enum Work {
    /// Store an upload.
    Upload(Job),
    /// Answer whether the database takes writes (`/readyz`).
    Probe(oneshot::Sender<Result<(), NotReady>>),
}

struct Job {
    device: i64,
    /// The hash of the token the upload came with: the device must still hold it.
    token: [u8; 32],
    reports: Vec<ValidReport>,
    reply: oneshot::Sender<Result<Outcome, IngestError>>,
}

/// The handle request handlers submit uploads through.
#[derive(Clone)]
pub struct Writer {
    tx: Sender<Work>,
    /// Set while a probe is queued or running, so health checks that come
    /// faster than a stuck writer answers cannot fill its queue.
    probing: Arc<AtomicBool>,
}

impl Writer {
    /// Opens the database and starts the writer thread; `group` caps how many
    /// uploads share one transaction. The writer counts its commits and the
    /// uploads they stored in `metrics`.
    pub fn start(
        path: &Path,
        group: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Writer, CollectorError> {
        let mut conn = store::open(path)?;
        let frames = Arc::new(AtomicU64::new(0));
        // Replaces SQLite's automatic checkpoint, which would run inside the
        // COMMIT an acknowledgement waits for; `run` checkpoints instead.
        conn.wal_hook(Some({
            let frames = Arc::clone(&frames);
            move |_: &mut rusqlite::hooks::Wal, n: std::ffi::c_int| {
                frames.store(u64::try_from(n).unwrap_or(0), Ordering::Relaxed);
                Ok(())
            }
        }))?;
        let (tx, rx) = crossbeam_channel::bounded::<Work>(group * 4);
        let probing = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            tx,
            probing: Arc::clone(&probing),
        };
        thread::Builder::new()
            .name("hush-writer".into())
            .spawn(move || run(conn, rx, group, &frames, &metrics, &probing))
            .map_err(|e| CollectorError::Internal(format!("cannot start the writer: {e}")))?;
        Ok(writer)
    }

    /// Submits one device's validated upload, made with the token whose hash
    /// is `token`; resolves once it is durable (or refused).
    pub async fn submit(
        &self,
        device: i64,
        token: [u8; 32],
        reports: Vec<ValidReport>,
    ) -> Result<Outcome, IngestError> {
        let (reply, wait) = oneshot::channel();
        let job = Work::Upload(Job {
            device,
            token,
            reports,
            reply,
        });
        let stopped =
            || IngestError::Storage(CollectorError::Internal("the writer has stopped".into()));
        // Usually the queue has room; only when it is full does waiting for room
        // go to a blocking thread, so it never blocks the async runtime.
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Disconnected(_)) => return Err(stopped()),
            Err(TrySendError::Full(job)) => {
                let tx = self.tx.clone();
                let sent = tokio::task::spawn_blocking(move || tx.send(job).is_ok())
                    .await
                    .unwrap_or(false);
                if !sent {
                    return Err(stopped());
                }
            }
        }
        wait.await.unwrap_or_else(|_| {
            Err(IngestError::Storage(CollectorError::Internal(
                "the writer dropped an upload".into(),
            )))
        })
    }

    /// Asks the writer whether the database takes writes, and waits at most
    /// `patience` for the answer: `Ok` means the writer reached the probe
    /// behind the uploads queued before it, took the write lock, and its
    /// last group commit (if any) succeeded, or, after a failed one, a
    /// durable one-page write now succeeds. Never waits for room in a full
    /// queue: a full queue is itself the answer.
    pub async fn probe(&self, patience: Duration) -> Result<(), NotReady> {
        if self.probing.swap(true, Ordering::AcqRel) {
            return Err(NotReady::ProbeWaiting);
        }
        let (reply, wait) = oneshot::channel();
        if let Err(e) = self.tx.try_send(Work::Probe(reply)) {
            self.probing.store(false, Ordering::Release);
            return Err(match e {
                TrySendError::Full(_) => NotReady::QueueFull,
                TrySendError::Disconnected(_) => NotReady::Stopped,
            });
        }
        match tokio::time::timeout(patience, wait).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(NotReady::Stopped),
            Err(_) => Err(NotReady::Slow(patience)),
        }
    }

    /// Uploads waiting for the writer, and how many the queue holds.
    pub fn queue(&self) -> (usize, usize) {
        (self.tx.len(), self.tx.capacity().unwrap_or(usize::MAX))
    }
}

/// The writer's memory: cells it has loaded, valid while no other connection
/// has changed the database (an erasure or a prune from the command line).
struct Cache {
    cells: HashMap<CellKey, CellState>,
    data_version: Option<i64>,
}

fn run(
    conn: Connection,
    rx: Receiver<Work>,
    group: usize,
    frames: &AtomicU64,
    metrics: &Metrics,
    probing: &AtomicBool,
) {
    let mut cache = Cache {
        cells: HashMap::new(),
        data_version: None,
    };
    // Whether the log may hold frames: then an idle writer empties it.
    let mut logged = true;
    // Whether the last group commit failed (and no write succeeded since).
    let mut failing = false;
    // When the writer last wrote to the log.
    let mut quiet_since = Instant::now();
    let mut emptied_at = Instant::now();
    loop {
        let first = if logged {
            // Quiet is counted from the last write, not the last message:
            // health checks (probes) arrive often and write nothing.
            match rx.recv_timeout(QUIET.saturating_sub(quiet_since.elapsed())) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    if empty_log(&conn) {
                        (logged, emptied_at) = (false, Instant::now());
                    } else {
                        // Readers hold the log: try again after another quiet spell.
                        quiet_since = Instant::now();
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(job) => job,
                Err(_) => break,
            }
        };
        let mut jobs = Vec::new();
        let mut probes = Vec::new();
        let mut next = Some(first);
        while let Some(work) = next.take() {
            match work {
                Work::Upload(j) => jobs.push(j),
                Work::Probe(p) => probes.push(p),
            }
            if jobs.len() < group {
                next = rx.try_recv().ok();
            }
        }
        if !jobs.is_empty() {
            failing = !commit_group(&conn, &mut cache, jobs, metrics);
            (logged, quiet_since) = (true, Instant::now());
        }
        for probe in probes {
            let answer = if failing {
                // After a failed commit, only a durable write says it is over:
                // the one-page write emptying the log makes.
                (logged, quiet_since) = (true, Instant::now());
                conn.pragma_update(None, "user_version", store::SCHEMA_VERSION)
            } else {
                // Otherwise the write lock will do; writing nothing, it leaves
                // other connections' caches (keyed on `data_version`) alone.
                conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK")
            };
            failing = failing && answer.is_err();
            probing.store(false, Ordering::Release);
            let _ = probe.send(answer.map_err(|e| NotReady::WriteFailed(e.to_string())));
        }
        // After the acknowledgements: the uploads that arrive meanwhile wait
        // in the queue and go into the next, larger group.
        if emptied_at.elapsed() >= MAX_LOG_AGE {
            if empty_log(&conn) {
                (logged, emptied_at) = (false, Instant::now());
            }
        } else if frames.load(Ordering::Relaxed) >= CHECKPOINT_FRAMES {
            // Copied, not truncated: the next commit writes the log from its
            // start again, over blocks the file already has (truncating each
            // time made the file system allocate them anew, 8% more CPU).
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!("checkpoint failed: {e}");
            }
            frames.store(0, Ordering::Relaxed);
        }
    }
    empty_log(&conn);
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

/// One transaction for a group of uploads; each upload in its own savepoint,
/// so a conflicting upload is refused without affecting the others. Returns
/// whether the transaction committed.
fn commit_group(conn: &Connection, cache: &mut Cache, jobs: Vec<Job>, metrics: &Metrics) -> bool {
    let started = Instant::now();
    let mut results: Vec<Result<Outcome, Rejection>> = Vec::with_capacity(jobs.len());
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
        for job in &jobs {
            conn.execute_batch("SAVEPOINT upload")?;
            let mut updates: Vec<(CellKey, usize, usize)> = Vec::new();
            match apply(conn, job, &mut updates) {
                Ok(Ok(o)) => {
                    conn.execute_batch("RELEASE upload")?;
                    // Fold the upload into the cached cells only once it is part of the transaction.
                    for (key, r, m) in updates {
                        let valid = &job.reports[r];
                        let metric = &valid.catalog.metrics()
                            [usize::from(valid.report.metrics()[m].metric())];
                        let state = match cache.cells.get_mut(&key) {
                            Some(s) => s,
                            None => {
                                let loaded = store::load_cell(conn, &key)?
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
                store::save_cell(conn, key, state)?;
            }
        }
        conn.execute_batch("COMMIT")?;
        Ok(())
    })();
    let committed = outcome.is_ok();
    metrics.commit(jobs.len(), started.elapsed().as_secs_f64(), committed);
    match outcome {
        Ok(()) => {
            for (job, result) in jobs.into_iter().zip(results) {
                if let Ok(o) = &result {
                    metrics.upload(*o);
                }
                let _ = job.reply.send(result.map_err(IngestError::Rejected));
            }
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            // The cache may hold updates that were never committed.
            cache.cells.clear();
            tracing::error!(
                "commit failed, {} uploads refused with 503: {e}",
                jobs.len()
            );
            for job in jobs {
                let _ = job
                    .reply
                    .send(Err(IngestError::Storage(CollectorError::Internal(
                        e.to_string(),
                    ))));
            }
        }
    }
    committed
}

/// Inserts one upload's reports; returns the cells to update as (cell, report
/// index, metric index), or a rejection.
fn apply(
    conn: &Connection,
    job: &Job,
    updates: &mut Vec<(CellKey, usize, usize)>,
) -> Result<Result<Outcome, Rejection>, CollectorError> {
    // The token was checked when the request arrived, from the device
    // directory; a device revoked or erased since then must not store
    // anything. The cohort is read here too, not taken from the directory.
    let Some(cohort) = store::device_cohort(conn, job.device, &job.token)? else {
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
