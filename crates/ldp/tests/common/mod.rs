//! Helpers shared by the exact-distribution tests of the scalar and batch paths:
//! the chi-square test, the significance level and the binomial z-bounds.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};

/// Smallest expected count per chi-square cell, the usual validity rule for the
/// chi-square approximation of Pearson's statistic.
const MIN_EXPECTED: f64 = 5.0;

/// Pearson's chi-square test of `observed` counts against exact cell probabilities `probs`.
///
/// Cells of probability zero must be empty (an impossible output fails outright) and are
/// dropped. Neighbouring cells are pooled, in order, until each pool expects at least
/// [`MIN_EXPECTED`] reports; pooling cells of an exact distribution keeps it exact, so
/// callers list tail cells at the ends. Returns the statistic, degrees of freedom and p-value.
pub fn chi_square(label: &str, observed: &[u64], probs: &[f64]) -> (f64, usize, f64) {
    assert_eq!(observed.len(), probs.len(), "{label}: cell count mismatch");
    let total: f64 = probs.iter().sum();
    // The cells must cover the whole output distribution; f64 summation of a few
    // thousand terms is good to far better than 1e-9.
    assert!(
        (total - 1.0).abs() < 1e-9,
        "{label}: cell probabilities sum to {total}, not 1"
    );
    let n = observed.iter().sum::<u64>() as f64;
    let mut pools: Vec<(f64, f64)> = Vec::new();
    let mut current = (0.0, 0.0);
    for (&o, &p) in observed.iter().zip(probs) {
        assert!(p >= 0.0, "{label}: negative cell probability {p}");
        if p == 0.0 {
            assert_eq!(o, 0, "{label}: {o} reports in a cell of probability zero");
            continue;
        }
        current = (current.0 + o as f64, current.1 + n * p);
        if current.1 >= MIN_EXPECTED {
            pools.push(current);
            current = (0.0, 0.0);
        }
    }
    if current.1 > 0.0 {
        match pools.last_mut() {
            Some(last) => *last = (last.0 + current.0, last.1 + current.1),
            None => pools.push(current),
        }
    }
    assert!(pools.len() >= 2, "{label}: fewer than two cells to test");
    let statistic: f64 = pools.iter().map(|&(o, e)| (o - e) * (o - e) / e).sum();
    let df = pools.len() - 1;
    let p_value = ChiSquared::new(df as f64).unwrap().sf(statistic);
    (statistic, df, p_value)
}

/// Per-test significance level (false-alarm rate for a correct mechanism and a fresh seed).
pub const ALPHA: f64 = 1e-4;

/// Reports per histogram.
pub const N: usize = 200_000;

/// Fails unless the chi-square test of `observed` against `probs` has p-value at least [`ALPHA`].
pub fn assert_fits(label: &str, observed: &[u64], probs: &[f64]) {
    let (statistic, df, p_value) = chi_square(label, observed, probs);
    assert!(
        p_value >= ALPHA,
        "{label}: chi-square {statistic:.2} on {df} df, p = {p_value:.3e} < {ALPHA:e}\n\
         observed {observed:?}\nexpected probabilities {probs:?}"
    );
}

/// The two-sided z-bound for a family of `tests` binomial counts at total level [`ALPHA`].
pub fn bonferroni_z(tests: usize) -> f64 {
    Normal::new(0.0, 1.0)
        .unwrap()
        .inverse_cdf(1.0 - ALPHA / (2.0 * tests as f64))
}

/// Asserts that `count` successes of `n` trials fit probability `p` within `z` standard errors.
pub fn assert_binomial(label: &str, count: u64, n: u64, p: f64, z: f64) {
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    let dev = (count as f64 - n as f64 * p) / sd;
    assert!(
        dev.abs() <= z,
        "{label}: {count} of {n}, expected {:.1} (p = {p}), z = {dev:.2} beyond {z:.2}",
        n as f64 * p
    );
}
