//! Input capture for Hush: OS events mapped to identity-free interactions the moment
//! they arrive, carried over a bounded channel, and folded into fixed windows of
//! raw measurements.
//!
//! - the [`EventSource`] — [`RdevSource`] (real input, the default `rdev` feature)
//!   and [`ScriptedSource`] (tests, replays, simulations).
//! - the [`Interaction`] — what happened (key class, chord/shortcut, click, scroll,
//!   pointer travel) and when, never which key.
//! - the [`WindowAggregator`] — interactions into [`hush_report::RawMeasurements`],
//!   one per window, on schedule even when nothing happened.
//!
//! Nothing in this crate can be serialized: it has no serde dependency at all.

mod error;
mod interaction;
#[cfg(feature = "rdev")]
mod listen;
#[cfg(feature = "rdev")]
pub mod mapping;
mod source;
pub mod synthetic;
mod window;

pub use error::CaptureError;
pub use interaction::{Interaction, InteractionKind, InteractionSink, InteractionStream, channel};
#[cfg(feature = "rdev")]
pub use listen::{RdevSource, display_lost};
pub use source::{Epoch, EventSource, PacedSource, RecordingStats, ScriptedSource, record_for};
pub use window::{MAX_WINDOW_MS, WindowAggregator};

/// Without the rdev listener, the display can never be lost.
#[cfg(not(feature = "rdev"))]
pub fn display_lost() -> bool {
    false
}
