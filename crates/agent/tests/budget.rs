//! The budget across an agent's life: over random schedules of periods, restarts,
//! re-enrollments under new terms, `forget`, and clocks set back, no period gets
//! more than one report or spends more than its terms, and no metric's permanent
//! draws pass the person's cap, in number or in epsilon: half of it per
//! accounting window, all of it over what any 365 days of reports can use.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::collections::{BTreeMap, HashMap};

use hush_agent::{Agent, AgentConfig, AgentPaths, Enrollment, Ledger, Outbox, Terms, control};
use hush_ldp::NoiseRng;
use hush_report::{Catalog, KeyClass, RawMeasurements};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

/// The person's caps in this test: at most 4 values per metric in any 365 days
/// (so 2 draws per window), at most epsilon 4 per value.
const VALUES_PER_YEAR: u32 = 4;
const PER_VALUE_CAP: f64 = 4.0;

/// Terms a collector might offer across re-enrollments, all within the caps.
const TERMS: [(f64, f64); 3] = [(2.0, 4.0), (1.0, 2.0), (1.5, 3.0)];

fn agent(home: &std::path::Path, (epsilon_1, epsilon_perm): (f64, f64)) -> Agent {
    Agent {
        paths: AgentPaths::in_home(home),
        config: AgentConfig {
            max_values_per_year: VALUES_PER_YEAR,
            ..AgentConfig::default()
        },
        enrollment: Enrollment {
            collector: "http://127.0.0.1:1".into(),
            token: "t".into(),
            terms: Terms {
                epsilon_1,
                epsilon_perm,
                period_seconds: 86_400,
            },
            consented_at: 0,
            consent_version: hush_agent::CONSENT_VERSION,
        },
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// Days pass (back, when negative: a clock set back), then a period ends.
    Period { advance: i32, keys: u32 },
    /// Re-enrollment under other terms.
    Enroll(usize),
    /// `hush agent forget`.
    Forget,
    /// A new process: a new generator stands for its new OS seed (`produce`
    /// reloads everything from disk in any case).
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (-40i32..60, 0u32..40_000).prop_map(|(advance, keys)| Step::Period { advance, keys }),
        1 => (0usize..3).prop_map(Step::Enroll),
        1 => Just(Step::Forget),
        1 => Just(Step::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn no_history_passes_the_terms_or_the_yearly_cap(steps in prop::collection::vec(step(), 1..60), seed in any::<u64>()) {
        let home = tempfile::tempdir().unwrap();
        let paths = AgentPaths::in_home(home.path());
        let catalog = Catalog::builtin();
        let mut rng = NoiseRng::seed_from_u64(seed);
        let mut terms = TERMS[0];
        let mut period = 20_000i64;
        // Every report that ever reached the outbox, by id: (period, epsilon).
        let mut made: BTreeMap<String, (u32, f64)> = BTreeMap::new();
        let mut first_terms: HashMap<u32, f64> = HashMap::new();
        for s in steps {
            match s {
                Step::Period { advance, keys } => {
                    period = (period + i64::from(advance)).max(1);
                    let p = period as u32;
                    let mut raw = RawMeasurements::new(1440);
                    for _ in 0..keys {
                        raw.record_key(KeyClass::Letter);
                    }
                    raw.set_minutes(1440, keys.min(900) / 2, keys.min(500), keys.min(300) / 3);
                    first_terms.entry(p).or_insert(terms.0);
                    agent(home.path(), terms).produce_with(p, raw, &mut rng).unwrap();
                    let outbox = Outbox::new(&paths, 100_000);
                    for id in outbox.ids().unwrap() {
                        let r = outbox.load(id).unwrap().unwrap();
                        made.insert(id.to_string(), (r.period(), r.epsilon()));
                    }
                }
                Step::Enroll(i) => terms = TERMS[i],
                Step::Forget => {
                    control::forget(&paths, std::time::Duration::ZERO).unwrap();
                }
                Step::Restart => rng = NoiseRng::seed_from_u64(rng.next_u64()),
            }
            let ledger = Ledger::load(&paths).unwrap();
            for m in catalog.measures() {
                let m = m.name();
                let draws = ledger.lifetime.draws_in_window(m, 0);
                prop_assert!(draws <= VALUES_PER_YEAR / 2, "{m}: {draws} draws in the window");
                let year = ledger.lifetime.draws_in_year(m, 0);
                let spent = ledger.lifetime.spent_in_year(m, 0);
                prop_assert!(year <= VALUES_PER_YEAR, "{m}: {year} values in a year");
                prop_assert!(spent <= f64::from(VALUES_PER_YEAR) * PER_VALUE_CAP + 1e-9, "{m}: {spent}");
            }
        }
        // One report per period, at the terms in force when it ended.
        let mut per_period: HashMap<u32, usize> = HashMap::new();
        for &(p, eps) in made.values() {
            *per_period.entry(p).or_default() += 1;
            prop_assert!((eps - first_terms[&p]).abs() < 1e-9);
        }
        prop_assert!(per_period.values().all(|&n| n == 1), "{per_period:?}");
        let ledger = Ledger::load(&paths).unwrap();
        for (&p, &eps) in &first_terms {
            prop_assert!(ledger.account(p, eps).unwrap().spent() <= eps + 1e-9);
            prop_assert!(ledger.reported(p));
        }
    }
}
