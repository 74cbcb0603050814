//! A thin SQLite VFS over the platform's own that writes each write-ahead
//! log frame in one call instead of two: the only `unsafe` in
//! hush-collector.
//!
//! SQLite writes a log frame as two `pwrite` calls, its 24-byte header and
//! then the page right after it, so a group commit of a hundred pages made
//! two hundred system calls, three quarters of all the writer's writes.
//! Here a log file opened through this VFS holds a frame header back until
//! the very next call on the file: when that call writes the page that
//! continues it, header and page go to the file in one write; any other
//! call writes the header out first, on its own. So nothing is ever held
//! between two SQLite operations (a header is always followed by its page
//! inside one `walWriteOneFrame`), the file sees the same bytes in the same
//! order as without this layer, and durability, recovery, rollback and
//! other connections' reads are exactly SQLite's own, whatever the
//! `synchronous` setting.
//!
//! (Holding a whole commit's frames until its sync saved twice as many
//! calls, but a transaction that spilled frames before a ROLLBACK would
//! have held them past the release of the write lock, to be written later
//! over another connection's committed frames.)

#![allow(unsafe_code)]

use std::ffi::{CStr, c_int, c_void};
use std::sync::OnceLock;

use rusqlite::ffi;

use crate::CollectorError;

/// The name connections open the database with to use this VFS.
pub(crate) const NAME: &CStr = c"hush-coalesce";

/// A log frame's header: page number, database size, two salts, two checksums.
const FRAME_HEADER: usize = 24;

/// The platform VFS this one wraps and the method table log files get, made
/// once when the first log file opens (from that file's own methods: on
/// unix every log file has the same table).
struct Registered {
    base: *mut ffi::sqlite3_vfs,
    /// Offset of [`Held`] within a file object, past the platform's own.
    held_offset: usize,
    log_methods: OnceLock<(usize, ffi::sqlite3_io_methods)>,
}

// SAFETY: the pointers are to SQLite's own static VFS and method tables,
// which never move or change once registered, and are only read.
unsafe impl Send for Registered {}
unsafe impl Sync for Registered {}

static REGISTERED: OnceLock<Result<Registered, String>> = OnceLock::new();

/// A log file's held-back frame header and its platform methods, stored
/// after the platform's file object in the memory SQLite gives each file.
#[repr(C)]
struct Held {
    base_methods: *const ffi::sqlite3_io_methods,
    /// Header (first [`FRAME_HEADER`] bytes) and, when joined, the page.
    bytes: *mut Vec<u8>,
    /// Where the held header goes in the file; `None` when nothing is held.
    at: Option<i64>,
}

/// Registers the VFS (once per process) and returns its name.
pub(crate) fn register() -> Result<&'static CStr, CollectorError> {
    let registered = REGISTERED.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find with a null name returns the default VFS,
        // a static object SQLite never frees. The copy we register is leaked,
        // so it outlives every connection, as SQLite requires. Every entry
        // but xOpen is the platform's own, which get this copy as their VFS
        // argument and read nothing from it but pAppData and mxPathname,
        // both copied unchanged.
        unsafe {
            let base = ffi::sqlite3_vfs_find(std::ptr::null());
            if base.is_null() {
                return Err("SQLite has no default VFS".to_string());
            }
            let base_size = usize::try_from((*base).szOsFile)
                .map_err(|_| "the default VFS reports a negative file size".to_string())?;
            let held_offset = base_size.next_multiple_of(std::mem::align_of::<Held>());
            let mut vfs = *base;
            vfs.szOsFile = c_int::try_from(held_offset + std::mem::size_of::<Held>())
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
                held_offset,
                log_methods: OnceLock::new(),
            })
        }
    });
    match registered {
        Ok(_) => Ok(NAME),
        Err(e) => Err(CollectorError::Internal(format!(
            "cannot register the frame-joining VFS: {e}"
        ))),
    }
}

fn registered() -> &'static Registered {
    match REGISTERED.get() {
        Some(Ok(r)) => r,
        // SQLite calls into this VFS only after `register` succeeded.
        _ => panic!("the frame-joining VFS was used before it was registered"),
    }
}

/// The [`Held`] stored after the platform's file object.
///
/// # Safety
/// `file` must be a file object this VFS opened as a log file and not closed.
unsafe fn held_of(file: *mut ffi::sqlite3_file) -> *mut Held {
    // SAFETY: SQLite allocated `szOsFile` bytes for the file (8-byte
    // aligned), which hold the platform's object and then, at the aligned
    // `held_offset`, the Held.
    unsafe {
        file.cast::<u8>()
            .add(registered().held_offset)
            .cast::<Held>()
    }
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
        let (first, methods) = reg.log_methods.get_or_init(|| {
            let mut m = *base_methods;
            m.xClose = Some(close);
            m.xRead = Some(read);
            m.xWrite = Some(write);
            m.xTruncate = Some(truncate);
            m.xSync = Some(sync);
            m.xFileSize = Some(file_size);
            m.xFileControl = Some(file_control);
            (base_methods as usize, m)
        });
        // The copied entries (locks, sector size, device characteristics)
        // must be this file's own: a file with another table passes through.
        if *first != base_methods as usize {
            return ffi::SQLITE_OK;
        }
        held_of(file).write(Held {
            base_methods,
            bytes: Box::into_raw(Box::new(Vec::new())),
            at: None,
        });
        (*file).pMethods = methods;
        ffi::SQLITE_OK
    }
}

/// Writes out a held header on its own (the call after it was not its page).
///
/// # Safety
/// `file` must be a log file this VFS opened and has not closed.
unsafe fn release(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: the Held was written in `open` and lives until `close`; no
    // other reference to it is alive across this call.
    unsafe {
        let held = held_of(file);
        let Some(at) = (*held).at.take() else {
            return ffi::SQLITE_OK;
        };
        let bytes = &*(*held).bytes;
        put(
            file,
            bytes.as_ptr().cast::<c_void>(),
            FRAME_HEADER as c_int,
            at,
        )
    }
}

/// The platform's write.
///
/// # Safety
/// As for the platform's `xWrite`, on a log file this VFS opened.
unsafe fn put(file: *mut ffi::sqlite3_file, data: *const c_void, amount: c_int, at: i64) -> c_int {
    #[cfg(test)]
    tests::BASE_WRITES.with(|w| w.set(w.get() + 1));
    // SAFETY: the caller's arguments, unchanged.
    unsafe {
        match base(file).xWrite {
            Some(f) => f(file, data, amount, at),
            None => ffi::SQLITE_IOERR_WRITE,
        }
    }
}

/// # Safety
/// `file` must be a log file this VFS opened and has not closed.
unsafe fn base(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    // SAFETY: base_methods points to the platform's static method table.
    unsafe { &*(*held_of(file)).base_methods }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: SQLite passes `amount` readable bytes at `data`; the Held is
    // only reached through the raw pointer, one access at a time.
    unsafe {
        let held = held_of(file);
        let Ok(len) = usize::try_from(amount) else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let incoming = std::slice::from_raw_parts(data.cast::<u8>(), len);
        if let Some(at) = (*held).at {
            if at + FRAME_HEADER as i64 == offset {
                // The page after its header: both in one write.
                (*held).at = None;
                let bytes = &mut *(*held).bytes;
                bytes.truncate(FRAME_HEADER);
                bytes.extend_from_slice(incoming);
                let Ok(n) = c_int::try_from(bytes.len()) else {
                    return ffi::SQLITE_IOERR_WRITE;
                };
                return put(file, bytes.as_ptr().cast::<c_void>(), n, at);
            }
            let rc = release(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if len == FRAME_HEADER {
            let bytes = &mut *(*held).bytes;
            bytes.clear();
            bytes.extend_from_slice(incoming);
            (*held).at = Some(offset);
            return ffi::SQLITE_OK;
        }
        put(file, data, amount, offset)
    }
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    data: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: a held header is written first, so the read sees every
    // earlier write; the platform read gets SQLite's own arguments.
    unsafe {
        let rc = release(file);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        match base(file).xRead {
            Some(f) => f(file, data, amount, offset),
            None => ffi::SQLITE_IOERR_READ,
        }
    }
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: as for `read`.
    unsafe {
        let rc = release(file);
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
    // SAFETY: as for `read`.
    unsafe {
        let rc = release(file);
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
    // SAFETY: as for `read`.
    unsafe {
        let rc = release(file);
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
    // SAFETY: as for `read`.
    unsafe {
        let rc = release(file);
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
    // SAFETY: a held header is written, the buffer zeroed (it held a page)
    // and freed exactly once (SQLite closes a file once and clears its
    // methods), then the platform closes its own object.
    unsafe {
        let released = release(file);
        let held = held_of(file);
        let base_methods = (*held).base_methods;
        let mut bytes = Box::from_raw((*held).bytes);
        bytes.fill(0);
        drop(bytes);
        (*held).bytes = std::ptr::null_mut();
        let closed = match (*base_methods).xClose {
            Some(f) => f(file),
            None => ffi::SQLITE_OK,
        };
        if released != ffi::SQLITE_OK {
            released
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
        /// Writes this thread's logs handed to the platform VFS.
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
    fn each_frame_reaches_the_log_in_one_write() {
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
        // About 300 frames: SQLite's own two writes per frame would be 600.
        let writes = BASE_WRITES.with(Cell::get) - before;
        assert!((300..=330).contains(&writes), "{writes} writes");
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

    #[test]
    fn a_rolled_back_transaction_leaves_nothing_to_write_over_later_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let first = open(&path).unwrap();
        first
            .execute_batch("CREATE TABLE t (i INTEGER PRIMARY KEY, b BLOB)")
            .unwrap();
        // Spills frames to the log before the ROLLBACK.
        first.pragma_update(None, "cache_size", 16).unwrap();
        first.execute_batch("BEGIN").unwrap();
        for i in 0..500 {
            first
                .execute("INSERT INTO t VALUES (?1, ?2)", params![i, vec![7u8; 900]])
                .unwrap();
        }
        first.execute_batch("ROLLBACK").unwrap();
        // Another connection commits over the same stretch of the log.
        let mut other = Connection::open(&path).unwrap();
        let tx = other.transaction().unwrap();
        for i in 0..300 {
            tx.execute("INSERT INTO t VALUES (?1, ?2)", params![i, row(i)])
                .unwrap();
        }
        tx.commit().unwrap();
        drop(other);
        // The first connection reads, writes and closes: nothing of its
        // rolled-back transaction may reach the file now.
        first
            .execute("INSERT INTO t VALUES (300, ?1)", params![row(300)])
            .unwrap();
        drop(first);
        check_from_outside(&path, 301);
    }
}
