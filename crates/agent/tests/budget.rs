//! The budget across restarts: over random schedules of periods, budget changes and
//! restarts, no period ever gets more than one report or spends more than its budget.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::collections::HashMap;

use hush_agent::{Agent, AgentConfig, AgentPaths, Enrollment, Ledger, Outbox};
use hush_ldp::NoiseRng;
use hush_report::{KeyClass, RawMeasurements};
use proptest::prelude::*;
use rand::SeedableRng;

fn agent(home: &std::path::Path, epsilon: f64) -> Agent {
    Agent {
        paths: AgentPaths::in_home(home),
        config: AgentConfig {
            epsilon_per_period: epsilon,
            ..AgentConfig::default()
        },
        enrollment: Enrollment {
            collector: "http://127.0.0.1:1".into(),
            token: "t".into(),
            epsilon_cap: 2.0,
            period_seconds: 86_400,
            consented_at: 0,
            consent_version: 1,
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]

    #[test]
    fn no_period_exceeds_its_budget(steps in prop::collection::vec((0u32..3, 0usize..3, 0u32..2000, any::<bool>()), 1..40), seed in any::<u64>()) {
        let home = tempfile::tempdir().unwrap();
        let budgets = [2.0, 1.0, 0.5];
        let mut rng = NoiseRng::seed_from_u64(seed);
        let mut period = 20_000u32;
        let mut lowest: HashMap<u32, f64> = HashMap::new();
        let mut first: HashMap<u32, f64> = HashMap::new();
        for (advance, budget, keys, fresh_process) in steps {
            period += advance;
            // A fresh process reloads everything from disk; `produce` always does,
            // and a new generator stands for the new process's OS seed.
            if fresh_process {
                rng = NoiseRng::seed_from_u64(rng.next_u64());
            }
            let eps = budgets[budget];
            let e = lowest.entry(period).or_insert(eps);
            *e = e.min(eps);
            first.entry(period).or_insert(eps);
            let mut raw = RawMeasurements::new(1440);
            for _ in 0..keys {
                raw.record_key(KeyClass::Letter);
            }
            agent(home.path(), eps).produce(period, raw, &mut rng).unwrap();
        }
        let paths = AgentPaths::in_home(home.path());
        let outbox = Outbox::new(&paths, 10_000);
        let mut per_period: HashMap<u32, usize> = HashMap::new();
        for id in outbox.ids().unwrap() {
            let r = outbox.load(id).unwrap().unwrap();
            *per_period.entry(r.period()).or_default() += 1;
            // The period's one report is made at its first end, with the budget in force then.
            prop_assert!((r.epsilon() - first[&r.period()]).abs() < 1e-9);
        }
        prop_assert!(per_period.values().all(|&n| n == 1));
        let ledger = Ledger::load(&paths).unwrap();
        for (&p, &eps) in &first {
            // Spending happens at the period's end, under the budget in force then;
            // lowering the budget later cannot undo it, and nothing more is spent.
            let account = ledger.account(p, eps).unwrap();
            prop_assert!(account.spent() <= eps + 1e-9);
            prop_assert!(ledger.reported(p));
            // A budget lowered afterwards leaves nothing to spend.
            prop_assert!(ledger.remaining(p, lowest[&p]).unwrap() <= eps);
        }
    }
}
