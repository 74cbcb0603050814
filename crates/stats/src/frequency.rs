//! Frequency estimation for every frequency oracle: mergeable support counts, unbiased
//! estimates, variances and confidence intervals.

use hush_ldp::{FrequencyOracle, SupportProbabilities};

use crate::{ConfidenceInterval, StatsError};

/// The sufficient statistics of frequency-oracle reports: how many reports
/// there were and how many supported each value.
///
/// `merge` adds counts, so it is exactly associative and commutative: shards,
/// days and collectors combine to the same numbers in any order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrequencyAggregate {
    reports: u64,
    support: Vec<u64>,
}

impl FrequencyAggregate {
    /// An empty aggregate over `0..domain`.
    pub fn new(domain: u32) -> Self {
        FrequencyAggregate {
            reports: 0,
            support: vec![0; domain as usize],
        }
    }

    /// Rebuilds an aggregate from stored counts (e.g. a database row).
    pub fn from_counts(reports: u64, support: Vec<u64>) -> Self {
        FrequencyAggregate { reports, support }
    }

    /// Adds one report, after checking the oracle could have produced it.
    pub fn add<M: FrequencyOracle>(
        &mut self,
        oracle: &M,
        output: &M::Output,
    ) -> Result<(), StatsError> {
        if oracle.domain() as usize != self.support.len() {
            return Err(StatsError::Mismatch("oracle domain differs from aggregate"));
        }
        if !oracle.is_valid_output(output) {
            return Err(StatsError::InvalidReport);
        }
        self.reports += 1;
        let support = &mut self.support;
        oracle.for_each_supported(output, |v| support[v as usize] += 1);
        Ok(())
    }

    /// Takes one report out again: the exact inverse of [`add`](Self::add), for
    /// erasing a device's contribution. Refuses, changing nothing, an output the
    /// oracle could not have produced or one whose supports are not all counted
    /// here (it was never added).
    pub fn remove<M: FrequencyOracle>(
        &mut self,
        oracle: &M,
        output: &M::Output,
    ) -> Result<(), StatsError> {
        if oracle.domain() as usize != self.support.len() {
            return Err(StatsError::Mismatch("oracle domain differs from aggregate"));
        }
        if !oracle.is_valid_output(output) {
            return Err(StatsError::InvalidReport);
        }
        // Checked before anything changes, so a refused removal leaves the counts whole.
        let mut supported = Vec::new();
        oracle.for_each_supported(output, |v| supported.push(v as usize));
        supported.sort_unstable();
        let enough = supported.chunk_by(|a, b| a == b).all(|run| {
            self.support
                .get(run[0])
                .is_some_and(|&c| c >= run.len() as u64)
        });
        if self.reports == 0 || !enough {
            return Err(StatsError::NotAdded);
        }
        self.reports -= 1;
        for v in supported {
            self.support[v] -= 1;
        }
        Ok(())
    }

    /// Adds another aggregate's counts into this one.
    pub fn merge(&mut self, other: &FrequencyAggregate) -> Result<(), StatsError> {
        if other.support.len() != self.support.len() {
            return Err(StatsError::Mismatch("domains differ"));
        }
        self.reports += other.reports;
        for (a, b) in self.support.iter_mut().zip(&other.support) {
            *a += b;
        }
        Ok(())
    }

    /// Number of reports.
    pub fn reports(&self) -> u64 {
        self.reports
    }

    /// Supporting-report count of each value.
    pub fn support_counts(&self) -> &[u64] {
        &self.support
    }

    /// Unbiased estimates of the frequencies among the reporting users
    /// themselves, with plug-in standard errors (the mechanism's noise only,
    /// [`frequency_variance`]) and intervals at `level`.
    pub fn estimate(
        &self,
        probs: SupportProbabilities,
        level: f64,
    ) -> Result<FrequencyEstimate, StatsError> {
        self.estimate_with(probs, level, false)
    }

    /// Unbiased estimates of the frequencies in a population the reports are
    /// a random sample of (a fleet whose devices each report one metric of
    /// many): the variance adds the sampling term `f (1 - f) / n` to the
    /// mechanism's, together `pi (1 - pi) / (n (p - q)^2)` for
    /// `pi = f p + (1 - f) q`, the chance that a report supports the value.
    pub fn estimate_population(
        &self,
        probs: SupportProbabilities,
        level: f64,
    ) -> Result<FrequencyEstimate, StatsError> {
        self.estimate_with(probs, level, true)
    }

    fn estimate_with(
        &self,
        probs: SupportProbabilities,
        level: f64,
        sampled: bool,
    ) -> Result<FrequencyEstimate, StatsError> {
        if self.reports == 0 {
            return Err(StatsError::TooFewReports { needed: 1 });
        }
        let n = self.reports as f64;
        let values = self
            .support
            .iter()
            .map(|&c| {
                let estimate = (c as f64 / n - probs.q) / (probs.p - probs.q);
                let f = estimate.clamp(0.0, 1.0);
                let sampling = if sampled { f * (1.0 - f) / n } else { 0.0 };
                let variance = frequency_variance(probs, self.reports, f) + sampling;
                let std_error = variance.sqrt();
                Ok(ValueEstimate {
                    estimate,
                    std_error,
                    interval: ConfidenceInterval::normal(estimate, std_error, level)?,
                })
            })
            .collect::<Result<Vec<_>, StatsError>>()?;
        Ok(FrequencyEstimate {
            reports: self.reports,
            values,
        })
    }
}

/// The exact variance of one frequency estimate `f_hat(v)` from `n` reports when
/// the true frequency is `f`:
/// `(f p (1 - p) + (1 - f) q (1 - q)) / (n (p - q)^2)`.
///
/// Each report supports `v` independently, with probability `p` for holders of
/// `v` and `q` for everyone else (Wang et al., USENIX Security 2017, Theorem 2;
/// at `f = 0` this is the paper's approximate variance `q(1-q)/(n(p-q)^2)`).
pub fn frequency_variance(probs: SupportProbabilities, n: u64, f: f64) -> f64 {
    let SupportProbabilities { p, q } = probs;
    (f * p * (1.0 - p) + (1.0 - f) * q * (1.0 - q)) / (n as f64 * (p - q) * (p - q))
}

/// The estimate of one value's frequency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValueEstimate {
    /// Unbiased estimate of the fraction of users holding the value (may be negative or above 1).
    pub estimate: f64,
    /// Standard error, from the exact variance with the estimate (clipped to [0, 1]) plugged in.
    pub std_error: f64,
    /// Normal-approximation interval.
    pub interval: ConfidenceInterval,
}

/// Frequency estimates for every value of a domain.
#[derive(Debug, Clone, PartialEq)]
pub struct FrequencyEstimate {
    /// Number of reports the estimate rests on.
    pub reports: u64,
    /// One estimate per domain value.
    pub values: Vec<ValueEstimate>,
}

impl FrequencyEstimate {
    /// The unbiased estimates alone.
    pub fn frequencies(&self) -> Vec<f64> {
        self.values.iter().map(|v| v.estimate).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hush_ldp::{Grr, NoiseRng};
    use rand::SeedableRng;

    #[test]
    fn merge_equals_single_aggregate() {
        let grr = Grr::new(1.0, 4).unwrap();
        let mut rng = NoiseRng::seed_from_u64(3);
        let mut whole = FrequencyAggregate::new(4);
        let mut parts = [FrequencyAggregate::new(4), FrequencyAggregate::new(4)];
        for i in 0..1000u32 {
            let out = grr.perturb(i % 4, &mut rng).unwrap();
            whole.add(&grr, &out).unwrap();
            parts[(i % 2) as usize].add(&grr, &out).unwrap();
        }
        let [mut a, b] = parts;
        a.merge(&b).unwrap();
        assert_eq!(a, whole);
        assert!(a.merge(&FrequencyAggregate::new(5)).is_err());
        assert_eq!(whole.add(&grr, &9), Err(StatsError::InvalidReport));
    }

    #[test]
    fn remove_is_the_exact_inverse_of_add() {
        let oue = hush_ldp::UnaryEncoding::optimized(1.0, 6).unwrap();
        let mut rng = NoiseRng::seed_from_u64(4);
        let outputs: Vec<_> = (0..200u32)
            .map(|i| oue.perturb(i % 6, &mut rng).unwrap())
            .collect();
        let mut kept = FrequencyAggregate::new(6);
        let mut all = FrequencyAggregate::new(6);
        for (i, out) in outputs.iter().enumerate() {
            all.add(&oue, out).unwrap();
            if i % 3 != 0 {
                kept.add(&oue, out).unwrap();
            }
        }
        for out in outputs.iter().step_by(3) {
            all.remove(&oue, out).unwrap();
        }
        assert_eq!(all, kept);
        // Removing what was never added is refused and changes nothing.
        let mut empty = FrequencyAggregate::new(6);
        assert_eq!(empty.remove(&oue, &outputs[0]), Err(StatsError::NotAdded));
        assert_eq!(empty, FrequencyAggregate::new(6));
        let grr = Grr::new(1.0, 4).unwrap();
        let mut one = FrequencyAggregate::new(4);
        one.add(&grr, &2).unwrap();
        assert_eq!(one.remove(&grr, &3), Err(StatsError::NotAdded));
        assert_eq!(one.remove(&grr, &9), Err(StatsError::InvalidReport));
        one.remove(&grr, &2).unwrap();
        assert_eq!(one, FrequencyAggregate::new(4));
    }

    #[test]
    fn estimate_inverts_the_support_probabilities() {
        let probs = SupportProbabilities { p: 0.75, q: 0.25 };
        // 100 reports, 40 supporting: (0.4 - 0.25) / 0.5 = 0.3.
        let agg = FrequencyAggregate::from_counts(100, vec![40, 25]);
        let est = agg.estimate(probs, 0.95).unwrap();
        assert!((est.values[0].estimate - 0.3).abs() < 1e-12);
        assert!(est.values[1].estimate.abs() < 1e-12);
        // Variance at f = 0.3: (0.3 * 0.1875 + 0.7 * 0.1875) / (100 * 0.25) = 0.0075.
        assert!((est.values[0].std_error - 0.0075f64.sqrt()).abs() < 1e-12);
        // For a population sampled by the reports, plus 0.3 * 0.7 / 100 = 0.0021:
        // pi (1 - pi) / (n (p - q)^2) at pi = 0.4 is 0.24 / 25 = 0.0096.
        let pop = agg.estimate_population(probs, 0.95).unwrap();
        assert_eq!(pop.values[0].estimate, est.values[0].estimate);
        assert!((pop.values[0].std_error - 0.0096f64.sqrt()).abs() < 1e-12);
        assert!(FrequencyAggregate::new(2).estimate(probs, 0.95).is_err());
    }
}
