//! `hush plan`: what a fleet of a given size will see, metric by metric, per
//! day and pooled over a working week, from the demo's simulated population.

use std::process::ExitCode;

use hush_capture::synthetic::{WORKING_DAYS, working_weeks};
use hush_collector::plan::{DeviceDays, MetricPlan, Window, balanced_weights, plan};
use hush_report::Catalog;

use crate::args::PlanArgs;

/// The built-in catalog's plan at the given terms on `people` simulated working weeks.
pub fn builtin_plan(
    epsilon: f64,
    epsilon_perm: f64,
    people: u64,
    seed: u64,
) -> anyhow::Result<Vec<MetricPlan>> {
    let catalog = Catalog::builtin();
    let population: Vec<DeviceDays> = working_weeks(&catalog, people, seed)
        .into_iter()
        .map(|days| DeviceDays { days })
        .collect();
    Ok(plan(&catalog, epsilon_perm, epsilon, &population, 4, seed)?)
}

/// Runs `hush plan`.
pub fn run(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let perm = super::epsilon_perm(args.epsilon, args.epsilon_perm)?;
    let plans = builtin_plan(args.epsilon, perm, args.people, args.seed)?;
    let n = args.devices as f64;
    if args.csv {
        println!(
            "metric,for,truth,clipped_share,clipping_bias,share,day_half_width,week_half_width,devices_day,devices_week"
        );
        for p in &plans {
            println!(
                "{},\"{}\",{},{},{},{},{},{},{},{}",
                p.name,
                p.target.replace('"', "\"\""),
                p.truth,
                p.clipped_share,
                p.clipping_bias / p.truth,
                p.share,
                p.relative_half_width(Window::Day, n),
                p.relative_half_width(Window::Pooled, n),
                p.devices_for(Window::Day, args.target).ceil(),
                p.devices_for(Window::Pooled, args.target).ceil(),
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let pct = |x: f64| format!("{:.1}%", 100.0 * x);
    println!(
        "Hush plan: {} laptops, epsilon {} per report and {perm} per value, the built-in catalog",
        args.devices, args.epsilon
    );
    println!(
        "Population: {} simulated people x {WORKING_DAYS} working days (seed {}); 'week' pools those days with errors clustered by device.",
        args.people, args.seed
    );
    println!();
    println!(
        "  {:<28} {:<14} {:>10} {:>8} {:>7} {:>10} {:>10} {:>13} {:>13}",
        "metric",
        "for",
        "truth",
        "clipped",
        "share",
        "day +-",
        "week +-",
        format!("day {}", pct(args.target)),
        format!("week {}", pct(args.target)),
    );
    for p in &plans {
        println!(
            "  {:<28} {:<14} {:>10} {:>8} {:>7} {:>10} {:>10} {:>13.0} {:>13.0}",
            p.name,
            p.target,
            super::fmt_value(p.truth),
            pct(p.clipped_share),
            pct(p.share),
            pct(p.relative_half_width(Window::Day, n)),
            pct(p.relative_half_width(Window::Pooled, n)),
            p.devices_for(Window::Day, args.target),
            p.devices_for(Window::Pooled, args.target),
        );
    }
    println!();
    println!(
        "day +- / week +-: expected 95% half-width as a share of the truth at {} laptops. The last two columns: laptops needed for +-{} of the truth.",
        args.devices,
        pct(args.target)
    );
    println!(
        "clipped: working days above the metric's range; clipping moves the mean by at most the bias printed by --weights."
    );
    if args.weights {
        println!();
        println!("Sampling weights that give every metric the same relative precision per day:");
        let weights = balanced_weights(&plans, 1000);
        for ((p, w), m) in plans.iter().zip(weights).zip(Catalog::builtin().metrics()) {
            println!(
                "  {:<28} now {:>4}  balanced {:>4}  clipping bias {:+.2}%",
                p.name,
                m.weight,
                w,
                100.0 * p.clipping_bias / p.truth
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
