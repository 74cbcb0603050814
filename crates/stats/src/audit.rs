//! An empirical privacy auditor: a statistical lower bound on the epsilon a mechanism realizes.
//!
//! For two neighbouring inputs `a` and `b` and an output event `E`, any
//! eps-LDP mechanism satisfies `Pr[E | a] <= e^eps Pr[E | b]`. The auditor
//! samples the mechanism on both inputs, bounds both probabilities with exact
//! Clopper–Pearson intervals, and reports `ln(lower(Pr[E|a]) / upper(Pr[E|b]))`,
//! which is below the true privacy loss with the stated confidence. A bound
//! above the claimed epsilon means the implementation is broken; a bound close
//! to it means the claim is tight. The event is chosen on a separate pilot run,
//! so choosing it does not bias the bound (Jagielski, Ullman, Oprea,
//! "Auditing Differentially Private Machine Learning", NeurIPS 2020, applied to LDP).

use hush_ldp::batch::{FrequencyBatch, NumericBatch};
use hush_ldp::{
    AnyFrequencyOracle, AnyNumericMechanism, FrequencyOracle, FrequencyOutput, GridPoint,
    HadamardResponse, LdpError, NumericMechanism,
};
use rand::CryptoRng;

use crate::{StatsError, clopper_pearson_lower, clopper_pearson_upper};

/// The result of an audit.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditOutcome {
    /// The epsilon the mechanism states.
    pub claimed_epsilon: f64,
    /// Lower bound on the realized epsilon, at `confidence`.
    pub epsilon_lower_bound: f64,
    /// Confidence of the lower bound, e.g. 0.99.
    pub confidence: f64,
    /// Samples per input in the measurement phase (the pilot uses a tenth as many more).
    pub samples: u64,
    /// The two neighbouring inputs, in words.
    pub inputs: (String, String),
    /// The output event measured, in words.
    pub event: String,
    /// How often the event occurred for the first and second input.
    pub hits: (u64, u64),
}

/// Draws one output for a fixed input and returns its class.
type Sampler<'a, R> = Box<dyn FnMut(&mut R) -> Result<usize, StatsError> + 'a>;

/// How the audit draws the mechanism's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplingPath {
    /// One scalar `perturb` call per output: the reference implementation.
    Scalar,
    /// The batch kernels (`perturb_repeated`), a few thousand outputs per call,
    /// so the audit also vouches for the code that simulations and bulk
    /// noising run.
    Batch,
}

/// Outputs per batch call when auditing the batch path.
const BATCH: usize = 4096;

/// Hands out the outputs of repeated batch calls one at a time.
struct Batched<T> {
    outputs: Vec<T>,
    next: usize,
}

impl<T: Clone> Batched<T> {
    fn new() -> Self {
        Batched {
            outputs: Vec::new(),
            next: 0,
        }
    }

    fn next(
        &mut self,
        refill: impl FnOnce(&mut Vec<T>) -> Result<(), StatsError>,
    ) -> Result<T, StatsError> {
        if self.next >= self.outputs.len() {
            self.outputs.clear();
            refill(&mut self.outputs)?;
            self.next = 0;
        }
        let out = self.outputs.get(self.next).cloned().ok_or(StatsError::Ldp(
            LdpError::BufferLength {
                what: "audit batch",
                expected: BATCH,
                actual: 0,
            },
        ))?;
        self.next += 1;
        Ok(out)
    }
}

/// `BATCH` batch-path reports of `oracle` for `value`, as scalar-shaped outputs.
fn frequency_batch<R: CryptoRng + ?Sized>(
    oracle: &AnyFrequencyOracle,
    value: u32,
    rng: &mut R,
    into: &mut Vec<FrequencyOutput>,
) -> Result<(), StatsError> {
    let per = oracle.slots_per_report();
    let mut slots = vec![0u64; BATCH * per];
    oracle.perturb_repeated(value, &mut slots, rng)?;
    for words in slots.chunks(per) {
        into.push(oracle.report_from_slots(words)?);
    }
    Ok(())
}

/// How to audit one mechanism: two inputs, and a map from outputs to a small
/// set of output classes whose unions are the candidate events.
struct Plan<'a, R: ?Sized> {
    inputs: (String, String),
    classes: Vec<&'static str>,
    sample_a: Sampler<'a, R>,
    sample_b: Sampler<'a, R>,
}

/// Audits a frequency oracle on the neighbouring values 0 and 1.
pub fn audit_frequency<R: CryptoRng + ?Sized>(
    oracle: &AnyFrequencyOracle,
    samples: u64,
    confidence: f64,
    rng: &mut R,
) -> Result<AuditOutcome, StatsError> {
    audit_frequency_via(oracle, samples, confidence, SamplingPath::Scalar, rng)
}

/// [`audit_frequency`], drawing the outputs through `path`.
pub fn audit_frequency_via<R: CryptoRng + ?Sized>(
    oracle: &AnyFrequencyOracle,
    samples: u64,
    confidence: f64,
    path: SamplingPath,
    rng: &mut R,
) -> Result<AuditOutcome, StatsError> {
    let classify = move |out: &FrequencyOutput| -> usize {
        match (oracle, out) {
            (
                AnyFrequencyOracle::Grr(_) | AnyFrequencyOracle::LGrr(_),
                FrequencyOutput::Value(y),
            ) => (*y).min(2) as usize,
            (AnyFrequencyOracle::Unary(_), FrequencyOutput::Bits(b)) => {
                usize::from(b.get(0)) + 2 * usize::from(b.get(1))
            }
            (AnyFrequencyOracle::Olh(m), FrequencyOutput::Hashed(h)) => {
                usize::from(m.hash(h.seed, 0) == h.value)
                    + 2 * usize::from(m.hash(h.seed, 1) == h.value)
            }
            (AnyFrequencyOracle::Hr(_), FrequencyOutput::Value(y)) => {
                usize::from(HadamardResponse::in_set(0, *y))
                    + 2 * usize::from(HadamardResponse::in_set(1, *y))
            }
            // The two-layer unary and hashing oracles: what the report supports.
            (_, out) => {
                let (mut zero, mut one) = (false, false);
                oracle.for_each_supported(out, |v| {
                    zero |= v == 0;
                    one |= v == 1;
                });
                usize::from(zero) + 2 * usize::from(one)
            }
        }
    };
    let classes = match oracle {
        AnyFrequencyOracle::Grr(_) | AnyFrequencyOracle::LGrr(_) => {
            vec!["report 0", "report 1", "report another value"]
        }
        _ => vec![
            "supports neither 0 nor 1",
            "supports 0 only",
            "supports 1 only",
            "supports both 0 and 1",
        ],
    };
    let sampler = |value: u32| -> Sampler<'_, R> {
        match path {
            SamplingPath::Scalar => {
                Box::new(move |rng: &mut R| Ok(classify(&oracle.perturb(value, rng)?)))
            }
            SamplingPath::Batch => {
                let mut batched = Batched::new();
                Box::new(move |rng: &mut R| {
                    let out = batched.next(|into| frequency_batch(oracle, value, rng, into))?;
                    Ok(classify(&out))
                })
            }
        }
    };
    let plan = Plan {
        inputs: ("value 0".into(), "value 1".into()),
        classes,
        sample_a: sampler(0),
        sample_b: sampler(1),
    };
    run(plan, oracle.epsilon(), samples, confidence, rng)
}

/// Audits a numeric mechanism on the two ends of its range.
pub fn audit_numeric<R: CryptoRng + ?Sized>(
    mechanism: &AnyNumericMechanism,
    samples: u64,
    confidence: f64,
    rng: &mut R,
) -> Result<AuditOutcome, StatsError> {
    audit_numeric_via(mechanism, samples, confidence, SamplingPath::Scalar, rng)
}

/// [`audit_numeric`], drawing the outputs through `path`.
pub fn audit_numeric_via<R: CryptoRng + ?Sized>(
    mechanism: &AnyNumericMechanism,
    samples: u64,
    confidence: f64,
    path: SamplingPath,
    rng: &mut R,
) -> Result<AuditOutcome, StatsError> {
    let window_class = |pm: &hush_ldp::Piecewise, index: i64| -> usize {
        let (n, h) = (i64::from(pm.cells()), i64::from(pm.window()));
        if index >= n - h {
            0
        } else if index < h {
            1
        } else {
            2
        }
    };
    let classify = move |p: GridPoint| -> usize {
        match mechanism {
            AnyNumericMechanism::Duchi(_)
            | AnyNumericMechanism::OneBit(_)
            | AnyNumericMechanism::LOneBit(_) => p.index as usize,
            AnyNumericMechanism::Piecewise(pm) => window_class(pm, p.index),
            AnyNumericMechanism::Hybrid(h) => match p.branch {
                0 => window_class(h.piecewise(), p.index),
                _ => 3 + p.index as usize,
            },
            AnyNumericMechanism::Laplace(l) => {
                if p.index >= i64::from(l.steps()) {
                    0
                } else if p.index <= 0 {
                    1
                } else {
                    2
                }
            }
        }
    };
    let classes = match mechanism {
        AnyNumericMechanism::Duchi(_)
        | AnyNumericMechanism::OneBit(_)
        | AnyNumericMechanism::LOneBit(_) => vec!["low report", "high report"],
        AnyNumericMechanism::Piecewise(_) => {
            vec!["top window", "bottom window", "middle cells"]
        }
        AnyNumericMechanism::Hybrid(_) => vec![
            "piecewise top window",
            "piecewise bottom window",
            "piecewise middle cells",
            "duchi low report",
            "duchi high report",
        ],
        AnyNumericMechanism::Laplace(_) => {
            vec![
                "at or above the top",
                "at or below the bottom",
                "in between",
            ]
        }
    };
    let range = mechanism.range();
    let sampler = |x: f64| -> Sampler<'_, R> {
        match path {
            SamplingPath::Scalar => {
                Box::new(move |rng: &mut R| Ok(classify(mechanism.perturb(x, rng)?)))
            }
            SamplingPath::Batch => {
                let mut batched = Batched::new();
                Box::new(move |rng: &mut R| {
                    let out = batched.next(|into| {
                        into.resize(
                            BATCH,
                            GridPoint {
                                branch: 0,
                                index: 0,
                            },
                        );
                        Ok(mechanism.perturb_repeated(x, into, rng)?)
                    })?;
                    Ok(classify(out))
                })
            }
        }
    };
    let plan = Plan {
        inputs: (format!("x = {}", range.hi()), format!("x = {}", range.lo())),
        classes,
        sample_a: sampler(range.hi()),
        sample_b: sampler(range.lo()),
    };
    run(plan, mechanism.epsilon(), samples, confidence, rng)
}

fn run<R: CryptoRng + ?Sized>(
    mut plan: Plan<'_, R>,
    claimed_epsilon: f64,
    samples: u64,
    confidence: f64,
    rng: &mut R,
) -> Result<AuditOutcome, StatsError> {
    if samples < 100 {
        return Err(StatsError::Argument {
            name: "--samples",
            valid: "at least 100",
            value: samples.to_string(),
        });
    }
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(StatsError::Level(confidence));
    }
    // Both one-sided bounds hold with 1 - alpha/2 each, so both hold with 1 - alpha.
    let alpha = (1.0 - confidence) / 2.0;
    let k = plan.classes.len();
    let pilot = (samples / 10).max(100);
    let histogram =
        |n: u64, f: &mut dyn FnMut(&mut R) -> Result<usize, StatsError>, rng: &mut R| {
            let mut h = vec![0u64; k];
            for _ in 0..n {
                h[f(rng)?] += 1;
            }
            Ok::<_, StatsError>(h)
        };
    let pilot_a = histogram(pilot, &mut plan.sample_a, rng)?;
    let pilot_b = histogram(pilot, &mut plan.sample_b, rng)?;

    // Candidate events: for each direction, the classes ranked by likelihood
    // ratio, and every prefix of that ranking (Neyman–Pearson optimal sets).
    let mut best: Option<(f64, bool, Vec<usize>)> = None;
    for flipped in [false, true] {
        let (num, den) = if flipped {
            (&pilot_b, &pilot_a)
        } else {
            (&pilot_a, &pilot_b)
        };
        let mut order: Vec<usize> = (0..k).collect();
        let ratio = |c: usize| (num[c] as f64 + 0.5) / (den[c] as f64 + 0.5);
        order.sort_by(|&x, &y| ratio(y).total_cmp(&ratio(x)));
        for len in 1..k {
            let event = order[..len].to_vec();
            let hits = |h: &[u64]| event.iter().map(|&c| h[c]).sum::<u64>();
            let bound = log_ratio_bound(hits(num), hits(den), pilot, alpha);
            if best.as_ref().is_none_or(|(b, _, _)| bound > *b) {
                best = Some((bound, flipped, event));
            }
        }
    }
    let Some((_, flipped, event)) = best else {
        unreachable!("every plan has at least two output classes");
    };

    let final_a = histogram(samples, &mut plan.sample_a, rng)?;
    let final_b = histogram(samples, &mut plan.sample_b, rng)?;
    let hits = |h: &[u64]| event.iter().map(|&c| h[c]).sum::<u64>();
    let (hits_a, hits_b) = (hits(&final_a), hits(&final_b));
    let (num, den) = if flipped {
        (hits_b, hits_a)
    } else {
        (hits_a, hits_b)
    };
    let names: Vec<&str> = event.iter().map(|&c| plan.classes[c]).collect();
    let inputs = if flipped {
        (plan.inputs.1, plan.inputs.0)
    } else {
        plan.inputs
    };
    Ok(AuditOutcome {
        claimed_epsilon,
        epsilon_lower_bound: log_ratio_bound(num, den, samples, alpha).max(0.0),
        confidence,
        samples,
        inputs,
        event: names.join(" or "),
        hits: (num, den),
    })
}

/// `ln(lower(num/n) / upper(den/n))` with one-sided Clopper–Pearson bounds at `alpha` each.
fn log_ratio_bound(num: u64, den: u64, n: u64, alpha: f64) -> f64 {
    let lower = clopper_pearson_lower(num, n, alpha);
    let upper = clopper_pearson_upper(den, n, alpha);
    if lower <= 0.0 {
        f64::NEG_INFINITY
    } else {
        (lower / upper).ln()
    }
}
