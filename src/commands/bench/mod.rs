//! `hush bench`: an in-process measurement of the batch noising kernels against the
//! naive code a user would write and against the bound set by the random generator.
//!
//! For each workload it times the naive baseline, the mechanism's scalar `perturb`
//! and the batch kernel, counts the random bytes the kernel drew, and measures the
//! generator's fill rate in the same run. The verdict is in ratios, which transfer
//! between machines far better than absolute times: the kernel's speedup over the
//! baseline, and its time over the RNG bound (random bytes per element times the
//! generator's time per byte; no kernel can beat its own randomness).

pub mod workloads;

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::ChaCha12Rng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::args::BenchArgs;
use workloads::{BenchRng, Counting, Scale, Workload};

/// How long each measurement repeats its run (at least `MIN_RUNS` times).
const BUDGET: Duration = Duration::from_millis(350);
const MIN_RUNS: u32 = 2;
/// Times each measurement sequence is repeated, spread over the run.
const PASSES: u32 = 4;
const MAX_RUNS: u32 = 1000;

/// Bytes per generator fill when measuring its rate: the kernels' buffer size.
const FILL_CHUNK: usize = 4096;

/// One measured row.
#[derive(Debug, Serialize)]
struct Row {
    name: &'static str,
    description: String,
    unit: &'static str,
    elements: usize,
    baseline_ns: f64,
    scalar_ns: f64,
    kernel_ns: f64,
    speedup: f64,
    speedup_over_scalar: f64,
    random_bytes_per_element: f64,
    /// The generator's fill rate, measured in the same window as this kernel.
    rng_ns_per_byte: f64,
    rng_bound_ns: f64,
    bound_ratio: f64,
    target_speedup: Option<f64>,
    target_bound_ratio: Option<f64>,
    meets_targets: Option<bool>,
}

/// The generators' fill rates.
#[derive(Debug, Serialize)]
struct RngRates {
    /// The noise generator the kernels use.
    noise_rng: &'static str,
    noise_ns_per_byte: f64,
    /// ChaCha12 (`StdRng` and `rand::rng()`), for comparison.
    chacha12_ns_per_byte: f64,
}

/// Best time per element, in nanoseconds, over repeated runs of `f`.
fn best_ns(
    elements: usize,
    budget: Duration,
    f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    let mut runs: [&mut dyn FnMut() -> anyhow::Result<()>; 1] = [&mut { f }];
    Ok(best_interleaved(elements, budget, &mut runs)?[0])
}

/// Best time per element of each of `fs`, in nanoseconds: each runs
/// repeatedly for its share of the budget (at least `MIN_RUNS` times, after a
/// warm-up), and the whole sequence is done `PASSES` times. Back-to-back runs
/// keep each function's data in cache, as a real batch job would; the passes
/// spread every function over the measurement window, so a burst of load from
/// elsewhere on the machine cannot fall on one of them alone and skew their ratio.
fn best_interleaved(
    elements: usize,
    budget: Duration,
    fs: &mut [&mut dyn FnMut() -> anyhow::Result<()>],
) -> anyhow::Result<Vec<f64>> {
    let share = budget / (PASSES * fs.len().max(1) as u32);
    let mut best = vec![f64::INFINITY; fs.len()];
    for _ in 0..PASSES {
        for (f, best) in fs.iter_mut().zip(best.iter_mut()) {
            f()?; // warm-up: caches, page faults, branch predictors
            let start = Instant::now();
            let mut runs = 0;
            while runs < MIN_RUNS || (start.elapsed() < share && runs < MAX_RUNS) {
                let t = Instant::now();
                f()?;
                *best = best.min(t.elapsed().as_secs_f64());
                runs += 1;
            }
        }
    }
    Ok(best
        .into_iter()
        .map(|b| b * 1e9 / elements.max(1) as f64)
        .collect())
}

/// The generator's time per byte, filling `FILL_CHUNK`-byte buffers.
fn fill_ns_per_byte<R: Rng>(rng: &mut R, bytes: usize, budget: Duration) -> anyhow::Result<f64> {
    let mut buf = [0u8; FILL_CHUNK];
    let chunks = bytes.div_ceil(FILL_CHUNK);
    best_ns(chunks * FILL_CHUNK, budget, || {
        for _ in 0..chunks {
            rng.fill_bytes(&mut buf);
            black_box(&buf);
        }
        Ok(())
    })
}

/// Bytes the generator fills per timed run when its rate is measured beside a workload.
const FILL_PER_RUN: usize = 1 << 20;

fn measure(w: &mut Workload, budget: Duration, bar: &ProgressBar) -> anyhow::Result<Row> {
    bar.set_message(format!("{}: naive, scalar, kernel, generator", w.name));
    let mut scalar_rng: BenchRng = Counting::new(hush_ldp::NoiseRng::seed_from_u64(1));
    let mut rng: BenchRng = Counting::new(hush_ldp::NoiseRng::seed_from_u64(2));
    let mut fill_rng = hush_ldp::NoiseRng::seed_from_u64(3);
    let mut buf = [0u8; FILL_CHUNK];
    let mut runs = 0u64;
    let (baseline, scalar, kernel) = (&mut w.baseline, &mut w.scalar, &mut w.kernel);
    // The generator's rate is measured in the same window as the kernel, so
    // the bound and the kernel see the same machine.
    let per_element = |total: usize| w.elements as f64 / total as f64;
    let fill_scale = per_element(FILL_PER_RUN);
    let times = best_interleaved(
        w.elements,
        4 * budget,
        &mut [
            &mut || {
                baseline();
                Ok(())
            },
            &mut || Ok(scalar(&mut scalar_rng)?),
            &mut || {
                runs += 1;
                Ok(kernel(&mut rng)?)
            },
            &mut || {
                for _ in 0..FILL_PER_RUN / FILL_CHUNK {
                    fill_rng.fill_bytes(&mut buf);
                    black_box(&buf);
                }
                Ok(())
            },
        ],
    )?;
    let (baseline_ns, scalar_ns, kernel_ns) = (times[0], times[1], times[2]);
    let rng_ns_per_byte = times[3] * fill_scale;
    bar.inc(3);
    let bytes = rng.bytes() as f64 / (runs as f64 * w.elements as f64);
    let bound = bytes * rng_ns_per_byte;
    let (speedup, bound_ratio) = (baseline_ns / kernel_ns, kernel_ns / bound);
    let meets = match (w.target_speedup, w.target_bound_ratio) {
        (None, None) => None,
        (s, b) => Some(s.is_none_or(|s| speedup >= s) && b.is_none_or(|b| bound_ratio <= b)),
    };
    Ok(Row {
        name: w.name,
        description: w.description.clone(),
        unit: w.unit,
        elements: w.elements,
        baseline_ns,
        scalar_ns,
        kernel_ns,
        speedup,
        speedup_over_scalar: scalar_ns / kernel_ns,
        random_bytes_per_element: bytes,
        rng_ns_per_byte,
        rng_bound_ns: bound,
        bound_ratio,
        target_speedup: w.target_speedup,
        target_bound_ratio: w.target_bound_ratio,
        meets_targets: meets,
    })
}

/// Runs every workload and prints one row each (or one JSON object).
pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let (scale, budget, rng_bytes) = if args.quick {
        (Scale::Quick, Duration::ZERO, 1 << 16)
    } else {
        (Scale::Full, BUDGET, 1 << 23)
    };
    let mut work = workloads::workloads(scale)?;
    if !args.only.is_empty() {
        let known: Vec<&str> = work.iter().map(|w| w.name).collect();
        if let Some(unknown) = args.only.iter().find(|n| !known.contains(&n.as_str())) {
            return Err(super::Usage(format!(
                "--only: no kernel named {unknown:?}; the kernels are {}",
                known.join(", ")
            ))
            .into());
        }
        work.retain(|w| args.only.iter().any(|n| n == w.name));
    }
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(3 * work.len() as u64 + 1);
        bar.set_style(
            ProgressStyle::with_template("{spinner} bench {pos}/{len} [{bar:30}] {elapsed} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    };
    bar.set_message("generator fill rate");
    let rates = RngRates {
        noise_rng: "ChaCha8",
        noise_ns_per_byte: fill_ns_per_byte(
            &mut hush_ldp::NoiseRng::seed_from_u64(3),
            rng_bytes,
            budget,
        )?,
        chacha12_ns_per_byte: fill_ns_per_byte(
            &mut ChaCha12Rng::seed_from_u64(4),
            rng_bytes,
            budget,
        )?,
    };
    bar.inc(1);
    let rows = work
        .iter_mut()
        .map(|w| measure(w, budget, &bar))
        .collect::<anyhow::Result<Vec<_>>>()?;
    bar.finish_and_clear();

    if args.json {
        let json = serde_json::json!({
            "quick": args.quick,
            "rng": rates,
            "kernels": rows,
        });
        println!("{json}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "hush bench{}: best of repeated runs, ns per element; RNG {} fills {:.3} ns/byte (ChaCha12 {:.3})",
        if args.quick {
            " --quick (tiny sizes, timings not meaningful)"
        } else {
            ""
        },
        rates.noise_rng,
        rates.noise_ns_per_byte,
        rates.chacha12_ns_per_byte
    );
    println!();
    println!(
        "  {:<10} {:<6} {:>9} {:>9} {:>9} {:>8} {:>7} {:>9} {:>7}  verdict",
        "kernel", "unit", "naive", "scalar", "kernel", "speedup", "B/elem", "RNG bound", "/bound"
    );
    for r in &rows {
        let verdict = match r.meets_targets {
            None => "-".to_owned(),
            Some(met) => {
                let mut parts = Vec::new();
                if let Some(s) = r.target_speedup {
                    parts.push(format!(">= {s}x naive"));
                }
                if let Some(b) = r.target_bound_ratio {
                    parts.push(format!("<= {b}x bound"));
                }
                format!(
                    "{} ({})",
                    if met { "met" } else { "MISSED" },
                    parts.join(", ")
                )
            }
        };
        println!(
            "  {:<10} {:<6} {:>9.3} {:>9.3} {:>9.3} {:>7.1}x {:>7.3} {:>9.3} {:>6.2}x  {verdict}",
            r.name,
            r.unit,
            r.baseline_ns,
            r.scalar_ns,
            r.kernel_ns,
            r.speedup,
            r.random_bytes_per_element,
            r.rng_bound_ns,
            r.bound_ratio,
        );
    }
    println!();
    println!(
        "  naive: rand::rng() (ChaCha12) with random_bool / random_range / rand_distr per element;"
    );
    println!("  scalar: the mechanism's perturb() per element; kernel: its batch entry point.");
    println!(
        "  RNG bound: random bytes the kernel drew per element x the generator's ns/byte, timed beside it."
    );
    Ok(ExitCode::SUCCESS)
}
