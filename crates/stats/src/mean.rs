//! Mean estimation for every numeric mechanism: exact integer moments of grid outputs,
//! unbiased means, standard errors and confidence intervals.

use hush_ldp::{GridPoint, NumericMechanism};

use crate::{ConfidenceInterval, StatsError};

/// Integer moments of the grid indices reported on one branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BranchMoments {
    /// Reports on this branch.
    pub count: u64,
    /// Sum of indices.
    pub sum: i128,
    /// Sum of squared indices.
    pub sum_squares: u128,
}

/// The sufficient statistics of numeric-mechanism reports: per grid branch, the
/// count, sum and sum of squares of the integer indices.
///
/// Because outputs are integers on a fixed public grid, `merge` is exact integer
/// addition: associative and commutative, with no floating-point drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MeanAggregate {
    branches: [BranchMoments; 2],
}

impl MeanAggregate {
    /// An empty aggregate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds an aggregate from stored moments.
    pub fn from_moments(branches: [BranchMoments; 2]) -> Self {
        MeanAggregate { branches }
    }

    /// Adds one report, after checking the mechanism could have produced it.
    pub fn add<M: NumericMechanism + ?Sized>(
        &mut self,
        mechanism: &M,
        point: GridPoint,
    ) -> Result<(), StatsError> {
        if !mechanism.is_valid_output(point) || point.branch > 1 {
            return Err(StatsError::InvalidReport);
        }
        let b = &mut self.branches[usize::from(point.branch)];
        b.count += 1;
        b.sum += i128::from(point.index);
        b.sum_squares += u128::from(point.index.unsigned_abs()).pow(2);
        Ok(())
    }

    /// Takes one report out again: the exact inverse of [`add`](Self::add), for
    /// erasing a device's contribution. Refuses, changing nothing, a point the
    /// mechanism could not have produced or one these moments cannot contain
    /// (it was never added).
    pub fn remove<M: NumericMechanism + ?Sized>(
        &mut self,
        mechanism: &M,
        point: GridPoint,
    ) -> Result<(), StatsError> {
        if !mechanism.is_valid_output(point) || point.branch > 1 {
            return Err(StatsError::InvalidReport);
        }
        let b = &self.branches[usize::from(point.branch)];
        let square = u128::from(point.index.unsigned_abs()).pow(2);
        let (Some(count), Some(sum), Some(sum_squares)) = (
            b.count.checked_sub(1),
            b.sum.checked_sub(i128::from(point.index)),
            b.sum_squares.checked_sub(square),
        ) else {
            return Err(StatsError::NotAdded);
        };
        // An emptied branch must be all zeros, or the point was not among its reports.
        if count == 0 && (sum != 0 || sum_squares != 0) {
            return Err(StatsError::NotAdded);
        }
        self.branches[usize::from(point.branch)] = BranchMoments {
            count,
            sum,
            sum_squares,
        };
        Ok(())
    }

    /// Adds another aggregate's moments into this one.
    pub fn merge(&mut self, other: &MeanAggregate) {
        for (a, b) in self.branches.iter_mut().zip(&other.branches) {
            a.count += b.count;
            a.sum += b.sum;
            a.sum_squares += b.sum_squares;
        }
    }

    /// The per-branch moments.
    pub fn branches(&self) -> &[BranchMoments; 2] {
        &self.branches
    }

    /// Number of reports.
    pub fn reports(&self) -> u64 {
        self.branches.iter().map(|b| b.count).sum()
    }

    /// The unbiased mean with a standard error from the sample variance of the
    /// decoded reports (which captures both mechanism noise and the spread of
    /// the users' values) and a normal-approximation interval at `level`.
    pub fn estimate<M: NumericMechanism + ?Sized>(
        &self,
        mechanism: &M,
        level: f64,
    ) -> Result<MeanEstimate, StatsError> {
        let n = self.reports();
        if n < 2 {
            return Err(StatsError::TooFewReports { needed: 2 });
        }
        let (mut sum, mut sum_squares) = (0.0, 0.0);
        for (branch, m) in self.branches.iter().enumerate() {
            if m.count == 0 {
                continue;
            }
            let grid = mechanism.grid(branch as u8).ok_or(StatsError::Mismatch(
                "aggregate has a branch the mechanism lacks",
            ))?;
            let (a, s) = (grid.offset, grid.scale);
            let (c, sc, scc) = (m.count as f64, m.sum as f64, m.sum_squares as f64);
            sum += c * a + s * sc;
            sum_squares += c * a * a + 2.0 * a * s * sc + s * s * scc;
        }
        let nf = n as f64;
        let mean = sum / nf;
        let sample_variance = ((sum_squares - sum * mean) / (nf - 1.0)).max(0.0);
        // A few reports can agree by chance (fifteen equal bits from a binary
        // mechanism), and then the sample variance is 0. But by the law of total
        // variance one report's variance is at least the least variance any
        // input has, whatever the population: floor the plug-in there. Every
        // mechanism's variance_at is convex or concave in x, so its least value
        // is at an end of the range or at its middle.
        let r = mechanism.range();
        let floor = [r.lo(), 0.5 * (r.lo() + r.hi()), r.hi()]
            .map(|x| mechanism.variance_at(x))
            .into_iter()
            .filter(|v| v.is_finite())
            .fold(f64::INFINITY, f64::min);
        let variance = if floor.is_finite() {
            sample_variance.max(floor)
        } else {
            sample_variance
        };
        let std_error = (variance / nf).sqrt();
        Ok(MeanEstimate {
            reports: n,
            mean,
            std_error,
            interval: ConfidenceInterval::normal(mean, std_error, level)?,
        })
    }
}

/// The variance of the mean of one report per user, for users holding `values`:
/// `sum_i Var[y | x_i] / n^2` from the mechanism's realized per-input variance.
pub fn mean_variance<M: NumericMechanism + ?Sized>(mechanism: &M, values: &[f64]) -> f64 {
    let n = values.len() as f64;
    values
        .iter()
        .map(|&x| mechanism.variance_at(x))
        .sum::<f64>()
        / (n * n)
}

/// An estimated population mean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanEstimate {
    /// Number of reports.
    pub reports: u64,
    /// Unbiased estimate of the mean of the users' clipped values.
    pub mean: f64,
    /// Standard error.
    pub std_error: f64,
    /// Normal-approximation interval.
    pub interval: ConfidenceInterval,
}

#[cfg(test)]
mod tests {
    use super::*;
    use hush_ldp::{Duchi, Hybrid, NoiseRng, Range};
    use rand::SeedableRng;

    #[test]
    fn decoded_moments_match_direct_sums() {
        let m = Hybrid::new(3.0, Range::new(0.0, 10.0).unwrap()).unwrap();
        let mut rng = NoiseRng::seed_from_u64(5);
        let mut agg = MeanAggregate::new();
        let (mut s, mut ss) = (0.0, 0.0);
        let xs: Vec<f64> = (0..2000).map(|i| f64::from(i % 11)).collect();
        for &x in &xs {
            let p = m.perturb(x, &mut rng).unwrap();
            agg.add(&m, p).unwrap();
            let y = m.decode(p);
            s += y;
            ss += y * y;
        }
        let est = agg.estimate(&m, 0.95).unwrap();
        let n = xs.len() as f64;
        assert!((est.mean - s / n).abs() < 1e-9);
        let var = (ss - s * s / n) / (n - 1.0);
        assert!((est.std_error - (var / n).sqrt()).abs() < 1e-9);
        assert_eq!(est.reports, 2000);
    }

    #[test]
    fn rejects_foreign_points() {
        let d = Duchi::new(1.0, Range::SYMMETRIC_UNIT).unwrap();
        let mut agg = MeanAggregate::new();
        assert_eq!(
            agg.add(
                &d,
                GridPoint {
                    branch: 0,
                    index: 2
                }
            ),
            Err(StatsError::InvalidReport)
        );
        assert_eq!(
            agg.add(
                &d,
                GridPoint {
                    branch: 1,
                    index: 0
                }
            ),
            Err(StatsError::InvalidReport)
        );
        assert!(agg.estimate(&d, 0.95).is_err());
    }

    #[test]
    fn remove_is_the_exact_inverse_of_add() {
        let m = Hybrid::new(2.0, Range::new(0.0, 10.0).unwrap()).unwrap();
        let mut rng = NoiseRng::seed_from_u64(6);
        let points: Vec<GridPoint> = (0..300)
            .map(|i| m.perturb(f64::from(i % 11), &mut rng).unwrap())
            .collect();
        let (mut all, mut kept) = (MeanAggregate::new(), MeanAggregate::new());
        for (i, &p) in points.iter().enumerate() {
            all.add(&m, p).unwrap();
            if i % 4 != 0 {
                kept.add(&m, p).unwrap();
            }
        }
        for &p in points.iter().step_by(4) {
            all.remove(&m, p).unwrap();
        }
        assert_eq!(all, kept);
        for (i, &p) in points.iter().enumerate().filter(|(i, _)| i % 4 != 0) {
            all.remove(&m, p)
                .unwrap_or_else(|_| panic!("point {i} was added"));
        }
        assert_eq!(all, MeanAggregate::new());
        // Nothing goes below empty, and a refused removal changes nothing.
        assert_eq!(all.remove(&m, points[0]), Err(StatsError::NotAdded));
        assert_eq!(all, MeanAggregate::new());
    }
}
