//! RawMeasurements has no Serialize: it cannot be written out.

fn main() {
    let raw = hush_report::RawMeasurements::new(60);
    let _ = serde_json::to_string(&raw);
}
