//! Two-layer (longitudinal) mechanisms: a permanent randomized response of a
//! coarse value, memoized so that it is drawn once per value, and a fresh
//! instantaneous randomization of it on every report.
//!
//! One report reveals at most `epsilon_1` (the two layers composed); all the
//! reports about one unchanged value together reveal at most `epsilon_perm`,
//! because they are functions of one permanent response and of noise that
//! does not depend on the value (post-processing). That is RAPPOR's design
//! (Erlingsson, Pihur, Korolova, CCS 2014) and the longitudinal protocols of
//! Arcolezi, Couchot, Al Bouna, Xiao ("Improving the utility of locally
//! differentially private protocols for longitudinal and multidimensional
//! frequency estimates", 2022) and of Ding, Kulkarni, Yekhanin ("Collecting
//! Telemetry Data Privately", NeurIPS 2017).
//!
//! Each mechanism here is also a one-report mechanism ([`FrequencyOracle`] or
//! [`NumericMechanism`](crate::NumericMechanism)) whose `perturb` draws both
//! layers from one generator and whose `epsilon` is `epsilon_1`: that is a
//! fresh device's report, which the estimators, simulations and the auditor
//! use unchanged. [`TwoLayer`] exposes the layers apart, for a device that
//! memoizes its permanent responses.
//!
//! The instantaneous layer's parameters are solved so that the composed
//! channel, computed from both layers' *realized* thresholds, is
//! `epsilon_1`-LDP; the threshold is rounded in the private direction and the
//! stated `epsilon_1` is the composed loss recomputed from the thresholds,
//! rounded up, as for the one-layer mechanisms.

mod frequency;
mod onebit;

pub use frequency::{DBitFlipPm, LGrr, LLh, LUnary, LUnaryVariant};
pub use onebit::LOneBitMean;

use std::fmt::Debug;

use rand::CryptoRng;

use crate::LdpError;
use crate::epsilon::check_epsilon;
use crate::sampling::Threshold;

/// How many times `epsilon_1` a two-layer mechanism's `epsilon_perm` is when
/// it is built by name with one epsilon (command lines, simulations): Hush's
/// default terms are 2 per report and 4 per value.
pub const DEFAULT_PERM_RATIO: f64 = 2.0;

/// The two layers of a longitudinal mechanism, apart.
///
/// A device draws [`TwoLayer::permanent`] once per coarse value, from a
/// generator it can reproduce (Hush's agent seeds it with a keyed PRF of the
/// value, so nothing on disk lists the values), and calls
/// [`TwoLayer::instantaneous`] on every report with fresh randomness.
pub trait TwoLayer {
    /// The memoized permanent response.
    type Permanent: Clone + Debug + PartialEq;
    /// One report.
    type Output;

    /// How many coarse values the permanent layer is memoized over.
    fn coarse_domain(&self) -> u32;

    /// What all reports about one coarse value can reveal together: the
    /// permanent layer's loss from its realized thresholds, rounded up.
    fn epsilon_perm(&self) -> f64;

    /// What one report reveals: the composed channel's loss from the realized
    /// thresholds of both layers, rounded up.
    fn epsilon_1(&self) -> f64;

    /// What one report reveals about *which* of the device's permanent
    /// responses it re-randomizes, to someone who already knows them all (a
    /// collector that has averaged a year of one device's reports can learn
    /// them): the instantaneous layer's loss between the two most different
    /// permanent responses, from its realized thresholds, rounded up. It
    /// bounds what each report adds about *when* a value changed, or which of
    /// its known values a day had; the permanent layer does not hide that.
    /// For single-symbol layers it is close to `epsilon_1`; for unary
    /// encodings it grows with the number of bits two responses can differ in.
    fn epsilon_change(&self) -> f64;

    /// The permanent response of a coarse value in `0..coarse_domain()`.
    fn permanent<R: CryptoRng + ?Sized>(
        &self,
        coarse: u32,
        rng: &mut R,
    ) -> Result<Self::Permanent, LdpError>;

    /// One report from a permanent response, with fresh randomness.
    fn instantaneous<R: CryptoRng + ?Sized>(
        &self,
        permanent: &Self::Permanent,
        rng: &mut R,
    ) -> Result<Self::Output, LdpError>;
}

/// Checks a two-layer pair: both valid epsilons and `epsilon_1 < epsilon_perm`.
pub(crate) fn check_layers(epsilon_perm: f64, epsilon_1: f64) -> Result<(f64, f64), LdpError> {
    let (perm, one) = (check_epsilon(epsilon_perm)?, check_epsilon(epsilon_1)?);
    if one < perm {
        Ok((perm, one))
    } else {
        Err(LdpError::Layers {
            epsilon_1: one,
            epsilon_perm: perm,
        })
    }
}

/// The composed probabilities of a report "supporting" a position when the
/// permanent layer supports it with `p1` (true position) or `q1` (another)
/// and the instantaneous layer keeps a supported position with `p2` and makes
/// an unsupported one supported with `q2`: `(p1 p2 + (1 - p1) q2, q1 p2 + (1 - q1) q2)`.
///
/// The same algebra serves GRR (a report supports the value it names, `q2`
/// per other value) and unary encodings (a report supports each set bit).
pub(crate) fn compose(p1: f64, q1: f64, p2: f64, q2: f64) -> (f64, f64) {
    (p1 * p2 + (1.0 - p1) * q2, q1 * p2 + (1.0 - q1) * q2)
}

/// The keep threshold of a symmetric randomized response applied to a
/// permanent bit that is 1 with probability `h` for a set input and `1 - h`
/// otherwise (`h > 1/2`), such that the composed bit has log-odds at most
/// `target` (`P / (1 - P) <= e^target`).
///
/// The composed `P = h p2 + (1 - h)(1 - p2)` grows with `p2` (as `h > 1/2`),
/// so `p2 = (P* - (1 - h)) / (2 h - 1)` with `P* = e^t / (1 + e^t)` is
/// rounded down. A `target` at or above the permanent layer's own log-odds
/// would need `p2 >= 1`: an error, as no fresh randomization would remain.
pub(crate) fn symmetric_keep(h: f64, target: f64) -> Result<Threshold, LdpError> {
    let star = 1.0 / (1.0 + (-target).exp());
    let p2 = (star - (1.0 - h)) / (2.0 * h - 1.0);
    if !(p2 > 0.5 && p2 < 1.0) {
        return Err(LdpError::Unrealizable(
            "no instantaneous layer fits: epsilon_1 must be below epsilon_perm, and not so close that the fresh layer rounds away",
        ));
    }
    let keep = Threshold::floor(p2);
    if keep.raw() <= 1 << 63 {
        return Err(LdpError::Unrealizable(
            "the instantaneous layer's keep probability rounds to one half",
        ));
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_symmetric_layer_meets_its_target_from_below() {
        for (perm, one) in [(4.0, 2.0), (1.0, 0.5), (20.0, 19.0), (0.02, 0.01)] {
            let h = 1.0 / (1.0 + f64::exp(-perm));
            let keep = symmetric_keep(h, one).unwrap();
            let p2 = keep.prob();
            let composed = h * p2 + (1.0 - h) * (1.0 - p2);
            let odds = (composed / (1.0 - composed)).ln();
            assert!(odds <= one * (1.0 + 1e-12), "{perm}/{one}: {odds}");
            assert!(
                odds > one * (1.0 - 1e-9),
                "{perm}/{one}: {odds} wastes budget"
            );
        }
        assert!(symmetric_keep(1.0 / (1.0 + f64::exp(-2.0)), 2.0).is_err());
        assert!(check_layers(2.0, 2.0).is_err());
        assert!(check_layers(2.0, 3.0).is_err());
        assert_eq!(check_layers(4.0, 2.0), Ok((4.0, 2.0)));
    }
}
