//! Every numeric mechanism against the theory: variance, bias and interval coverage
//! of the mean estimate, for two epsilons and two populations.
//!
//! Tolerances as in the frequency tests: sqrt(2/(T-1)) relative standard error
//! for a variance from T trials, the mean's own standard error for bias, and the
//! binomial standard error for coverage.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use hush_ldp::NumericKind;
use hush_stats::Population;
use hush_stats::simulate::{Trials, simulate_mean};

const TRIALS: u64 = 400;

fn check(kind: NumericKind, epsilon: f64, population: Population) {
    let t = Trials {
        users: 2000,
        trials: TRIALS,
        seed: 11,
        level: 0.95,
        threads: 2,
    };
    let s = simulate_mean(kind, epsilon, population, t, &|_| {}).unwrap();
    let label = format!("{kind} eps={epsilon} {population}");
    let rse = (2.0 / (TRIALS as f64 - 1.0)).sqrt();
    let ratio = s.empirical_variance / s.theoretical_variance;
    assert!(
        (ratio - 1.0).abs() < 4.0 * rse,
        "{label}: variance ratio {ratio}"
    );
    assert!(s.bias_z < 4.0, "{label}: bias z {}", s.bias_z);
    let coverage_se = (0.95 * 0.05 / TRIALS as f64).sqrt();
    assert!(
        (s.ci_coverage - 0.95).abs() < 4.0 * coverage_se,
        "{label}: coverage {}",
        s.ci_coverage
    );
    // The discretized mechanisms stay within 2% of the papers' continuous variance.
    let paper_gap = (s.theoretical_variance / s.paper_variance - 1.0).abs();
    assert!(
        paper_gap < 0.02,
        "{label}: realized vs paper variance gap {paper_gap}"
    );
}

fn each(kind: NumericKind) {
    for eps in [0.5, 2.0] {
        for pop in [Population::Constant(0.3), Population::Beta(2.0, 5.0)] {
            check(kind, eps, pop);
        }
    }
}

#[test]
fn laplace_matches_theory() {
    each(NumericKind::Laplace);
}

#[test]
fn duchi_matches_theory() {
    each(NumericKind::Duchi);
}

#[test]
fn piecewise_matches_theory() {
    each(NumericKind::Piecewise);
}

#[test]
fn hybrid_matches_theory() {
    each(NumericKind::Hybrid);
}

#[test]
fn onebit_matches_theory() {
    each(NumericKind::OneBit);
}

#[test]
fn two_layer_onebit_matches_theory() {
    each(NumericKind::LOneBit);
}
