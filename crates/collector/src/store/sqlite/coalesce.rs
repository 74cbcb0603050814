//! A thin SQLite VFS over the platform's own that gathers a transaction's
//! write-ahead log frames into a few large writes, and the zeroing of the
//! log's index through SQLite's own mapping of it: one of hush-collector's
//! two audited `unsafe` files (the other is [`super::pcache`]).
//!
//! SQLite writes each log frame as two `pwrite` calls (its 24-byte header,
//! then the page), so a group commit of a hundred pages made two hundred
//! system calls, three quarters of all the writer's writes. Here a log file
//! keeps a run of contiguous writes in memory and hands it to the file in
//! 64 KiB writes before anything could see the difference:
//!
//! - from the frame that ends a commit on (its header's "database size
//!   after commit" is set), at each write, so a commit's frames are in the
//!   file before SQLite publishes them in the log's index, whatever the
//!   `synchronous` setting, and a failed write fails the commit;
//! - before the log's own sync, a read that overlaps the run, a size query,
//!   a truncation, a file-control call, a close, or a write that does not
//!   continue the run (so the file sees the writes in SQLite's order);
//! - before any lock or unlock of the database's shared-memory index, and
//!   before its memory barrier. A write transaction ends by releasing the
//!   index's write lock, so after a ROLLBACK the frames it spilled reach
//!   the file while it still holds the lock (where SQLite would have written
//!   them anyway), never later over another connection's commit.
//!
//! So the file sees SQLite's bytes at SQLite's offsets, in SQLite's order,
//! only later within one transaction. A write SQLite asked for that fails
//! drops the run (SQLite abandons that transaction); a failure before a
//! read or another call keeps the rest for the commit to fail on; and an
//! unwritable run at the release of the write lock, which no commit can
//! own, is dropped. The log finds
//! its database's file through `sqlite3_filename_database`, which names the
//! database a log file belongs to; a log whose database is not known here
//! is passed through untouched.

#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::{CStr, c_int, c_void};
use std::sync::{Mutex, OnceLock};

use rusqlite::ffi;

use crate::CollectorError;

/// The name connections open the database with to use this VFS.
pub(crate) const NAME: &CStr = c"hush-coalesce";

/// A run longer than this is written out at once, bounding the memory one
/// log holds (a group commit of 256 uploads of 8 reports is about 2 MiB).
const MAX_RUN: usize = 4 << 20;

/// The slot of the log's index that is its write lock (`WAL_WRITE_LOCK`).
const WAL_WRITE_LOCK: c_int = 0;

/// A log frame's header: page number, database size after commit (zero
/// for a frame that does not end one), two salts, two checksums.
const FRAME_HEADER: usize = 24;

/// The most handed to the platform's write at once: the unix VFS masks a
/// write's length to 17 bits, so it cannot take 128 KiB in one call.
const MAX_WRITE: usize = 64 << 10;

/// The platform VFS this one wraps and the method tables made from the
/// first database and log files' own (on unix every database file has one
/// table and every log file another).
struct Registered {
    base: *mut ffi::sqlite3_vfs,
    /// Offset of [`Extra`] within a file object, past the platform's own.
    extra_offset: usize,
    log_methods: OnceLock<(usize, ffi::sqlite3_io_methods)>,
    db_methods: OnceLock<(usize, ffi::sqlite3_io_methods)>,
    /// Open database files by the name pointer SQLite opened them with.
    databases: Mutex<HashMap<usize, usize>>,
}

// SAFETY: the raw pointers are to SQLite's own static VFS and method
// tables, which never move or change once registered, and are only read;
// the map is behind a mutex.
unsafe impl Send for Registered {}
unsafe impl Sync for Registered {}

static REGISTERED: OnceLock<Result<Registered, String>> = OnceLock::new();

/// What this layer keeps for a file it wraps, stored after the platform's
/// file object in the memory SQLite gives each open file.
#[repr(C)]
struct Extra {
    base_methods: *const ffi::sqlite3_io_methods,
    /// For a log: its pending run (null for a database file).
    run: *mut Vec<u8>,
    /// Where the run starts in the log.
    start: i64,
    /// A log's database file, or a database's log file; null if none.
    peer: *mut ffi::sqlite3_file,
    /// Since the header of a frame that ends a commit: write at once.
    committing: bool,
}

/// Registers the VFS (once per process) and returns its name.
pub(crate) fn register() -> Result<&'static CStr, CollectorError> {
    let registered = REGISTERED.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find with a null name returns the default VFS,
        // a static object SQLite never frees. The copy we register is leaked,
        // so it outlives every connection, as SQLite requires. Every entry
        // but xOpen is the platform's own; they get this copy as their VFS
        // argument and read nothing from it but pAppData and mxPathname,
        // both copied unchanged.
        unsafe {
            let base = ffi::sqlite3_vfs_find(std::ptr::null());
            if base.is_null() {
                return Err("SQLite has no default VFS".to_string());
            }
            let base_size = usize::try_from((*base).szOsFile)
                .map_err(|_| "the default VFS reports a negative file size".to_string())?;
            let extra_offset = base_size.next_multiple_of(std::mem::align_of::<Extra>());
            let mut vfs = *base;
            vfs.szOsFile = c_int::try_from(extra_offset + std::mem::size_of::<Extra>())
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
                extra_offset,
                log_methods: OnceLock::new(),
                db_methods: OnceLock::new(),
                databases: Mutex::new(HashMap::new()),
            })
        }
    });
    match registered {
        Ok(_) => Ok(NAME),
        Err(e) => Err(CollectorError::Internal(format!(
            "cannot register the log-writing VFS: {e}"
        ))),
    }
}

fn registered() -> &'static Registered {
    match REGISTERED.get() {
        Some(Ok(r)) => r,
        // SQLite calls into this VFS only after `register` succeeded.
        _ => panic!("the log-writing VFS was used before it was registered"),
    }
}

fn databases() -> std::sync::MutexGuard<'static, HashMap<usize, usize>> {
    registered()
        .databases
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// The [`Extra`] stored after the platform's file object.
///
/// # Safety
/// `file` must be a file object this VFS wrapped and has not closed.
unsafe fn extra_of(file: *mut ffi::sqlite3_file) -> *mut Extra {
    // SAFETY: SQLite allocated `szOsFile` bytes for the file (8-byte
    // aligned), which hold the platform's object and then, at the aligned
    // `extra_offset`, the Extra.
    unsafe {
        file.cast::<u8>()
            .add(registered().extra_offset)
            .cast::<Extra>()
    }
}

/// The platform's methods of a wrapped file.
///
/// # Safety
/// As for [`extra_of`].
unsafe fn base(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    // SAFETY: base_methods points to the platform's static method table.
    unsafe { &*(*extra_of(file)).base_methods }
}

/// The method table for files whose platform table is `base_methods`, made
/// from the first such file; `None` if this file's table is another one.
fn methods_for(
    cell: &'static OnceLock<(usize, ffi::sqlite3_io_methods)>,
    base_methods: *const ffi::sqlite3_io_methods,
    wrap: impl FnOnce(&mut ffi::sqlite3_io_methods),
) -> Option<&'static ffi::sqlite3_io_methods> {
    let (first, methods) = cell.get_or_init(|| {
        // SAFETY: the platform's table is static and valid to copy.
        let mut m = unsafe { *base_methods };
        wrap(&mut m);
        (base_methods as usize, m)
    });
    (*first == base_methods as usize).then_some(methods)
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
    // The Extra is written only after the platform opened the file, and
    // the file's methods are switched only once it holds a valid Extra.
    unsafe {
        let Some(base_open) = (*reg.base).xOpen else {
            return ffi::SQLITE_CANTOPEN;
        };
        let rc = base_open(reg.base, name, file, flags, out_flags);
        let base_methods = (*file).pMethods;
        if rc != ffi::SQLITE_OK || base_methods.is_null() || name.is_null() {
            return rc;
        }
        if flags & ffi::SQLITE_OPEN_MAIN_DB != 0 {
            let Some(methods) = methods_for(&reg.db_methods, base_methods, |m| {
                m.xClose = Some(db_close);
                m.xShmLock = Some(db_shm_lock);
                m.xShmBarrier = Some(db_shm_barrier);
            }) else {
                return ffi::SQLITE_OK;
            };
            extra_of(file).write(Extra {
                base_methods,
                run: std::ptr::null_mut(),
                start: 0,
                peer: std::ptr::null_mut(),
                committing: false,
            });
            (*file).pMethods = methods;
            databases().insert(name as usize, file as usize);
        } else if flags & ffi::SQLITE_OPEN_WAL != 0 {
            let database = ffi::sqlite3_filename_database(name);
            let Some(db) = databases().get(&(database as usize)).copied() else {
                return ffi::SQLITE_OK;
            };
            let db = db as *mut ffi::sqlite3_file;
            let Some(methods) = methods_for(&reg.log_methods, base_methods, |m| {
                m.xClose = Some(close);
                m.xRead = Some(read);
                m.xWrite = Some(write);
                m.xTruncate = Some(truncate);
                m.xSync = Some(sync);
                m.xFileSize = Some(file_size);
                m.xFileControl = Some(file_control);
            }) else {
                return ffi::SQLITE_OK;
            };
            extra_of(file).write(Extra {
                base_methods,
                run: Box::into_raw(Box::new(Vec::new())),
                start: 0,
                peer: db,
                committing: false,
            });
            (*file).pMethods = methods;
            (*extra_of(db)).peer = file;
        }
        ffi::SQLITE_OK
    }
}

/// Writes the pending run to the log. On failure the part not written is
/// kept, so the commit's own sync tries again and fails with it (only the
/// release of the write lock gives up an unwritable run: see
/// [`db_shm_lock`]).
///
/// # Safety
/// `file` must be a log file this VFS wrapped and has not closed.
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: the Extra and its run live from `open` until `close`; they
    // are reached through raw pointers, one access at a time.
    unsafe {
        let extra = extra_of(file);
        let run = (*extra).run;
        if (*run).is_empty() {
            return ffi::SQLITE_OK;
        }
        let Some(write) = base(file).xWrite else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let mut written = 0usize;
        let mut rc = ffi::SQLITE_OK;
        while written < (*run).len() {
            #[cfg(test)]
            tests::BASE_WRITES.with(|w| w.set(w.get() + 1));
            let n = ((*run).len() - written).min(MAX_WRITE);
            // Fits: n is at most MAX_WRITE.
            rc = write(
                file,
                (*run).as_ptr().add(written).cast::<c_void>(),
                n as c_int,
                (*extra).start + written as i64,
            );
            if rc != ffi::SQLITE_OK {
                break;
            }
            written += n;
        }
        (*run).drain(..written);
        (*extra).start += written as i64;
        rc
    }
}

/// Writes the run before a call that is not a write: a failure is reported
/// as a write error, which makes SQLite roll back the whole transaction
/// (a full disk reported from a read would only end the statement).
///
/// # Safety
/// As for [`flush`].
unsafe fn flush_before(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: as for `flush`.
    match unsafe { flush(file) } {
        ffi::SQLITE_OK => ffi::SQLITE_OK,
        _ => ffi::SQLITE_IOERR_WRITE,
    }
}

/// Writes out the run of a database's log, if it has one open.
///
/// # Safety
/// `db` must be a database file this VFS wrapped and has not closed.
unsafe fn flush_log_of(db: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: a database's peer is its open log (cleared when either closes).
    unsafe {
        let log = (*extra_of(db)).peer;
        if log.is_null() {
            ffi::SQLITE_OK
        } else {
            flush(log)
        }
    }
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
        let extra = extra_of(file);
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), len);
        // A frame header whose "database size after commit" is set ends a
        // transaction. From it on (its page, padding frames, a write split
        // at the sync point, headers whose checksums are rewritten) every
        // write goes out at once, with the run before it, until a frame
        // that ends no commit or the log's own header starts the next
        // transaction. So when SQLite publishes a commit in the log's index
        // its frames are in the file, with or without a sync, and a failed
        // write fails the commit itself.
        if len == FRAME_HEADER {
            (*extra).committing = bytes[4..8] != [0; 4];
        } else if offset == 0 {
            (*extra).committing = false;
        }
        let pending = (*(*extra).run).len();
        if pending > 0 && (*extra).start + pending as i64 != offset {
            let rc = flush(file);
            if rc != ffi::SQLITE_OK {
                return give_up(file, rc);
            }
        }
        let run = (*extra).run;
        if (*run).is_empty() {
            (*extra).start = offset;
        }
        (*run).extend_from_slice(bytes);
        if (*extra).committing || (*run).len() >= MAX_RUN {
            let rc = flush(file);
            if rc != ffi::SQLITE_OK {
                return give_up(file, rc);
            }
        }
        ffi::SQLITE_OK
    }
}

/// A write SQLite asked for failed: SQLite abandons the transaction (a
/// failed commit or spill ends it), so nothing of the run may reach the
/// file later, where it could make a failed commit look complete.
///
/// # Safety
/// As for [`flush`].
unsafe fn give_up(file: *mut ffi::sqlite3_file, rc: c_int) -> c_int {
    // SAFETY: as for `flush`.
    unsafe {
        let extra = extra_of(file);
        (*(*extra).run).clear();
        (*extra).committing = false;
    }
    rc
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
        let extra = extra_of(file);
        let (start, len) = ((*extra).start, (*(*extra).run).len() as i64);
        let overlaps = len > 0 && offset < start + len && start < offset + i64::from(amount);
        let rc = if overlaps {
            flush_before(file)
        } else {
            ffi::SQLITE_OK
        };
        then(rc, base(file).xRead, ffi::SQLITE_IOERR_READ, |f| {
            f(file, data, amount, offset)
        })
    }
}

/// `rc` if it is an error; otherwise the platform's method, through `call`
/// (`missing` if the platform has none).
fn then<F>(rc: c_int, method: Option<F>, missing: c_int, call: impl FnOnce(F) -> c_int) -> c_int {
    match (rc, method) {
        (ffi::SQLITE_OK, Some(f)) => call(f),
        (ffi::SQLITE_OK, None) => missing,
        (failed, _) => failed,
    }
}

// SAFETY of the four below: the run is written before the platform's
// method runs with SQLite's own arguments; a file-control call may size,
// map or report on the file, so it too sees it whole.

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    unsafe {
        then(
            flush(file),
            base(file).xSync,
            ffi::SQLITE_IOERR_FSYNC,
            |f| f(file, flags),
        )
    }
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    unsafe {
        then(
            flush_before(file),
            base(file).xTruncate,
            ffi::SQLITE_IOERR_TRUNCATE,
            |f| f(file, size),
        )
    }
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    unsafe {
        then(
            flush_before(file),
            base(file).xFileSize,
            ffi::SQLITE_IOERR_FSTAT,
            |f| f(file, size),
        )
    }
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    unsafe {
        then(
            flush_before(file),
            base(file).xFileControl,
            ffi::SQLITE_NOTFOUND,
            |f| f(file, op, arg),
        )
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: the run is written, zeroed (it held pages) and freed exactly
    // once (SQLite closes a file once and clears its methods), the
    // database forgets this log, then the platform closes its own object.
    unsafe {
        let flushed = flush(file);
        let extra = extra_of(file);
        let mut run = Box::from_raw((*extra).run);
        run.fill(0);
        drop(run);
        (*extra).run = std::ptr::null_mut();
        let db = (*extra).peer;
        if !db.is_null() {
            (*extra_of(db)).peer = std::ptr::null_mut();
        }
        close_base(file, flushed)
    }
}

/// Closes the platform's file whatever `flushed` says; returns the first error.
///
/// # Safety
/// `file` must be a file this VFS wrapped, closed only here, once.
unsafe fn close_base(file: *mut ffi::sqlite3_file, flushed: c_int) -> c_int {
    // SAFETY: the platform closes its own object.
    let closed = unsafe {
        then(ffi::SQLITE_OK, base(file).xClose, ffi::SQLITE_OK, |f| {
            f(file)
        })
    };
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        closed
    }
}

unsafe extern "C" fn db_shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    // SAFETY: the log's run reaches the file before the lock changes hands:
    // on release, while this connection still holds the lock; on a lock,
    // before it is taken (a failed write refuses the lock).
    unsafe {
        let flushed = flush_log_of(file);
        if flushed != ffi::SQLITE_OK {
            if flags & ffi::SQLITE_SHM_LOCK != 0 {
                return flushed;
            }
            if offset == WAL_WRITE_LOCK {
                // Releasing the write lock with a run that cannot be
                // written: frames spilled by a transaction that did not
                // commit (a commit writes its frames as it makes them), so
                // they are dropped rather than written later over others'.
                give_up((*extra_of(file)).peer, flushed);
            }
        }
        then(
            ffi::SQLITE_OK,
            base(file).xShmLock,
            ffi::SQLITE_IOERR_SHMLOCK,
            |f| f(file, offset, n, flags),
        )
    }
}

unsafe extern "C" fn db_shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: as for `db_shm_lock`. A commit writes the index header's
    // second copy, then this barrier, then the first copy that readers
    // check against it: its frames are in the file before the header can
    // be read whole. (A failed write here has no way to report; under
    // `synchronous=FULL` the log's sync just before wrote the run and
    // reported any failure.)
    unsafe {
        let _ = flush_log_of(file);
        if let Some(f) = base(file).xShmBarrier {
            f(file);
        }
    }
}

unsafe extern "C" fn db_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes the log before its database; should a log still
    // be open, its run is written and it forgets this database.
    unsafe {
        databases().retain(|_, f| *f != file as usize);
        let extra = extra_of(file);
        let log = (*extra).peer;
        let flushed = if log.is_null() {
            ffi::SQLITE_OK
        } else {
            let rc = flush(log);
            (*extra_of(log)).peer = std::ptr::null_mut();
            rc
        };
        close_base(file, flushed)
    }
}

/// Bytes of one region of the log's index as SQLite maps it (its
/// `WALINDEX_PGSZ`): the index's blocks, each a frame range's page numbers
/// and their hash table, are one region each.
pub(crate) const INDEX_REGION: usize = 32_768;

/// Calls `visit` with the address of each region of the main database's log
/// index that the file already has, from region `first` on; returns how
/// many there were.
///
/// The regions are reached through SQLite's own mapping (the file's
/// `xShmMap`, asked not to grow the file), never through a second handle
/// to the `-shm` file: closing any handle to a file drops every POSIX lock
/// the process holds on it, and SQLite's locks on the index, among them
/// the one that tells another process the index is in use, are such locks.
fn index_regions(
    conn: &rusqlite::Connection,
    first: c_int,
    mut visit: impl FnMut(*mut u8),
) -> Result<usize, CollectorError> {
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: the connection is open and used only on this thread for the
    // duration (`&Connection` is not `Sync`); FILE_POINTER writes the main
    // database's file object, which lives as long as the connection.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_FILE_POINTER,
            (&raw mut file).cast(),
        )
    };
    if rc != ffi::SQLITE_OK || file.is_null() {
        return Err(CollectorError::Internal(format!(
            "no database file to reach the log's index through (SQLite code {rc})"
        )));
    }
    // SAFETY: the file's method table is SQLite's or ours (a copy of the
    // platform's with some methods wrapped), valid while the file is open.
    let Some(map) = (unsafe { (*(*file).pMethods).xShmMap }) else {
        return Err(CollectorError::Internal(
            "the database's file has no shared-memory index".into(),
        ));
    };
    let mut visited = 0;
    for region in first.. {
        let mut at: *mut c_void = std::ptr::null_mut();
        // SAFETY: `region` and the region size are what SQLite itself asks
        // for; with `bExtend` 0 a region the file does not have yet comes
        // back null instead of being created.
        let rc = unsafe { map(file, region, INDEX_REGION as c_int, 0, &raw mut at) };
        if rc != ffi::SQLITE_OK {
            return Err(CollectorError::Internal(format!(
                "cannot map region {region} of the log's index (SQLite code {rc})"
            )));
        }
        if at.is_null() {
            break;
        }
        visit(at.cast());
        visited += 1;
    }
    Ok(visited)
}

/// Where the index's header keeps the number of the log's last committed
/// frame (`mxFrame`), in each of its two copies (SQLite's `WalIndexHdr`,
/// 48 bytes, written twice at the start of the first region).
const MX_FRAME_AT: [usize; 2] = [16, 48 + 16];

/// Zeroes every region of the main database's log index past the first,
/// if the connection holds the log's write lock and the log is empty (no
/// frame committed since its last truncation); returns whether it did.
///
/// Then no connection, in this process or another, reads those regions (a
/// reader looks up frames only up to the last one its snapshot saw, and no
/// snapshot since the truncation saw any), and no writer fills them. SQLite
/// zeroes a block itself before it writes the block's first frame, so zeros
/// are what a fresh block holds.
pub(crate) fn zero_index_past_first(conn: &rusqlite::Connection) -> Result<bool, CollectorError> {
    // In exclusive locking mode the index lives in this process's heap and
    // the file's shared-memory methods are never used: nothing to scrub,
    // and mapping it here would create it.
    let mode: String = conn.query_row("PRAGMA main.locking_mode", [], |r| r.get(0))?;
    // SAFETY: the connection is open, and "main" is a valid schema name.
    let state = unsafe { ffi::sqlite3_txn_state(conn.handle(), c"main".as_ptr()) };
    if mode.eq_ignore_ascii_case("exclusive") || state != ffi::SQLITE_TXN_WRITE {
        return Err(CollectorError::Internal(
            "the log's index is zeroed only under the write lock, in shared locking mode".into(),
        ));
    }
    let mut frames = Vec::new();
    index_regions(conn, 0, |at| {
        if frames.is_empty() {
            for offset in MX_FRAME_AT {
                // SAFETY: the header lies within the first mapped region;
                // under the write lock no one changes it.
                frames.push(unsafe { at.add(offset).cast::<u32>().read_unaligned() });
            }
        }
    })?;
    if frames.len() != MX_FRAME_AT.len() || frames.iter().any(|&f| f != 0) {
        return Ok(false);
    }
    index_regions(conn, 1, |at| {
        // SAFETY: `at` is a mapped region of INDEX_REGION bytes, which by
        // the write lock and the empty log no one else reads or writes
        // meanwhile.
        unsafe { std::ptr::write_bytes(at, 0, INDEX_REGION) }
    })?;
    Ok(true)
}

/// A copy of the main database's whole log index as mapped, read the way
/// [`zero_index_past_first`] writes it (tests; reading the file instead
/// would drop this process's locks on it).
#[cfg(test)]
pub(crate) fn index_copy(conn: &rusqlite::Connection) -> Vec<u8> {
    let mut copy = Vec::new();
    index_regions(conn, 0, |at| {
        // SAFETY: `at` is a mapped region of INDEX_REGION bytes; a test
        // reads it while no other connection writes.
        copy.extend_from_slice(unsafe { std::slice::from_raw_parts(at, INDEX_REGION) })
    })
    .expect("the log's index maps");
    copy
}

#[cfg(test)]
mod tests;
