//! Input capture for Hush: OS events mapped to identity-free interactions the moment
//! they arrive, carried over a bounded channel, and folded into fixed windows of
//! raw measurements.
//!
//! - the [`EventSource`] — [`OsSource`] (real input, the default `os-input`
//!   feature: X RECORD on Linux, rdev elsewhere) and [`ScriptedSource`] (tests,
//!   replays, simulations).
//! - [`event`] — capture's own vocabulary of OS input events (keys by
//!   position, buttons, wheel, pointer), which the listeners decode into and
//!   [`mapping`] reads; on Linux no C library is linked for it.
//! - the [`Interaction`] — what happened (key class, chord/shortcut, click, scroll,
//!   pointer travel) and when, never which key.
//! - the [`WindowAggregator`] — interactions into [`hush_report::RawMeasurements`],
//!   one per window, on schedule even when nothing happened.
//!
//! Nothing in this crate can be serialized: it has no serde dependency at all.

mod error;
pub mod event;
mod interaction;
#[cfg(feature = "os-input")]
mod listen;
pub mod mapping;
mod source;
pub mod synthetic;
mod window;
#[cfg(all(feature = "os-input", target_os = "linux"))]
mod x11;

pub use error::CaptureError;
pub use interaction::{Interaction, InteractionKind, InteractionSink, InteractionStream, channel};
#[cfg(feature = "os-input")]
pub use listen::OsSource;
pub use source::{
    CaptureThread, Epoch, EventSource, MAX_DELIVERY_DELAY, PacedSource, RecordingStats,
    ScriptedSource, record_for,
};
pub use window::{MAX_WINDOW_MS, WindowAggregator};
