//! Learned ranges: how far each count's range and distribution ladder are
//! scaled from the built-in catalog, in quarter octaves, and the revision a
//! collector publishes in its policy.
//!
//! A collector learns a fleet's ranges from the distributions it has already
//! released (post-processing: no privacy cost) and publishes them as steps;
//! an agent adopts them at a period boundary, a few times a year at most. The
//! steps are the only thing a collector can change: every other part of the
//! catalog (metrics, buckets of ratios and categories, mechanisms, weights)
//! is the agent's own, so a published revision cannot aim a bucket at one
//! value, and a range it sets changes no epsilon (every mechanism is
//! epsilon-LDP whatever its range). A changed range is a changed metric
//! definition, so its first report draws a new permanent response, charged
//! to the same per-measure cap on new values as any other.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Measure, ReportError};

/// Steps per doubling: a step scales a range by 2^(1/4), about 19%, so a
/// learned range lands within 9% of the one wanted.
pub const STEPS_PER_OCTAVE: i8 = 4;

/// The lowest step: a quarter of the built-in range (the smallest ladder then
/// still starts at one whole unit or more).
pub const MIN_STEP: i8 = -8;

/// The highest step: 32 times the built-in range, for fleets far busier than
/// the one the catalog was fitted to.
pub const MAX_STEP: i8 = 20;

/// 2^(k/4) for k in 0..4, written out so that every platform builds the same
/// catalog bytes (and so the same hash) from the same steps.
const QUARTER_OCTAVES: [f64; 4] = [
    1.0,
    1.189_207_115_002_721,
    std::f64::consts::SQRT_2,
    1.681_792_830_507_429,
];

/// The factor a step scales a range by: 2^(step/4).
pub fn step_factor(step: i8) -> f64 {
    let (octaves, rest) = (i32::from(step).div_euclid(4), i32::from(step).rem_euclid(4));
    // Powers of two are exact in binary floating point.
    QUARTER_OCTAVES[rest as usize] * 2f64.powi(octaves)
}

/// The step nearest to scaling by `factor` (positive), within the valid steps.
pub fn nearest_step(factor: f64) -> i8 {
    let step = (f64::from(STEPS_PER_OCTAVE) * factor.log2()).round();
    step.clamp(f64::from(MIN_STEP), f64::from(MAX_STEP)) as i8
}

/// `x` (positive) rounded to two significant figures, so a scaled range
/// reads as a person would write it (107,000 rather than 107,022.6...).
pub fn round2(x: f64) -> f64 {
    if !(x.is_finite() && x > 0.0) {
        return x;
    }
    let mut magnitude = 1.0;
    while x / magnitude >= 100.0 {
        magnitude *= 10.0;
    }
    while x / magnitude < 10.0 {
        magnitude /= 10.0;
    }
    (x / magnitude).round() * magnitude
}

/// The working-day 90th percentile of each count measure in the population
/// the built-in catalog was fitted to (the demo's simulated people,
/// `tests/catalog_fit.rs` checks them): what a fleet's released p90 is
/// compared with to tell whether its days are larger or smaller.
pub fn fitted_p90(measure: Measure) -> Option<f64> {
    Some(match measure {
        Measure::ActiveMinutes => 420.0,
        Measure::Keystrokes => 53_000.0,
        Measure::Clicks => 730.0,
        Measure::ScrollNotches => 2_100.0,
        Measure::PointerTravel => 870.0,
        Measure::LongestFocus => 120.0,
        _ => return None,
    })
}

/// How far each count measure's range and ladder sit from the built-in
/// catalog, in steps of 2^(1/4); a measure not listed is at step 0. Valid by
/// construction: only count measures, each step in
/// [`MIN_STEP`]`..=`[`MAX_STEP`], no zero steps (so equal scalings compare
/// and serialize equal).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "BTreeMap<String, i8>", into = "BTreeMap<String, i8>")]
pub struct RangeSteps(BTreeMap<&'static str, i8>);

impl RangeSteps {
    /// Steps for the given measures; an error names a measure that has no
    /// range (not a count) or a step out of range.
    pub fn new(steps: impl IntoIterator<Item = (Measure, i8)>) -> Result<Self, ReportError> {
        let mut out = BTreeMap::new();
        for (measure, step) in steps {
            if !measure.always_defined() {
                return Err(ReportError::Catalog(format!(
                    "{} is not a count: it has no range to scale",
                    measure.name()
                )));
            }
            if !(MIN_STEP..=MAX_STEP).contains(&step) {
                return Err(ReportError::Catalog(format!(
                    "step {step} for {} is outside {MIN_STEP}..={MAX_STEP}",
                    measure.name()
                )));
            }
            if step != 0 {
                out.insert(measure.name(), step);
            } else {
                out.remove(measure.name());
            }
        }
        Ok(RangeSteps(out))
    }

    /// The step of `measure` (0 when not listed).
    pub fn step(&self, measure: Measure) -> i8 {
        self.0.get(measure.name()).copied().unwrap_or(0)
    }

    /// The factor `measure`'s range and ladder are scaled by.
    pub fn factor(&self, measure: Measure) -> f64 {
        step_factor(self.step(measure))
    }

    /// The working-day 90th percentile these steps assume for `measure`
    /// (`None` for a measure that is not a count).
    pub fn assumed_p90(&self, measure: Measure) -> Option<f64> {
        fitted_p90(measure).map(|p| p * self.factor(measure))
    }

    /// These steps with `measure` moved to `step` (clamped to the valid steps).
    pub fn with(&self, measure: Measure, step: i8) -> RangeSteps {
        let mut out = self.clone();
        if measure.always_defined() {
            let step = step.clamp(MIN_STEP, MAX_STEP);
            if step == 0 {
                out.0.remove(measure.name());
            } else {
                out.0.insert(measure.name(), step);
            }
        }
        out
    }

    /// The measures whose step differs between `self` and `other`.
    pub fn changed(&self, other: &RangeSteps) -> Vec<Measure> {
        Measure::ALL
            .into_iter()
            .filter(|&m| self.step(m) != other.step(m))
            .collect()
    }
}

impl TryFrom<BTreeMap<String, i8>> for RangeSteps {
    type Error = ReportError;

    fn try_from(map: BTreeMap<String, i8>) -> Result<Self, Self::Error> {
        let steps = map
            .into_iter()
            .map(|(name, step)| {
                Measure::ALL
                    .into_iter()
                    .find(|m| m.name() == name)
                    .map(|m| (m, step))
                    .ok_or_else(|| ReportError::Catalog(format!("no measure named '{name}'")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        RangeSteps::new(steps)
    }
}

impl From<RangeSteps> for BTreeMap<String, i8> {
    fn from(steps: RangeSteps) -> Self {
        steps
            .0
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
    }
}

/// What a collector publishes in its policy (`GET /v1/policy`, field
/// `ranges`): the revision number (0 is the built-in catalog) and its steps.
/// An agent builds the catalog with [`crate::Catalog::with_ranges`] and checks
/// its hash against the policy's list.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PublishedRanges {
    /// Counts up from 0, one per published change.
    pub revision: u32,
    /// Each count measure's step.
    pub steps: RangeSteps,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

    use super::*;
    use crate::{Catalog, Encoding, MetricKind};

    #[test]
    fn steps_are_quarter_octaves_exactly() {
        assert_eq!(step_factor(0), 1.0);
        assert_eq!(step_factor(4), 2.0);
        assert_eq!(step_factor(-8), 0.25);
        for s in MIN_STEP..=MAX_STEP {
            let want = 2f64.powf(f64::from(s) / 4.0);
            assert!((step_factor(s) / want - 1.0).abs() < 1e-15, "{s}");
            assert_eq!(nearest_step(step_factor(s)), s);
        }
        assert_eq!(nearest_step(10.0), 13);
        assert_eq!(nearest_step(1e9), MAX_STEP);
    }

    #[test]
    fn rounding_keeps_two_significant_figures() {
        assert_eq!(round2(107_022.6), 110_000.0);
        assert_eq!(round2(90_000.0), 90_000.0);
        assert_eq!(round2(1_189.2), 1_200.0);
        assert_eq!(round2(15.0), 15.0);
        assert!((round2(1.25) - 1.3).abs() < 1e-12);
    }

    #[test]
    fn only_count_measures_within_bounds_are_steps() {
        assert!(RangeSteps::new([(Measure::TypingSpeed, 1)]).is_err());
        assert!(RangeSteps::new([(Measure::Keystrokes, MAX_STEP + 1)]).is_err());
        assert!(RangeSteps::new([(Measure::Keystrokes, MIN_STEP - 1)]).is_err());
        let zero = RangeSteps::new([(Measure::Keystrokes, 0)]).unwrap();
        assert_eq!(zero, RangeSteps::default());
        let bad: Result<RangeSteps, _> = serde_json::from_str(r#"{"typing_speed": 2}"#);
        assert!(bad.is_err());
        let bad: Result<RangeSteps, _> = serde_json::from_str(r#"{"nonsense": 2}"#);
        assert!(bad.is_err());
        let bad: Result<RangeSteps, _> = serde_json::from_str(r#"{"clicks": 99}"#);
        assert!(bad.is_err());
    }

    #[test]
    fn published_ranges_have_a_fixed_json_form() {
        let published = PublishedRanges {
            revision: 3,
            steps: RangeSteps::new([(Measure::Keystrokes, 12), (Measure::Clicks, -2)]).unwrap(),
        };
        let json = serde_json::to_string(&published).unwrap();
        assert_eq!(
            json,
            r#"{"revision":3,"steps":{"clicks":-2,"keystrokes":12}}"#
        );
        assert_eq!(
            serde_json::from_str::<PublishedRanges>(&json).unwrap(),
            published
        );
    }

    #[test]
    fn a_step_scales_its_measures_range_and_ladder_and_nothing_else() {
        let builtin = Catalog::builtin();
        assert_eq!(Catalog::with_ranges(&RangeSteps::default()), builtin);
        let steps = RangeSteps::new([(Measure::Keystrokes, 12)]).unwrap();
        let scaled = Catalog::with_ranges(&steps);
        assert_ne!(scaled.hash(), builtin.hash());
        assert_eq!(scaled.version(), builtin.version());
        for (a, b) in builtin.metrics().iter().zip(scaled.metrics()) {
            assert_eq!((a.name, a.weight, a.kind), (b.name, b.weight, b.kind));
            if a.measure != Measure::Keystrokes {
                assert_eq!(a, b);
                continue;
            }
            match (&a.encoding, &b.encoding) {
                (Encoding::Numeric { hi: x, .. }, Encoding::Numeric { hi: y, .. }) => {
                    assert_eq!((*x, *y), (90_000.0, 720_000.0));
                }
                (
                    Encoding::Buckets { edges: x, .. },
                    Encoding::Buckets {
                        edges: y, labels, ..
                    },
                ) => {
                    assert_eq!(b.kind, MetricKind::Distribution);
                    assert_eq!(x.len(), y.len());
                    for (x, y) in x.iter().zip(y) {
                        assert_eq!(*y, 8.0 * x);
                    }
                    assert_eq!(labels[1], "under 8,000");
                }
                _ => panic!("{}: encoding kind changed", a.name),
            }
        }
        // Steps that are not whole octaves round to two figures.
        let odd = Catalog::with_ranges(&RangeSteps::new([(Measure::Clicks, 1)]).unwrap());
        let hi = match odd.metric("clicks").unwrap().encoding {
            Encoding::Numeric { hi, .. } => hi,
            _ => unreachable!("clicks is numeric"),
        };
        assert_eq!(hi, 1_500.0);
    }
}
