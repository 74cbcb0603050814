//! Binary mean mechanisms: Duchi et al.'s one-dimensional mechanism and Ding et al.'s 1BitMean,
//! which are the same randomized bit under two parametrizations.

use rand::CryptoRng;

use crate::epsilon::{check_epsilon, round_up_loss};
use crate::sampling::{Threshold, floor_fraction};
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
    pub(crate) fn new(epsilon: f64, range: Range) -> Result<Self, LdpError> {
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

    /// The threshold of a 1 at the top of the range (`p_max`); the bottom's is its complement.
    pub(crate) fn high(&self) -> Threshold {
        self.high
    }

    /// The privacy loss of the bit, from the realized thresholds, rounded up.
    pub(crate) fn epsilon(&self) -> f64 {
        self.epsilon
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

    /// The `bits`-bit prefix of [`BinaryCore::threshold_at`]`(u)`, computed in
    /// `f64` with 32-bit conversions only, and whether it is certain; `bits` in
    /// `1..=31`. Batch kernels compare a random prefix with it and recompute the
    /// exact threshold only for the rare uncertain inputs, so they never convert
    /// a float to a 64-bit integer (SSE2 has no packed instruction for that).
    ///
    /// **Why "certain" is never wrong.** Write `T = low + min(round(v), span)`
    /// for the exact threshold, `v` the clamped product of `threshold_at`, and
    /// `s = fl(fl(low) 2^-(64-bits) + v 2^-(64-bits))` for the estimate of
    /// `T / 2^(64-bits)` (power-of-two scalings are exact). Measured in units of
    /// `2^(64-bits)`: `fl(low)` is off by at most half an ulp of a number below
    /// `2^64`, `2^10`, so `2^(bits-54)`; rounding `v` moves it by at most 1/2, and
    /// the cap at `span` (when `fl(span)` rounded up) by at most `2^10`, together
    /// under `2^(bits-53)`; the final addition of numbers below `2^bits + 1`
    /// errs by at most `2^(bits-53)`. So `|s - T / 2^(64-bits)| < 2^(bits-51)`,
    /// below `2^-20` for every allowed `bits`. When the fraction of `s` is at
    /// least `2^-20` away from an integer, `floor(s)` is therefore
    /// `floor(T / 2^(64-bits))`, the exact prefix, and the estimate is certain.
    #[inline(always)]
    pub(crate) fn prefix_at(&self, u: f64, bits: u32) -> (u32, bool) {
        const MARGIN: f64 = 1.0 / (1u64 << 20) as f64;
        let unit = 1.0 / (1u64 << (64 - bits)) as f64;
        let span_f = (self.high.raw() - self.low.raw()) as f64;
        let v = (u * span_f).clamp(0.0, span_f);
        let s = self.low.raw() as f64 * unit + v * unit;
        let (prefix, frac) = floor_fraction(s);
        (prefix, (MARGIN..=1.0 - MARGIN).contains(&frac))
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Whenever `prefix_at` says it is certain, its prefix is the exact threshold's.
    /// Inputs are drawn at random and also aimed at thresholds just around each
    /// prefix boundary, where a float estimate is most likely to be off by one.
    #[test]
    fn a_certain_prefix_is_the_exact_prefix() {
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(12);
        for eps in [0.01, 0.5, 1.0, 5.0, 20.0] {
            let core = Duchi::new(eps, Range::SYMMETRIC_UNIT).unwrap().0;
            let (low, span) = (core.low.raw(), core.high.raw() - core.low.raw());
            for bits in [1, 7, 8, 16, 31] {
                let step = 1u64 << (64 - bits);
                let boundaries = (low / step + 1..=(low + span) / step).take(300);
                let aimed = boundaries.flat_map(|j| {
                    [-4096i64, -3, -1, 0, 1, 3, 4096].map(|d| {
                        let t = (j * step).wrapping_add_signed(d);
                        (t.saturating_sub(low)) as f64 / span as f64
                    })
                });
                let random =
                    (0..20_000).map(|_| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64);
                let mut certain = 0;
                let mut total = 0;
                for u in aimed.chain(random).chain([0.0, 1.0, 0.5]) {
                    let (prefix, sure) = core.prefix_at(u, bits);
                    total += 1;
                    if sure {
                        certain += 1;
                        let exact = core.threshold_at(u).prefix(bits);
                        assert_eq!(u64::from(prefix), exact, "eps {eps}, bits {bits}, u {u:e}");
                    }
                }
                // Uncertainty is confined to a 2^-20 band around each boundary.
                assert!(
                    certain * 10 > total * 9,
                    "eps {eps}, bits {bits}: {certain}/{total}"
                );
            }
        }
    }
}
