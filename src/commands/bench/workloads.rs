//! The noising workloads that `hush bench` and `benches/noising.rs` both time: for
//! each kernel, the naive code a user would write, the scalar `perturb` loop, and the
//! batch kernel, on the same inputs.
//!
//! The naive baselines draw from `rand::rng()` (rand's thread-local ChaCha12) and
//! `rand_distr`, as a user of the `rand` ecosystem would; they are the yardstick, not
//! privacy code (they sample in floating point, which Hush never does for noise).
//! Shared through `#[path]` by the criterion bench, so both measure the same thing.

use std::convert::Infallible;
use std::hint::black_box;

use hush_ldp::batch::{FrequencyBatch, NumericBatch};
use hush_ldp::{
    DiscreteLaplace, Duchi, FrequencyOracle, GridPoint, Grr, HadamardResponse, Hybrid, LGrr,
    LOneBitMean, LUnary, LUnaryVariant, LdpError, NoiseRng, Olh, OlhOutput, PackedBits, Piecewise,
    Range, UnaryEncoding,
};
use rand::{Rng, RngExt, SeedableRng, TryCryptoRng, TryRng};
use rand_distr::{Distribution, Geometric};

/// Privacy parameter of every workload (the eps = 1): per report for
/// the two-layer workloads.
pub const EPSILON: f64 = 1.0;

/// The two-layer workloads' epsilon per value: twice [`EPSILON`], as Hush's default terms.
pub const EPSILON_PERM: f64 = 2.0;

/// A generator that counts the bytes drawn from it, so a run reports the random
/// bytes its kernel consumed per element.
#[derive(Debug)]
pub struct Counting<R> {
    inner: R,
    bytes: u64,
}

impl<R> Counting<R> {
    /// Wraps `inner` with a zero count.
    pub fn new(inner: R) -> Self {
        Counting { inner, bytes: 0 }
    }

    /// Bytes drawn so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl<R: Rng> TryRng for Counting<R> {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        self.bytes += 4;
        Ok(self.inner.next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.bytes += 8;
        Ok(self.inner.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.bytes += dst.len() as u64;
        self.inner.fill_bytes(dst);
        Ok(())
    }
}

/// Counting does not weaken the generator it wraps.
impl<R: Rng + TryCryptoRng> TryCryptoRng for Counting<R> {}

/// The generator kernels run on in a benchmark: the noise generator, counted.
pub type BenchRng = Counting<NoiseRng>;

/// A closure that runs one batch on a generator.
pub type Run = Box<dyn FnMut(&mut BenchRng) -> Result<(), LdpError>>;

/// One row of the benchmark: a kernel, its naive baseline and its scalar reference.
pub struct Workload {
    /// Short name, e.g. `oue-d1024`.
    pub name: &'static str,
    /// What one run does, in words.
    pub description: String,
    /// What one element is: a report bit, a report, a value.
    pub unit: &'static str,
    /// Elements per run.
    pub elements: usize,
    /// The target for baseline time over kernel time, if any.
    pub target_speedup: Option<f64>,
    /// The target for kernel time over the RNG bound, if any.
    pub target_bound_ratio: Option<f64>,
    /// The naive code a user would write.
    pub baseline: Box<dyn FnMut()>,
    /// The mechanism's scalar `perturb`, element by element.
    pub scalar: Run,
    /// The batch kernel.
    pub kernel: Run,
}

/// Sizes: realistic, or tiny for a smoke test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// The sizes the README reports (10^6 elements per run, about).
    Full,
    /// A hundredth of that, for tests.
    Quick,
}

impl Scale {
    fn of(self, n: usize) -> usize {
        match self {
            Scale::Full => n,
            Scale::Quick => (n / 100).max(1),
        }
    }
}

fn inputs_rng() -> NoiseRng {
    NoiseRng::seed_from_u64(0x6265_6e63)
}

/// Values uniform in `0..d`.
fn values(n: usize, d: u32) -> Vec<u32> {
    let mut rng = inputs_rng();
    (0..n).map(|_| rng.random_range(0..d)).collect()
}

/// Numbers uniform in `[-1, 1]`.
fn numbers(n: usize) -> Vec<f64> {
    let mut rng = inputs_rng();
    (0..n).map(|_| rng.random_range(-1.0..=1.0)).collect()
}

/// A unary-encoding workload: the baseline draws one `random_bool` per bit into a `Vec<bool>`.
fn unary(name: &'static str, m: UnaryEncoding, d: u32, users: usize) -> Result<Workload, LdpError> {
    let (p, q) = (m.p_threshold().prob(), m.q_threshold().prob());
    let vals = values(users, d);
    let baseline_vals = vals.clone();
    let variant = if m.variant() == hush_ldp::UnaryVariant::Optimized {
        "OUE"
    } else {
        "SUE"
    };
    let (scalar, kernel) = frequency(m, vals, 0);
    Ok(Workload {
        name,
        description: format!("{variant} eps={EPSILON}, d={d}: {users} reports"),
        unit: "bit",
        elements: users * d as usize,
        target_speedup: Some(10.0),
        target_bound_ratio: Some(2.0),
        baseline: Box::new(move || {
            let mut rng = rand::rng();
            for &v in &baseline_vals {
                let bits: Vec<bool> = (0..d)
                    .map(|j| rng.random_bool(if j == v { p } else { q }))
                    .collect();
                black_box(bits);
            }
        }),
        scalar,
        kernel,
    })
}

/// A two-layer unary workload: the baseline draws each permanent bit with
/// `random_bool`, then each reported bit from it with `random_bool` again.
fn two_layer_unary(
    name: &'static str,
    variant: LUnaryVariant,
    d: u32,
    users: usize,
) -> Result<Workload, LdpError> {
    let m = LUnary::new(variant, EPSILON_PERM, EPSILON, u64::from(d))?;
    let perm = m.permanent_layer();
    let (p1, q1) = (perm.p_threshold().prob(), perm.q_threshold().prob());
    let (one, zero) = m.instantaneous_thresholds();
    let (p2, q2) = (one.prob(), zero.prob());
    let vals = values(users, d);
    let baseline_vals = vals.clone();
    let (scalar, kernel) = frequency(m, vals, 0);
    Ok(Workload {
        name,
        description: format!("{variant} eps={EPSILON_PERM}/{EPSILON}, d={d}: {users} reports"),
        unit: "bit",
        elements: users * d as usize,
        target_speedup: Some(10.0),
        target_bound_ratio: Some(2.0),
        baseline: Box::new(move || {
            let mut rng = rand::rng();
            for &v in &baseline_vals {
                let bits: Vec<bool> = (0..d)
                    .map(|j| {
                        let permanent = rng.random_bool(if j == v { p1 } else { q1 });
                        rng.random_bool(if permanent { p2 } else { q2 })
                    })
                    .collect();
                black_box(bits);
            }
        }),
        scalar,
        kernel,
    })
}

/// L-GRR: the baseline is GRR's twice, the second on the first's output.
fn two_layer_grr(users: usize, d: u32) -> Result<Workload, LdpError> {
    let m = LGrr::new(EPSILON_PERM, EPSILON, u64::from(d))?;
    let keep1 = m.permanent_layer().keep_probability();
    let keep2 = m.instantaneous_layer().keep_probability();
    let vals = values(users, d);
    let baseline_vals = vals.clone();
    let (scalar, kernel) = frequency(m, vals, 0);
    Ok(Workload {
        name: "l-grr-d1024",
        description: format!("L-GRR eps={EPSILON_PERM}/{EPSILON}, d={d}: {users} reports"),
        unit: "report",
        elements: users,
        target_speedup: None,
        target_bound_ratio: None,
        baseline: Box::new(move || {
            let mut rng = rand::rng();
            let mut grr = |v: u32, keep: f64| {
                if rng.random_bool(keep) {
                    v
                } else {
                    let o = rng.random_range(0..d - 1);
                    if o >= v { o + 1 } else { o }
                }
            };
            let reports: Vec<u32> = baseline_vals
                .iter()
                .map(|&v| {
                    let permanent = grr(v, keep1);
                    grr(permanent, keep2)
                })
                .collect();
            black_box(reports);
        }),
        scalar,
        kernel,
    })
}

/// Binary randomized response on bits: the baseline keeps each `bool` with `random_bool(keep)`.
fn randomized_response(bits: usize) -> Result<Workload, LdpError> {
    let m = Grr::new(EPSILON, 2)?;
    let keep = m.keep_probability();
    let len = u32::try_from(bits).unwrap_or(u32::MAX);
    let mut rng = inputs_rng();
    let plain: Vec<bool> = (0..len).map(|_| rng.random_bool(0.3)).collect();
    let mut packed = PackedBits::zeros(len);
    for (i, &b) in plain.iter().enumerate() {
        packed.set(i as u32, b);
    }
    let mut out = PackedBits::zeros(len);
    let scalar_m = m.clone();
    let scalar_plain = plain.clone();
    Ok(Workload {
        name: "rr",
        description: format!("binary randomized response eps={EPSILON}: {len} bits"),
        unit: "bit",
        elements: len as usize,
        target_speedup: Some(10.0),
        target_bound_ratio: Some(2.0),
        baseline: Box::new(move || {
            let mut rng = rand::rng();
            let noisy: Vec<bool> = plain
                .iter()
                .map(|&x| if rng.random_bool(keep) { x } else { !x })
                .collect();
            black_box(noisy);
        }),
        scalar: Box::new(move |rng| {
            for &x in &scalar_plain {
                black_box(scalar_m.perturb(u32::from(x), rng)?);
            }
            Ok(())
        }),
        kernel: Box::new(move |rng| {
            m.perturb_packed(&packed, &mut out, rng)?;
            black_box(&out);
            Ok(())
        }),
    })
}

/// GRR: the baseline is `random_bool(p)`, then `random_range` over the other values.
fn grr(users: usize, d: u32) -> Result<Workload, LdpError> {
    let m = Grr::new(EPSILON, u64::from(d))?;
    let keep = m.keep_probability();
    let vals = values(users, d);
    let baseline_vals = vals.clone();
    let (scalar, kernel) = frequency(m, vals, 0);
    Ok(Workload {
        name: "grr-d1024",
        description: format!("GRR eps={EPSILON}, d={d}: {users} reports"),
        unit: "report",
        elements: users,
        target_speedup: None,
        target_bound_ratio: None,
        baseline: Box::new(move || {
            let mut rng = rand::rng();
            let reports: Vec<u32> = baseline_vals
                .iter()
                .map(|&v| {
                    if rng.random_bool(keep) {
                        v
                    } else {
                        let o = rng.random_range(0..d - 1);
                        if o >= v { o + 1 } else { o }
                    }
                })
                .collect();
            black_box(reports);
        }),
        scalar,
        kernel,
    })
}

/// OLH: the baseline draws a seed, hashes with the mechanism's own hash, then GRR over `g`.
fn olh(users: usize, d: u32) -> Result<Workload, LdpError> {
    let m = Olh::new(EPSILON, u64::from(d))?;
    let (keep, g) = (m.keep_probability(), m.hash_range());
    let vals = values(users, d);
    let baseline_vals = vals.clone();
    let baseline_m = m.clone();
    let (scalar, kernel) = frequency(m, vals, OlhOutput { seed: 0, value: 0 });
    Ok(Workload {
        name: "olh-d1024",
        description: format!("OLH eps={EPSILON}, d={d}, g={g}: {users} reports"),
        unit: "report",
        elements: users,
        target_speedup: None,
        target_bound_ratio: None,
        baseline: Box::new(move || {
            let mut rng = rand::rng();
            let reports: Vec<(u64, u32)> = baseline_vals
                .iter()
                .map(|&v| {
                    let seed: u64 = rng.random();
                    let h = baseline_m.hash(seed, v);
                    let value = if rng.random_bool(keep) {
                        h
                    } else {
                        let o = rng.random_range(0..g - 1);
                        if o >= h { o + 1 } else { o }
                    };
                    (seed, value)
                })
                .collect();
            black_box(reports);
        }),
        scalar,
        kernel,
    })
}

/// Hadamard response: the baseline keeps a coin, then rejects uniform indices until one is in the chosen half.
fn hadamard(users: usize, d: u32) -> Result<Workload, LdpError> {
    let m = HadamardResponse::new(EPSILON, u64::from(d))?;
    let (keep, k) = (m.keep_probability(), m.order());
    let vals = values(users, d);
    let baseline_vals = vals.clone();
    let (scalar, kernel) = frequency(m, vals, 0);
    Ok(Workload {
        name: "hr-d1024",
        description: format!("Hadamard response eps={EPSILON}, d={d}, K={k}: {users} reports"),
        unit: "report",
        elements: users,
        target_speedup: None,
        target_bound_ratio: None,
        baseline: Box::new(move || {
            let mut rng = rand::rng();
            let reports: Vec<u32> = baseline_vals
                .iter()
                .map(|&v| {
                    let inside = rng.random_bool(keep);
                    loop {
                        let y = rng.random_range(0..k);
                        if HadamardResponse::in_set(v, y) == inside {
                            break y;
                        }
                    }
                })
                .collect();
            black_box(reports);
        }),
        scalar,
        kernel,
    })
}

/// The scalar-reference and kernel runs of a frequency-oracle workload: `m`
/// on `vals`, one `perturb` per value or one batch call into a buffer that
/// `empty` fills before the first run.
fn frequency<M>(m: M, vals: Vec<u32>, empty: M::Slot) -> (Run, Run)
where
    M: FrequencyBatch + Clone + 'static,
    M::Slot: 'static,
{
    let scalar_vals = vals.clone();
    let scalar_m = m.clone();
    let mut out = vec![empty; vals.len() * m.slots_per_report()];
    (
        Box::new(move |rng| {
            for &v in &scalar_vals {
                black_box(scalar_m.perturb(v, rng)?);
            }
            Ok(())
        }),
        Box::new(move |rng| {
            m.perturb_batch(&vals, &mut out, rng)?;
            black_box(&out);
            Ok(())
        }),
    )
}

/// A numeric workload: the kernel and scalar reference of `m` on `xs`, against `baseline`.
fn numeric<M: NumericBatch + Clone + 'static>(
    name: &'static str,
    description: String,
    m: M,
    xs: Vec<f64>,
    target_speedup: f64,
    baseline: Box<dyn FnMut()>,
) -> Workload {
    let n = xs.len();
    let scalar_xs = xs.clone();
    let scalar_m = m.clone();
    let mut out = vec![
        GridPoint {
            branch: 0,
            index: 0
        };
        n
    ];
    Workload {
        name,
        description,
        unit: "value",
        elements: n,
        target_speedup: Some(target_speedup),
        target_bound_ratio: None,
        baseline,
        scalar: Box::new(move |rng| {
            for &x in &scalar_xs {
                black_box(scalar_m.perturb(x, rng)?);
            }
            Ok(())
        }),
        kernel: Box::new(move |rng| {
            m.perturb_batch(&xs, &mut out, rng)?;
            black_box(&out);
            Ok(())
        }),
    }
}

/// Discrete Laplace on the default 1024-step grid; the baseline is the textbook
/// two-geometric construction, `Z = G1 - G2` with `rand_distr::Geometric`.
fn laplace(n: usize) -> Result<Workload, LdpError> {
    let m = DiscreteLaplace::new(EPSILON, Range::SYMMETRIC_UNIT)?;
    let steps = f64::from(m.steps());
    let xs = numbers(n);
    let baseline_xs = xs.clone();
    let geometric = Geometric::new(-(-EPSILON / steps).exp_m1())
        .map_err(|_| LdpError::Unrealizable("geometric baseline parameter"))?;
    Ok(numeric(
        "laplace",
        format!(
            "discrete Laplace eps={EPSILON}, {} steps: {n} values",
            m.steps()
        ),
        m,
        xs,
        20.0,
        Box::new(move || {
            let mut rng = rand::rng();
            let noisy: Vec<i64> = baseline_xs
                .iter()
                .map(|&x| {
                    let k = ((x + 1.0) / 2.0 * steps).round() as i64;
                    let z = geometric.sample(&mut rng) as i64 - geometric.sample(&mut rng) as i64;
                    k + z
                })
                .collect();
            black_box(noisy);
        }),
    ))
}

/// Duchi et al.: the baseline is `random_bool` of the affine probability, reported as `±B`.
fn duchi(n: usize) -> Result<Workload, LdpError> {
    let m = Duchi::new(EPSILON, Range::SYMMETRIC_UNIT)?;
    let e = EPSILON.exp();
    let b = (e + 1.0) / (e - 1.0);
    let xs = numbers(n);
    let baseline_xs = xs.clone();
    Ok(numeric(
        "duchi",
        format!("Duchi eps={EPSILON}: {n} values"),
        m,
        xs,
        3.0,
        Box::new(move || {
            let mut rng = rand::rng();
            let noisy: Vec<f64> = baseline_xs
                .iter()
                .map(|&x| {
                    let p = 0.5 + x * (e - 1.0) / (2.0 * (e + 1.0));
                    if rng.random_bool(p) { b } else { -b }
                })
                .collect();
            black_box(noisy);
        }),
    ))
}

/// Two-layer 1BitMean on [0, 1]: the baseline rounds with a fresh offset, draws
/// the permanent bit and flips it with `random_bool`.
fn two_layer_onebit(n: usize) -> Result<Workload, LdpError> {
    let m = LOneBitMean::new(EPSILON_PERM, EPSILON, Range::UNIT)?;
    let steps = f64::from(m.steps());
    let e = EPSILON_PERM.exp();
    let keep = m.keep_threshold().prob();
    let xs: Vec<f64> = numbers(n).into_iter().map(|x| (x + 1.0) / 2.0).collect();
    let baseline_xs = xs.clone();
    Ok(numeric(
        "l-onebit",
        format!(
            "two-layer 1BitMean eps={EPSILON_PERM}/{EPSILON}, {} grid steps: {n} values",
            m.steps()
        ),
        m,
        xs,
        3.0,
        Box::new(move || {
            let mut rng = rand::rng();
            let noisy: Vec<bool> = baseline_xs
                .iter()
                .map(|&x| {
                    let point = (x * steps + rng.random::<f64>()).floor() / steps;
                    let p = 1.0 / (e + 1.0) + point * (e - 1.0) / (e + 1.0);
                    let permanent = rng.random_bool(p);
                    if rng.random_bool(keep) {
                        permanent
                    } else {
                        !permanent
                    }
                })
                .collect();
            black_box(noisy);
        }),
    ))
}

/// The continuous Piecewise Mechanism as its paper states it, in `f64`.
fn naive_piecewise(rng: &mut impl Rng, x: f64, eps: f64) -> f64 {
    let h = (eps / 2.0).exp();
    let c = (h + 1.0) / (h - 1.0);
    let l = (c + 1.0) / 2.0 * x - (c - 1.0) / 2.0;
    let r = l + c - 1.0;
    if rng.random_bool(h / (h + 1.0)) {
        rng.random_range(l..r)
    } else {
        // Uniform on [-C, l) and (r, C], total length C + 1.
        let y = -c + rng.random::<f64>() * (c + 1.0);
        if y < l { y } else { y + (r - l) }
    }
}

/// Piecewise on the default 1024 cells; the baseline is the continuous mechanism in floats.
fn piecewise(n: usize) -> Result<Workload, LdpError> {
    let m = Piecewise::new(EPSILON, Range::SYMMETRIC_UNIT)?;
    let xs = numbers(n);
    let baseline_xs = xs.clone();
    Ok(numeric(
        "piecewise",
        format!("Piecewise eps={EPSILON}, {} cells: {n} values", m.cells()),
        m,
        xs,
        3.0,
        Box::new(move || {
            let mut rng = rand::rng();
            let noisy: Vec<f64> = baseline_xs
                .iter()
                .map(|&x| naive_piecewise(&mut rng, x, EPSILON))
                .collect();
            black_box(noisy);
        }),
    ))
}

/// Hybrid; the baseline flips the branch coin and runs the naive branch.
fn hybrid(n: usize) -> Result<Workload, LdpError> {
    let m = Hybrid::new(EPSILON, Range::SYMMETRIC_UNIT)?;
    let alpha = m.piecewise_probability();
    let e = EPSILON.exp();
    let b = (e + 1.0) / (e - 1.0);
    let xs = numbers(n);
    let baseline_xs = xs.clone();
    Ok(numeric(
        "hybrid",
        format!("Hybrid eps={EPSILON}: {n} values"),
        m,
        xs,
        3.0,
        Box::new(move || {
            let mut rng = rand::rng();
            let noisy: Vec<f64> = baseline_xs
                .iter()
                .map(|&x| {
                    if rng.random_bool(alpha) {
                        naive_piecewise(&mut rng, x, EPSILON)
                    } else {
                        let p = 0.5 + x * (e - 1.0) / (2.0 * (e + 1.0));
                        if rng.random_bool(p) { b } else { -b }
                    }
                })
                .collect();
            black_box(noisy);
        }),
    ))
}

/// Every workload, at `scale`.
pub fn workloads(scale: Scale) -> Result<Vec<Workload>, LdpError> {
    let bits = scale.of(1 << 20);
    let users = scale.of(100_000);
    let values = scale.of(1_000_000);
    Ok(vec![
        unary(
            "oue-d1024",
            UnaryEncoding::optimized(EPSILON, 1024)?,
            1024,
            (bits / 1024).max(1),
        )?,
        unary(
            "oue-d16",
            UnaryEncoding::optimized(EPSILON, 16)?,
            16,
            bits / 16,
        )?,
        unary(
            "sue-d1024",
            UnaryEncoding::symmetric(EPSILON, 1024)?,
            1024,
            (bits / 1024).max(1),
        )?,
        randomized_response(values)?,
        grr(users, 1024)?,
        olh(users, 1024)?,
        hadamard(users, 1024)?,
        laplace(values)?,
        duchi(values)?,
        piecewise(values)?,
        hybrid(values)?,
        two_layer_unary(
            "l-osue-d1024",
            LUnaryVariant::Osue,
            1024,
            (bits / 1024).max(1),
        )?,
        two_layer_unary("l-sue-d16", LUnaryVariant::Sue, 16, bits / 16)?,
        two_layer_grr(users, 1024)?,
        two_layer_onebit(values)?,
    ])
}
