//! Quantiles of a bucketed distribution (the median, the 90th percentile) with
//! intervals, read from frequency estimates of "below each bucket edge".
//!
//! A distribution metric reports one bucket per device on a ladder of
//! ascending edges through a frequency oracle each of whose reports supports
//! exactly one value (GRR, L-GRR). The share of devices below edge `e_j` is
//! then the frequency of a merged bucket, estimated like any other
//! ([`set_probabilities`]), with its own exact variance. A quantile is read
//! off the estimated distribution function between the edges, and its
//! interval by inverting the pointwise band: the quantile is at least where
//! the band's upper side reaches `q` and at most where its lower side does
//! (the test-inversion interval for a quantile from a distribution function
//! estimate, e.g. Cormode, Kulkarni and Srivastava, "Answering Range Queries
//! Under Local Differential Privacy", VLDB 2019, Section 6, who read
//! quantiles off hierarchical histograms the same way).

use hush_ldp::SupportProbabilities;

use crate::{ConfidenceInterval, StatsError, ValueEstimate, normal_quantile};

/// The support probabilities of a set of `size` values (`size >= 1`) for an
/// oracle each of whose reports supports exactly one value: a holder of one
/// of them supports the set with `p + (size - 1) q`, anyone else with
/// `size q`. The difference stays `p - q`, so the merged bucket's estimate is
/// the sum of its values' estimates, and its variance (from these
/// probabilities) is the exact variance of that sum, covariances included.
/// Wrong for oracles whose reports support several values (OUE, OLH).
pub fn set_probabilities(probs: SupportProbabilities, size: u32) -> SupportProbabilities {
    let extra = f64::from(size.max(1) - 1);
    SupportProbabilities {
        p: probs.p + extra * probs.q,
        q: f64::from(size.max(1)) * probs.q,
    }
}

/// One quantile of a bucketed distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantileEstimate {
    /// The quantile read off the estimated distribution function (clipped to
    /// `[0, 1]` and made non-decreasing), interpolated inside its bucket;
    /// infinite if it lies above the last edge.
    pub estimate: f64,
    /// Delta-method standard error: the distribution function's standard
    /// error there divided by its slope (infinite where the slope is 0).
    pub std_error: f64,
    /// The inverted band: `lo` where the band's upper side reaches `q`, `hi`
    /// where its lower side does (infinite if it never does).
    pub interval: ConfidenceInterval,
}

/// Reads quantile `q` (in `(0, 1)`) of a non-negative quantity bucketed at
/// ascending positive `edges`, from `below[j]`, the estimated share of values
/// below `edges[j]`, at confidence `level`.
///
/// Between edges the distribution function is interpolated by a monotone
/// cubic in the logarithm of the value, and below the first edge linearly
/// from 0 ([`Interpolated`]). The interval covers the quantile
/// whenever the pointwise interval at it does; interpolating the band's edges
/// keeps it at least as wide as the interpolated estimate's own interval. Its
/// width is the band's width divided by the distribution's density: narrow
/// where many values crowd, wide in a thin tail.
pub fn quantile(
    edges: &[f64],
    below: &[ValueEstimate],
    q: f64,
    level: f64,
) -> Result<QuantileEstimate, StatsError> {
    if edges.is_empty()
        || edges.len() != below.len()
        || edges[0] <= 0.0
        || edges.windows(2).any(|w| w[0] >= w[1])
        || !(q > 0.0 && q < 1.0)
    {
        return Err(StatsError::Argument {
            name: "quantile",
            valid: "q in (0, 1) over ascending positive edges, one estimate per edge",
            value: format!("q = {q}, {} edges, {} estimates", edges.len(), below.len()),
        });
    }
    let z = normal_quantile(level)?;
    let point = monotone_up(below.iter().map(|v| v.estimate));
    let low_side = monotone_up(below.iter().map(|v| v.estimate - z * v.std_error));
    let high_side = monotone_down(below.iter().map(|v| v.estimate + z * v.std_error));
    let estimate = inverse(edges, &point, q);
    let lo = inverse(edges, &high_side, q).min(estimate);
    let hi = inverse(edges, &low_side, q).max(estimate);
    let std_error = delta_std_error(edges, &point, below, q);
    Ok(QuantileEstimate {
        estimate,
        std_error,
        interval: ConfidenceInterval { lo, hi, level },
    })
}

/// Clipped to `[0, 1]`, then the running maximum: the smallest non-decreasing
/// sequence above it (a lower bound stays one, since the truth is monotone).
fn monotone_up(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut top = 0.0_f64;
    values
        .map(|v| {
            top = top.max(v.clamp(0.0, 1.0));
            top
        })
        .collect()
}

/// Clipped to `[0, 1]`, then the running minimum from the right: the largest
/// non-decreasing sequence below it (an upper bound stays one).
fn monotone_down(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut out: Vec<f64> = values.map(|v| v.clamp(0.0, 1.0)).collect();
    let mut floor = 1.0_f64;
    for v in out.iter_mut().rev() {
        floor = floor.min(*v);
        *v = floor;
    }
    out
}

/// A non-decreasing function known at the bucket edges, interpolated
/// between them: linearly from 0 below the first edge, and above it by a
/// monotone cubic in the logarithm of the value (Fritsch and Carlson, "Monotone
/// Piecewise Cubic Interpolation", SIAM J. Numer. Anal. 1980). The cubic
/// follows the bucket masses' trend, so in a thinning tail it puts a bucket's
/// mass toward its lower edge where a straight line would spread it evenly
/// (and read a 90th percentile too high).
struct Interpolated<'a> {
    edges: &'a [f64],
    at: &'a [f64],
    /// Slopes in `ln x` at each edge.
    slopes: Vec<f64>,
}

impl<'a> Interpolated<'a> {
    fn new(edges: &'a [f64], at: &'a [f64]) -> Self {
        let secant = |j: usize| (at[j + 1] - at[j]) / (edges[j + 1] / edges[j]).ln();
        let m = edges.len();
        let slopes = (0..m)
            .map(
                |j| match (j.checked_sub(1).map(secant), (j + 1 < m).then(|| secant(j))) {
                    (Some(a), Some(b)) if a > 0.0 && b > 0.0 => {
                        // The weighted harmonic mean keeps the cubic monotone.
                        let (h0, h1) = (
                            (edges[j] / edges[j - 1]).ln(),
                            (edges[j + 1] / edges[j]).ln(),
                        );
                        let (w0, w1) = (2.0 * h1 + h0, h1 + 2.0 * h0);
                        (w0 + w1) / (w0 / a + w1 / b)
                    }
                    (Some(_), Some(_)) => 0.0,
                    (Some(a), None) | (None, Some(a)) => a.max(0.0),
                    (None, None) => 0.0,
                },
            )
            .collect();
        Interpolated { edges, at, slopes }
    }

    /// The value at `s` in `[0, 1]` of segment `j` (from the edge below it,
    /// or from 0 for `j == 0`), and the point `x` there.
    fn at(&self, j: usize, s: f64) -> (f64, f64) {
        if j == 0 {
            return (s * self.edges[0], s * self.at[0]);
        }
        let (x0, x1) = (self.edges[j - 1], self.edges[j]);
        let h = (x1 / x0).ln();
        let (s2, s3) = (s * s, s * s * s);
        let g = (2.0 * s3 - 3.0 * s2 + 1.0) * self.at[j - 1]
            + (s3 - 2.0 * s2 + s) * h * self.slopes[j - 1]
            + (-2.0 * s3 + 3.0 * s2) * self.at[j]
            + (s3 - s2) * h * self.slopes[j];
        (x0 * (x1 / x0).powf(s), g)
    }

    /// The slope `dG/dx` at `s` of segment `j`.
    fn slope(&self, j: usize, s: f64) -> f64 {
        if j == 0 {
            return self.at[0] / self.edges[0];
        }
        let (x0, x1) = (self.edges[j - 1], self.edges[j]);
        let h = (x1 / x0).ln();
        let s2 = s * s;
        let d = (6.0 * s2 - 6.0 * s) * self.at[j - 1]
            + (3.0 * s2 - 4.0 * s + 1.0) * h * self.slopes[j - 1]
            + (-6.0 * s2 + 6.0 * s) * self.at[j]
            + (3.0 * s2 - 2.0 * s) * h * self.slopes[j];
        // d is dG/ds; s = ln(x / x0) / h.
        d / (h * self.at(j, s).0)
    }

    /// The smallest value where the function reaches `q`, with its segment
    /// and position; infinite if it stays below.
    fn inverse(&self, q: f64) -> (f64, usize, f64) {
        let Some(j) = self.at.iter().position(|&g| g >= q) else {
            return (f64::INFINITY, self.at.len(), 1.0);
        };
        // Monotone on the segment: bisect on s.
        let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if self.at(j, mid).1 >= q {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        (self.at(j, hi).0, j, hi)
    }
}

/// The smallest value where the interpolated non-decreasing function `at`
/// (given at `edges`) reaches `q`; infinite if it stays below.
fn inverse(edges: &[f64], at: &[f64], q: f64) -> f64 {
    Interpolated::new(edges, at).inverse(q).0
}

/// The standard error of the function at `x` (interpolated linearly between
/// the edges' errors) over its slope there.
fn delta_std_error(edges: &[f64], point: &[f64], below: &[ValueEstimate], q: f64) -> f64 {
    let curve = Interpolated::new(edges, point);
    let (x, j, s) = curve.inverse(q);
    if !x.is_finite() {
        return f64::INFINITY;
    }
    let s0 = if j == 0 { 0.0 } else { below[j - 1].std_error };
    let slope = curve.slope(j, s);
    if slope <= 0.0 {
        return f64::INFINITY;
    }
    ((1.0 - s) * s0 + s * below[j].std_error) / slope
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FrequencyAggregate;
    use hush_ldp::{FrequencyOracle, Grr, NoiseRng};
    use rand::{RngExt, SeedableRng};

    fn exact(values: &[f64]) -> Vec<ValueEstimate> {
        values
            .iter()
            .map(|&estimate| ValueEstimate {
                estimate,
                std_error: 0.0,
                interval: ConfidenceInterval {
                    lo: estimate,
                    hi: estimate,
                    level: 0.95,
                },
            })
            .collect()
    }

    #[test]
    fn quantiles_interpolate_in_the_log_between_edges() {
        let edges = [1.0, 2.0, 4.0, 8.0];
        let below = exact(&[0.1, 0.3, 0.7, 0.9]);
        let median = quantile(&edges, &below, 0.5, 0.95).unwrap();
        // Halfway from 0.3 to 0.7 between 2 and 4, in the log: 2 sqrt(2).
        assert!((median.estimate - 2.0 * 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(median.interval.lo, median.estimate);
        assert_eq!(median.interval.hi, median.estimate);
        // Below the first edge the function rises linearly from 0.
        let low = quantile(&edges, &below, 0.05, 0.95).unwrap();
        assert!((low.estimate - 0.5).abs() < 1e-12);
        assert!((quantile(&edges, &below, 0.9, 0.95).unwrap().estimate - 8.0).abs() < 1e-12);
        // Above the last edge the quantile is unknown.
        assert_eq!(
            quantile(&edges, &below, 0.95, 0.95).unwrap().estimate,
            f64::INFINITY
        );
        // Slope between 2 and 4 at x: 0.4 / (x ln 2); the error is 0.
        assert_eq!(median.std_error, 0.0);
    }

    #[test]
    fn noisy_functions_are_made_monotone_and_the_band_inverted() {
        let edges = [1.0, 2.0, 4.0];
        let mut below = exact(&[0.2, 0.15, 0.8]);
        for v in &mut below {
            v.std_error = 0.05;
        }
        let m = quantile(&edges, &below, 0.5, 0.95).unwrap();
        let z = normal_quantile(0.95).unwrap();
        // Where a side reaches 0.5 between 2 and 4.
        let reaches = |at: &[f64], x: f64| {
            let s = (x / 2.0).ln() / 2f64.ln();
            Interpolated::new(&edges, at).at(2, s).1
        };
        // The dip to 0.15 is lifted to 0.2 for the estimate.
        assert!(m.estimate > 2.0 && m.estimate < 4.0, "{m:?}");
        assert!((reaches(&[0.2, 0.2, 0.8], m.estimate) - 0.5).abs() < 1e-9);
        // The upper side keeps the dip (its running minimum from the right),
        // the lower side is lifted (its running maximum).
        let up = [0.15 + z * 0.05, 0.15 + z * 0.05, 0.8 + z * 0.05];
        assert!((reaches(&up, m.interval.lo) - 0.5).abs() < 1e-9);
        let down = [0.2 - z * 0.05, 0.2 - z * 0.05, 0.8 - z * 0.05];
        assert!((reaches(&down, m.interval.hi) - 0.5).abs() < 1e-9);
        assert!(m.interval.lo < m.estimate && m.estimate < m.interval.hi);
        assert!(quantile(&edges, &below[..2], 0.5, 0.95).is_err());
        assert!(quantile(&[2.0, 1.0, 4.0], &below, 0.5, 0.95).is_err());
        assert!(quantile(&edges, &below, 1.0, 0.95).is_err());
    }

    /// In a thinning tail the cubic puts a bucket's mass toward its lower
    /// edge: the 80th percentile of this one lies below where a straight
    /// line in the log would put it (2 x 2^(2/3) = 3.17), and the function
    /// stays monotone.
    #[test]
    fn a_thinning_tail_is_read_lower_than_a_straight_line() {
        let edges = [1.0, 2.0, 4.0, 8.0];
        let below = exact(&[0.2, 0.6, 0.9, 0.98]);
        let p80 = quantile(&edges, &below, 0.8, 0.95).unwrap().estimate;
        assert!(
            p80 > 2.0 && p80 < 2.0 * 2f64.powf(2.0 / 3.0) - 0.05,
            "{p80}"
        );
        let curve = Interpolated::new(&edges, &[0.2, 0.6, 0.9, 0.98]);
        for j in 1..4 {
            let mut last = curve.at(j, 0.0).1;
            for k in 1..=100 {
                let g = curve.at(j, f64::from(k) / 100.0).1;
                assert!(g >= last - 1e-12, "segment {j} falls at {k}");
                last = g;
            }
        }
    }

    #[test]
    fn a_merged_bucket_estimates_the_sum_of_its_values() {
        let grr = Grr::new(2.0, 6).unwrap();
        let mut rng = NoiseRng::seed_from_u64(11);
        let mut agg = FrequencyAggregate::new(6);
        for i in 0..5_000u32 {
            agg.add(&grr, &grr.perturb(i % 5, &mut rng).unwrap())
                .unwrap();
        }
        let probs = grr.support_probabilities();
        let single = agg.estimate_population(probs, 0.95).unwrap();
        let counts = agg.support_counts();
        let merged =
            FrequencyAggregate::from_counts(5_000, vec![counts[0] + counts[1] + counts[2]])
                .estimate_population(set_probabilities(probs, 3), 0.95)
                .unwrap();
        let sum: f64 = single.values[..3].iter().map(|v| v.estimate).sum();
        assert!((merged.values[0].estimate - sum).abs() < 1e-12);
        // Exact variance of the merged bucket: pi (1 - pi) / (n (p - q)^2)
        // with pi the share of reports in the set.
        let pi = (counts[0] + counts[1] + counts[2]) as f64 / 5_000.0;
        let want = (pi * (1.0 - pi) / (5_000.0 * (probs.p - probs.q).powi(2))).sqrt();
        assert!((merged.values[0].std_error - want).abs() / want < 0.02);
    }

    /// Values log-uniform inside doubling buckets (so the interpolation is
    /// exact), reported through GRR; the median's interval covers the true
    /// median in at least 95% of 400 runs up to 3.5 binomial standard
    /// errors (19.5 runs of 400 miss at 95%; the band is conservative).
    #[test]
    fn median_intervals_cover_the_true_median() {
        let edges = [10.0, 20.0, 40.0, 80.0, 160.0];
        // Bucket masses: below 10, 10-20, ..., 160 or more.
        let mass = [0.05, 0.1, 0.3, 0.3, 0.15, 0.1];
        let cdf: Vec<f64> = mass
            .iter()
            .scan(0.0, |s, m| {
                *s += m;
                Some(*s)
            })
            .take(edges.len())
            .collect();
        let truth = 20.0 * 2f64.powf((0.5 - cdf[1]) / mass[2]);
        let grr = Grr::new(2.0, mass.len() as u64).unwrap();
        let probs = grr.support_probabilities();
        let mut rng = NoiseRng::seed_from_u64(5);
        let (runs, mut covered) = (400, 0);
        for _ in 0..runs {
            let mut agg = FrequencyAggregate::new(mass.len() as u32);
            for _ in 0..2_000 {
                let u: f64 = rng.random();
                let b = cdf.iter().position(|&c| u < c).unwrap_or(mass.len() - 1);
                agg.add(&grr, &grr.perturb(b as u32, &mut rng).unwrap())
                    .unwrap();
            }
            let counts = agg.support_counts();
            let below: Vec<ValueEstimate> = (0..edges.len())
                .map(|j| {
                    let c = counts[..=j].iter().sum();
                    FrequencyAggregate::from_counts(2_000, vec![c])
                        .estimate_population(set_probabilities(probs, j as u32 + 1), 0.95)
                        .unwrap()
                        .values[0]
                })
                .collect();
            let m = quantile(&edges, &below, 0.5, 0.95).unwrap();
            covered += usize::from(m.interval.contains(truth));
        }
        let sd = (f64::from(runs) * 0.95 * 0.05).sqrt();
        assert!(
            covered as f64 >= 0.95 * f64::from(runs) - 3.5 * sd,
            "{covered} of {runs} covered"
        );
    }
}
