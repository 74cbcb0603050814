//! Every frequency oracle against the theory: variance, bias and interval coverage
//! across trials, for two epsilons and two domain sizes.
//!
//! Tolerances come from the sampling distribution of each statistic, not from
//! tuning: with T trials a variance estimate has relative standard error about
//! sqrt(2/(T-1)); a mean error is compared with its own standard error; a
//! coverage fraction with the binomial standard error of T independent trials
//! (conservative, since the values within one trial are not independent).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use hush_ldp::FrequencyKind;
use hush_stats::Distribution;
use hush_stats::simulate::{Trials, simulate_frequency};

const TRIALS: u64 = 400;

fn trials(seed: u64) -> Trials {
    Trials {
        users: 1000,
        trials: TRIALS,
        seed,
        level: 0.95,
        threads: 2,
    }
}

fn check(kind: FrequencyKind, epsilon: f64, domain: u64) {
    let s = simulate_frequency(
        kind,
        epsilon,
        domain,
        Distribution::Zipf,
        trials(7),
        &|_| {},
    )
    .unwrap();
    let rse = (2.0 / (TRIALS as f64 - 1.0)).sqrt();
    let ratio = s.empirical_variance / s.theoretical_variance;
    let label = format!("{kind} eps={epsilon} d={domain}");
    assert!(
        (ratio - 1.0).abs() < 4.0 * rse,
        "{label}: variance ratio {ratio}"
    );
    // Largest of d |z| values: P(max > 4.5) < d * 7e-6.
    assert!(s.max_bias_z < 4.5, "{label}: bias z {}", s.max_bias_z);
    let coverage_se = (0.95 * 0.05 / TRIALS as f64).sqrt();
    assert!(
        (s.ci_coverage - 0.95).abs() < 4.0 * coverage_se,
        "{label}: coverage {}",
        s.ci_coverage
    );
    assert!(s.realized_epsilon <= epsilon * (1.0 + 1e-9), "{label}");
}

#[test]
fn grr_matches_theory() {
    for eps in [0.5, 2.0] {
        for d in [2, 32] {
            check(FrequencyKind::Grr, eps, d);
        }
    }
}

#[test]
fn sue_matches_theory() {
    for eps in [0.5, 2.0] {
        for d in [2, 32] {
            check(FrequencyKind::Sue, eps, d);
        }
    }
}

#[test]
fn oue_matches_theory() {
    for eps in [0.5, 2.0] {
        for d in [2, 32] {
            check(FrequencyKind::Oue, eps, d);
        }
    }
}

#[test]
fn olh_matches_theory() {
    for eps in [0.5, 2.0] {
        for d in [2, 32] {
            check(FrequencyKind::Olh, eps, d);
        }
    }
}

#[test]
fn hr_matches_theory() {
    for eps in [0.5, 2.0] {
        for d in [2, 32] {
            check(FrequencyKind::Hr, eps, d);
        }
    }
}

/// The realized (exact) variance and the paper's approximation agree where the
/// approximation holds: at a uniform distribution over a large domain, f is small.
#[test]
fn exact_variance_tends_to_the_papers() {
    for kind in FrequencyKind::ALL {
        let s = simulate_frequency(
            kind,
            1.0,
            256,
            Distribution::Uniform,
            Trials {
                users: 200,
                trials: 2,
                seed: 1,
                level: 0.95,
                threads: 1,
            },
            &|_| {},
        )
        .unwrap();
        let ratio = s.theoretical_variance / s.paper_variance;
        if matches!(kind, FrequencyKind::LGrr | FrequencyKind::LLh) {
            // The papers' L-GRR layer (also L-LH's) leaves part of epsilon_1 unspent
            // for d > 2 (ldp's longitudinal docs); ours spends it, so its variance is lower.
            assert!(ratio < 0.99, "{kind}: exact / paper {ratio}");
            continue;
        }
        // At f = 1/256 the exact formula differs by f (p(1-p) - q(1-q)) / (q(1-q)), under 1%
        // for every oracle (GRR also differs by its d-2 term, exactly as the paper's).
        let gap = (ratio - 1.0).abs();
        assert!(gap < 0.012, "{kind}: exact vs paper gap {gap}");
    }
}

/// The same seed gives the same numbers whatever the thread count.
#[test]
fn results_do_not_depend_on_threads() {
    let run = |threads| {
        simulate_frequency(
            FrequencyKind::Oue,
            1.0,
            8,
            Distribution::Zipf,
            Trials {
                users: 300,
                trials: 9,
                seed: 3,
                level: 0.95,
                threads,
            },
            &|_| {},
        )
        .unwrap()
    };
    assert_eq!(run(1), run(3));
}

/// The two-layer oracles, one report per fresh device (`epsilon_perm` twice
/// `epsilon_1`): their composed channel's exact variance is what the trials show.
#[test]
fn two_layer_oracles_match_theory() {
    for kind in FrequencyKind::ALL.into_iter().filter(|k| k.is_two_layer()) {
        for eps in [0.5, 2.0] {
            for d in [2, 32] {
                check(kind, eps, d);
            }
        }
    }
}
