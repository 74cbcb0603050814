//! The window aggregator on scripted interaction streams, with exact expected counts.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use hush_capture::{
    EventSource, Interaction, InteractionKind, ScriptedSource, WindowAggregator, channel,
};
use hush_report::{KeyClass, MouseButton, RawMeasurements, Shortcut};

const MIN: u64 = 60_000;

fn at(kind: InteractionKind, at_ms: u64) -> Interaction {
    Interaction { kind, at_ms }
}

fn run(window_ms: u64, script: &[Interaction], until_ms: u64) -> Vec<RawMeasurements> {
    let mut agg = WindowAggregator::new(window_ms, 0).unwrap();
    let mut out = Vec::new();
    for &i in script {
        out.extend(agg.observe(i));
    }
    out.extend(agg.advance(until_ms));
    out
}

#[test]
fn counts_every_kind_exactly() {
    let script = [
        at(InteractionKind::Key(KeyClass::Letter), 1_000),
        at(InteractionKind::Key(KeyClass::Letter), 1_100),
        at(InteractionKind::Key(KeyClass::Edit), 1_200),
        at(InteractionKind::Key(KeyClass::Modifier), 1_300),
        at(InteractionKind::Chord(Some(Shortcut::Copy)), 1_400),
        at(InteractionKind::Chord(None), 1_500),
        at(InteractionKind::Click(MouseButton::Left), 2 * MIN + 5),
        at(InteractionKind::Click(MouseButton::Right), 2 * MIN + 6),
        at(InteractionKind::Scroll(3), 2 * MIN + 7),
        at(InteractionKind::PointerMove(40), 3 * MIN),
        at(InteractionKind::PointerMove(2), 3 * MIN + 1),
    ];
    let windows = run(60 * MIN, &script, 60 * MIN);
    assert_eq!(windows.len(), 1);
    let w = &windows[0];
    assert_eq!(w.minutes(), 60);
    assert_eq!(w.keystrokes(), 6);
    assert_eq!(w.keys_of(KeyClass::Letter), 2);
    assert_eq!(w.text_keys(), 3);
    assert_eq!(w.chords(), 2);
    assert_eq!(w.shortcut_uses(Shortcut::Copy), 1);
    assert_eq!(w.clicks(), 2);
    assert_eq!(w.clicks_of(MouseButton::Right), 1);
    assert_eq!(w.scroll_notches(), 3);
    assert_eq!(w.pointer_travel_px(), 42);
    // Minutes 0, 2 and 3 had input; only minute 0 had typing; the longest run is 2 (minutes 2-3).
    assert_eq!(w.active_minutes(), 3);
    assert_eq!(w.typing_minutes(), 1);
    assert_eq!(w.longest_focus_minutes(), 2);
}

#[test]
fn empty_windows_are_emitted_on_schedule() {
    let script = [at(InteractionKind::Key(KeyClass::Digit), 150 * MIN)];
    let windows = run(60 * MIN, &script, 300 * MIN);
    assert_eq!(
        windows.len(),
        5,
        "windows ending at 60, 120, 180, 240, 300 minutes"
    );
    let keys: Vec<u64> = windows.iter().map(|w| w.keystrokes()).collect();
    assert_eq!(keys, vec![0, 0, 1, 0, 0]);
    assert!(windows.iter().all(|w| w.minutes() == 60));
}

#[test]
fn a_focus_stretch_across_windows_is_measured_whole() {
    // Active every minute from minute 50 to minute 79 inclusive: 30 minutes, spanning windows.
    let script: Vec<_> = (50..80)
        .map(|m| at(InteractionKind::PointerMove(1), m * MIN + 10))
        .collect();
    let windows = run(60 * MIN, &script, 120 * MIN);
    assert_eq!(windows.len(), 2);
    assert_eq!(windows[0].longest_focus_minutes(), 10);
    assert_eq!(windows[1].longest_focus_minutes(), 30);
    assert_eq!(
        windows[0].active_minutes() + windows[1].active_minutes(),
        30
    );
    let mut day = RawMeasurements::new(0);
    for w in windows {
        day.absorb(w);
    }
    assert_eq!(day.longest_focus_minutes(), 30);
    assert_eq!(day.minutes(), 120);
}

#[test]
fn finish_covers_only_the_elapsed_minutes() {
    let mut agg = WindowAggregator::new(60 * MIN, 0).unwrap();
    drop(agg.observe(at(InteractionKind::Key(KeyClass::Letter), 30_000)));
    let w = agg.finish(90_000);
    assert_eq!((w.minutes(), w.keystrokes(), w.active_minutes()), (2, 1, 1));
}

#[test]
fn rejects_windows_out_of_range() {
    assert!(WindowAggregator::new(999, 0).is_err());
    assert!(WindowAggregator::new(24 * 60 * MIN + 1, 0).is_err());
    assert!(WindowAggregator::new(1000, 0).is_ok());
}

#[test]
fn replay_scripts_parse_and_run() {
    let text = "\
# a short session
1000 key letter
1100 key whitespace
1200 chord copy
1300 chord
2000 click left
2100 scroll 2
2200 move 15
";
    let source = ScriptedSource::parse(text).unwrap();
    assert_eq!(source.interactions().len(), 7);
    let (sink, stream) = channel(16);
    source.run(sink).unwrap();
    let got: Vec<_> = stream.receiver().try_iter().map(|i| i.kind).collect();
    assert_eq!(got[2], InteractionKind::Chord(Some(Shortcut::Copy)));
    assert_eq!(got[3], InteractionKind::Chord(None));
    assert_eq!(got[6], InteractionKind::PointerMove(15));
    for bad in [
        "x key letter",
        "10 key vowel",
        "10 click top",
        "10 scroll -1",
        "10 teleport",
    ] {
        assert!(ScriptedSource::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_full_channel_drops_and_counts_instead_of_blocking() {
    let (sink, stream) = channel(2);
    let i = at(InteractionKind::Scroll(1), 0);
    assert!(sink.offer(i) && sink.offer(i));
    assert!(!sink.offer(i));
    assert!(!sink.offer(i));
    assert_eq!(stream.dropped(), 2);
    assert_eq!(stream.receiver().try_iter().count(), 2);
}
