//! The one error type of hush-capture, with messages that tell a person what to do.

use thiserror::Error;

/// Why capture could not start or stopped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CaptureError {
    /// A window length outside `[1 s, 24 h]`.
    #[error("window must be between 1000 ms and 86400000 ms (one day), got {0} ms")]
    Window(u64),
    /// No X display to listen to.
    #[error(
        "no X display: DISPLAY is not set. Run inside a desktop session, or start a virtual one \
         (for example `Xvfb :99 +extension RECORD &` then `export DISPLAY=:99`)"
    )]
    NoDisplay,
    /// A Wayland session without XWayland's DISPLAY.
    #[error(
        "this is a Wayland session without an X display (WAYLAND_DISPLAY is set, DISPLAY is not). \
         Hush listens through X11: start XWayland (most desktops do when DISPLAY is set) and note \
         that only X11/XWayland applications are seen"
    )]
    WaylandOnly,
    /// The X server could not be opened.
    #[error(
        "cannot open the X display '{0}': is the X server running, and may this user connect (xauth)?"
    )]
    DisplayUnreachable(String),
    /// The X server lacks the RECORD extension Hush listens through.
    #[error(
        "the X server has no RECORD extension; start it with `+extension RECORD` (Xvfb) or enable it in xorg.conf"
    )]
    NoRecordExtension,
    /// macOS refused the event tap.
    #[error(
        "macOS refused to let Hush listen to input. Grant it in System Settings > Privacy & Security > \
         Input Monitoring (add the terminal or the hush binary), then start it again"
    )]
    MacPermission,
    /// Only one listener may exist per process (rdev's limit, kept on every platform).
    #[error("a capture listener is already running in this process; only one may run")]
    AlreadyListening,
    /// The connection to the X server was lost (the server died or the session ended).
    #[error("the connection to the X display was lost (the X server stopped or the session ended)")]
    DisplayLost,
    /// A replay script line that could not be parsed.
    #[error("replay script line {line}: {why}")]
    Script {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        why: String,
    },
    /// Any other listener failure.
    #[error("input capture failed: {0}")]
    Listen(String),
}
