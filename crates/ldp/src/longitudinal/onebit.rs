//! Two-layer 1BitMean: alpha-point rounding onto a coarse grid, a permanent
//! 1BitMean bit per grid point, and a fresh symmetric flip of it on every report.

use rand::CryptoRng;

use super::{TwoLayer, check_layers, symmetric_keep};
use crate::epsilon::round_up_loss;
use crate::numeric::BinaryCore;
use crate::sampling::{Threshold, floor_fraction};
use crate::{Affine, GridPoint, LdpError, NumericMechanism, Range};

/// Longitudinal 1BitMean: Ding et al.'s 1BitMean with alpha-point rounding and
/// permanent memoization, with an instantaneous randomized response on top.
///
/// The clipped input is placed on `steps + 1` equally spaced points of the
/// range by alpha-point rounding: `floor(u steps + alpha)` for its position
/// `u` in `[0, 1]` and an offset `alpha` in `[0, 1)` that a device draws once.
/// Each point's permanent bit is 1 with 1BitMean's probability at
/// `epsilon_perm` for that point, and is memoized; every report sends it
/// through a symmetric randomized response that keeps it with `p2`.
///
/// **Privacy.** The permanent bit is 1 with a probability between the
/// complementary thresholds `p_min` and `p_max = 1 - p_min` (as
/// [`OneBitMean`](crate::OneBitMean)), so all reports about one grid point
/// reveal at most `epsilon_perm`. One report's bit is 1 with the composed
/// `P = P1 p2 + (1 - P1)(1 - p2)`, between `P_min` and `P_max = 1 - P_min`, so
/// the loss is `ln(P_max / P_min)`; `p2` is solved for `e^epsilon_1` and rounded
/// down ([`symmetric_keep`]), and [`NumericMechanism::epsilon`] is that log from
/// the realized thresholds, rounded up. The rounding offset never leaves the
/// device (its randomness is part of the permanent layer).
///
/// **Arguments.** `epsilon_perm`, `epsilon_1` in `(0, 20]` with
/// `epsilon_1 < epsilon_perm`; any finite `lo < hi`; `steps` in `[1, 1024]`
/// (default [`LOneBitMean::DEFAULT_STEPS`]); inputs finite (clipped).
///
/// **Utility.** With a fresh offset the rounding is unbiased and the report is
/// one bit, 1 with `P(x)`, linear in `x`: decoded affinely it is unbiased with
/// `Var = P(x)(1 - P(x)) w^2 / (P_max - P_min)^2`, 1BitMean's variance at
/// `epsilon_1` (the rounding adds nothing to one report). A device's reports
/// share their permanent bits, which is what a pooled estimate across periods
/// must account for.
///
/// **Paper.** Ding, Kulkarni, Yekhanin, "Collecting Telemetry Data Privately",
/// NeurIPS 2017, Sections 2.1 and 4 (1BitMean, alpha-point rounding,
/// memoization); the instantaneous layer follows RAPPOR (Erlingsson et al.,
/// CCS 2014), so that an unchanged value's reports are not identical.
#[derive(Debug, Clone, PartialEq)]
pub struct LOneBitMean {
    range: Range,
    /// The permanent layer on the unit interval: inputs reach it as grid positions.
    perm: BinaryCore,
    keep: Threshold,
    steps: u32,
    /// Composed probability of a 1 at the bottom and at the top of the range.
    low: f64,
    high: f64,
    epsilon_1: f64,
}

impl LOneBitMean {
    /// Grid points are `steps + 1`: eight steps put a count on nine points, so a
    /// person whose days differ a little keeps one or two permanent bits, and
    /// the rounding's share of a report's variance is nil (see the type's docs).
    pub const DEFAULT_STEPS: u32 = 8;

    /// The most steps a grid may have.
    pub const MAX_STEPS: u32 = 1024;

    /// Builds the mechanism over `range` with the default grid.
    pub fn new(epsilon_perm: f64, epsilon_1: f64, range: Range) -> Result<Self, LdpError> {
        Self::with_steps(epsilon_perm, epsilon_1, range, Self::DEFAULT_STEPS)
    }

    /// Builds the mechanism with `steps` grid steps.
    pub fn with_steps(
        epsilon_perm: f64,
        epsilon_1: f64,
        range: Range,
        steps: u32,
    ) -> Result<Self, LdpError> {
        let (perm_eps, one) = check_layers(epsilon_perm, epsilon_1)?;
        if !(1..=Self::MAX_STEPS).contains(&steps) {
            return Err(LdpError::Grid {
                value: u64::from(steps),
                min: 1,
                max: Self::MAX_STEPS,
            });
        }
        let perm = BinaryCore::new(perm_eps, Range::UNIT)?;
        let h = perm.high().prob();
        let keep = symmetric_keep(h, one)?;
        let p2 = keep.prob();
        let compose = |p1: f64| p1 * p2 + (1.0 - p1) * (1.0 - p2);
        let (low, high) = (compose(perm.high().complement_prob()), compose(h));
        Ok(LOneBitMean {
            range,
            perm,
            keep,
            steps,
            low,
            high,
            epsilon_1: round_up_loss((high / low).ln()),
        })
    }

    /// The number of grid steps.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// The instantaneous keep threshold.
    pub fn keep_threshold(&self) -> Threshold {
        self.keep
    }

    /// The grid point (`0..=steps`) that alpha-point rounding puts `x` on, for
    /// an offset `alpha` in `[0, 1)` (clamped into it).
    pub fn coarse(&self, x: f64, alpha: f64) -> Result<u32, LdpError> {
        let u = self.range.to_unit(x)?;
        let alpha = if alpha.is_finite() {
            alpha.clamp(0.0, 1.0 - f64::EPSILON)
        } else {
            0.0
        };
        let point = (u * f64::from(self.steps) + alpha).floor();
        Ok(point.clamp(0.0, f64::from(self.steps)) as u32)
    }

    /// The permanent layer, on grid positions in `[0, 1]`, for the batch kernel.
    pub(crate) fn unit_core(&self) -> &BinaryCore {
        &self.perm
    }

    /// A uniform offset in `[0, 1)` from 53 random bits.
    pub fn draw_alpha<R: CryptoRng + ?Sized>(rng: &mut R) -> f64 {
        (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The position of unit input `u` on the grid, in `[0, steps]`.
    #[inline(always)]
    pub(crate) fn grid_position(&self, u: f64) -> f64 {
        u * f64::from(self.steps)
    }

    /// The clipping range.
    pub(crate) fn clip_range(&self) -> Range {
        self.range
    }

    /// Composed probability of a 1 for an input at position `u` of the unit interval.
    fn probability_at(&self, u: f64) -> f64 {
        self.low + u * (self.high - self.low)
    }
}

impl NumericMechanism for LOneBitMean {
    fn range(&self) -> Range {
        self.range
    }

    fn epsilon(&self) -> f64 {
        self.epsilon_1
    }

    /// A fresh device: its rounding offset is fresh too, so the grid point is
    /// `floor(u steps)`, one up with probability [`Threshold::floor`] of the
    /// fraction (alpha-point rounding with a 64-bit offset; the batch kernel
    /// compares the same threshold).
    fn perturb<R: CryptoRng + ?Sized>(&self, x: f64, rng: &mut R) -> Result<GridPoint, LdpError> {
        let (floor, frac) = floor_fraction(self.grid_position(self.range.to_unit(x)?));
        let coarse = (floor + u32::from(Threshold::floor(frac).sample(rng))).min(self.steps);
        let bit = self.permanent(coarse, rng)?;
        self.instantaneous(&bit, rng)
    }

    fn grid(&self, branch: u8) -> Option<Affine> {
        // Bit b decodes to lo + w (b - P_min)/(P_max - P_min): unbiased, as P is linear.
        let r = self.range;
        let slope = self.high - self.low;
        (branch == 0).then(|| Affine {
            offset: r.lo() - r.width() * self.low / slope,
            scale: r.width() / slope,
        })
    }

    fn is_valid_output(&self, point: GridPoint) -> bool {
        point.branch == 0 && (point.index == 0 || point.index == 1)
    }

    fn variance_at(&self, x: f64) -> f64 {
        let Ok(u) = self.range.to_unit(x) else {
            return f64::NAN;
        };
        let p = self.probability_at(u);
        let w = self.range.width() / (self.high - self.low);
        p * (1.0 - p) * w * w
    }
}

impl TwoLayer for LOneBitMean {
    type Permanent = bool;
    type Output = GridPoint;

    fn coarse_domain(&self) -> u32 {
        self.steps + 1
    }

    fn epsilon_perm(&self) -> f64 {
        self.perm.epsilon()
    }

    fn epsilon_1(&self) -> f64 {
        self.epsilon_1
    }

    fn epsilon_change(&self) -> f64 {
        // The permanent bit is kept with the keep probability, flipped otherwise.
        let p = self.keep.prob();
        round_up_loss((p / (1.0 - p)).ln())
    }

    fn permanent<R: CryptoRng + ?Sized>(&self, coarse: u32, rng: &mut R) -> Result<bool, LdpError> {
        if coarse > self.steps {
            return Err(LdpError::ValueOutOfDomain {
                value: u64::from(coarse),
                domain: self.steps + 1,
            });
        }
        let u = f64::from(coarse) / f64::from(self.steps);
        Ok(self.perm.threshold_at(u).sample(rng))
    }

    fn instantaneous<R: CryptoRng + ?Sized>(
        &self,
        permanent: &bool,
        rng: &mut R,
    ) -> Result<GridPoint, LdpError> {
        let bit = self.keep.sample(rng) == *permanent;
        Ok(GridPoint {
            branch: 0,
            index: i64::from(bit),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epsilon_change_is_the_fresh_flip_log_odds() {
        let m = LOneBitMean::new(4.0, 2.0, Range::UNIT).unwrap();
        let p = m.keep.prob();
        // Permanent 1 against permanent 0, report 1: p against 1 - p.
        assert!((m.epsilon_change() - (p / (1.0 - p)).ln()).abs() < 1e-9);
        // Above epsilon_1, below epsilon_perm: the fresh layer is noisier than one report.
        assert!(m.epsilon_change() > 2.0 && m.epsilon_change() < 4.0);
    }

    #[test]
    fn alpha_rounding_is_unbiased_on_average_over_offsets() {
        let m = LOneBitMean::with_steps(4.0, 2.0, Range::new(0.0, 100.0).unwrap(), 8).unwrap();
        for x in [0.0, 3.0, 12.5, 37.0, 99.9, 100.0] {
            let n = 10_000;
            let mean: f64 = (0..n)
                .map(|i| f64::from(m.coarse(x, (f64::from(i) + 0.5) / f64::from(n)).unwrap()))
                .sum::<f64>()
                / f64::from(n);
            assert!((mean * 12.5 - x).abs() < 1e-6, "{x}: {}", mean * 12.5);
        }
        assert_eq!(m.coarse(250.0, 0.999).unwrap(), 8);
        assert_eq!(m.coarse(-5.0, 0.999).unwrap(), 0);
    }

    #[test]
    fn the_composed_bit_spends_epsilon_1() {
        let m = LOneBitMean::new(4.0, 2.0, Range::UNIT).unwrap();
        assert!((m.epsilon() - 2.0).abs() < 1e-9, "{}", m.epsilon());
        assert!((m.epsilon_perm() - 4.0).abs() < 1e-9);
        assert!((m.low + m.high - 1.0).abs() < 1e-12);
        assert!(LOneBitMean::new(2.0, 2.0, Range::UNIT).is_err());
    }
}
