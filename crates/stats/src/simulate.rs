//! Monte Carlo simulations of a mechanism and its estimator over many trials, for
//! checking empirical variance, bias and interval coverage against the theory.
//!
//! Trials run on `threads` scoped threads. Each trial draws from its own ChaCha
//! stream (the seed's key, stream number = trial index), and frequency results
//! are accumulated as exact integers, so results depend only on the seed, never
//! on the thread count or scheduling.

use std::sync::atomic::{AtomicU64, Ordering};

use hush_ldp::batch::{FrequencyBatch, NumericBatch};
use hush_ldp::sampling::UniformBelow;
use hush_ldp::{
    AnyFrequencyOracle, AnyNumericMechanism, FrequencyKind, FrequencyOracle, GridPoint, NoiseRng,
    NumericKind, NumericMechanism, Privacy, Range,
};
use rand::SeedableRng;

use crate::{
    Distribution, FrequencyAggregate, MeanAggregate, Population, StatsError, frequency_variance,
    mean_variance, normal_quantile,
};

/// Reports per batch-kernel call: large enough that a call's fixed cost
/// vanishes, small enough that the buffers stay in cache.
const BATCH: usize = 4096;

/// Called with the number of finished trials, from any worker thread.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// Shared settings of a simulation run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trials {
    /// Number of simulated users (one report each per trial).
    pub users: u64,
    /// Number of independent trials (at least 2).
    pub trials: u64,
    /// Seed of every random draw.
    pub seed: u64,
    /// Confidence level of the intervals whose coverage is measured.
    pub level: f64,
    /// Worker threads (at least 1).
    pub threads: usize,
}

impl Trials {
    fn validate(&self) -> Result<(), StatsError> {
        let arg = |name, valid, value: String| Err(StatsError::Argument { name, valid, value });
        if self.users < 2 {
            return arg("--users", "at least 2", self.users.to_string());
        }
        if self.trials < 2 {
            return arg("--trials", "at least 2", self.trials.to_string());
        }
        if self.threads == 0 {
            return arg("--threads", "at least 1", "0".into());
        }
        normal_quantile(self.level).map(|_| ())
    }

    /// The generator of trial `t`: the seed's key, ChaCha stream `t`.
    pub fn trial_rng(&self, t: u64) -> NoiseRng {
        let mut rng = NoiseRng::seed_from_u64(self.seed);
        rng.set_stream(t);
        rng
    }

    /// Runs `trial` for every trial index on the worker threads and returns the
    /// results in trial order.
    fn run<T: Send>(
        &self,
        progress: Progress<'_>,
        trial: impl Fn(u64) -> Result<T, StatsError> + Sync,
    ) -> Result<Vec<T>, StatsError> {
        let done = AtomicU64::new(0);
        let threads = self.threads.min(self.trials as usize).max(1);
        let per_thread = on_threads(threads, |w| {
            (w as u64..self.trials)
                .step_by(threads)
                .map(|t| {
                    let r = trial(t)?;
                    progress(done.fetch_add(1, Ordering::Relaxed) + 1);
                    Ok((t, r))
                })
                .collect::<Result<Vec<_>, StatsError>>()
        });
        let mut all = Vec::with_capacity(self.trials as usize);
        for part in per_thread {
            all.extend(part?);
        }
        all.sort_by_key(|(t, _)| *t);
        Ok(all.into_iter().map(|(_, r)| r).collect())
    }
}

/// Runs `work(i)` for every `i` in `0..count`, each on its own scoped thread,
/// and returns the results in index order; a panic in a worker is resumed on
/// the caller. The one thread pool of simulations, audits and the examples.
pub fn on_threads<T: Send>(count: usize, work: impl Fn(usize) -> T + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..count)
            .map(|i| {
                let work = &work;
                s.spawn(move || work(i))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// What a frequency-oracle simulation measured.
#[derive(Debug, Clone, PartialEq)]
pub struct FrequencySummary {
    /// The mechanism simulated.
    pub kind: FrequencyKind,
    /// The epsilon its realized thresholds guarantee.
    pub realized_epsilon: f64,
    /// Domain size.
    pub domain: u32,
    /// Variance across trials of `f_hat(v)`, averaged over all `v`.
    pub empirical_variance: f64,
    /// The same from the exact variance formula with the realized probabilities.
    pub theoretical_variance: f64,
    /// The paper's approximate variance `Var*/n` (Wang et al. 2017), for comparison.
    pub paper_variance: f64,
    /// Mean over `v` of the mean error `f_hat(v) - f(v)` across trials.
    pub bias: f64,
    /// Largest `|mean error|` over `v`, in standard errors of that mean.
    pub max_bias_z: f64,
    /// Fraction of (trial, value) pairs whose interval contains the truth.
    pub ci_coverage: f64,
}

/// Runs `trials` independent rounds of `users` users, distributed over the
/// domain by `distribution` (fixed across trials), through the oracle and its estimator.
pub fn simulate_frequency(
    kind: FrequencyKind,
    privacy: impl Into<Privacy>,
    domain: u64,
    distribution: Distribution,
    trials: Trials,
    progress: Progress<'_>,
) -> Result<FrequencySummary, StatsError> {
    trials.validate()?;
    let privacy = privacy.into();
    let oracle = AnyFrequencyOracle::build(kind, privacy, domain)?;
    let d = oracle.domain();
    let counts = distribution.counts(d, trials.users);
    let probs = oracle.support_probabilities();
    let per = oracle.slots_per_report();
    let per_trial = trials.run(progress, |t| {
        let mut rng = trials.trial_rng(t);
        let mut agg = FrequencyAggregate::new(d);
        // The batch kernel, a chunk of one value's users at a time.
        let mut slots = vec![0u64; BATCH * per];
        for (v, &c) in counts.iter().enumerate() {
            let mut left = c;
            while left > 0 {
                let n = left.min(BATCH as u64) as usize;
                let out = &mut slots[..n * per];
                oracle.perturb_repeated(v as u32, out, &mut rng)?;
                for words in out.chunks_exact(per) {
                    agg.add(&oracle, &oracle.report_from_slots(words)?)?;
                }
                left -= n as u64;
            }
        }
        let est = agg.estimate(probs, trials.level)?;
        let covered: Vec<bool> = est
            .values
            .iter()
            .zip(&counts)
            .map(|(e, &c)| e.interval.contains(c as f64 / trials.users as f64))
            .collect();
        Ok((agg, covered))
    })?;

    // Support counts are integers: accumulate them exactly, then map through
    // the estimator's affine transform once.
    let n = trials.users as f64;
    let tcount = trials.trials as f64;
    let scale = 1.0 / (n * (probs.p - probs.q));
    let (mut emp, mut theo, mut bias, mut max_z, mut covered) = (0.0, 0.0, 0.0, 0.0f64, 0u64);
    for v in 0..d as usize {
        let (mut s, mut ss) = (0u128, 0u128);
        for (agg, cov) in &per_trial {
            let c = u128::from(agg.support_counts()[v]);
            s += c;
            ss += c * c;
            covered += u64::from(cov[v]);
        }
        let mean_c = s as f64 / tcount;
        let var_c = (ss as f64 - s as f64 * mean_c) / (tcount - 1.0);
        let truth = counts[v] as f64 / n;
        let mean_est = (mean_c / n - probs.q) * n * scale;
        let var_est = var_c * scale * scale;
        let exact = frequency_variance(probs, trials.users, truth);
        emp += var_est;
        theo += exact;
        bias += mean_est - truth;
        max_z = max_z.max((mean_est - truth).abs() / (exact / tcount).sqrt());
    }
    let df = f64::from(d);
    Ok(FrequencySummary {
        kind,
        realized_epsilon: oracle.epsilon(),
        domain: d,
        empirical_variance: emp / df,
        theoretical_variance: theo / df,
        paper_variance: kind.paper_count_variance(privacy, d) / n,
        bias: bias / df,
        max_bias_z: max_z,
        ci_coverage: covered as f64 / (df * tcount),
    })
}

/// What a mean-estimation simulation measured.
#[derive(Debug, Clone, PartialEq)]
pub struct MeanSummary {
    /// The mechanism simulated.
    pub kind: NumericKind,
    /// The epsilon its realized thresholds guarantee.
    pub realized_epsilon: f64,
    /// The clipping range (`[-1, 1]`, or `[0, 1]` for 1BitMean).
    pub range: Range,
    /// The population's true mean (of clipped values).
    pub true_mean: f64,
    /// Variance across trials of the mean estimate.
    pub empirical_variance: f64,
    /// `(mean_x Var[y | x] + Var[x]) / n` from the realized mechanism.
    pub theoretical_variance: f64,
    /// The same with the paper's continuous formula for `Var[y | x]`, for comparison.
    pub paper_variance: f64,
    /// Mean over trials of the estimate minus the truth.
    pub bias: f64,
    /// `|bias|` in standard errors of the mean over trials.
    pub bias_z: f64,
    /// Fraction of trials whose interval contains the truth.
    pub ci_coverage: f64,
}

/// The range a numeric mechanism is simulated on: `[0, 1]` for 1BitMean (as in
/// Ding et al.), `[-1, 1]` otherwise (as in Duchi et al. and Wang et al.).
pub fn simulation_range(kind: NumericKind) -> Range {
    match kind {
        NumericKind::OneBit | NumericKind::LOneBit => Range::UNIT,
        _ => Range::SYMMETRIC_UNIT,
    }
}

/// Runs `trials` independent rounds in which `users` users, drawn independently
/// from `population`, report through the mechanism to its estimator.
///
/// The population is the quantile grid `population.values(range, users)`; each
/// trial draws its users from it with replacement. The truth is the population
/// mean, so the interval (whose standard error comes from the reports' sample
/// variance) is checked for what it claims: coverage of the population mean,
/// with variance `(mean_x Var[y | x] + Var[x]) / n`.
pub fn simulate_mean(
    kind: NumericKind,
    privacy: impl Into<Privacy>,
    population: Population,
    trials: Trials,
    progress: Progress<'_>,
) -> Result<MeanSummary, StatsError> {
    trials.validate()?;
    let privacy = privacy.into();
    let epsilon = privacy.epsilon;
    let range = simulation_range(kind);
    let mechanism = AnyNumericMechanism::build(kind, privacy, range)?;
    let values: Vec<f64> = population
        .values(range, trials.users)?
        .into_iter()
        .map(|x| x.clamp(range.lo(), range.hi()))
        .collect();
    let n = trials.users as f64;
    let truth = values.iter().sum::<f64>() / n;
    let spread = values.iter().map(|x| (x - truth).powi(2)).sum::<f64>() / n;
    let pick = UniformBelow::new(trials.users);
    let per_trial = trials.run(progress, |t| {
        let mut rng = trials.trial_rng(t);
        let mut agg = MeanAggregate::new();
        // Users drawn a chunk at a time, then noised by the batch kernel.
        let (mut xs, mut out) = (
            vec![0.0; BATCH],
            vec![
                GridPoint {
                    branch: 0,
                    index: 0
                };
                BATCH
            ],
        );
        let mut left = trials.users;
        while left > 0 {
            let n = left.min(BATCH as u64) as usize;
            for x in &mut xs[..n] {
                *x = values[pick.sample(&mut rng) as usize];
            }
            mechanism.perturb_batch(&xs[..n], &mut out[..n], &mut rng)?;
            for &point in &out[..n] {
                agg.add(&mechanism, point)?;
            }
            left -= n as u64;
        }
        let est = agg.estimate(&mechanism, trials.level)?;
        Ok((est.mean, est.interval.contains(truth)))
    })?;
    let theoretical_variance = mean_variance(&mechanism, &values) + spread / n;
    // The paper's formulas are on [-1, 1] (1BitMean: [0, 1]), the ranges used here.
    let paper_variance = values
        .iter()
        .map(|&x| kind.paper_variance(epsilon, x))
        .sum::<f64>()
        / (n * n)
        + spread / n;
    let tcount = trials.trials as f64;
    let mean = per_trial.iter().map(|(m, _)| m).sum::<f64>() / tcount;
    let empirical_variance = per_trial
        .iter()
        .map(|(m, _)| (m - mean).powi(2))
        .sum::<f64>()
        / (tcount - 1.0);
    let covered = per_trial.iter().filter(|(_, c)| *c).count();
    Ok(MeanSummary {
        kind,
        realized_epsilon: mechanism.epsilon(),
        range,
        true_mean: truth,
        empirical_variance,
        theoretical_variance,
        paper_variance,
        bias: mean - truth,
        bias_z: (mean - truth).abs() / (theoretical_variance / tcount).sqrt(),
        ci_coverage: covered as f64 / tcount,
    })
}
