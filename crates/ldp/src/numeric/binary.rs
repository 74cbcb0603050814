//! Binary mean mechanisms: Duchi et al.'s one-dimensional mechanism and Ding et al.'s 1BitMean,
//! which are the same randomized bit under two parametrizations.

use rand::CryptoRng;

use crate::epsilon::{check_epsilon, round_up_loss};
use crate::sampling::Threshold;
use crate::{Affine, GridPoint, LdpError, NumericMechanism, Range};

const TWO_POW_32: f64 = 4_294_967_296.0;
const TWO_POW_M32: f64 = 1.0 / TWO_POW_32;

/// The shared core: report one bit whose probability of being 1 rises
/// linearly from `p_min` at the bottom of the range to `p_max = 1 - p_min` at the top.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BinaryCore {
    range: Range,
    high: Threshold,
    low: Threshold,
    epsilon: f64,
}

impl BinaryCore {
    fn new(epsilon: f64, range: Range) -> Result<Self, LdpError> {
        let epsilon = check_epsilon(epsilon)?;
        let e = epsilon.exp();
        let high = Threshold::floor_split(e, 1.0);
        let low = high.complement();
        if low >= high {
            return Err(LdpError::Unrealizable(
                "binary mean: the bit probabilities round to one half",
            ));
        }
        Ok(BinaryCore {
            range,
            high,
            low,
            epsilon: round_up_loss((high.prob() / low.prob()).ln()),
        })
    }

    /// The clipping range.
    pub(crate) fn range(&self) -> Range {
        self.range
    }

    /// `p_max - p_min`, the slope of the bit probability over the unit interval.
    fn slope(&self) -> f64 {
        (self.high.raw() - self.low.raw()) as f64 / crate::sampling::TWO_POW_64
    }

    /// The threshold for an input at position `u` in `[0, 1]`: always within
    /// `[low, high]`, which is all the privacy proof needs.
    #[inline]
    pub(crate) fn threshold_at(&self, u: f64) -> Threshold {
        let span = self.high.raw() - self.low.raw();
        // `u * span` clamped to `[0, span]` and rounded half away from zero, like
        // `f64::round` (`span as f64` is a whole number, so clamping first is the
        // same), but without libm's `round` or unsigned conversions, which SSE2
        // lacks and emulates slowly: `v` is split at 2^32 into parts that convert
        // through signed integers exactly (scaling by 2^-32 is exact, and both
        // parts are multiples of v's last place). NaN clamps to NaN, which
        // converts to 0, as `round` then `as u64` did.
        let span_f = span as f64;
        let v = (u * span_f).clamp(0.0, span_f);
        let high = (v * TWO_POW_M32) as i64;
        let rest = v - high as f64 * TWO_POW_32;
        let low_whole = rest as i64;
        let half_up = u64::from(rest - low_whole as f64 >= 0.5);
        let step = (high as u64)
            .saturating_mul(1 << 32)
            .saturating_add(low_whole as u64 + half_up);
        Threshold::from_raw(self.low.raw() + step.min(span))
    }

    fn perturb<R: CryptoRng + ?Sized>(&self, x: f64, rng: &mut R) -> Result<GridPoint, LdpError> {
        let u = self.range.to_unit(x)?;
        Ok(GridPoint {
            branch: 0,
            index: i64::from(self.threshold_at(u).sample(rng)),
        })
    }

    /// Value `lo + width (b - p_min) / slope` for bit `b`: unbiased for the clipped input.
    fn grid(&self) -> Affine {
        let w = self.range.width();
        Affine {
            offset: self.range.lo() - w * self.low.prob() / self.slope(),
            scale: w / self.slope(),
        }
    }

    fn variance_at(&self, x: f64) -> f64 {
        let Ok(u) = self.range.to_unit(x) else {
            return f64::NAN;
        };
        let p = self.threshold_at(u).prob();
        let w = self.range.width();
        p * (1.0 - p) * w * w / (self.slope() * self.slope())
    }
}

macro_rules! binary_mechanism {
    ($name:ident) => {
        impl NumericMechanism for $name {
            fn range(&self) -> Range {
                self.0.range
            }

            fn epsilon(&self) -> f64 {
                self.0.epsilon
            }

            fn perturb<R: CryptoRng + ?Sized>(
                &self,
                x: f64,
                rng: &mut R,
            ) -> Result<GridPoint, LdpError> {
                self.0.perturb(x, rng)
            }

            fn grid(&self, branch: u8) -> Option<Affine> {
                (branch == 0).then(|| self.0.grid())
            }

            fn is_valid_output(&self, point: GridPoint) -> bool {
                point.branch == 0 && (point.index == 0 || point.index == 1)
            }

            fn variance_at(&self, x: f64) -> f64 {
                self.0.variance_at(x)
            }
        }
    };
}

/// Duchi, Jordan and Wainwright's one-dimensional mean mechanism.
///
/// On `[-1, 1]`, the user reports `+B` or `-B` with `B = (e^eps+1)/(e^eps-1)`,
/// `Pr[+B] = 1/2 + x (e^eps - 1) / (2 (e^eps + 1))`. Other ranges are mapped
/// affinely onto `[-1, 1]` after clipping. The output grid is the bit (index 0
/// or 1), decoded to `±B` in range units.
///
/// **Privacy.** `Pr[+B]` lies in `[p_min, p_max]` with `p_max = 1 - p_min`, so
/// any output's ratio is at most `p_max / p_min`. `p_max` is the threshold
/// `floor(2^64 e^eps/(e^eps+1))`, `p_min` its exact complement, and each input's
/// threshold is an integer in between. [`Duchi::epsilon`] is
/// `ln(p_max / p_min)` from the thresholds, rounded up.
///
/// **Arguments.** `epsilon` in `(0, 20]`; any finite `lo < hi`; inputs finite (clipped).
///
/// **Utility.** Unbiased; on `[-1, 1]`,
/// `Var = ((e^eps + 1)/(e^eps - 1))^2 - x^2`, scaled by `(width/2)^2` in range units.
/// Better than the Piecewise Mechanism below about eps = 1.29.
///
/// **Paper.** Duchi, Jordan, Wainwright, "Minimax Optimal Procedures for
/// Locally Private Estimation", JASA 2018; formula as in Wang et al., ICDE 2019.
#[derive(Debug, Clone, PartialEq)]
pub struct Duchi(BinaryCore);

impl Duchi {
    /// Builds the mechanism for `epsilon` over `range`.
    pub fn new(epsilon: f64, range: Range) -> Result<Self, LdpError> {
        Ok(Duchi(BinaryCore::new(epsilon, range)?))
    }

    /// The realized `B`: the reported magnitude on `[-1, 1]`.
    pub fn magnitude(&self) -> f64 {
        1.0 / self.0.slope()
    }

    /// The realized probability of reporting `+B` for input `x`.
    pub fn probability_of_high(&self, x: f64) -> Result<f64, LdpError> {
        Ok(self.0.threshold_at(self.0.range.to_unit(x)?).prob())
    }

    /// The shared core, for the batch kernels.
    pub(crate) fn core(&self) -> &BinaryCore {
        &self.0
    }
}

binary_mechanism!(Duchi);

/// Ding, Kulkarni and Yekhanin's 1BitMean.
///
/// For `x` in `[0, m]` the user sends one bit, 1 with probability
/// `1/(e^eps + 1) + (x/m) (e^eps - 1)/(e^eps + 1)`; the collector decodes a bit
/// `b` to `m (b (e^eps + 1) - 1) / (e^eps - 1)`. This is Duchi's mechanism
/// reparametrized to `[0, m]` (one implementation serves both), chosen by
/// Microsoft for telemetry because it is one bit and memoizes well.
///
/// **Privacy.** As for [`Duchi`]: the bit probability lies between the
/// complementary thresholds `p_min` and `p_max`; [`OneBitMean::epsilon`] is
/// `ln(p_max / p_min)` from them, rounded up.
///
/// **Arguments.** `epsilon` in `(0, 20]`; a range `[lo, hi]` (the paper's `[0, m]`).
///
/// **Utility.** Unbiased; `Var = m^2 p(x)(1 - p(x)) ((e^eps + 1)/(e^eps - 1))^2` where `p(x)` is the bit's probability.
///
/// **Paper.** Ding, Kulkarni, Yekhanin, "Collecting Telemetry Data
/// Privately", NeurIPS 2017, Section 2.1.
#[derive(Debug, Clone, PartialEq)]
pub struct OneBitMean(BinaryCore);

impl OneBitMean {
    /// Builds the mechanism for `epsilon` over `range`.
    pub fn new(epsilon: f64, range: Range) -> Result<Self, LdpError> {
        Ok(OneBitMean(BinaryCore::new(epsilon, range)?))
    }

    /// The realized probability of reporting 1 for input `x`.
    pub fn probability_of_one(&self, x: f64) -> Result<f64, LdpError> {
        Ok(self.0.threshold_at(self.0.range.to_unit(x)?).prob())
    }

    /// The shared core, for the batch kernels.
    pub(crate) fn core(&self) -> &BinaryCore {
        &self.0
    }
}

binary_mechanism!(OneBitMean);
