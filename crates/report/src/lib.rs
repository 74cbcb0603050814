//! What Hush measures and what may leave a device: the metric catalog, the raw
//! per-window measurements (which may not leave), the privatizer, and the
//! privatized `Report` with its versioned wire codec.
//!
//! - the [`Catalog`] — the versioned, hashed list of metrics, each with its clipping
//!   range or buckets, its mechanism and its share of the epsilon.
//! - the [`RawMeasurements`] — one window's true counts; not serializable, not
//!   clonable, redacted in `Debug`, zeroed on drop.
//! - the [`privatize`] function — `RawMeasurements` in, [`Report`] out; the only
//!   way to make a report. Every metric goes through a two-layer mechanism: a
//!   permanent response derived from the [`DeviceSecret`] (so no list of values
//!   is ever stored) and a fresh instantaneous layer; new values are charged
//!   to the [`Lifetime`] spending history and capped per rolling year.
//! - the [`Report`] — the only type that leaves a device; encoded with
//!   [`Report::encode`] and decoded, with limits, by [`Report::decode`].
//! - [`KeyClass`], [`MouseButton`], [`Shortcut`] — the coarse vocabulary capture
//!   maps OS events into.
//!
//! This crate knows nothing of OS events or HTTP, and does no IO.

mod builtin;
mod calendar;
mod catalog;
mod error;
mod lifetime;
mod measure;
mod privatize;
mod ranges;
mod raw;
mod secret;
mod vocabulary;
mod wire;

pub use calendar::{civil_from_days, date_of_day, days_from_civil, utc_minute, weekday};
pub use catalog::{
    Catalog, CatalogHash, Encoding, MAX_CHANGE_FACTOR, Metric, MetricKind, MetricMechanism,
    MetricValue, PreviewLine, SentLine,
};
pub use error::ReportError;
pub use lifetime::{
    BUCKET_DAYS, Draw, DrawTags, HISTORY_BUCKETS, Lifetime, WINDOW_BUCKETS, YEAR_BUCKETS,
    bucket_of_day, draws_per_window,
};
pub use measure::Measure;
pub use privatize::{DeviceMemory, PrivatizeError, PrivatizeRequest, context_of, privatize};
pub use ranges::{
    MAX_STEP, MIN_STEP, PublishedRanges, RangeSteps, STEPS_PER_OCTAVE, fitted_p90, nearest_step,
    round2, step_factor,
};
pub use raw::RawMeasurements;
pub use secret::{DeviceSecret, PermanentContext, SECRET_BYTES, TAG_BYTES};
pub use vocabulary::{KeyClass, MouseButton, Shortcut};
pub use wire::{
    CodecError, MAX_BATCH_BYTES, MAX_BATCH_REPORTS, MAX_REPORT_BYTES, MetricReport, Privatized,
    Report, ReportId, WIRE_VERSION,
};
