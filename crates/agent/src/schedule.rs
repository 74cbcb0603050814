//! When the uploader sends: the upload schedule, drawn at random moments so
//! that arrival times carry nothing about when the laptop was used. Pure:
//! times and randomness are passed in.

use std::time::Duration;

use rand::CryptoRng;

/// When the uploader sends: a uniformly random moment within the period after
/// the one reported, so the arrival time says nothing about when the laptop
/// was used, woke up or shut down.
///
/// A moment missed while the laptop slept is not caught up at wake-up (which
/// would reveal the wake-up time): a new one is drawn within what is left of
/// the current period. Everything queued leaves together. Times are Unix
/// milliseconds, passed in with the randomness, so the rules are tested
/// without clocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Schedule {
    period_ms: u64,
    /// The moment of the next upload, if one is due.
    next: Option<u64>,
}

/// What the upload thread does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing is scheduled: wait to be told.
    Idle,
    /// Wait this long, then ask again.
    Wait(Duration),
    /// Upload everything queued.
    Send,
}

impl Schedule {
    pub(crate) fn new(period_seconds: u32) -> Self {
        Schedule {
            period_ms: u64::from(period_seconds.max(1)) * 1000,
            next: None,
        }
    }

    /// How late past its moment a wake-up may be before the moment counts as
    /// missed: a tenth of a period, at most two minutes.
    fn slack_ms(&self) -> u64 {
        (self.period_ms / 10).min(120_000)
    }

    /// A uniform moment in `[from, to)`.
    fn draw(from: u64, to: u64, rng: &mut (impl CryptoRng + ?Sized)) -> u64 {
        from + hush_ldp::sampling::UniformBelow::new(to.saturating_sub(from).max(1)).sample(rng)
    }

    /// A uniform moment in what is left of the current period, or in the next
    /// period if less than a quarter is left.
    fn draw_from_now(&self, now: u64, rng: &mut (impl CryptoRng + ?Sized)) -> u64 {
        let end = (now / self.period_ms + 1) * self.period_ms;
        if end - now < self.period_ms / 4 {
            Self::draw(end, end + self.period_ms, rng)
        } else {
            Self::draw(now, end, rng)
        }
    }

    /// A report for `period` was queued: unless an upload is already scheduled
    /// (it will take this one along), schedule one in the period after it, or
    /// from now on if that period is over (a report for a missed day).
    pub(crate) fn queued(&mut self, period: u32, now: u64, rng: &mut (impl CryptoRng + ?Sized)) {
        if self.next.is_some() {
            return;
        }
        let start = (u64::from(period) + 1) * self.period_ms;
        self.next = Some(if start + self.period_ms > now {
            Self::draw(start.max(now), start + self.period_ms, rng)
        } else {
            self.draw_from_now(now, rng)
        });
    }

    /// Reports are queued from an earlier run: schedule them from now on.
    pub(crate) fn pending(&mut self, now: u64, rng: &mut (impl CryptoRng + ?Sized)) {
        if self.next.is_none() {
            self.next = Some(self.draw_from_now(now, rng));
        }
    }

    /// The upload went through (or had nothing to send).
    pub(crate) fn sent(&mut self) {
        self.next = None;
    }

    /// The upload failed, or was held: try again at a uniform moment of the
    /// next period. Not sooner: retries after a delay from the failure would
    /// beat like a heartbeat while the laptop is awake, and a collector (or
    /// anyone able to break the connection) that fails every upload would
    /// learn when the laptop is on to within the delay.
    pub(crate) fn retry(&mut self, now: u64, rng: &mut (impl CryptoRng + ?Sized)) {
        let end = (now / self.period_ms + 1) * self.period_ms;
        self.next = Some(Self::draw(end, end + self.period_ms, rng));
    }

    /// What to do at `now`.
    pub(crate) fn step(&mut self, now: u64, rng: &mut (impl CryptoRng + ?Sized)) -> Step {
        let Some(at) = self.next else {
            return Step::Idle;
        };
        if now < at {
            return Step::Wait(Duration::from_millis(at - now));
        }
        if now - at > self.slack_ms() {
            // Slept through it: a new moment, not the wake-up's.
            let again = self.draw_from_now(now, rng);
            self.next = Some(again);
            return Step::Wait(Duration::from_millis(again - now));
        }
        Step::Send
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

    use hush_ldp::NoiseRng;
    use rand::SeedableRng;

    use super::*;

    fn rng() -> NoiseRng {
        NoiseRng::seed_from_u64(77)
    }

    #[test]
    fn an_upload_falls_uniformly_within_the_period_after_the_report() {
        let day = 86_400_000u64;
        let mut rng = rng();
        let mut tenths = [0u32; 10];
        for _ in 0..5000 {
            let mut s = Schedule::new(86_400);
            // Queued just after day 100 ended: the moment is somewhere in day 101.
            s.queued(100, 101 * day + 500, &mut rng);
            let at = s.next.unwrap();
            assert!((101 * day..102 * day).contains(&at), "{at}");
            tenths[((at - 101 * day) * 10 / day) as usize] += 1;
        }
        // Uniform: each tenth of the day gets 500 ± 4 sd (sd ≈ 21).
        assert!(
            tenths.iter().all(|&n| (415..=585).contains(&n)),
            "{tenths:?}"
        );
    }

    #[test]
    fn a_failed_upload_is_retried_at_a_random_moment_of_the_next_period() {
        // Whenever the failure happens, the retry's moment is uniform over the
        // next period: it says nothing about when the laptop was awake.
        let day = 86_400_000u64;
        let mut rng = rng();
        let mut tenths = [0u32; 10];
        for i in 0..5000u64 {
            let mut s = Schedule::new(86_400);
            let failed_at = 50 * day + (i * 7919) % day;
            s.retry(failed_at, &mut rng);
            let at = s.next.unwrap();
            assert!((51 * day..52 * day).contains(&at), "{at}");
            tenths[((at - 51 * day) * 10 / day) as usize] += 1;
        }
        assert!(
            tenths.iter().all(|&n| (415..=585).contains(&n)),
            "{tenths:?}"
        );
    }

    #[test]
    fn later_reports_ride_along_and_missed_moments_are_redrawn() {
        let day = 86_400_000u64;
        let mut rng = rng();
        let mut s = Schedule::new(86_400);
        s.queued(100, 101 * day, &mut rng);
        let at = s.next.unwrap();
        s.queued(101, 101 * day + 1, &mut rng);
        assert_eq!(s.next, Some(at), "batched with what is queued");
        assert_eq!(
            s.step(at - 5, &mut rng),
            Step::Wait(Duration::from_millis(5))
        );
        assert_eq!(s.step(at + 1000, &mut rng), Step::Send);
        // Asleep through the moment: woken an hour late, it does not send at
        // wake-up but draws a new moment from now on.
        let woke = at + 3_600_000;
        match s.step(woke, &mut rng) {
            Step::Wait(d) => assert!(d > Duration::ZERO),
            other => panic!("{other:?}"),
        }
        assert!(s.next.unwrap() > woke);
        s.sent();
        assert_eq!(s.step(woke, &mut rng), Step::Idle);
        // A report for a day long past (a missed day): scheduled from now on.
        s.queued(90, woke, &mut rng);
        assert!(s.next.unwrap() >= woke);
    }
}
