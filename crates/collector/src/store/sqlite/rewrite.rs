//! What deleted rows and past commits leave in a SQLite collector's files,
//! and how they are cleared: the log and its index emptied (by the writer
//! when quiet, after a prune), and the whole file rewritten after an
//! erasure, with the erasures still owed a rewrite counted in the file.

use std::time::Duration;

use rusqlite::{Connection, params};

use super::{BUSY_TIMEOUT, Residue, SCHEMA_VERSION, coalesce};
use crate::CollectorError;

/// Rewrites the whole database file with the rows it keeps and empties the
/// log, so that no copy of a deleted row stays in the files, and takes the
/// erasures it cleared off those [`owed_rewrites`] counts. Refused if
/// readers (an export, a backup) hold the log for [`EMPTY_LOG_TRIES`]
/// tries of [`empty_log`]: the database file then keeps its old pages
/// until it is emptied.
///
/// `secure_delete` zeroes a deleted row where it lies and every page freed,
/// but SQLite's page rebuilds (as rows are added) can leave copies of rows
/// in a page's unused space, which nothing else clears. The rewrite's
/// transient copy is kept in memory (about the database's size; the
/// connection keeps `temp_store=MEMORY` afterwards), not in a temporary
/// file on whatever disk the temporary directory is. It holds the write
/// lock throughout: uploads wait, and after [`BUSY_TIMEOUT`] are refused
/// with 503 and retried.
pub fn rewrite(conn: &Connection) -> Result<(), CollectorError> {
    // Every erasure counted here committed before the VACUUM, which clears
    // them all; one that commits later stays owed. A concurrent rewrite
    // only moves `cleared` up to what it read.
    let (committed, cleared): (i64, i64) =
        conn.query_row("SELECT committed, cleared FROM erasures", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.execute_batch("VACUUM")?;
    let mut tries = 0;
    while !empty_log(conn)? {
        tries += 1;
        if tries == EMPTY_LOG_TRIES {
            return Err(CollectorError::Refused(
                "the file was rewritten, but a reader (an export, a backup) holds its write-ahead log, so the database file keeps its old pages until the log is emptied".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if committed > cleared {
        conn.execute(
            "UPDATE erasures SET cleared = MAX(cleared, ?1)",
            params![committed],
        )?;
        // That commit wrote one page of this table and nothing else; the
        // log is emptied again only for tidiness.
        let _ = empty_log(conn);
    }
    Ok(())
}

/// Erasures committed whose [`rewrite`] has not yet succeeded: each may
/// have left copies of what it erased in the file's unused space.
pub fn owed_rewrites(conn: &Connection) -> Result<i64, CollectorError> {
    Ok(conn.query_row("SELECT committed - cleared FROM erasures", [], |r| r.get(0))?)
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
pub(crate) fn empty_log(conn: &Connection) -> Result<bool, CollectorError> {
    // Without waiting: a truncating checkpoint takes the write lock before
    // it waits for readers, so waiting would hold off every commit behind
    // a long read; the caller tries again later.
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
                    .pragma_update(None, "user_version", SCHEMA_VERSION)
                    .and_then(|()| truncate())?
                && scrub_index(conn)?)
        });
    let restored = conn.busy_timeout(BUSY_TIMEOUT);
    let emptied = emptied?;
    restored?;
    Ok(emptied)
}

/// Zeroes the blocks of the log's index past the first, once the log is
/// empty; returns whether the log was still empty (a commit from another
/// connection in between leaves the scrub to the next emptying).
///
/// Under the write lock, so no commit fills a block meanwhile.
pub(crate) fn scrub_index(conn: &Connection) -> Result<bool, CollectorError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let scrubbed = coalesce::zero_index_past_first(conn);
    // Nothing was written: this only releases the lock, and must, even
    // after a failure.
    let released = conn.execute_batch("ROLLBACK");
    let scrubbed = scrubbed?;
    released?;
    Ok(scrubbed)
}

/// Tries a [`rewrite`] makes to empty the log, 50 ms apart.
const EMPTY_LOG_TRIES: u32 = 40;

/// What deleted rows left in the files after a [`rewrite`].
pub(super) fn residue(conn: &Connection) -> Residue {
    match rewrite(conn) {
        Ok(()) => Residue::Cleared,
        Err(e) => Residue::RewriteFailed(e.to_string()),
    }
}
