//! `hush agent preview`: what would be measured from real input, shown only to the
//! person at the keyboard. Nothing is written anywhere but this terminal.

use std::process::ExitCode;
use std::time::Duration;

use hush_capture::{Epoch, OsSource, record_for};
use hush_report::{Catalog, KeyClass, MetricValue, MouseButton, RawMeasurements, Shortcut};

use super::PreviewArgs;

/// Runs the preview.
pub fn run(args: &PreviewArgs) -> anyhow::Result<ExitCode> {
    // The process holds raw measurements: no core file may keep them.
    hush_agent::hardening::disable_core_dumps()?;
    let epoch = Epoch::now();
    let (raw, stats) = record_for(
        OsSource::new(epoch),
        epoch,
        Duration::from_secs(args.seconds),
        || {
            eprintln!(
                "listening to keyboard and mouse for {} seconds (nothing is stored or sent)...",
                args.seconds
            );
            if let Some(note) = OsSource::wayland_note() {
                eprintln!("note: {note}");
            }
        },
    )?;
    // The clipping ranges the next report would use: the adopted ones, once
    // there are any (read only; without a home, the built-in ones).
    let catalog = super::paths(&args.home)
        .and_then(|p| Ok(hush_agent::ranges::Ranges::load(&p)?.current_catalog()))
        .unwrap_or_else(|_| Catalog::builtin());
    let lines = catalog.preview(&raw);
    if args.json {
        let metrics: Vec<_> = lines
            .iter()
            .map(|l| {
                serde_json::json!({
                    "name": l.name,
                    "value": match l.value {
                        MetricValue::Number(x) => serde_json::json!(x),
                        MetricValue::Category(c) => serde_json::json!(c),
                    },
                    "in_words": l.in_words,
                    "description": l.description,
                })
            })
            .collect();
        let json = serde_json::json!({
            "seconds": args.seconds,
            "interactions": stats.interactions,
            "dropped": stats.dropped,
            "counts": counts(&raw),
            "metrics": metrics,
        });
        println!("{json}");
    } else {
        println!(
            "What Hush would measure from these {} seconds, before any noise is added:",
            args.seconds
        );
        println!();
        for l in &lines {
            println!("  {:<16} {:<22} {}", l.name, l.in_words, l.description);
        }
        println!();
        let keys: Vec<String> = KeyClass::ALL
            .iter()
            .map(|&c| format!("{} {}", c.name(), raw.keys_of(c)))
            .collect();
        println!("  detail: keys by class: {}", keys.join(", "));
        println!(
            "          chords {} (allow-listed shortcuts among them: {}), {} interactions seen, {} dropped",
            raw.chords(),
            Shortcut::ALL
                .iter()
                .map(|&s| raw.shortcut_uses(s))
                .sum::<u32>(),
            stats.interactions,
            stats.dropped
        );
        println!();
        println!("Which keys you pressed is never recorded, only their class.");
        println!(
            "Each day, one of these metrics is randomized on this laptop before anything is sent."
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The raw counts behind the metrics, for the person's own eyes.
fn counts(raw: &RawMeasurements) -> serde_json::Value {
    let keys: serde_json::Map<String, serde_json::Value> = KeyClass::ALL
        .iter()
        .map(|&c| (c.name().to_owned(), raw.keys_of(c).into()))
        .collect();
    let shortcuts: serde_json::Map<String, serde_json::Value> = Shortcut::ALL
        .iter()
        .map(|&s| (s.name().to_owned(), raw.shortcut_uses(s).into()))
        .collect();
    serde_json::json!({
        "keys": keys,
        "keystrokes": raw.keystrokes(),
        "chords": raw.chords(),
        "shortcuts": shortcuts,
        "clicks": {
            "left": raw.clicks_of(MouseButton::Left),
            "right": raw.clicks_of(MouseButton::Right),
            "middle": raw.clicks_of(MouseButton::Middle),
        },
        "scroll_notches": raw.scroll_notches(),
        "pointer_travel_px": raw.pointer_travel_px(),
        "active_minutes": raw.active_minutes(),
        "typing_minutes": raw.typing_minutes(),
        "longest_focus_minutes": raw.longest_focus_minutes(),
        "minutes": raw.minutes(),
    })
}
