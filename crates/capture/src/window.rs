//! The window aggregator: folds interactions into `RawMeasurements`, one per fixed window.

use hush_report::RawMeasurements;

use crate::{CaptureError, Interaction, InteractionKind};

const MINUTE_MS: u64 = 60_000;

/// The longest window accepted: one day.
pub const MAX_WINDOW_MS: u64 = 24 * 60 * MINUTE_MS;

/// Folds interactions into [`RawMeasurements`] for consecutive fixed windows.
///
/// Windows are emitted on schedule whether or not anything happened, so an
/// empty window looks like any other. Within a window only minute-level
/// activity flags are kept (which minutes had input, which had typing); no
/// timestamps survive the window. Only one number crosses a window boundary:
/// the length of the active run in progress, so a focus stretch spanning two
/// windows is measured whole.
#[derive(Debug)]
pub struct WindowAggregator {
    window_ms: u64,
    start_ms: u64,
    current: RawMeasurements,
    active: Vec<bool>,
    typing: Vec<bool>,
    run_carry: u32,
}

impl WindowAggregator {
    /// An aggregator whose first window starts at `start_ms`; `window_ms` in `[1000, MAX_WINDOW_MS]`.
    pub fn new(window_ms: u64, start_ms: u64) -> Result<Self, CaptureError> {
        if !(1000..=MAX_WINDOW_MS).contains(&window_ms) {
            return Err(CaptureError::Window(window_ms));
        }
        let minutes = window_ms.div_ceil(MINUTE_MS) as usize;
        Ok(WindowAggregator {
            window_ms,
            start_ms,
            current: RawMeasurements::new(minutes as u32),
            active: vec![false; minutes],
            typing: vec![false; minutes],
            run_carry: 0,
        })
    }

    /// End (exclusive) of the window being filled.
    pub fn window_end_ms(&self) -> u64 {
        self.start_ms + self.window_ms
    }

    /// Closes every window that ended at or before `now_ms`, in order.
    pub fn advance(&mut self, now_ms: u64) -> Vec<RawMeasurements> {
        let mut closed = Vec::new();
        while now_ms >= self.window_end_ms() {
            closed.push(self.close_window());
        }
        closed
    }

    /// Records one interaction, first closing any windows that ended before it.
    /// Interactions stamped before the current window count toward it.
    pub fn observe(&mut self, interaction: Interaction) -> Vec<RawMeasurements> {
        let closed = self.advance(interaction.at_ms);
        let minute = (interaction.at_ms.saturating_sub(self.start_ms) / MINUTE_MS) as usize;
        let minute = minute.min(self.active.len() - 1);
        self.active[minute] = true;
        match interaction.kind {
            InteractionKind::Key(class) => {
                self.current.record_key(class);
                if class.is_text() {
                    self.typing[minute] = true;
                }
            }
            InteractionKind::Chord(shortcut) => self.current.record_chord(shortcut),
            InteractionKind::Click(button) => self.current.record_click(button),
            InteractionKind::Scroll(notches) => self.current.record_scroll(notches),
            InteractionKind::PointerMove(px) => self.current.record_pointer_travel(u64::from(px)),
        }
        closed
    }

    /// Closes the current window early (at shutdown or the end of a preview),
    /// covering only the minutes elapsed up to `now_ms`.
    pub fn finish(mut self, now_ms: u64) -> RawMeasurements {
        let elapsed = now_ms
            .saturating_sub(self.start_ms)
            .div_ceil(MINUTE_MS)
            .max(1) as usize;
        let keep = elapsed.min(self.active.len());
        self.active.truncate(keep);
        self.typing.truncate(keep);
        self.close_window()
    }

    fn close_window(&mut self) -> RawMeasurements {
        let active = self.active.iter().filter(|&&a| a).count() as u32;
        let typing = self.typing.iter().filter(|&&t| t).count() as u32;
        let mut longest = 0u32;
        let mut run = self.run_carry;
        for &a in &self.active {
            run = if a { run + 1 } else { 0 };
            longest = longest.max(run);
        }
        self.run_carry = run;
        let minutes = self.active.len() as u32;
        let mut done = std::mem::replace(&mut self.current, RawMeasurements::new(minutes));
        done.set_minutes(minutes, active, typing, longest);
        self.active.iter_mut().for_each(|a| *a = false);
        self.typing.iter_mut().for_each(|t| *t = false);
        self.start_ms += self.window_ms;
        done
    }
}
