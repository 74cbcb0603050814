//! The privatizer: raw measurements in, a two-layer `Report` out. The only
//! constructor of `Report`.
//!
//! For each metric in the report the coarse value (a bucket, a category, or a
//! count's grid point after alpha-point rounding) gets a permanent randomized
//! response from the device's keyed generator for that value, so it is the same
//! response every time without being stored anywhere, and every report passes
//! it through a fresh instantaneous layer. New coarse values are charged to the
//! spending history and capped per measure over a rolling year (a device
//! reports each measure through one of its metrics, fixed by its secret).

use hush_ldp::sampling::UniformBelow;
use hush_ldp::{BudgetAccount, BudgetExhausted};
use rand::CryptoRng;

use crate::lifetime::{DrawTags, Lifetime};
use crate::secret::{DeviceSecret, PermanentContext};
use crate::wire::{MetricReport, Report, ReportId};
use crate::{Catalog, Metric, MetricKind, MetricMechanism, RawMeasurements, ReportError};

/// What a report is made for: the catalog, the period, and the terms in force.
#[derive(Debug, Clone, Copy)]
pub struct PrivatizeRequest<'a> {
    /// The catalog in force.
    pub catalog: &'a Catalog,
    /// The period the measurements cover.
    pub period: u32,
    /// The period's length in seconds.
    pub period_seconds: u32,
    /// What one report may reveal (`epsilon_1`), split evenly over its metrics.
    pub epsilon: f64,
    /// What all reports about one unchanged value may reveal (`epsilon_perm`),
    /// split like `epsilon`; above `epsilon`.
    pub epsilon_perm: f64,
    /// The most new permanent draws a measure may make within the accounting
    /// window ([`crate::WINDOW_BUCKETS`]): the lifetime cap. Any 365 days of
    /// reports can show up to twice this many responses per measure; derive it
    /// from the person's values per year with [`crate::draws_per_window`].
    pub max_draws: u32,
    /// The accounting bucket of the period ([`crate::bucket_of_day`]).
    pub bucket: u32,
    /// This agent's version string (at most 32 bytes).
    pub agent_version: &'a str,
}

/// What a device keeps between reports: its secret, the tags of the values it
/// has drawn (both deleted by `forget`), and the spending history (kept).
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceMemory {
    /// Keys every permanent response.
    pub secret: DeviceSecret,
    /// Which coarse values have permanent responses, as keyed tags.
    pub tags: DrawTags,
    /// Every permanent draw's month and epsilon, per measure; no values.
    pub lifetime: Lifetime,
}

impl DeviceMemory {
    /// A device with a fresh secret and no history (simulations, tests, load generation).
    pub fn new(secret: DeviceSecret) -> Self {
        DeviceMemory {
            secret,
            tags: DrawTags::default(),
            lifetime: Lifetime::default(),
        }
    }
}

/// Why no report was produced.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PrivatizeError {
    /// The period's budget cannot pay for the report.
    #[error(transparent)]
    Budget(#[from] BudgetExhausted),
    /// A mechanism or the catalog could not be used.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The agent version string is too long for the wire.
    #[error("agent version '{0}' is longer than 32 bytes")]
    AgentVersion(String),
}

/// One metric's part of a report, worked out before anything is charged.
struct Planned {
    index: usize,
    context: PermanentContext,
    mechanism: MetricMechanism,
    /// The coarse value whose answer the report uses; `None` for a stand-in
    /// (no answer may be used: the device's fixed fake value goes instead).
    coarse: Option<u32>,
    /// The tag to record if this is a new draw.
    new_draw: Option<[u8; crate::secret::TAG_BYTES]>,
}

/// The epsilon units of a permanent context: 10^-9, as the budget counts.
fn units(epsilon: f64) -> u64 {
    (epsilon * 1e9).round() as u64
}

/// Privatizes one period's measurements into a report.
///
/// Picks `catalog.metrics_per_report()` metrics without replacement, each
/// with probability proportional to its weight (a choice that depends on the
/// catalog and `rng` only: never on `raw`, nor on the device's history),
/// gives each an even share of both epsilons, and reports each metric's
/// coarse value through the permanent response the device's secret derives
/// for it, with fresh instantaneous noise from `rng`.
///
/// A coarse value seen within the window reuses its response at no cost. A
/// new one is charged `epsilon_perm` to the spending history, unless the
/// metric's measure has made `max_draws` draws within the window: then the nearest value
/// it has drawn stands in for it (an ordinal neighbour for buckets and counts;
/// for categories, the nearest index), so the report reveals nothing beyond
/// the responses already drawn. If it has drawn none that it may still use
/// (after `forget`, new terms or a catalog that changed the metric), the
/// report carries a fake coarse value the secret fixes for the metric,
/// uniform over the values a real one can take and independent of every
/// measurement, through its own permanent
/// response: pure noise, charged nothing, and shaped like a device whose value
/// never changes, so a capped metric does not fall silent. The report's
/// `epsilon_1` is charged to `budget`; if it does not fit, no report is made
/// and nothing changes. `raw` is consumed (and zeroed as it drops).
pub fn privatize<R: CryptoRng + ?Sized>(
    raw: RawMeasurements,
    request: &PrivatizeRequest<'_>,
    memory: &mut DeviceMemory,
    budget: &mut BudgetAccount,
    rng: &mut R,
) -> Result<Report, PrivatizeError> {
    let catalog = request.catalog;
    if request.agent_version.len() > crate::wire::MAX_AGENT_VERSION_LEN {
        return Err(PrivatizeError::AgentVersion(
            request.agent_version.to_owned(),
        ));
    }
    let k = usize::from(catalog.metrics_per_report());
    let share = |e: f64| e / k as f64;
    let (epsilon_1, epsilon_perm) = (share(request.epsilon), share(request.epsilon_perm));
    let now = memory.lifetime.clock(request.bucket);
    memory.tags.prune(now);

    // Every metric this device reports can be picked, whatever its history:
    // a metric that had to drop out would show the collector it had reached
    // its cap. A measure with several metrics is reported through the one
    // the secret picks (no measurement enters), at their total weight.
    let mut candidates = Vec::new();
    let mine = catalog.device_metrics(|m| memory.secret.encoding_draw(m.name()));
    for (index, weight) in mine {
        let metric = &catalog.metrics()[index];
        let mechanism = metric.mechanism(epsilon_perm, epsilon_1)?;
        candidates.push((index, weight, context_of(metric, epsilon_perm), mechanism));
    }

    // Weighted sampling without replacement: one bounded draw per pick.
    let mut planned = Vec::with_capacity(k);
    for _ in 0..k {
        let total: u64 = candidates.iter().map(|c| u64::from(c.1)).sum();
        let mut pick = UniformBelow::new(total).sample(rng);
        let mut chosen = 0;
        for (j, c) in candidates.iter().enumerate() {
            let w = u64::from(c.1);
            if pick < w {
                chosen = j;
                break;
            }
            pick -= w;
        }
        let (index, _, context, mechanism) = candidates.swap_remove(chosen);
        let metric = &catalog.metrics()[index];
        let alpha = memory.secret.alpha(&context);
        let wanted = mechanism.coarse(metric.value(&raw), alpha)?;
        let drawn = |c: u32| memory.tags.contains(&memory.secret.tag(&context, c), now);
        let domain = mechanism.coarse_domain();
        let (coarse, new_draw) = if drawn(wanted) {
            (Some(wanted), None)
        } else if memory.lifetime.draws_in_window(context.metric, now) < request.max_draws {
            (Some(wanted), Some(memory.secret.tag(&context, wanted)))
        } else {
            // Every value but `wanted` is searched, so whether a stand-in
            // follows does not depend on the day's value.
            let nearest = (1..domain)
                .flat_map(|d| [wanted.checked_sub(d), wanted.checked_add(d)])
                .flatten()
                .find(|&c| c < domain && drawn(c));
            (nearest, None)
        };
        planned.push(Planned {
            index,
            context,
            mechanism,
            coarse,
            new_draw,
        });
    }
    drop(raw);

    let mut out = Vec::with_capacity(k);
    for p in &planned {
        let permanent = match p.coarse {
            Some(coarse) => {
                let mut keyed = memory.secret.permanent_rng(&p.context, coarse);
                p.mechanism.permanent(coarse, &mut keyed)?
            }
            None => {
                // The fake value and its response come from one keyed stream
                // that no measurement enters.
                // A count is always defined: a distribution's "no value"
                // bucket would give a fake away, so it is never drawn.
                let mut keyed = memory.secret.filler_rng(&p.context);
                let floor = u64::from(catalog.metrics()[p.index].kind == MetricKind::Distribution);
                let domain = u64::from(p.mechanism.coarse_domain());
                let fake = floor + UniformBelow::new(domain - floor).sample(&mut keyed);
                p.mechanism.permanent(fake as u32, &mut keyed)?
            }
        };
        let value = p.mechanism.instantaneous(&permanent, rng)?;
        out.push(MetricReport::new(
            p.index as u16,
            epsilon_1,
            epsilon_perm,
            value,
        ));
    }
    budget.try_charge(epsilon_1 * k as f64)?;
    for p in &planned {
        if let Some(tag) = p.new_draw {
            memory
                .lifetime
                .record(p.context.metric, now, p.context.epsilon_perm_units);
            memory.tags.insert(tag, now);
        }
    }

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

/// The permanent context of a metric at its share of `epsilon_perm`. Draws
/// are counted under the metric's measure, so a count's mean and its
/// distribution share one cap on new values: what a year of reports reveals
/// grows with the measures, not with the ways of reporting them.
pub fn context_of(metric: &Metric, epsilon_perm: f64) -> PermanentContext {
    PermanentContext {
        metric: metric.measure.name(),
        definition: metric.definition(),
        epsilon_perm_units: units(epsilon_perm),
    }
}
