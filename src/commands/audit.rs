//! `hush audit`: an empirical lower bound on a mechanism's privacy loss.

use std::process::ExitCode;

use hush_ldp::{FrequencyOracle, NoiseRng, NumericMechanism};
use hush_stats::audit::{AuditOutcome, audit_frequency, audit_numeric};
use rand::SeedableRng;

use super::Mechanism;
use crate::args::AuditArgs;

/// Runs the audit; exits 1 if the lower bound exceeds the claimed epsilon.
pub fn run(args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let mechanism = Mechanism::from_args(
        &args.mechanism,
        args.epsilon,
        args.epsilon_perm,
        args.domain,
    )?;
    let mut rng = NoiseRng::seed_from_u64(args.seed);
    let (outcome, realized): (AuditOutcome, f64) = match &mechanism {
        Mechanism::Frequency(o) => (
            audit_frequency(o, args.samples, args.confidence, &mut rng)?,
            o.epsilon(),
        ),
        Mechanism::Numeric(m) => (
            audit_numeric(m, args.samples, args.confidence, &mut rng)?,
            m.epsilon(),
        ),
    };
    let violated = outcome.epsilon_lower_bound > outcome.claimed_epsilon;
    if args.json {
        let json = serde_json::json!({
            "mechanism": args.mechanism.to_ascii_lowercase(),
            "epsilon": args.epsilon,
            "realized_epsilon": realized,
            "domain": args.domain,
            "samples": outcome.samples,
            "seed": args.seed,
            "confidence": outcome.confidence,
            "epsilon_lower_bound": outcome.epsilon_lower_bound,
            "input_a": outcome.inputs.0,
            "input_b": outcome.inputs.1,
            "event": outcome.event,
            "hits_a": outcome.hits.0,
            "hits_b": outcome.hits.1,
            "violation": violated,
        });
        println!("{json}");
    } else {
        println!(
            "audit of {} at epsilon {} (realized {:.6}), {} samples per input, seed {}",
            args.mechanism, args.epsilon, realized, outcome.samples, args.seed
        );
        println!(
            "  inputs             {} vs {}",
            outcome.inputs.0, outcome.inputs.1
        );
        println!("  event              {}", outcome.event);
        println!(
            "  event counts       {} vs {} of {}",
            outcome.hits.0, outcome.hits.1, outcome.samples
        );
        println!(
            "  epsilon >= {:.4} with {}% confidence (claimed {:.4})",
            outcome.epsilon_lower_bound,
            outcome.confidence * 100.0,
            outcome.claimed_epsilon
        );
        if violated {
            println!("  VIOLATION: the measured privacy loss exceeds the claim");
        } else {
            println!(
                "  consistent with the claim ({:.1}% of it demonstrated)",
                100.0 * outcome.epsilon_lower_bound / outcome.claimed_epsilon
            );
        }
    }
    Ok(if violated {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
