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
//! - **Two-layer (longitudinal) mechanisms** ([`longitudinal`]): a permanent
//!   randomized response memoized per value at `epsilon_perm`, then a fresh
//!   instantaneous one on every report, composed to `epsilon_1`: [`LGrr`],
//!   [`LUnary`] (L-SUE, L-OUE, L-OSUE), [`DBitFlipPm`], [`LLh`] and
//!   [`LOneBitMean`]. Each is also a one-report mechanism of the two
//!   families above, so every estimator, simulation and audit applies.
//!
//! Every random decision compares a uniform 64-bit integer with an integer
//! threshold ([`sampling`]); each mechanism computes the epsilon it states
//! from those realized thresholds, rounded up, and its docs give the privacy
//! argument, the valid arguments, the variance and the paper it follows.
//! Randomness is passed in and must implement [`rand::CryptoRng`]: this crate
//! does no IO and never seeds a generator itself.
//!
//! [`batch`] gives every mechanism entry points that perturb many inputs
//! into caller-provided buffers with the same output law, for simulations,
//! audits and bulk noising; they are plain array code, run as an AVX2 copy on
//! x86-64 CPUs that have it.
//!
//! The paired estimators, variances and confidence intervals are in `hush-stats`.

pub mod batch;
mod bits;
mod budget;
mod epsilon;
mod error;
mod frequency;
mod kind;
pub mod longitudinal;
mod mechanism;
mod numeric;
pub mod sampling;

pub use batch::{FrequencyBatch, NumericBatch};
pub use bits::PackedBits;
pub use budget::{BudgetAccount, BudgetExhausted};
pub use epsilon::{MAX_DOMAIN, MAX_EPSILON, check_domain, check_epsilon};
pub use error::LdpError;
pub use frequency::{Grr, HadamardResponse, Olh, OlhOutput, UnaryEncoding, UnaryVariant};
pub use kind::{
    AnyFrequencyOracle, AnyNumericMechanism, AnyPermanent, DBITFLIP_SAMPLED, FrequencyKind,
    FrequencyOutput, NumericKind, Privacy,
};
pub use longitudinal::{
    DBitFlipPm, DEFAULT_PERM_RATIO, LGrr, LLh, LOneBitMean, LUnary, LUnaryVariant, TwoLayer,
};
pub use mechanism::{
    Affine, FrequencyOracle, GridPoint, NumericMechanism, Range, SupportProbabilities,
};
pub use numeric::{
    DiscreteLaplace, Duchi, HYBRID_SWITCH_EPSILON, Hybrid, LAPLACE_STEPS, OneBitMean,
    PIECEWISE_CELLS, Piecewise,
};

/// The generator Hush uses for privacy noise: ChaCha8, named here so that it
/// cannot change under us with a `rand` upgrade.
///
/// ChaCha with 8 rounds rather than `StdRng`'s 12: the best published attacks
/// on ChaCha reach 7 rounds, and only with work far beyond brute force on a
/// 256-bit key (Aumasson et al., "New Features of Latin Dances", 2008, and
/// later refinements), so 8 rounds keep a margin while Aumasson's "Too Much
/// Crypto" (2019) argues that ChaCha8 is as secure as its 20-round original
/// in practice. The batch kernels are bound by how fast the generator fills
/// bytes, and 8 rounds fill them about 30% faster than 12 (see the README's
/// performance section). Noise only needs the output to be unpredictable,
/// which a stream cipher keyed from the OS provides at any of these round counts.
///
/// Production code seeds it from the operating system (in the agent); tests and
/// simulations seed it explicitly for reproducibility.
pub type NoiseRng = rand::rngs::ChaCha8Rng;
