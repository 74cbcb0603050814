//! The collector's configuration file (TOML), every setting with a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::CollectorError;

/// Collector settings. Every field has a default, so an empty file is valid.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorConfig {
    /// Address to listen on. Loopback by default; put a TLS certificate in
    /// place before listening on a public address.
    pub listen: SocketAddr,
    /// The SQLite database file (created if missing).
    pub database: PathBuf,
    /// What one report reveals (`epsilon_1`): reports must carry exactly this.
    pub epsilon_per_report: f64,
    /// What all reports about one unchanged value reveal (`epsilon_perm`):
    /// reports must carry exactly this; above `epsilon_per_report`.
    pub epsilon_per_value: f64,
    /// Period length the collector accepts, in seconds (a day by default).
    pub period_seconds: u32,
    /// No estimate for a (metric, period, cohort) cell is released before this many devices reported.
    pub min_devices: u64,
    /// Largest request body, in bytes (413 above it).
    pub max_body_bytes: usize,
    /// Upload requests a device may make per minute before getting 429.
    pub device_requests_per_minute: u32,
    /// How many upload requests one database transaction may commit together.
    pub group_commit: usize,
    /// PEM certificate chain for TLS; TLS is off when unset.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    pub tls_key: Option<PathBuf>,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8600)),
            database: PathBuf::from("hush-collector.sqlite"),
            epsilon_per_report: 2.0,
            epsilon_per_value: 4.0,
            period_seconds: 86_400,
            min_devices: 50,
            max_body_bytes: hush_report::MAX_BATCH_BYTES + 1,
            device_requests_per_minute: 120,
            group_commit: 256,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl CollectorConfig {
    /// Reads a config file; a relative database path is taken relative to the file.
    pub fn load(path: &Path) -> Result<Self, CollectorError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CollectorError::Config(format!("cannot read {}: {e}", path.display())))?;
        let mut config: CollectorConfig = toml::from_str(&text)
            .map_err(|e| CollectorError::Config(format!("{}: {e}", path.display())))?;
        if config.database.is_relative()
            && let Some(dir) = path.parent()
        {
            config.database = dir.join(&config.database);
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and combinations.
    pub fn validate(&self) -> Result<(), CollectorError> {
        let bad = |m: &str| Err(CollectorError::Config(m.to_owned()));
        let valid = |e: f64| e.is_finite() && e > 0.0 && e <= hush_ldp::MAX_EPSILON;
        if !valid(self.epsilon_per_report) || !valid(self.epsilon_per_value) {
            return bad("epsilon_per_report and epsilon_per_value must be in (0, 20]");
        }
        if self.epsilon_per_report >= self.epsilon_per_value {
            return bad(
                "epsilon_per_report must be below epsilon_per_value: each report adds fresh noise to a permanent response",
            );
        }
        if self.period_seconds == 0 {
            return bad("period_seconds must be positive");
        }
        if self.max_body_bytes < 64 {
            return bad("max_body_bytes must be at least 64");
        }
        if self.group_commit == 0 {
            return bad("group_commit must be at least 1");
        }
        if self.device_requests_per_minute == 0 {
            return bad("device_requests_per_minute must be at least 1");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad("tls_cert and tls_key go together");
        }
        Ok(())
    }

    /// An example configuration file with every setting and its default, commented.
    pub fn example() -> &'static str {
        r#"# Hush collector configuration. Every setting is optional; these are the defaults.

# Address to listen on. Keep loopback unless TLS is configured below.
listen = "127.0.0.1:8600"

# SQLite database file, relative to this file. Created on first start (WAL mode,
# synchronous=FULL: an acknowledged report survives a power cut).
database = "hush-collector.sqlite"

# The privacy terms this collector asks of every report (agents refuse terms above
# their person's own caps, and this collector refuses reports at other terms).
# What one report reveals (epsilon_1):
epsilon_per_report = 2.0
# What all reports about one unchanged value reveal together (epsilon_perm):
epsilon_per_value = 4.0

# Length of a reporting period in seconds (one day).
period_seconds = 86400

# Minimum number of distinct devices before any estimate of a cell is released.
min_devices = 50

# Largest request body in bytes; larger uploads get 413.
max_body_bytes = 1048577

# Upload requests per device per minute before 429.
device_requests_per_minute = 120

# Upload requests committed together in one transaction (group commit).
group_commit = 256

# TLS (rustls): set both to serve HTTPS.
# tls_cert = "cert.pem"
# tls_key = "key.pem"
"#
    }
}
