//! What Hush measures and what may leave a device: the metric catalog, the raw
//! per-window measurements (which may not leave), and the identity-free vocabulary
//! of interactions.
//!
//! - the [`Catalog`] — the versioned, hashed list of metrics, each with its clipping
//!   range or buckets, its mechanism and its share of the epsilon.
//! - the [`RawMeasurements`] — one window's true counts; not serializable, not
//!   clonable, redacted in `Debug`, zeroed on drop.
//! - [`KeyClass`], [`MouseButton`], [`Shortcut`] — the coarse vocabulary capture
//!   maps OS events into.
//!
//! This crate knows nothing of OS events or HTTP, and does no IO.

mod catalog;
mod error;
mod raw;
mod vocabulary;

pub use catalog::{
    Catalog, CatalogHash, Encoding, Measure, Metric, MetricKind, MetricMechanism, MetricValue,
    PreviewLine,
};
pub use error::ReportError;
pub use raw::RawMeasurements;
pub use vocabulary::{KeyClass, MouseButton, Shortcut};
