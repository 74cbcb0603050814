//! The SQLite store: schema, tokens, reports, per-device contributions and aggregate cells.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use crate::CollectorError;
use crate::cells::{CellKey, CellState};
use crate::tokens::{TokenKind, token_hash};

/// Who a bearer token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A device, with its id and cohort.
    Device {
        /// Internal device id.
        id: i64,
        /// Cohort name (e.g. a team), used to split estimates.
        cohort: String,
    },
    /// An administrator.
    Admin,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS devices (
    id INTEGER PRIMARY KEY,
    token_hash BLOB NOT NULL UNIQUE,
    cohort TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS admins (
    id INTEGER PRIMARY KEY,
    token_hash BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
-- Report ids start with their period, so inserts arrive nearly in key order.
CREATE TABLE IF NOT EXISTS reports (
    id BLOB PRIMARY KEY,
    device INTEGER NOT NULL,
    period INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    body BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS contributions (
    device INTEGER NOT NULL,
    period INTEGER NOT NULL,
    catalog BLOB NOT NULL,
    metric INTEGER NOT NULL,
    report BLOB NOT NULL,
    PRIMARY KEY (device, period, catalog, metric)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cells (
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
pub fn open(path: &Path) -> Result<Connection, CollectorError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// Stores a new token's hash; device tokens carry a cohort.
pub fn add_token(
    conn: &Connection,
    kind: TokenKind,
    token: &str,
    cohort: &str,
    now: i64,
) -> Result<(), CollectorError> {
    let hash = token_hash(token);
    match kind {
        TokenKind::Device => conn.execute(
            "INSERT INTO devices (token_hash, cohort, created_at) VALUES (?1, ?2, ?3)",
            params![&hash[..], cohort, now],
        )?,
        TokenKind::Admin => conn.execute(
            "INSERT INTO admins (token_hash, created_at) VALUES (?1, ?2)",
            params![&hash[..], now],
        )?,
    };
    Ok(())
}

/// Revokes a token; returns whether it existed.
pub fn revoke_token(conn: &Connection, token: &str, now: i64) -> Result<bool, CollectorError> {
    let hash = token_hash(token);
    let n = conn.execute(
        "UPDATE devices SET revoked_at = ?2 WHERE token_hash = ?1 AND revoked_at IS NULL",
        params![&hash[..], now],
    )? + conn.execute(
        "UPDATE admins SET revoked_at = ?2 WHERE token_hash = ?1 AND revoked_at IS NULL",
        params![&hash[..], now],
    )?;
    Ok(n > 0)
}

/// The principal a token authenticates, if it is known and not revoked.
pub fn principal(conn: &Connection, token: &str) -> Result<Option<Principal>, CollectorError> {
    let hash = token_hash(token);
    let device = conn
        .query_row(
            "SELECT id, cohort FROM devices WHERE token_hash = ?1 AND revoked_at IS NULL",
            params![&hash[..]],
            |r| {
                Ok(Principal::Device {
                    id: r.get(0)?,
                    cohort: r.get(1)?,
                })
            },
        )
        .optional()?;
    if device.is_some() {
        return Ok(device);
    }
    let admin = conn
        .query_row(
            "SELECT id FROM admins WHERE token_hash = ?1 AND revoked_at IS NULL",
            params![&hash[..]],
            |_| Ok(Principal::Admin),
        )
        .optional()?;
    Ok(admin)
}

/// Loads one cell's state.
pub fn load_cell(conn: &Connection, key: &CellKey) -> Result<Option<CellState>, CollectorError> {
    let bytes: Option<Vec<u8>> = conn
        .query_row(
            "SELECT state FROM cells WHERE catalog = ?1 AND metric = ?2 AND period = ?3 AND cohort = ?4 AND epsilon_bits = ?5 AND epsilon_perm_bits = ?6",
            params![&key.catalog.0[..], key.metric, key.period, key.cohort, key.epsilon_bits as i64, key.epsilon_perm_bits as i64],
            |r| r.get(0),
        )
        .optional()?;
    bytes.map(|b| CellState::from_bytes(&b)).transpose()
}

/// Writes one cell's state.
pub fn save_cell(
    conn: &Connection,
    key: &CellKey,
    state: &CellState,
) -> Result<(), CollectorError> {
    conn.execute(
        "INSERT INTO cells (catalog, metric, period, cohort, epsilon_bits, epsilon_perm_bits, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (catalog, metric, period, cohort, epsilon_bits, epsilon_perm_bits) DO UPDATE SET state = excluded.state",
        params![&key.catalog.0[..], key.metric, key.period, key.cohort, key.epsilon_bits as i64, key.epsilon_perm_bits as i64, state.to_bytes()],
    )?;
    Ok(())
}

/// Every cell, optionally limited to a period range.
pub fn all_cells(
    conn: &Connection,
    from_period: Option<u32>,
    to_period: Option<u32>,
) -> Result<Vec<(CellKey, CellState)>, CollectorError> {
    let mut stmt = conn.prepare(
        "SELECT catalog, metric, period, cohort, epsilon_bits, epsilon_perm_bits, state FROM cells
         WHERE period >= ?1 AND period <= ?2 ORDER BY period, metric, cohort, epsilon_bits, epsilon_perm_bits",
    )?;
    let rows = stmt.query_map(
        params![from_period.unwrap_or(0), to_period.unwrap_or(u32::MAX)],
        |r| {
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
        },
    )?;
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

/// Number of stored reports.
pub fn report_count(conn: &Connection) -> Result<u64, CollectorError> {
    Ok(conn.query_row("SELECT COUNT(*) FROM reports", [], |r| r.get::<_, i64>(0))? as u64)
}
