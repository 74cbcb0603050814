//! The privacy auditor run over the batch kernels: for every mechanism, the outputs
//! of `perturb_repeated` must not demonstrate more privacy loss than the claim, and
//! must demonstrate about as much as the scalar path does (the kernels realize the
//! same thresholds, so tight mechanisms stay tight).
//!
//! Bounds are at 99.99% confidence, so a correct kernel fails a given seed with
//! probability at most 1e-4 per audit.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use hush_ldp::{AnyFrequencyOracle, AnyNumericMechanism, FrequencyKind, NoiseRng, NumericKind};
use hush_stats::audit::{SamplingPath, audit_frequency_via, audit_numeric_via};
use hush_stats::simulate::simulation_range;
use rand::SeedableRng;

const CONFIDENCE: f64 = 0.9999;

#[test]
fn no_frequency_batch_kernel_exceeds_its_claim() {
    let mut rng = NoiseRng::seed_from_u64(0xa0d1_7001);
    for kind in FrequencyKind::ALL {
        for (eps, d) in [(0.5, 2), (2.0, 16), (2.0, 100)] {
            let o = AnyFrequencyOracle::new(kind, eps, d).unwrap();
            let a = audit_frequency_via(&o, 100_000, CONFIDENCE, SamplingPath::Batch, &mut rng)
                .unwrap();
            assert!(
                a.epsilon_lower_bound <= a.claimed_epsilon,
                "{kind} eps={eps} d={d}: {a:?}"
            );
            // As in the scalar audit: 1e5 samples at 99.99% demonstrate at least 70%
            // of the claim on every oracle (GRR at d = 100 has the rarest event,
            // probability about 0.07 at eps = 2), except dBitFlipPM beyond d = 2,
            // whose whole loss shows only when both differing positions are sampled.
            if kind != FrequencyKind::DBitFlipPm || d == 2 {
                assert!(
                    a.epsilon_lower_bound > 0.7 * eps,
                    "{kind} eps={eps} d={d}: {a:?}"
                );
            }
        }
    }
}

#[test]
fn no_numeric_batch_kernel_exceeds_its_claim() {
    let mut rng = NoiseRng::seed_from_u64(0xa0d1_7002);
    for kind in NumericKind::ALL {
        for eps in [0.5, 2.0] {
            let m = AnyNumericMechanism::new(kind, eps, simulation_range(kind)).unwrap();
            let a =
                audit_numeric_via(&m, 200_000, CONFIDENCE, SamplingPath::Batch, &mut rng).unwrap();
            assert!(
                a.epsilon_lower_bound <= a.claimed_epsilon,
                "{kind} eps={eps}: {a:?}"
            );
            assert!(a.epsilon_lower_bound > 0.0, "{kind} eps={eps}: {a:?}");
        }
    }
}
