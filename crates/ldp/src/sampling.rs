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

/// `(floor(s), s - floor(s))`, exactly, for `s` in `[0, 2^32)`; other `s`
/// (negative, too large, NaN) give an unspecified integer, and NaN a NaN
/// fraction.
///
/// Every step is float arithmetic or a bit cast, so a loop over many inputs
/// vectorizes: Rust's saturating `as u32` handles NaN and out-of-range values
/// with a per-lane branch, and SSE2 has no packed unsigned conversion at all.
///
/// **Why it is exact.** `MAGIC = 1.5 * 2^52`; every `y` in `[2^52, 2^53)` is a
/// float with ulp 1, so adding `MAGIC` to `x = s - 0.5` (exact for `s >= 0.5`,
/// and for smaller `s` any rounding leaves it in `[-0.5, 0)`) rounds `x` to
/// the nearest integer `r`, ties to even, and the low 32 bits of the sum are
/// `r mod 2^32`. For a non-integer `s`, `x` is within 1/2 of `floor(s)`
/// without being a tie, so `r = floor(s)`; for an integer `s`, `x` is a tie
/// and `r` is `s - 1` or `s`, and a fraction of exactly 1 is carried. `s - r`
/// is exact by Sterbenz's lemma (`r <= s <= r + 1`, so `r / 2 <= s <= 2 r`
/// when `r >= 1`; for `r = 0` it is `s` itself).
#[inline(always)]
pub(crate) fn floor_fraction(s: f64) -> (u32, f64) {
    const MAGIC: f64 = 6_755_399_441_055_744.0;
    let m = (s - 0.5) + MAGIC;
    let frac = s - (m - MAGIC);
    let carry = frac >= 1.0;
    (
        (m.to_bits() as u32).wrapping_add(u32::from(carry)),
        if carry { frac - 1.0 } else { frac },
    )
}

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
    #[inline]
    pub fn floor(p: f64) -> Self {
        // A float-to-integer cast truncates toward zero, which is the floor for
        // the non-negative values that matter, and saturates: NaN and negatives
        // give 0, 2^64 and above `u64::MAX`. So the cast alone is the clamped
        // floor, without a call to libm's `floor` (SSE2 has no rounding
        // instruction), which keeps batch loops over many inputs vectorizable.
        Threshold((p * TWO_POW_64) as u64)
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

    /// The `bits` most significant bits of the threshold, `bits` in `1..=63`.
    ///
    /// Batch kernels compare a uniform `bits`-bit prefix with this first: below
    /// it the trial succeeds and above it fails, whatever the remaining bits
    /// are; only a tie (probability `2^-bits`) needs more randomness, compared
    /// against [`Threshold::after_prefix`]. The trial stays exact while drawing
    /// `bits` random bits instead of 64 in all but the tie.
    #[inline]
    pub const fn prefix(self, bits: u32) -> u64 {
        self.0 >> (64 - bits)
    }

    /// Compares a uniform `bits`-bit prefix `r` with the threshold's prefix:
    /// `(success, open)`. When `open` is false, `success` is the trial's outcome;
    /// when it is true the prefix tied and the rest of the threshold is not
    /// zero, so fresh bits must decide against [`Threshold::after_prefix`] (a
    /// tie against a zero rest is a certain failure and draws nothing).
    /// Branch-free, for batch loops.
    #[inline]
    pub const fn prefix_trial(self, r: u64, bits: u32) -> (bool, bool) {
        let p = self.prefix(bits);
        (r < p, r == p && self.after_prefix(bits).0 != 0)
    }

    /// The threshold that a fresh uniform `u64` is compared against after a
    /// `bits`-bit prefix tied with [`Threshold::prefix`], `bits` in `1..=63`.
    ///
    /// Given the tie, the trial succeeds exactly when the rest of the uniform
    /// number is below the rest of the threshold, `t mod 2^(64 - bits)`, which
    /// is this threshold's probability once scaled to 64 bits.
    #[inline]
    pub const fn after_prefix(self, bits: u32) -> Threshold {
        Threshold(self.0 << bits)
    }
}

/// A threshold seen through a `bits`-bit prefix (`bits` in `1..=31`): its
/// prefix `p` and whether its rest is nonzero, packed as `2 p + rest` in one
/// `u32`.
///
/// A uniform `bits`-bit prefix `r` decides the trial against the full
/// threshold unless it ties: `2 r + 1 < key` exactly when `r < p` (a success
/// whatever the remaining bits), and `2 r + 1 == key` exactly when `r == p`
/// with a nonzero rest (open: fresh bits decide against
/// [`Threshold::after_prefix`]); a tie against a zero rest is a certain
/// failure. That is [`Threshold::prefix_trial`] on 32-bit keys, which batch
/// kernels keep in plain arrays and compare in vector registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrefixKey(u32);

impl PrefixKey {
    /// The key of threshold `t` for `bits`-bit prefixes.
    pub const fn of(t: Threshold, bits: u32) -> Self {
        PrefixKey(2 * t.prefix(bits) as u32 + (t.after_prefix(bits).0 != 0) as u32)
    }

    /// The key of [`Threshold::floor`]`(p)`, computed with float arithmetic
    /// only, without a float-to-64-bit conversion (SSE2 has no packed one).
    /// Kernels that start from a grid position use [`PrefixKey::rounding`],
    /// which gives the same key for its fraction with one floor fewer.
    ///
    /// For `p` in `[0, 1)`, `p 2^bits` is exact (a power-of-two scaling), its
    /// integer part is the prefix and its fraction, scaled by `2^(64 - bits)`,
    /// is the rest of `floor(p 2^64)` before flooring, nonzero exactly when it
    /// is at least 1. Other `p` are clamped first, without a branch: NaN and
    /// negatives to 0, where `floor` gives 0 too, and 1 or more to `1 - 2^-53`,
    /// whose prefix is all ones with a nonzero rest, like `floor`'s `u64::MAX`.
    #[inline(always)]
    pub fn floor(p: f64, bits: u32) -> Self {
        const BELOW_ONE: f64 = 1.0 - f64::EPSILON / 2.0;
        // Not `clamp`, which keeps NaN: `max` turns it into 0.
        #[allow(clippy::manual_clamp)]
        let p = p.max(0.0).min(BELOW_ONE);
        let (prefix, frac) = floor_fraction(p * f64::from(1u32 << bits));
        let rest = frac * (TWO_POW_64 / f64::from(1u32 << bits));
        PrefixKey(2 * prefix + u32::from(rest >= 1.0))
    }

    /// Randomized rounding of a position `s` in `[0, 2^(32 - bits))`: its floor,
    /// and the key of the probability of rounding up, [`Threshold::floor`]`(s -
    /// floor(s))`, from a single exact floor of `s 2^bits`.
    ///
    /// `s 2^bits` is exact; its floor `q` holds `floor(s)` above the low `bits`
    /// bits and the prefix `floor(frac 2^bits)` in them, and its fraction is
    /// `frac 2^bits - prefix`, so the rest of `floor(frac 2^64)` is nonzero
    /// exactly when that fraction is at least `2^(bits - 64)`. The same values
    /// as [`PrefixKey::floor`] on the fraction of `s`, with one floor instead
    /// of two.
    #[inline(always)]
    pub fn rounding(s: f64, bits: u32) -> (u32, Self) {
        let (q, frac) = floor_fraction(s * f64::from(1u32 << bits));
        let rest = frac * (TWO_POW_64 / f64::from(1u32 << bits));
        (
            q >> bits,
            PrefixKey(2 * (q & ((1 << bits) - 1)) + u32::from(rest >= 1.0)),
        )
    }

    /// The threshold's prefix.
    pub const fn prefix(self) -> u32 {
        self.0 >> 1
    }

    /// Whether the threshold's bits after the prefix are not all zero.
    pub const fn rest_nonzero(self) -> bool {
        self.0 & 1 == 1
    }

    /// `(success, open)` for a uniform prefix `r < 2^bits`, as
    /// [`Threshold::prefix_trial`] gives them. Branch-free.
    #[inline(always)]
    pub const fn trial(self, r: u32) -> (bool, bool) {
        let r = 2 * r + 1;
        (r < self.0, r == self.0)
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

    /// The same law drawn from `bits` uniform bits at a time (`bits` in `1..=32`),
    /// or `None` if `n` exceeds `2^bits`.
    ///
    /// Batch kernels use it to spend 16 or 32 random bits per draw instead of 64.
    pub fn narrow(self, bits: u32) -> Option<NarrowUniform> {
        if !(1..=32).contains(&bits) || self.n > 1 << bits {
            return None;
        }
        Some(NarrowUniform {
            n: self.n,
            n_minus_one: (self.n - 1) as u32,
            bits,
            // 2^bits mod n, computed here so that the sampling loop has no division.
            reject_below: ((1u64 << bits) % self.n) as u32,
        })
    }
}

/// Lemire's method on `bits`-bit words: uniform integers in `0..n` for `n <= 2^bits`.
///
/// Built by [`UniformBelow::narrow`]. [`NarrowUniform::map`] turns `bits`
/// uniform bits into a candidate and says whether it is accepted; a rejected
/// candidate is retried with fresh bits, which leaves exactly the uniform law
/// on `0..n` (Lemire 2019).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NarrowUniform {
    n: u64,
    /// `n - 1`, which fits 32 bits even when `n = 2^32`, so `map` multiplies
    /// 32-bit operands (one packed instruction on every x86-64).
    n_minus_one: u32,
    bits: u32,
    reject_below: u32,
}

impl NarrowUniform {
    /// The size of the range.
    pub fn n(self) -> u64 {
        self.n
    }

    /// Maps `bits` uniform bits (the low bits of `word`; higher bits must be zero)
    /// to a candidate in `0..n` and whether it is accepted.
    ///
    /// Branch-free, so a batch loop can map a whole array and retry the rare
    /// rejections (probability below `n / 2^bits`) afterwards.
    #[inline]
    pub fn map(self, word: u32) -> (u32, bool) {
        // word < 2^bits <= 2^32 and n <= 2^bits, so `word * n`, computed as
        // `word * (n - 1) + word`, fits in 64 bits.
        let wide = u64::from(word) * u64::from(self.n_minus_one) + u64::from(word);
        let low = (wide & ((1u64 << self.bits) - 1)) as u32;
        ((wide >> self.bits) as u32, low >= self.reject_below)
    }

    /// Draws one uniform integer in `0..n`, `bits` random bits per attempt.
    #[inline]
    pub fn sample<R: Rng + ?Sized>(self, rng: &mut R) -> u32 {
        loop {
            let word = (rng.next_u64() >> (64 - self.bits)) as u32;
            let (value, accepted) = self.map(word);
            if accepted {
                return value;
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
    fn floor_by_cast_is_the_clamped_floor() {
        let reference = |p: f64| {
            let scaled = (p * TWO_POW_64).floor();
            if scaled.is_nan() || scaled <= 0.0 {
                0
            } else if scaled >= TWO_POW_64 {
                u64::MAX
            } else {
                scaled as u64
            }
        };
        let mut rng = ChaCha12Rng::seed_from_u64(3);
        let specials = [
            0.0,
            -0.0,
            -1.0,
            1.0,
            2.0,
            0.5,
            1e-300,
            5e-20,
            5.4e-20,
            1.0 - 1e-16,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
        ];
        let random = (0..10_000).map(|_| rng.next_u64() as f64 / TWO_POW_64);
        for p in specials.into_iter().chain(random) {
            assert_eq!(Threshold::floor(p).raw(), reference(p), "p = {p:e}");
        }
    }

    #[test]
    fn prefix_key_floor_matches_the_floor() {
        let mut rng = ChaCha12Rng::seed_from_u64(5);
        let specials = [
            0.0,
            0.5,
            1.0 / 128.0,
            1e-19,
            5.42e-20,
            5.43e-20,
            1e-300,
            0.999_999_999,
            1.0,
            1.5,
            -0.1,
            1.0 - f64::EPSILON / 2.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        let random = (0..20_000).map(|_| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64);
        let grid = (0..1024).map(|k| f64::from(k) / 1024.0);
        for p in specials.into_iter().chain(random).chain(grid) {
            for bits in [1, 7, 8, 16, 31] {
                let t = Threshold::floor(p);
                let key = PrefixKey::floor(p, bits);
                assert_eq!(key, PrefixKey::of(t, bits), "p = {p:e}, bits = {bits}");
                assert_eq!(u64::from(key.prefix()), t.prefix(bits));
                assert_eq!(key.rest_nonzero(), t.after_prefix(bits).raw() != 0);
                for r in [
                    0,
                    1,
                    key.prefix().saturating_sub(1),
                    key.prefix(),
                    key.prefix() + 1,
                ] {
                    let r = r.min((1 << bits) - 1);
                    assert_eq!(key.trial(r), t.prefix_trial(u64::from(r), bits), "r = {r}");
                }
            }
        }
    }

    #[test]
    fn floor_fraction_is_the_exact_floor() {
        let mut rng = ChaCha12Rng::seed_from_u64(8);
        let below_integers = (1..2000u32).flat_map(|k| {
            let k = f64::from(k);
            [k, k.next_down(), k.next_up(), k - 0.5, k + 0.5]
        });
        let big = [
            4_294_967_295.0,
            4_294_967_294.5,
            2_147_483_648.0,
            65_536.0 - 1e-11,
        ];
        let tiny = [
            0.0,
            -0.0,
            1e-300,
            f64::MIN_POSITIVE,
            0.5,
            0.5f64.next_down(),
            0.25,
        ];
        let random = (0..20_000).map(|_| {
            let scale = f64::from(1u32 << (rng.next_u32() % 32));
            (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * scale
        });
        for s in below_integers.chain(big).chain(tiny).chain(random) {
            let (floor, frac) = floor_fraction(s);
            assert_eq!(f64::from(floor), s.floor(), "s = {s:e}");
            assert_eq!(frac, s - s.floor(), "s = {s:e}");
        }
        assert!(floor_fraction(f64::NAN).1.is_nan());
    }

    #[test]
    fn rounding_matches_the_floor_and_the_fraction_key() {
        let mut rng = ChaCha12Rng::seed_from_u64(6);
        let edges = (0..3000u32).flat_map(|k| {
            let s = f64::from(k) / 256.0;
            [
                s,
                s.next_up(),
                s.next_down().max(0.0),
                s + 2f64.powi(-56),
                s + 2f64.powi(-57),
            ]
        });
        let random =
            (0..20_000).map(|_| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 65_536.0);
        for s in edges.chain(random).chain([0.0, 65_536.0, 1e-300]) {
            // The documented range: s below 2^(32 - bits).
            for bits in [1, 7, 8, 16]
                .into_iter()
                .filter(|&b| s < f64::from(1u32 << (32 - b)))
            {
                let (floor, frac) = floor_fraction(s);
                assert_eq!(
                    PrefixKey::rounding(s, bits),
                    (floor, PrefixKey::floor(frac, bits)),
                    "s = {s:e}, bits = {bits}"
                );
            }
        }
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
    fn prefix_and_rest_recompose_the_threshold() {
        let t = Threshold::floor(0.3);
        for bits in [1, 8, 24, 32, 63] {
            let rest = t.after_prefix(bits).raw() >> bits;
            assert_eq!(
                t.prefix(bits) << (64 - bits) | rest,
                t.raw(),
                "bits = {bits}"
            );
        }
    }

    #[test]
    fn narrow_uniform_is_exhaustively_uniform() {
        // Every 8-bit word, mapped: accepted candidates hit each value equally often.
        for n in [1u64, 3, 7, 100, 255, 256] {
            let narrow = UniformBelow::new(n).narrow(8).unwrap();
            let mut counts = vec![0u32; n as usize];
            for word in 0..256u32 {
                let (v, ok) = narrow.map(word);
                if ok {
                    counts[v as usize] += 1;
                }
            }
            assert!(
                counts.iter().all(|&c| c == counts[0]),
                "n = {n}: {counts:?}"
            );
            assert_eq!(counts[0], 256 / n as u32, "n = {n}");
        }
        assert!(UniformBelow::new(257).narrow(8).is_none());
        assert!(UniformBelow::new(5).narrow(33).is_none());
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
