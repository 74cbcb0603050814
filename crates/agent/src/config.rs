//! The agent's configuration file (TOML): every setting has a default and a comment in
//! the example the agent generates.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::AgentError;

/// Agent settings: the person's own privacy terms, and how the agent works.
/// An empty or missing file means all defaults.
///
/// The privacy settings are caps the person sets: the agent refuses a
/// collector whose terms exceed them, whatever the collector's policy says.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// The most one report may reveal (`epsilon_1`).
    pub max_epsilon_per_report: f64,
    /// The most all reports about one unchanged value may reveal together (`epsilon_perm`).
    pub max_epsilon_per_value: f64,
    /// The most values each measure's reports may show in any 365 days (each
    /// costs `epsilon_perm`); an even number, since half of it may be drawn per
    /// accounting window (`hush_report::draws_per_window`). Past it, a metric
    /// reports the nearest value it has already revealed.
    pub max_values_per_year: u32,
    /// Length of a measurement window, in seconds (windows are folded into the period).
    pub window_seconds: u64,
    /// Most reports kept while offline; past it the oldest is dropped (and logged).
    pub outbox_max_reports: usize,
    /// PEM file of extra root certificates, for a private collector's CA.
    pub ca_cert: Option<PathBuf>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            max_epsilon_per_report: 2.0,
            max_epsilon_per_value: 4.0,
            max_values_per_year: 8,
            window_seconds: 3600,
            outbox_max_reports: 1000,
            ca_cert: None,
        }
    }
}

impl AgentConfig {
    /// Reads the file, or returns the defaults if it does not exist.
    pub fn load(path: &Path) -> Result<Self, AgentError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(AgentError::Config(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        let config: AgentConfig = toml::from_str(&text)
            .map_err(|e| AgentError::Config(format!("{}: {e}", path.display())))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every setting's range.
    pub fn validate(&self) -> Result<(), AgentError> {
        let bad = |m: &str| Err(AgentError::Config(m.to_owned()));
        if hush_ldp::check_epsilon(self.max_epsilon_per_report).is_err()
            || hush_ldp::check_epsilon(self.max_epsilon_per_value).is_err()
        {
            return bad("max_epsilon_per_report and max_epsilon_per_value must be in (0, 20]");
        }
        if self.max_epsilon_per_report >= self.max_epsilon_per_value {
            return bad(
                "max_epsilon_per_report must be below max_epsilon_per_value: every report adds fresh noise to a permanent response",
            );
        }
        if !(2..=1000).contains(&self.max_values_per_year)
            || !self.max_values_per_year.is_multiple_of(2)
        {
            return bad(
                "max_values_per_year must be an even number in [2, 1000]: half of it may be drawn in each 14-month accounting window",
            );
        }
        if !(1..=86_400).contains(&self.window_seconds) {
            return bad("window_seconds must be in [1, 86400]");
        }
        if self.outbox_max_reports == 0 {
            return bad("outbox_max_reports must be positive");
        }
        Ok(())
    }

    /// The example configuration, every setting commented.
    pub fn example() -> &'static str {
        r#"# Hush agent configuration. Every setting is optional; these are the defaults.

# Your privacy terms. The agent refuses a collector that asks for more than these.
# What one report may reveal (epsilon per report, "epsilon_1"):
max_epsilon_per_report = 2.0
# What all reports about one unchanged value may reveal together (epsilon per value,
# "epsilon_perm"). Each report is a fresh randomization of one permanent randomized
# answer per value, so repeating a value every day for a year reveals no more.
max_epsilon_per_value = 4.0
# Values each measure's reports may show in any 365 days (each costs the epsilon per
# value; a count's number and its distribution bucket share them). An even number: half of it may be newly drawn in each 14-month accounting
# window, because a year's reports can use the draws of two windows. Past it, a
# metric reports the nearest value it has already revealed.
max_values_per_year = 8

# Length of a measurement window in seconds. Windows are kept in memory only and
# folded into the period's measurements; nothing raw is ever written to disk.
window_seconds = 3600

# Reports leave at a random moment of the day after their own, batched; a failed
# upload is tried again at a random moment of the next day (never sooner, so that
# failures cannot reveal when the laptop is on).

# Reports kept while the collector is unreachable (one a day: almost three years).
# When full, the oldest is dropped and a log line says so.
outbox_max_reports = 1000

# Extra root certificate(s) in PEM for a private collector's certificate authority.
# ca_cert = "/etc/hush/collector-ca.pem"
"#
    }
}
