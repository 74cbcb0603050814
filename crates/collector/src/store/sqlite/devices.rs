//! The devices and admins tables: tokens stored as hashes, who a token
//! belongs to, revocation, and the rows the device directory reads.

use rusqlite::{Connection, OptionalExtension, params};

use super::finish;
use crate::CollectorError;
use crate::store::{DeviceRow, Principal};
use crate::tokens::token_hash;

/// Stores a new admin token's hash.
pub(super) fn add_admin(conn: &Connection, token: &str, now: i64) -> Result<(), CollectorError> {
    conn.execute(
        "INSERT INTO admins (token_hash, created_at) VALUES (?1, ?2)",
        params![&token_hash(token)[..], now],
    )?;
    Ok(())
}

/// Stores a new device token's hash and returns the device's id; `loadgen`
/// marks the devices the load generator mints for itself.
pub(super) fn add_device(
    conn: &Connection,
    token: &str,
    cohort: &str,
    now: i64,
    loadgen: bool,
) -> Result<i64, CollectorError> {
    let hash = token_hash(token);
    conn.prepare_cached(
        "INSERT INTO devices (token_hash, cohort, created_at, loadgen) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![&hash[..], cohort, now, loadgen])?;
    Ok(conn.last_insert_rowid())
}

/// Revokes a token; returns whether it existed.
pub(super) fn revoke_token(
    conn: &Connection,
    token: &str,
    now: i64,
) -> Result<bool, CollectorError> {
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

/// Revokes devices by id (the load generator's own, when it ends).
pub(super) fn revoke_devices(
    conn: &Connection,
    ids: &[i64],
    now: i64,
) -> Result<(), CollectorError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let done = (|| {
        let mut update = conn.prepare_cached(
            "UPDATE devices SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        )?;
        for id in ids {
            update.execute(params![id, now])?;
        }
        Ok::<_, CollectorError>(())
    })();
    finish(conn, done)
}

/// How many devices were not minted by the load generator, revoked or not.
pub(super) fn real_devices(conn: &Connection) -> Result<u64, CollectorError> {
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM devices WHERE loadgen = 0", [], |r| {
        r.get(0)
    })?;
    Ok(n as u64)
}

/// The principal of a token's hash, if it is known and not revoked.
pub(super) fn principal_by_hash(
    conn: &Connection,
    hash: &[u8; 32],
) -> Result<Option<Principal>, CollectorError> {
    let device = conn
        .prepare_cached(
            "SELECT id, cohort FROM devices WHERE token_hash = ?1 AND revoked_at IS NULL",
        )?
        .query_row(params![&hash[..]], |r| {
            Ok(Principal::Device {
                id: r.get(0)?,
                cohort: r.get(1)?,
            })
        })
        .optional()?;
    if device.is_some() {
        return Ok(device);
    }
    let admin = conn
        .prepare_cached("SELECT id FROM admins WHERE token_hash = ?1 AND revoked_at IS NULL")?
        .query_row(params![&hash[..]], |_| Ok(Principal::Admin))
        .optional()?;
    Ok(admin)
}

/// The cohort of a device that exists, is not revoked, and still holds the
/// token with this hash; `None` otherwise. An id SQLite reused after the
/// newest device was erased belongs to the new device only, whatever an old
/// token's holder presents. The writer calls it for every upload.
pub(crate) fn device_cohort(
    conn: &Connection,
    device: i64,
    hash: &[u8; 32],
) -> Result<Option<String>, CollectorError> {
    Ok(conn
        .prepare_cached(
            "SELECT cohort FROM devices WHERE id = ?1 AND token_hash = ?2 AND revoked_at IS NULL",
        )?
        .query_row(params![device, &hash[..]], |r| r.get(0))
        .optional()?)
}

/// The devices with an id above `after`, revoked ones included (so a reader
/// can move past them for good: a revocation is final).
pub(super) fn devices_after(
    conn: &Connection,
    after: i64,
) -> Result<Vec<DeviceRow>, CollectorError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, token_hash, cohort, revoked_at IS NULL FROM devices WHERE id > ?1",
    )?;
    let rows = stmt.query_map(params![after], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, Vec<u8>>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, bool>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, hash, cohort, active) = row?;
        let token_hash: [u8; 32] = hash.try_into().map_err(|_| {
            CollectorError::Internal(format!("device {id}: a token hash is not 32 bytes"))
        })?;
        out.push(DeviceRow {
            id,
            token_hash,
            cohort,
            active,
        });
    }
    Ok(out)
}

/// Stores the load generator's devices in one write transaction, after
/// counting the real ones in the same transaction.
pub(super) fn mint_loadgen_devices(
    conn: &Connection,
    tokens: &[String],
    now: i64,
) -> Result<Result<Vec<i64>, u64>, CollectorError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let minted = (|| {
        let real = real_devices(conn)?;
        if real > 0 {
            return Ok(Err(real));
        }
        tokens
            .iter()
            .map(|token| add_device(conn, token, "loadgen", now, true))
            .collect::<Result<Vec<_>, _>>()
            .map(Ok)
    })();
    finish(conn, minted)
}
