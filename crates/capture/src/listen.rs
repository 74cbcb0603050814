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
        if let Some(interaction) = mapper.map(&event_type, epoch.elapsed_ms()) {
            sink.offer(interaction);
        }
    })
    .map_err(explain)
}

#[cfg(not(target_os = "linux"))]
fn explain(e: rdev::ListenError) -> CaptureError {
    use rdev::ListenError as L;
    match e {
        L::EventTapError | L::LoopSourceError => CaptureError::MacPermission,
        other => CaptureError::Listen(format!("{other:?}")),
    }
}
