//! The quantities a metric can read from one period's raw measurements, and
//! which of them are always defined.

use crate::{RawMeasurements, Shortcut};

/// The quantity a metric reads from [`RawMeasurements`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Minutes with any input.
    ActiveMinutes,
    /// Key releases of every kind.
    Keystrokes,
    /// Mouse clicks of any button.
    Clicks,
    /// Scroll-wheel notches.
    ScrollNotches,
    /// Pointer travel in thousands of pixels.
    PointerTravel,
    /// Longest run of consecutive active minutes.
    LongestFocus,
    /// Text keys per minute with typing; absent when there was no typing.
    TypingSpeed,
    /// Share of text keys that were Backspace or Delete; absent when there was no typing.
    CorrectionRate,
    /// Share of keystrokes among keystrokes, clicks and scroll notches; absent with no input.
    KeyboardShare,
    /// The most used allow-listed shortcut (ties to the earlier one); absent when none was used.
    TopShortcut,
}

impl Measure {
    /// Every measure, in the built-in catalog's order.
    pub const ALL: [Measure; 10] = [
        Self::ActiveMinutes,
        Self::Keystrokes,
        Self::Clicks,
        Self::ScrollNotches,
        Self::PointerTravel,
        Self::LongestFocus,
        Self::TypingSpeed,
        Self::CorrectionRate,
        Self::KeyboardShare,
        Self::TopShortcut,
    ];

    /// Lowercase name: the metric name of the measure's first metric, and the
    /// key its permanent draws are counted under, whichever metric made them.
    pub fn name(self) -> &'static str {
        match self {
            Self::ActiveMinutes => "active_minutes",
            Self::Keystrokes => "keystrokes",
            Self::Clicks => "clicks",
            Self::ScrollNotches => "scroll_notches",
            Self::PointerTravel => "pointer_travel",
            Self::LongestFocus => "longest_focus",
            Self::TypingSpeed => "typing_speed",
            Self::CorrectionRate => "correction_rate",
            Self::KeyboardShare => "keyboard_share",
            Self::TopShortcut => "top_shortcut",
        }
    }

    /// Whether the quantity is defined every period (the counts): only such
    /// a measure can have a distribution, whose "no value" bucket then never
    /// holds a real value (nor a stand-in's fake one).
    pub fn always_defined(self) -> bool {
        matches!(
            self,
            Self::ActiveMinutes
                | Self::Keystrokes
                | Self::Clicks
                | Self::ScrollNotches
                | Self::PointerTravel
                | Self::LongestFocus
        )
    }

    /// Reads the quantity; `None` where it is undefined (no typing, no input, no shortcut).
    pub fn read(self, raw: &RawMeasurements) -> Option<f64> {
        let ratio = |num: u64, den: u64| (den > 0).then(|| num as f64 / den as f64);
        match self {
            Self::ActiveMinutes => Some(f64::from(raw.active_minutes())),
            Self::Keystrokes => Some(raw.keystrokes() as f64),
            Self::Clicks => Some(raw.clicks() as f64),
            Self::ScrollNotches => Some(f64::from(raw.scroll_notches())),
            Self::PointerTravel => Some(raw.pointer_travel_px() as f64 / 1000.0),
            Self::LongestFocus => Some(f64::from(raw.longest_focus_minutes())),
            Self::TypingSpeed => ratio(raw.text_keys(), u64::from(raw.typing_minutes())),
            Self::CorrectionRate => ratio(
                u64::from(raw.keys_of(crate::KeyClass::Edit)),
                raw.text_keys(),
            ),
            Self::KeyboardShare => ratio(
                raw.keystrokes(),
                raw.keystrokes() + raw.clicks() + u64::from(raw.scroll_notches()),
            ),
            Self::TopShortcut => {
                let (best, uses) = Shortcut::ALL
                    .iter()
                    .map(|&s| (s, raw.shortcut_uses(s)))
                    .fold(
                        (None, 0),
                        |acc, (s, n)| if n > acc.1 { (Some(s), n) } else { acc },
                    );
                best.filter(|_| uses > 0).map(|s| s.index() as f64)
            }
        }
    }
}

/// The distinct measures `metrics` read, in their order: what the cap on new
/// values a year counts.
pub(crate) fn distinct(metrics: &[crate::Metric]) -> Vec<Measure> {
    let mut out: Vec<Measure> = Vec::new();
    for m in metrics {
        if !out.contains(&m.measure) {
            out.push(m.measure);
        }
    }
    out
}
