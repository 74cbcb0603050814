//! Exact distribution tests for hush-ldp: every mechanism's output histogram against the exact
//! output probabilities its realized integer thresholds imply (chi-square and binomial z-tests).
//!
//! The expected probabilities are computed from the mechanisms' public accessors
//! (`keep_probability`, `cell_probabilities`, `window_start`, `noise_probability`, ...), never
//! from the paper's formulas, so a test fails when the sampler does not realize the
//! distribution the privacy proof and the estimators assume, however small the paper gap.
//!
//! **Tolerance.** Every test rejects at a p-value below `common::ALPHA` = 1e-4. For a correct
//! mechanism the statistic is (asymptotically, all expected counts at least 5 after pooling)
//! chi-square distributed, so one test on a fresh seed fails with probability 1e-4, and the
//! whole file (33 tests, counting each per-lane family once) with probability below 0.4%
//! by the union bound. The seeds are fixed, so the outcome is deterministic: a passing
//! run passes forever, and the level says how unlucky a seed could have been.
//!
//! **Power.** A relative error `r` in one cell of probability `p` alone adds about
//! `r^2 n p` to the statistic, and p = 1e-4 needs about 15 to 20 at few degrees of
//! freedom: with n = 2e5 reports that flags `r` near 1.3% for `p = 1/2` (binary outputs)
//! and near 4% for a cell holding 5% of the mass; a misplaced branch, an off-by-one skip
//! or a wrong threshold shows by orders of magnitude more. Each test takes well under a
//! second with the workspace's optimized dev profile and under 2 s at opt-level 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_fits, bonferroni_z};

use hush_ldp::sampling::Threshold;
use hush_ldp::{
    DiscreteLaplace, Duchi, FrequencyOracle, Grr, HadamardResponse, Hybrid, NoiseRng,
    NumericMechanism, Olh, OneBitMean, Piecewise, Range, UnaryEncoding,
};
use rand::SeedableRng;

/// Reports per histogram.
const N: u64 = common::N as u64;

/// The standardized deviation of a Binomial(n, p) count.
fn binomial_z(count: u64, n: u64, p: f64) -> f64 {
    let n = n as f64;
    (count as f64 - n * p) / (n * p * (1.0 - p)).sqrt()
}

/// The probability that a threshold draw against `Threshold::floor(frac)` succeeds: the
/// exact weight of the upper candidate in the mechanisms' unbiased randomized rounding.
fn rounding_up_probability(frac: f64) -> f64 {
    Threshold::floor(frac).prob()
}

// ----- frequency oracles -----

#[test]
fn grr_output_histogram_matches_keep_and_other_probabilities() {
    let mut rng = NoiseRng::seed_from_u64(0x4752_5201);
    for (domain, eps) in [(2u32, 0.5), (2, 2.0), (16, 0.5), (16, 2.0)] {
        let m = Grr::new(eps, u64::from(domain)).unwrap();
        // A value with others on both sides exercises the skip over the true value.
        let v = domain / 3;
        let mut counts = vec![0u64; domain as usize];
        for _ in 0..N {
            counts[m.perturb(v, &mut rng).unwrap() as usize] += 1;
        }
        let probs: Vec<f64> = (0..domain)
            .map(|y| {
                if y == v {
                    m.keep_probability()
                } else {
                    m.other_probability()
                }
            })
            .collect();
        assert_fits(&format!("GRR d={domain} eps={eps} v={v}"), &counts, &probs);
    }
}

/// Per-lane binomial z-tests (Bonferroni over the lanes) and a joint chi-square on the true
/// value's lane and one other lane, for `n` reports of `v`.
///
/// The number of set bits is Poisson-binomial, not a simple law, so it is not tested
/// directly; lanes are independent Bernoulli draws with probability `p` (the true
/// value's lane) or `q` (every other lane), which the lane marginals and the 2x2 joint
/// (which also checks independence of the two lanes) pin down.
fn check_unary(label: &str, m: &UnaryEncoding, v: u32, n: u64, seed: u64) {
    let mut rng = NoiseRng::seed_from_u64(seed);
    let d = m.domain();
    let other = if v == d - 1 { 0 } else { d - 1 };
    let (p, q) = (m.p_threshold().prob(), m.q_threshold().prob());
    let mut lanes = vec![0u64; d as usize];
    let mut joint = [0u64; 4];
    for _ in 0..n {
        let bits = m.perturb(v, &mut rng).unwrap();
        assert!(m.is_valid_output(&bits), "{label}: invalid output {bits:?}");
        for i in bits.ones() {
            lanes[i as usize] += 1;
        }
        joint[2 * usize::from(bits.get(v)) + usize::from(bits.get(other))] += 1;
    }
    let bound = bonferroni_z(d as usize);
    for (i, &count) in lanes.iter().enumerate() {
        let prob = if i as u32 == v { p } else { q };
        let z = binomial_z(count, n, prob);
        assert!(
            z.abs() < bound,
            "{label}: lane {i} set {count} times in {n}, z = {z:.2}, bound {bound:.2}"
        );
    }
    // Cells (true lane, other lane) = (0,0), (0,1), (1,0), (1,1).
    let joint_probs = [(1.0 - p) * (1.0 - q), (1.0 - p) * q, p * (1.0 - q), p * q];
    assert_fits(
        &format!("{label}: joint of lanes {v} and {other}"),
        &joint,
        &joint_probs,
    );
}

#[test]
fn sue_lanes_match_p_and_q() {
    let m = UnaryEncoding::symmetric(1.0, 10).unwrap();
    check_unary("SUE d=10 eps=1", &m, 4, 100_000, 0x5355_4501);
}

#[test]
fn oue_lanes_match_p_and_q_across_a_word_boundary() {
    // 70 lanes span two packed words; the true value sits in the second one.
    let m = UnaryEncoding::optimized(2.0, 70).unwrap();
    check_unary("OUE d=70 eps=2", &m, 66, 20_000, 0x4f55_4501);
}

#[test]
fn olh_reported_minus_hash_matches_keep_probability() {
    let mut rng = NoiseRng::seed_from_u64(0x4f4c_4801);
    for eps in [1.0, 3.0] {
        let m = Olh::new(eps, 1000).unwrap();
        let g = m.hash_range();
        let (v, u) = (123, 124);
        // Offset of the report from the reporter's own hash: 0 with probability
        // keep_probability(), each of the g - 1 others uniformly.
        let mut offsets = vec![0u64; g as usize];
        // Offset of the report from another value's hash: uniform over 0..g when the seeded
        // hash of u is uniform and independent of v's, which makes the support
        // probability of other values exactly q = 1/g (what the estimator assumes).
        let mut other_offsets = vec![0u64; g as usize];
        for _ in 0..N {
            let out = m.perturb(v, &mut rng).unwrap();
            assert!(m.is_valid_output(&out), "OLH eps={eps}: invalid {out:?}");
            offsets[((out.value + g - m.hash(out.seed, v)) % g) as usize] += 1;
            other_offsets[((out.value + g - m.hash(out.seed, u)) % g) as usize] += 1;
        }
        let keep = m.keep_probability();
        let mut probs = vec![(1.0 - keep) / f64::from(g - 1); g as usize];
        probs[0] = keep;
        assert_fits(&format!("OLH eps={eps} g={g} own hash"), &offsets, &probs);
        let uniform = vec![1.0 / f64::from(g); g as usize];
        assert_fits(
            &format!("OLH eps={eps} g={g} other value's hash"),
            &other_offsets,
            &uniform,
        );
    }
}

#[test]
fn hadamard_output_histogram_matches_set_probabilities() {
    let mut rng = NoiseRng::seed_from_u64(0x4844_5201);
    for (domain, eps, v) in [(5u64, 1.0, 2u32), (16, 2.0, 15)] {
        let m = HadamardResponse::new(eps, domain).unwrap();
        let k = m.order();
        let inside = (0..k).filter(|&y| HadamardResponse::in_set(v, y)).count();
        assert_eq!(inside as u32, k / 2, "C_{v} must hold exactly K/2 elements");
        let mut counts = vec![0u64; k as usize];
        for _ in 0..N {
            counts[m.perturb(v, &mut rng).unwrap() as usize] += 1;
        }
        let p = m.keep_probability();
        let probs: Vec<f64> = (0..k)
            .map(|y| {
                if HadamardResponse::in_set(v, y) {
                    2.0 * p / f64::from(k)
                } else {
                    2.0 * (1.0 - p) / f64::from(k)
                }
            })
            .collect();
        assert_fits(
            &format!("HR d={domain} K={k} eps={eps} v={v}"),
            &counts,
            &probs,
        );
    }
}

// ----- numeric mechanisms -----

/// Histogram of `GridPoint::index` for `n` reports of `x`, over `0..cells` (other indices fail).
fn index_histogram<M: NumericMechanism>(m: &M, x: f64, cells: usize, seed: u64) -> Vec<u64> {
    let mut rng = NoiseRng::seed_from_u64(seed);
    let mut counts = vec![0u64; cells];
    for _ in 0..N {
        let point = m.perturb(x, &mut rng).unwrap();
        assert!(m.is_valid_output(point), "invalid output {point:?}");
        counts[usize::try_from(point.index).unwrap()] += 1;
    }
    counts
}

#[test]
fn duchi_bit_matches_probability_of_high() {
    let range = Range::new(-3.0, 5.0).unwrap();
    let m = Duchi::new(1.0, range).unwrap();
    // Both ends, an interior point, and clipped inputs beyond both ends.
    for (i, x) in [-3.0, 5.0, 0.37, -1e9, 42.0].into_iter().enumerate() {
        let counts = index_histogram(&m, x, 2, 0x4455_4301 + i as u64);
        let high = m.probability_of_high(x).unwrap();
        assert_fits(&format!("Duchi x={x}"), &counts, &[1.0 - high, high]);
    }
}

#[test]
fn one_bit_mean_bit_matches_probability_of_one() {
    let range = Range::new(0.0, 10.0).unwrap();
    let m = OneBitMean::new(2.0, range).unwrap();
    for (i, x) in [0.0, 10.0, 5.0, 2.5, -3.0].into_iter().enumerate() {
        let counts = index_histogram(&m, x, 2, 0x3142_4d01 + i as u64);
        let one = m.probability_of_one(x).unwrap();
        assert_fits(&format!("1BitMean x={x}"), &counts, &[1.0 - one, one]);
    }
}

/// The exact cell distribution of the Piecewise mechanism for input `x`: a mixture, with the
/// realized randomized-rounding weights, of the two window starts `window_start` names.
fn piecewise_cell_probabilities(m: &Piecewise, x: f64) -> Vec<f64> {
    let (p_hi, p_lo) = m.cell_probabilities();
    let (start, frac) = m.window_start(x).unwrap();
    let up = rounding_up_probability(frac);
    let given_start = |s: u32, j: u32| {
        if (s..s + m.window()).contains(&j) {
            p_hi
        } else {
            p_lo
        }
    };
    (0..m.cells())
        .map(|j| (1.0 - up) * given_start(start, j) + up * given_start(start + 1, j))
        .collect()
}

#[test]
fn piecewise_cells_match_window_probabilities_at_the_bottom() {
    for (eps, seed) in [(1.0, 0x5057_0101), (3.0, 0x5057_0102)] {
        let m = Piecewise::with_cells(eps, Range::SYMMETRIC_UNIT, 64).unwrap();
        // At the bottom of the range the window starts at cell 0 with no rounding.
        assert_eq!(m.window_start(-1.0).unwrap(), (0, 0.0));
        let counts = index_histogram(&m, -1.0, 64, seed);
        let probs = piecewise_cell_probabilities(&m, -1.0);
        let label = format!("Piecewise eps={eps} x=-1 h={}", m.window());
        assert_fits(&label, &counts, &probs);
    }
}

#[test]
fn piecewise_cells_match_the_rounding_mixture_in_the_middle() {
    for (eps, x, seed) in [(1.0, 0.37, 0x5057_0201), (3.0, -0.55, 0x5057_0202)] {
        let m = Piecewise::with_cells(eps, Range::SYMMETRIC_UNIT, 64).unwrap();
        let (start, frac) = m.window_start(x).unwrap();
        // Both window starts must carry real weight, or this is not the mixture case.
        assert!(
            (0.05..0.95).contains(&frac),
            "x={x}: start {start} frac {frac}"
        );
        let counts = index_histogram(&m, x, 64, seed);
        let probs = piecewise_cell_probabilities(&m, x);
        let label = format!(
            "Piecewise eps={eps} x={x} h={} start={start}+{frac:.3}",
            m.window()
        );
        assert_fits(&label, &counts, &probs);
    }
}

/// Chi-square of `index - k0` for `N` reports of `x`, where `k0` is the lower rounding
/// candidate: cells of `width` consecutive offsets over `[-reach, reach]` plus two tail
/// cells, with exact probabilities from `noise_probability` and the realized rounding weight.
fn check_laplace(label: &str, m: &DiscreteLaplace, x: f64, reach: i64, width: i64, seed: u64) {
    let scaled = m.range().to_unit(x).unwrap() * f64::from(m.steps());
    let k0 = scaled.floor() as i64;
    let up = rounding_up_probability(scaled - scaled.floor());
    // Pr[Z > a] for a >= 0, by symmetry of the noise: half of what |Z| <= a leaves.
    let upper_tail = |a: i64| {
        let inner: f64 = (-a..=a).map(|z| m.noise_probability(z)).sum();
        (1.0 - inner) / 2.0
    };
    let prob_offset =
        |t: i64| (1.0 - up) * m.noise_probability(t) + up * m.noise_probability(t - 1);
    // Offsets t = index - k0 = Z + (0 or 1 from rounding).
    let below = (1.0 - up) * upper_tail(reach) + up * upper_tail(reach + 1);
    let above = (1.0 - up) * upper_tail(reach) + up * upper_tail(reach - 1);
    let cells = usize::try_from(2 * reach / width + 1).unwrap();
    let cell_of = |t: i64| -> usize {
        if t < -reach {
            0
        } else if t > reach {
            cells + 1
        } else {
            1 + usize::try_from((t + reach) / width).unwrap()
        }
    };
    let mut probs = vec![0.0; cells + 2];
    probs[0] = below;
    probs[cells + 1] = above;
    for t in -reach..=reach {
        probs[cell_of(t)] += prob_offset(t);
    }
    let mut rng = NoiseRng::seed_from_u64(seed);
    let mut counts = vec![0u64; cells + 2];
    for _ in 0..N {
        let point = m.perturb(x, &mut rng).unwrap();
        assert!(m.is_valid_output(point), "{label}: invalid {point:?}");
        counts[cell_of(point.index - k0)] += 1;
    }
    assert_fits(label, &counts, &probs);
}

#[test]
fn discrete_laplace_noise_matches_noise_probability() {
    // 4 steps at eps = 1: ratio e^(-1/4) per step, a table of ceil(7 / 0.25) = 28 entries,
    // so about e^-7 of magnitude draws restart past the table.
    let m = DiscreteLaplace::with_steps(1.0, Range::SYMMETRIC_UNIT, 4).unwrap();
    // At the bottom of the range the grid position is exactly 0: no rounding.
    check_laplace("Laplace eps=1 steps=4 x=-1", &m, -1.0, 80, 1, 0x4c41_5001);
    // In the middle, k is 2 or 3 (position 2.6) by randomized rounding.
    check_laplace("Laplace eps=1 steps=4 x=0.3", &m, 0.3, 80, 1, 0x4c41_5002);
}

#[test]
fn discrete_laplace_restarts_past_the_table_exactly() {
    // The table holds min(ceil(7 / per_step), 8192) entries, per_step = eps / steps. Here
    // per_step = 0.0005 asks for 14000, so the table is capped at 8192 and a magnitude
    // draw restarts past it with probability about e^-4.096 = 1.7%: the memoryless
    // tail is exercised thousands of times, and twice in a row about 50 times.
    let m = DiscreteLaplace::with_steps(0.002, Range::SYMMETRIC_UNIT, 4).unwrap();
    let within: f64 = (-8191..=8191).map(|z| m.noise_probability(z)).sum();
    assert!(
        1.0 - within > 0.01,
        "restart probability {} should exceed 1%",
        1.0 - within
    );
    // Cells of 256 offsets over 24576 steps each way (3 table periods); the tails beyond
    // hold about e^-12.3 of the mass and are pooled with their neighbours.
    check_laplace(
        "Laplace eps=0.002 steps=4 x=-1",
        &m,
        -1.0,
        24_576,
        256,
        0x4c41_5003,
    );
}

#[test]
fn hybrid_branch_and_bit_match_piecewise_probability() {
    for (eps, x, seed) in [(2.0, 0.25, 0x4859_4201), (0.5, -0.6, 0x4859_4202)] {
        let m = Hybrid::new(eps, Range::SYMMETRIC_UNIT).unwrap();
        let a = m.piecewise_probability();
        let high = m.duchi().probability_of_high(x).unwrap();
        // Cells: Piecewise branch (any cell), Duchi branch bit 0, Duchi branch bit 1.
        let mut rng = NoiseRng::seed_from_u64(seed);
        let mut counts = [0u64; 3];
        for _ in 0..N {
            let point = m.perturb(x, &mut rng).unwrap();
            assert!(
                m.is_valid_output(point),
                "Hybrid eps={eps}: invalid {point:?}"
            );
            let cell = if point.branch == 0 {
                0
            } else {
                1 + usize::try_from(point.index).unwrap()
            };
            counts[cell] += 1;
        }
        // At eps = 0.5 (below the switch at 0.61) a = 0: the Piecewise cell must stay empty.
        let probs = [a, (1.0 - a) * (1.0 - high), (1.0 - a) * high];
        assert_fits(&format!("Hybrid eps={eps} x={x} a={a}"), &counts, &probs);
    }
}
