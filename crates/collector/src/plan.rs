//! Planning a deployment: the 95% half-width every metric of a catalog will
//! have per day and pooled over a week for a fleet size, the fleet a target
//! precision needs, and the sampling weights that give every metric the same
//! relative precision. Computed from a population's readings (a simulated one,
//! or any sample of device-days), never from anyone's reports.

use std::collections::HashMap;

use hush_ldp::{FrequencyOracle, NoiseRng, NumericMechanism};
use hush_report::{Catalog, Metric, MetricMechanism, MetricValue};
use rand::{Rng, SeedableRng};

use crate::CollectorError;

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
    pub fn half_width(&self, window: Window, devices: f64) -> f64 {
        match window {
            Window::Day => Z95 * (self.report_variance / (devices * self.share)).sqrt(),
            Window::Pooled => {
                let reports = self.days as f64 * self.share;
                Z95 * (self.device_variance / devices).sqrt() / reports
            }
        }
    }

    /// The half-width as a share of the truth.
    pub fn relative_half_width(&self, window: Window, devices: f64) -> f64 {
        self.half_width(window, devices) / self.truth.abs()
    }

    /// The devices needed for a 95% half-width of `relative` times the truth.
    pub fn devices_for(&self, window: Window, relative: f64) -> f64 {
        // The half-width falls as 1 / sqrt(devices).
        let at_one = self.relative_half_width(window, 1.0);
        (at_one / relative).powi(2)
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
        let mut plan = day_plan(metric, &mechanism, &readings, share)?;
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
        report_variance: 0.0,
        device_variance: 0.0,
        days: 0,
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
            let (top, f) = largest_bucket(metric, &values);
            let probs = o.support_probabilities();
            let pi = f * probs.p + (1.0 - f) * probs.q;
            plan.target = metric.describe(MetricValue::Category(top));
            plan.truth = f;
            plan.report_variance = pi * (1.0 - pi) / (probs.p - probs.q).powi(2);
        }
    }
    Ok(plan)
}

fn as_number(v: &MetricValue) -> Option<f64> {
    match v {
        MetricValue::Number(x) => Some(*x),
        MetricValue::Category(_) => None,
    }
}

/// The most frequent bucket and its frequency.
fn largest_bucket(metric: &Metric, values: &[MetricValue]) -> (u32, f64) {
    let d = metric.domain().unwrap_or(1) as usize;
    let mut counts = vec![0u64; d];
    for v in values {
        if let MetricValue::Category(c) = v
            && let Some(slot) = counts.get_mut(*c as usize)
        {
            *slot += 1;
        }
    }
    let (top, count) = counts
        .iter()
        .enumerate()
        .max_by_key(|(_, c)| **c)
        .map_or((0, 0), |(i, c)| (i, *c));
    (top as u32, count as f64 / values.len().max(1) as f64)
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
    let top = match (mechanism, &plan.target) {
        (MetricMechanism::Frequency(_), _) => {
            let values: Vec<MetricValue> = devices
                .iter()
                .flat_map(|d| d.days.iter().map(|r| metric.value_of(r[index])))
                .collect();
            Some(largest_bucket(metric, &values).0)
        }
        (MetricMechanism::Numeric(_), _) => None,
    };
    // The pooled estimate targets the clipped mean (or the bucket's frequency).
    let mu = plan.truth + plan.clipping_bias;
    let mut rng = NoiseRng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9E37_79B9));
    let replicates = replicates.max(1);
    let mut total = 0.0;
    for device in devices {
        for _ in 0..replicates {
            let alpha = hush_ldp::LOneBitMean::draw_alpha(&mut rng);
            let mut permanent = HashMap::new();
            let (mut sum, mut n) = (0.0, 0.0);
            for day in &device.days {
                if !sampled(plan.share, &mut rng) {
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
                sum += decoded(mechanism, &value, top)?;
                n += 1.0;
            }
            total += (sum - n * mu).powi(2);
        }
    }
    Ok(total / (devices.len() as f64 * f64::from(replicates)))
}

/// A report's unbiased estimate of the mean, or of `top`'s frequency.
fn decoded(
    mechanism: &MetricMechanism,
    value: &hush_report::Privatized,
    top: Option<u32>,
) -> Result<f64, CollectorError> {
    let invalid = || CollectorError::Internal("a fresh report does not decode".into());
    match mechanism {
        MetricMechanism::Numeric(m) => Ok(m.decode(value.as_grid().ok_or_else(invalid)?)),
        MetricMechanism::Frequency(o) => {
            let out = value.as_frequency().ok_or_else(invalid)?;
            let mut supported = false;
            o.for_each_supported(&out, |v| supported |= Some(v) == top);
            let probs = o.support_probabilities();
            Ok((f64::from(u8::from(supported)) - probs.q) / (probs.p - probs.q))
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
        // A count of x for every metric, and the second shortcut for the top one.
        let day = |x: f64| {
            let mut d = vec![Some(x); n];
            d[n - 1] = Some(1.0);
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
            report_variance: v,
            device_variance: 0.0,
            days: 1,
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
        day[catalog.metrics().len() - 1] = Some(100.0);
        let odd = DeviceDays { days: vec![day] };
        let err = plan(&catalog, 4.0, 2.0, &[odd.clone(), odd], 1, 1).unwrap_err();
        assert!(err.to_string().contains("top_shortcut"), "{err}");
    }
}
