//! A Report cannot be written as a struct literal: its fields are private.

fn main() {
    let _ = hush_report::Report { period: 1 };
}
