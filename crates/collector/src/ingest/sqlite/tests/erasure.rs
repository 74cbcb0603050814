//! An erasure's rewrite, seen from the files: no byte of what was erased
//! stays in the database, its log or its index, and a rewrite that could not
//! finish stays owed.

use super::*;

/// How many of `needles` occur somewhere in the database's files (the
/// database, its log and the log's index).
fn found_in_files(path: &Path, needles: &[Vec<u8>]) -> usize {
    let bytes: Vec<u8> = ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| std::fs::read(store::sqlite::sidecar(path, suffix)).ok())
        .flatten()
        .collect();
    needles
        .iter()
        .filter(|n| bytes.windows(n.len()).any(|w| w == n.as_slice()))
        .count()
}

/// The aggregate cells' states as stored.
fn cell_states(path: &Path) -> HashSet<Vec<u8>> {
    let conn = store::sqlite::open(path).unwrap();
    let mut stmt = conn.prepare("SELECT state FROM cells").unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn an_erased_devices_reports_leave_no_byte_in_the_files() {
    let mut fleet = Fleet::new();
    let mut writer = SqliteIngest::open(&fleet.path).unwrap();
    // 16,000 reports in groups of four uploads, as under load: their random
    // ids split the reports' pages many times over.
    let mut erased = Vec::new();
    for group in 0..500 {
        let uploads = fleet.uploads(4);
        fleet.store(&mut writer, &uploads);
        if group % 10 == 0 {
            erased.push(clone_upload(&uploads[group % 4]));
        }
    }
    assert!(writer.tidy());
    let bodies: Vec<Vec<u8>> = erased
        .iter()
        .flat_map(|u| &u.reports)
        .map(|v| v.report.encode())
        .collect();
    // A page rebuild can leave copies of rows in the page's unused space
    // (SQLite's `rebuildPage` does not clear it), and a later deletion
    // zeroes the row, not its copies. Such copies are rare enough that
    // these 16,000 reports need not show one, so a copy of each erased
    // report is left in unused space here for certain: a row beside it,
    // deleted without `secure_delete`.
    let other = store::sqlite::open(&fleet.path).unwrap();
    other.pragma_update(None, "secure_delete", "OFF").unwrap();
    other.execute_batch("BEGIN").unwrap();
    for (i, body) in bodies.iter().enumerate() {
        let mut id = hush_report::Report::decode(body).unwrap().id().0;
        id[15] ^= 1;
        other
            .execute(
                "INSERT INTO reports (id, device, period, body) VALUES (?1, -1, ?2, ?3)",
                params![&id[..], i as i64, body],
            )
            .unwrap();
    }
    other.execute_batch("COMMIT").unwrap();
    other
        .execute("DELETE FROM reports WHERE device = -1", [])
        .unwrap();
    drop(other);
    let cells_before = cell_states(&fleet.path);
    // The needles: each report's id and encoding, and each device's token hash.
    let mut needles: Vec<Vec<u8>> = erased
        .iter()
        .flat_map(|u| &u.reports)
        .map(|v| v.report.id().0.to_vec())
        .chain(bodies)
        .chain(erased.iter().map(|u| u.token.to_vec()))
        .collect();
    assert_eq!(found_in_files(&fleet.path, &needles), needles.len());

    // Deleting the rows alone leaves the copies: the test can tell.
    let control = fleet.path.with_file_name("control.sqlite");
    store::sqlite::open(&fleet.path)
        .unwrap()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    std::fs::copy(&fleet.path, &control).unwrap();
    let deleting = store::sqlite::open(&control).unwrap();
    for upload in &erased {
        deleting
            .execute("DELETE FROM reports WHERE device = ?1", [upload.device])
            .unwrap();
    }
    deleting
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    assert!(found_in_files(&control, &needles) > 0);

    // Erasing rewrites the file; the last erasure, while a reader holds the
    // log, cannot empty it, says so, and leaves the rewrite to be finished.
    let mut store = store::sqlite::SqliteStore::open(&fleet.path).unwrap();
    let (last, rest) = erased.split_last().unwrap();
    let erase = |store: &mut store::sqlite::SqliteStore, upload: &Upload| {
        let gone = store::Store::erase_device(
            store,
            &crate::Catalogs::builtin(),
            &store::DeviceRef::Id(upload.device),
        )
        .unwrap()
        .unwrap();
        assert_eq!(gone.reports, 8);
        gone.residue
    };
    let owed = |path: &Path| store::sqlite::owed_rewrites(&store::sqlite::open(path).unwrap());
    for upload in rest {
        assert_eq!(erase(&mut store, upload), store::Residue::Cleared);
    }
    assert_eq!(owed(&fleet.path).unwrap(), 0);
    let reader = store::sqlite::open(&fleet.path).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT COUNT(*) FROM reports", [], |r| r.get(0))
        .unwrap();
    match erase(&mut store, last) {
        store::Residue::RewriteFailed(why) => assert!(why.contains("holds its write-ahead log")),
        other => panic!("an erasure with the log held reported {other:?}"),
    }
    // Owed, in the file, until a rewrite succeeds.
    assert_eq!(owed(&fleet.path).unwrap(), 1);
    reader.execute_batch("COMMIT").unwrap();
    assert_eq!(owed(&fleet.path).unwrap(), 1);
    assert_eq!(
        store::Store::clear_residue(&mut store).unwrap(),
        store::Residue::Cleared
    );
    assert_eq!(owed(&fleet.path).unwrap(), 0);

    // The cells' states before the erasures, now gone, are needles too.
    needles.extend(cells_before.difference(&cell_states(&fleet.path)).cloned());
    assert_eq!(
        found_in_files(&fleet.path, &needles),
        0,
        "bytes of erased reports are still in the files"
    );
    assert_eq!(count_afresh(&fleet.path), 16_000 - 8 * erased.len() as i64);
    assert_eq!(fleet.cells(), fleet.recount());
    // The writer goes on storing into the rewritten file, and a report
    // stored before is still recognised.
    let more = fleet.uploads(4);
    fleet.store(&mut writer, &more);
    let again = writer.commit_group(&[clone_upload(&more[0])]).unwrap();
    assert_eq!(again[0].as_ref().unwrap().duplicates, 8);
    assert!(writer.tidy());
    assert_eq!(fleet.table(), fleet.recount());
}
