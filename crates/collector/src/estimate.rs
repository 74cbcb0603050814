//! Estimates from aggregate cells: one row per (metric, period, cohort, epsilon, bucket)
//! with the unbiased estimate, its standard error, a 95% interval and the post-processed value.

use hush_report::{Catalog, Encoding, MetricMechanism};
use hush_stats::norm_sub;
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
    /// Period id.
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
    /// Reports (each from a distinct device) in the cell.
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

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
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
    let base = |bucket: String, bucket_index: i32| EstimateRow {
        metric: metric.name.to_owned(),
        kind: metric.kind.name().to_owned(),
        period: key.period,
        period_start: period_start(key.period, period_seconds),
        cohort: key.cohort.clone(),
        bucket,
        bucket_index,
        estimate: 0.0,
        std_error: 0.0,
        ci_low: 0.0,
        ci_high: 0.0,
        post_processed: 0.0,
        reports: state.reports(),
        epsilon: key.epsilon(),
        epsilon_perm: key.epsilon_perm(),
        mechanism: metric.mechanism_name().to_owned(),
        catalog_hash: key.catalog.to_string(),
    };
    match (state, &mechanism, &metric.encoding) {
        (CellState::Frequency(agg), MetricMechanism::Frequency(oracle), enc) => {
            use hush_ldp::FrequencyOracle;
            let est = agg
                .estimate(oracle.support_probabilities(), LEVEL)
                .map_err(|e| internal(e.to_string()))?;
            let projected = norm_sub(&est.frequencies());
            let labels: &[String] = match enc {
                Encoding::Buckets { labels, .. } | Encoding::Categories { labels, .. } => labels,
                Encoding::Numeric { .. } => &[],
            };
            Ok(est
                .values
                .iter()
                .zip(projected)
                .enumerate()
                .map(|(i, (v, pp))| EstimateRow {
                    estimate: v.estimate,
                    std_error: v.std_error,
                    ci_low: v.interval.lo,
                    ci_high: v.interval.hi,
                    post_processed: pp,
                    ..base(
                        labels.get(i).cloned().unwrap_or_else(|| i.to_string()),
                        i as i32,
                    )
                })
                .collect())
        }
        (CellState::Mean(agg), MetricMechanism::Numeric(m), Encoding::Numeric { lo, hi, .. }) => {
            let est = agg
                .estimate(m, LEVEL)
                .map_err(|e| internal(e.to_string()))?;
            Ok(vec![EstimateRow {
                estimate: est.mean,
                std_error: est.std_error,
                ci_low: est.interval.lo,
                ci_high: est.interval.hi,
                post_processed: est.mean.clamp(*lo, *hi),
                ..base("mean".to_owned(), -1)
            }])
        }
        _ => Err(internal(format!(
            "cell state does not match metric {}",
            metric.name
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_420), (2025, 11, 28));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(period_start(20_420, 86_400), "2025-11-28");
        assert_eq!(period_start(3, 3600), "1970-01-01T03:00:00Z");
    }
}
