//! Generalized (k-ary) randomized response.

use rand::CryptoRng;

use crate::epsilon::{check_domain, check_epsilon, round_up_loss};
use crate::sampling::{Threshold, UniformBelow};
use crate::{FrequencyOracle, LdpError, SupportProbabilities};

/// Generalized randomized response (GRR, also k-RR or direct encoding).
///
/// The user reports their true value with probability `p` and otherwise one of
/// the `d - 1` other values uniformly at random.
///
/// **Privacy.** For any two inputs and any output, the probability ratio is at
/// most `p / q` with `q = (1 - p) / (d - 1)`. The realized `p` is
/// `t / 2^64` for the integer threshold `t = floor(2^64 e^eps / (e^eps + d - 1))`,
/// rounded down so the realized ratio never exceeds `e^eps`; the other values
/// are drawn by an exact rejection sampler. [`Grr::epsilon`] is
/// `ln(p (d - 1) / (1 - p))` computed from `t`, rounded up.
///
/// **Arguments.** `epsilon` in `(0, 20]`, `domain` in `[2, 2^20]`; values in `0..domain`.
///
/// **Utility.** Each report supports one value, with `p = e^eps/(e^eps+d-1)`,
/// `q = 1/(e^eps+d-1)`; the count estimate has variance about
/// `n (d - 2 + e^eps) / (e^eps - 1)^2`, best of all oracles when
/// `d < 3 e^eps + 2`.
///
/// **Paper.** Wang, Blocki, Li, Jha, "Locally Differentially Private Protocols
/// for Frequency Estimation", USENIX Security 2017 (Section 4.1, "Direct Encoding").
#[derive(Debug, Clone, PartialEq)]
pub struct Grr {
    domain: u32,
    keep: Threshold,
    others: UniformBelow,
    epsilon: f64,
}

impl Grr {
    /// Builds GRR for `epsilon` over `0..domain`.
    pub fn new(epsilon: f64, domain: u64) -> Result<Self, LdpError> {
        let epsilon = check_epsilon(epsilon)?;
        let domain = check_domain(domain)?;
        let e = epsilon.exp();
        Self::with_keep(Threshold::floor_split(e, f64::from(domain) - 1.0), domain)
    }

    /// GRR over `0..domain` with a given keep threshold (the instantaneous
    /// layer of a two-layer mechanism derives its own); its epsilon is computed
    /// from the threshold, rounded up.
    pub(crate) fn with_keep(keep: Threshold, domain: u32) -> Result<Self, LdpError> {
        let q = keep.complement_prob() / f64::from(domain - 1);
        if keep.prob() <= q {
            return Err(LdpError::Unrealizable(
                "GRR keep probability rounds to no better than the others",
            ));
        }
        Ok(Grr {
            domain,
            keep,
            others: UniformBelow::new(u64::from(domain - 1)),
            epsilon: round_up_loss((keep.prob() / q).ln()),
        })
    }

    /// The integer threshold of the keep decision (exact; its complement is exact too).
    pub fn keep_threshold(&self) -> Threshold {
        self.keep
    }

    /// The realized probability of reporting the true value.
    pub fn keep_probability(&self) -> f64 {
        self.keep.prob()
    }

    /// The realized probability of reporting one particular other value.
    pub fn other_probability(&self) -> f64 {
        self.keep.complement_prob() / f64::from(self.domain - 1)
    }

    /// The sampler of the other values, for the batch kernels.
    pub(crate) fn others_sampler(&self) -> UniformBelow {
        self.others
    }
}

impl FrequencyOracle for Grr {
    type Output = u32;

    fn domain(&self) -> u32 {
        self.domain
    }

    fn epsilon(&self) -> f64 {
        self.epsilon
    }

    fn support_probabilities(&self) -> SupportProbabilities {
        SupportProbabilities {
            p: self.keep_probability(),
            q: self.other_probability(),
        }
    }

    fn perturb<R: CryptoRng + ?Sized>(&self, value: u32, rng: &mut R) -> Result<u32, LdpError> {
        if value >= self.domain {
            return Err(LdpError::ValueOutOfDomain {
                value: u64::from(value),
                domain: self.domain,
            });
        }
        if self.keep.sample(rng) {
            return Ok(value);
        }
        // Uniform over the d - 1 other values: draw from 0..d-1 and skip over `value`.
        let other = self.others.sample(rng) as u32;
        Ok(if other >= value { other + 1 } else { other })
    }

    fn for_each_supported(&self, output: &u32, mut f: impl FnMut(u32)) {
        f(*output)
    }

    fn is_valid_output(&self, output: &u32) -> bool {
        *output < self.domain
    }
}
