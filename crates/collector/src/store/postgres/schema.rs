//! The PostgreSQL schema's versions, applied at start-up under an advisory
//! lock, and the server settings a collector refuses to run with.

use super::conn::{PgConn, db};
use crate::CollectorError;

/// Every migration, in order: (version, SQL). A database at a version above
/// the last is refused, like a SQLite file of a newer schema.
pub(crate) const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("migrations/0001_initial.sql"))];

/// The version this build reads and writes.
pub(crate) const VERSION: i32 = 1;

/// Advisory lock keys ("HUSH" and a number): one process migrates at a
/// time, and one reseals.
pub(crate) const MIGRATE_LOCK: i64 = 0x4855_5348_0000_0001;
/// See [`MIGRATE_LOCK`].
pub(crate) const RESEAL_LOCK: i64 = 0x4855_5348_0000_0002;

/// Applies the missing migrations in one transaction, under an advisory
/// lock so that collectors starting together migrate once; DDL is
/// transactional, so a failed migration leaves the database as it was.
pub(crate) fn migrate(conn: &mut PgConn, database: &str) -> Result<(), CollectorError> {
    let found = conn.run_with(|c| async move {
        let tx = c.transaction().await.map_err(db)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
            .await
            .map_err(db)?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS hush_migrations (version integer PRIMARY KEY)")
            .await
            .map_err(db)?;
        let found: i32 = tx
            .query_one("SELECT coalesce(max(version), 0) FROM hush_migrations", &[])
            .await
            .map_err(db)?
            .get(0);
        if found == 0 {
            // A database other tables live in is not ours to fill.
            let foreign: i64 = tx
                .query_one(
                    "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()
                     AND tablename IN ('devices', 'admins', 'reports', 'cells', 'ranges')",
                    &[],
                )
                .await
                .map_err(db)?
                .get(0);
            if foreign > 0 {
                return Err(CollectorError::Refused(
                    "the database holds tables named like the collector's but no hush_migrations record; give the collector a database of its own".into(),
                ));
            }
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
            tx.batch_execute(sql).await.map_err(db)?;
            tx.execute("INSERT INTO hush_migrations (version) VALUES ($1)", &[version])
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(found)
    })?;
    if found > VERSION {
        return Err(CollectorError::SchemaVersion {
            database: database.to_owned(),
            found: i64::from(found),
            expected: i64::from(VERSION),
        });
    }
    Ok(())
}

/// The schema version of a database that must be ready already (export,
/// prune, erase): never creates anything.
pub(crate) fn check_version(conn: &mut PgConn, database: &str) -> Result<(), CollectorError> {
    let found: Option<i32> = conn.run_with(|c| async move {
        let exists: bool = c
            .query_one("SELECT to_regclass('hush_migrations') IS NOT NULL", &[])
            .await
            .map_err(db)?
            .get(0);
        if !exists {
            return Ok(None);
        }
        Ok(Some(
            c.query_one("SELECT coalesce(max(version), 0) FROM hush_migrations", &[])
                .await
                .map_err(db)?
                .get(0),
        ))
    })?;
    match found {
        None | Some(0) => Err(CollectorError::Refused(format!(
            "no collector schema in {database}: start `hush collector serve` on it first"
        ))),
        Some(v) if v == VERSION => Ok(()),
        Some(v) => Err(CollectorError::SchemaVersion {
            database: database.to_owned(),
            found: i64::from(v),
            expected: i64::from(VERSION),
        }),
    }
}

/// Refuses server settings under which the collector's promises fail:
/// `track_commit_timestamp` would give every stored report its arrival time
/// (`pg_xact_commit_timestamp(xmin)`), and `fsync = off` would make
/// acknowledgements not durable. Warns about logging that writes statements'
/// parameters (report ids, device ids) with timestamps to the server's log.
pub(crate) fn check_settings(conn: &mut PgConn) -> Result<(), CollectorError> {
    let settings: Vec<(String, String)> = conn.run(|c| async move {
        let rows = c
            .query(
                "SELECT name, setting FROM pg_settings WHERE name IN
                 ('track_commit_timestamp', 'fsync', 'full_page_writes', 'log_statement',
                  'log_min_duration_statement', 'synchronous_commit')",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    })?;
    let get = |name: &str| {
        settings
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    // Fail closed: a setting that cannot be read counts as the unsafe value.
    if get("track_commit_timestamp") != Some("off") {
        return Err(CollectorError::Postgres(
            "the PostgreSQL server has track_commit_timestamp = on, which records when every stored report arrived; turn it off (it needs a restart) before running the collector on it".into(),
        ));
    }
    if get("fsync") != Some("on") {
        return Err(CollectorError::Postgres(
            "the PostgreSQL server has fsync = off, so a committed report could be lost in a crash and the collector's acknowledgements would not be durable; turn fsync on".into(),
        ));
    }
    if get("full_page_writes") == Some("off") {
        tracing::warn!(
            "the PostgreSQL server has full_page_writes = off: a crash can corrupt pages unless its storage writes pages atomically"
        );
    }
    let logs_statements = !matches!(get("log_statement"), Some("none" | "ddl") | None);
    let logs_durations = get("log_min_duration_statement").is_some_and(|v| v != "-1");
    // Once per process: the maintenance tasks connect every minute.
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if (logs_statements || logs_durations)
        && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        tracing::warn!(
            "the PostgreSQL server logs statements (log_statement or log_min_duration_statement), with their times and parameters (report and device ids); set them off for the collector's role, see the README's deployment section"
        );
    }
    Ok(())
}
