//! The one error type of hush-stats.

use hush_ldp::LdpError;
use thiserror::Error;

/// Why an estimate, merge, simulation or audit could not be computed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum StatsError {
    /// Two aggregates over different domains or mechanisms were merged.
    #[error("cannot merge aggregates of different shape: {0}")]
    Mismatch(&'static str),
    /// An estimate was asked of an aggregate with no reports.
    #[error("no reports: an estimate needs at least {needed}")]
    TooFewReports {
        /// The minimum number of reports.
        needed: u64,
    },
    /// A confidence level outside `(0, 1)`.
    #[error("confidence level must be in (0, 1), got {0}")]
    Level(f64),
    /// A report that the mechanism could not have produced.
    #[error("report is not a valid output of this mechanism")]
    InvalidReport,
    /// A report removed from an aggregate that does not contain it.
    #[error("the report is not part of this aggregate")]
    NotAdded,
    /// A simulation or audit argument outside its valid range.
    #[error("{name} must be {valid}, got {value}")]
    Argument {
        /// The argument's name as the command line spells it.
        name: &'static str,
        /// The valid range in words.
        valid: &'static str,
        /// The rejected value, printed.
        value: String,
    },
    /// A population specification that could not be parsed.
    #[error("population must be constant:X, uniform or beta:A,B with A, B > 0; got '{0}'")]
    Population(String),
    /// A distribution name that could not be parsed.
    #[error("distribution must be zipf or uniform; got '{0}'")]
    Distribution(String),
    /// A mechanism could not be built.
    #[error(transparent)]
    Ldp(#[from] LdpError),
}
