//! Hadamard response: report an index from the value's half of a Hadamard row.

use rand::CryptoRng;

use crate::epsilon::{check_domain, check_epsilon, round_up_loss};
use crate::sampling::Threshold;
use crate::{FrequencyOracle, LdpError, SupportProbabilities};

/// Hadamard response (HR).
///
/// Let `K` be the smallest power of two above `d`. Value `v` owns the set
/// `C_v = { y in 0..K : popcount((v + 1) & y) is even }`, the `+1` entries of row
/// `v + 1` of the `K x K` Sylvester–Hadamard matrix (row 0, all ones, is skipped).
/// The user reports a uniform element of `C_v` with probability `p` and a uniform
/// element of its complement otherwise. The report is one integer below `K`.
///
/// **Privacy.** Every `C_v` has exactly `K/2` elements, so an output has
/// probability `2p/K` or `2(1-p)/K`; the ratio is at most `p / (1 - p)`. `p` is
/// realized as an integer threshold rounded down from `e^eps/(e^eps+1)`, and
/// the uniform element is drawn by exact rejection sampling over `K` (a power of
/// two, so a masked random word is exactly uniform). [`HadamardResponse::epsilon`]
/// is `ln(p / (1 - p))` from the realized threshold, rounded up.
///
/// **Arguments.** `epsilon` in `(0, 20]`, `domain` in `[2, 2^20]`; values in `0..domain`.
///
/// **Utility.** A report supports `v` when it lies in `C_v`: with probability
/// `p` for the holder of `v`, and exactly `1/2` for anyone else (distinct rows
/// of a Hadamard matrix are orthogonal, so `|C_u ∩ C_v| = K/4`). The count
/// estimate has variance about `n (e^eps + 1)^2 / (e^eps - 1)^2`: near OUE's at
/// small epsilon, worse at large epsilon, with `log2(K)` bits per report and an
/// `O(K log K)` estimator by the fast Walsh–Hadamard transform.
///
/// **Paper.** Acharya, Sun, Zhang, "Hadamard Response: Estimating
/// Distributions Privately, Efficiently, and with Little Communication",
/// AISTATS 2019 (the symmetric variant with `|C_v| = K/2`).
#[derive(Debug, Clone, PartialEq)]
pub struct HadamardResponse {
    domain: u32,
    order: u32,
    keep: Threshold,
    epsilon: f64,
}

impl HadamardResponse {
    /// Builds HR for `epsilon` over `0..domain`.
    pub fn new(epsilon: f64, domain: u64) -> Result<Self, LdpError> {
        let epsilon = check_epsilon(epsilon)?;
        let domain = check_domain(domain)?;
        let e = epsilon.exp();
        let keep = Threshold::floor_split(e, 1.0);
        if keep.prob() <= keep.complement_prob() {
            return Err(LdpError::Unrealizable(
                "HR keep probability rounds to one half or less",
            ));
        }
        Ok(HadamardResponse {
            domain,
            order: (domain + 1).next_power_of_two(),
            keep,
            epsilon: round_up_loss((keep.prob() / keep.complement_prob()).ln()),
        })
    }

    /// The Hadamard order `K` (outputs are below it).
    pub fn order(&self) -> u32 {
        self.order
    }

    /// The integer threshold of the keep decision (exact; its complement is exact too).
    pub fn keep_threshold(&self) -> Threshold {
        self.keep
    }

    /// The realized probability of reporting an element of the value's own set.
    pub fn keep_probability(&self) -> f64 {
        self.keep.prob()
    }

    /// Whether `y` lies in `C_v`.
    #[inline]
    pub fn in_set(value: u32, y: u32) -> bool {
        ((value + 1) & y).count_ones().is_multiple_of(2)
    }
}

impl FrequencyOracle for HadamardResponse {
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
            q: 0.5,
        }
    }

    fn perturb<R: CryptoRng + ?Sized>(&self, value: u32, rng: &mut R) -> Result<u32, LdpError> {
        if value >= self.domain {
            return Err(LdpError::ValueOutOfDomain {
                value: u64::from(value),
                domain: self.domain,
            });
        }
        let inside = self.keep.sample(rng);
        let mask = u64::from(self.order - 1);
        // Half of all y qualify, so this takes two draws on average.
        loop {
            let y = (rng.next_u64() & mask) as u32;
            if Self::in_set(value, y) == inside {
                return Ok(y);
            }
        }
    }

    fn for_each_supported(&self, output: &u32, mut f: impl FnMut(u32)) {
        for v in 0..self.domain {
            if Self::in_set(v, *output) {
                f(v)
            }
        }
    }

    fn is_valid_output(&self, output: &u32) -> bool {
        *output < self.order
    }
}
