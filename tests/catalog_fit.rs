//! The built-in catalog against the population it was fitted to (the demo's
//! simulated working days): ranges near the 99th percentile, sampling weights
//! that equalize relative precision, buckets that carry information,
//! distributions whose ladders span the working days, and a
//! metric choice that never depends on the measurements.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use hush_capture::synthetic::working_weeks;
use hush_collector::plan::{DeviceDays, balanced_weights, plan};
use hush_report::{Catalog, Encoding, MetricKind, MetricValue};

/// 600 people x 5 working days: 3,000 device-days. The 98th percentile of
/// 3,000 draws has a standard error near 0.26 percentile points, so the
/// bounds below (98th and 99.7th) leave the catalog's 99th several of them.
const PEOPLE: u64 = 600;

fn population(catalog: &Catalog) -> Vec<Vec<Vec<Option<f64>>>> {
    working_weeks(catalog, PEOPLE, 11)
}

/// Metric `i`'s readings over every person's working days, ascending (0 where undefined).
fn sorted_readings(people: &[Vec<Vec<Option<f64>>>], i: usize) -> Vec<f64> {
    let mut xs: Vec<f64> = people
        .iter()
        .flatten()
        .map(|day| day[i].unwrap_or(0.0))
        .collect();
    xs.sort_by(f64::total_cmp);
    xs
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[test]
fn count_ranges_sit_near_the_99th_percentile_of_working_days() {
    let catalog = Catalog::builtin();
    let people = population(&catalog);
    for (i, metric) in catalog.metrics().iter().enumerate() {
        let Encoding::Numeric { hi, .. } = metric.encoding else {
            continue;
        };
        let xs = sorted_readings(&people, i);
        let (p98, p997) = (quantile(&xs, 0.98), quantile(&xs, 0.997));
        assert!(
            p98 <= hi && hi <= p997,
            "{}: range top {hi} outside [{p98}, {p997}] (98th to 99.7th percentile)",
            metric.name
        );
    }
}

#[test]
fn buckets_split_the_working_days_into_informative_parts() {
    let catalog = Catalog::builtin();
    let people = population(&catalog);
    for (i, metric) in catalog.metrics().iter().enumerate() {
        let Some(d) = metric.domain() else { continue };
        let mut counts = vec![0usize; d as usize];
        for day in people.iter().flatten() {
            if let MetricValue::Category(c) = metric.value_of(day[i]) {
                counts[c as usize] += 1;
            }
        }
        let total = counts.iter().sum::<usize>() as f64;
        if metric.kind == MetricKind::Distribution {
            // A ladder is not cut for information but to span the values:
            // the working days' 90th percentile lies below its last edge
            // (so p90 is bounded) and its top bucket holds under 1%.
            let top = *counts.last().unwrap() as f64 / total;
            let above_p90 = counts[counts.len() - 2..].iter().sum::<usize>() as f64 / total;
            assert!(
                top < 0.01 && above_p90 < 0.10,
                "{}: {counts:?} does not span the working days",
                metric.name
            );
            continue;
        }
        let largest = *counts.iter().max().unwrap() as f64 / total;
        // Version 3's keyboard_share had 85% of working days in one bucket and
        // 99.4% in three of eleven.
        assert!(
            largest <= 0.65,
            "{}: {:.0}% of working days in one bucket",
            metric.name,
            100.0 * largest
        );
        let informative = counts.iter().filter(|&&c| c as f64 >= 0.05 * total).count();
        assert!(
            informative >= 2 && informative + 3 >= d as usize || metric.name == "top_shortcut",
            "{}: {informative} of {d} buckets hold 5% of working days or more: {counts:?}",
            metric.name
        );
    }
}

#[test]
fn weights_give_every_metric_the_same_relative_precision() {
    let catalog = Catalog::builtin();
    let devices: Vec<DeviceDays> = population(&catalog)
        .into_iter()
        .map(|days| DeviceDays { days })
        .collect();
    let plans = plan(&catalog, 4.0, 2.0, &devices, 1, 11).unwrap();
    let balanced = balanced_weights(&plans, 1000);
    // The relative variance per report rests on 3,000 device-days: a few
    // percent of sampling error, so 15% means the weights were fitted.
    for ((metric, want), p) in catalog.metrics().iter().zip(&balanced).zip(&plans) {
        let ratio = f64::from(metric.weight) / f64::from(*want);
        assert!(
            (ratio - 1.0).abs() < 0.15,
            "{}: weight {} against a balanced {want}",
            metric.name,
            metric.weight
        );
        // Equal weights per relative variance mean equal daily precision.
        let per_day = p.relative_half_width(hush_collector::plan::Window::Day, 20_000.0);
        // Sixteen metrics share the reports: 12% each at 20,000 by `hush
        // plan`, up to 13% on this smaller sample. A median's interval is the
        // inverted band, wider than the delta method's where the median sits
        // near a bucket edge (the weights use the delta method): up to 16%.
        let most = if p.quantile.is_some() { 0.16 } else { 0.13 };
        assert!(
            per_day < most,
            "{}: ±{:.1}% a day at 20,000",
            p.name,
            100.0 * per_day
        );
    }
}

#[test]
fn fitted_p90s_are_the_working_days_90th_percentiles() {
    // A fleet's released p90 is compared with these to learn its ranges
    // (hush_collector::ranges); 3,000 draws put the sample's 90th percentile
    // within about 2% of the population's, so 6% means they were fitted.
    let catalog = Catalog::builtin();
    let people = population(&catalog);
    for measure in catalog.measures() {
        let Some(fitted) = hush_report::fitted_p90(measure) else {
            continue;
        };
        let i = catalog
            .metrics()
            .iter()
            .position(|m| m.measure == measure)
            .unwrap();
        let xs = sorted_readings(&people, i);
        let p90 = quantile(&xs, 0.9);
        assert!(
            (fitted / p90 - 1.0).abs() < 0.06,
            "{}: fitted p90 {fitted} against the population's {p90}",
            measure.name()
        );
        // The ladder reaches far enough above the p90 to see it grow by the
        // smallest step the collector acts on, and more.
        let ladder = catalog
            .metrics()
            .iter()
            .find(|m| m.measure == measure && m.kind == MetricKind::Distribution)
            .unwrap();
        let Encoding::Buckets { edges, .. } = &ladder.encoding else {
            panic!("a distribution has buckets")
        };
        assert!(
            *edges.last().unwrap() > 1.5 * fitted,
            "{}: the ladder tops out at {}",
            measure.name(),
            edges.last().unwrap()
        );
    }
}
