//! Mechanisms chosen by name at run time: the kind enums, and `Any*` wrappers that
//! dispatch to the concrete mechanism (for command lines and metric catalogs).

use std::fmt;

use rand::CryptoRng;

use crate::longitudinal::DEFAULT_PERM_RATIO;
use crate::{
    Affine, DBitFlipPm, DiscreteLaplace, Duchi, FrequencyOracle, GridPoint, Grr, HadamardResponse,
    Hybrid, LGrr, LLh, LOneBitMean, LUnary, LUnaryVariant, LdpError, NumericMechanism, Olh,
    OlhOutput, OneBitMean, PackedBits, Piecewise, Range, SupportProbabilities, UnaryEncoding,
};

/// The privacy parameters of a mechanism built by name: what one report
/// reveals, and for two-layer mechanisms what all reports about one value
/// reveal ([`DEFAULT_PERM_RATIO`] times `epsilon` when `None`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Privacy {
    /// Per report (`epsilon_1` of a two-layer mechanism).
    pub epsilon: f64,
    /// Per unchanged value (`epsilon_perm`); two-layer mechanisms only.
    pub epsilon_perm: Option<f64>,
}

impl From<f64> for Privacy {
    fn from(epsilon: f64) -> Self {
        Privacy {
            epsilon,
            epsilon_perm: None,
        }
    }
}

impl Privacy {
    /// The permanent epsilon a two-layer mechanism gets.
    pub fn perm(self) -> f64 {
        self.epsilon_perm
            .unwrap_or(DEFAULT_PERM_RATIO * self.epsilon)
    }
}

/// The positions dBitFlipPM reveals per report when it is built by name: the
/// fewest at which a report spends its whole `epsilon_1` (with one, the two
/// positions where inputs differ can never both show).
pub const DBITFLIP_SAMPLED: u32 = 2;

/// The frequency oracles, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrequencyKind {
    /// Generalized randomized response ([`Grr`]).
    Grr,
    /// Symmetric unary encoding, basic one-time RAPPOR ([`UnaryEncoding::symmetric`]).
    Sue,
    /// Optimized unary encoding ([`UnaryEncoding::optimized`]).
    Oue,
    /// Optimized local hashing ([`Olh`]).
    Olh,
    /// Hadamard response ([`HadamardResponse`]).
    Hr,
    /// Longitudinal GRR ([`LGrr`]), two layers.
    LGrr,
    /// Longitudinal SUE, basic RAPPOR ([`LUnary`]), two layers.
    LSue,
    /// Longitudinal OUE ([`LUnary`]), two layers.
    LOue,
    /// Longitudinal OUE then SUE ([`LUnary`]), two layers.
    LOsue,
    /// Longitudinal local hashing, L-OLH ([`LLh`]), two layers; research only.
    LLh,
    /// dBitFlipPM ([`DBitFlipPm`]) revealing [`DBITFLIP_SAMPLED`] positions, two layers.
    DBitFlipPm,
}

impl FrequencyKind {
    /// Every frequency oracle, in documentation order: the one-layer ones, then the two-layer ones.
    pub const ALL: [FrequencyKind; 11] = [
        Self::Grr,
        Self::Sue,
        Self::Oue,
        Self::Olh,
        Self::Hr,
        Self::LGrr,
        Self::LSue,
        Self::LOue,
        Self::LOsue,
        Self::LLh,
        Self::DBitFlipPm,
    ];

    /// The names [`FrequencyKind::from_name`] accepts.
    pub const NAMES: &'static str =
        "grr, sue, oue, olh, hr, l-grr, l-sue, l-oue, l-osue, l-lh, dbitflip-pm";

    /// The short lowercase name used on command lines and in catalogs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Grr => "grr",
            Self::Sue => "sue",
            Self::Oue => "oue",
            Self::Olh => "olh",
            Self::Hr => "hr",
            Self::LGrr => "l-grr",
            Self::LSue => "l-sue",
            Self::LOue => "l-oue",
            Self::LOsue => "l-osue",
            Self::LLh => "l-lh",
            Self::DBitFlipPm => "dbitflip-pm",
        }
    }

    /// Whether the oracle has a permanent and an instantaneous layer
    /// ([`crate::longitudinal::TwoLayer`]).
    pub fn is_two_layer(self) -> bool {
        !matches!(
            self,
            Self::Grr | Self::Sue | Self::Oue | Self::Olh | Self::Hr
        )
    }

    /// Parses a name (case-insensitive).
    pub fn from_name(name: &str) -> Result<Self, LdpError> {
        Self::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| LdpError::UnknownMechanism {
                name: name.to_owned(),
                valid: Self::NAMES,
            })
    }

    /// The paper's approximate variance of one count estimate divided by `n`
    /// (`q(1-q)/(p-q)^2` with the paper's, not the realized, probabilities).
    /// Two-layer oracles take `epsilon` as `epsilon_1` and
    /// [`DEFAULT_PERM_RATIO`] times it as `epsilon_perm`, with the paper's
    /// instantaneous parameters (Arcolezi et al. 2022; `multi-freq-ldpy` 0.2.5).
    pub fn paper_count_variance_per_user(self, epsilon: f64, domain: u32) -> f64 {
        self.paper_count_variance(epsilon.into(), domain)
    }

    /// [`FrequencyKind::paper_count_variance_per_user`] with both epsilons given.
    pub fn paper_count_variance(self, privacy: Privacy, domain: u32) -> f64 {
        let epsilon = privacy.epsilon;
        let e = epsilon.exp();
        let d = f64::from(domain);
        let perm = privacy.perm();
        let f = perm.exp();
        // Two layers compose to P - Q = (p1 - q1)(p2 - q2) and Q = q1 (p2 - q2) + q2.
        let layered = |p1: f64, q1: f64, p2: f64, q2: f64| {
            let q = q1 * (p2 - q2) + q2;
            q * (1.0 - q) / ((p1 - q1) * (p2 - q2)).powi(2)
        };
        let grr_layers = |k: f64| {
            let p1 = f / (f + k - 1.0);
            let q1 = (1.0 - p1) / (k - 1.0);
            let p2 = (q1 - e * p1) / (-p1 * e + k * q1 * e - q1 * e - p1 * (k - 1.0) + q1);
            (p1, q1, p2, (1.0 - p2) / (k - 1.0))
        };
        match self {
            Self::Grr => (d - 2.0 + e) / ((e - 1.0) * (e - 1.0)),
            Self::Sue => {
                let h = (epsilon / 2.0).exp();
                h / ((h - 1.0) * (h - 1.0))
            }
            Self::Oue | Self::Olh => 4.0 * e / ((e - 1.0) * (e - 1.0)),
            Self::Hr => (e + 1.0) * (e + 1.0) / ((e - 1.0) * (e - 1.0)),
            Self::LGrr => {
                let (p1, q1, p2, q2) = grr_layers(d);
                layered(p1, q1, p2, q2)
            }
            Self::LSue => {
                let p1 = (perm / 2.0).exp() / ((perm / 2.0).exp() + 1.0);
                let star = (epsilon / 2.0).exp() / ((epsilon / 2.0).exp() + 1.0);
                let p2 = (star - (1.0 - p1)) / (2.0 * p1 - 1.0);
                layered(p1, 1.0 - p1, p2, 1.0 - p2)
            }
            Self::LOsue => {
                let p2 = (1.0 - (epsilon + perm).exp()) / (e - f - (epsilon + perm).exp() + 1.0);
                layered(0.5, 1.0 / (f + 1.0), p2, 1.0 - p2)
            }
            Self::LOue => {
                let q2 = ((-1.118_033_988_749_89
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
                layered(0.5, 1.0 / (f + 1.0), 0.5, q2)
            }
            Self::LLh => match LLh::new(perm, epsilon, u64::from(domain)) {
                Ok(m) => {
                    let g = f64::from(m.hash_range());
                    let (p1, _, p2, q2) = grr_layers(g);
                    let p = p1 * p2 + (1.0 - p1) * q2;
                    let q = 1.0 / g;
                    q * (1.0 - q) / ((p - q) * (p - q))
                }
                Err(_) => f64::NAN,
            },
            Self::DBitFlipPm => {
                // Ding et al.'s estimator: each bucket is sampled by d/b of the
                // reports, whose bits are SUE-like with per-bit odds e^(eps/2).
                let h = (epsilon / 2.0).exp();
                let share = f64::from(DBITFLIP_SAMPLED) / d;
                let (p, q) = (share * h / (h + 1.0), share / (h + 1.0));
                q * (1.0 - q) / ((p - q) * (p - q))
            }
        }
    }
}

impl fmt::Display for FrequencyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Any frequency oracle, chosen at run time.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyFrequencyOracle {
    /// See [`Grr`].
    Grr(Grr),
    /// See [`UnaryEncoding`] (SUE or OUE).
    Unary(UnaryEncoding),
    /// See [`Olh`].
    Olh(Olh),
    /// See [`HadamardResponse`].
    Hr(HadamardResponse),
    /// See [`LGrr`].
    LGrr(LGrr),
    /// See [`LUnary`] (L-SUE, L-OUE, L-OSUE).
    LUnary(LUnary),
    /// See [`LLh`].
    LLh(LLh),
    /// See [`DBitFlipPm`].
    DBitFlip(DBitFlipPm),
}

impl AnyFrequencyOracle {
    /// Builds the oracle of `kind` for `epsilon` over `0..domain`. A two-layer
    /// oracle takes `epsilon` as its per-report `epsilon_1` and
    /// [`DEFAULT_PERM_RATIO`] times it as `epsilon_perm`;
    /// [`AnyFrequencyOracle::two_layer`] sets both.
    pub fn new(kind: FrequencyKind, epsilon: f64, domain: u64) -> Result<Self, LdpError> {
        Self::build(kind, epsilon.into(), domain)
    }

    /// Builds the oracle of `kind` with `privacy`: a one-layer oracle refuses an
    /// `epsilon_perm`, a two-layer one defaults it.
    pub fn build(kind: FrequencyKind, privacy: Privacy, domain: u64) -> Result<Self, LdpError> {
        let epsilon = privacy.epsilon;
        if kind.is_two_layer() {
            return Self::two_layer(kind, privacy.perm(), epsilon, domain);
        }
        if privacy.epsilon_perm.is_some() {
            return Err(LdpError::Epsilons(
                "epsilon_perm applies to two-layer mechanisms only (l-grr, l-sue, l-oue, l-osue, l-lh, dbitflip-pm, l-onebit)",
            ));
        }
        Ok(match kind {
            FrequencyKind::Grr => Self::Grr(Grr::new(epsilon, domain)?),
            FrequencyKind::Sue => Self::Unary(UnaryEncoding::symmetric(epsilon, domain)?),
            FrequencyKind::Oue => Self::Unary(UnaryEncoding::optimized(epsilon, domain)?),
            FrequencyKind::Olh => Self::Olh(Olh::new(epsilon, domain)?),
            FrequencyKind::Hr => Self::Hr(HadamardResponse::new(epsilon, domain)?),
            _ => unreachable!("two-layer kinds returned above"),
        })
    }

    /// Builds the two-layer oracle of `kind` with `epsilon_perm` per value and
    /// `epsilon_1` per report; one-layer kinds are an error.
    pub fn two_layer(
        kind: FrequencyKind,
        epsilon_perm: f64,
        epsilon_1: f64,
        domain: u64,
    ) -> Result<Self, LdpError> {
        let unary = |v| LUnary::new(v, epsilon_perm, epsilon_1, domain).map(Self::LUnary);
        match kind {
            FrequencyKind::LGrr => Ok(Self::LGrr(LGrr::new(epsilon_perm, epsilon_1, domain)?)),
            FrequencyKind::LSue => unary(LUnaryVariant::Sue),
            FrequencyKind::LOue => unary(LUnaryVariant::Oue),
            FrequencyKind::LOsue => unary(LUnaryVariant::Osue),
            FrequencyKind::LLh => Ok(Self::LLh(LLh::new(epsilon_perm, epsilon_1, domain)?)),
            FrequencyKind::DBitFlipPm => Ok(Self::DBitFlip(DBitFlipPm::new(
                epsilon_perm,
                epsilon_1,
                domain,
                DBITFLIP_SAMPLED.min(u32::try_from(domain).unwrap_or(u32::MAX)),
            )?)),
            _ => Err(LdpError::Epsilons(
                "this oracle has one layer and no epsilon_perm; its two-layer forms are l-grr, l-sue, l-oue, l-osue, l-lh and dbitflip-pm",
            )),
        }
    }

    /// Which oracle this is.
    pub fn kind(&self) -> FrequencyKind {
        match self {
            Self::Grr(_) => FrequencyKind::Grr,
            Self::Unary(u) => match u.variant() {
                crate::UnaryVariant::Symmetric => FrequencyKind::Sue,
                crate::UnaryVariant::Optimized => FrequencyKind::Oue,
            },
            Self::Olh(_) => FrequencyKind::Olh,
            Self::Hr(_) => FrequencyKind::Hr,
            Self::LGrr(_) => FrequencyKind::LGrr,
            Self::LUnary(u) => match u.variant() {
                LUnaryVariant::Sue => FrequencyKind::LSue,
                LUnaryVariant::Oue => FrequencyKind::LOue,
                LUnaryVariant::Osue => FrequencyKind::LOsue,
            },
            Self::LLh(_) => FrequencyKind::LLh,
            Self::DBitFlip(_) => FrequencyKind::DBitFlipPm,
        }
    }
}

/// A report of any frequency oracle.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FrequencyOutput {
    /// One reported index (GRR: a value; HR: an index below the Hadamard order).
    Value(u32),
    /// A unary-encoded bit vector (SUE, OUE).
    Bits(PackedBits),
    /// A hash seed and a randomized hash value (OLH).
    Hashed(OlhOutput),
}

impl fmt::Display for FrequencyOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Value(v) => write!(f, "{v}"),
            Self::Bits(b) => write!(f, "{b}"),
            Self::Hashed(h) => write!(f, "{h}"),
        }
    }
}

impl FrequencyOracle for AnyFrequencyOracle {
    type Output = FrequencyOutput;

    fn domain(&self) -> u32 {
        match self {
            Self::Grr(m) => m.domain(),
            Self::Unary(m) => m.domain(),
            Self::Olh(m) => m.domain(),
            Self::Hr(m) => m.domain(),
            Self::LGrr(m) => m.domain(),
            Self::LUnary(m) => m.domain(),
            Self::LLh(m) => m.domain(),
            Self::DBitFlip(m) => m.domain(),
        }
    }

    fn epsilon(&self) -> f64 {
        match self {
            Self::Grr(m) => m.epsilon(),
            Self::Unary(m) => m.epsilon(),
            Self::Olh(m) => m.epsilon(),
            Self::Hr(m) => m.epsilon(),
            Self::LGrr(m) => m.epsilon(),
            Self::LUnary(m) => m.epsilon(),
            Self::LLh(m) => m.epsilon(),
            Self::DBitFlip(m) => m.epsilon(),
        }
    }

    fn support_probabilities(&self) -> SupportProbabilities {
        match self {
            Self::Grr(m) => m.support_probabilities(),
            Self::Unary(m) => m.support_probabilities(),
            Self::Olh(m) => m.support_probabilities(),
            Self::Hr(m) => m.support_probabilities(),
            Self::LGrr(m) => m.support_probabilities(),
            Self::LUnary(m) => m.support_probabilities(),
            Self::LLh(m) => m.support_probabilities(),
            Self::DBitFlip(m) => m.support_probabilities(),
        }
    }

    fn perturb<R: CryptoRng + ?Sized>(
        &self,
        value: u32,
        rng: &mut R,
    ) -> Result<FrequencyOutput, LdpError> {
        Ok(match self {
            Self::Grr(m) => FrequencyOutput::Value(m.perturb(value, rng)?),
            Self::Unary(m) => FrequencyOutput::Bits(m.perturb(value, rng)?),
            Self::Olh(m) => FrequencyOutput::Hashed(m.perturb(value, rng)?),
            Self::Hr(m) => FrequencyOutput::Value(m.perturb(value, rng)?),
            Self::LGrr(m) => FrequencyOutput::Value(m.perturb(value, rng)?),
            Self::LUnary(m) => FrequencyOutput::Bits(m.perturb(value, rng)?),
            Self::LLh(m) => FrequencyOutput::Hashed(m.perturb(value, rng)?),
            Self::DBitFlip(m) => FrequencyOutput::Bits(m.perturb(value, rng)?),
        })
    }

    fn for_each_supported(&self, output: &FrequencyOutput, f: impl FnMut(u32)) {
        match (self, output) {
            (Self::Grr(m), FrequencyOutput::Value(v)) => m.for_each_supported(v, f),
            (Self::Unary(m), FrequencyOutput::Bits(b)) => m.for_each_supported(b, f),
            (Self::Olh(m), FrequencyOutput::Hashed(h)) => m.for_each_supported(h, f),
            (Self::Hr(m), FrequencyOutput::Value(v)) => m.for_each_supported(v, f),
            (Self::LGrr(m), FrequencyOutput::Value(v)) => m.for_each_supported(v, f),
            (Self::LUnary(m), FrequencyOutput::Bits(b)) => m.for_each_supported(b, f),
            (Self::LLh(m), FrequencyOutput::Hashed(h)) => m.for_each_supported(h, f),
            (Self::DBitFlip(m), FrequencyOutput::Bits(b)) => m.for_each_supported(b, f),
            // A report of another oracle's shape supports nothing; decoders reject it first.
            _ => {}
        }
    }

    fn is_valid_output(&self, output: &FrequencyOutput) -> bool {
        match (self, output) {
            (Self::Grr(m), FrequencyOutput::Value(v)) => m.is_valid_output(v),
            (Self::Unary(m), FrequencyOutput::Bits(b)) => m.is_valid_output(b),
            (Self::Olh(m), FrequencyOutput::Hashed(h)) => m.is_valid_output(h),
            (Self::Hr(m), FrequencyOutput::Value(v)) => m.is_valid_output(v),
            (Self::LGrr(m), FrequencyOutput::Value(v)) => m.is_valid_output(v),
            (Self::LUnary(m), FrequencyOutput::Bits(b)) => m.is_valid_output(b),
            (Self::LLh(m), FrequencyOutput::Hashed(h)) => m.is_valid_output(h),
            (Self::DBitFlip(m), FrequencyOutput::Bits(b)) => m.is_valid_output(b),
            _ => false,
        }
    }
}

/// A two-layer oracle's memoized permanent response, whatever the oracle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyPermanent {
    /// L-GRR's permanent value.
    Value(u32),
    /// A longitudinal unary encoding's or dBitFlipPM's permanent bits.
    Bits(PackedBits),
    /// L-LH's seed and permanent hashed value.
    Hashed(OlhOutput),
    /// A two-layer 1BitMean's permanent bit.
    Bit(bool),
}

impl AnyFrequencyOracle {
    /// The permanent response of `value` (two-layer oracles only; see
    /// [`crate::longitudinal::TwoLayer::permanent`]).
    pub fn permanent<R: CryptoRng + ?Sized>(
        &self,
        value: u32,
        rng: &mut R,
    ) -> Result<AnyPermanent, LdpError> {
        use crate::longitudinal::TwoLayer;
        Ok(match self {
            Self::LGrr(m) => AnyPermanent::Value(m.permanent(value, rng)?),
            Self::LUnary(m) => AnyPermanent::Bits(m.permanent(value, rng)?),
            Self::LLh(m) => AnyPermanent::Hashed(m.permanent(value, rng)?),
            Self::DBitFlip(m) => AnyPermanent::Bits(m.permanent(value, rng)?),
            _ => {
                return Err(LdpError::Epsilons(
                    "a one-layer oracle has no permanent layer",
                ));
            }
        })
    }

    /// One report from a permanent response of this oracle, with fresh randomness.
    pub fn instantaneous<R: CryptoRng + ?Sized>(
        &self,
        permanent: &AnyPermanent,
        rng: &mut R,
    ) -> Result<FrequencyOutput, LdpError> {
        use crate::longitudinal::TwoLayer;
        Ok(match (self, permanent) {
            (Self::LGrr(m), AnyPermanent::Value(v)) => {
                FrequencyOutput::Value(m.instantaneous(v, rng)?)
            }
            (Self::LUnary(m), AnyPermanent::Bits(b)) => {
                FrequencyOutput::Bits(m.instantaneous(b, rng)?)
            }
            (Self::LLh(m), AnyPermanent::Hashed(h)) => {
                FrequencyOutput::Hashed(m.instantaneous(h, rng)?)
            }
            (Self::DBitFlip(m), AnyPermanent::Bits(b)) => {
                FrequencyOutput::Bits(m.instantaneous(b, rng)?)
            }
            _ => {
                return Err(LdpError::Epsilons(
                    "the permanent response is not of this two-layer oracle",
                ));
            }
        })
    }

    /// The permanent layer's realized epsilon (two-layer oracles), or `None`.
    pub fn epsilon_perm(&self) -> Option<f64> {
        use crate::longitudinal::TwoLayer;
        match self {
            Self::LGrr(m) => Some(m.epsilon_perm()),
            Self::LUnary(m) => Some(m.epsilon_perm()),
            Self::LLh(m) => Some(m.epsilon_perm()),
            Self::DBitFlip(m) => Some(m.epsilon_perm()),
            _ => None,
        }
    }

    /// What one report reveals to someone who knows every permanent response
    /// ([`crate::longitudinal::TwoLayer::epsilon_change`]), or `None` for one layer.
    pub fn epsilon_change(&self) -> Option<f64> {
        use crate::longitudinal::TwoLayer;
        match self {
            Self::LGrr(m) => Some(m.epsilon_change()),
            Self::LUnary(m) => Some(m.epsilon_change()),
            Self::LLh(m) => Some(m.epsilon_change()),
            Self::DBitFlip(m) => Some(m.epsilon_change()),
            _ => None,
        }
    }
}

/// The numeric mechanisms, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NumericKind {
    /// Discrete Laplace on a grid ([`DiscreteLaplace`]).
    Laplace,
    /// Duchi et al. ([`Duchi`]).
    Duchi,
    /// The Piecewise Mechanism ([`Piecewise`]).
    Piecewise,
    /// The Hybrid Mechanism ([`Hybrid`]).
    Hybrid,
    /// 1BitMean ([`OneBitMean`]).
    OneBit,
    /// Two-layer 1BitMean with alpha-point rounding ([`LOneBitMean`]).
    LOneBit,
}

impl NumericKind {
    /// Every numeric mechanism, in documentation order.
    pub const ALL: [NumericKind; 6] = [
        Self::Laplace,
        Self::Duchi,
        Self::Piecewise,
        Self::Hybrid,
        Self::OneBit,
        Self::LOneBit,
    ];

    /// The names [`NumericKind::from_name`] accepts.
    pub const NAMES: &'static str = "laplace, duchi, piecewise, hybrid, onebit, l-onebit";

    /// Whether the mechanism has a permanent and an instantaneous layer.
    pub fn is_two_layer(self) -> bool {
        self == Self::LOneBit
    }

    /// The short lowercase name used on command lines and in catalogs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Laplace => "laplace",
            Self::Duchi => "duchi",
            Self::Piecewise => "piecewise",
            Self::Hybrid => "hybrid",
            Self::OneBit => "onebit",
            Self::LOneBit => "l-onebit",
        }
    }

    /// Parses a name (case-insensitive).
    pub fn from_name(name: &str) -> Result<Self, LdpError> {
        Self::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| LdpError::UnknownMechanism {
                name: name.to_owned(),
                valid: Self::NAMES,
            })
    }

    /// The paper's variance of one report for input `x` on `[-1, 1]` (for 1BitMean:
    /// on `[0, 1]`), as DESIGN.md's reference formulas state it.
    pub fn paper_variance(self, epsilon: f64, x: f64) -> f64 {
        let e = epsilon.exp();
        let duchi = ((e + 1.0) / (e - 1.0)).powi(2) - x * x;
        let half = (epsilon / 2.0).exp();
        let pm = x * x / (half - 1.0) + (half + 3.0) / (3.0 * (half - 1.0).powi(2));
        match self {
            Self::Laplace => 8.0 / (epsilon * epsilon),
            Self::Duchi => duchi,
            Self::Piecewise => pm,
            Self::Hybrid => {
                let a = if epsilon > crate::HYBRID_SWITCH_EPSILON {
                    1.0 - (-epsilon / 2.0).exp()
                } else {
                    0.0
                };
                a * pm + (1.0 - a) * duchi
            }
            // Two layers compose to 1BitMean at epsilon_1 (one report, fresh device).
            Self::OneBit | Self::LOneBit => {
                let p = 1.0 / (e + 1.0) + x * (e - 1.0) / (e + 1.0);
                p * (1.0 - p) * ((e + 1.0) / (e - 1.0)).powi(2)
            }
        }
    }
}

impl fmt::Display for NumericKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Any numeric mechanism, chosen at run time.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyNumericMechanism {
    /// See [`DiscreteLaplace`].
    Laplace(DiscreteLaplace),
    /// See [`Duchi`].
    Duchi(Duchi),
    /// See [`Piecewise`].
    Piecewise(Piecewise),
    /// See [`Hybrid`].
    Hybrid(Hybrid),
    /// See [`OneBitMean`].
    OneBit(OneBitMean),
    /// See [`LOneBitMean`].
    LOneBit(LOneBitMean),
}

macro_rules! each_numeric {
    ($self:expr, $m:ident => $body:expr) => {
        match $self {
            AnyNumericMechanism::Laplace($m) => $body,
            AnyNumericMechanism::Duchi($m) => $body,
            AnyNumericMechanism::Piecewise($m) => $body,
            AnyNumericMechanism::Hybrid($m) => $body,
            AnyNumericMechanism::OneBit($m) => $body,
            AnyNumericMechanism::LOneBit($m) => $body,
        }
    };
}

impl AnyNumericMechanism {
    /// Builds the mechanism of `kind` for `epsilon` over `range`, with default
    /// grids. A two-layer mechanism takes `epsilon` as `epsilon_1` and
    /// [`DEFAULT_PERM_RATIO`] times it as `epsilon_perm`.
    pub fn new(kind: NumericKind, epsilon: f64, range: Range) -> Result<Self, LdpError> {
        Self::build(kind, epsilon.into(), range)
    }

    /// Builds the mechanism of `kind` with `privacy`: a one-layer mechanism
    /// refuses an `epsilon_perm`, a two-layer one defaults it.
    pub fn build(kind: NumericKind, privacy: Privacy, range: Range) -> Result<Self, LdpError> {
        let epsilon = privacy.epsilon;
        if !kind.is_two_layer() && privacy.epsilon_perm.is_some() {
            return Err(LdpError::Epsilons(
                "epsilon_perm applies to two-layer mechanisms only (l-grr, l-sue, l-oue, l-osue, l-lh, dbitflip-pm, l-onebit)",
            ));
        }
        Ok(match kind {
            NumericKind::LOneBit => {
                Self::LOneBit(LOneBitMean::new(privacy.perm(), epsilon, range)?)
            }
            NumericKind::Laplace => Self::Laplace(DiscreteLaplace::new(epsilon, range)?),
            NumericKind::Duchi => Self::Duchi(Duchi::new(epsilon, range)?),
            NumericKind::Piecewise => Self::Piecewise(Piecewise::new(epsilon, range)?),
            NumericKind::Hybrid => Self::Hybrid(Hybrid::new(epsilon, range)?),
            NumericKind::OneBit => Self::OneBit(OneBitMean::new(epsilon, range)?),
        })
    }

    /// Builds the two-layer mechanism of `kind` with both epsilons; one-layer kinds are an error.
    pub fn two_layer(
        kind: NumericKind,
        epsilon_perm: f64,
        epsilon_1: f64,
        range: Range,
    ) -> Result<Self, LdpError> {
        match kind {
            NumericKind::LOneBit => Ok(Self::LOneBit(LOneBitMean::new(
                epsilon_perm,
                epsilon_1,
                range,
            )?)),
            _ => Err(LdpError::Epsilons(
                "this mechanism has one layer and no epsilon_perm; its two-layer form is l-onebit",
            )),
        }
    }

    /// The permanent layer's realized epsilon (two-layer mechanisms), or `None`.
    pub fn epsilon_perm(&self) -> Option<f64> {
        use crate::longitudinal::TwoLayer;
        match self {
            Self::LOneBit(m) => Some(m.epsilon_perm()),
            _ => None,
        }
    }

    /// What one report reveals to someone who knows every permanent response
    /// ([`crate::longitudinal::TwoLayer::epsilon_change`]), or `None` for one layer.
    pub fn epsilon_change(&self) -> Option<f64> {
        use crate::longitudinal::TwoLayer;
        match self {
            Self::LOneBit(m) => Some(m.epsilon_change()),
            _ => None,
        }
    }

    /// How many grid points a two-layer mechanism memoizes over (`None` for one layer).
    pub fn coarse_domain(&self) -> Option<u32> {
        use crate::longitudinal::TwoLayer;
        match self {
            Self::LOneBit(m) => Some(m.coarse_domain()),
            _ => None,
        }
    }

    /// The grid point alpha-point rounding puts `x` on (two-layer mechanisms).
    pub fn coarse(&self, x: f64, alpha: f64) -> Result<u32, LdpError> {
        match self {
            Self::LOneBit(m) => m.coarse(x, alpha),
            _ => Err(LdpError::Epsilons(
                "a one-layer mechanism has no permanent layer",
            )),
        }
    }

    /// The permanent response of grid point `coarse` (two-layer mechanisms).
    pub fn permanent<R: CryptoRng + ?Sized>(
        &self,
        coarse: u32,
        rng: &mut R,
    ) -> Result<AnyPermanent, LdpError> {
        use crate::longitudinal::TwoLayer;
        match self {
            Self::LOneBit(m) => Ok(AnyPermanent::Bit(m.permanent(coarse, rng)?)),
            _ => Err(LdpError::Epsilons(
                "a one-layer mechanism has no permanent layer",
            )),
        }
    }

    /// One report from a permanent response of this mechanism, with fresh randomness.
    pub fn instantaneous<R: CryptoRng + ?Sized>(
        &self,
        permanent: &AnyPermanent,
        rng: &mut R,
    ) -> Result<GridPoint, LdpError> {
        use crate::longitudinal::TwoLayer;
        match (self, permanent) {
            (Self::LOneBit(m), AnyPermanent::Bit(b)) => m.instantaneous(b, rng),
            _ => Err(LdpError::Epsilons(
                "the permanent response is not of this two-layer mechanism",
            )),
        }
    }

    /// Which mechanism this is.
    pub fn kind(&self) -> NumericKind {
        match self {
            Self::Laplace(_) => NumericKind::Laplace,
            Self::Duchi(_) => NumericKind::Duchi,
            Self::Piecewise(_) => NumericKind::Piecewise,
            Self::Hybrid(_) => NumericKind::Hybrid,
            Self::OneBit(_) => NumericKind::OneBit,
            Self::LOneBit(_) => NumericKind::LOneBit,
        }
    }
}

impl NumericMechanism for AnyNumericMechanism {
    fn range(&self) -> Range {
        each_numeric!(self, m => m.range())
    }

    fn epsilon(&self) -> f64 {
        each_numeric!(self, m => m.epsilon())
    }

    fn perturb<R: CryptoRng + ?Sized>(&self, x: f64, rng: &mut R) -> Result<GridPoint, LdpError> {
        each_numeric!(self, m => m.perturb(x, rng))
    }

    fn grid(&self, branch: u8) -> Option<Affine> {
        each_numeric!(self, m => m.grid(branch))
    }

    fn is_valid_output(&self, point: GridPoint) -> bool {
        each_numeric!(self, m => m.is_valid_output(point))
    }

    fn variance_at(&self, x: f64) -> f64 {
        each_numeric!(self, m => m.variance_at(x))
    }

    fn worst_case_variance(&self) -> f64 {
        each_numeric!(self, m => m.worst_case_variance())
    }
}
