//! What the demo shows: the truth the simulation knows, and the tables, the
//! summary file and the chart that set the collector's estimates beside it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use hush_collector::estimate::{EstimateRow, QUANTILES, Window};
use hush_report::weekday;
use hush_report::{Catalog, MetricKind, MetricValue, RawMeasurements};

use crate::args::DemoArgs;
use crate::commands::fmt_value;

/// The truth the simulation knows, per day: per metric, the sum over devices of
/// each bucket's indicator (frequency metrics) or of the real, unclipped value
/// (counts), and how many device-days a count's range clipped.
pub(super) struct Truth {
    first: u32,
    /// `sums[day][metric][bucket]`.
    sums: Vec<Vec<Vec<f64>>>,
    /// `clipped[day][metric]`: device-days above the metric's range.
    clipped: Vec<Vec<f64>>,
    /// `readings[day][metric]`: every device's real value, for distribution
    /// metrics only (their quantiles need the values, not sums).
    readings: Vec<Vec<Vec<f64>>>,
    devices: Vec<f64>,
}

impl Truth {
    pub(super) fn new(catalog: &Catalog, first: u32, days: u32) -> Self {
        let day: Vec<Vec<f64>> = catalog
            .metrics()
            .iter()
            .map(|m| vec![0.0; m.domain().map_or(1, |d| d as usize)])
            .collect();
        Truth {
            first,
            sums: vec![day; days as usize],
            clipped: vec![vec![0.0; catalog.metrics().len()]; days as usize],
            readings: vec![vec![Vec::new(); catalog.metrics().len()]; days as usize],
            devices: vec![0.0; days as usize],
        }
    }

    pub(super) fn add(&mut self, catalog: &Catalog, day: usize, raw: &RawMeasurements) {
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
            if m.kind == MetricKind::Distribution {
                self.readings[day][i].push(reading.unwrap_or(0.0));
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

    pub(super) fn merge(&mut self, other: &Truth) {
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
        for (a, b) in self.readings.iter_mut().zip(&other.readings) {
            for (x, y) in a.iter_mut().zip(b) {
                x.extend_from_slice(y);
            }
        }
    }

    /// The real `q`-quantile of metric `i` over `days`' device-days: the
    /// smallest value with at least a share `q` of them at or below it.
    fn quantile(&self, i: usize, q: f64, days: &[usize]) -> Option<f64> {
        let mut all: Vec<f64> = days
            .iter()
            .flat_map(|&d| self.readings[d][i].iter().copied())
            .collect();
        if all.is_empty() {
            return None;
        }
        all.sort_by(f64::total_cmp);
        let rank = ((q * all.len() as f64).ceil() as usize).clamp(1, all.len());
        Some(all[rank - 1])
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
        if let Some(&(q, _)) = QUANTILES.iter().find(|(_, label)| *label == row.bucket) {
            return Some((self.quantile(i, q, &days)?, 0.0));
        }
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

/// Monday to Friday.
pub(super) fn working_day(period: u32) -> bool {
    weekday(period) < 5
}

/// What an ML team gets on working days, metric by metric: the estimate each
/// count's mean, each categorical metric's largest bucket and each
/// distribution's median has, its 95%
/// half-width as a share of the real (unclipped) truth per day (the widest
/// working day) and pooled over the run's working days, and how often the
/// intervals of the working-day cells cover the truth.
pub(super) fn print_accuracy(
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
        "  {:<28} {:<14} {:>10} {:>9} {:>12} {:>10} {:>12} {:>9}",
        "metric", "for", "truth", "clipped", "day (worst)", "covered", "pooled", "covered"
    );
    let (mut hits, mut cells) = (0usize, 0usize);
    let (mut quantile_hits, mut quantile_cells) = (0usize, 0usize);
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
        // A distribution's median, a count's mean, or the largest bucket.
        let distribution = metric.kind == MetricKind::Distribution;
        let (index, label) = match (distribution, metric.domain()) {
            (true, _) => (-1, "p50".to_owned()),
            (false, Some(_)) => (
                top as i32,
                metric.describe(MetricValue::Category(top as u32)),
            ),
            (false, None) => (-1, "mean".to_owned()),
        };
        let target = |r: &EstimateRow| {
            r.metric == metric.name
                && r.bucket_index == index
                && (!distribution || r.bucket == label)
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
            if QUANTILES.iter().any(|(_, l)| *l == row.bucket) {
                quantile_hits += usize::from(hit);
                quantile_cells += 1;
            } else {
                hits += usize::from(hit);
                cells += 1;
            }
            if target(row) {
                worst = worst.max(0.5 * (row.ci_high - row.ci_low) / t.abs());
                covered += usize::from(hit);
                n += 1;
            }
        }
        let pooled_row = pooled.iter().find(|r| target(r));
        let t = if distribution {
            pooled_row
                .and_then(|r| truth.of(catalog, r))
                .unwrap_or(f64::NAN)
        } else {
            truth.pooled(i, top, &days)
        };
        let (pooled_share, pooled_hit) = pooled_row.map_or((f64::NAN, "-"), |r| {
            let hit = r.ci_low <= t && t <= r.ci_high;
            (
                0.5 * (r.ci_high - r.ci_low) / t.abs(),
                if hit { "yes" } else { "NO" },
            )
        });
        println!(
            "  {:<28} {:<14} {:>10} {:>8.1}% {:>11.1}% {:>10} {:>11.1}% {:>9}",
            metric.name,
            label,
            fmt_value(t),
            100.0 * truth.clipped_share(i, &days),
            100.0 * worst,
            format!("{covered}/{n}"),
            100.0 * pooled_share,
            pooled_hit
        );
    }
    println!();
    println!(
        "Working-day cells (every bucket and mean of every day): {hits} of {cells} intervals ({:.1}%) cover the real truth.",
        100.0 * hits as f64 / cells.max(1) as f64
    );
    if quantile_cells > 0 {
        println!(
            "Working-day quantiles (p50, p90 of every distribution): {quantile_hits} of {quantile_cells} intervals ({:.1}%) cover the real quantile.",
            100.0 * quantile_hits as f64 / quantile_cells as f64
        );
    }
    println!(
        "Predicted by `hush plan --devices {devices}` before any report: compare its 'day +-' and 'week +-' columns."
    );
}

pub(super) fn print_table(
    catalog: &Catalog,
    truth: &Truth,
    rows: &[EstimateRow],
    args: &DemoArgs,
    stored: u64,
    withheld: usize,
) {
    // The last working day shows the fleet at work.
    let last = rows
        .iter()
        .map(|r| r.period)
        .filter(|&p| working_day(p))
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
        "  {:<28} {:<14} {:>11} {:>11} {:>25} {:>8} {:>8} {:>5}",
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
            "  {:<28} {:<14} {:>11} {:>11} {:>25} {:>8} {:>8} {:>5}",
            row.metric,
            row.bucket,
            fmt_value(t),
            fmt_value(row.estimate),
            format!("[{}, {}]", fmt_value(row.ci_low), fmt_value(row.ci_high)),
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

pub(super) fn write_summary(
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
pub(super) fn draw_chart(
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

/// One panel per distribution metric, pooled over the run's working days:
/// each bucket's real share of device-days (blue bars) and its estimate with
/// a 95% interval (red) on the doubling buckets, and the estimated median
/// and p90 with their intervals beside the real ones, written in the panel.
pub(super) fn draw_distributions(
    path: &Path,
    catalog: &Catalog,
    truth: &Truth,
    pooled: &[EstimateRow],
) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("{e}");
    let metrics: Vec<&hush_report::Metric> = catalog
        .metrics()
        .iter()
        .filter(|m| m.kind == MetricKind::Distribution)
        .collect();
    let root = SVGBackend::new(path, (1200, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(
            "Hush demo: distributions over the working days, estimate (red, 95% CI) vs truth (blue)",
            ("sans-serif", 20),
        )
        .map_err(|e| err(&e))?;
    let panels = root.split_evenly((2, metrics.len().div_ceil(2).max(1)));
    for (panel, metric) in panels.iter().zip(&metrics) {
        let mine: Vec<&EstimateRow> = pooled.iter().filter(|r| r.metric == metric.name).collect();
        // Bucket 0 ("no value") never holds a count: drawn from bucket 1.
        let bars: Vec<(f64, f64, &EstimateRow)> = mine
            .iter()
            .filter(|r| r.bucket_index >= 1)
            .filter_map(|r| Some((f64::from(r.bucket_index), truth.of(catalog, r)?, *r)))
            .collect();
        if bars.is_empty() {
            continue;
        }
        let top = bars
            .iter()
            .map(|b| b.1.max(b.2.ci_high))
            .fold(0.0f64, f64::max)
            .min(1.0)
            * 1.1;
        let buckets = bars.len() as f64;
        let quantiles: Vec<String> = mine
            .iter()
            .filter(|r| QUANTILES.iter().any(|(_, l)| *l == r.bucket))
            .filter_map(|r| {
                let t = truth.of(catalog, r)?;
                Some(format!(
                    "{} {} [{}, {}], real {}",
                    r.bucket,
                    fmt_value(r.estimate),
                    fmt_value(r.ci_low),
                    fmt_value(r.ci_high),
                    fmt_value(t)
                ))
            })
            .collect();
        let labels: Vec<String> = bars.iter().map(|b| b.2.bucket.clone()).collect();
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("{} ({})", metric.name, metric.unit),
                ("sans-serif", 14),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(48)
            .build_cartesian_2d(0.5f64..(buckets + 0.5), (-0.02f64)..top)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(bars.len())
            .x_label_formatter(&|x| {
                let k = x.round() as usize;
                labels.get(k.wrapping_sub(1)).cloned().unwrap_or_default()
            })
            .x_label_style(("sans-serif", 9))
            .y_desc("share of device-days")
            .draw()
            .map_err(|e| err(&e))?;
        chart
            .draw_series(bars.iter().map(|b| {
                Rectangle::new(
                    [(b.0 - 0.35, 0.0), (b.0 + 0.35, b.1)],
                    BLUE.mix(0.35).filled(),
                )
            }))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(bars.iter().map(|b| {
                ErrorBar::new_vertical(b.0, b.2.ci_low, b.2.estimate, b.2.ci_high, RED.filled(), 8)
            }))
            .map_err(|e| err(&e))?;
        let style = ("sans-serif", 11).into_font().color(&BLACK);
        chart
            .draw_series(quantiles.iter().enumerate().map(|(k, text)| {
                Text::new(
                    text.clone(),
                    (0.6, top * (0.97 - 0.08 * k as f64)),
                    style.clone(),
                )
            }))
            .map_err(|e| err(&e))?;
    }
    root.present()
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}
