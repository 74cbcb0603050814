//! Ranges learned from the fleet, end to end through the real privatizer,
//! aggregate cells in a real SQLite file and the collector's learning rule:
//! a fleet whose counts are ten times the built-in catalog's converges to
//! ranges that fit it within a few periods and then stays put, and a fleet
//! like the one the catalog was fitted to never moves.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use hush_capture::synthetic::Persona;
use hush_collector::ranges::learn;
use hush_collector::{
    Catalogs, CellKey, CellState, CollectorConfig, PeriodClock, store, validate_structure,
};
use hush_ldp::{BudgetAccount, NoiseRng};
use hush_report::{
    Catalog, DeviceMemory, DeviceSecret, Encoding, Measure, PrivatizeRequest, RangeSteps,
    draws_per_window, privatize,
};
use rand::{Rng, SeedableRng};

/// Devices: about 4.7% of reports carry one count's distribution, so some
/// 140 a period, above the release threshold of 50.
const DEVICES: u64 = 3_000;
/// Periods simulated: the first decision comes two periods in, each further
/// one two periods after the ranges it judges took effect.
const PERIODS: u32 = 10;
/// The first period (any day: every simulated day is a working day).
const FIRST: u32 = 20_000;

struct Outcome {
    /// The steps in force at each period.
    history: Vec<RangeSteps>,
    /// Every working-day value of each count measure the fleet had.
    values: Vec<(Measure, Vec<f64>)>,
}

/// Runs `DEVICES` simulated people for `PERIODS` working days with their
/// counts multiplied by `factor`: each period the collector first learns
/// from the period two before (as its task does at a period's turn), then
/// every device reports with the ranges in force.
fn run(factor: u32, seed: u64) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let config = CollectorConfig {
        database: store::Database::Sqlite(dir.path().join("collector.sqlite")),
        ..CollectorConfig::default()
    };
    let mut db = store::open(&config.database).unwrap();
    let mut rng = NoiseRng::seed_from_u64(seed);
    let mut people: Vec<(Persona, DeviceMemory, NoiseRng)> = (0..DEVICES)
        .map(|i| {
            let mut life = NoiseRng::seed_from_u64(seed ^ 0xA11CE);
            life.set_stream(i);
            let persona = Persona::sample(&mut life);
            let mut secret = [0u8; 32];
            rng.fill_bytes(&mut secret);
            (
                persona,
                DeviceMemory::new(DeviceSecret::from_bytes(secret)),
                life,
            )
        })
        .collect();
    let counts = [
        Measure::ActiveMinutes,
        Measure::Keystrokes,
        Measure::Clicks,
        Measure::ScrollNotches,
        Measure::PointerTravel,
        Measure::LongestFocus,
    ];
    let mut values: Vec<(Measure, Vec<f64>)> = counts.iter().map(|&m| (m, Vec::new())).collect();
    let mut history = Vec::new();
    for t in 0..PERIODS {
        let period = FIRST + t;
        learn(
            db.as_mut(),
            &config,
            PeriodClock {
                current: period,
                grace_periods: config.grace_periods,
            },
        )
        .unwrap();
        let catalogs = Catalogs::load(db.as_mut()).unwrap();
        let steps = catalogs.current().steps.clone();
        let catalog = Catalog::with_ranges(&steps);
        history.push(steps);
        let request = PrivatizeRequest {
            catalog: &catalog,
            period,
            period_seconds: 86_400,
            epsilon: config.epsilon_per_report,
            epsilon_perm: config.epsilon_per_value,
            max_draws: draws_per_window(hush_agent::AgentConfig::default().max_values_per_year),
            bucket: hush_report::bucket_of_day(period),
            agent_version: "test",
        };
        let mut cells: std::collections::BTreeMap<CellKey, CellState> = Default::default();
        for (persona, memory, life) in &mut people {
            let mut raw = persona.measured_day(t % 5, life);
            raw.amplify(factor);
            for (m, xs) in &mut values {
                xs.push(m.read(&raw).unwrap());
            }
            let mut budget = BudgetAccount::new(config.epsilon_per_report).unwrap();
            let report = privatize(raw, &request, memory, &mut budget, &mut rng).unwrap();
            let valid = validate_structure(report, &catalogs).unwrap();
            for (m, mechanism) in valid.report.metrics().iter().zip(&valid.mechanisms) {
                let key = CellKey::of(&valid.report, m, "fleet");
                let metric = &valid.catalog.metrics()[usize::from(m.metric())];
                cells
                    .entry(key)
                    .or_insert_with(|| CellState::empty(metric))
                    .add(mechanism, m.value())
                    .unwrap();
            }
        }
        for (key, state) in &cells {
            db.save_cell(key, state).unwrap();
        }
    }
    Outcome { history, values }
}

fn quantile(xs: &[f64], q: f64) -> f64 {
    let mut xs = xs.to_vec();
    xs.sort_by(f64::total_cmp);
    xs[((xs.len() - 1) as f64 * q).round() as usize]
}

/// The range top of `measure`'s mean metric under `steps`.
fn range_top(steps: &RangeSteps, measure: Measure) -> f64 {
    let catalog = Catalog::with_ranges(steps);
    let metric = catalog.metric(measure.name()).unwrap();
    match metric.encoding {
        Encoding::Numeric { hi, .. } => hi,
        _ => panic!("{} is a count", measure.name()),
    }
}

#[test]
fn a_fleet_ten_times_busier_converges_to_ranges_that_fit_it() {
    let out = run(10, 7);
    let last = out.history.last().unwrap();
    // Converged: the ranges in force from period 6 on never changed again.
    let settled = out.history.iter().position(|s| s == last).unwrap();
    assert!(
        settled <= 6,
        "still moving at period {settled}: {:?}",
        out.history
    );
    // Within what an agent adopts in a window: no agent is left behind.
    let revisions = out.history.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(
        revisions <= hush_agent::ranges::MAX_ADOPTIONS_PER_WINDOW,
        "{revisions} revisions: {:?}",
        out.history
    );
    for (measure, xs) in &out.values {
        let step = last.step(*measure);
        if matches!(measure, Measure::ActiveMinutes | Measure::LongestFocus) {
            // Minutes were not scaled: their ranges stay built-in.
            assert!(
                out.history.iter().all(|s| s.step(*measure) == 0),
                "{}: {:?}",
                measure.name(),
                out.history
            );
            continue;
        }
        // The range clips little: the clipped mean within 3% of the real one
        // (the built-in ranges, on the fleet ten times busier, clip 20-60%).
        let hi = range_top(last, *measure);
        let real = xs.iter().sum::<f64>() / xs.len() as f64;
        let clipped = xs.iter().map(|x| x.min(hi)).sum::<f64>() / xs.len() as f64;
        let builtin = xs
            .iter()
            .map(|x| x.min(range_top(&RangeSteps::default(), *measure)))
            .sum::<f64>()
            / xs.len() as f64;
        eprintln!(
            "{}: step {step} from period {settled}, keeps {:.3} of the mean (built-in {:.3})",
            measure.name(),
            clipped / real,
            builtin / real
        );
        assert!(
            clipped / real > 0.97,
            "{}: step {step}, range {hi} keeps {:.3} of the mean (built-in {:.3}); p99 {}",
            measure.name(),
            clipped / real,
            builtin / real,
            quantile(xs, 0.99)
        );
        // And it is not needlessly wide: below three times the 99.9th
        // percentile (a range's noise grows with it).
        assert!(
            hi < 3.0 * quantile(xs, 0.999),
            "{}: range {hi} against p99.9 {}",
            measure.name(),
            quantile(xs, 0.999)
        );
    }
}

#[test]
fn a_fleet_like_the_fitted_one_keeps_the_built_in_ranges() {
    let out = run(1, 8);
    assert!(
        out.history.iter().all(|s| *s == RangeSteps::default()),
        "{:?}",
        out.history
    );
}
