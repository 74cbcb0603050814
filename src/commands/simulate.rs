//! `hush simulate frequency|mean`: trials of a mechanism and its estimator against the theory.

use std::process::ExitCode;

use hush_stats::simulate::{Trials, simulate_frequency, simulate_mean};
use indicatif::{ProgressBar, ProgressStyle};

use crate::args::{FrequencyArgs, MeanArgs, TrialArgs};

fn trials(a: &TrialArgs) -> Trials {
    let threads = a.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        |t| t as usize,
    );
    Trials {
        users: a.users,
        trials: a.trials,
        seed: a.seed,
        level: a.level,
        threads,
    }
}

/// A progress bar on stderr when it is a terminal and the output is not JSON.
fn progress_bar(a: &TrialArgs) -> ProgressBar {
    if a.json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(a.trials);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} trials {pos}/{len} [{bar:30}] {elapsed} (eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// The relative standard error of a variance estimated from `t` trials, `sqrt(2/(t-1))`.
fn variance_rse(t: u64) -> f64 {
    (2.0 / (t as f64 - 1.0)).sqrt()
}

/// The standard error of a coverage fraction over `k` independent intervals at `level`.
fn coverage_se(level: f64, k: f64) -> f64 {
    (level * (1.0 - level) / k).sqrt()
}

/// The epsilon per value of a two-layer mechanism, as given or defaulted.
fn perm_of(two_layer: bool, epsilon: f64, epsilon_perm: Option<f64>) -> Option<f64> {
    two_layer.then(|| epsilon_perm.unwrap_or(hush_ldp::DEFAULT_PERM_RATIO * epsilon))
}

/// ", N per value" for a two-layer mechanism (one report per fresh device).
fn perm_words(two_layer: bool, epsilon: f64, epsilon_perm: Option<f64>) -> String {
    perm_of(two_layer, epsilon, epsilon_perm)
        .map_or_else(String::new, |perm| format!(" per report, {perm} per value"))
}

/// Runs `hush simulate frequency`.
pub fn frequency(a: &FrequencyArgs) -> anyhow::Result<ExitCode> {
    let t = trials(&a.trials);
    let bar = progress_bar(&a.trials);
    let s = simulate_frequency(
        a.mechanism,
        super::privacy(a.trials.epsilon, a.trials.epsilon_perm)?,
        a.domain,
        a.distribution,
        t,
        &|done| bar.set_position(done),
    )?;
    bar.finish_and_clear();
    let ratio = s.empirical_variance / s.theoretical_variance;
    if a.trials.json {
        let json = serde_json::json!({
            "mechanism": s.kind.name(),
            "epsilon": a.trials.epsilon,
            "epsilon_perm": perm_of(s.kind.is_two_layer(), a.trials.epsilon, a.trials.epsilon_perm),
            "realized_epsilon": s.realized_epsilon,
            "domain": s.domain,
            "users": t.users,
            "trials": t.trials,
            "seed": t.seed,
            "distribution": a.distribution.to_string(),
            "level": t.level,
            "empirical_variance": s.empirical_variance,
            "theoretical_variance": s.theoretical_variance,
            "paper_variance": s.paper_variance,
            "variance_ratio": ratio,
            "bias": s.bias,
            "max_bias_z": s.max_bias_z,
            "ci_coverage": s.ci_coverage,
        });
        println!("{json}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "simulate frequency: {} at epsilon {}{} (realized {:.6}), domain {}, {} users ({}), {} trials, seed {}",
        s.kind,
        a.trials.epsilon,
        perm_words(
            s.kind.is_two_layer(),
            a.trials.epsilon,
            a.trials.epsilon_perm
        ),
        s.realized_epsilon,
        s.domain,
        t.users,
        a.distribution,
        t.trials,
        t.seed
    );
    println!();
    println!(
        "  {:<34} {:>12}  note",
        "quantity (per-value frequency)", "value"
    );
    println!(
        "  {:<34} {:>12.4e}  variance of f_hat(v) across trials, mean over v",
        "empirical variance", s.empirical_variance
    );
    println!(
        "  {:<34} {:>12.4e}  exact, from the realized probabilities",
        "theoretical variance", s.theoretical_variance
    );
    println!(
        "  {:<34} {:>12.4e}  {}, q(1-q)/(n(p-q)^2)",
        "paper variance",
        s.paper_variance,
        if s.kind.is_two_layer() {
            "Arcolezi et al. 2022 / Ding et al. 2017 layers"
        } else {
            "Wang et al. 2017"
        }
    );
    println!(
        "  {:<34} {:>12.4}  expect 1 +- {:.3} (one standard error)",
        "empirical / theoretical",
        ratio,
        variance_rse(t.trials) / f64::from(s.domain).sqrt()
    );
    println!(
        "  {:<34} {:>12.3e}  mean over v of the mean error",
        "bias", s.bias
    );
    println!(
        "  {:<34} {:>12.2}  largest |mean error| in standard errors",
        "max |bias| (z)", s.max_bias_z
    );
    println!(
        "  {:<34} {:>12.4}  expect {} +- {:.4} (one standard error)",
        format!("{:.0}% CI coverage", t.level * 100.0),
        s.ci_coverage,
        t.level,
        coverage_se(t.level, f64::from(s.domain) * t.trials as f64)
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `hush simulate mean`.
pub fn mean(a: &MeanArgs) -> anyhow::Result<ExitCode> {
    let t = trials(&a.trials);
    let bar = progress_bar(&a.trials);
    let privacy = super::privacy(a.trials.epsilon, a.trials.epsilon_perm)?;
    let s = simulate_mean(a.mechanism, privacy, a.population, t, &|done| {
        bar.set_position(done)
    })?;
    bar.finish_and_clear();
    let ratio = s.empirical_variance / s.theoretical_variance;
    if a.trials.json {
        let json = serde_json::json!({
            "mechanism": s.kind.name(),
            "epsilon": a.trials.epsilon,
            "epsilon_perm": perm_of(s.kind.is_two_layer(), a.trials.epsilon, a.trials.epsilon_perm),
            "realized_epsilon": s.realized_epsilon,
            "range": [s.range.lo(), s.range.hi()],
            "population": a.population.to_string(),
            "users": t.users,
            "trials": t.trials,
            "seed": t.seed,
            "level": t.level,
            "true_mean": s.true_mean,
            "empirical_variance": s.empirical_variance,
            "theoretical_variance": s.theoretical_variance,
            "paper_variance": s.paper_variance,
            "variance_ratio": ratio,
            "bias": s.bias,
            "bias_z": s.bias_z,
            "ci_coverage": s.ci_coverage,
        });
        println!("{json}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "simulate mean: {} at epsilon {}{} (realized {:.6}), range {}, {} users ({}), {} trials, seed {}",
        s.kind,
        a.trials.epsilon,
        perm_words(
            s.kind.is_two_layer(),
            a.trials.epsilon,
            a.trials.epsilon_perm
        ),
        s.realized_epsilon,
        super::describe_range(s.range),
        t.users,
        a.population,
        t.trials,
        t.seed
    );
    println!();
    println!("  {:<34} {:>12}  note", "quantity (mean estimate)", "value");
    println!(
        "  {:<34} {:>12.6}  mean of the users' clipped values",
        "true mean", s.true_mean
    );
    println!(
        "  {:<34} {:>12.4e}  variance of the estimate across trials",
        "empirical variance", s.empirical_variance
    );
    println!(
        "  {:<34} {:>12.4e}  exact, from the realized mechanism",
        "theoretical variance", s.theoretical_variance
    );
    println!(
        "  {:<34} {:>12.4e}  the paper's continuous formula",
        "paper variance", s.paper_variance
    );
    println!(
        "  {:<34} {:>12.4}  expect 1 +- {:.3} (one standard error)",
        "empirical / theoretical",
        ratio,
        variance_rse(t.trials)
    );
    println!(
        "  {:<34} {:>12.3e}  {:.2} standard errors",
        "bias", s.bias, s.bias_z
    );
    println!(
        "  {:<34} {:>12.4}  expect {} +- {:.4} (one standard error)",
        format!("{:.0}% CI coverage", t.level * 100.0),
        s.ci_coverage,
        t.level,
        coverage_se(t.level, t.trials as f64)
    );
    Ok(ExitCode::SUCCESS)
}
