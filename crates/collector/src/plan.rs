//! Planning a deployment: the 95% half-width every metric of a catalog will
//! have per day and pooled over a week for a fleet size, the fleet a target
//! precision needs, and the sampling weights that give every metric the same
//! relative precision. Computed from a population's readings (a simulated one,
//! or any sample of device-days), never from anyone's reports.

use std::collections::HashMap;

use hush_ldp::{FrequencyOracle, NoiseRng, NumericMechanism};
use hush_report::{Catalog, Encoding, Metric, MetricKind, MetricMechanism, MetricValue};
use rand::{Rng, SeedableRng};

use crate::CollectorError;
use crate::estimate::LEVEL;

/// One device's readings over consecutive periods: `days[t][m]` is metric
/// `m`'s measure on day `t` (`None` where it is undefined), catalog order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeviceDays {
    /// Per day, per metric.
    pub days: Vec<Vec<Option<f64>>>,
}

/// What a metric's estimates will look like.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPlan {
    /// Metric name.
    pub name: &'static str,
    /// What the precision is stated for: `mean`, or the largest bucket's label.
    pub target: String,
    /// The population value: the mean of the unclipped readings, or the
    /// largest bucket's frequency.
    pub truth: f64,
    /// Share of device-days at or above the clipping bound (0 for buckets).
    pub clipped_share: f64,
    /// What clipping costs: the clipped mean minus the unclipped one.
    pub clipping_bias: f64,
    /// The probability that a report carries this metric.
    pub share: f64,
    /// The probability that a device reports its measure through this
    /// metric rather than a sibling (1 for a measure's only metric): such
    /// a device's reports carry it at `share / device_share`.
    pub device_share: f64,
    /// The variance of one report's estimate (`n Var`), mechanism noise and
    /// the spread of the reporting devices' values together.
    pub report_variance: f64,
    /// The variance a device adds to a pooled estimate over all the sample's
    /// days: `E[(S_d - n_d mu)^2]` for its sum `S_d` of `n_d` reports; a
    /// device's reports share permanent responses, so this is larger than
    /// `n_d` times one report's variance.
    pub device_variance: f64,
    /// Days per device in the sample (what "pooled" pools over).
    pub days: usize,
    /// For a distribution's median: how the collector reads it, so the
    /// half-width is the inverted band's, as released (`None` otherwise).
    pub quantile: Option<QuantileShape>,
}

/// A distribution's population shape at its bucket edges, enough to invert
/// the confidence band the collector will release around the median.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantileShape {
    /// The bucket edges.
    pub edges: Vec<f64>,
    /// The population's share below each edge.
    pub below: Vec<f64>,
    /// One report's variance of its estimate of each share (`n Var`).
    pub variance: Vec<f64>,
}

/// The normal quantile of a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Which estimate a precision is stated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// One period.
    Day,
    /// All the sample's days pooled, with errors clustered by device.
    Pooled,
}

impl MetricPlan {
    /// The expected 95% half-width of the estimate with `devices` devices.
    /// For a median it is half the interval the collector releases from the
    /// population's distribution function with the expected band around it
    /// (asymmetric where the median sits near a bucket edge); for the rest,
    /// `z` standard errors.
    pub fn half_width(&self, window: Window, devices: f64) -> f64 {
        let day = Z95 * (self.report_variance / (devices * self.share)).sqrt();
        let delta = match window {
            Window::Day => day,
            Window::Pooled => {
                let reports = self.days as f64 * self.share;
                Z95 * (self.device_variance / devices).sqrt() / reports
            }
        };
        let Some(shape) = &self.quantile else {
            return delta;
        };
        // Pooling narrows every edge's band as it narrows the median's.
        let pooling = if day > 0.0 { delta / day } else { 1.0 };
        let below: Vec<hush_stats::ValueEstimate> = shape
            .below
            .iter()
            .zip(&shape.variance)
            .map(|(&estimate, &v)| {
                let std_error = pooling * (v / (devices * self.share)).sqrt();
                hush_stats::ValueEstimate {
                    estimate,
                    std_error,
                    interval: hush_stats::ConfidenceInterval {
                        lo: estimate,
                        hi: estimate,
                        level: LEVEL,
                    },
                }
            })
            .collect();
        hush_stats::quantile(&shape.edges, &below, 0.5, LEVEL)
            .map_or(f64::INFINITY, |e| 0.5 * (e.interval.hi - e.interval.lo))
    }

    /// The half-width as a share of the truth.
    pub fn relative_half_width(&self, window: Window, devices: f64) -> f64 {
        self.half_width(window, devices) / self.truth.abs()
    }

    /// The devices needed for a 95% half-width of `relative` times the truth
    /// (infinite if no fleet of up to 10^12 gets there).
    pub fn devices_for(&self, window: Window, relative: f64) -> f64 {
        if self.quantile.is_none() {
            // The half-width falls as 1 / sqrt(devices).
            let at_one = self.relative_half_width(window, 1.0);
            return (at_one / relative).powi(2);
        }
        // The half-width falls with the fleet; bisect on its logarithm.
        let (mut lo, mut hi) = (0.0_f64, 12.0_f64);
        if self.relative_half_width(window, 10f64.powf(hi)) > relative {
            return f64::INFINITY;
        }
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if self.relative_half_width(window, 10f64.powf(mid)) > relative {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        10f64.powf(hi)
    }

    /// Relative variance per report: what a metric needs in reports for a
    /// given relative precision, so the sampling weight that equalizes it.
    pub fn relative_report_variance(&self) -> f64 {
        self.report_variance / (self.truth * self.truth)
    }
}

/// Plans every metric of `catalog` at the given terms for a population of
/// `devices`' readings (at least 2 devices, every device with the same number
/// of days, each day with one reading per metric).
///
/// The daily variance is exact: for a count, the mechanism's realized
/// variance at each clipped value plus the values' spread (reports come from
/// a random subset of the fleet); for buckets, `pi (1 - pi) / (p - q)^2` with
/// `pi = f p + (1 - f) q` the chance a report supports the largest bucket.
/// The pooled variance runs each device's days through the real two-layer
/// mechanisms (permanent responses memoized per coarse value, one rounding
/// offset per device) `replicates` times from `seed`, since it depends on how
/// often a device's value repeats.
pub fn plan(
    catalog: &Catalog,
    epsilon_perm: f64,
    epsilon_1: f64,
    devices: &[DeviceDays],
    replicates: u32,
    seed: u64,
) -> Result<Vec<MetricPlan>, CollectorError> {
    let bad = |why: String| CollectorError::Refused(why);
    let days = devices.first().map_or(0, |d| d.days.len());
    let metrics = catalog.metrics().len();
    if devices.len() < 2 || days == 0 {
        return Err(bad("a plan needs at least 2 devices with a day each".into()));
    }
    if devices
        .iter()
        .any(|d| d.days.len() != days || d.days.iter().any(|r| r.len() != metrics))
    {
        return Err(bad(format!(
            "every device needs {days} days of {metrics} readings"
        )));
    }
    let k = f64::from(catalog.metrics_per_report());
    let total_weight: f64 = catalog.metrics().iter().map(|m| f64::from(m.weight)).sum();
    let mut out = Vec::with_capacity(metrics);
    for (i, metric) in catalog.metrics().iter().enumerate() {
        let mechanism = metric
            .mechanism(epsilon_perm / k, epsilon_1 / k)
            .map_err(|e| bad(e.to_string()))?;
        let readings: Vec<Option<f64>> = devices
            .iter()
            .flat_map(|d| d.days.iter().map(move |r| r[i]))
            .collect();
        // With one metric per report this is exact; with more it is the
        // first pick's probability, a lower bound.
        let share = (k * f64::from(metric.weight) / total_weight).min(1.0);
        let measure_weight: f64 = catalog
            .metrics()
            .iter()
            .filter(|m| m.measure == metric.measure)
            .map(|m| f64::from(m.weight))
            .sum();
        let mut plan = day_plan(metric, &mechanism, &readings, share)?;
        plan.device_share = f64::from(metric.weight) / measure_weight;
        plan.days = days;
        plan.device_variance =
            device_variance(metric, &mechanism, devices, i, &plan, replicates, seed)?;
        out.push(plan);
    }
    Ok(out)
}

/// The per-report part of a plan (everything but the pooled variance).
fn day_plan(
    metric: &Metric,
    mechanism: &MetricMechanism,
    readings: &[Option<f64>],
    share: f64,
) -> Result<MetricPlan, CollectorError> {
    let n = readings.len() as f64;
    let values: Vec<MetricValue> = readings.iter().map(|&r| metric.value_of(r)).collect();
    let domain = metric.domain().unwrap_or(u32::MAX);
    if let Some(MetricValue::Category(c)) = values
        .iter()
        .find(|v| matches!(v, MetricValue::Category(c) if *c >= domain))
    {
        return Err(CollectorError::Refused(format!(
            "metric {}: a reading falls in bucket {c}, outside its {domain}",
            metric.name
        )));
    }
    let mut plan = MetricPlan {
        name: metric.name,
        target: "mean".into(),
        truth: 0.0,
        clipped_share: 0.0,
        clipping_bias: 0.0,
        share,
        device_share: 1.0,
        report_variance: 0.0,
        device_variance: 0.0,
        days: 0,
        quantile: None,
    };
    match mechanism {
        MetricMechanism::Numeric(m) => {
            let xs: Vec<f64> = values.iter().filter_map(as_number).collect();
            let clipped_mean = xs.iter().sum::<f64>() / n;
            let spread = xs.iter().map(|x| (x - clipped_mean).powi(2)).sum::<f64>() / n;
            let noise = xs.iter().map(|&x| m.variance_at(x)).sum::<f64>() / n;
            plan.truth = readings.iter().map(|r| r.unwrap_or(0.0)).sum::<f64>() / n;
            let hi = m.range().hi();
            plan.clipped_share =
                readings.iter().filter(|r| r.unwrap_or(0.0) > hi).count() as f64 / n;
            plan.clipping_bias = clipped_mean - plan.truth;
            plan.report_variance = noise + spread;
        }
        MetricMechanism::Frequency(o) => {
            let probs = o.support_probabilities();
            let target = frequency_target(metric, probs, readings)?;
            let pi: Vec<f64> = target
                .frequencies
                .iter()
                .map(|f| f * (probs.p - probs.q) + probs.q)
                .collect();
            plan.target = target.label;
            plan.truth = target.truth;
            plan.quantile = target.shape;
            plan.report_variance = weighted_variance(&target.weights, &pi)
                / (probs.p - probs.q).powi(2)
                * target.per_unit.powi(2);
        }
    }
    Ok(plan)
}

/// What a frequency metric's precision is stated for: the largest bucket's
/// frequency, or a distribution's median. A report estimates it through
/// per-bucket weights on what it supports (`(sum_v w_v [supported v] -
/// q sum_v w_v) / (p - q)`), times `per_unit`.
struct FrequencyTarget {
    label: String,
    /// In the target's unit: a frequency, or the median's value.
    truth: f64,
    /// The weights' own target (`sum_v w_v f_v`): what pooled reports average to.
    mu: f64,
    weights: Vec<f64>,
    /// From the weights' scale to the target's: 1, or 1 over the
    /// distribution function's slope at the median.
    per_unit: f64,
    /// The population's bucket frequencies.
    frequencies: Vec<f64>,
    /// A distribution's shape for inverting its band.
    shape: Option<QuantileShape>,
}

/// The target of a frequency metric from its population readings. A
/// distribution's median is read as the collector reads it: the share below
/// it interpolated between the two edges around it (linearly in the log),
/// so a report's estimate of that share is `(1 - t)` of its estimate below the
/// lower edge plus `t` of the one below the upper, and the median moves by
/// the share's error over the slope there (the delta method).
fn frequency_target(
    metric: &Metric,
    probs: hush_ldp::SupportProbabilities,
    readings: &[Option<f64>],
) -> Result<FrequencyTarget, CollectorError> {
    let d = metric.domain().unwrap_or(1) as usize;
    let n = readings.len().max(1) as f64;
    let mut frequencies = vec![0.0; d];
    for &r in readings {
        if let MetricValue::Category(c) = metric.value_of(r)
            && let Some(slot) = frequencies.get_mut(c as usize)
        {
            *slot += 1.0 / n;
        }
    }
    let edges = match (&metric.encoding, metric.kind) {
        (Encoding::Buckets { edges, .. }, MetricKind::Distribution) => edges,
        _ => {
            let (top, f) = frequencies
                .iter()
                .enumerate()
                .fold(
                    (0, 0.0),
                    |acc, (i, &f)| if f > acc.1 { (i as u32, f) } else { acc },
                );
            let mut weights = vec![0.0; d];
            weights[top as usize] = 1.0;
            return Ok(FrequencyTarget {
                label: metric.describe(MetricValue::Category(top)),
                truth: f,
                mu: f,
                weights,
                per_unit: 1.0,
                frequencies,
                shape: None,
            });
        }
    };
    let mut values: Vec<f64> = readings.iter().map(|r| r.unwrap_or(0.0)).collect();
    values.sort_by(f64::total_cmp);
    let median = values[values.len() / 2];
    let Some(j) = edges.iter().position(|&e| e > median) else {
        return Err(CollectorError::Refused(format!(
            "metric {}: the median {median} lies above the last edge",
            metric.name
        )));
    };
    // Below edge j lie buckets 0..j+2 (bucket 0 is "no value").
    let below = |k: usize| frequencies[..k + 2].iter().sum::<f64>();
    let (x0, g0, lower) = if j == 0 {
        (0.0, 0.0, 0)
    } else {
        (edges[j - 1], below(j - 1), j + 1)
    };
    let g1 = below(j);
    let (t, slope) = if j == 0 {
        (median / edges[0], g1 / edges[0])
    } else {
        let width = (edges[j] / x0).ln();
        ((median / x0).ln() / width, (g1 - g0) / (median * width))
    };
    let weights = (0..d)
        .map(|v| match v {
            v if v < lower => 1.0,
            v if v < j + 2 => t,
            _ => 0.0,
        })
        .collect();
    // Each edge's share, a merged bucket: pi (1 - pi) / (p - q)^2 per report.
    let below_all: Vec<f64> = (0..edges.len()).map(below).collect();
    let variance = below_all
        .iter()
        .enumerate()
        .map(|(k, &f)| {
            let set = hush_stats::set_probabilities(probs, k as u32 + 2);
            let pi = f * (set.p - set.q) + set.q;
            pi * (1.0 - pi) / (probs.p - probs.q).powi(2)
        })
        .collect();
    Ok(FrequencyTarget {
        label: "p50".into(),
        truth: median,
        mu: g0 + t * (g1 - g0),
        weights,
        per_unit: 1.0 / slope,
        frequencies,
        shape: Some(QuantileShape {
            edges: edges.clone(),
            below: below_all,
            variance,
        }),
    })
}

/// The variance of `sum_v w_v [supported v]` for a report supporting one
/// value `v` with probability `pi_v` (exact for GRR-like oracles, and for a
/// single bucket under any oracle).
fn weighted_variance(weights: &[f64], pi: &[f64]) -> f64 {
    let mean: f64 = weights.iter().zip(pi).map(|(w, p)| w * p).sum();
    let square: f64 = weights.iter().zip(pi).map(|(w, p)| w * w * p).sum();
    square - mean * mean
}

fn as_number(v: &MetricValue) -> Option<f64> {
    match v {
        MetricValue::Number(x) => Some(*x),
        MetricValue::Category(_) => None,
    }
}

/// `E[(S_d - n_d mu)^2]` per device for metric `index`, by running each
/// device's days through the mechanism's two layers.
fn device_variance(
    metric: &Metric,
    mechanism: &MetricMechanism,
    devices: &[DeviceDays],
    index: usize,
    plan: &MetricPlan,
    replicates: u32,
    seed: u64,
) -> Result<f64, CollectorError> {
    let internal = |e: hush_report::ReportError| CollectorError::Internal(e.to_string());
    // The pooled estimate targets the clipped mean, a bucket's frequency or
    // the share below a distribution's median (then scaled by `per_unit`).
    let (target, mu, per_unit) = match mechanism {
        MetricMechanism::Frequency(o) => {
            let readings: Vec<Option<f64>> = devices
                .iter()
                .flat_map(|d| d.days.iter().map(|r| r[index]))
                .collect();
            let t = frequency_target(metric, o.support_probabilities(), &readings)?;
            (Some(t.weights), t.mu, t.per_unit)
        }
        MetricMechanism::Numeric(_) => (None, plan.truth + plan.clipping_bias, 1.0),
    };
    let mut rng = NoiseRng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9E37_79B9));
    let replicates = replicates.max(1);
    let mut total = 0.0;
    for device in devices {
        for _ in 0..replicates {
            let alpha = hush_ldp::LOneBitMean::draw_alpha(&mut rng);
            let mut permanent = HashMap::new();
            let (mut sum, mut n) = (0.0, 0.0);
            // A device reports the measure through this metric or a sibling,
            // for all its days.
            if !sampled(plan.device_share, &mut rng) {
                continue;
            }
            let rate = (plan.share / plan.device_share).min(1.0);
            for day in &device.days {
                if !sampled(rate, &mut rng) {
                    continue;
                }
                let coarse = mechanism
                    .coarse(metric.value_of(day[index]), alpha)
                    .map_err(internal)?;
                let perm = match permanent.get(&coarse) {
                    Some(p) => p,
                    None => {
                        let p = mechanism.permanent(coarse, &mut rng).map_err(internal)?;
                        permanent.entry(coarse).or_insert(p)
                    }
                };
                let value = mechanism.instantaneous(perm, &mut rng).map_err(internal)?;
                sum += decoded(mechanism, &value, target.as_deref())?;
                n += 1.0;
            }
            total += (sum - n * mu).powi(2);
        }
    }
    Ok(total / (devices.len() as f64 * f64::from(replicates)) * per_unit * per_unit)
}

/// A report's unbiased estimate of the mean, or of its frequency target
/// (per-bucket `weights`).
fn decoded(
    mechanism: &MetricMechanism,
    value: &hush_report::Privatized,
    weights: Option<&[f64]>,
) -> Result<f64, CollectorError> {
    let invalid = || CollectorError::Internal("a fresh report does not decode".into());
    match mechanism {
        MetricMechanism::Numeric(m) => Ok(m.decode(value.as_grid().ok_or_else(invalid)?)),
        MetricMechanism::Frequency(o) => {
            let out = value.as_frequency().ok_or_else(invalid)?;
            let weights = weights.unwrap_or_default();
            let mut supported = 0.0;
            o.for_each_supported(&out, |v| {
                supported += weights.get(v as usize).copied().unwrap_or(0.0);
            });
            let probs = o.support_probabilities();
            let total: f64 = weights.iter().sum();
            Ok((supported - probs.q * total) / (probs.p - probs.q))
        }
    }
}

/// A Bernoulli draw at `p` from 53 random bits (planning only: no privacy rides on it).
fn sampled(p: f64, rng: &mut NoiseRng) -> bool {
    ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
}

/// The sampling weights (summing to `scale`, each at least 1) that give every
/// metric the same relative precision per day: proportional to each metric's
/// relative variance per report.
pub fn balanced_weights(plans: &[MetricPlan], scale: u32) -> Vec<u32> {
    let need: Vec<f64> = plans
        .iter()
        .map(MetricPlan::relative_report_variance)
        .collect();
    let total: f64 = need.iter().sum();
    need.iter()
        .map(|v| ((v / total * f64::from(scale)).round() as u32).max(1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two devices, two days, constant readings: the exact formulas by hand.
    #[test]
    fn the_daily_variance_is_the_mechanisms_plus_the_spread() {
        let catalog = Catalog::builtin();
        let n = catalog.metrics().len();
        let top = catalog
            .metrics()
            .iter()
            .position(|m| m.name == "top_shortcut")
            .unwrap();
        // A count of x for every metric, and the second shortcut for the top one.
        let day = |x: f64| {
            let mut d = vec![Some(x); n];
            d[top] = Some(1.0);
            d
        };
        let devices = vec![
            DeviceDays {
                days: vec![day(100.0), day(100.0)],
            },
            DeviceDays {
                days: vec![day(300.0), day(300.0)],
            },
        ];
        let plans = plan(&catalog, 4.0, 2.0, &devices, 1, 1).unwrap();
        let active = &plans[0];
        assert_eq!(active.name, "active_minutes");
        assert_eq!(active.truth, 200.0);
        assert_eq!(active.clipping_bias, 0.0);
        let MetricMechanism::Numeric(m) = catalog.metrics()[0].mechanism(4.0, 2.0).unwrap() else {
            panic!("active_minutes is numeric");
        };
        let expected = 0.5 * (m.variance_at(100.0) + m.variance_at(300.0)) + 100.0 * 100.0;
        assert!((active.report_variance - expected).abs() < 1e-6 * expected);
        let total: f64 = catalog.metrics().iter().map(|m| f64::from(m.weight)).sum();
        assert!((active.share - f64::from(catalog.metrics()[0].weight) / total).abs() < 1e-12);
        // The half-width at 4x the devices is half as wide.
        let ratio = active.half_width(Window::Day, 100.0) / active.half_width(Window::Day, 400.0);
        assert!((ratio - 2.0).abs() < 1e-12);
        let need = active.devices_for(Window::Day, 0.1);
        assert!((active.relative_half_width(Window::Day, need) - 0.1).abs() < 1e-9);
    }

    #[test]
    fn weights_follow_the_relative_variance() {
        let plan = |v: f64, t: f64| MetricPlan {
            name: "m",
            target: "mean".into(),
            truth: t,
            clipped_share: 0.0,
            clipping_bias: 0.0,
            share: 0.5,
            device_share: 1.0,
            report_variance: v,
            device_variance: 0.0,
            days: 1,
            quantile: None,
        };
        // Relative variances 1, 3 (and a negligible one, kept at weight 1).
        let w = balanced_weights(
            &[plan(100.0, 10.0), plan(300.0, 10.0), plan(1e-9, 1.0)],
            400,
        );
        assert_eq!(w, vec![100, 300, 1]);
    }

    #[test]
    fn bad_populations_are_refused() {
        let catalog = Catalog::builtin();
        assert!(plan(&catalog, 4.0, 2.0, &[], 1, 1).is_err());
        let short = DeviceDays {
            days: vec![vec![Some(1.0)]],
        };
        assert!(plan(&catalog, 4.0, 2.0, &[short.clone(), short], 1, 1).is_err());
        // A category reading outside the metric's list is the input's fault.
        let mut day = vec![Some(1.0); catalog.metrics().len()];
        let top = catalog
            .metrics()
            .iter()
            .position(|m| m.name == "top_shortcut")
            .unwrap();
        day[top] = Some(100.0);
        let odd = DeviceDays { days: vec![day] };
        let err = plan(&catalog, 4.0, 2.0, &[odd.clone(), odd], 1, 1).unwrap_err();
        assert!(err.to_string().contains("top_shortcut"), "{err}");
    }
}
