//! `hush demo`: the whole pipeline on embedded defaults. A real collector runs
//! in-process on loopback; a simulated fleet's days go through the real window
//! aggregator, privatizer, budget ledger, outbox and uploader over HTTP; then the
//! estimates are compared with the truth the simulation knows.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use hush_agent::daemon::unix_now;
use hush_agent::uploader::{Uploader, flush};
use hush_agent::{Agent, AgentConfig, AgentPaths, Outbox, control};
use hush_capture::synthetic::Persona;
use hush_collector::estimate::{EstimateRow, Window, estimate_cells, pooled_rows};
use hush_collector::export::{ExportOptions, Format, export_cells};
use hush_collector::{Catalogs, CollectorConfig, TokenKind, new_token, store};
use hush_ldp::NoiseRng;
use hush_report::{Catalog, DeviceSecret, MetricValue, RawMeasurements};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;

use crate::args::DemoArgs;

/// The truth the simulation knows, per day: per metric, the sum over devices of
/// each bucket's indicator (frequency metrics) or of the real, unclipped value
/// (counts), and how many device-days a count's range clipped.
struct Truth {
    first: u32,
    /// `sums[day][metric][bucket]`.
    sums: Vec<Vec<Vec<f64>>>,
    /// `clipped[day][metric]`: device-days above the metric's range.
    clipped: Vec<Vec<f64>>,
    devices: Vec<f64>,
}

impl Truth {
    fn new(catalog: &Catalog, first: u32, days: u32) -> Self {
        let day: Vec<Vec<f64>> = catalog
            .metrics()
            .iter()
            .map(|m| vec![0.0; m.domain().map_or(1, |d| d as usize)])
            .collect();
        Truth {
            first,
            sums: vec![day; days as usize],
            clipped: vec![vec![0.0; catalog.metrics().len()]; days as usize],
            devices: vec![0.0; days as usize],
        }
    }

    fn add(&mut self, catalog: &Catalog, day: usize, raw: &RawMeasurements) {
        for (i, m) in catalog.metrics().iter().enumerate() {
            let reading = m.measure.read(raw);
            match m.value_of(reading) {
                MetricValue::Number(x) => {
                    let real = reading.unwrap_or(0.0);
                    self.sums[day][i][0] += real;
                    self.clipped[day][i] += f64::from(u8::from(real > x));
                }
                MetricValue::Category(c) => self.sums[day][i][c as usize] += 1.0,
            }
        }
        self.devices[day] += 1.0;
    }

    /// The share of device-days on `days` that metric `i`'s range clipped.
    fn clipped_share(&self, i: usize, days: &[usize]) -> f64 {
        let clipped: f64 = days.iter().map(|&d| self.clipped[d][i]).sum();
        clipped / days.iter().map(|&d| self.devices[d]).sum::<f64>()
    }

    /// The population value over several days pooled (device-days weighted equally).
    fn pooled(&self, i: usize, bucket: usize, days: &[usize]) -> f64 {
        let sum: f64 = days.iter().map(|&d| self.sums[d][i][bucket]).sum();
        sum / days.iter().map(|&d| self.devices[d]).sum::<f64>()
    }

    fn merge(&mut self, other: &Truth) {
        for (d, od) in self.sums.iter_mut().zip(&other.sums) {
            for (a, b) in d.iter_mut().zip(od) {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y;
                }
            }
        }
        for (a, b) in self.devices.iter_mut().zip(&other.devices) {
            *a += b;
        }
        for (a, b) in self.clipped.iter_mut().zip(&other.clipped) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
    }

    /// The days an estimate row covers: its day, or the run's working days
    /// for the pooled rows.
    fn days_of(&self, row: &EstimateRow) -> Option<Vec<usize>> {
        if row.window == Window::Day.name() {
            let day = usize::try_from(row.period.checked_sub(self.first)?).ok()?;
            return (day < self.devices.len()).then(|| vec![day]);
        }
        Some(
            (0..self.devices.len())
                .filter(|&d| working_day(self.first + d as u32))
                .collect(),
        )
    }

    /// The population value behind an estimate row, and the share of
    /// device-days its range clipped (0 for buckets).
    fn of_row(&self, catalog: &Catalog, row: &EstimateRow) -> Option<(f64, f64)> {
        let days = self.days_of(row)?;
        let i = catalog
            .metrics()
            .iter()
            .position(|m| m.name == row.metric)?;
        let b = usize::try_from(row.bucket_index.max(0)).ok()?;
        if days.is_empty() || b >= self.sums[days[0]][i].len() {
            return None;
        }
        Some((self.pooled(i, b, &days), self.clipped_share(i, &days)))
    }

    /// The population value behind an estimate row.
    fn of(&self, catalog: &Catalog, row: &EstimateRow) -> Option<f64> {
        self.of_row(catalog, row).map(|(t, _)| t)
    }
}

/// Where the simulated laptops keep their files: memory-backed when the system
/// has /dev/shm, because 2,000 simulated agents would otherwise queue some
/// 100,000 fsyncs on one disk (each is durable on a real laptop's own disk).
fn work_dir() -> anyhow::Result<tempfile::TempDir> {
    let shm = Path::new("/dev/shm");
    let builder = tempfile::Builder::new()
        .prefix("hush-demo-")
        .tempdir_in(shm);
    match builder {
        Ok(d) if shm.is_dir() => Ok(d),
        _ => tempfile::Builder::new()
            .prefix("hush-demo-")
            .tempdir()
            .context("creating a temporary directory"),
    }
}

/// The demo's epsilon per value: as given, or twice the epsilon per report.
fn epsilon_perm(args: &DemoArgs) -> anyhow::Result<f64> {
    super::epsilon_perm(args.epsilon, args.epsilon_perm)
}

/// Runs the demo.
pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    hush_ldp::check_epsilon(args.epsilon).map_err(|e| super::Usage(format!("--epsilon: {e}")))?;
    let work = work_dir()?;
    let catalog = Catalog::builtin();
    let out = args.out.clone();
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    // A real collector, in-process, on a loopback port the OS picks.
    let config = CollectorConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        database: work.path().join("collector.sqlite"),
        epsilon_per_report: args.epsilon,
        epsilon_per_value: epsilon_perm(args)?,
        device_requests_per_minute: 100_000,
        // The demo uploads its simulated past days at once; a fleet would
        // have sent each within a day, so the window covers them all.
        grace_periods: args.days + 1,
        ..CollectorConfig::default()
    };
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_config = config.clone();
    let server = std::thread::Builder::new()
        .name("hush-demo-collector".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(hush_collector::server::serve_until(
                server_config,
                move |addr| {
                    let _ = addr_tx.send(addr);
                },
                async move {
                    let _ = stop_rx.await;
                },
            ))?;
            anyhow::Ok(())
        })?;
    let addr = addr_rx
        .recv()
        .context("the in-process collector did not start")?;
    let url = format!("http://{addr}");

    // Device tokens, minted as `hush collector token create` would.
    let mut rng = NoiseRng::seed_from_u64(args.seed);
    let tokens: Vec<String> = {
        let conn = store::open(&config.database)?;
        conn.execute_batch("BEGIN")?;
        let t = (0..args.devices)
            .map(|_| {
                let token = new_token(TokenKind::Device, &mut rng);
                store::add_token(&conn, TokenKind::Device, &token, "fleet", unix_now() as i64)
                    .map(|()| token)
            })
            .collect::<Result<Vec<_>, _>>()?;
        conn.execute_batch("COMMIT")?;
        t
    };

    let today = (unix_now() / 86_400) as u32;
    let first = today - args.days;
    let total = args.devices * u64::from(args.days);
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} simulated device-days {pos}/{len} [{bar:30}] {elapsed} (eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let done = AtomicU64::new(0);
    let truth = Mutex::new(Truth::new(&catalog, first, args.days));
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from))
        .max(1);
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for worker in 0..threads {
            let (tokens, truth, done, bar, failures, catalog, url, work) = (
                &tokens,
                &truth,
                &done,
                &bar,
                &failures,
                &catalog,
                &url,
                work.path(),
            );
            s.spawn(move || {
                let mut local = Truth::new(catalog, first, args.days);
                for device in (worker as u64..args.devices).step_by(threads) {
                    let result = simulate_device(
                        args,
                        device,
                        &tokens[device as usize],
                        url,
                        work,
                        first,
                        catalog,
                        &mut local,
                        done,
                        bar,
                    );
                    if let Err(e) = result {
                        if let Ok(mut f) = failures.lock() {
                            f.push(format!("device {device}: {e:#}"));
                        }
                        return;
                    }
                }
                if let Ok(mut t) = truth.lock() {
                    t.merge(&local);
                }
            });
        }
    });
    bar.finish_and_clear();
    let failures = failures.into_inner().unwrap_or_default();
    if let Some(f) = failures.first() {
        bail!("the simulation failed: {f}");
    }
    let truth = truth
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a simulation thread panicked"))?;
    let simulated = started.elapsed();

    // Estimates from the collector's own aggregates, one set per day. Days are
    // not pooled here: a device whose value did not change reuses its
    // permanent (first-layer) response, so its reports on different days are
    // correlated, and a pooled interval that assumed independent reports
    // would be too narrow.
    let conn = store::open(&config.database)?;
    let stored = store::report_count(&conn)?;
    let cells = store::all_cells(&conn, None, None)?;
    let catalogs = Catalogs::builtin();
    let (rows, withheld) =
        estimate_cells(&cells, &catalogs, config.period_seconds, config.min_devices)?;
    // Pooled estimates, with errors clustered by device: the working days of
    // the run together, and any calendar week wholly inside it (for the dataset).
    let last = first + args.days - 1;
    let reports = store::stored_reports(&conn, first, last)?;
    let first_working = (first..=last).find(|&p| working_day(p));
    let (pooled, _) = pooled_rows(
        &reports,
        &catalogs,
        "working days",
        &|p| first_working.filter(|_| working_day(p)),
        config.period_seconds,
        config.min_devices,
    )?;
    let (weeks, _) = pooled_rows(
        &reports,
        &catalogs,
        Window::Week.name(),
        &|p| {
            let (start, end) = Window::Week.span(p);
            (start >= first && end <= last).then_some(start)
        },
        config.period_seconds,
        config.min_devices,
    )?;
    drop(reports);
    let _ = stop_tx.send(());
    match server.join() {
        Ok(r) => r?,
        Err(_) => bail!("the in-process collector panicked"),
    }

    print_table(&catalog, &truth, &rows, args, stored, withheld);
    print_accuracy(&catalog, &truth, &rows, &pooled, args.devices);
    let summary_path = out.join("estimates.csv");
    let mut summary_rows = rows.clone();
    summary_rows.extend(pooled.iter().cloned());
    write_summary(&summary_path, &catalog, &truth, &summary_rows)?;
    // The dataset an ML team would get from `hush collector export`, in two formats.
    let mut datasets = Vec::new();
    for format in [Format::Parquet, Format::Csv] {
        let options = ExportOptions {
            format,
            out_dir: out.join(format!("dataset-{}", format.name())),
            from: None,
            to: None,
            force: true,
            period_seconds: config.period_seconds,
            min_devices: config.min_devices,
        };
        let summary = export_cells(
            cells.clone(),
            weeks.clone(),
            &catalogs,
            &options,
            &mut |_, _| {},
        )?;
        datasets.push((options.out_dir, summary.rows));
    }
    let chart = out.join("estimates.svg");
    draw_chart(&chart, &catalog, &truth, &rows, args.days)?;
    println!();
    println!(
        "{} devices x {} days simulated and uploaded in {:.1} s; {} reports stored; total {:.1} s",
        args.devices,
        args.days,
        simulated.as_secs_f64(),
        stored,
        started.elapsed().as_secs_f64()
    );
    println!(
        "every day's estimates (and the working days pooled) beside the real truth and the share clipped: {}",
        summary_path.display()
    );
    println!(
        "chart of the daily estimates with 95% intervals against the truth: {}",
        chart.display()
    );
    for (dir, rows) in &datasets {
        println!(
            "dataset ({rows} rows, partitioned by day, data dictionary in _README.md): {}",
            dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One simulated laptop: enroll, then each day generate input, fold it into
/// windows, privatize at the day's end, and upload every other day and at the end.
#[allow(clippy::too_many_arguments)]
fn simulate_device(
    args: &DemoArgs,
    device: u64,
    token: &str,
    url: &str,
    work: &Path,
    first: u32,
    catalog: &Catalog,
    truth: &mut Truth,
    done: &AtomicU64,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let mut life = NoiseRng::seed_from_u64(args.seed ^ 0x5EED_F1EE7);
    life.set_stream(device);
    let mut noise = NoiseRng::seed_from_u64(args.seed ^ 0x0015_E000);
    noise.set_stream(device);
    let persona = Persona::sample(&mut life);
    let paths = AgentPaths::in_home(&work.join("devices").join(device.to_string()));
    let config = AgentConfig {
        max_epsilon_per_report: args.epsilon,
        max_epsilon_per_value: epsilon_perm(args)?,
        ..AgentConfig::default()
    };
    // A reproducible device secret: the demo's permanent responses follow the seed.
    let mut secret = [0u8; 32];
    rand::Rng::fill_bytes(&mut noise, &mut secret);
    hush_agent::device::install_secret(&paths, &DeviceSecret::from_bytes(secret))?;
    let enrollment = control::enroll(&paths, &control::offer(&config, url)?, token)?;
    let uploader = Uploader::new(&enrollment, None)?;
    let outbox = Outbox::new(&paths, config.outbox_max_reports);
    let agent = Agent {
        paths: paths.clone(),
        config,
        enrollment,
    };
    for day in 0..args.days {
        let period = first + day;
        // 1970-01-01 was a Thursday: with Monday as 0 it is day 3 of its week.
        let weekday = (period + 3) % 7;
        let raw = persona.measured_day(weekday, &mut life);
        truth.add(catalog, day as usize, &raw);
        agent.produce_with(period, raw, &mut noise)?;
        if day % 2 == 1 || day + 1 == args.days {
            let s = flush(&uploader, &outbox, &paths, unix_now())?;
            if let Some(why) = s.retry {
                bail!("upload failed: {why}");
            }
            if s.refused > 0 {
                bail!("the collector refused {} reports", s.refused);
            }
        }
        bar.set_position(done.fetch_add(1, Ordering::Relaxed) + 1);
    }
    Ok(())
}

/// Monday to Friday (1970-01-01, day 0, was a Thursday).
fn working_day(period: u32) -> bool {
    (period + 3) % 7 < 5
}

/// What an ML team gets on working days, metric by metric: the estimate each
/// count's mean and each distribution's largest bucket has, its 95%
/// half-width as a share of the real (unclipped) truth per day (the widest
/// working day) and pooled over the run's working days, and how often the
/// intervals of the working-day cells cover the truth.
fn print_accuracy(
    catalog: &Catalog,
    truth: &Truth,
    rows: &[EstimateRow],
    pooled: &[EstimateRow],
    devices: u64,
) {
    let days: Vec<usize> = (0..truth.devices.len())
        .filter(|&d| working_day(truth.first + d as u32))
        .collect();
    if days.is_empty() {
        return;
    }
    println!();
    println!(
        "Working days ({} of them, {devices} laptops): 95% half-width as a share of the real (unclipped) truth",
        days.len()
    );
    println!();
    println!(
        "  {:<16} {:<14} {:>10} {:>9} {:>12} {:>10} {:>12} {:>9}",
        "metric", "for", "truth", "clipped", "day (worst)", "covered", "pooled", "covered"
    );
    let (mut hits, mut cells) = (0usize, 0usize);
    for (i, metric) in catalog.metrics().iter().enumerate() {
        // The bucket that holds the most working days, or the mean.
        let buckets = metric.domain().map_or(1, |d| d as usize);
        let top = (0..buckets)
            .max_by(|&a, &b| {
                truth
                    .pooled(i, a, &days)
                    .total_cmp(&truth.pooled(i, b, &days))
            })
            .unwrap_or(0);
        let index = if metric.domain().is_some() {
            top as i32
        } else {
            -1
        };
        let (mut worst, mut covered, mut n) = (0.0f64, 0usize, 0usize);
        for row in rows
            .iter()
            .filter(|r| r.metric == metric.name && working_day(r.period))
        {
            let Some(t) = truth.of(catalog, row) else {
                continue;
            };
            let hit = row.ci_low <= t && t <= row.ci_high;
            hits += usize::from(hit);
            cells += 1;
            if row.bucket_index == index {
                worst = worst.max(0.5 * (row.ci_high - row.ci_low) / t.abs());
                covered += usize::from(hit);
                n += 1;
            }
        }
        let t = truth.pooled(i, top, &days);
        let (pooled_share, pooled_hit) = pooled
            .iter()
            .find(|r| r.metric == metric.name && r.bucket_index == index)
            .map_or((f64::NAN, "-"), |r| {
                let hit = r.ci_low <= t && t <= r.ci_high;
                (
                    0.5 * (r.ci_high - r.ci_low) / t.abs(),
                    if hit { "yes" } else { "NO" },
                )
            });
        let label = if index < 0 {
            "mean".to_owned()
        } else {
            metric.describe(MetricValue::Category(top as u32))
        };
        println!(
            "  {:<16} {:<14} {:>10} {:>8.1}% {:>11.1}% {:>10} {:>11.1}% {:>9}",
            metric.name,
            label,
            super::fmt_value(t),
            100.0 * truth.clipped_share(i, &days),
            100.0 * worst,
            format!("{covered}/{n}"),
            100.0 * pooled_share,
            pooled_hit
        );
    }
    println!();
    println!(
        "Working-day cells (every bucket of every day): {hits} of {cells} intervals ({:.1}%) cover the real truth.",
        100.0 * hits as f64 / cells.max(1) as f64
    );
    println!(
        "Predicted by `hush plan --devices {devices}` before any report: compare its 'day +-' and 'week +-' columns."
    );
}

fn print_table(
    catalog: &Catalog,
    truth: &Truth,
    rows: &[EstimateRow],
    args: &DemoArgs,
    stored: u64,
    withheld: usize,
) {
    // The last working day shows the fleet at work (1970-01-01 was a Thursday).
    let weekday = |p: u32| (p + 3) % 7 < 5;
    let last = rows
        .iter()
        .map(|r| r.period)
        .filter(|&p| weekday(p))
        .max()
        .or_else(|| rows.iter().map(|r| r.period).max())
        .unwrap_or(0);
    let last_day = rows
        .iter()
        .find(|r| r.period == last)
        .map_or("", |r| r.period_start.as_str());
    println!(
        "Hush demo: {} simulated laptops x {} days, epsilon {} per device per day, one metric per report",
        args.devices, args.days, args.epsilon
    );
    println!(
        "Estimates for the last working day ({last_day}) from the collector's aggregates; the truth is known to the simulation."
    );
    println!();
    println!(
        "  {:<16} {:<14} {:>11} {:>11} {:>25} {:>8} {:>8} {:>5}",
        "metric", "bucket", "truth", "estimate", "95% CI", "covered", "reports", "eps"
    );
    let (mut covered, mut intervals) = (0usize, 0usize);
    for row in rows {
        let Some(t) = truth.of(catalog, row) else {
            continue;
        };
        let hit = row.ci_low <= t && t <= row.ci_high;
        covered += usize::from(hit);
        intervals += 1;
        if row.period != last {
            continue;
        }
        println!(
            "  {:<16} {:<14} {:>11} {:>11} {:>25} {:>8} {:>8} {:>5}",
            row.metric,
            row.bucket,
            super::fmt_value(t),
            super::fmt_value(row.estimate),
            format!(
                "[{}, {}]",
                super::fmt_value(row.ci_low),
                super::fmt_value(row.ci_high)
            ),
            if hit { "yes" } else { "NO" },
            row.reports,
            row.epsilon
        );
    }
    println!();
    let share = covered as f64 / intervals.max(1) as f64;
    let sd = (0.95f64 * 0.05 / intervals.max(1) as f64).sqrt();
    println!(
        "Over all {} days: {covered} of {intervals} intervals ({:.1}%) cover the truth; 95% expected, +- {:.1} points (binomial sd)",
        args.days,
        100.0 * share,
        100.0 * sd
    );
    println!(
        "{stored} reports stored; {withheld} day-cells withheld for having fewer than 50 devices"
    );
}

fn write_summary(
    path: &PathBuf,
    catalog: &Catalog,
    truth: &Truth,
    rows: &[EstimateRow],
) -> anyhow::Result<()> {
    let mut text = String::from(
        "window,period_start,metric,bucket,truth,clipped,estimate,std_error,ci_low,ci_high,covered,post_processed,reports,epsilon,mechanism\n",
    );
    for row in rows {
        let Some((t, clipped)) = truth.of_row(catalog, row) else {
            continue;
        };
        text.push_str(&format!(
            "{},{},{},\"{}\",{t},{clipped},{},{},{},{},{},{},{},{},{}\n",
            row.window,
            row.period_start,
            row.metric,
            row.bucket.replace('"', "\"\""),
            row.estimate,
            row.std_error,
            row.ci_low,
            row.ci_high,
            row.ci_low <= t && t <= row.ci_high,
            row.post_processed,
            row.reports,
            row.epsilon,
            row.mechanism
        ));
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// One panel per count metric: the truth per day as a line, the estimate as a
/// point with its 95% interval.
fn draw_chart(
    path: &Path,
    catalog: &Catalog,
    truth: &Truth,
    rows: &[EstimateRow],
    days: u32,
) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let counts: Vec<&str> = catalog
        .metrics()
        .iter()
        .filter(|m| m.domain().is_none())
        .map(|m| m.name)
        .collect();
    let root = SVGBackend::new(path, (1200, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let root = root
        .titled(
            "Hush demo: daily estimates (red, 95% CI) vs truth (blue)",
            ("sans-serif", 22),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let panels = root.split_evenly((2, counts.len().div_ceil(2)));
    for (panel, name) in panels.iter().zip(&counts) {
        let mine: Vec<&EstimateRow> = rows.iter().filter(|r| r.metric == *name).collect();
        let first = mine.iter().map(|r| r.period).min().unwrap_or(0);
        let points: Vec<(f64, f64, f64, f64, f64)> = mine
            .iter()
            .filter_map(|r| {
                let t = truth.of(catalog, r)?;
                Some((
                    f64::from(r.period - first),
                    t,
                    r.estimate,
                    r.ci_low,
                    r.ci_high,
                ))
            })
            .collect();
        let lo = points
            .iter()
            .map(|p| p.3.min(p.1))
            .fold(f64::INFINITY, f64::min);
        let hi = points
            .iter()
            .map(|p| p.4.max(p.1))
            .fold(f64::NEG_INFINITY, f64::max);
        if !(lo.is_finite() && hi.is_finite()) {
            continue;
        }
        let pad = (hi - lo).max(1.0) * 0.08;
        let mut chart = ChartBuilder::on(panel)
            .caption(*name, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(28)
            .y_label_area_size(56)
            .build_cartesian_2d(-0.5f64..(f64::from(days) - 0.5), (lo - pad)..(hi + pad))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc("day")
            .x_labels(days as usize)
            .x_label_formatter(&|x| format!("{}", x.round() as i64 + 1))
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|p| (p.0, p.1)),
                BLUE.stroke_width(2),
            ))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|p| ErrorBar::new_vertical(p.0, p.3, p.2, p.4, RED.filled(), 8)),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    root.present()
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}
