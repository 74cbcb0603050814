//! Estimates pooled over several periods, with standard errors clustered by
//! device: a device's reports in different periods share its permanent
//! responses (and its habits), so they are not independent.

use crate::{ConfidenceInterval, StatsError};

/// The pooled mean of per-report unbiased values (a count's decoded report,
/// or a frequency report's `(support - q) / (p - q)`), with one entry per
/// device: how many reports it sent and the sum of their values.
///
/// The estimate is `sum_d S_d / sum_d n_d`; its variance is the cluster-robust
/// (sandwich) estimator `G / (G - 1) sum_d (S_d - n_d mean)^2 / N^2` over `G`
/// devices and `N` reports (Liang and Zeger, Biometrika 1986; Cameron and
/// Miller, "A Practitioner's Guide to Cluster-Robust Inference", J. Human
/// Resources 2015, Section II.C). Treating the reports as independent
/// understates it whenever a device's reports are positively correlated,
/// which memoized permanent responses make them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusteredMean {
    reports: u64,
    sum: f64,
    /// Per device: (reports, sum of values).
    devices: Vec<(u64, f64)>,
}

/// A pooled estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PooledEstimate {
    /// Reports pooled.
    pub reports: u64,
    /// Devices they came from.
    pub devices: u64,
    /// The pooled mean of the reports' unbiased values.
    pub estimate: f64,
    /// Cluster-robust standard error.
    pub std_error: f64,
    /// Normal-approximation interval.
    pub interval: ConfidenceInterval,
}

impl ClusteredMean {
    /// An empty estimator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one device's `reports` reports whose unbiased values sum to `sum`.
    pub fn add_device(&mut self, reports: u64, sum: f64) {
        if reports == 0 {
            return;
        }
        self.reports += reports;
        self.sum += sum;
        self.devices.push((reports, sum));
    }

    /// Devices added.
    pub fn devices(&self) -> u64 {
        self.devices.len() as u64
    }

    /// The pooled estimate with its cluster-robust interval at `level`; needs
    /// at least two devices.
    pub fn estimate(&self, level: f64) -> Result<PooledEstimate, StatsError> {
        let g = self.devices.len();
        if g < 2 {
            return Err(StatsError::TooFewReports { needed: 2 });
        }
        let n = self.reports as f64;
        let mean = self.sum / n;
        let squares: f64 = self
            .devices
            .iter()
            .map(|&(k, s)| (s - k as f64 * mean).powi(2))
            .sum();
        let g = g as f64;
        let std_error = (g / (g - 1.0) * squares).sqrt() / n;
        Ok(PooledEstimate {
            reports: self.reports,
            devices: self.devices.len() as u64,
            estimate: mean,
            std_error,
            interval: ConfidenceInterval::normal(mean, std_error, level)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn independent_reports_give_the_usual_standard_error() {
        // One report per device: the sandwich is the sample variance / n.
        let xs = [1.0, 2.0, 4.0, 7.0];
        let mut c = ClusteredMean::new();
        for x in xs {
            c.add_device(1, x);
        }
        let e = c.estimate(0.95).unwrap();
        assert_eq!(e.estimate, 3.5);
        let sample_var = xs.iter().map(|x| (x - 3.5f64).powi(2)).sum::<f64>() / 3.0;
        assert!((e.std_error - (sample_var / 4.0).sqrt()).abs() < 1e-12);
        assert_eq!((e.reports, e.devices), (4, 4));
    }

    #[test]
    fn repeated_reports_of_a_device_widen_the_interval() {
        // The same four values, each reported three times by its device: the
        // pooled mean is unchanged and so is the standard error (three copies
        // carry no more information than one), where treating the 12 reports
        // as independent would shrink it by sqrt(3 * 3 / 11).
        let mut c = ClusteredMean::new();
        for x in [1.0, 2.0, 4.0, 7.0] {
            c.add_device(3, 3.0 * x);
        }
        let e = c.estimate(0.95).unwrap();
        assert_eq!(e.estimate, 3.5);
        let sample_var: f64 = 21.0 / 3.0;
        assert!((e.std_error - (sample_var / 4.0).sqrt()).abs() < 1e-12);
        assert!(ClusteredMean::new().estimate(0.95).is_err());
    }
}
