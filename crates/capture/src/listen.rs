//! The real input source: X RECORD on Linux (see `x11.rs`), rdev's global
//! listener elsewhere, with the environment checks that turn their failure
//! modes into clear errors.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::{CaptureError, Epoch, EventSource, InteractionSink};

/// rdev keeps its callback in a process-wide static, so a second listener would
/// replace the first; one listener per process on every platform keeps it simple.
static LISTENING: AtomicBool = AtomicBool::new(false);

/// Real keyboard and mouse input: the X RECORD extension on Linux, an event tap
/// on macOS, hooks on Windows (the last two through rdev).
///
/// Each event is mapped to an [`crate::Interaction`] at once and offered to the
/// bounded channel without blocking. On Linux no keycode is ever turned into a
/// character; through rdev, its `Event.name` (the typed character, which rdev
/// computes before calling us) is dropped before the callback returns.
#[derive(Debug, Clone, Copy)]
pub struct OsSource {
    epoch: Epoch,
}

impl OsSource {
    /// A source stamping interactions on `epoch`.
    pub fn new(epoch: Epoch) -> Self {
        OsSource { epoch }
    }

    /// Checks the environment before the listener gets a chance to fail obscurely.
    pub fn check_environment() -> Result<(), CaptureError> {
        #[cfg(target_os = "linux")]
        {
            let display = std::env::var_os("DISPLAY").filter(|d| !d.is_empty());
            let wayland = std::env::var_os("WAYLAND_DISPLAY").filter(|d| !d.is_empty());
            match (display, wayland) {
                (None, Some(_)) => return Err(CaptureError::WaylandOnly),
                (None, None) => return Err(CaptureError::NoDisplay),
                (Some(d), _) => crate::x11::check_display(&d.to_string_lossy())?,
            }
        }
        Ok(())
    }

    /// Whether this session is Wayland with XWayland, where only X11 apps are seen.
    pub fn wayland_note() -> Option<&'static str> {
        std::env::var_os("WAYLAND_DISPLAY")
            .filter(|d| !d.is_empty())
            .map(|_| "Wayland session: only X11/XWayland applications are seen; native Wayland applications are not")
    }
}

impl EventSource for OsSource {
    fn run(self, sink: InteractionSink) -> Result<(), CaptureError> {
        Self::check_environment()?;
        if LISTENING.swap(true, Ordering::SeqCst) {
            return Err(CaptureError::AlreadyListening);
        }
        let result = listen(self.epoch, sink);
        LISTENING.store(false, Ordering::SeqCst);
        result
    }
}

#[cfg(target_os = "linux")]
fn listen(epoch: Epoch, sink: InteractionSink) -> Result<(), CaptureError> {
    crate::x11::listen(epoch, &sink)
}

#[cfg(not(target_os = "linux"))]
fn listen(epoch: Epoch, sink: InteractionSink) -> Result<(), CaptureError> {
    let mut mapper = crate::mapping::EventMapper::new();
    rdev::listen(move |event| {
        let rdev::Event {
            event_type, name, ..
        } = event;
        // The typed character: never looked at, gone before anything else happens.
        drop(name);
        if let Some(interaction) = mapper.map(&from_rdev(event_type), epoch.elapsed_ms()) {
            sink.offer(interaction);
        }
    })
    .map_err(explain)
}

/// rdev's event in capture's vocabulary.
#[cfg(not(target_os = "linux"))]
fn from_rdev(event: rdev::EventType) -> crate::event::InputEvent {
    use crate::event::{Button, InputEvent};
    let button = |b: rdev::Button| match b {
        rdev::Button::Left => Button::Left,
        rdev::Button::Right => Button::Right,
        rdev::Button::Middle => Button::Middle,
        rdev::Button::Unknown(n) => Button::Unknown(n),
    };
    match event {
        rdev::EventType::KeyPress(k) => InputEvent::KeyPress(key_from_rdev(k)),
        rdev::EventType::KeyRelease(k) => InputEvent::KeyRelease(key_from_rdev(k)),
        rdev::EventType::ButtonPress(b) => InputEvent::ButtonPress(button(b)),
        rdev::EventType::ButtonRelease(b) => InputEvent::ButtonRelease(button(b)),
        rdev::EventType::Wheel { delta_x, delta_y } => InputEvent::Wheel { delta_x, delta_y },
        rdev::EventType::MouseMove { x, y } => InputEvent::MouseMove { x, y },
    }
}

/// rdev's key in capture's vocabulary: the keys the mapper tells apart keep
/// their name (rdev's names are the same), every other key is `Other`.
#[cfg(not(target_os = "linux"))]
fn key_from_rdev(key: rdev::Key) -> crate::event::Key {
    macro_rules! same_name {
        ($($name:ident)*) => {
            match key {
                $(rdev::Key::$name => crate::event::Key::$name,)*
                _ => crate::event::Key::Other,
            }
        };
    }
    same_name!(
        KeyA KeyB KeyC KeyD KeyE KeyF KeyG KeyH KeyI KeyJ KeyK KeyL KeyM KeyN KeyO KeyP
        KeyQ KeyR KeyS KeyT KeyU KeyV KeyW KeyX KeyY KeyZ
        Num0 Num1 Num2 Num3 Num4 Num5 Num6 Num7 Num8 Num9
        Kp0 Kp1 Kp2 Kp3 Kp4 Kp5 Kp6 Kp7 Kp8 Kp9
        Space Tab Return KpReturn Backspace Delete KpDelete
        UpArrow DownArrow LeftArrow RightArrow Home End PageUp PageDown Insert
        ShiftLeft ShiftRight ControlLeft ControlRight Alt AltGr MetaLeft MetaRight CapsLock
        F1 F2 F3 F4 F5 F6 F7 F8 F9 F10 F11 F12
        Escape PrintScreen ScrollLock Pause NumLock Function
    )
}

#[cfg(not(target_os = "linux"))]
fn explain(e: rdev::ListenError) -> CaptureError {
    use rdev::ListenError as L;
    match e {
        L::EventTapError | L::LoopSourceError => CaptureError::MacPermission,
        other => CaptureError::Listen(format!("{other:?}")),
    }
}
