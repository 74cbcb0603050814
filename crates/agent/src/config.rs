//! The agent's configuration file (TOML): every setting has a default and a comment in
//! the example the agent generates.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::AgentError;

/// Agent settings. An empty or missing file means all defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Privacy budget per period. The person may lower it; it is capped by the
    /// collector's cap recorded at enrollment.
    pub epsilon_per_period: f64,
    /// Length of a measurement window, in seconds (windows are folded into the period).
    pub window_seconds: u64,
    /// Seconds between upload attempts when nothing new is produced.
    pub upload_interval_seconds: u64,
    /// Most reports kept while offline; past it the oldest is dropped (and logged).
    pub outbox_max_reports: usize,
    /// PEM file of extra root certificates, for a private collector's CA.
    pub ca_cert: Option<PathBuf>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            epsilon_per_period: 2.0,
            window_seconds: 3600,
            upload_interval_seconds: 600,
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
        if hush_ldp::check_epsilon(self.epsilon_per_period).is_err() {
            return bad("epsilon_per_period must be in (0, 20]");
        }
        if !(1..=86_400).contains(&self.window_seconds) {
            return bad("window_seconds must be in [1, 86400]");
        }
        if self.upload_interval_seconds == 0 {
            return bad("upload_interval_seconds must be positive");
        }
        if self.outbox_max_reports == 0 {
            return bad("outbox_max_reports must be positive");
        }
        Ok(())
    }

    /// The example configuration, every setting commented.
    pub fn example() -> &'static str {
        r#"# Hush agent configuration. Every setting is optional; these are the defaults.

# Privacy budget per period (epsilon, basic composition). You may lower it for more
# privacy and noisier statistics; it can never exceed the cap the collector set,
# which `hush agent enroll` recorded.
epsilon_per_period = 2.0

# Length of a measurement window in seconds. Windows are kept in memory only and
# folded into the period's measurements; nothing raw is ever written to disk.
window_seconds = 3600

# Seconds between upload attempts (failed uploads back off exponentially, with jitter).
upload_interval_seconds = 600

# Reports kept while the collector is unreachable (one a day: almost three years).
# When full, the oldest is dropped and a log line says so.
outbox_max_reports = 1000

# Extra root certificate(s) in PEM for a private collector's certificate authority.
# ca_cert = "/etc/hush/collector-ca.pem"
"#
    }
}
