//! Tests of the SQLite writer: the log's emptying and index scrub, and the
//! aggregate cells saved at most once a second.

use super::*;
use crate::store::sqlite::coalesce;

/// The page numbers every block of the log's index lists, in frame
/// order, as `conn` maps the index.
fn listed(conn: &Connection) -> Vec<u32> {
    coalesce::index_copy(conn)
        .chunks(coalesce::INDEX_REGION)
        .enumerate()
        .flat_map(|(block, bytes)| {
            // After the first block's 136-byte header, 4,062 page
            // numbers; 4,096 in each later block.
            let (from, frames) = if block == 0 { (136, 4062) } else { (0, 4096) };
            bytes[from..from + 4 * frames].chunks(4)
        })
        .map(|b| u32::from_ne_bytes(b.try_into().expect("four bytes")))
        .filter(|&page| page != 0)
        .collect()
}

/// The reports in cells of `devices` devices' uploads, one per metric of
/// each of their 8 reports.
fn counted(devices: u64) -> u64 {
    devices * 8 * u64::from(hush_report::Catalog::builtin().metrics_per_report())
}

/// Asserts that the index lists page 1 only (the scrubbing commit's),
/// and that its blocks past the first, hash tables included, are zeros.
fn assert_scrubbed(conn: &Connection) {
    let left = listed(conn);
    assert!(
        left == [1],
        "the index still lists {} pages, from {:?}",
        left.len(),
        &left[..left.len().min(8)]
    );
    let index = coalesce::index_copy(conn);
    assert!(index.len() > coalesce::INDEX_REGION);
    assert!(index[coalesce::INDEX_REGION..].iter().all(|&b| b == 0));
}

/// Commits `commits` transactions of 1,000 reports of one page each, in
/// scattered id order, from report `from` on.
fn fill(conn: &Connection, from: u64, commits: u64) {
    conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    for c in 0..commits {
        conn.execute_batch("BEGIN").unwrap();
        for i in from + c * 1_000..from + (c + 1) * 1_000 {
            let id = i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes();
            conn.execute(
                "INSERT INTO reports (id, device, period, body) VALUES (?1, ?2, 0, zeroblob(700))",
                params![&id[..], i as i64],
            )
            .unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
    }
}

/// A new database in a directory of its own, and a connection to it.
fn new_database() -> (tempfile::TempDir, std::path::PathBuf, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sqlite");
    let conn = store::sqlite::open(&path).unwrap();
    (dir, path, conn)
}

/// The reports a new connection counts, once it found the file whole.
fn count_afresh(path: &Path) -> i64 {
    let conn = store::sqlite::open(path).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    conn.query_row("SELECT COUNT(*) FROM reports", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn emptying_a_long_log_zeroes_every_block_of_its_index() {
    let (_dir, path, writer) = new_database();
    // Another connection writes too, as a command-line erasure would.
    let other = store::sqlite::open(&path).unwrap();
    fill(&writer, 0, 10);
    let before = listed(&writer);
    assert!(
        before.len() > 4062 + 4096,
        "the log reached only {} frames: the test tests nothing",
        before.len()
    );

    assert!(empty_log(&writer));
    let wal = store::sqlite::sidecar(&path, "-wal");
    assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
    assert_scrubbed(&writer);
    assert_scrubbed(&other);

    // SQLite keeps finding every page in a log that grows over the
    // zeroed blocks again.
    fill(&other, 10_000, 6);
    assert!(listed(&writer).len() > 4062 + 4096);
    assert_eq!(count_afresh(&path), 16_000);
    assert!(empty_log(&writer));
    assert_scrubbed(&other);
    assert_eq!(count_afresh(&path), 16_000);
}

#[test]
fn a_log_written_to_meanwhile_is_left_for_the_next_emptying() {
    let (_dir, path, writer) = new_database();
    // A commit between the truncation and the scrub (here, before it):
    // the blocks past the first hold frames that readers look up.
    fill(&writer, 0, 6);
    let listed_before = listed(&writer);
    assert!(listed_before.len() > 4062 + 1000);
    assert!(!store::sqlite::scrub_index(&writer).unwrap());
    assert_eq!(listed(&writer), listed_before);
    assert_eq!(count_afresh(&path), 6_000);
    // The transaction it took is over: the connection writes again.
    assert!(writer.is_autocommit());
    fill(&writer, 6_000, 1);
}

/// The major and minor numbers of a Linux device number (glibc's
/// `gnu_dev_major` and `gnu_dev_minor`).
#[cfg(target_os = "linux")]
fn dev_major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)
}

#[cfg(target_os = "linux")]
fn dev_minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0xff)
}

/// SQLite's POSIX locks on the index survive the scrub: among them the
/// one that tells a process opening the database that the index is in
/// use (byte 128), without which that process would reset the index
/// under this one's mappings. Closing any handle to the file would drop
/// them all, which a test in one process cannot otherwise see.
#[cfg(target_os = "linux")]
#[test]
fn scrubbing_keeps_the_index_locks_this_process_holds() {
    use std::os::unix::fs::MetadataExt;
    let (_dir, path, writer) = new_database();
    fill(&writer, 0, 5);
    let index = std::fs::metadata(store::sqlite::sidecar(&path, "-shm")).unwrap();
    assert!(
        index.len() > coalesce::INDEX_REGION as u64,
        "nothing to zero"
    );
    // /proc/locks names the file as major:minor:inode, in hexadecimal,
    // hexadecimal and decimal.
    let (major, minor) = (dev_major(index.dev()), dev_minor(index.dev()));
    let file = format!("{major:02x}:{minor:02x}:{}", index.ino());
    // Read a few times: /proc/locks is listed while other tests' locks
    // come and go, and a read can skip a line; a lock really dropped is
    // missing from every read.
    let in_use_lock = || {
        let me = std::process::id().to_string();
        (0..20).any(|_| {
            std::fs::read_to_string("/proc/locks")
                .unwrap()
                .lines()
                .any(|line| {
                    // "1: POSIX  ADVISORY  READ 4242 fd:01:1234 128 128"
                    let f: Vec<&str> = line.split_whitespace().collect();
                    f.len() >= 8 && f[1] == "POSIX" && f[4] == me && f[5] == file && f[6] == "128"
                })
        })
    };
    assert!(in_use_lock(), "no lock to lose: the test tests nothing");
    assert!(empty_log(&writer));
    assert!(in_use_lock(), "the scrub dropped the index's in-use lock");
}

/// The database of a writer, enrolled devices and their uploads.
struct Fleet {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    config: crate::CollectorConfig,
    db: Box<dyn store::Store>,
    rng: hush_ldp::NoiseRng,
    enrolled: u64,
}

impl Fleet {
    fn new() -> Fleet {
        use rand::SeedableRng;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let config = crate::CollectorConfig {
            database: store::Database::Sqlite(path.clone()),
            ..crate::CollectorConfig::default()
        };
        let db = store::open(&config.database).unwrap();
        Fleet {
            _dir: dir,
            path,
            config,
            db,
            rng: hush_ldp::NoiseRng::seed_from_u64(29),
            enrolled: 0,
        }
    }

    /// Enrolls `devices` devices, each with its reports for the 8 open periods.
    fn uploads(&mut self, devices: u64) -> Vec<Upload> {
        self.uploads_of(devices, &hush_report::Catalog::builtin())
    }

    /// The same, under `catalog`, which must be known to the database.
    fn uploads_of(&mut self, devices: u64, catalog: &hush_report::Catalog) -> Vec<Upload> {
        let catalogs = crate::Catalogs::load(self.db.as_mut()).unwrap();
        let current = self.config.clock().current;
        (0..devices)
            .map(|d| {
                self.enrolled += 1;
                let token = format!("device-token-{}", self.enrolled);
                let device = self
                    .db
                    .add_device(&token, "team", self.config.now(), false)
                    .unwrap();
                let reports = crate::loadgen::device_reports(
                    &self.config,
                    catalog,
                    current,
                    d,
                    8,
                    &mut self.rng,
                )
                .unwrap()
                .into_iter()
                .map(|r| crate::validate::validate(r, &catalogs, &self.config, current).unwrap())
                .collect();
                Upload {
                    device,
                    token: crate::tokens::token_hash(&token),
                    reports,
                }
            })
            .collect()
    }

    fn store(&mut self, writer: &mut SqliteIngest, uploads: &[Upload]) {
        for result in writer.commit_group(uploads).unwrap() {
            assert_eq!(result.unwrap().accepted, 8);
        }
    }

    /// The cells as the table holds them, read without counting the
    /// pending periods afresh.
    fn table(&self) -> std::collections::BTreeMap<CellKey, CellState> {
        let conn = store::sqlite::open(&self.path).unwrap();
        let cells = store::sqlite::stored_cells(&conn, 0, u32::MAX).unwrap();
        cells.into_iter().collect()
    }

    fn pending(&self) -> i64 {
        let conn = store::sqlite::open(&self.path).unwrap();
        conn.query_row("SELECT COUNT(*) FROM pending", [], |r| r.get(0))
            .unwrap()
    }

    fn recount(&mut self) -> std::collections::BTreeMap<CellKey, CellState> {
        let catalogs = crate::Catalogs::load(self.db.as_mut()).unwrap();
        store::recount_cells(self.db.as_mut(), &catalogs).unwrap()
    }

    fn cells(&mut self) -> std::collections::BTreeMap<CellKey, CellState> {
        self.db.all_cells(None, None).unwrap().into_iter().collect()
    }
}

#[test]
fn cells_are_saved_at_most_once_a_second_and_read_exact_meanwhile() {
    let mut fleet = Fleet::new();
    let mut writer = SqliteIngest::open(&fleet.path).unwrap();
    let uploads = fleet.uploads(6);
    fleet.store(&mut writer, &uploads);
    let recount = fleet.recount();
    assert!(!recount.is_empty());
    // Not saved yet: the reports' 8 periods are pending, and a reader
    // counts them afresh.
    assert!(fleet.table().is_empty());
    assert_eq!(fleet.pending(), 8);
    assert_eq!(fleet.cells(), recount);
    // Saved once the writer is quiet.
    assert!(writer.tidy());
    assert_eq!(fleet.table(), recount);
    assert_eq!(fleet.pending(), 0);
    assert_eq!(fleet.cells(), recount);
    // And by a commit a second after the last save.
    let more = fleet.uploads(3);
    writer.cache.saved_at -= SAVE_CELLS_EVERY;
    fleet.store(&mut writer, &more);
    assert_eq!(fleet.pending(), 0);
    assert_eq!(fleet.table(), fleet.recount());
}

#[test]
fn a_writer_that_stopped_without_saving_is_counted_afresh_at_the_next_start() {
    let mut fleet = Fleet::new();
    let mut writer = SqliteIngest::open(&fleet.path).unwrap();
    let uploads = fleet.uploads(5);
    fleet.store(&mut writer, &uploads);
    assert!(writer.tidy());
    let more = fleet.uploads(4);
    fleet.store(&mut writer, &more);
    // Killed: nothing saved since the first uploads.
    drop(writer);
    let recount = fleet.recount();
    assert_ne!(fleet.table(), recount);
    assert_eq!(fleet.cells(), recount);
    let _restarted = SqliteIngest::open(&fleet.path).unwrap();
    assert_eq!(fleet.table(), recount);
    assert_eq!(fleet.pending(), 0);
}

#[test]
fn an_erasure_between_saves_is_never_undone_by_the_writers_memory() {
    let mut fleet = Fleet::new();
    let mut writer = SqliteIngest::open(&fleet.path).unwrap();
    let uploads = fleet.uploads(6);
    fleet.store(&mut writer, &uploads);
    // The writer holds the erased device's reports in cells it has not saved.
    let erased = fleet
        .db
        .erase_device(
            &crate::Catalogs::builtin(),
            &store::DeviceRef::Id(uploads[0].device),
        )
        .unwrap()
        .unwrap();
    assert_eq!(erased.reports, 8);
    let recount = fleet.recount();
    assert_eq!(fleet.table(), recount);
    // The next commit and save start from the erased cells.
    let more = fleet.uploads(2);
    fleet.store(&mut writer, &more);
    assert!(writer.tidy());
    assert_eq!(fleet.table(), fleet.recount());
    let reports: u64 = fleet.table().values().map(CellState::reports).sum();
    assert_eq!(reports, counted(7));
}

#[test]
fn an_enrollment_between_saves_keeps_the_writers_memory() {
    let mut fleet = Fleet::new();
    let mut writer = SqliteIngest::open(&fleet.path).unwrap();
    let uploads = fleet.uploads(4);
    fleet.store(&mut writer, &uploads);
    // Enrolling devices commits from another connection, but leaves
    // reports and cells alone: nothing is counted afresh.
    let more = fleet.uploads(4);
    fleet.store(&mut writer, &more);
    assert!(fleet.table().is_empty());
    assert_eq!(fleet.cells(), fleet.recount());
    assert!(writer.tidy());
    assert_eq!(fleet.table(), fleet.recount());
}

#[test]
fn two_writers_on_one_database_count_every_report() {
    let mut fleet = Fleet::new();
    let mut first = SqliteIngest::open(&fleet.path).unwrap();
    let mut second = SqliteIngest::open(&fleet.path).unwrap();
    for _ in 0..3 {
        let uploads = fleet.uploads(2);
        fleet.store(&mut first, &uploads);
        let uploads = fleet.uploads(2);
        fleet.store(&mut second, &uploads);
    }
    assert_eq!(fleet.cells(), fleet.recount());
    assert!(first.tidy());
    assert!(second.tidy());
    assert_eq!(fleet.table(), fleet.recount());
}

#[test]
fn cells_of_a_catalog_this_build_does_not_know_are_kept_not_recounted() {
    let mut fleet = Fleet::new();
    // Reports under a published revision, counted and saved...
    let steps = hush_report::RangeSteps::new([(hush_report::Measure::Keystrokes, 8)]).unwrap();
    let period = fleet.config.clock().current;
    fleet.db.publish_ranges(&steps, period).unwrap();
    let mut writer = SqliteIngest::open(&fleet.path).unwrap();
    let revised = hush_report::Catalog::with_ranges(&steps);
    let uploads = fleet.uploads_of(3, &revised);
    fleet.store(&mut writer, &uploads);
    assert!(writer.tidy());
    drop(writer);
    let revised_cells: Vec<_> = fleet
        .table()
        .into_iter()
        .filter(|(key, _)| key.catalog == revised.hash())
        .collect();
    assert!(!revised_cells.is_empty());
    // ...and then a database that no longer knows the revision (as an
    // older build's catalog is unknown to a newer one).
    store::sqlite::open(&fleet.path)
        .unwrap()
        .execute_batch("DELETE FROM ranges")
        .unwrap();
    let mut writer = SqliteIngest::open(&fleet.path).unwrap();
    let uploads = fleet.uploads(2);
    fleet.store(&mut writer, &uploads);
    assert_eq!(fleet.pending(), 8);
    // Readers, an erasure and the writer's save all work, and keep the
    // unknown revision's cells as they were.
    let kept = |cells: &std::collections::BTreeMap<CellKey, CellState>| -> Vec<_> {
        cells
            .iter()
            .filter(|(key, _)| key.catalog == revised.hash())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    assert_eq!(kept(&fleet.cells()), revised_cells);
    fleet
        .db
        .erase_device(
            &crate::Catalogs::builtin(),
            &store::DeviceRef::Id(uploads[0].device),
        )
        .unwrap()
        .unwrap();
    assert_eq!(kept(&fleet.table()), revised_cells);
    let more = fleet.uploads(1);
    fleet.store(&mut writer, &more);
    assert!(writer.tidy());
    assert_eq!(kept(&fleet.table()), revised_cells);
    let builtin = |cells: std::collections::BTreeMap<CellKey, CellState>| -> u64 {
        cells
            .iter()
            .filter(|(key, _)| key.catalog != revised.hash())
            .map(|(_, c)| c.reports())
            .sum()
    };
    assert_eq!(builtin(fleet.table()), counted(2));
}

#[test]
fn a_report_that_waited_while_its_period_was_pruned_is_refused() {
    let mut fleet = Fleet::new();
    let mut writer = SqliteIngest::open(&fleet.path).unwrap();
    let uploads = fleet.uploads(3);
    fleet.store(&mut writer, &uploads);
    assert!(writer.tidy());
    // Checked while its periods were open...
    let waiting = fleet.uploads(1);
    let released = fleet.table();
    // ...then they closed and were pruned, cells kept.
    let mut later = fleet.config.clock();
    later.current += 100;
    assert_eq!(fleet.db.prune(&later, later.current - 50).unwrap(), 3 * 8);
    assert_eq!(fleet.table(), released);
    let refused = writer.commit_group(&waiting).unwrap();
    let rejection = refused[0].as_ref().unwrap_err();
    assert_eq!(rejection.category, category::LATE);
    assert_eq!(fleet.pending(), 0);
    assert!(writer.tidy());
    assert_eq!(fleet.table(), released);
}

#[test]
fn a_group_that_fails_while_saving_loses_no_committed_count() {
    // The save fails at its first cell, or at its third, after two
    // cells were written and unmarked: either way the whole group is
    // refused and nothing the writer held is trusted afterwards.
    for saved_first in [0, 2] {
        let mut fleet = Fleet::new();
        let mut writer = SqliteIngest::open(&fleet.path).unwrap();
        let uploads = fleet.uploads(3);
        fleet.store(&mut writer, &uploads);
        assert!(writer.cache.unsaved > saved_first);
        // The next group is due to save the cells, and saving fails: the
        // group is refused whole, and the writer forgets which committed
        // cells it had not saved.
        writer
            .conn
            .execute_batch(&format!(
                "CREATE TEMP TABLE written (n INTEGER);
                 INSERT INTO written VALUES (0);
                 CREATE TEMP TRIGGER refuse BEFORE INSERT ON main.cells
                 BEGIN
                     UPDATE written SET n = n + 1;
                     SELECT RAISE(ABORT, 'the disk is full')
                     WHERE (SELECT n FROM written) > {saved_first};
                 END"
            ))
            .unwrap();
        writer.cache.saved_at -= SAVE_CELLS_EVERY;
        let refused = fleet.uploads(2);
        assert!(writer.commit_group(&refused).is_err());
        assert_eq!((writer.cache.unsaved, writer.cache.cells.len()), (0, 0));
        writer
            .conn
            .execute_batch("DROP TRIGGER refuse; DROP TABLE written")
            .unwrap();
        // The next group counts the pending periods afresh, so the first
        // uploads stay counted and the refused ones are not.
        let more = fleet.uploads(1);
        fleet.store(&mut writer, &more);
        assert!(writer.tidy());
        let recount = fleet.recount();
        assert_eq!(fleet.table(), recount);
        let reports: u64 = recount.values().map(CellState::reports).sum();
        assert_eq!(reports, counted(4));
    }
}

#[test]
fn an_upload_refused_midway_leaves_none_of_its_reports_and_its_group_stands() {
    let mut fleet = Fleet::new();
    let mut writer = SqliteIngest::open(&fleet.path).unwrap();
    let uploads = fleet.uploads(3);
    fleet.store(&mut writer, &uploads[..1]);
    // The second device's fifth report is one the first device stored:
    // four of its reports are in the table when the fifth is refused.
    let mut refused = clone_upload(&uploads[1]);
    refused.reports[4] = uploads[0].reports[4].clone();
    let results = writer
        .commit_group(&[refused, clone_upload(&uploads[2])])
        .unwrap();
    let rejection = results[0].as_ref().unwrap_err();
    assert_eq!(
        (rejection.status, rejection.category),
        (409, category::OTHER_DEVICE)
    );
    assert_eq!(results[1].as_ref().unwrap().accepted, 8);
    let path = fleet.path.clone();
    let stored = |device: i64| -> i64 {
        let conn = store::sqlite::open(&path).unwrap();
        conn.query_row(
            "SELECT COUNT(*) FROM reports WHERE device = ?1",
            [device],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(
        [uploads[0].device, uploads[1].device, uploads[2].device].map(stored),
        [8, 0, 8]
    );
    // The cells count the two devices' reports only, before and after a save.
    let recount = fleet.recount();
    let reports: u64 = recount.values().map(CellState::reports).sum();
    assert_eq!(reports, counted(2));
    assert_eq!(fleet.cells(), recount);
    assert!(writer.tidy());
    assert_eq!(fleet.table(), recount);
    // The refused device may send its own reports again.
    fleet.store(&mut writer, &[clone_upload(&uploads[1])]);
    assert_eq!(stored(uploads[1].device), 8);
    assert_eq!(fleet.cells(), fleet.recount());
}

fn clone_upload(upload: &Upload) -> Upload {
    Upload {
        device: upload.device,
        token: upload.token,
        reports: upload.reports.clone(),
    }
}

mod erasure;
