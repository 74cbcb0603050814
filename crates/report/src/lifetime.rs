//! Lifetime accounting of permanent draws: the spending history (per measure, when
//! and at what epsilon each permanent response was drawn; no values) and the
//! keyed tags that tell the device which coarse values it has already drawn.
//!
//! Time is counted in accounting buckets of [`BUCKET_DAYS`] days, passed in by
//! the caller. A draw's response may be reused while its bucket is among the
//! last [`WINDOW_BUCKETS`] (391 to 420 days), and the cap limits draws within
//! any such window. Reports sent in one 365-day span (at most [`YEAR_BUCKETS`]
//! buckets) can use responses drawn up to `WINDOW_BUCKETS - 1` buckets before
//! the span began, so they can show responses from two windows of draws: at
//! most twice the per-window cap. That is why the person's setting is the
//! values per *year*, and the per-window cap is half of it
//! ([`draws_per_window`]). Only buckets are stored, so the files say in which
//! month a metric took a value it had not had before, not on which day.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::secret::TAG_BYTES;

/// Days in one accounting bucket.
pub const BUCKET_DAYS: u32 = 30;

/// Buckets a draw counts for, the current one included: `14 x 30 = 420` days
/// at most, and at least 391, so the "rolling year" is never shorter than 365 days.
pub const WINDOW_BUCKETS: u32 = 14;
const _: () = assert!(WINDOW_BUCKETS * BUCKET_DAYS - (BUCKET_DAYS - 1) >= 365);

/// The most buckets a span of 365 days touches: `ceil(365 / 30) + 1`, since
/// a span need not start at a bucket boundary.
pub const YEAR_BUCKETS: u32 = 365_u32.div_ceil(BUCKET_DAYS) + 1;

/// Buckets of draws that the last 365 days of reports can have used: a report
/// in the oldest bucket of the year can use a draw `WINDOW_BUCKETS - 1`
/// buckets older than itself. The history is kept this long.
pub const HISTORY_BUCKETS: u32 = WINDOW_BUCKETS + YEAR_BUCKETS - 1;

// Two windows cover the history, so its draws are at most twice the window cap.
const _: () = assert!(2 * WINDOW_BUCKETS >= HISTORY_BUCKETS);

/// The per-window draw cap that keeps every 365 days of a measure's reports to
/// at most `values_per_year` permanent responses: half of it, because the
/// reports of one year can use the draws of two windows (see the module docs).
pub fn draws_per_window(values_per_year: u32) -> u32 {
    values_per_year / 2
}

/// The accounting bucket of a Unix day (days since 1970-01-01).
pub fn bucket_of_day(day: u32) -> u32 {
    day / BUCKET_DAYS
}

/// One permanent draw in the spending history: when, and at what epsilon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draw {
    /// The accounting bucket it was drawn in.
    pub bucket: u32,
    /// Its `epsilon_perm`, in 10^-9 units.
    pub epsilon_units: u64,
}

/// The spending history of permanent draws, per measure name (a measure's
/// metrics share it: `crate::context_of`). It holds no
/// measurements, so the agent keeps it through `forget`, re-enrollment and
/// setting changes: none of them can reset what a year may reveal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifetime {
    draws: BTreeMap<String, Vec<Draw>>,
    /// The latest bucket ever seen: a clock set back cannot reopen the window.
    latest_bucket: u32,
}

impl Lifetime {
    /// The bucket accounting uses now: the caller's, or a later one seen before.
    pub fn clock(&self, bucket: u32) -> u32 {
        bucket.max(self.latest_bucket)
    }

    fn in_window(draw: &Draw, now: u32) -> bool {
        draw.bucket + WINDOW_BUCKETS > now
    }

    fn in_history(draw: &Draw, now: u32) -> bool {
        draw.bucket + HISTORY_BUCKETS > now
    }

    /// Draws of `metric` whose responses the last 365 days of reports can
    /// have used: at most twice the per-window cap.
    pub fn draws_in_year(&self, metric: &str, bucket: u32) -> u32 {
        let now = self.clock(bucket);
        self.draws.get(metric).map_or(0, |d| {
            d.iter().filter(|x| Self::in_history(x, now)).count() as u32
        })
    }

    /// The epsilon of `metric`'s draws counted by [`Lifetime::draws_in_year`].
    pub fn spent_in_year(&self, metric: &str, bucket: u32) -> f64 {
        let now = self.clock(bucket);
        self.draws.get(metric).map_or(0.0, |d| {
            d.iter()
                .filter(|x| Self::in_history(x, now))
                .map(|x| x.epsilon_units as f64 / 1e9)
                .sum()
        })
    }

    /// The most the last 365 days of reports can reveal together, over every
    /// metric (basic composition over the responses they can have used).
    pub fn total_in_year(&self, bucket: u32) -> f64 {
        self.draws
            .keys()
            .map(|m| self.spent_in_year(m, bucket))
            .sum()
    }

    /// Draws of `metric` that still count at `bucket`.
    pub fn draws_in_window(&self, metric: &str, bucket: u32) -> u32 {
        let now = self.clock(bucket);
        self.draws.get(metric).map_or(0, |d| {
            d.iter().filter(|x| Self::in_window(x, now)).count() as u32
        })
    }

    /// The epsilon of `metric`'s draws that still count at `bucket`.
    pub fn spent_in_window(&self, metric: &str, bucket: u32) -> f64 {
        let now = self.clock(bucket);
        self.draws.get(metric).map_or(0.0, |d| {
            d.iter()
                .filter(|x| Self::in_window(x, now))
                .map(|x| x.epsilon_units as f64 / 1e9)
                .sum()
        })
    }

    /// Metric names with history.
    pub fn metrics(&self) -> impl Iterator<Item = &str> {
        self.draws.keys().map(String::as_str)
    }

    /// Records a draw of `metric` at `epsilon_units` in `bucket` (or the clock's
    /// later bucket), and forgets draws no year of reports can still have used.
    pub fn record(&mut self, metric: &str, bucket: u32, epsilon_units: u64) {
        let now = self.clock(bucket);
        self.latest_bucket = now;
        let draws = self.draws.entry(metric.to_owned()).or_default();
        draws.push(Draw {
            bucket: now,
            epsilon_units,
        });
        self.prune(now);
    }

    /// Drops draws older than the history (no report of the last 365 days
    /// can have used them) and advances the clock.
    pub fn prune(&mut self, bucket: u32) {
        let now = self.clock(bucket);
        self.latest_bucket = now;
        for draws in self.draws.values_mut() {
            draws.retain(|d| Self::in_history(d, now));
        }
        self.draws.retain(|_, d| !d.is_empty());
    }
}

/// The coarse values already drawn, as keyed tags: `HMAC(secret, metric,
/// value)`, never the value. They are tied to the secret (a new secret makes
/// every value new again), so `forget` deletes them with it, while the
/// [`Lifetime`] stays.
///
/// Whoever holds both this file and the secret can test each possible coarse
/// value against the tags and so learn which values were drawn (a set, with
/// the month of each first draw): docs/PRIVACY.md says so. Without the tags
/// the device could not tell a new value from an old one, and would either
/// overcharge every report or never stop drawing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrawTags {
    tags: BTreeMap<[u8; TAG_BYTES], u32>,
}

impl DrawTags {
    /// Whether `tag` was drawn in a bucket that still counts at `now`.
    pub fn contains(&self, tag: &[u8; TAG_BYTES], now: u32) -> bool {
        self.tags
            .get(tag)
            .is_some_and(|&b| b + WINDOW_BUCKETS > now)
    }

    /// Records a draw.
    pub fn insert(&mut self, tag: [u8; TAG_BYTES], bucket: u32) {
        self.tags.insert(tag, bucket);
    }

    /// Forgets tags outside the window: a value drawn longer ago is charged again
    /// if it returns (its response is the same, so this only overcounts).
    pub fn prune(&mut self, now: u32) {
        self.tags.retain(|_, &mut b| b + WINDOW_BUCKETS > now);
    }

    /// Number of tags.
    pub fn len(&self) -> usize {
        self.tags.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    /// Encodes for the device's own storage (bincode, standard configuration).
    pub fn to_bytes(&self) -> Vec<u8> {
        match bincode::serde::encode_to_vec(self, bincode::config::standard()) {
            Ok(v) => v,
            Err(e) => panic!("encoding tags into memory failed: {e}"),
        }
    }

    /// Decodes stored tags (at most 1 MiB).
    pub fn from_bytes(bytes: &[u8]) -> Result<DrawTags, crate::CodecError> {
        let config = bincode::config::standard().with_limit::<{ 1024 * 1024 }>();
        let (tags, used) = bincode::serde::decode_from_slice(bytes, config)
            .map_err(|e| crate::CodecError::Malformed(e.to_string()))?;
        if used != bytes.len() {
            return Err(crate::CodecError::Trailing(bytes.len() - used));
        }
        Ok(tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_at_least_a_year_and_the_clock_never_goes_back() {
        let mut l = Lifetime::default();
        l.record("clicks", 100, 4_000_000_000);
        assert_eq!(l.draws_in_window("clicks", 100), 1);
        // 13 buckets later (at least 361 days): still counted.
        assert_eq!(l.draws_in_window("clicks", 113), 1);
        assert!((l.spent_in_window("clicks", 113) - 4.0).abs() < 1e-12);
        // 14 buckets later (at least 391 days): expired.
        assert_eq!(l.draws_in_window("clicks", 114), 0);
        // A clock set back does not bring a draw forward: recorded at the latest bucket.
        l.record("clicks", 50, 1_000_000_000);
        assert_eq!(l.clock(50), 100);
        assert_eq!(l.draws_in_window("clicks", 50), 2);
        // Out of the window, but the past year's reports may still have used it.
        assert_eq!(l.draws_in_window("clicks", 114), 0);
        assert_eq!(l.draws_in_year("clicks", 114), 2);
        assert_eq!(l.draws_in_year("clicks", 100 + HISTORY_BUCKETS - 1), 2);
        assert_eq!(l.draws_in_year("clicks", 100 + HISTORY_BUCKETS), 0);
        l.prune(120);
        assert_eq!(l.draws_in_window("clicks", 0), 0);
        assert_eq!(l.draws_in_year("clicks", 0), 2, "kept for the year's bound");
        l.prune(100 + HISTORY_BUCKETS);
        assert_eq!(l.metrics().count(), 0);
        assert_eq!(l.clock(0), 100 + HISTORY_BUCKETS);
    }

    #[test]
    fn tags_expire_with_the_window_and_round_trip() {
        let mut t = DrawTags::default();
        t.insert([1; TAG_BYTES], 10);
        assert!(t.contains(&[1; TAG_BYTES], 23));
        assert!(!t.contains(&[1; TAG_BYTES], 24));
        assert!(!t.contains(&[2; TAG_BYTES], 10));
        assert_eq!(DrawTags::from_bytes(&t.to_bytes()).unwrap(), t);
        t.prune(24);
        assert!(t.is_empty());
    }
}
