//! Event sources: the interface, the scripted/replay source, and a timed recording helper.

use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use hush_report::{KeyClass, MouseButton, RawMeasurements, Shortcut};

use crate::{
    CaptureError, Interaction, InteractionKind, InteractionSink, WindowAggregator, channel,
};

/// The shared clock of a capture session: milliseconds since its start.
///
/// Sources stamp interactions with it and consumers close windows with it,
/// so both sides agree on time without wall-clock timestamps.
#[derive(Debug, Clone, Copy)]
pub struct Epoch(Instant);

impl Epoch {
    /// An epoch starting now.
    pub fn now() -> Self {
        Epoch(Instant::now())
    }

    /// Milliseconds since the epoch.
    pub fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Something that produces interactions.
pub trait EventSource: Send + 'static {
    /// Delivers interactions into `sink` until the source ends. A real input
    /// source never ends; it returns only if it cannot start or fails.
    fn run(self, sink: InteractionSink) -> Result<(), CaptureError>;
}

/// A source that replays a fixed list of interactions, for tests and simulations.
#[derive(Debug, Clone, Default)]
pub struct ScriptedSource {
    script: Vec<Interaction>,
}

impl ScriptedSource {
    /// Parses a replay script: one interaction per line, `AT_MS KIND [ARG]`, where
    /// KIND is `key CLASS`, `chord [SHORTCUT]`, `click BUTTON`, `scroll N` or `move PX`.
    /// Blank lines and lines starting with `#` are ignored.
    pub fn parse(text: &str) -> Result<Self, CaptureError> {
        let mut script = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| CaptureError::Script {
                line: n + 1,
                why: why.to_owned(),
            };
            let mut words = line.split_whitespace();
            let at_ms: u64 = words
                .next()
                .and_then(|w| w.parse().ok())
                .ok_or_else(|| bad("expected a time in milliseconds first"))?;
            let kind = words.next().ok_or_else(|| bad("expected a kind"))?;
            let arg = words.next();
            let number = |a: Option<&str>| -> Result<u32, CaptureError> {
                a.and_then(|w| w.parse().ok())
                    .ok_or_else(|| bad("expected a whole number"))
            };
            let kind = match kind {
                "key" => InteractionKind::Key(
                    KeyClass::ALL
                        .into_iter()
                        .find(|c| Some(c.name()) == arg)
                        .ok_or_else(|| bad("unknown key class"))?,
                ),
                "chord" => InteractionKind::Chord(match arg {
                    None => None,
                    Some(a) => Some(
                        Shortcut::ALL
                            .into_iter()
                            .find(|s| s.name() == a)
                            .ok_or_else(|| bad("unknown shortcut"))?,
                    ),
                }),
                "click" => InteractionKind::Click(match arg {
                    Some("left") => MouseButton::Left,
                    Some("right") => MouseButton::Right,
                    Some("middle") => MouseButton::Middle,
                    _ => return Err(bad("expected left, right or middle")),
                }),
                "scroll" => InteractionKind::Scroll(number(arg)?),
                "move" => InteractionKind::PointerMove(number(arg)?),
                _ => return Err(bad("kind must be key, chord, click, scroll or move")),
            };
            script.push(Interaction { kind, at_ms });
        }
        Ok(ScriptedSource { script })
    }

    /// The interactions, in order.
    pub fn interactions(&self) -> &[Interaction] {
        &self.script
    }
}

/// A scripted source replayed in real time on an [`Epoch`]: each interaction is
/// delivered when its time comes and stamped with the epoch's clock, optionally
/// repeating forever (for agents driven by a replay in tests and demos).
#[derive(Debug, Clone)]
pub struct PacedSource {
    script: Vec<Interaction>,
    epoch: Epoch,
    repeat: bool,
}

impl ScriptedSource {
    /// Replays this script in real time from `epoch`; with `repeat`, forever.
    pub fn paced(self, epoch: Epoch, repeat: bool) -> PacedSource {
        PacedSource {
            script: self.script,
            epoch,
            repeat,
        }
    }
}

impl EventSource for PacedSource {
    fn run(self, sink: InteractionSink) -> Result<(), CaptureError> {
        let length = self.script.iter().map(|i| i.at_ms).max().unwrap_or(0) + 1000;
        let mut base = self.epoch.elapsed_ms();
        loop {
            for i in &self.script {
                let due = base + i.at_ms;
                let now = self.epoch.elapsed_ms();
                if due > now {
                    thread::sleep(Duration::from_millis(due - now));
                }
                let stamped = Interaction {
                    kind: i.kind,
                    at_ms: self.epoch.elapsed_ms(),
                };
                if !sink.send(stamped) {
                    return Ok(());
                }
            }
            if !self.repeat {
                return Ok(());
            }
            base += length;
        }
    }
}

impl EventSource for ScriptedSource {
    fn run(self, sink: InteractionSink) -> Result<(), CaptureError> {
        for interaction in self.script {
            if !sink.send(interaction) {
                break;
            }
        }
        Ok(())
    }
}

/// What a timed recording saw besides the measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordingStats {
    /// Interactions received.
    pub interactions: u64,
    /// Interactions dropped because the channel was full.
    pub dropped: u64,
}

/// Runs `source` on its own thread and folds what it sends during `duration`
/// into one window of measurements (the transparency preview's engine).
///
/// `on_ready` is called once the source is listening (after a short start-up
/// grace period in which start-up errors surface).
pub fn record_for<S: EventSource>(
    source: S,
    epoch: Epoch,
    duration: Duration,
    on_ready: impl FnOnce(),
) -> Result<(RawMeasurements, RecordingStats), CaptureError> {
    let (sink, stream) = channel(4096);
    let worker = thread::Builder::new()
        .name("hush-capture".into())
        .spawn(move || source.run(sink))
        .map_err(|e| CaptureError::Listen(format!("cannot start the capture thread: {e}")))?;
    // Start-up errors (no display, no permission) arrive at once; success never returns.
    let grace = Instant::now() + Duration::from_millis(300);
    while Instant::now() < grace && !worker.is_finished() {
        thread::sleep(Duration::from_millis(10));
    }
    if worker.is_finished() {
        match worker.join() {
            Ok(Err(e)) => return Err(e),
            Ok(Ok(())) => {}
            Err(_) => return Err(CaptureError::Listen("the capture thread panicked".into())),
        }
    }
    on_ready();
    let start = epoch.elapsed_ms();
    let window_ms = u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1000);
    let mut aggregator = WindowAggregator::new(window_ms, start)?;
    let deadline = Instant::now() + duration;
    let mut interactions = 0u64;
    loop {
        // Wake up at least every 100 ms to notice a lost display while nothing happens.
        let left = deadline.saturating_duration_since(Instant::now());
        if crate::display_lost() {
            return Err(CaptureError::DisplayLost);
        }
        if left.is_zero() {
            break;
        }
        match stream
            .receiver()
            .recv_timeout(left.min(Duration::from_millis(100)))
        {
            Ok(i) => {
                interactions += 1;
                // The window is as long as the recording, so nothing closes early.
                drop(aggregator.observe(i));
            }
            Err(RecvTimeoutError::Timeout) => {}
            // A scripted source finished: what it sent is all there is.
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let end = epoch.elapsed_ms().min(start + window_ms);
    Ok((
        aggregator.finish(end),
        RecordingStats {
            interactions,
            dropped: stream.dropped(),
        },
    ))
}
