//! Normal-approximation confidence intervals and exact binomial (Clopper–Pearson) bounds.

use statrs::distribution::{Beta, ContinuousCDF, Normal};

use crate::StatsError;

/// A two-sided confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConfidenceInterval {
    /// Lower end.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
    /// Nominal coverage, e.g. 0.95.
    pub level: f64,
}

impl ConfidenceInterval {
    /// The interval `estimate ± z * std_error` with `z` the normal quantile for `level`.
    pub fn normal(estimate: f64, std_error: f64, level: f64) -> Result<Self, StatsError> {
        let z = normal_quantile(level)?;
        Ok(ConfidenceInterval {
            lo: estimate - z * std_error,
            hi: estimate + z * std_error,
            level,
        })
    }

    /// Whether `x` lies inside the closed interval.
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }
}

/// The two-sided standard normal quantile for coverage `level` (1.959964 for 0.95).
pub fn normal_quantile(level: f64) -> Result<f64, StatsError> {
    if !(level > 0.0 && level < 1.0) {
        return Err(StatsError::Level(level));
    }
    let standard = Normal::standard();
    Ok(standard.inverse_cdf(0.5 + level / 2.0))
}

/// Exact one-sided Clopper–Pearson bounds on a binomial proportion.
///
/// With `k` successes in `n` trials, the true proportion is at least
/// [`clopper_pearson_lower`] with probability at least `1 - alpha`, and at most
/// [`clopper_pearson_upper`] with probability at least `1 - alpha`.
pub fn clopper_pearson_lower(k: u64, n: u64, alpha: f64) -> f64 {
    if k == 0 || n == 0 {
        return 0.0;
    }
    beta_quantile(k as f64, (n - k) as f64 + 1.0, alpha)
}

/// See [`clopper_pearson_lower`].
pub fn clopper_pearson_upper(k: u64, n: u64, alpha: f64) -> f64 {
    if k >= n {
        return 1.0;
    }
    beta_quantile(k as f64 + 1.0, (n - k) as f64, 1.0 - alpha)
}

fn beta_quantile(a: f64, b: f64, p: f64) -> f64 {
    match Beta::new(a, b) {
        Ok(beta) => beta.inverse_cdf(p.clamp(0.0, 1.0)),
        // Shapes are positive and finite by construction above.
        Err(e) => panic!("beta shapes ({a}, {b}) must be positive: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantiles_match_tables() {
        assert!((normal_quantile(0.95).unwrap() - 1.959_963_985).abs() < 1e-6);
        assert!((normal_quantile(0.99).unwrap() - 2.575_829_304).abs() < 1e-6);
        assert!(normal_quantile(1.0).is_err() && normal_quantile(f64::NAN).is_err());
    }

    #[test]
    fn clopper_pearson_matches_known_values() {
        // 0 of 10: the exact upper 95% bound is 1 - 0.05^(1/10).
        let up = clopper_pearson_upper(0, 10, 0.05);
        assert!((up - (1.0 - 0.05f64.powf(0.1))).abs() < 1e-9, "{up}");
        // 10 of 10: the lower bound is 0.05^(1/10).
        let lo = clopper_pearson_lower(10, 10, 0.05);
        assert!((lo - 0.05f64.powf(0.1)).abs() < 1e-9, "{lo}");
        // Large n: close to the normal approximation p ± z sqrt(p(1-p)/n).
        let (k, n) = (365_000, 500_000);
        let p = 0.73;
        let se = (p * (1.0 - p) / n as f64).sqrt();
        let z = 2.575_829_304;
        assert!((clopper_pearson_lower(k, n, 0.005) - (p - z * se)).abs() < 2e-5);
        assert!((clopper_pearson_upper(k, n, 0.005) - (p + z * se)).abs() < 2e-5);
    }
}
