//! Estimation error against epsilon for every frequency oracle and every mean
//! mechanism: seeded simulations (hush-stats) as points, the papers' variance
//! formulas as lines, written as an SVG plot and a CSV.
//!
//! It shows the two choices the literature makes by epsilon:
//!
//! - **GRR against OUE/OLH.** GRR's count variance `(d - 2 + e^eps)/(e^eps - 1)^2`
//!   grows with the domain, OUE's and OLH's `4 e^eps/(e^eps - 1)^2` does not, so
//!   GRR is better exactly when `d < 3 e^eps + 2` (Wang, Blocki, Li, Jha, USENIX
//!   Security 2017): for a fixed `d` the curves cross at `eps = ln((d - 2)/3)`.
//! - **Piecewise against Duchi.** Worst case over the input, the Piecewise
//!   Mechanism beats Duchi et al.'s above `eps` of about 1.29 (Wang et al., ICDE
//!   2019). Each mean mechanism is simulated at its own worst-case input, in
//!   `[-1, 1]` units (1BitMean runs on `[0, 1]` and is scaled by 4).
//!
//! The y axis is `n` times the variance of one estimate (`n Var[f_hat(v)]`
//! averaged over `v`, or `n Var[mean]`), which is what each paper's formula
//! states and does not depend on the number of users. Both crossovers are found
//! again from the simulated points and printed beside the theory, with a
//! standard error from the number of trials.
//!
//! Run it with
//!
//! ```sh
//! cargo run --release --example epsilon_sweep -- [--out DIR] [--domain 32] [--users 1000] [--trials 400] [--mean-trials 1600] [--points 20] [--seed 1] [--quick]
//! ```
//!
//! Outputs go to `target/examples/epsilon_sweep/` by default
//! (`epsilon_sweep.svg`, `epsilon_sweep.csv`). `--quick` shrinks every size for
//! the smoke test.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use hush_ldp::{
    AnyFrequencyOracle, AnyNumericMechanism, FrequencyKind, FrequencyOracle, NumericKind,
    NumericMechanism,
};
use hush_stats::simulate::{Trials, simulate_frequency, simulate_mean, simulation_range};
use hush_stats::{Distribution, Population, frequency_variance};
use plotters::prelude::*;

/// Estimation error against epsilon for every mechanism, as an SVG plot and a CSV.
#[derive(Debug, Parser)]
struct Args {
    /// Directory the SVG and the CSV are written to (created if missing).
    #[arg(long, default_value = "target/examples/epsilon_sweep")]
    out: PathBuf,
    /// Domain size of the frequency oracles (GRR meets OUE/OLH at eps = ln((d-2)/3)).
    #[arg(long, default_value_t = 32)]
    domain: u64,
    /// Simulated users per trial [default: 1000].
    #[arg(long)]
    users: Option<u64>,
    /// Trials per (frequency oracle, epsilon) point; a variance from T trials has
    /// relative standard error sqrt(2/(T-1)) [default: 400].
    #[arg(long)]
    trials: Option<u64>,
    /// Trials per (mean mechanism, epsilon) point. More than for the oracles: a mean
    /// mechanism's variance is one number per trial, not an average over a domain,
    /// and Piecewise and Duchi approach each other slowly, so their crossover
    /// needs the extra precision; each trial is cheap [default: 1600].
    #[arg(long)]
    mean_trials: Option<u64>,
    /// Epsilon points: eps_max * i / points for i = 1..=points [default: 20].
    #[arg(long)]
    points: Option<u32>,
    /// Largest epsilon.
    #[arg(long, default_value_t = 5.0)]
    eps_max: f64,
    /// Seed of every simulation.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Small sizes for a fast check (users 400, trials 100, mean trials 200, 10 points)
    /// unless given explicitly.
    #[arg(long)]
    quick: bool,
}

/// One simulated point: `n Var` measured, from the realized mechanism, and from the paper.
#[derive(Debug, Clone)]
struct Point {
    family: &'static str,
    mechanism: &'static str,
    epsilon: f64,
    realized_epsilon: f64,
    /// Domain size (frequency oracles) or `None` (mean mechanisms).
    domain: Option<u32>,
    /// The input every user holds (mean mechanisms: the worst case).
    input: Option<f64>,
    trials: u64,
    empirical: f64,
    realized: f64,
    paper: f64,
}

/// A point where two mechanisms' variance curves cross.
#[derive(Debug, Clone, Copy)]
struct Crossover {
    /// Where the papers' formulas cross (for frequency oracles: Var* at f -> 0).
    paper: Option<f64>,
    /// Where the exact variances of what is simulated cross: the realized
    /// mechanisms, and for frequency oracles the variance averaged over the domain.
    exact: Option<f64>,
    empirical: Option<f64>,
    /// Standard error of the empirical crossover (see `crossover_se`).
    se: Option<f64>,
    /// How many sign changes the empirical curves showed (1 when noise is low).
    crossings: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let users = args.users.unwrap_or(if args.quick { 400 } else { 1000 });
    let trial_count = args.trials.unwrap_or(if args.quick { 100 } else { 400 });
    let mean_trials = args
        .mean_trials
        .unwrap_or(if args.quick { 200 } else { 1600 });
    let points = args.points.unwrap_or(if args.quick { 10 } else { 20 });
    if points < 2 || !(args.eps_max > 0.0 && args.eps_max <= hush_ldp::MAX_EPSILON) {
        bail!("--points must be at least 2 and --eps-max in (0, 20]");
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let epsilons: Vec<f64> = (1..=points)
        .map(|i| args.eps_max * f64::from(i) / f64::from(points))
        .collect();
    let started = Instant::now();

    // Every (mechanism, epsilon) point gets its own seed, so the noise of
    // neighbouring points is independent and a crossover's error is not smoothed away.
    let trials_for = |mechanism: usize, point: usize, trials: u64| Trials {
        users,
        trials,
        seed: mix(args.seed, (mechanism * 1000 + point) as u64),
        level: 0.95,
        threads,
    };
    let n = users as f64;
    let mut results = Vec::new();
    for (m, kind) in one_layer_frequency().enumerate() {
        for (i, &eps) in epsilons.iter().enumerate() {
            let s = simulate_frequency(
                kind,
                eps,
                args.domain,
                Distribution::Zipf,
                trials_for(m, i, trial_count),
                &|_| {},
            )?;
            results.push(Point {
                family: "frequency",
                mechanism: kind.name(),
                epsilon: eps,
                realized_epsilon: s.realized_epsilon,
                domain: Some(s.domain),
                input: None,
                trials: trial_count,
                empirical: n * s.empirical_variance,
                realized: n * s.theoretical_variance,
                paper: n * s.paper_variance,
            });
        }
    }
    for (m, kind) in one_layer_numeric().enumerate() {
        for (i, &eps) in epsilons.iter().enumerate() {
            let x = worst_case_input(kind, eps)?;
            let s = simulate_mean(
                kind,
                eps,
                Population::Constant(x),
                trials_for(10 + m, i, mean_trials),
                &|_| {},
            )?;
            // Variances in [-1, 1] units: 1BitMean's [0, 1] is half as wide.
            let scale = n * 4.0 / s.range.width().powi(2);
            results.push(Point {
                family: "mean",
                mechanism: kind.name(),
                epsilon: eps,
                realized_epsilon: s.realized_epsilon,
                domain: None,
                input: Some(x),
                trials: mean_trials,
                empirical: scale * s.empirical_variance,
                realized: scale * s.theoretical_variance,
                paper: scale * s.paper_variance,
            });
        }
    }
    let seconds = started.elapsed().as_secs_f64();

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let csv_path = args.out.join("epsilon_sweep.csv");
    std::fs::write(&csv_path, csv(&results, users))
        .with_context(|| format!("cannot write {}", csv_path.display()))?;
    let svg_path = args.out.join("epsilon_sweep.svg");
    let d = u32::try_from(args.domain).context("--domain too large")?;
    plot(&svg_path, &results, &epsilons, d)
        .with_context(|| format!("cannot draw {}", svg_path.display()))?;

    println!(
        "epsilon sweep: {} mechanisms x {} epsilons, {users} users, {trial_count} trials per oracle point and {mean_trials} per mean point, d = {d} ({seconds:.1} s)",
        one_layer_frequency().count() + one_layer_numeric().count(),
        epsilons.len(),
    );
    println!();
    println!("| crossover | paper | exact, as simulated | simulated | ± se | sign changes |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let [grr, oue, olh] = [FrequencyKind::Grr, FrequencyKind::Oue, FrequencyKind::Olh]
        .map(|k| Curve::frequency(k, d));
    for other in [&oue, &olh] {
        let c = crossover(&results, &grr, other, trial_count);
        print_crossover(&format!("GRR = {} (d = {d})", other.name.to_uppercase()), c);
    }
    let [pm, duchi] = [NumericKind::Piecewise, NumericKind::Duchi].map(Curve::mean);
    let c = crossover(&results, &pm, &duchi, mean_trials);
    print_crossover("Piecewise = Duchi (worst case)", c);
    println!();
    println!("wrote {}", svg_path.display());
    println!("wrote {}", csv_path.display());
    Ok(())
}

/// A seed for stream `k` of `seed` (SplitMix64's finalizer, so nearby inputs give unrelated seeds).
fn mix(seed: u64, k: u64) -> u64 {
    let mut z = seed ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The input with the largest variance for the realized mechanism: every mechanism's
/// variance is a quadratic in `x` symmetric about the middle of the range, so the
/// maximum is at an end or in the middle. Ends that tie up to rounding go to the
/// upper end, so the CSV does not flip between -1 and 1 on float noise.
fn worst_case_input(kind: NumericKind, epsilon: f64) -> anyhow::Result<f64> {
    let range = simulation_range(kind);
    let m = AnyNumericMechanism::new(kind, epsilon, range)?;
    let candidates = [range.hi(), (range.lo() + range.hi()) / 2.0, range.lo()];
    let worst = candidates
        .map(|x| m.variance_at(x))
        .into_iter()
        .fold(f64::MIN, f64::max);
    Ok(candidates
        .into_iter()
        .find(|&x| m.variance_at(x) >= worst * (1.0 - 1e-9))
        .unwrap_or(range.hi()))
}

/// A mechanism's theory as a function of epsilon, in the units of the plot (`n Var`).
struct Curve {
    name: &'static str,
    /// The paper's formula (frequency oracles: Var*, the `f -> 0` limit).
    paper: Box<dyn Fn(f64) -> f64>,
    /// The exact variance of what is simulated: the realized thresholds, and for
    /// frequency oracles the mean over the domain's values, whose mean frequency
    /// is `1/d` (the variance of `f_hat(v)` grows with `f(v)`, by
    /// `f (p(1-p) - q(1-q)) / (p-q)^2`, which Var* leaves out).
    exact: Box<dyn Fn(f64) -> f64>,
}

impl Curve {
    fn frequency(kind: FrequencyKind, d: u32) -> Curve {
        Curve {
            name: kind.name(),
            paper: Box::new(move |e| kind.paper_count_variance_per_user(e, d)),
            exact: Box::new(move |e| {
                AnyFrequencyOracle::new(kind, e, u64::from(d)).map_or(f64::NAN, |o| {
                    // Linear in f, so the mean over values is the variance at f = 1/d.
                    frequency_variance(o.support_probabilities(), 1, 1.0 / f64::from(d))
                })
            }),
        }
    }

    fn mean(kind: NumericKind) -> Curve {
        Curve {
            name: kind.name(),
            // In [-1, 1] units; 1BitMean's paper variance is on [0, 1], worst at x = 1/2.
            paper: Box::new(move |e| match kind {
                NumericKind::OneBit => 4.0 * kind.paper_variance(e, 0.5),
                _ => kind.paper_variance(e, 0.0).max(kind.paper_variance(e, 1.0)),
            }),
            exact: Box::new(move |e| {
                let range = simulation_range(kind);
                let scale = 4.0 / range.width().powi(2);
                match (
                    AnyNumericMechanism::new(kind, e, range),
                    worst_case_input(kind, e),
                ) {
                    (Ok(m), Ok(x)) => scale * m.variance_at(x),
                    _ => f64::NAN,
                }
            }),
        }
    }
}

fn csv(results: &[Point], users: u64) -> String {
    let mut out = String::from(
        "family,mechanism,epsilon,realized_epsilon,domain,input,users,trials,empirical_n_var,realized_n_var,paper_n_var,empirical_over_realized\n",
    );
    for p in results {
        let domain = p.domain.map(|d| d.to_string()).unwrap_or_default();
        let input = p.input.map(|x| x.to_string()).unwrap_or_default();
        let _ = writeln!(
            out,
            "{},{},{},{},{domain},{input},{users},{},{},{},{},{}",
            p.family,
            p.mechanism,
            p.epsilon,
            p.realized_epsilon,
            p.trials,
            p.empirical,
            p.realized,
            p.paper,
            p.empirical / p.realized,
        );
    }
    out
}

/// The simulated points of one mechanism, in epsilon order.
fn series<'a>(results: &'a [Point], mechanism: &str) -> Vec<&'a Point> {
    results
        .iter()
        .filter(|p| p.mechanism == mechanism)
        .collect()
}

/// Where the curves of `a` and `b` cross: in theory (by bisection), and in the
/// simulation (by linear interpolation of `ln(a/b)` between neighbouring epsilons).
///
/// The standard error comes from the trials: each simulated variance has relative
/// standard error about `sqrt(2/(T-1))` (for frequency oracles an upper bound,
/// since their variance is also averaged over the domain), so `ln(a/b)` has
/// standard error about `2/sqrt(T-1)`, and the crossover moves by that divided by
/// the slope of the theoretical `ln(a/b)` there.
fn crossover(results: &[Point], a: &Curve, b: &Curve, trials: u64) -> Crossover {
    let paper_ratio = |e: f64| ((a.paper)(e) / (b.paper)(e)).ln();
    let paper = bisect(paper_ratio, 0.05, 10.0);
    let exact = bisect(|e| ((a.exact)(e) / (b.exact)(e)).ln(), 0.05, 10.0);
    let (sa, sb) = (series(results, a.name), series(results, b.name));
    let g: Vec<(f64, f64)> = sa
        .iter()
        .zip(&sb)
        .map(|(pa, pb)| (pa.epsilon, (pa.empirical / pb.empirical).ln()))
        .collect();
    let crossings: Vec<f64> = g
        .windows(2)
        .filter(|w| (w[0].1 < 0.0) != (w[1].1 < 0.0))
        .map(|w| {
            let ((x0, y0), (x1, y1)) = (w[0], w[1]);
            x0 + (x1 - x0) * y0 / (y0 - y1)
        })
        .collect();
    // With several sign changes (noise near a flat crossing), the one nearest the theory.
    let target = exact.or(paper).unwrap_or(0.0);
    let empirical = crossings
        .iter()
        .copied()
        .min_by(|x, y| (x - target).abs().total_cmp(&(y - target).abs()));
    // The slope from the paper's smooth formulas (OLH's realized curve has steps
    // where its integer hash range changes).
    let se = paper.map(|t| {
        let h = 1e-4;
        let slope = (paper_ratio(t + h) - paper_ratio(t - h)) / (2.0 * h);
        2.0 / ((trials as f64 - 1.0).sqrt() * slope.abs())
    });
    Crossover {
        paper,
        exact,
        empirical,
        se,
        crossings: crossings.len(),
    }
}

fn print_crossover(name: &str, c: Crossover) {
    let f = |x: Option<f64>| x.map_or_else(|| "none".to_owned(), |x| format!("eps = {x:.3}"));
    let se = c.se.map_or_else(|| "-".to_owned(), |s| format!("{s:.3}"));
    println!(
        "| {name} | {} | {} | {} | {se} | {} |",
        f(c.paper),
        f(c.exact),
        f(c.empirical),
        c.crossings
    );
}

/// A root of `f` in `[lo, hi]` by bisection, if `f` changes sign there.
fn bisect(f: impl Fn(f64) -> f64, mut lo: f64, mut hi: f64) -> Option<f64> {
    let (flo, fhi) = (f(lo), f(hi));
    if !(flo.is_finite() && fhi.is_finite()) || (flo < 0.0) == (fhi < 0.0) {
        return None;
    }
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if (f(mid) < 0.0) == (flo < 0.0) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(0.5 * (lo + hi))
}

const COLORS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

/// Two panels: frequency oracles (left) and mean mechanisms (right), log-scale variance.
fn plot(path: &Path, results: &[Point], epsilons: &[f64], d: u32) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1280, 580)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(640);
    let eps_hi = epsilons.last().copied().unwrap_or(1.0);
    // The lines start at the first simulated epsilon: every variance diverges at 0.
    let eps_first = epsilons.first().copied().unwrap_or(0.1);
    let fine: Vec<f64> = (0..=200)
        .map(|i| eps_first + (eps_hi - eps_first) * f64::from(i) / 200.0)
        .collect();
    let freq: Vec<Curve> = one_layer_frequency()
        .map(|k| Curve::frequency(k, d))
        .collect();
    let mean: Vec<Curve> = one_layer_numeric().map(Curve::mean).collect();
    let paper_crossing =
        |a: &Curve, b: &Curve| bisect(|e| ((a.paper)(e) / (b.paper)(e)).ln(), 0.05, 10.0);
    panel(
        &left,
        &format!("Frequency oracles, d = {d}: n Var[f_hat(v)], mean over v"),
        "n x variance of one frequency estimate",
        results,
        &freq,
        &fine,
        eps_hi,
        paper_crossing(&freq[0], &freq[2]).map(|x| {
            (
                x,
                format!("GRR = OUE in the paper: d = 3e^eps + 2 (eps = {x:.2})"),
            )
        }),
    )?;
    panel(
        &right,
        "Mean mechanisms at their worst-case input: n Var[mean]",
        "n x variance of the mean, [-1, 1] units",
        results,
        &mean,
        &fine,
        eps_hi,
        paper_crossing(&mean[2], &mean[1])
            .map(|x| (x, format!("Piecewise = Duchi in the paper (eps = {x:.2})"))),
    )?;
    root.present()?;
    Ok(())
}

/// One panel: per mechanism the exact variance of what is simulated (solid), the
/// paper's formula (dashed) and the simulated points; a dotted vertical line at
/// the paper's crossover.
#[allow(clippy::too_many_arguments)]
fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    y_desc: &str,
    results: &[Point],
    curves: &[Curve],
    fine: &[f64],
    eps_hi: f64,
    marker: Option<(f64, String)>,
) -> anyhow::Result<()> {
    let mut y_min = f64::INFINITY;
    let mut y_max = f64::NEG_INFINITY;
    for c in curves {
        let simulated = series(results, c.name).into_iter().map(|p| p.empirical);
        let lines = fine.iter().flat_map(|&e| [(c.paper)(e), (c.exact)(e)]);
        for y in simulated.chain(lines).filter(|y| y.is_finite()) {
            y_min = y_min.min(y);
            y_max = y_max.max(y);
        }
    }
    if !(y_min.is_finite() && y_max.is_finite() && y_min > 0.0) {
        bail!("nothing to plot");
    }
    let (y_min, y_max) = (y_min / 1.5, y_max * 1.5);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..eps_hi, (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("epsilon")
        .y_desc(y_desc)
        .y_label_formatter(&|y| format!("{y:.0e}"))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    let grey = RGBColor(110, 110, 110);
    if let Some((x, label)) = marker {
        chart
            .draw_series(DashedLineSeries::new(
                [(x, y_min), (x, y_max)],
                2,
                4,
                grey.stroke_width(1),
            ))?
            .label(label)
            .legend(move |(lx, ly)| PathElement::new([(lx, ly), (lx + 20, ly)], grey));
    }
    for (i, c) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                fine.iter().map(|&e| (e, (c.exact)(e))),
                color.stroke_width(2),
            ))?
            .label(c.name)
            .legend(move |(lx, ly)| {
                PathElement::new([(lx, ly), (lx + 20, ly)], color.stroke_width(2))
            });
        chart.draw_series(DashedLineSeries::new(
            fine.iter().map(|&e| (e, (c.paper)(e))),
            6,
            4,
            color.stroke_width(1),
        ))?;
        chart.draw_series(
            series(results, c.name)
                .into_iter()
                .map(|p| Circle::new((p.epsilon, p.empirical), 3, color.filled())),
        )?;
    }
    // Legend entries for the line styles themselves.
    chart
        .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
        .label("solid: exact variance of the simulated estimator")
        .legend(move |(lx, ly)| PathElement::new([(lx, ly), (lx + 20, ly)], BLACK.stroke_width(2)));
    chart
        .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
        .label("dashed: the paper's formula; dots: simulated")
        .legend(move |(lx, ly)| Circle::new((lx + 10, ly), 3, BLACK.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()?;
    Ok(())
}

/// The one-layer frequency oracles: the sweep compares mechanisms at one
/// epsilon, and a two-layer oracle's report costs what its composed one-layer
/// channel costs (examples/mechanism_table.rs lists those).
fn one_layer_frequency() -> impl Iterator<Item = FrequencyKind> {
    FrequencyKind::ALL.into_iter().filter(|k| !k.is_two_layer())
}

/// The one-layer numeric mechanisms, as [`one_layer_frequency`].
fn one_layer_numeric() -> impl Iterator<Item = NumericKind> {
    NumericKind::ALL.into_iter().filter(|k| !k.is_two_layer())
}
