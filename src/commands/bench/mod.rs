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
const MIN_RUNS: u32 = 3;
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
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    f()?; // warm-up: caches, page faults, branch predictors
    let start = Instant::now();
    let mut best = f64::INFINITY;
    let mut runs = 0;
    while runs < MIN_RUNS || (start.elapsed() < budget && runs < MAX_RUNS) {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
        runs += 1;
    }
    Ok(best * 1e9 / elements.max(1) as f64)
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

fn measure(
    w: &mut Workload,
    rng_ns: f64,
    budget: Duration,
    bar: &ProgressBar,
) -> anyhow::Result<Row> {
    bar.set_message(format!("{} baseline", w.name));
    let baseline_ns = best_ns(w.elements, budget, || {
        (w.baseline)();
        Ok(())
    })?;
    bar.inc(1);
    bar.set_message(format!("{} scalar", w.name));
    let mut rng: BenchRng = Counting::new(hush_ldp::NoiseRng::seed_from_u64(1));
    let scalar_ns = best_ns(w.elements, budget, || Ok((w.scalar)(&mut rng)?))?;
    bar.inc(1);
    bar.set_message(format!("{} kernel", w.name));
    let mut rng: BenchRng = Counting::new(hush_ldp::NoiseRng::seed_from_u64(2));
    let mut runs = 0u64;
    let kernel_ns = best_ns(w.elements, budget, || {
        runs += 1;
        Ok((w.kernel)(&mut rng)?)
    })?;
    bar.inc(1);
    let bytes = rng.bytes() as f64 / (runs as f64 * w.elements as f64);
    let bound = bytes * rng_ns;
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
        .map(|w| measure(w, rates.noise_ns_per_byte, budget, &bar))
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
    println!("  RNG bound: random bytes the kernel drew per element x the generator's ns/byte.");
    Ok(ExitCode::SUCCESS)
}
