//! Validation of decoded reports against the catalog and the collector's policy.
//! Nothing in a report is trusted until it passes here.

use std::sync::Arc;

use hush_ldp::{FrequencyOracle, NumericMechanism};
use hush_report::{Catalog, MetricMechanism, PublishedRanges, Report};

use crate::periods::{PeriodClock, Unaccepted};
use crate::{CollectorConfig, CollectorError};

/// A refusal: the HTTP status, the category the sender is told, and the
/// details, which only the collector's log sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// 4xx status.
    pub status: u16,
    /// What kind of refusal, in a few fixed words: all the sender learns, so no
    /// decoder or database message ever leaves the collector.
    pub category: &'static str,
    /// Why, in detail, for the collector's debug log.
    pub reason: String,
}

/// The fixed categories of refusals, as the JSON error body says them.
pub mod category {
    /// 400: the body does not decode.
    pub const MALFORMED: &str = "malformed report";
    /// 401: no bearer token.
    pub const MISSING_TOKEN: &str = "missing bearer token";
    /// 401: a token that is unknown, revoked or erased.
    pub const UNKNOWN_TOKEN: &str = "unknown or revoked token";
    /// 403: an admin token uploading, or a device token reading estimates.
    pub const WRONG_TOKEN: &str = "wrong kind of token";
    /// 404: no such route.
    pub const NOT_FOUND: &str = "not found";
    /// 405: a route asked with the wrong method.
    pub const WRONG_METHOD: &str = "method not allowed";
    /// 409: a report id another device already sent.
    pub const OTHER_DEVICE: &str = "report already received from another device";
    /// 409: a second report from one device for one period.
    pub const PERIOD_TAKEN: &str = "this device already reported for this period";
    /// 413: the body is over `max_body_bytes`.
    pub const TOO_LARGE: &str = "too large";
    /// 415: not `application/octet-stream`.
    pub const CONTENT_TYPE: &str = "send application/octet-stream";
    /// 422: a catalog this collector does not know.
    pub const UNKNOWN_CATALOG: &str = "unknown catalog";
    /// 422: a report that does not fit its catalog (metric index, repeated metric, value).
    pub const INVALID: &str = "invalid report";
    /// 422: other epsilons or another period length than the policy's.
    pub const TERMS: &str = "terms differ from this collector's policy";
    /// 422: a period whose grace window has closed.
    pub const LATE: &str = "late period";
    /// 422: a period that has not started.
    pub const FUTURE: &str = "future period";
    /// 429: a rate limit.
    pub const TOO_MANY: &str = "too many requests";
    /// 500: a broken invariant.
    pub const INTERNAL: &str = "internal error";
    /// 503: the database failed.
    pub const STORAGE: &str = "storage unavailable";
}

impl Rejection {
    /// A refusal with its status, category and details.
    pub fn new(status: u16, category: &'static str, reason: impl Into<String>) -> Self {
        Rejection {
            status,
            category,
            reason: reason.into(),
        }
    }

    /// A 422 Unprocessable Content.
    pub fn unprocessable(category: &'static str, reason: impl Into<String>) -> Self {
        Self::new(422, category, reason)
    }
}

/// The catalogs this collector knows, by hash: the built-in one and one per
/// published range revision, with the revision in force.
#[derive(Debug, Clone)]
pub struct Catalogs {
    /// Shared, not copied, by every report validated against them: a catalog
    /// holds every metric's names and ladders, and copying it per report was
    /// a third of the collector's allocations under load.
    known: Vec<Arc<Catalog>>,
    current: PublishedRanges,
    /// The period the revision in force was published in (0 for the built-in).
    since: u32,
}

impl Catalogs {
    /// The built-in catalog only (revision 0).
    pub fn builtin() -> Self {
        Catalogs {
            known: vec![Arc::new(Catalog::builtin())],
            current: PublishedRanges::default(),
            since: 0,
        }
    }

    /// The built-in catalog and every revision published in the database,
    /// the newest in force.
    pub fn load(db: &mut dyn crate::store::Store) -> Result<Self, CollectorError> {
        Ok(Catalogs::published(db.published_ranges()?))
    }

    /// The built-in catalog and every published range revision (oldest
    /// first, each with the period it was published in), the last in force.
    pub(crate) fn published(revisions: Vec<(PublishedRanges, u32)>) -> Self {
        let mut out = Catalogs::builtin();
        for (published, period) in revisions {
            let catalog = Catalog::with_ranges(&published.steps);
            if out.get(catalog.hash()).is_none() {
                out.known.push(Arc::new(catalog));
            }
            out.current = published;
            out.since = period;
        }
        out
    }

    /// The catalog with this hash.
    pub fn get(&self, hash: hush_report::CatalogHash) -> Option<&Arc<Catalog>> {
        self.known.iter().find(|c| c.hash() == hash)
    }

    /// All known catalogs.
    pub fn all(&self) -> &[Arc<Catalog>] {
        &self.known
    }

    /// The range revision in force: what the policy offers agents.
    pub fn current(&self) -> &PublishedRanges {
        &self.current
    }

    /// The period the revision in force was published in.
    pub fn since(&self) -> u32 {
        self.since
    }
}

/// A report that passed validation, with each metric's mechanism rebuilt.
#[derive(Debug, Clone)]
pub struct ValidReport {
    /// The report.
    pub report: Report,
    /// The catalog it refers to.
    pub catalog: Arc<Catalog>,
    /// One mechanism per metric report, in order.
    pub mechanisms: Vec<MetricMechanism>,
}

/// Checks a report against the catalogs and the policy; `current_period` is the
/// collector's own clock, so reports for closed or future periods are refused.
pub fn validate(
    report: Report,
    catalogs: &Catalogs,
    config: &CollectorConfig,
    current_period: u32,
) -> Result<ValidReport, Rejection> {
    let known = catalogs.get(report.catalog_hash()).ok_or_else(|| {
        Rejection::unprocessable(
            category::UNKNOWN_CATALOG,
            format!("unknown catalog {}", report.catalog_hash()),
        )
    })?;
    if report.period_seconds() != config.period_seconds {
        return Err(Rejection::unprocessable(
            category::TERMS,
            format!(
                "period length {} s; this collector uses {} s",
                report.period_seconds(),
                config.period_seconds
            ),
        ));
    }
    let clock = PeriodClock {
        current: current_period,
        grace_periods: config.grace_periods,
    };
    match clock.accepts(report.period()) {
        Ok(()) => {}
        Err(Unaccepted::Late) => {
            return Err(Rejection::unprocessable(
                category::LATE,
                format!(
                    "period {} closed: the collector is at {current_period} with {} grace periods",
                    report.period(),
                    config.grace_periods
                ),
            ));
        }
        Err(Unaccepted::Future) => {
            return Err(Rejection::unprocessable(
                category::FUTURE,
                format!("period {} is after {current_period} + 1", report.period()),
            ));
        }
    }
    // The policy's terms exactly: a report at other epsilons would open a cell
    // of its own (one report in a cell of one is no aggregate at all).
    let k = f64::from(known.metrics_per_report());
    let same = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1.0);
    let (eps_1, eps_perm) = (config.epsilon_per_report / k, config.epsilon_per_value / k);
    if report
        .metrics()
        .iter()
        .any(|m| !same(m.epsilon(), eps_1) || !same(m.epsilon_perm(), eps_perm))
    {
        return Err(Rejection::unprocessable(
            category::TERMS,
            format!(
                "reports here carry epsilon {} per report and {} per value",
                config.epsilon_per_report, config.epsilon_per_value
            ),
        ));
    }
    validate_structure(report, catalogs)
}

/// The part of [`validate`] that does not depend on the policy or the clock:
/// the catalog, each metric's index, and each value against the mechanism the
/// report's own epsilons build. A stored report (accepted under the policy of
/// its day) passes it whenever it is read back, e.g. to erase its contribution.
pub fn validate_structure(report: Report, catalogs: &Catalogs) -> Result<ValidReport, Rejection> {
    let invalid = |reason: String| Rejection::unprocessable(category::INVALID, reason);
    let catalog = catalogs
        .get(report.catalog_hash())
        .ok_or_else(|| {
            Rejection::unprocessable(
                category::UNKNOWN_CATALOG,
                format!("unknown catalog {}", report.catalog_hash()),
            )
        })
        .map(Arc::clone)?;
    if report.catalog_version() != catalog.version() {
        return Err(invalid("catalog version does not match its hash".into()));
    }
    let mut seen = Vec::new();
    let mut mechanisms = Vec::with_capacity(report.metrics().len());
    for m in report.metrics() {
        let metric = catalog
            .metrics()
            .get(usize::from(m.metric()))
            .ok_or_else(|| invalid(format!("metric index {} not in the catalog", m.metric())))?;
        if seen.contains(&m.metric()) {
            return Err(invalid("a metric appears twice in one report".into()));
        }
        seen.push(m.metric());
        let mechanism = metric
            .mechanism(m.epsilon_perm(), m.epsilon())
            .map_err(|e| invalid(format!("metric {}: {e}", metric.name)))?;
        let fits = match (&mechanism, m.value()) {
            (MetricMechanism::Frequency(o), v) => {
                v.as_frequency().is_some_and(|out| o.is_valid_output(&out))
            }
            (MetricMechanism::Numeric(n), v) => v.as_grid().is_some_and(|p| n.is_valid_output(p)),
        };
        if !fits {
            return Err(invalid(format!(
                "metric {}: value out of the mechanism's domain",
                metric.name
            )));
        }
        mechanisms.push(mechanism);
    }
    Ok(ValidReport {
        report,
        catalog,
        mechanisms,
    })
}
