//! Raw measurements cannot be uploaded.

fn send(uploader: &hush_agent::uploader::Uploader) {
    let raw = hush_report::RawMeasurements::new(60);
    let _ = uploader.upload(&[raw]);
}

fn main() {}
