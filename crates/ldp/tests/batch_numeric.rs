//! Exactness of the numeric mechanisms' batch kernels (discrete Laplace, Duchi,
//! 1BitMean, Piecewise, Hybrid and the `AnyNumericMechanism` enum): every
//! kernel's outputs against the exact law its realized integer thresholds
//! imply, through both entry points (`perturb_batch` over many inputs,
//! `perturb_repeated` over one).
//!
//! The batch kernels draw different bits than the scalar `perturb` (bit-sliced
//! comparisons, short prefixes, bucket-table lookups), so nothing here compares
//! outputs seed for seed; each test compares a histogram or a per-lane count with
//! probabilities computed from the mechanisms' public accessors. Tolerances are
//! in `common`: every test rejects at a p-value below `ALPHA` = 1e-4 (a
//! chi-square p-value, or a Bonferroni-corrected z-bound for families of
//! binomial counts), and the seeds are fixed, so runs are deterministic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{N, assert_binomial, assert_fits, bonferroni_z};

use hush_ldp::batch::NumericBatch;
use hush_ldp::sampling::Threshold;
use hush_ldp::{
    AnyNumericMechanism, DiscreteLaplace, Duchi, GridPoint, Hybrid, LdpError, NoiseRng,
    NumericKind, NumericMechanism, OneBitMean, Piecewise, Range,
};
use rand::SeedableRng;

/// Cells of the offsets `index - k0` for discrete Laplace: `width`-wide cells over
/// `[-reach, reach]` and two tails, with probabilities from `noise_probability` and
/// the realized rounding weight.
fn laplace_cells(m: &DiscreteLaplace, x: f64, reach: i64, width: i64) -> (i64, Vec<f64>) {
    let scaled = m.range().to_unit(x).unwrap() * f64::from(m.steps());
    let k0 = scaled.floor() as i64;
    let up = Threshold::floor(scaled - scaled.floor()).prob();
    let upper_tail = |a: i64| {
        let inner: f64 = (-a..=a).map(|z| m.noise_probability(z)).sum();
        (1.0 - inner) / 2.0
    };
    let cells = (2 * reach / width + 1) as usize;
    let mut probs = vec![0.0; cells + 2];
    probs[0] = (1.0 - up) * upper_tail(reach) + up * upper_tail(reach + 1);
    probs[cells + 1] = (1.0 - up) * upper_tail(reach) + up * upper_tail(reach - 1);
    for t in -reach..=reach {
        probs[1 + ((t + reach) / width) as usize] +=
            (1.0 - up) * m.noise_probability(t) + up * m.noise_probability(t - 1);
    }
    (k0, probs)
}

fn laplace_cell(t: i64, reach: i64, width: i64, cells: usize) -> usize {
    if t < -reach {
        0
    } else if t > reach {
        cells - 1
    } else {
        1 + ((t + reach) / width) as usize
    }
}

#[test]
fn discrete_laplace_batch_matches_noise_probability() {
    let mut rng = NoiseRng::seed_from_u64(0xba7c_0007);
    // (eps, steps, x, reach, width): the default grid; a short table that restarts
    // about e^-7 of the time; a table capped at 8192 entries that restarts 1.7%
    // of the time; and eps = 20 on one step, where half the draws are the
    // rejected -0.
    for (eps, steps, x, reach, width) in [
        (1.0, 1024u32, 0.3, 8192i64, 64i64),
        (1.0, 4, -1.0, 80, 1),
        (1.0, 4, 0.3, 80, 1),
        (0.002, 4, -1.0, 24_576, 256),
        (20.0, 1, 0.5, 2, 1),
    ] {
        let m = DiscreteLaplace::with_steps(eps, Range::SYMMETRIC_UNIT, steps).unwrap();
        let (k0, probs) = laplace_cells(&m, x, reach, width);
        let label = format!("Laplace eps={eps} steps={steps} x={x}");
        let mut out = vec![
            GridPoint {
                branch: 9,
                index: 0
            };
            N
        ];
        m.perturb_repeated(x, &mut out, &mut rng).unwrap();
        let mut counts = vec![0u64; probs.len()];
        for p in &out {
            assert!(m.is_valid_output(*p), "{label}: {p:?}");
            counts[laplace_cell(p.index - k0, reach, width, probs.len())] += 1;
        }
        assert_fits(&label, &counts, &probs);
    }
}

#[test]
fn discrete_laplace_batch_handles_each_input_separately() {
    let mut rng = NoiseRng::seed_from_u64(0xba7c_0008);
    let m = DiscreteLaplace::with_steps(1.0, Range::new(0.0, 10.0).unwrap(), 8).unwrap();
    let xs = [-3.0, 2.5, 7.77, 10.0, 42.0];
    let inputs: Vec<f64> = (0..N).map(|i| xs[i % xs.len()]).collect();
    let mut out = vec![
        GridPoint {
            branch: 0,
            index: 0
        };
        N
    ];
    m.perturb_batch(&inputs, &mut out, &mut rng).unwrap();
    for (j, &x) in xs.iter().enumerate() {
        let (reach, width) = (40, 1);
        let (k0, probs) = laplace_cells(&m, x, reach, width);
        let mut counts = vec![0u64; probs.len()];
        for p in out.iter().skip(j).step_by(xs.len()) {
            counts[laplace_cell(p.index - k0, reach, width, probs.len())] += 1;
        }
        assert_fits(&format!("Laplace mixed batch x={x}"), &counts, &probs);
    }
}

#[test]
fn binary_mean_batches_match_their_bit_probabilities() {
    let mut rng = NoiseRng::seed_from_u64(0xba7c_0009);
    let xs = [-1.0, -0.3, 0.0, 0.61, 1.0, 5.0];
    let inputs: Vec<f64> = (0..N).map(|i| xs[i % xs.len()]).collect();
    let z = bonferroni_z(4 * xs.len());
    for eps in [0.5, 4.0] {
        let duchi = Duchi::new(eps, Range::SYMMETRIC_UNIT).unwrap();
        let one_bit = OneBitMean::new(eps, Range::UNIT).unwrap();
        let mut out = vec![
            GridPoint {
                branch: 0,
                index: 0
            };
            N
        ];
        duchi.perturb_batch(&inputs, &mut out, &mut rng).unwrap();
        for (j, &x) in xs.iter().enumerate() {
            let ones = out
                .iter()
                .skip(j)
                .step_by(xs.len())
                .filter(|p| p.index == 1)
                .count() as u64;
            let n = out.iter().skip(j).step_by(xs.len()).count() as u64;
            let p = duchi.probability_of_high(x).unwrap();
            assert_binomial(&format!("Duchi eps={eps} x={x}"), ones, n, p, z);
        }
        for &x in &xs[..2] {
            let mut out = vec![
                GridPoint {
                    branch: 0,
                    index: 0
                };
                N / 4
            ];
            one_bit.perturb_repeated(x, &mut out, &mut rng).unwrap();
            let ones = out.iter().filter(|p| p.index == 1).count() as u64;
            assert!(out.iter().all(|p| one_bit.is_valid_output(*p)));
            let p = one_bit.probability_of_one(x).unwrap();
            assert_binomial(
                &format!("1BitMean eps={eps} x={x}"),
                ones,
                out.len() as u64,
                p,
                z,
            );
        }
    }
}

/// The exact cell law of the Piecewise Mechanism at `x`: a rounding mixture of two windows.
fn piecewise_probs(m: &Piecewise, x: f64) -> Vec<f64> {
    let (floor, frac) = m.window_start(x).unwrap();
    let up = Threshold::floor(frac).prob();
    let (p_hi, p_lo) = m.cell_probabilities();
    let h = m.window();
    (0..m.cells())
        .map(|j| {
            let at = |s: u32| if (s..s + h).contains(&j) { p_hi } else { p_lo };
            (1.0 - up) * at(floor) + up * at(floor + 1)
        })
        .collect()
}

#[test]
fn piecewise_batch_matches_window_probabilities() {
    let mut rng = NoiseRng::seed_from_u64(0xba7c_000a);
    for (eps, cells, x) in [(1.0, 64u32, -1.0), (2.0, 64, 0.37), (4.0, 1024, 0.9)] {
        let m = Piecewise::with_cells(eps, Range::SYMMETRIC_UNIT, cells).unwrap();
        let probs = piecewise_probs(&m, x);
        let mut out = vec![
            GridPoint {
                branch: 0,
                index: 0
            };
            N
        ];
        m.perturb_repeated(x, &mut out, &mut rng).unwrap();
        let mut counts = vec![0u64; cells as usize];
        for p in &out {
            assert!(m.is_valid_output(*p));
            counts[p.index as usize] += 1;
        }
        assert_fits(
            &format!("Piecewise eps={eps} cells={cells} x={x}"),
            &counts,
            &probs,
        );
    }
}

#[test]
fn hybrid_batch_matches_branch_cell_and_bit_probabilities() {
    let mut rng = NoiseRng::seed_from_u64(0xba7c_000b);
    for (eps, x) in [(2.0, 0.25), (0.5, -0.6), (1.0, 1.0)] {
        let m = Hybrid::new(eps, Range::SYMMETRIC_UNIT).unwrap();
        let pm = m.piecewise();
        let a = m.piecewise_probability();
        let high = m.duchi().probability_of_high(x).unwrap();
        // Cells: every Piecewise cell (branch 0), then the Duchi bits 0 and 1 (branch 1).
        let mut probs: Vec<f64> = piecewise_probs(pm, x).iter().map(|p| a * p).collect();
        probs.extend([(1.0 - a) * (1.0 - high), (1.0 - a) * high]);
        let inputs = vec![x; N];
        let mut out = vec![
            GridPoint {
                branch: 0,
                index: 0
            };
            N
        ];
        m.perturb_batch(&inputs, &mut out, &mut rng).unwrap();
        let mut counts = vec![0u64; probs.len()];
        for p in &out {
            assert!(m.is_valid_output(*p), "{p:?}");
            let cell = match p.branch {
                0 => p.index as usize,
                _ => pm.cells() as usize + p.index as usize,
            };
            counts[cell] += 1;
        }
        assert_fits(&format!("Hybrid eps={eps} x={x}"), &counts, &probs);
    }
}

#[test]
fn any_numeric_dispatches_to_the_concrete_kernel() {
    let mut rng = NoiseRng::seed_from_u64(0xba7c_000c);
    for kind in NumericKind::ALL {
        let m = AnyNumericMechanism::new(kind, 1.0, Range::UNIT).unwrap();
        let mut out = vec![
            GridPoint {
                branch: 7,
                index: -1
            };
            1000
        ];
        m.perturb_repeated(0.5, &mut out, &mut rng).unwrap();
        assert!(out.iter().all(|p| m.is_valid_output(*p)), "{kind}");
        // The decoded mean is unbiased; 1000 reports keep it within a few units of
        // the worst-case standard deviation.
        let mean = out.iter().map(|p| m.decode(*p)).sum::<f64>() / 1000.0;
        let sd = (m.worst_case_variance() / 1000.0).sqrt();
        assert!(
            (mean - 0.5).abs() < 5.0 * sd,
            "{kind}: mean {mean}, sd {sd}"
        );
    }
}

// ----- edges and errors -----

#[test]
fn empty_and_single_batches_work() {
    let mut rng = NoiseRng::seed_from_u64(0xba7c_000d);
    let laplace = DiscreteLaplace::new(1.0, Range::UNIT).unwrap();
    laplace.perturb_batch(&[], &mut [], &mut rng).unwrap();
    let mut point = [GridPoint {
        branch: 0,
        index: 0,
    }];
    laplace.perturb_batch(&[0.5], &mut point, &mut rng).unwrap();
    assert!(laplace.is_valid_output(point[0]));
}

#[test]
fn bad_batches_are_typed_errors() {
    let mut rng = NoiseRng::seed_from_u64(0xba7c_000e);
    let piecewise = Piecewise::new(1.0, Range::SYMMETRIC_UNIT).unwrap();
    let mut out = [GridPoint {
        branch: 0,
        index: 0,
    }; 2];
    assert!(matches!(
        piecewise.perturb_batch(&[0.0, f64::NAN], &mut out, &mut rng),
        Err(LdpError::NonFiniteInput(_))
    ));
    assert!(matches!(
        piecewise.perturb_batch(&[0.0], &mut out, &mut rng),
        Err(LdpError::BufferLength { .. })
    ));
    // Every numeric kernel names the first non-finite input, wherever it sits
    // in a long batch (in a later chunk too), and refuses to repeat one.
    let zero = GridPoint {
        branch: 0,
        index: 0,
    };
    for kind in NumericKind::ALL {
        let m = AnyNumericMechanism::new(kind, 1.0, Range::SYMMETRIC_UNIT).unwrap();
        for (at, bad) in [
            (0, f64::NAN),
            (700, f64::INFINITY),
            (1999, f64::NEG_INFINITY),
        ] {
            let mut xs = vec![0.25; 2000];
            if at + 1 < xs.len() {
                xs[at + 1] = f64::NAN;
            }
            xs[at] = bad;
            let mut out = vec![zero; 2000];
            match m.perturb_batch(&xs, &mut out, &mut rng) {
                Err(LdpError::NonFiniteInput(x)) => {
                    assert!(
                        x.is_nan() == bad.is_nan() && (bad.is_nan() || x == bad),
                        "{kind}"
                    )
                }
                other => panic!("{kind}: {other:?}"),
            }
        }
        assert!(
            matches!(
                m.perturb_repeated(f64::NAN, &mut [zero; 3], &mut rng),
                Err(LdpError::NonFiniteInput(_))
            ),
            "{kind}"
        );
    }
}
