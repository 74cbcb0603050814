//! The one error type of hush-ldp: invalid mechanism parameters and invalid inputs.

use thiserror::Error;

/// Why a mechanism could not be built or could not perturb an input.
///
/// Every variant names the offending argument and its valid range, so a
/// command line can show it to a person unchanged.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum LdpError {
    /// Epsilon was not a finite number in `(0, MAX_EPSILON]`.
    #[error("epsilon must be a finite number in (0, {max}], got {value}")]
    Epsilon {
        /// The rejected value.
        value: f64,
        /// The largest epsilon any mechanism accepts.
        max: f64,
    },
    /// The domain size was outside `[2, MAX_DOMAIN]`.
    #[error("domain size must be in [2, {max}], got {value}")]
    Domain {
        /// The rejected value.
        value: u64,
        /// The largest domain any frequency oracle accepts.
        max: u32,
    },
    /// A value to perturb was outside the mechanism's domain `0..domain`.
    #[error("value {value} is outside the domain 0..{domain}")]
    ValueOutOfDomain {
        /// The rejected value.
        value: u64,
        /// The mechanism's domain size.
        domain: u32,
    },
    /// A numeric range was empty, reversed or not finite.
    #[error("range must satisfy lo < hi with both finite, got [{lo}, {hi}]")]
    Range {
        /// Lower bound given.
        lo: f64,
        /// Upper bound given.
        hi: f64,
    },
    /// A numeric input was NaN or infinite (finite values are clipped, these cannot be).
    #[error("numeric input must be finite, got {0}")]
    NonFiniteInput(f64),
    /// An output grid resolution was outside its valid range.
    #[error("grid resolution must be in [{min}, {max}], got {value}")]
    Grid {
        /// The rejected value.
        value: u64,
        /// Smallest accepted resolution.
        min: u32,
        /// Largest accepted resolution.
        max: u32,
    },
    /// The mechanism's parameters are so extreme that the integer threshold grid
    /// cannot realize them (a probability would round to 0 or 1).
    #[error("parameters cannot be realized on the 2^-64 probability grid: {0}")]
    Unrealizable(&'static str),
    /// A batch call's output buffer does not have the length its inputs need.
    #[error("{what} holds {actual} elements, but the batch needs {expected}")]
    BufferLength {
        /// Which buffer, in words.
        what: &'static str,
        /// The length the call needs.
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// Words handed to `AnyFrequencyOracle::report_from_slots` that no batch
    /// call of that oracle writes (wrong count, or a value wider than 32 bits).
    #[error(
        "not a batch report of this oracle: {actual} words given, {expected} expected, each value in range"
    )]
    MalformedReport {
        /// Words one report takes.
        expected: usize,
        /// Words given.
        actual: usize,
    },
    /// Randomized response on packed bits was asked of an oracle whose domain is not binary.
    #[error("packed randomized response needs a domain of 2, got {0}")]
    NotBinary(u32),
    /// A two-layer mechanism was asked for a per-report epsilon that is not
    /// below its permanent one: the instantaneous layer would have nothing to add.
    #[error(
        "epsilon_1 (per report, {epsilon_1}) must be below epsilon_perm (per value, {epsilon_perm})"
    )]
    Layers {
        /// The per-report epsilon asked for.
        epsilon_1: f64,
        /// The permanent epsilon asked for.
        epsilon_perm: f64,
    },
    /// A two-layer mechanism was named without its permanent epsilon, or a
    /// one-layer mechanism with one.
    #[error("{0}")]
    Epsilons(&'static str),
    /// A mechanism name was not recognised.
    #[error("unknown mechanism '{name}'; valid: {valid}")]
    UnknownMechanism {
        /// The name given.
        name: String,
        /// The accepted names, comma separated.
        valid: &'static str,
    },
}
