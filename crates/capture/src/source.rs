//! Event sources: the interface, the scripted/replay source, and a timed recording helper.

use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use hush_report::{KeyClass, MouseButton, RawMeasurements, Shortcut};

use crate::{
    CaptureError, Interaction, InteractionKind, InteractionSink, WindowAggregator, channel,
};

/// The longest an interaction may take to reach the channel after it happened:
/// the Linux listener reads events in batches up to 250 ms apart, and a busy
/// machine may add to that.
pub const MAX_DELIVERY_DELAY: Duration = Duration::from_millis(500);

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
    let mut worker = CaptureThread::spawn(source, sink)?;
    // Start-up errors (no display, no permission) arrive at once; success never returns.
    let grace = Instant::now() + Duration::from_millis(300);
    while Instant::now() < grace && worker.running() {
        thread::sleep(Duration::from_millis(10));
    }
    worker.ended()?;
    on_ready();
    let start = epoch.elapsed_ms();
    let duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    let window_ms = duration_ms.max(1000);
    let stop_ms = start.saturating_add(duration_ms);
    let mut aggregator = WindowAggregator::new(window_ms, start)?;
    // Interactions reach the channel up to MAX_DELIVERY_DELAY after they
    // happen, so keep receiving that much longer, counting only what happened
    // before the end.
    let deadline = Instant::now() + duration + MAX_DELIVERY_DELAY;
    let mut interactions = 0u64;
    loop {
        // Wake up at least every 100 ms to notice a lost display while nothing happens.
        worker.ended()?;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match stream
            .receiver()
            .recv_timeout(left.min(Duration::from_millis(100)))
        {
            Ok(i) if i.at_ms < stop_ms => {
                interactions += 1;
                // The window is as long as the recording, so nothing closes early.
                drop(aggregator.observe(i));
            }
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            // The source ended: a finished script (what it sent is all there
            // is), or a lost display, which its thread is about to return.
            Err(RecvTimeoutError::Disconnected) => {
                worker.join()?;
                break;
            }
        }
    }
    Ok((
        aggregator.finish(stop_ms.min(start + window_ms)),
        RecordingStats {
            interactions,
            dropped: stream.dropped(),
        },
    ))
}

/// An event source running on its own thread, and how it ended: the one
/// place the preview and the agent's daemon learn that a listener failed.
#[derive(Debug)]
pub struct CaptureThread(Option<thread::JoinHandle<Result<(), CaptureError>>>);

impl CaptureThread {
    /// Starts `source` on a thread named `hush-capture`, sending into `sink`.
    pub fn spawn<S: EventSource>(source: S, sink: InteractionSink) -> Result<Self, CaptureError> {
        thread::Builder::new()
            .name("hush-capture".into())
            .spawn(move || source.run(sink))
            .map(|h| CaptureThread(Some(h)))
            .map_err(|e| CaptureError::Listen(format!("cannot start the capture thread: {e}")))
    }

    /// Whether the source is still running.
    pub fn running(&self) -> bool {
        self.0.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Without blocking: `Ok(true)` the first time the source is seen to have
    /// ended cleanly (a finished script), its error if it failed (a lost
    /// display), `Ok(false)` otherwise.
    pub fn ended(&mut self) -> Result<bool, CaptureError> {
        if self.0.as_ref().is_some_and(|h| h.is_finished()) {
            self.join()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Waits for a source that is ending (its channel closed) and returns its
    /// error, if any.
    pub fn join(&mut self) -> Result<(), CaptureError> {
        match self.0.take().map(thread::JoinHandle::join) {
            Some(Ok(Err(e))) => Err(e),
            Some(Err(_)) => Err(CaptureError::Listen("the capture thread panicked".into())),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InteractionKind;

    /// A listener that sends a few interactions, some stamped after the
    /// recording ends (as a batched listener's late ones are), then loses its
    /// display or keeps running.
    struct Listener {
        epoch: Epoch,
        lose_display: bool,
    }

    impl EventSource for Listener {
        fn run(self, sink: InteractionSink) -> Result<(), CaptureError> {
            let key = |at_ms| Interaction {
                kind: InteractionKind::Key(KeyClass::Letter),
                at_ms,
            };
            thread::sleep(Duration::from_millis(400));
            let now = self.epoch.elapsed_ms();
            sink.offer(key(now));
            sink.offer(key(now + 1));
            // Happened after a 1 s recording that started about 300 ms in.
            sink.offer(key(now + 5_000));
            if self.lose_display {
                // While the recording waits on the channel, not between receives.
                thread::sleep(Duration::from_millis(200));
                return Err(CaptureError::DisplayLost);
            }
            thread::sleep(Duration::from_secs(3));
            Ok(())
        }
    }

    #[test]
    fn only_what_happened_before_the_end_is_counted() {
        let epoch = Epoch::now();
        let source = Listener {
            epoch,
            lose_display: false,
        };
        let (raw, stats) = record_for(source, epoch, Duration::from_secs(1), || {}).unwrap();
        assert_eq!(stats.interactions, 2);
        assert_eq!(raw.keys_of(KeyClass::Letter), 2);
    }

    /// A listener whose display goes away ends its thread, which also closes
    /// the channel: the recording must report the loss, not a short success.
    #[test]
    fn a_lost_display_is_an_error_even_when_the_channel_closes_first() {
        let epoch = Epoch::now();
        let source = Listener {
            epoch,
            lose_display: true,
        };
        let result = record_for(source, epoch, Duration::from_secs(2), || {});
        assert_eq!(result.err(), Some(CaptureError::DisplayLost));
    }
}
