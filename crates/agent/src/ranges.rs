//! The count ranges this agent reports with: the revision the collector last
//! offered, the one in use, and the adoptions of the last year, which a
//! collector cannot make more frequent than [`MAX_ADOPTIONS_PER_WINDOW`].
//!
//! A collector learns its fleet's ranges from released distributions and
//! offers them in its policy ([`hush_report::PublishedRanges`]); the agent
//! records the offer when it fetches the policy and adopts it at the next
//! period boundary, when it makes a report. A changed range is a changed
//! definition: its first report draws a new permanent response, charged to
//! the measure's cap on new values like any other, or, at the cap, stands in
//! with a fixed fake value (uncharged, so whether the cap was reached shows
//! by up to `epsilon_perm`). Either way an adoption is worth at most one new
//! value per measure, so what a window of reports can reveal per measure is
//! `(max_draws + MAX_ADOPTIONS_PER_WINDOW) x epsilon_perm`, whatever the
//! collector publishes, and a collector that changed ranges daily could
//! spend at most two of the person's new values a window.
//!
//! The file is written by the upload thread (offers) and the period loop
//! (adoptions): one lock in the process serializes them.

use hush_report::{Catalog, CatalogHash, PublishedRanges, Report, SentLine};
use serde::{Deserialize, Serialize};

use crate::durable::atomic_write;
use crate::{AgentError, AgentPaths, Policy};

/// The most range revisions an agent adopts within one accounting window
/// ([`hush_report::WINDOW_BUCKETS`] months, the window the cap on new values
/// counts in): enough for a fleet ten times off the built-in ranges to
/// converge (one jump, one correction), and a bound a churning collector
/// cannot raise.
pub const MAX_ADOPTIONS_PER_WINDOW: usize = 2;

/// Serializes the read-change-write of the ranges file between threads.
static FILE_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// One adoption: the accounting month and the revision adopted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adoption {
    /// The accounting bucket ([`hush_report::bucket_of_day`]) of the period
    /// whose report first used it: the month, as the spending history keeps.
    pub bucket: u32,
    /// What was adopted.
    pub ranges: PublishedRanges,
}

/// The agent's ranges file (`ranges.toml`): steps the collector published,
/// never a measurement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ranges {
    /// The collector's latest offer, as fetched with its policy.
    pub offered: Option<PublishedRanges>,
    /// The revision in use (revision 0: the built-in catalog).
    pub adopted: PublishedRanges,
    /// Every adoption, oldest first (a few a year; kept to describe old reports).
    pub adoptions: Vec<Adoption>,
}

impl Ranges {
    /// Reads the file (the built-in ranges if there is none).
    pub fn load(paths: &AgentPaths) -> Result<Ranges, AgentError> {
        match std::fs::read_to_string(paths.ranges()) {
            Ok(text) => toml::from_str(&text).map_err(|e| {
                AgentError::Corrupt(format!("ranges {}: {e}", paths.ranges().display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ranges::default()),
            Err(e) => Err(e.into()),
        }
    }

    fn save(&self, paths: &AgentPaths) -> Result<(), AgentError> {
        let text = toml::to_string(self).map_err(|e| AgentError::Config(e.to_string()))?;
        atomic_write(&paths.ranges(), text.as_bytes())?;
        Ok(())
    }

    /// Records the ranges a policy offers, if they are new; returns whether
    /// they were. An offer whose catalog the policy does not list is refused
    /// (the collector would refuse its reports).
    pub fn offer(paths: &AgentPaths, policy: &Policy) -> Result<bool, AgentError> {
        let Some(offer) = &policy.ranges else {
            return Ok(false);
        };
        let hash = Catalog::with_ranges(&offer.steps).hash().to_string();
        if !policy.catalogs.contains(&hash) {
            return Err(AgentError::Network(format!(
                "the collector offers range revision {} but does not list its catalog {hash}",
                offer.revision
            )));
        }
        let _guard = FILE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let mut ranges = Ranges::load(paths)?;
        if ranges.offered.as_ref() == Some(offer) {
            return Ok(false);
        }
        ranges.offered = Some(offer.clone());
        ranges.save(paths)?;
        Ok(true)
    }

    /// The catalog the report of a period in accounting `bucket` is made
    /// with: the offer, adopted now if its steps differ from those in use and
    /// fewer than [`MAX_ADOPTIONS_PER_WINDOW`] adoptions fall in the window
    /// ending at `bucket` (never earlier than the last adoption, so setting
    /// the clock back opens no room); otherwise the ranges in use. An
    /// adoption is durable before the catalog is returned, so a crash cannot
    /// adopt twice (a report then refused by the budget still used it).
    pub fn catalog_for(paths: &AgentPaths, bucket: u32) -> Result<Catalog, AgentError> {
        let _guard = FILE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let mut ranges = Ranges::load(paths)?;
        let now = ranges
            .adoptions
            .iter()
            .map(|a| a.bucket)
            .fold(bucket, u32::max);
        if let Some(offer) = ranges.offered.clone() {
            let changes = offer.steps != ranges.adopted.steps;
            let recent = ranges
                .adoptions
                .iter()
                .filter(|a| a.bucket.saturating_add(hush_report::WINDOW_BUCKETS) > now)
                .count();
            if changes && recent < MAX_ADOPTIONS_PER_WINDOW {
                tracing::info!(
                    revision = offer.revision,
                    "adopting the collector's range revision {} ({} of {MAX_ADOPTIONS_PER_WINDOW} in {} months)",
                    offer.revision,
                    recent + 1,
                    hush_report::WINDOW_BUCKETS
                );
                ranges.adoptions.push(Adoption {
                    bucket: now,
                    ranges: offer.clone(),
                });
                ranges.adopted = offer;
                ranges.save(paths)?;
            } else if changes {
                tracing::warn!(
                    revision = offer.revision,
                    "not adopting range revision {}: {MAX_ADOPTIONS_PER_WINDOW} revisions were adopted within the accounting window",
                    offer.revision
                );
            } else if offer.revision != ranges.adopted.revision {
                // The same steps under a new number: nothing to adopt.
                ranges.adopted.revision = offer.revision;
                ranges.save(paths)?;
            }
        }
        Ok(ranges.current_catalog())
    }

    /// The catalog of the ranges in use.
    pub fn current_catalog(&self) -> Catalog {
        Catalog::with_ranges(&self.adopted.steps)
    }

    /// The catalog with `hash` among those this agent has reported with (the
    /// built-in one and every adopted revision), to describe a stored report.
    pub fn catalog_of(&self, hash: CatalogHash) -> Option<Catalog> {
        std::iter::once(Catalog::builtin())
            .chain(
                self.adoptions
                    .iter()
                    .map(|a| Catalog::with_ranges(&a.ranges.steps)),
            )
            .find(|c| c.hash() == hash)
    }

    /// A sent report in words, read with the catalog it was made with (what
    /// `hush agent sent` and the person's page show).
    pub fn describe(&self, report: &Report) -> Vec<SentLine> {
        match self.catalog_of(report.catalog_hash()) {
            Some(catalog) => catalog.describe_report(report),
            None => vec![SentLine {
                name: "(unknown catalog)",
                mechanism: "",
                epsilon: report.epsilon(),
                epsilon_perm: 0.0,
                in_words: format!(
                    "made with catalog {}, which this agent has no record of",
                    report.catalog_hash()
                ),
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

    use hush_report::{Measure, RangeSteps};

    use super::*;

    fn policy(revision: u32, step: i8) -> Policy {
        let steps = RangeSteps::new([(Measure::Keystrokes, step)]).unwrap();
        Policy {
            epsilon_1: 2.0,
            epsilon_perm: 4.0,
            period_seconds: 86_400,
            catalogs: vec![
                Catalog::builtin().hash().to_string(),
                Catalog::with_ranges(&steps).hash().to_string(),
            ],
            ranges: Some(PublishedRanges { revision, steps }),
        }
    }

    #[test]
    fn an_offer_is_adopted_at_the_next_report_and_at_most_twice_a_window() {
        let home = tempfile::tempdir().unwrap();
        let paths = AgentPaths::in_home(home.path());
        std::fs::create_dir_all(&paths.data).unwrap();
        assert_eq!(
            Ranges::catalog_for(&paths, 100).unwrap(),
            Catalog::builtin()
        );
        // Revisions 1..=4 in months 100..=103: two are adopted, then none
        // until the first adoption has left the window.
        for (i, bucket) in (100..104).enumerate() {
            let p = policy(i as u32 + 1, 2 * (i as i8 + 1));
            assert!(Ranges::offer(&paths, &p).unwrap());
            assert!(
                !Ranges::offer(&paths, &p).unwrap(),
                "an offer is recorded once"
            );
            let catalog = Ranges::catalog_for(&paths, bucket).unwrap();
            let adopted = Ranges::load(&paths).unwrap();
            let want = (i + 1).min(MAX_ADOPTIONS_PER_WINDOW);
            assert_eq!(adopted.adoptions.len(), want, "month {bucket}");
            assert_eq!(catalog, Catalog::with_ranges(&adopted.adopted.steps));
            assert_eq!(
                adopted.adopted.steps.step(Measure::Keystrokes),
                2 * want as i8
            );
        }
        // A clock set back opens no room.
        Ranges::catalog_for(&paths, 10).unwrap();
        assert_eq!(Ranges::load(&paths).unwrap().adoptions.len(), 2);
        let window = hush_report::WINDOW_BUCKETS;
        Ranges::catalog_for(&paths, 100 + window - 1).unwrap();
        assert_eq!(Ranges::load(&paths).unwrap().adoptions.len(), 2);
        let catalog = Ranges::catalog_for(&paths, 100 + window).unwrap();
        let ranges = Ranges::load(&paths).unwrap();
        assert_eq!(ranges.adoptions.len(), 3);
        assert_eq!(ranges.adopted.revision, 4);
        // Every catalog reported with stays describable.
        for a in &ranges.adoptions {
            let hash = Catalog::with_ranges(&a.ranges.steps).hash();
            assert!(ranges.catalog_of(hash).is_some());
        }
        assert_eq!(ranges.catalog_of(catalog.hash()), Some(catalog));
        assert!(ranges.catalog_of(Catalog::builtin().hash()).is_some());
    }

    #[test]
    fn offers_and_adoptions_from_two_threads_lose_nothing() {
        let home = tempfile::tempdir().unwrap();
        let paths = AgentPaths::in_home(home.path());
        std::fs::create_dir_all(&paths.data).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..200u32 {
                    Ranges::offer(&paths, &policy(i + 1, 4 + (i % 2) as i8 * 4)).unwrap();
                }
            });
            s.spawn(|| {
                for _ in 0..200 {
                    Ranges::catalog_for(&paths, 100).unwrap();
                }
            });
        });
        let ranges = Ranges::load(&paths).unwrap();
        assert_eq!(ranges.offered.unwrap().revision, 200);
        assert!(ranges.adoptions.len() <= MAX_ADOPTIONS_PER_WINDOW);
    }

    #[test]
    fn an_offer_whose_catalog_is_not_listed_is_refused() {
        let home = tempfile::tempdir().unwrap();
        let paths = AgentPaths::in_home(home.path());
        std::fs::create_dir_all(&paths.data).unwrap();
        let mut p = policy(1, 4);
        p.catalogs.truncate(1);
        assert!(Ranges::offer(&paths, &p).is_err());
        assert_eq!(Ranges::load(&paths).unwrap(), Ranges::default());
    }
}
