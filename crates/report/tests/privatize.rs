//! The privatizer: budget charging, memoized responses, metric sampling, and an
//! end-to-end unbiasedness check through the estimator.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use hush_ldp::{BudgetAccount, NumericMechanism};
use hush_report::{
    Catalog, KeyClass, Memo, MetricMechanism, PrivatizeError, PrivatizeRequest, RawMeasurements,
    privatize,
};
use rand::SeedableRng;
use rand::rngs::ChaCha12Rng;
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
        agent_version: "test",
    }
}

#[test]
fn a_report_is_charged_and_a_second_does_not_fit_the_budget() {
    let catalog = Catalog::default_v1();
    let mut rng = ChaCha12Rng::seed_from_u64(1);
    let mut memo = Memo::default();
    let mut budget = BudgetAccount::new(2.0).unwrap();
    let r = privatize(
        day(500),
        &request(&catalog, 20_000),
        &mut budget,
        &mut memo,
        &mut rng,
    )
    .unwrap();
    assert_eq!(r.metrics().len(), 1);
    assert!((r.epsilon() - 2.0).abs() < 1e-12);
    assert!((budget.spent() - 2.0).abs() < 1e-6);
    assert_eq!(r.period(), 20_000);
    assert_eq!(r.id().period(), 20_000);
    assert_eq!(memo.len(), 1);
    // A different value needs a fresh response, which the spent budget cannot pay for.
    let before = memo.clone();
    let mut refused = 0;
    for k in 0..20 {
        match privatize(
            day(10_000 + k * 997),
            &request(&catalog, 20_000),
            &mut budget,
            &mut memo,
            &mut rng,
        ) {
            Err(PrivatizeError::Budget(e)) => {
                refused += 1;
                assert!(e.remaining < 1e-6);
            }
            Ok(_) => {
                // Only a memo hit (same metric, same coarse value) is free.
                assert_eq!(memo, before);
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        refused > 10,
        "most fresh reports must be refused, {refused}"
    );
    assert_eq!(memo, before, "a refused report memoizes nothing");
}

#[test]
fn unchanged_values_reuse_their_response_at_no_cost() {
    let catalog = Catalog::default_v1();
    let mut rng = ChaCha12Rng::seed_from_u64(2);
    let mut memo = Memo::default();
    let mut seen: std::collections::HashMap<u16, hush_report::Privatized> = Default::default();
    let mut free = 0;
    for period in 0..200 {
        let mut budget = BudgetAccount::new(2.0).unwrap();
        let r = privatize(
            day(800),
            &request(&catalog, period),
            &mut budget,
            &mut memo,
            &mut rng,
        )
        .unwrap();
        let m = &r.metrics()[0];
        if let Some(previous) = seen.get(&m.metric()) {
            // Same metric, same true value: the same response, and no budget spent.
            assert_eq!(previous, m.value());
            assert_eq!(budget.spent(), 0.0);
            free += 1;
        } else {
            assert!(budget.spent() > 1.99);
            seen.insert(m.metric(), m.value().clone());
        }
    }
    // Ten metrics: after each has been seen once, every report is free.
    assert_eq!(seen.len(), 10);
    assert_eq!(free, 190);
    assert_eq!(memo.len(), 10);
    // The memo survives storage.
    assert_eq!(Memo::from_bytes(&memo.to_bytes()).unwrap(), memo);
}

#[test]
fn metrics_are_sampled_uniformly() {
    let catalog = Catalog::default_v1();
    let mut rng = ChaCha12Rng::seed_from_u64(3);
    let n = 20_000;
    let mut counts = vec![0f64; 10];
    for period in 0..n {
        let mut budget = BudgetAccount::new(2.0).unwrap();
        let mut memo = Memo::default();
        let r = privatize(
            day(100),
            &request(&catalog, period),
            &mut budget,
            &mut memo,
            &mut rng,
        )
        .unwrap();
        counts[usize::from(r.metrics()[0].metric())] += 1.0;
    }
    let expected = n as f64 / 10.0;
    let chi2: f64 = counts
        .iter()
        .map(|c| (c - expected).powi(2) / expected)
        .sum();
    let p = 1.0 - ChiSquared::new(9.0).unwrap().cdf(chi2);
    assert!(p > 1e-4, "chi2 {chi2}, counts {counts:?}");
}

/// Many devices with a known keystroke count: the decoded reports' mean is an
/// unbiased estimate of it, through alpha-point rounding and the mechanism.
#[test]
fn privatized_counts_decode_to_an_unbiased_mean() {
    let catalog = Catalog::default_v1();
    let metric = catalog.metric("keystrokes").unwrap();
    let index = catalog
        .metrics()
        .iter()
        .position(|m| m.name == "keystrokes")
        .unwrap() as u16;
    let mut rng = ChaCha12Rng::seed_from_u64(4);
    let truth = 7_777.0;
    let (mut sum, mut sum_sq, mut n) = (0.0, 0.0, 0.0);
    for device in 0..60_000u32 {
        let mut budget = BudgetAccount::new(2.0).unwrap();
        let mut memo = Memo::default();
        let r = privatize(
            day(7_777),
            &request(&catalog, device),
            &mut budget,
            &mut memo,
            &mut rng,
        )
        .unwrap();
        let m = &r.metrics()[0];
        if m.metric() != index {
            continue;
        }
        let MetricMechanism::Numeric(mech) = metric.mechanism(m.epsilon()).unwrap() else {
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
    assert!(n > 5_000.0);
    assert!(
        (mean - truth).abs() < 4.0 * se,
        "mean {mean} vs {truth}, se {se}, n {n}"
    );
}
