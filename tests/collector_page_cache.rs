//! The collector's layer over SQLite's page cache (`store/sqlite/pcache.rs`),
//! in a process of its own so that it is installed before SQLite starts: the
//! end-of-transaction truncations that page splits made scan the whole
//! cache are skipped, those that can drop a page still reach it, and the
//! database stays whole through splits, rollbacks and savepoints.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::collections::BTreeMap;

use hush_collector::store::sqlite;
use rusqlite::params;

/// A seeded 64-bit generator (SplitMix64), so the keys are the same every run.
struct Keys(u64);

impl Keys {
    fn next(&mut self) -> [u8; 16] {
        let mut half = || {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let mut key = [0; 16];
        key[..8].copy_from_slice(&half().to_be_bytes());
        key[8..].copy_from_slice(&half().to_be_bytes());
        key
    }
}

/// A row's value: 80 bytes, as a stored report's body is, from its key.
fn value(key: &[u8; 16]) -> Vec<u8> {
    key.iter().cycle().take(80).copied().collect()
}

#[test]
fn truncations_that_drop_nothing_are_skipped_and_the_database_stays_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("collector.sqlite");
    // The first SQLite call in this process, so the layer goes in first.
    let conn = sqlite::open(&path).unwrap();
    let before = sqlite::truncations();
    assert!(before.installed, "the layer was not installed: {before:?}");
    conn.execute_batch("CREATE TABLE t (id BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")
        .unwrap();
    let pages = |c: &rusqlite::Connection| -> i64 {
        c.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap()
    };

    let mut keys = Keys(17);
    let mut stored = BTreeMap::new();
    let mut insert = |conn: &rusqlite::Connection, n: usize, keep: bool| {
        let mut added = Vec::new();
        let mut stmt = conn
            .prepare_cached("INSERT INTO t (id, v) VALUES (?1, ?2)")
            .unwrap();
        for _ in 0..n {
            let key = keys.next();
            stmt.execute(params![&key[..], value(&key)]).unwrap();
            added.push(key);
        }
        if keep {
            stored.extend(added.into_iter().map(|k| (k, value(&k))));
        }
    };
    // Random keys in 1 KiB pages split a page every few rows: 400
    // transactions of 50 rows.
    for _ in 0..400 {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        insert(&conn, 50, true);
        conn.execute_batch("COMMIT").unwrap();
    }
    let after_splits = sqlite::truncations();
    assert!(
        after_splits.skipped - before.skipped >= 300,
        "the page splits' truncations were not skipped: {before:?} then {after_splits:?}"
    );

    // A transaction that grows the database and is rolled back leaves its
    // new pages in the cache past the end: that truncation must reach it.
    let size = pages(&conn);
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    insert(&conn, 3000, false);
    assert!(pages(&conn) > size + 100);
    conn.execute_batch("ROLLBACK").unwrap();
    assert_eq!(pages(&conn), size);
    let after_rollback = sqlite::truncations();
    assert!(
        after_rollback.passed > after_splits.passed,
        "the rollback's truncation did not reach the cache: {after_splits:?} then {after_rollback:?}"
    );

    // The pages given back are allocated again, inside and outside of
    // savepoints, some of them rolled back.
    for round in 0..100 {
        conn.execute_batch("BEGIN IMMEDIATE; SAVEPOINT upload")
            .unwrap();
        insert(&conn, 30, round % 3 != 0);
        if round % 3 == 0 {
            conn.execute_batch("ROLLBACK TO upload").unwrap();
        }
        conn.execute_batch("RELEASE upload").unwrap();
        insert(&conn, 20, true);
        conn.execute_batch("COMMIT").unwrap();
    }

    let check = |c: &rusqlite::Connection| {
        let integrity: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(integrity, "ok");
        let mut stmt = c.prepare("SELECT id, v FROM t ORDER BY id").unwrap();
        let rows: BTreeMap<[u8; 16], Vec<u8>> = stmt
            .query_map([], |r| {
                let id: Vec<u8> = r.get(0)?;
                Ok((id.try_into().unwrap(), r.get(1)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.len(), stored.len());
        assert!(
            rows == stored,
            "the rows read back differ from those stored"
        );
    };
    check(&conn);
    // And through a new connection and the file's pages after a checkpoint.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    drop(conn);
    check(&sqlite::open(&path).unwrap());
}
