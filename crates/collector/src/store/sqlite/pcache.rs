//! A thin layer over SQLite's own page cache that skips the end-of-transaction
//! truncation when no cached page lies past the database's end: the second
//! audited `unsafe` file of hush-collector.
//!
//! Every transaction ends by telling the page cache to drop the pages past
//! the database's last page (`xTruncate`). SQLite's cache skips that when
//! the largest page number it has seen is below the limit, and otherwise
//! scans either the few hash slots between the two or, if they are more
//! than its hash table has, every slot and every cached page. A B-tree page
//! split that puts its new pages in file order swaps two of them through a
//! scratch page number, the page of the lock byte at 1 GiB (page 1,048,577
//! with 1 KiB pages), and the cache remembers that number as its largest.
//! So every commit that split a page, nearly every group commit of random
//! report ids, scanned the whole cache: 4.5% of the collector's CPU under
//! `hush collector loadgen`, growing with the cache's size.
//!
//! Here each cache remembers the largest page number it may hold, as
//! SQLite's does, except that a page parked on the scratch number and moved
//! off it again does not count. A truncation is passed on unless every
//! page the cache may hold lies below its limit; then it would have dropped
//! nothing. A page still parked on the scratch number (never the case
//! between statements) passes every truncation on.

#![allow(unsafe_code)]

use std::ffi::{c_int, c_uint, c_void};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::ffi;

/// SQLite's default for the byte whose lock marks a pending writer; the page
/// holding it is never part of a database, which is why a page split parks
/// a page on its number.
const PENDING_BYTE: c_uint = 0x4000_0000;

/// Truncations passed on to SQLite's cache and skipped, in this process.
static PASSED: AtomicU64 = AtomicU64::new(0);
static SKIPPED: AtomicU64 = AtomicU64::new(0);

/// What the layer did in this process: whether it is in place, and how many
/// end-of-transaction truncations it passed on to SQLite's cache or skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncations {
    /// Whether the layer wraps SQLite's page cache in this process.
    pub installed: bool,
    /// Truncations that could drop a page, passed on.
    pub passed: u64,
    /// Truncations that could drop none, skipped.
    pub skipped: u64,
}

/// What the layer did so far in this process.
pub fn truncations() -> Truncations {
    Truncations {
        installed: INSTALLED.get().copied().unwrap_or(false),
        passed: PASSED.load(Ordering::Relaxed),
        skipped: SKIPPED.load(Ordering::Relaxed),
    }
}

/// Whether [`install`] put the layer in place (unset until it runs).
static INSTALLED: OnceLock<bool> = OnceLock::new();

/// SQLite's own page cache, which this layer wraps.
static BASE: OnceLock<Base> = OnceLock::new();

/// SQLite's page cache methods, as SQLite gave them.
struct Base(ffi::sqlite3_pcache_methods2);

// SAFETY: the methods are SQLite's static functions, and its argument
// pointer is only ever handed back to them; SQLite's page cache is
// thread-safe in the threading modes rusqlite allows.
unsafe impl Send for Base {}
unsafe impl Sync for Base {}

/// Installs the layer, once per process; returns whether it is in place.
/// It must run before SQLite initializes (the first connection, VFS lookup
/// or registration in the process): afterwards SQLite refuses a new page
/// cache and keeps its own, which is correct, only slower. [`open`](super::open)
/// calls it; so must anything that opens a connection otherwise while
/// another thread may be in `open` (SQLite's configuration calls are not
/// thread-safe), and `main` does first of all.
pub fn install() -> bool {
    *INSTALLED.get_or_init(|| {
        let mut base = std::mem::MaybeUninit::<ffi::sqlite3_pcache_methods2>::zeroed();
        // SAFETY: SQLITE_CONFIG_GETPCACHE2 takes a pointer to a methods
        // struct and fills it in; SQLITE_CONFIG_PCACHE2 takes a pointer to
        // a struct SQLite copies. Both are refused (SQLITE_MISUSE) once
        // SQLite is initialized, and then nothing is changed.
        unsafe {
            if ffi::sqlite3_config(ffi::SQLITE_CONFIG_GETPCACHE2, base.as_mut_ptr())
                != ffi::SQLITE_OK
            {
                return false;
            }
            let base = base.assume_init();
            if base.xCreate.is_none() || BASE.set(Base(base)).is_err() {
                return false;
            }
            let methods = ffi::sqlite3_pcache_methods2 {
                iVersion: 1,
                pArg: std::ptr::null_mut(),
                xInit: Some(init),
                xShutdown: Some(shutdown),
                xCreate: Some(create),
                xCachesize: Some(cachesize),
                xPagecount: Some(pagecount),
                xFetch: Some(fetch),
                xUnpin: Some(unpin),
                xRekey: Some(rekey),
                xTruncate: Some(truncate),
                xDestroy: Some(destroy),
                xShrink: Some(shrink),
            };
            ffi::sqlite3_config(ffi::SQLITE_CONFIG_PCACHE2, &methods) == ffi::SQLITE_OK
        }
    })
}

/// What one cache may hold, as far as its truncations are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Keys {
    /// The scratch page number a page split parks a page on.
    scratch: c_uint,
    /// The largest page number the cache may hold, the scratch one aside.
    max: c_uint,
    /// Whether a page may sit on the scratch number.
    parked: bool,
}

impl Keys {
    fn new(page_size: c_uint) -> Keys {
        Keys {
            scratch: PENDING_BYTE / page_size.max(1) + 1,
            max: 0,
            parked: false,
        }
    }

    /// A page was found or created under `key`.
    fn fetched(&mut self, key: c_uint) {
        if key == self.scratch {
            self.parked = true;
        } else {
            self.max = self.max.max(key);
        }
    }

    /// A page moved from `old` to `new`.
    fn rekeyed(&mut self, old: c_uint, new: c_uint) {
        if old == self.scratch {
            self.parked = false;
        }
        self.fetched(new);
    }

    /// Whether a truncation to `limit` must reach the cache; if so, it is
    /// counted as done.
    fn truncate(&mut self, limit: c_uint) -> bool {
        let parked = self.parked && self.scratch >= limit;
        if !parked && self.max < limit {
            return false;
        }
        self.max = self.max.min(limit.saturating_sub(1));
        self.parked &= !parked;
        true
    }
}

/// A cache of this layer: SQLite's own and what it may hold.
struct Cache {
    inner: *mut ffi::sqlite3_pcache,
    keys: Keys,
}

/// SQLite's own methods; `install` saves them before SQLite can call ours.
fn base() -> Option<&'static ffi::sqlite3_pcache_methods2> {
    BASE.get().map(|b| &b.0)
}

/// The wrapped cache behind the pointer SQLite hands back.
///
/// # Safety
/// `p` must come from [`create`] and not yet be destroyed. SQLite calls a
/// cache's methods from the connection that owns it, one at a time.
unsafe fn cache<'a>(p: *mut ffi::sqlite3_pcache) -> &'a mut Cache {
    // SAFETY: per this function's contract.
    unsafe { &mut *p.cast::<Cache>() }
}

// The methods below hand each call to SQLite's own cache (whose function
// pointers `install` checked or SQLite fills in for every version-1 cache)
// with its own cache object in place of ours.

unsafe extern "C" fn init(_: *mut c_void) -> c_int {
    match base().and_then(|b| b.xInit) {
        // SAFETY: SQLite's own initializer with its own argument.
        Some(f) => unsafe { f(base().map_or(std::ptr::null_mut(), |b| b.pArg)) },
        None => ffi::SQLITE_OK,
    }
}

unsafe extern "C" fn shutdown(_: *mut c_void) {
    if let Some(f) = base().and_then(|b| b.xShutdown) {
        // SAFETY: as in `init`.
        unsafe { f(base().map_or(std::ptr::null_mut(), |b| b.pArg)) }
    }
}

unsafe extern "C" fn create(
    page: c_int,
    extra: c_int,
    purgeable: c_int,
) -> *mut ffi::sqlite3_pcache {
    let Some(f) = base().and_then(|b| b.xCreate) else {
        return std::ptr::null_mut();
    };
    // SAFETY: SQLite's own constructor with SQLite's arguments.
    let inner = unsafe { f(page, extra, purgeable) };
    if inner.is_null() {
        return inner;
    }
    let keys = Keys::new(c_uint::try_from(page).unwrap_or(1));
    Box::into_raw(Box::new(Cache { inner, keys })).cast()
}

unsafe extern "C" fn cachesize(p: *mut ffi::sqlite3_pcache, n: c_int) {
    if let Some(f) = base().and_then(|b| b.xCachesize) {
        // SAFETY: `p` is ours (see `cache`), its inner cache SQLite's.
        unsafe { f(cache(p).inner, n) }
    }
}

unsafe extern "C" fn pagecount(p: *mut ffi::sqlite3_pcache) -> c_int {
    match base().and_then(|b| b.xPagecount) {
        // SAFETY: as in `cachesize`.
        Some(f) => unsafe { f(cache(p).inner) },
        None => 0,
    }
}

unsafe extern "C" fn fetch(
    p: *mut ffi::sqlite3_pcache,
    key: c_uint,
    create: c_int,
) -> *mut ffi::sqlite3_pcache_page {
    let Some(f) = base().and_then(|b| b.xFetch) else {
        return std::ptr::null_mut();
    };
    // SAFETY: as in `cachesize`.
    let cache = unsafe { cache(p) };
    // SAFETY: SQLite's own fetch on its own cache.
    let page = unsafe { f(cache.inner, key, create) };
    if !page.is_null() {
        cache.keys.fetched(key);
    }
    page
}

unsafe extern "C" fn unpin(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    discard: c_int,
) {
    if let Some(f) = base().and_then(|b| b.xUnpin) {
        // SAFETY: as in `cachesize`; the page is one this cache returned.
        unsafe { f(cache(p).inner, page, discard) }
    }
}

unsafe extern "C" fn rekey(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    old: c_uint,
    new: c_uint,
) {
    if let Some(f) = base().and_then(|b| b.xRekey) {
        // SAFETY: as in `unpin`.
        let cache = unsafe { cache(p) };
        unsafe { f(cache.inner, page, old, new) };
        cache.keys.rekeyed(old, new);
    }
}

unsafe extern "C" fn truncate(p: *mut ffi::sqlite3_pcache, limit: c_uint) {
    // SAFETY: as in `cachesize`.
    let cache = unsafe { cache(p) };
    if !cache.keys.truncate(limit) {
        SKIPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    PASSED.fetch_add(1, Ordering::Relaxed);
    if let Some(f) = base().and_then(|b| b.xTruncate) {
        // SAFETY: SQLite's own truncation on its own cache.
        unsafe { f(cache.inner, limit) }
    }
}

unsafe extern "C" fn destroy(p: *mut ffi::sqlite3_pcache) {
    // SAFETY: `p` came from `Box::into_raw` in `create`, and SQLite calls
    // nothing on a cache after destroying it.
    let cache = unsafe { Box::from_raw(p.cast::<Cache>()) };
    if let Some(f) = base().and_then(|b| b.xDestroy) {
        // SAFETY: SQLite's own destructor, once, on its own cache.
        unsafe { f(cache.inner) }
    }
}

unsafe extern "C" fn shrink(p: *mut ffi::sqlite3_pcache) {
    if let Some(f) = base().and_then(|b| b.xShrink) {
        // SAFETY: as in `cachesize`.
        unsafe { f(cache(p).inner) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scratch page number with 1 KiB pages, as a page split uses it.
    const SCRATCH: c_uint = 1_048_577;

    #[test]
    fn the_scratch_page_is_the_lock_byte_page() {
        assert_eq!(Keys::new(1024).scratch, SCRATCH);
        assert_eq!(Keys::new(4096).scratch, 262_145);
    }

    #[test]
    fn a_page_split_swap_leaves_nothing_past_the_end() {
        // balance_nonroot swaps pages 40 and 12 through the scratch number.
        let mut keys = Keys::new(1024);
        for key in [1, 2, 12, 40] {
            keys.fetched(key);
        }
        keys.rekeyed(40, SCRATCH);
        assert!(keys.parked);
        keys.rekeyed(12, 40);
        keys.rekeyed(SCRATCH, 12);
        assert_eq!((keys.max, keys.parked), (40, false));
        // The transaction ends with 40 pages in the database.
        assert!(!keys.truncate(41));
        assert_eq!(keys.max, 40);
    }

    #[test]
    fn a_truncation_below_a_cached_page_is_passed_on_once() {
        let mut keys = Keys::new(1024);
        keys.fetched(30);
        keys.fetched(55);
        // A rolled-back transaction had grown the database to 55 pages.
        assert!(keys.truncate(31));
        assert_eq!(keys.max, 30);
        assert!(!keys.truncate(31));
        // Clearing the cache (a truncation to page 1) always reaches it.
        assert!(keys.truncate(1));
        assert_eq!(keys.max, 0);
    }

    #[test]
    fn a_page_left_on_the_scratch_number_passes_every_truncation_on() {
        // SQLite creates the lock byte's page before refusing to read it.
        let mut keys = Keys::new(1024);
        keys.fetched(3);
        keys.fetched(SCRATCH);
        assert!(keys.truncate(4));
        assert!(!keys.parked);
        assert!(!keys.truncate(4));
        // A truncation past the scratch number cannot drop it.
        keys.fetched(SCRATCH);
        assert!(!keys.truncate(SCRATCH + 1));
        assert!(keys.parked);
    }
}
