//! Enrollment: which collector, with which device token, under which privacy terms,
//! consented when; and the consent text with the three numbers a person agrees to.

use serde::{Deserialize, Serialize};

use crate::durable::atomic_write;
use crate::{AgentConfig, AgentError, AgentPaths};

/// Version of the consent text ([`consent_text`]).
pub const CONSENT_VERSION: u32 = 4;

/// The privacy terms of an enrollment: what the collector asks and the person accepted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Terms {
    /// What one report reveals.
    pub epsilon_1: f64,
    /// What all reports about one unchanged value reveal.
    pub epsilon_perm: f64,
    /// The reporting period in seconds (a day, unless development periods are on).
    pub period_seconds: u32,
}

impl Terms {
    /// The most one measure's reports in any 365 days can reveal: its values
    /// (whichever of its metrics drew them), each at `epsilon_perm`.
    pub fn per_metric_year(&self, config: &AgentConfig) -> f64 {
        f64::from(config.max_values_per_year) * self.epsilon_perm
    }

    /// The most all the past year's reports can reveal together, for a
    /// catalog of `measures` measures ([`hush_report::Catalog::measures`]).
    pub fn per_year(&self, config: &AgentConfig, measures: usize) -> f64 {
        self.per_metric_year(config) * measures as f64
    }
}

/// The text the person agrees to, with the terms' three numbers in it, and
/// what each report adds once its permanent answers are known
/// (`change`: [`hush_report::Catalog::epsilon_change`] at these terms).
pub fn consent_text(terms: &Terms, config: &AgentConfig, measures: usize, change: f64) -> String {
    format!(
        "\
Hush will count how you use this computer's keyboard and mouse: how many keys
(never which keys), clicks, scrolling, pointer distance, active minutes, and which
common shortcuts (copy, paste, undo, ...) you use. These counts stay on this
computer. Once per day one of them is randomized here, with local differential
privacy, and only that randomized value is sent, also on days without input.

What the collector can learn about you, at most (epsilon: smaller is more private):
  one report                        epsilon {one}
  all reports of an unchanged value epsilon {perm}   (each report re-randomizes one
                                                     permanent answer per value)
  everything sent in any 365 days   epsilon {year}  ({measures} measures, at most {new}
                                                     values each, {perm} per value)
  which of those values a day had   epsilon {change} per report, once the collector has
                                                     learned your answers from many
                                                     reports (days off or without input
                                                     are among them)

You can see what would be measured (`hush agent preview`), what was sent (`hush agent
sent`), your spending (`hush agent status`), pause and resume at any time, and delete
local state (`hush agent forget`; what was spent stays counted).",
        one = trim(terms.epsilon_1),
        perm = trim(terms.epsilon_perm),
        year = trim(terms.per_year(config, measures)),
        change = trim(change),
        new = config.max_values_per_year,
    )
}

fn trim(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The stored enrollment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enrollment {
    /// Collector base URL.
    pub collector: String,
    /// Device bearer token.
    pub token: String,
    /// The terms accepted.
    pub terms: Terms,
    /// Unix time of consent.
    pub consented_at: u64,
    /// Which consent text was agreed to.
    pub consent_version: u32,
}

impl Enrollment {
    /// Reads the enrollment, or `None` if the agent is not enrolled.
    pub fn load(paths: &AgentPaths) -> Result<Option<Enrollment>, AgentError> {
        match std::fs::read_to_string(paths.enrollment()) {
            Ok(text) => toml::from_str(&text).map(Some).map_err(|e| {
                AgentError::Config(format!(
                    "{}: {e} (an enrollment from before two-layer reports: enroll again)",
                    paths.enrollment().display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores it durably, readable by this user only.
    pub fn save(&self, paths: &AgentPaths) -> Result<(), AgentError> {
        let text = toml::to_string(self).map_err(|e| AgentError::Config(e.to_string()))?;
        atomic_write(&paths.enrollment(), text.as_bytes())?;
        Ok(())
    }
}

/// The collector's published policy (`GET /v1/policy`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Policy {
    /// What one report must reveal.
    pub epsilon_1: f64,
    /// What all reports about one unchanged value must reveal.
    pub epsilon_perm: f64,
    /// Its period length.
    pub period_seconds: u32,
    /// Catalog hashes it knows.
    pub catalogs: Vec<String>,
    /// The count ranges it learned from the fleet (absent from a collector
    /// that predates them: the built-in ranges).
    #[serde(default)]
    pub ranges: Option<hush_report::PublishedRanges>,
}
