//! Theoretical against empirical variance of every mechanism, as Markdown tables:
//! frequency oracles at eps in {0.5, 1, 2, 4} and d in {2, 16, 1024}, mean
//! mechanisms at the same epsilons (they have no domain, so once per epsilon).
//!
//! The reference is the Var* column of Wang, Blocki, Li, Jha, "Locally
//! Differentially Private Protocols for Frequency Estimation", USENIX Security
//! 2017 (Table 1): `q(1-q)/(p-q)^2`, the variance of one count estimate divided
//! by `n`, which is `n Var[f_hat(v)]` for a value with frequency near 0. Beside
//! it stand the exact variance of the realized mechanism (thresholds on the
//! 2^-64 grid, OLH's integer hash range) averaged over the domain's values,
//! whose frequencies average `1/d`, and the variance measured over seeded
//! trials. Mean mechanisms are measured at their worst-case input against the
//! formulas of Duchi et al. (2018) and Wang et al. (ICDE 2019) in DESIGN.md.
//!
//! Reports are made with the batch kernels of `hush_ldp::batch` (many users per
//! call, the same law as the scalar `perturb`), folded into the hush-stats
//! aggregates, and estimated with their estimators. Each cell runs its trials on
//! its own seed, trial `t` on ChaCha stream `t`, and sums integer statistics, so
//! the table depends only on `--seed`, not on the thread count.
//!
//! Run it with
//!
//! ```sh
//! cargo run --release --example mechanism_table -- [--users 1000] [--trials 400] [--seed 1] [--threads N] [--quick]
//! ```
//!
//! With T trials a variance estimate has relative standard error about
//! `sqrt(2/(T-1))`, printed with the table; the smoke test checks every
//! empirical/exact ratio against a band of that width. `--quick` shrinks the
//! sizes for the smoke test.

use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use hush_ldp::{
    AnyFrequencyOracle, AnyNumericMechanism, FrequencyBatch, FrequencyKind, FrequencyOracle,
    GridPoint, NoiseRng, NumericBatch, NumericKind, NumericMechanism,
};
use hush_stats::simulate::simulation_range;
use hush_stats::{Distribution, FrequencyAggregate, MeanAggregate, frequency_variance};
use rand::SeedableRng;

/// Theoretical against empirical variance of every mechanism, as Markdown tables.
#[derive(Debug, Parser)]
struct Args {
    /// Users per trial, one report each [default: 1000].
    #[arg(long)]
    users: Option<u64>,
    /// Trials per table cell [default: 400].
    #[arg(long)]
    trials: Option<u64>,
    /// Seed of every draw.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Small sizes for a fast check (users 200, trials 150) unless given explicitly.
    #[arg(long)]
    quick: bool,
}

const EPSILONS: [f64; 4] = [0.5, 1.0, 2.0, 4.0];
const DOMAINS: [u32; 3] = [2, 16, 1024];
/// Reports perturbed per batch call: large enough to amortize the call, small
/// enough that a unary-encoding buffer at d = 1024 stays at 256 KiB.
const CHUNK: usize = 2048;

/// One table row: `n Var` by the paper, exactly for the realized mechanism, and measured.
struct Row {
    paper: f64,
    exact: f64,
    empirical: f64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let users = args.users.unwrap_or(if args.quick { 200 } else { 1000 });
    let trials = args.trials.unwrap_or(if args.quick { 150 } else { 400 });
    if users < 2 || trials < 2 {
        bail!("--users and --trials must be at least 2");
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
        .max(1);
    let rse = (2.0 / (trials as f64 - 1.0)).sqrt();
    let started = Instant::now();

    println!("# Variance of every mechanism: theory against {trials} trials");
    println!();
    println!(
        "users = {users}, trials = {trials} per cell, seed = {}; a variance from {trials} trials has relative standard error sqrt(2/(T-1)) = {rse:.3}.",
        args.seed
    );
    println!();
    println!("## Frequency oracles: n Var[f_hat(v)] (= Var[c_hat(v)] / n)");
    println!();
    println!(
        "Var* is the paper's q(1-q)/(p-q)^2 (frequency near 0); exact uses the realized p and q and averages over values (Zipf-distributed users, mean frequency 1/d)."
    );
    println!();
    println!("| eps | d | mechanism | Var* (paper) | exact | empirical | empirical / exact |");
    println!("| ---: | ---: | --- | ---: | ---: | ---: | ---: |");
    let mut cell = 0u64;
    for eps in EPSILONS {
        for d in DOMAINS {
            for kind in FrequencyKind::ALL {
                let row = frequency_row(kind, eps, d, users, trials, mix(args.seed, cell), threads)
                    .with_context(|| format!("{kind} at eps {eps}, d {d}"))?;
                cell += 1;
                println!(
                    "| {eps} | {d} | {kind} | {} | {} | {} | {:.3} |",
                    sig(row.paper),
                    sig(row.exact),
                    sig(row.empirical),
                    row.empirical / row.exact
                );
            }
        }
    }
    println!();
    println!("## Mean mechanisms: n Var[mean] at the worst-case input");
    println!();
    println!(
        "Inputs on [-1, 1] (1BitMean on [0, 1], its paper's range and units); paper: the formulas in DESIGN.md; exact: the realized grid mechanism."
    );
    println!();
    println!("| eps | mechanism | input | paper | exact | empirical | empirical / exact |");
    println!("| ---: | --- | ---: | ---: | ---: | ---: | ---: |");
    for eps in EPSILONS {
        for kind in NumericKind::ALL {
            let (x, row) = mean_row(kind, eps, users, trials, mix(args.seed, cell), threads)
                .with_context(|| format!("{kind} at eps {eps}"))?;
            cell += 1;
            println!(
                "| {eps} | {kind} | {x} | {} | {} | {} | {:.3} |",
                sig(row.paper),
                sig(row.exact),
                sig(row.empirical),
                row.empirical / row.exact
            );
        }
    }
    println!();
    println!(
        "{cell} cells in {:.1} s on {threads} threads.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `x` to four significant digits, without exponent for ordinary magnitudes.
fn sig(x: f64) -> String {
    if x != 0.0 && (x.abs() >= 1e5 || x.abs() < 1e-3) {
        format!("{x:.3e}")
    } else {
        let digits = 3 - x.abs().log10().floor().clamp(-3.0, 3.0) as i32;
        format!("{x:.*}", digits.max(0) as usize)
    }
}

/// A seed for cell `k` of `seed` (SplitMix64's finalizer: nearby inputs, unrelated seeds).
fn mix(seed: u64, k: u64) -> u64 {
    let mut z = seed ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The generator of trial `t` of a cell: the cell's key, ChaCha stream `t`.
fn trial_rng(seed: u64, t: u64) -> NoiseRng {
    let mut rng = NoiseRng::seed_from_u64(seed);
    rng.set_stream(t);
    rng
}

/// Runs `trial` for every trial index on `threads` scoped threads; `trial`
/// folds its result into the worker's accumulator, and the accumulators are
/// combined with `merge`, in worker order.
fn run_trials<A: Send>(
    trials: u64,
    threads: usize,
    new: impl Fn() -> A + Sync,
    trial: impl Fn(u64, &mut A) -> anyhow::Result<()> + Sync,
    mut merge: impl FnMut(&mut A, A),
) -> anyhow::Result<A> {
    let workers = threads.min(trials as usize).max(1);
    let parts: Vec<anyhow::Result<A>> = hush_stats::simulate::on_threads(workers, |w| {
        let mut acc = new();
        for t in (w as u64..trials).step_by(workers) {
            trial(t, &mut acc)?;
        }
        Ok(acc)
    });
    let mut total = new();
    for part in parts {
        merge(&mut total, part?);
    }
    Ok(total)
}

/// Per value, the sum and the sum of squares of its support count over trials:
/// integers, so the totals do not depend on which worker ran which trial.
struct CountMoments {
    sum: Vec<u128>,
    sum_squares: Vec<u128>,
}

fn frequency_row(
    kind: FrequencyKind,
    eps: f64,
    d: u32,
    users: u64,
    trials: u64,
    seed: u64,
    threads: usize,
) -> anyhow::Result<Row> {
    let oracle = AnyFrequencyOracle::new(kind, eps, u64::from(d))?;
    let counts = Distribution::Zipf.counts(d, users);
    let values: Vec<u32> = (0..d)
        .flat_map(|v| std::iter::repeat_n(v, counts[v as usize] as usize))
        .collect();
    let new = || CountMoments {
        sum: vec![0; d as usize],
        sum_squares: vec![0; d as usize],
    };
    let moments = run_trials(
        trials,
        threads,
        new,
        |t, acc| {
            let mut rng = trial_rng(seed, t);
            let mut agg = FrequencyAggregate::new(d);
            batch_reports(&oracle, &values, 0, &mut rng, &mut agg, |s| {
                oracle.report_from_slots(s).ok()
            })?;
            for (v, &c) in agg.support_counts().iter().enumerate() {
                acc.sum[v] += u128::from(c);
                acc.sum_squares[v] += u128::from(c) * u128::from(c);
            }
            Ok(())
        },
        |total, part| {
            for v in 0..d as usize {
                total.sum[v] += part.sum[v];
                total.sum_squares[v] += part.sum_squares[v];
            }
        },
    )?;

    // f_hat(v) = (C(v)/n - q)/(p - q) is affine in the count, so its variance
    // over trials is the count's variance times 1/(n (p - q))^2.
    let probs = oracle.support_probabilities();
    let n = users as f64;
    let tf = trials as f64;
    let scale = 1.0 / (n * (probs.p - probs.q));
    let mut empirical = 0.0;
    for v in 0..d as usize {
        let (s, ss) = (moments.sum[v] as f64, moments.sum_squares[v] as f64);
        empirical += (ss - s * s / tf) / (tf - 1.0) * scale * scale;
    }
    let exact: f64 = counts
        .iter()
        .map(|&c| frequency_variance(probs, users, c as f64 / n))
        .sum();
    let df = f64::from(d);
    Ok(Row {
        paper: kind.paper_count_variance_per_user(eps, d),
        exact: n * exact / df,
        empirical: n * empirical / df,
    })
}

/// Perturbs `values` through the oracle's batch kernel, a chunk at a time, and
/// adds every report to `agg` (which checks it is a valid output of the oracle).
fn batch_reports<M: FrequencyBatch>(
    oracle: &M,
    values: &[u32],
    empty: M::Slot,
    rng: &mut NoiseRng,
    agg: &mut FrequencyAggregate,
    report: impl Fn(&[M::Slot]) -> Option<M::Output>,
) -> anyhow::Result<()> {
    let per = oracle.slots_per_report();
    let mut buffer = vec![empty; CHUNK * per];
    for chunk in values.chunks(CHUNK) {
        let out = &mut buffer[..chunk.len() * per];
        oracle.perturb_batch(chunk, out, rng)?;
        for slots in out.chunks_exact(per) {
            let output = report(slots).context("a batch report has the wrong shape")?;
            agg.add(oracle, &output)?;
        }
    }
    Ok(())
}

/// The input with the largest variance for the realized mechanism (every
/// mechanism's variance is a quadratic in `x` symmetric about the middle of the
/// range, so it is an end or the middle). Ends that tie up to rounding count as
/// a tie, and a tie goes to the upper end, so the table does not flip between
/// -1 and 1 on float noise.
fn worst_case_input(m: &AnyNumericMechanism) -> f64 {
    let r = m.range();
    let candidates = [r.hi(), (r.lo() + r.hi()) / 2.0, r.lo()];
    let worst = candidates
        .map(|x| m.variance_at(x))
        .into_iter()
        .fold(f64::MIN, f64::max);
    candidates
        .into_iter()
        .find(|&x| m.variance_at(x) >= worst * (1.0 - 1e-9))
        .unwrap_or(r.hi())
}

fn mean_row(
    kind: NumericKind,
    eps: f64,
    users: u64,
    trials: u64,
    seed: u64,
    threads: usize,
) -> anyhow::Result<(f64, Row)> {
    let mechanism = AnyNumericMechanism::new(kind, eps, simulation_range(kind))?;
    let x = worst_case_input(&mechanism);
    // Each trial's mean estimate, by trial index, so the variance below is
    // summed in one fixed order whatever the thread count.
    let means = run_trials(
        trials,
        threads,
        Vec::new,
        |t, acc: &mut Vec<(u64, f64)>| {
            let mut rng = trial_rng(seed, t);
            let mut agg = MeanAggregate::new();
            let mut buffer = vec![
                GridPoint {
                    branch: 0,
                    index: 0
                };
                CHUNK
            ];
            let mut left = users as usize;
            while left > 0 {
                let out = &mut buffer[..left.min(CHUNK)];
                mechanism.perturb_repeated(x, out, &mut rng)?;
                for &p in out.iter() {
                    agg.add(&mechanism, p)?;
                }
                left -= out.len();
            }
            acc.push((t, agg.estimate(&mechanism, 0.95)?.mean));
            Ok(())
        },
        |total, part| total.extend(part),
    )?;
    let mut means = means;
    means.sort_by_key(|&(t, _)| t);
    let tf = trials as f64;
    let mean = means.iter().map(|(_, m)| m).sum::<f64>() / tf;
    let var = means.iter().map(|(_, m)| (m - mean).powi(2)).sum::<f64>() / (tf - 1.0);
    Ok((
        x,
        Row {
            paper: kind.paper_variance(eps, x),
            exact: mechanism.variance_at(x),
            empirical: users as f64 * var,
        },
    ))
}
