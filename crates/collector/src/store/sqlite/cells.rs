//! The aggregate cells on SQLite: loading and saving them, the pending
//! periods whose stored cells may lag their reports (counted afresh by any
//! reader, and settled before anyone but their writer changes reports or
//! cells), and the epoch that tells a writer its memory of cells is stale.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::{finish, published_ranges, stored_reports};
use crate::CollectorError;
use crate::cells::{CellKey, CellState};
use crate::validate::Catalogs;

/// Loads one cell's state.
pub(crate) fn load_cell(
    conn: &Connection,
    key: &CellKey,
) -> Result<Option<CellState>, CollectorError> {
    let bytes: Option<Vec<u8>> = conn
        .prepare_cached(
            "SELECT state FROM cells WHERE catalog = ?1 AND metric = ?2 AND period = ?3 AND cohort = ?4 AND epsilon_bits = ?5 AND epsilon_perm_bits = ?6",
        )?
        .query_row(
            params![&key.catalog.0[..], key.metric, key.period, key.cohort, key.epsilon_bits as i64, key.epsilon_perm_bits as i64],
            |r| r.get(0),
        )
        .optional()?;
    bytes.map(|b| CellState::from_bytes(&b)).transpose()
}

/// Writes one cell's state.
pub(crate) fn save_cell(
    conn: &Connection,
    key: &CellKey,
    state: &CellState,
) -> Result<(), CollectorError> {
    conn.prepare_cached(
        "INSERT INTO cells (catalog, metric, period, cohort, epsilon_bits, epsilon_perm_bits, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (catalog, metric, period, cohort, epsilon_bits, epsilon_perm_bits) DO UPDATE SET state = excluded.state",
    )?
    .execute(params![&key.catalog.0[..], key.metric, key.period, key.cohort, key.epsilon_bits as i64, key.epsilon_perm_bits as i64, state.to_bytes()])?;
    Ok(())
}

/// Deletes one cell (the last report in it was erased).
pub(super) fn delete_cell(conn: &Connection, key: &CellKey) -> Result<(), CollectorError> {
    conn.prepare_cached(
        "DELETE FROM cells WHERE catalog = ?1 AND metric = ?2 AND period = ?3 AND cohort = ?4 AND epsilon_bits = ?5 AND epsilon_perm_bits = ?6",
    )?
    .execute(params![&key.catalog.0[..], key.metric, key.period, key.cohort, key.epsilon_bits as i64, key.epsilon_perm_bits as i64])?;
    Ok(())
}

/// Every cell of periods `from..=to` as the stored reports make them, in
/// the order [`Store::all_cells`] promises, from one snapshot: the stored
/// cells, except that a pending period's are counted from its reports.
pub(crate) fn all_cells(
    conn: &Connection,
    from_period: Option<u32>,
    to_period: Option<u32>,
) -> Result<Vec<(CellKey, CellState)>, CollectorError> {
    let (from, to) = (from_period.unwrap_or(0), to_period.unwrap_or(u32::MAX));
    let snapshot = conn.is_autocommit();
    if snapshot {
        conn.execute_batch("BEGIN")?;
    }
    let cells = (|| {
        let pending = pending_periods(conn, from, to)?;
        let mut cells = stored_cells(conn, from, to)?;
        if !pending.is_empty() {
            let (catalogs, recounted) = recount_periods(conn, &pending)?;
            cells.retain(|(key, _)| {
                !pending.contains(&key.period) || catalogs.get(key.catalog).is_none()
            });
            cells.extend(recounted);
            // SQLite's order: cohorts compare as bytes, like `str`.
            fn order(k: &CellKey) -> (u32, u16, &str, u64, u64, [u8; 16]) {
                let c = &k.catalog.0;
                (
                    k.period,
                    k.metric,
                    &k.cohort,
                    k.epsilon_bits,
                    k.epsilon_perm_bits,
                    *c,
                )
            }
            cells.sort_by(|(a, _), (b, _)| order(a).cmp(&order(b)));
        }
        Ok(cells)
    })();
    if snapshot { finish(conn, cells) } else { cells }
}

/// The stored cells of periods `from..=to`, pending or not.
pub(crate) fn stored_cells(
    conn: &Connection,
    from: u32,
    to: u32,
) -> Result<Vec<(CellKey, CellState)>, CollectorError> {
    let mut stmt = conn.prepare(
        "SELECT catalog, metric, period, cohort, epsilon_bits, epsilon_perm_bits, state FROM cells
         WHERE period >= ?1 AND period <= ?2
         ORDER BY period, metric, cohort, epsilon_bits, epsilon_perm_bits, catalog",
    )?;
    let rows = stmt.query_map(params![from, to], |r| {
        let catalog: Vec<u8> = r.get(0)?;
        let bits: i64 = r.get(4)?;
        let perm_bits: i64 = r.get(5)?;
        let state: Vec<u8> = r.get(6)?;
        Ok((
            catalog,
            r.get::<_, u16>(1)?,
            r.get::<_, u32>(2)?,
            r.get::<_, String>(3)?,
            (bits as u64, perm_bits as u64),
            state,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (catalog, metric, period, cohort, (epsilon_bits, epsilon_perm_bits), state) = row?;
        let catalog: [u8; 16] = catalog
            .try_into()
            .map_err(|_| CollectorError::Internal("corrupt catalog hash in cells".into()))?;
        out.push((
            CellKey {
                catalog: hush_report::CatalogHash(catalog),
                metric,
                period,
                cohort,
                epsilon_bits,
                epsilon_perm_bits,
            },
            CellState::from_bytes(&state)?,
        ));
    }
    Ok(out)
}

/// The stored cells of `periods`.
fn stored_cells_of(
    conn: &Connection,
    periods: &[u32],
) -> Result<Vec<(CellKey, CellState)>, CollectorError> {
    let mut out = Vec::new();
    for &period in periods {
        out.extend(stored_cells(conn, period, period)?);
    }
    Ok(out)
}

/// Marks `period` pending: its stored cells may lag its reports until the
/// writer saves them (or [`settle`] counts them).
pub(crate) fn mark_pending(conn: &Connection, period: u32) -> Result<(), CollectorError> {
    conn.prepare_cached("INSERT OR IGNORE INTO pending (period) VALUES (?1)")?
        .execute(params![period])?;
    Ok(())
}

/// Clears every pending mark: the caller saved every cell it changed.
pub(crate) fn clear_pending(conn: &Connection) -> Result<(), CollectorError> {
    conn.prepare_cached("DELETE FROM pending")?.execute([])?;
    Ok(())
}

/// The pending periods in `from..=to`.
pub(super) fn pending_periods(
    conn: &Connection,
    from: u32,
    to: u32,
) -> Result<Vec<u32>, CollectorError> {
    Ok(conn
        .prepare_cached("SELECT period FROM pending WHERE period >= ?1 AND period <= ?2")?
        .query_map(params![from, to], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

/// The cells of `periods` as their stored reports make them, with the
/// catalogs they were counted against. Only reports of a catalog this
/// database knows (the built-in one and its published revisions) are
/// counted: the writer counted no other, so the stored cells of any other
/// (an older build's catalog) are the ones to keep.
fn recount_periods(
    conn: &Connection,
    periods: &[u32],
) -> Result<(Catalogs, BTreeMap<CellKey, CellState>), CollectorError> {
    let catalogs = Catalogs::published(published_ranges(conn)?);
    let mut reports = Vec::new();
    for &period in periods {
        reports.extend(
            stored_reports(conn, period, period)?
                .into_iter()
                .filter(|(_, _, _, report)| catalogs.get(report.catalog_hash()).is_some()),
        );
    }
    let cells = crate::store::fold_reports(reports, &catalogs)?;
    Ok((catalogs, cells))
}

/// The first period whose reports have not been pruned (see the schema).
pub(crate) fn pruned_before(conn: &Connection) -> Result<u32, CollectorError> {
    Ok(conn
        .prepare_cached("SELECT before_period FROM pruned")?
        .query_row([], |r| r.get(0))?)
}

/// Moves the epoch on (see the schema); returns its new value.
fn next_epoch(conn: &Connection) -> Result<i64, CollectorError> {
    Ok(conn
        .prepare_cached("UPDATE epoch SET n = n + 1 RETURNING n")?
        .query_row([], |r| r.get(0))?)
}

/// The epoch as the last transaction that changed reports or cells left it.
pub(crate) fn epoch(conn: &Connection) -> Result<i64, CollectorError> {
    Ok(conn
        .prepare_cached("SELECT n FROM epoch")?
        .query_row([], |r| r.get(0))?)
}

/// Makes the stored cells of every pending period count exactly its
/// reports, clears the marks and moves the epoch on; inside the caller's
/// write transaction, which may then change reports or cells. Everyone but
/// the writer that marked the periods (an erasure, a prune, a writer whose
/// memory of them is gone) settles before changing either; returns the
/// new epoch.
pub(crate) fn settle(conn: &Connection) -> Result<i64, CollectorError> {
    let periods = pending_periods(conn, 0, u32::MAX)?;
    if periods.is_empty() {
        return next_epoch(conn);
    }
    let (catalogs, cells) = recount_periods(conn, &periods)?;
    for (key, _) in stored_cells_of(conn, &periods)? {
        if catalogs.get(key.catalog).is_some() {
            delete_cell(conn, &key)?;
        }
    }
    for (key, state) in &cells {
        save_cell(conn, key, state)?;
    }
    clear_pending(conn)?;
    next_epoch(conn)
}
