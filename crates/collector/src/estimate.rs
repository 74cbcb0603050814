//! Estimates from aggregate cells: one row per (metric, period, cohort, epsilon, bucket)
//! with the unbiased estimate, its standard error, a 95% interval and the post-processed value.

use hush_report::{Catalog, Encoding, Metric, MetricKind, MetricMechanism};
use hush_report::{civil_from_days, weekday};
use hush_stats::{FrequencyAggregate, norm_sub, set_probabilities};
use serde::Serialize;

use crate::CollectorError;
use crate::cells::{CellKey, CellState};
use crate::validate::Catalogs;

/// Confidence level of every released interval.
pub const LEVEL: f64 = 0.95;

/// One released estimate: the dataset's row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EstimateRow {
    /// Metric name.
    pub metric: String,
    /// count, ratio or categorical.
    pub kind: String,
    /// What the row covers: `day` (one period), `week` (Monday to Sunday) or
    /// `month`, pooled with errors clustered by device.
    pub window: String,
    /// Period id (the first period of a week or month).
    pub period: u32,
    /// Start of the period: `YYYY-MM-DD` for days, an RFC 3339 time otherwise.
    pub period_start: String,
    /// Cohort name.
    pub cohort: String,
    /// For frequency metrics the bucket or category label; `mean` for counts.
    pub bucket: String,
    /// Bucket index, or -1 for a mean.
    pub bucket_index: i32,
    /// Unbiased estimate: a frequency in [0, 1] up to noise, or a mean in the metric's unit.
    pub estimate: f64,
    /// Standard error of the estimate.
    pub std_error: f64,
    /// Lower end of the 95% interval.
    pub ci_low: f64,
    /// Upper end of the 95% interval.
    pub ci_high: f64,
    /// Post-processed estimate: frequencies projected onto the simplex (Norm-Sub),
    /// means clipped to the metric's range. Biased, never negative.
    pub post_processed: f64,
    /// Reports in the cell (each from a distinct device, for a day).
    pub reports: u64,
    /// What each report in the cell reveals (`epsilon_1`).
    pub epsilon: f64,
    /// What all of one device's reports about one unchanged value reveal (`epsilon_perm`).
    pub epsilon_perm: f64,
    /// The mechanism name.
    pub mechanism: String,
    /// The catalog hash, hex.
    pub catalog_hash: String,
}

/// The start of period `period` of length `seconds`, in words.
pub fn period_start(period: u32, seconds: u32) -> String {
    let start = u64::from(period) * u64::from(seconds);
    let days = (start / 86_400) as i64;
    let (y, m, d) = civil_from_days(days);
    if seconds == 86_400 {
        format!("{y:04}-{m:02}-{d:02}")
    } else {
        let s = start % 86_400;
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            s / 3600,
            s / 60 % 60,
            s % 60
        )
    }
}

/// Rows for every cell with at least `min_devices` reports; returns the rows and
/// how many cells were withheld.
pub fn estimate_cells(
    cells: &[(CellKey, CellState)],
    catalogs: &Catalogs,
    period_seconds: u32,
    min_devices: u64,
) -> Result<(Vec<EstimateRow>, usize), CollectorError> {
    let mut rows = Vec::new();
    let mut withheld = 0;
    for (key, state) in cells {
        if state.reports() < min_devices.max(2) {
            withheld += 1;
            continue;
        }
        let Some(catalog) = catalogs.get(key.catalog) else {
            withheld += 1;
            continue;
        };
        rows.extend(cell_rows(key, state, catalog, period_seconds)?);
    }
    Ok((rows, withheld))
}

fn cell_rows(
    key: &CellKey,
    state: &CellState,
    catalog: &Catalog,
    period_seconds: u32,
) -> Result<Vec<EstimateRow>, CollectorError> {
    let internal = |e: String| CollectorError::Internal(e);
    let metric = catalog
        .metrics()
        .get(usize::from(key.metric))
        .ok_or_else(|| internal(format!("cell for unknown metric {}", key.metric)))?;
    let mechanism = metric
        .mechanism(key.epsilon_perm(), key.epsilon())
        .map_err(|e| internal(e.to_string()))?;
    let reports = state.reports();
    let values = match (state, &mechanism) {
        (CellState::Frequency(agg), MetricMechanism::Frequency(oracle)) => {
            use hush_ldp::FrequencyOracle;
            if agg.support_counts().len() != oracle.domain() as usize {
                return Err(internal(format!(
                    "a cell of {} has {} buckets; the metric has {}",
                    metric.name,
                    agg.support_counts().len(),
                    oracle.domain()
                )));
            }
            let probs = oracle.support_probabilities();
            let estimated = agg
                .estimate_population(probs, LEVEL)
                .map_err(|e| internal(e.to_string()))?
                .values
                .iter()
                .map(|v| Estimated {
                    estimate: v.estimate,
                    std_error: v.std_error,
                    interval: v.interval,
                    reports,
                })
                .collect::<Vec<_>>();
            if let Some(edges) = distribution_edges(metric) {
                let below = shares_below(agg, probs, edges.len())?;
                let window = Window::Day.name();
                let mut rows = rows_of(metric, key, window, period_seconds, &estimated);
                rows.extend(quantile_rows(
                    metric,
                    key,
                    window,
                    period_seconds,
                    &below,
                    reports,
                )?);
                return Ok(rows);
            }
            estimated
        }
        (CellState::Mean(agg), MetricMechanism::Numeric(m)) => {
            let est = agg
                .estimate(m, LEVEL)
                .map_err(|e| internal(e.to_string()))?;
            vec![Estimated {
                estimate: est.mean,
                std_error: est.std_error,
                interval: est.interval,
                reports,
            }]
        }
        _ => {
            return Err(internal(format!(
                "cell state does not match metric {}",
                metric.name
            )));
        }
    };
    Ok(rows_of(
        metric,
        key,
        Window::Day.name(),
        period_seconds,
        &values,
    ))
}

/// One estimate before it becomes a row.
struct Estimated {
    estimate: f64,
    std_error: f64,
    interval: hush_stats::ConfidenceInterval,
    reports: u64,
}

/// The rows of one cell, a day's or a pooled window's (`key.period` is its
/// first period): one per bucket with the distribution projected onto the
/// simplex, or one `mean` row clipped to the metric's range.
fn rows_of(
    metric: &Metric,
    key: &CellKey,
    window: &str,
    period_seconds: u32,
    values: &[Estimated],
) -> Vec<EstimateRow> {
    let (labels, post_processed): (&[String], Vec<f64>) = match &metric.encoding {
        Encoding::Buckets { labels, .. } | Encoding::Categories { labels, .. } => (
            labels,
            norm_sub(&values.iter().map(|v| v.estimate).collect::<Vec<_>>()),
        ),
        Encoding::Numeric { lo, hi, .. } => (
            &[],
            values.iter().map(|v| v.estimate.clamp(*lo, *hi)).collect(),
        ),
    };
    let numeric = matches!(metric.encoding, Encoding::Numeric { .. });
    values
        .iter()
        .zip(post_processed)
        .enumerate()
        .map(|(i, (v, post_processed))| EstimateRow {
            bucket: if numeric {
                "mean".to_owned()
            } else {
                labels.get(i).cloned().unwrap_or_else(|| i.to_string())
            },
            bucket_index: if numeric { -1 } else { i as i32 },
            estimate: v.estimate,
            std_error: v.std_error,
            ci_low: v.interval.lo,
            ci_high: v.interval.hi,
            post_processed,
            reports: v.reports,
            ..row_base(metric, key, window, period_seconds)
        })
        .collect()
}

/// The fields every row of a cell shares; the estimate's fields are zero.
fn row_base(metric: &Metric, key: &CellKey, window: &str, period_seconds: u32) -> EstimateRow {
    EstimateRow {
        metric: metric.name.to_owned(),
        kind: metric.kind.name().to_owned(),
        window: window.to_owned(),
        period: key.period,
        period_start: period_start(key.period, period_seconds),
        cohort: key.cohort.clone(),
        bucket: String::new(),
        bucket_index: -1,
        estimate: 0.0,
        std_error: 0.0,
        ci_low: 0.0,
        ci_high: 0.0,
        post_processed: 0.0,
        reports: 0,
        epsilon: key.epsilon(),
        epsilon_perm: key.epsilon_perm(),
        mechanism: metric.mechanism_name().to_owned(),
        catalog_hash: key.catalog.to_string(),
    }
}

/// The quantiles released for every distribution metric, with their labels.
pub const QUANTILES: [(f64, &str); 2] = [(0.5, "p50"), (0.9, "p90")];

/// A distribution metric's bucket edges (`None` for any other metric).
pub(crate) fn distribution_edges(metric: &Metric) -> Option<&[f64]> {
    match (&metric.encoding, metric.kind) {
        (Encoding::Buckets { edges, .. }, MetricKind::Distribution) => Some(edges),
        _ => None,
    }
}

/// How many buckets lie below edge `j`: "no value" and the `j + 1` under it.
fn buckets_below(j: usize) -> usize {
    j + 2
}

/// The estimated share of values below each of a distribution's `edges`
/// edges, from a day cell's support counts: each is a merged bucket's
/// frequency, with its standard error (the sampling term included).
pub(crate) fn shares_below(
    agg: &FrequencyAggregate,
    probs: hush_ldp::SupportProbabilities,
    edges: usize,
) -> Result<Vec<hush_stats::ValueEstimate>, CollectorError> {
    let counts = agg.support_counts();
    (0..edges)
        .map(|j| {
            let size = buckets_below(j);
            FrequencyAggregate::from_counts(agg.reports(), vec![counts[..size].iter().sum()])
                .estimate_population(set_probabilities(probs, size as u32), LEVEL)
                .map(|e| e.values[0])
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CollectorError::Internal(e.to_string()))
}

/// The quantile rows of a distribution metric's cell, from `below[j]`, the
/// estimated share of values below edge `j` (a merged bucket's frequency):
/// one row per [`QUANTILES`], `bucket_index` -1, in the metric's unit. The
/// interval inverts the pointwise band (`hush_stats::quantile`), so it is
/// not symmetric; the standard error is the delta method's. The upper end is
/// infinite when the band never reaches the quantile below the last edge.
fn quantile_rows(
    metric: &Metric,
    key: &CellKey,
    window: &str,
    period_seconds: u32,
    below: &[hush_stats::ValueEstimate],
    reports: u64,
) -> Result<Vec<EstimateRow>, CollectorError> {
    let edges = distribution_edges(metric).unwrap_or_default();
    QUANTILES
        .iter()
        .map(|&(q, label)| {
            let e = hush_stats::quantile(edges, below, q, LEVEL)
                .map_err(|e| CollectorError::Internal(e.to_string()))?;
            Ok(EstimateRow {
                bucket: label.to_owned(),
                bucket_index: -1,
                estimate: e.estimate,
                std_error: e.std_error,
                ci_low: e.interval.lo,
                ci_high: e.interval.hi,
                post_processed: e.estimate,
                reports,
                ..row_base(metric, key, window, period_seconds)
            })
        })
        .collect()
}

/// What an estimate row covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    /// One period: the aggregate cells as stored.
    Day,
    /// Monday to Sunday (daily periods only), pooled from the stored reports.
    Week,
    /// A calendar month (daily periods only), pooled from the stored reports.
    Month,
}

impl Window {
    /// Lowercase name, as in the `window` column.
    pub fn name(self) -> &'static str {
        match self {
            Window::Day => "day",
            Window::Week => "week",
            Window::Month => "month",
        }
    }

    /// The first and last period of the window that holds `period` (days
    /// since 1970-01-01).
    pub fn span(self, period: u32) -> (u32, u32) {
        match self {
            Window::Day => (period, period),
            Window::Week => {
                // The first days have no Monday before them: their week starts at 0.
                let start = period.saturating_sub(weekday(period));
                (start, start.saturating_add(6))
            }
            Window::Month => {
                let (_, _, d) = civil_from_days(i64::from(period));
                let start = period + 1 - d;
                let mut end = period;
                while civil_from_days(i64::from(end) + 1).2 != 1 {
                    end += 1;
                }
                (start, end)
            }
        }
    }
}

impl std::str::FromStr for Window {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "day" => Ok(Window::Day),
            "week" => Ok(Window::Week),
            "month" => Ok(Window::Month),
            other => Err(format!("'{other}' is not a window: day, week or month")),
        }
    }
}

/// One device's reports of one metric within a window: how many, and per
/// bucket (or, for a count, in slot 0) the sum of their unbiased values'
/// integer parts: support counts for buckets, decoded values for counts.
#[derive(Debug, Clone, Default)]
struct DeviceSums {
    reports: u64,
    sums: Vec<f64>,
}

/// Estimates pooled over windows of several periods, from stored reports:
/// `reports` holds `(device, cohort, period, report)`; `window_of` maps a
/// period to its window's first period (or `None` to leave it out). The
/// caller vouches that the reports are all of their day cells' reports:
/// released estimates go through [`released_rows`], which withholds a
/// window whose days lost reports to pruning.
///
/// Only reports whose own day cell is released (at least `min_devices`
/// reports) are pooled: otherwise a window's row minus its released day rows
/// would give away a withheld day cell, down to one device. A row is then
/// released for a window with at least `min_devices` distinct devices; the
/// standard error is clustered by device (`hush_stats::ClusteredMean`), since
/// a device's reports on different days share permanent responses. Frequency
/// rows estimate the population's frequency (the sampling term included);
/// count rows the mean of the clipped values.
pub fn pooled_rows(
    reports: &[(i64, String, u32, hush_report::Report)],
    catalogs: &Catalogs,
    window: &str,
    window_of: &dyn Fn(u32) -> Option<u32>,
    period_seconds: u32,
    min_devices: u64,
) -> Result<(Vec<EstimateRow>, usize), CollectorError> {
    use std::collections::BTreeMap;
    let internal = |e: String| CollectorError::Internal(e);
    let day_cells = day_cell_counts(reports);
    let released_day =
        |key: &CellKey| day_cells.get(key).copied().unwrap_or(0) >= min_devices.max(2);
    // Keyed like a day cell, with the window's first period as its period.
    // Devices in id order: a pooled estimate sums floats over them, and a
    // hash map's order (random per process) would change its last bits from
    // one run to the next, and the exported bytes with them.
    let mut pools: BTreeMap<CellKey, BTreeMap<i64, DeviceSums>> = BTreeMap::new();
    for (device, cohort, period, report) in reports {
        let Some(start) = window_of(*period) else {
            continue;
        };
        let valid = crate::validate::validate_structure(report.clone(), catalogs)
            .map_err(|r| internal(format!("a stored report no longer validates: {}", r.reason)))?;
        for (m, mechanism) in valid.report.metrics().iter().zip(&valid.mechanisms) {
            let day = CellKey::of(report, m, cohort);
            if !released_day(&day) {
                continue;
            }
            let key = CellKey {
                period: start,
                ..day
            };
            let slot = pools.entry(key).or_default().entry(*device).or_default();
            slot.reports += 1;
            match mechanism {
                MetricMechanism::Numeric(n) => {
                    use hush_ldp::NumericMechanism;
                    let p = m
                        .value()
                        .as_grid()
                        .ok_or_else(|| internal("not a grid point".into()))?;
                    slot.sums.resize(1, 0.0);
                    slot.sums[0] += n.decode(p);
                }
                MetricMechanism::Frequency(o) => {
                    use hush_ldp::FrequencyOracle;
                    let out = m
                        .value()
                        .as_frequency()
                        .ok_or_else(|| internal("not a frequency report".into()))?;
                    slot.sums.resize(o.domain() as usize, 0.0);
                    let sums = &mut slot.sums;
                    o.for_each_supported(&out, |v| {
                        if let Some(s) = sums.get_mut(v as usize) {
                            *s += 1.0;
                        }
                    });
                }
            }
        }
    }
    let (mut rows, mut withheld) = (Vec::new(), 0);
    for (key, devices) in pools {
        if (devices.len() as u64) < min_devices.max(2) {
            withheld += 1;
            continue;
        }
        let metric = catalogs
            .get(key.catalog)
            .and_then(|c| c.metrics().get(usize::from(key.metric)))
            .ok_or_else(|| internal("a validated report's metric vanished".into()))?;
        let mechanism = metric
            .mechanism(key.epsilon_perm(), key.epsilon())
            .map_err(|e| internal(e.to_string()))?;
        // Per bucket, the affine map from a device's support count to the sum
        // of its reports' unbiased values; identity for a count's decoded sum.
        let (scale, shift, buckets) = match &mechanism {
            MetricMechanism::Frequency(o) => {
                use hush_ldp::FrequencyOracle;
                let probs = o.support_probabilities();
                (1.0 / (probs.p - probs.q), probs.q, o.domain() as usize)
            }
            MetricMechanism::Numeric(_) => (1.0, 0.0, 1),
        };
        let mut values = Vec::with_capacity(buckets);
        for b in 0..buckets {
            let mut pooled = hush_stats::ClusteredMean::new();
            for d in devices.values() {
                let count = d.sums.get(b).copied().unwrap_or(0.0);
                pooled.add_device(d.reports, scale * (count - shift * d.reports as f64));
            }
            let e = pooled
                .estimate(LEVEL)
                .map_err(|e| internal(e.to_string()))?;
            values.push(Estimated {
                estimate: e.estimate,
                std_error: e.std_error,
                interval: e.interval,
                reports: e.reports,
            });
        }
        rows.extend(rows_of(metric, &key, window, period_seconds, &values));
        if let Some(edges) = distribution_edges(metric) {
            // A device's reports below edge j: its support counts of the
            // buckets below, shifted by the merged bucket's q.
            let reports = values.first().map_or(0, |v| v.reports);
            let mut below = Vec::with_capacity(edges.len());
            for j in 0..edges.len() {
                let size = buckets_below(j);
                let mut pooled = hush_stats::ClusteredMean::new();
                for d in devices.values() {
                    let count: f64 = d.sums.iter().take(size).sum();
                    let shifted = count - shift * size as f64 * d.reports as f64;
                    pooled.add_device(d.reports, scale * shifted);
                }
                let e = pooled
                    .estimate(LEVEL)
                    .map_err(|e| internal(e.to_string()))?;
                below.push(hush_stats::ValueEstimate {
                    estimate: e.estimate,
                    std_error: e.std_error,
                    interval: e.interval,
                });
            }
            rows.extend(quantile_rows(
                metric,
                &key,
                window,
                period_seconds,
                &below,
                reports,
            )?);
        }
    }
    Ok((rows, withheld))
}

/// How many stored reports each day cell holds.
fn day_cell_counts(
    reports: &[(i64, String, u32, hush_report::Report)],
) -> std::collections::HashMap<CellKey, u64> {
    let mut counts = std::collections::HashMap::new();
    for (_, cohort, _, report) in reports {
        for m in report.metrics() {
            *counts.entry(CellKey::of(report, m, cohort)).or_insert(0) += 1;
        }
    }
    counts
}

/// The rows that may be released at `clock` for `window`, optionally limited
/// to periods `from..=to`: a day's cells once the day is closed; a week or
/// month, pooled from the stored reports, once its last day is closed, if it
/// lies wholly inside the range and every one of its day cells still has all
/// its reports stored. Pruning (or retention) takes a window out whole rather
/// than let it be recomputed from fewer days: the difference of two such
/// releases would be a day's sums.
#[allow(clippy::too_many_arguments)]
pub fn released_rows(
    db: &mut dyn crate::store::Store,
    catalogs: &Catalogs,
    clock: &crate::PeriodClock,
    window: Window,
    from: Option<u32>,
    to: Option<u32>,
    period_seconds: u32,
    min_devices: u64,
) -> Result<(Vec<EstimateRow>, usize), CollectorError> {
    if window == Window::Day {
        let cells = crate::store::released_cells(db, clock, from, to)?;
        return estimate_cells(&cells, catalogs, period_seconds, min_devices);
    }
    if period_seconds != 86_400 {
        return Err(CollectorError::Refused(format!(
            "{} windows need daily periods; this collector's periods are {period_seconds} s",
            window.name()
        )));
    }
    let Some(last) = clock.last_closed() else {
        return Ok((Vec::new(), 0));
    };
    let (lo, hi) = (from.unwrap_or(0), to.map_or(last, |t| t.min(last)));
    if lo > hi {
        return Ok((Vec::new(), 0));
    }
    // Reports and cells from one snapshot, so an erasure between the two
    // reads cannot make them disagree.
    let (reports, cells) = db.reports_and_cells(lo, hi)?;
    // A window any of whose day cells lost reports to pruning (or holds
    // reports no cell counts) is not released.
    let mut stored = day_cell_counts(&reports);
    let mut incomplete = std::collections::BTreeSet::new();
    for (key, state) in cells {
        if stored.remove(&key).unwrap_or(0) != state.reports() {
            incomplete.insert(window.span(key.period).0);
        }
    }
    for key in stored.keys() {
        incomplete.insert(window.span(key.period).0);
    }
    let window_of = |p: u32| {
        let (start, end) = window.span(p);
        (start >= lo && end <= hi && !incomplete.contains(&start)).then_some(start)
    };
    pooled_rows(
        &reports,
        catalogs,
        window.name(),
        &window_of,
        period_seconds,
        min_devices,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_rows_are_the_same_bits_whatever_the_order_of_the_reports() {
        use hush_ldp::NoiseRng;
        use rand::SeedableRng;
        let config = crate::CollectorConfig::default();
        let catalogs = Catalogs::builtin();
        let catalog = Catalog::builtin();
        let current = 20_000;
        let mut rng = NoiseRng::seed_from_u64(7);
        let mut reports = Vec::new();
        for d in 0..300u64 {
            for r in
                crate::loadgen::device_reports(&config, &catalog, current, d, 7, &mut rng).unwrap()
            {
                reports.push((d as i64, "all".to_owned(), r.period(), r));
            }
        }
        let week = |p: u32| Some(Window::Week.span(p).0);
        let (a, _) = pooled_rows(&reports, &catalogs, "week", &week, 86_400, 3).unwrap();
        reports.reverse();
        let (b, _) = pooled_rows(&reports, &catalogs, "week", &week, 86_400, 3).unwrap();
        assert!(!a.is_empty());
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(
                (
                    x.estimate.to_bits(),
                    x.ci_low.to_bits(),
                    x.ci_high.to_bits()
                ),
                (
                    y.estimate.to_bits(),
                    y.ci_low.to_bits(),
                    y.ci_high.to_bits()
                ),
                "{} {}",
                x.metric,
                x.bucket
            );
        }
    }

    #[test]
    fn dates() {
        assert_eq!(period_start(20_420, 86_400), "2025-11-28");
        assert_eq!(period_start(3, 3600), "1970-01-01T03:00:00Z");
    }

    #[test]
    fn windows_are_calendar_weeks_and_months() {
        // 2025-11-28 (day 20420) was a Friday: its week runs from Monday the 24th.
        assert_eq!(Window::Week.span(20_420), (20_416, 20_422));
        assert_eq!(period_start(20_416, 86_400), "2025-11-24");
        assert_eq!(Window::Week.span(20_416), (20_416, 20_422));
        // February 2000 had 29 days.
        let (start, end) = Window::Month.span(11_016);
        assert_eq!(period_start(start, 86_400), "2000-02-01");
        assert_eq!(period_start(end, 86_400), "2000-02-29");
        assert_eq!(Window::Day.span(7), (7, 7));
    }
}
