//! The device directory: every active device token's hash with its device and
//! cohort, held in memory so an upload is authenticated without a database read.
//!
//! Why it exists: a device uploads about once a day, so a short-lived cache of
//! recent tokens almost never holds the one being presented, and each upload
//! paid a read on a reader connection whose page cache every commit had
//! invalidated (a third of the request threads' CPU under load). The
//! directory is the cache that does not expire: it learns new devices by
//! reading the rows added since it last looked, and it forgets a device as
//! soon as the writer, which checks the device and its token hash in the
//! transaction that would store the upload, finds it revoked or erased. So it
//! can be stale only towards refusing later, never towards storing: a
//! revoked device's upload is still refused, by the writer, with the same 401.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use crate::CollectorError;
use crate::store::{Principal, Store};

/// A device as the directory knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KnownDevice {
    /// The `devices` table's id.
    pub(crate) id: i64,
    /// Its cohort.
    pub(crate) cohort: Arc<str>,
}

impl KnownDevice {
    /// The principal the request handlers see.
    pub(crate) fn principal(&self) -> Principal {
        Principal::Device {
            id: self.id,
            cohort: self.cohort.to_string(),
        }
    }
}

#[derive(Debug, Default)]
struct Entries {
    by_hash: HashMap<[u8; 32], KnownDevice>,
    /// The highest device id read so far: the next read asks only for ids above it.
    max_id: i64,
}

/// Token hash -> device, for every device token the collector has seen active.
#[derive(Debug, Default)]
pub(crate) struct DeviceDirectory {
    entries: RwLock<Entries>,
    /// Held while reading new devices, so a burst of first uploads reads
    /// them once, not once per request.
    reading: Mutex<()>,
}

impl DeviceDirectory {
    /// The device holding this token hash, if the directory knows it.
    pub(crate) fn get(&self, hash: &[u8; 32]) -> Option<KnownDevice> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries.by_hash.get(hash).cloned()
    }

    /// Who a token hash the directory does not hold belongs to, by its one
    /// row (so an unknown token costs one indexed read and takes no lock). A
    /// device above the highest id read so far also brings in every device
    /// added since, in one read: devices are enrolled in batches and their
    /// first uploads follow together. Devices found are kept; admins are
    /// not. Blocking: call it from a blocking thread.
    pub(crate) fn find(
        &self,
        db: &mut dyn Store,
        hash: &[u8; 32],
    ) -> Result<Option<Principal>, CollectorError> {
        let principal = db.principal_by_hash(hash)?;
        let Some(Principal::Device { id, cohort }) = &principal else {
            return Ok(principal);
        };
        let known = KnownDevice {
            id: *id,
            cohort: cohort.as_str().into(),
        };
        if *id > self.max_id() {
            let _reading = self.reading.lock().unwrap_or_else(|p| p.into_inner());
            let after = self.max_id();
            if *id > after {
                let added = db.devices_after(after)?;
                let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
                for row in added {
                    // Revoked rows are passed over for good: a revocation is final.
                    entries.max_id = entries.max_id.max(row.id);
                    if row.active {
                        entries.by_hash.insert(
                            row.token_hash,
                            KnownDevice {
                                id: row.id,
                                cohort: row.cohort.into(),
                            },
                        );
                    }
                }
            }
        }
        // Also when its id is not above the last read: an id SQLite reused
        // after the newest device was erased.
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .by_hash
            .insert(*hash, known);
        Ok(principal)
    }

    fn max_id(&self) -> i64 {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .max_id
    }

    /// Forgets a token the writer found revoked or erased.
    pub(crate) fn forget(&self, hash: &[u8; 32]) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        entries.by_hash.remove(hash);
    }

    /// How many devices the directory holds.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_hash
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::tokens::{TokenKind, token_hash};

    fn database() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteStore::open(&dir.path().join("c.sqlite")).unwrap();
        (dir, db)
    }

    #[test]
    fn a_new_device_is_known_at_its_first_upload_and_read_in_one_batch() {
        let (_dir, mut db) = database();
        let directory = DeviceDirectory::default();
        let a = db.add_device("hush_dev_a", "red", 1, false).unwrap();
        let b = db.add_device("hush_dev_b", "blue", 1, false).unwrap();
        assert_eq!(directory.get(&token_hash("hush_dev_a")), None);
        let found = directory.find(&mut db, &token_hash("hush_dev_a")).unwrap();
        assert_eq!(
            found,
            Some(Principal::Device {
                id: a,
                cohort: "red".into()
            })
        );
        // The same read brought the other new device in.
        assert_eq!(directory.len(), 2);
        assert_eq!(directory.max_id(), b);
        assert_eq!(directory.get(&token_hash("hush_dev_b")).unwrap().id, b);
        // Admin tokens are found but not kept; unknown tokens are not found.
        db.add_token(TokenKind::Admin, "hush_adm_x", "", 1).unwrap();
        assert_eq!(
            directory.find(&mut db, &token_hash("hush_adm_x")).unwrap(),
            Some(Principal::Admin)
        );
        assert_eq!(
            directory.find(&mut db, &token_hash("nobody")).unwrap(),
            None
        );
        assert_eq!(directory.len(), 2);
    }

    #[test]
    fn revoked_devices_are_not_read_and_forgotten_ones_stay_out() {
        let (_dir, mut db) = database();
        let directory = DeviceDirectory::default();
        db.add_device("hush_dev_a", "red", 1, false).unwrap();
        db.revoke_token("hush_dev_a", 2).unwrap();
        assert_eq!(
            directory.find(&mut db, &token_hash("hush_dev_a")).unwrap(),
            None
        );
        db.add_device("hush_dev_b", "red", 1, false).unwrap();
        let hash = token_hash("hush_dev_b");
        assert!(directory.find(&mut db, &hash).unwrap().is_some());
        directory.forget(&hash);
        assert_eq!(directory.get(&hash), None);
    }

    #[test]
    fn an_id_reused_after_erasure_maps_to_the_new_token_only() {
        let (_dir, mut db) = database();
        let directory = DeviceDirectory::default();
        let old = db.add_device("hush_dev_old", "red", 1, false).unwrap();
        assert!(
            directory
                .find(&mut db, &token_hash("hush_dev_old"))
                .unwrap()
                .is_some()
        );
        db.connection()
            .execute("DELETE FROM devices WHERE id = ?1", [old])
            .unwrap();
        // SQLite hands the freed highest id out again.
        let new = db.add_device("hush_dev_new", "blue", 1, false).unwrap();
        assert_eq!(new, old);
        let found = directory
            .find(&mut db, &token_hash("hush_dev_new"))
            .unwrap();
        assert_eq!(
            found,
            Some(Principal::Device {
                id: new,
                cohort: "blue".into()
            })
        );
        // The old token still maps to the id in memory; the writer's check of
        // id and hash together is what refuses it (tested in ingest).
        assert_eq!(
            db.device_cohort(old, &token_hash("hush_dev_old")).unwrap(),
            None
        );
        assert_eq!(
            db.device_cohort(new, &token_hash("hush_dev_new")).unwrap(),
            Some("blue".into())
        );
    }
}
