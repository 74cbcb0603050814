//! Criterion benchmark of the capture callback path: what the OS input hook does
//! per event (map the decoded OS event to an identity-free interaction, offer it to the
//! bounded channel), against the channel send alone in the same run.
//!
//! `cargo bench --bench capture`; the ratio "map+offer / offer" is the mapping's cost.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hush_capture::event::{Button, InputEvent, Key};
use hush_capture::mapping::EventMapper;
use hush_capture::{Interaction, InteractionKind, channel};
use hush_report::KeyClass;

/// A realistic mix: typing (press and release), a chord, clicks, scrolls, moves.
fn events() -> Vec<InputEvent> {
    let mut e = Vec::new();
    for i in 0..200u32 {
        let key = [Key::KeyA, Key::KeyS, Key::Space, Key::Backspace, Key::Num4][i as usize % 5];
        e.push(InputEvent::KeyPress(key));
        e.push(InputEvent::KeyRelease(key));
        if i % 20 == 0 {
            e.push(InputEvent::KeyPress(Key::ControlLeft));
            e.push(InputEvent::KeyPress(Key::KeyC));
            e.push(InputEvent::KeyRelease(Key::KeyC));
            e.push(InputEvent::KeyRelease(Key::ControlLeft));
        }
        if i % 10 == 0 {
            e.push(InputEvent::ButtonPress(Button::Left));
            e.push(InputEvent::ButtonRelease(Button::Left));
            e.push(InputEvent::Wheel {
                delta_x: 0,
                delta_y: 1,
            });
        }
        e.push(InputEvent::MouseMove {
            x: f64::from(i % 97),
            y: f64::from(i % 53),
        });
    }
    e
}

fn callback(c: &mut Criterion) {
    let events = events();
    let mut group = c.benchmark_group("capture_callback");
    group.throughput(Throughput::Elements(events.len() as u64));
    let (sink, stream) = channel(1 << 16);
    group.bench_function("offer_only", |b| {
        let i = Interaction {
            kind: InteractionKind::Key(KeyClass::Letter),
            at_ms: 1,
        };
        b.iter(|| {
            for _ in 0..events.len() {
                sink.offer(black_box(i));
            }
            stream.receiver().try_iter().count()
        })
    });
    let mut mapper = EventMapper::new();
    group.bench_function("map_and_offer", |b| {
        b.iter(|| {
            for (t, e) in events.iter().enumerate() {
                if let Some(i) = mapper.map(black_box(e), t as u64) {
                    sink.offer(i);
                }
            }
            stream.receiver().try_iter().count()
        })
    });
    group.finish();
}

criterion_group!(benches, callback);
criterion_main!(benches);
