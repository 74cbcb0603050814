//! Ingestion into PostgreSQL, where several collector processes write at
//! once: a group's reports go in with one statement per round (`ON CONFLICT
//! DO NOTHING`, so the database, not this process, decides which report a
//! report id or a (device, period) belongs to), and its cells are summed in
//! place by one upsert, in key order, so concurrent writers neither lose an
//! update nor deadlock on cells.

use std::collections::{BTreeMap, HashMap, HashSet};

use tokio_postgres::Statement;

use super::{IngestBackend, Outcome, Upload};
use crate::CollectorError;
use crate::cells::{CellKey, CellState};
use crate::store::postgres::conn::PgConn;
use crate::store::postgres::{CELL_ROWS, CellArrays};
use crate::validate::{Rejection, category};

/// Opens a group's transaction. The table lock (in memory, no row written)
/// is held to the commit and conflicts with the `EXCLUSIVE` lock that
/// revocation and erasure take, so either waits for the groups in flight,
/// and no report is stored after it has returned.
const BEGIN: &str = "BEGIN; LOCK TABLE devices IN ROW SHARE MODE";

/// A group's devices that still exist and are not revoked, with their token
/// hashes (each upload's must match); `= ANY` is an index probe.
const DEVICES: &str =
    "SELECT id, cohort, token_hash FROM devices WHERE id = ANY($1) AND revoked_at IS NULL";

/// Inserts a round's reports in id order and returns the ids it stored.
/// The others were held already, or their (device, period) was: [`HOLDERS`]
/// tells which (they are few, so no id is probed twice in the common case).
const INSERT: &str = "INSERT INTO reports (id, device, period, body)
     SELECT * FROM unnest($1::bytea[], $2::int8[], $3::int8[], $4::bytea[]) AS t(id, device, period, body)
     ORDER BY id
     ON CONFLICT DO NOTHING
     RETURNING id";

/// Who holds these ids now (a new statement, so a new snapshot: it sees a
/// holder that committed while the insert waited on its index entry).
const HOLDERS: &str = "SELECT id, device FROM reports WHERE id = ANY($1)";

/// Takes a refused upload's reports out again.
const UNDO: &str = "DELETE FROM reports WHERE id = ANY($1)";

/// Makes the cells insert add a group's deltas to the stored cells (creating the missing).
const CELLS_CONFLICT: &str =
    "ON CONFLICT (catalog, metric, period, cohort, epsilon_bits, epsilon_perm_bits) DO UPDATE
     SET reports = c.reports + excluded.reports,
         counts = hush_add(c.counts, excluded.counts),
         sums = hush_add(c.sums, excluded.sums)";

/// The writer's connection and its prepared statements.
pub(super) struct PgIngest {
    url: String,
    session: Option<Session>,
}

struct Session {
    conn: PgConn,
    devices: Statement,
    insert: Statement,
    holders: Statement,
    undo: Statement,
    cells: Statement,
}

impl Session {
    fn connect(url: &str) -> Result<Session, CollectorError> {
        let mut conn = PgConn::connect(url)?;
        let [devices, insert, holders, undo, cells] = conn.run(|c| async move {
            // Every statement here finds rows by key. A plan made while a
            // table was small (a sequential scan) would otherwise be kept by
            // the prepared statement as the table grows, and each group
            // would then read the whole table.
            c.batch_execute("SET enable_seqscan = off").await?;
            Ok([
                c.prepare(DEVICES).await?,
                c.prepare(INSERT).await?,
                c.prepare(HOLDERS).await?,
                c.prepare(UNDO).await?,
                c.prepare(&format!(
                    "INSERT INTO cells AS c (catalog, metric, period, cohort, epsilon_bits, epsilon_perm_bits, kind, reports, counts, sums) {CELL_ROWS} {CELLS_CONFLICT}"
                ))
                .await?,
            ])
        })?;
        Ok(Session {
            conn,
            devices,
            insert,
            holders,
            undo,
            cells,
        })
    }
}

impl PgIngest {
    /// Connects the writer (the schema was migrated when the readers opened).
    pub(super) fn open(url: &str) -> Result<PgIngest, CollectorError> {
        Ok(PgIngest {
            url: url.to_owned(),
            session: Some(Session::connect(url)?),
        })
    }

    /// The session, connected again if the server closed it: the group that
    /// met the closed connection failed (503) and its uploads come back.
    fn session(&mut self) -> Result<&mut Session, CollectorError> {
        if self.session.as_ref().is_none_or(|s| s.conn.is_closed()) {
            self.session = None;
            self.session = Some(Session::connect(&self.url)?);
        }
        match self.session.as_mut() {
            Some(s) => Ok(s),
            None => unreachable!("a session was just stored"),
        }
    }
}

/// Where each upload stands while the group is worked out.
#[derive(Default)]
struct Standing {
    outcome: Outcome,
    /// Refused: nothing of it stays.
    rejected: Option<Rejection>,
    /// Ids this group stored for it.
    stored: Vec<[u8; 16]>,
    /// Indices of its reports that were stored (and so go into cells).
    new_reports: Vec<usize>,
}

impl IngestBackend for PgIngest {
    fn commit_group(
        &mut self,
        uploads: &[Upload],
    ) -> Result<Vec<Result<Outcome, Rejection>>, CollectorError> {
        let session = self.session()?;
        let done = (|| {
            session
                .conn
                .run(|c| async move { c.batch_execute(BEGIN).await })?;
            let results = group(session, uploads)?;
            session
                .conn
                .run(|c| async move { c.batch_execute("COMMIT").await })?;
            Ok(results)
        })();
        if done.is_err() {
            // Whatever failed (a lock wait, a statement, the connection),
            // the session may be left inside an aborted transaction, where
            // every later statement fails: the next group starts on a new
            // connection, and the server rolls this one back when it closes.
            self.session = None;
        }
        done
    }

    fn probe(&mut self, after_failure: bool) -> Result<(), String> {
        let session = self.session().map_err(|e| e.to_string())?;
        let answer = (|| {
            let standby: bool = session.conn.run(|c| async move {
                Ok(c.query_one("SELECT pg_is_in_recovery()", &[]).await?.get(0))
            })?;
            if standby {
                return Err(CollectorError::Postgres(
                    "the database is a standby (read-only)".into(),
                ));
            }
            if after_failure {
                // A durable commit record that writes no table.
                session.conn.run(|c| async move {
                    c.batch_execute("BEGIN; SELECT pg_current_xact_id(); COMMIT")
                        .await
                })?;
            }
            Ok(())
        })();
        if answer.is_err() {
            self.session = None;
        }
        answer.map_err(|e| e.to_string())
    }

    fn tidy(&mut self) -> bool {
        // The server's write-ahead log is the server's (PRIVACY.md).
        true
    }

    fn after_group(&mut self) -> bool {
        true
    }
}

/// The work of one group inside its transaction.
fn group(
    session: &mut Session,
    uploads: &[Upload],
) -> Result<Vec<Result<Outcome, Rejection>>, CollectorError> {
    let mut standing: Vec<Standing> = uploads.iter().map(|_| Standing::default()).collect();
    // Which reports of each upload go to the database, and in which round.
    let mut sends: Vec<Vec<usize>> = vec![Vec::new(); uploads.len()];
    for (u, upload) in uploads.iter().enumerate() {
        let mut ids = HashSet::new();
        let mut periods = HashSet::new();
        for (r, valid) in upload.reports.iter().enumerate() {
            let report = &valid.report;
            if !ids.insert(report.id().0) {
                // The same report twice in one upload: stored once.
                standing[u].outcome.duplicates += 1;
            } else if !periods.insert(report.period()) {
                standing[u].rejected = Some(period_taken(report.period()));
                break;
            } else {
                sends[u].push(r);
            }
        }
    }
    let rounds = rounds(uploads, &sends);

    // The devices, each with the token its upload came with.
    let ids: Vec<i64> = uploads.iter().map(|u| u.device).collect();
    let statement = &session.devices;
    let rows = session
        .conn
        .run(|c| async move { c.query(statement, &[&ids]).await })?;
    let devices: HashMap<i64, (String, Vec<u8>)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let cohorts: HashMap<i64, String> = uploads
        .iter()
        .filter_map(|u| {
            let (cohort, hash) = devices.get(&u.device)?;
            (hash[..] == u.token[..]).then(|| (u.device, cohort.clone()))
        })
        .collect();
    for (u, upload) in uploads.iter().enumerate() {
        let holds_token = devices
            .get(&upload.device)
            .is_some_and(|(_, hash)| hash[..] == upload.token[..]);
        if !holds_token && standing[u].rejected.is_none() {
            standing[u].rejected = Some(Rejection::new(
                401,
                category::UNKNOWN_TOKEN,
                "the device was revoked or erased after its token was checked",
            ));
        }
    }

    for round in rounds {
        let members: Vec<usize> = round
            .into_iter()
            .filter(|&u| standing[u].rejected.is_none())
            .collect();
        insert_round(session, uploads, &sends, &members, &mut standing)?;
    }

    // The accepted uploads' new reports, summed per cell in key order (the
    // order every writer locks cells in).
    let mut deltas: BTreeMap<CellKey, CellState> = BTreeMap::new();
    for (upload, s) in uploads.iter().zip(&standing) {
        if s.rejected.is_some() {
            continue;
        }
        let Some(cohort) = cohorts.get(&upload.device) else {
            unreachable!("an upload without its device was refused above");
        };
        for &r in &s.new_reports {
            let valid = &upload.reports[r];
            for (m, metric) in valid.report.metrics().iter().enumerate() {
                let key = CellKey::of(&valid.report, metric, cohort);
                let entry = &valid.catalog.metrics()[usize::from(metric.metric())];
                deltas
                    .entry(key)
                    .or_insert_with(|| CellState::empty(entry))
                    .add(&valid.mechanisms[m], metric.value())?;
            }
        }
    }
    if !deltas.is_empty() {
        add_cells(session, &deltas)?;
    }
    Ok(standing
        .into_iter()
        .map(|s| match s.rejected {
            Some(r) => Err(r),
            None => Ok(s.outcome),
        })
        .collect())
}

/// Splits the uploads into rounds: an upload that shares a report id or a
/// (device, period) with an earlier one goes into a later round, because one
/// statement cannot tell two input rows with the same key apart.
fn rounds(uploads: &[Upload], sends: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let mut by_id: HashMap<[u8; 16], usize> = HashMap::new();
    let mut by_slot: HashMap<(i64, u32), usize> = HashMap::new();
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (u, upload) in uploads.iter().enumerate() {
        let keys = || {
            sends[u].iter().map(|&r| {
                let report = &upload.reports[r].report;
                (report.id().0, (upload.device, report.period()))
            })
        };
        let round = keys()
            .filter_map(|(id, slot)| {
                let a = by_id.get(&id).map(|r| r + 1);
                let b = by_slot.get(&slot).map(|r| r + 1);
                a.max(b)
            })
            .max()
            .unwrap_or(0);
        for (id, slot) in keys() {
            by_id.insert(id, round);
            by_slot.insert(slot, round);
        }
        if rounds.len() <= round {
            rounds.resize_with(round + 1, Vec::new);
        }
        rounds[round].push(u);
    }
    rounds
}

/// Inserts one round's reports and settles each of its uploads.
fn insert_round(
    session: &mut Session,
    uploads: &[Upload],
    sends: &[Vec<usize>],
    members: &[usize],
    standing: &mut [Standing],
) -> Result<(), CollectorError> {
    let mut ids: Vec<Vec<u8>> = Vec::new();
    let mut devices: Vec<i64> = Vec::new();
    let mut periods: Vec<i64> = Vec::new();
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    for &u in members {
        for &r in &sends[u] {
            let report = &uploads[u].reports[r].report;
            ids.push(report.id().0.to_vec());
            devices.push(uploads[u].device);
            periods.push(i64::from(report.period()));
            bodies.push(report.encode());
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    let statement = &session.insert;
    let sent = &ids;
    let rows = session.conn.run(|c| async move {
        c.query(statement, &[sent, &devices, &periods, &bodies])
            .await
    })?;
    // id -> None (stored now) or Some(holder).
    let mut found: HashMap<Vec<u8>, Option<i64>> = rows
        .iter()
        .map(|r| (r.get::<_, Vec<u8>>(0), None))
        .collect();
    let unsettled: Vec<Vec<u8>> = ids
        .iter()
        .filter(|id| !found.contains_key(*id))
        .cloned()
        .collect();
    if !unsettled.is_empty() {
        let statement = &session.holders;
        let rows = session
            .conn
            .run(|c| async move { c.query(statement, &[&unsettled]).await })?;
        for r in &rows {
            found.insert(r.get(0), Some(r.get(1)));
        }
    }
    let mut undo: Vec<Vec<u8>> = Vec::new();
    for &u in members {
        let upload = &uploads[u];
        let s = &mut standing[u];
        // Every report is settled before the upload is judged: one refused
        // report refuses the whole upload, and each of its reports this
        // statement stored, before or after that one, must go again.
        for &r in &sends[u] {
            let report = &upload.reports[r].report;
            match found.get(&report.id().0[..]) {
                Some(None) => {
                    s.stored.push(report.id().0);
                    s.new_reports.push(r);
                    s.outcome.accepted += 1;
                }
                Some(Some(holder)) if *holder == upload.device => s.outcome.duplicates += 1,
                Some(Some(_)) => {
                    s.rejected.get_or_insert_with(|| {
                        Rejection::new(
                            409,
                            category::OTHER_DEVICE,
                            "a report id stored for another device",
                        )
                    });
                }
                None => {
                    s.rejected
                        .get_or_insert_with(|| period_taken(report.period()));
                }
            }
        }
        if s.rejected.is_some() {
            undo.extend(s.stored.drain(..).map(|id| id.to_vec()));
            s.new_reports.clear();
        }
    }
    if !undo.is_empty() {
        let statement = &session.undo;
        session
            .conn
            .run(|c| async move { c.execute(statement, &[&undo]).await })?;
    }
    Ok(())
}

/// Adds the deltas to the stored cells in one statement.
fn add_cells(
    session: &mut Session,
    deltas: &BTreeMap<CellKey, CellState>,
) -> Result<(), CollectorError> {
    let arrays = CellArrays::of(deltas)?;
    let statement = &session.cells;
    session
        .conn
        .run(|c| async move { c.execute(statement, &arrays.params()).await })?;
    Ok(())
}

fn period_taken(period: u32) -> Rejection {
    Rejection::new(
        409,
        category::PERIOD_TAKEN,
        format!("a second report for period {period} from one device"),
    )
}
