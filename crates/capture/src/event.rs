//! Capture's own vocabulary of OS input events: which physical key, which button,
//! a wheel step or a pointer position, as the listeners decode them and before
//! the mapper turns them into identity-free interactions.
//!
//! It names only the keys the mapper tells apart: letters (the allow-listed
//! shortcuts need a few of them, and every letter is one class), digits, and
//! the whitespace, edit, navigation, modifier and function keys. Punctuation,
//! keypad operators and unknown keys are all [`Key::Other`]. Keys are
//! positions on a US layout, so a key is the same name whatever layout is
//! active; nothing here is a character. On Linux the X listener maps keycodes
//! into it directly; on macOS and Windows rdev's `Key` is mapped into it
//! (`listen.rs`), which is why the Linux build needs no C library.

/// A key, by its position on a US layout.
#[allow(missing_docs)] // The variant names say which key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    KeyA,
    KeyB,
    KeyC,
    KeyD,
    KeyE,
    KeyF,
    KeyG,
    KeyH,
    KeyI,
    KeyJ,
    KeyK,
    KeyL,
    KeyM,
    KeyN,
    KeyO,
    KeyP,
    KeyQ,
    KeyR,
    KeyS,
    KeyT,
    KeyU,
    KeyV,
    KeyW,
    KeyX,
    KeyY,
    KeyZ,
    Num0,
    Num1,
    Num2,
    Num3,
    Num4,
    Num5,
    Num6,
    Num7,
    Num8,
    Num9,
    Kp0,
    Kp1,
    Kp2,
    Kp3,
    Kp4,
    Kp5,
    Kp6,
    Kp7,
    Kp8,
    Kp9,
    Space,
    Tab,
    Return,
    KpReturn,
    Backspace,
    Delete,
    KpDelete,
    UpArrow,
    DownArrow,
    LeftArrow,
    RightArrow,
    Home,
    End,
    PageUp,
    PageDown,
    Insert,
    ShiftLeft,
    ShiftRight,
    ControlLeft,
    ControlRight,
    /// Alt on Linux and Windows, Option on macOS.
    Alt,
    AltGr,
    /// Windows, Super or Command.
    MetaLeft,
    /// Windows, Super or Command.
    MetaRight,
    CapsLock,
    F1,
    F2,
    F3,
    F4,
    F5,
    F6,
    F7,
    F8,
    F9,
    F10,
    F11,
    F12,
    Escape,
    PrintScreen,
    ScrollLock,
    Pause,
    NumLock,
    /// The Fn key, where the OS reports it.
    Function,
    /// Punctuation, keypad operators, and any key not named above.
    Other,
}

/// A mouse button.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Button {
    /// Primary button.
    Left,
    /// Secondary button.
    Right,
    /// Wheel button.
    Middle,
    /// Any other button, by the OS's number (never counted).
    Unknown(u8),
}

/// One OS input event, decoded by a listener.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InputEvent {
    /// A key went down (or auto-repeated).
    KeyPress(Key),
    /// A key went up.
    KeyRelease(Key),
    /// A mouse button went down.
    ButtonPress(Button),
    /// A mouse button went up.
    ButtonRelease(Button),
    /// Wheel notches, horizontal and vertical.
    Wheel {
        /// Horizontal notches (sign is direction).
        delta_x: i64,
        /// Vertical notches (sign is direction).
        delta_y: i64,
    },
    /// The pointer's position on the screen, in pixels.
    MouseMove {
        /// Horizontal position.
        x: f64,
        /// Vertical position.
        y: f64,
    },
}

/// The command modifiers an event says are held, from the OS's own state (the
/// X event's modifier mask): the source of truth that corrects a modifier whose
/// release was never seen (a screen lock or a VT switch swallows it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModifierMask {
    /// Shift.
    pub shift: bool,
    /// Control.
    pub control: bool,
    /// Alt, Option or AltGr.
    pub alt: bool,
    /// Super, Windows or Command.
    pub meta: bool,
}
