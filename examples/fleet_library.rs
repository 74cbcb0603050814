//! How an ML team's pipeline uses Hush as a library, without the HTTP collector:
//! simulated devices make real reports, upload batches are encoded and decoded,
//! every report is validated against the catalog, shards are aggregated in
//! parallel, and the merged aggregates give estimates with confidence intervals.
//!
//! The steps, each with the crate that owns it:
//!
//! 1. **Devices** (`hush_report`): a few thousand simulated laptops each measure
//!    one day (`RawMeasurements`) and privatize it with the real privatizer,
//!    `hush_report::privatize`, under the default catalog (one metric per report
//!    at the full epsilon) and a daily budget. Devices are split into shards.
//! 2. **Upload** (`hush_report`): each shard's reports travel as upload batches,
//!    `Report::encode_batch`, and are decoded with the collector's limits,
//!    `Report::decode_batch`.
//! 3. **Validation** (`hush_collector::validate`): the catalog hash, period,
//!    epsilon cap and every privatized value are checked, and each metric's
//!    mechanism is rebuilt from the catalog at the report's epsilon.
//! 4. **Aggregation** (`hush_stats`): each shard, on its own thread, folds its
//!    reports into mergeable aggregates, a `FrequencyAggregate` or `MeanAggregate`
//!    per (metric, epsilon). The shards are merged, in shard order and in
//!    reverse, and compared with one single pass over all reports: the integer
//!    statistics and the estimates must be identical, bit for bit.
//! 5. **Estimation** (`hush_stats`): unbiased estimates, standard errors, 95%
//!    intervals, and Norm-Sub post-processing of each distribution, printed
//!    beside the truth among the devices that reported each metric (which only
//!    a simulation knows).
//!
//! Run it with
//!
//! ```sh
//! cargo run --release --example fleet_library -- [--devices 4000] [--shards 4] [--batch 250] [--epsilon 2] [--seed 1] [--quick]
//! ```
//!
//! `--quick` shrinks the fleet for the smoke test.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, anyhow, bail, ensure};
use clap::Parser;
use hush_collector::estimate::{LEVEL, period_start};
use hush_collector::{Catalogs, CollectorConfig, validate};
use hush_ldp::{BudgetAccount, FrequencyOracle, NoiseRng};
use hush_report::{
    Catalog, DeviceMemory, DeviceSecret, Encoding, KeyClass, MAX_BATCH_REPORTS, MetricMechanism,
    MetricValue, MouseButton, PrivatizeRequest, RawMeasurements, Report, Shortcut, privatize,
};
use hush_stats::{FrequencyAggregate, FrequencyEstimate, MeanAggregate, MeanEstimate, norm_sub};
use rand::{RngExt, SeedableRng};

/// A fleet of simulated devices through the library API, shard by shard.
#[derive(Debug, Parser)]
struct Args {
    /// Simulated devices, one report each [default: 4000].
    #[arg(long)]
    devices: Option<u64>,
    /// Shards the devices are split into; each is aggregated on its own thread [default: 4].
    #[arg(long)]
    shards: Option<u64>,
    /// Reports per upload batch (at most 1000, the decoder's limit).
    #[arg(long, default_value_t = 250)]
    batch: usize,
    /// Epsilon of each report (the default collector caps it at 2).
    #[arg(long, default_value_t = 2.0)]
    epsilon: f64,
    /// Seed of the simulated devices and their noise.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A small fleet for a fast check (600 devices in 3 shards) unless given explicitly.
    #[arg(long)]
    quick: bool,
}

/// The period every device reports for: 2025-11-28, a fixed day so runs repeat.
const PERIOD: u32 = 20_420;
const DAY_SECONDS: u32 = 86_400;

/// One cell's sufficient statistics; which kind follows from the metric's encoding.
#[derive(Debug, Clone, PartialEq)]
enum Aggregate {
    Frequency(FrequencyAggregate),
    Mean(MeanAggregate),
}

/// Aggregates keyed by (metric index, epsilon bits): different epsilons mean different estimators.
type Cells = BTreeMap<(u16, u64), Aggregate>;

/// What the simulation knows and the collector never sees: per metric, the true
/// values of the devices that reported it.
#[derive(Debug, Clone, Default)]
struct Truth {
    /// Numeric metrics: (reports, sum of the clipped values).
    sums: BTreeMap<u16, (u64, f64)>,
    /// Frequency metrics: reports per bucket.
    counts: BTreeMap<u16, Vec<u64>>,
}

/// One shard after the device side: its upload batches and its devices' truth.
struct Uploaded {
    batches: Vec<Vec<u8>>,
    truth: Truth,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let devices = args.devices.unwrap_or(if args.quick { 600 } else { 4000 });
    let shards = args.shards.unwrap_or(if args.quick { 3 } else { 4 });
    ensure!(
        devices >= 2 && shards >= 1,
        "--devices must be at least 2 and --shards at least 1"
    );
    ensure!(
        (1..=MAX_BATCH_REPORTS).contains(&args.batch),
        "--batch must be in 1..={MAX_BATCH_REPORTS}"
    );
    let catalog = Catalog::builtin();
    let catalogs = Catalogs::builtin();
    let config = CollectorConfig::default();
    let started = Instant::now();

    // Devices: shard s holds devices s, s + shards, s + 2 shards, ... Each shard
    // runs on its own thread, each device on its own seeded generator.
    let uploaded: Vec<Uploaded> = in_parallel(shards, |s| {
        let mine: Vec<u64> = (s..devices).step_by(shards as usize).collect();
        make_uploads(&catalog, &mine, args.epsilon, args.batch, args.seed)
    })?;
    let upload_bytes: usize = uploaded.iter().flat_map(|u| &u.batches).map(Vec::len).sum();
    let upload_count: usize = uploaded.iter().map(|u| u.batches.len()).sum();
    let devices_done = Instant::now();

    // Collector side, per shard: decode, validate, aggregate.
    let shard_cells: Vec<Cells> = in_parallel(shards, |s| {
        let mut cells = Cells::new();
        for batch in &uploaded[s as usize].batches {
            for report in Report::decode_batch(batch)? {
                add_report(&mut cells, report, &catalogs, &config)?;
            }
        }
        Ok(cells)
    })?;
    // The same reports in one pass, as a single collector would see them.
    let mut single = Cells::new();
    for batch in uploaded.iter().flat_map(|u| &u.batches) {
        for report in Report::decode_batch(batch)? {
            add_report(&mut single, report, &catalogs, &config)?;
        }
    }
    let merged = merge_all(shard_cells.iter())?;
    let reversed = merge_all(shard_cells.iter().rev())?;
    ensure!(
        merged == single,
        "merged shard aggregates differ from the single pass"
    );
    ensure!(
        reversed == single,
        "merging in reverse order changed the aggregates"
    );
    let collector_done = Instant::now();

    let mut truth = Truth::default();
    for u in &uploaded {
        for (&m, &(n, s)) in &u.truth.sums {
            let e = truth.sums.entry(m).or_insert((0, 0.0));
            e.0 += n;
            e.1 += s;
        }
        for (&m, c) in &u.truth.counts {
            let e = truth.counts.entry(m).or_insert_with(|| vec![0; c.len()]);
            for (a, b) in e.iter_mut().zip(c) {
                *a += b;
            }
        }
    }

    println!(
        "fleet: {devices} devices in {shards} shards, one report each for {} at epsilon {}",
        period_start(PERIOD, DAY_SECONDS),
        args.epsilon
    );
    println!(
        "uploads: {upload_count} batches, {upload_bytes} bytes ({:.0} bytes per report)",
        upload_bytes as f64 / devices as f64
    );
    println!();
    println!(
        "| metric | mechanism | reports | value | estimate | std error | 95% interval | norm-sub | truth |"
    );
    println!("| --- | --- | ---: | --- | ---: | ---: | --- | ---: | ---: |");
    let mut largest_z: f64 = 0.0;
    let mut estimates = 0usize;
    for (&(metric_index, eps_bits), agg) in &merged {
        let metric = catalog
            .metrics()
            .get(usize::from(metric_index))
            .context("cell for a metric the catalog lacks")?;
        // Reports carry twice epsilon per value (the example's terms).
        let eps = f64::from_bits(eps_bits);
        let mechanism = metric.mechanism(hush_ldp::DEFAULT_PERM_RATIO * eps, eps)?;
        let single_agg = single
            .get(&(metric_index, eps_bits))
            .context("cell missing")?;
        match (agg, &mechanism, &metric.encoding) {
            (
                Aggregate::Mean(a),
                MetricMechanism::Numeric(m),
                Encoding::Numeric {
                    mechanism: kind, ..
                },
            ) => {
                let est = a.estimate(m, LEVEL)?;
                let Aggregate::Mean(b) = single_agg else {
                    bail!("cell kinds differ");
                };
                ensure!(
                    same_mean(&est, &b.estimate(m, LEVEL)?),
                    "{}: merged and single-pass estimates differ",
                    metric.name
                );
                let (n, sum) = truth.sums.get(&metric_index).copied().unwrap_or((0, 0.0));
                let true_mean = sum / n as f64;
                largest_z = largest_z.max((est.mean - true_mean).abs() / est.std_error);
                estimates += 1;
                println!(
                    "| {} | {kind} | {} | mean ({}) | {:.1} | {:.1} | [{:.1}, {:.1}] | - | {:.1} |",
                    metric.name,
                    est.reports,
                    metric.unit,
                    est.mean,
                    est.std_error,
                    est.interval.lo,
                    est.interval.hi,
                    true_mean
                );
            }
            (
                Aggregate::Frequency(a),
                MetricMechanism::Frequency(o),
                Encoding::Buckets {
                    mechanism: kind,
                    labels,
                    ..
                }
                | Encoding::Categories {
                    mechanism: kind,
                    labels,
                },
            ) => {
                let est = a.estimate(o.support_probabilities(), LEVEL)?;
                let Aggregate::Frequency(b) = single_agg else {
                    bail!("cell kinds differ");
                };
                ensure!(
                    same_frequency(&est, &b.estimate(o.support_probabilities(), LEVEL)?),
                    "{}: merged and single-pass estimates differ",
                    metric.name
                );
                let projected = norm_sub(&est.frequencies());
                let counts = truth.counts.get(&metric_index).cloned().unwrap_or_default();
                let total: u64 = counts.iter().sum();
                for (i, (v, pp)) in est.values.iter().zip(projected).enumerate() {
                    let truth = counts
                        .get(i)
                        .map_or(0.0, |&c| c as f64 / total.max(1) as f64);
                    largest_z = largest_z.max((v.estimate - truth).abs() / v.std_error);
                    estimates += 1;
                    println!(
                        "| {} | {kind} | {} | {} | {:.3} | {:.3} | [{:.3}, {:.3}] | {:.3} | {:.3} |",
                        if i == 0 { metric.name } else { "" },
                        est.reports,
                        labels.get(i).map_or("?", String::as_str),
                        v.estimate,
                        v.std_error,
                        v.interval.lo,
                        v.interval.hi,
                        pp,
                        truth
                    );
                }
            }
            _ => bail!(
                "{}: aggregate does not match the metric's encoding",
                metric.name
            ),
        }
    }
    println!();
    println!(
        "merged == single pass: {} cells, identical aggregates (in shard order and reversed) and bit-identical estimates",
        merged.len()
    );
    println!("largest |estimate - truth| / std error: {largest_z:.2} over {estimates} estimates");
    println!(
        "time: devices {:.2} s, collector side {:.2} s",
        (devices_done - started).as_secs_f64(),
        (collector_done - devices_done).as_secs_f64()
    );
    Ok(())
}

/// Runs `f(0..count)` on one scoped thread each and returns the results in order.
fn in_parallel<T: Send>(
    count: u64,
    f: impl Fn(u64) -> anyhow::Result<T> + Sync,
) -> anyhow::Result<Vec<T>> {
    hush_stats::simulate::on_threads(count as usize, |i| f(i as u64))
        .into_iter()
        .collect()
}

/// The device side for some devices: measure, privatize, batch for upload.
fn make_uploads(
    catalog: &Catalog,
    devices: &[u64],
    epsilon: f64,
    batch: usize,
    seed: u64,
) -> anyhow::Result<Uploaded> {
    let request = PrivatizeRequest {
        catalog,
        period: PERIOD,
        period_seconds: DAY_SECONDS,
        epsilon,
        epsilon_perm: hush_ldp::DEFAULT_PERM_RATIO * epsilon,
        max_draws: 8,
        bucket: hush_report::bucket_of_day(PERIOD),
        agent_version: "fleet-example",
    };
    let mut truth = Truth::default();
    let mut reports = Vec::with_capacity(devices.len());
    for &device in devices {
        // One generator per device (the seed's key, stream = device id): the
        // fleet is the same whatever the shard count.
        let mut rng = NoiseRng::seed_from_u64(seed);
        rng.set_stream(device);
        let raw = simulated_day(&mut rng);
        // The truth of every metric, read before the raw measurements are consumed.
        let values: Vec<MetricValue> = catalog.metrics().iter().map(|m| m.value(&raw)).collect();
        // A fresh device: a full daily budget, a new secret and no history.
        let mut budget = BudgetAccount::new(epsilon)?;
        let mut secret = [0u8; 32];
        rand::Rng::fill_bytes(&mut rng, &mut secret);
        let mut memory = DeviceMemory::new(DeviceSecret::from_bytes(secret));
        let report = privatize(raw, &request, &mut memory, &mut budget, &mut rng)?;
        for m in report.metrics() {
            let i = m.metric();
            match values.get(usize::from(i)) {
                Some(MetricValue::Number(x)) => {
                    let e = truth.sums.entry(i).or_insert((0, 0.0));
                    e.0 += 1;
                    e.1 += x;
                }
                Some(&MetricValue::Category(c)) => {
                    let d = catalog.metrics()[usize::from(i)].domain().unwrap_or(0) as usize;
                    let e = truth.counts.entry(i).or_insert_with(|| vec![0; d]);
                    if let Some(slot) = e.get_mut(c as usize) {
                        *slot += 1;
                    }
                }
                None => bail!("report names metric {i}, which the catalog lacks"),
            }
        }
        reports.push(report);
    }
    let batches = reports.chunks(batch).map(Report::encode_batch).collect();
    Ok(Uploaded { batches, truth })
}

/// One plausible working day: active and typing minutes, typing speed and
/// corrections, clicks, scrolling, pointer travel, and a few shortcuts.
fn simulated_day(rng: &mut NoiseRng) -> RawMeasurements {
    let mut raw = RawMeasurements::new(1440);
    let active: u32 = rng.random_range(90..=600);
    let typing = (f64::from(active) * rng.random_range(0.1..0.5)) as u32;
    let keys_per_minute: u32 = rng.random_range(30..=260);
    let correction: f64 = rng.random_range(0.01..0.16);
    let text_keys = typing * keys_per_minute;
    let edits = (f64::from(text_keys) * correction) as u32;
    let spaces = text_keys / 6;
    let digits = text_keys / 20;
    for _ in 0..text_keys - edits - spaces - digits {
        raw.record_key(KeyClass::Letter);
    }
    for (class, n) in [
        (KeyClass::Edit, edits),
        (KeyClass::Whitespace, spaces),
        (KeyClass::Digit, digits),
        (KeyClass::Navigation, active / 2),
        (KeyClass::Modifier, active / 4),
    ] {
        for _ in 0..n {
            raw.record_key(class);
        }
    }
    // Most people lean on copy and paste; some use no listed shortcut at all.
    let favourite = match rng.random_range(0..10) {
        0..=3 => Some(Shortcut::Copy),
        4..=5 => Some(Shortcut::Paste),
        6 => Some(Shortcut::SwitchWindow),
        7 => Some(Shortcut::Undo),
        8 => Some(Shortcut::ALL[rng.random_range(0..Shortcut::ALL.len())]),
        _ => None,
    };
    if let Some(s) = favourite {
        for _ in 0..rng.random_range(5..40) {
            raw.record_chord(Some(s));
        }
    }
    let clicks = active * rng.random_range(2..12);
    for i in 0..clicks {
        raw.record_click(if i % 10 == 0 {
            MouseButton::Right
        } else {
            MouseButton::Left
        });
    }
    raw.record_scroll(active * rng.random_range(1..25));
    raw.record_pointer_travel(u64::from(active) * rng.random_range(1500..7000));
    let longest = rng.random_range(active / 8..=active.min(240));
    raw.set_minutes(1440, active, typing, longest);
    raw
}

/// Validates one decoded report and folds each of its metrics into its cell.
fn add_report(
    cells: &mut Cells,
    report: Report,
    catalogs: &Catalogs,
    config: &CollectorConfig,
) -> anyhow::Result<()> {
    let valid = validate(report, catalogs, config, PERIOD)
        .map_err(|r| anyhow!("report refused ({}): {}", r.status, r.reason))?;
    for (m, mechanism) in valid.report.metrics().iter().zip(&valid.mechanisms) {
        let key = (m.metric(), m.epsilon().to_bits());
        match mechanism {
            MetricMechanism::Frequency(o) => {
                let out = m.value().as_frequency().context("not a frequency report")?;
                let cell = cells
                    .entry(key)
                    .or_insert_with(|| Aggregate::Frequency(FrequencyAggregate::new(o.domain())));
                let Aggregate::Frequency(a) = cell else {
                    bail!("metric {} has both kinds of report", m.metric());
                };
                a.add(o, &out)?;
            }
            MetricMechanism::Numeric(n) => {
                let point = m.value().as_grid().context("not a numeric report")?;
                let cell = cells
                    .entry(key)
                    .or_insert_with(|| Aggregate::Mean(MeanAggregate::new()));
                let Aggregate::Mean(a) = cell else {
                    bail!("metric {} has both kinds of report", m.metric());
                };
                a.add(n, point)?;
            }
        }
    }
    Ok(())
}

/// Merges shard aggregates in the order given.
fn merge_all<'a>(shards: impl Iterator<Item = &'a Cells>) -> anyhow::Result<Cells> {
    let mut total = Cells::new();
    for shard in shards {
        for (key, agg) in shard {
            match (total.get_mut(key), agg) {
                (None, _) => {
                    total.insert(*key, agg.clone());
                }
                (Some(Aggregate::Frequency(t)), Aggregate::Frequency(a)) => t.merge(a)?,
                (Some(Aggregate::Mean(t)), Aggregate::Mean(a)) => t.merge(a),
                _ => bail!("shards disagree on the kind of cell {key:?}"),
            }
        }
    }
    Ok(total)
}

/// Bit-for-bit equality of two mean estimates (`==` on floats, which holds here
/// because both come from the same integers through the same arithmetic).
fn same_mean(a: &MeanEstimate, b: &MeanEstimate) -> bool {
    a.reports == b.reports
        && a.mean.to_bits() == b.mean.to_bits()
        && a.std_error.to_bits() == b.std_error.to_bits()
        && a.interval.lo.to_bits() == b.interval.lo.to_bits()
        && a.interval.hi.to_bits() == b.interval.hi.to_bits()
}

/// Bit-for-bit equality of two frequency estimates.
fn same_frequency(a: &FrequencyEstimate, b: &FrequencyEstimate) -> bool {
    a.reports == b.reports
        && a.values.len() == b.values.len()
        && a.values.iter().zip(&b.values).all(|(x, y)| {
            x.estimate.to_bits() == y.estimate.to_bits()
                && x.std_error.to_bits() == y.std_error.to_bits()
                && x.interval.lo.to_bits() == y.interval.lo.to_bits()
                && x.interval.hi.to_bits() == y.interval.hi.to_bits()
        })
}
