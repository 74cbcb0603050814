//! A thin SQLite VFS over the platform's own that gathers the write-ahead
//! log's small writes into one write per commit: the only `unsafe` in
//! hush-collector.
//!
//! SQLite writes each log frame as two `pwrite` calls (a 24-byte header,
//! then the page), so a group commit of a hundred pages made two hundred
//! system calls, about three quarters of all the writer's writes. Here a
//! log file opened through this VFS keeps a run of contiguous writes in
//! memory and hands it to the file in one call before anything could see
//! the difference: before a sync, a read that overlaps it, a size query, a
//! truncation, a file-control call or a close; and before a write that does
//! not continue the run, so the file sees the writes in the order SQLite
//! made them. Nothing is acknowledged from memory: a commit with
//! `synchronous=FULL` syncs the log before it returns, and that sync writes
//! the run first.
//!
//! Other connections find frames through the log's index only after the
//! commit that wrote them has synced the log (under `synchronous=FULL`,
//! which [`store::sqlite::open`](super::open) always sets), so they never
//! read a frame still held here. The database file, the index and every
//! other file pass through untouched.

#![allow(unsafe_code)]

use std::ffi::{CStr, c_int, c_void};
use std::sync::OnceLock;

use rusqlite::ffi;

use crate::CollectorError;

/// The name connections open the database with to use this VFS.
pub(crate) const NAME: &CStr = c"hush-coalesce";

/// A run longer than this is written out at once, bounding the memory one
/// log holds (a group commit of 256 uploads of 8 reports is about 2 MiB).
const MAX_RUN: usize = 4 << 20;

/// The most handed to the platform's write at once: the unix VFS masks a
/// write's length to 17 bits, so it cannot take 128 KiB in one call.
const MAX_WRITE: usize = 64 << 10;

/// The platform VFS this one wraps and the method table log files get, made
/// once when the first log file opens (from that file's own methods).
struct Registered {
    base: *mut ffi::sqlite3_vfs,
    /// Offset of [`Run`] within a file object, past the platform's own.
    run_offset: usize,
    log_methods: OnceLock<ffi::sqlite3_io_methods>,
}

// SAFETY: the pointers are to SQLite's own static VFS and method tables,
// which never move or change once registered, and are only read.
unsafe impl Send for Registered {}
unsafe impl Sync for Registered {}

static REGISTERED: OnceLock<Result<Registered, String>> = OnceLock::new();

/// A log file's pending writes and its platform methods, stored after the
/// platform's file object in the memory SQLite gives each open file.
#[repr(C)]
struct Run {
    base_methods: *const ffi::sqlite3_io_methods,
    bytes: *mut Vec<u8>,
    /// Where `bytes` starts in the file.
    start: i64,
}

/// Registers the VFS (once per process) and returns its name.
pub(crate) fn register() -> Result<&'static CStr, CollectorError> {
    let registered = REGISTERED.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find with a null name returns the default VFS,
        // a static object SQLite never frees. The copy we register is leaked,
        // so it outlives every connection, as SQLite requires.
        unsafe {
            let base = ffi::sqlite3_vfs_find(std::ptr::null());
            if base.is_null() {
                return Err("SQLite has no default VFS".to_string());
            }
            let base_size = usize::try_from((*base).szOsFile)
                .map_err(|_| "the default VFS reports a negative file size".to_string())?;
            let run_offset = base_size.next_multiple_of(std::mem::align_of::<Run>());
            let mut vfs = *base;
            vfs.szOsFile = c_int::try_from(run_offset + std::mem::size_of::<Run>())
                .map_err(|_| "file object too large".to_string())?;
            vfs.zName = NAME.as_ptr();
            vfs.pNext = std::ptr::null_mut();
            vfs.xOpen = Some(open);
            let vfs = Box::leak(Box::new(vfs));
            let rc = ffi::sqlite3_vfs_register(vfs, 0);
            if rc != ffi::SQLITE_OK {
                return Err(format!("sqlite3_vfs_register failed with code {rc}"));
            }
            Ok(Registered {
                base,
                run_offset,
                log_methods: OnceLock::new(),
            })
        }
    });
    match registered {
        Ok(_) => Ok(NAME),
        Err(e) => Err(CollectorError::Internal(format!(
            "cannot register the write-coalescing VFS: {e}"
        ))),
    }
}

fn registered() -> &'static Registered {
    match REGISTERED.get() {
        Some(Ok(r)) => r,
        // SQLite calls into this VFS only after `register` succeeded.
        _ => panic!("the coalescing VFS was used before it was registered"),
    }
}

/// The [`Run`] stored after the platform's file object.
///
/// # Safety
/// `file` must be a file object this VFS opened as a log file.
unsafe fn run_of(file: *mut ffi::sqlite3_file) -> *mut Run {
    // SAFETY: SQLite allocated `szOsFile` bytes for the file, which holds
    // the platform's object and then, at `run_offset`, the Run.
    unsafe { file.cast::<u8>().add(registered().run_offset).cast::<Run>() }
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let reg = registered();
    // SAFETY: the platform VFS gets the same arguments it would have had
    // without this layer (and its own VFS object, which its open reads).
    unsafe {
        let Some(base_open) = (*reg.base).xOpen else {
            return ffi::SQLITE_CANTOPEN;
        };
        let rc = base_open(reg.base, name, file, flags, out_flags);
        if rc != ffi::SQLITE_OK || flags & ffi::SQLITE_OPEN_WAL == 0 || (*file).pMethods.is_null() {
            return rc;
        }
        let base_methods = (*file).pMethods;
        let methods = reg.log_methods.get_or_init(|| {
            let mut m = *base_methods;
            m.xClose = Some(close);
            m.xRead = Some(read);
            m.xWrite = Some(write);
            m.xTruncate = Some(truncate);
            m.xSync = Some(sync);
            m.xFileSize = Some(file_size);
            m.xFileControl = Some(file_control);
            m
        });
        run_of(file).write(Run {
            base_methods,
            bytes: Box::into_raw(Box::new(Vec::new())),
            start: 0,
        });
        (*file).pMethods = methods;
        ffi::SQLITE_OK
    }
}

/// Writes the pending run to the file; on failure the run is dropped (the
/// caller reports the error, and SQLite rewrites whatever it still needs).
///
/// # Safety
/// `file` must be a log file this VFS opened and has not closed.
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: the Run was written in `open` and lives until `close`.
    unsafe {
        let run = &mut *run_of(file);
        let bytes = &mut *run.bytes;
        if bytes.is_empty() {
            return ffi::SQLITE_OK;
        }
        let Some(base_write) = (*run.base_methods).xWrite else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let mut rc = ffi::SQLITE_OK;
        let mut offset = run.start;
        for chunk in bytes.chunks(MAX_WRITE) {
            #[cfg(test)]
            tests::BASE_WRITES.with(|w| w.set(w.get() + 1));
            // Both fit: a chunk is at most MAX_WRITE bytes.
            let n = chunk.len() as c_int;
            rc = base_write(file, chunk.as_ptr().cast::<c_void>(), n, offset);
            if rc != ffi::SQLITE_OK {
                break;
            }
            offset += n as i64;
        }
        bytes.clear();
        rc
    }
}

/// # Safety
/// `file` must be a log file this VFS opened and has not closed.
unsafe fn base(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    // SAFETY: base_methods points to the platform's static method table.
    unsafe { &*(*run_of(file)).base_methods }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: SQLite passes `amount` readable bytes at `data`.
    unsafe {
        let Ok(len) = usize::try_from(amount) else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let run = &mut *run_of(file);
        let continues = {
            let bytes = &*run.bytes;
            bytes.is_empty() || run.start + bytes.len() as i64 == offset
        };
        if !continues {
            let rc = flush(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        let bytes = &mut *run.bytes;
        if bytes.is_empty() {
            run.start = offset;
        }
        bytes.extend_from_slice(std::slice::from_raw_parts(data.cast::<u8>(), len));
        if bytes.len() >= MAX_RUN {
            return flush(file);
        }
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    data: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: a read that overlaps the run waits for it to reach the file,
    // so it sees every earlier write; the platform read gets SQLite's own
    // arguments.
    unsafe {
        let run = &*run_of(file);
        let (start, len) = (run.start, (*run.bytes).len() as i64);
        if len > 0 && offset < start + len && start < offset + i64::from(amount) {
            let rc = flush(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        match base(file).xRead {
            Some(f) => f(file, data, amount, offset),
            None => ffi::SQLITE_IOERR_READ,
        }
    }
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: as for `read`: the run is written before the platform's sync.
    unsafe {
        let rc = flush(file);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        match base(file).xSync {
            Some(f) => f(file, flags),
            None => ffi::SQLITE_IOERR_FSYNC,
        }
    }
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: as for `sync`.
    unsafe {
        let rc = flush(file);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        match base(file).xTruncate {
            Some(f) => f(file, size),
            None => ffi::SQLITE_IOERR_TRUNCATE,
        }
    }
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    // SAFETY: as for `sync`.
    unsafe {
        let rc = flush(file);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        match base(file).xFileSize {
            Some(f) => f(file, size),
            None => ffi::SQLITE_IOERR_FSTAT,
        }
    }
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: as for `sync`; a file-control call may size, map or report on
    // the file, so it sees it whole.
    unsafe {
        let rc = flush(file);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        match base(file).xFileControl {
            Some(f) => f(file, op, arg),
            None => ffi::SQLITE_NOTFOUND,
        }
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: the run is written, then freed exactly once (SQLite closes a
    // file once), then the platform closes its own object.
    unsafe {
        let flushed = flush(file);
        let run = &mut *run_of(file);
        let base_methods = run.base_methods;
        drop(Box::from_raw(run.bytes));
        run.bytes = std::ptr::null_mut();
        let closed = match (*base_methods).xClose {
            Some(f) => f(file),
            None => ffi::SQLITE_OK,
        };
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            closed
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use rusqlite::{Connection, params};

    use crate::store::sqlite::open;

    thread_local! {
        /// Writes this thread's coalesced logs handed to the platform VFS.
        pub(super) static BASE_WRITES: Cell<u64> = const { Cell::new(0) };
    }

    fn row(i: i64) -> Vec<u8> {
        let mut b = vec![(i % 251) as u8; 900];
        b[..8].copy_from_slice(&i.to_le_bytes());
        b
    }

    /// Reads the table back through the platform VFS, as another process
    /// would, and checks every row and the file's structure.
    fn check_from_outside(path: &std::path::Path, rows: i64) {
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
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let conn = open(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (i INTEGER PRIMARY KEY, b BLOB)")
            .unwrap();
        let before = BASE_WRITES.with(Cell::get);
        conn.execute_batch("BEGIN").unwrap();
        for i in 0..300 {
            conn.execute("INSERT INTO t VALUES (?1, ?2)", params![i, row(i)])
                .unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
        // About 300 frames of 1,048 bytes (315 KiB): SQLite's own two writes
        // per frame would be 600; coalesced they are 64 KiB chunks.
        let writes = BASE_WRITES.with(Cell::get) - before;
        assert!((5..=8).contains(&writes), "{writes} writes");
        // Committed means on the file, for a connection that never saw the run.
        check_from_outside(&path, 300);
    }

    #[test]
    fn pages_spilled_within_a_transaction_are_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let conn = open(&path).unwrap();
        // A cache of 16 pages makes SQLite write frames to the log before
        // the commit and read them back (and rewrite them) as it goes.
        conn.pragma_update(None, "cache_size", 16).unwrap();
        conn.execute_batch("CREATE TABLE t (i INTEGER PRIMARY KEY, b BLOB)")
            .unwrap();
        conn.execute_batch("BEGIN").unwrap();
        for i in 0..2000 {
            conn.execute("INSERT INTO t VALUES (?1, ?2)", params![i, vec![0u8; 900]])
                .unwrap();
        }
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
}
