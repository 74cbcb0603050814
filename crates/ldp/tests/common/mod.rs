//! Helpers shared by the exact-distribution tests of the scalar and batch paths.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use statrs::distribution::{ChiSquared, ContinuousCDF};

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
