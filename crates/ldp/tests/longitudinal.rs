//! The two-layer (longitudinal) mechanisms: the epsilons they state against the
//! losses their realized thresholds imply, exactly which argument pairs they
//! accept, the output law of one fresh report (scalar and batch) against the
//! composed probabilities, and the law of one device's repeated reports: the
//! instantaneous channel applied to a single permanent response.
//!
//! Tolerances are those of `distribution.rs` (chi-square at p >= 1e-4 per test,
//! binomial z-bounds with Bonferroni over each family) and `validation.rs`
//! (stated epsilons within 1e-11 above and 1e-6 below the request).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_binomial, assert_fits, bonferroni_z};
use hush_ldp::{
    AnyFrequencyOracle, AnyPermanent, DBitFlipPm, FrequencyBatch, FrequencyKind, FrequencyOracle,
    FrequencyOutput, GridPoint, LGrr, LOneBitMean, LUnary, LUnaryVariant, LdpError, MAX_EPSILON,
    NoiseRng, NumericBatch, NumericMechanism, PackedBits, Range, TwoLayer,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use rand::SeedableRng;

const N: u64 = common::N as u64;
const OVER: f64 = 1e-11;
const UNDER: f64 = 1e-6;

/// (epsilon_perm, epsilon_1) pairs from very private to near the cap.
const PAIRS: [(f64, f64); 6] = [
    (0.02, 0.01),
    (1.0, 0.5),
    (2.0, 1.0),
    (4.0, 2.0),
    (8.0, 2.0),
    (20.0, 10.0),
];

fn check_stated(label: &str, requested: f64, stated: f64, realized: f64) {
    assert!(
        stated <= requested * (1.0 + OVER),
        "{label}: stated {stated} exceeds requested {requested}"
    );
    assert!(
        stated >= requested * (1.0 - UNDER),
        "{label}: stated {stated} is far below requested {requested}"
    );
    assert!(
        realized <= stated * (1.0 + 1e-12) + 1e-15,
        "{label}: realized loss {realized} exceeds stated {stated}"
    );
}

/// `(P, Q)` of two layers, recomputed here from the layers' public thresholds.
fn composed(p1: f64, q1: f64, p2: f64, q2: f64) -> (f64, f64) {
    (p1 * p2 + (1.0 - p1) * q2, q1 * p2 + (1.0 - q1) * q2)
}

#[test]
fn two_layer_oracles_state_both_requested_epsilons() {
    for (perm, one) in PAIRS {
        for d in [2u64, 9, 15, 1024] {
            let g = LGrr::new(perm, one, d).unwrap();
            let (pl, il) = (g.permanent_layer(), g.instantaneous_layer());
            let (p, q) = composed(
                pl.keep_probability(),
                pl.other_probability(),
                il.keep_probability(),
                il.other_probability(),
            );
            let label = format!("L-GRR {perm}/{one} d={d}");
            check_stated(&label, one, g.epsilon(), (p / q).ln());
            check_stated(&label, perm, g.epsilon_perm(), 0.0);

            for variant in [LUnaryVariant::Sue, LUnaryVariant::Oue, LUnaryVariant::Osue] {
                let u = LUnary::new(variant, perm, one, d).unwrap();
                let (one_t, zero_t) = u.instantaneous_thresholds();
                let pl = u.permanent_layer();
                let (p, q) = composed(
                    pl.p_threshold().prob(),
                    pl.q_threshold().prob(),
                    one_t.prob(),
                    zero_t.prob(),
                );
                let realized = (p * (1.0 - q) / ((1.0 - p) * q)).ln();
                let label = format!("{variant} {perm}/{one} d={d}");
                check_stated(&label, one, u.epsilon(), realized);
                check_stated(&label, perm, u.epsilon_perm(), 0.0);
            }

            let b = DBitFlipPm::new(perm, one, d, 2.min(d as u32)).unwrap();
            let h = b.permanent_layer().p_threshold().prob();
            let k = b.keep_threshold().unwrap().prob();
            let bit = h * k + (1.0 - h) * (1.0 - k);
            let label = format!("dBitFlipPM {perm}/{one} d={d}");
            check_stated(&label, one, b.epsilon(), 2.0 * (bit / (1.0 - bit)).ln());
        }
        for range in [Range::UNIT, Range::new(-5.0, 3e6).unwrap()] {
            let m = LOneBitMean::new(perm, one, range).unwrap();
            // The composed bit at the two ends of the range, recomputed from the thresholds.
            let k = m.keep_threshold().prob();
            let high = 1.0 / (1.0 + (-m.epsilon_perm()).exp());
            let low = 1.0 - high;
            let (top, bottom) = (high * k + low * (1.0 - k), low * k + high * (1.0 - k));
            let label = format!("L-1BitMean {perm}/{one}");
            // high is recomputed from the stated epsilon_perm (rounded up), so it
            // errs on the generous side: the comparison is conservative.
            check_stated(&label, one, m.epsilon(), (top / bottom).ln() * (1.0 - 1e-9));
            check_stated(&label, perm, m.epsilon_perm(), 0.0);
        }
    }
}

fn config() -> Config {
    Config {
        cases: 256,
        rng_seed: RngSeed::Fixed(0x4855_5348_4c44_5002),
        failure_persistence: None,
        ..Config::default()
    }
}

fn epsilon() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => (1e-3f64.ln()..=MAX_EPSILON.ln()).prop_map(|l| l.exp().clamp(1e-3, MAX_EPSILON)),
        1 => prop::sample::select(vec![f64::NAN, 0.0, -1.0, 21.0, f64::INFINITY]),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Builds iff both epsilons are valid and epsilon_1 < epsilon_perm; the only
    /// other refusal is a pair so close that the fresh layer rounds away.
    #[test]
    fn two_layer_mechanisms_accept_exactly_valid_pairs(
        perm in epsilon(),
        one in epsilon(),
        value in 0u32..40,
        seed in any::<u64>(),
    ) {
        let valid = |e: f64| e.is_finite() && e > 0.0 && e <= MAX_EPSILON;
        let mut rng = NoiseRng::seed_from_u64(seed);
        for kind in FrequencyKind::ALL.into_iter().filter(|k| k.is_two_layer()) {
            match AnyFrequencyOracle::two_layer(kind, perm, one, 40) {
                Ok(m) => {
                    prop_assert!(valid(perm) && valid(one) && one < perm, "{kind} accepted {perm}/{one}");
                    let out = m.perturb(value, &mut rng).unwrap();
                    prop_assert!(m.is_valid_output(&out));
                    let p = m.permanent(value, &mut rng).unwrap();
                    let out = m.instantaneous(&p, &mut rng).unwrap();
                    prop_assert!(m.is_valid_output(&out));
                    prop_assert!(m.epsilon() <= one * (1.0 + OVER));
                }
                Err(LdpError::Epsilon { .. }) => prop_assert!(!valid(perm) || !valid(one)),
                Err(LdpError::Layers { .. } | LdpError::Unrealizable(_)) => {
                    prop_assert!(valid(perm) && valid(one));
                    // L-OUE keeps a permanent 1 with exactly 1/2, so even with no
                    // false ones its report reaches at most ln((2 - q1)/(3 q1)).
                    let q1 = 1.0 / (perm.exp() + 1.0);
                    let limit = if kind == FrequencyKind::LOue {
                        perm.min(((2.0 - q1) / (3.0 * q1)).ln())
                    } else {
                        perm
                    };
                    prop_assert!(one >= limit * (1.0 - 1e-3), "{kind} refused {perm}/{one}");
                }
                Err(e) => prop_assert!(false, "{kind} {perm}/{one}: {e}"),
            }
        }
        if valid(perm) && valid(one) && one < perm * (1.0 - 1e-3) {
            let m = LOneBitMean::new(perm, one, Range::UNIT).unwrap();
            let point = m.perturb(0.3, &mut rng).unwrap();
            prop_assert!(m.is_valid_output(point));
        }
    }
}

/// One fresh report per draw: L-GRR's histogram is P at the true value and Q elsewhere.
fn lgrr_histogram(m: &LGrr, outputs: impl Iterator<Item = u32>) -> Vec<u64> {
    let mut counts = vec![0u64; m.domain() as usize];
    outputs.for_each(|y| counts[y as usize] += 1);
    counts
}

fn lgrr_probabilities(m: &LGrr, v: u32) -> Vec<f64> {
    let s = m.support_probabilities();
    (0..m.domain())
        .map(|y| if y == v { s.p } else { s.q })
        .collect()
}

#[test]
fn fresh_lgrr_reports_follow_the_composed_law() {
    let mut rng = NoiseRng::seed_from_u64(0x4c47_5252);
    for (perm, one, d) in [(4.0, 2.0, 15u64), (1.0, 0.5, 4), (8.0, 2.0, 33)] {
        let m = LGrr::new(perm, one, d).unwrap();
        let v = 2;
        let scalar = (0..N).map(|_| m.perturb(v, &mut rng).unwrap());
        assert_fits(
            &format!("L-GRR scalar {perm}/{one}"),
            &lgrr_histogram(&m, scalar),
            &lgrr_probabilities(&m, v),
        );
        let mut out = vec![0u32; N as usize];
        m.perturb_repeated(v, &mut out, &mut rng).unwrap();
        assert_fits(
            &format!("L-GRR batch {perm}/{one}"),
            &lgrr_histogram(&m, out.into_iter()),
            &lgrr_probabilities(&m, v),
        );
    }
}

/// Per-position frequencies of ones in unary reports of `v`: the composed P at
/// `v`, Q elsewhere, each a binomial count (Bonferroni over all positions).
fn check_unary_bits(label: &str, reports: &[PackedBits], v: u32, p: f64, q: f64) {
    let d = reports[0].len();
    let z = bonferroni_z(d as usize);
    for i in 0..d {
        let ones = reports.iter().filter(|r| r.get(i)).count() as u64;
        let expected = if i == v { p } else { q };
        assert_binomial(
            &format!("{label} bit {i}"),
            ones,
            reports.len() as u64,
            expected,
            z,
        );
    }
}

#[test]
fn fresh_unary_reports_follow_the_composed_law() {
    let mut rng = NoiseRng::seed_from_u64(0x4c55_4e41);
    for variant in [LUnaryVariant::Sue, LUnaryVariant::Oue, LUnaryVariant::Osue] {
        let m = LUnary::new(variant, 4.0, 2.0, 70).unwrap();
        let s = m.support_probabilities();
        let v = 66;
        let scalar: Vec<PackedBits> = (0..N / 4)
            .map(|_| m.perturb(v, &mut rng).unwrap())
            .collect();
        check_unary_bits(&format!("{variant} scalar"), &scalar, v, s.p, s.q);
        let per = m.slots_per_report();
        let mut out = vec![0u64; (N / 4) as usize * per];
        m.perturb_repeated(v, &mut out, &mut rng).unwrap();
        let batch: Vec<PackedBits> = out
            .chunks(per)
            .map(|w| PackedBits::from_words(w.to_vec(), 70).expect("padding lanes stay zero"))
            .collect();
        check_unary_bits(&format!("{variant} batch"), &batch, v, s.p, s.q);
    }
}

#[test]
fn fresh_dbitflip_reports_reveal_the_sampled_positions_only() {
    let mut rng = NoiseRng::seed_from_u64(0x4442_4650);
    let m = DBitFlipPm::new(4.0, 2.0, 10, 3).unwrap();
    let s = m.support_probabilities();
    let reports: Vec<PackedBits> = (0..N / 4)
        .map(|_| m.perturb(4, &mut rng).unwrap())
        .collect();
    assert!(reports.iter().all(|r| r.count_ones() <= 3));
    check_unary_bits("dBitFlipPM scalar", &reports, 4, s.p, s.q);
}

#[test]
fn fresh_onebit_reports_follow_the_linear_law() {
    let mut rng = NoiseRng::seed_from_u64(0x4c31_4249);
    let m = LOneBitMean::new(4.0, 2.0, Range::new(0.0, 100.0).unwrap()).unwrap();
    let affine = m.grid(0).unwrap();
    let xs = [0.0, 7.0, 50.0, 93.3, 100.0];
    let z = bonferroni_z(2 * xs.len());
    for x in xs {
        // The decoded value of a bit is affine; its expectation is x, so P(1) = (x - offset)/scale.
        let p = (x - affine.offset) / affine.scale;
        let ones = (0..N)
            .filter(|_| m.perturb(x, &mut rng).unwrap().index == 1)
            .count() as u64;
        assert_binomial(&format!("scalar x={x}"), ones, N, p, z);
        let mut out = vec![
            GridPoint {
                branch: 0,
                index: 0
            };
            N as usize
        ];
        m.perturb_repeated(x, &mut out, &mut rng).unwrap();
        let ones = out.iter().filter(|g| g.index == 1).count() as u64;
        assert_binomial(&format!("batch x={x}"), ones, N, p, z);
    }
}

/// One device, one unchanged value, many periods: one permanent response, and
/// each report is the instantaneous channel applied to it. The reports vary,
/// and their histogram fits the instantaneous layer alone, given the permanent
/// response (not the composed law a fresh device would show).
#[test]
fn a_devices_reports_of_one_value_are_fresh_draws_around_one_permanent_response() {
    let mut rng = NoiseRng::seed_from_u64(0x5341_4d45);
    let m = LGrr::new(4.0, 2.0, 9).unwrap();
    let b = m.permanent(5, &mut rng).unwrap();
    let reports: Vec<u32> = (0..N)
        .map(|_| m.instantaneous(&b, &mut rng).unwrap())
        .collect();
    let inst = m.instantaneous_layer();
    let probs: Vec<f64> = (0..9)
        .map(|y| {
            if y == b {
                inst.keep_probability()
            } else {
                inst.other_probability()
            }
        })
        .collect();
    assert_fits(
        "L-GRR given its permanent value",
        &lgrr_histogram(&m, reports.iter().copied()),
        &probs,
    );

    let any = AnyFrequencyOracle::two_layer(FrequencyKind::LOsue, 4.0, 2.0, 12).unwrap();
    let AnyPermanent::Bits(bits) = any.permanent(3, &mut rng).unwrap() else {
        panic!("a unary permanent response is bits");
    };
    let AnyFrequencyOracle::LUnary(u) = &any else {
        unreachable!()
    };
    let (one, zero) = u.instantaneous_thresholds();
    let z = bonferroni_z(12);
    let permanent = AnyPermanent::Bits(bits.clone());
    let reports: Vec<PackedBits> = (0..N / 4)
        .map(|_| match any.instantaneous(&permanent, &mut rng).unwrap() {
            FrequencyOutput::Bits(b) => b,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(
        reports.windows(2).any(|w| w[0] != w[1]),
        "reports must not repeat verbatim"
    );
    for i in 0..12 {
        let ones = reports.iter().filter(|r| r.get(i)).count() as u64;
        let p = if bits.get(i) { one.prob() } else { zero.prob() };
        assert_binomial(
            &format!("L-OSUE bit {i} given permanent"),
            ones,
            N / 4,
            p,
            z,
        );
    }
}
