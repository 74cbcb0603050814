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
    /// Reading or writing a file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A request the caller can correct: a malformed date or period range, or an
    /// export that would overwrite files without being told to.
    #[error("{0}")]
    Refused(String),
    /// A broken internal invariant or a stopped component.
    #[error("internal: {0}")]
    Internal(String),
}
