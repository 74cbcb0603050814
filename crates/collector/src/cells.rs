//! Aggregation cells: per (metric, period, cohort, epsilons) the mergeable sufficient
//! statistics of hush-stats, and their compact stored form.

use hush_report::{Metric, MetricMechanism, MetricReport, Privatized, Report};
use hush_stats::{BranchMoments, FrequencyAggregate, MeanAggregate};

use crate::CollectorError;

/// Which cell a metric report lands in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellKey {
    /// The catalog the metric belongs to.
    pub catalog: hush_report::CatalogHash,
    /// Metric index in the catalog.
    pub metric: u16,
    /// Period id.
    pub period: u32,
    /// Cohort of the reporting device.
    pub cohort: String,
    /// The metric's per-report epsilon (`f64::to_bits`): different epsilons
    /// mean different estimators.
    pub epsilon_bits: u64,
    /// The metric's permanent epsilon (`f64::to_bits`).
    pub epsilon_perm_bits: u64,
}

impl CellKey {
    /// The cell one metric of a report lands in, for a device of `cohort`.
    pub fn of(report: &Report, metric: &MetricReport, cohort: &str) -> CellKey {
        CellKey {
            catalog: report.catalog_hash(),
            metric: metric.metric(),
            period: report.period(),
            cohort: cohort.to_owned(),
            epsilon_bits: metric.epsilon().to_bits(),
            epsilon_perm_bits: metric.epsilon_perm().to_bits(),
        }
    }

    /// The per-report epsilon (`epsilon_1`) as a number.
    pub fn epsilon(&self) -> f64 {
        f64::from_bits(self.epsilon_bits)
    }

    /// The permanent epsilon (`epsilon_perm`) as a number.
    pub fn epsilon_perm(&self) -> f64 {
        f64::from_bits(self.epsilon_perm_bits)
    }
}

/// The sufficient statistics of one cell.
#[derive(Debug, Clone, PartialEq)]
pub enum CellState {
    /// A frequency metric's support counts.
    Frequency(FrequencyAggregate),
    /// A numeric metric's integer moments.
    Mean(MeanAggregate),
}

impl CellState {
    /// An empty state for the metric's encoding.
    pub fn empty(metric: &Metric) -> CellState {
        match metric.domain() {
            Some(d) => CellState::Frequency(FrequencyAggregate::new(d)),
            None => CellState::Mean(MeanAggregate::new()),
        }
    }

    /// Number of reports folded in (each from a distinct device).
    pub fn reports(&self) -> u64 {
        match self {
            CellState::Frequency(a) => a.reports(),
            CellState::Mean(a) => a.reports(),
        }
    }

    /// Folds in one validated value.
    pub fn add(
        &mut self,
        mechanism: &MetricMechanism,
        value: &Privatized,
    ) -> Result<(), CollectorError> {
        let invalid = || CollectorError::Internal("validated value no longer fits its cell".into());
        match (self, mechanism) {
            (CellState::Frequency(a), MetricMechanism::Frequency(o)) => {
                let out = value.as_frequency().ok_or_else(invalid)?;
                a.add(o, &out).map_err(|_| invalid())
            }
            (CellState::Mean(a), MetricMechanism::Numeric(m)) => {
                let p = value.as_grid().ok_or_else(invalid)?;
                a.add(m, p).map_err(|_| invalid())
            }
            _ => Err(invalid()),
        }
    }

    /// Takes one value out again: the exact inverse of [`add`](Self::add), for
    /// erasure. Fails, changing nothing, if the value was never folded in.
    pub fn remove(
        &mut self,
        mechanism: &MetricMechanism,
        value: &Privatized,
    ) -> Result<(), CollectorError> {
        let invalid = || CollectorError::Internal("a stored value does not fit its cell".into());
        let absent = |e: hush_stats::StatsError| {
            CollectorError::Internal(format!("cannot take a stored report out of its cell: {e}"))
        };
        match (self, mechanism) {
            (CellState::Frequency(a), MetricMechanism::Frequency(o)) => {
                let out = value.as_frequency().ok_or_else(invalid)?;
                a.remove(o, &out).map_err(absent)
            }
            (CellState::Mean(a), MetricMechanism::Numeric(m)) => {
                let p = value.as_grid().ok_or_else(invalid)?;
                a.remove(m, p).map_err(absent)
            }
            _ => Err(invalid()),
        }
    }

    /// Stored form: a tag byte, then little-endian integers.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            CellState::Frequency(a) => {
                out.push(0);
                out.extend_from_slice(&a.reports().to_le_bytes());
                out.extend_from_slice(&(a.support_counts().len() as u32).to_le_bytes());
                for c in a.support_counts() {
                    out.extend_from_slice(&c.to_le_bytes());
                }
            }
            CellState::Mean(a) => {
                out.push(1);
                for b in a.branches() {
                    out.extend_from_slice(&b.count.to_le_bytes());
                    out.extend_from_slice(&b.sum.to_le_bytes());
                    out.extend_from_slice(&b.sum_squares.to_le_bytes());
                }
            }
        }
        out
    }

    /// Reads the stored form back.
    pub fn from_bytes(bytes: &[u8]) -> Result<CellState, CollectorError> {
        let bad = || CollectorError::Internal("corrupt aggregate cell in the database".into());
        let mut r = Reader(bytes);
        match r.take::<1>().ok_or_else(bad)?[0] {
            0 => {
                let n = u64::from_le_bytes(r.take().ok_or_else(bad)?);
                let d = u32::from_le_bytes(r.take().ok_or_else(bad)?) as usize;
                if d > hush_ldp::MAX_DOMAIN as usize || r.0.len() != d * 8 {
                    return Err(bad());
                }
                let counts = (0..d)
                    .map(|_| r.take().map(u64::from_le_bytes).ok_or_else(bad))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(CellState::Frequency(FrequencyAggregate::from_counts(
                    n, counts,
                )))
            }
            1 => {
                let mut branches = [BranchMoments::default(); 2];
                for b in &mut branches {
                    b.count = u64::from_le_bytes(r.take().ok_or_else(bad)?);
                    b.sum = i128::from_le_bytes(r.take().ok_or_else(bad)?);
                    b.sum_squares = u128::from_le_bytes(r.take().ok_or_else(bad)?);
                }
                if !r.0.is_empty() {
                    return Err(bad());
                }
                Ok(CellState::Mean(MeanAggregate::from_moments(branches)))
            }
            _ => Err(bad()),
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
}
