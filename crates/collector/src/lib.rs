//! The Hush collector: receives privatized reports over HTTP, authenticates devices,
//! refuses replays and anything invalid, stores every accepted report durably in
//! SQLite, keeps mergeable aggregates per (metric, period, cohort), and turns them
//! into estimates with error bars and datasets.
//!
//! It depends on `hush-report` for the wire type (one definition, shared with
//! the agent) and on `hush-stats` for the estimators, and never on capture.
//!
//! The employer runs the collector, so it is built to learn only the randomized
//! reports: one per device and period, no arrival times or client addresses
//! kept, and a period's cells released once, after its grace window
//! ([`PeriodClock`]), so releases cannot be compared to isolate one report.

mod auth;
mod cells;
mod config;
pub mod dashboard;
mod error;
pub mod estimate;
pub mod export;
mod ingest;
mod limits;
pub mod loadgen;
pub mod metrics;
mod periods;
pub mod plan;
pub mod ranges;
pub mod server;
pub mod store;
mod tokens;
mod validate;

pub use cells::{CellKey, CellState};
pub use config::CollectorConfig;
pub use error::CollectorError;
pub use ingest::{IngestError, NotReady, Outcome, Writer};
pub use limits::TOKEN_TTL;
pub use periods::{PeriodClock, Unaccepted};
pub use tokens::{TokenKind, new_token, new_token_from_os, token_hash};
pub use validate::{Catalogs, Rejection, ValidReport, category, validate, validate_structure};
