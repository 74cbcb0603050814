//! The durable budget ledger: per period, the limit, what one report spent and
//! whether it was made; and the lifetime spending history of permanent draws.

use std::collections::BTreeMap;

use hush_ldp::BudgetAccount;
use hush_report::Lifetime;
use serde::{Deserialize, Serialize};

use crate::durable::atomic_write;
use crate::{AgentError, AgentPaths};

/// How many past periods the ledger remembers.
const KEEP_PERIODS: usize = 400;

/// One period's entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct PeriodEntry {
    /// Limit in 10^-9 epsilon units.
    limit: u64,
    /// Spent, same units.
    spent: u64,
    /// Whether the period's one report was produced (or given up on).
    reported: bool,
}

/// Spent budget per period, in exact 10^-9 units, whether the period's report
/// was produced, and the spending history of permanent draws; persisted before
/// any report leaves. It holds no measurement, so `forget`, re-enrollment and
/// setting changes keep it: none of them can reset what a year reveals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    periods: BTreeMap<u32, PeriodEntry>,
    /// Every permanent draw's accounting bucket and epsilon, per measure.
    #[serde(default)]
    pub lifetime: Lifetime,
}

impl Ledger {
    /// Loads the ledger (empty if none).
    pub fn load(paths: &AgentPaths) -> Result<Ledger, AgentError> {
        match std::fs::read(paths.ledger()) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                AgentError::Corrupt(format!("ledger {}: {e}", paths.ledger().display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ledger::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// The account of `period`: its stored state, or a fresh one with `limit`.
    /// A stored limit is lowered to `limit` if the person lowered the budget,
    /// never raised: what was spent under the old limit still counts.
    pub fn account(&self, period: u32, limit: f64) -> Result<BudgetAccount, AgentError> {
        let fresh = BudgetAccount::new(limit).map_err(|e| AgentError::Config(e.to_string()))?;
        Ok(match self.periods.get(&period) {
            Some(e) => BudgetAccount::from_units(e.limit.min(fresh.units().0), e.spent),
            None => fresh,
        })
    }

    /// Whether `period`'s report was already produced.
    pub fn reported(&self, period: u32) -> bool {
        self.periods.get(&period).is_some_and(|e| e.reported)
    }

    /// Budget left in `period` under `limit`.
    pub fn remaining(&self, period: u32, limit: f64) -> Result<f64, AgentError> {
        Ok(self.account(period, limit)?.remaining())
    }

    /// Records an account's state (and that the period's report is made) and
    /// writes the ledger durably before returning.
    pub fn record(
        &mut self,
        paths: &AgentPaths,
        period: u32,
        account: &BudgetAccount,
        reported: bool,
    ) -> Result<(), AgentError> {
        let (limit, spent) = account.units();
        self.periods.insert(
            period,
            PeriodEntry {
                limit,
                spent,
                reported,
            },
        );
        while self.periods.len() > KEEP_PERIODS {
            self.periods.pop_first();
        }
        let bytes = serde_json::to_vec(self).map_err(|e| AgentError::Corrupt(e.to_string()))?;
        atomic_write(&paths.ledger(), &bytes)?;
        Ok(())
    }

    /// The latest period with an entry.
    pub fn last_period(&self) -> Option<u32> {
        self.periods.keys().next_back().copied()
    }
}
