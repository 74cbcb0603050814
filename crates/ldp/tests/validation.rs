//! Validation tests for hush-ldp: realized epsilons against the requested ones, and property
//! tests that constructors accept exactly the valid arguments and perturb never panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hush_ldp::{
    AnyFrequencyOracle, AnyNumericMechanism, DiscreteLaplace, Duchi, FrequencyKind,
    FrequencyOracle, FrequencyOutput, GridPoint, Grr, HadamardResponse, Hybrid, LdpError,
    MAX_DOMAIN, MAX_EPSILON, NoiseRng, NumericKind, NumericMechanism, Olh, OneBitMean, PackedBits,
    Piecewise, Range, UnaryEncoding,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use rand::SeedableRng;

// ----- realized epsilon -----

/// Epsilons the realized-epsilon tests cover, from very private to the cap.
const EPSILONS: [f64; 5] = [0.01, 0.1, 1.0, 5.0, 20.0];

/// How far a stated epsilon may exceed the requested one, relative.
///
/// The mechanisms round each threshold in the private direction and compute the
/// smaller side of every split in floating point (`Threshold::floor_split`), so the
/// only excess is the `round_up_loss` margin of 1e-12 plus a few ulps of `ln`.
/// A formula error would show at the 1e-3 level or above.
const OVER: f64 = 1e-11;

/// How far a stated epsilon may fall below the requested one, relative: the discrete
/// Laplace builds its table with a margin of 1e-9 (up to 1e-6 for tiny epsilons) so that
/// rounding cannot exceed epsilon; every other mechanism is within 1e-11. Falling further
/// below would mean paying noise for privacy that was not asked for.
const UNDER: f64 = 1e-6;

/// Checks `stated` against `requested`, and that it covers `realized`, the privacy loss
/// recomputed here from the mechanism's exact output probabilities.
///
/// `realized` is evaluated in f64 by a different route (different operation order) than
/// the mechanism's own computation, so it may exceed the stated value by a few ulps of
/// the loss; 1e-12 relative plus 1e-15 absolute covers that with room to spare, and an
/// understated epsilon would differ by orders of magnitude more.
fn check_epsilon(label: &str, requested: f64, stated: f64, realized: f64) {
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

#[test]
fn frequency_oracles_state_the_requested_epsilon() {
    for eps in EPSILONS {
        for domain in [2u64, 3, 16, 1000, u64::from(MAX_DOMAIN)] {
            let grr = Grr::new(eps, domain).unwrap();
            let realized = (grr.keep_probability() / grr.other_probability()).ln();
            check_epsilon(
                &format!("GRR eps={eps} d={domain}"),
                eps,
                grr.epsilon(),
                realized,
            );

            for (name, ue) in [
                ("SUE", UnaryEncoding::symmetric(eps, domain).unwrap()),
                ("OUE", UnaryEncoding::optimized(eps, domain).unwrap()),
            ] {
                let (p, q) = (ue.p_threshold(), ue.q_threshold());
                let realized =
                    (p.prob() / p.complement_prob()).ln() + (q.complement_prob() / q.prob()).ln();
                check_epsilon(
                    &format!("{name} eps={eps} d={domain}"),
                    eps,
                    ue.epsilon(),
                    realized,
                );
            }

            let olh = Olh::new(eps, domain).unwrap();
            let keep = olh.keep_probability();
            let other = olh.keep_threshold().complement_prob() / f64::from(olh.hash_range() - 1);
            let realized = (keep / other).ln();
            check_epsilon(
                &format!("OLH eps={eps} d={domain}"),
                eps,
                olh.epsilon(),
                realized,
            );

            let hr = HadamardResponse::new(eps, domain).unwrap();
            let keep = hr.keep_probability();
            let realized = (keep / hr.keep_threshold().complement_prob()).ln();
            check_epsilon(
                &format!("HR eps={eps} d={domain}"),
                eps,
                hr.epsilon(),
                realized,
            );

            // The by-name wrappers state what the concrete oracles state. Two-layer
            // oracles take two epsilons: tests/longitudinal.rs covers them.
            for kind in FrequencyKind::ALL.into_iter().filter(|k| !k.is_two_layer()) {
                let any = AnyFrequencyOracle::new(kind, eps, domain).unwrap();
                assert_eq!(any.kind(), kind);
                check_epsilon(
                    &format!("{kind} eps={eps} d={domain}"),
                    eps,
                    any.epsilon(),
                    0.0,
                );
            }
        }
    }
}

/// Ranges the numeric tests cover: the papers' ranges, a wide asymmetric one, a tiny one.
fn ranges() -> [Range; 4] {
    [
        Range::SYMMETRIC_UNIT,
        Range::UNIT,
        Range::new(-1e6, 3e9).unwrap(),
        Range::new(10.0, 10.001).unwrap(),
    ]
}

/// The realized loss of a binary mechanism whose bit is 1 with probability `high(x)`:
/// the worst ratio over the two outputs between the ends of the range.
fn binary_loss(range: Range, high: impl Fn(f64) -> f64) -> f64 {
    let (p_max, p_min) = (high(range.hi()), high(range.lo()));
    (p_max / p_min)
        .ln()
        .max(((1.0 - p_min) / (1.0 - p_max)).ln())
}

/// The realized loss of the discrete Laplace: the worst ratio `Pr[Z = y] / Pr[Z = y - m]`
/// between centers `m` steps apart.
///
/// The weights repeat, scaled, with the period of the CDF table, whose length is
/// `min(ceil(7 / per_step), 8192)` (`per_step = eps / m`), so outputs covering one period
/// plus a few steps on either side of both centers reach the maximum; going further would
/// only underflow the probabilities at coarse grids.
fn laplace_loss(m: &DiscreteLaplace, eps: f64) -> f64 {
    let steps = i64::from(m.steps());
    let per_step = eps / f64::from(m.steps());
    let period = ((7.0 / per_step).ceil() as i64).min(8192);
    let reach = period + 8;
    (-reach..=steps + reach)
        .map(|y| (m.noise_probability(y) / m.noise_probability(y - steps)).ln())
        .fold(f64::MIN, f64::max)
}

#[test]
fn numeric_mechanisms_state_the_requested_epsilon() {
    for eps in EPSILONS {
        for range in ranges() {
            let label = |name: &str| format!("{name} eps={eps} range={range:?}");
            let duchi = Duchi::new(eps, range).unwrap();
            let realized = binary_loss(range, |x| duchi.probability_of_high(x).unwrap());
            check_epsilon(&label("Duchi"), eps, duchi.epsilon(), realized);

            let one_bit = OneBitMean::new(eps, range).unwrap();
            let realized = binary_loss(range, |x| one_bit.probability_of_one(x).unwrap());
            check_epsilon(&label("1BitMean"), eps, one_bit.epsilon(), realized);

            for cells in [16, 64, Piecewise::DEFAULT_CELLS, 1 << 16] {
                let pm = Piecewise::with_cells(eps, range, cells).unwrap();
                let (p_hi, p_lo) = pm.cell_probabilities();
                let realized = (p_hi / p_lo).ln();
                check_epsilon(
                    &label(&format!("Piecewise/{cells}")),
                    eps,
                    pm.epsilon(),
                    realized,
                );
            }

            let hm = Hybrid::new(eps, range).unwrap();
            let (p_hi, p_lo) = hm.piecewise().cell_probabilities();
            let realized = (p_hi / p_lo).ln().max(binary_loss(range, |x| {
                hm.duchi().probability_of_high(x).unwrap()
            }));
            check_epsilon(&label("Hybrid"), eps, hm.epsilon(), realized);

            for steps in [1, 4, DiscreteLaplace::DEFAULT_STEPS, 1 << 16] {
                let lap = DiscreteLaplace::with_steps(eps, range, steps).unwrap();
                let realized = laplace_loss(&lap, eps);
                check_epsilon(
                    &label(&format!("Laplace/{steps}")),
                    eps,
                    lap.epsilon(),
                    realized,
                );
            }

            for kind in NumericKind::ALL.into_iter().filter(|k| !k.is_two_layer()) {
                let any = AnyNumericMechanism::new(kind, eps, range).unwrap();
                assert_eq!(any.kind(), kind);
                check_epsilon(&label(kind.name()), eps, any.epsilon(), 0.0);
            }
        }
    }
}

// ----- property tests: argument validation and perturb on arbitrary inputs -----

/// Below this epsilon a valid mechanism may still refuse with `LdpError::Unrealizable`:
/// the probabilities it needs get within a few 2^-64 steps of each other (every oracle
/// refuses once `e^eps` rounds to 1, near eps = 1e-16; the discrete Laplace's table
/// below about 1e-4 at fine grids). At and above it every valid argument must build.
const REALIZABLE_FROM: f64 = 1e-3;

/// Deterministic proptest runs: a fixed seed and no regression files.
fn config() -> Config {
    Config {
        cases: 256,
        rng_seed: RngSeed::Fixed(0x4855_5348_4c44_5001),
        failure_persistence: None,
        ..Config::default()
    }
}

fn is_valid_epsilon(eps: f64) -> bool {
    eps.is_finite() && eps > 0.0 && eps <= MAX_EPSILON
}

/// Epsilon arguments: mostly valid (log-uniform over `[1e-3, 20]`, so small epsilons get
/// as much weight as large ones), plus NaN, infinities, zero, negatives, subnormal, the
/// cap and the next f64 above it, and arbitrary bit patterns.
fn epsilon_arg() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => (REALIZABLE_FROM.ln()..=MAX_EPSILON.ln())
            .prop_map(|l| l.exp().clamp(REALIZABLE_FROM, MAX_EPSILON)),
        2 => prop::sample::select(vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            -0.0,
            -1.0,
            -MAX_EPSILON,
            5e-324,
            f64::MIN_POSITIVE,
            1e-300,
            1e-16,
            1e-9,
            MAX_EPSILON,
            f64::from_bits(MAX_EPSILON.to_bits() + 1),
            21.0,
            1e300,
            f64::MAX,
        ]),
        1 => 0.0..REALIZABLE_FROM,
        1 => any::<f64>(),
    ]
}

/// Domain arguments: small valid ones, the edges of `[2, 2^20]`, and out-of-range values.
fn domain_arg() -> impl Strategy<Value = u64> {
    let max = u64::from(MAX_DOMAIN);
    prop_oneof![
        4 => 2u64..=300,
        2 => prop::sample::select(vec![0, 1, 2, 3, max - 1, max, max + 1, 1 << 32, u64::MAX]),
        1 => any::<u64>(),
    ]
}

/// Range bounds: ordinary numbers, zeros, huge and non-finite values, arbitrary bits.
fn bound_arg() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => -1e6..1e6,
        2 => prop::sample::select(vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            -f64::MAX,
            8e307,
            -8e307,
            0.0,
            -0.0,
            1.0,
            -1.0,
            5e-324,
        ]),
        1 => any::<f64>(),
    ]
}

/// Numeric inputs: ordinary, huge, tiny and non-finite values.
fn input_arg() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => -1e7..1e7,
        2 => prop::sample::select(vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            -f64::MAX,
            0.0,
            -0.0,
            5e-324,
            1.0,
            -1.0,
        ]),
        1 => any::<f64>(),
    ]
}

/// A grid resolution: the valid band `[min, max]`, its edges and far outside.
fn resolution_arg(min: u32, max: u32) -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => min..=max.min(min + 2048),
        2 => prop::sample::select(vec![0, 1, min.saturating_sub(1), min, max, max + 1, u32::MAX]),
        1 => any::<u32>(),
    ]
}

/// Checks a constructor's result for arguments whose only possible errors are an invalid
/// `eps` or the invalid other argument described by `other_error` (checked second).
fn check_built<T>(
    result: Result<T, LdpError>,
    eps: f64,
    other_error: Option<LdpError>,
) -> Result<Option<T>, TestCaseError> {
    match result {
        Ok(m) => {
            prop_assert!(is_valid_epsilon(eps), "accepted epsilon {eps}");
            prop_assert!(other_error.is_none(), "accepted, expected {other_error:?}");
            Ok(Some(m))
        }
        Err(LdpError::Epsilon { value, max }) => {
            prop_assert!(!is_valid_epsilon(eps), "rejected valid epsilon {eps}");
            prop_assert_eq!(value.to_bits(), eps.to_bits());
            prop_assert_eq!(max, MAX_EPSILON);
            Ok(None)
        }
        Err(LdpError::Unrealizable(why)) => {
            prop_assert!(is_valid_epsilon(eps) && other_error.is_none());
            prop_assert!(
                eps < REALIZABLE_FROM,
                "valid epsilon {eps} refused as unrealizable: {why}"
            );
            Ok(None)
        }
        Err(e) => {
            prop_assert!(
                is_valid_epsilon(eps),
                "{e} before the epsilon check ({eps})"
            );
            prop_assert_eq!(Some(e), other_error);
            Ok(None)
        }
    }
}

/// Perturbs in- and out-of-domain values with a built oracle and checks every output.
fn exercise_oracle(m: &AnyFrequencyOracle, value: u32, seed: u64) -> Result<(), TestCaseError> {
    let d = m.domain();
    let mut rng = NoiseRng::seed_from_u64(seed);
    // Unary encodings draw d bits and the support scans of OLH and HR walk the domain:
    // keep those to moderate domains so the property stays fast.
    let moderate = d <= 4096;
    let cheap = moderate || !matches!(m, AnyFrequencyOracle::Unary(_));
    for v in [value, value % d, 0, d - 1, d, u32::MAX] {
        if v >= d {
            prop_assert_eq!(
                m.perturb(v, &mut rng),
                Err(LdpError::ValueOutOfDomain {
                    value: u64::from(v),
                    domain: d
                })
            );
        } else if cheap {
            let out = m.perturb(v, &mut rng);
            prop_assert!(out.is_ok(), "perturb({v}) failed: {out:?}");
            let out = out.unwrap();
            prop_assert!(m.is_valid_output(&out), "invalid output {out} for {v}");
            if moderate {
                m.for_each_supported(&out, |u| assert!(u < d, "supports {u} >= {d}"));
            }
        }
    }
    // Outputs of another oracle's shape are never valid.
    let foreign = match m {
        AnyFrequencyOracle::Unary(_) => FrequencyOutput::Value(0),
        _ => FrequencyOutput::Bits(PackedBits::zeros(d)),
    };
    prop_assert!(!m.is_valid_output(&foreign));
    Ok(())
}

/// Perturbs `x` (and the range's ends) with a built mechanism and checks every output.
fn exercise_numeric<M: NumericMechanism>(m: &M, x: f64, seed: u64) -> Result<(), TestCaseError> {
    let mut rng = NoiseRng::seed_from_u64(seed);
    let range = m.range();
    for input in [x, range.lo(), range.hi()] {
        match m.perturb(input, &mut rng) {
            Ok(point) => {
                prop_assert!(input.is_finite(), "accepted non-finite {input}");
                prop_assert!(m.is_valid_output(point), "invalid {point:?} for {input}");
                // Decoding a valid point never panics (it may overflow on extreme ranges).
                let _ = m.decode(point);
            }
            Err(LdpError::NonFiniteInput(v)) => {
                prop_assert!(!input.is_finite(), "rejected finite {input}");
                prop_assert_eq!(v.to_bits(), input.to_bits());
            }
            Err(e) => prop_assert!(false, "perturb({input}) failed: {e}"),
        }
    }
    let foreign = GridPoint {
        branch: 2,
        index: 0,
    };
    prop_assert!(!m.is_valid_output(foreign), "accepted {foreign:?}");
    prop_assert!(m.grid(2).is_none());
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn frequency_oracles_accept_exactly_valid_arguments(
        eps in epsilon_arg(),
        domain in domain_arg(),
        value in any::<u32>(),
        seed in any::<u64>(),
    ) {
        let domain_error = (!(2..=u64::from(MAX_DOMAIN)).contains(&domain)).then_some(
            LdpError::Domain { value: domain, max: MAX_DOMAIN },
        );
        // Two-layer oracles take two epsilons: tests/longitudinal.rs covers them.
        for kind in FrequencyKind::ALL.into_iter().filter(|k| !k.is_two_layer()) {
            let built = check_built(AnyFrequencyOracle::new(kind, eps, domain), eps, domain_error.clone())?;
            if let Some(m) = built {
                prop_assert_eq!(m.kind(), kind);
                prop_assert_eq!(u64::from(m.domain()), domain);
                exercise_oracle(&m, value, seed)?;
            }
        }
    }

    #[test]
    fn ranges_accept_exactly_finite_increasing_bounds(lo in bound_arg(), hi in bound_arg()) {
        let valid = lo.is_finite() && hi.is_finite() && lo < hi && (hi - lo).is_finite();
        match Range::new(lo, hi) {
            Ok(r) => {
                prop_assert!(valid, "accepted [{lo}, {hi}]");
                prop_assert_eq!((r.lo(), r.hi()), (lo, hi));
            }
            Err(LdpError::Range { lo: l, hi: h }) => {
                prop_assert!(!valid, "rejected [{lo}, {hi}]");
                prop_assert_eq!((l.to_bits(), h.to_bits()), (lo.to_bits(), hi.to_bits()));
            }
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }

    #[test]
    fn numeric_mechanisms_accept_exactly_valid_arguments(
        eps in epsilon_arg(),
        lo in bound_arg(),
        hi in bound_arg(),
        x in input_arg(),
        seed in any::<u64>(),
    ) {
        let Ok(range) = Range::new(lo, hi) else {
            return Ok(());
        };
        for kind in NumericKind::ALL.into_iter().filter(|k| !k.is_two_layer()) {
            if let Some(m) = check_built(AnyNumericMechanism::new(kind, eps, range), eps, None)? {
                prop_assert_eq!(m.kind(), kind);
                prop_assert_eq!(m.range(), range);
                exercise_numeric(&m, x, seed)?;
            }
        }
    }

    #[test]
    fn laplace_accepts_exactly_valid_steps(
        eps in epsilon_arg(),
        steps in resolution_arg(1, 1 << 16),
        x in input_arg(),
        seed in any::<u64>(),
    ) {
        let grid_error = (!(1..=1 << 16).contains(&steps)).then_some(LdpError::Grid {
            value: u64::from(steps),
            min: 1,
            max: 1 << 16,
        });
        let built = DiscreteLaplace::with_steps(eps, Range::SYMMETRIC_UNIT, steps);
        if let Some(m) = check_built(built, eps, grid_error)? {
            prop_assert_eq!(m.steps(), steps);
            exercise_numeric(&m, x, seed)?;
        }
    }

    #[test]
    fn piecewise_accepts_exactly_valid_cells(
        eps in epsilon_arg(),
        cells in resolution_arg(16, 1 << 16),
        x in input_arg(),
        seed in any::<u64>(),
    ) {
        let grid_error = (!(16..=1 << 16).contains(&cells)).then_some(LdpError::Grid {
            value: u64::from(cells),
            min: 16,
            max: 1 << 16,
        });
        let range = Range::new(-3.0, 1e4).unwrap();
        if let Some(m) = check_built(Piecewise::with_cells(eps, range, cells), eps, grid_error)? {
            prop_assert_eq!(m.cells(), cells);
            prop_assert!(m.window() >= 1 && m.window() < cells);
            exercise_numeric(&m, x, seed)?;
        }
    }
}

#[test]
fn out_of_domain_values_and_non_finite_inputs_are_rejected() {
    let mut rng = NoiseRng::seed_from_u64(0x5641_4c01);
    for kind in FrequencyKind::ALL {
        let m = AnyFrequencyOracle::new(kind, 1.0, 10).unwrap();
        for v in [10, 11, u32::MAX] {
            assert_eq!(
                m.perturb(v, &mut rng),
                Err(LdpError::ValueOutOfDomain {
                    value: u64::from(v),
                    domain: 10
                }),
                "{kind} value {v}"
            );
        }
        assert!(m.perturb(9, &mut rng).is_ok(), "{kind}");
    }
    for kind in NumericKind::ALL {
        let m = AnyNumericMechanism::new(kind, 1.0, Range::UNIT).unwrap();
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            match m.perturb(x, &mut rng) {
                Err(LdpError::NonFiniteInput(v)) => assert_eq!(v.to_bits(), x.to_bits()),
                other => panic!("{kind} perturb({x}) gave {other:?}"),
            }
            assert!(m.variance_at(x).is_nan(), "{kind} variance_at({x})");
        }
        for x in [f64::MAX, -f64::MAX, -0.0, 5e-324] {
            let point = m.perturb(x, &mut rng).unwrap();
            assert!(m.is_valid_output(point), "{kind} perturb({x}) = {point:?}");
        }
    }
}
