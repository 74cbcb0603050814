//! Validation of decoded reports against the catalog and the collector's policy.
//! Nothing in a report is trusted until it passes here.

use hush_ldp::{FrequencyOracle, NumericMechanism};
use hush_report::{Catalog, MetricMechanism, Report};

use crate::CollectorConfig;

/// A refusal: the HTTP status and a reason for the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// 4xx status.
    pub status: u16,
    /// Why, in words.
    pub reason: String,
}

impl Rejection {
    /// A 422 Unprocessable Content.
    pub fn unprocessable(reason: impl Into<String>) -> Self {
        Rejection {
            status: 422,
            reason: reason.into(),
        }
    }
}

/// The catalogs this collector knows, by hash.
#[derive(Debug, Clone)]
pub struct Catalogs {
    known: Vec<Catalog>,
}

impl Catalogs {
    /// The built-in catalogs.
    pub fn builtin() -> Self {
        Catalogs {
            known: vec![Catalog::builtin()],
        }
    }

    /// The catalog with this hash.
    pub fn get(&self, hash: hush_report::CatalogHash) -> Option<&Catalog> {
        self.known.iter().find(|c| c.hash() == hash)
    }

    /// All known catalogs.
    pub fn all(&self) -> &[Catalog] {
        &self.known
    }
}

/// A report that passed validation, with each metric's mechanism rebuilt.
#[derive(Debug, Clone)]
pub struct ValidReport {
    /// The report.
    pub report: Report,
    /// The catalog it refers to.
    pub catalog: Catalog,
    /// One mechanism per metric report, in order.
    pub mechanisms: Vec<MetricMechanism>,
}

/// Checks a report against the catalogs and the policy; `current_period` is the
/// collector's own clock, so reports from the future are refused.
pub fn validate(
    report: Report,
    catalogs: &Catalogs,
    config: &CollectorConfig,
    current_period: u32,
) -> Result<ValidReport, Rejection> {
    let catalog = catalogs
        .get(report.catalog_hash())
        .ok_or_else(|| {
            Rejection::unprocessable(format!("unknown catalog {}", report.catalog_hash()))
        })?
        .clone();
    if report.catalog_version() != catalog.version() {
        return Err(Rejection::unprocessable(
            "catalog version does not match its hash",
        ));
    }
    if report.period_seconds() != config.period_seconds {
        return Err(Rejection::unprocessable(format!(
            "period length {} s; this collector uses {} s",
            report.period_seconds(),
            config.period_seconds
        )));
    }
    if report.period() > current_period.saturating_add(1) {
        return Err(Rejection::unprocessable("report for a future period"));
    }
    // The policy's terms exactly: a report at other epsilons would open a cell
    // of its own (one report in a cell of one is no aggregate at all).
    let k = f64::from(catalog.metrics_per_report());
    let same = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1.0);
    let (eps_1, eps_perm) = (config.epsilon_per_report / k, config.epsilon_per_value / k);
    if report
        .metrics()
        .iter()
        .any(|m| !same(m.epsilon(), eps_1) || !same(m.epsilon_perm(), eps_perm))
    {
        return Err(Rejection::unprocessable(format!(
            "reports here carry epsilon {} per report and {} per value",
            config.epsilon_per_report, config.epsilon_per_value
        )));
    }
    let mut seen = Vec::new();
    let mut mechanisms = Vec::with_capacity(report.metrics().len());
    for m in report.metrics() {
        let metric = catalog
            .metrics()
            .get(usize::from(m.metric()))
            .ok_or_else(|| {
                Rejection::unprocessable(format!("metric index {} not in the catalog", m.metric()))
            })?;
        if seen.contains(&m.metric()) {
            return Err(Rejection::unprocessable(
                "a metric appears twice in one report",
            ));
        }
        seen.push(m.metric());
        let mechanism = metric
            .mechanism(m.epsilon_perm(), m.epsilon())
            .map_err(|e| Rejection::unprocessable(format!("metric {}: {e}", metric.name)))?;
        let fits = match (&mechanism, m.value()) {
            (MetricMechanism::Frequency(o), v) => {
                v.as_frequency().is_some_and(|out| o.is_valid_output(&out))
            }
            (MetricMechanism::Numeric(n), v) => v.as_grid().is_some_and(|p| n.is_valid_output(p)),
        };
        if !fits {
            return Err(Rejection::unprocessable(format!(
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
