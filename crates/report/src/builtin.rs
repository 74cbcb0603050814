//! Hush's built-in catalog: ten measures as sixteen metrics, their ranges and
//! buckets fitted to the simulated working days, their mechanisms and sampling weights, and
//! where each number comes from.

use hush_ldp::{FrequencyKind, NumericKind};

use crate::{Catalog, Encoding, Measure, Metric, MetricKind, RangeSteps, Shortcut, round2};

impl Catalog {
    /// Hush's built-in catalog (version 5): ten measures per day as sixteen
    /// metrics, one metric per report. Each count has a mean and a
    /// distribution (doubling buckets, read as quantiles by the collector);
    /// the two share their measure's cap on new values, so a year of reports
    /// reveals no more than with the means alone.
    ///
    /// - **Ranges** sit near the 99th percentile of working days in the demo's
    ///   simulated population (`hush_capture::synthetic`, whose typing figures
    ///   follow Dhakal et al., CHI 2018): the noise of a count grows with its
    ///   range, and above the 99th percentile clipping moves the mean by about
    ///   1% at most (`hush plan --weights` prints each bias;
    ///   `tests/catalog_fit.rs` checks the ranges against the population).
    /// - **Buckets** split the working days' mass into a few informative
    ///   parts (the largest holds 26-60%), since every bucket costs variance.
    /// - **Mechanisms**: L-1BitMean with alpha-point rounding for counts,
    ///   L-GRR for buckets and categories: the lowest exact variance among
    ///   the two-layer mechanisms whose change epsilon stays within
    ///   [`MAX_CHANGE_FACTOR`] (`examples/two_layer_table.rs`).
    /// - **Weights** are sampling probabilities (per thousand) proportional to
    ///   each metric's relative variance per report, so every metric gets the
    ///   same relative precision a day (`hush plan --weights` computes them).
    ///   Which metric a report carries depends on these weights, the device
    ///   secret (a count is reported one way per device) and fresh
    ///   randomness only, never on its measurements.
    ///
    /// One metric per report at the full epsilon beats splitting the epsilon
    /// across all of them for mean and frequency estimation (Wang et al.,
    /// ICDE 2019, Section IV: k = max(1, min(d, floor(eps / 2.5))) is 1 for eps <= 5).
    pub fn builtin() -> Self {
        Self::with_ranges(&RangeSteps::default())
    }

    /// The built-in catalog with each count's range and distribution ladder
    /// scaled by its step (rounded to two significant figures): what an agent
    /// builds from the ranges a collector learned and published
    /// ([`crate::PublishedRanges`]). Everything else is the built-in
    /// catalog's, and no steps give the built-in catalog itself.
    pub fn with_ranges(steps: &RangeSteps) -> Self {
        let scaled = |x: f64, measure: Measure| match steps.step(measure) {
            0 => x,
            _ => round2(x * steps.factor(measure)),
        };
        let labels = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let count = |name, description, unit, measure, hi, weight| Metric {
            name,
            description,
            unit,
            kind: MetricKind::Count,
            measure,
            encoding: Encoding::Numeric {
                mechanism: NumericKind::LOneBit,
                lo: 0.0,
                hi: scaled(hi, measure),
            },
            weight,
        };
        let distribution = |name, description, unit, measure, base, edges, weight| Metric {
            name,
            description,
            unit,
            kind: MetricKind::Distribution,
            measure,
            encoding: ladder(scaled(base, measure), edges),
            weight,
        };
        let mut shortcut_labels = vec!["none".to_owned()];
        shortcut_labels.extend(Shortcut::ALL.iter().map(|s| s.name().to_owned()));
        let metrics = vec![
            count(
                "active_minutes",
                "Minutes in the day with any keyboard or mouse input",
                "minutes",
                Measure::ActiveMinutes,
                570.0,
                23,
            ),
            count(
                "keystrokes",
                "Keys pressed in the day (which keys is never recorded)",
                "keys",
                Measure::Keystrokes,
                90_000.0,
                54,
            ),
            count(
                "clicks",
                "Mouse clicks in the day",
                "clicks",
                Measure::Clicks,
                1_300.0,
                58,
            ),
            count(
                "scroll_notches",
                "Scroll-wheel notches in the day",
                "notches",
                Measure::ScrollNotches,
                4_000.0,
                77,
            ),
            count(
                "pointer_travel",
                "Distance the pointer moved in the day",
                "thousand pixels",
                Measure::PointerTravel,
                1_700.0,
                64,
            ),
            count(
                "longest_focus",
                "Longest stretch of consecutive active minutes",
                "minutes",
                Measure::LongestFocus,
                220.0,
                45,
            ),
            Metric {
                name: "typing_speed",
                description: "Keys typed per minute in minutes with typing",
                unit: "keys per minute",
                kind: MetricKind::Categorical,
                measure: Measure::TypingSpeed,
                encoding: Encoding::Buckets {
                    mechanism: FrequencyKind::LGrr,
                    edges: vec![100.0, 150.0, 200.0, 250.0, 300.0],
                    labels: labels(&[
                        "no typing",
                        "under 100",
                        "100-150",
                        "150-200",
                        "200-250",
                        "250-300",
                        "300 or more",
                    ]),
                },
                weight: 138,
            },
            Metric {
                name: "correction_rate",
                description: "Share of typed keys that were Backspace or Delete",
                unit: "",
                kind: MetricKind::Ratio,
                measure: Measure::CorrectionRate,
                encoding: Encoding::Buckets {
                    mechanism: FrequencyKind::LGrr,
                    edges: vec![0.03, 0.06, 0.09, 0.12],
                    labels: labels(&[
                        "no typing",
                        "under 3%",
                        "3-6%",
                        "6-9%",
                        "9-12%",
                        "12% or more",
                    ]),
                },
                weight: 96,
            },
            Metric {
                name: "keyboard_share",
                description: "Share of input that came from the keyboard rather than clicks and scrolling",
                unit: "",
                kind: MetricKind::Ratio,
                measure: Measure::KeyboardShare,
                encoding: Encoding::Buckets {
                    mechanism: FrequencyKind::LGrr,
                    edges: vec![0.9, 0.95, 0.975],
                    labels: labels(&[
                        "no input",
                        "under 90%",
                        "90-95%",
                        "95-97.5%",
                        "97.5% or more",
                    ]),
                },
                weight: 63,
            },
            Metric {
                name: "top_shortcut",
                description: "The command shortcut used most in the day (from a fixed list: copy, paste, undo, ...)",
                unit: "",
                kind: MetricKind::Categorical,
                measure: Measure::TopShortcut,
                encoding: Encoding::Categories {
                    mechanism: FrequencyKind::LGrr,
                    labels: shortcut_labels,
                },
                weight: 72,
            },
        ];
        let metrics = [
            metrics,
            vec![
                distribution(
                    "active_minutes_distribution",
                    "How active minutes spread over the fleet's days (doubling buckets)",
                    "minutes",
                    Measure::ActiveMinutes,
                    15.0,
                    7,
                    26,
                ),
                distribution(
                    "keystrokes_distribution",
                    "How keys pressed spread over the fleet's days (doubling buckets)",
                    "keys",
                    Measure::Keystrokes,
                    1_000.0,
                    8,
                    47,
                ),
                distribution(
                    "clicks_distribution",
                    "How clicks spread over the fleet's days (doubling buckets)",
                    "clicks",
                    Measure::Clicks,
                    25.0,
                    8,
                    49,
                ),
                distribution(
                    "scroll_notches_distribution",
                    "How scroll-wheel notches spread over the fleet's days (doubling buckets)",
                    "notches",
                    Measure::ScrollNotches,
                    50.0,
                    8,
                    85,
                ),
                distribution(
                    "pointer_travel_distribution",
                    "How pointer travel spreads over the fleet's days (doubling buckets)",
                    "thousand pixels",
                    Measure::PointerTravel,
                    25.0,
                    8,
                    74,
                ),
                distribution(
                    "longest_focus_distribution",
                    "How the longest focus stretch spreads over the fleet's days (doubling buckets)",
                    "minutes",
                    Measure::LongestFocus,
                    5.0,
                    7,
                    27,
                ),
            ],
        ]
        .concat();
        match Catalog::new(5, 1, metrics) {
            Ok(c) => c,
            Err(e) => panic!("the built-in catalog is valid by construction: {e}"),
        }
    }
}

/// A distribution's buckets: `edges` edges doubling from `base`, so each
/// bucket spans one octave and the fleet's quantiles can be read to within
/// one (interpolated inside it). Bucket 0 ("no value") stays empty: a count
/// is always defined.
fn ladder(base: f64, edges: u32) -> Encoding {
    let edges: Vec<f64> = (0..edges).map(|k| base * f64::from(1u32 << k)).collect();
    let mut labels = vec![
        "no value".to_owned(),
        format!("under {}", thousands(edges[0])),
    ];
    labels.extend(
        edges
            .windows(2)
            .map(|w| format!("{}-{}", thousands(w[0]), thousands(w[1]))),
    );
    if let Some(top) = edges.last() {
        labels.push(format!("{} or more", thousands(*top)));
    }
    Encoding::Buckets {
        mechanism: FrequencyKind::LGrr,
        edges,
        labels,
    }
}

/// A whole number with thousands separators: 128000 -> "128,000".
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
