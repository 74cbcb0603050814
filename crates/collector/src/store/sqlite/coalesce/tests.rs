//! Tests of the log-writing VFS: every committed row read back through the
//! platform's own VFS, after spills, a rollback, commits without a sync and
//! many-page commits.

use std::cell::Cell;

use rusqlite::{Connection, params};

use crate::store::sqlite::open;

thread_local! {
    /// Writes this thread's logs handed to the platform VFS.
    pub(super) static BASE_WRITES: Cell<u64> = const { Cell::new(0) };
}

/// A new database through this VFS with an empty table `t`; the directory
/// lives as long as the guard.
fn table() -> (tempfile::TempDir, std::path::PathBuf, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sqlite");
    let conn = open(&path).unwrap();
    conn.execute_batch("CREATE TABLE t (i INTEGER PRIMARY KEY, b BLOB)")
        .unwrap();
    (dir, path, conn)
}

/// Inserts rows `ids`, each with `body(i)`.
fn insert(conn: &Connection, ids: std::ops::Range<i64>, body: impl Fn(i64) -> Vec<u8>) {
    for i in ids {
        conn.execute("INSERT INTO t VALUES (?1, ?2)", params![i, body(i)])
            .unwrap();
    }
}

fn row(i: i64) -> Vec<u8> {
    let mut b = vec![(i % 251) as u8; 900];
    b[..8].copy_from_slice(&i.to_le_bytes());
    b
}

/// Reads the table back through the platform VFS, as another process
/// would, and checks every row and the file's structure.
fn check_from_outside(path: &std::path::Path, rows: i64) {
    super::super::install_page_cache();
    let other = Connection::open(path).unwrap();
    let ok: String = other
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let mut stmt = other.prepare("SELECT i, b FROM t ORDER BY i").unwrap();
    let got: Vec<(i64, Vec<u8>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got.len() as i64, rows);
    for (i, b) in got {
        assert_eq!(b, row(i), "row {i}");
    }
}

#[test]
fn a_commit_of_many_pages_reaches_the_log_in_a_few_writes() {
    let (_dir, path, conn) = table();
    let before = BASE_WRITES.with(Cell::get);
    conn.execute_batch("BEGIN").unwrap();
    insert(&conn, 0..300, row);
    conn.execute_batch("COMMIT").unwrap();
    // About 300 frames of 1,048 bytes (315 KiB): SQLite's own two writes
    // per frame would be 600; gathered, they are 64 KiB writes.
    let writes = BASE_WRITES.with(Cell::get) - before;
    assert!((5..=8).contains(&writes), "{writes} writes");
    // Committed means on the file, for a connection that never saw the run.
    check_from_outside(&path, 300);
}

#[test]
fn pages_spilled_within_a_transaction_are_read_back_whole() {
    let (dir, path, conn) = table();
    // A cache of 16 pages makes SQLite write frames to the log before
    // the commit and read them back (and rewrite them) as it goes.
    conn.pragma_update(None, "cache_size", 16).unwrap();
    conn.execute_batch("BEGIN").unwrap();
    insert(&conn, 0..2000, |_| vec![0u8; 900]);
    for i in 0..2000 {
        conn.execute("UPDATE t SET b = ?2 WHERE i = ?1", params![i, row(i)])
            .unwrap();
    }
    conn.execute_batch("COMMIT").unwrap();
    check_from_outside(&path, 2000);
    // And the copy into the database reads the log through the same layer.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    assert_eq!(
        std::fs::metadata(dir.path().join("c.sqlite-wal"))
            .unwrap()
            .len(),
        0
    );
    drop(conn);
    check_from_outside(&path, 2000);
}

#[test]
fn a_rolled_back_transaction_leaves_nothing_to_write_over_later_commits() {
    let (_dir, path, first) = table();
    // Spills frames to the log before the ROLLBACK.
    first.pragma_update(None, "cache_size", 16).unwrap();
    first.execute_batch("BEGIN").unwrap();
    insert(&first, 0..500, |_| vec![7u8; 900]);
    first.execute_batch("ROLLBACK").unwrap();
    // Another connection commits over the same stretch of the log and
    // past it.
    super::super::install_page_cache();
    let mut other = Connection::open(&path).unwrap();
    // Not copied into the database (which would make them harmless to
    // overwrite).
    other.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    let tx = other.transaction().unwrap();
    insert(&tx, 0..1500, row);
    tx.commit().unwrap();
    drop(other);
    // The first connection reads, writes and closes: nothing of its
    // rolled-back transaction may reach the file now.
    insert(&first, 1500..1501, row);
    drop(first);
    check_from_outside(&path, 1501);
}

#[test]
fn commits_without_a_sync_are_in_the_file_before_others_can_read_them() {
    let (_dir, path, writer) = table();
    // Without a sync at commit, only the commit frame's own write and the
    // index's lock and barrier make the run reach the file.
    writer.pragma_update(None, "synchronous", "NORMAL").unwrap();
    // And spilling, so commits rewrite frame checksums as they end.
    writer.pragma_update(None, "cache_size", 16).unwrap();
    super::super::install_page_cache();
    let reader = Connection::open(&path).unwrap();
    for round in 0..5 {
        writer.execute_batch("BEGIN").unwrap();
        insert(&writer, round * 100..(round + 1) * 100, row);
        writer.execute_batch("COMMIT").unwrap();
        let sum: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sum, (round + 1) * 100);
    }
    drop(reader);
    check_from_outside(&path, 500);
}
