//! Criterion benchmarks of the batch noising kernels: for each workload of `hush bench`,
//! the naive baseline a user would write, the mechanism's scalar `perturb`, the batch
//! kernel, and the raw fill rate of the generators the kernels are bound by.
//!
//! `cargo bench --bench noising` runs them all; `-- --quick` keeps each short, and a
//! filter such as `-- oue` selects groups. Throughputs are per element (report bit,
//! report or value), so criterion prints elements per second beside the times.

#![allow(clippy::expect_used)] // A benchmark that cannot build its inputs should stop loudly.

// The same workloads `hush bench` runs, so the two measure the same code.
#[allow(dead_code)]
#[path = "../src/commands/bench/workloads.rs"]
mod workloads;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hush_ldp::NoiseRng;
use rand::rngs::ChaCha12Rng;
use rand::{Rng, SeedableRng};
use statrs::distribution::Laplace;
use workloads::{Counting, Scale};

fn kernels(c: &mut Criterion) {
    for mut w in workloads::workloads(Scale::Full).expect("workloads build") {
        let mut group = c.benchmark_group(w.name);
        group.throughput(Throughput::Elements(w.elements as u64));
        group.sample_size(10);
        group.bench_function("naive", |b| b.iter(|| (w.baseline)()));
        let mut rng = Counting::new(NoiseRng::seed_from_u64(1));
        group.bench_function("scalar", |b| {
            b.iter(|| (w.scalar)(&mut rng).expect("valid inputs"))
        });
        group.bench_function("kernel", |b| {
            b.iter(|| (w.kernel)(&mut rng).expect("valid inputs"))
        });
        if w.name == "laplace" {
            // The continuous baseline too: per-element float Laplace noise from statrs.
            let noise = Laplace::new(0.0, 2.0 / workloads::EPSILON).expect("valid scale");
            let n = w.elements;
            group.bench_function("naive-continuous", |b| {
                b.iter(|| {
                    let mut rng = rand::rng();
                    let xs: Vec<f64> = (0..n)
                        .map(|i| {
                            i as f64 / n as f64
                                + rand::distr::Distribution::sample(&noise, &mut rng)
                        })
                        .collect();
                    black_box(xs)
                })
            });
        }
        group.finish();
    }
}

/// The generators' raw fill rate, in the 4 KiB chunks the kernels' buffer draws.
fn rng_fill(c: &mut Criterion) {
    let mut group = c.benchmark_group("rng");
    group.throughput(Throughput::Bytes(1 << 20));
    let mut buf = [0u8; 4096];
    fn fill(rng: &mut impl Rng, buf: &mut [u8; 4096]) {
        for _ in 0..256 {
            rng.fill_bytes(buf);
            black_box(&buf);
        }
    }
    let mut chacha8 = NoiseRng::seed_from_u64(1);
    group.bench_function("chacha8-fill", |b| b.iter(|| fill(&mut chacha8, &mut buf)));
    let mut chacha12 = ChaCha12Rng::seed_from_u64(1);
    group.bench_function("chacha12-fill", |b| {
        b.iter(|| fill(&mut chacha12, &mut buf))
    });
    group.finish();
}

criterion_group!(benches, rng_fill, kernels);
criterion_main!(benches);
