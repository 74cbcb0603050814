//! The identity-free vocabulary of interactions: key classes, mouse buttons and the
//! reviewed allow-list of command shortcuts. Capture maps OS events into these;
//! measurements count them.

use std::fmt;

/// A coarse class of key. Which key it was is never kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyClass {
    /// A to Z.
    Letter,
    /// 0 to 9, on the main row or the keypad.
    Digit,
    /// Space, Tab, Return.
    Whitespace,
    /// Backspace and Delete: the keys that correct text.
    Edit,
    /// Arrows, Home, End, Page Up, Page Down, Insert.
    Navigation,
    /// Shift, Control, Alt, AltGr, Meta, Caps Lock.
    Modifier,
    /// F1–F12, Escape, Print Screen and other function keys.
    Function,
    /// Punctuation and anything not classified above.
    Other,
}

impl KeyClass {
    /// Every class, in index order.
    pub const ALL: [KeyClass; 8] = [
        Self::Letter,
        Self::Digit,
        Self::Whitespace,
        Self::Edit,
        Self::Navigation,
        Self::Modifier,
        Self::Function,
        Self::Other,
    ];

    /// Position in [`KeyClass::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the key produces or corrects text (counts toward typing speed).
    pub fn is_text(self) -> bool {
        matches!(
            self,
            Self::Letter | Self::Digit | Self::Whitespace | Self::Edit | Self::Other
        )
    }

    /// A lowercase name for people.
    pub fn name(self) -> &'static str {
        match self {
            Self::Letter => "letter",
            Self::Digit => "digit",
            Self::Whitespace => "whitespace",
            Self::Edit => "edit",
            Self::Navigation => "navigation",
            Self::Modifier => "modifier",
            Self::Function => "function",
            Self::Other => "other",
        }
    }
}

/// A mouse button whose clicks are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MouseButton {
    /// Primary button.
    Left,
    /// Secondary button.
    Right,
    /// Wheel button.
    Middle,
}

impl MouseButton {
    /// Every button, in index order.
    pub const ALL: [MouseButton; 3] = [Self::Left, Self::Right, Self::Middle];

    /// Position in [`MouseButton::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A command shortcut on the reviewed allow-list.
///
/// Only these combinations are ever identified; any other chord is counted as
/// an anonymous chord, and a key without a command modifier is never a
/// shortcut. Control and Command (macOS) are treated alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shortcut {
    /// Ctrl+C.
    Copy,
    /// Ctrl+X.
    Cut,
    /// Ctrl+V.
    Paste,
    /// Ctrl+Z.
    Undo,
    /// Ctrl+Y or Ctrl+Shift+Z.
    Redo,
    /// Ctrl+S.
    Save,
    /// Ctrl+F.
    Find,
    /// Ctrl+A.
    SelectAll,
    /// Alt+Tab (Cmd+Tab on macOS).
    SwitchWindow,
    /// Ctrl+T.
    NewTab,
    /// Ctrl+W.
    CloseTab,
    /// Ctrl+Tab.
    NextTab,
    /// Ctrl+N.
    NewWindow,
    /// Ctrl+R or F5 with Ctrl.
    Reload,
}

impl Shortcut {
    /// Every shortcut on the allow-list, in index order.
    pub const ALL: [Shortcut; 14] = [
        Self::Copy,
        Self::Cut,
        Self::Paste,
        Self::Undo,
        Self::Redo,
        Self::Save,
        Self::Find,
        Self::SelectAll,
        Self::SwitchWindow,
        Self::NewTab,
        Self::CloseTab,
        Self::NextTab,
        Self::NewWindow,
        Self::Reload,
    ];

    /// Position in [`Shortcut::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The stable name used in catalogs and datasets.
    pub fn name(self) -> &'static str {
        match self {
            Self::Copy => "copy",
            Self::Cut => "cut",
            Self::Paste => "paste",
            Self::Undo => "undo",
            Self::Redo => "redo",
            Self::Save => "save",
            Self::Find => "find",
            Self::SelectAll => "select-all",
            Self::SwitchWindow => "switch-window",
            Self::NewTab => "new-tab",
            Self::CloseTab => "close-tab",
            Self::NextTab => "next-tab",
            Self::NewWindow => "new-window",
            Self::Reload => "reload",
        }
    }
}

impl fmt::Display for Shortcut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
