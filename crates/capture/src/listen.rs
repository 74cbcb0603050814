//! The real input source: rdev's global listener, with the environment checks and X error
//! handling that turn rdev's failure modes into clear errors.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::mapping::EventMapper;
use crate::{CaptureError, Epoch, EventSource, InteractionSink};

/// rdev keeps its callback in a process-wide static: a second listener would replace the first.
static LISTENING: AtomicBool = AtomicBool::new(false);

/// Set when the X connection breaks (see [`x11_guard`]).
static DISPLAY_LOST: AtomicBool = AtomicBool::new(false);

/// Whether the listener lost its X display; the listener thread is then parked for good.
pub fn display_lost() -> bool {
    DISPLAY_LOST.load(Ordering::SeqCst)
}

/// Real keyboard and mouse input through rdev (X11 RECORD on Linux, an event tap
/// on macOS, hooks on Windows).
///
/// The callback maps each event to an [`crate::Interaction`] at once and offers
/// it to the bounded channel without blocking; rdev's `Event.name` (the typed
/// character, which rdev computes before calling us) and the key are dropped
/// before the callback returns.
#[derive(Debug, Clone, Copy)]
pub struct RdevSource {
    epoch: Epoch,
}

impl RdevSource {
    /// A source stamping interactions on `epoch`.
    pub fn new(epoch: Epoch) -> Self {
        RdevSource { epoch }
    }

    /// Checks the environment before rdev gets a chance to fail obscurely
    /// (with no display it reports a `KeyboardError`).
    pub fn check_environment() -> Result<(), CaptureError> {
        #[cfg(target_os = "linux")]
        {
            let display = std::env::var_os("DISPLAY").filter(|d| !d.is_empty());
            let wayland = std::env::var_os("WAYLAND_DISPLAY").filter(|d| !d.is_empty());
            match (display, wayland) {
                (None, Some(_)) => return Err(CaptureError::WaylandOnly),
                (None, None) => return Err(CaptureError::NoDisplay),
                (Some(d), _) => x11_guard::check_display(&d.to_string_lossy())?,
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

impl EventSource for RdevSource {
    fn run(self, sink: InteractionSink) -> Result<(), CaptureError> {
        Self::check_environment()?;
        if LISTENING.swap(true, Ordering::SeqCst) {
            return Err(CaptureError::AlreadyListening);
        }
        #[cfg(target_os = "linux")]
        x11_guard::install();
        let epoch = self.epoch;
        let mut mapper = EventMapper::new();
        let result = rdev::listen(move |event| {
            let rdev::Event {
                event_type, name, ..
            } = event;
            // The typed character: never looked at, gone before anything else happens.
            drop(name);
            if let Some(interaction) = mapper.map(&event_type, epoch.elapsed_ms()) {
                sink.offer(interaction);
            }
        });
        LISTENING.store(false, Ordering::SeqCst);
        match result {
            Ok(()) => Ok(()),
            Err(e) => Err(explain(e)),
        }
    }
}

fn explain(e: rdev::ListenError) -> CaptureError {
    use rdev::ListenError as L;
    match e {
        L::MissingDisplayError | L::KeyboardError => {
            CaptureError::DisplayUnreachable(std::env::var("DISPLAY").unwrap_or_default())
        }
        L::XRecordExtensionError | L::RecordContextError | L::RecordContextEnablingError => {
            CaptureError::NoRecordExtension
        }
        L::EventTapError | L::LoopSourceError => CaptureError::MacPermission,
        other => CaptureError::Listen(format!("{other:?}")),
    }
}

/// Xlib's defaults exit the whole process on a lost connection or a protocol
/// error; these handlers keep the agent alive to report it.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod x11_guard {
    use std::ffi::CString;
    use std::os::raw::c_int;
    use std::sync::atomic::Ordering;

    use x11::xlib;

    use super::DISPLAY_LOST;
    use crate::CaptureError;

    /// Opens and closes the display once, so an unreachable server is reported by name.
    pub fn check_display(name: &str) -> Result<(), CaptureError> {
        let c_name =
            CString::new(name).map_err(|_| CaptureError::DisplayUnreachable(name.to_owned()))?;
        // SAFETY: XOpenDisplay takes a NUL-terminated string that outlives the call and
        // returns null or a connection we close before returning.
        unsafe {
            let display = xlib::XOpenDisplay(c_name.as_ptr());
            if display.is_null() {
                return Err(CaptureError::DisplayUnreachable(name.to_owned()));
            }
            xlib::XCloseDisplay(display);
        }
        Ok(())
    }

    /// Installs the IO and protocol error handlers (process-wide, idempotent).
    pub fn install() {
        // SAFETY: both handlers are `extern "C"` functions with the signatures Xlib
        // expects; setting handlers has no other precondition.
        unsafe {
            xlib::XSetIOErrorHandler(Some(on_io_error));
            xlib::XSetErrorHandler(Some(on_protocol_error));
        }
    }

    /// Called by Xlib when the connection breaks. If it returned, Xlib would
    /// exit the process; instead it flags the loss and parks this (the
    /// listener's) thread for good, and the agent reports and shuts down cleanly.
    unsafe extern "C" fn on_io_error(_display: *mut xlib::Display) -> c_int {
        DISPLAY_LOST.store(true, Ordering::SeqCst);
        loop {
            std::thread::park();
        }
    }

    /// Protocol errors (a window vanished mid-request) are not fatal to listening.
    unsafe extern "C" fn on_protocol_error(
        _display: *mut xlib::Display,
        _event: *mut xlib::XErrorEvent,
    ) -> c_int {
        0
    }
}
