//! Mechanisms chosen by name at run time: the kind enums, and `Any*` wrappers that
//! dispatch to the concrete mechanism (for command lines and metric catalogs).

use std::fmt;

use rand::CryptoRng;

use crate::{
    Affine, DiscreteLaplace, Duchi, FrequencyOracle, GridPoint, Grr, HadamardResponse, Hybrid,
    LdpError, NumericMechanism, Olh, OlhOutput, OneBitMean, PackedBits, Piecewise, Range,
    SupportProbabilities, UnaryEncoding,
};

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
}

impl FrequencyKind {
    /// Every frequency oracle, in documentation order.
    pub const ALL: [FrequencyKind; 5] = [Self::Grr, Self::Sue, Self::Oue, Self::Olh, Self::Hr];

    /// The names [`FrequencyKind::from_name`] accepts.
    pub const NAMES: &'static str = "grr, sue, oue, olh, hr";

    /// The short lowercase name used on command lines and in catalogs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Grr => "grr",
            Self::Sue => "sue",
            Self::Oue => "oue",
            Self::Olh => "olh",
            Self::Hr => "hr",
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

    /// The paper's approximate variance of one count estimate divided by `n`
    /// (`q(1-q)/(p-q)^2` with the paper's, not the realized, probabilities).
    pub fn paper_count_variance_per_user(self, epsilon: f64, domain: u32) -> f64 {
        let e = epsilon.exp();
        let d = f64::from(domain);
        match self {
            Self::Grr => (d - 2.0 + e) / ((e - 1.0) * (e - 1.0)),
            Self::Sue => {
                let h = (epsilon / 2.0).exp();
                h / ((h - 1.0) * (h - 1.0))
            }
            Self::Oue | Self::Olh => 4.0 * e / ((e - 1.0) * (e - 1.0)),
            Self::Hr => (e + 1.0) * (e + 1.0) / ((e - 1.0) * (e - 1.0)),
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
}

impl AnyFrequencyOracle {
    /// Builds the oracle of `kind` for `epsilon` over `0..domain`.
    pub fn new(kind: FrequencyKind, epsilon: f64, domain: u64) -> Result<Self, LdpError> {
        Ok(match kind {
            FrequencyKind::Grr => Self::Grr(Grr::new(epsilon, domain)?),
            FrequencyKind::Sue => Self::Unary(UnaryEncoding::symmetric(epsilon, domain)?),
            FrequencyKind::Oue => Self::Unary(UnaryEncoding::optimized(epsilon, domain)?),
            FrequencyKind::Olh => Self::Olh(Olh::new(epsilon, domain)?),
            FrequencyKind::Hr => Self::Hr(HadamardResponse::new(epsilon, domain)?),
        })
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
        }
    }

    fn epsilon(&self) -> f64 {
        match self {
            Self::Grr(m) => m.epsilon(),
            Self::Unary(m) => m.epsilon(),
            Self::Olh(m) => m.epsilon(),
            Self::Hr(m) => m.epsilon(),
        }
    }

    fn support_probabilities(&self) -> SupportProbabilities {
        match self {
            Self::Grr(m) => m.support_probabilities(),
            Self::Unary(m) => m.support_probabilities(),
            Self::Olh(m) => m.support_probabilities(),
            Self::Hr(m) => m.support_probabilities(),
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
        })
    }

    fn for_each_supported(&self, output: &FrequencyOutput, f: impl FnMut(u32)) {
        match (self, output) {
            (Self::Grr(m), FrequencyOutput::Value(v)) => m.for_each_supported(v, f),
            (Self::Unary(m), FrequencyOutput::Bits(b)) => m.for_each_supported(b, f),
            (Self::Olh(m), FrequencyOutput::Hashed(h)) => m.for_each_supported(h, f),
            (Self::Hr(m), FrequencyOutput::Value(v)) => m.for_each_supported(v, f),
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
            _ => false,
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
}

impl NumericKind {
    /// Every numeric mechanism, in documentation order.
    pub const ALL: [NumericKind; 5] = [
        Self::Laplace,
        Self::Duchi,
        Self::Piecewise,
        Self::Hybrid,
        Self::OneBit,
    ];

    /// The names [`NumericKind::from_name`] accepts.
    pub const NAMES: &'static str = "laplace, duchi, piecewise, hybrid, onebit";

    /// The short lowercase name used on command lines and in catalogs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Laplace => "laplace",
            Self::Duchi => "duchi",
            Self::Piecewise => "piecewise",
            Self::Hybrid => "hybrid",
            Self::OneBit => "onebit",
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
            Self::OneBit => {
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
}

macro_rules! each_numeric {
    ($self:expr, $m:ident => $body:expr) => {
        match $self {
            AnyNumericMechanism::Laplace($m) => $body,
            AnyNumericMechanism::Duchi($m) => $body,
            AnyNumericMechanism::Piecewise($m) => $body,
            AnyNumericMechanism::Hybrid($m) => $body,
            AnyNumericMechanism::OneBit($m) => $body,
        }
    };
}

impl AnyNumericMechanism {
    /// Builds the mechanism of `kind` for `epsilon` over `range`, with default grids.
    pub fn new(kind: NumericKind, epsilon: f64, range: Range) -> Result<Self, LdpError> {
        Ok(match kind {
            NumericKind::Laplace => Self::Laplace(DiscreteLaplace::new(epsilon, range)?),
            NumericKind::Duchi => Self::Duchi(Duchi::new(epsilon, range)?),
            NumericKind::Piecewise => Self::Piecewise(Piecewise::new(epsilon, range)?),
            NumericKind::Hybrid => Self::Hybrid(Hybrid::new(epsilon, range)?),
            NumericKind::OneBit => Self::OneBit(OneBitMean::new(epsilon, range)?),
        })
    }

    /// Which mechanism this is.
    pub fn kind(&self) -> NumericKind {
        match self {
            Self::Laplace(_) => NumericKind::Laplace,
            Self::Duchi(_) => NumericKind::Duchi,
            Self::Piecewise(_) => NumericKind::Piecewise,
            Self::Hybrid(_) => NumericKind::Hybrid,
            Self::OneBit(_) => NumericKind::OneBit,
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
