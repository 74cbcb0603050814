//! The ingestion writer: one thread owns the database connection and commits
//! concurrent uploads together (group commit), acknowledging each only after
//! its transaction is durable.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::thread;

use crossbeam_channel::{Receiver, Sender};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::CollectorError;
use crate::cells::{CellKey, CellState};
use crate::store;
use crate::validate::{Rejection, ValidReport};

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

struct Job {
    device: i64,
    cohort: String,
    reports: Vec<ValidReport>,
    now: i64,
    reply: oneshot::Sender<Result<Outcome, IngestError>>,
}

/// The handle request handlers submit uploads through.
#[derive(Clone)]
pub struct Writer {
    tx: Sender<Job>,
}

impl Writer {
    /// Opens the database and starts the writer thread; `group` caps how many
    /// uploads share one transaction.
    pub fn start(path: &Path, group: usize) -> Result<Writer, CollectorError> {
        let conn = store::open(path)?;
        let (tx, rx) = crossbeam_channel::bounded::<Job>(group * 4);
        thread::Builder::new()
            .name("hush-writer".into())
            .spawn(move || run(conn, rx, group))
            .map_err(|e| CollectorError::Internal(format!("cannot start the writer: {e}")))?;
        Ok(Writer { tx })
    }

    /// Submits one device's validated upload; resolves once it is durable (or refused).
    pub async fn submit(
        &self,
        device: i64,
        cohort: String,
        reports: Vec<ValidReport>,
        now: i64,
    ) -> Result<Outcome, IngestError> {
        let (reply, wait) = oneshot::channel();
        let job = Job {
            device,
            cohort,
            reports,
            now,
            reply,
        };
        let tx = self.tx.clone();
        // The queue is bounded; waiting for room must not block the async runtime.
        let sent = tokio::task::spawn_blocking(move || tx.send(job).is_ok())
            .await
            .unwrap_or(false);
        if !sent {
            return Err(IngestError::Storage(CollectorError::Internal(
                "the writer has stopped".into(),
            )));
        }
        wait.await.unwrap_or_else(|_| {
            Err(IngestError::Storage(CollectorError::Internal(
                "the writer dropped an upload".into(),
            )))
        })
    }
}

fn run(conn: Connection, rx: Receiver<Job>, group: usize) {
    let mut cache: HashMap<CellKey, CellState> = HashMap::new();
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < group {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        commit_group(&conn, &mut cache, jobs);
    }
}

/// One transaction for a group of uploads; each upload in its own savepoint,
/// so a conflicting upload is refused without affecting the others.
fn commit_group(conn: &Connection, cache: &mut HashMap<CellKey, CellState>, jobs: Vec<Job>) {
    let mut results: Vec<Result<Outcome, Rejection>> = Vec::with_capacity(jobs.len());
    let mut dirty: HashSet<CellKey> = HashSet::new();
    let outcome = (|| -> Result<(), CollectorError> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
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
                        let state = match cache.get_mut(&key) {
                            Some(s) => s,
                            None => {
                                let loaded = store::load_cell(conn, &key)?
                                    .unwrap_or_else(|| CellState::empty(metric));
                                cache.entry(key.clone()).or_insert(loaded)
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
            if let Some(state) = cache.get(key) {
                store::save_cell(conn, key, state)?;
            }
        }
        conn.execute_batch("COMMIT")?;
        Ok(())
    })();
    match outcome {
        Ok(()) => {
            for (job, result) in jobs.into_iter().zip(results) {
                let _ = job.reply.send(result.map_err(IngestError::Rejected));
            }
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            // The cache may hold updates that were never committed.
            cache.clear();
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
}

/// Inserts one upload's reports; returns the cells to update as (cell, report
/// index, metric index), or a rejection.
#[allow(clippy::type_complexity)]
fn apply(
    conn: &Connection,
    job: &Job,
    updates: &mut Vec<(CellKey, usize, usize)>,
) -> Result<Result<Outcome, Rejection>, CollectorError> {
    let mut outcome = Outcome::default();
    for (r, valid) in job.reports.iter().enumerate() {
        let report = &valid.report;
        let id = report.id().0;
        let existing: Option<i64> = conn
            .query_row(
                "SELECT device FROM reports WHERE id = ?1",
                params![&id[..]],
                |row| row.get(0),
            )
            .optional()?;
        match existing {
            Some(d) if d == job.device => {
                outcome.duplicates += 1;
                continue;
            }
            Some(_) => {
                return Ok(Err(Rejection {
                    status: 409,
                    reason: format!("report {} was already sent by another device", report.id()),
                }));
            }
            None => {}
        }
        conn.execute(
            "INSERT INTO reports (id, device, period, received_at, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![&id[..], job.device, report.period(), job.now, report.encode()],
        )?;
        for (m, metric) in report.metrics().iter().enumerate() {
            let inserted = conn.execute(
                "INSERT OR IGNORE INTO contributions (device, period, catalog, metric, report) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![job.device, report.period(), &report.catalog_hash().0[..], metric.metric(), &id[..]],
            )?;
            if inserted == 0 {
                let name = valid.catalog.metrics()[usize::from(metric.metric())].name;
                return Ok(Err(Rejection {
                    status: 409,
                    reason: format!(
                        "this device already reported {name} for period {}",
                        report.period()
                    ),
                }));
            }
            updates.push((
                CellKey {
                    catalog: report.catalog_hash(),
                    metric: metric.metric(),
                    period: report.period(),
                    cohort: job.cohort.clone(),
                    epsilon_bits: metric.epsilon().to_bits(),
                    epsilon_perm_bits: metric.epsilon_perm().to_bits(),
                },
                r,
                m,
            ));
        }
        outcome.accepted += 1;
    }
    Ok(Ok(outcome))
}
