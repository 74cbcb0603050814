//! Synthetic user populations for simulations, laid out deterministically (by
//! quantiles) so that the truth a simulation measures against is exact.

use std::fmt;
use std::str::FromStr;

use hush_ldp::Range;
use statrs::distribution::{Beta, ContinuousCDF};

use crate::StatsError;

/// How categorical values are spread over a domain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Distribution {
    /// Zipf's law with exponent 1.1: value `v` has weight `1 / (v + 1)^1.1`,
    /// the heavy-tailed shape of shortcut and app usage.
    Zipf,
    /// Every value equally often.
    Uniform,
}

impl FromStr for Distribution {
    type Err = StatsError;

    fn from_str(s: &str) -> Result<Self, StatsError> {
        match s.to_ascii_lowercase().as_str() {
            "zipf" => Ok(Distribution::Zipf),
            "uniform" => Ok(Distribution::Uniform),
            _ => Err(StatsError::Distribution(s.to_owned())),
        }
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Distribution::Zipf => "zipf",
            Distribution::Uniform => "uniform",
        })
    }
}

impl Distribution {
    /// The exponent of [`Distribution::Zipf`].
    pub const ZIPF_EXPONENT: f64 = 1.1;

    /// How many of `users` hold each value of `0..domain`: the distribution's
    /// expected counts, rounded by largest remainder so they sum to `users`.
    pub fn counts(self, domain: u32, users: u64) -> Vec<u64> {
        let weights: Vec<f64> = (0..domain)
            .map(|v| match self {
                Distribution::Zipf => (f64::from(v) + 1.0).powf(-Self::ZIPF_EXPONENT),
                Distribution::Uniform => 1.0,
            })
            .collect();
        let total: f64 = weights.iter().sum();
        let exact: Vec<f64> = weights.iter().map(|w| w / total * users as f64).collect();
        let mut counts: Vec<u64> = exact.iter().map(|e| e.floor() as u64).collect();
        let mut rest = users - counts.iter().sum::<u64>();
        let mut order: Vec<usize> = (0..exact.len()).collect();
        order.sort_by(|&a, &b| {
            (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor()))
        });
        for i in order.into_iter().cycle() {
            if rest == 0 {
                break;
            }
            counts[i] += 1;
            rest -= 1;
        }
        counts
    }
}

/// How numeric values are spread over a range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Population {
    /// Everyone holds the same value.
    Constant(f64),
    /// Values spread evenly over the range.
    Uniform,
    /// A Beta(a, b) distribution stretched over the range.
    Beta(f64, f64),
}

impl FromStr for Population {
    type Err = StatsError;

    fn from_str(s: &str) -> Result<Self, StatsError> {
        let bad = || StatsError::Population(s.to_owned());
        let lower = s.to_ascii_lowercase();
        if lower == "uniform" {
            return Ok(Population::Uniform);
        }
        if let Some(x) = lower.strip_prefix("constant:") {
            let x: f64 = x.trim().parse().map_err(|_| bad())?;
            return if x.is_finite() {
                Ok(Population::Constant(x))
            } else {
                Err(bad())
            };
        }
        if let Some(ab) = lower.strip_prefix("beta:") {
            let (a, b) = ab.split_once(',').ok_or_else(bad)?;
            let a: f64 = a.trim().parse().map_err(|_| bad())?;
            let b: f64 = b.trim().parse().map_err(|_| bad())?;
            return if a > 0.0 && b > 0.0 && a.is_finite() && b.is_finite() {
                Ok(Population::Beta(a, b))
            } else {
                Err(bad())
            };
        }
        Err(bad())
    }
}

impl fmt::Display for Population {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Population::Constant(x) => write!(f, "constant:{x}"),
            Population::Uniform => f.write_str("uniform"),
            Population::Beta(a, b) => write!(f, "beta:{a},{b}"),
        }
    }
}

impl Population {
    /// `users` values at the population's quantiles `(i + 1/2) / users`, in `range`.
    pub fn values(self, range: Range, users: u64) -> Result<Vec<f64>, StatsError> {
        let beta = match self {
            Population::Beta(a, b) => {
                Some(Beta::new(a, b).map_err(|_| StatsError::Population(self.to_string()))?)
            }
            _ => None,
        };
        Ok((0..users)
            .map(|i| {
                let u = (i as f64 + 0.5) / users as f64;
                match self {
                    Population::Constant(x) => x,
                    Population::Uniform => range.lo() + u * range.width(),
                    Population::Beta(..) => {
                        let q = beta.as_ref().map_or(u, |b| b.inverse_cdf(u));
                        range.lo() + q * range.width()
                    }
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_sum_to_users_and_follow_the_law() {
        let c = Distribution::Zipf.counts(4, 1000);
        assert_eq!(c.iter().sum::<u64>(), 1000);
        assert!(c.windows(2).all(|w| w[0] >= w[1]), "{c:?}");
        // Weights 1, 2^-1.1, 3^-1.1, 4^-1.1 sum to 1.98281...: value 0 holds 50.43%.
        assert_eq!(c, vec![504, 235, 151, 110]);
        assert_eq!(Distribution::Uniform.counts(3, 10), vec![4, 3, 3]);
    }

    #[test]
    fn parses_populations() {
        assert_eq!(
            "constant:0.5".parse::<Population>(),
            Ok(Population::Constant(0.5))
        );
        assert_eq!(
            "beta:2,5".parse::<Population>(),
            Ok(Population::Beta(2.0, 5.0))
        );
        assert_eq!("uniform".parse::<Population>(), Ok(Population::Uniform));
        for bad in ["beta:0,1", "beta:2", "constant:x", "normal", "constant:inf"] {
            assert!(bad.parse::<Population>().is_err(), "{bad}");
        }
        let v = Population::Uniform
            .values(Range::SYMMETRIC_UNIT, 4)
            .unwrap();
        assert_eq!(v, vec![-0.75, -0.25, 0.25, 0.75]);
        let b = Population::Beta(2.0, 2.0)
            .values(Range::UNIT, 1001)
            .unwrap();
        assert!((b[500] - 0.5).abs() < 1e-9);
    }
}
