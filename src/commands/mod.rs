//! The subcommands' bodies: each builds mechanisms from arguments, calls a crate, prints.

pub mod audit;
pub mod bench;
pub mod collector;
pub mod demo;
pub mod plan;
pub mod sample;
pub mod simulate;

use hush_ldp::{AnyFrequencyOracle, AnyNumericMechanism, FrequencyKind, NumericKind, Privacy};

pub use crate::exit::Usage;

/// A mechanism of either family, built from a name given on the command line.
pub enum Mechanism {
    /// A frequency oracle (needs `--domain`).
    Frequency(AnyFrequencyOracle),
    /// A numeric mechanism on its simulation range.
    Numeric(AnyNumericMechanism),
}

impl Mechanism {
    /// Builds the mechanism named `name`; frequency oracles require a domain, numeric ones refuse it.
    pub fn from_args(
        name: &str,
        epsilon: f64,
        epsilon_perm: Option<f64>,
        domain: Option<u64>,
    ) -> anyhow::Result<Self> {
        let privacy = privacy(epsilon, epsilon_perm)?;
        if let Ok(kind) = FrequencyKind::from_name(name) {
            let Some(d) = domain else {
                return Err(Usage(format!(
                    "--domain is required for the frequency oracle '{kind}' (a size in [2, {}])",
                    hush_ldp::MAX_DOMAIN
                ))
                .into());
            };
            return Ok(Mechanism::Frequency(AnyFrequencyOracle::build(
                kind, privacy, d,
            )?));
        }
        if let Ok(kind) = NumericKind::from_name(name) {
            if domain.is_some() {
                return Err(Usage(format!(
                    "--domain applies to frequency oracles only; '{kind}' works on {}",
                    describe_range(hush_stats::simulate::simulation_range(kind))
                ))
                .into());
            }
            let range = hush_stats::simulate::simulation_range(kind);
            return Ok(Mechanism::Numeric(AnyNumericMechanism::build(
                kind, privacy, range,
            )?));
        }
        Err(Usage(format!(
            "unknown mechanism '{name}'; frequency oracles: {}; numeric: {}",
            FrequencyKind::NAMES,
            NumericKind::NAMES
        ))
        .into())
    }
}

/// The privacy of `--epsilon` and `--epsilon-perm`, checked against each other.
pub fn privacy(epsilon: f64, epsilon_perm: Option<f64>) -> anyhow::Result<Privacy> {
    if let Some(perm) = epsilon_perm
        && perm <= epsilon
    {
        return Err(Usage(format!(
            "--epsilon-perm ({perm}) must be above --epsilon ({epsilon}): each report adds fresh noise to a permanent response"
        ))
        .into());
    }
    Ok(Privacy {
        epsilon,
        epsilon_perm,
    })
}

/// The epsilon per value for `--epsilon` and `--epsilon-perm`: as given, or
/// [`hush_ldp::DEFAULT_PERM_RATIO`] times the epsilon per report; above it and
/// at most 20.
pub fn epsilon_perm(epsilon: f64, epsilon_perm: Option<f64>) -> anyhow::Result<f64> {
    let perm = epsilon_perm.unwrap_or(hush_ldp::DEFAULT_PERM_RATIO * epsilon);
    if perm <= epsilon || hush_ldp::check_epsilon(perm).is_err() {
        return Err(Usage(format!(
            "--epsilon-perm: must be above --epsilon ({epsilon}) and at most 20, got {perm}"
        ))
        .into());
    }
    Ok(perm)
}

/// A number for a table: whole above 100, two decimals above 1, four below.
pub fn fmt_value(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.4}")
    }
}

/// `[lo, hi]` for messages.
pub fn describe_range(r: hush_ldp::Range) -> String {
    format!("[{}, {}]", r.lo(), r.hi())
}
