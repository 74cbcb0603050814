//! Enrollment: which collector, with which device token, under which policy, consented when.

use serde::{Deserialize, Serialize};

use crate::durable::atomic_write;
use crate::{AgentError, AgentPaths};

/// The text the person agrees to. Its version is recorded with the consent.
pub const CONSENT_TEXT: &str = "\
Hush will count how you use this computer's keyboard and mouse: how many keys
(never which keys), clicks, scrolling, pointer distance, active minutes, and which
common shortcuts (copy, paste, undo, ...) you use. These counts stay on this
computer. Once per day, one of them is randomized on this computer with local
differential privacy and only that randomized value is sent. You can see what was
measured (`hush agent preview`), what was sent (`hush agent sent`), pause and
resume at any time, and delete all local state (`hush agent forget`).";

/// Version of [`CONSENT_TEXT`].
pub const CONSENT_VERSION: u32 = 1;

/// The stored enrollment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enrollment {
    /// Collector base URL.
    pub collector: String,
    /// Device bearer token.
    pub token: String,
    /// The collector's epsilon cap per report when enrolling.
    pub epsilon_cap: f64,
    /// The collector's period length in seconds.
    pub period_seconds: u32,
    /// Unix time of consent.
    pub consented_at: u64,
    /// Which consent text was agreed to.
    pub consent_version: u32,
}

impl Enrollment {
    /// Reads the enrollment, or `None` if the agent is not enrolled.
    pub fn load(paths: &AgentPaths) -> Result<Option<Enrollment>, AgentError> {
        match std::fs::read_to_string(paths.enrollment()) {
            Ok(text) => toml::from_str(&text)
                .map(Some)
                .map_err(|e| AgentError::Config(format!("{}: {e}", paths.enrollment().display()))),
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
    /// Largest epsilon per report it accepts.
    pub epsilon_cap: f64,
    /// Its period length.
    pub period_seconds: u32,
    /// Catalog hashes it knows.
    pub catalogs: Vec<String>,
}
