//! The mapping from OS events (in rdev's vocabulary, on every platform) to
//! identity-free interactions: with the listeners that decode the events, the
//! only code that sees which key was pressed, and it keeps nothing of it.

use hush_report::{KeyClass, MouseButton, Shortcut};
use rdev::{Button, EventType, Key};

use crate::{Interaction, InteractionKind};

/// Which modifiers are held: the only keyboard state kept between events.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Modifiers {
    shift: bool,
    control: bool,
    alt: bool,
    meta: bool,
}

impl Modifiers {
    fn command(self) -> bool {
        self.control || self.alt || self.meta
    }
}

/// Maps one event at a time. Holds the held modifiers, how many chord keys are
/// still down (a count, not which keys), and the last pointer position (needed
/// for travel distance); nothing else.
#[derive(Debug, Default, Clone)]
pub struct EventMapper {
    held: Modifiers,
    chord_keys_down: u32,
    last_pointer: Option<(f64, f64)>,
}

impl EventMapper {
    /// A mapper with no modifier held and no pointer position yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps one event.
    ///
    /// Plain keys count on release, because auto-repeat sends a stream of
    /// presses for one held key. Chords count on press, with the modifiers
    /// held at that moment: people and tools often let go of Ctrl before the
    /// letter, so the release would see no modifier. Only the number of chord
    /// keys still down is remembered, so their releases are not counted again.
    /// Clicks count on press, so the spurious button release that accompanies
    /// a horizontal scroll is ignored.
    #[inline]
    pub fn map(&mut self, event: &EventType, at_ms: u64) -> Option<Interaction> {
        let kind = match *event {
            EventType::KeyPress(key) => {
                if self.set_modifier(key, true) || !self.held.command() {
                    return None;
                }
                self.chord_keys_down = self.chord_keys_down.saturating_add(1);
                InteractionKind::Chord(shortcut(key, self.held))
            }
            EventType::KeyRelease(key) => {
                if self.set_modifier(key, false) {
                    InteractionKind::Key(KeyClass::Modifier)
                } else if self.chord_keys_down > 0 {
                    self.chord_keys_down -= 1;
                    return None;
                } else {
                    InteractionKind::Key(classify(key))
                }
            }
            EventType::ButtonPress(button) => InteractionKind::Click(match button {
                Button::Left => MouseButton::Left,
                Button::Right => MouseButton::Right,
                Button::Middle => MouseButton::Middle,
                Button::Unknown(_) => return None,
            }),
            EventType::ButtonRelease(_) => return None,
            EventType::Wheel { delta_x, delta_y } => {
                let notches = delta_x
                    .unsigned_abs()
                    .saturating_add(delta_y.unsigned_abs());
                InteractionKind::Scroll(u32::try_from(notches).unwrap_or(u32::MAX))
            }
            EventType::MouseMove { x, y } => {
                let travel = self
                    .last_pointer
                    .replace((x, y))
                    .map_or(0.0, |(px, py)| ((x - px).powi(2) + (y - py).powi(2)).sqrt());
                if travel < 0.5 {
                    return None;
                }
                InteractionKind::PointerMove(travel.round().min(f64::from(u32::MAX)) as u32)
            }
        };
        Some(Interaction { kind, at_ms })
    }

    /// Updates the held modifiers; returns whether `key` is a modifier.
    fn set_modifier(&mut self, key: Key, down: bool) -> bool {
        let slot = match key {
            Key::ShiftLeft | Key::ShiftRight => &mut self.held.shift,
            Key::ControlLeft | Key::ControlRight => &mut self.held.control,
            Key::Alt | Key::AltGr => &mut self.held.alt,
            Key::MetaLeft | Key::MetaRight => &mut self.held.meta,
            Key::CapsLock => return true,
            _ => return false,
        };
        *slot = down;
        true
    }
}

/// The coarse class of a non-modifier key.
pub fn classify(key: Key) -> KeyClass {
    use Key::*;
    match key {
        KeyA | KeyB | KeyC | KeyD | KeyE | KeyF | KeyG | KeyH | KeyI | KeyJ | KeyK | KeyL
        | KeyM | KeyN | KeyO | KeyP | KeyQ | KeyR | KeyS | KeyT | KeyU | KeyV | KeyW | KeyX
        | KeyY | KeyZ => KeyClass::Letter,
        Num0 | Num1 | Num2 | Num3 | Num4 | Num5 | Num6 | Num7 | Num8 | Num9 | Kp0 | Kp1 | Kp2
        | Kp3 | Kp4 | Kp5 | Kp6 | Kp7 | Kp8 | Kp9 => KeyClass::Digit,
        Space | Tab | Return | KpReturn => KeyClass::Whitespace,
        Backspace | Delete | KpDelete => KeyClass::Edit,
        UpArrow | DownArrow | LeftArrow | RightArrow | Home | End | PageUp | PageDown | Insert => {
            KeyClass::Navigation
        }
        ShiftLeft | ShiftRight | ControlLeft | ControlRight | Alt | AltGr | MetaLeft
        | MetaRight | CapsLock => KeyClass::Modifier,
        F1 | F2 | F3 | F4 | F5 | F6 | F7 | F8 | F9 | F10 | F11 | F12 | Escape | PrintScreen
        | ScrollLock | Pause | NumLock | Function => KeyClass::Function,
        _ => KeyClass::Other,
    }
}

/// The allow-listed shortcut a chord makes, if any. Control and Meta (Command on
/// macOS) are interchangeable; a chord with both Control and Alt is never listed.
fn shortcut(key: Key, held: Modifiers) -> Option<Shortcut> {
    let primary = held.control || held.meta;
    if primary && !held.alt {
        return Some(match (key, held.shift) {
            (Key::KeyC, false) => Shortcut::Copy,
            (Key::KeyX, false) => Shortcut::Cut,
            (Key::KeyV, false) => Shortcut::Paste,
            (Key::KeyZ, false) => Shortcut::Undo,
            (Key::KeyZ, true) | (Key::KeyY, false) => Shortcut::Redo,
            (Key::KeyS, false) => Shortcut::Save,
            (Key::KeyF, false) => Shortcut::Find,
            (Key::KeyA, false) => Shortcut::SelectAll,
            (Key::KeyT, false) => Shortcut::NewTab,
            (Key::KeyW, false) => Shortcut::CloseTab,
            (Key::Tab, false) if held.control => Shortcut::NextTab,
            (Key::Tab, _) if held.meta => Shortcut::SwitchWindow,
            (Key::KeyN, false) => Shortcut::NewWindow,
            (Key::KeyR, false) | (Key::F5, false) => Shortcut::Reload,
            _ => return None,
        });
    }
    if held.alt && !primary && key == Key::Tab {
        return Some(Shortcut::SwitchWindow);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Presses and releases `key`; returns what the press and the release mapped to.
    fn type_key(m: &mut EventMapper, key: Key) -> Option<InteractionKind> {
        let press = m.map(&EventType::KeyPress(key), 0).map(|i| i.kind);
        let release = m.map(&EventType::KeyRelease(key), 0).map(|i| i.kind);
        assert!(
            press.is_none() || release.is_none(),
            "{key:?} counted twice"
        );
        press.or(release)
    }

    #[test]
    fn keys_count_on_release_by_class() {
        let mut m = EventMapper::new();
        // Auto-repeat: many presses, one release, one keystroke.
        for _ in 0..5 {
            assert_eq!(m.map(&EventType::KeyPress(Key::KeyQ), 0), None);
        }
        assert_eq!(
            m.map(&EventType::KeyRelease(Key::KeyQ), 7),
            Some(Interaction {
                kind: InteractionKind::Key(KeyClass::Letter),
                at_ms: 7
            })
        );
        let cases = [
            (Key::Num4, KeyClass::Digit),
            (Key::Kp9, KeyClass::Digit),
            (Key::Space, KeyClass::Whitespace),
            (Key::Return, KeyClass::Whitespace),
            (Key::Backspace, KeyClass::Edit),
            (Key::Delete, KeyClass::Edit),
            (Key::LeftArrow, KeyClass::Navigation),
            (Key::PageDown, KeyClass::Navigation),
            (Key::F7, KeyClass::Function),
            (Key::Escape, KeyClass::Function),
            (Key::Comma, KeyClass::Other),
            (Key::Unknown(999), KeyClass::Other),
        ];
        for (key, class) in cases {
            assert_eq!(
                type_key(&mut m, key),
                Some(InteractionKind::Key(class)),
                "{key:?}"
            );
        }
    }

    #[test]
    fn shift_is_not_a_command_modifier() {
        let mut m = EventMapper::new();
        m.map(&EventType::KeyPress(Key::ShiftLeft), 0);
        assert_eq!(
            type_key(&mut m, Key::KeyC),
            Some(InteractionKind::Key(KeyClass::Letter))
        );
        assert_eq!(
            m.map(&EventType::KeyRelease(Key::ShiftLeft), 0)
                .map(|i| i.kind),
            Some(InteractionKind::Key(KeyClass::Modifier))
        );
    }

    #[test]
    fn allow_listed_chords_become_shortcuts_and_others_stay_anonymous() {
        let mut m = EventMapper::new();
        m.map(&EventType::KeyPress(Key::ControlLeft), 0);
        assert_eq!(
            type_key(&mut m, Key::KeyC),
            Some(InteractionKind::Chord(Some(Shortcut::Copy)))
        );
        assert_eq!(
            type_key(&mut m, Key::KeyV),
            Some(InteractionKind::Chord(Some(Shortcut::Paste)))
        );
        assert_eq!(
            type_key(&mut m, Key::KeyQ),
            Some(InteractionKind::Chord(None))
        );
        assert_eq!(
            type_key(&mut m, Key::Tab),
            Some(InteractionKind::Chord(Some(Shortcut::NextTab)))
        );
        m.map(&EventType::KeyPress(Key::ShiftLeft), 0);
        assert_eq!(
            type_key(&mut m, Key::KeyZ),
            Some(InteractionKind::Chord(Some(Shortcut::Redo)))
        );
        m.map(&EventType::KeyRelease(Key::ShiftLeft), 0);
        m.map(&EventType::KeyRelease(Key::ControlLeft), 0);
        // After release, the same letter is plain text again.
        assert_eq!(
            type_key(&mut m, Key::KeyC),
            Some(InteractionKind::Key(KeyClass::Letter))
        );
        m.map(&EventType::KeyPress(Key::Alt), 0);
        assert_eq!(
            type_key(&mut m, Key::Tab),
            Some(InteractionKind::Chord(Some(Shortcut::SwitchWindow)))
        );
        assert_eq!(
            type_key(&mut m, Key::KeyF),
            Some(InteractionKind::Chord(None))
        );
        m.map(&EventType::KeyPress(Key::ControlLeft), 0);
        // Ctrl+Alt+Delete and friends are never identified.
        assert_eq!(
            type_key(&mut m, Key::Delete),
            Some(InteractionKind::Chord(None))
        );
        assert_eq!(
            type_key(&mut m, Key::KeyC),
            Some(InteractionKind::Chord(None))
        );
    }

    #[test]
    fn a_chord_counts_when_the_modifier_is_released_first() {
        // The order xdotool (and hurried people) produce: Ctrl down, C down, Ctrl up, C up.
        let mut m = EventMapper::new();
        let kinds: Vec<_> = [
            EventType::KeyPress(Key::ControlLeft),
            EventType::KeyPress(Key::KeyC),
            EventType::KeyRelease(Key::ControlLeft),
            EventType::KeyRelease(Key::KeyC),
            EventType::KeyPress(Key::KeyC),
            EventType::KeyRelease(Key::KeyC),
        ]
        .iter()
        .filter_map(|e| m.map(e, 0).map(|i| i.kind))
        .collect();
        assert_eq!(
            kinds,
            vec![
                InteractionKind::Chord(Some(Shortcut::Copy)),
                InteractionKind::Key(KeyClass::Modifier),
                InteractionKind::Key(KeyClass::Letter),
            ]
        );
    }

    #[test]
    fn mouse_events() {
        let mut m = EventMapper::new();
        let kind = |m: &mut EventMapper, e| m.map(&e, 0).map(|i| i.kind);
        assert_eq!(
            kind(&mut m, EventType::ButtonPress(Button::Left)),
            Some(InteractionKind::Click(MouseButton::Left))
        );
        assert_eq!(kind(&mut m, EventType::ButtonRelease(Button::Left)), None);
        // Horizontal scroll: a wheel event plus a spurious release of button 6/7.
        assert_eq!(
            kind(
                &mut m,
                EventType::Wheel {
                    delta_x: -1,
                    delta_y: 0
                }
            ),
            Some(InteractionKind::Scroll(1))
        );
        assert_eq!(
            kind(&mut m, EventType::ButtonRelease(Button::Unknown(6))),
            None
        );
        assert_eq!(
            kind(&mut m, EventType::ButtonPress(Button::Unknown(8))),
            None
        );
        assert_eq!(
            kind(&mut m, EventType::MouseMove { x: 10.0, y: 10.0 }),
            None
        );
        assert_eq!(
            kind(&mut m, EventType::MouseMove { x: 13.0, y: 14.0 }),
            Some(InteractionKind::PointerMove(5))
        );
        assert_eq!(
            kind(&mut m, EventType::MouseMove { x: 13.2, y: 14.0 }),
            None
        );
    }
}
