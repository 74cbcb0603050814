//! The Hush collector: receives privatized reports over HTTP, authenticates devices,
//! refuses replays and anything invalid, stores every accepted report durably in
//! SQLite, keeps mergeable aggregates per (metric, period, cohort), and turns them
//! into estimates with error bars and datasets.
//!
//! It depends on `hush-report` for the wire type (one definition, shared with
//! the agent) and on `hush-stats` for the estimators, and never on capture.

mod cells;
mod config;
mod error;
pub mod estimate;
pub mod export;
mod ingest;
pub mod loadgen;
pub mod server;
pub mod store;
mod tokens;
mod validate;

pub use cells::{CellKey, CellState};
pub use config::CollectorConfig;
pub use error::CollectorError;
pub use ingest::{IngestError, Outcome, Writer};
pub use tokens::{TokenKind, new_token, token_hash};
pub use validate::{Catalogs, Rejection, ValidReport, validate};
