//! The Linux input source: the X RECORD extension, read over x11rb's pure-Rust
//! connection in batches a few times a second, each event stamped by the X
//! server's own clock. No character is ever looked up, only key positions.
//!
//! Why not rdev's listener, which the other platforms use: on X11 it asks Xlib
//! for the typed character of every key press (an input-method lookup we then
//! throw away), it wakes this process once per event, and Xlib exits the whole
//! process when the display goes away unless unsafe error handlers intervene.
//! Here nothing turns a keycode into a character, the thread reads a batch
//! about every 250 ms however fast someone types, and a lost display is an
//! ordinary error.

use std::thread;
use std::time::{Duration, Instant};

use x11rb::connection::{Connection, RequestConnection};
use x11rb::errors::ReplyError;
use x11rb::protocol::record::{self, ConnectionExt as _};
use x11rb::protocol::xproto;
use x11rb::rust_connection::RustConnection;
use x11rb::x11_utils::TryParse;

use crate::event::{Button, InputEvent, Key, ModifierMask};
use crate::mapping::EventMapper;
use crate::{CaptureError, Epoch, InteractionSink};

/// How long events are left to queue in the connection: once caught up, the
/// listener sleeps until this long after the newest event it handled. Events
/// behind that one happened later, so every event is read at most this long
/// after it happened (plus scheduling), well within
/// [`crate::MAX_DELIVERY_DELAY`]; its timestamp is the server's, so it lands in
/// the right minute.
const BATCH_MS: u64 = 250;
const _: () = assert!(2 * BATCH_MS <= crate::MAX_DELIVERY_DELAY.as_millis() as u64);

/// A reply that took longer than this to come had to be waited for: the queue
/// was empty, so the listener has caught up. (A thread descheduled while the
/// queue was not empty may also take this long; then it sleeps a little early,
/// which the bound above still covers.)
const CAUGHT_UP: Duration = Duration::from_millis(1);

/// Reply categories of RECORD's EnableContext (the protocol's section 4.4).
const FROM_SERVER: u8 = 0;

/// Any failure of an established connection: the server went away.
fn lost<E>(_: E) -> CaptureError {
    CaptureError::DisplayLost
}

/// A failed request: the connection broke, or the server refused it.
fn refused(what: &str, e: ReplyError) -> CaptureError {
    match e {
        ReplyError::ConnectionError(_) => CaptureError::DisplayLost,
        ReplyError::X11Error(x) => CaptureError::Listen(format!(
            "the X server refused to {what}: {:?} error",
            x.error_kind
        )),
    }
}

/// Opens and closes a connection once, so an unreachable server is reported by name.
pub fn check_display(name: &str) -> Result<(), CaptureError> {
    RustConnection::connect(Some(name))
        .map(drop)
        .map_err(|_| CaptureError::DisplayUnreachable(name.to_owned()))
}

/// Records device events until the display is lost.
pub fn listen(epoch: Epoch, sink: &InteractionSink) -> Result<(), CaptureError> {
    let unreachable =
        |_| CaptureError::DisplayUnreachable(std::env::var("DISPLAY").unwrap_or_default());
    // RECORD's own advice: one connection to control the context, one to read its data.
    let (control, _) = RustConnection::connect(None).map_err(unreachable)?;
    let (data, _) = RustConnection::connect(None).map_err(unreachable)?;
    if control
        .extension_information(record::X11_EXTENSION_NAME)
        .map_err(lost)?
        .is_none()
    {
        return Err(CaptureError::NoRecordExtension);
    }
    let context = control.generate_id().map_err(lost)?;
    let none = record::Range8 { first: 0, last: 0 };
    let none_ext = record::ExtRange {
        major: none,
        minor: record::Range16 { first: 0, last: 0 },
    };
    let devices = record::Range {
        core_requests: none,
        core_replies: none,
        ext_requests: none_ext,
        ext_replies: none_ext,
        delivered_events: none,
        device_events: record::Range8 {
            first: xproto::KEY_PRESS_EVENT,
            last: xproto::MOTION_NOTIFY_EVENT,
        },
        errors: none,
        client_started: false,
        client_died: false,
    };
    control
        .record_create_context(context, 0, &[record::CS::ALL_CLIENTS.into()], &[devices])
        .map_err(lost)?
        .check()
        .map_err(|e| refused("create a recording context", e))?;

    let mut mapper = EventMapper::new();
    let mut clock = ServerClock::default();
    let mut replies = data.record_enable_context(context).map_err(lost)?;
    loop {
        let asked = Instant::now();
        // None: the server ended the context (another client disabled it, or
        // the server is shutting down).
        let reply = replies
            .next()
            .ok_or(CaptureError::DisplayLost)?
            .map_err(|e| refused("record input", e))?;
        let caught_up = asked.elapsed() > CAUGHT_UP;
        // Device events come from the server in our byte order; a swapped
        // client's own requests are not recorded.
        if reply.category != FROM_SERVER {
            continue;
        }
        let now_ms = epoch.elapsed_ms();
        let mut newest = None;
        let mut rest = &reply.data[..];
        while let Some((event, server_ms, tail)) = parse(rest) {
            rest = tail;
            let Some((event, mask)) = event else { continue };
            let at_ms = clock.at_ms(server_ms, now_ms);
            newest = Some(at_ms);
            if let Some(interaction) = mapper.map_with_mask(&event, mask, at_ms) {
                sink.offer(interaction);
            }
        }
        // Caught up: let the next events queue.
        if let Some(wake_ms) = newest.map(|at| at + BATCH_MS)
            && caught_up
            && wake_ms > now_ms
        {
            // Nothing else is read on these connections, but the server sends
            // every client MappingNotify when the keymap changes: drop them,
            // so they do not pile up over weeks.
            while data.poll_for_event().map_err(lost)?.is_some() {}
            while control.poll_for_event().map_err(lost)?.is_some() {}
            thread::sleep(Duration::from_millis(wake_ms - now_ms));
        }
    }
}

/// An event in capture's vocabulary, with the modifier mask it carries.
type Decoded = (InputEvent, ModifierMask);

/// One recorded device event from the front of `data`: the event in capture's
/// vocabulary with the modifier mask it carries (`None` for an event that
/// means nothing here), the server time, and the rest. `None` when `data`
/// holds no whole event.
fn parse(data: &[u8]) -> Option<(Option<Decoded>, u32, &[u8])> {
    // The high bit marks events sent by SendEvent; the type is the low seven.
    let kind = *data.first()? & 0x7f;
    let parsed = match kind {
        xproto::KEY_PRESS_EVENT | xproto::KEY_RELEASE_EVENT => {
            let (e, rest) = xproto::KeyPressEvent::try_parse(data).ok()?;
            let key = key(e.detail);
            let event = if kind == xproto::KEY_PRESS_EVENT {
                InputEvent::KeyPress(key)
            } else {
                InputEvent::KeyRelease(key)
            };
            (Some((event, mask(e.state))), e.time, rest)
        }
        xproto::BUTTON_PRESS_EVENT | xproto::BUTTON_RELEASE_EVENT => {
            let (e, rest) = xproto::ButtonPressEvent::try_parse(data).ok()?;
            let event = button(e.detail, kind == xproto::BUTTON_PRESS_EVENT);
            (event.map(|b| (b, mask(e.state))), e.time, rest)
        }
        xproto::MOTION_NOTIFY_EVENT => {
            let (e, rest) = xproto::MotionNotifyEvent::try_parse(data).ok()?;
            let event = InputEvent::MouseMove {
                x: f64::from(e.root_x),
                y: f64::from(e.root_y),
            };
            (Some((event, mask(e.state))), e.time, rest)
        }
        // Outside the recorded range: every core event is 32 bytes.
        _ => (None, 0, data.get(32..)?),
    };
    Some(parsed)
}

/// The command modifiers an X event's state says were held just before it.
/// Mod1 is Alt and Mod5 AltGr (ISO Level 3) on every common keymap, Mod4 Super;
/// Lock (Caps Lock) and Mod2 (Num Lock) are not command modifiers.
fn mask(state: xproto::KeyButMask) -> ModifierMask {
    let held = |m: xproto::KeyButMask| state.contains(m);
    ModifierMask {
        shift: held(xproto::KeyButMask::SHIFT),
        control: held(xproto::KeyButMask::CONTROL),
        alt: held(xproto::KeyButMask::MOD1) || held(xproto::KeyButMask::MOD5),
        meta: held(xproto::KeyButMask::MOD4),
    }
}

/// Buttons 1-3 are clicks; 4/5 are the vertical wheel and 6/7 the horizontal,
/// one notch per press (X reports no wheel releases worth counting).
fn button(detail: u8, press: bool) -> Option<InputEvent> {
    let event = match (detail, press) {
        (1, true) => InputEvent::ButtonPress(Button::Left),
        (2, true) => InputEvent::ButtonPress(Button::Middle),
        (3, true) => InputEvent::ButtonPress(Button::Right),
        (4, true) => InputEvent::Wheel {
            delta_x: 0,
            delta_y: 1,
        },
        (5, true) => InputEvent::Wheel {
            delta_x: 0,
            delta_y: -1,
        },
        (6, true) => InputEvent::Wheel {
            delta_x: -1,
            delta_y: 0,
        },
        (7, true) => InputEvent::Wheel {
            delta_x: 1,
            delta_y: 0,
        },
        (1, false) => InputEvent::ButtonRelease(Button::Left),
        (2, false) => InputEvent::ButtonRelease(Button::Middle),
        (3, false) => InputEvent::ButtonRelease(Button::Right),
        (4..=7, false) => return None,
        (b, true) => InputEvent::ButtonPress(Button::Unknown(b)),
        (b, false) => InputEvent::ButtonRelease(Button::Unknown(b)),
    };
    Some(event)
}

/// The key at an X keycode (the evdev code plus 8), as a position on a US
/// layout: the same name whatever layout is active, which is all the mapper
/// needs to tell letters from digits and to spot Ctrl+C. Keys the mapper
/// does not tell apart (punctuation, keypad operators) are all `Other`.
fn key(code: u8) -> Key {
    use Key::*;
    match code {
        9 => Escape,
        10 => Num1,
        11 => Num2,
        12 => Num3,
        13 => Num4,
        14 => Num5,
        15 => Num6,
        16 => Num7,
        17 => Num8,
        18 => Num9,
        19 => Num0,
        22 => Backspace,
        23 => Tab,
        24 => KeyQ,
        25 => KeyW,
        26 => KeyE,
        27 => KeyR,
        28 => KeyT,
        29 => KeyY,
        30 => KeyU,
        31 => KeyI,
        32 => KeyO,
        33 => KeyP,
        36 => Return,
        37 => ControlLeft,
        38 => KeyA,
        39 => KeyS,
        40 => KeyD,
        41 => KeyF,
        42 => KeyG,
        43 => KeyH,
        44 => KeyJ,
        45 => KeyK,
        46 => KeyL,
        50 => ShiftLeft,
        52 => KeyZ,
        53 => KeyX,
        54 => KeyC,
        55 => KeyV,
        56 => KeyB,
        57 => KeyN,
        58 => KeyM,
        62 => ShiftRight,
        64 => Alt,
        65 => Space,
        66 => CapsLock,
        67 => F1,
        68 => F2,
        69 => F3,
        70 => F4,
        71 => F5,
        72 => F6,
        73 => F7,
        74 => F8,
        75 => F9,
        76 => F10,
        77 => NumLock,
        78 => ScrollLock,
        79 => Kp7,
        80 => Kp8,
        81 => Kp9,
        83 => Kp4,
        84 => Kp5,
        85 => Kp6,
        87 => Kp1,
        88 => Kp2,
        89 => Kp3,
        90 => Kp0,
        91 => KpDelete,
        95 => F11,
        96 => F12,
        104 => KpReturn,
        105 => ControlRight,
        107 => PrintScreen,
        108 => AltGr,
        110 => Home,
        111 => UpArrow,
        112 => PageUp,
        113 => LeftArrow,
        114 => RightArrow,
        115 => End,
        116 => DownArrow,
        117 => PageDown,
        118 => Insert,
        119 => Delete,
        127 => Pause,
        133 => MetaLeft,
        134 => MetaRight,
        // Punctuation, keypad operators and keys without a name here.
        _ => Other,
    }
}

/// Turns X server timestamps (milliseconds on the server's clock, wrapping
/// every 49.7 days) into milliseconds on the epoch.
///
/// The server's clock and ours are both the monotonic clock, so only the
/// offset has to be learned. The first event is handled as soon as it arrives
/// (the listener was waiting for it), so its arrival time is its time: that
/// anchors the two clocks. Each later event is placed by its signed distance
/// from the previous one, which becomes the new anchor, so the distance never
/// nears a wrap. A stamp that would land in the future, or more than
/// [`ServerClock::MAX_LAG_MS`] in the past (a restarted server), re-anchors on
/// the arrival time instead.
#[derive(Debug, Default)]
struct ServerClock {
    anchor: Option<(u32, u64)>,
}

impl ServerClock {
    /// How far behind its arrival an event may be stamped: far beyond a batch.
    const MAX_LAG_MS: u64 = 10_000;

    fn at_ms(&mut self, server_ms: u32, now_ms: u64) -> u64 {
        let placed = self.anchor.and_then(|(server, ours)| {
            // Reinterpreted as signed: a device event may be stamped a little
            // before one already seen (XTEST input is not queued).
            let delta = i64::from(server_ms.wrapping_sub(server) as i32);
            ours.checked_add_signed(delta)
                .filter(|&at| at <= now_ms && now_ms - at <= Self::MAX_LAG_MS)
        });
        let at = placed.unwrap_or(now_ms);
        self.anchor = Some((server_ms, at));
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 32-byte core event as the server would record it.
    fn raw(kind: u8, detail: u8, time: u32, x: i16, y: i16) -> Vec<u8> {
        with_state(kind, detail, time, x, y, 0)
    }

    /// The same, with the modifier state the event carries.
    fn with_state(kind: u8, detail: u8, time: u32, x: i16, y: i16, state: u16) -> Vec<u8> {
        let mut e = vec![0u8; 32];
        e[0] = kind;
        e[1] = detail;
        e[4..8].copy_from_slice(&time.to_ne_bytes());
        e[20..22].copy_from_slice(&x.to_ne_bytes());
        e[22..24].copy_from_slice(&y.to_ne_bytes());
        e[28..30].copy_from_slice(&state.to_ne_bytes());
        e
    }

    #[test]
    fn recorded_events_parse_in_sequence() {
        // Ctrl (4) and Mod2 (Num Lock, 16) held during the press of C.
        let mut data = with_state(xproto::KEY_PRESS_EVENT, 54, 1000, 0, 0, 4 | 16);
        data.extend(raw(xproto::KEY_RELEASE_EVENT | 0x80, 134, 1010, 0, 0));
        data.extend(raw(xproto::BUTTON_PRESS_EVENT, 6, 1020, 0, 0));
        data.extend(raw(xproto::BUTTON_RELEASE_EVENT, 6, 1021, 0, 0));
        data.extend(raw(xproto::MOTION_NOTIFY_EVENT, 0, 1030, -3, 700));
        data.extend(raw(xproto::EXPOSE_EVENT, 0, 0, 0, 0));
        data.extend([1, 2, 3]);
        let mut rest = &data[..];
        let mut seen = Vec::new();
        let mut masks = Vec::new();
        while let Some((event, time, tail)) = parse(rest) {
            seen.push((event.map(|(e, _)| e), time));
            masks.extend(event.map(|(_, m)| m));
            rest = tail;
        }
        let ctrl = ModifierMask {
            control: true,
            ..ModifierMask::default()
        };
        assert_eq!(masks[0], ctrl, "Num Lock is not a command modifier");
        assert_eq!(masks[1..], [ModifierMask::default(); 3]);
        assert_eq!(
            seen,
            vec![
                (Some(InputEvent::KeyPress(Key::KeyC)), 1000),
                (Some(InputEvent::KeyRelease(Key::MetaRight)), 1010),
                (
                    Some(InputEvent::Wheel {
                        delta_x: -1,
                        delta_y: 0
                    }),
                    1020
                ),
                (None, 1021),
                (Some(InputEvent::MouseMove { x: -3.0, y: 700.0 }), 1030),
                (None, 0),
            ]
        );
        assert_eq!(rest, [1, 2, 3], "a partial event is left unread");
    }

    #[test]
    fn masks_name_the_command_modifiers() {
        use xproto::KeyButMask as M;
        assert_eq!(mask(M::LOCK | M::MOD2), ModifierMask::default());
        let all = mask(M::SHIFT | M::CONTROL | M::MOD1 | M::MOD4);
        assert!(all.shift && all.control && all.alt && all.meta);
        assert!(
            mask(M::MOD5).alt,
            "AltGr counts as Alt, so Ctrl+AltGr chords stay anonymous"
        );
    }

    #[test]
    fn buttons_and_wheels() {
        assert_eq!(button(1, true), Some(InputEvent::ButtonPress(Button::Left)));
        assert_eq!(
            button(3, true),
            Some(InputEvent::ButtonPress(Button::Right))
        );
        assert_eq!(
            button(5, true),
            Some(InputEvent::Wheel {
                delta_x: 0,
                delta_y: -1
            })
        );
        assert_eq!(button(5, false), None);
        assert_eq!(
            button(9, true),
            Some(InputEvent::ButtonPress(Button::Unknown(9)))
        );
    }

    #[test]
    fn every_named_keycode_is_one_key() {
        let named: Vec<Key> = (0..=255u8).map(key).filter(|k| *k != Key::Other).collect();
        assert_eq!(named.len(), 88);
        for (i, k) in named.iter().enumerate() {
            assert!(!named[..i].contains(k), "{k:?} at two keycodes");
        }
        // Spot checks against the evdev codes (X keycode = evdev + 8).
        assert_eq!(key(30 + 8), Key::KeyA);
        assert_eq!(key(28 + 8), Key::Return);
        assert_eq!(key(125 + 8), Key::MetaLeft);
        assert_eq!(key(59), Key::Other, "comma");
        assert_eq!(key(200), Key::Other);
    }

    #[test]
    fn server_time_keeps_its_spacing_after_a_batch() {
        let mut clock = ServerClock::default();
        // Woken by the first event: it is stamped on arrival.
        assert_eq!(clock.at_ms(50_000, 7_000), 7_000);
        // Three more read 250 ms later keep their server spacing.
        assert_eq!(clock.at_ms(50_040, 7_260), 7_040);
        assert_eq!(clock.at_ms(50_200, 7_260), 7_200);
        // Across the server clock's wrap.
        let mut clock = ServerClock::default();
        assert_eq!(clock.at_ms(u32::MAX - 9, 100), 100);
        assert_eq!(clock.at_ms(20, 200), 130);
    }

    #[test]
    fn a_slightly_earlier_server_time_is_placed_before_the_anchor() {
        let mut clock = ServerClock::default();
        assert_eq!(clock.at_ms(10_000, 3_000), 3_000);
        assert_eq!(clock.at_ms(9_990, 3_100), 2_990);
        assert_eq!(clock.at_ms(10_050, 3_100), 3_050);
    }

    #[test]
    fn implausible_server_times_re_anchor() {
        let mut clock = ServerClock::default();
        assert_eq!(clock.at_ms(1_000, 5_000), 5_000);
        // Ahead of our clock: stamped on arrival, and the new anchor holds.
        assert_eq!(clock.at_ms(2_000, 5_500), 5_500);
        assert_eq!(clock.at_ms(2_100, 5_700), 5_600);
        // A server restarted at zero: far behind, so re-anchored.
        assert_eq!(clock.at_ms(3, 60_000), 60_000);
        assert_eq!(clock.at_ms(13, 60_050), 60_010);
    }
}
