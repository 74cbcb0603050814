//! The Hush laptop agent: consent and enrollment, the durable budget ledger and memo,
//! the privatize-at-period-end loop, the crash-safe outbox, the uploader, and the
//! person's transparency controls.
//!
//! The agent sees raw measurements only as `RawMeasurements` values handed over
//! by capture's window aggregator; it keeps them in memory until the privatizer
//! consumes them. What it writes to disk is privatized reports, budget
//! accounting, the memo of permanent responses, and its enrollment.

mod config;
pub mod control;
pub mod daemon;
mod durable;
mod enrollment;
mod error;
mod ledger;
pub mod outbox;
mod paths;
mod period;
pub mod uploader;

pub use config::AgentConfig;
pub use daemon::Agent;
pub use enrollment::{CONSENT_TEXT, CONSENT_VERSION, Enrollment, Policy};
pub use error::AgentError;
pub use ledger::Ledger;
pub use outbox::Outbox;
pub use paths::AgentPaths;
