//! A Report cannot be built outside the privatizer: no public constructor, private fields.

fn main() {
    let _ = hush_report::Report::assemble();
}
