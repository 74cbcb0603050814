//! `Interaction`: one identity-free input event, and the bounded channel that carries them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use hush_report::{KeyClass, MouseButton, Shortcut};

/// What happened, without which key or where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InteractionKind {
    /// A key released with no command modifier (Ctrl, Alt, Meta) held.
    Key(KeyClass),
    /// A key released while a command modifier was held: an allow-listed
    /// shortcut, or `None` for any other chord.
    Chord(Option<Shortcut>),
    /// A button pressed.
    Click(MouseButton),
    /// Scroll-wheel notches, both axes together.
    Scroll(u32),
    /// Pointer travel since the previous move, in whole pixels.
    PointerMove(u32),
}

/// One interaction and when it happened, in milliseconds on the source's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interaction {
    /// What happened.
    pub kind: InteractionKind,
    /// Milliseconds since the source's epoch (monotonic).
    pub at_ms: u64,
}

/// The sending side of the interaction channel, owned by an event source.
///
/// Sending never blocks: when the channel is full the interaction is dropped
/// and counted, because an OS input hook that blocks would stall the person's
/// keyboard.
#[derive(Debug, Clone)]
pub struct InteractionSink {
    tx: Sender<Interaction>,
    dropped: Arc<AtomicU64>,
}

/// The receiving side of the interaction channel.
#[derive(Debug, Clone)]
pub struct InteractionStream {
    rx: Receiver<Interaction>,
    dropped: Arc<AtomicU64>,
}

/// A bounded interaction channel holding at most `capacity` interactions.
pub fn channel(capacity: usize) -> (InteractionSink, InteractionStream) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    let dropped = Arc::new(AtomicU64::new(0));
    (
        InteractionSink {
            tx,
            dropped: Arc::clone(&dropped),
        },
        InteractionStream { rx, dropped },
    )
}

impl InteractionSink {
    /// Offers an interaction; returns false (and counts a drop) if the channel is full.
    /// A disconnected receiver also drops silently: nobody is listening any more.
    #[inline]
    pub fn offer(&self, interaction: Interaction) -> bool {
        match self.tx.try_send(interaction) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

impl InteractionSink {
    /// Sends an interaction, waiting for room: for scripted sources, which must
    /// not lose events. Returns false if the receiver is gone.
    pub fn send(&self, interaction: Interaction) -> bool {
        self.tx.send(interaction).is_ok()
    }
}

impl InteractionStream {
    /// The receiver, for `select!` or timed receives.
    pub fn receiver(&self) -> &Receiver<Interaction> {
        &self.rx
    }

    /// How many interactions were dropped because the channel was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
