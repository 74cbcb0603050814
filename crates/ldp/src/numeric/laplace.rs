//! The discrete Laplace mechanism on a fixed public grid, sampled exactly from an integer CDF table.

use rand::{CryptoRng, Rng};

use crate::batch::{LaplaceTable, LazyTable};
use crate::epsilon::{check_epsilon, round_up_loss};
use crate::sampling::{TWO_POW_64, Threshold, floor_fraction};
use crate::{Affine, GridPoint, LdpError, NumericMechanism, Range};

/// Smallest and largest grid resolution (steps across the range).
pub const LAPLACE_STEPS: std::ops::RangeInclusive<u32> = 1..=1 << 16;

/// Longest CDF table kept; the geometric tail past it is handled by memorylessness.
const MAX_TABLE: usize = 8192;

/// The discrete Laplace mechanism on a grid of `m` steps across the range.
///
/// The clipped input is placed on the grid `0..=m` by unbiased randomized
/// rounding (to `k`), and the report is `k + Z` with `Pr[Z = z]` proportional to
/// `g(|z|)`, a geometric weight with ratio `alpha = e^(-eps/m)`: the
/// discrete analogue of Laplace noise with sensitivity `m` grid steps.
///
/// **Sampling.** `|Z|` is drawn with one uniform `u64` against a table of
/// integer CDF thresholds `floor(2^64 (1 - alpha^(k+1)))` for `k` below the table
/// length `L`; a draw past the table adds `L` and starts again, which is exact
/// for the geometric law's memoryless tail. A sign bit follows, and `(-, 0)` is
/// rejected so zero is not counted twice. No logarithm touches the noise
/// (Mironov 2012); all randomness is integer comparisons.
///
/// **Privacy.** The realized weights are `g(k) = c_(k mod L) tau^(k div L)`,
/// where the `c` come from the table and `tau` is its tail mass. Two inputs
/// place the center at most `m` steps apart, so the output ratio is at most
/// `max_a g(a) / g(a + m)` over one period of `a` (the weights are checked
/// non-increasing at construction). [`DiscreteLaplace::epsilon`] is the log of
/// that maximum, computed from the integer table and rounded up; the table is
/// built with `alpha` a hair above `e^(-eps/m)` so it does not exceed `eps`.
/// Randomized rounding only mixes inputs on the grid, which preserves the bound.
///
/// **Arguments.** `epsilon` in `(0, 20]`; any finite `lo < hi`; `steps` (`m`)
/// in `[1, 65536]`, default [`DiscreteLaplace::DEFAULT_STEPS`]. Outputs are
/// unbounded integers, reported as `lo + width * index / m`.
///
/// **Utility.** Unbiased; on `[-1, 1]` the variance is `4 (E[Z^2] + r(1 - r)) / m^2`
/// (`r` the rounding fraction), which tends to the continuous Laplace
/// mechanism's `8/eps^2` as `m` grows.
///
/// **Paper.** Ghosh, Roughgarden, Sundararajan, "Universally Utility-Maximizing
/// Privacy Mechanisms", STOC 2009 (the geometric mechanism); Canonne, Kamath,
/// Steinke, "The Discrete Gaussian for Differential Privacy", NeurIPS 2020
/// (exact integer sampling).
#[derive(Debug, Clone, PartialEq)]
pub struct DiscreteLaplace {
    range: Range,
    steps: u32,
    /// `cdf[k]` is the threshold for `|Z| <= k` within one period.
    cdf: Vec<u64>,
    weights: Weights,
    epsilon: f64,
    noise_second_moment: f64,
    /// The same table arranged for the batch kernel's lookups, built on first use.
    batch: LazyTable,
}

impl DiscreteLaplace {
    /// The grid resolution used when none is given: fine enough that rounding
    /// adds under 0.001% to the variance at eps = 1.
    pub const DEFAULT_STEPS: u32 = 1024;

    /// Builds the mechanism for `epsilon` over `range` with the default grid.
    pub fn new(epsilon: f64, range: Range) -> Result<Self, LdpError> {
        Self::with_steps(epsilon, range, Self::DEFAULT_STEPS)
    }

    /// Builds the mechanism with `steps` grid steps across the range.
    pub fn with_steps(epsilon: f64, range: Range, steps: u32) -> Result<Self, LdpError> {
        let epsilon = check_epsilon(epsilon)?;
        if !LAPLACE_STEPS.contains(&steps) {
            return Err(LdpError::Grid {
                value: u64::from(steps),
                min: *LAPLACE_STEPS.start(),
                max: *LAPLACE_STEPS.end(),
            });
        }
        // Slightly less loss per step than asked, so threshold rounding cannot push past
        // epsilon. The table's rounding moves the log ratio by about 1e-12 whatever
        // epsilon is, so a relative margin of 1e-9 does not cover epsilons below about
        // 0.002; those retry with a wider margin (at most 1e-6, which the stated
        // epsilon then reflects).
        for margin in [1e-9, 1e-8, 1e-7, 1e-6] {
            let per_step = epsilon / f64::from(steps) * (1.0 - margin);
            let cdf = Self::cdf_table(per_step);
            let weights = Weights::new(&cdf)?;
            let loss = weights.max_log_ratio(steps as usize);
            if loss <= epsilon {
                return Ok(DiscreteLaplace {
                    range,
                    steps,
                    noise_second_moment: weights.noise_second_moment(),
                    batch: LazyTable::default(),
                    cdf,
                    weights,
                    epsilon: round_up_loss(loss),
                });
            }
        }
        Err(LdpError::Unrealizable(
            "discrete Laplace table rounding exceeds epsilon",
        ))
    }

    /// The integer CDF thresholds `floor(2^64 (1 - alpha^(k+1)))` of one table period,
    /// `alpha = e^(-per_step)`.
    fn cdf_table(per_step: f64) -> Vec<u64> {
        let len = ((7.0 / per_step).ceil() as usize).clamp(1, MAX_TABLE);
        // Each threshold comes from whichever of the CDF and the survival function f64
        // holds to full relative precision: the CDF `-expm1(-x)` while it is below one
        // half (there `1 - exp(-x)` would keep only the absolute precision of numbers
        // near one, and the weights, its differences, would lose digits in proportion
        // to `1/per_step`), the survival `exp(-x)` past that (where the CDF may be
        // within 2^-40 of one). The two agree as exact reals.
        (0..len)
            .map(|k| {
                let x = per_step * (k as f64 + 1.0);
                if x < std::f64::consts::LN_2 {
                    Threshold::floor(-(-x).exp_m1()).raw()
                } else {
                    Threshold::ceil((-x).exp()).raw().wrapping_neg()
                }
            })
            .collect()
    }

    /// The grid resolution `m`.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// The realized probability mass function of the noise `Z` at `z` (grid steps).
    pub fn noise_probability(&self, z: i64) -> f64 {
        self.weights.weight(z.unsigned_abs()) / (2.0 - self.weights.weight(0))
    }

    /// The integer CDF thresholds of one table period.
    pub(crate) fn cdf(&self) -> &[u64] {
        &self.cdf
    }

    /// The table length `L` (the period of the realized weights).
    pub(crate) fn cdf_len(&self) -> usize {
        self.cdf.len()
    }

    /// The table arranged for the batch kernel (built on the first call).
    pub(crate) fn batch_table(&self) -> &LaplaceTable {
        self.batch.get_or_build(&self.cdf)
    }

    /// Draws `|Z|` from the table, restarting past its end (memorylessness).
    pub(crate) fn sample_magnitude<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        let mut base = 0u64;
        loop {
            let u = rng.next_u64();
            let k = self.cdf.partition_point(|&c| c <= u);
            if k < self.cdf.len() {
                return base + k as u64;
            }
            base += self.cdf.len() as u64;
        }
    }

    /// Draws one noise value `Z`.
    pub(crate) fn sample_noise<R: Rng + ?Sized>(&self, rng: &mut R) -> i64 {
        loop {
            let magnitude = self.sample_magnitude(rng) as i64;
            let negative = rng.next_u32() & 1 == 1;
            if !(negative && magnitude == 0) {
                return if negative { -magnitude } else { magnitude };
            }
        }
    }

    /// The grid cell below the clipped input and the rounding fraction.
    #[inline]
    pub(crate) fn grid_position(&self, x: f64) -> Result<(i64, f64), LdpError> {
        self.range.to_unit(x)?;
        Ok(self.grid_position_finite(x))
    }

    /// [`DiscreteLaplace::grid_position`] of an input known to be finite.
    #[inline]
    pub(crate) fn grid_position_finite(&self, x: f64) -> (i64, f64) {
        // In `[0, steps]`, so the floor is exact and vectorizes.
        let (floor, frac) = floor_fraction(self.grid_offset_finite(x));
        (i64::from(floor), frac)
    }

    /// The clipped finite input as a real position on the grid, in `[0, steps]`:
    /// its floor and fraction are [`DiscreteLaplace::grid_position`].
    #[inline(always)]
    pub(crate) fn grid_offset_finite(&self, x: f64) -> f64 {
        self.range.to_unit_finite(x) * f64::from(self.steps)
    }
}

impl NumericMechanism for DiscreteLaplace {
    fn range(&self) -> Range {
        self.range
    }

    fn epsilon(&self) -> f64 {
        self.epsilon
    }

    fn perturb<R: CryptoRng + ?Sized>(&self, x: f64, rng: &mut R) -> Result<GridPoint, LdpError> {
        let (floor, frac) = self.grid_position(x)?;
        let k = floor + i64::from(Threshold::floor(frac).sample(rng));
        Ok(GridPoint {
            branch: 0,
            index: k + self.sample_noise(rng),
        })
    }

    fn grid(&self, branch: u8) -> Option<Affine> {
        (branch == 0).then(|| Affine {
            offset: self.range.lo(),
            scale: self.range.width() / f64::from(self.steps),
        })
    }

    fn is_valid_output(&self, point: GridPoint) -> bool {
        // Noise past 2^40 steps has probability far below 2^-64 per draw.
        point.branch == 0 && point.index.unsigned_abs() < 1 << 40
    }

    fn variance_at(&self, x: f64) -> f64 {
        let Ok((_, frac)) = self.grid_position(x) else {
            return f64::NAN;
        };
        let step = self.range.width() / f64::from(self.steps);
        (self.noise_second_moment + frac * (1.0 - frac)) * step * step
    }

    fn worst_case_variance(&self) -> f64 {
        let step = self.range.width() / f64::from(self.steps);
        (self.noise_second_moment + 0.25) * step * step
    }
}

/// The realized geometric weights of one table period and its tail mass.
#[derive(Debug, Clone, PartialEq)]
struct Weights {
    /// `c[k] = Pr[|Z| draw = k]` within the first period.
    period: Vec<f64>,
    /// Mass past the table: each further period is scaled by it.
    tail: f64,
}

impl Weights {
    fn new(cdf: &[u64]) -> Result<Self, LdpError> {
        let mut period = Vec::with_capacity(cdf.len());
        let mut prev = 0u64;
        for &c in cdf {
            if c <= prev && !period.is_empty() || c == 0 {
                return Err(LdpError::Unrealizable(
                    "discrete Laplace weights round to zero",
                ));
            }
            period.push((c - prev) as f64 / TWO_POW_64);
            prev = c;
        }
        let tail = prev.wrapping_neg() as f64 / TWO_POW_64;
        if tail <= 0.0
            || period.windows(2).any(|w| w[1] > w[0])
            || period.last().is_some_and(|&l| l < period[0] * tail)
        {
            return Err(LdpError::Unrealizable(
                "discrete Laplace weights are not non-increasing",
            ));
        }
        Ok(Weights { period, tail })
    }

    fn weight(&self, k: u64) -> f64 {
        let len = self.period.len() as u64;
        self.period[(k % len) as usize] * self.tail.powf((k / len) as f64)
    }

    fn log_weight(&self, k: u64) -> f64 {
        let len = self.period.len() as u64;
        self.period[(k % len) as usize].ln() + (k / len) as f64 * self.tail.ln()
    }

    /// `max_a ln g(a) - ln g(a + shift)`; periodic in `a`, so one period suffices.
    fn max_log_ratio(&self, shift: usize) -> f64 {
        (0..self.period.len() as u64)
            .map(|a| self.log_weight(a) - self.log_weight(a + shift as u64))
            .fold(0.0, f64::max)
    }

    /// `E[Z^2]` for the two-sided law `Pr[Z = z] = g(|z|) / (2 - g(0))`.
    fn noise_second_moment(&self) -> f64 {
        let len = self.period.len() as f64;
        let t = self.tail;
        let s0 = 1.0 / (1.0 - t);
        let s1 = t / ((1.0 - t) * (1.0 - t));
        let s2 = t * (1.0 + t) / ((1.0 - t) * (1.0 - t) * (1.0 - t));
        let one_sided: f64 = self
            .period
            .iter()
            .enumerate()
            .map(|(r, &c)| {
                let r = r as f64;
                c * (r * r * s0 + 2.0 * r * len * s1 + len * len * s2)
            })
            .sum();
        2.0 * one_sided / (2.0 - self.period[0])
    }
}
