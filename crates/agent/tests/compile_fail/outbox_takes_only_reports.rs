//! Raw measurements cannot be queued for upload.

fn main() {
    let paths = hush_agent::AgentPaths::in_home(std::path::Path::new("/tmp/x"));
    let outbox = hush_agent::Outbox::new(&paths, 10);
    let raw = hush_report::RawMeasurements::new(60);
    let _ = outbox.push(&raw);
}
