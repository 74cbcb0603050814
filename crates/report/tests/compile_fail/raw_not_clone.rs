//! RawMeasurements has no Clone: it cannot be copied aside before the privatizer consumes it.

fn main() {
    let raw = hush_report::RawMeasurements::new(60);
    let kept = raw.clone();
    drop(raw);
    drop(kept);
}
