//! The store: what the collector keeps (devices and admins, reports,
//! aggregate cells, published range revisions) behind one interface, with
//! SQLite as the embedded default ([`sqlite`]).
//!
//! What is not here matters as much as what is: no table holds a report's
//! arrival time, a client address or a user agent, and no backend may keep
//! the order in which reports arrived where a reader of the database finds
//! it. The employer runs the collector; it keeps only what the estimates need.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use hush_report::{PublishedRanges, RangeSteps, Report};
use serde::Deserialize;

use crate::CollectorError;
use crate::cells::{CellKey, CellState};
use crate::periods::PeriodClock;
use crate::tokens::{TokenKind, token_hash};
use crate::validate::Catalogs;

pub mod migrate;
pub mod postgres;
pub mod sqlite;

pub use sqlite::{BUSY_TIMEOUT, PAGE_SIZE, SCHEMA_VERSION};

/// Where the collector keeps its data, from the `database` setting: a
/// `postgres://` or `postgresql://` URL names a PostgreSQL database, anything
/// else is the path of a SQLite file.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file (created if missing).
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

impl Database {
    /// Reads the `database` setting or `--database` flag.
    pub fn parse(text: &str) -> Database {
        let scheme = text.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        if matches!(scheme.as_deref(), Some("postgres" | "postgresql")) {
            Database::Postgres(text.to_owned())
        } else {
            Database::Sqlite(PathBuf::from(text))
        }
    }

    /// The SQLite file, if it is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Database::Sqlite(p) => Some(p),
            Database::Postgres(_) => None,
        }
    }
}

impl Default for Database {
    fn default() -> Self {
        Database::Sqlite(PathBuf::from("hush-collector.sqlite"))
    }
}

/// Shown in messages and logs: a URL's password is left out.
impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(p) => write!(f, "{}", p.display()),
            Database::Postgres(url) => f.write_str(&redact_url(url)),
        }
    }
}

/// As [`Display`](fmt::Display), so a password never reaches a log through `{:?}` either.
impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(p) => write!(f, "Sqlite({p:?})"),
            Database::Postgres(_) => write!(f, "Postgres({self})"),
        }
    }
}

impl<'de> Deserialize<'de> for Database {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Err(serde::de::Error::custom(
                "database must be a file path or a postgres:// URL",
            ));
        }
        Ok(Database::parse(&text))
    }
}

/// `postgres://user:secret@host/db?password=x` →
/// `postgres://user:***@host/db?password=***`. Errs toward hiding more: a
/// raw `/` or `?` in the password, or an `@` in a parameter, hides the rest
/// of the authority rather than show any of the secret.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let mut out = match rest.rfind('@') {
        Some(at) => {
            let (userinfo, tail) = rest.split_at(at);
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***{tail}"),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    };
    if let Some((base, query)) = out.split_once('?') {
        let query: Vec<&str> = query
            .split('&')
            .map(|pair| {
                if pair.starts_with("password=") {
                    "password=***"
                } else {
                    pair
                }
            })
            .collect();
        out = format!("{base}?{}", query.join("&"));
    }
    out
}

/// Who a bearer token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A device, with its id and cohort.
    Device {
        /// Internal device id.
        id: i64,
        /// Cohort name (e.g. a team), used to split estimates.
        cohort: String,
    },
    /// An administrator.
    Admin,
}

/// A device row as the device directory reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    /// The `devices` table's id.
    pub id: i64,
    /// The SHA-256 of its token.
    pub token_hash: [u8; 32],
    /// Its cohort.
    pub cohort: String,
    /// Not revoked.
    pub active: bool,
}

/// A device to erase: by its token or its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceRef {
    /// The device's bearer token.
    Token(String),
    /// The `devices` table's id.
    Id(i64),
}

/// What an erasure did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erased {
    /// The erased device's id.
    pub device: i64,
    /// Stored reports deleted.
    pub reports: u64,
    /// Cells whose statistics changed (some may have been released already).
    pub cells: u64,
    /// Whether the database's files may still hold bytes of what was erased.
    pub residue: Residue,
}

/// What may be left of erased rows in a database's files, outside its tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Residue {
    /// None: the database file was rewritten with the rows it keeps and its
    /// log emptied (SQLite).
    Cleared,
    /// The rewrite failed, with this error, after the erasure committed:
    /// copies may stay in the files until a rewrite succeeds
    /// (`hush collector device rewrite`, or the next erasure's); the
    /// database counts it owed until then ([`sqlite::owed_rewrites`]).
    RewriteFailed(String),
    /// The database server keeps old row versions in its free space, log and
    /// backups until they are reused or expire (PostgreSQL).
    ServerKeeps,
}

/// How much room the database takes, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DatabaseSizes {
    /// The database itself, in bytes.
    pub database: u64,
    /// Its write-ahead log, in bytes, where the collector can read it.
    pub wal: Option<u64>,
}

/// A stored report: its device, the device's cohort, its period, and the report.
pub type StoredReport = (i64, String, u32, Report);

/// One open database. Every method is synchronous: the server calls them on
/// blocking threads, the writer on its own thread, the CLI directly.
///
/// Implementations must keep the promises the rest of the collector relies
/// on: token hashes only, never a token; one report per device and period;
/// cells changed only by ingestion and erasure; and the same rows in the same
/// order from every backend, so exports are byte-identical whichever holds them.
pub trait Store: Send {
    /// Stores a new token's hash; device tokens carry a cohort.
    fn add_token(
        &mut self,
        kind: TokenKind,
        token: &str,
        cohort: &str,
        now: i64,
    ) -> Result<(), CollectorError> {
        match kind {
            TokenKind::Device => self.add_device(token, cohort, now, false).map(|_| ()),
            TokenKind::Admin => self.add_admin(token, now),
        }
    }

    /// Stores a new admin token's hash.
    fn add_admin(&mut self, token: &str, now: i64) -> Result<(), CollectorError>;

    /// Stores a new device token's hash and returns the device's id; `loadgen`
    /// marks the devices the load generator mints for itself.
    fn add_device(
        &mut self,
        token: &str,
        cohort: &str,
        now: i64,
        loadgen: bool,
    ) -> Result<i64, CollectorError>;

    /// Stores many devices' token hashes in one transaction (an enrolment
    /// batch); returns their ids in the order of `tokens`.
    fn add_devices(
        &mut self,
        tokens: &[String],
        cohort: &str,
        now: i64,
    ) -> Result<Vec<i64>, CollectorError>;

    /// Stores the load generator's device tokens in one transaction, after
    /// checking in the same transaction that no other device exists (revoked
    /// or not): load never mixes with real reports. Returns their ids, or
    /// `Err(n)` (nothing stored) if the database holds `n` real devices.
    fn mint_loadgen_devices(
        &mut self,
        tokens: &[String],
        now: i64,
    ) -> Result<Result<Vec<i64>, u64>, CollectorError>;

    /// Revokes a token; returns whether it existed and was not revoked yet.
    /// Two processes revoking one token at once: exactly one gets `true`.
    fn revoke_token(&mut self, token: &str, now: i64) -> Result<bool, CollectorError>;

    /// Revokes devices by id (the load generator's own, when it ends).
    fn revoke_devices(&mut self, ids: &[i64], now: i64) -> Result<(), CollectorError>;

    /// How many devices were not minted by the load generator, revoked or not.
    fn real_devices(&mut self) -> Result<u64, CollectorError>;

    /// The principal of a token's hash, if it is known and not revoked.
    fn principal_by_hash(&mut self, hash: &[u8; 32]) -> Result<Option<Principal>, CollectorError>;

    /// The cohort of a device that exists, is not revoked, and still holds
    /// the token with this hash; `None` otherwise.
    fn device_cohort(
        &mut self,
        device: i64,
        hash: &[u8; 32],
    ) -> Result<Option<String>, CollectorError>;

    /// The devices with an id above `after`, revoked ones included (so a
    /// reader can move past them for good: a revocation is final).
    fn devices_after(&mut self, after: i64) -> Result<Vec<DeviceRow>, CollectorError>;

    /// Every published range revision, oldest first, with the period it was
    /// published in (the built-in catalog, revision 0, is not stored).
    fn published_ranges(&mut self) -> Result<Vec<(PublishedRanges, u32)>, CollectorError>;

    /// Publishes `steps` as the next range revision, learned at the close of
    /// `period`; returns it.
    fn publish_ranges(
        &mut self,
        steps: &RangeSteps,
        period: u32,
    ) -> Result<PublishedRanges, CollectorError>;

    /// Writes one cell's state whole (tests and tools seed cells this way;
    /// ingestion has its own path).
    fn save_cell(&mut self, key: &CellKey, state: &CellState) -> Result<(), CollectorError>;

    /// Every stored cell, optionally limited to a period range, open periods
    /// included, ordered by period, metric, cohort, terms and catalog. What
    /// may be *released* is [`released_cells`]; this is the raw store.
    fn all_cells(
        &mut self,
        from_period: Option<u32>,
        to_period: Option<u32>,
    ) -> Result<Vec<(CellKey, CellState)>, CollectorError>;

    /// The stored reports of periods `from..=to`, each with its device and
    /// the device's cohort, in report id order.
    fn stored_reports(&mut self, from: u32, to: u32) -> Result<Vec<StoredReport>, CollectorError>;

    /// [`stored_reports`](Store::stored_reports) and
    /// [`all_cells`](Store::all_cells) of periods `from..=to` from one
    /// snapshot, so an erasure between the two reads cannot make them disagree.
    #[allow(clippy::type_complexity)]
    fn reports_and_cells(
        &mut self,
        from: u32,
        to: u32,
    ) -> Result<(Vec<StoredReport>, Vec<(CellKey, CellState)>), CollectorError>;

    /// Number of stored reports.
    fn report_count(&mut self) -> Result<u64, CollectorError>;

    /// How much room the database takes.
    fn sizes(&mut self) -> DatabaseSizes;

    /// Deletes the stored reports of every period before `before`
    /// (exclusive), which must all be closed at `clock`; the cells stay as
    /// released. Returns how many reports were deleted. With them go the rows
    /// that tied a device to a period, so the database no longer says who
    /// reported in those periods.
    fn prune(&mut self, clock: &PeriodClock, before: u32) -> Result<u64, CollectorError>;

    /// Erases a device: takes each of its stored reports out of its cells
    /// (exact integer subtraction, the inverse of ingestion), deletes the
    /// reports and the device's token row, all in one transaction. Returns
    /// `Ok(None)` if no such device exists.
    ///
    /// This is the one case where a released cell changes: forgetting a
    /// person is their right. Reports already pruned cannot be taken out,
    /// because nothing links them to the device any more; their cells are
    /// aggregates of at least `min_devices` devices.
    fn erase_device(
        &mut self,
        catalogs: &Catalogs,
        device: &DeviceRef,
    ) -> Result<Option<Erased>, CollectorError>;

    /// Clears what deleted rows may have left in the database's files, as
    /// an erasure does once it has committed: on SQLite, rewrites the file
    /// and empties its log ([`sqlite::rewrite`]). PostgreSQL keeps old row
    /// versions until it reuses their space, which the collector cannot
    /// hasten, and answers [`Residue::ServerKeeps`].
    fn clear_residue(&mut self) -> Result<Residue, CollectorError> {
        Ok(Residue::ServerKeeps)
    }

    /// Periodic care that keeps the database from remembering what it must
    /// not: on PostgreSQL, rewriting each newly closed period's reports in id
    /// order (see [`postgres`]). Nothing to do on SQLite, whose reports are
    /// stored in id order from the start.
    fn upkeep(&mut self, clock: &PeriodClock) -> Result<(), CollectorError> {
        let _ = clock;
        Ok(())
    }
}

/// Opens the database, creating it (and its schema) if needed. A database of
/// another schema version is refused.
pub fn open(database: &Database) -> Result<Box<dyn Store>, CollectorError> {
    match database {
        Database::Sqlite(path) => Ok(Box::new(sqlite::SqliteStore::open(path)?)),
        Database::Postgres(url) => Ok(Box::new(postgres::PgStore::open(
            url,
            &database.to_string(),
        )?)),
    }
}

/// Opens a database that must exist already: export, prune, erase and the
/// like never create one (a mistyped path would otherwise read as empty).
pub fn open_existing(database: &Database) -> Result<Box<dyn Store>, CollectorError> {
    match database {
        Database::Sqlite(path) => {
            if !path.exists() {
                return Err(CollectorError::Refused(format!(
                    "no collector database at {} (check --config)",
                    path.display()
                )));
            }
            open(database)
        }
        Database::Postgres(url) => Ok(Box::new(postgres::PgStore::open_existing(
            url,
            &database.to_string(),
        )?)),
    }
}

/// The principal a token authenticates, if it is known and not revoked.
pub fn principal(store: &mut dyn Store, token: &str) -> Result<Option<Principal>, CollectorError> {
    store.principal_by_hash(&token_hash(token))
}

/// The cells that may be released at `clock`, optionally limited to a period
/// range: those of closed periods only, which no report can change any more.
/// `/v1/estimates` and `hush collector export` both read through here.
pub fn released_cells(
    store: &mut dyn Store,
    clock: &PeriodClock,
    from_period: Option<u32>,
    to_period: Option<u32>,
) -> Result<Vec<(CellKey, CellState)>, CollectorError> {
    let Some(last) = clock.last_closed() else {
        return Ok(Vec::new());
    };
    let to = to_period.map_or(last, |t| t.min(last));
    if from_period.is_some_and(|f| f > to) {
        return Ok(Vec::new());
    }
    store.all_cells(from_period, Some(to))
}

/// The cells as the stored reports make them: every stored report decoded,
/// validated and folded into fresh cells of its device's cohort. Equal to
/// [`Store::all_cells`] while no period has been pruned; tests and
/// `hush collector migrate` check stores against it.
pub fn recount_cells(
    store: &mut dyn Store,
    catalogs: &Catalogs,
) -> Result<BTreeMap<CellKey, CellState>, CollectorError> {
    fold_reports(store.stored_reports(0, u32::MAX)?, catalogs)
}

/// Fresh cells with `reports` folded in, each report validated against
/// `catalogs` and counted in its device's cohort.
pub(crate) fn fold_reports(
    reports: Vec<StoredReport>,
    catalogs: &Catalogs,
) -> Result<BTreeMap<CellKey, CellState>, CollectorError> {
    let mut out: BTreeMap<CellKey, CellState> = BTreeMap::new();
    for (_, cohort, _, report) in reports {
        let valid = crate::validate::validate_structure(report, catalogs).map_err(|r| {
            CollectorError::Internal(format!("a stored report no longer validates: {}", r.reason))
        })?;
        for (metric, mechanism) in valid.report.metrics().iter().zip(&valid.mechanisms) {
            let entry = &valid.catalog.metrics()[usize::from(metric.metric())];
            out.entry(CellKey::of(&valid.report, metric, &cohort))
                .or_insert_with(|| CellState::empty(entry))
                .add(mechanism, metric.value())?;
        }
    }
    Ok(out)
}

/// The period before which `retention_days` lets reports be deleted at `now`,
/// clipped to the closed periods.
pub fn retention_limit(
    clock: &PeriodClock,
    now: i64,
    retention_days: u32,
    period_seconds: u32,
) -> u32 {
    let cutoff = now
        .saturating_sub(i64::from(retention_days) * 86_400)
        .max(0) as u64;
    // Periods that end at or before the cutoff.
    let by_age = u32::try_from(cutoff / u64::from(period_seconds.max(1))).unwrap_or(u32::MAX);
    let by_closure = clock.last_closed().map_or(0, |l| l.saturating_add(1));
    by_age.min(by_closure)
}

/// Refuses to prune periods that are still open at `clock`: their reports
/// must stay until no report can join them. Returns the last period to delete.
pub(crate) fn prunable(clock: &PeriodClock, before: u32) -> Result<Option<u32>, CollectorError> {
    let Some(limit) = before.checked_sub(1) else {
        return Ok(None);
    };
    if clock.last_closed().is_none_or(|last| limit > last) {
        let first_open = clock.last_closed().map_or(0, |l| l + 1);
        return Err(CollectorError::Refused(format!(
            "periods from {first_open} on are still open (their grace window has not closed), so their reports must stay; prune before period {first_open} at the latest"
        )));
    }
    Ok(Some(limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_never_reaches_an_open_period() {
        let clock = PeriodClock {
            current: 1000,
            grace_periods: 7,
        };
        let day = 86_400;
        let now = 1000 * i64::from(day) + 5;
        assert_eq!(retention_limit(&clock, now, 400, day), 600);
        assert_eq!(retention_limit(&clock, now, 1, day), 993);
        assert_eq!(clock.last_closed(), Some(992));
        assert!(prunable(&clock, 994).is_err());
        assert_eq!(prunable(&clock, 993).unwrap(), Some(992));
        assert_eq!(prunable(&clock, 0).unwrap(), None);
    }

    #[test]
    fn the_database_setting_names_a_file_or_a_postgres_url() {
        assert_eq!(
            Database::parse("c.sqlite"),
            Database::Sqlite(PathBuf::from("c.sqlite"))
        );
        assert_eq!(
            Database::parse("postgresql://h/db"),
            Database::Postgres("postgresql://h/db".into())
        );
        // A password never reaches a message or a log.
        let db = Database::parse("postgres://hush:s3cret@db.internal:5432/hush?sslmode=require");
        assert_eq!(
            db.to_string(),
            "postgres://hush:***@db.internal:5432/hush?sslmode=require"
        );
        assert!(!format!("{db:?}").contains("s3cret"));
        assert_eq!(
            Database::parse("postgres://hush@%2Frun%2Fpg/db").to_string(),
            "postgres://hush@%2Frun%2Fpg/db"
        );
        for url in [
            "PostgreSQL://hush:s3cret@db/hush",
            "postgres://hush@db/hush?password=s3cret&sslmode=require",
            "postgres://hush:s3/c?ret@db/hush",
            "postgresql://hush:s3cret@db/hush?application_name=a@b",
        ] {
            let shown = Database::parse(url).to_string();
            assert!(
                !shown.contains("s3cret") && !shown.contains("ret@"),
                "{shown}"
            );
            assert!(
                shown.to_lowercase().starts_with("postgres") && shown.contains("***"),
                "{shown}"
            );
        }
    }
}
