//! The ingestion writer: one thread owns the database connection and commits
//! concurrent uploads together (group commit), acknowledging each only after
//! its transaction is durable; its backend tidies up (SQLite checkpoints its
//! write-ahead log) after the acknowledgements, never inside a commit one
//! waits for.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use tokio::sync::oneshot;

use crate::CollectorError;
use crate::metrics::Metrics;
use crate::store::Database;
use crate::validate::{Rejection, ValidReport};

mod postgres;
mod sqlite;

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

/// After this long without a write the writer lets its backend tidy up:
/// SQLite's log holds page images in commit order, which is arrival order,
/// so it is then emptied (copied into the database and truncated to zero
/// bytes).
const QUIET: Duration = Duration::from_secs(2);

/// What the writer is asked to do.
enum Work {
    /// Store an upload.
    Upload(Job),
    /// Answer whether the database takes writes (`/readyz`).
    Probe(oneshot::Sender<Result<(), NotReady>>),
}

/// One device's validated upload, as a backend stores it.
struct Upload {
    device: i64,
    /// The hash of the token the upload came with: the device must still hold it.
    token: [u8; 32],
    reports: Vec<ValidReport>,
}

struct Job {
    upload: Upload,
    reply: oneshot::Sender<Result<Outcome, IngestError>>,
}

/// What the writer thread needs of a database.
///
/// A backend must acknowledge nothing that is not durable: `commit_group`
/// returns only after its transaction has committed with the database's
/// full durability, and on any error must leave nothing of the group stored.
trait IngestBackend: Send {
    /// Stores a group of uploads in one transaction and returns each upload's
    /// outcome, in order: stored (with its duplicates), or refused whole (a
    /// conflicting report, a device revoked since its token was checked). An
    /// `Err` means the transaction did not commit and nothing was stored.
    fn commit_group(
        &mut self,
        uploads: &[Upload],
    ) -> Result<Vec<Result<Outcome, Rejection>>, CollectorError>;

    /// Whether the database takes writes now; `after_failure` (the last
    /// commit failed) asks for a durable write, not just the write lock.
    fn probe(&mut self, after_failure: bool) -> Result<(), String>;

    /// Called after [`QUIET`] without a write; returns whether nothing is
    /// left to tidy (the writer then waits for work without a timeout).
    fn tidy(&mut self) -> bool;

    /// Called after each round's acknowledgements; returns whether it left
    /// nothing to tidy.
    fn after_group(&mut self) -> bool;
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
        database: &Database,
        group: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Writer, CollectorError> {
        let backend: Box<dyn IngestBackend> = match database {
            Database::Sqlite(path) => Box::new(sqlite::SqliteIngest::open(path)?),
            Database::Postgres(url) => Box::new(postgres::PgIngest::open(url)?),
        };
        let (tx, rx) = crossbeam_channel::bounded::<Work>(group * 4);
        let probing = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            tx,
            probing: Arc::clone(&probing),
        };
        thread::Builder::new()
            .name("hush-writer".into())
            .spawn(move || run(backend, rx, group, &metrics, &probing))
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
            upload: Upload {
                device,
                token,
                reports,
            },
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

fn run(
    mut backend: Box<dyn IngestBackend>,
    rx: Receiver<Work>,
    group: usize,
    metrics: &Metrics,
    probing: &AtomicBool,
) {
    // Whether the backend may have tidying to do once the writer is quiet.
    let mut untidy = true;
    // Whether the last group commit failed (and no write succeeded since).
    let mut failing = false;
    // When the writer last wrote.
    let mut quiet_since = Instant::now();
    loop {
        let first = if untidy {
            // Quiet is counted from the last write, not the last message:
            // health checks (probes) arrive often and write nothing.
            match rx.recv_timeout(QUIET.saturating_sub(quiet_since.elapsed())) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    if backend.tidy() {
                        untidy = false;
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
            failing = !commit(backend.as_mut(), jobs, metrics);
            (untidy, quiet_since) = (true, Instant::now());
        }
        for probe in probes {
            if failing {
                (untidy, quiet_since) = (true, Instant::now());
            }
            let answer = backend.probe(failing);
            failing = failing && answer.is_err();
            probing.store(false, Ordering::Release);
            let _ = probe.send(answer.map_err(NotReady::WriteFailed));
        }
        if backend.after_group() {
            untidy = false;
        }
    }
    backend.tidy();
}

/// Commits one group and answers each of its uploads: their outcomes once
/// the transaction is durable, or 503 to all if it failed. Returns whether
/// it committed.
fn commit(backend: &mut dyn IngestBackend, jobs: Vec<Job>, metrics: &Metrics) -> bool {
    let started = Instant::now();
    let (uploads, replies): (Vec<Upload>, Vec<_>) =
        jobs.into_iter().map(|j| (j.upload, j.reply)).unzip();
    let outcome = backend.commit_group(&uploads).and_then(|results| {
        // Answered 503 (and so retried, and then found duplicate) rather than
        // acknowledging an upload the backend gave no outcome for.
        if results.len() == uploads.len() {
            Ok(results)
        } else {
            Err(CollectorError::Internal(format!(
                "the backend answered {} of {} uploads",
                results.len(),
                uploads.len()
            )))
        }
    });
    metrics.commit(
        uploads.len(),
        started.elapsed().as_secs_f64(),
        outcome.is_ok(),
    );
    match outcome {
        Ok(results) => {
            for (reply, result) in replies.into_iter().zip(results) {
                if let Ok(o) = &result {
                    metrics.upload(*o);
                }
                let _ = reply.send(result.map_err(IngestError::Rejected));
            }
            true
        }
        Err(e) => {
            tracing::error!(
                "commit failed, {} uploads refused with 503: {e}",
                uploads.len()
            );
            for reply in replies {
                let _ = reply.send(Err(IngestError::Storage(CollectorError::Internal(
                    e.to_string(),
                ))));
            }
            false
        }
    }
}
