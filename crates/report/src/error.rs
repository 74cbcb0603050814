//! The one error type of hush-report.

use hush_ldp::LdpError;
use thiserror::Error;

/// Why a catalog could not be built or a measurement could not be privatized.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ReportError {
    /// A catalog definition is inconsistent.
    #[error("invalid catalog: {0}")]
    Catalog(String),
    /// A mechanism could not be built.
    #[error(transparent)]
    Ldp(#[from] LdpError),
}
