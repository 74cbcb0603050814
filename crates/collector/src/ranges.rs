//! Learning a fleet's count ranges from its released distributions, and
//! publishing them for agents to adopt.
//!
//! Each count has a distribution metric whose doubling buckets give the
//! fleet's 90th percentile (`hush_stats::quantile`). The built-in ranges
//! assume the 90th percentiles of the population they were fitted to
//! ([`hush_report::fitted_p90`]); a fleet whose days are larger or smaller
//! gets its ranges scaled by the same factor, in quarter octaves
//! ([`hush_report::RangeSteps`]), so each range keeps its place near the
//! fleet's 99th percentile whatever the fleet's scale.
//!
//! Only the released estimates enter, so this is post-processing of the
//! reports: it costs no privacy. It reads a period two periods back (the one
//! whose reports have all been uploaded: each is sent within the period after
//! it), not only closed periods, because the result goes to the agents, not
//! into a dataset, and waiting out the grace window would hold a fleet on
//! ranges that clip it for a week per revision.
//!
//! The rules are asymmetric, because a range too small biases every mean (it
//! clips) while one too large only widens intervals:
//! - **Grow** as soon as one period's p90 is significantly above what the
//!   ranges assume: the lower end of its 99.9% interval above the assumption
//!   by more than one step. The new step is the one nearest the estimate; if
//!   the p90 lies above the ladder (unbounded), [`JUMP_STEPS`] up.
//! - **Shrink** only when each of the last [`SHRINK_PERIODS`] periods under
//!   the ranges in force has its p90 significantly below the assumption (its
//!   99.9% interval's upper end more than one step below), to the step nearest
//!   the largest of their estimates: a week of daily periods, so weekends
//!   (whose p90 is lower) never shrink a range the working days need.

use std::collections::BTreeMap;

use hush_ldp::FrequencyOracle;
use hush_report::{
    Catalog, Measure, MetricKind, MetricMechanism, PublishedRanges, RangeSteps, nearest_step,
};
use hush_stats::FrequencyAggregate;

use crate::cells::CellState;
use crate::estimate::{distribution_edges, shares_below};
use crate::store::Store;
use crate::validate::Catalogs;
use crate::{CollectorConfig, CollectorError, PeriodClock};

/// Confidence of the intervals a decision rests on: a stable fleet's p90
/// falls outside one about once in a thousand periods per measure, and a
/// change needs it to fall a step beyond, rarer still.
pub const DECISION_LEVEL: f64 = 0.999;

/// How far above the ladder a p90 that exceeds it moves the range: three
/// octaves (8x), after which the p90 is read inside the ladder again.
pub const JUMP_STEPS: i8 = 12;

/// How many consecutive periods must agree before a range shrinks.
pub const SHRINK_PERIODS: usize = 7;

/// The fewest reports of a distribution a period must hold to be read (or
/// the release threshold, if higher): a handful of devices cannot move the
/// fleet's ranges.
pub const MIN_REPORTS: u64 = 100;

/// The margin, in steps, an interval must clear before a range moves.
pub const MARGIN_STEPS: i8 = 1;

/// One period's reading of a count's 90th percentile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct P90 {
    /// The period.
    pub period: u32,
    /// The estimate (infinite above the ladder's last edge).
    pub estimate: f64,
    /// The interval's lower end at [`DECISION_LEVEL`].
    pub lo: f64,
    /// The interval's upper end (infinite when unbounded).
    pub hi: f64,
}

/// The next steps from `current`, given each count measure's readings under
/// the catalog those steps define, oldest first (at most one per period; a
/// period with too few reports has none). Returns `current` unchanged when no
/// rule fires.
pub fn next_steps(current: &RangeSteps, readings: &BTreeMap<&'static str, Vec<P90>>) -> RangeSteps {
    let mut next = current.clone();
    for measure in Measure::ALL {
        let (Some(assumed), Some(fitted)) = (
            current.assumed_p90(measure),
            hush_report::fitted_p90(measure),
        ) else {
            continue;
        };
        let Some(read) = readings.get(measure.name()) else {
            continue;
        };
        let step = current.step(measure);
        let margin = hush_report::step_factor(MARGIN_STEPS);
        if let Some(last) = read.last()
            && last.lo > assumed * margin
        {
            let grown = if last.estimate.is_finite() {
                nearest_step(last.estimate / fitted)
            } else {
                step.saturating_add(JUMP_STEPS)
            };
            if grown > step {
                next = next.with(measure, grown);
            }
            continue;
        }
        if read.len() >= SHRINK_PERIODS {
            let week = &read[read.len() - SHRINK_PERIODS..];
            if week.iter().all(|r| r.hi < assumed / margin) {
                let largest = week.iter().map(|r| r.estimate).fold(0.0, f64::max);
                if largest > 0.0 {
                    let shrunk = nearest_step(largest / fitted);
                    if shrunk < step {
                        next = next.with(measure, shrunk);
                    }
                }
            }
        }
    }
    next
}

/// Each count measure's p90 readings under `catalog` for periods `from..=to`:
/// the fleet's distribution cells (all cohorts together) at the collector's
/// epsilons, each with at least [`MIN_REPORTS`] reports (or `min_devices`).
pub fn readings(
    cells: &[(crate::CellKey, CellState)],
    catalog: &Catalog,
    config: &CollectorConfig,
    from: u32,
    to: u32,
) -> Result<BTreeMap<&'static str, Vec<P90>>, CollectorError> {
    let internal = |e: String| CollectorError::Internal(e);
    let k = f64::from(catalog.metrics_per_report());
    let (epsilon, epsilon_perm) = (config.epsilon_per_report / k, config.epsilon_per_value / k);
    // (metric, period) -> the fleet's support counts.
    let mut fleet: BTreeMap<(u16, u32), FrequencyAggregate> = BTreeMap::new();
    for (key, state) in cells {
        let CellState::Frequency(agg) = state else {
            continue;
        };
        if key.catalog != catalog.hash()
            || !(from..=to).contains(&key.period)
            || key.epsilon_bits != epsilon.to_bits()
            || key.epsilon_perm_bits != epsilon_perm.to_bits()
            || catalog
                .metrics()
                .get(usize::from(key.metric))
                .is_none_or(|m| m.kind != MetricKind::Distribution)
        {
            continue;
        }
        match fleet.entry((key.metric, key.period)) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(agg.clone());
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                o.get_mut()
                    .merge(agg)
                    .map_err(|e| internal(e.to_string()))?;
            }
        }
    }
    let mut out: BTreeMap<&'static str, Vec<P90>> = BTreeMap::new();
    for ((index, period), agg) in fleet {
        if agg.reports() < config.min_devices.max(MIN_REPORTS) {
            continue;
        }
        let metric = &catalog.metrics()[usize::from(index)];
        let Some(edges) = distribution_edges(metric) else {
            continue;
        };
        let MetricMechanism::Frequency(oracle) = metric
            .mechanism(epsilon_perm, epsilon)
            .map_err(|e| internal(e.to_string()))?
        else {
            continue;
        };
        let below = shares_below(&agg, oracle.support_probabilities(), edges.len())?;
        let q = hush_stats::quantile(edges, &below, 0.9, DECISION_LEVEL)
            .map_err(|e| internal(e.to_string()))?;
        out.entry(metric.measure.name()).or_default().push(P90 {
            period,
            estimate: q.estimate,
            lo: q.interval.lo,
            hi: q.interval.hi,
        });
    }
    Ok(out)
}

/// Looks at the fleet's distributions up to two periods before `clock`'s
/// and publishes the next range revision if a rule fires; returns it.
pub fn learn(
    db: &mut dyn Store,
    config: &CollectorConfig,
    clock: PeriodClock,
) -> Result<Option<PublishedRanges>, CollectorError> {
    let Some(to) = clock.current.checked_sub(2) else {
        return Ok(None);
    };
    let catalogs = Catalogs::load(db)?;
    // Periods before the revision in force were reported under other ranges
    // (an old revision may share its catalog with the current one).
    let from = catalogs
        .since()
        .max(to.saturating_sub(SHRINK_PERIODS as u32 - 1));
    if from > to {
        return Ok(None);
    }
    let current = catalogs.current();
    let catalog = Catalog::with_ranges(&current.steps);
    let cells = db.all_cells(Some(from), Some(to))?;
    let read = readings(&cells, &catalog, config, from, to)?;
    // A decision rests on the latest period: without its reading, none.
    let fresh: BTreeMap<_, _> = read
        .into_iter()
        .filter(|(_, r)| r.last().is_some_and(|p| p.period == to))
        .collect();
    let next = next_steps(&current.steps, &fresh);
    if next == current.steps {
        return Ok(None);
    }
    let published = db.publish_ranges(&next, clock.current)?;
    for m in next.changed(&current.steps) {
        tracing::info!(
            revision = published.revision,
            "ranges: {} scaled by {:.2} from the built-in (step {} -> {})",
            m.name(),
            next.factor(m),
            current.steps.step(m),
            next.step(m)
        );
    }
    Ok(Some(published))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

    use super::*;

    fn reading(period: u32, estimate: f64, half: f64) -> P90 {
        P90 {
            period,
            estimate,
            lo: estimate - half,
            hi: estimate + half,
        }
    }

    fn only(measure: Measure, read: Vec<P90>) -> BTreeMap<&'static str, Vec<P90>> {
        BTreeMap::from([(measure.name(), read)])
    }

    #[test]
    fn a_significant_rise_grows_to_the_nearest_step_and_an_unbounded_one_jumps() {
        let none = RangeSteps::default();
        let fitted = hush_report::fitted_p90(Measure::Clicks).unwrap();
        // 1.5x with a tight interval: step round(4 log2 1.5) = 2.
        let grown = next_steps(
            &none,
            &only(Measure::Clicks, vec![reading(1, 1.5 * fitted, 50.0)]),
        );
        assert_eq!(grown.step(Measure::Clicks), 2);
        assert_eq!(grown.changed(&none), vec![Measure::Clicks]);
        // The same estimate with an interval reaching below one step up: no change.
        let unsure = next_steps(
            &none,
            &only(
                Measure::Clicks,
                vec![reading(1, 1.5 * fitted, 0.35 * fitted)],
            ),
        );
        assert_eq!(unsure, none);
        // Above the ladder: three octaves up.
        let above = P90 {
            period: 1,
            estimate: f64::INFINITY,
            lo: 4.0 * fitted,
            hi: f64::INFINITY,
        };
        let jumped = next_steps(&none, &only(Measure::Clicks, vec![above]));
        assert_eq!(jumped.step(Measure::Clicks), JUMP_STEPS);
        // A lower reading never grows, and one period never shrinks.
        let low = next_steps(
            &none,
            &only(Measure::Clicks, vec![reading(1, 0.3 * fitted, 1.0)]),
        );
        assert_eq!(low, none);
    }

    #[test]
    fn a_range_shrinks_only_when_a_whole_week_reads_low() {
        let grown = RangeSteps::new([(Measure::Keystrokes, 8)]).unwrap();
        let assumed = grown.assumed_p90(Measure::Keystrokes).unwrap();
        let week = |last: f64| -> Vec<P90> {
            (0..SHRINK_PERIODS as u32)
                .map(|p| reading(p, if p == 6 { last } else { 0.4 * assumed }, 0.05 * assumed))
                .collect()
        };
        // Seven low periods, the largest at 0.5x: step 8 + round(4 log2 0.5) = 4.
        let shrunk = next_steps(&grown, &only(Measure::Keystrokes, week(0.5 * assumed)));
        assert_eq!(shrunk.step(Measure::Keystrokes), 4);
        // One period near the assumption (a working day among weekends) holds it.
        let held = next_steps(&grown, &only(Measure::Keystrokes, week(0.95 * assumed)));
        assert_eq!(held, grown);
        // Six periods are not a week.
        let short = next_steps(
            &grown,
            &only(Measure::Keystrokes, week(0.5 * assumed)[1..].to_vec()),
        );
        assert_eq!(short, grown);
    }
}
