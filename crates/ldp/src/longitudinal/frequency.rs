//! Two-layer frequency oracles: L-GRR, the longitudinal unary encodings (L-SUE,
//! L-OUE, L-OSUE), dBitFlipPM, and longitudinal local hashing (L-LH).

use rand::CryptoRng;

use super::{TwoLayer, check_layers, compose, symmetric_keep};
use crate::epsilon::{check_domain, check_epsilon, round_up_loss};
use crate::frequency::hash_into;
use crate::sampling::{Threshold, UniformBelow};
use crate::{
    FrequencyOracle, Grr, LdpError, OlhOutput, PackedBits, SupportProbabilities, UnaryEncoding,
};

/// Longitudinal generalized randomized response (L-GRR): GRR at `epsilon_perm`
/// memoized per value, then GRR again over the same domain on every report.
///
/// **Privacy.** The permanent layer reports the true value with `p1` and each
/// other value with `q1 = (1 - p1)/(d - 1)` (integer thresholds, as [`Grr`]), so
/// every report about one value is a function of one `epsilon_perm`-LDP
/// response. A report names one value `y`; it equals the true value with the
/// composed `P = p1 p2 + (1 - p1) q2` and any other given value with
/// `Q = q1 p2 + (1 - q1) q2`, where the instantaneous layer keeps with `p2`
/// and moves to each other value with `q2 = (1 - p2)/(d - 1)`. Both are affine
/// in `p2`, so `P / Q = e^epsilon_1` is solved for `p2` exactly and rounded
/// down (the ratio grows with `p2`); [`LGrr::epsilon`](FrequencyOracle::epsilon)
/// is `ln(P / Q)` from the realized thresholds, rounded up. (The paper's and
/// `multi-freq-ldpy`'s `p2` equate a two-value ratio instead, which for
/// `d > 2` spends less than `epsilon_1`: 1.84 of 2 at `d = 15`,
/// `epsilon_perm = 4`. Here the full `epsilon_1` buys accuracy.)
///
/// **Arguments.** `epsilon_perm` and `epsilon_1` in `(0, 20]` with
/// `epsilon_1 < epsilon_perm`; `domain` in `[2, 2^20]`; values in `0..domain`.
///
/// **Utility.** A report supports the one value it names, so the count
/// estimate `(C(v) - n Q)/(P - Q)` has variance
/// `n (Q (1 - Q) + f (P (1 - P) - Q (1 - Q)))/(P - Q)^2`; the composed channel
/// is GRR with ratio `e^epsilon_1`, so a fresh report costs what GRR at
/// `epsilon_1` costs, whatever `epsilon_perm`.
///
/// **Paper.** Arcolezi, Couchot, Al Bouna, Xiao, "Improving the utility of
/// locally differentially private protocols for longitudinal and
/// multidimensional frequency estimates", 2022 (L-GRR).
#[derive(Debug, Clone, PartialEq)]
pub struct LGrr {
    perm: Grr,
    inst: Grr,
    support: SupportProbabilities,
    epsilon_1: f64,
}

impl LGrr {
    /// Builds L-GRR over `0..domain` with the two epsilons.
    pub fn new(epsilon_perm: f64, epsilon_1: f64, domain: u64) -> Result<Self, LdpError> {
        let (perm_eps, one) = check_layers(epsilon_perm, epsilon_1)?;
        let perm = Grr::new(perm_eps, domain)?;
        let d = perm.domain();
        let (p1, q1) = (perm.keep_probability(), perm.other_probability());
        let e = one.exp();
        // P - e Q = p2 a + (1 - p2) b, which vanishes at p2 = -b / (a - b).
        let a = p1 - e * q1;
        let b = ((1.0 - p1) - e * (1.0 - q1)) / f64::from(d - 1);
        let p2 = -b / (a - b);
        if !(p2 < 1.0 && p2 * f64::from(d) > 1.0) {
            return Err(LdpError::Layers {
                epsilon_1: one,
                epsilon_perm: perm_eps,
            });
        }
        let inst = Grr::with_keep(Threshold::floor(p2), d)?;
        let (p, q) = compose(p1, q1, inst.keep_probability(), inst.other_probability());
        Ok(LGrr {
            perm,
            inst,
            support: SupportProbabilities { p, q },
            epsilon_1: round_up_loss((p / q).ln()),
        })
    }

    /// The permanent layer (GRR at `epsilon_perm`).
    pub fn permanent_layer(&self) -> &Grr {
        &self.perm
    }

    /// The instantaneous layer (GRR with the solved keep probability).
    pub fn instantaneous_layer(&self) -> &Grr {
        &self.inst
    }
}

impl FrequencyOracle for LGrr {
    type Output = u32;

    fn domain(&self) -> u32 {
        self.perm.domain()
    }

    fn epsilon(&self) -> f64 {
        self.epsilon_1
    }

    fn support_probabilities(&self) -> SupportProbabilities {
        self.support
    }

    fn perturb<R: CryptoRng + ?Sized>(&self, value: u32, rng: &mut R) -> Result<u32, LdpError> {
        let permanent = self.perm.perturb(value, rng)?;
        self.inst.perturb(permanent, rng)
    }

    fn for_each_supported(&self, output: &u32, mut f: impl FnMut(u32)) {
        f(*output)
    }

    fn is_valid_output(&self, output: &u32) -> bool {
        *output < self.domain()
    }
}

impl TwoLayer for LGrr {
    type Permanent = u32;
    type Output = u32;

    fn coarse_domain(&self) -> u32 {
        self.domain()
    }

    fn epsilon_perm(&self) -> f64 {
        self.perm.epsilon()
    }

    fn epsilon_1(&self) -> f64 {
        self.epsilon_1
    }

    fn epsilon_change(&self) -> f64 {
        // Any two permanent values: the fresh GRR's keep/other ratio.
        self.inst.epsilon()
    }

    fn permanent<R: CryptoRng + ?Sized>(&self, coarse: u32, rng: &mut R) -> Result<u32, LdpError> {
        self.perm.perturb(coarse, rng)
    }

    fn instantaneous<R: CryptoRng + ?Sized>(
        &self,
        permanent: &u32,
        rng: &mut R,
    ) -> Result<u32, LdpError> {
        self.inst.perturb(*permanent, rng)
    }
}

/// Which longitudinal unary encoding: the permanent layer, then the instantaneous one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LUnaryVariant {
    /// L-SUE (basic RAPPOR): symmetric unary encoding in both layers.
    Sue,
    /// L-OUE: optimized unary encoding in both layers (the instantaneous one keeps a 1 with 1/2).
    Oue,
    /// L-OSUE: optimized unary encoding, then a symmetric flip of every bit.
    Osue,
}

impl LUnaryVariant {
    fn name(self) -> &'static str {
        match self {
            Self::Sue => "L-SUE",
            Self::Oue => "L-OUE",
            Self::Osue => "L-OSUE",
        }
    }
}

/// Longitudinal unary encodings: a permanent unary-encoded bit vector at
/// `epsilon_perm`, memoized per value, and on every report each bit set
/// again independently, a 1 with `p2` and a 0 with `q2`.
///
/// **Privacy.** The permanent layer is [`UnaryEncoding`] at `epsilon_perm`
/// (SUE for L-SUE, OUE for L-OUE and L-OSUE), so all reports about one value
/// reveal at most `epsilon_perm`. In one report each bit is independently 1
/// with the composed `P = p1 p2 + (1 - p1) q2` at the true value's position and
/// `Q = q1 p2 + (1 - q1) q2` elsewhere; two inputs differ in two positions, so
/// the ratio of any report's probabilities is at most
/// `P (1 - Q) / ((1 - P) Q)`. The instantaneous thresholds are solved so that
/// this is `e^epsilon_1` (L-SUE and L-OSUE: a symmetric flip, `q2 = 1 - p2`,
/// rounded down; L-OUE: `p2 = 1/2` and `q2` found by bisection, rounded up,
/// as the ratio falls with `q2`), and `epsilon_1` is that ratio's log from the
/// realized thresholds, rounded up.
///
/// **Arguments.** `epsilon_perm` and `epsilon_1` in `(0, 20]` with
/// `epsilon_1 < epsilon_perm`; `domain` in `[2, 2^20]`; values in `0..domain`.
/// L-OUE, whose fresh layer keeps a permanent 1 with exactly 1/2, reaches only
/// `epsilon_1 < ln((2 - q1)/(3 q1))` (3.6 at `epsilon_perm = 4`).
///
/// **Utility.** The count estimate has variance
/// `n (Q (1 - Q) + f (P (1 - P) - Q (1 - Q)))/(P - Q)^2`. L-OSUE reaches OUE's
/// `4 e^eps/(e^eps - 1)^2` at `epsilon_1` for rare values, whatever
/// `epsilon_perm`; L-SUE has SUE's; L-OUE sits between (Arcolezi et al.'s
/// Table 2).
///
/// **Paper.** Erlingsson, Pihur, Korolova, "RAPPOR", CCS 2014 (L-SUE); Arcolezi,
/// Couchot, Al Bouna, Xiao, 2022 (L-OUE, L-OSUE).
#[derive(Debug, Clone, PartialEq)]
pub struct LUnary {
    variant: LUnaryVariant,
    perm: UnaryEncoding,
    one: Threshold,
    zero: Threshold,
    support: SupportProbabilities,
    epsilon_1: f64,
}

impl LUnary {
    /// Builds the encoding of `variant` over `0..domain`.
    pub fn new(
        variant: LUnaryVariant,
        epsilon_perm: f64,
        epsilon_1: f64,
        domain: u64,
    ) -> Result<Self, LdpError> {
        let (perm_eps, one) = check_layers(epsilon_perm, epsilon_1)?;
        let perm = match variant {
            LUnaryVariant::Sue => UnaryEncoding::symmetric(perm_eps, domain)?,
            LUnaryVariant::Oue | LUnaryVariant::Osue => UnaryEncoding::optimized(perm_eps, domain)?,
        };
        let (p1, q1) = (perm.p_threshold().prob(), perm.q_threshold().prob());
        let (keep_one, keep_zero) = match variant {
            // Each position's bit is symmetric: its log-odds carry half the pair's ratio.
            LUnaryVariant::Sue => {
                let p2 = symmetric_keep(p1, one / 2.0)?;
                (p2, p2.complement())
            }
            // With p1 = 1/2 the composed P is 1/2, so the ratio is (1 - Q)/Q:
            // Q = 1/(1 + e^eps1) = q1 p2 + (1 - q1)(1 - p2), and Q falls as p2 grows.
            LUnaryVariant::Osue => {
                let target = 1.0 / (1.0 + one.exp());
                let p2 = (1.0 - q1 - target) / (1.0 - 2.0 * q1);
                if !(p2 > 0.5 && p2 < 1.0) {
                    return Err(LdpError::Layers {
                        epsilon_1: one,
                        epsilon_perm: perm_eps,
                    });
                }
                let p2 = Threshold::floor(p2);
                (p2, p2.complement())
            }
            LUnaryVariant::Oue => {
                let half = Threshold::from_raw(1 << 63);
                let q2 = oue_zero_probability(p1, q1, one).ok_or(LdpError::Layers {
                    epsilon_1: one,
                    epsilon_perm: perm_eps,
                })?;
                (half, Threshold::ceil(q2))
            }
        };
        let (p, q) = compose(p1, q1, keep_one.prob(), keep_zero.prob());
        if !(q > 0.0 && p > q && p < 1.0) {
            return Err(LdpError::Unrealizable(
                "the composed unary encoding has no usable signal",
            ));
        }
        Ok(LUnary {
            variant,
            perm,
            one: keep_one,
            zero: keep_zero,
            support: SupportProbabilities { p, q },
            epsilon_1: round_up_loss(unary_loss(p, q)),
        })
    }

    /// Which variant this is.
    pub fn variant(&self) -> LUnaryVariant {
        self.variant
    }

    /// The permanent layer.
    pub fn permanent_layer(&self) -> &UnaryEncoding {
        &self.perm
    }

    /// The instantaneous thresholds: a permanent 1 stays 1 with the first, a
    /// permanent 0 becomes 1 with the second.
    pub fn instantaneous_thresholds(&self) -> (Threshold, Threshold) {
        (self.one, self.zero)
    }

    fn flip(&self, permanent: &PackedBits, rng: &mut (impl CryptoRng + ?Sized)) -> PackedBits {
        let mut out = PackedBits::zeros(permanent.len());
        for i in 0..permanent.len() {
            let t = if permanent.get(i) {
                self.one
            } else {
                self.zero
            };
            if t.sample(rng) {
                out.set(i, true);
            }
        }
        out
    }
}

/// `ln(P (1 - Q) / ((1 - P) Q))`: the loss of a unary report whose true
/// position is 1 with `P` and every other with `Q`.
fn unary_loss(p: f64, q: f64) -> f64 {
    ((p / (1.0 - p)) * ((1.0 - q) / q)).ln()
}

/// L-OUE's instantaneous `q2` (with `p2 = 1/2`): the ratio
/// `P (1 - Q)/((1 - P) Q)` falls from above `e^epsilon_1` at `q2 -> 0` to 1 at
/// `q2 = 1/2`, so bisection finds where it equals `e^epsilon_1`; `None` when
/// even `q2 -> 0` stays below it (`epsilon_1` too close to `epsilon_perm`).
fn oue_zero_probability(p1: f64, q1: f64, epsilon_1: f64) -> Option<f64> {
    let loss = |q2: f64| {
        let (p, q) = compose(p1, q1, 0.5, q2);
        unary_loss(p, q)
    };
    let (mut lo, mut hi) = (0.0f64, 0.5f64);
    if loss(f64::MIN_POSITIVE) <= epsilon_1 {
        return None;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if loss(mid) > epsilon_1 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(hi)
}

impl FrequencyOracle for LUnary {
    type Output = PackedBits;

    fn domain(&self) -> u32 {
        self.perm.domain()
    }

    fn epsilon(&self) -> f64 {
        self.epsilon_1
    }

    fn support_probabilities(&self) -> SupportProbabilities {
        self.support
    }

    fn perturb<R: CryptoRng + ?Sized>(
        &self,
        value: u32,
        rng: &mut R,
    ) -> Result<PackedBits, LdpError> {
        let permanent = self.perm.perturb(value, rng)?;
        Ok(self.flip(&permanent, rng))
    }

    fn for_each_supported(&self, output: &PackedBits, mut f: impl FnMut(u32)) {
        output.ones().for_each(&mut f)
    }

    fn is_valid_output(&self, output: &PackedBits) -> bool {
        output.len() == self.domain()
    }
}

impl TwoLayer for LUnary {
    type Permanent = PackedBits;
    type Output = PackedBits;

    fn coarse_domain(&self) -> u32 {
        self.domain()
    }

    fn epsilon_perm(&self) -> f64 {
        self.perm.epsilon()
    }

    fn epsilon_1(&self) -> f64 {
        self.epsilon_1
    }

    fn epsilon_change(&self) -> f64 {
        // Each bit is flipped independently; two permanent vectors can differ
        // in every position, each adding the larger of its two log-ratios.
        // `one` and `zero` are P(report 1) for a permanent 1 and a permanent 0.
        let (a, b) = (self.one.prob(), self.zero.prob());
        let per_bit = (a / b).ln().max(((1.0 - b) / (1.0 - a)).ln());
        round_up_loss(f64::from(self.domain()) * per_bit)
    }

    fn permanent<R: CryptoRng + ?Sized>(
        &self,
        coarse: u32,
        rng: &mut R,
    ) -> Result<PackedBits, LdpError> {
        self.perm.perturb(coarse, rng)
    }

    fn instantaneous<R: CryptoRng + ?Sized>(
        &self,
        permanent: &PackedBits,
        rng: &mut R,
    ) -> Result<PackedBits, LdpError> {
        if permanent.len() != self.domain() {
            return Err(LdpError::MalformedReport {
                expected: self.domain() as usize,
                actual: permanent.len() as usize,
            });
        }
        Ok(self.flip(permanent, rng))
    }
}

impl std::fmt::Display for LUnaryVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// dBitFlipPM: a permanent symmetric unary vector over `b` buckets at
/// `epsilon_perm`, memoized per bucket, of which every report reveals `d`
/// positions sampled afresh, each through a symmetric instantaneous flip.
///
/// A report is sent as the `b`-bit vector of the sampled positions whose
/// reported bit is 1 (a post-processing of the `d` (position, bit) pairs,
/// which is all the estimator reads).
///
/// **Privacy.** The permanent bits are SUE at `epsilon_perm` (each bit at
/// `epsilon_perm / 2`), so all reports about one bucket reveal at most
/// `epsilon_perm`. The sampled positions are uniform and fresh on every report,
/// so unlike Ding et al.'s memoized `j_1..j_d` they are no per-device
/// fingerprint. In one report a revealed bit is 1 with the composed `P` (the
/// true bucket) or `Q = 1 - P` (another); two inputs differ in two positions, so
/// with `d >= 2` the loss is `ln(P (1 - Q)/((1 - P) Q))`, and with `d = 1` only one
/// of them can show, so it is `ln(P / Q)`, half of that. The flip is solved for
/// per-bit log-odds `epsilon_1 / 2` (the paper's per-bit split), rounded down,
/// and [`FrequencyOracle::epsilon`] is the realized loss for this `d`, rounded
/// up. With `epsilon_1 = epsilon_perm` there is no instantaneous layer: the
/// paper's one-round form, which Hush's catalog never uses.
///
/// **Arguments.** `epsilon_perm`, `epsilon_1` in `(0, 20]` with
/// `epsilon_1 <= epsilon_perm`; `buckets` in `[2, 2^20]`; `sampled` in
/// `1..=buckets`; values (bucket indices) in `0..buckets`.
///
/// **Utility.** A report supports bucket `v` when `v` was sampled and its bit
/// is 1: `p = (d/b) P`, `q = (d/b) Q`, and the count estimate has variance
/// `n (q (1 - q) + f (p (1 - p) - q (1 - q)))/(p - q)^2`, about `b/d` times
/// L-SUE's for rare buckets, in exchange for `d` bits per report.
///
/// **Paper.** Ding, Kulkarni, Yekhanin, "Collecting Telemetry Data Privately",
/// NeurIPS 2017, Section 3 (dBitFlip with permanent memoization).
#[derive(Debug, Clone, PartialEq)]
pub struct DBitFlipPm {
    perm: UnaryEncoding,
    sampled: u32,
    /// The instantaneous keep threshold; `None` for the one-round form.
    keep: Option<Threshold>,
    support: SupportProbabilities,
    epsilon_1: f64,
}

impl DBitFlipPm {
    /// Builds dBitFlipPM over `0..buckets`, revealing `sampled` positions per report.
    pub fn new(
        epsilon_perm: f64,
        epsilon_1: f64,
        buckets: u64,
        sampled: u32,
    ) -> Result<Self, LdpError> {
        let perm_eps = check_epsilon(epsilon_perm)?;
        let one = check_epsilon(epsilon_1)?;
        if one > perm_eps {
            return Err(LdpError::Layers {
                epsilon_1: one,
                epsilon_perm: perm_eps,
            });
        }
        let perm = UnaryEncoding::symmetric(perm_eps, buckets)?;
        let b = perm.domain();
        if !(1..=b).contains(&sampled) {
            return Err(LdpError::Grid {
                value: u64::from(sampled),
                min: 1,
                max: b,
            });
        }
        let h = perm.p_threshold().prob();
        let keep = if one < perm_eps {
            Some(symmetric_keep(h, one / 2.0)?)
        } else {
            None
        };
        let bit = keep.map_or(h, |k| {
            let p2 = k.prob();
            h * p2 + (1.0 - h) * (1.0 - p2)
        });
        let per_position = (bit / (1.0 - bit)).ln();
        let loss = if sampled >= 2 {
            2.0 * per_position
        } else {
            per_position
        };
        let share = f64::from(sampled) / f64::from(b);
        Ok(DBitFlipPm {
            perm,
            sampled,
            keep,
            support: SupportProbabilities {
                p: share * bit,
                q: share * (1.0 - bit),
            },
            epsilon_1: round_up_loss(loss),
        })
    }

    /// How many positions each report reveals.
    pub fn sampled(&self) -> u32 {
        self.sampled
    }

    /// The permanent layer (SUE at `epsilon_perm`).
    pub fn permanent_layer(&self) -> &UnaryEncoding {
        &self.perm
    }

    /// The instantaneous keep threshold (`None`: the one-round form).
    pub fn keep_threshold(&self) -> Option<Threshold> {
        self.keep
    }

    fn reveal(&self, permanent: &PackedBits, rng: &mut (impl CryptoRng + ?Sized)) -> PackedBits {
        let b = self.perm.domain();
        let mut out = PackedBits::zeros(b);
        // Floyd's algorithm: `sampled` distinct positions, every set of them
        // equally likely, one bounded draw each, whatever the value.
        let mut chosen: Vec<u32> = Vec::with_capacity(self.sampled as usize);
        for top in b - self.sampled..b {
            let t = UniformBelow::new(u64::from(top) + 1).sample(rng) as u32;
            chosen.push(if chosen.contains(&t) { top } else { t });
        }
        for &j in &chosen {
            let bit = permanent.get(j);
            let reported = match self.keep {
                Some(k) => k.sample(rng) == bit,
                None => bit,
            };
            out.set(j, reported);
        }
        out
    }
}

impl FrequencyOracle for DBitFlipPm {
    type Output = PackedBits;

    fn domain(&self) -> u32 {
        self.perm.domain()
    }

    fn epsilon(&self) -> f64 {
        self.epsilon_1
    }

    fn support_probabilities(&self) -> SupportProbabilities {
        self.support
    }

    fn perturb<R: CryptoRng + ?Sized>(
        &self,
        value: u32,
        rng: &mut R,
    ) -> Result<PackedBits, LdpError> {
        let permanent = self.perm.perturb(value, rng)?;
        Ok(self.reveal(&permanent, rng))
    }

    fn for_each_supported(&self, output: &PackedBits, mut f: impl FnMut(u32)) {
        output.ones().for_each(&mut f)
    }

    fn is_valid_output(&self, output: &PackedBits) -> bool {
        output.len() == self.domain() && output.count_ones() <= self.sampled
    }
}

impl TwoLayer for DBitFlipPm {
    type Permanent = PackedBits;
    type Output = PackedBits;

    fn coarse_domain(&self) -> u32 {
        self.domain()
    }

    fn epsilon_perm(&self) -> f64 {
        self.perm.epsilon()
    }

    fn epsilon_1(&self) -> f64 {
        self.epsilon_1
    }

    fn epsilon_change(&self) -> f64 {
        // A report shows `sampled` positions; each is the permanent bit,
        // re-randomized (or shown as is in the one-round form: unbounded).
        match self.keep {
            Some(k) => {
                let p = k.prob();
                round_up_loss(f64::from(self.sampled) * (p / (1.0 - p)).ln())
            }
            None => f64::INFINITY,
        }
    }

    fn permanent<R: CryptoRng + ?Sized>(
        &self,
        coarse: u32,
        rng: &mut R,
    ) -> Result<PackedBits, LdpError> {
        self.perm.perturb(coarse, rng)
    }

    fn instantaneous<R: CryptoRng + ?Sized>(
        &self,
        permanent: &PackedBits,
        rng: &mut R,
    ) -> Result<PackedBits, LdpError> {
        if permanent.len() != self.domain() {
            return Err(LdpError::MalformedReport {
                expected: self.domain() as usize,
                actual: permanent.len() as usize,
            });
        }
        Ok(self.reveal(permanent, rng))
    }
}

/// Longitudinal local hashing (L-LH, optimized as L-OLH): a hash seed and a
/// permanent GRR of the hashed value over `g` values, memoized per value, then
/// GRR over `g` again on every report.
///
/// The seed travels in every report and is constant for as long as the value
/// is, so a collector can link a device's reports of one value with
/// certainty: Hush's catalog refuses it (ARCHITECTURE.md, "no value in a
/// report is constant for a device across periods"). It is here for research
/// and for the comparison with `multi-freq-ldpy`'s `L_LH`.
///
/// **Privacy.** Given the seed (independent of the value), the layers are
/// L-GRR over `0..g` of a function of the input, so one report is
/// `epsilon_1`-LDP and one value's reports `epsilon_perm`-LDP; the
/// instantaneous keep is solved and realized as for [`LGrr`], and
/// [`FrequencyOracle::epsilon`] is `ln(P / Q_g)` over `g` from the realized
/// thresholds, rounded up.
///
/// **Arguments.** `epsilon_perm`, `epsilon_1` in `(0, 20]` with
/// `epsilon_1 < epsilon_perm`; `domain` in `[2, 2^20]`. The hash range `g` is
/// L-OLH's variance-minimizing choice (Arcolezi et al. 2022, Section 4), at
/// least 2.
///
/// **Utility.** A report supports every value hashing to the reported value:
/// `p = P` (the composed keep over `g`), `q = 1/g` (another value's hash is
/// uniform over seeds); variance `n (q (1 - q) + f (p (1 - p) - q (1 - q)))/(p - q)^2`.
/// Estimation costs `O(d)` per report.
///
/// **Paper.** Arcolezi, Couchot, Al Bouna, Xiao, 2022 (L-OLH); its successor
/// LOLOHA (Arcolezi, Pinzón, Palamidessi, Gambs, EDBT 2023) memoizes over the
/// hashed value instead.
#[derive(Debug, Clone, PartialEq)]
pub struct LLh {
    domain: u32,
    range: u32,
    layers: LGrr,
    support: SupportProbabilities,
}

impl LLh {
    /// Builds L-OLH over `0..domain`.
    pub fn new(epsilon_perm: f64, epsilon_1: f64, domain: u64) -> Result<Self, LdpError> {
        let (perm_eps, one) = check_layers(epsilon_perm, epsilon_1)?;
        let domain = check_domain(domain)?;
        let range = optimal_range(perm_eps, one);
        let layers = LGrr::new(perm_eps, one, u64::from(range))?;
        let support = SupportProbabilities {
            p: layers.support_probabilities().p,
            q: 1.0 / f64::from(range),
        };
        Ok(LLh {
            domain,
            range,
            layers,
            support,
        })
    }

    /// The hash range `g`.
    pub fn hash_range(&self) -> u32 {
        self.range
    }
}

/// L-OLH's `g` (Arcolezi et al. 2022, as `multi-freq-ldpy` 0.2.5 computes it),
/// rounded, at least 2, and at most what a `u32` and the epsilon range allow.
fn optimal_range(perm: f64, one: f64) -> u32 {
    let a = one / perm;
    let e = |k: f64| (perm * k).exp();
    let root = (e(4.0) - 14.0 * e(2.0) - 12.0 * e(2.0 * (a + 1.0))
        + 12.0 * e(a + 1.0)
        + 12.0 * e(a + 3.0)
        + 1.0)
        .sqrt();
    let g = (root - e(2.0) + 6.0 * e(1.0) - 6.0 * e(a) + 1.0) / (6.0 * (e(1.0) - e(a)));
    if g.is_finite() {
        g.round().clamp(2.0, f64::from(1u32 << 30)) as u32
    } else {
        2
    }
}

impl FrequencyOracle for LLh {
    type Output = OlhOutput;

    fn domain(&self) -> u32 {
        self.domain
    }

    fn epsilon(&self) -> f64 {
        self.layers.epsilon()
    }

    fn support_probabilities(&self) -> SupportProbabilities {
        self.support
    }

    fn perturb<R: CryptoRng + ?Sized>(
        &self,
        value: u32,
        rng: &mut R,
    ) -> Result<OlhOutput, LdpError> {
        let permanent = self.permanent(value, rng)?;
        self.instantaneous(&permanent, rng)
    }

    fn for_each_supported(&self, output: &OlhOutput, mut f: impl FnMut(u32)) {
        for v in 0..self.domain {
            if hash_into(output.seed, v, self.range) == output.value {
                f(v);
            }
        }
    }

    fn is_valid_output(&self, output: &OlhOutput) -> bool {
        output.value < self.range
    }
}

impl TwoLayer for LLh {
    type Permanent = OlhOutput;
    type Output = OlhOutput;

    fn coarse_domain(&self) -> u32 {
        self.domain
    }

    fn epsilon_perm(&self) -> f64 {
        self.layers.epsilon_perm()
    }

    fn epsilon_1(&self) -> f64 {
        self.layers.epsilon()
    }

    fn epsilon_change(&self) -> f64 {
        self.layers.epsilon_change()
    }

    fn permanent<R: CryptoRng + ?Sized>(
        &self,
        coarse: u32,
        rng: &mut R,
    ) -> Result<OlhOutput, LdpError> {
        if coarse >= self.domain {
            return Err(LdpError::ValueOutOfDomain {
                value: u64::from(coarse),
                domain: self.domain,
            });
        }
        let seed = rng.next_u64();
        let value = self
            .layers
            .permanent(hash_into(seed, coarse, self.range), rng)?;
        Ok(OlhOutput { seed, value })
    }

    fn instantaneous<R: CryptoRng + ?Sized>(
        &self,
        permanent: &OlhOutput,
        rng: &mut R,
    ) -> Result<OlhOutput, LdpError> {
        Ok(OlhOutput {
            seed: permanent.seed,
            value: self.layers.instantaneous(&permanent.value, rng)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest log-ratio of one report's law between two permanent
    /// responses, by enumerating every pair and every output at small d.
    fn enumerated_change(d: u32, law: impl Fn(u32, u32) -> f64) -> f64 {
        let mut worst = 0.0f64;
        for a in 0..d {
            for b in 0..d {
                for y in 0..d {
                    worst = worst.max((law(a, y) / law(b, y)).ln());
                }
            }
        }
        worst
    }

    #[test]
    fn epsilon_change_is_the_largest_ratio_between_two_permanent_responses() {
        for (perm, one) in [(4.0, 2.0), (2.0, 1.0), (8.0, 2.0)] {
            // L-GRR: permanent values and reports are symbols.
            let g = LGrr::new(perm, one, 5).unwrap();
            let (k, o) = (g.inst.keep_probability(), g.inst.other_probability());
            let e = enumerated_change(5, |z, y| if z == y { k } else { o });
            assert!((g.epsilon_change() - e).abs() < 1e-9, "L-GRR {e}");
            // Unary encodings at d = 4: permanent vectors and reports are the
            // 16 bit patterns; each report bit follows its permanent bit.
            for variant in [LUnaryVariant::Sue, LUnaryVariant::Oue, LUnaryVariant::Osue] {
                let u = LUnary::new(variant, perm, one, 4).unwrap();
                let (a, b) = (u.one.prob(), u.zero.prob());
                let e = enumerated_change(16, |z, y| {
                    (0..4)
                        .map(|i| {
                            let p = if z >> i & 1 == 1 { a } else { b };
                            if y >> i & 1 == 1 { p } else { 1.0 - p }
                        })
                        .product()
                });
                let c = u.epsilon_change();
                assert!(c >= e && c - e < 1e-9, "{variant}: {c} vs {e}");
                // Far more than one report's epsilon: four bits can all differ.
                assert!(c > 1.5 * one, "{variant}: {c}");
            }
        }
    }

    /// The composed ratio of every oracle is the epsilon_1 asked for, from below.
    #[test]
    fn composed_losses_spend_epsilon_1_and_no_more() {
        for (perm, one) in [(4.0, 2.0), (2.0, 1.0), (8.0, 2.0), (1.0, 0.25)] {
            for d in [2u64, 9, 15, 33, 1024] {
                let g = LGrr::new(perm, one, d).unwrap();
                let s = g.support_probabilities();
                let loss = (s.p / s.q).ln();
                assert!(
                    loss <= one * (1.0 + 1e-12) && loss > one * (1.0 - 1e-9),
                    "L-GRR {d}: {loss}"
                );
                for variant in [LUnaryVariant::Sue, LUnaryVariant::Oue, LUnaryVariant::Osue] {
                    let u = LUnary::new(variant, perm, one, d).unwrap();
                    let s = u.support_probabilities();
                    let loss = unary_loss(s.p, s.q);
                    assert!(
                        loss <= one * (1.0 + 1e-12) && loss > one * (1.0 - 1e-9),
                        "{variant} {d}: {loss}"
                    );
                    assert!((u.epsilon_perm() - perm).abs() < 1e-9);
                }
            }
        }
    }

    /// Where the paper's parameters spend the full epsilon_1 they match ours:
    /// `multi-freq-ldpy` 0.2.5's L-OSUE and L-SUE formulas, and its L-OUE `q2`.
    #[test]
    fn the_instantaneous_layers_match_the_papers_closed_forms() {
        let (ep, e1): (f64, f64) = (4.0, 2.0);
        let osue = LUnary::new(LUnaryVariant::Osue, ep, e1, 8).unwrap();
        let paper = (1.0 - (e1 + ep).exp()) / (e1.exp() - ep.exp() - (e1 + ep).exp() + 1.0);
        assert!((osue.instantaneous_thresholds().0.prob() - paper).abs() < 1e-12);
        let oue = LUnary::new(LUnaryVariant::Oue, ep, e1, 8).unwrap();
        let (e, f) = (e1.exp(), ep.exp());
        let paper_q2 = ((-1.11803398874989
            * (0.1 * e + 0.05 * e * e + 0.3 * f + 0.45 * f * f - e * f - 0.7 * e * f * f
                + 0.3 * e * e * f
                + 0.45 * e * e * f * f
                + 0.05)
                .sqrt()
            - 0.25 * e
            - 0.25 * f
            + 0.75 * e * f
            - 0.25)
            / f)
            / (e - 1.0);
        assert!((oue.instantaneous_thresholds().1.prob() - paper_q2).abs() < 1e-9);
        // L-GRR: the paper's p2 equates (p1 p2 + q1 q2)/(p1 q2 + q1 p2) with e^eps1,
        // which at d = 15 leaves the composed loss at 1.84; ours is higher.
        let ours = LGrr::new(ep, e1, 15).unwrap();
        let p1 = ours.permanent_layer().keep_probability();
        let q1 = ours.permanent_layer().other_probability();
        let paper_p2 = (q1 - e * p1) / (-p1 * e + 15.0 * q1 * e - q1 * e - p1 * 14.0 + q1);
        assert!(ours.instantaneous_layer().keep_probability() > paper_p2 + 0.04);
    }

    #[test]
    fn dbitflip_spends_half_with_one_position_and_nothing_fresh_when_equal() {
        let one = DBitFlipPm::new(4.0, 2.0, 16, 1).unwrap();
        let two = DBitFlipPm::new(4.0, 2.0, 16, 2).unwrap();
        assert!((one.epsilon() - 1.0).abs() < 1e-9, "{}", one.epsilon());
        assert!((two.epsilon() - 2.0).abs() < 1e-9, "{}", two.epsilon());
        let memo = DBitFlipPm::new(4.0, 4.0, 16, 2).unwrap();
        assert_eq!(memo.keep_threshold(), None);
        assert!((memo.epsilon() - 4.0).abs() < 1e-9);
        assert!(DBitFlipPm::new(2.0, 4.0, 16, 2).is_err());
        assert!(DBitFlipPm::new(4.0, 2.0, 16, 17).is_err());
    }

    #[test]
    fn llh_picks_the_papers_hash_range() {
        // What multi-freq-ldpy 0.2.5's L_LH computes for these pairs.
        for (perm, one, g) in [(4.0, 2.0, 7), (1.0, 0.5, 2), (2.0, 1.0, 3), (8.0, 2.0, 8)] {
            assert_eq!(
                LLh::new(perm, one, 100).unwrap().hash_range(),
                g,
                "{perm}/{one}"
            );
        }
    }
}
