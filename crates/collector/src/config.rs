//! The collector's configuration file (TOML), every setting with a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::CollectorError;
use crate::store::Database;

/// Collector settings. Every field has a default, so an empty file is valid.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorConfig {
    /// Address to listen on. Loopback by default; put a TLS certificate in
    /// place before listening on a public address.
    pub listen: SocketAddr,
    /// Where reports and aggregates are kept: a SQLite file (created if
    /// missing; relative to the configuration file), or a `postgres://` URL.
    pub database: Database,
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
    /// Failed or refused requests (any 4xx) one client address may cause per
    /// minute before every request from it gets 429. Addresses live in memory
    /// only, are never stored or logged, and IPv6 clients count per /64.
    pub failed_requests_per_minute: u32,
    /// How many periods after its own a period still accepts reports: the agent
    /// reports a day it missed up to 7 days later, so 7. A period's cells are
    /// released only once this window has closed, and never change afterwards
    /// (except by erasure, a person's right).
    pub grace_periods: u32,
    /// Stored reports of closed periods older than this many days are deleted
    /// (at start and then daily); the released aggregate cells stay.
    pub retention_days: u32,
    /// Learn each count's range from the fleet's released distributions and
    /// offer it to agents in the policy (`hush_collector::ranges`): free in
    /// privacy (post-processing), and it keeps ranges near the fleet's 99th
    /// percentile when its days are larger or smaller than the built-in
    /// catalog assumes. Off, the ranges stay at the last published revision.
    pub learn_ranges: bool,
    /// For tests and demonstrations only: seconds added to the system clock when
    /// the collector decides which periods are open, closed or expired, so a test
    /// can upload "today" and read the released cells "a week later". Leave at 0.
    pub clock_offset_seconds: i64,
    /// PEM certificate chain for TLS; TLS is off when unset.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    pub tls_key: Option<PathBuf>,
    /// A second, loopback-only address serving `/metrics` (and `/healthz`,
    /// `/readyz`) without a token, for a Prometheus on the same machine. Unset,
    /// `/metrics` is served on `listen` to admin tokens only.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8600)),
            database: Database::default(),
            epsilon_per_report: 2.0,
            epsilon_per_value: 4.0,
            period_seconds: 86_400,
            min_devices: 50,
            max_body_bytes: hush_report::MAX_BATCH_BYTES + 1,
            device_requests_per_minute: 120,
            group_commit: 256,
            failed_requests_per_minute: 60,
            grace_periods: 7,
            retention_days: 400,
            learn_ranges: true,
            clock_offset_seconds: 0,
            tls_cert: None,
            tls_key: None,
            metrics_listen: None,
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
        if let Database::Sqlite(file) = &config.database
            && file.is_relative()
            && let Some(dir) = path.parent()
        {
            config.database = Database::Sqlite(dir.join(file));
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
        if self.failed_requests_per_minute == 0 {
            return bad("failed_requests_per_minute must be at least 1");
        }
        if self.retention_days == 0 {
            return bad("retention_days must be at least 1");
        }
        // Roughly 136 years either way: beyond that the period arithmetic is meaningless.
        if self.clock_offset_seconds.unsigned_abs() > u64::from(u32::MAX) {
            return bad("clock_offset_seconds is out of range");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad("tls_cert and tls_key go together");
        }
        // It answers without a token, so only this machine may reach it.
        if self.metrics_listen.is_some_and(|a| !a.ip().is_loopback()) {
            return bad(
                "metrics_listen must be a loopback address (127.0.0.1 or ::1): it serves /metrics without a token; scrape `listen` with an admin token from elsewhere",
            );
        }
        Ok(())
    }

    /// Seconds since the Unix epoch by this collector's clock: the system clock
    /// plus `clock_offset_seconds`.
    pub fn now(&self) -> i64 {
        let system = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        system.saturating_add(self.clock_offset_seconds)
    }

    /// The period lifecycle at this collector's present moment.
    pub fn clock(&self) -> crate::PeriodClock {
        crate::PeriodClock::at(self, self.now())
    }

    /// An example configuration file with every setting and its default, commented.
    pub fn example() -> &'static str {
        r#"# Hush collector configuration. Every setting is optional; these are the defaults.

# Address to listen on. Keep loopback unless TLS is configured below.
listen = "127.0.0.1:8600"

# Where reports and aggregates are kept. A SQLite file, relative to this file,
# created on first start (WAL mode, synchronous=FULL: an acknowledged report
# survives a power cut): one collector process. Or a PostgreSQL URL, for several
# collector processes behind a load balancer on one database, e.g.
#   database = "postgres://hush@db.internal:5432/hush"
#   database = "postgres://hush@%2Fvar%2Frun%2Fpostgresql/hush"   (unix socket)
# The schema is created and migrated at start. Move an existing file up with
# `hush collector migrate --from FILE --to URL`.
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

# Failed or refused requests (any 4xx) one client address may cause per minute
# before all its requests get 429. Addresses are kept in memory only, never
# stored or logged. Clients behind one NAT share an allowance.
failed_requests_per_minute = 60

# How many periods after its own a period still accepts reports: the agent
# reports a day it missed up to 7 days later, so 7. A period's estimates are
# released only after this window closes, and never change afterwards (erasing
# a device is the one exception), so no late report can be isolated by
# comparing two releases.
grace_periods = 7

# Stored reports of closed periods older than this are deleted, at start and
# then daily; the released aggregates stay. `hush collector prune` does the same
# on demand.
retention_days = 400

# Learn each count's range (keystrokes, clicks, ...) from the fleet's released
# distributions and offer it to agents with the policy; agents adopt at most 4
# revisions a year. Post-processing of private data: no privacy cost.
learn_ranges = true

# For tests and demonstrations only: seconds added to the clock when deciding
# which periods are open, released or expired. Leave at 0.
# clock_offset_seconds = 0

# TLS (rustls): set both to serve HTTPS.
# tls_cert = "cert.pem"
# tls_key = "key.pem"

# Operators' metrics (Prometheus text) are at /metrics on `listen`, for admin
# tokens. Set this to also serve them without a token on a loopback address,
# for a Prometheus on this machine (loopback only).
# metrics_listen = "127.0.0.1:9600"
"#
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_listen_must_be_loopback() {
        let mut c = CollectorConfig {
            metrics_listen: Some(SocketAddr::from(([0, 0, 0, 0], 9600))),
            ..CollectorConfig::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("loopback"), "{e}");
        c.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], 9600)));
        c.validate().unwrap();
        c.metrics_listen = Some("[::1]:9600".parse().unwrap());
        c.validate().unwrap();
    }

    #[test]
    fn the_example_states_every_default() {
        let parsed: CollectorConfig = toml::from_str(CollectorConfig::example()).unwrap();
        assert_eq!(parsed, CollectorConfig::default());
        parsed.validate().unwrap();
        // Every setting is named in it, the test-only clock offset included.
        for key in [
            "failed_requests_per_minute",
            "grace_periods",
            "retention_days",
            "learn_ranges",
            "clock_offset_seconds",
            "metrics_listen",
        ] {
            assert!(CollectorConfig::example().contains(key), "{key}");
        }
    }
}
