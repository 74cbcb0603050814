//! The life of a period, in one place: when it accepts reports, when its cells
//! are released, and when its stored reports may be deleted.
//!
//! A period `p` is *open* while `p + grace_periods >= current`: reports for it
//! are accepted (and for `current + 1`, to allow clock skew). It is *closed*
//! once `p + grace_periods < current`: from then on no report for it is
//! accepted, so its cells can be released and never change again. Releasing
//! only closed periods is what keeps a late report from being isolated by
//! comparing two releases of the same cell. Only closed periods may be pruned.
//! The one exception is erasure, which takes a device's contributions out of
//! every cell, released or not, because forgetting a person is their right.

use crate::CollectorConfig;

/// Why a report's period is not accepted now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unaccepted {
    /// The period's grace window has closed.
    Late,
    /// The period has not started (beyond one period of clock skew).
    Future,
}

/// The collector's present moment, as periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodClock {
    /// The period the collector's clock is in.
    pub current: u32,
    /// How many periods after its own a period still accepts reports.
    pub grace_periods: u32,
}

impl PeriodClock {
    /// The clock at `now` (seconds since the Unix epoch, already offset by
    /// `clock_offset_seconds`) for this configuration.
    pub fn at(config: &CollectorConfig, now: i64) -> PeriodClock {
        let period = now.max(0) as u64 / u64::from(config.period_seconds.max(1));
        PeriodClock {
            current: u32::try_from(period).unwrap_or(u32::MAX),
            grace_periods: config.grace_periods,
        }
    }

    /// Whether a report for `period` is accepted now.
    pub fn accepts(&self, period: u32) -> Result<(), Unaccepted> {
        let (p, current) = (u64::from(period), u64::from(self.current));
        if p > current + 1 {
            Err(Unaccepted::Future)
        } else if p + u64::from(self.grace_periods) < current {
            Err(Unaccepted::Late)
        } else {
            Ok(())
        }
    }

    /// Whether `period` is closed: it accepts no report any more.
    pub fn is_closed(&self, period: u32) -> bool {
        self.accepts(period) == Err(Unaccepted::Late)
    }

    /// The last closed period, if any: cells up to it may be released, and
    /// stored reports up to it may be pruned.
    pub fn last_closed(&self) -> Option<u32> {
        self.current.checked_sub(self.grace_periods)?.checked_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_is_open_then_closed_and_never_both() {
        let clock = PeriodClock {
            current: 100,
            grace_periods: 7,
        };
        assert_eq!(clock.accepts(102), Err(Unaccepted::Future));
        assert_eq!(clock.accepts(101), Ok(()));
        assert_eq!(clock.accepts(93), Ok(()));
        assert_eq!(clock.accepts(92), Err(Unaccepted::Late));
        assert_eq!(clock.last_closed(), Some(92));
        // Closed means exactly "not accepted and not in the future", at every moment.
        for current in 0..40 {
            let clock = PeriodClock {
                current,
                grace_periods: 7,
            };
            for p in 0..50 {
                let closed = clock.last_closed().is_some_and(|last| p <= last);
                assert_eq!(clock.is_closed(p), closed, "period {p} at {current}");
                assert_eq!(clock.accepts(p).is_ok(), !closed && p <= current + 1);
            }
        }
        let early = PeriodClock {
            current: 7,
            grace_periods: 7,
        };
        assert_eq!(early.last_closed(), None);
    }

    #[test]
    fn the_clock_follows_the_configured_period_and_grace() {
        let config = CollectorConfig {
            period_seconds: 3600,
            grace_periods: 2,
            ..CollectorConfig::default()
        };
        let clock = PeriodClock::at(&config, 10 * 3600 + 5);
        assert_eq!((clock.current, clock.grace_periods), (10, 2));
        assert_eq!(PeriodClock::at(&config, -5).current, 0);
    }
}
