//! The one error type of hush-collector.

use thiserror::Error;

/// Why a collector operation failed.
#[derive(Debug, Error)]
pub enum CollectorError {
    /// The configuration file is unreadable or invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),
    /// PostgreSQL failed, refused a statement, or did not answer in time
    /// (the server answers 503: the request may be retried).
    #[error("database: {0}")]
    Postgres(String),
    /// Reading or writing a file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A request the caller can correct: a malformed date or period range, or an
    /// export that would overwrite files without being told to.
    #[error("{0}")]
    Refused(String),
    /// The database was made by a Hush with another schema.
    #[error(
        "{database} was made by {} Hush (schema version {found}; this one uses {expected}): {}",
        if found < expected { "an older" } else { "a newer" },
        if found < expected {
            "export it with the Hush that made it and start a new database"
        } else {
            "use that Hush, or start a new database"
        }
    )]
    SchemaVersion {
        /// The database (a file, or a URL without its password).
        database: String,
        /// Its schema version.
        found: i64,
        /// The version this build reads and writes.
        expected: i64,
    },
    /// A broken internal invariant or a stopped component.
    #[error("internal: {0}")]
    Internal(String),
}
