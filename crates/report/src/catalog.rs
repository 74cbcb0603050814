//! The metric catalog: what Hush measures, how each metric is clipped or bucketed, which
//! mechanism privatizes it and with what share of the epsilon. Versioned and hashed.

use std::fmt::Write as _;

use hush_ldp::{
    AnyFrequencyOracle, AnyNumericMechanism, AnyPermanent, FrequencyKind, NumericKind, Range,
};
use rand::CryptoRng;
use sha2::{Digest, Sha256};

use crate::{Measure, RawMeasurements, ReportError};

/// What kind of quantity a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A non-negative count per period; estimated as a population mean.
    Count,
    /// A share in `[0, 1]`, bucketed; estimated as a distribution over buckets.
    Ratio,
    /// One category out of a fixed list; estimated as a distribution.
    Categorical,
    /// A count's spread over the fleet: bucketed on a ladder of doubling
    /// edges, estimated as a distribution over buckets and its quantiles.
    /// It shares its measure's count metric's cap on new values a year, so
    /// adding it does not raise what a year of reports can reveal.
    Distribution,
}

impl MetricKind {
    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Ratio => "ratio",
            Self::Categorical => "categorical",
            Self::Distribution => "distribution",
        }
    }
}

/// How a metric's value is encoded for its mechanism.
#[derive(Debug, Clone, PartialEq)]
pub enum Encoding {
    /// Clipped to `[lo, hi]` and privatized by a numeric mechanism.
    Numeric {
        /// The numeric mechanism.
        mechanism: NumericKind,
        /// Clipping lower bound.
        lo: f64,
        /// Clipping upper bound.
        hi: f64,
    },
    /// Bucket 0 means "undefined"; otherwise bucket `1 + i` where `i` counts the
    /// ascending `edges` at or below the value. Privatized by a frequency oracle.
    Buckets {
        /// The frequency oracle.
        mechanism: FrequencyKind,
        /// Ascending bucket edges.
        edges: Vec<f64>,
        /// One label per bucket (`edges.len() + 2` of them), for people.
        labels: Vec<String>,
    },
    /// Category 0 means "none"; otherwise `1 + index`. Privatized by a frequency oracle.
    Categories {
        /// The frequency oracle.
        mechanism: FrequencyKind,
        /// One label per category, "none" first.
        labels: Vec<String>,
    },
}

/// A metric's value before privatization.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricValue {
    /// A clipped number (numeric encodings).
    Number(f64),
    /// A bucket or category index (frequency encodings).
    Category(u32),
}

/// A mechanism built for one metric at a given epsilon.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricMechanism {
    /// For bucket and category encodings.
    Frequency(AnyFrequencyOracle),
    /// For numeric encodings.
    Numeric(AnyNumericMechanism),
}

/// The most one report of a built-in metric may reveal about which of the
/// device's permanent responses it carries (its `epsilon_change`), as a
/// multiple of the report's epsilon. A collector that averages a year of a
/// device's reports can learn those responses; from then on each report tells
/// it, at this loss, which of the known values that day had (for instance,
/// "no input": a day off). Single-symbol layers (L-GRR, L-1BitMean) stay near
/// epsilon_1; unary encodings grow with the domain (L-SUE at d = 15 reaches 21
/// at the default terms), so the catalog does not use them.
pub const MAX_CHANGE_FACTOR: f64 = 1.25;

impl MetricMechanism {
    /// What one report reveals to someone who knows every permanent response
    /// (`hush_ldp::TwoLayer::epsilon_change`); `None` for a one-layer mechanism.
    pub fn epsilon_change(&self) -> Option<f64> {
        match self {
            Self::Frequency(o) => o.epsilon_change(),
            Self::Numeric(m) => m.epsilon_change(),
        }
    }

    /// How many coarse values the permanent layer memoizes over: the buckets or
    /// categories, or the grid points of a numeric metric.
    pub fn coarse_domain(&self) -> u32 {
        use hush_ldp::FrequencyOracle;
        match self {
            Self::Frequency(o) => o.domain(),
            Self::Numeric(m) => m.coarse_domain().unwrap_or(1),
        }
    }

    /// The coarse value a metric value is memoized under: the bucket or category
    /// itself, or the grid point alpha-point rounding puts a number on.
    pub fn coarse(&self, value: MetricValue, alpha: f64) -> Result<u32, ReportError> {
        Ok(match (self, value) {
            (Self::Frequency(_), MetricValue::Category(c)) => c,
            (Self::Numeric(m), MetricValue::Number(x)) => m.coarse(x, alpha)?,
            _ => {
                return Err(ReportError::Catalog(
                    "value does not fit the metric's mechanism".into(),
                ));
            }
        })
    }

    /// The permanent response of a coarse value, from `rng` (the device's
    /// keyed generator for this value).
    pub fn permanent<R: CryptoRng + ?Sized>(
        &self,
        coarse: u32,
        rng: &mut R,
    ) -> Result<AnyPermanent, ReportError> {
        Ok(match self {
            Self::Frequency(o) => o.permanent(coarse, rng)?,
            Self::Numeric(m) => m.permanent(coarse, rng)?,
        })
    }

    /// One report's value from a permanent response, with fresh randomness.
    pub fn instantaneous<R: CryptoRng + ?Sized>(
        &self,
        permanent: &AnyPermanent,
        rng: &mut R,
    ) -> Result<crate::Privatized, ReportError> {
        Ok(match self {
            Self::Frequency(o) => {
                crate::Privatized::from_frequency(o.instantaneous(permanent, rng)?)
            }
            Self::Numeric(m) => crate::Privatized::from_grid(m.instantaneous(permanent, rng)?),
        })
    }
}

/// One metric of the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Stable identifier, used in reports, datasets and plots.
    pub name: &'static str,
    /// What it means, for the person whose laptop is measured.
    pub description: &'static str,
    /// Unit of the value, for people.
    pub unit: &'static str,
    /// Count, ratio or categorical.
    pub kind: MetricKind,
    /// The quantity read from the raw measurements.
    pub measure: Measure,
    /// Clipping or bucketing, and the mechanism.
    pub encoding: Encoding,
    /// Relative probability of being sampled into a report (each metric in a
    /// report gets an even share of its epsilons).
    pub weight: u32,
}

impl Metric {
    /// The metric's value in `raw`, clipped or bucketed as its encoding says.
    pub fn value(&self, raw: &RawMeasurements) -> MetricValue {
        self.value_of(self.measure.read(raw))
    }

    /// The metric's value for a reading of its measure (`None` where the
    /// measure is undefined), clipped or bucketed as its encoding says.
    pub fn value_of(&self, read: Option<f64>) -> MetricValue {
        match &self.encoding {
            Encoding::Numeric { lo, hi, .. } => {
                MetricValue::Number(read.unwrap_or(0.0).clamp(*lo, *hi))
            }
            Encoding::Buckets { edges, .. } => MetricValue::Category(match read {
                None => 0,
                Some(x) => 1 + edges.iter().filter(|&&e| e <= x).count() as u32,
            }),
            Encoding::Categories { .. } => MetricValue::Category(read.map_or(0, |i| 1 + i as u32)),
        }
    }

    /// The value in words, for the person at the keyboard.
    pub fn describe(&self, value: MetricValue) -> String {
        match (&self.encoding, value) {
            (Encoding::Numeric { .. }, MetricValue::Number(x)) => {
                format!("{} {}", trim_float(x), self.unit)
            }
            (
                Encoding::Buckets { labels, .. } | Encoding::Categories { labels, .. },
                MetricValue::Category(c),
            ) => labels
                .get(c as usize)
                .cloned()
                .unwrap_or_else(|| format!("bucket {c}")),
            (_, MetricValue::Number(x)) => trim_float(x),
            (_, MetricValue::Category(c)) => format!("bucket {c}"),
        }
    }

    /// The domain size of a frequency encoding (`None` for numeric ones).
    pub fn domain(&self) -> Option<u32> {
        match &self.encoding {
            Encoding::Numeric { .. } => None,
            Encoding::Buckets { edges, .. } => Some(edges.len() as u32 + 2),
            Encoding::Categories { labels, .. } => Some(labels.len() as u32),
        }
    }

    /// Builds the metric's two-layer mechanism: `epsilon_perm` per value,
    /// `epsilon_1` per report.
    pub fn mechanism(
        &self,
        epsilon_perm: f64,
        epsilon_1: f64,
    ) -> Result<MetricMechanism, ReportError> {
        Ok(match &self.encoding {
            Encoding::Numeric { mechanism, lo, hi } => {
                MetricMechanism::Numeric(AnyNumericMechanism::two_layer(
                    *mechanism,
                    epsilon_perm,
                    epsilon_1,
                    Range::new(*lo, *hi)?,
                )?)
            }
            Encoding::Buckets { mechanism, .. } | Encoding::Categories { mechanism, .. } => {
                let d = self.domain().map_or(0, u64::from);
                MetricMechanism::Frequency(AnyFrequencyOracle::two_layer(
                    *mechanism,
                    epsilon_perm,
                    epsilon_1,
                    d,
                )?)
            }
        })
    }

    /// The mechanism's name.
    pub fn mechanism_name(&self) -> &'static str {
        match &self.encoding {
            Encoding::Numeric { mechanism, .. } => mechanism.name(),
            Encoding::Buckets { mechanism, .. } | Encoding::Categories { mechanism, .. } => {
                mechanism.name()
            }
        }
    }

    /// The metric's canonical definition: every field that changes decoding or
    /// estimation (not the sampling weight). The catalog hash covers it, and
    /// the device's permanent responses are keyed by it, so a catalog change
    /// that leaves a metric's encoding alone (new weights, say) leaves its
    /// responses (and their budget) alone, unless new weights change the odds
    /// between a measure's metrics and move the device to another one
    /// ([`Catalog::device_metrics`]). `{:?}` prints f64
    /// so that it parses back to the same value.
    pub fn definition(&self) -> String {
        let mut text = format!(
            "metric={}|{}|{}|",
            self.name,
            self.kind.name(),
            self.measure.name()
        );
        let _ = match &self.encoding {
            Encoding::Numeric { mechanism, lo, hi } => {
                write!(text, "numeric|{mechanism}|{lo:?}|{hi:?}")
            }
            Encoding::Buckets {
                mechanism,
                edges,
                labels,
            } => write!(text, "buckets|{mechanism}|{edges:?}|{labels:?}"),
            Encoding::Categories { mechanism, labels } => {
                write!(text, "categories|{mechanism}|{labels:?}")
            }
        };
        text
    }
}

fn trim_float(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// A 16-byte digest of a catalog's canonical description: reports carry it so the
/// collector knows exactly how to decode and estimate them.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct CatalogHash(pub [u8; 16]);

impl std::fmt::Display for CatalogHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A versioned list of metrics and how reports sample them.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    version: u16,
    metrics_per_report: u8,
    metrics: Vec<Metric>,
    hash: CatalogHash,
}

impl Catalog {
    /// Builds a catalog, checking that names are unique, numeric ranges valid,
    /// bucket edges ascending with matching labels, and `metrics_per_report` in
    /// `1..=` the number of measures.
    pub fn new(
        version: u16,
        metrics_per_report: u8,
        metrics: Vec<Metric>,
    ) -> Result<Self, ReportError> {
        let bad = |why: String| Err(ReportError::Catalog(why));
        // A device reports each measure through one metric, so a report can
        // hold at most one metric per measure.
        let measures = crate::measure::distinct(&metrics);
        if metrics.is_empty()
            || metrics_per_report == 0
            || usize::from(metrics_per_report) > measures.len()
        {
            return bad(format!(
                "metrics_per_report must be in 1..={} (one metric per measure), got {metrics_per_report}",
                measures.len()
            ));
        }
        for (i, m) in metrics.iter().enumerate() {
            if metrics[..i].iter().any(|o| o.name == m.name) {
                return bad(format!("duplicate metric name '{}'", m.name));
            }
            if m.weight == 0 {
                return bad(format!("metric '{}' has weight 0", m.name));
            }
            // Every report carries two layers (DESIGN.md, invariant 4), and no
            // value in a report may stay constant for a device across periods:
            // L-LH's seed would (it travels verbatim while the value is unchanged).
            let two_layer = match &m.encoding {
                Encoding::Numeric { mechanism, .. } => mechanism.is_two_layer(),
                Encoding::Buckets { mechanism, .. } | Encoding::Categories { mechanism, .. } => {
                    mechanism.is_two_layer() && *mechanism != FrequencyKind::LLh
                }
            };
            if !two_layer {
                return bad(format!(
                    "metric '{}' uses {}: a catalog metric needs a two-layer mechanism whose reports carry nothing constant per device (l-grr, l-sue, l-oue, l-osue, dbitflip-pm, l-onebit)",
                    m.name,
                    m.mechanism_name()
                ));
            }
            match &m.encoding {
                Encoding::Numeric { lo, hi, .. } => {
                    Range::new(*lo, *hi)?;
                }
                Encoding::Buckets { edges, labels, .. } => {
                    if edges.windows(2).any(|w| w[0] >= w[1])
                        || edges.iter().any(|e| !e.is_finite())
                    {
                        return bad(format!("metric '{}': bucket edges must ascend", m.name));
                    }
                    if labels.len() != edges.len() + 2 {
                        return bad(format!(
                            "metric '{}': needs {} labels",
                            m.name,
                            edges.len() + 2
                        ));
                    }
                }
                Encoding::Categories { labels, .. } => {
                    if labels.len() < 2 {
                        return bad(format!("metric '{}': needs at least 2 categories", m.name));
                    }
                }
            }
            if m.kind == MetricKind::Distribution {
                // Quantiles are read from cumulative bucket counts, which are
                // the counts of a merged bucket only when each report supports
                // exactly one value (hush_stats::set_probabilities).
                let fits = match &m.encoding {
                    Encoding::Buckets {
                        mechanism, edges, ..
                    } => {
                        *mechanism == FrequencyKind::LGrr
                            && edges.first().is_some_and(|e| *e > 0.0)
                            && m.measure.always_defined()
                    }
                    _ => false,
                };
                if !fits {
                    return bad(format!(
                        "metric '{}': a distribution needs a count's measure, buckets with positive edges and l-grr",
                        m.name
                    ));
                }
            }
        }
        let hash = Self::digest(version, metrics_per_report, &metrics);
        Ok(Catalog {
            version,
            metrics_per_report,
            metrics,
            hash,
        })
    }

    fn digest(version: u16, k: u8, metrics: &[Metric]) -> CatalogHash {
        let mut text = format!("hush-catalog\nversion={version}\nmetrics_per_report={k}\n");
        for m in metrics {
            let _ = writeln!(text, "{}|w={}", m.definition(), m.weight);
        }
        let digest = Sha256::digest(text.as_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        CatalogHash(out)
    }

    /// The catalog version.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// How many metrics each report carries (sampled uniformly without replacement).
    pub fn metrics_per_report(&self) -> u8 {
        self.metrics_per_report
    }

    /// The largest [`MetricMechanism::epsilon_change`] of one report at these
    /// terms (each metric at its share of both epsilons): what one day's report
    /// can add about which of a person's known values that day had.
    pub fn epsilon_change(&self, epsilon_perm: f64, epsilon_1: f64) -> Result<f64, ReportError> {
        let k = f64::from(self.metrics_per_report);
        let mut worst = 0.0f64;
        for m in &self.metrics {
            let mechanism = m.mechanism(epsilon_perm / k, epsilon_1 / k)?;
            // One layer has no permanent response to hide behind: unbounded.
            worst = worst.max(mechanism.epsilon_change().unwrap_or(f64::INFINITY));
        }
        Ok(worst * k)
    }

    /// The metrics, in catalog order (a report refers to them by index).
    pub fn metrics(&self) -> &[Metric] {
        &self.metrics
    }

    /// The metric named `name`.
    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.name == name)
    }

    /// The distinct measures the metrics read, in catalog order. The cap on
    /// new values a year counts per measure, so what a year of reports can
    /// reveal is `measures × values a year × epsilon_perm`.
    pub fn measures(&self) -> Vec<Measure> {
        crate::measure::distinct(&self.metrics)
    }

    /// The metrics one device reports, each with the weight it is sampled
    /// at: every measure through exactly one of its metrics, the one that
    /// `u(measure)` (uniform in `[0, 1)`, fixed per device) picks with
    /// probability proportional to the metrics' weights, at the measure's
    /// total weight. So a report carries each metric as often over the fleet
    /// as its weight says, while an unchanged value of one device has one
    /// permanent answer, not one per way of reporting it, and the device never
    /// splits its cap on new values between two of them.
    pub fn device_metrics(&self, u: impl Fn(Measure) -> f64) -> Vec<(usize, u32)> {
        let mut out = Vec::new();
        for measure in self.measures() {
            let members: Vec<(usize, u32)> = self
                .metrics
                .iter()
                .enumerate()
                .filter(|(_, m)| m.measure == measure)
                .map(|(i, m)| (i, m.weight))
                .collect();
            let total: u32 = members.iter().map(|(_, w)| w).sum();
            let mut target = u(measure).clamp(0.0, 1.0) * f64::from(total);
            let mut chosen = members[members.len() - 1].0;
            for &(i, w) in &members {
                if target < f64::from(w) {
                    chosen = i;
                    break;
                }
                target -= f64::from(w);
            }
            out.push((chosen, total));
        }
        out
    }

    /// The catalog's digest.
    pub fn hash(&self) -> CatalogHash {
        self.hash
    }

    /// Every metric's value in `raw`, in words: what would be measured before noising.
    pub fn preview(&self, raw: &RawMeasurements) -> Vec<PreviewLine> {
        self.metrics
            .iter()
            .map(|m| {
                let value = m.value(raw);
                PreviewLine {
                    name: m.name,
                    description: m.description,
                    value,
                    in_words: m.describe(value),
                }
            })
            .collect()
    }
}

/// One privatized metric as a person can read it: what left the device.
#[derive(Debug, Clone, PartialEq)]
pub struct SentLine {
    /// Metric name.
    pub name: &'static str,
    /// The mechanism's name.
    pub mechanism: &'static str,
    /// What the report reveals (`epsilon_1`).
    pub epsilon: f64,
    /// What all reports about one unchanged value reveal (`epsilon_perm`).
    pub epsilon_perm: f64,
    /// The noised value in words.
    pub in_words: String,
}

impl Catalog {
    /// Describes each metric of a privatized report in words: a numeric value is
    /// decoded to the (noisy, unbiased) number the collector sees; a frequency
    /// report lists the buckets or categories it is consistent with.
    pub fn describe_report(&self, report: &crate::Report) -> Vec<SentLine> {
        use hush_ldp::{FrequencyOracle, NumericMechanism};
        report
            .metrics()
            .iter()
            .filter_map(|m| {
                let metric = self.metrics.get(usize::from(m.metric()))?;
                let mechanism_name = metric.mechanism_name();
                let in_words = match (
                    metric.mechanism(m.epsilon_perm(), m.epsilon()).ok()?,
                    m.value(),
                ) {
                    (MetricMechanism::Numeric(n), v) => {
                        let p = v.as_grid().filter(|p| n.is_valid_output(*p))?;
                        format!("{} {} (noised)", trim_float(n.decode(p)), metric.unit)
                    }
                    (MetricMechanism::Frequency(o), v) => {
                        let out = v.as_frequency().filter(|o2| o.is_valid_output(o2))?;
                        let labels: &[String] = match &metric.encoding {
                            Encoding::Buckets { labels, .. }
                            | Encoding::Categories { labels, .. } => labels,
                            Encoding::Numeric { .. } => &[],
                        };
                        let mut supported = Vec::new();
                        o.for_each_supported(&out, |v| {
                            supported.push(
                                labels
                                    .get(v as usize)
                                    .cloned()
                                    .unwrap_or_else(|| v.to_string()),
                            )
                        });
                        if supported.is_empty() {
                            "consistent with no single answer (noised)".to_owned()
                        } else {
                            format!("consistent with: {} (noised)", supported.join(", "))
                        }
                    }
                };
                Some(SentLine {
                    name: metric.name,
                    mechanism: mechanism_name,
                    epsilon: m.epsilon(),
                    epsilon_perm: m.epsilon_perm(),
                    in_words,
                })
            })
            .collect()
    }
}

/// One metric's value before noising, for the transparency preview.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewLine {
    /// Metric name.
    pub name: &'static str,
    /// What it means.
    pub description: &'static str,
    /// The value (clipped or bucketed).
    pub value: MetricValue,
    /// The value in words.
    pub in_words: String,
}
