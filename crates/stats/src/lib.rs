//! Estimators for Hush's LDP mechanisms: unbiased estimates, variances, confidence
//! intervals, mergeable aggregates, post-processing, simulations and a privacy auditor.
//!
//! Every mechanism of `hush-ldp` has its estimator here:
//!
//! - frequency oracles: [`FrequencyAggregate`] (support counts) and
//!   [`FrequencyAggregate::estimate`], with [`frequency_variance`];
//! - numeric mechanisms: [`MeanAggregate`] (integer moments of grid outputs) and
//!   [`MeanAggregate::estimate`], with [`mean_variance`];
//! - several periods pooled: [`ClusteredMean`], with errors clustered by device;
//! - quantiles of a bucketed distribution: [`quantile`], from merged-bucket
//!   frequencies ([`set_probabilities`]).
//!
//! Aggregates hold only integer sufficient statistics, so `merge` is exact and
//! order-free. Post-processing ([`norm_sub`], [`clip_unit`]) is reported beside
//! the unbiased estimates. [`simulate`] checks all of it against the theory
//! and [`audit`] bounds the privacy loss empirically. No IO: randomness and
//! progress reporting are passed in.

pub mod audit;
mod error;
mod frequency;
mod interval;
mod mean;
mod pooled;
mod population;
mod postprocess;
mod quantile;
pub mod simulate;

pub use error::StatsError;
pub use frequency::{FrequencyAggregate, FrequencyEstimate, ValueEstimate, frequency_variance};
pub use interval::{
    ConfidenceInterval, clopper_pearson_lower, clopper_pearson_upper, normal_quantile,
};
pub use mean::{BranchMoments, MeanAggregate, MeanEstimate, mean_variance};
pub use pooled::{ClusteredMean, PooledEstimate};
pub use population::{Distribution, Population};
pub use postprocess::{clip_unit, norm_sub};
pub use quantile::{QuantileEstimate, quantile, set_probabilities};
