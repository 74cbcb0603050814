//! Locally differentially private mechanisms for Hush, sampled exactly with integer thresholds.
//!
//! Two families live here:
//!
//! - **Frequency oracles** ([`FrequencyOracle`]) over a domain `0..d`: [`Grr`],
//!   [`UnaryEncoding`] (SUE and OUE), [`Olh`], [`HadamardResponse`].
//! - **Numeric mechanisms** ([`NumericMechanism`]) for a value clipped to a
//!   [`Range`]: [`DiscreteLaplace`], [`Duchi`], [`Piecewise`], [`Hybrid`],
//!   [`OneBitMean`]. Their outputs are points of a fixed public grid
//!   ([`GridPoint`]), so aggregates are exact integer sums.
//!
//! Every random decision compares a uniform 64-bit integer with an integer
//! threshold ([`sampling`]); each mechanism computes the epsilon it states
//! from those realized thresholds, rounded up, and its docs give the privacy
//! argument, the valid arguments, the variance and the paper it follows.
//! Randomness is passed in and must implement [`rand::CryptoRng`]: this crate
//! does no IO and never seeds a generator itself.
//!
//! The paired estimators, variances and confidence intervals are in `hush-stats`.

mod bits;
mod budget;
mod epsilon;
mod error;
mod frequency;
mod kind;
mod mechanism;
mod numeric;
pub mod sampling;

pub use bits::PackedBits;
pub use budget::{BudgetAccount, BudgetExhausted};
pub use epsilon::{MAX_DOMAIN, MAX_EPSILON, check_domain, check_epsilon};
pub use error::LdpError;
pub use frequency::{Grr, HadamardResponse, Olh, OlhOutput, UnaryEncoding, UnaryVariant};
pub use kind::{
    AnyFrequencyOracle, AnyNumericMechanism, FrequencyKind, FrequencyOutput, NumericKind,
};
pub use mechanism::{
    Affine, FrequencyOracle, GridPoint, NumericMechanism, Range, SupportProbabilities,
};
pub use numeric::{
    DiscreteLaplace, Duchi, HYBRID_SWITCH_EPSILON, Hybrid, LAPLACE_STEPS, OneBitMean,
    PIECEWISE_CELLS, Piecewise,
};

/// The generator Hush uses for privacy noise: ChaCha12, the algorithm behind
/// `rand`'s `StdRng`, named here so that it cannot change under us with a `rand` upgrade.
///
/// Production code seeds it from the operating system (in the agent); tests and
/// simulations seed it explicitly for reproducibility.
pub type NoiseRng = rand::rngs::ChaCha12Rng;
