//! The two mechanism interfaces (frequency oracles and bounded numeric mechanisms),
//! the public output grid of numeric mechanisms, and clipping ranges.

use std::fmt::{Debug, Display};

use rand::CryptoRng;

use crate::LdpError;

/// What a frequency oracle's estimator needs: the realized probabilities that a
/// report *supports* a value (Wang, Blocki, Li, Jha, USENIX Security 2017, "pure" protocols).
///
/// A report from a user holding `v` supports `v` with probability `p`; a report
/// from a user holding any other value supports `v` with probability `q`. The
/// unbiased count estimate is `(C(v) - n q) / (p - q)` where `C(v)` counts
/// supporting reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SupportProbabilities {
    /// Probability that a report supports the reporter's true value.
    pub p: f64,
    /// Probability that a report supports a given other value.
    pub q: f64,
}

/// A locally differentially private frequency oracle over the domain `0..domain()`.
///
/// Implementations are immutable after construction and validate their
/// parameters in their constructors; `perturb` only rejects out-of-domain values.
pub trait FrequencyOracle {
    /// One privatized report.
    type Output: Clone + Debug + PartialEq + Display;

    /// The domain size `d`: values are `0..d`.
    fn domain(&self) -> u32;

    /// The privacy loss the realized integer thresholds guarantee, rounded up.
    fn epsilon(&self) -> f64;

    /// The realized support probabilities the estimator uses.
    fn support_probabilities(&self) -> SupportProbabilities;

    /// Privatizes one value. Randomness must come from a cryptographically secure generator.
    fn perturb<R: CryptoRng + ?Sized>(
        &self,
        value: u32,
        rng: &mut R,
    ) -> Result<Self::Output, LdpError>;

    /// Calls `f` once for every domain value the report supports.
    fn for_each_supported(&self, output: &Self::Output, f: impl FnMut(u32));

    /// Checks that an output could have been produced by this oracle (shape and ranges),
    /// so that decoders can refuse reports they did not validate.
    fn is_valid_output(&self, output: &Self::Output) -> bool;
}

/// A point of a numeric mechanism's fixed public output grid.
///
/// Every numeric mechanism outputs an integer `index` on one of at most two
/// affine grids (`branch`): the reported value is `offset + scale * index` of
/// that branch. Integer outputs make aggregates exact sums, so shards merge
/// without floating-point drift, and they are compact on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GridPoint {
    /// Which affine grid the index lives on (0 or 1; only the hybrid mechanism uses 1).
    pub branch: u8,
    /// The integer position on that grid.
    pub index: i64,
}

/// The affine map from a grid index to a reported value: `offset + scale * index`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    /// Value at index 0.
    pub offset: f64,
    /// Value step per index.
    pub scale: f64,
}

impl Affine {
    /// The value at `index`.
    pub fn at(self, index: i64) -> f64 {
        self.offset + self.scale * index as f64
    }
}

/// A locally differentially private mechanism for a bounded real value.
///
/// Inputs are clipped to [`NumericMechanism::range`] first; the decoded output is an
/// unbiased estimate of the clipped input, in the same units.
pub trait NumericMechanism {
    /// The clipping range of inputs.
    fn range(&self) -> Range;

    /// The privacy loss the realized integer thresholds guarantee, rounded up.
    fn epsilon(&self) -> f64;

    /// Privatizes one value (clipped to the range first). Only NaN and infinities are rejected.
    fn perturb<R: CryptoRng + ?Sized>(&self, x: f64, rng: &mut R) -> Result<GridPoint, LdpError>;

    /// The affine grid of `branch`, or `None` if the mechanism has no such branch.
    fn grid(&self, branch: u8) -> Option<Affine>;

    /// Checks that a grid point could have been produced by this mechanism.
    fn is_valid_output(&self, point: GridPoint) -> bool;

    /// The unbiased value a grid point reports.
    ///
    /// Panics on a branch the mechanism does not have: callers check
    /// [`NumericMechanism::is_valid_output`] on untrusted points first.
    fn decode(&self, point: GridPoint) -> f64 {
        match self.grid(point.branch) {
            Some(affine) => affine.at(point.index),
            None => panic!(
                "grid point branch {} not produced by this mechanism; validate outputs first",
                point.branch
            ),
        }
    }

    /// `Var[decode(perturb(x))]` for the realized parameters, in squared input units.
    fn variance_at(&self, x: f64) -> f64;

    /// The largest [`NumericMechanism::variance_at`] over the range.
    fn worst_case_variance(&self) -> f64 {
        let r = self.range();
        self.variance_at(r.lo()).max(self.variance_at(r.hi()))
    }
}

/// A closed interval `[lo, hi]` that numeric inputs are clipped to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    lo: f64,
    hi: f64,
}

impl Range {
    /// The interval `[lo, hi]`; both finite and `lo < hi`.
    pub fn new(lo: f64, hi: f64) -> Result<Self, LdpError> {
        if lo.is_finite() && hi.is_finite() && lo < hi && (hi - lo).is_finite() {
            Ok(Range { lo, hi })
        } else {
            Err(LdpError::Range { lo, hi })
        }
    }

    /// The symmetric unit interval `[-1, 1]` the mechanisms' papers use.
    pub const SYMMETRIC_UNIT: Range = Range { lo: -1.0, hi: 1.0 };

    /// The interval `[0, 1]`.
    pub const UNIT: Range = Range { lo: 0.0, hi: 1.0 };

    /// Lower bound.
    pub fn lo(self) -> f64 {
        self.lo
    }

    /// Upper bound.
    pub fn hi(self) -> f64 {
        self.hi
    }

    /// `hi - lo`.
    pub fn width(self) -> f64 {
        self.hi - self.lo
    }

    /// Clips a finite `x` into the range and maps it to `[-1, 1]`.
    pub fn to_symmetric(self, x: f64) -> Result<f64, LdpError> {
        Ok(2.0 * self.to_unit(x)? - 1.0)
    }

    /// Clips a finite `x` into the range and maps it to `[0, 1]`.
    #[inline]
    pub fn to_unit(self, x: f64) -> Result<f64, LdpError> {
        if !x.is_finite() {
            return Err(LdpError::NonFiniteInput(x));
        }
        Ok(self.to_unit_finite(x))
    }

    /// [`Range::to_unit`] for an `x` already known to be finite: batch kernels
    /// check a whole chunk first, so this loop has no early exit and vectorizes.
    #[inline]
    pub(crate) fn to_unit_finite(self, x: f64) -> f64 {
        ((x.clamp(self.lo, self.hi) - self.lo) / self.width()).clamp(0.0, 1.0)
    }

    /// The factor by which variances on `[-1, 1]` scale into this range's units.
    pub fn symmetric_variance_scale(self) -> f64 {
        let half = self.width() / 2.0;
        half * half
    }
}
