//! The Hybrid Mechanism: a coin chooses between the Piecewise Mechanism and Duchi's.

use rand::CryptoRng;

use crate::sampling::Threshold;
use crate::{Affine, Duchi, GridPoint, LdpError, NumericMechanism, Piecewise, Range};

/// Below this epsilon the Hybrid Mechanism always uses Duchi's mechanism (Wang et al.'s `eps*`).
pub const HYBRID_SWITCH_EPSILON: f64 = 0.61;

/// The Hybrid Mechanism (HM).
///
/// With probability `alpha = 1 - e^(-eps/2)` (or 0 when eps <= 0.61) the input
/// goes through the [`Piecewise`] mechanism (grid branch 0), otherwise through
/// [`Duchi`]'s (grid branch 1), both at the full epsilon.
///
/// **Privacy.** Each branch is eps-LDP for its realized thresholds and the coin
/// does not depend on the input, so every output's probability ratio is bounded
/// by the larger of the two branches' ratios; [`Hybrid::epsilon`] is that maximum.
///
/// **Arguments.** `epsilon` in `(0, 20]`; any finite `lo < hi`.
///
/// **Utility.** Unbiased; `Var = alpha Var_PM(x) + (1 - alpha) Var_Duchi(x)`,
/// whose worst case over `x` is below both mechanisms' for every epsilon.
///
/// **Paper.** Wang et al., "Collecting and Analyzing Multidimensional Data with
/// Local Differential Privacy", ICDE 2019, Section III-C.
#[derive(Debug, Clone, PartialEq)]
pub struct Hybrid {
    piecewise: Piecewise,
    duchi: Duchi,
    use_piecewise: Threshold,
}

impl Hybrid {
    /// Builds the mechanism for `epsilon` over `range`.
    pub fn new(epsilon: f64, range: Range) -> Result<Self, LdpError> {
        let piecewise = Piecewise::new(epsilon, range)?;
        let duchi = Duchi::new(epsilon, range)?;
        let alpha = if epsilon > HYBRID_SWITCH_EPSILON {
            -(-epsilon / 2.0).exp_m1()
        } else {
            0.0
        };
        Ok(Hybrid {
            piecewise,
            duchi,
            use_piecewise: Threshold::floor(alpha),
        })
    }

    /// The realized probability of using the Piecewise branch.
    pub fn piecewise_probability(&self) -> f64 {
        self.use_piecewise.prob()
    }

    /// The threshold of the Piecewise branch's coin, for the batch kernels.
    pub(crate) fn use_piecewise_threshold(&self) -> Threshold {
        self.use_piecewise
    }

    /// The Piecewise branch.
    pub fn piecewise(&self) -> &Piecewise {
        &self.piecewise
    }

    /// The Duchi branch.
    pub fn duchi(&self) -> &Duchi {
        &self.duchi
    }
}

impl NumericMechanism for Hybrid {
    fn range(&self) -> Range {
        self.duchi.range()
    }

    fn epsilon(&self) -> f64 {
        self.piecewise.epsilon().max(self.duchi.epsilon())
    }

    fn perturb<R: CryptoRng + ?Sized>(&self, x: f64, rng: &mut R) -> Result<GridPoint, LdpError> {
        if self.use_piecewise.sample(rng) {
            self.piecewise.perturb(x, rng)
        } else {
            let bit = self.duchi.perturb(x, rng)?;
            Ok(GridPoint { branch: 1, ..bit })
        }
    }

    fn grid(&self, branch: u8) -> Option<Affine> {
        match branch {
            0 => self.piecewise.grid(0),
            1 => self.duchi.grid(0),
            _ => None,
        }
    }

    fn is_valid_output(&self, point: GridPoint) -> bool {
        match point.branch {
            0 => self.piecewise.is_valid_output(point),
            1 => self.duchi.is_valid_output(GridPoint { branch: 0, ..point }),
            _ => false,
        }
    }

    fn variance_at(&self, x: f64) -> f64 {
        let a = self.piecewise_probability();
        a * self.piecewise.variance_at(x) + (1.0 - a) * self.duchi.variance_at(x)
    }

    fn worst_case_variance(&self) -> f64 {
        let r = self.range();
        // The variance is a quadratic symmetric about the middle of the range, so its
        // maximum is at an end or at the middle.
        [r.lo(), (r.lo() + r.hi()) / 2.0, r.hi()]
            .into_iter()
            .map(|x| self.variance_at(x))
            .fold(f64::MIN, f64::max)
    }
}
