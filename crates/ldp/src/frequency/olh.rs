//! Optimized local hashing: hash the value into a small range, then randomized response there.

use std::fmt;

use rand::CryptoRng;

use crate::epsilon::{check_domain, check_epsilon, round_up_loss};
use crate::sampling::{Threshold, UniformBelow};
use crate::{FrequencyOracle, LdpError, SupportProbabilities};

/// One OLH report: the user's hash seed and the randomized hash value in `0..g`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OlhOutput {
    /// Selects the hash function from the family; drawn fresh by each user.
    pub seed: u64,
    /// Randomized response over the hash range `0..g`.
    pub value: u32,
}

/// `seed:value`, the seed in hexadecimal.
impl fmt::Display for OlhOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}:{}", self.seed, self.value)
    }
}

/// Optimized local hashing (OLH).
///
/// Each user draws a random seed, hashes their value into `0..g` with the
/// seeded hash, and reports the hash through generalized randomized response
/// over `g` values. The seed travels in the report.
///
/// **Privacy.** The seed is independent of the value. Given the seed, the
/// output is GRR over `g` values of a deterministic function of the input, so
/// the ratio is at most `p (g - 1) / (1 - p)`; `p` is realized as an integer
/// threshold rounded down, the other `g - 1` values by an exact rejection
/// sampler, and [`Olh::epsilon`] is that ratio's log, rounded up.
///
/// **Arguments.** `epsilon` in `(0, 20]`, `domain` in `[2, 2^20]`; values in `0..domain`.
/// The hash range is `g = round(e^eps) + 1`, which minimizes variance.
///
/// **Utility.** A report supports every value that hashes to the reported
/// value: `p = e^eps/(e^eps + g - 1)`, `q = 1/g` (the hash of another value is
/// uniform over seeds). The count estimate has variance about
/// `n 4 e^eps / (e^eps - 1)^2`, like OUE, but the report is one seed and one
/// small integer instead of `d` bits; estimation costs `O(d)` per report.
///
/// **Paper.** Wang, Blocki, Li, Jha, USENIX Security 2017, Section 4.4.
#[derive(Debug, Clone, PartialEq)]
pub struct Olh {
    domain: u32,
    range: u32,
    keep: Threshold,
    others: UniformBelow,
    epsilon: f64,
}

impl Olh {
    /// Builds OLH for `epsilon` over `0..domain`.
    pub fn new(epsilon: f64, domain: u64) -> Result<Self, LdpError> {
        let epsilon = check_epsilon(epsilon)?;
        let domain = check_domain(domain)?;
        let e = epsilon.exp();
        // e^eps <= e^20 < 2^29, so the range fits in u32 with room to spare.
        let range = e.round() as u32 + 1;
        let keep = Threshold::floor_split(e, f64::from(range) - 1.0);
        let q = keep.complement_prob() / f64::from(range - 1);
        if keep.prob() <= q {
            return Err(LdpError::Unrealizable(
                "OLH keep probability rounds to no better than the others",
            ));
        }
        Ok(Olh {
            domain,
            range,
            keep,
            others: UniformBelow::new(u64::from(range - 1)),
            epsilon: round_up_loss((keep.prob() / q).ln()),
        })
    }

    /// The hash range `g`.
    pub fn hash_range(&self) -> u32 {
        self.range
    }

    /// The integer threshold of the keep decision (exact; its complement is exact too).
    pub fn keep_threshold(&self) -> Threshold {
        self.keep
    }

    /// The realized probability of reporting the true hash value.
    pub fn keep_probability(&self) -> f64 {
        self.keep.prob()
    }

    /// The sampler of the other hash values, for the batch kernels.
    pub(crate) fn others_sampler(&self) -> UniformBelow {
        self.others
    }

    /// The seeded hash of `value` into `0..g`.
    ///
    /// Two SplitMix64 finalizer rounds (a bijective mixer with full avalanche)
    /// decorrelate seed and value; the multiply-shift reduction maps the 64-bit
    /// hash to `0..g` without division.
    #[inline]
    pub fn hash(&self, seed: u64, value: u32) -> u32 {
        hash_into(seed, value, self.range)
    }
}

/// The seeded hash of `value` into `0..range` that OLH and L-LH share.
#[inline]
pub(crate) fn hash_into(seed: u64, value: u32, range: u32) -> u32 {
    let mixed = mix64(seed ^ mix64(u64::from(value).wrapping_add(0x9E37_79B9_7F4A_7C15)));
    ((u128::from(mixed) * u128::from(range)) >> 64) as u32
}

/// SplitMix64's finalizer (Steele, Lea, Flood 2014).
#[inline]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl FrequencyOracle for Olh {
    type Output = OlhOutput;

    fn domain(&self) -> u32 {
        self.domain
    }

    fn epsilon(&self) -> f64 {
        self.epsilon
    }

    fn support_probabilities(&self) -> SupportProbabilities {
        SupportProbabilities {
            p: self.keep_probability(),
            q: 1.0 / f64::from(self.range),
        }
    }

    fn perturb<R: CryptoRng + ?Sized>(
        &self,
        value: u32,
        rng: &mut R,
    ) -> Result<OlhOutput, LdpError> {
        if value >= self.domain {
            return Err(LdpError::ValueOutOfDomain {
                value: u64::from(value),
                domain: self.domain,
            });
        }
        let seed = rng.next_u64();
        let hashed = self.hash(seed, value);
        let reported = if self.keep.sample(rng) {
            hashed
        } else {
            let other = self.others.sample(rng) as u32;
            if other >= hashed { other + 1 } else { other }
        };
        Ok(OlhOutput {
            seed,
            value: reported,
        })
    }

    fn for_each_supported(&self, output: &OlhOutput, mut f: impl FnMut(u32)) {
        for v in 0..self.domain {
            if self.hash(output.seed, v) == output.value {
                f(v)
            }
        }
    }

    fn is_valid_output(&self, output: &OlhOutput) -> bool {
        output.value < self.range
    }
}
