//! The mapping from OS events (in capture's own vocabulary, on every platform)
//! to identity-free interactions: with the listeners that decode the events,
//! the only code that sees which key was pressed, and it keeps nothing of it.

use hush_report::{KeyClass, MouseButton, Shortcut};

use crate::event::{Button, InputEvent, Key, ModifierMask};
use crate::{Interaction, InteractionKind};

/// How long a modifier counts as held after its last press when no source of
/// truth says otherwise (on macOS and Windows, whose hooks report no modifier
/// mask with each event). A release swallowed by a screen lock would
/// otherwise leave Ctrl "held" for good and turn every C, V or Z typed
/// afterwards into a shortcut, which would reveal typed letters through
/// `top_shortcut`. Windows repeats a held modifier's press, which refreshes
/// it; holding Command on macOS longer than this while pressing Tab is the
/// rare case this bound gets wrong, in the private direction.
pub const MODIFIER_TTL_MS: u64 = 5_000;

/// Which modifiers are held, each with the time it was last seen held: the
/// only keyboard state kept between events.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Modifiers {
    shift: Option<u64>,
    control: Option<u64>,
    alt: Option<u64>,
    meta: Option<u64>,
}

impl Modifiers {
    fn command(self) -> bool {
        self.control.is_some() || self.alt.is_some() || self.meta.is_some()
    }

    fn slots(&mut self) -> [&mut Option<u64>; 4] {
        [
            &mut self.shift,
            &mut self.control,
            &mut self.alt,
            &mut self.meta,
        ]
    }

    /// Forgets every modifier last seen held more than [`MODIFIER_TTL_MS`] before `now_ms`.
    fn expire(&mut self, now_ms: u64) {
        for slot in self.slots() {
            if slot.is_some_and(|since| now_ms.saturating_sub(since) > MODIFIER_TTL_MS) {
                *slot = None;
            }
        }
    }

    /// Takes the OS's word for which modifiers are held.
    fn sync(&mut self, mask: ModifierMask, now_ms: u64) {
        let held = [mask.shift, mask.control, mask.alt, mask.meta];
        for (slot, held) in self.slots().into_iter().zip(held) {
            *slot = held.then_some(now_ms);
        }
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

    /// Maps one event whose source reports no modifier state (rdev's hooks):
    /// modifiers are tracked from presses and releases, and one not pressed
    /// again within [`MODIFIER_TTL_MS`] is taken as released.
    ///
    /// Plain keys count on release, because auto-repeat sends a stream of
    /// presses for one held key. Chords count on press, with the modifiers
    /// held at that moment: people and tools often let go of Ctrl before the
    /// letter, so the release would see no modifier. Only the number of chord
    /// keys still down is remembered, so their releases are not counted again.
    /// Clicks count on press, so the spurious button release that accompanies
    /// a horizontal scroll is ignored.
    #[inline]
    pub fn map(&mut self, event: &InputEvent, at_ms: u64) -> Option<Interaction> {
        self.held.expire(at_ms);
        self.apply(event, at_ms)
    }

    /// Maps one event that carries the OS's modifier state (an X key or button
    /// event's mask, which says what was held just before the event): the mask
    /// replaces whatever presses and releases suggested, so a lost release
    /// cannot leave a modifier held. Otherwise as [`EventMapper::map`].
    #[inline]
    pub fn map_with_mask(
        &mut self,
        event: &InputEvent,
        mask: ModifierMask,
        at_ms: u64,
    ) -> Option<Interaction> {
        self.held.sync(mask, at_ms);
        self.apply(event, at_ms)
    }

    fn apply(&mut self, event: &InputEvent, at_ms: u64) -> Option<Interaction> {
        let kind = match *event {
            InputEvent::KeyPress(key) => {
                if self.set_modifier(key, Some(at_ms)) || !self.held.command() {
                    return None;
                }
                self.chord_keys_down = self.chord_keys_down.saturating_add(1);
                InteractionKind::Chord(shortcut(key, self.held))
            }
            InputEvent::KeyRelease(key) => {
                if self.set_modifier(key, None) {
                    InteractionKind::Key(KeyClass::Modifier)
                } else if self.chord_keys_down > 0 {
                    self.chord_keys_down -= 1;
                    return None;
                } else {
                    InteractionKind::Key(classify(key))
                }
            }
            InputEvent::ButtonPress(button) => InteractionKind::Click(match button {
                Button::Left => MouseButton::Left,
                Button::Right => MouseButton::Right,
                Button::Middle => MouseButton::Middle,
                Button::Unknown(_) => return None,
            }),
            InputEvent::ButtonRelease(_) => return None,
            InputEvent::Wheel { delta_x, delta_y } => {
                let notches = delta_x
                    .unsigned_abs()
                    .saturating_add(delta_y.unsigned_abs());
                InteractionKind::Scroll(u32::try_from(notches).unwrap_or(u32::MAX))
            }
            InputEvent::MouseMove { x, y } => {
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

    /// Updates the held modifiers (`Some(now)` pressed, `None` released);
    /// returns whether `key` is a modifier.
    fn set_modifier(&mut self, key: Key, state: Option<u64>) -> bool {
        let slot = match key {
            Key::ShiftLeft | Key::ShiftRight => &mut self.held.shift,
            Key::ControlLeft | Key::ControlRight => &mut self.held.control,
            Key::Alt | Key::AltGr => &mut self.held.alt,
            Key::MetaLeft | Key::MetaRight => &mut self.held.meta,
            Key::CapsLock => return true,
            _ => return false,
        };
        *slot = state;
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
        Other => KeyClass::Other,
    }
}

/// The allow-listed shortcut a chord makes, if any. Control and Meta (Command on
/// macOS) are interchangeable; a chord with both Control and Alt is never listed.
fn shortcut(key: Key, held: Modifiers) -> Option<Shortcut> {
    let (control, meta, alt) = (
        held.control.is_some(),
        held.meta.is_some(),
        held.alt.is_some(),
    );
    let primary = control || meta;
    if primary && !alt {
        return Some(match (key, held.shift.is_some()) {
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
            (Key::Tab, false) if control => Shortcut::NextTab,
            (Key::Tab, _) if meta => Shortcut::SwitchWindow,
            (Key::KeyN, false) => Shortcut::NewWindow,
            (Key::KeyR, false) | (Key::F5, false) => Shortcut::Reload,
            _ => return None,
        });
    }
    if alt && !primary && key == Key::Tab {
        return Some(Shortcut::SwitchWindow);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Presses and releases `key`; returns what the press and the release mapped to.
    fn type_key(m: &mut EventMapper, key: Key) -> Option<InteractionKind> {
        let press = m.map(&InputEvent::KeyPress(key), 0).map(|i| i.kind);
        let release = m.map(&InputEvent::KeyRelease(key), 0).map(|i| i.kind);
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
            assert_eq!(m.map(&InputEvent::KeyPress(Key::KeyQ), 0), None);
        }
        assert_eq!(
            m.map(&InputEvent::KeyRelease(Key::KeyQ), 7),
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
            (Key::Other, KeyClass::Other),
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
        m.map(&InputEvent::KeyPress(Key::ShiftLeft), 0);
        assert_eq!(
            type_key(&mut m, Key::KeyC),
            Some(InteractionKind::Key(KeyClass::Letter))
        );
        assert_eq!(
            m.map(&InputEvent::KeyRelease(Key::ShiftLeft), 0)
                .map(|i| i.kind),
            Some(InteractionKind::Key(KeyClass::Modifier))
        );
    }

    #[test]
    fn allow_listed_chords_become_shortcuts_and_others_stay_anonymous() {
        let mut m = EventMapper::new();
        m.map(&InputEvent::KeyPress(Key::ControlLeft), 0);
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
        m.map(&InputEvent::KeyPress(Key::ShiftLeft), 0);
        assert_eq!(
            type_key(&mut m, Key::KeyZ),
            Some(InteractionKind::Chord(Some(Shortcut::Redo)))
        );
        m.map(&InputEvent::KeyRelease(Key::ShiftLeft), 0);
        m.map(&InputEvent::KeyRelease(Key::ControlLeft), 0);
        // After release, the same letter is plain text again.
        assert_eq!(
            type_key(&mut m, Key::KeyC),
            Some(InteractionKind::Key(KeyClass::Letter))
        );
        m.map(&InputEvent::KeyPress(Key::Alt), 0);
        assert_eq!(
            type_key(&mut m, Key::Tab),
            Some(InteractionKind::Chord(Some(Shortcut::SwitchWindow)))
        );
        assert_eq!(
            type_key(&mut m, Key::KeyF),
            Some(InteractionKind::Chord(None))
        );
        m.map(&InputEvent::KeyPress(Key::ControlLeft), 0);
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
            InputEvent::KeyPress(Key::ControlLeft),
            InputEvent::KeyPress(Key::KeyC),
            InputEvent::KeyRelease(Key::ControlLeft),
            InputEvent::KeyRelease(Key::KeyC),
            InputEvent::KeyPress(Key::KeyC),
            InputEvent::KeyRelease(Key::KeyC),
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

    /// Types `keys` (press and release each) at `at_ms`, with `mask` if the
    /// source reports one; returns what they mapped to.
    fn type_at(
        m: &mut EventMapper,
        keys: &[Key],
        mask: Option<ModifierMask>,
        at_ms: u64,
    ) -> Vec<InteractionKind> {
        let mut out = Vec::new();
        for &key in keys {
            for e in [InputEvent::KeyPress(key), InputEvent::KeyRelease(key)] {
                let i = match mask {
                    Some(mask) => m.map_with_mask(&e, mask, at_ms),
                    None => m.map(&e, at_ms),
                };
                out.extend(i.map(|i| i.kind));
            }
        }
        out
    }

    const LETTERS: [InteractionKind; 3] = [InteractionKind::Key(KeyClass::Letter); 3];

    #[test]
    fn a_lost_release_is_corrected_by_the_x_modifier_mask() {
        // Ctrl goes down (its own press carries the state before it: nothing
        // held); its release is lost; then c-a-t is typed, each event's mask
        // saying no modifier is held.
        let mut m = EventMapper::new();
        let none = ModifierMask::default();
        assert_eq!(
            m.map_with_mask(&InputEvent::KeyPress(Key::ControlLeft), none, 0),
            None
        );
        assert_eq!(
            type_at(&mut m, &[Key::KeyC, Key::KeyA, Key::KeyT], Some(none), 10),
            LETTERS,
            "no shortcut: the mask says Ctrl is up"
        );
        // A real chord still counts: the mask says Ctrl is down.
        let ctrl = ModifierMask {
            control: true,
            ..none
        };
        assert_eq!(
            type_at(&mut m, &[Key::KeyC], Some(ctrl), 20),
            [InteractionKind::Chord(Some(Shortcut::Copy))]
        );
        // And a held Ctrl whose press was never seen is found from the mask.
        let mut fresh = EventMapper::new();
        assert_eq!(
            type_at(&mut fresh, &[Key::KeyV], Some(ctrl), 0),
            [InteractionKind::Chord(Some(Shortcut::Paste))]
        );
    }

    #[test]
    fn without_a_mask_a_modifier_not_refreshed_expires() {
        let mut m = EventMapper::new();
        m.map(&InputEvent::KeyPress(Key::ControlLeft), 0);
        // The release is lost. Within the bound Ctrl still counts as held...
        assert_eq!(
            type_at(&mut m, &[Key::KeyS], None, MODIFIER_TTL_MS),
            [InteractionKind::Chord(Some(Shortcut::Save))]
        );
        // ...past it, c-a-t are letters, not Copy, SelectAll and NewTab.
        assert_eq!(
            type_at(
                &mut m,
                &[Key::KeyC, Key::KeyA, Key::KeyT],
                None,
                MODIFIER_TTL_MS + 1
            ),
            LETTERS
        );
        // A modifier kept down is refreshed by its repeated presses (Windows).
        let mut held = EventMapper::new();
        for t in (0..=3 * MODIFIER_TTL_MS).step_by(1000) {
            held.map(&InputEvent::KeyPress(Key::MetaLeft), t);
        }
        assert_eq!(
            type_at(&mut held, &[Key::KeyZ], None, 3 * MODIFIER_TTL_MS + 100),
            [InteractionKind::Chord(Some(Shortcut::Undo))]
        );
    }

    #[test]
    fn mouse_events() {
        let mut m = EventMapper::new();
        let kind = |m: &mut EventMapper, e| m.map(&e, 0).map(|i| i.kind);
        assert_eq!(
            kind(&mut m, InputEvent::ButtonPress(Button::Left)),
            Some(InteractionKind::Click(MouseButton::Left))
        );
        assert_eq!(kind(&mut m, InputEvent::ButtonRelease(Button::Left)), None);
        // Horizontal scroll: a wheel event plus a spurious release of button 6/7.
        assert_eq!(
            kind(
                &mut m,
                InputEvent::Wheel {
                    delta_x: -1,
                    delta_y: 0
                }
            ),
            Some(InteractionKind::Scroll(1))
        );
        assert_eq!(
            kind(&mut m, InputEvent::ButtonRelease(Button::Unknown(6))),
            None
        );
        assert_eq!(
            kind(&mut m, InputEvent::ButtonPress(Button::Unknown(8))),
            None
        );
        assert_eq!(
            kind(&mut m, InputEvent::MouseMove { x: 10.0, y: 10.0 }),
            None
        );
        assert_eq!(
            kind(&mut m, InputEvent::MouseMove { x: 13.0, y: 14.0 }),
            Some(InteractionKind::PointerMove(5))
        );
        assert_eq!(
            kind(&mut m, InputEvent::MouseMove { x: 13.2, y: 14.0 }),
            None
        );
    }
}
