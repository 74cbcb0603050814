//! The privacy auditor on every mechanism: its lower bound never exceeds the claimed
//! epsilon, and for tight mechanisms it comes close.
//!
//! Bounds are computed at 99.99% confidence so that a correct mechanism fails a
//! given seed with probability at most 1e-4 per audit.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use hush_ldp::{AnyFrequencyOracle, AnyNumericMechanism, FrequencyKind, NoiseRng, NumericKind};
use hush_stats::audit::{audit_frequency, audit_numeric};
use hush_stats::simulate::simulation_range;
use rand::SeedableRng;

const CONFIDENCE: f64 = 0.9999;

#[test]
fn no_frequency_oracle_exceeds_its_claim() {
    let mut rng = NoiseRng::seed_from_u64(21);
    for kind in FrequencyKind::ALL {
        for eps in [0.5, 2.0] {
            for d in [2, 16] {
                let o = AnyFrequencyOracle::new(kind, eps, d).unwrap();
                let a = audit_frequency(&o, 100_000, CONFIDENCE, &mut rng).unwrap();
                assert!(
                    a.epsilon_lower_bound <= a.claimed_epsilon
                        && a.claimed_epsilon <= eps * (1.0 + 1e-9),
                    "{kind} eps={eps} d={d}: {a:?}"
                );
                // Every oracle is tight on the event the auditor finds. With 1e5 samples
                // and event probabilities down to 0.06 (GRR, d = 16, eps = 0.5), the
                // 99.99% Clopper-Pearson bounds cost up to 0.1 in epsilon, so at least
                // 70% of the claim must be demonstrated. dBitFlipPM reveals 2 of d
                // positions, so its whole loss shows only in the reports that sampled
                // both positions where the inputs differ (1 in 120 at d = 16): its
                // claim holds, but is tight only at d = 2.
                if kind != FrequencyKind::DBitFlipPm || d == 2 {
                    assert!(
                        a.epsilon_lower_bound > 0.7 * eps,
                        "{kind} eps={eps} d={d}: {a:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn no_numeric_mechanism_exceeds_its_claim() {
    let mut rng = NoiseRng::seed_from_u64(22);
    for kind in NumericKind::ALL {
        for eps in [0.5, 2.0] {
            let m = AnyNumericMechanism::new(kind, eps, simulation_range(kind)).unwrap();
            let a = audit_numeric(&m, 100_000, CONFIDENCE, &mut rng).unwrap();
            assert!(
                a.epsilon_lower_bound <= a.claimed_epsilon,
                "{kind} eps={eps}: {a:?}"
            );
            // Hybrid mixes two mechanisms and is not tight on a single event; the others are.
            if kind != NumericKind::Hybrid {
                assert!(a.epsilon_lower_bound > 0.7 * eps, "{kind} eps={eps}: {a:?}");
            }
        }
    }
}

/// The reference point: GRR, d = 2, eps = 1, 10^6 samples, 99% confidence.
#[test]
fn grr_binary_audit_is_tight() {
    let mut rng = NoiseRng::seed_from_u64(1);
    let o = AnyFrequencyOracle::new(FrequencyKind::Grr, 1.0, 2).unwrap();
    let a = audit_frequency(&o, 1_000_000, 0.99, &mut rng).unwrap();
    assert!(
        a.epsilon_lower_bound > 0.9 && a.epsilon_lower_bound <= 1.0,
        "{a:?}"
    );
}

/// OUE at a larger domain: the auditor finds the two-bit event and is tight.
#[test]
fn oue_audit_is_tight() {
    let mut rng = NoiseRng::seed_from_u64(2);
    let o = AnyFrequencyOracle::new(FrequencyKind::Oue, 1.0, 64).unwrap();
    let a = audit_frequency(&o, 300_000, 0.99, &mut rng).unwrap();
    assert!(
        a.epsilon_lower_bound > 0.93 && a.epsilon_lower_bound <= 1.0,
        "{a:?}"
    );
    // The two one-bit events are mirror images (swap the inputs), equally tight;
    // which one the pilot run ranks first depends on the seed and the generator.
    assert!(
        a.event == "supports 0 only" || a.event == "supports 1 only",
        "{a:?}"
    );
}

/// A deliberately broken mechanism is caught: GRR built for eps = 2 but
/// claimed as eps = 1 must produce a bound above 1.
#[test]
fn the_auditor_catches_an_understated_epsilon() {
    let mut rng = NoiseRng::seed_from_u64(3);
    let o = AnyFrequencyOracle::new(FrequencyKind::Grr, 2.0, 2).unwrap();
    let a = audit_frequency(&o, 200_000, 0.99, &mut rng).unwrap();
    assert!(a.epsilon_lower_bound > 1.0, "{a:?}");
}

#[test]
fn bad_audit_arguments_are_errors() {
    let mut rng = NoiseRng::seed_from_u64(4);
    let o = AnyFrequencyOracle::new(FrequencyKind::Grr, 1.0, 2).unwrap();
    assert!(audit_frequency(&o, 10, 0.99, &mut rng).is_err());
    assert!(audit_frequency(&o, 1000, 1.0, &mut rng).is_err());
}
