//! `hush sample`: raw perturbed outputs of one input, for outside analysis: from
//! fresh devices, or with `--same-device` from one device's permanent response.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context;
use hush_ldp::{FrequencyOracle, NoiseRng, NumericMechanism};
use rand::SeedableRng;

use super::{Mechanism, Usage};
use crate::args::SampleArgs;

/// Prints `count` outputs, one per line.
pub fn run(args: &SampleArgs) -> anyhow::Result<ExitCode> {
    let mechanism = Mechanism::from_args(
        &args.mechanism,
        args.epsilon,
        args.epsilon_perm,
        args.domain,
    )?;
    let two_layer = match &mechanism {
        Mechanism::Frequency(o) => o.kind().is_two_layer(),
        Mechanism::Numeric(m) => m.kind().is_two_layer(),
    };
    if args.same_device && !two_layer {
        return Err(Usage(format!(
            "--same-device needs a two-layer mechanism (l-grr, l-sue, l-oue, l-osue, l-lh, dbitflip-pm, l-onebit); '{}' has one layer, so every sample is already a fresh device",
            args.mechanism
        ))
        .into());
    }
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
            if args.same_device {
                // One device: its permanent response drawn once, fresh noise per sample.
                let permanent = oracle.permanent(value, &mut rng)?;
                for _ in 0..args.count {
                    writeln!(out, "{}", oracle.instantaneous(&permanent, &mut rng)?)?;
                }
            } else {
                for _ in 0..args.count {
                    writeln!(out, "{}", oracle.perturb(value, &mut rng)?)?;
                }
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
            if args.same_device {
                // One device: its rounding offset and the permanent bit of its grid
                // point drawn once, fresh noise per sample.
                let coarse = m.coarse(x, hush_ldp::LOneBitMean::draw_alpha(&mut rng))?;
                let permanent = m.permanent(coarse, &mut rng)?;
                for _ in 0..args.count {
                    writeln!(out, "{}", m.decode(m.instantaneous(&permanent, &mut rng)?))?;
                }
            } else {
                for _ in 0..args.count {
                    writeln!(out, "{}", m.decode(m.perturb(x, &mut rng)?))?;
                }
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
