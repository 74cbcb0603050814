//! Exact integer sampling primitives: Bernoulli draws against 64-bit thresholds and
//! bounded uniform integers without modulo bias.
//!
//! Every random decision in hush-ldp goes through these two types, so the
//! probabilities that the privacy proofs and estimators use are exactly the
//! ones the code realizes (Mironov 2012 shows how floating-point sampling
//! breaks differential privacy; integer comparisons cannot).

use rand::Rng;

/// 2^64 as a float, the denominator of every threshold probability.
pub const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

/// A Bernoulli trial whose success probability is exactly `threshold / 2^64`.
///
/// A uniform `u64` below the threshold is a success. Probability 1 is not
/// representable, which no privacy mechanism needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Threshold(u64);

impl Threshold {
    /// The threshold realizing probability `t / 2^64`.
    pub const fn from_raw(t: u64) -> Self {
        Threshold(t)
    }

    /// The largest threshold whose probability does not exceed `p`.
    ///
    /// `p` is clamped to `[0, 1)`; NaN becomes 0.
    pub fn floor(p: f64) -> Self {
        let scaled = (p * TWO_POW_64).floor();
        if scaled.is_nan() || scaled <= 0.0 {
            Threshold(0)
        } else if scaled >= TWO_POW_64 {
            Threshold(u64::MAX)
        } else {
            // In [1, 2^64): the cast is exact for every f64 in range.
            Threshold(scaled as u64)
        }
    }

    /// The smallest threshold whose probability is at least `p` (clamped like [`Threshold::floor`]).
    pub fn ceil(p: f64) -> Self {
        let scaled = (p * TWO_POW_64).ceil();
        if scaled.is_nan() || scaled <= 0.0 {
            Threshold(0)
        } else if scaled >= TWO_POW_64 {
            Threshold(u64::MAX)
        } else {
            Threshold(scaled as u64)
        }
    }

    /// The largest threshold whose probability does not exceed `a / (a + b)`
    /// (for non-negative `a`, `b` with a positive sum).
    ///
    /// Whichever of `a / (a + b)` and `b / (a + b)` is smaller is computed in
    /// floating point, where it has full relative precision, and the other
    /// side is its exact integer complement: rounding `1 - 1e-9` directly would
    /// lose eight digits of the small side, and with them the privacy ratio.
    pub fn floor_split(a: f64, b: f64) -> Self {
        if a <= b {
            Self::floor(a / (a + b))
        } else {
            Self::ceil(b / (a + b)).complement()
        }
    }

    /// The complementary threshold: probability `1 - self.prob()` exactly.
    ///
    /// Threshold 0 has no representable complement (probability 1) and maps to
    /// `u64::MAX`, which callers exclude by validating thresholds first.
    pub const fn complement(self) -> Self {
        if self.0 == 0 {
            Threshold(u64::MAX)
        } else {
            Threshold(self.0.wrapping_neg())
        }
    }

    /// The raw integer threshold.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The realized probability `t / 2^64` (exact up to f64 rounding of `t`).
    pub fn prob(self) -> f64 {
        self.0 as f64 / TWO_POW_64
    }

    /// The realized probability of failure, `(2^64 - t) / 2^64`, computed without cancellation.
    pub fn complement_prob(self) -> f64 {
        if self.0 == 0 {
            1.0
        } else {
            self.0.wrapping_neg() as f64 / TWO_POW_64
        }
    }

    /// Draws one Bernoulli trial.
    #[inline]
    pub fn sample<R: Rng + ?Sized>(self, rng: &mut R) -> bool {
        rng.next_u64() < self.0
    }
}

/// Uniform integers in `0..n`, exact, by Lemire's multiply-and-reject method
/// (Lemire 2019, "Fast random integer generation in an interval").
///
/// The rejection bound `2^64 mod n` is computed once here, so the sampling loop
/// has no division.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UniformBelow {
    n: u64,
    reject_below: u64,
}

impl UniformBelow {
    /// A sampler for `0..n`; `n` must be at least 1 (a broken invariant otherwise).
    pub fn new(n: u64) -> Self {
        assert!(
            n >= 1,
            "UniformBelow needs a non-empty range; callers validate sizes first"
        );
        UniformBelow {
            n,
            reject_below: n.wrapping_neg() % n,
        }
    }

    /// The size of the range.
    pub fn n(self) -> u64 {
        self.n
    }

    /// Draws one uniform integer in `0..n`.
    #[inline]
    pub fn sample<R: Rng + ?Sized>(self, rng: &mut R) -> u64 {
        loop {
            let wide = u128::from(rng.next_u64()) * u128::from(self.n);
            if (wide as u64) >= self.reject_below {
                return (wide >> 64) as u64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::ChaCha12Rng;

    #[test]
    fn floor_and_ceil_bracket_the_probability() {
        for p in [1e-9, 0.1, 0.25, 1.0 / 3.0, 0.5, 0.731_058_578_6, 0.999_999] {
            let lo = Threshold::floor(p);
            let hi = Threshold::ceil(p);
            assert!(lo.prob() <= p && hi.prob() >= p, "p = {p}");
            assert!(hi.raw() - lo.raw() <= 4096, "f64 resolution near p = {p}");
        }
        assert_eq!(Threshold::floor(0.5).raw(), 1 << 63);
        assert_eq!(Threshold::floor(-1.0).raw(), 0);
        assert_eq!(Threshold::floor(f64::NAN).raw(), 0);
        assert_eq!(Threshold::floor(2.0).raw(), u64::MAX);
    }

    #[test]
    fn complement_is_exact() {
        let t = Threshold::floor(0.3);
        assert_eq!(t.raw().wrapping_add(t.complement().raw()), 0);
        assert!((t.prob() + t.complement().prob() - 1.0).abs() < 1e-15);
        assert!((t.complement_prob() - t.complement().prob()).abs() < 1e-15);
    }

    #[test]
    fn uniform_below_hits_every_value_evenly() {
        let mut rng = ChaCha12Rng::seed_from_u64(7);
        let u = UniformBelow::new(3);
        let mut counts = [0u32; 3];
        let n = 300_000;
        for _ in 0..n {
            counts[u.sample(&mut rng) as usize] += 1;
        }
        // Each count is Binomial(n, 1/3): sd = sqrt(n * 2/9) ~ 258; allow 5 sd.
        for c in counts {
            assert!((f64::from(c) - 100_000.0).abs() < 5.0 * 258.2, "{counts:?}");
        }
        assert_eq!(UniformBelow::new(1).sample(&mut rng), 0);
    }

    #[test]
    fn threshold_sampling_matches_probability() {
        let mut rng = ChaCha12Rng::seed_from_u64(11);
        let t = Threshold::floor(0.2);
        let n = 200_000;
        let hits = (0..n).filter(|_| t.sample(&mut rng)).count() as f64;
        // Binomial sd = sqrt(n * 0.2 * 0.8) ~ 178.9; allow 5 sd.
        assert!((hits - 40_000.0).abs() < 5.0 * 178.9, "{hits}");
    }
}
