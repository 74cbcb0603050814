//! Numeric mechanisms for a bounded real value: discrete Laplace, Duchi, Piecewise,
//! Hybrid and 1BitMean.

mod binary;
mod hybrid;
mod laplace;
mod piecewise;

pub(crate) use binary::BinaryCore;
pub use binary::{Duchi, OneBitMean};
pub use hybrid::{HYBRID_SWITCH_EPSILON, Hybrid};
pub use laplace::{DiscreteLaplace, LAPLACE_STEPS};
pub use piecewise::{PIECEWISE_CELLS, Piecewise};
