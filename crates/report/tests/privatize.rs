//! The privatizer: the per-report charge, permanent responses derived from the
//! device secret (one draw per coarse value), the yearly cap and its stand-in
//! values, weighted metric sampling, and an end-to-end unbiasedness check.
//!
//! The property test replays arbitrary histories (values, epsilon and catalog
//! changes, `forget`, restarts, clocks set back and forward) against a ground
//! truth of which permanent responses were revealed, and checks the spending
//! history never undercounts them and never passes the cap.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::collections::{BTreeMap, BTreeSet};

use hush_ldp::{BudgetAccount, NumericKind, NumericMechanism};
use hush_report::{
    Catalog, DeviceMemory, DeviceSecret, DrawTags, Encoding, KeyClass, Lifetime, MetricMechanism,
    PrivatizeError, PrivatizeRequest, RawMeasurements, Report, WINDOW_BUCKETS, YEAR_BUCKETS,
    context_of, draws_per_window, privatize,
};
use proptest::prelude::*;
use rand::rngs::ChaCha12Rng;
use rand::{Rng, SeedableRng};
use statrs::distribution::{ChiSquared, ContinuousCDF};

fn day(keys: u32) -> RawMeasurements {
    let mut raw = RawMeasurements::new(1440);
    for _ in 0..keys {
        raw.record_key(KeyClass::Letter);
    }
    raw.set_minutes(1440, keys.min(600), keys.min(300), keys.min(100));
    raw
}

fn request(catalog: &Catalog, period: u32) -> PrivatizeRequest<'_> {
    PrivatizeRequest {
        catalog,
        period,
        period_seconds: 86_400,
        epsilon: 2.0,
        epsilon_perm: 4.0,
        max_draws: 8,
        bucket: period / 30,
        agent_version: "test",
    }
}

fn device(rng: &mut impl Rng) -> DeviceMemory {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    DeviceMemory::new(DeviceSecret::from_bytes(bytes))
}

#[test]
fn a_report_is_charged_epsilon_1_and_a_second_does_not_fit_the_period() {
    let catalog = Catalog::builtin();
    let mut rng = ChaCha12Rng::seed_from_u64(1);
    let mut memory = device(&mut rng);
    let mut budget = BudgetAccount::new(2.0).unwrap();
    let r = privatize(
        day(500),
        &request(&catalog, 20_000),
        &mut memory,
        &mut budget,
        &mut rng,
    )
    .unwrap();
    assert_eq!(r.metrics().len(), 1);
    assert!((r.epsilon() - 2.0).abs() < 1e-12);
    assert!((r.metrics()[0].epsilon_perm() - 4.0).abs() < 1e-12);
    assert!((budget.spent() - 2.0).abs() < 1e-6);
    assert_eq!(r.id().period(), 20_000);
    assert_eq!(memory.tags.len(), 1, "one new value, one tag");
    let before = memory.clone();
    let err = privatize(
        day(500),
        &request(&catalog, 20_000),
        &mut memory,
        &mut budget,
        &mut rng,
    )
    .unwrap_err();
    assert!(matches!(err, PrivatizeError::Budget(_)), "{err}");
    assert_eq!(memory, before, "a refused report draws and records nothing");
}

#[test]
fn an_unchanged_day_costs_one_draw_per_measure_and_never_repeats_verbatim() {
    let catalog = Catalog::builtin();
    let mut rng = ChaCha12Rng::seed_from_u64(2);
    let mut memory = device(&mut rng);
    let mut values: BTreeMap<u16, BTreeSet<String>> = BTreeMap::new();
    // 2,000 days: about 200 reports per metric, so even a one-bit report that
    // repeats its permanent bit 9 times in 10 shows both values (1 - 0.9^200).
    for period in 0..2000 {
        let mut budget = BudgetAccount::new(2.0).unwrap();
        let r = privatize(
            day(800),
            &request(&catalog, 20_000 + period),
            &mut memory,
            &mut budget,
            &mut rng,
        )
        .unwrap();
        // Every report pays epsilon_1, new value or not.
        assert!(budget.spent() > 1.99);
        let m = &r.metrics()[0];
        values
            .entry(m.metric())
            .or_default()
            .insert(format!("{:?}", m.value()));
    }
    // One draw per measure: the device reports each through one metric.
    for measure in catalog.measures() {
        let draws = memory.lifetime.draws_in_window(measure.name(), 0);
        assert_eq!(draws, 1, "{}", measure.name());
    }
    assert_eq!(memory.tags.len(), catalog.measures().len());
    // The instantaneous layer varies the responses of an unchanged value.
    assert!(values.values().all(|v| v.len() > 1), "{values:?}");
}

#[test]
fn metrics_are_sampled_by_weight() {
    let mut catalog_metrics = Catalog::builtin().metrics().to_vec();
    for m in &mut catalog_metrics {
        m.weight = 1;
    }
    catalog_metrics[0].weight = 3;
    let catalog = Catalog::new(9, 1, catalog_metrics).unwrap();
    let mut rng = ChaCha12Rng::seed_from_u64(3);
    // One report from each of many devices (each reports a measure through
    // one of its metrics, fixed by its secret): over the fleet, every metric
    // arrives as often as its weight says.
    let devices = 24_000u32;
    let k = catalog.metrics().len();
    let total: u32 = catalog.metrics().iter().map(|m| m.weight).sum();
    let mut counts = vec![0f64; k];
    for period in 0..devices {
        let mut memory = device(&mut rng);
        let mut budget = BudgetAccount::new(2.0).unwrap();
        let r = privatize(
            day(100),
            &request(&catalog, period),
            &mut memory,
            &mut budget,
            &mut rng,
        )
        .unwrap();
        counts[usize::from(r.metrics()[0].metric())] += 1.0;
    }
    let chi2: f64 = counts
        .iter()
        .zip(catalog.metrics())
        .map(|(c, m)| {
            let e = f64::from(devices) * f64::from(m.weight) / f64::from(total);
            (c - e).powi(2) / e
        })
        .sum();
    let p = 1.0 - ChiSquared::new((k - 1) as f64).unwrap().cdf(chi2);
    assert!(p > 1e-4, "chi2 {chi2}, counts {counts:?}");
}

/// Many fresh devices with a known keystroke count: the decoded reports' mean is
/// an unbiased estimate of it, through each device's alpha-point rounding and
/// both layers.
#[test]
fn privatized_counts_decode_to_an_unbiased_mean() {
    let catalog = Catalog::builtin();
    let metric = catalog.metric("keystrokes").unwrap();
    let index = catalog
        .metrics()
        .iter()
        .position(|m| m.name == "keystrokes")
        .unwrap() as u16;
    let mut rng = ChaCha12Rng::seed_from_u64(4);
    let truth = 7_777.0;
    let (mut sum, mut sum_sq, mut n) = (0.0, 0.0, 0.0);
    for device_id in 0..60_000u32 {
        let mut budget = BudgetAccount::new(2.0).unwrap();
        let mut memory = device(&mut rng);
        let r = privatize(
            day(7_777),
            &request(&catalog, device_id),
            &mut memory,
            &mut budget,
            &mut rng,
        )
        .unwrap();
        let m = &r.metrics()[0];
        if m.metric() != index {
            continue;
        }
        let MetricMechanism::Numeric(mech) =
            metric.mechanism(m.epsilon_perm(), m.epsilon()).unwrap()
        else {
            panic!("keystrokes is numeric");
        };
        let point = m.value().as_grid().unwrap();
        assert!(mech.is_valid_output(point));
        let y = mech.decode(point);
        sum += y;
        sum_sq += y * y;
        n += 1.0;
    }
    let mean = sum / n;
    let se = ((sum_sq / n - mean * mean) / n).sqrt();
    // Keystrokes' weight is 54 of 998: about 3,250 of the 60,000 reports.
    let total: u32 = catalog.metrics().iter().map(|m| m.weight).sum();
    let expected = 60_000.0 * f64::from(metric.weight) / f64::from(total);
    assert!(
        (n - expected).abs() < 4.0 * expected.sqrt(),
        "{n} vs {expected}"
    );
    assert!(
        (mean - truth).abs() < 4.0 * se,
        "mean {mean} vs {truth}, se {se}, n {n}"
    );
}

/// A one-metric catalog: the keystroke count on a grid, so every report is about it.
fn keystrokes_only(hi: f64) -> Catalog {
    let mut m = Catalog::builtin().metric("keystrokes").unwrap().clone();
    m.encoding = Encoding::Numeric {
        mechanism: NumericKind::LOneBit,
        lo: 0.0,
        hi,
    };
    Catalog::new(7, 1, vec![m]).unwrap()
}

#[test]
fn past_the_cap_a_drawn_neighbour_stands_in_and_nothing_new_is_drawn() {
    let catalog = keystrokes_only(8_000.0);
    let metric = &catalog.metrics()[0];
    let mut rng = ChaCha12Rng::seed_from_u64(5);
    let mut memory = device(&mut rng);
    let mut req = request(&catalog, 0);
    req.max_draws = 3;
    // A value that changes every day, across the whole range.
    for period in 0..300u32 {
        req.period = period;
        let mut budget = BudgetAccount::new(2.0).unwrap();
        privatize(
            day(period * 97 % 8_000),
            &req,
            &mut memory,
            &mut budget,
            &mut rng,
        )
        .unwrap();
        assert!(memory.lifetime.draws_in_window(metric.name, req.bucket) <= 3);
    }
    assert_eq!(memory.lifetime.draws_in_window(metric.name, req.bucket), 3);
    assert_eq!(memory.tags.len(), 3);
    assert!((memory.lifetime.spent_in_window(metric.name, req.bucket) - 12.0).abs() < 1e-9);
}

/// A count's mean and its distribution are two metrics of one measure. A
/// device reports the measure through one of them for as long as its secret
/// lasts (picked by the secret, with probability proportional to their
/// weights), so an unchanged value has one permanent answer and the cap is
/// not split; the draws are counted under the measure, so even a device that
/// switches (after `forget`) never passes the cap for the pair.
#[test]
fn a_device_reports_a_count_through_one_of_its_metrics() {
    let builtin = Catalog::builtin();
    let pair: Vec<_> = ["keystrokes", "keystrokes_distribution"]
        .iter()
        .map(|n| builtin.metric(n).unwrap().clone())
        .collect();
    let weights = [pair[0].weight, pair[1].weight];
    let catalog = Catalog::new(1, 1, pair).unwrap();
    assert_eq!(catalog.measures().len(), 1);
    let mut rng = ChaCha12Rng::seed_from_u64(9);
    let mut through = [0u32; 2];
    for _ in 0..400 {
        let mut memory = device(&mut rng);
        let mut req = request(&catalog, 0);
        req.max_draws = 3;
        let mut used = BTreeSet::new();
        for period in 0..40u32 {
            req.period = period;
            let mut budget = BudgetAccount::new(2.0).unwrap();
            let r = privatize(
                day(period * 997 % 150_000),
                &req,
                &mut memory,
                &mut budget,
                &mut rng,
            )
            .unwrap();
            used.insert(r.metrics()[0].metric());
        }
        assert_eq!(used.len(), 1, "one metric per device: {used:?}");
        through[usize::from(*used.first().unwrap())] += 1;
        // A new secret (forget) may pick the other metric: still one cap.
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        memory.secret = DeviceSecret::from_bytes(bytes);
        memory.tags = DrawTags::default();
        for period in 40..80u32 {
            req.period = period;
            let mut budget = BudgetAccount::new(2.0).unwrap();
            let keys = period * 991 % 150_000;
            privatize(day(keys), &req, &mut memory, &mut budget, &mut rng).unwrap();
        }
        assert!(memory.lifetime.draws_in_window("keystrokes", req.bucket) <= 3);
        assert_eq!(
            memory.lifetime.metrics().collect::<Vec<_>>(),
            ["keystrokes"]
        );
    }
    // Binomial(400, w0 / (w0 + w1)): within 4 standard deviations.
    let p = f64::from(weights[0]) / f64::from(weights[0] + weights[1]);
    let sd = (400.0 * p * (1.0 - p)).sqrt();
    let off = (f64::from(through[0]) - 400.0 * p).abs();
    assert!(off < 4.0 * sd, "{through:?}");
}

/// After `forget` a capped metric has no answer it may use. It still reports,
/// so its silence cannot tell the collector it was capped: a fake value the
/// new secret fixes, independent of the measurements, through its own
/// permanent response, charging nothing and recording no draw. Whatever the
/// day held, the reports follow one fixed law (the same permanent response).
#[test]
fn after_forget_a_capped_metric_still_reports_a_fixed_stand_in_at_no_cost() {
    let catalog = keystrokes_only(8_000.0);
    let mut rng = ChaCha12Rng::seed_from_u64(6);
    let mut memory = device(&mut rng);
    let mut req = request(&catalog, 0);
    req.max_draws = 2;
    for (period, keys) in [(0u32, 100u32), (1, 7_000)] {
        req.period = period;
        let mut budget = BudgetAccount::new(2.0).unwrap();
        privatize(day(keys), &req, &mut memory, &mut budget, &mut rng).unwrap();
    }
    // forget: a new secret and no tags, the spending history kept.
    let kept = memory.lifetime.clone();
    memory = DeviceMemory {
        lifetime: kept.clone(),
        ..device(&mut rng)
    };
    // 4,000 stand-in reports, half from idle days and half from busy ones:
    // the share of 1-bits is the same for both (one permanent bit), and
    // nothing is drawn or charged.
    let mut ones = [0u32; 2];
    for period in 2..4_002u32 {
        req.period = period;
        let mut budget = BudgetAccount::new(2.0).unwrap();
        let keys = if period % 2 == 0 { 0 } else { 7_999 };
        let r = privatize(day(keys), &req, &mut memory, &mut budget, &mut rng).unwrap();
        assert!(
            (budget.spent() - 2.0).abs() < 1e-9,
            "a report still pays epsilon_1"
        );
        let bit = r.metrics()[0].value().as_grid().unwrap().index;
        ones[(period % 2) as usize] += u32::from(bit == 1);
    }
    assert_eq!(memory.lifetime, kept, "a stand-in draws nothing");
    assert!(memory.tags.is_empty(), "and records no tag");
    // Both halves are Binomial(2000, P) with one P; their difference has a
    // standard deviation of at most sqrt(2 * 2000 / 4) = 31.6: 5 of them.
    let gap = (i64::from(ones[0]) - i64::from(ones[1])).abs();
    assert!(
        gap < 158,
        "idle {} vs busy {} ones: the day leaked",
        ones[0],
        ones[1]
    );
    // Once the draws leave the window, real reports resume.
    req.bucket += WINDOW_BUCKETS;
    let mut budget = BudgetAccount::new(2.0).unwrap();
    privatize(day(100), &req, &mut memory, &mut budget, &mut rng).unwrap();
    assert_eq!(memory.tags.len(), 1, "a real value again");
}

#[test]
fn no_year_of_reports_shows_more_values_than_the_persons_cap() {
    // Two values every day for 14 buckets, then four others. A draw's response
    // may be reused for a whole window, so the old values can appear until
    // the end of bucket 13 and the new ones from bucket 14: a year of reports
    // can show two windows' draws. With the per-window cap at half the
    // person's values per year, that is still within it.
    const VALUES_PER_YEAR: u32 = 4;
    let catalog = keystrokes_only(8_000.0);
    let metric = &catalog.metrics()[0];
    let context = context_of(metric, 4.0);
    let mut rng = ChaCha12Rng::seed_from_u64(9);
    let mut memory = device(&mut rng);
    let mut req = request(&catalog, 0);
    req.max_draws = draws_per_window(VALUES_PER_YEAR);
    // Per bucket, the coarse values whose responses a report could use: every
    // tag valid after the bucket's reports (a superset of those used).
    let mut usable: Vec<BTreeSet<u32>> = Vec::new();
    let last = 3 * WINDOW_BUCKETS;
    for bucket in 0..last {
        let days: &[u32] = if bucket < WINDOW_BUCKETS {
            &[100, 7_000]
        } else {
            &[2_000, 3_000, 4_000, 5_000]
        };
        for &keys in days {
            req.bucket = bucket;
            req.period += 1;
            let mut budget = BudgetAccount::new(2.0).unwrap();
            privatize(day(keys), &req, &mut memory, &mut budget, &mut rng).unwrap();
        }
        usable.push(
            (0..=8)
                .filter(|&c| {
                    memory
                        .tags
                        .contains(&memory.secret.tag(&context, c), bucket)
                })
                .collect(),
        );
        assert!(memory.lifetime.draws_in_year(metric.name, bucket) <= VALUES_PER_YEAR);
    }
    for start in 0..last - YEAR_BUCKETS {
        let seen: BTreeSet<u32> = usable[start as usize..(start + YEAR_BUCKETS) as usize]
            .iter()
            .flatten()
            .copied()
            .collect();
        assert!(
            seen.len() as u32 <= VALUES_PER_YEAR,
            "buckets {start}..: {seen:?}"
        );
    }
    // The change of habit shows up: the year that spans it used all four.
    let span: BTreeSet<u32> = usable[WINDOW_BUCKETS as usize - 2..WINDOW_BUCKETS as usize + 2]
        .iter()
        .flatten()
        .copied()
        .collect();
    assert_eq!(span.len(), 4, "{span:?}");
    assert_eq!(
        memory.lifetime.draws_in_year(metric.name, WINDOW_BUCKETS),
        4
    );
}

/// What the test harness knows and the device does not: every permanent
/// response a report was made from, by (secret, context, coarse value).
#[derive(Default)]
struct GroundTruth {
    /// Bucket of each response's first draw.
    revealed: BTreeMap<(Vec<u8>, String, u64, u32), u32>,
    /// Last bucket in which a report could have used each response.
    usable: BTreeMap<(Vec<u8>, String, u64, u32), u32>,
}

/// Operations on a device over time.
#[derive(Debug, Clone)]
enum Step {
    /// A day with this many keystrokes.
    Report(u32),
    /// The person changes epsilon_perm (within their cap of 4).
    EpsilonPerm(f64),
    /// A new catalog version that changes the range.
    Range(f64),
    /// `forget`: a new secret, no tags, the history kept.
    Forget,
    /// The agent restarts: its state goes through storage.
    Restart,
    /// The clock jumps by this many buckets (back when negative).
    Clock(i32),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0u32..8_000).prop_map(Step::Report),
        1 => prop::sample::select(vec![2.5, 3.0, 4.0]).prop_map(Step::EpsilonPerm),
        1 => prop::sample::select(vec![4_000.0, 8_000.0, 9_999.0]).prop_map(Step::Range),
        1 => Just(Step::Forget),
        1 => Just(Step::Restart),
        1 => (-20i32..20).prop_map(Step::Clock),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_history_spends_past_the_cap_or_reveals_an_uncounted_draw(
        steps in prop::collection::vec(step(), 1..120),
        seed in any::<u64>(),
    ) {
        const CAP: u32 = 4;
        const PERM_CAP: f64 = 4.0;
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        let mut memory = device(&mut rng);
        let (mut eps_perm, mut hi, mut bucket, mut period) = (4.0, 8_000.0, 1_000i64, 0u32);
        let mut truth = GroundTruth::default();
        for s in steps {
            match s {
                Step::Report(keys) => {
                    let catalog = keystrokes_only(hi);
                    let metric = &catalog.metrics()[0];
                    let req = PrivatizeRequest {
                        catalog: &catalog,
                        period,
                        period_seconds: 86_400,
                        epsilon: 2.0,
                        epsilon_perm: eps_perm,
                        max_draws: CAP,
                        bucket: bucket as u32,
                        agent_version: "test",
                    };
                    period += 1;
                    let mut budget = BudgetAccount::new(2.0).unwrap();
                    let before = memory.tags.clone();
                    match privatize(day(keys), &req, &mut memory, &mut budget, &mut rng) {
                        Ok(r) => {
                            let context = context_of(metric, eps_perm);
                            // The coarse value used is the one whose tag exists now;
                            // a new tag means a new draw, which the history must show.
                            let now = memory.lifetime.clock(bucket as u32);
                            let used: Vec<u32> = (0..=8)
                                .filter(|&c| memory.tags.contains(&memory.secret.tag(&context, c), now))
                                .filter(|&c| !before.contains(&memory.secret.tag(&context, c), now))
                                .collect();
                            prop_assert!(used.len() <= 1);
                            for c in used {
                                let key = (memory.secret.as_bytes().to_vec(), context.definition.clone(), context.epsilon_perm_units, c);
                                truth.revealed.insert(key, now);
                            }
                            // Every response this report could have used, by when.
                            for c in 0..=8 {
                                if memory.tags.contains(&memory.secret.tag(&context, c), now) {
                                    let key = (memory.secret.as_bytes().to_vec(), context.definition.clone(), context.epsilon_perm_units, c);
                                    truth.usable.insert(key, now);
                                }
                            }
                            prop_assert_eq!(r.metrics().len(), 1);
                        }
                        Err(e) => prop_assert!(false, "{e}"),
                    }
                }
                Step::EpsilonPerm(e) => eps_perm = e,
                Step::Range(h) => hi = h,
                Step::Forget => {
                    let kept = memory.lifetime.clone();
                    memory = DeviceMemory { lifetime: kept, ..device(&mut rng) };
                }
                Step::Restart => {
                    let lifetime: Lifetime = serde_json::from_str(&serde_json::to_string(&memory.lifetime).unwrap()).unwrap();
                    let tags = DrawTags::from_bytes(&memory.tags.to_bytes()).unwrap();
                    let secret = DeviceSecret::from_bytes(*memory.secret.as_bytes());
                    memory = DeviceMemory { secret, tags, lifetime };
                }
                Step::Clock(d) => bucket = (bucket + i64::from(d)).max(0),
            }
            let now = memory.lifetime.clock(bucket as u32);
            let name = "keystrokes";
            // Never more than the cap of draws, nor their epsilon at the person's cap.
            prop_assert!(memory.lifetime.draws_in_window(name, now) <= CAP);
            prop_assert!(memory.lifetime.spent_in_window(name, now) <= f64::from(CAP) * PERM_CAP + 1e-9);
            // Every permanent response used within the window is counted, so
            // no span of WINDOW_BUCKETS buckets shows more than CAP responses.
            let revealed = truth.revealed.values().filter(|&&b| b + WINDOW_BUCKETS > now).count() as u32;
            prop_assert!(revealed <= memory.lifetime.draws_in_window(name, now),
                "{revealed} responses revealed, {} counted", memory.lifetime.draws_in_window(name, now));
            // The last 365 days of reports used no response the year's count
            // misses, and at most twice the window cap.
            let year = truth.usable.values().filter(|&&b| b + YEAR_BUCKETS > now).count() as u32;
            prop_assert!(year <= memory.lifetime.draws_in_year(name, now),
                "{year} responses usable in a year, {} counted", memory.lifetime.draws_in_year(name, now));
            prop_assert!(memory.lifetime.draws_in_year(name, now) <= 2 * CAP);
        }
    }
}

/// The decoded value of a report, for the wire round trip below.
fn decode(catalog: &Catalog, r: &Report) -> f64 {
    let m = &r.metrics()[0];
    let MetricMechanism::Numeric(mech) = catalog.metrics()[0]
        .mechanism(m.epsilon_perm(), m.epsilon())
        .unwrap()
    else {
        panic!("numeric");
    };
    mech.decode(m.value().as_grid().unwrap())
}

#[test]
fn reports_survive_the_wire() {
    let catalog = keystrokes_only(8_000.0);
    let mut rng = ChaCha12Rng::seed_from_u64(8);
    let mut memory = device(&mut rng);
    let mut budget = BudgetAccount::new(2.0).unwrap();
    let r = privatize(
        day(10),
        &request(&catalog, 5),
        &mut memory,
        &mut budget,
        &mut rng,
    )
    .unwrap();
    let back = Report::decode(&r.encode()).unwrap();
    assert_eq!(back, r);
    assert_eq!(decode(&catalog, &back), decode(&catalog, &r));
}

/// The metric a report carries is drawn from the catalog's weights, the
/// device's secret and fresh randomness only: two devices with the same
/// secret and randomness pick the same metrics whatever their days held, so
/// which metric arrives says nothing about the measurements.
#[test]
fn which_metric_a_report_carries_does_not_depend_on_the_measurements() {
    let catalog = Catalog::builtin();
    let mut seed = ChaCha12Rng::seed_from_u64(21);
    let (mut idle, mut busy) = (device(&mut seed), device(&mut seed));
    busy.secret = idle.secret.clone();
    let (mut rng_idle, mut rng_busy) =
        (ChaCha12Rng::seed_from_u64(5), ChaCha12Rng::seed_from_u64(5));
    let mut picked = BTreeSet::new();
    for period in 0..300 {
        let pick = |memory: &mut DeviceMemory, keys: u32, rng: &mut ChaCha12Rng| {
            let mut budget = BudgetAccount::new(2.0).unwrap();
            let r = privatize(
                day(keys),
                &request(&catalog, 20_000 + period),
                memory,
                &mut budget,
                rng,
            )
            .unwrap();
            r.metrics()[0].metric()
        };
        let a = pick(&mut idle, 0, &mut rng_idle);
        let b = pick(&mut busy, 30_000, &mut rng_busy);
        assert_eq!(a, b, "period {period}: the measurements changed the metric");
        picked.insert(a);
    }
    // The device reports each measure through one metric.
    assert_eq!(
        picked.len(),
        catalog.measures().len(),
        "every measure is drawn"
    );
}
