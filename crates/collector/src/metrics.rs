//! The collector's operational metrics and their Prometheus text exposition
//! (format 0.0.4), for the team that runs the collector.
//!
//! Written here rather than taken from `prometheus-client` or
//! `metrics-exporter-prometheus`: the first writes OpenMetrics, whose
//! `_total` counter naming Prometheus's own text parser (and so
//! `promtool check metrics`) reads as a second, untyped family; the second
//! records through a process-wide recorder, so two collectors in one process
//! (the demo, the tests) would share counters, and it brings quanta,
//! metrics-util and a sketch crate to compile. The text format is a handful
//! of rules, kept in [`Exposition`] and pinned by a golden test.
//!
//! What is measured is chosen for the employer who reads it, and for whoever
//! keeps the scrapes: counts and latency distributions over all requests,
//! never a label that carries a device, a token, a report id or a client
//! address. What is about devices (how many reported, with which agent
//! version) is shown for the last closed period only, a day's final figure
//! rather than a timeline of arrivals, and an agent version only once at
//! least `min_devices` devices carry it ([`agent_version_counts`]): a version
//! only one laptop runs would otherwise be that laptop's label.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::validate::category;

/// Distinct agent versions `/metrics` labels, the most common first; the
/// rest count under `other`.
pub const MAX_AGENT_VERSIONS: usize = 16;

/// The label of agent versions too rare (or too odd) to name.
const OTHER_VERSION: &str = "other";

/// Upper bounds of the latency buckets, in seconds: from a cached
/// acknowledgement (sub-millisecond) to a commit stuck behind a busy disk.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds of the group-commit size buckets, in uploads per transaction.
const GROUP_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// The label a refusal category is counted under: one short word per
/// category of [`category`], the same set as the HTTP refusals.
pub const REFUSAL_REASONS: [(&str, &str); 18] = [
    (category::MALFORMED, "malformed"),
    (category::MISSING_TOKEN, "unauthenticated"),
    (category::UNKNOWN_TOKEN, "unknown_token"),
    (category::WRONG_TOKEN, "wrong_token_kind"),
    (category::NOT_FOUND, "not_found"),
    (category::WRONG_METHOD, "wrong_method"),
    (category::OTHER_DEVICE, "replayed"),
    (category::PERIOD_TAKEN, "period_taken"),
    (category::TOO_LARGE, "oversized"),
    (category::CONTENT_TYPE, "content_type"),
    (category::UNKNOWN_CATALOG, "unknown_catalog"),
    (category::INVALID, "invalid"),
    (category::TERMS, "terms"),
    (category::LATE, "late"),
    (category::FUTURE, "future"),
    (category::TOO_MANY, "rate_limited"),
    (category::INTERNAL, "internal"),
    (category::STORAGE, "storage"),
];

/// Refusals that did not come with a category (a status axum produced itself).
const OTHER_REASON: &str = "other";

/// The routes request latencies are kept for; any other path is `other`.
pub const ROUTES: [&str; 7] = [
    "/v1/reports",
    "/v1/estimates",
    "/v1/policy",
    "/healthz",
    "/readyz",
    "/metrics",
    "other",
];

/// A histogram with fixed buckets, updated without a lock.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations at or below each bound (not cumulative; summed on output).
    buckets: Vec<AtomicU64>,
    /// Observations above the last bound.
    overflow: AtomicU64,
    /// The sum of observations, as `f64` bits.
    sum: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            overflow: AtomicU64::new(0),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        match self.bounds.iter().position(|b| value <= *b) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }
}

/// Devices per agent version for a label: a version carried by at least
/// `min_devices` devices (and spelled as versions are: ASCII letters,
/// digits, `.`, `-`, `+`, `_`) keeps its name, at most
/// [`MAX_AGENT_VERSIONS`] of them, the most common first; the rest are
/// summed as `other`. `versions` holds one entry per device.
pub fn agent_version_counts<'a>(
    versions: impl IntoIterator<Item = &'a str>,
    min_devices: u64,
) -> Vec<(String, u64)> {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for v in versions {
        *counts.entry(v).or_default() += 1;
    }
    let nameable = |v: &str| {
        v != OTHER_VERSION
            && !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-+_".contains(&b))
    };
    let mut named: Vec<(&str, u64)> = counts
        .iter()
        .filter(|(v, n)| **n >= min_devices.max(1) && nameable(v))
        .map(|(v, n)| (*v, *n))
        .collect();
    named.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    named.truncate(MAX_AGENT_VERSIONS);
    let total: u64 = counts.values().sum();
    let shown: u64 = named.iter().map(|(_, n)| n).sum();
    let mut out: Vec<(String, u64)> = named.into_iter().map(|(v, n)| (v.to_owned(), n)).collect();
    if total > shown {
        out.push((OTHER_VERSION.to_owned(), total - shown));
    }
    out
}

/// Everything the collector counts while it runs; shared by the request
/// handlers and the writer thread. Counters start at zero with the process,
/// as Prometheus expects of counters.
#[derive(Debug)]
pub struct Metrics {
    reports_accepted: AtomicU64,
    reports_duplicate: AtomicU64,
    uploads_accepted: AtomicU64,
    /// Indexed as [`REFUSAL_REASONS`], then one for [`OTHER_REASON`].
    refused: Vec<AtomicU64>,
    /// Indexed as [`ROUTES`].
    requests: Vec<Histogram>,
    commit_seconds: Histogram,
    commit_failures: AtomicU64,
    group_uploads: Histogram,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            reports_accepted: AtomicU64::new(0),
            reports_duplicate: AtomicU64::new(0),
            uploads_accepted: AtomicU64::new(0),
            refused: (0..=REFUSAL_REASONS.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            requests: ROUTES
                .iter()
                .map(|_| Histogram::new(SECONDS_BUCKETS))
                .collect(),
            commit_seconds: Histogram::new(SECONDS_BUCKETS),
            commit_failures: AtomicU64::new(0),
            group_uploads: Histogram::new(GROUP_BUCKETS),
        }
    }
}

/// What `/metrics` reads at scrape time, beside the counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Uploads waiting for the writer.
    pub queue_depth: usize,
    /// How many uploads the writer's queue holds.
    pub queue_capacity: usize,
    /// Bytes of the database and of its write-ahead log.
    pub sizes: crate::store::DatabaseSizes,
    /// The last closed period's figures, once a period has closed.
    pub last_closed: Option<ClosedPeriod>,
}

/// The figures of a closed period: final, so worked out once per period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClosedPeriod {
    /// The period.
    pub period: u32,
    /// Devices that reported in it (one report each).
    pub devices: u64,
    /// Cells released.
    pub released_cells: u64,
    /// Cells withheld (fewer devices than `min_devices`).
    pub withheld_cells: u64,
    /// Devices per agent version, as [`agent_version_counts`] groups them.
    pub agent_versions: Vec<(String, u64)>,
}

impl Metrics {
    /// The entry of [`ROUTES`] a request path is counted under: read before
    /// the request is handled, so the path need not be kept (copied) meanwhile.
    pub fn route_of(path: &str) -> &'static str {
        ROUTES
            .iter()
            .find(|r| **r == path)
            .unwrap_or(&ROUTES[ROUTES.len() - 1])
    }

    /// Counts a request answered on `route` (see [`Metrics::route_of`]) after
    /// `seconds`, and its refusal category if it was refused (`None` with an
    /// error status: a refusal axum produced itself, counted as `other`).
    pub fn request(&self, route: &str, seconds: f64, status: u16, refusal: Option<&str>) {
        let index = ROUTES
            .iter()
            .position(|r| *r == route)
            .unwrap_or(ROUTES.len() - 1);
        self.requests[index].observe(seconds);
        let reason = match refusal {
            Some(c) => REFUSAL_REASONS.iter().position(|(cat, _)| *cat == c),
            // A 503 from /readyz answers a health check; it refuses nothing.
            None if status >= 400 && route != "/readyz" => None,
            None => return,
        };
        self.refused[reason.unwrap_or(REFUSAL_REASONS.len())].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one committed group of `uploads` that took `seconds` from
    /// BEGIN to COMMIT, or a failed one.
    pub fn commit(&self, uploads: usize, seconds: f64, committed: bool) {
        if committed {
            self.commit_seconds.observe(seconds);
            self.group_uploads.observe(uploads as f64);
        } else {
            self.commit_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one committed upload: its new reports and its duplicates.
    pub fn upload(&self, outcome: crate::Outcome) {
        self.uploads_accepted.fetch_add(1, Ordering::Relaxed);
        self.reports_accepted
            .fetch_add(u64::from(outcome.accepted), Ordering::Relaxed);
        self.reports_duplicate
            .fetch_add(u64::from(outcome.duplicates), Ordering::Relaxed);
    }

    /// The exposition: every counter and histogram, and the scrape-time
    /// figures of `snapshot`.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let mut e = Exposition::default();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        e.single(
            "hush_reports_accepted_total",
            "counter",
            "Reports stored and counted in their cells.",
            load(&self.reports_accepted),
        );
        e.single(
            "hush_reports_duplicate_total",
            "counter",
            "Reports received again (an agent's retry), acknowledged and not counted again.",
            load(&self.reports_duplicate),
        );
        e.single(
            "hush_uploads_accepted_total",
            "counter",
            "Uploads (requests to /v1/reports) acknowledged with 200.",
            load(&self.uploads_accepted),
        );
        e.family(
            "hush_requests_refused_total",
            "counter",
            "Requests refused, by reason (the category of the refusal's JSON body).",
        );
        let reasons = REFUSAL_REASONS
            .iter()
            .map(|(_, label)| *label)
            .chain([OTHER_REASON]);
        for (label, n) in reasons.zip(&self.refused) {
            e.sample("hush_requests_refused_total", &[("reason", label)], load(n));
        }
        e.family(
            "hush_request_duration_seconds",
            "histogram",
            "Time from a request's arrival to its response, by route.",
        );
        for (route, h) in ROUTES.iter().zip(&self.requests) {
            e.histogram("hush_request_duration_seconds", &[("route", route)], h);
        }
        e.family(
            "hush_commit_duration_seconds",
            "histogram",
            "Time of one group commit, BEGIN to durable COMMIT (acknowledgements wait for it).",
        );
        e.histogram("hush_commit_duration_seconds", &[], &self.commit_seconds);
        e.family(
            "hush_commit_group_uploads",
            "histogram",
            "Uploads per group commit.",
        );
        e.histogram("hush_commit_group_uploads", &[], &self.group_uploads);
        e.single(
            "hush_commit_failures_total",
            "counter",
            "Group commits that failed (their uploads were answered 503).",
            load(&self.commit_failures),
        );
        e.single(
            "hush_ingest_queue_depth",
            "gauge",
            "Uploads waiting for the writer.",
            snapshot.queue_depth as f64,
        );
        e.single(
            "hush_ingest_queue_capacity",
            "gauge",
            "Uploads the writer's queue holds before requests wait for room.",
            snapshot.queue_capacity as f64,
        );
        e.family(
            "hush_database_bytes",
            "gauge",
            "Size of the database on disk, by file (the write-ahead log where the collector can read it).",
        );
        e.sample(
            "hush_database_bytes",
            &[("file", "database")],
            snapshot.sizes.database as f64,
        );
        if let Some(wal) = snapshot.sizes.wal {
            e.sample("hush_database_bytes", &[("file", "wal")], wal as f64);
        }
        if let Some(closed) = &snapshot.last_closed {
            e.single(
                "hush_last_closed_period",
                "gauge",
                "The newest period whose grace window has closed (its figures are final).",
                f64::from(closed.period),
            );
            e.single(
                "hush_last_closed_period_devices",
                "gauge",
                "Devices that reported in the last closed period (one report each).",
                closed.devices as f64,
            );
            e.family(
                "hush_last_closed_period_cells",
                "gauge",
                "Cells of the last closed period, released or withheld (fewer devices than min_devices).",
            );
            e.sample(
                "hush_last_closed_period_cells",
                &[("state", "released")],
                closed.released_cells as f64,
            );
            e.sample(
                "hush_last_closed_period_cells",
                &[("state", "withheld")],
                closed.withheld_cells as f64,
            );
            if !closed.agent_versions.is_empty() {
                e.family(
                    "hush_last_closed_period_devices_by_agent_version",
                    "gauge",
                    "Devices of the last closed period by agent version; versions on fewer than min_devices devices, and beyond the 16 most common, count as other.",
                );
            }
            for (version, n) in &closed.agent_versions {
                e.sample(
                    "hush_last_closed_period_devices_by_agent_version",
                    &[("agent_version", version)],
                    *n as f64,
                );
            }
        }
        e.out
    }
}

/// The text exposition format, version 0.0.4: `# HELP` and `# TYPE` once per
/// family, then its samples, one per line.
#[derive(Debug, Default)]
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// A family of one sample without labels.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.out, "{k}=\"{v}\"");
            }
            self.out.push('}');
        }
        self.out.push(' ');
        self.value(value);
        self.out.push('\n');
    }

    fn value(&mut self, v: f64) {
        if v.is_nan() {
            self.out.push_str("NaN");
        } else if v.is_infinite() {
            self.out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(self.out, "{v}");
        }
    }

    /// `_bucket` lines (cumulative, ending at `+Inf`), `_sum` and `_count`.
    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        let bounds = h.bounds.iter().map(f64::to_string);
        let counts = h.buckets.iter().chain([&h.overflow]);
        for (le, n) in bounds.chain(["+Inf".to_owned()]).zip(counts) {
            cumulative += n.load(Ordering::Relaxed);
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, cumulative as f64);
        }
        self.sample(
            &format!("{name}_sum"),
            labels,
            f64::from_bits(h.sum.load(Ordering::Relaxed)),
        );
        self.sample(&format!("{name}_count"), labels, cumulative as f64);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_exposition_format_does_not_drift() {
        let mut e = Exposition::default();
        e.family("x_total", "counter", "A help with a \\ and\na newline.");
        e.sample("x_total", &[("reason", "a \"q\" \\ b\nc")], 3.0);
        e.sample("x_total", &[], 0.25);
        let h = Histogram::new(&[0.5, 2.0]);
        for v in [0.1, 0.5, 1.0, 7.0] {
            h.observe(v);
        }
        e.family("y_seconds", "histogram", "Y.");
        e.histogram("y_seconds", &[("route", "/r")], &h);
        assert_eq!(
            e.out,
            "# HELP x_total A help with a \\\\ and\\na newline.\n\
             # TYPE x_total counter\n\
             x_total{reason=\"a \\\"q\\\" \\\\ b\\nc\"} 3\n\
             x_total 0.25\n\
             # HELP y_seconds Y.\n\
             # TYPE y_seconds histogram\n\
             y_seconds_bucket{route=\"/r\",le=\"0.5\"} 2\n\
             y_seconds_bucket{route=\"/r\",le=\"2\"} 3\n\
             y_seconds_bucket{route=\"/r\",le=\"+Inf\"} 4\n\
             y_seconds_sum{route=\"/r\"} 8.6\n\
             y_seconds_count{route=\"/r\"} 4\n"
        );
    }

    #[test]
    fn every_refusal_category_has_one_reason_and_other_catches_the_rest() {
        let m = Metrics::default();
        for (c, _) in REFUSAL_REASONS {
            m.request("/v1/reports", 0.001, 400, Some(c));
        }
        m.request("/v1/estimates", 0.001, 413, None);
        m.request("/v1/policy", 0.001, 200, None);
        let text = m.render(&Snapshot::default());
        for (_, label) in REFUSAL_REASONS.iter().chain([&("", "other")]) {
            assert!(
                text.contains(&format!(
                    "hush_requests_refused_total{{reason=\"{label}\"}} 1\n"
                )),
                "{label}: {text}"
            );
        }
        let labels: std::collections::HashSet<_> =
            REFUSAL_REASONS.iter().map(|(_, l)| *l).collect();
        assert_eq!(labels.len(), REFUSAL_REASONS.len(), "reasons must differ");
        assert!(text.contains("hush_request_duration_seconds_count{route=\"/v1/reports\"} 18\n"));
        assert!(text.contains("hush_request_duration_seconds_count{route=\"/v1/policy\"} 1\n"));
    }

    #[test]
    fn only_versions_enough_devices_carry_are_named() {
        let mut versions = vec!["0.3.0"; 60];
        versions.extend(["0.2.1"; 50]);
        versions.extend(["0.2.0"; 49]);
        versions.extend(["my-laptop-build"; 1]);
        versions.extend(["a\"quote"; 70]);
        versions.extend(["other"; 55]);
        assert_eq!(
            agent_version_counts(versions.iter().copied(), 50),
            vec![
                ("0.3.0".to_owned(), 60),
                ("0.2.1".to_owned(), 50),
                ("other".to_owned(), 49 + 1 + 70 + 55),
            ]
        );
        // At most 16 names, the most common first.
        let many: Vec<String> = (0..20u64)
            .flat_map(|i| std::iter::repeat_n(format!("1.{i}.0"), 2 + i as usize))
            .collect();
        let counts = agent_version_counts(many.iter().map(String::as_str), 2);
        assert_eq!(counts.len(), MAX_AGENT_VERSIONS + 1);
        assert_eq!(counts[0], ("1.19.0".to_owned(), 21));
        assert_eq!(
            counts[MAX_AGENT_VERSIONS],
            ("other".to_owned(), 2 + 3 + 4 + 5)
        );
        assert!(agent_version_counts(std::iter::empty(), 50).is_empty());
    }

    #[test]
    fn uploads_count_new_reports_duplicates_and_commits() {
        let m = Metrics::default();
        m.upload(crate::Outcome {
            accepted: 3,
            duplicates: 2,
        });
        m.commit(5, 0.004, true);
        m.commit(3, 0.0, false);
        let text = m.render(&Snapshot {
            queue_depth: 7,
            queue_capacity: 2048,
            sizes: crate::store::DatabaseSizes {
                database: 4096,
                wal: Some(1024),
            },
            last_closed: Some(ClosedPeriod {
                period: 19_998,
                devices: 120,
                released_cells: 30,
                withheld_cells: 4,
                agent_versions: vec![("0.3.0".into(), 100), ("other".into(), 20)],
            }),
        });
        for line in [
            "hush_reports_accepted_total 3\n",
            "hush_reports_duplicate_total 2\n",
            "hush_uploads_accepted_total 1\n",
            "hush_last_closed_period_devices_by_agent_version{agent_version=\"0.3.0\"} 100\n",
            "hush_last_closed_period_devices_by_agent_version{agent_version=\"other\"} 20\n",
            "hush_last_closed_period_devices 120\n",
            "hush_commit_group_uploads_bucket{le=\"4\"} 0\n",
            "hush_commit_group_uploads_bucket{le=\"8\"} 1\n",
            "hush_commit_duration_seconds_bucket{le=\"0.005\"} 1\n",
            "hush_commit_failures_total 1\n",
            "hush_ingest_queue_depth 7\n",
            "hush_database_bytes{file=\"wal\"} 1024\n",
            "hush_last_closed_period 19998\n",
            "hush_last_closed_period_cells{state=\"withheld\"} 4\n",
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
    }
}
