//! Unary encodings: symmetric (basic one-time RAPPOR) and optimized (OUE).

use rand::CryptoRng;

use crate::epsilon::{check_domain, check_epsilon, round_up_loss};
use crate::sampling::Threshold;
use crate::{FrequencyOracle, LdpError, PackedBits, SupportProbabilities};

/// Which unary encoding: the two differ only in their bit-flip probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryVariant {
    /// Symmetric unary encoding: `p = e^(eps/2)/(e^(eps/2)+1)`, `q = 1 - p`.
    Symmetric,
    /// Optimized unary encoding: `p = 1/2`, `q = 1/(e^eps+1)`.
    Optimized,
}

/// Unary encoding (SUE, basic one-time RAPPOR, or OUE).
///
/// The value `v` is one-hot encoded into `d` bits; each bit is then reported
/// independently: a 1 stays 1 with probability `p`, a 0 becomes 1 with probability `q`.
///
/// **Privacy.** Two inputs differ in exactly two bit positions, so the
/// probability ratio of any output is at most `p (1 - q) / ((1 - p) q)`.
/// Both `p` and `q` are realized as integer thresholds on the 2^-64 grid,
/// rounded in the direction that lowers that ratio (SUE: `p` down and `q = 1 - p`
/// exactly; OUE: `p = 1/2` exactly and `q` up). [`UnaryEncoding::epsilon`] is
/// `ln(p (1 - q) / ((1 - p) q))` from the realized thresholds, rounded up.
///
/// **Arguments.** `epsilon` in `(0, 20]`, `domain` in `[2, 2^20]`; values in `0..domain`.
///
/// **Utility.** A report supports every value whose bit is set; the count
/// estimate has variance about `n q (1 - q) / (p - q)^2`, which is
/// `n e^(eps/2) / (e^(eps/2) - 1)^2` for SUE and `n 4 e^eps / (e^eps - 1)^2` for OUE
/// (OUE is optimal among unary encodings, independent of `d`, at `d` bits per report).
///
/// **Paper.** Erlingsson, Pihur, Korolova, "RAPPOR", CCS 2014 (SUE as basic
/// one-time RAPPOR); Wang, Blocki, Li, Jha, USENIX Security 2017, Section 4.3 (OUE).
#[derive(Debug, Clone, PartialEq)]
pub struct UnaryEncoding {
    variant: UnaryVariant,
    domain: u32,
    p: Threshold,
    q: Threshold,
    epsilon: f64,
}

impl UnaryEncoding {
    /// Symmetric unary encoding (basic one-time RAPPOR).
    pub fn symmetric(epsilon: f64, domain: u64) -> Result<Self, LdpError> {
        let epsilon = check_epsilon(epsilon)?;
        let half = (epsilon / 2.0).exp();
        let p = Threshold::floor_split(half, 1.0);
        Self::with_thresholds(UnaryVariant::Symmetric, domain, p, p.complement())
    }

    /// Optimized unary encoding (OUE).
    pub fn optimized(epsilon: f64, domain: u64) -> Result<Self, LdpError> {
        let epsilon = check_epsilon(epsilon)?;
        let p = Threshold::from_raw(1 << 63);
        let q = Threshold::ceil(1.0 / (epsilon.exp() + 1.0));
        Self::with_thresholds(UnaryVariant::Optimized, domain, p, q)
    }

    fn with_thresholds(
        variant: UnaryVariant,
        domain: u64,
        p: Threshold,
        q: Threshold,
    ) -> Result<Self, LdpError> {
        let domain = check_domain(domain)?;
        if q.raw() == 0 || p <= q {
            return Err(LdpError::Unrealizable("unary encoding needs 0 < q < p < 1"));
        }
        let ratio = (p.prob() / p.complement_prob()) * (q.complement_prob() / q.prob());
        Ok(UnaryEncoding {
            variant,
            domain,
            p,
            q,
            epsilon: round_up_loss(ratio.ln()),
        })
    }

    /// Which encoding this is.
    pub fn variant(&self) -> UnaryVariant {
        self.variant
    }

    /// The integer threshold of the true value's bit (probability it is reported as 1).
    pub fn p_threshold(&self) -> Threshold {
        self.p
    }

    /// The integer threshold of every other bit (probability it is reported as 1).
    pub fn q_threshold(&self) -> Threshold {
        self.q
    }
}

impl FrequencyOracle for UnaryEncoding {
    type Output = PackedBits;

    fn domain(&self) -> u32 {
        self.domain
    }

    fn epsilon(&self) -> f64 {
        self.epsilon
    }

    fn support_probabilities(&self) -> SupportProbabilities {
        SupportProbabilities {
            p: self.p.prob(),
            q: self.q.prob(),
        }
    }

    fn perturb<R: CryptoRng + ?Sized>(
        &self,
        value: u32,
        rng: &mut R,
    ) -> Result<PackedBits, LdpError> {
        if value >= self.domain {
            return Err(LdpError::ValueOutOfDomain {
                value: u64::from(value),
                domain: self.domain,
            });
        }
        let mut bits = PackedBits::zeros(self.domain);
        for i in 0..self.domain {
            let t = if i == value { self.p } else { self.q };
            if t.sample(rng) {
                bits.set(i, true);
            }
        }
        Ok(bits)
    }

    fn for_each_supported(&self, output: &PackedBits, mut f: impl FnMut(u32)) {
        output.ones().for_each(&mut f)
    }

    fn is_valid_output(&self, output: &PackedBits) -> bool {
        output.len() == self.domain
    }
}
