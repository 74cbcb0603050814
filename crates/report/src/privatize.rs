//! The privatizer: raw measurements in, a `Report` out. The only constructor of `Report`.

use std::collections::BTreeMap;

use hush_ldp::sampling::UniformBelow;
use hush_ldp::{BudgetAccount, BudgetExhausted, FrequencyOracle, NumericMechanism};
use rand::CryptoRng;
use serde::{Deserialize, Serialize};

use crate::wire::{MetricReport, Privatized, Report, ReportId};
use crate::{
    Catalog, CatalogHash, Encoding, MetricMechanism, MetricValue, RawMeasurements, ReportError,
};

/// Grid steps a numeric metric's value is rounded to before it is memoized: a
/// count is memoized per 1/32 of its range, not per exact value.
pub const MEMO_STEPS: u32 = 32;

/// What a report is made for.
#[derive(Debug, Clone, Copy)]
pub struct PrivatizeRequest<'a> {
    /// The catalog in force.
    pub catalog: &'a Catalog,
    /// The period the measurements cover.
    pub period: u32,
    /// The period's length in seconds.
    pub period_seconds: u32,
    /// The report's epsilon, split over its metrics by weight.
    pub epsilon: f64,
    /// This agent's version string (at most 32 bytes).
    pub agent_version: &'a str,
}

/// Why no report was produced.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PrivatizeError {
    /// The period's budget cannot pay for the fresh responses this report needs.
    #[error(transparent)]
    Budget(#[from] BudgetExhausted),
    /// A mechanism or the catalog could not be used.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The agent version string is too long for the wire.
    #[error("agent version '{0}' is longer than 32 bytes")]
    AgentVersion(String),
}

/// The memo of permanent randomized responses, kept on the device only.
///
/// For each (metric, epsilon, coarse value) the first response is stored and
/// reused whenever the same coarse value is reported again at the same epsilon,
/// so an unchanged value costs no new budget and repeated reports cannot be
/// averaged to remove the noise (RAPPOR's permanent randomized response;
/// Ding, Kulkarni, Yekhanin, NeurIPS 2017, memoization with alpha-point
/// rounding for numeric values). The memo's keys are coarse true values
/// (bucket indices, or a numeric value rounded to 1/32 of its range): it is
/// sensitive, never leaves the device, and is deleted by `hush agent forget`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memo {
    catalog: Option<CatalogHash>,
    offsets: BTreeMap<u16, f64>,
    entries: BTreeMap<(u16, u64, u32), Privatized>,
}

impl Memo {
    /// Number of memoized responses.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is memoized.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Encodes the memo for the device's own storage (bincode, standard config).
    pub fn to_bytes(&self) -> Vec<u8> {
        match bincode::serde::encode_to_vec(self, bincode::config::standard()) {
            Ok(v) => v,
            Err(e) => panic!("encoding the memo into memory failed: {e}"),
        }
    }

    /// Decodes a stored memo (limited to 16 MiB).
    pub fn from_bytes(bytes: &[u8]) -> Result<Memo, crate::CodecError> {
        let config = bincode::config::standard().with_limit::<{ 16 * 1024 * 1024 }>();
        bincode::serde::decode_from_slice(bytes, config)
            .map(|(m, _)| m)
            .map_err(|e| crate::CodecError::Malformed(e.to_string()))
    }

    /// The alpha-point rounding offset of a metric, drawn once per device; a new
    /// one is queued in `drawn` and kept only if the report is made.
    fn offset<R: CryptoRng + ?Sized>(
        &self,
        metric: u16,
        drawn: &mut Vec<(u16, f64)>,
        rng: &mut R,
    ) -> f64 {
        if let Some(&u) = self.offsets.get(&metric) {
            return u;
        }
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        drawn.push((metric, u));
        u
    }
}

/// Privatizes one period's measurements into a report.
///
/// Picks `catalog.metrics_per_report()` metrics uniformly at random (Wang et
/// al., ICDE 2019: fewer metrics per report, each with more epsilon), splits
/// `epsilon` over them by weight, and perturbs each metric's clipped or
/// bucketed value with its catalog mechanism, reusing memoized responses for
/// unchanged values. Fresh responses are charged to `budget` before anything
/// is memoized; if they do not fit, no report is made and nothing changes.
/// `raw` is consumed (and zeroed as it drops).
pub fn privatize<R: CryptoRng + ?Sized>(
    raw: RawMeasurements,
    request: &PrivatizeRequest<'_>,
    budget: &mut BudgetAccount,
    memo: &mut Memo,
    rng: &mut R,
) -> Result<Report, PrivatizeError> {
    let catalog = request.catalog;
    if request.agent_version.len() > crate::wire::MAX_AGENT_VERSION_LEN {
        return Err(PrivatizeError::AgentVersion(
            request.agent_version.to_owned(),
        ));
    }
    hush_ldp::check_epsilon(request.epsilon).map_err(ReportError::from)?;
    if memo.catalog != Some(catalog.hash()) {
        *memo = Memo {
            catalog: Some(catalog.hash()),
            ..Memo::default()
        };
    }

    // Choose k of m metrics without replacement (a partial Fisher–Yates shuffle).
    let metrics = catalog.metrics();
    let mut order: Vec<usize> = (0..metrics.len()).collect();
    let k = usize::from(catalog.metrics_per_report());
    for i in 0..k {
        let j = i + UniformBelow::new((metrics.len() - i) as u64).sample(rng) as usize;
        order.swap(i, j);
    }
    let chosen = &order[..k];
    let total_weight: u64 = chosen.iter().map(|&i| u64::from(metrics[i].weight)).sum();

    let mut fresh_cost = 0.0;
    let mut fresh = Vec::new();
    let mut drawn = Vec::new();
    let mut out = Vec::with_capacity(k);
    for &i in chosen {
        let metric = &metrics[i];
        let index = i as u16;
        let epsilon = request.epsilon * f64::from(metric.weight) / total_weight as f64;
        let mechanism = metric.mechanism(epsilon)?;
        let (key, value) = match (metric.value(&raw), &metric.encoding) {
            (MetricValue::Number(x), Encoding::Numeric { lo, hi, .. }) => {
                let step = (hi - lo) / f64::from(MEMO_STEPS);
                let g = (((x - lo) / step) + memo.offset(index, &mut drawn, rng)).floor();
                let g = g.clamp(0.0, f64::from(MEMO_STEPS)) as u32;
                (g, MetricValue::Number(lo + f64::from(g) * step))
            }
            (v @ MetricValue::Category(c), _) => (c, v),
            (MetricValue::Number(_), _) => {
                return Err(
                    ReportError::Catalog("numeric value from a bucketed metric".into()).into(),
                );
            }
        };
        let memo_key = (index, epsilon.to_bits(), key);
        let response = match memo.entries.get(&memo_key) {
            Some(r) => r.clone(),
            None => {
                // Charged at the epsilon the mechanism was built for: its realized
                // loss is below that (hush-ldp's validation tests bound the
                // difference by 1e-11), only its printed value carries a rounding margin.
                let response = perturb(&mechanism, value, rng)?;
                fresh_cost += epsilon;
                fresh.push((memo_key, response.clone()));
                response
            }
        };
        out.push(MetricReport::new(index, epsilon, response));
    }
    budget.try_charge(fresh_cost)?;
    memo.entries.extend(fresh);
    memo.offsets.extend(drawn);
    drop(raw);

    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&request.period.to_be_bytes());
    rng.fill_bytes(&mut id[4..]);
    let epsilon = out.iter().map(|m| m.epsilon()).sum();
    Ok(Report::assemble(
        catalog.hash(),
        catalog.version(),
        request.agent_version.to_owned(),
        request.period,
        request.period_seconds,
        ReportId(id),
        epsilon,
        out,
    ))
}

fn perturb<R: CryptoRng + ?Sized>(
    mechanism: &MetricMechanism,
    value: MetricValue,
    rng: &mut R,
) -> Result<Privatized, ReportError> {
    Ok(match (mechanism, value) {
        (MetricMechanism::Numeric(m), MetricValue::Number(x)) => {
            Privatized::from_grid(m.perturb(x, rng)?)
        }
        (MetricMechanism::Frequency(o), MetricValue::Category(c)) => {
            Privatized::from_frequency(o.perturb(c, rng)?)
        }
        _ => {
            return Err(ReportError::Catalog(
                "value does not fit the metric's mechanism".into(),
            ));
        }
    })
}
