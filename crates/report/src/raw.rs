//! `RawMeasurements`: one window's true interaction counts, which never leave the process.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{KeyClass, MouseButton, Shortcut};

/// The true, unprivatized interaction counts of one window (or of a period, after
/// [`RawMeasurements::absorb`]ing its windows).
///
/// This type is the boundary of the privacy invariant "raw measurements never
/// leave the process": it implements neither `Serialize` nor `Clone` (so it can
/// be neither written out nor copied aside), its `Debug` prints no values, and
/// its memory is zeroed when it is dropped. The privatizer consumes it by value.
/// Compile-fail tests in `tests/compile_fail/` prove the first two.
#[derive(Default, Zeroize, ZeroizeOnDrop)]
pub struct RawMeasurements {
    minutes: u32,
    active_minutes: u32,
    typing_minutes: u32,
    longest_focus_minutes: u32,
    keys: [u32; KeyClass::ALL.len()],
    chords: u32,
    shortcuts: [u32; Shortcut::ALL.len()],
    clicks: [u32; MouseButton::ALL.len()],
    scroll_notches: u32,
    pointer_travel_px: u64,
}

impl fmt::Debug for RawMeasurements {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RawMeasurements {{ {} minutes, values redacted }}",
            self.minutes
        )
    }
}

impl RawMeasurements {
    /// Empty measurements covering `minutes` minutes.
    pub fn new(minutes: u32) -> Self {
        RawMeasurements {
            minutes,
            ..Self::default()
        }
    }

    /// Counts one key release of `class` made without a command modifier.
    pub fn record_key(&mut self, class: KeyClass) {
        self.keys[class.index()] = self.keys[class.index()].saturating_add(1);
    }

    /// Counts one key release made while a command modifier was held; `shortcut`
    /// is set when the chord is on the allow-list.
    pub fn record_chord(&mut self, shortcut: Option<Shortcut>) {
        self.chords = self.chords.saturating_add(1);
        if let Some(s) = shortcut {
            self.shortcuts[s.index()] = self.shortcuts[s.index()].saturating_add(1);
        }
    }

    /// Counts one click.
    pub fn record_click(&mut self, button: MouseButton) {
        self.clicks[button.index()] = self.clicks[button.index()].saturating_add(1);
    }

    /// Adds scroll-wheel notches (both axes).
    pub fn record_scroll(&mut self, notches: u32) {
        self.scroll_notches = self.scroll_notches.saturating_add(notches);
    }

    /// Adds pointer travel in pixels.
    pub fn record_pointer_travel(&mut self, px: u64) {
        self.pointer_travel_px = self.pointer_travel_px.saturating_add(px);
    }

    /// Sets the window's minute-level activity, computed by the aggregator:
    /// minutes covered, minutes with any input, minutes with text keys, and the
    /// longest run of consecutive active minutes.
    pub fn set_minutes(&mut self, covered: u32, active: u32, typing: u32, longest_focus: u32) {
        self.minutes = covered;
        self.active_minutes = active;
        self.typing_minutes = typing;
        self.longest_focus_minutes = longest_focus;
    }

    /// Folds a later window into this one: counts add, the longest focus stretch
    /// is the larger one. Consumes `other`, which is zeroed as it drops.
    pub fn absorb(&mut self, other: RawMeasurements) {
        self.minutes = self.minutes.saturating_add(other.minutes);
        self.active_minutes = self.active_minutes.saturating_add(other.active_minutes);
        self.typing_minutes = self.typing_minutes.saturating_add(other.typing_minutes);
        self.longest_focus_minutes = self.longest_focus_minutes.max(other.longest_focus_minutes);
        for (a, b) in self.keys.iter_mut().zip(other.keys) {
            *a = a.saturating_add(b);
        }
        self.chords = self.chords.saturating_add(other.chords);
        for (a, b) in self.shortcuts.iter_mut().zip(other.shortcuts) {
            *a = a.saturating_add(b);
        }
        for (a, b) in self.clicks.iter_mut().zip(other.clicks) {
            *a = a.saturating_add(b);
        }
        self.scroll_notches = self.scroll_notches.saturating_add(other.scroll_notches);
        self.pointer_travel_px = self
            .pointer_travel_px
            .saturating_add(other.pointer_travel_px);
    }

    /// Multiplies every count (keys, chords, shortcuts, clicks, scroll
    /// notches, pointer travel) by `factor`, leaving the minutes alone: for
    /// simulating a fleet busier than the one the catalog was fitted to (the
    /// range-learning test). Saturates rather than wraps.
    pub fn amplify(&mut self, factor: u32) {
        for k in &mut self.keys {
            *k = k.saturating_mul(factor);
        }
        self.chords = self.chords.saturating_mul(factor);
        for s in &mut self.shortcuts {
            *s = s.saturating_mul(factor);
        }
        for c in &mut self.clicks {
            *c = c.saturating_mul(factor);
        }
        self.scroll_notches = self.scroll_notches.saturating_mul(factor);
        self.pointer_travel_px = self.pointer_travel_px.saturating_mul(u64::from(factor));
    }

    /// Minutes covered.
    pub fn minutes(&self) -> u32 {
        self.minutes
    }

    /// Minutes with any input.
    pub fn active_minutes(&self) -> u32 {
        self.active_minutes
    }

    /// Minutes with at least one text key.
    pub fn typing_minutes(&self) -> u32 {
        self.typing_minutes
    }

    /// Longest run of consecutive active minutes.
    pub fn longest_focus_minutes(&self) -> u32 {
        self.longest_focus_minutes
    }

    /// Key releases of one class (without a command modifier).
    pub fn keys_of(&self, class: KeyClass) -> u32 {
        self.keys[class.index()]
    }

    /// Every key release: classified keys plus chords.
    pub fn keystrokes(&self) -> u64 {
        self.keys.iter().map(|&k| u64::from(k)).sum::<u64>() + u64::from(self.chords)
    }

    /// Key releases that produce or correct text.
    pub fn text_keys(&self) -> u64 {
        KeyClass::ALL
            .iter()
            .filter(|c| c.is_text())
            .map(|&c| u64::from(self.keys_of(c)))
            .sum()
    }

    /// Chords (keys pressed with a command modifier held), listed or not.
    pub fn chords(&self) -> u32 {
        self.chords
    }

    /// Uses of one allow-listed shortcut.
    pub fn shortcut_uses(&self, s: Shortcut) -> u32 {
        self.shortcuts[s.index()]
    }

    /// Clicks of one button.
    pub fn clicks_of(&self, b: MouseButton) -> u32 {
        self.clicks[b.index()]
    }

    /// All clicks.
    pub fn clicks(&self) -> u64 {
        self.clicks.iter().map(|&c| u64::from(c)).sum()
    }

    /// Scroll-wheel notches.
    pub fn scroll_notches(&self) -> u32 {
        self.scroll_notches
    }

    /// Pointer travel in pixels.
    pub fn pointer_travel_px(&self) -> u64 {
        self.pointer_travel_px
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_no_values() {
        let mut m = RawMeasurements::new(60);
        for _ in 0..12345 {
            m.record_key(KeyClass::Letter);
        }
        m.record_pointer_travel(98765);
        let text = format!("{m:?}");
        assert!(!text.contains("12345") && !text.contains("98765"), "{text}");
        assert!(text.contains("redacted"));
    }

    #[test]
    fn absorb_adds_counts_and_keeps_the_longest_stretch() {
        let mut a = RawMeasurements::new(60);
        a.record_key(KeyClass::Letter);
        a.record_chord(Some(Shortcut::Copy));
        a.set_minutes(60, 10, 5, 7);
        let mut b = RawMeasurements::new(60);
        b.record_key(KeyClass::Edit);
        b.record_chord(None);
        b.record_click(MouseButton::Left);
        b.record_scroll(3);
        b.record_pointer_travel(500);
        b.set_minutes(60, 20, 2, 4);
        a.absorb(b);
        assert_eq!(a.minutes(), 120);
        assert_eq!(a.active_minutes(), 30);
        assert_eq!(a.typing_minutes(), 7);
        assert_eq!(a.longest_focus_minutes(), 7);
        assert_eq!(a.keystrokes(), 4);
        assert_eq!(a.text_keys(), 2);
        assert_eq!(a.chords(), 2);
        assert_eq!(a.shortcut_uses(Shortcut::Copy), 1);
        assert_eq!(a.clicks(), 1);
        assert_eq!(a.scroll_notches(), 3);
        assert_eq!(a.pointer_travel_px(), 500);
    }

    #[test]
    fn zeroize_clears_every_value() {
        let mut m = RawMeasurements::new(60);
        m.record_key(KeyClass::Digit);
        m.set_minutes(60, 3, 2, 1);
        m.zeroize();
        assert_eq!((m.minutes(), m.keystrokes(), m.active_minutes()), (0, 0, 0));
    }
}
