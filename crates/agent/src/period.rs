//! The period being gathered in memory: interactions, delivered up to
//! `MAX_DELIVERY_DELAY` late, folded into windows and into the period they
//! happened in, and the pause state that decides which of them count.

use hush_capture::{Interaction, MAX_DELIVERY_DELAY, WindowAggregator};
use hush_report::RawMeasurements;

use crate::AgentError;

/// Whether an interaction counts, judged by when it happened rather than when
/// it was read: interactions arrive up to [`MAX_DELIVERY_DELAY`] late, and
/// input from while the person had paused must not be counted because it was
/// read after they resumed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pause {
    /// The state the last check found.
    pub(crate) paused: bool,
    /// When (interactions' clock) a check first found that state.
    pub(crate) since_ms: u64,
}

impl Pause {
    pub(crate) fn set(&mut self, paused: bool, now_ms: u64) {
        if paused != self.paused {
            *self = Pause {
                paused,
                since_ms: now_ms,
            };
        }
    }

    /// Checks are a second apart and interactions at most 750 ms old when read
    /// (delivery plus one tick), so only the last change can matter.
    pub(crate) fn counts(&self, at_ms: u64) -> bool {
        if self.paused {
            at_ms < self.since_ms
        } else {
            at_ms >= self.since_ms
        }
    }
}

/// The period being gathered: windows of interactions folded into the
/// period's raw measurements, in memory only.
///
/// Interactions reach the channel up to [`MAX_DELIVERY_DELAY`] after they
/// happen (the X listener reads in batches), so a window or period is closed
/// only that long after it ends, and interactions from after the period's end
/// that arrive before it closes wait for the next one. Each lands in the
/// period and minute in which it happened.
pub(crate) struct PeriodBuilder {
    /// The period being gathered.
    pub(crate) period: u32,
    period_ms: u64,
    window_ms: u64,
    aggregator: WindowAggregator,
    raw: RawMeasurements,
    /// Interactions of the next period that arrived before this one closed.
    next: Vec<Interaction>,
    /// The interactions' clock at the last tick.
    last_now_ms: u64,
    /// Where the period ended on the interactions' clock, once it has.
    ended_ms: Option<u64>,
}

/// A finished period, ready to be privatized. Every period is reported, paused
/// or not (a paused period's measurements are empty): whether a report comes
/// must not say whether the person paused.
pub(crate) struct ClosedPeriod {
    pub(crate) period: u32,
    pub(crate) raw: RawMeasurements,
}

impl PeriodBuilder {
    /// How long after its end a window or period is closed.
    const LAG_MS: u64 = MAX_DELIVERY_DELAY.as_millis() as u64;

    pub(crate) fn new(
        period: u32,
        period_seconds: u32,
        window_ms: u64,
        start_ms: u64,
    ) -> Result<PeriodBuilder, AgentError> {
        Ok(PeriodBuilder {
            period,
            period_ms: u64::from(period_seconds.max(1)) * 1000,
            window_ms,
            aggregator: WindowAggregator::new(window_ms, start_ms)?,
            raw: RawMeasurements::new(0),
            next: Vec::new(),
            last_now_ms: start_ms,
            ended_ms: None,
        })
    }

    /// The period's end on the wall clock.
    fn end_unix_ms(&self) -> u64 {
        (u64::from(self.period) + 1) * self.period_ms
    }

    /// Folds in what `arrived` since the last tick and closes the windows that
    /// ended; once the period ended [`Self::LAG_MS`] ago by the wall clock
    /// (`unix_ms`), returns it and starts the current period. `now_ms` is the
    /// interactions' clock.
    pub(crate) fn tick(
        &mut self,
        arrived: impl IntoIterator<Item = Interaction>,
        now_ms: u64,
        unix_ms: u64,
    ) -> Result<Option<ClosedPeriod>, AgentError> {
        let end_unix_ms = self.end_unix_ms();
        // The end on the interactions' clock, projected from the wall clock.
        // Once passed it is fixed: it came after the last tick, so no earlier
        // than that tick, even if the wall clock jumped meanwhile (a
        // suspended laptop's monotonic clock stops, the wall clock does not).
        let projected = (now_ms + end_unix_ms).saturating_sub(unix_ms);
        let end_ms = match self.ended_ms {
            Some(end) => end,
            None if unix_ms >= end_unix_ms => {
                let end = projected.clamp(self.last_now_ms.min(now_ms), now_ms);
                self.ended_ms = Some(end);
                end
            }
            None => projected,
        };
        self.last_now_ms = now_ms;
        for interaction in arrived {
            if interaction.at_ms >= end_ms {
                self.next.push(interaction);
            } else {
                for w in self.aggregator.observe(interaction) {
                    self.raw.absorb(w);
                }
            }
        }
        for w in self
            .aggregator
            .advance(now_ms.saturating_sub(Self::LAG_MS).min(end_ms))
        {
            self.raw.absorb(w);
        }
        if unix_ms < end_unix_ms.saturating_add(Self::LAG_MS) {
            return Ok(None);
        }
        let done = std::mem::replace(
            &mut self.aggregator,
            WindowAggregator::new(self.window_ms, end_ms)?,
        );
        let mut raw = std::mem::replace(&mut self.raw, RawMeasurements::new(0));
        raw.absorb(done.finish(end_ms));
        let closed = ClosedPeriod {
            period: self.period,
            raw,
        };
        self.period = u32::try_from(unix_ms / self.period_ms).unwrap_or(u32::MAX);
        self.ended_ms = None;
        for interaction in std::mem::take(&mut self.next) {
            for w in self.aggregator.observe(interaction) {
                self.raw.absorb(w);
            }
        }
        Ok(Some(closed))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

    use super::*;

    fn letter(at_ms: u64) -> Interaction {
        Interaction {
            kind: hush_capture::InteractionKind::Key(hush_report::KeyClass::Letter),
            at_ms,
        }
    }

    /// Periods of 60 s on a wall clock where period 10 ends at 660 000 ms;
    /// the interactions' clock reads `offset` less than the wall clock.
    const OFFSET: u64 = 600_000;

    #[test]
    fn a_late_interaction_lands_in_the_period_it_happened_in() {
        let mut gathering = PeriodBuilder::new(10, 60, 3_600_000, 0).unwrap();
        let end = 660_000 - OFFSET;
        // 300 ms after the end, one from just before it and one from just after arrive.
        let closed = gathering
            .tick(
                [letter(end - 100), letter(end + 100)],
                end + 300,
                end + 300 + OFFSET,
            )
            .unwrap();
        assert!(closed.is_none(), "closed before the delivery delay passed");
        let closed = gathering
            .tick([letter(end + 400)], end + 600, end + 600 + OFFSET)
            .unwrap()
            .expect("closed once the delay passed");
        assert_eq!(closed.period, 10);
        assert_eq!(closed.raw.keys_of(hush_report::KeyClass::Letter), 1);
        assert_eq!(gathering.period, 11);
        let closed = gathering
            .tick([], end + 60_600, end + 60_600 + OFFSET)
            .unwrap()
            .expect("period 11 closes too");
        assert_eq!(closed.period, 11);
        assert_eq!(closed.raw.keys_of(hush_report::KeyClass::Letter), 2);
    }

    #[test]
    fn a_window_waits_for_its_late_interactions() {
        // 60 s windows from 0; the period is far from over.
        let mut gathering = PeriodBuilder::new(10, 3600, 60_000, 0).unwrap();
        let wall = |ms: u64| 36_000_000 + ms;
        gathering
            .tick([letter(59_000)], 59_100, wall(59_100))
            .unwrap();
        // Minute 0 ends at 60 000; a tick at 60 200 must not close it yet ...
        gathering.tick([], 60_200, wall(60_200)).unwrap();
        assert_eq!(gathering.raw.active_minutes(), 0);
        // ... so this one, from minute 0 but delivered late, counts there.
        gathering
            .tick([letter(59_900)], 60_400, wall(60_400))
            .unwrap();
        gathering.tick([], 60_600, wall(60_600)).unwrap();
        assert_eq!(gathering.raw.active_minutes(), 1);
        assert_eq!(gathering.raw.keys_of(hush_report::KeyClass::Letter), 2);
    }

    #[test]
    fn a_suspend_across_the_end_keeps_the_last_window_whole() {
        // Daily periods, hourly windows, wall clock = interactions' clock at first.
        let mut gathering = PeriodBuilder::new(0, 86_400, 3_600_000, 0).unwrap();
        // Two keys at 17:13 and 17:30, in the window that began at 17:00.
        let t = 63_000_250;
        assert!(
            gathering
                .tick([letter(62_000_000), letter(63_000_000)], t, t)
                .unwrap()
                .is_none()
        );
        // Suspended at 17:30, resumed at 09:00 the next day: the monotonic
        // clock moved 250 ms, the wall clock 15.5 hours.
        let closed = gathering
            .tick([], t + 250, 118_800_000)
            .unwrap()
            .expect("the day before the suspend closes");
        assert_eq!(closed.period, 0);
        assert_eq!(closed.raw.keys_of(hush_report::KeyClass::Letter), 2);
        assert_eq!(closed.raw.active_minutes(), 2, "minutes cut off at the end");
        assert_eq!(gathering.period, 1);
    }

    #[test]
    fn pausing_counts_interactions_by_when_they_happened() {
        let mut pause = Pause {
            paused: false,
            since_ms: 0,
        };
        pause.set(true, 2_000);
        assert!(pause.counts(1_999), "typed before the pause, read after");
        assert!(!pause.counts(2_000));
        pause.set(true, 3_000);
        assert_eq!(pause.since_ms, 2_000, "no change, no new time");
        pause.set(false, 5_000);
        assert!(
            !pause.counts(4_999),
            "typed while paused, read after resuming"
        );
        assert!(pause.counts(5_000));
    }
}
