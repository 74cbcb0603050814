//! The PostgreSQL store, for several collector processes on one database:
//! the same tables and answers as SQLite's, with the rules that keep one
//! process's view true for all (report ids unique, one report per device and
//! period, cells summed in place by each committing writer).
//!
//! PostgreSQL keeps what SQLite does not: its heap stores rows in the order
//! they were inserted, and each row carries the id of the transaction that
//! wrote it. Within a group commit the writer inserts in report id order, and
//! [`upkeep`](super::Store::upkeep) rewrites each period's reports in id
//! order once the period has closed ("reseal"), so the order of arrival
//! survives only for the open periods. PRIVACY.md says what remains.

use std::collections::BTreeMap;

use hush_report::{CatalogHash, PublishedRanges, RangeSteps, Report};
use hush_stats::{BranchMoments, FrequencyAggregate, MeanAggregate};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{DatabaseSizes, DeviceRef, DeviceRow, Erased, Principal, Residue, Store, StoredReport};
use crate::CollectorError;
use crate::cells::{CellKey, CellState};
use crate::periods::PeriodClock;
use crate::tokens::token_hash;
use crate::validate::{Catalogs, validate_structure};

pub(crate) mod conn;
pub(crate) mod schema;
mod tls;

use conn::{PgConn, db};

/// A PostgreSQL database opened by one collector process (one connection).
pub struct PgStore {
    conn: PgConn,
    /// The URL, for reconnecting.
    url: String,
}

impl PgStore {
    /// Connects, refuses server settings the collector's promises fail
    /// under, and applies the schema's missing migrations.
    pub fn open(url: &str, shown: &str) -> Result<PgStore, CollectorError> {
        let mut conn = PgConn::connect(url)?;
        schema::migrate(&mut conn, shown)?;
        Ok(PgStore {
            conn,
            url: url.to_owned(),
        })
    }

    /// Connects to a database that must hold the collector's schema already.
    pub fn open_existing(url: &str, shown: &str) -> Result<PgStore, CollectorError> {
        let mut conn = PgConn::connect(url)?;
        schema::check_version(&mut conn, shown)?;
        Ok(PgStore {
            conn,
            url: url.to_owned(),
        })
    }

    /// The connection, connected again first if the server closed it (a
    /// restart): the failed call already answered 503, the next one works.
    pub(crate) fn conn(&mut self) -> Result<&mut PgConn, CollectorError> {
        if self.conn.is_closed() {
            self.conn = PgConn::connect(&self.url)?;
        }
        Ok(&mut self.conn)
    }
}

/// Why a row does not read back.
fn corrupt(what: impl std::fmt::Display) -> CollectorError {
    CollectorError::Internal(format!("a database row does not read back: {what}"))
}

/// A cell's key columns as statement parameters, in the table's order.
struct KeyParams {
    catalog: Vec<u8>,
    metric: i32,
    period: i64,
    cohort: String,
    epsilon_bits: i64,
    epsilon_perm_bits: i64,
}

impl KeyParams {
    fn of(key: &CellKey) -> KeyParams {
        KeyParams {
            catalog: key.catalog.0.to_vec(),
            metric: i32::from(key.metric),
            period: i64::from(key.period),
            cohort: key.cohort.clone(),
            // The bits of the f64, stored as SQLite stores them.
            epsilon_bits: key.epsilon_bits as i64,
            epsilon_perm_bits: key.epsilon_perm_bits as i64,
        }
    }
}

/// A cell's statistics as columns: kind, reports, counts and sums (the
/// arrays as text, since numeric has no Rust type here).
struct StateColumns {
    kind: i16,
    reports: i64,
    counts: String,
    sums: String,
}

fn array_text<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let inner: Vec<String> = items.into_iter().map(|x| x.to_string()).collect();
    format!("{{{}}}", inner.join(","))
}

impl StateColumns {
    fn of(state: &CellState) -> Result<StateColumns, CollectorError> {
        let too_big = || CollectorError::Internal("a cell's count exceeds 2^63".into());
        let reports = i64::try_from(state.reports()).map_err(|_| too_big())?;
        Ok(match state {
            CellState::Frequency(a) => StateColumns {
                kind: 0,
                reports,
                counts: array_text(a.support_counts()),
                sums: "{}".into(),
            },
            CellState::Mean(a) => {
                let [b0, b1] = a.branches();
                StateColumns {
                    kind: 1,
                    reports,
                    counts: array_text([b0.count, b1.count]),
                    sums: format!(
                        "{{{},{},{},{}}}",
                        b0.sum, b0.sum_squares, b1.sum, b1.sum_squares
                    ),
                }
            }
        })
    }
}

/// Cells as the ten column arrays of an `unnest` insert, in the table's
/// column order (ingestion's deltas, migration's copies).
#[derive(Default)]
pub(crate) struct CellArrays {
    catalogs: Vec<Vec<u8>>,
    metrics: Vec<i32>,
    periods: Vec<i64>,
    cohorts: Vec<String>,
    eps: Vec<i64>,
    eps_perm: Vec<i64>,
    kinds: Vec<i16>,
    reports: Vec<i64>,
    counts: Vec<String>,
    sums: Vec<String>,
}

impl CellArrays {
    pub(crate) fn of<'a>(
        cells: impl IntoIterator<Item = (&'a CellKey, &'a CellState)>,
    ) -> Result<CellArrays, CollectorError> {
        let mut a = CellArrays::default();
        for (key, state) in cells {
            let k = KeyParams::of(key);
            let s = StateColumns::of(state)?;
            a.catalogs.push(k.catalog);
            a.metrics.push(k.metric);
            a.periods.push(k.period);
            a.cohorts.push(k.cohort);
            a.eps.push(k.epsilon_bits);
            a.eps_perm.push(k.epsilon_perm_bits);
            a.kinds.push(s.kind);
            a.reports.push(s.reports);
            a.counts.push(s.counts);
            a.sums.push(s.sums);
        }
        Ok(a)
    }

    /// The statement parameters `$1..$10`.
    pub(crate) fn params(&self) -> [&(dyn ToSql + Sync); 10] {
        [
            &self.catalogs,
            &self.metrics,
            &self.periods,
            &self.cohorts,
            &self.eps,
            &self.eps_perm,
            &self.kinds,
            &self.reports,
            &self.counts,
            &self.sums,
        ]
    }
}

/// The rows of [`CellArrays`], for `INSERT INTO cells (...) SELECT ... FROM` this.
pub(crate) const CELL_ROWS: &str = "SELECT k.catalog, k.metric, k.period, k.cohort, k.eb, k.epb, k.kind, k.reports, k.counts::int8[], k.sums::numeric[]
     FROM unnest($1::bytea[], $2::int4[], $3::int8[], $4::text[], $5::int8[], $6::int8[], $7::int2[], $8::int8[], $9::text[], $10::text[])
          WITH ORDINALITY AS k(catalog, metric, period, cohort, eb, epb, kind, reports, counts, sums, ord)
     ORDER BY k.ord";

/// Reads a cell's statistics from `kind, reports, counts, sums::text[]`
/// starting at column `at`.
fn state_from(row: &Row, at: usize) -> Result<CellState, CollectorError> {
    let kind: i16 = row.try_get(at).map_err(corrupt)?;
    let reports: i64 = row.try_get(at + 1).map_err(corrupt)?;
    let counts: Vec<i64> = row.try_get(at + 2).map_err(corrupt)?;
    let sums: Vec<String> = row.try_get(at + 3).map_err(corrupt)?;
    let unsigned = |x: i64| u64::try_from(x).map_err(|_| corrupt("a negative count"));
    let counts = counts
        .into_iter()
        .map(unsigned)
        .collect::<Result<Vec<_>, _>>()?;
    match (kind, counts.as_slice(), sums.as_slice()) {
        (0, _, []) => Ok(CellState::Frequency(FrequencyAggregate::from_counts(
            unsigned(reports)?,
            counts,
        ))),
        (1, [c0, c1], [s0, q0, s1, q1]) => {
            let signed = |s: &str| s.parse::<i128>().map_err(corrupt);
            let square = |s: &str| s.parse::<u128>().map_err(corrupt);
            let branches = [
                BranchMoments {
                    count: *c0,
                    sum: signed(s0)?,
                    sum_squares: square(q0)?,
                },
                BranchMoments {
                    count: *c1,
                    sum: signed(s1)?,
                    sum_squares: square(q1)?,
                },
            ];
            let state = MeanAggregate::from_moments(branches);
            if i64::try_from(state.reports()).ok() != Some(reports) {
                return Err(corrupt("a mean cell's reports differ from its counts"));
            }
            Ok(CellState::Mean(state))
        }
        _ => Err(corrupt("a cell of an unknown kind or shape")),
    }
}

/// Reads a cell key from its six columns starting at column 0.
fn key_from(row: &Row) -> Result<CellKey, CollectorError> {
    let catalog: Vec<u8> = row.try_get(0).map_err(corrupt)?;
    let metric: i32 = row.try_get(1).map_err(corrupt)?;
    let period: i64 = row.try_get(2).map_err(corrupt)?;
    let epsilon_bits: i64 = row.try_get(4).map_err(corrupt)?;
    let epsilon_perm_bits: i64 = row.try_get(5).map_err(corrupt)?;
    Ok(CellKey {
        catalog: CatalogHash(
            catalog
                .try_into()
                .map_err(|_| corrupt("a catalog hash is not 16 bytes"))?,
        ),
        metric: u16::try_from(metric).map_err(corrupt)?,
        period: u32::try_from(period).map_err(corrupt)?,
        cohort: row.try_get(3).map_err(corrupt)?,
        epsilon_bits: epsilon_bits as u64,
        epsilon_perm_bits: epsilon_perm_bits as u64,
    })
}

/// Taken by revocation and erasure for their transaction: it waits for
/// every writer's group in flight (which hold `ROW SHARE` on `devices`) and
/// holds new ones off until the commit.
const STOP_WRITERS: &str = "LOCK TABLE devices IN EXCLUSIVE MODE";

const CELL_COLUMNS: &str = "catalog, metric, period, cohort, epsilon_bits, epsilon_perm_bits, kind, reports, counts, sums::text[]";

/// The order `all_cells` returns, the same as SQLite's: cohorts compare
/// bytewise (`COLLATE "C"`), catalogs and ids as bytes.
const CELL_ORDER: &str = "period, metric, cohort, epsilon_bits, epsilon_perm_bits, catalog";

const KEY_MATCH: &str = "catalog = $1 AND metric = $2 AND period = $3 AND cohort = $4 AND epsilon_bits = $5 AND epsilon_perm_bits = $6";

fn stored_report(row: &Row) -> Result<StoredReport, CollectorError> {
    let device: i64 = row.try_get(0).map_err(corrupt)?;
    let cohort: String = row.try_get(1).map_err(corrupt)?;
    let period: i64 = row.try_get(2).map_err(corrupt)?;
    let body: Vec<u8> = row.try_get(3).map_err(corrupt)?;
    let report = Report::decode(&body)
        .map_err(|e| CollectorError::Internal(format!("a stored report does not decode: {e}")))?;
    Ok((
        device,
        cohort,
        u32::try_from(period).map_err(corrupt)?,
        report,
    ))
}

const STORED_REPORTS: &str =
    "SELECT r.device, d.cohort, r.period, r.body FROM reports r JOIN devices d ON d.id = r.device
     WHERE r.period >= $1 AND r.period <= $2 ORDER BY r.id";

fn cells_query(from: Option<u32>, to: Option<u32>) -> (String, [i64; 2]) {
    (
        format!(
            "SELECT {CELL_COLUMNS} FROM cells WHERE period >= $1 AND period <= $2 ORDER BY {CELL_ORDER}"
        ),
        [
            i64::from(from.unwrap_or(0)),
            i64::from(to.unwrap_or(u32::MAX)),
        ],
    )
}

fn cells_from(rows: &[Row]) -> Result<Vec<(CellKey, CellState)>, CollectorError> {
    rows.iter()
        .map(|r| Ok((key_from(r)?, state_from(r, 6)?)))
        .collect()
}

/// [`Store::all_cells`] on one connection (inside its transaction, if one is open).
pub(crate) fn read_cells(
    conn: &mut PgConn,
    from_period: Option<u32>,
    to_period: Option<u32>,
    limit: std::time::Duration,
) -> Result<Vec<(CellKey, CellState)>, CollectorError> {
    let (sql, [lo, hi]) = cells_query(from_period, to_period);
    let rows = conn.run_for(limit, |c| async move { c.query(&sql, &[&lo, &hi]).await })?;
    cells_from(&rows)
}

fn principal_device(row: &Row) -> Result<Principal, CollectorError> {
    Ok(Principal::Device {
        id: row.try_get(0).map_err(corrupt)?,
        cohort: row.try_get(1).map_err(corrupt)?,
    })
}

impl Store for PgStore {
    fn add_admin(&mut self, token: &str, now: i64) -> Result<(), CollectorError> {
        let hash = token_hash(token).to_vec();
        self.conn()?.run(|c| async move {
            c.execute(
                "INSERT INTO admins (token_hash, created_at) VALUES ($1, $2)",
                &[&hash, &now],
            )
            .await
        })?;
        Ok(())
    }

    fn add_device(
        &mut self,
        token: &str,
        cohort: &str,
        now: i64,
        loadgen: bool,
    ) -> Result<i64, CollectorError> {
        let hash = token_hash(token).to_vec();
        self.conn()?.run(|c| async move {
            let row = c
                .query_one(
                    "INSERT INTO devices (token_hash, cohort, created_at, loadgen) VALUES ($1, $2, $3, $4) RETURNING id",
                    &[&hash, &cohort, &now, &loadgen],
                )
                .await?;
            Ok(row.get(0))
        })
    }

    fn add_devices(
        &mut self,
        tokens: &[String],
        cohort: &str,
        now: i64,
    ) -> Result<Vec<i64>, CollectorError> {
        let hashes: Vec<Vec<u8>> = tokens.iter().map(|t| token_hash(t).to_vec()).collect();
        self.conn()?.run(|c| async move {
            let tx = c.transaction().await?;
            let insert = tx
                .prepare("INSERT INTO devices (token_hash, cohort, created_at) VALUES ($1, $2, $3) RETURNING id")
                .await?;
            let mut ids = Vec::with_capacity(hashes.len());
            for hash in &hashes {
                ids.push(tx.query_one(&insert, &[hash, &cohort, &now]).await?.get(0));
            }
            tx.commit().await?;
            Ok(ids)
        })
    }

    fn mint_loadgen_devices(
        &mut self,
        tokens: &[String],
        now: i64,
    ) -> Result<Result<Vec<i64>, u64>, CollectorError> {
        let hashes: Vec<Vec<u8>> = tokens.iter().map(|t| token_hash(t).to_vec()).collect();
        self.conn()?.run(|c| async move {
            let tx = c.transaction().await?;
            // No device can be added by anyone between the count and the inserts.
            tx.batch_execute("LOCK TABLE devices IN SHARE ROW EXCLUSIVE MODE")
                .await?;
            let real: i64 = tx
                .query_one("SELECT count(*) FROM devices WHERE NOT loadgen", &[])
                .await?
                .get(0);
            if real > 0 {
                return Ok(Err(real as u64));
            }
            let insert = tx
                .prepare("INSERT INTO devices (token_hash, cohort, created_at, loadgen) VALUES ($1, 'loadgen', $2, true) RETURNING id")
                .await?;
            let mut ids = Vec::with_capacity(hashes.len());
            for hash in &hashes {
                ids.push(tx.query_one(&insert, &[hash, &now]).await?.get(0));
            }
            tx.commit().await?;
            Ok(Ok(ids))
        })
    }

    fn revoke_token(&mut self, token: &str, now: i64) -> Result<bool, CollectorError> {
        let hash = token_hash(token).to_vec();
        let n = self.conn()?.run(|c| async move {
            let tx = c.transaction().await?;
            // Waits for the writers' groups in flight (see ingest/postgres.rs).
            tx.batch_execute(STOP_WRITERS).await?;
            let devices = tx
                .execute(
                    "UPDATE devices SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL",
                    &[&hash, &now],
                )
                .await?;
            let admins = tx
                .execute(
                    "UPDATE admins SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL",
                    &[&hash, &now],
                )
                .await?;
            tx.commit().await?;
            Ok(devices + admins)
        })?;
        Ok(n > 0)
    }

    fn revoke_devices(&mut self, ids: &[i64], now: i64) -> Result<(), CollectorError> {
        let ids = ids.to_vec();
        self.conn()?.run(|c| async move {
            let tx = c.transaction().await?;
            tx.batch_execute(STOP_WRITERS).await?;
            tx.execute(
                "UPDATE devices SET revoked_at = $2 WHERE id = ANY($1) AND revoked_at IS NULL",
                &[&ids, &now],
            )
            .await?;
            tx.commit().await
        })?;
        Ok(())
    }

    fn real_devices(&mut self) -> Result<u64, CollectorError> {
        let n: i64 = self.conn()?.run(|c| async move {
            Ok(
                c.query_one("SELECT count(*) FROM devices WHERE NOT loadgen", &[])
                    .await?
                    .get(0),
            )
        })?;
        Ok(n as u64)
    }

    fn principal_by_hash(&mut self, hash: &[u8; 32]) -> Result<Option<Principal>, CollectorError> {
        let hash = hash.to_vec();
        self.conn()?.run_with(|c| async move {
            let device = c
                .query_opt(
                    "SELECT id, cohort FROM devices WHERE token_hash = $1 AND revoked_at IS NULL",
                    &[&hash],
                )
                .await
                .map_err(db)?;
            if let Some(row) = device {
                return principal_device(&row).map(Some);
            }
            let admin = c
                .query_opt(
                    "SELECT id FROM admins WHERE token_hash = $1 AND revoked_at IS NULL",
                    &[&hash],
                )
                .await
                .map_err(db)?;
            Ok(admin.map(|_| Principal::Admin))
        })
    }

    fn device_cohort(
        &mut self,
        device: i64,
        hash: &[u8; 32],
    ) -> Result<Option<String>, CollectorError> {
        let hash = hash.to_vec();
        self.conn()?.run(|c| async move {
            Ok(c.query_opt(
                "SELECT cohort FROM devices WHERE id = $1 AND token_hash = $2 AND revoked_at IS NULL",
                &[&device, &hash],
            )
            .await?
            .map(|r| r.get(0)))
        })
    }

    fn devices_after(&mut self, after: i64) -> Result<Vec<DeviceRow>, CollectorError> {
        let rows = self.conn()?.run(|c| async move {
            c.query(
                "SELECT id, token_hash, cohort, revoked_at IS NULL FROM devices WHERE id > $1 ORDER BY id",
                &[&after],
            )
            .await
        })?;
        rows.iter()
            .map(|r| {
                let id: i64 = r.try_get(0).map_err(corrupt)?;
                let hash: Vec<u8> = r.try_get(1).map_err(corrupt)?;
                Ok(DeviceRow {
                    id,
                    token_hash: hash
                        .try_into()
                        .map_err(|_| corrupt(format!("device {id}: a token hash")))?,
                    cohort: r.try_get(2).map_err(corrupt)?,
                    active: r.try_get(3).map_err(corrupt)?,
                })
            })
            .collect()
    }

    fn published_ranges(&mut self) -> Result<Vec<(PublishedRanges, u32)>, CollectorError> {
        let rows = self.conn()?.run(|c| async move {
            c.query(
                "SELECT revision, steps, published_period FROM ranges ORDER BY revision",
                &[],
            )
            .await
        })?;
        rows.iter()
            .map(|r| {
                let revision: i32 = r.try_get(0).map_err(corrupt)?;
                let steps: String = r.try_get(1).map_err(corrupt)?;
                let period: i64 = r.try_get(2).map_err(corrupt)?;
                let steps: RangeSteps = serde_json::from_str(&steps).map_err(corrupt)?;
                Ok((
                    PublishedRanges {
                        revision: u32::try_from(revision).map_err(corrupt)?,
                        steps,
                    },
                    u32::try_from(period).map_err(corrupt)?,
                ))
            })
            .collect()
    }

    fn publish_ranges(
        &mut self,
        steps: &RangeSteps,
        period: u32,
    ) -> Result<PublishedRanges, CollectorError> {
        let text = serde_json::to_string(steps)
            .map_err(|e| CollectorError::Internal(format!("range steps: {e}")))?;
        let period = i64::from(period);
        // Two collectors learning at once compute the same revision; the
        // primary key lets one of them publish it.
        let revision: i32 = self.conn()?.run(|c| async move {
            Ok(c.query_one(
                "INSERT INTO ranges (revision, steps, published_period)
                 VALUES ((SELECT coalesce(max(revision), 0) + 1 FROM ranges), $1, $2) RETURNING revision",
                &[&text, &period],
            )
            .await?
            .get(0))
        })?;
        Ok(PublishedRanges {
            revision: u32::try_from(revision).map_err(corrupt)?,
            steps: steps.clone(),
        })
    }

    fn save_cell(&mut self, key: &CellKey, state: &CellState) -> Result<(), CollectorError> {
        let k = KeyParams::of(key);
        let s = StateColumns::of(state)?;
        self.conn()?.run(|c| async move {
            c.execute(
                "INSERT INTO cells (catalog, metric, period, cohort, epsilon_bits, epsilon_perm_bits, kind, reports, counts, sums)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::int8[], $10::text::numeric[])
                 ON CONFLICT (catalog, metric, period, cohort, epsilon_bits, epsilon_perm_bits)
                 DO UPDATE SET kind = excluded.kind, reports = excluded.reports, counts = excluded.counts, sums = excluded.sums",
                &[&k.catalog, &k.metric, &k.period, &k.cohort, &k.epsilon_bits, &k.epsilon_perm_bits, &s.kind, &s.reports, &s.counts, &s.sums],
            )
            .await
        })?;
        Ok(())
    }

    fn all_cells(
        &mut self,
        from_period: Option<u32>,
        to_period: Option<u32>,
    ) -> Result<Vec<(CellKey, CellState)>, CollectorError> {
        read_cells(self.conn()?, from_period, to_period, conn::CALL_TIMEOUT)
    }

    fn stored_reports(&mut self, from: u32, to: u32) -> Result<Vec<StoredReport>, CollectorError> {
        let (lo, hi) = (i64::from(from), i64::from(to));
        let rows = self
            .conn()?
            .run(|c| async move { c.query(STORED_REPORTS, &[&lo, &hi]).await })?;
        rows.iter().map(stored_report).collect()
    }

    fn reports_and_cells(
        &mut self,
        from: u32,
        to: u32,
    ) -> Result<(Vec<StoredReport>, Vec<(CellKey, CellState)>), CollectorError> {
        let (lo, hi) = (i64::from(from), i64::from(to));
        let (sql, _) = cells_query(Some(from), Some(to));
        let (reports, cells) = self.conn()?.run(|c| async move {
            // One snapshot for both reads.
            let tx = c
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            let reports = tx.query(STORED_REPORTS, &[&lo, &hi]).await?;
            let cells = tx.query(&sql, &[&lo, &hi]).await?;
            tx.commit().await?;
            Ok((reports, cells))
        })?;
        Ok((
            reports
                .iter()
                .map(stored_report)
                .collect::<Result<_, _>>()?,
            cells_from(&cells)?,
        ))
    }

    fn report_count(&mut self) -> Result<u64, CollectorError> {
        let n: i64 = self.conn()?.run(|c| async move {
            Ok(c.query_one("SELECT count(*) FROM reports", &[])
                .await?
                .get(0))
        })?;
        Ok(n as u64)
    }

    fn sizes(&mut self) -> DatabaseSizes {
        let size = self.conn().and_then(|c| {
            c.run(|c| async move {
                Ok(
                    c.query_one("SELECT pg_database_size(current_database())", &[])
                        .await?
                        .get::<_, i64>(0),
                )
            })
        });
        DatabaseSizes {
            database: size.map_or(0, |s| s.max(0) as u64),
            // The server's log is not the collector's to read.
            wal: None,
        }
    }

    fn prune(&mut self, clock: &PeriodClock, before: u32) -> Result<u64, CollectorError> {
        if super::prunable(clock, before)?.is_none() {
            return Ok(0);
        }
        let before = i64::from(before);
        let n = self
            .conn()?
            .run_for(conn::MAINTENANCE_TIMEOUT, |c| async move {
                let tx = c.transaction().await?;
                tx.batch_execute(conn::MAINTENANCE_LOCKS).await?;
                // After a reseal in progress, whose copies a delete would miss.
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&schema::RESEAL_LOCK])
                    .await?;
                let n = tx
                    .execute("DELETE FROM reports WHERE period < $1", &[&before])
                    .await?;
                tx.commit().await?;
                Ok(n)
            })?;
        if n > 0 {
            vacuum(self.conn()?, "reports");
        }
        Ok(n)
    }

    fn erase_device(
        &mut self,
        catalogs: &Catalogs,
        device: &DeviceRef,
    ) -> Result<Option<Erased>, CollectorError> {
        let (by_token, by_id) = match device {
            DeviceRef::Token(t) => (Some(token_hash(t).to_vec()), None),
            DeviceRef::Id(id) => (None, Some(*id)),
        };
        // First, briefly, the device is revoked, after the writers' groups
        // in flight: from then on no upload of it is stored, so the long
        // transaction below need not hold the writers off. (If that one
        // fails, the device stays revoked until the erasure is run again.)
        let found: Option<i64> = self.conn()?.run(|c| async move {
            let tx = c.transaction().await?;
            tx.batch_execute(STOP_WRITERS).await?;
            let row = tx
                .query_opt(
                    "UPDATE devices SET revoked_at = coalesce(revoked_at, 0)
                     WHERE token_hash = $1 OR id = $2 RETURNING id",
                    &[&by_token, &by_id],
                )
                .await?;
            tx.commit().await?;
            Ok(row.map(|r| r.get(0)))
        })?;
        let Some(device) = found else {
            return Ok(None);
        };
        let erased = self.conn()?.run_with_for(conn::MAINTENANCE_TIMEOUT, |c| async move {
            let tx = c.transaction().await.map_err(db)?;
            tx.batch_execute(conn::MAINTENANCE_LOCKS).await.map_err(db)?;
            // After a reseal in progress: its copies of the device's reports
            // are invisible to this transaction's delete.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&schema::RESEAL_LOCK])
                .await
                .map_err(db)?;
            let found = tx
                .query_opt(
                    "SELECT id, cohort FROM devices WHERE id = $1 FOR UPDATE",
                    &[&device],
                )
                .await
                .map_err(db)?;
            let Some(found) = found else {
                return Ok(None);
            };
            let id: i64 = found.get(0);
            let cohort: String = found.get(1);
            let bodies = tx
                .query("SELECT body FROM reports WHERE device = $1", &[&id])
                .await
                .map_err(db)?;
            let mut valids = Vec::with_capacity(bodies.len());
            // Each cell's values, as (report, metric) indices.
            let mut keys: BTreeMap<CellKey, Vec<(usize, usize)>> = BTreeMap::new();
            for row in &bodies {
                let body: Vec<u8> = row.get(0);
                let bad = |what: String| CollectorError::Internal(format!("a stored report {what}"));
                let report = Report::decode(&body).map_err(|e| bad(format!("does not decode: {e}")))?;
                let valid = validate_structure(report, catalogs)
                    .map_err(|r| bad(format!("no longer validates: {}", r.reason)))?;
                for (m, metric) in valid.report.metrics().iter().enumerate() {
                    let key = CellKey::of(&valid.report, metric, &cohort);
                    keys.entry(key).or_default().push((valids.len(), m));
                }
                valids.push(valid);
            }
            // Cells in key order, the order every writer locks them in.
            let mut changed = 0u64;
            for (key, values) in &keys {
                let k = KeyParams::of(key);
                let params: [&(dyn ToSql + Sync); 6] = [&k.catalog, &k.metric, &k.period, &k.cohort, &k.epsilon_bits, &k.epsilon_perm_bits];
                let row = tx
                    .query_opt(
                        &format!("SELECT {CELL_COLUMNS} FROM cells WHERE {KEY_MATCH} FOR UPDATE"),
                        &params,
                    )
                    .await
                    .map_err(db)?
                    .ok_or_else(|| {
                        CollectorError::Internal("a stored report's cell is missing".into())
                    })?;
                let mut state = state_from(&row, 6)?;
                for &(r, m) in values {
                    let valid = &valids[r];
                    state.remove(&valid.mechanisms[m], valid.report.metrics()[m].value())?;
                }
                if state.reports() == 0 {
                    tx.execute(&format!("DELETE FROM cells WHERE {KEY_MATCH}"), &params)
                        .await
                        .map_err(db)?;
                } else {
                    let s = StateColumns::of(&state)?;
                    tx.execute(
                        &format!("UPDATE cells SET reports = $7, counts = $8::text::int8[], sums = $9::text::numeric[] WHERE {KEY_MATCH}"),
                        &[&k.catalog, &k.metric, &k.period, &k.cohort, &k.epsilon_bits, &k.epsilon_perm_bits, &s.reports, &s.counts, &s.sums],
                    )
                    .await
                    .map_err(db)?;
                }
                changed += 1;
            }
            let reports = tx
                .execute("DELETE FROM reports WHERE device = $1", &[&id])
                .await
                .map_err(db)?;
            tx.execute("DELETE FROM devices WHERE id = $1", &[&id])
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(Some(Erased {
                device: id,
                reports,
                cells: changed,
                residue: Residue::ServerKeeps,
            }))
        })?;
        if erased.is_some() {
            // The cells' old versions, less the new, would be the device's values.
            vacuum(self.conn()?, "reports, cells");
        }
        Ok(erased)
    }

    fn upkeep(&mut self, clock: &PeriodClock) -> Result<(), CollectorError> {
        if let Some(through) = self.reseal(clock)? {
            tracing::info!("resealed the reports of the periods through {through} in id order");
        }
        Ok(())
    }
}

impl PgStore {
    /// Rewrites the reports of each period closed since the last reseal in
    /// id order, one period per transaction: afterwards a period's rows
    /// share one transaction id (`xmin`) and their place in the heap follows
    /// the free space map, not their arrival. A period is resealed one
    /// period after it closed, so an upload validated just before its period
    /// closed has long committed. One collector at a time (an advisory
    /// lock; the others skip); returns the last period resealed.
    pub fn reseal(&mut self, clock: &PeriodClock) -> Result<Option<u32>, CollectorError> {
        let Some(last) = clock.last_closed().and_then(|l| l.checked_sub(1)) else {
            return Ok(None);
        };
        let last = i64::from(last);
        let mut resealed = None;
        loop {
            let step = self
                .conn()?
                .run_for(conn::MAINTENANCE_TIMEOUT, |c| async move {
                    let tx = c.transaction().await?;
                    let mine: bool = tx
                        .query_one(
                            "SELECT pg_try_advisory_xact_lock($1)",
                            &[&schema::RESEAL_LOCK],
                        )
                        .await?
                        .get(0);
                    if !mine {
                        return Ok(None);
                    }
                    let through: Option<i64> = tx
                        .query_one("SELECT resealed_through FROM hush_state FOR UPDATE", &[])
                        .await?
                        .get(0);
                    let from = through.map_or(0, |t| t + 1);
                    if from > last {
                        return Ok(None);
                    }
                    // The next period with reports, or none up to `last`.
                    let next: Option<i64> = tx
                        .query_one(
                            "SELECT min(period) FROM reports WHERE period >= $1 AND period <= $2",
                            &[&from, &last],
                        )
                        .await?
                        .get(0);
                    let period = next.unwrap_or(last);
                    if next.is_some() {
                        tx.execute(
                            "WITH moved AS (DELETE FROM reports WHERE period = $1 RETURNING *)
                         INSERT INTO reports SELECT * FROM moved ORDER BY id",
                            &[&period],
                        )
                        .await?;
                    }
                    tx.execute("UPDATE hush_state SET resealed_through = $1", &[&period])
                        .await?;
                    tx.commit().await?;
                    Ok(Some(period))
                })?;
            match step {
                Some(p) => resealed = Some(p),
                None => break,
            }
        }
        if resealed.is_some() {
            vacuum(self.conn()?, "reports");
        }
        Ok(resealed.and_then(|p| u32::try_from(p).ok()))
    }
}

/// Reclaims deleted rows' space so they are not left readable through SQL
/// any longer than needed (best effort: `VACUUM` does not zero what it
/// frees, and skips rows an open snapshot may still see; PRIVACY.md says so).
fn vacuum(conn: &mut PgConn, tables: &'static str) {
    let done = conn.run_for(conn::MAINTENANCE_TIMEOUT, |c| async move {
        c.batch_execute(&format!("VACUUM {tables}")).await
    });
    if let Err(e) = done {
        tracing::warn!("vacuum of {tables} after deleting rows failed: {e}");
    }
}
