//! Privacy budget accounting under basic composition, in exact integer units.

use crate::{LdpError, MAX_EPSILON};

/// One epsilon unit is 10^-9: sums of charges are exact integers, so a budget
/// is never exceeded by floating-point drift.
const UNITS_PER_EPSILON: f64 = 1e9;

/// A budget for one accounting period (a day by default): a limit and what has
/// been spent against it. Under basic composition the privacy loss of several
/// releases is at most the sum of their epsilons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BudgetAccount {
    limit: u64,
    spent: u64,
}

/// A charge that would exceed the budget.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("privacy budget exhausted: {requested} requested, {remaining} of {limit} left this period")]
pub struct BudgetExhausted {
    /// The epsilon that was asked for.
    pub requested: f64,
    /// What was left.
    pub remaining: f64,
    /// The period's limit.
    pub limit: f64,
}

impl BudgetAccount {
    /// A fresh account with `limit` (in `(0, MAX_EPSILON * 8]`), rounded down to 10^-9.
    pub fn new(limit: f64) -> Result<Self, LdpError> {
        if !(limit.is_finite() && limit > 0.0 && limit <= MAX_EPSILON * 8.0) {
            return Err(LdpError::Epsilon {
                value: limit,
                max: MAX_EPSILON * 8.0,
            });
        }
        Ok(BudgetAccount {
            limit: (limit * UNITS_PER_EPSILON).floor() as u64,
            spent: 0,
        })
    }

    /// Rebuilds an account from stored integer units (a durable ledger).
    pub fn from_units(limit: u64, spent: u64) -> Self {
        BudgetAccount { limit, spent }
    }

    /// The stored form: `(limit, spent)` in 10^-9 units.
    pub fn units(&self) -> (u64, u64) {
        (self.limit, self.spent)
    }

    /// Charges `epsilon` (rounded up to 10^-9) if it fits; otherwise charges nothing.
    pub fn try_charge(&mut self, epsilon: f64) -> Result<(), BudgetExhausted> {
        let units = if epsilon.is_finite() && epsilon >= 0.0 {
            (epsilon * UNITS_PER_EPSILON).ceil() as u64
        } else {
            u64::MAX
        };
        match self.spent.checked_add(units) {
            Some(total) if total <= self.limit => {
                self.spent = total;
                Ok(())
            }
            _ => Err(BudgetExhausted {
                requested: epsilon,
                remaining: self.remaining(),
                limit: self.limit(),
            }),
        }
    }

    /// The limit.
    pub fn limit(&self) -> f64 {
        self.limit as f64 / UNITS_PER_EPSILON
    }

    /// Spent so far.
    pub fn spent(&self) -> f64 {
        self.spent as f64 / UNITS_PER_EPSILON
    }

    /// Left to spend.
    pub fn remaining(&self) -> f64 {
        self.limit.saturating_sub(self.spent) as f64 / UNITS_PER_EPSILON
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_add_exactly_and_stop_at_the_limit() {
        let mut a = BudgetAccount::new(2.0).unwrap();
        for _ in 0..20 {
            a.try_charge(0.1).unwrap();
        }
        assert_eq!(a.spent(), 2.0);
        let err = a.try_charge(1e-9).unwrap_err();
        assert_eq!(err.remaining, 0.0);
        assert_eq!(a.spent(), 2.0, "a refused charge spends nothing");
        assert!(a.try_charge(0.0).is_ok());
        assert!(a.try_charge(f64::NAN).is_err());
        assert!(BudgetAccount::new(0.0).is_err() && BudgetAccount::new(f64::INFINITY).is_err());
    }
}
