//! `hush sample`: raw perturbed outputs of one input, for outside analysis.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context;
use hush_ldp::{FrequencyOracle, NoiseRng, NumericMechanism};
use rand::SeedableRng;

use super::{Mechanism, Usage};
use crate::args::SampleArgs;

/// Prints `count` outputs, one per line.
pub fn run(args: &SampleArgs) -> anyhow::Result<ExitCode> {
    let mechanism = Mechanism::from_args(&args.mechanism, args.epsilon, args.domain)?;
    let mut rng = match args.seed {
        Some(seed) => NoiseRng::seed_from_u64(seed),
        None => NoiseRng::try_from_rng(&mut rand::rngs::SysRng)
            .context("reading the operating system's randomness")?,
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match &mechanism {
        Mechanism::Frequency(oracle) => {
            let value: u32 = args.input.trim().parse().map_err(|_| {
                Usage(format!(
                    "--input must be a value in 0..{} for a frequency oracle, got '{}'",
                    oracle.domain(),
                    args.input
                ))
            })?;
            for _ in 0..args.count {
                writeln!(out, "{}", oracle.perturb(value, &mut rng)?)?;
            }
        }
        Mechanism::Numeric(m) => {
            let x: f64 = args
                .input
                .trim()
                .parse()
                .ok()
                .filter(|x: &f64| x.is_finite())
                .ok_or_else(|| {
                    Usage(format!(
                        "--input must be a finite number, got '{}'",
                        args.input
                    ))
                })?;
            for _ in 0..args.count {
                writeln!(out, "{}", m.decode(m.perturb(x, &mut rng)?))?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
