//! Which two-layer mechanism each catalog metric should use, by exact variance
//! at the catalog's terms, on the simulated working-day population of the demo;
//! and how the terms (epsilon per value against epsilon per report) trade
//! fresh noise against what a year reveals.
//!
//! For every frequency metric (its buckets or categories) the candidates are
//! L-GRR, L-SUE, L-OUE, L-OSUE and dBitFlipPM; the figure is the variance of
//! one fresh report's estimate of the metric's largest bucket (n Var), and of
//! the average bucket. For every count the candidates are L-1BitMean and the
//! permanent-grid-value construction for the Piecewise Mechanism (a permanent
//! PM response at epsilon_perm, re-randomized on every report by a PM at
//! epsilon_1 over the permanent layer's output range, which makes each report
//! epsilon_1-LDP by post-processing); the figure is `n Var / mean^2`, the
//! relative variance of the mean per device. From either, the devices needed
//! for a 95% half-width of ±10% a day are `(1.96 / 0.1)^2 n Var / target^2`.
//!
//! Everything is exact (the realized mechanisms' variance formulas); the
//! population is simulated (the demo's people: `hush_capture::synthetic`).
//!
//! ```sh
//! cargo run --release --example two_layer_table -- [--people 2000] [--seed 1] [--quick]
//! ```

use anyhow::Context;
use clap::Parser;
use hush_capture::synthetic::Persona;
use hush_ldp::{
    AnyFrequencyOracle, FrequencyKind, FrequencyOracle, LOneBitMean, NoiseRng, NumericMechanism,
    Piecewise, Range, TwoLayer,
};
use hush_report::{Catalog, Encoding, MetricValue};
use hush_stats::frequency_variance;
use rand::SeedableRng;

/// Exact variances of the candidate two-layer mechanisms per catalog metric.
#[derive(Debug, Parser)]
struct Args {
    /// Simulated people (five working days each).
    #[arg(long, default_value_t = 2000)]
    people: u64,
    /// Seed of the simulated people.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// What one report reveals.
    #[arg(long, default_value_t = 2.0)]
    epsilon: f64,
    /// What all reports of one unchanged value reveal.
    #[arg(long, default_value_t = 4.0)]
    epsilon_perm: f64,
    /// 200 people, for the smoke test.
    #[arg(long)]
    quick: bool,
}

const FREQUENCY: [FrequencyKind; 5] = [
    FrequencyKind::LGrr,
    FrequencyKind::LSue,
    FrequencyKind::LOue,
    FrequencyKind::LOsue,
    FrequencyKind::DBitFlipPm,
];

/// Devices for a 95% half-width of ±10% of `target` with per-device variance `var`.
fn devices_for_10pct(var: f64, target: f64) -> f64 {
    (1.96f64 / 0.1).powi(2) * var / (target * target)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let people = if args.quick { 200 } else { args.people };
    let (one, perm) = (args.epsilon, args.epsilon_perm);
    let catalog = Catalog::builtin();

    // The working days of the demo's population, as each metric's values.
    let mut values: Vec<Vec<MetricValue>> = vec![Vec::new(); catalog.metrics().len()];
    let mut rng = NoiseRng::seed_from_u64(args.seed);
    for _ in 0..people {
        let persona = Persona::sample(&mut rng);
        for weekday in 0..5 {
            let raw = persona.measured_day(weekday, &mut rng);
            for (m, v) in catalog.metrics().iter().zip(&mut values) {
                v.push(m.value(&raw));
            }
        }
    }

    println!(
        "# Two-layer mechanisms for the catalog, epsilon {one} per report and {perm} per value"
    );
    println!();
    println!(
        "{people} simulated people x 5 working days (the demo's population). n Var: variance of one fresh device's report's estimate; devices: the fleet a 95% interval of ±10% of the truth needs in a day with every report on this metric (divide by the share of reports a metric gets)."
    );
    println!();
    println!(
        "## Buckets and categories: n Var of the largest bucket's frequency (and the average bucket's) [change epsilon]"
    );
    println!();
    println!(
        "change epsilon: what one report reveals about which of a device's permanent answers it carries, to a collector that has learned them all (by averaging a year of reports): what each day adds about *when* a value changed. best: the lowest variance among mechanisms whose change epsilon is at most {} x epsilon per report.",
        hush_report::MAX_CHANGE_FACTOR
    );
    println!();
    println!(
        "| metric | d | largest bucket | f | l-grr | l-sue | l-oue | l-osue | dbitflip-pm | best | devices at best |"
    );
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |");
    for (metric, vals) in catalog.metrics().iter().zip(&values) {
        let Some(d) = metric.domain() else { continue };
        let mut counts = vec![0u64; d as usize];
        for v in vals {
            if let MetricValue::Category(c) = v {
                counts[*c as usize] += 1;
            }
        }
        let total = counts.iter().sum::<u64>() as f64;
        let freqs: Vec<f64> = counts.iter().map(|&c| c as f64 / total).collect();
        let (top, f_top) = freqs
            .iter()
            .copied()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .context("a metric with buckets")?;
        let labels = match &metric.encoding {
            Encoding::Buckets { labels, .. } | Encoding::Categories { labels, .. } => labels,
            Encoding::Numeric { .. } => continue,
        };
        let mut cells = Vec::new();
        let mut best = (f64::INFINITY, "");
        for kind in FREQUENCY {
            let o = AnyFrequencyOracle::two_layer(kind, perm, one, u64::from(d))?;
            let probs = o.support_probabilities();
            let at_top = frequency_variance(probs, 1, f_top);
            let average = freqs
                .iter()
                .map(|&f| frequency_variance(probs, 1, f))
                .sum::<f64>()
                / f64::from(d);
            let change = o
                .epsilon_change()
                .context("a two-layer oracle has a change epsilon")?;
            if at_top < best.0 && change <= hush_report::MAX_CHANGE_FACTOR * one {
                best = (at_top, kind.name());
            }
            cells.push(format!("{at_top:.3} ({average:.3}) [{change:.2}]"));
        }
        println!(
            "| {} | {d} | {} | {f_top:.3} | {} | {} | {:.0} |",
            metric.name,
            labels[top],
            cells.join(" | "),
            best.1,
            devices_for_10pct(best.0, f_top)
        );
    }

    println!();
    println!("## Counts: n Var / mean^2 of the mean (relative variance per device)");
    println!();
    println!(
        "| metric | range | mean | clipped | l-onebit | permanent PM + fresh PM | best | devices at best |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | --- | ---: |");
    for (metric, vals) in catalog.metrics().iter().zip(&values) {
        let Encoding::Numeric { lo, hi, .. } = metric.encoding else {
            continue;
        };
        let range = Range::new(lo, hi)?;
        let xs: Vec<f64> = vals
            .iter()
            .filter_map(|v| match v {
                MetricValue::Number(x) => Some(*x),
                MetricValue::Category(_) => None,
            })
            .collect();
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let spread = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        let clipped = xs.iter().filter(|&&x| x >= hi).count() as f64 / n;
        let onebit = LOneBitMean::new(perm, one, range)?;
        let v_onebit = xs.iter().map(|&x| onebit.variance_at(x)).sum::<f64>() / n + spread;
        let v_pm = xs
            .iter()
            .map(|&x| layered_piecewise_variance(perm, one, range, x))
            .sum::<anyhow::Result<f64>>()?
            / n
            + spread;
        let (best, name) = if v_onebit <= v_pm {
            (v_onebit, "l-onebit")
        } else {
            (v_pm, "PM + PM")
        };
        println!(
            "| {} | [{lo}, {hi}] | {mean:.1} | {:.1}% | {:.2} | {:.2} | {name} | {:.0} |",
            metric.name,
            100.0 * clipped,
            v_onebit / (mean * mean),
            v_pm / (mean * mean),
            devices_for_10pct(best, mean)
        );
    }

    println!();
    println!("## The terms: epsilon per value against epsilon per report {one}");
    println!();
    println!(
        "fresh layer: the instantaneous layer's own loss, what one report adds about the permanent response: the lower, the less a collector learns of *when* a value changed. Per-report variance: L-GRR at d = 9, L-1BitMean at the middle of its range."
    );
    println!();
    println!(
        "| epsilon per value | L-GRR d=9 n Var | L-GRR fresh layer | L-1BitMean n Var (range 1) | L-1BitMean fresh layer | any 365 days, 10 metrics x 8 values |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for p in [1.5 * one, 2.0 * one, 3.0 * one, 4.0 * one] {
        if p > hush_ldp::MAX_EPSILON {
            continue;
        }
        let AnyFrequencyOracle::LGrr(g) =
            AnyFrequencyOracle::two_layer(FrequencyKind::LGrr, p, one, 9)?
        else {
            anyhow::bail!("l-grr builds L-GRR");
        };
        let grr_var = frequency_variance(g.support_probabilities(), 1, 0.0);
        let b = LOneBitMean::new(p, one, Range::UNIT)?;
        let keep = b.keep_threshold().prob();
        println!(
            "| {p} | {grr_var:.3} | {:.2} | {:.3} | {:.2} | {} |",
            g.instantaneous_layer().epsilon(),
            b.variance_at(0.5),
            (keep / (1.0 - keep)).ln(),
            80.0 * p
        );
        let _ = g.epsilon_perm();
    }
    Ok(())
}

/// The variance of one report of the permanent-grid-value construction for
/// the Piecewise Mechanism at input `x`: a permanent PM response `B` at
/// `epsilon_perm` over `range`, then a PM at `epsilon_1` over the range `B`
/// can take. `Var = Var_perm(x) + E[Var_inst(B)]`, and `Var_inst` is a
/// quadratic in its input, so `E[Var_inst(B)] = Var_inst(x) + k Var_perm(x)`
/// with `k` its second-order coefficient.
fn layered_piecewise_variance(perm: f64, one: f64, range: Range, x: f64) -> anyhow::Result<f64> {
    let p = Piecewise::new(perm, range)?;
    let grid = p.grid(0).context("piecewise has one grid")?;
    let (a, b) = (grid.at(0), grid.at(i64::from(p.cells()) - 1));
    let outer = Range::new(a.min(b), a.max(b))?;
    let inst = Piecewise::new(one, outer)?;
    let c = 0.5 * (outer.lo() + outer.hi());
    let h = 0.25 * outer.width();
    let k = (inst.variance_at(c + h) + inst.variance_at(c - h) - 2.0 * inst.variance_at(c))
        / (2.0 * h * h);
    let var_perm = p.variance_at(x);
    Ok(var_perm + inst.variance_at(x) + k * var_perm)
}
