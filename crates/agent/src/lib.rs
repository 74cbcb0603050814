//! The Hush laptop agent: consent and enrollment, the durable budget ledger and device secret,
//! the privatize-at-period-end loop, the crash-safe outbox, the uploader, and the
//! person's transparency controls.
//!
//! The agent sees raw measurements only as `RawMeasurements` values handed over
//! by capture's window aggregator; it keeps them in memory until the privatizer
//! consumes them. What it writes to disk is privatized reports, budget
//! accounting (per period, and the spending history of permanent draws), the
//! device secret that keys every permanent response, keyed tags of the values
//! drawn, and its enrollment: never a value, nor a permanent response.

mod config;
pub mod control;
pub mod daemon;
pub mod device;
mod durable;
mod enrollment;
mod error;
pub mod hardening;
mod ledger;
pub mod lock;
pub mod outbox;
mod paths;
mod period;
pub mod ranges;
mod schedule;
pub mod ui;
pub mod uploader;

pub use config::AgentConfig;
pub use daemon::Agent;
pub use enrollment::{CONSENT_VERSION, Enrollment, Policy, Terms, consent_text};
pub use error::AgentError;
pub use ledger::Ledger;
pub use outbox::Outbox;
pub use paths::AgentPaths;
